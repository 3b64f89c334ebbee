#include "reactor/listener.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "reactor/event_base.h"
#include "reactor/socket_address.h"
#include "tests/reactor/reactor_test_util.h"

namespace evgate::reactor {
namespace {

using std::chrono::milliseconds;
using testing::BackendTest;
using testing::loopUntil;
using testing::UniqueFd;

// A blocking TCP client connected to `to`. The kernel completes the handshake from the listen
// queue, so this returns before (and whether or not) the listener accepts.
UniqueFd connectTo(const SocketAddress& to) {
  UniqueFd fd(::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0 || ::connect(fd.get(), to.data(), to.length()) != 0) {
    ADD_FAILURE() << "connect to " << to.toString() << ": errno " << errno;
    return UniqueFd();
  }
  return fd;
}

// What the listener's callbacks saw.
struct Recorder {
  std::vector<UniqueFd> fds;
  std::vector<SocketAddress> peers;
  std::vector<int> errors;
  // Called after recording an accepted fd, e.g. to disable or destroy the listener.
  std::function<void(Listener&)> afterAccept;
};

void recordAccept(Listener& listener, int fd, const sockaddr* peer, socklen_t peerLen, void* arg) {
  auto* recorder = static_cast<Recorder*>(arg);
  recorder->fds.emplace_back(fd);
  recorder->peers.push_back(SocketAddress::fromSockaddr(peer, peerLen));
  if (recorder->afterAccept) recorder->afterAccept(listener);
}

void recordError(Listener&, int error, void* arg) {
  static_cast<Recorder*>(arg)->errors.push_back(error);
}

std::unique_ptr<Listener> bindLoopback(EventBase& base, Recorder& recorder, unsigned options) {
  std::unique_ptr<Listener> listener =
      Listener::bind(base, recordAccept, &recorder, options, -1, SocketAddress::loopbackV4());
  EXPECT_TRUE(listener) << "bind: errno " << errno;
  if (listener) listener->setErrorCallback(recordError, &recorder);
  return listener;
}

// Runs the loop for `duration` and reports whether `unexpected` ever held: for "nothing happens"
// checks, a bounded run instead of a sleep.
bool staysFalse(EventBase& base, const std::function<bool()>& unexpected,
                milliseconds duration = milliseconds(50)) {
  for (int i = 0; i < 4; ++i) base.loop(kLoopNonBlock);
  return !loopUntil(base, unexpected, duration);
}

// User plus system CPU time of this process.
std::chrono::microseconds cpuTime() {
  rusage usage{};
  (void)::getrusage(RUSAGE_SELF, &usage);
  const auto total = [](const timeval& tv) {
    return std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
  };
  return total(usage.ru_utime) + total(usage.ru_stime);
}

using ListenerTest = BackendTest;

TEST_P(ListenerTest, AcceptsEveryClientOnceWithItsPeerAddress) {
  EventBase base(options());
  Recorder recorder;
  std::unique_ptr<Listener> listener = bindLoopback(base, recorder, Listener::kCloseOnFree);
  ASSERT_TRUE(listener);
  const SocketAddress address = *listener->localAddress();

  constexpr size_t kClients = 200;
  std::vector<UniqueFd> clients;
  std::map<std::string, int> clientAddresses;
  for (size_t i = 0; i < kClients; ++i) {
    clients.push_back(connectTo(address));
    ASSERT_GE(clients.back().get(), 0);
    ++clientAddresses[SocketAddress::localOf(clients.back().get())->toString()];
  }
  ASSERT_TRUE(loopUntil(base, [&] { return recorder.fds.size() >= kClients; }));
  EXPECT_TRUE(staysFalse(base, [&] { return recorder.fds.size() > kClients; }));

  std::set<int> fds;
  std::map<std::string, int> peers;
  for (size_t i = 0; i < recorder.fds.size(); ++i) {
    const int fd = recorder.fds[i].get();
    fds.insert(fd);
    ++peers[recorder.peers[i].toString()];
    EXPECT_EQ(recorder.peers[i], *SocketAddress::peerOf(fd));
    EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0) << "accepted fds are non-blocking";
    EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0) << "accepted fds are close-on-exec";
  }
  EXPECT_EQ(fds.size(), kClients);
  EXPECT_EQ(peers, clientAddresses);
  EXPECT_TRUE(recorder.errors.empty());
}

