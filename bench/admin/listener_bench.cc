// evgate-admin-bench: creates listeners one by one over the admin API of a running evgate and
// measures, for each, how long until a client is relayed through it (bench/admin/run.sh runs it
// in a private network namespace against a fresh daemon; docs/benchmarks.md, "Admin: listener
// creation and 10,000 listeners").
//
//   evgate-admin-bench --admin 127.0.0.1:19901 --backend 127.0.0.1:19000 [--listeners 10000]
//                      [--metrics 127.0.0.1:19902] [--pid PID] [--window 1000] [--delete]
//                      [--no-traffic] [--dump FILE]
//
// Per listener i (named bench-i, bound to 127.0.0.1:0, cluster bench-echo -> --backend):
//   t0  CreateListener is sent
//   t1  its answer arrives (the bound port is in it)
//   t2  a new client connection to that port has written one byte and read it back, echoed by
//       the backend through the gateway: the listener accepted it and the flow relayed both ways
// "create" is t1 - t0 and "create->echo" is t2 - t0. Each window of --window listeners prints
// p50, p99 and max of both, with the elapsed time, and (given --pid) the daemon's RSS and open
// fds and (given --metrics) the size and time of one /metrics scrape. --delete then deletes
// them all one by one (newest first) and prints the same for DeleteListener. --no-traffic
// leaves out the client (t2 = t1): listeners that never saw a connection, for their scrape.
// --dump FILE writes one line per listener: its index, create and create->echo in microseconds.

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "evgate/admin/v1/admin.grpc.pb.h"
#include "reactor/socket_address.h"

namespace {

namespace v1 = evgate::admin::v1;
using evgate::reactor::SocketAddress;
using Clock = std::chrono::steady_clock;
using Micros = std::chrono::duration<double, std::micro>;

constexpr auto kCallTimeout = std::chrono::seconds(30);
constexpr int kEchoTimeoutMs = 10'000;

struct Options {
  std::string admin;
  std::string backend;
  std::string metrics;
  int pid = 0;
  int listeners = 10'000;
  int window = 1'000;
  bool remove = false;
  bool traffic = true;
  std::string dump;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "evgate-admin-bench: %s\n"
               "usage: evgate-admin-bench --admin HOST:PORT --backend HOST:PORT [--listeners N]\n"
               "       [--window N] [--metrics HOST:PORT] [--pid PID] [--delete] [--no-traffic]\n"
               "       [--dump FILE]\n",
               why);
  std::exit(2);
}

Options parseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value");
      return argv[++i];
    };
    if (flag == "--admin") {
      options.admin = value();
    } else if (flag == "--backend") {
      options.backend = value();
    } else if (flag == "--metrics") {
      options.metrics = value();
    } else if (flag == "--pid") {
      options.pid = std::atoi(value().c_str());
    } else if (flag == "--listeners") {
      options.listeners = std::atoi(value().c_str());
    } else if (flag == "--window") {
      options.window = std::max(1, std::atoi(value().c_str()));
    } else if (flag == "--delete") {
      options.remove = true;
    } else if (flag == "--no-traffic") {
      options.traffic = false;
    } else if (flag == "--dump") {
      options.dump = value();
    } else {
      usage("unknown flag");
    }
  }
  if (options.admin.empty() || options.backend.empty()) usage("--admin and --backend are needed");
  return options;
}

double micros(Clock::duration d) { return Micros(d).count(); }

// p-th percentile (nearest rank) of `values`, which it sorts.
double percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t rank =
      static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::min(values.size(), std::max<size_t>(rank, 1)) - 1];
}

// One client through `address`: connect, one byte out, the same byte back. False on any error
// or after kEchoTimeoutMs.
bool echoThrough(const SocketAddress& address) {
  const int fd = ::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const int on = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  bool ok = ::connect(fd, address.data(), address.length()) == 0;
  const char out = 'x';
  ok = ok && ::write(fd, &out, 1) == 1;
  pollfd p{fd, POLLIN, 0};
  ok = ok && ::poll(&p, 1, kEchoTimeoutMs) == 1;
  char in = 0;
  ok = ok && ::read(fd, &in, 1) == 1 && in == out;
  ::close(fd);
  return ok;
}

