// evgate-lerelay: a small TCP relay written against libevent's bufferevents, the seed's reference
// in the relay benchmark (scripts/bench-relay.sh). It follows the shape of libevent's
// sample/le-proxy.c, the relay libevent ships as an example: one thread, an evconnlistener, and
// per flow two socket bufferevents (downstream: the accepted client; upstream: a non-blocking
// connect to the target). Written for this benchmark, not taken from the sample.
//
//   evgate-lerelay --listen 127.0.0.1:PORT --target 127.0.0.1:PORT [--high-watermark BYTES]
//                  [--duration S]
//
// - Read callback: everything in the side's input moves to the other side's output
//   (evbuffer_add_buffer moves the chains, it does not copy the bytes).
// - Backpressure: when the other side's output holds --high-watermark bytes (default 512 KiB) or
//   more, reading stops on this side and the other side gets a write watermark of half that and a
//   "drained" write callback; once its output falls to that level the callback restores the
//   plain callbacks and resumes reading.
// - EOF or error on one side: what it still had in its input is moved over, then the other side
//   is closed as soon as its output is flushed (at once if it is empty). Like the sample, a
//   half-close closes the whole flow.
// - Both sockets get TCP_NODELAY (as nginx and HAProxy set by default; the sample does not, and
//   the benchmark's request/response loads never have a segment in flight when they write).
//
// Loopback only, bounded by --duration (default 3600 s); SIGINT/SIGTERM end it.

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace {

constexpr int kBevOptions = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;

struct Settings {
  sockaddr_storage listen{};
  int listenLength = 0;
  sockaddr_storage target{};
  int targetLength = 0;
  size_t highWatermark = 512 * 1024;
  double duration = 3600;
};

[[noreturn]] void usage(const char* message) {
  std::fprintf(stderr,
               "evgate-lerelay: %s\n"
               "usage: evgate-lerelay --listen 127.0.0.1:PORT --target 127.0.0.1:PORT\n"
               "                      [--high-watermark BYTES] [--duration S]\n",
               message);
  std::exit(2);
}

// Only 127.0.0.1 with a port: the benchmark never points a relay at another host.
void parseLoopback(const char* text, sockaddr_storage& out, int& length) {
  length = sizeof out;
  if (evutil_parse_sockaddr_port(text, reinterpret_cast<sockaddr*>(&out), &length) != 0 ||
      out.ss_family != AF_INET) {
    usage("the address must be 127.0.0.1:PORT");
  }
  const auto* in = reinterpret_cast<const sockaddr_in*>(&out);
  if (in->sin_addr.s_addr != htonl(INADDR_LOOPBACK) || in->sin_port == 0) {
    usage("the address must be 127.0.0.1:PORT");
  }
}

double parseNumber(const char* text, double min, double max) {
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(value >= min && value <= max)) usage("bad number");
  return value;
}

Settings parseSettings(int argc, char** argv) {
  Settings s;
  bool haveListen = false;
  bool haveTarget = false;
  for (int i = 1; i < argc; i += 2) {
    const std::string_view key = argv[i];
    if (i + 1 >= argc) usage("an option lacks its value");
    const char* value = argv[i + 1];
    if (key == "--listen") {
      parseLoopback(value, s.listen, s.listenLength);
      haveListen = true;
    } else if (key == "--target") {
      parseLoopback(value, s.target, s.targetLength);
      haveTarget = true;
    } else if (key == "--high-watermark") {
      s.highWatermark = static_cast<size_t>(parseNumber(value, 1024, 1 << 30));
    } else if (key == "--duration") {
      s.duration = parseNumber(value, 0.1, 86400);
    } else {
      usage("unknown option");
    }
  }
  if (!haveListen || !haveTarget) usage("--listen and --target are required");
  return s;
}

