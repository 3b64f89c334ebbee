// Gateway::apply (a change by name, what the admin API makes) and listener sockets: one socket
// per listener shared by every worker (listener_sockets: shared) or one per worker, the fds
// each costs, all or nothing, and thousands of listeners created one by one, each accepting as
// soon as its change returns. Real sockets on 127.0.0.1; the test thread is the owner.

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "gateway/gateway.h"
#include "gateway/log.h"
#include "reactor/socket_address.h"
#include "tests/gateway/gateway_test_util.h"

namespace evgate::gateway {
namespace {

using namespace std::chrono_literals;
using reactor::SocketAddress;
using testing::baseConfig;
using testing::clusterOf;
using testing::connectTo;
using testing::EchoBackend;
using testing::echoes;
using testing::eventually;
using testing::listenerOf;
using testing::listening;
using testing::UniqueFd;

// Listeners the many-listeners test creates: 10,000 (the admin goal) in an optimised build, fewer
// under the sanitizers and in debug builds, which are 5 to 20 times slower. Still more than the
// 1,250 that listener_sockets: auto gives a socket per worker under a 20,000 fd limit, so that
// the shared sockets after them are exercised there too.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(NDEBUG)
constexpr int kManyListeners = 3000;
#else
constexpr int kManyListeners = 10'000;
#endif

// Open fds of this process (not counting the one that lists them).
size_t openFds() {
  size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++count;
  }
  return count - 1;
}

// The accept events labelled "listener NAME", over every worker.
size_t acceptEvents(const Gateway& gateway, const std::string& name) {
  size_t count = 0;
  for (const LoopEvents& loop : gateway.listEvents()) {
    for (const reactor::EventInfo& event : loop.events) {
      count += event.label == "listener " + name ? 1 : 0;
    }
  }
  return count;
}

Gateway::Delta putListeners(const std::vector<ListenerConfig>& listeners) {
  Gateway::Delta delta;
  delta.putListeners = listeners;
  return delta;
}

// An echo backend for thousands of short flows, one at a time: accepts, echoes what the first
// read brings, closes. (test::EchoServer keeps a thread and an fd per connection until it stops:
// too many for 10,000 flows under the fd limit.)
class OneShotEchoBackend {
 public:
  OneShotEchoBackend() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const SocketAddress any = SocketAddress::loopbackV4();
    EXPECT_EQ(::bind(fd_, any.data(), any.length()), 0);
    EXPECT_EQ(::listen(fd_, 128), 0);
    address_ = *SocketAddress::localOf(fd_);
    thread_ = std::thread([this] { serve(); });
  }
  ~OneShotEchoBackend() {
    ::shutdown(fd_, SHUT_RDWR);  // wakes the blocked accept()
    thread_.join();
    ::close(fd_);
  }
  OneShotEchoBackend(const OneShotEchoBackend&) = delete;
  OneShotEchoBackend& operator=(const OneShotEchoBackend&) = delete;

  const SocketAddress& address() const { return address_; }

 private:
  void serve() {
    for (;;) {
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      pollfd p{fd, POLLIN, 0};
      char buf[256];
      if (::poll(&p, 1, 5000) == 1) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) (void)::send(fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
      }
      ::close(fd);
    }
  }

  int fd_ = -1;
  SocketAddress address_;
  std::thread thread_;
};

// ---- Listener sockets ----------------------------------------------------------------------

class ListenerSocketsTest : public ::testing::TestWithParam<ListenerSockets> {
 protected:
  Config config() const {
    Config config = baseConfig();
    config.listenerSockets = GetParam();
    return config;
  }
  // With auto, the few listeners of these tests get a socket per worker.
  bool shared() const { return GetParam() == ListenerSockets::kShared; }
};

std::string socketsName(const ::testing::TestParamInfo<ListenerSockets>& info) {
  switch (info.param) {
    case ListenerSockets::kShared:
      return "Shared";
    case ListenerSockets::kPerWorker:
      return "PerWorker";
    default:
      return "Auto";
  }
}

INSTANTIATE_TEST_SUITE_P(Sockets, ListenerSocketsTest,
                         ::testing::Values(ListenerSockets::kAuto, ListenerSockets::kShared,
                                           ListenerSockets::kPerWorker),
                         socketsName);

