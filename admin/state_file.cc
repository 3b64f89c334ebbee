#include "admin/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

namespace evgate::admin {
namespace {

// strerror() may share a static buffer between threads; the GNU strerror_r does not.
std::string errnoText(int code) {
  char buffer[128];
  return strerror_r(code, buffer, sizeof buffer);
}

// Closes a descriptor on every early return.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  // Closes now and reports close()'s own error: on some file systems (NFS) a failed write
  // only shows up here.
  int closeNow() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

bool writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

bool FileError::missing() const { return code == ENOENT; }

std::optional<FileError> readWholeFile(const std::string& path, std::string& out, size_t maxBytes) {
  out.clear();
  const auto fail = [&](int code, const char* what) {
    out.clear();
    return FileError{code, std::string("cannot ") + what + " " + path + ": " + errnoText(code)};
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno, "open");
  FdCloser closer(fd);
  struct stat info {};
  if (::fstat(fd, &info) != 0) return fail(errno, "stat");
  // read() on a directory fails with EISDIR anyway; saying so up front is clearer.
  if (S_ISDIR(info.st_mode)) return fail(EISDIR, "read");
  std::vector<char> chunk(size_t{64} * 1024);
  for (;;) {
    const ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno, "read");
    }
    if (n == 0) return std::nullopt;
    if (out.size() + static_cast<size_t>(n) > maxBytes) {
      out.clear();
      return FileError{
          EFBIG, "cannot read " + path + ": larger than " + std::to_string(maxBytes) + " bytes"};
    }
    out.append(chunk.data(), static_cast<size_t>(n));
  }
}

namespace {

// `path` split into its directory ("." for a bare name) and its last component.
struct PathParts {
  std::string dir;
  std::string base;
};

PathParts splitPath(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

// The name writeFileDurably's temporary files start with; mkostemp adds six characters.
std::string temporaryPrefix(const std::string& base) { return "." + base + ".tmp-"; }
constexpr size_t kTemporarySuffixLength = 6;

}  // namespace

std::optional<std::string> writeFileDurably(const std::string& path, std::string_view contents) {
  // Named references, not a structured binding: the lambdas below capture them.
  const PathParts parts = splitPath(path);
  const std::string& dir = parts.dir;
  const std::string& base = parts.base;
  const bool bare = path.find('/') == std::string::npos;
  // Each caller saves errno before building the step's text: allocation may clobber it.
  const auto fail = [&](const std::string& step, int code) {
    return "cannot write " + path + ": " + step + ": " + errnoText(code);
  };
  if (base.empty()) return fail("the path names a directory", EISDIR);

  // Same directory as the target: rename() is only atomic within one file system. The leading
  // dot keeps the half-written file out of casual `ls` and globs like *.yaml.
  std::string temp =
      (bare ? "" : dir + "/") + temporaryPrefix(base) + std::string(kTemporarySuffixLength, 'X');
  // mkostemp creates the file with mode 0600: the state may name internal addresses.
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) {
    const int code = errno;
    return fail("create a temporary file in " + dir, code);
  }
  FdCloser closer(fd);
  const auto failAndRemove = [&](const char* step, const std::string& what) {
    const int code = errno;
    ::unlink(temp.c_str());
    return fail(step + what, code);
  };

  if (!writeAll(fd, contents)) return failAndRemove("write ", temp);
  // Without this fsync the rename can reach the disk before the data, and a crash would leave
  // an empty file under the real name (the ext4 "zero-length file" problem).
  if (::fsync(fd) != 0) return failAndRemove("fsync ", temp);
  if (closer.closeNow() != 0) return failAndRemove("close ", temp);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    return failAndRemove("rename over the file ", temp);
  }

  // The rename is a change to the directory; until the directory is synced a crash may bring
  // the old file back.
  const int dirFd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirFd < 0) {
    const int code = errno;
    return fail("open directory " + dir + " to fsync it (the new contents are in place)", code);
  }
  FdCloser dirCloser(dirFd);
  if (::fsync(dirFd) != 0) {
    const int code = errno;
    return fail("fsync directory " + dir + " (the new contents are in place)", code);
  }
  return std::nullopt;
}

StaleTemporaries removeStaleTemporaries(const std::string& path) {
  const PathParts parts = splitPath(path);
  const std::string& dir = parts.dir;
  const std::string& base = parts.base;
  const std::string prefix = temporaryPrefix(base);
  StaleTemporaries result;
  std::error_code error;
  std::filesystem::directory_iterator it(dir, error);
  for (; !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.size() != prefix.size() + kTemporarySuffixLength || name.rfind(prefix, 0) != 0) {
      continue;
    }
    // Only regular files: a directory or socket of that name is not ours.
    std::error_code typeError;
    if (!it->is_regular_file(typeError)) continue;
    if (::unlink(it->path().c_str()) != 0) {
      const int code = errno;
      if (code == ENOENT) continue;  // gone meanwhile
      result.error = "cannot remove " + it->path().string() + ": " + errnoText(code);
      return result;
    }
    ++result.removed;
  }
  if (error) {
    result.error =
        "cannot list " + dir + " for temporary files of " + base + ": " + error.message();
  }
  return result;
}

}  // namespace evgate::admin