TEST_P(ListenerTest, AcceptsAtMostMaxAcceptsPerWakeThenLetsTheLoopRun) {
  EventBase base(options());
  Recorder recorder;
  std::unique_ptr<Listener> listener =
      bindLoopback(base, recorder, Listener::kCloseOnFree | Listener::kDisabled);
  ASSERT_TRUE(listener);
  const size_t clientCount = 2 * Listener::kMaxAcceptsPerWake + 10;
  std::vector<UniqueFd> clients;
  for (size_t i = 0; i < clientCount; ++i) clients.push_back(connectTo(*listener->localAddress()));

  ASSERT_EQ(listener->enable(), 0);
  base.loop(kLoopOnce);
  EXPECT_EQ(recorder.fds.size(), static_cast<size_t>(Listener::kMaxAcceptsPerWake));
  ASSERT_TRUE(loopUntil(base, [&] { return recorder.fds.size() == clientCount; }));
}

TEST_P(ListenerTest, DisabledListenerLeavesConnectionsInTheBacklogUntilEnabled) {
  EventBase base(options());
  Recorder recorder;
  std::unique_ptr<Listener> listener =
      bindLoopback(base, recorder, Listener::kCloseOnFree | Listener::kDisabled);
  ASSERT_TRUE(listener);
  EXPECT_FALSE(listener->enabled());
  const SocketAddress address = *listener->localAddress();

  std::vector<UniqueFd> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(connectTo(address));
  EXPECT_TRUE(staysFalse(base, [&] { return !recorder.fds.empty(); }));

  ASSERT_EQ(listener->enable(), 0);
  EXPECT_TRUE(listener->enabled());
  ASSERT_TRUE(loopUntil(base, [&] { return recorder.fds.size() == 3; }));

  ASSERT_EQ(listener->disable(), 0);
  EXPECT_FALSE(listener->enabled());
  for (int i = 0; i < 2; ++i) clients.push_back(connectTo(address));
  EXPECT_TRUE(staysFalse(base, [&] { return recorder.fds.size() > 3; }));

  ASSERT_EQ(listener->enable(), 0);
  ASSERT_TRUE(loopUntil(base, [&] { return recorder.fds.size() == 5; }));
}

TEST_P(ListenerTest, NullCallbackHoldsConnectionsUntilACallbackIsSet) {
  EventBase base(options());
  Recorder recorder;
  std::unique_ptr<Listener> listener = Listener::bind(
      base, nullptr, nullptr, Listener::kCloseOnFree, -1, SocketAddress::loopbackV4());
  ASSERT_TRUE(listener);
  EXPECT_TRUE(listener->enabled());
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 2; ++i) clients.push_back(connectTo(*listener->localAddress()));
  for (int i = 0; i < 4; ++i) base.loop(kLoopNonBlock);
  // Nothing to call, so nothing was accepted: the connections are still queued.
  listener->setCallback(recordAccept, &recorder);
  ASSERT_TRUE(loopUntil(base, [&] { return recorder.fds.size() == 2; }));

  listener->setCallback(nullptr, nullptr);
  clients.push_back(connectTo(*listener->localAddress()));
  EXPECT_TRUE(staysFalse(base, [&] { return recorder.fds.size() > 2; }));
  listener->setCallback(recordAccept, &recorder);
  ASSERT_TRUE(loopUntil(base, [&] { return recorder.fds.size() == 3; }));
}

TEST_P(ListenerTest, CallbackThatDisablesTheListenerStopsTheAcceptLoop) {
  EventBase base(options());
  Recorder recorder;
  std::unique_ptr<Listener> listener =
      bindLoopback(base, recorder, Listener::kCloseOnFree | Listener::kDisabled);
  ASSERT_TRUE(listener);
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 5; ++i) clients.push_back(connectTo(*listener->localAddress()));
  recorder.afterAccept = [](Listener& l) { EXPECT_EQ(l.disable(), 0); };

  ASSERT_EQ(listener->enable(), 0);
  ASSERT_TRUE(loopUntil(base, [&] { return !recorder.fds.empty(); }));
  EXPECT_TRUE(staysFalse(base, [&] { return recorder.fds.size() > 1; }));
  EXPECT_FALSE(listener->enabled());

  recorder.afterAccept = nullptr;
  ASSERT_EQ(listener->enable(), 0);
  ASSERT_TRUE(loopUntil(base, [&] { return recorder.fds.size() == 5; }));
}