TEST_P(ListenerSocketsTest, EachListenerCostsOneFdOrOnePerWorkerAndEveryWorkerAcceptsOnIt) {
  OneShotEchoBackend backend;  // keeps no fd once a flow is done
  Config config = this->config();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());
  const size_t before = openFds();

  constexpr size_t kListeners = 20;
  std::vector<ListenerConfig> listeners;
  for (size_t i = 0; i < kListeners; ++i) {
    listeners.push_back(listenerOf("l" + std::to_string(i), "c"));
  }
  ASSERT_FALSE(gateway.apply(putListeners(listeners)));
  // Per listener one socket (or one per worker); per worker one reserve fd for EMFILE,
  // whatever the number of listeners.
  const size_t perListener = shared() ? 1 : gateway.workerCount();
  EXPECT_EQ(openFds(), before + kListeners * perListener + gateway.workerCount());
  for (const ListenerConfig& listener : listeners) {
    EXPECT_EQ(gateway.listener(listener.name)->sockets, perListener) << listener.name;
    EXPECT_EQ(acceptEvents(gateway, listener.name), gateway.workerCount()) << listener.name;
    UniqueFd client = connectTo(gateway.listener(listener.name)->bound);
    EXPECT_TRUE(echoes(client.get(), "via " + listener.name));
  }
  ASSERT_TRUE(eventually([&] { return gateway.flowCount() == 0; }));

  // Gone: every socket closed (nobody listens there), and the reserves with the last listener.
  std::vector<SocketAddress> bound;
  Gateway::Delta removeAll;
  for (const ListenerConfig& listener : listeners) {
    bound.push_back(gateway.listener(listener.name)->bound);
    removeAll.removeListeners.push_back(listener.name);
  }
  ASSERT_FALSE(gateway.apply(removeAll));
  EXPECT_TRUE(gateway.config().listeners.empty());
  EXPECT_EQ(openFds(), before);
  for (const SocketAddress& address : bound) EXPECT_FALSE(listening(address)) << address.toString();
}

TEST_P(ListenerSocketsTest, StopAcceptingClosesTheSocketsOnEveryWorker) {
  EchoBackend backend;
  Config config = this->config();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());
  const SocketAddress address = gateway.listeners()[0]->bound;
  UniqueFd open = connectTo(address);
  ASSERT_TRUE(echoes(open.get(), "before"));
  gateway.stopAccepting();
  // The workers let go of the socket in their own time: refused once the last one has.
  EXPECT_TRUE(eventually([&] { return !listening(address); }));
  EXPECT_TRUE(echoes(open.get(), "the flow goes on"));
}

// ---- Gateway::apply ------------------------------------------------------------------------

TEST(GatewayApplyTest, ANewListenerAcceptsWhenApplyReturnsAndGoesLastInTheConfig) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());

  ::testing::internal::CaptureStderr();
  const std::optional<std::string> error =
      gateway.apply(putListeners({listenerOf("api", "c")}), "API change");
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_FALSE(error) << *error;
  EXPECT_NE(log.find("reloaded (API change): +1 listeners, -0 listeners, 0 listeners updated, "
                     "0 clusters changed"),
            std::string::npos)
      << log;
  // No wait: every worker accepts once apply() has returned.
  UniqueFd client = connectTo(gateway.listener("api")->bound);
  EXPECT_TRUE(echoes(client.get(), "at once"));
  ASSERT_EQ(gateway.config().listeners.size(), 2u);
  EXPECT_EQ(gateway.config().listeners[1].name, "api");
  EXPECT_EQ(gateway.listeners()[1], gateway.listener("api"));
  EXPECT_EQ(gateway.findListener("api"), &gateway.config().listeners[1]);
  EXPECT_EQ(gateway.findListener("nope"), nullptr);
}

TEST(GatewayApplyTest, RemovalsKeepTheOrderOfTheOthers) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  for (const char* name : {"a", "b", "c", "d", "e"}) {
    config.listeners.push_back(listenerOf(name, "c"));
  }
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());
  Gateway::Delta delta;
  delta.removeListeners = {"d", "b"};
  ASSERT_FALSE(gateway.apply(delta));
  std::vector<std::string> names;
  for (const ListenerConfig& listener : gateway.config().listeners) names.push_back(listener.name);
  EXPECT_EQ(names, (std::vector<std::string>{"a", "c", "e"}));
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(gateway.listeners()[i]->config.name, names[i]);
    EXPECT_EQ(gateway.listener(names[i]), gateway.listeners()[i]);
  }
  EXPECT_EQ(gateway.listener("b"), nullptr);
  UniqueFd client = connectTo(gateway.listener("e")->bound);
  EXPECT_TRUE(echoes(client.get(), "e still relays"));
}

TEST(GatewayApplyTest, AChangedClusterReachesTheListenersThatUseItWithoutNamingThem) {
  EchoBackend before;
  EchoBackend after;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {before.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());
  Gateway::Delta delta;
  delta.putClusters.push_back(clusterOf("c", {after.address()}));
  ASSERT_FALSE(gateway.apply(delta));
  EXPECT_EQ(gateway.listener("web")->cluster, gateway.cluster("c"));
  UniqueFd client = connectTo(gateway.listener("web")->bound);
  EXPECT_TRUE(echoes(client.get(), "to the new endpoint"));
  EXPECT_EQ(after.accepted(), 1);
  EXPECT_EQ(before.accepted(), 0);
}

