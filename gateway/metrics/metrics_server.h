#pragma once

#include <prometheus/collectable.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "reactor/buffer_event.h"
#include "reactor/event_base.h"
#include "reactor/listener.h"

namespace evgate::gateway::metrics {

// The HTTP endpoint Prometheus scrapes: GET /metrics on the metrics address, answered in the
// text exposition format (prometheus-cpp's serializer) with every collectable's families. It
// runs on a reactor loop of its own, so a scrape never takes time from the workers' loops and
// stopping is immediate.
//
// HTTP: one request per connection (the answer says Connection: close). GET and HEAD of
// /metrics (a query string is ignored) get 200; another path 404; another method 405; a
// malformed request 400, a head over kMaxRequestHead bytes 431, another HTTP version 505, each
// with a plain-text body saying why. A client that sends no complete head within
// kRequestTimeout, or does not read the answer within it, is disconnected. Connections beyond
// kMaxConnections are closed at accept.
//
// Thread rule: start() and the destructor on the owner's thread. The collectables are called on
// the server's thread and must outlive the server (destroy it first: the destructor joins that
// thread).
class MetricsServer {
 public:
  static constexpr std::chrono::seconds kRequestTimeout{10};
  static constexpr size_t kMaxConnections = 64;

  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Listens on `address` ("host:port"; port 0: any free port) and starts serving. On failure
  // returns nullptr and sets `error` ("metrics.address 127.0.0.1:9902: cannot listen: Address
  // already in use").
  static std::unique_ptr<MetricsServer> start(
      const std::string& address,
      std::vector<std::shared_ptr<prometheus::Collectable>> collectables, std::string& error);

  // "host:port" it listens on (the chosen port for port 0).
  const std::string& boundAddress() const { return bound_; }

 private:
  MetricsServer() = default;

  static void onAccept(reactor::Listener& listener, int fd, const sockaddr* peer, socklen_t len,
                       void* arg);
  static void onRead(reactor::BufferEvent& bev, void* arg);
  static void onWrite(reactor::BufferEvent& bev, void* arg);
  static void onEvent(reactor::BufferEvent& bev, short what, void* arg);
  // Answers the request whose head is complete in `bev`'s input (or 431 when it is too long).
  void answer(reactor::BufferEvent& bev, size_t headLength, bool tooLong);
  void respond(reactor::BufferEvent& bev, int status, const std::string& contentType,
               const std::string& body, bool withBody, const char* extraHeader = nullptr);
  void closeConnection(reactor::BufferEvent& bev);
  // Every collectable's families, serialized.
  std::string collect() const;

  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::unique_ptr<reactor::EventBase> base_;
  std::unique_ptr<reactor::Listener> listener_;
  // Open connections, by their BufferEvent; loop thread only.
  std::unordered_map<reactor::BufferEvent*, reactor::BufferEvent::Ptr> connections_;
  std::string bound_;
  std::thread thread_;
};

}  // namespace evgate::gateway::metrics
