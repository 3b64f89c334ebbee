#include "gateway/metrics/metrics_server.h"

#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>

#include "gateway/metrics/http_request.h"
#include "reactor/fatal.h"
#include "reactor/socket_address.h"

namespace evgate::gateway::metrics {
namespace {

const char* statusText(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

constexpr const char* kTextPlain = "text/plain; charset=utf-8";
constexpr const char* kExposition = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace

MetricsServer::~MetricsServer() {
  if (thread_.joinable()) {
    base_->runInLoop([this] {
      listener_.reset();
      connections_.clear();
      base_->loopBreak();
    });
    thread_.join();
  }
}

std::unique_ptr<MetricsServer> MetricsServer::start(
    const std::string& address, std::vector<std::shared_ptr<prometheus::Collectable>> collectables,
    std::string& error) {
  const std::optional<reactor::SocketAddress> parsed = reactor::SocketAddress::parse(address);
  if (!parsed) {
    error = "metrics.address " + address + ": not a host:port address";
    return nullptr;
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->collectables_ = std::move(collectables);
  // Created here, so the bind error is reported before anything runs; the loop thread takes
  // the base over when it calls loop().
  server->base_ = std::make_unique<reactor::EventBase>();
  server->listener_ = reactor::Listener::bind(
      *server->base_, onAccept, server.get(),
      reactor::Listener::kCloseOnFree | reactor::Listener::kReuseAddress, -1, *parsed);
  if (server->listener_ == nullptr) {
    error = "metrics.address " + address + ": cannot listen: " + reactor::errnoText(errno);
    return nullptr;
  }
  server->listener_->setLabel("metrics server");
  const std::optional<reactor::SocketAddress> bound =
      reactor::SocketAddress::localOf(server->listener_->fd());
  server->bound_ = bound ? bound->toString() : parsed->toString();
  MetricsServer* self = server.get();
  server->thread_ = std::thread([self] { self->base_->loop(reactor::kLoopNoExitOnEmpty); });
  return server;
}

void MetricsServer::onAccept(reactor::Listener&, int fd, const sockaddr*, socklen_t, void* arg) {
  auto* self = static_cast<MetricsServer*>(arg);
  if (self->connections_.size() >= kMaxConnections) {
    ::close(fd);
    return;
  }
  reactor::BufferEvent::Ptr bev =
      reactor::BufferEvent::create(*self->base_, fd, reactor::BufferEvent::kCloseOnFree);
  bev->setLabel("metrics connection");
  bev->setCallbacks(onRead, onWrite, onEvent, self);
  bev->setTimeouts(kRequestTimeout, kRequestTimeout);
  bev->enable(reactor::kRead);
  reactor::BufferEvent* key = bev.get();
  self->connections_.emplace(key, std::move(bev));
}

void MetricsServer::onRead(reactor::BufferEvent& bev, void* arg) {
  auto* self = static_cast<MetricsServer*>(arg);
  const std::optional<size_t> end = bev.input().search("\r\n\r\n");
  if (end && *end <= kMaxRequestHead) {
    self->answer(bev, *end, false);
  } else if (bev.input().length() > kMaxRequestHead) {
    self->answer(bev, 0, true);
  }
}

void MetricsServer::onWrite(reactor::BufferEvent& bev, void* arg) {
  // The answer is written: one request per connection.
  static_cast<MetricsServer*>(arg)->closeConnection(bev);
}

void MetricsServer::onEvent(reactor::BufferEvent& bev, short, void* arg) {
  // EOF, a socket error or a timeout: nothing more to say to this client.
  static_cast<MetricsServer*>(arg)->closeConnection(bev);
}

void MetricsServer::answer(reactor::BufferEvent& bev, size_t headLength, bool tooLong) {
  // No more reading: anything after the head is ignored.
  bev.disable(reactor::kRead);
  if (tooLong) {
    respond(bev, 431, kTextPlain,
            "the request head is longer than " + std::to_string(kMaxRequestHead) + " bytes\n",
            true);
    return;
  }
  std::string head(headLength, '\0');
  bev.input().copyOut(head.data(), headLength);
  const RequestParse request = parseRequestHead(head);
  if (!request.head) {
    respond(bev, request.status, kTextPlain, request.reason + "\n", true);
    return;
  }
  const bool isHead = request.head->method == "HEAD";
  if (request.head->method != "GET" && !isHead) {
    respond(bev, 405, kTextPlain, "only GET and HEAD are served\n", true, "Allow: GET, HEAD\r\n");
    return;
  }
  if (request.head->path != "/metrics") {
    respond(bev, 404, kTextPlain, "metrics are served at /metrics\n", !isHead);
    return;
  }
  std::string body;
  try {
    body = collect();
  } catch (const std::exception& e) {
    respond(bev, 500, kTextPlain, std::string("cannot collect metrics: ") + e.what() + "\n",
            !isHead);
    return;
  }
  respond(bev, 200, kExposition, body, !isHead);
}

void MetricsServer::respond(reactor::BufferEvent& bev, int status, const std::string& contentType,
                            const std::string& body, bool withBody, const char* extraHeader) {
  std::string response = "HTTP/1.1 " + std::to_string(status) + " " + statusText(status) +
                         "\r\nContent-Type: " + contentType +
                         "\r\nContent-Length: " + std::to_string(body.size()) +
                         "\r\nConnection: close\r\n" + (extraHeader ? extraHeader : "") + "\r\n";
  if (withBody) response += body;
  bev.write(response.data(), response.size());
  bev.enable(reactor::kWrite);
}

void MetricsServer::closeConnection(reactor::BufferEvent& bev) {
  // Freed at once: the BufferEvent's own callback may be on the stack, which its deleter allows
  // (libevent's bufferevent_free from a callback).
  connections_.erase(&bev);
}

std::string MetricsServer::collect() const {
  std::vector<prometheus::MetricFamily> families;
  for (const auto& collectable : collectables_) {
    std::vector<prometheus::MetricFamily> part = collectable->Collect();
    families.insert(families.end(), std::make_move_iterator(part.begin()),
                    std::make_move_iterator(part.end()));
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace evgate::gateway::metrics