TEST(GatewayApplyTest, AChangeThatFailsChangesNothingAndClosesWhatItOpened) {
  EchoBackend backend;
  Config config = baseConfig();
  config.listenerSockets = ListenerSockets::kShared;  // one socket per listener: calls count them
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  int calls = 0;
  std::vector<SocketAddress> opened;
  Gateway gateway(config, [&](const SocketAddress& address) {
    if (++calls == 3) {  // b's socket (web's was the first, a's the second)
      errno = EADDRINUSE;
      return -1;
    }
    const int fd = openListeningSocket(address);
    opened.push_back(*SocketAddress::localOf(fd));
    return fd;
  });
  ASSERT_FALSE(gateway.start());
  const Config running = gateway.config();
  const size_t fds = openFds();

  Gateway::Delta delta = putListeners({listenerOf("a", "c"), listenerOf("b", "c")});
  ListenerConfig web = running.listeners[0];
  web.maxConnections = 1;
  delta.putListeners.push_back(web);
  const std::optional<std::string> error = gateway.apply(delta);
  ASSERT_TRUE(error);
  EXPECT_NE(error->find("listener b: cannot listen on"), std::string::npos) << *error;
  EXPECT_EQ(gateway.config(), running);
  EXPECT_EQ(gateway.listener("a"), nullptr);
  EXPECT_EQ(openFds(), fds);
  EXPECT_FALSE(listening(opened[1])) << "a's socket";
  EXPECT_EQ(acceptEvents(gateway, "a"), 0u);

  // The same with every socket open, but the pre-commit step (the state file) failing.
  bool preCommitted = false;
  const std::optional<std::string> refused = gateway.apply(delta, {}, [&] {
    preCommitted = true;
    return std::optional<std::string>("cannot write the state file");
  });
  ASSERT_TRUE(preCommitted);
  ASSERT_EQ(refused, "cannot write the state file");
  EXPECT_EQ(gateway.config(), running);
  EXPECT_EQ(gateway.listeners()[0]->config.maxConnections, running.listeners[0].maxConnections);
  EXPECT_EQ(openFds(), fds);
  ASSERT_EQ(opened.size(), 4u);
  EXPECT_FALSE(listening(opened[2])) << "a's second socket";
  EXPECT_FALSE(listening(opened[3])) << "b's socket";

  // Then it applies whole.
  ASSERT_FALSE(gateway.apply(delta));
  EXPECT_EQ(gateway.config().listeners.size(), 3u);
  EXPECT_EQ(gateway.findListener("web")->maxConnections, 1u);
  UniqueFd client = connectTo(gateway.listener("b")->bound);
  EXPECT_TRUE(echoes(client.get(), "through b"));
}

TEST(GatewayApplyTest, ADeltaInvalidAsAWholeIsRefusedByNameAndChangesNothing) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());
  const Config running = gateway.config();
  const SocketAddress webBind = gateway.listener("web")->bound;
  // The running listener's bound address as the bind of another one: a clash.
  ListenerConfig web = running.listeners[0];
  web.bind = webBind;
  ASSERT_FALSE(gateway.apply(putListeners({web})));
  const Config withFixedBind = gateway.config();
  const size_t fds = openFds();

  struct Case {
    const char* what;
    Gateway::Delta delta;
    std::string error;
  };
  std::vector<Case> cases;
  cases.push_back({"unknown cluster", putListeners({listenerOf("api", "nope")}),
                   "listener api uses cluster nope, which does not exist"});
  Gateway::Delta removeUsed;
  removeUsed.removeClusters = {"c"};
  cases.push_back(
      {"cluster in use", removeUsed, "listener web uses cluster c, which does not exist"});
  cases.push_back({"name twice", putListeners({listenerOf("api", "c"), listenerOf("api", "c")}),
                   "listener api appears twice in one change"});
  cases.push_back({"bind in use", putListeners({listenerOf("api", "c", webBind)}),
                   "listener api: " + webBind.toString() + " is already used by listener web"});
  Gateway::Delta twoOnOneBind =
      putListeners({listenerOf("a", "c", *SocketAddress::parse("127.0.0.1:1")),
                    listenerOf("b", "c", *SocketAddress::parse("127.0.0.1:1"))});
  cases.push_back(
      {"one bind twice", twoOnOneBind, "listener b: 127.0.0.1:1 is already used by listener a"});
  for (const Case& c : cases) {
    EXPECT_EQ(gateway.check(c.delta), c.error) << c.what;
    EXPECT_EQ(gateway.apply(c.delta), c.error) << c.what;
    EXPECT_EQ(gateway.config(), withFixedBind) << c.what;
    EXPECT_EQ(openFds(), fds) << c.what;
  }
  // Moving web away frees its bind for another listener in the same change.
  ListenerConfig moved = web;
  moved.bind = SocketAddress::loopbackV4();
  Gateway::Delta swap = putListeners({moved, listenerOf("api", "c", webBind)});
  EXPECT_EQ(gateway.check(swap), std::nullopt);
  ASSERT_FALSE(gateway.apply(swap));
  UniqueFd client = connectTo(webBind);
  EXPECT_TRUE(echoes(client.get(), "through api"));
}

