// evgate-loadgen: a load generator for TCP relays, and the echo backend it measures them with.
// Plain epoll, one thread, non-blocking sockets; every run is bounded by a duration or a count and
// targets 127.0.0.1 only. Each client mode prints one JSON object on stdout.
//
//   evgate-loadgen serve      --listen 127.0.0.1:PORT [--duration S]
//   evgate-loadgen throughput --target 127.0.0.1:PORT [--connections N] [--duration S] [--warmup S]
//   evgate-loadgen connrate   --target 127.0.0.1:PORT [--connections N] [--duration S] [--warmup S]
//   evgate-loadgen pingpong   --target 127.0.0.1:PORT [--connections N] [--duration S] [--warmup S]
//   evgate-loadgen idle       --target 127.0.0.1:PORT [--connections N] --pid PID [--pid PID...]
//                             [--hold S]
//
// serve:      echo server (what it reads it writes back), no logging; runs until SIGINT/SIGTERM or
//             --duration (default 3600 s).
// throughput: N connections (default 8) each write 64 KiB chunks as fast as the socket takes them
//             and read the echo; reports the echoed bytes received per second (Gbit/s). Every
//             byte crosses the relay twice, once each way.
// connrate:   N concurrent loops (default 16) of connect, send 64 bytes, read the 64-byte echo,
//             close; reports completed connections per second.
// pingpong:   N connections (default 1), each sends 64 bytes and waits for the 64-byte echo before
//             the next; reports round trips per second and latency p50/p99/p999 in µs.
// idle:       opens N connections (default 5000), one 64-byte round trip on each (so the relay
//             has connected upstream), holds them idle, and reports the growth of the VmRSS of
//             the given PIDs (summed; /proc/PID/status) per connection. Kernel socket memory is
//             not in VmRSS: this is the relay's user-space cost per idle flow.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "reactor/socket_address.h"

namespace {

using evgate::reactor::SocketAddress;

constexpr size_t kSmall = 64;
constexpr size_t kChunk = 64 * 1024;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "evgate-loadgen: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

[[noreturn]] void usage(const char* message) {
  std::fprintf(stderr,
               "evgate-loadgen: %s\n"
               "usage: evgate-loadgen serve --listen 127.0.0.1:PORT [--duration S]\n"
               "       evgate-loadgen throughput|connrate|pingpong --target 127.0.0.1:PORT\n"
               "                      [--connections N] [--duration S] [--warmup S]\n"
               "       evgate-loadgen idle --target 127.0.0.1:PORT [--connections N] --pid PID...\n"
               "                      [--hold S]\n",
               message);
  std::exit(2);
}

int64_t nowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct Options {
  std::string mode;
  SocketAddress address;
  int connections = -1;
  double duration = 5;
  double warmup = 0.5;
  double hold = 1;
  std::vector<long> pids;
};

// Only 127.0.0.1: this tool must never point load at another host.
SocketAddress parseLoopback(std::string_view text) {
  const auto address = SocketAddress::parse(text);
  if (!address || address->family() != AF_INET) usage("the address must be 127.0.0.1:PORT");
  const auto* in = reinterpret_cast<const sockaddr_in*>(address->data());
  if (in->sin_addr.s_addr != htonl(INADDR_LOOPBACK) || in->sin_port == 0) {
    usage("the address must be 127.0.0.1:PORT");
  }
  return *address;
}

double parseNumber(const char* text, double min, double max) {
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(value >= min && value <= max)) usage("bad number");
  return value;
}

Options parseOptions(int argc, char** argv) {
  if (argc < 2) usage("no mode");
  Options o;
  o.mode = argv[1];
  bool haveAddress = false;
  for (int i = 2; i < argc; i += 2) {
    const std::string_view key = argv[i];
    if (i + 1 >= argc) usage("an option lacks its value");
    const char* value = argv[i + 1];
    if (key == "--target" || key == "--listen") {
      o.address = parseLoopback(value);
      haveAddress = true;
    } else if (key == "--connections") {
      o.connections = static_cast<int>(parseNumber(value, 1, 9000));
    } else if (key == "--duration") {
      o.duration = parseNumber(value, 0.1, 86400);
    } else if (key == "--warmup") {
      o.warmup = parseNumber(value, 0, 60);
    } else if (key == "--hold") {
      o.hold = parseNumber(value, 0, 60);
    } else if (key == "--pid") {
      o.pids.push_back(static_cast<long>(parseNumber(value, 1, 1e9)));
    } else {
      usage("unknown option");
    }
  }
  if (!haveAddress) usage("--target (or --listen for serve) is required");
  return o;
}

void setNoDelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// A non-blocking connect; -1 (errno set) if it failed at once.
int startConnect(const SocketAddress& target) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  setNoDelay(fd);
  if (connect(fd, target.data(), target.length()) < 0 && errno != EINPROGRESS) {
    const int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

class Epoll {
 public:
  Epoll() : fd_(epoll_create1(EPOLL_CLOEXEC)) {
    if (fd_ < 0) die("epoll_create1");
  }
  ~Epoll() { close(fd_); }
  Epoll(const Epoll&) = delete;
  Epoll& operator=(const Epoll&) = delete;

  void add(int fd, uint32_t events, uint64_t data) { ctl(EPOLL_CTL_ADD, fd, events, data); }
  void mod(int fd, uint32_t events, uint64_t data) { ctl(EPOLL_CTL_MOD, fd, events, data); }
  int wait(epoll_event* events, int max, int timeoutMs) {
    const int n = epoll_wait(fd_, events, max, timeoutMs);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    return n < 0 ? 0 : n;
  }

 private:
  void ctl(int op, int fd, uint32_t events, uint64_t data) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = data;
    if (epoll_ctl(fd_, op, fd, &ev) < 0) die("epoll_ctl");
  }
  int fd_;
};

// ---------------------------------------------------------------------------------------------
// serve: the echo backend.

volatile sig_atomic_t gStop = 0;
void onStopSignal(int) { gStop = 1; }

