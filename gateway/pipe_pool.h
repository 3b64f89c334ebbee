#pragma once

// Kernel pipes that carry a flow's bytes between two splice() calls, lent per direction while a
// bulk transfer has bytes in flight.

#include <cstddef>
#include <memory>
#include <vector>

namespace evgate::gateway {

// A non-blocking pipe and how many bytes it holds. Closes both ends when destroyed.
struct Pipe {
  Pipe(int readEnd, int writeEnd) : readFd(readEnd), writeFd(writeEnd) {}
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  ~Pipe();

  const int readFd;
  const int writeFd;
  size_t bytes = 0;  // spliced in, not spliced out yet
};

// One worker's pipes. A flow takes one for a direction when it starts splicing and gives it back
// as soon as it is empty again, so pipes are held only while bytes are in flight and idle flows
// hold none. At most maxOpen pipes exist at once (2 fds each, counted against the process's fd
// limit); at most maxIdle empty ones are kept open for reuse, the rest are closed.
// Thread rule: one thread (the worker's loop) only.
class PipePool {
 public:
  PipePool(size_t maxOpen, size_t maxIdle) : maxOpen_(maxOpen), maxIdle_(maxIdle) {}
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;
  ~PipePool();

  // An empty pipe; nullptr if maxOpen are lent already or pipe2() fails (fd limit): the caller
  // copies through user space instead.
  std::unique_ptr<Pipe> acquire();
  // Takes a pipe back. One that still holds bytes is closed (they are dropped: the flow is
  // closing); an empty one is kept for reuse while fewer than maxIdle are.
  void release(std::unique_ptr<Pipe> pipe);

  // Pipes open now (lent + idle), and lent now.
  size_t open() const { return lent_ + idle_.size(); }
  size_t lent() const { return lent_; }
  // acquire() calls that found no pipe (limit or fd exhaustion).
  size_t refused() const { return refused_; }

 private:
  const size_t maxOpen_;
  const size_t maxIdle_;
  size_t lent_ = 0;
  size_t refused_ = 0;
  std::vector<std::unique_ptr<Pipe>> idle_;
};

}  // namespace evgate::gateway