TEST_P(ListenerTest, CallbackThatDestroysTheListenerStopsAccepting) {
  EventBase base(options());
  Recorder recorder;
  std::unique_ptr<Listener> listener =
      bindLoopback(base, recorder, Listener::kCloseOnFree | Listener::kDisabled);
  ASSERT_TRUE(listener);
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 5; ++i) clients.push_back(connectTo(*listener->localAddress()));
  recorder.afterAccept = [&listener](Listener& l) {
    EXPECT_EQ(&l, listener.get());
    listener.reset();
  };

  ASSERT_EQ(listener->enable(), 0);
  ASSERT_TRUE(loopUntil(base, [&] { return !recorder.fds.empty(); }));
  EXPECT_EQ(listener, nullptr);
  EXPECT_TRUE(staysFalse(base, [&] { return recorder.fds.size() > 1; }));
  EXPECT_EQ(base.eventCount(), 0u) << "the listener's events are gone with it";
}

TEST_P(ListenerTest, CallbackThatDefersTheListenersDeletionStopsAccepting) {
  EventBase base(options());
  Recorder recorder;
  std::unique_ptr<Listener> listener =
      bindLoopback(base, recorder, Listener::kCloseOnFree | Listener::kDisabled);
  ASSERT_TRUE(listener);
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 5; ++i) clients.push_back(connectTo(*listener->localAddress()));
  recorder.afterAccept = [&listener, &base](Listener& l) {
    EXPECT_EQ(l.disable(), 0);
    base.deferDelete(std::move(listener));
  };

  ASSERT_EQ(listener->enable(), 0);
  ASSERT_TRUE(loopUntil(base, [&] { return !recorder.fds.empty(); }));
  EXPECT_TRUE(staysFalse(base, [&] { return recorder.fds.size() > 1; }));
  EXPECT_EQ(base.eventCount(), 0u);
}

TEST_P(ListenerTest, BindToAPortInUseFailsWithEaddrinuse) {
  EventBase base(options());
  Recorder recorder;
  std::unique_ptr<Listener> first = bindLoopback(base, recorder, Listener::kCloseOnFree);
  ASSERT_TRUE(first);
  errno = 0;
  std::unique_ptr<Listener> second =
      Listener::bind(base, recordAccept, &recorder,
                     Listener::kCloseOnFree | Listener::kReuseAddress, -1, *first->localAddress());
  EXPECT_EQ(second, nullptr);
  EXPECT_EQ(errno, EADDRINUSE);
}

TEST_P(ListenerTest, ReusePortLetsTwoListenersShareAPort) {
  EventBase base(options());
  Recorder recorder;
  const unsigned options = Listener::kCloseOnFree | Listener::kReusePort;
  std::unique_ptr<Listener> first = bindLoopback(base, recorder, options);
  ASSERT_TRUE(first);
  const SocketAddress address = *first->localAddress();
  std::unique_ptr<Listener> second =
      Listener::bind(base, recordAccept, &recorder, options, -1, address);
  ASSERT_NE(second, nullptr) << "errno " << errno;
  EXPECT_EQ(*second->localAddress(), address);

  std::vector<UniqueFd> clients;
  for (int i = 0; i < 20; ++i) clients.push_back(connectTo(address));
  ASSERT_TRUE(loopUntil(base, [&] { return recorder.fds.size() == 20; }));
}

