#pragma once

namespace evgate::reactor {

// For system calls that must not fail (epoll_create1, eventfd, ...): prints `what` with errno's
// text and aborts. Failures caused by the network or by users are reported, never sent here.
[[noreturn]] void fatalSyscall(const char* what);

}  // namespace evgate::reactor
