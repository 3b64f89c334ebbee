#pragma once

#include <string>

namespace evgate::reactor {

// For system calls that must not fail (epoll_create1, eventfd, ...): prints `what` with errno's
// text and aborts. Failures caused by the network or by users are reported, never sent here.
[[noreturn]] void fatalSyscall(const char* what);

// The text of errno value `err`, as strerror() gives it. Safe from any thread: strerror() may
// share one buffer between threads (POSIX), strerror_r() does not.
std::string errnoText(int err);

}  // namespace evgate::reactor