void setNoDelay(evutil_socket_t fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// One relayed connection: the accepted client and the upstream connection. A side is null once
// it has been freed; the flow is deleted with its last side.
struct Flow {
  const Settings* settings = nullptr;
  bufferevent* down = nullptr;
  bufferevent* up = nullptr;

  bufferevent* peerOf(const bufferevent* bev) const { return bev == down ? up : down; }
  void forget(const bufferevent* bev) { (bev == down ? down : up) = nullptr; }
};

void onRead(bufferevent* bev, void* arg);
void onDrained(bufferevent* bev, void* arg);
void onFlushedClose(bufferevent* bev, void* arg);
void onEvent(bufferevent* bev, short what, void* arg);

void onRead(bufferevent* bev, void* arg) {
  auto* flow = static_cast<Flow*>(arg);
  evbuffer* input = bufferevent_get_input(bev);
  bufferevent* peer = flow->peerOf(bev);
  if (peer == nullptr) {  // the other side is gone: nobody to hand the bytes to
    evbuffer_drain(input, evbuffer_get_length(input));
    return;
  }
  evbuffer* output = bufferevent_get_output(peer);
  evbuffer_add_buffer(output, input);
  const size_t high = flow->settings->highWatermark;
  if (evbuffer_get_length(output) < high) return;
  // Too much waits for the peer: stop reading here until its output drains to half.
  bufferevent_disable(bev, EV_READ);
  bufferevent_setwatermark(peer, EV_WRITE, high / 2, high);
  bufferevent_setcb(peer, onRead, onDrained, onEvent, flow);
}

// The write callback of a side whose output was full: it has drained to the low watermark.
void onDrained(bufferevent* bev, void* arg) {
  auto* flow = static_cast<Flow*>(arg);
  bufferevent_setcb(bev, onRead, nullptr, onEvent, flow);
  bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
  if (bufferevent* peer = flow->peerOf(bev)) bufferevent_enable(peer, EV_READ);
}

// The write callback of the last side of a flow, open only to flush what its peer left behind.
void onFlushedClose(bufferevent* bev, void* arg) {
  auto* flow = static_cast<Flow*>(arg);
  assert(flow->peerOf(bev) == nullptr);
  if (evbuffer_get_length(bufferevent_get_output(bev)) > 0) return;
  bufferevent_free(bev);
  delete flow;
}

void onEvent(bufferevent* bev, short what, void* arg) {
  auto* flow = static_cast<Flow*>(arg);
  if (what & BEV_EVENT_CONNECTED) {
    setNoDelay(bufferevent_getfd(bev));
    return;
  }
  if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) return;
  bufferevent* peer = flow->peerOf(bev);
  if (peer != nullptr) {
    // Hand over what this side read before the end; if that leaves the peer with bytes to
    // write, the peer stays open alone until they are written.
    evbuffer* left = bufferevent_get_input(bev);
    evbuffer* output = bufferevent_get_output(peer);
    if (evbuffer_get_length(left) > 0) evbuffer_add_buffer(output, left);
    if (evbuffer_get_length(output) > 0) {
      bufferevent_setwatermark(peer, EV_WRITE, 0, 0);
      bufferevent_setcb(peer, nullptr, onFlushedClose, onEvent, flow);
      bufferevent_disable(peer, EV_READ);
      flow->forget(bev);
      bufferevent_free(bev);
      return;
    }
    bufferevent_free(peer);
  }
  bufferevent_free(bev);
  delete flow;
}

void onAccept(evconnlistener* listener, evutil_socket_t fd, sockaddr*, int, void* arg) {
  const auto* settings = static_cast<const Settings*>(arg);
  event_base* base = evconnlistener_get_base(listener);
  setNoDelay(fd);
  auto* flow = new Flow{settings};
  flow->down = bufferevent_socket_new(base, fd, kBevOptions);
  flow->up = bufferevent_socket_new(base, -1, kBevOptions);
  if (flow->down == nullptr || flow->up == nullptr) {
    if (flow->down != nullptr) bufferevent_free(flow->down);
    if (flow->up != nullptr) bufferevent_free(flow->up);
    delete flow;
    return;
  }
  bufferevent_setcb(flow->down, onRead, nullptr, onEvent, flow);
  bufferevent_setcb(flow->up, onRead, nullptr, onEvent, flow);
  auto* target = reinterpret_cast<const sockaddr*>(&settings->target);
  if (bufferevent_socket_connect(flow->up, target, settings->targetLength) != 0) {
    bufferevent_free(flow->up);
    bufferevent_free(flow->down);
    delete flow;
    return;
  }
  bufferevent_enable(flow->down, EV_READ | EV_WRITE);
  bufferevent_enable(flow->up, EV_READ | EV_WRITE);
}

// accept() failed (EMFILE and the like): say so and keep listening.
void onAcceptError(evconnlistener*, void*) {
  const int err = EVUTIL_SOCKET_ERROR();
  std::fprintf(stderr, "evgate-lerelay: accept: %s\n", evutil_socket_error_to_string(err));
}

void onStopSignal(evutil_socket_t, short, void* arg) {
  event_base_loopexit(static_cast<event_base*>(arg), nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  const Settings settings = parseSettings(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  event_base* base = event_base_new();
  if (base == nullptr) {
    std::fprintf(stderr, "evgate-lerelay: event_base_new failed\n");
    return 1;
  }
  evconnlistener* listener = evconnlistener_new_bind(
      base, onAccept, const_cast<Settings*>(&settings), LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
      4096, reinterpret_cast<const sockaddr*>(&settings.listen), settings.listenLength);
  if (listener == nullptr) {
    std::fprintf(stderr, "evgate-lerelay: cannot listen: %s\n", std::strerror(errno));
    return 1;
  }
  evconnlistener_set_error_cb(listener, onAcceptError);
  event* sigint = evsignal_new(base, SIGINT, onStopSignal, base);
  event* sigterm = evsignal_new(base, SIGTERM, onStopSignal, base);
  evsignal_add(sigint, nullptr);
  evsignal_add(sigterm, nullptr);
  const timeval bound{
      static_cast<time_t>(settings.duration),
      static_cast<suseconds_t>((settings.duration - static_cast<time_t>(settings.duration)) * 1e6)};
  event_base_loopexit(base, &bound);
  event_base_dispatch(base);
  // Flows still open at exit are left to the process teardown.
  event_free(sigint);
  event_free(sigterm);
  evconnlistener_free(listener);
  event_base_free(base);
  return 0;
}
