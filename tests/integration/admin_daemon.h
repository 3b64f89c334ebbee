#pragma once

// The real evgate daemon for integration tests, with a client for its admin API:
//
//   AdminDaemon daemon(configPath);      // waits for "admin API listening on ..."
//   ASSERT_TRUE(daemon.ok()) << daemon.output();
//   daemon.stub().GetStatus(...);
//   EXPECT_EQ(stopAdminDaemon(daemon).code(), 0);

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <chrono>
#include <memory>
#include <regex>
#include <string>

#include "evgate/admin/v1/admin.grpc.pb.h"
#include "tests/integration/process.h"

namespace evgate::test {

class AdminDaemon {
 public:
  static constexpr auto kStartLimit = std::chrono::seconds(10);

  explicit AdminDaemon(const std::string& configPath)
      : process_({EVGATE_BINARY, "--config", configPath}) {
    if (!process_.started()) return;
    const auto match = process_.waitForOutput(std::regex("admin API listening on [0-9.]+:(\\d+)"),
                                              kStartLimit, Process::Stream::kStderr);
    if (!match) return;
    adminAddress_ = "127.0.0.1:" + (*match)[1];
    channel_ = grpc::CreateChannel(adminAddress_, grpc::InsecureChannelCredentials());
    stub_ = ::evgate::admin::v1::Admin::NewStub(channel_);
  }

  bool ok() const { return stub_ != nullptr; }
  // What it has logged so far (stderr).
  std::string output() const { return process_.err(); }
  const std::string& adminAddress() const { return adminAddress_; }
  ::evgate::admin::v1::Admin::Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  Process& process() { return process_; }
  // Drops this client's channel. The daemon's graceful stop waits (up to its grace period) for
  // connected admin clients to go away, so stopAdminDaemon() hangs up first.
  void disconnect() {
    stub_.reset();
    channel_.reset();
  }

 private:
  Process process_;
  std::string adminAddress_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::evgate::admin::v1::Admin::Stub> stub_;
};

// Hangs up, sends SIGTERM, then waits up to 10 s for the exit.
inline Process::Exit stopAdminDaemon(AdminDaemon& daemon) {
  daemon.disconnect();
  daemon.process().signal(SIGTERM);
  const auto exit = daemon.process().wait(std::chrono::seconds(10));
  if (!exit.has_value()) return Process::Exit{-1};
  return *exit;
}

}  // namespace evgate::test
