// The container image, run the way it is shipped: podman on the host network, a read-only root
// filesystem (no tmpfs added either), the configuration mounted read-only at /etc/evgate and a
// state directory at /var/lib/evgate. Checks that evgate runs as uid 10001, relays bytes to a
// backend in this process, answers gRPC health checks, serves `evgatectl` inside the container,
// persists an admin change in the state volume, and exits 0 on `podman stop` (SIGTERM).
//
// The image (EVGATE_TEST_IMAGE) is built by the ctest fixture container_image_build
// (scripts/build-image.sh). podman runs as the build script runs it: runc, cgroupfs, and a
// containers.conf without default ulimits (docs/container.md).

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "tests/integration/grpc_probe.h"
#include "tests/integration/http_get.h"
#include "tests/integration/net_util.h"
#include "tests/integration/process.h"

namespace evgate::test {
namespace {

constexpr uid_t kEvgateUid = 10001;

// podman with the flags and configuration this machine needs; `args` follow.
class Podman {
 public:
  explicit Podman(const std::string& containersConf) : env_{"CONTAINERS_CONF=" + containersConf} {}

  std::vector<std::string> command(const std::vector<std::string>& args) const {
    std::vector<std::string> all{PODMAN_BINARY, "--runtime", "runc", "--cgroup-manager=cgroupfs"};
    all.insert(all.end(), args.begin(), args.end());
    return all;
  }
  const std::vector<std::string>& env() const { return env_; }

  // Runs podman to the end: its exit and everything it printed.
  struct Result {
    int code = -1;  // -1: did not exit by the deadline (then killed)
    std::string out;
    std::string err;
  };
  Result run(const std::vector<std::string>& args, Clock::duration limit = 60s) const {
    Process process(command(args), env_);
    Result result;
    if (!process.started()) {
      result.err = process.error();
      return result;
    }
    const auto exit = process.wait(limit);
    result.out = process.out();
    result.err = process.err();
    if (exit) result.code = exit->code();
    return result;
  }

 private:
  std::vector<std::string> env_;
};

// Removes the container on every way out of the test, failures included.
class ContainerGuard {
 public:
  ContainerGuard(const Podman& podman, std::string name)
      : podman_(podman), name_(std::move(name)) {}
  ~ContainerGuard() { podman_.run({"rm", "--force", "--ignore", "--time", "0", name_}, 60s); }
  ContainerGuard(const ContainerGuard&) = delete;
  ContainerGuard& operator=(const ContainerGuard&) = delete;

 private:
  const Podman& podman_;
  std::string name_;
};

std::string describe(const Podman::Result& result) {
  return "exit " + std::to_string(result.code) + "\nstdout:\n" + result.out + "\nstderr:\n" +
         result.err;
}

TEST(ContainerImage, RunsReadOnlyAsNonRootRelaysAndStopsCleanly) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root, as scripts/build-image.sh does";
  TempDir dir("evgate-container");
  const std::string containersConf = dir.file("containers.conf");
  writeFile(containersConf, "[containers]\ndefault_ulimits = []\n");
  const Podman podman(containersConf);

  EchoServer backend;
  ASSERT_TRUE(backend.ok());

  // The configuration, mounted read-only; the state directory, writable by evgate's uid only.
  const std::string configDir = dir.file("config");
  const std::string stateDir = dir.file("state");
  std::filesystem::create_directories(configDir);
  std::filesystem::create_directories(stateDir);
  ASSERT_EQ(::chmod(dir.file("").c_str(), 0755), 0);
  ASSERT_EQ(::chmod(configDir.c_str(), 0755), 0);
  ASSERT_EQ(::chown(stateDir.c_str(), kEvgateUid, kEvgateUid), 0) << "the test runs as root";
  ASSERT_EQ(::chmod(stateDir.c_str(), 0700), 0);
  writeFile(configDir + "/evgate.yaml",
            "workers: 2\n"
            "drain_timeout: 5s\n"
            "state_file: /var/lib/evgate/state.yaml\n"
            "admin: { address: 127.0.0.1:0 }\n"
            "metrics: { address: 127.0.0.1:0 }\n"
            "clusters:\n"
            "  - name: echo\n"
            "    endpoints: [ \"" +
                backend.address() +
                "\" ]\n"
                "    connect_timeout: 2s\n"
                "listeners:\n"
                "  - name: web\n"
                "    bind: 127.0.0.1:0\n"
                "    cluster: echo\n");
  ASSERT_EQ(::chmod((configDir + "/evgate.yaml").c_str(), 0644), 0);

  const std::string name = "evgate-test-" + std::to_string(::getpid()) + "-" +
                           std::to_string(Clock::now().time_since_epoch().count() % 1000000);
  const ContainerGuard guard(podman, name);
  // The image's own ENTRYPOINT, CMD and USER: nothing here overrides them.
  Process container(podman.command({"run", "--rm", "--name", name, "--network=host", "--read-only",
                                    "--read-only-tmpfs=false", "-v", configDir + ":/etc/evgate:ro",
                                    "-v", stateDir + ":/var/lib/evgate", EVGATE_TEST_IMAGE}),
                    podman.env());
  ASSERT_TRUE(container.started()) << container.error();