TEST_P(ListenerTest, CloseOnFreeClosesTheFdOnDestruction) {
  EventBase base(options());
  Recorder recorder;
  std::unique_ptr<Listener> listener = bindLoopback(base, recorder, Listener::kCloseOnFree);
  ASSERT_TRUE(listener);
  const int fd = listener->fd();
  listener.reset();
  errno = 0;
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST_P(ListenerTest, WithoutCloseOnFreeTheFdStaysOpenAndListening) {
  EventBase base(options());
  Recorder recorder;
  std::unique_ptr<Listener> listener = bindLoopback(base, recorder, 0);
  ASSERT_TRUE(listener);
  UniqueFd fd(listener->fd());
  const SocketAddress address = *listener->localAddress();
  listener.reset();
  EXPECT_NE(::fcntl(fd.get(), F_GETFD), -1);
  UniqueFd client = connectTo(address);
  EXPECT_GE(client.get(), 0) << "still listening";
  EXPECT_TRUE(recorder.fds.empty());
}

TEST_P(ListenerTest, LocalAddressReportsTheBoundPortAndLabelsTheEvent) {
  EventBase base(options());
  Recorder recorder;
  std::unique_ptr<Listener> listener = bindLoopback(base, recorder, Listener::kCloseOnFree);
  ASSERT_TRUE(listener);
  const std::optional<SocketAddress> local = listener->localAddress();
  ASSERT_TRUE(local);
  EXPECT_EQ(local->family(), AF_INET);
  EXPECT_NE(local->port(), 0);
  EXPECT_EQ(*local, *SocketAddress::parse("127.0.0.1:" + std::to_string(local->port())));

  bool labelled = false;
  for (const EventInfo& row : base.dumpEvents()) {
    if (row.label != "listener " + local->toString()) continue;
    labelled = true;
    EXPECT_EQ(row.fd, listener->fd());
    EXPECT_EQ(row.state, EventState::kPending);
  }
  EXPECT_TRUE(labelled);
}

TEST_P(ListenerTest, SetLabelNamesTheAcceptAndRetryEvents) {
  EventBase base(options());
  Recorder recorder;
  std::unique_ptr<Listener> listener = bindLoopback(base, recorder, Listener::kCloseOnFree);
  ASSERT_TRUE(listener);
  listener->setLabel("listener web");
  int accept = 0;
  int retry = 0;
  for (const EventInfo& row : base.dumpEvents()) {
    if (row.label == "listener web") {
      ++accept;
      EXPECT_EQ(row.fd, listener->fd());
      EXPECT_EQ(row.state, EventState::kPending);
    } else if (row.label == "listener web accept retry") {
      ++retry;
      EXPECT_EQ(row.state, EventState::kInitialized);
    } else {
      EXPECT_EQ(row.label.rfind("listener ", 0), std::string::npos) << row.label;
    }
  }
  EXPECT_EQ(accept, 1);
  EXPECT_EQ(retry, 1);

  // The label stays through disable/enable: it names the owner, not the state.
  ASSERT_EQ(listener->disable(), 0);
  bool found = false;
  for (const EventInfo& row : base.dumpEvents()) {
    if (row.label != "listener web") continue;
    found = true;
    EXPECT_EQ(row.state, EventState::kInitialized);
  }
  EXPECT_TRUE(found);
}

TEST_P(ListenerTest, AdoptWrapsASocketAndMakesItNonBlocking) {
  EventBase base(options());
  Recorder recorder;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  const SocketAddress any = SocketAddress::loopbackV4();
  ASSERT_EQ(::bind(fd, any.data(), any.length()), 0);
  std::unique_ptr<Listener> listener =
      Listener::adopt(base, recordAccept, &recorder, Listener::kCloseOnFree, 16, fd);
  ASSERT_TRUE(listener);
  EXPECT_EQ(listener->fd(), fd);
  EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  UniqueFd client = connectTo(*listener->localAddress());
  ASSERT_TRUE(loopUntil(base, [&] { return recorder.fds.size() == 1; }));
}

TEST_P(ListenerTest, AdoptFailsOnANonSocketAndLeavesTheFdOpen) {
  EventBase base(options());
  Recorder recorder;
  int pipeFds[2];
  ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
  UniqueFd readEnd(pipeFds[0]);
  UniqueFd writeEnd(pipeFds[1]);
  errno = 0;
  EXPECT_EQ(
      Listener::adopt(base, recordAccept, &recorder, Listener::kCloseOnFree, -1, readEnd.get()),
      nullptr);
  EXPECT_EQ(errno, ENOTSOCK);
  EXPECT_NE(::fcntl(readEnd.get(), F_GETFD), -1);
}

TEST_P(ListenerTest, AdoptRefusesASocketThatIsNotListening) {
  EventBase base(options());
  Recorder recorder;
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_GE(fd.get(), 0);
  errno = 0;
  EXPECT_EQ(Listener::adopt(base, recordAccept, &recorder, Listener::kCloseOnFree, 0, fd.get()),
            nullptr);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_NE(::fcntl(fd.get(), F_GETFD), -1);
}

// A listening socket that was shut down stays readable while accept() fails with EINVAL: the
// listener must report it and back off, not spin.
TEST_P(ListenerTest, AnErrorItCannotClearIsReportedAndRetriedWithoutSpinning) {
  EventBase base(options());
  Recorder recorder;
  std::unique_ptr<Listener> listener = bindLoopback(base, recorder, Listener::kCloseOnFree);
  ASSERT_TRUE(listener);
  ASSERT_EQ(::shutdown(listener->fd(), SHUT_RDWR), 0);

  const auto cpuBefore = cpuTime();
  const auto wallBefore = std::chrono::steady_clock::now();
  EXPECT_FALSE(loopUntil(
      base, [] { return false; }, milliseconds(300)));
  const auto wall = std::chrono::steady_clock::now() - wallBefore;
  const auto cpu = cpuTime() - cpuBefore;

  ASSERT_FALSE(recorder.errors.empty());
  for (const int error : recorder.errors) EXPECT_EQ(error, EINVAL);
  // One attempt on the first wake-up, then one per kRetryDelay.
  EXPECT_LE(recorder.errors.size(), 2 + static_cast<size_t>(wall / Listener::kRetryDelay));
  EXPECT_LT(cpu, wall / 2);
}

// ---- One socket, several loops (evgate's options) --------------------------------------------

// A non-blocking listening socket on 127.0.0.1, any port.
UniqueFd listeningSocket() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  const SocketAddress any = SocketAddress::loopbackV4();
  EXPECT_EQ(::bind(fd.get(), any.data(), any.length()), 0);
  EXPECT_EQ(::listen(fd.get(), 128), 0);
  return fd;
}