// The daemon's resident memory in KiB, its open fds and the CPU time it has used (user and
// system, all threads), from /proc.
struct ProcessUsage {
  long rssKib = -1;
  long fds = -1;
  double cpuMicros = 0;
};

ProcessUsage usageOf(int pid) {
  ProcessUsage usage;
  if (pid <= 0) return usage;
  const std::string dir = "/proc/" + std::to_string(pid);
  {
    // Fields 14 and 15 (utime, stime) in clock ticks, after the command name in parentheses.
    std::ifstream stat(dir + "/stat");
    std::string line;
    std::getline(stat, line);
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i >= 14) ticks += std::atof(field.c_str());
    }
    usage.cpuMicros = ticks * 1e6 / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
  std::ifstream status(dir + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) usage.rssKib = std::atol(line.c_str() + 6);
  }
  std::error_code error;
  long fds = 0;
  for (auto it = std::filesystem::directory_iterator(dir + "/fd", error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    ++fds;
  }
  if (!error) usage.fds = fds;
  return usage;
}

// One GET /metrics: the body's size in bytes and how long the whole exchange took.
struct Scrape {
  size_t bytes = 0;
  double millis = -1;
};

Scrape scrape(const std::string& address) {
  Scrape result;
  const std::optional<SocketAddress> to = SocketAddress::parse(address);
  if (!to) return result;
  const auto start = Clock::now();
  const int fd = ::socket(to->family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return result;
  if (::connect(fd, to->data(), to->length()) != 0) {
    ::close(fd);
    return result;
  }
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
  if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return result;
  }
  std::string response;
  char chunk[65536];
  for (ssize_t n; (n = ::read(fd, chunk, sizeof chunk)) > 0;) response.append(chunk, n);
  ::close(fd);
  result.millis = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  const size_t body = response.find("\r\n\r\n");
  result.bytes = body == std::string::npos ? 0 : response.size() - body - 4;
  return result;
}

grpc::Status call(const std::function<grpc::Status(grpc::ClientContext&)>& fn) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  return fn(context);
}

struct Window {
  std::vector<double> rpc;
  std::vector<double> echo;
};

