// ConfigWatcher: one call per burst of changes in the configuration file's directory, whether
// the file is swapped through a symlink (a ConfigMap update), replaced by a rename, or lives
// behind a symlink into another directory; a clear error for a directory that does not exist.

#include "gateway/config/config_watcher.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/integration/config_map_dir.h"
#include "tests/integration/net_util.h"

namespace evgate::gateway {
namespace {

using namespace std::chrono_literals;
using evgate::test::TempDir;

constexpr auto kSettle = 20ms;
// Ends the loop if the watcher never calls back (the test then fails on the count).
constexpr auto kGiveUp = 5s;

class ConfigWatcherTest : public ::testing::Test {
 protected:
  // Starts a watcher on `path` that counts its calls and ends the loop at the first one.
  void watch(const std::string& path) {
    watcher_ = std::make_unique<ConfigWatcher>(base_, path, kSettle, [this] {
      ++calls_;
      base_.loopBreak();
    });
    const auto error = watcher_->start();
    ASSERT_FALSE(error) << *error;
  }

  // Runs the loop until the watcher calls back (or kGiveUp passes).
  void runUntilCalled() {
    base_.loopExit(kGiveUp);
    base_.dispatch();
  }

  reactor::EventBase base_;
  std::unique_ptr<ConfigWatcher> watcher_;
  int calls_ = 0;
};

TEST_F(ConfigWatcherTest, ASymlinkSwapIsSeen) {
  TempDir dir;
  test::ConfigMapDir config(dir.file(""), "evgate.yaml");
  ASSERT_TRUE(config.publish("workers: 1\n"));
  ASSERT_NO_FATAL_FAILURE(watch(config.path()));
  // Create, symlink, rename, remove: what a ConfigMap update does.
  ASSERT_TRUE(config.publish("workers: 2\n"));
  runUntilCalled();
  EXPECT_EQ(calls_, 1);
}

TEST_F(ConfigWatcherTest, ARenameOverTheFileIsSeen) {
  TempDir dir;
  const std::string path = dir.file("evgate.yaml");
  test::writeFile(path, "workers: 1\n");
  ASSERT_NO_FATAL_FAILURE(watch(path));
  test::writeFile(dir.file("evgate.yaml.tmp"), "workers: 2\n");
  ASSERT_EQ(::rename(dir.file("evgate.yaml.tmp").c_str(), path.c_str()), 0);
  runUntilCalled();
  EXPECT_EQ(calls_, 1);
}

TEST_F(ConfigWatcherTest, AFileBehindASymlinkIsWatchedInItsOwnDirectory) {
  TempDir links;
  TempDir targets;
  const std::string target = targets.file("real.yaml");
  test::writeFile(target, "workers: 1\n");
  const std::string path = links.file("evgate.yaml");
  std::filesystem::create_symlink(target, path);
  ASSERT_NO_FATAL_FAILURE(watch(path));
  // Written where it lives; nothing happens in the link's directory.
  test::writeFile(target, "workers: 2\n");
  runUntilCalled();
  EXPECT_EQ(calls_, 1);
}

TEST_F(ConfigWatcherTest, AMissingDirectoryIsAnErrorNamingIt) {
  TempDir dir;
  ConfigWatcher watcher(base_, dir.file("absent/evgate.yaml"), kSettle, [] {});
  const auto error = watcher.start();
  ASSERT_TRUE(error);
  EXPECT_NE(error->find("cannot watch " + dir.file("absent")), std::string::npos) << *error;
  EXPECT_NE(error->find("No such file or directory"), std::string::npos) << *error;
}

}  // namespace
}  // namespace evgate::gateway
