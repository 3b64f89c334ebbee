#include "gateway/config/config_watcher.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "reactor/fatal.h"

namespace evgate::gateway {
namespace {

// Everything that can change what a path in the directory names or holds. IN_ONLYDIR: the
// watch is on a directory, never on the file itself (a rename would leave it on the old inode).
constexpr uint32_t kDirectoryEvents = IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE | IN_DELETE |
                                      IN_MOVED_TO | IN_MOVED_FROM | IN_ATTRIB | IN_ONLYDIR;

std::string directoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

ConfigWatcher::ConfigWatcher(reactor::EventBase& base, std::string path, reactor::Duration settle,
                             std::function<void()> onChange)
    : path_(std::move(path)),
      settle_(settle),
      onChange_(std::move(onChange)),
      readable_(base, onReadable, this),
      settled_(base, onSettled, this) {
  readable_.setLabel("config watch " + path_);
  settled_.setLabel("config watch settle");
}

ConfigWatcher::~ConfigWatcher() { stop(); }

std::optional<std::string> ConfigWatcher::start() {
  stop();
  inotifyFd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotifyFd_ < 0) return std::string("config watch: inotify: ") + reactor::errnoText(errno);
  std::string error;
  if (!watchDirectories(error)) {
    stop();
    return error;
  }
  readable_.assign(inotifyFd_, reactor::kRead | reactor::kPersist, onReadable, this);
  readable_.add();
  return std::nullopt;
}

void ConfigWatcher::stop() {
  readable_.del();
  settled_.del();
  if (inotifyFd_ >= 0) {
    ::close(inotifyFd_);
    inotifyFd_ = -1;
  }
}

bool ConfigWatcher::watchDirectories(std::string& error) {
  const std::string directory = directoryOf(path_);
  if (::inotify_add_watch(inotifyFd_, directory.c_str(), kDirectoryEvents) < 0) {
    error = "config watch: cannot watch " + directory + ": " + reactor::errnoText(errno);
    return false;
  }
  // Adding a watch on a directory already watched only updates it, so this runs after every
  // change: a symlink swap may have moved the target to another directory.
  char resolved[PATH_MAX];
  if (::realpath(path_.c_str(), resolved) != nullptr) {
    const std::string targetDirectory = directoryOf(resolved);
    if (targetDirectory != directory) {
      (void)::inotify_add_watch(inotifyFd_, targetDirectory.c_str(), kDirectoryEvents);
    }
  }
  return true;
}

void ConfigWatcher::onReadable(int fd, reactor::EventMask, void* arg) {
  auto* self = static_cast<ConfigWatcher*>(arg);
  // Only "something happened" matters, not what: drain the queue and (re)start the settle timer.
  alignas(inotify_event) char events[4096];
  bool any = false;
  while (true) {
    const ssize_t n = ::read(fd, events, sizeof events);
    if (n > 0) {
      any = true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // EAGAIN: drained
  }
  if (any) self->settled_.add(self->settle_);
}

void ConfigWatcher::onSettled(int, reactor::EventMask, void* arg) {
  auto* self = static_cast<ConfigWatcher*>(arg);
  std::string ignored;
  // The directory itself cannot go away while watched in a way we could recover from; a
  // target directory that did is simply no longer watched.
  (void)self->watchDirectories(ignored);
  self->onChange_();
}

}  // namespace evgate::gateway
