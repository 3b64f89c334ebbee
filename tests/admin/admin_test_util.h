#pragma once

// An in-process gateway with its admin API (AdminRuntime on its own control-loop thread) and a
// gRPC client for it, for tests of the admin service over real sockets on 127.0.0.1.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "admin/admin_runtime.h"
#include "evgate/admin/v1/admin.grpc.pb.h"
#include "gateway/config/config_parser.h"
#include "reactor/event_base.h"
#include "tests/integration/net_util.h"

namespace evgate::admin::testing {

namespace v1 = ::evgate::admin::v1;
using namespace std::chrono_literals;

using test::eventually;
using test::portOf;

// A client context with a deadline, so a failing test never hangs.
inline std::unique_ptr<grpc::ClientContext> callContext(
    std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + limit);
  return context;
}

// The gateway of `yaml` (admin.address should be 127.0.0.1:0) running in this process: workers,
// control plane on a thread of its own, admin server.
class AdminHarness {
 public:
  // With `clock`, the control loop runs on it (a FakeClock: scheduled events fire when the test
  // advances it) and so does the control plane's wall clock.
  // `watchQueueLimit`: events a Watch stream may have queued (small ones to test the cut-off).
  explicit AdminHarness(const std::string& yaml, reactor::Clock* clock = nullptr,
                        size_t watchQueueLimit = AdminRuntime::kDefaultWatchQueueLimit) {
    gateway::ConfigResult parsed = gateway::parseConfig(yaml, "test.yaml");
    if (!parsed.ok()) {
      error_ = parsed.errors.front().toString();
      return;
    }
    // Tests run in parallel: the metrics endpoint takes any free port unless the test chose one.
    if (parsed.config->metrics == gateway::MetricsConfig{})
      parsed.config->metrics.address = "127.0.0.1:0";
    std::promise<void> ready;
    thread_ = std::thread(
        [this, config = std::move(*parsed.config), &ready, clock, watchQueueLimit]() mutable {
          reactor::EventBaseOptions options;
          options.clock = clock;
          reactor::EventBase base(options);
          AdminRuntime runtime(base, "test.yaml", std::move(config), watchQueueLimit);
          if (auto error = runtime.start()) {
            error_ = *error;
            ready.set_value();
            return;
          }
          if (clock != nullptr) {
            const auto wallStart = std::chrono::system_clock::now();
            const reactor::TimePoint clockStart = clock->now();
            runtime.control().setWallClock([wallStart, clockStart, clock] {
              return wallStart + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                     clock->now() - clockStart);
            });
          }
          base_ = &base;
          runtime_ = &runtime;
          address_ = runtime.adminAddress();
          ready.set_value();
          base.loop(reactor::kLoopNoExitOnEmpty);
          runtime.stop();
          runtime_ = nullptr;
        });
    ready.get_future().wait();
    if (!error_.empty()) return;
    channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    stub_ = v1::Admin::NewStub(channel_);
  }

  ~AdminHarness() { stop(); }
  AdminHarness(const AdminHarness&) = delete;
  AdminHarness& operator=(const AdminHarness&) = delete;

  // Stops the gateway the way the daemon does at exit.
  void stop() {
    if (!thread_.joinable()) return;
    if (base_ != nullptr) base_->runInLoop([base = base_] { base->loopBreak(); });
    thread_.join();
    base_ = nullptr;
  }

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  v1::Admin::Stub& stub() { return *stub_; }
  const std::string& address() const { return address_; }

  // Runs `fn` on the control loop (where the runtime's objects live) and waits for it.
  void onControlLoop(const std::function<void(AdminRuntime&)>& fn) {
    std::promise<void> done;
    base_->runInLoop([&] {
      fn(*runtime_);
      done.set_value();
    });
    done.get_future().wait();
  }

 private:
  std::string error_;
  std::thread thread_;
  reactor::EventBase* base_ = nullptr;
  AdminRuntime* runtime_ = nullptr;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Admin::Stub> stub_;
};

}  // namespace evgate::admin::testing