int runServe(const Options& o) {
  signal(SIGINT, onStopSignal);
  signal(SIGTERM, onStopSignal);
  signal(SIGPIPE, SIG_IGN);
  const int listenFd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listenFd < 0) die("socket");
  const int one = 1;
  setsockopt(listenFd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(listenFd, o.address.data(), o.address.length()) < 0) die("bind");
  if (listen(listenFd, 4096) < 0) die("listen");

  Epoll ep;
  constexpr uint64_t kListenTag = ~uint64_t{0};
  ep.add(listenFd, EPOLLIN, kListenTag);
  // Unsent echo per connection (empty for almost all of them): only a connection whose peer reads
  // slower than it writes holds bytes here, and it stops being read until they are gone.
  std::unordered_map<int, std::string> pending;
  std::vector<char> buffer(kChunk);
  std::vector<epoll_event> events(256);
  const int64_t deadline = nowNs() + static_cast<int64_t>(o.duration * 1e9);

  auto closeConn = [&](int fd) {
    pending.erase(fd);
    close(fd);
  };
  while (!gStop && nowNs() < deadline) {
    const int n = ep.wait(events.data(), static_cast<int>(events.size()), 200);
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kListenTag) {
        for (;;) {
          const int fd = accept4(listenFd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          setNoDelay(fd);
          ep.add(fd, EPOLLIN | EPOLLRDHUP, static_cast<uint64_t>(fd));
        }
        continue;
      }
      const int fd = static_cast<int>(events[i].data.u64);
      auto it = pending.find(fd);
      if (it != pending.end()) {  // waiting for EPOLLOUT
        const ssize_t w = write(fd, it->second.data(), it->second.size());
        if (w < 0 && errno != EAGAIN) {
          closeConn(fd);
          continue;
        }
        if (w > 0) it->second.erase(0, static_cast<size_t>(w));
        if (it->second.empty()) {
          pending.erase(it);
          ep.mod(fd, EPOLLIN | EPOLLRDHUP, static_cast<uint64_t>(fd));
        }
        continue;
      }
      const ssize_t r = read(fd, buffer.data(), buffer.size());
      if (r == 0 || (r < 0 && errno != EAGAIN)) {
        closeConn(fd);
        continue;
      }
      if (r < 0) continue;
      const ssize_t w = write(fd, buffer.data(), static_cast<size_t>(r));
      if (w < 0 && errno != EAGAIN) {
        closeConn(fd);
        continue;
      }
      const size_t written = w > 0 ? static_cast<size_t>(w) : 0;
      if (written < static_cast<size_t>(r)) {
        pending[fd].assign(buffer.data() + written, static_cast<size_t>(r) - written);
        ep.mod(fd, EPOLLOUT, static_cast<uint64_t>(fd));
      }
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Client modes.

void printHeader(const Options& o) {
  std::printf("{\"mode\":\"%s\",\"target\":\"%s\",\"connections\":%d", o.mode.c_str(),
              o.address.toString().c_str(), o.connections);
}

int runThroughput(const Options& o) {
  const int n = o.connections;
  Epoll ep;
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    const int fd = startConnect(o.address);
    if (fd < 0) die("connect");
    fds.push_back(fd);
    ep.add(fd, EPOLLIN | EPOLLOUT | EPOLLET, static_cast<uint64_t>(i));
  }
  std::vector<char> out(kChunk, 'x');
  std::vector<char> in(kChunk);
  std::vector<epoll_event> events(256);
  const int64_t start = nowNs();
  const int64_t measureFrom = start + static_cast<int64_t>(o.warmup * 1e9);
  const int64_t end = measureFrom + static_cast<int64_t>(o.duration * 1e9);
  uint64_t rx = 0;
  uint64_t tx = 0;
  bool measuring = false;
  int errors = 0;
  for (;;) {
    const int64_t now = nowNs();
    if (now >= end) break;
    if (!measuring && now >= measureFrom) {
      measuring = true;
      rx = tx = 0;
    }
    const int k = ep.wait(events.data(), static_cast<int>(events.size()), 50);
    for (int i = 0; i < k; ++i) {
      const int fd = fds[events[i].data.u64];
      if (fd < 0) continue;
      if (events[i].events & (EPOLLERR | EPOLLHUP)) {
        ++errors;
        close(fd);
        fds[events[i].data.u64] = -1;
        continue;
      }
      for (;;) {  // edge-triggered: until EAGAIN
        const ssize_t r = read(fd, in.data(), in.size());
        if (r <= 0) break;
        rx += static_cast<uint64_t>(r);
      }
      for (;;) {
        const ssize_t w = write(fd, out.data(), out.size());
        if (w <= 0) break;
        tx += static_cast<uint64_t>(w);
      }
    }
  }
  const double seconds = static_cast<double>(nowNs() - measureFrom) / 1e9;
  for (const int fd : fds) {
    if (fd >= 0) close(fd);
  }
  printHeader(o);
  std::printf(",\"seconds\":%.3f,\"rx_bytes\":%" PRIu64 ",\"tx_bytes\":%" PRIu64
              ",\"gbit_s\":%.3f,\"tx_gbit_s\":%.3f,\"errors\":%d}\n",
              seconds, rx, tx, static_cast<double>(rx) * 8 / seconds / 1e9,
              static_cast<double>(tx) * 8 / seconds / 1e9, errors);
  return errors == n ? 1 : 0;
}

