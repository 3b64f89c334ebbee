// evgate-loadgen: a load generator for TCP relays, and the echo backend it measures them with.
// Plain epoll, one thread, non-blocking sockets; every run is bounded by a duration or a count and
// targets 127.0.0.1 only. Each client mode prints one JSON object on stdout.
//
//   evgate-loadgen serve      --listen 127.0.0.1:PORT [--duration S]
//   evgate-loadgen throughput --target 127.0.0.1:PORT [--connections N] [--duration S] [--warmup S]
//   evgate-loadgen connrate   --target 127.0.0.1:PORT [--connections N] [--duration S] [--warmup S]
//   evgate-loadgen pingpong   --target 127.0.0.1:PORT [--connections N] [--duration S] [--warmup S]
//   evgate-loadgen idle       --target 127.0.0.1:PORT [--connections N] --pid PID [--pid PID...]
//                             [--baseline N] [--hold S]
//   every client mode also takes [--sources N] [--pid PID...] [--backend-pid PID...]
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
//             the given PIDs (summed; /proc/PID/status) per connection. With --baseline B it
//             first opens B of them, holds, reads VmRSS, then opens the rest, holds, reads it
//             again, and also reports the slope (VmRSS at N - VmRSS at B) / (N - B): the cost of
//             one more flow, without what the first flows cost once (pools, arenas, tables).
//             Kernel socket memory is not in VmRSS: this is the relay's user-space cost per flow.
//
// --sources N (default 16; 0: let the kernel choose): client socket k is bound to 127.0.0.(1 + k
//             mod N) before it connects (IP_BIND_ADDRESS_NO_PORT, so the port is still chosen at
//             connect time), which spreads the client side over N source addresses and keeps the
//             loadgen's own connects clear of the port search on 127.0.0.1 (every 127/8 address
//             is local on lo without configuration).
// --pid PID:  (throughput, connrate, pingpong) also report the CPU time those processes (all
//             their threads) used during the measured window, from their CPU-time clocks
//             (clock_getcpuclockid), and that time per unit of work: cpu_us_per_conn (connrate),
//             cpu_us_per_rtt (pingpong), cpu_ms_per_gb (throughput; a GB is 10^9 bytes carried
//             in either direction, each echoed byte counted twice). Also reported, to judge
//             the noise of a shared machine: the CPU time of --backend-pid processes, the
//             loadgen's own, and the machine's busy time (all CPUs, /proc/stat, steal included).

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
               "                      [--sources N] [--pid PID...] [--backend-pid PID...]\n"
               "       evgate-loadgen idle --target 127.0.0.1:PORT [--connections N] --pid PID...\n"
               "                      [--baseline N] [--hold S] [--sources N]\n",
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
  int baseline = 0;
  int sources = 16;
  std::vector<long> pids;
  std::vector<long> backendPids;
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
      o.connections = static_cast<int>(parseNumber(value, 1, 9800));
    } else if (key == "--duration") {
      o.duration = parseNumber(value, 0.1, 86400);
    } else if (key == "--warmup") {
      o.warmup = parseNumber(value, 0, 60);
    } else if (key == "--hold") {
      o.hold = parseNumber(value, 0, 60);
    } else if (key == "--baseline") {
      o.baseline = static_cast<int>(parseNumber(value, 0, 9800));
    } else if (key == "--sources") {
      o.sources = static_cast<int>(parseNumber(value, 0, 254));
    } else if (key == "--pid") {
      o.pids.push_back(static_cast<long>(parseNumber(value, 1, 1e9)));
    } else if (key == "--backend-pid") {
      o.backendPids.push_back(static_cast<long>(parseNumber(value, 1, 1e9)));
    } else {
      usage("unknown option");
    }
  }
  if (!haveAddress) usage("--target (or --listen for serve) is required");
  if (o.baseline > 0 && o.connections >= 0 && o.baseline >= o.connections) {
    usage("--baseline must be below --connections");
  }
  return o;
}

void setNoDelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Spreads client sockets over 127.0.0.1 .. 127.0.0.N (see --sources), one after the other.
class SourceSpread {
 public:
  explicit SourceSpread(int count) : count_(count) {}
  // Binds fd to the next source address, the port left to connect(); false (errno set) if not.
  bool bindNext(int fd) {
    if (count_ == 0) return true;
    const int one = 1;
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0) return false;
    sockaddr_in source{};
    source.sin_family = AF_INET;
    source.sin_addr.s_addr = htonl(INADDR_LOOPBACK + static_cast<uint32_t>(next_ % count_));
    ++next_;
    return bind(fd, reinterpret_cast<const sockaddr*>(&source), sizeof source) == 0;
  }

 private:
  int count_;
  uint64_t next_ = 0;
};

