#pragma once

// A client flow that streams a payload (payload.h) to 127.0.0.1:port and checks the echo as it
// comes, never holding either: a GiB costs no memory.
//
//   const FlowOutcome o = streamPayload(port, seed, 4 << 20, Clock::now() + 10s);
//   EXPECT_EQ(o.end, "eof") << describe(o);
//
// Thread rule: stateless; each call uses its own connection.

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "tests/integration/net_util.h"
#include "tests/integration/payload.h"

namespace evgate::test {

struct FlowOutcome {
  std::string end;  // how reading ended: "eof", "reset", "timeout", "mismatch", or an error
  uint64_t sent = 0;
  uint64_t received = 0;   // bytes that came back, all matching the stream
  uint64_t sentAtEnd = 0;  // bytes sent when reading ended
  std::string sendError;   // empty if every byte was sent
  std::string mismatch;    // the checker's verdict: empty when every byte received matched
  uint16_t localPort = 0;
};

// Sends `size` bytes of the stream of `seed` to 127.0.0.1:port, then shuts the write half, while
// reading the echo to EOF (or a reset, or `deadline`). Stops sending if the connection fails;
// goes on sending after an early EOF (an upstream that half-closed still reads). With
// `holdAt` < size, sending pauses after that many bytes until reading has ended. `progress`, if
// set, follows the bytes received.
inline FlowOutcome streamPayload(uint16_t port, uint64_t seed, uint64_t size,
                                 Clock::time_point deadline,
                                 std::atomic<uint64_t>* progress = nullptr,
                                 uint64_t holdAt = UINT64_MAX) {
  FlowOutcome outcome;
  const Fd fd(connectTo(port));
  if (fd.get() < 0) {
    outcome.end = std::string("connect: ") + std::strerror(errno);
    return outcome;
  }
  outcome.localPort = localPort(fd.get());
  PayloadSource source(seed);
  PayloadChecker checker(seed);
  std::string out(65536, '\0');
  std::string in(65536, '\0');
  size_t pendingStart = 0;
  size_t pendingEnd = 0;
  bool writeDone = size == 0;
  bool readDone = false;
  bool shut = false;
  while (!(readDone && writeDone)) {
    if (writeDone && outcome.sendError.empty() && !shut) {
      ::shutdown(fd.get(), SHUT_WR);
      shut = true;
    }
    if (Clock::now() >= deadline) {
      outcome.end = "timeout";
      break;
    }
    const bool holding = outcome.sent >= holdAt && !readDone;
    const bool writing = !writeDone && !holding;
    pollfd p{fd.get(), static_cast<short>((readDone ? 0 : POLLIN) | (writing ? POLLOUT : 0)), 0};
    const int ready = ::poll(&p, 1, millisLeft(deadline));
    if (ready <= 0) continue;
    if (writing && (p.revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
      if (pendingStart == pendingEnd) {
        // Chunks end at holdAt, so that sending stops exactly there.
        const uint64_t until = source.offset() < holdAt ? std::min(holdAt, size) : size;
        const size_t n =
            static_cast<size_t>(std::min<uint64_t>(out.size(), until - source.offset()));
        source.fill(out.data(), n);
        pendingStart = 0;
        pendingEnd = n;
      }
      const ssize_t n = ::send(fd.get(), out.data() + pendingStart, pendingEnd - pendingStart,
                               MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        pendingStart += static_cast<size_t>(n);
        outcome.sent += static_cast<uint64_t>(n);
        writeDone = outcome.sent == size;
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        outcome.sendError = std::strerror(errno);
        writeDone = true;
      }
    }
    if (!readDone && (p.revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
      const ssize_t n = ::recv(fd.get(), in.data(), in.size(), MSG_DONTWAIT);
      if (n > 0) {
        if (!checker.feed(in.data(), static_cast<size_t>(n))) {
          outcome.mismatch = checker.error();
          outcome.end = "mismatch";
          break;
        }
        outcome.received += static_cast<uint64_t>(n);
        if (progress != nullptr) progress->store(outcome.received);
      } else if (n == 0) {
        outcome.end = "eof";
        outcome.sentAtEnd = outcome.sent;
        readDone = true;
      } else if (errno == ECONNRESET) {
        outcome.end = "reset";
        readDone = true;
      } else if (errno != EAGAIN && errno != EINTR) {
        outcome.end = std::string("recv: ") + std::strerror(errno);
        readDone = true;
      }
    }
  }
  return outcome;
}

// A reset shows on whichever call comes first: a read (ECONNRESET), or a send, after which the
// read sees only the end of the stream.
inline bool wasReset(const FlowOutcome& o) {
  return o.end == "reset" || o.sendError == std::strerror(ECONNRESET);
}

inline std::string describe(const FlowOutcome& o) {
  return "end " + o.end + " after sending " + std::to_string(o.sentAtEnd) + ", sent " +
         std::to_string(o.sent) + ", received " + std::to_string(o.received) +
         (o.sendError.empty() ? "" : ", send: " + o.sendError) +
         (o.mismatch.empty() ? "" : ", mismatch: " + o.mismatch);
}

}  // namespace evgate::test