// Open fds of this process (not counting the one that lists them).
size_t openFds() {
  size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++count;
  }
  return count - 1;
}

// How many epoll instances of this process have `fd` registered (/proc/self/fdinfo of each epoll
// fd lists a "tfd: N" line per registered fd).
size_t epollRegistrations(int fd) {
  size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fdinfo")) {
    std::ifstream info(entry.path());
    std::string line;
    while (std::getline(info, line)) {
      // "tfd: <fd, padded> events: ...": the number after the tag.
      if (line.rfind("tfd:", 0) != 0) continue;
      std::istringstream fields(line);
      std::string tag;
      int registered = -1;
      fields >> tag >> registered;
      if (registered == fd) ++count;
    }
  }
  return count;
}

TEST_P(ListenerTest, ListenersOfTwoLoopsOnOneSocketAcceptEachClientOnce) {
  EventBase first(options());
  EventBase second(options());
  UniqueFd socket = listeningSocket();
  const SocketAddress address = *SocketAddress::localOf(socket.get());
  Recorder a;
  Recorder b;
  // Neither closes the shared socket: its owner does, once both are gone.
  std::unique_ptr<Listener> onFirst =
      Listener::adopt(first, recordAccept, &a, Listener::kExclusiveAccept, 0, socket.get());
  std::unique_ptr<Listener> onSecond =
      Listener::adopt(second, recordAccept, &b, Listener::kExclusiveAccept, 0, socket.get());
  ASSERT_TRUE(onFirst && onSecond);
  for (EventBase* base : {&first, &second}) {
    const std::vector<EventInfo> events = base->dumpEvents();
    const auto accept = std::find_if(events.begin(), events.end(), [&](const EventInfo& info) {
      return info.fd == socket.get() && (info.events & kRead);
    });
    ASSERT_NE(accept, events.end());
    EXPECT_NE(accept->events & kExclusive, 0) << "registered for exclusive wake-ups";
  }

  constexpr size_t kClients = 100;
  std::vector<UniqueFd> clients;
  for (size_t i = 0; i < kClients; ++i) clients.push_back(connectTo(address));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (a.fds.size() + b.fds.size() < kClients && std::chrono::steady_clock::now() < deadline) {
    first.loop(kLoopNonBlock);
    second.loop(kLoopNonBlock);
  }
  ASSERT_EQ(a.fds.size() + b.fds.size(), kClients);
  std::set<std::string> peers;
  for (const Recorder* recorder : {&a, &b}) {
    for (const SocketAddress& peer : recorder->peers) peers.insert(peer.toString());
  }
  EXPECT_EQ(peers.size(), kClients) << "each client accepted once";

  // One loop's listener goes; the other goes on accepting on the socket. The socket stays open,
  // so the one that went must have taken it out of its epoll itself (del(), not
  // delBeforeClose()): otherwise that epoll would keep waking on it.
  const bool epoll = first.backendName() == "epoll";
  if (epoll) {
    EXPECT_EQ(epollRegistrations(socket.get()), 2u);
  }
  onFirst.reset();
  if (epoll) {
    EXPECT_EQ(epollRegistrations(socket.get()), 1u);
  }
  UniqueFd late = connectTo(address);
  ASSERT_TRUE(loopUntil(second, [&] { return a.fds.size() + b.fds.size() == kClients + 1; }));
  EXPECT_EQ(b.peers.back(), *SocketAddress::localOf(late.get()));
}