int runConnRate(const Options& o) {
  // Each slot loops: connect -> (writable) send 64 bytes -> read 64 bytes -> close -> connect.
  struct Slot {
    int fd = -1;
    size_t got = 0;
    bool sent = false;
  };
  const int n = o.connections;
  Epoll ep;
  std::vector<Slot> slots(static_cast<size_t>(n));
  uint64_t done = 0;
  uint64_t errors = 0;
  const std::vector<char> request(kSmall, 'c');
  std::vector<char> in(kChunk);
  auto open = [&](size_t i) {
    for (int attempt = 0; attempt < 1000; ++attempt) {
      const int fd = startConnect(o.address);
      if (fd >= 0) {
        slots[i] = Slot{fd, 0, false};
        ep.add(fd, EPOLLOUT, i);
        return;
      }
      ++errors;
    }
    die("connect keeps failing");
  };
  for (size_t i = 0; i < slots.size(); ++i) open(i);
  std::vector<epoll_event> events(256);
  const int64_t start = nowNs();
  const int64_t measureFrom = start + static_cast<int64_t>(o.warmup * 1e9);
  const int64_t end = measureFrom + static_cast<int64_t>(o.duration * 1e9);
  bool measuring = false;
  for (;;) {
    const int64_t now = nowNs();
    if (now >= end) break;
    if (!measuring && now >= measureFrom) {
      measuring = true;
      done = errors = 0;
    }
    const int k = ep.wait(events.data(), static_cast<int>(events.size()), 50);
    for (int e = 0; e < k; ++e) {
      const size_t i = events[e].data.u64;
      Slot& s = slots[i];
      bool failed = (events[e].events & EPOLLERR) != 0;
      if (!failed && !s.sent) {
        failed = write(s.fd, request.data(), request.size()) != static_cast<ssize_t>(kSmall);
        if (!failed) {
          s.sent = true;
          ep.mod(s.fd, EPOLLIN, i);
        }
      } else if (!failed) {
        const ssize_t r = read(s.fd, in.data(), in.size());
        if (r < 0 && errno == EAGAIN) continue;
        failed = r <= 0;
        if (!failed) s.got += static_cast<size_t>(r);
      }
      if (failed || s.got >= kSmall) {
        (failed ? errors : done) += 1;
        close(s.fd);
        open(i);
      }
    }
  }
  const double seconds = static_cast<double>(nowNs() - measureFrom) / 1e9;
  for (const Slot& s : slots) close(s.fd);
  printHeader(o);
  std::printf(",\"seconds\":%.3f,\"completed\":%" PRIu64 ",\"conn_s\":%.1f,\"errors\":%" PRIu64
              "}\n",
              seconds, done, static_cast<double>(done) / seconds, errors);
  return done == 0 ? 1 : 0;
}

int runPingPong(const Options& o) {
  struct Conn {
    int fd = -1;
    size_t got = 0;
    int64_t sentAt = 0;
  };
  const int n = o.connections;
  Epoll ep;
  std::vector<Conn> conns(static_cast<size_t>(n));
  const std::vector<char> request(kSmall, 'p');
  std::vector<char> in(kChunk);
  // Connect all, then start the ping-pong once every connection is established.
  for (size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = startConnect(o.address);
    if (conns[i].fd < 0) die("connect");
    ep.add(conns[i].fd, EPOLLIN, i);
  }
  auto send = [&](Conn& c) {
    c.got = 0;
    c.sentAt = nowNs();
    if (write(c.fd, request.data(), request.size()) != static_cast<ssize_t>(kSmall)) die("write");
  };
  for (Conn& c : conns) send(c);  // a blocking-free write of 64 bytes: the socket buffer is empty
  std::vector<int64_t> samples;
  samples.reserve(1 << 20);
  std::vector<epoll_event> events(256);
  const int64_t start = nowNs();
  const int64_t measureFrom = start + static_cast<int64_t>(o.warmup * 1e9);
  const int64_t end = measureFrom + static_cast<int64_t>(o.duration * 1e9);
  for (;;) {
    const int64_t now = nowNs();
    if (now >= end) break;
    const int k = ep.wait(events.data(), static_cast<int>(events.size()), 50);
    for (int e = 0; e < k; ++e) {
      Conn& c = conns[events[e].data.u64];
      const ssize_t r = read(c.fd, in.data(), in.size());
      if (r < 0 && errno == EAGAIN) continue;
      if (r <= 0) die("pingpong: connection closed");
      c.got += static_cast<size_t>(r);
      if (c.got < kSmall) continue;
      const int64_t t = nowNs();
      if (t >= measureFrom && samples.size() < (size_t{64} << 20)) samples.push_back(t - c.sentAt);
      send(c);
    }
  }
  const double seconds = static_cast<double>(nowNs() - measureFrom) / 1e9;
  for (const Conn& c : conns) close(c.fd);
  std::sort(samples.begin(), samples.end());
  auto pct = [&](double p) -> double {
    if (samples.empty()) return 0;
    const size_t idx = std::min(samples.size() - 1, static_cast<size_t>(p * samples.size()));
    return static_cast<double>(samples[idx]) / 1e3;
  };
  double sum = 0;
  for (const int64_t s : samples) sum += static_cast<double>(s);
  printHeader(o);
  std::printf(
      ",\"seconds\":%.3f,\"round_trips\":%zu,\"rtt_s\":%.1f,\"mean_us\":%.2f"
      ",\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f}\n",
      seconds, samples.size(), static_cast<double>(samples.size()) / seconds,
      samples.empty() ? 0.0 : sum / static_cast<double>(samples.size()) / 1e3, pct(0.50), pct(0.99),
      pct(0.999), samples.empty() ? 0.0 : static_cast<double>(samples.back()) / 1e3);
  return samples.empty() ? 1 : 0;
}

