#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gateway/cluster.h"
#include "gateway/config/config.h"
#include "gateway/flow.h"
#include "reactor/event_base.h"
#include "reactor/listener.h"
#include "reactor/socket_address.h"

namespace evgate::gateway {

// Where the access log goes: one JSON line per ended flow. Safe from any thread (one write(2)
// per line on an O_APPEND or stdout fd).
class AccessLog {
 public:
  explicit AccessLog(const AccessLogConfig& config);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;
  // Empty if the log is usable, else what went wrong (e.g. the file cannot be opened).
  const std::string& error() const { return error_; }
  void write(const std::string& line) const;

 private:
  int fd_ = -1;
  bool ownsFd_ = false;
  std::string error_;
};

// One listener as every worker shares it: its configuration, the address it is bound to, its
// cluster, and the connection count that max_connections limits (a relaxed atomic: the limit
// may be overshot by at most one connection per worker at the same instant).
struct ListenerState {
  ListenerConfig config;
  reactor::SocketAddress bound;
  std::shared_ptr<ClusterState> cluster;
  std::atomic<uint32_t> connections{0};
  std::atomic<uint64_t> refusedOverLimit{0};
  std::atomic<uint64_t> refusedNotAllowed{0};
};

// One worker thread with its own EventBase: it accepts on its own SO_REUSEPORT socket of every
// listener and relays the flows it accepted until they end ("one loop per thread"; a flow never
// leaves its worker).
//
// Thread rule: the public methods are safe from any thread (they post to the worker's loop
// with runInLoop), except start(), which the owner calls once.
class Worker : private FlowObserver {
 public:
  // A listening socket for this worker (the worker owns the fd) and the listener it belongs to.
  struct Socket {
    std::shared_ptr<ListenerState> listener;
    int fd;
  };

  Worker(uint32_t index, const AccessLog& accessLog);
  // Stops the loop if it still runs and joins the thread.
  ~Worker() override;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the thread and its loop; returns once the loop accepts on every socket.
  void start(std::vector<Socket> sockets);

  // Closes this worker's listening sockets: new clients are refused, flows go on.
  void stopAccepting();
  // Closes up to `count` flows (oldest first) with `reason`.
  void closeFlows(size_t count, CloseReason reason);
  // Stops the loop (flows still open are closed with kDrain first) and joins the thread. Called
  // by the owner only (not concurrently with itself).
  void stop();
  // Runs `make` on the loop thread and keeps what it returns under `key` until disown(key) or
  // the loop ends; it is then destroyed on the loop thread, before the EventBase (e.g. a
  // cluster's HealthChecker). Owning under a key already in use replaces (destroys) the old
  // object. Does nothing if the loop is not running.
  void own(std::string key, std::function<std::shared_ptr<void>(reactor::EventBase&)> make);
  // Destroys, on the loop thread, what own() keeps under `key`, if anything.
  void disown(std::string key);

  // A reload's share for this worker (see Gateway::reload).
  struct Changes {
    // New listeners: start accepting on these sockets (the worker owns the fds).
    std::vector<Socket> add;
    // Listeners to stop accepting on: their sockets close, their open flows go on (drain).
    std::vector<const ListenerState*> remove;
    // Listeners that stay but whose cluster changed: new flows use a picker for the new
    // cluster; flows already open keep the old picker until they end.
    std::vector<std::pair<const ListenerState*, std::shared_ptr<ClusterState>>> repick;
  };
  // Applies `changes` on the loop (adds before removes, so a listener replaced on the same
  // address never has zero sockets); the future is ready once they are applied. If the loop is
  // not running, closes the added sockets and returns a ready future.
  std::future<void> apply(Changes changes);

  size_t flowCount() const { return flowCount_.load(std::memory_order_relaxed); }
  uint32_t index() const { return index_; }

 private:
  // A listener on this worker: the reactor listener and this worker's picker for its cluster for
  // new flows. Each flow holds its own reference to the picker and the listener state it
  // started with, so both outlive a reload that swaps the picker or removes the listener.
  struct Accepting {
    Worker* worker;
    std::shared_ptr<ListenerState> state;
    std::shared_ptr<WorkerCluster> cluster;
    std::unique_ptr<reactor::Listener> listener;
    FlowSettings settings;
  };

  void run(std::vector<Socket> sockets, std::promise<void>& ready);
  // Starts accepting on `socket` (loop thread); on failure logs, closes the fd and adds nothing.
  void addListener(Socket socket);
  std::shared_ptr<WorkerCluster> makePicker(std::shared_ptr<ClusterState> cluster) const;
  static void onAccept(reactor::Listener& listener, int fd, const sockaddr* peer, socklen_t peerLen,
                       void* arg);
  void accept(Accepting& accepting, int fd, const reactor::SocketAddress& peer);
  void onFlowClosed(Flow& flow) override;

  const uint32_t index_;
  const AccessLog& accessLog_;
  std::thread thread_;
  // Lives on the worker thread's stack while it runs; set before start() returns, cleared when the
  // loop has ended.
  std::atomic<reactor::EventBase*> base_{nullptr};

  // Loop thread only.
  std::vector<std::unique_ptr<Accepting>> accepting_;
  struct OpenFlow {
    Flow* flow;
    std::shared_ptr<ListenerState> listener;
    std::shared_ptr<WorkerCluster> picker;  // the flow's UpstreamPicker: alive while it is
  };
  std::map<uint64_t, OpenFlow> flows_;  // by id, which grows with age: oldest first
  uint64_t nextFlow_ = 0;

  std::atomic<size_t> flowCount_{0};

  // What own() made, by key; loop thread only.
  std::map<std::string, std::shared_ptr<void>> owned_;
};

}  // namespace evgate::gateway
