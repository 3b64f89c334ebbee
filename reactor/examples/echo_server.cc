// evgate-echo: the seed's server outline on our reactor. A Listener accepts TCP clients; each
// gets a BufferEvent whose input is moved (not copied) back to its output. SIGINT/SIGTERM stop
// the loop through signal events.
//
//   evgate-echo [--listen ADDR:PORT]      (default 127.0.0.1:9000)

#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "reactor/buffer_event.h"
#include "reactor/event.h"
#include "reactor/event_base.h"
#include "reactor/fatal.h"
#include "reactor/listener.h"
#include "reactor/socket_address.h"

namespace {

using evgate::reactor::BufferEvent;
using evgate::reactor::EventBase;
using evgate::reactor::EventMask;
using evgate::reactor::Listener;
using evgate::reactor::SocketAddress;

constexpr std::string_view kDefaultAddress = "127.0.0.1:9000";

void onRead(BufferEvent& bev, void*) { bev.output().appendBuffer(bev.input()); }

void onEvent(BufferEvent& bev, short events, void*) {
  if (events & (BufferEvent::kEof | BufferEvent::kError | BufferEvent::kTimeout)) {
    std::printf("client fd %d closed (%s)\n", bev.fd(),
                (events & BufferEvent::kEof) ? "eof" : "error");
    bev.free();
  }
}

void onAccept(Listener& listener, int fd, const sockaddr* peer, socklen_t peerLen, void*) {
  std::printf("client %s connected on fd %d\n",
              SocketAddress::fromSockaddr(peer, peerLen).toString().c_str(), fd);
  // The BufferEvent frees itself on EOF or error (see onEvent); CloseOnFree closes the socket.
  BufferEvent* bev = BufferEvent::create(listener.base(), fd, BufferEvent::kCloseOnFree).release();
  bev->setCallbacks(onRead, nullptr, onEvent, nullptr);
  bev->enable(evgate::reactor::kRead | evgate::reactor::kWrite);
}

void onSignal(int sig, EventMask, void* arg) {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): the example runs one thread.
  (void)std::printf("caught %s, stopping\n", strsignal(sig));
  static_cast<EventBase*>(arg)->loopBreak();
}

}  // namespace

int main(int argc, char** argv) {
  std::string_view text = kDefaultAddress;
  if (argc == 3 && std::string_view(argv[1]) == "--listen") {
    text = argv[2];
  } else if (argc != 1) {
    (void)std::fprintf(stderr, "usage: %s [--listen ADDR:PORT]\n", argv[0]);
    return 2;
  }
  const auto address = SocketAddress::parse(text);
  if (!address) {
    (void)std::fprintf(stderr, "evgate-echo: '%.*s' is not an ADDR:PORT\n",
                       static_cast<int>(text.size()), text.data());
    return 2;
  }
  (void)std::setvbuf(stdout, nullptr, _IOLBF, 0);

  EventBase base;
  auto listener = Listener::bind(base, onAccept, nullptr,
                                 Listener::kCloseOnFree | Listener::kReuseAddress, -1, *address);
  if (!listener) {
    const std::string error = evgate::reactor::errnoText(errno);
    (void)std::fprintf(stderr, "evgate-echo: cannot listen on %s: %s\n",
                       address->toString().c_str(), error.c_str());
    return 1;
  }
  evgate::reactor::Event sigint(base, SIGINT, evgate::reactor::kSignal | evgate::reactor::kPersist,
                                onSignal, &base);
  evgate::reactor::Event sigterm(
      base, SIGTERM, evgate::reactor::kSignal | evgate::reactor::kPersist, onSignal, &base);
  sigint.add();
  sigterm.add();
  std::printf("evgate-echo listening on %s (%s backend); try: nc %s %u\n",
              listener->localAddress()->toString().c_str(), std::string(base.backendName()).c_str(),
              address->family() == AF_INET6 ? "::1" : "127.0.0.1",
              listener->localAddress()->port());
  base.dispatch();
  return 0;
}