// VmRSS of a process in KiB, or -1.
long rssKiB(long pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

long totalRssKiB(const std::vector<long>& pids) {
  long total = 0;
  for (const long pid : pids) {
    const long kib = rssKiB(pid);
    if (kib < 0) {
      std::fprintf(stderr, "evgate-loadgen: cannot read VmRSS of pid %ld\n", pid);
      std::exit(1);
    }
    total += kib;
  }
  return total;
}

int runIdle(const Options& o) {
  if (o.pids.empty()) usage("idle needs --pid");
  const int n = o.connections;
  const long before = totalRssKiB(o.pids);
  // Open in waves of at most 256 connects in flight; each connection does one 64-byte round trip.
  enum class State { kConnecting, kWaiting, kDone };
  struct Conn {
    int fd = -1;
    size_t got = 0;
    State state = State::kConnecting;
  };
  Epoll ep;
  std::vector<Conn> conns(static_cast<size_t>(n));
  const std::vector<char> request(kSmall, 'i');
  std::vector<char> in(kChunk);
  std::vector<epoll_event> events(256);
  size_t next = 0;
  int inFlight = 0;
  int done = 0;
  const int64_t deadline = nowNs() + 60'000'000'000;  // bound: 60 s to open them all
  while (done < n) {
    while (inFlight < 256 && next < conns.size()) {
      const int fd = startConnect(o.address);
      if (fd < 0) die("connect");
      conns[next].fd = fd;
      ep.add(fd, EPOLLOUT, next);
      ++next;
      ++inFlight;
    }
    if (nowNs() > deadline) {
      std::fprintf(stderr, "evgate-loadgen: idle: only %d of %d connections ready in 60 s\n", done,
                   n);
      return 1;
    }
    const int k = ep.wait(events.data(), static_cast<int>(events.size()), 100);
    for (int e = 0; e < k; ++e) {
      const size_t i = events[e].data.u64;
      Conn& c = conns[i];
      if (events[e].events & EPOLLERR) die("idle: connect failed");
      if (c.state == State::kConnecting) {
        if (write(c.fd, request.data(), request.size()) != static_cast<ssize_t>(kSmall))
          die("write");
        c.state = State::kWaiting;
        ep.mod(c.fd, EPOLLIN, i);
        continue;
      }
      const ssize_t r = read(c.fd, in.data(), in.size());
      if (r < 0 && errno == EAGAIN) continue;
      if (r <= 0) die("idle: connection closed");
      c.got += static_cast<size_t>(r);
      if (c.got >= kSmall && c.state == State::kWaiting) {
        c.state = State::kDone;
        ep.mod(c.fd, 0, i);
        ++done;
        --inFlight;
      }
    }
  }
  const int64_t holdUntil = nowNs() + static_cast<int64_t>(o.hold * 1e9);
  while (nowNs() < holdUntil) usleep(10'000);
  const long after = totalRssKiB(o.pids);
  for (const Conn& c : conns) close(c.fd);
  printHeader(o);
  std::printf(
      ",\"pids\":%zu,\"rss_before_kib\":%ld,\"rss_after_kib\":%ld"
      ",\"rss_bytes_per_conn\":%.0f}\n",
      o.pids.size(), before, after,
      static_cast<double>(after - before) * 1024.0 / static_cast<double>(n));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parseOptions(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (o.mode == "serve") return runServe(o);
  if (o.mode == "throughput") {
    if (o.connections < 0) o.connections = 8;
    return runThroughput(o);
  }
  if (o.mode == "connrate") {
    if (o.connections < 0) o.connections = 16;
    return runConnRate(o);
  }
  if (o.mode == "pingpong") {
    if (o.connections < 0) o.connections = 1;
    return runPingPong(o);
  }
  if (o.mode == "idle") {
    if (o.connections < 0) o.connections = 5000;
    return runIdle(o);
  }
  usage("unknown mode");
}
