#include "reactor/poller.h"

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace evgate::reactor {

std::unique_ptr<Poller> Poller::create(Backend backend) {
  if (backend == Backend::kDefault) {
    // The environment override exists so the whole test suite can be run on either backend.
    const char* forced = std::getenv("EVGATE_REACTOR_BACKEND");
    std::string_view name = forced != nullptr ? forced : "";
    if (name == "poll") {
      backend = Backend::kPoll;
    } else if (name.empty() || name == "epoll") {
      backend = Backend::kEpoll;
    } else {
      (void)std::fprintf(stderr, "evgate: unknown EVGATE_REACTOR_BACKEND '%s', using epoll\n",
                         forced);
      backend = Backend::kEpoll;
    }
  }
  return backend == Backend::kPoll ? makePollPoller() : makeEpollPoller();
}

}  // namespace evgate::reactor