// A non-blocking connect from the next source address; -1 (errno set) if it failed at once.
int startConnect(const SocketAddress& target, SourceSpread& sources) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  setNoDelay(fd);
  if (!sources.bindNext(fd) ||
      (connect(fd, target.data(), target.length()) < 0 && errno != EINPROGRESS)) {
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

// The CPU time, all threads together, of a set of processes. Reading another process's CPU-time
// clock (clock_getcpuclockid) is as cheap as reading our own and has nanosecond resolution, where
// /proc/PID/stat counts clock ticks (10 ms).
class ProcessCpu {
 public:
  explicit ProcessCpu(const std::vector<long>& pids) {
    for (const long pid : pids) {
      clockid_t clock{};
      const int rc = clock_getcpuclockid(static_cast<pid_t>(pid), &clock);
      if (rc != 0) {
        errno = rc;
        die("clock_getcpuclockid (--pid)");
      }
      clocks_.push_back(clock);
    }
  }
  bool empty() const { return clocks_.empty(); }
  int64_t totalNs() const {
    int64_t total = 0;
    for (const clockid_t clock : clocks_) {
      timespec ts{};
      if (clock_gettime(clock, &ts) < 0) die("clock_gettime (a --pid process exited?)");
      total += static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    }
    return total;
  }

 private:
  std::vector<clockid_t> clocks_;
};

// Busy time of the whole machine, all CPUs (/proc/stat: user, nice, system, irq, softirq, steal).
int64_t machineBusyNs() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  int64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  if (cpu != "cpu") return 0;
  return (user + nice + system + irq + softirq + steal) * (1'000'000'000 / sysconf(_SC_CLK_TCK));
}

// CPU time over the measured window: the relay's (--pid), the echo backend's (--backend-pid),
// the loadgen's own and the whole machine's, so that the report can tell how much CPU processes
// outside the benchmark took during a run (this machine is shared).
class CpuWindow {
 public:
  explicit CpuWindow(const Options& o) : relay_(o.pids), backend_(o.backendPids) {}
  void start() { from_ = sample(); }
  void stop() {
    const Sample to = sample();
    relayNs_ = to.relay - from_.relay;
    backendNs_ = to.backend - from_.backend;
    selfNs_ = to.self - from_.self;
    machineNs_ = to.machine - from_.machine;
  }
  int64_t relayNs() const { return relayNs_; }
  // The relay's CPU seconds and that per unit of work, then the others; nothing without --pid.
  void print(const char* perUnitKey, double perUnit) const {
    if (relay_.empty()) return;
    std::printf(",\"cpu_s\":%.4f,\"%s\":%.3f", static_cast<double>(relayNs_) / 1e9, perUnitKey,
                perUnit);
    if (!backend_.empty()) {
      std::printf(",\"backend_cpu_s\":%.4f", static_cast<double>(backendNs_) / 1e9);
    }
    std::printf(",\"self_cpu_s\":%.4f,\"machine_busy_s\":%.3f,\"cpus\":%ld",
                static_cast<double>(selfNs_) / 1e9, static_cast<double>(machineNs_) / 1e9,
                sysconf(_SC_NPROCESSORS_ONLN));
  }

 private:
  struct Sample {
    int64_t relay = 0;
    int64_t backend = 0;
    int64_t self = 0;
    int64_t machine = 0;
  };
  Sample sample() const {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return Sample{relay_.totalNs(), backend_.totalNs(),
                  static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec, machineBusyNs()};
  }
  ProcessCpu relay_;
  ProcessCpu backend_;
  Sample from_;
  int64_t relayNs_ = 0;
  int64_t backendNs_ = 0;
  int64_t selfNs_ = 0;
  int64_t machineNs_ = 0;
};

void printHeader(const Options& o) {
  std::printf("{\"mode\":\"%s\",\"target\":\"%s\",\"connections\":%d,\"sources\":%d",
              o.mode.c_str(), o.address.toString().c_str(), o.connections, o.sources);
}

int runThroughput(const Options& o) {
  const int n = o.connections;
  Epoll ep;
  SourceSpread sources(o.sources);
  CpuWindow cpu(o);
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    const int fd = startConnect(o.address, sources);
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
      cpu.start();
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
  cpu.stop();
  const auto cpuNs = static_cast<double>(cpu.relayNs());
  const double seconds = static_cast<double>(nowNs() - measureFrom) / 1e9;
  for (const int fd : fds) {
    if (fd >= 0) close(fd);
  }
  printHeader(o);
  std::printf(",\"seconds\":%.3f,\"rx_bytes\":%" PRIu64 ",\"tx_bytes\":%" PRIu64
              ",\"gbit_s\":%.3f,\"tx_gbit_s\":%.3f,\"errors\":%d",
              seconds, rx, tx, static_cast<double>(rx) * 8 / seconds / 1e9,
              static_cast<double>(tx) * 8 / seconds / 1e9, errors);
  // Each echoed byte crossed the relay twice; bytes still in flight at the end are not counted.
  const double gigabytes = 2 * static_cast<double>(rx) / 1e9;
  cpu.print("cpu_ms_per_gb", rx == 0 ? 0 : cpuNs / 1e6 / gigabytes);
  std::printf("}\n");
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
  SourceSpread sources(o.sources);
  CpuWindow cpu(o);
  std::vector<Slot> slots(static_cast<size_t>(n));
  uint64_t done = 0;
  uint64_t errors = 0;
  const std::vector<char> request(kSmall, 'c');
  std::vector<char> in(kChunk);
  auto open = [&](size_t i) {
    for (int attempt = 0; attempt < 1000; ++attempt) {
      const int fd = startConnect(o.address, sources);
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
      cpu.start();
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
  cpu.stop();
  const auto cpuNs = static_cast<double>(cpu.relayNs());
  const double seconds = static_cast<double>(nowNs() - measureFrom) / 1e9;
  for (const Slot& s : slots) close(s.fd);
  printHeader(o);
  std::printf(",\"seconds\":%.3f,\"completed\":%" PRIu64 ",\"conn_s\":%.1f,\"errors\":%" PRIu64,
              seconds, done, static_cast<double>(done) / seconds, errors);
  cpu.print("cpu_us_per_conn", done == 0 ? 0 : cpuNs / 1e3 / static_cast<double>(done));
  std::printf("}\n");
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
  SourceSpread sources(o.sources);
  CpuWindow cpu(o);
  bool measuring = false;
  std::vector<Conn> conns(static_cast<size_t>(n));
  const std::vector<char> request(kSmall, 'p');
  std::vector<char> in(kChunk);
  // Connect all, then start the ping-pong once every connection is established.
  for (size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = startConnect(o.address, sources);
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
    if (!measuring && now >= measureFrom) {
      measuring = true;
      cpu.start();
    }
    const int k = ep.wait(events.data(), static_cast<int>(events.size()), 50);
    for (int e = 0; e < k; ++e) {
      Conn& c = conns[events[e].data.u64];
      const ssize_t r = read(c.fd, in.data(), in.size());
      if (r < 0 && errno == EAGAIN) continue;
      if (r <= 0) die("pingpong: connection closed");
      c.got += static_cast<size_t>(r);
      if (c.got < kSmall) continue;
      const int64_t t = nowNs();
      if (measuring && samples.size() < (size_t{64} << 20)) samples.push_back(t - c.sentAt);
      send(c);
    }
  }
  cpu.stop();
  const auto cpuNs = static_cast<double>(cpu.relayNs());
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
      ",\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f",
      seconds, samples.size(), static_cast<double>(samples.size()) / seconds,
      samples.empty() ? 0.0 : sum / static_cast<double>(samples.size()) / 1e3, pct(0.50), pct(0.99),
      pct(0.999), samples.empty() ? 0.0 : static_cast<double>(samples.back()) / 1e3);
  cpu.print("cpu_us_per_rtt",
            samples.empty() ? 0 : cpuNs / 1e3 / static_cast<double>(samples.size()));
  std::printf("}\n");
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

// idle: opens connections in waves, one 64-byte round trip each, and keeps them open.
class IdleFlows {
 public:
  IdleFlows(const Options& o, SourceSpread& sources)
      : target_(o.address), sources_(sources), request_(kSmall, 'i'), in_(kChunk) {
    conns_.reserve(static_cast<size_t>(o.connections));
  }
  ~IdleFlows() {
    for (const Conn& c : conns_) close(c.fd);
  }
  IdleFlows(const IdleFlows&) = delete;
  IdleFlows& operator=(const IdleFlows&) = delete;

  // Opens `count` more, at most 256 connects in flight; false if they are not all ready by the
  // deadline. Dies on a connection error: an idle run with failed flows measures nothing.
  bool open(int count, int64_t deadline) {
    int inFlight = 0;
    int done = 0;
    int started = 0;
    std::vector<epoll_event> events(256);
    while (done < count) {
      while (inFlight < 256 && started < count) {
        const int fd = startConnect(target_, sources_);
        if (fd < 0) die("connect");
        ep_.add(fd, EPOLLOUT, conns_.size());
        conns_.push_back(Conn{fd, 0, State::kConnecting});
        ++started;
        ++inFlight;
      }
      if (nowNs() > deadline) return false;
      const int k = ep_.wait(events.data(), static_cast<int>(events.size()), 100);
      for (int e = 0; e < k; ++e) {
        const size_t i = events[e].data.u64;
        Conn& c = conns_[i];
        if (events[e].events & EPOLLERR) die("idle: connect failed");
        if (c.state == State::kConnecting) {
          if (write(c.fd, request_.data(), request_.size()) != static_cast<ssize_t>(kSmall)) {
            die("write");
          }
          c.state = State::kWaiting;
          ep_.mod(c.fd, EPOLLIN, i);
          continue;
        }
        const ssize_t r = read(c.fd, in_.data(), in_.size());
        if (r < 0 && errno == EAGAIN) continue;
        if (r <= 0) die("idle: connection closed");
        c.got += static_cast<size_t>(r);
        if (c.got >= kSmall && c.state == State::kWaiting) {
          c.state = State::kDone;
          ep_.mod(c.fd, 0, i);
          ++done;
          --inFlight;
        }
      }
    }
    return true;
  }
  int size() const { return static_cast<int>(conns_.size()); }

 private:
  enum class State { kConnecting, kWaiting, kDone };
  struct Conn {
    int fd = -1;
    size_t got = 0;
    State state = State::kConnecting;
  };
  const SocketAddress& target_;
  SourceSpread& sources_;
  Epoll ep_;
  std::vector<Conn> conns_;
  const std::vector<char> request_;
  std::vector<char> in_;
};

int runIdle(const Options& o) {
  if (o.pids.empty()) usage("idle needs --pid");
  const int n = o.connections;
  SourceSpread sources(o.sources);
  IdleFlows flows(o, sources);
  const int64_t deadline = nowNs() + 60'000'000'000;  // bound: 60 s to open them all
  auto holdThenRss = [&] {
    const int64_t holdUntil = nowNs() + static_cast<int64_t>(o.hold * 1e9);
    while (nowNs() < holdUntil) usleep(10'000);
    return totalRssKiB(o.pids);
  };
  const long before = totalRssKiB(o.pids);
  long atBaseline = before;
  if (o.baseline > 0) {
    if (!flows.open(o.baseline, deadline)) {
      std::fprintf(stderr, "evgate-loadgen: idle: baseline flows not ready in 60 s\n");
      return 1;
    }
    atBaseline = holdThenRss();
  }
  if (!flows.open(n - o.baseline, deadline)) {
    std::fprintf(stderr, "evgate-loadgen: idle: only part of %d connections ready in 60 s\n", n);
    return 1;
  }
  const long after = holdThenRss();
  printHeader(o);
  std::printf(
      ",\"pids\":%zu,\"baseline\":%d,\"rss_before_kib\":%ld,\"rss_baseline_kib\":%ld"
      ",\"rss_after_kib\":%ld,\"rss_bytes_per_conn\":%.0f,\"rss_slope_bytes_per_flow\":%.0f}\n",
      o.pids.size(), o.baseline, before, atBaseline, after,
      static_cast<double>(after - before) * 1024.0 / static_cast<double>(n),
      static_cast<double>(after - atBaseline) * 1024.0 / static_cast<double>(n - o.baseline));
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
    if (o.baseline >= o.connections) usage("--baseline must be below --connections");
    return runIdle(o);
  }
  usage("unknown mode");
}