// ---- Many listeners ------------------------------------------------------------------------

TEST(GatewayApplyTest, ThousandsOfListenersCreatedOneByOneEachAcceptAtOnceWithinTheFdBudget) {
  // The issue's limit, 20,000 fds (or less, if the hard limit is lower), whatever the host's:
  // listener_sockets: auto then gives the first listeners a socket per worker and shares the
  // sockets of the ones after. (Each test runs in a process of its own: no other test sees it.)
  constexpr rlim_t kIssueFdLimit = 20'000;
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  limit.rlim_cur = std::min(limit.rlim_max, kIssueFdLimit);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &limit), 0);
  // The listeners' sockets (an eighth of the limit goes to per-worker ones) and a margin.
  if (limit.rlim_cur - limit.rlim_cur / 8 < static_cast<rlim_t>(kManyListeners) + 1000) {
    GTEST_SKIP() << "needs more fds than the limit, " << limit.rlim_cur;
  }
  OneShotEchoBackend backend;
  // Two workers (what the default gives on this 2-CPU machine), listener_sockets: auto.
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());
  const size_t before = openFds();
  // auto: a socket per worker while all listeners' sockets stay within an eighth of the fd
  // limit, then one socket per listener.
  const size_t budget = static_cast<size_t>(limit.rlim_cur) / 8;
  size_t sockets = 0;
  for (int i = 0; i < kManyListeners; ++i) {
    sockets += sockets + gateway.workerCount() <= budget ? gateway.workerCount() : 1;
  }
  // Two log lines per change: not 20,000 of them in the test's output.
  struct QuietLog {
    QuietLog() { configureLog(LogFormat::kText, LogLevel::kWarn); }
    ~QuietLog() { configureLog(LogFormat::kText, LogLevel::kInfo); }
  } quiet;

  // Fixed ports below the ephemeral range, on a loopback address of this process's own: a
  // port-0 bind searches the ephemeral ports, which a busy host's TIME_WAIT sockets crowd (each
  // search then costs milliseconds of kernel time, and may fail).
  const int pid = ::getpid();
  const std::string host =
      "127." + std::to_string(100 + (pid >> 8) % 100) + "." + std::to_string(pid & 255) + ".1";
  for (int i = 0; i < kManyListeners; ++i) {
    const std::string name = "l" + std::to_string(i);
    const SocketAddress bind = *SocketAddress::parse(host + ":" + std::to_string(20000 + i));
    const std::optional<std::string> error =
        gateway.apply(putListeners({listenerOf(name, "c", bind)}));
    ASSERT_FALSE(error) << name << ": " << *error;
    // The first client right after the change returns: accepted and relayed both ways.
    if (i % 100 == 0) {
      UniqueFd client = connectTo(gateway.listener(name)->bound);
      ASSERT_TRUE(echoes(client.get(), "x")) << name;
    }
  }
  // One fd per listener past the budget, one reserve per worker: the rest is for flows.
  EXPECT_EQ(openFds(), before + sockets + gateway.workerCount());
  EXPECT_LE(sockets, budget + static_cast<size_t>(kManyListeners));
  EXPECT_EQ(gateway.listeners().front()->sockets, gateway.workerCount());
  ASSERT_LT(sockets, static_cast<size_t>(kManyListeners) * gateway.workerCount())
      << "past the budget, listeners share their socket";
  EXPECT_EQ(gateway.listeners().back()->sockets, 1u);
  ASSERT_EQ(gateway.config().listeners.size(), static_cast<size_t>(kManyListeners));
  // Every one accepts and relays.
  for (int i = 0; i < kManyListeners; ++i) {
    UniqueFd client = connectTo(gateway.listeners()[static_cast<size_t>(i)]->bound);
    ASSERT_TRUE(echoes(client.get(), "y")) << "listener " << i;
  }
  ASSERT_TRUE(eventually([&] { return gateway.flowCount() == 0; }));

  Gateway::Delta removeAll;
  for (const ListenerConfig& listener : gateway.config().listeners) {
    removeAll.removeListeners.push_back(listener.name);
  }
  ASSERT_FALSE(gateway.apply(removeAll));
  EXPECT_TRUE(gateway.listeners().empty());
  EXPECT_EQ(openFds(), before);
}

}  // namespace
}  // namespace evgate::gateway