TEST_P(ListenerTest, SharedReserveListenersOfOneThreadHoldOneReserveFdBetweenThem) {
  EventBase base(options());
  UniqueFd sockets[3] = {listeningSocket(), listeningSocket(), listeningSocket()};
  Recorder recorder;
  const size_t before = openFds();
  std::unique_ptr<Listener> first =
      Listener::adopt(base, recordAccept, &recorder, Listener::kSharedReserve, 0, sockets[0].get());
  ASSERT_TRUE(first);
  EXPECT_EQ(openFds(), before + 1) << "the thread's reserve";
  std::unique_ptr<Listener> second =
      Listener::adopt(base, recordAccept, &recorder, Listener::kSharedReserve, 0, sockets[1].get());
  ASSERT_TRUE(second);
  EXPECT_EQ(openFds(), before + 1) << "shared";
  std::unique_ptr<Listener> own =
      Listener::adopt(base, recordAccept, &recorder, 0, 0, sockets[2].get());
  ASSERT_TRUE(own);
  EXPECT_EQ(openFds(), before + 2) << "a listener without the option has its own";
  first.reset();
  EXPECT_EQ(openFds(), before + 2) << "the reserve stays while a listener uses it";
  second.reset();
  EXPECT_EQ(openFds(), before + 1) << "the last user closes it";
  own.reset();
  EXPECT_EQ(openFds(), before);
}

// ---- EMFILE ----------------------------------------------------------------------------------
//
// Runs in a forked child: it lowers RLIMIT_NOFILE, which would disturb every other test of the
// process. Returns 0, or 1 after printing the first check that failed.

#define CHILD_CHECK(condition)                                                                   \
  do {                                                                                           \
    if (!(condition)) {                                                                          \
      (void)std::fprintf(stderr, "EMFILE child, line %d: %s (errno %d)\n", __LINE__, #condition, \
                         errno);                                                                 \
      return 1;                                                                                  \
    }                                                                                            \
  } while (false)

// True if the peer closed `fd` (read returns 0 or ECONNRESET) within `limit`.
bool closedByPeer(int fd, milliseconds limit) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return false;
  char byte;
  const ssize_t n = ::read(fd, &byte, 1);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

bool blockingConnect(int fd, const SocketAddress& to) {
  return ::connect(fd, to.data(), to.length()) == 0;
}

// CPU time used while the loop runs for `wall`.
std::chrono::microseconds cpuWhileLooping(EventBase& base, milliseconds wall) {
  const auto before = cpuTime();
  loopUntil(
      base, [] { return false; }, wall);
  return cpuTime() - before;
}

