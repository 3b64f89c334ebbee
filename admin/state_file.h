#pragma once

// Whole-file reads and crash-safe whole-file writes, for the state file (runtime changes that
// must survive a restart) and the admin credential files.
//
// Thread rule: plain functions, safe from any thread; concurrent writers of the same path each
// leave a complete file (the last rename wins), so callers serialize writes they care to order.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace evgate::admin {

// Why a read failed. `code` is the errno of the failing step (EFBIG when the file is larger
// than allowed); `message` names the file, the step and the reason.
struct FileError {
  int code = 0;
  std::string message;

  // The file (or a directory on its path) does not exist: a state file that was never written.
  bool missing() const;
};

// Larger files are refused rather than read, so a path pointing at /dev/zero or a log file by
// mistake cannot exhaust memory.
inline constexpr size_t kMaxReadBytes = size_t{256} << 20;

// Reads all of `path` into `out` (replacing its contents). nullopt: success. On failure `out` is
// left empty.
std::optional<FileError> readWholeFile(const std::string& path, std::string& out,
                                       size_t maxBytes = kMaxReadBytes);

// Replaces `path` with `contents` so that after a crash at any point the file holds either the
// old contents or the new, never a mix: write a temporary file (mode 0600) in the same
// directory, fsync it, rename it over `path`, then fsync the directory so the rename itself is
// durable. nullopt: success. Otherwise an error naming the step and the errno reason; the
// temporary file is removed and, if the failure came before the rename, `path` is untouched. A
// symlink at `path` is replaced, not followed.
std::optional<std::string> writeFileDurably(const std::string& path, std::string_view contents);

// What removeStaleTemporaries() did: how many files it removed, and an error naming the first
// file it could not remove or the directory it could not list.
struct StaleTemporaries {
  size_t removed = 0;
  std::optional<std::string> error;
};

// Removes the temporary files writeFileDurably(path, ...) leaves behind when the process dies
// between creating one and renaming it (kill -9, power loss): `.BASE.tmp-XXXXXX` next to `path`.
// Nothing else is touched. Call it at startup, before any write to `path`: a write in progress
// in this or another process would lose its temporary file and fail at the rename.
StaleTemporaries removeStaleTemporaries(const std::string& path);

}  // namespace evgate::admin