void printHeader(bool deleting) {
  if (deleting) {
    std::printf("%-13s %10s %7s %7s %8s\n", "listeners", "delete p50", "p99", "max", "elapsed");
    return;
  }
  std::printf("%-13s %10s %7s %7s %11s %7s %7s %8s %9s %8s %7s %10s %9s\n", "listeners",
              "create p50", "p99", "max", "c->echo p50", "p99", "max", "elapsed", "cpu/create",
              "RSS MiB", "fds", "scrape KiB", "scrape ms");
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parseOptions(argc, argv);
  auto channel = grpc::CreateChannel(options.admin, grpc::InsecureChannelCredentials());
  std::unique_ptr<v1::Admin::Stub> stub = v1::Admin::NewStub(channel);

  v1::CreateClusterRequest clusterRequest;
  clusterRequest.mutable_cluster()->set_name("bench-echo");
  clusterRequest.mutable_cluster()->add_endpoints()->set_address(options.backend);
  v1::Cluster cluster;
  grpc::Status status = call(
      [&](grpc::ClientContext& c) { return stub->CreateCluster(&c, clusterRequest, &cluster); });
  if (!status.ok() && status.error_code() != grpc::StatusCode::ALREADY_EXISTS) {
    std::fprintf(stderr, "CreateCluster: %s\n", status.error_message().c_str());
    return 1;
  }

  std::printf(
      "# %d listeners created one by one; times in microseconds unless named; cpu/create: the\n"
      "# daemon's CPU time (all threads) per listener created and relayed through\n",
      options.listeners);
  printHeader(false);
  std::FILE* dump = options.dump.empty() ? nullptr : std::fopen(options.dump.c_str(), "w");
  const auto start = Clock::now();
  Window window;
  int windowStart = 0;
  double cpuBefore = usageOf(options.pid).cpuMicros;
  for (int i = 0; i < options.listeners; ++i) {
    v1::CreateListenerRequest request;
    v1::Listener& listener = *request.mutable_listener();
    listener.set_name("bench-" + std::to_string(i));
    listener.set_bind("127.0.0.1:0");
    listener.set_cluster("bench-echo");
    v1::Listener created;
    const auto t0 = Clock::now();
    status =
        call([&](grpc::ClientContext& c) { return stub->CreateListener(&c, request, &created); });
    const auto t1 = Clock::now();
    if (!status.ok()) {
      std::fprintf(stderr, "listener %d: CreateListener: %s\n", i, status.error_message().c_str());
      return 1;
    }
    const std::optional<SocketAddress> bound = SocketAddress::parse(created.bound_address());
    if (!bound || (options.traffic && !echoThrough(*bound))) {
      std::fprintf(stderr, "listener %d (%s): no echo through it: %s\n", i,
                   created.bound_address().c_str(), std::strerror(errno));
      return 1;
    }
    const auto t2 = Clock::now();
    window.rpc.push_back(micros(t1 - t0));
    window.echo.push_back(micros(t2 - t0));
    if (dump != nullptr) std::fprintf(dump, "%d %.0f %.0f\n", i, micros(t1 - t0), micros(t2 - t0));
    if (i + 1 - windowStart < options.window && i + 1 != options.listeners) continue;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const ProcessUsage usage = usageOf(options.pid);
    // The daemon's CPU per listener (create, and relaying the one client), before the scrape.
    const double cpuPerCreate = (usage.cpuMicros - cpuBefore) / (i + 1 - windowStart);
    const Scrape page = options.metrics.empty() ? Scrape{} : scrape(options.metrics);
    cpuBefore = usageOf(options.pid).cpuMicros;
    std::printf(
        "%6d-%-6d %10.0f %7.0f %7.0f %11.0f %7.0f %7.0f %7.1fs %9.0f %8.1f %7ld %10.0f %9.1f\n",
        windowStart, i + 1, percentile(window.rpc, 50), percentile(window.rpc, 99),
        percentile(window.rpc, 100), percentile(window.echo, 50), percentile(window.echo, 99),
        percentile(window.echo, 100), elapsed, cpuPerCreate,
        static_cast<double>(usage.rssKib) / 1024.0, usage.fds,
        static_cast<double>(page.bytes) / 1024.0, page.millis);
    std::fflush(stdout);
    window = Window{};
    windowStart = i + 1;
  }
  if (dump != nullptr) std::fclose(dump);
  if (!options.remove) return 0;

  std::printf("# deleted one by one, newest first\n");
  printHeader(true);
  const auto deleteStart = Clock::now();
  windowStart = options.listeners;
  for (int i = options.listeners - 1; i >= 0; --i) {
    v1::DeleteListenerRequest request;
    request.set_name("bench-" + std::to_string(i));
    v1::DeleteListenerResponse response;
    const auto t0 = Clock::now();
    status =
        call([&](grpc::ClientContext& c) { return stub->DeleteListener(&c, request, &response); });
    if (!status.ok()) {
      std::fprintf(stderr, "listener %d: DeleteListener: %s\n", i, status.error_message().c_str());
      return 1;
    }
    window.rpc.push_back(micros(Clock::now() - t0));
    if (windowStart - i < options.window && i != 0) continue;
    std::printf("%6d-%-6d %10.0f %7.0f %7.0f %7.1fs\n", i, windowStart, percentile(window.rpc, 50),
                percentile(window.rpc, 99), percentile(window.rpc, 100),
                std::chrono::duration<double>(Clock::now() - deleteStart).count());
    std::fflush(stdout);
    window = Window{};
    windowStart = i;
  }
  return 0;
}
