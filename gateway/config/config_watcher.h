#pragma once

#include <functional>
#include <optional>
#include <string>

#include "reactor/event.h"
#include "reactor/event_base.h"

namespace evgate::gateway {

// Tells when a configuration file may have changed, however it was changed: written in place,
// replaced by a rename (editors), or swapped through a symlink (a Kubernetes ConfigMap volume
// renames its `..data` symlink to a new timestamped directory).
//
// It watches, with inotify, the directory holding `path` and the directory holding what `path`
// resolves to (they differ when `path` is a symlink; both are watched again after each change,
// since a swap moves the target). Any entry created, written, moved or removed there starts a
// settle timer; `onChange` runs once the directory has been quiet for `settle`, so a burst of
// steps (truncate + write, a swap's create + rename + remove) yields one call. The watcher does
// not read the file: the caller does, and compares with what it applied (events in the directory
// can concern other files).
//
// Thread rule: `base`'s loop thread.
class ConfigWatcher {
 public:
  ConfigWatcher(reactor::EventBase& base, std::string path, reactor::Duration settle,
                std::function<void()> onChange);
  ~ConfigWatcher();
  ConfigWatcher(const ConfigWatcher&) = delete;
  ConfigWatcher& operator=(const ConfigWatcher&) = delete;

  // Starts watching. On failure (inotify unavailable, directory missing) returns why, and
  // nothing is watched.
  std::optional<std::string> start();
  void stop();

 private:
  static void onReadable(int fd, reactor::EventMask what, void* arg);
  static void onSettled(int fd, reactor::EventMask what, void* arg);
  // Watches the directory of `path` and of its resolved target; false (with `error`) if the
  // first cannot be watched.
  bool watchDirectories(std::string& error);

  const std::string path_;
  const reactor::Duration settle_;
  std::function<void()> onChange_;
  int inotifyFd_ = -1;
  reactor::Event readable_;
  reactor::Event settled_;
};

}  // namespace evgate::gateway