int runEmfileScenario(Backend backend) {
  EventBaseOptions options;
  options.backend = backend;
  EventBase base(options);

  // Listener 1, with its reserve fd.
  Recorder first;
  std::unique_ptr<Listener> withReserve = Listener::bind(
      base, recordAccept, &first, Listener::kCloseOnFree, -1, SocketAddress::loopbackV4());
  CHILD_CHECK(withReserve);
  withReserve->setErrorCallback(recordError, &first);

  // A listening socket for listener 2, adopted once fds have run out: it gets no reserve.
  UniqueFd secondFd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  const SocketAddress any = SocketAddress::loopbackV4();
  CHILD_CHECK(::bind(secondFd.get(), any.data(), any.length()) == 0);
  CHILD_CHECK(::listen(secondFd.get(), 64) == 0);

  // Client sockets must exist before the limit is lowered; connecting needs no new fd.
  std::vector<UniqueFd> shedClients;
  std::vector<UniqueFd> queuedClients;
  for (int i = 0; i < 5; ++i) shedClients.emplace_back(::socket(AF_INET, SOCK_STREAM, 0));
  for (int i = 0; i < 3; ++i) queuedClients.emplace_back(::socket(AF_INET, SOCK_STREAM, 0));

  // One connection through the whole path first. Besides checking the setup, this warms
  // UBSan's vptr cache: a cache miss probes memory through a pipe, which needs two free fds.
  {
    UniqueFd warmUp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    CHILD_CHECK(blockingConnect(warmUp.get(), *withReserve->localAddress()));
    CHILD_CHECK(loopUntil(
        base, [&] { return first.fds.size() == 1; }, milliseconds(2000)));
    first.fds.clear();
    first.peers.clear();
  }

  // From here on, no new fd: the soft limit becomes the lowest free fd number.
  rlimit original{};
  CHILD_CHECK(::getrlimit(RLIMIT_NOFILE, &original) == 0);
  const int lowestFree = ::dup(0);
  CHILD_CHECK(lowestFree >= 0);
  ::close(lowestFree);
  rlimit lowered = original;
  lowered.rlim_cur = static_cast<rlim_t>(lowestFree);
  CHILD_CHECK(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
  CHILD_CHECK(::dup(0) == -1 && errno == EMFILE);

  Recorder second;
  std::unique_ptr<Listener> withoutReserve =
      Listener::adopt(base, recordAccept, &second, Listener::kCloseOnFree, 0, secondFd.release());
  CHILD_CHECK(withoutReserve);
  withoutReserve->setErrorCallback(recordError, &second);

  // With a reserve: every client is closed promptly, every drop reported, no spin.
  for (UniqueFd& client : shedClients) {
    CHILD_CHECK(blockingConnect(client.get(), *withReserve->localAddress()));
  }
  const milliseconds window(300);
  const auto cpuShedding = cpuWhileLooping(base, window);
  CHILD_CHECK(first.errors.size() == shedClients.size());
  for (const int error : first.errors) CHILD_CHECK(error == EMFILE);
  CHILD_CHECK(first.fds.empty());
  for (UniqueFd& client : shedClients) CHILD_CHECK(closedByPeer(client.get(), milliseconds(2000)));
  CHILD_CHECK(cpuShedding < window / 2);

  // Without a reserve: the clients wait in the backlog, the listener retries every
  // kRetryDelay, and still does not spin.
  for (UniqueFd& client : queuedClients) {
    CHILD_CHECK(blockingConnect(client.get(), *withoutReserve->localAddress()));
  }
  const auto cpuPaused = cpuWhileLooping(base, window);
  CHILD_CHECK(!second.errors.empty());
  CHILD_CHECK(second.errors.size() <= 2 + static_cast<size_t>(window / Listener::kRetryDelay));
  for (const int error : second.errors) CHILD_CHECK(error == EMFILE);
  CHILD_CHECK(second.fds.empty());
  for (UniqueFd& client : queuedClients) CHILD_CHECK(!closedByPeer(client.get(), milliseconds(0)));
  CHILD_CHECK(cpuPaused < window / 2);

  // Fds again: the queued clients are accepted after the pause, and new clients as usual.
  CHILD_CHECK(::setrlimit(RLIMIT_NOFILE, &original) == 0);
  CHILD_CHECK(loopUntil(
      base, [&] { return second.fds.size() == queuedClients.size(); }, milliseconds(2000)));
  UniqueFd late(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  CHILD_CHECK(blockingConnect(late.get(), *withReserve->localAddress()));
  CHILD_CHECK(loopUntil(
      base, [&] { return first.fds.size() == 1; }, milliseconds(2000)));
  CHILD_CHECK(first.peers[0] == *SocketAddress::localOf(late.get()));
  CHILD_CHECK(first.errors.size() == shedClients.size());
  return 0;
}

// Two listeners share their thread's reserve (kSharedReserve): each sheds with it in turn, as
// a listener with its own reserve does.
int runSharedReserveEmfileScenario(Backend backend) {
  EventBaseOptions options;
  options.backend = backend;
  EventBase base(options);
  Recorder recorders[2];
  std::unique_ptr<Listener> listeners[2];
  for (int i = 0; i < 2; ++i) {
    listeners[i] = Listener::bind(base, recordAccept, &recorders[i],
                                  Listener::kCloseOnFree | Listener::kSharedReserve, -1,
                                  SocketAddress::loopbackV4());
    CHILD_CHECK(listeners[i]);
    listeners[i]->setErrorCallback(recordError, &recorders[i]);
  }
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 6; ++i) clients.emplace_back(::socket(AF_INET, SOCK_STREAM, 0));
  // Warm-up, as in runEmfileScenario (UBSan's vptr cache needs fds on a miss).
  {
    UniqueFd warmUp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    CHILD_CHECK(blockingConnect(warmUp.get(), *listeners[0]->localAddress()));
    CHILD_CHECK(loopUntil(
        base, [&] { return recorders[0].fds.size() == 1; }, milliseconds(2000)));
    recorders[0].fds.clear();
  }

  rlimit original{};
  CHILD_CHECK(::getrlimit(RLIMIT_NOFILE, &original) == 0);
  const int lowestFree = ::dup(0);
  CHILD_CHECK(lowestFree >= 0);
  ::close(lowestFree);
  rlimit lowered = original;
  lowered.rlim_cur = static_cast<rlim_t>(lowestFree);
  CHILD_CHECK(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);

  // Clients of both listeners, interleaved: every one is closed promptly, every drop reported
  // by the listener it came to, and nothing spins.
  for (size_t i = 0; i < clients.size(); ++i) {
    CHILD_CHECK(blockingConnect(clients[i].get(), *listeners[i % 2]->localAddress()));
  }
  const milliseconds window(300);
  const auto cpu = cpuWhileLooping(base, window);
  for (const Recorder& recorder : recorders) {
    CHILD_CHECK(recorder.errors.size() == clients.size() / 2);
    for (const int error : recorder.errors) CHILD_CHECK(error == EMFILE);
    CHILD_CHECK(recorder.fds.empty());
  }
  for (UniqueFd& client : clients) CHILD_CHECK(closedByPeer(client.get(), milliseconds(2000)));
  CHILD_CHECK(cpu < window / 2);

  CHILD_CHECK(::setrlimit(RLIMIT_NOFILE, &original) == 0);
  UniqueFd late(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  CHILD_CHECK(blockingConnect(late.get(), *listeners[1]->localAddress()));
  CHILD_CHECK(loopUntil(
      base, [&] { return recorders[1].fds.size() == 1; }, milliseconds(2000)));
  return 0;
}

// Runs an fd-exhaustion scenario in a child process (it lowers its own fd limit) and expects it
// to pass: exit status 0, its message on stderr otherwise.
void expectScenarioPassesInChild(int (*scenario)(Backend), Backend backend) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::alarm(30);  // a hung child dies of SIGALRM instead of hanging the test
    ::_exit(scenario(backend));
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "see the child's message on stderr";
}

TEST_P(ListenerTest, SurvivesEmfileWithoutSpinningAndRecovers) {
  expectScenarioPassesInChild(runEmfileScenario, GetParam());
}

TEST_P(ListenerTest, ListenersSharingTheThreadsReserveSurviveEmfile) {
  expectScenarioPassesInChild(runSharedReserveEmfileScenario, GetParam());
}

EVGATE_INSTANTIATE_BACKENDS(ListenerTest);

}  // namespace
}  // namespace evgate::reactor