  // The ports the daemon bound, from its log (stderr, through podman).
  const auto listener = container.waitForOutput(
      std::regex("listener web listening on 127\\.0\\.0\\.1:(\\d+) -> cluster echo"), 120s);
  ASSERT_TRUE(listener) << "stdout:\n" << container.out() << "\nstderr:\n" << container.err();
  const auto admin =
      container.waitForOutput(std::regex("admin API listening on 127\\.0\\.0\\.1:(\\d+)"), 30s);
  ASSERT_TRUE(admin) << container.err();
  const auto metrics = container.waitForOutput(
      std::regex("metrics listening on 127\\.0\\.0\\.1:(\\d+)/metrics"), 30s);
  ASSERT_TRUE(metrics) << container.err();
  const auto listenerPort = static_cast<uint16_t>(std::stoi((*listener)[1]));
  const std::string adminAddress = address(static_cast<uint16_t>(std::stoi((*admin)[1])));

  // Not root: the daemon's process (its real, effective, saved and filesystem uids, seen from the
  // host through /proc), and what `podman exec` gets by default (the image's USER).
  const Podman::Result inspect = podman.run({"inspect", "--format", "{{.State.Pid}}", name});
  ASSERT_EQ(inspect.code, 0) << describe(inspect);
  const std::string pid = inspect.out.substr(0, inspect.out.find('\n'));
  std::ifstream procStatus("/proc/" + pid + "/status");
  std::string line;
  std::string uids;
  std::string comm;
  while (std::getline(procStatus, line)) {
    if (line.rfind("Uid:", 0) == 0) uids = line;
    if (line.rfind("Name:", 0) == 0) comm = line;
  }
  EXPECT_TRUE(std::regex_match(comm, std::regex("Name:\\s+evgate"))) << comm;
  EXPECT_TRUE(std::regex_match(uids, std::regex("Uid:\\s+10001\\s+10001\\s+10001\\s+10001")))
      << "pid " << pid << ": " << uids;
  const Podman::Result id = podman.run({"exec", name, "id", "-u"});
  ASSERT_EQ(id.code, 0) << describe(id);
  EXPECT_EQ(id.out, "10001\n");

  // The root filesystem is read-only, /tmp included (no tmpfs was added).
  const Podman::Result write = podman.run({"exec", name, "touch", "/tmp/evgate-probe"});
  EXPECT_NE(write.code, 0) << "the root filesystem is writable: " << describe(write);

  // 1 MiB of random bytes through the listener to the backend and back.
  {
    const std::string payload = randomBytes(size_t{1} << 20, 0xc0ffee);
    const Fd client(connectTo(listenerPort));
    ASSERT_GE(client.get(), 0) << std::strerror(errno);
    const Exchange result = exchange(client.get(), payload, Clock::now() + 30s, /*toEof=*/false);
    EXPECT_EQ(result.end, "complete");
    EXPECT_EQ(result.received.size(), payload.size());
    EXPECT_TRUE(result.received == payload) << "the echoed bytes differ";
    EXPECT_GE(backend.accepted(), 1);
  }

  // gRPC health checking answers SERVING for the server as a whole.
  {
    const auto channel = grpc::CreateChannel(adminAddress, grpc::InsecureChannelCredentials());
    std::string error;
    EXPECT_EQ(healthStatus(channel, "", &error), 1) << error;
  }

  // The Prometheus endpoint, with the flow just relayed counted.
  {
    const HttpResponse page = httpGet(static_cast<uint16_t>(std::stoi((*metrics)[1])), "/metrics");
    ASSERT_TRUE(page.ok()) << page.error;
    EXPECT_EQ(page.status, 200);
    EXPECT_NE(page.body.find("evgate_"), std::string::npos) << page.body.substr(0, 2000);
  }

  // evgatectl inside the container, against the daemon beside it.
  const Podman::Result status =
      podman.run({"exec", name, "evgatectl", "--address", adminAddress, "status"});
  EXPECT_EQ(status.code, 0) << describe(status);

  // A runtime change is persisted in the state volume (the only place evgate writes).
  const Podman::Result create =
      podman.run({"exec", name, "evgatectl", "--address", adminAddress, "cluster", "create",
                  "extra", "--endpoint", backend.address()});
  EXPECT_EQ(create.code, 0) << describe(create);
  const std::string stateFile = stateDir + "/state.yaml";
  EXPECT_TRUE(std::filesystem::exists(stateFile)) << "no " << stateFile;
  struct stat info {};
  if (::stat(stateFile.c_str(), &info) == 0) {
    EXPECT_EQ(info.st_uid, kEvgateUid);
  }

  // podman stop sends SIGTERM: evgate drains (no flows are open) and exits 0; `podman run`
  // passes the container's exit code on.
  const Podman::Result stop = podman.run({"stop", "--time", "20", name});
  EXPECT_EQ(stop.code, 0) << describe(stop);
  const auto exit = container.wait(30s);
  ASSERT_TRUE(exit) << "podman run still runs 30 s after podman stop";
  EXPECT_EQ(exit->code(), 0) << exit->describe() << "\nstderr:\n" << container.err();
}

}  // namespace
}  // namespace evgate::test
