// The daemon follows its configuration file the way Kubernetes updates a mounted ConfigMap: a
// new version directory and an atomic `..data` symlink swap. A change applies in place (as
// SIGHUP would) without dropping flows; an invalid version changes nothing and the next valid
// one applies; a version with the same bytes reloads nothing; config_watch: false turns it off.

#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "tests/integration/admin_daemon.h"
#include "tests/integration/config_map_dir.h"
#include "tests/integration/net_util.h"

namespace evgate::test {
namespace {

constexpr auto kLimit = std::chrono::seconds(10);

std::string configYaml(const EchoServer& backend, const std::string& extraListeners = "",
                       const std::string& top = "") {
  return top +
         "workers: 2\n"
         "access_log: { mode: off }\n"
         "admin: { address: 127.0.0.1:0 }\n"
         "metrics: { address: 127.0.0.1:0 }\n"
         "clusters:\n"
         "  - name: backends\n"
         "    endpoints: [ \"" +
         backend.address() +
         "\" ]\n"
         "listeners:\n"
         "  - { name: web, bind: 127.0.0.1:0, cluster: backends }\n" +
         extraListeners;
}

size_t occurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

class ConfigWatchTest : public ::testing::Test {
 protected:
  // Starts the daemon on `yaml`, published in the ConfigMap directory; sets webPort_.
  void start(const std::string& yaml) {
    ASSERT_TRUE(config_.publish(yaml));
    daemon_ = std::make_unique<AdminDaemon>(config_.path());
    ASSERT_TRUE(daemon_->ok()) << daemon_->output();
    const auto web = daemon_->process().waitForOutput(
        std::regex(R"(listener web listening on 127\.0\.0\.1:(\d+))"), kLimit,
        Process::Stream::kStderr);
    ASSERT_TRUE(web) << daemon_->output();
    webPort_ = static_cast<uint16_t>(std::stoi((*web)[1]));
  }

  // Waits until the daemon has logged `needle` `count` times in all.
  bool waitForCount(const std::string& needle, size_t count) {
    const auto deadline = Clock::now() + kLimit;
    while (occurrences(daemon_->output(), needle) < count) {
      if (Clock::now() >= deadline) return false;
      // Reads the daemon's output for a moment (the pattern never matches).
      daemon_->process().waitForOutput(std::regex("a^"), std::chrono::milliseconds(20),
                                       Process::Stream::kStderr);
    }
    return true;
  }

  TempDir dir_;
  ConfigMapDir config_{dir_.file(""), "evgate.yaml"};
  std::unique_ptr<AdminDaemon> daemon_;
  uint16_t webPort_ = 0;
};

TEST_F(ConfigWatchTest, ASymlinkSwapAddsAListenerAndOpenFlowsGoOn) {
  EchoServer backend;
  ASSERT_NO_FATAL_FAILURE(start(configYaml(backend)));
  EXPECT_NE(daemon_->output().find("watching " + config_.path() + " for changes"),
            std::string::npos);
  Fd open(connectTo(webPort_));
  ASSERT_TRUE(echoes(open.get(), "before the swap"));

  ASSERT_TRUE(config_.publish(
      configYaml(backend, "  - { name: api, bind: 127.0.0.1:0, cluster: backends }\n")));
  const auto api = daemon_->process().waitForOutput(
      std::regex(R"(listener api listening on 127\.0\.0\.1:(\d+))"), kLimit,
      Process::Stream::kStderr);
  ASSERT_TRUE(api) << daemon_->output();
  EXPECT_TRUE(waitForCount("reloaded: +1 listeners, -0 listeners, 0 listeners updated", 1))
      << daemon_->output();
  Fd added(connectTo(static_cast<uint16_t>(std::stoi((*api)[1]))));
  EXPECT_TRUE(echoes(added.get(), "through the listener the swap added"));
  // The flow opened before the change was not touched: it relays and ends cleanly.
  EXPECT_TRUE(echoes(open.get(), "after the swap"));
  const Exchange last = exchange(open.get(), "bye", Clock::now() + kLimit, /*toEof=*/true);
  EXPECT_EQ(last.end, "eof");
  EXPECT_EQ(last.received, "bye");
  open.reset();
  added.reset();
  EXPECT_EQ(stopAdminDaemon(*daemon_).code(), 0) << daemon_->output();
}

TEST_F(ConfigWatchTest, AnInvalidVersionChangesNothingAndTheNextValidOneApplies) {
  EchoServer backend;
  ASSERT_NO_FATAL_FAILURE(start(configYaml(backend)));
  Fd open(connectTo(webPort_));
  ASSERT_TRUE(echoes(open.get(), "before"));

  ASSERT_TRUE(config_.publish(
      configYaml(backend, "  - { name: api, bind: 127.0.0.1:0, cluster: nope }\n")));
  ASSERT_TRUE(waitForCount("reload failed; configuration unchanged", 1)) << daemon_->output();
  EXPECT_NE(daemon_->output().find("unknown cluster \"nope\""), std::string::npos);
  EXPECT_EQ(occurrences(daemon_->output(), "listener api listening"), 0u);
  EXPECT_TRUE(echoes(open.get(), "still relaying"));

  // The same bytes again (a resync, another file of the ConfigMap changing) reload nothing;
  // then a valid version applies. Two swaps, one reload.
  ASSERT_TRUE(config_.publish(
      configYaml(backend, "  - { name: api, bind: 127.0.0.1:0, cluster: nope }\n")));
  ASSERT_TRUE(config_.publish(
      configYaml(backend, "  - { name: api, bind: 127.0.0.1:0, cluster: backends }\n")));
  ASSERT_TRUE(waitForCount("reloaded: +1 listeners", 1)) << daemon_->output();
  EXPECT_EQ(occurrences(daemon_->output(), "reload failed; configuration unchanged"), 1u)
      << daemon_->output();
  EXPECT_EQ(occurrences(daemon_->output(), "changed; reloading"), 2u) << daemon_->output();
  EXPECT_TRUE(echoes(open.get(), "after"));
}

TEST_F(ConfigWatchTest, AFileRewrittenInPlaceIsReloadedToo) {
  EchoServer backend;
  TempDir plain;
  const std::string path = plain.file("evgate.yaml");
  writeFile(path, configYaml(backend));
  AdminDaemon daemon(path);
  ASSERT_TRUE(daemon.ok()) << daemon.output();
  writeFile(path, configYaml(backend, "  - { name: api, bind: 127.0.0.1:0, cluster: backends }\n"));
  EXPECT_TRUE(daemon.process().waitForOutput(std::regex("listener api listening on"), kLimit,
                                             Process::Stream::kStderr))
      << daemon.output();
  EXPECT_EQ(stopAdminDaemon(daemon).code(), 0) << daemon.output();
}

TEST_F(ConfigWatchTest, ConfigWatchFalseLeavesReloadsToSighup) {
  EchoServer backend;
  ASSERT_NO_FATAL_FAILURE(start(configYaml(backend, "", "config_watch: false\n")));
  EXPECT_EQ(daemon_->output().find("for changes"), std::string::npos) << daemon_->output();
  ASSERT_TRUE(config_.publish(
      configYaml(backend, "  - { name: api, bind: 127.0.0.1:0, cluster: backends }\n",
                 "config_watch: false\n")));
  ASSERT_TRUE(daemon_->process().signal(SIGHUP));
  ASSERT_TRUE(waitForCount("reloaded: +1 listeners", 1)) << daemon_->output();
  EXPECT_EQ(occurrences(daemon_->output(), "config watch"), 0u) << daemon_->output();
}

}  // namespace
}  // namespace evgate::test
