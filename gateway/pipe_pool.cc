#include "gateway/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cassert>

namespace evgate::gateway {

Pipe::~Pipe() {
  ::close(readFd);
  ::close(writeFd);
}

PipePool::~PipePool() {
  // Every flow of the worker has ended (and returned its pipes) before its pool goes.
  assert(lent_ == 0);
}

std::unique_ptr<Pipe> PipePool::acquire() {
  if (!idle_.empty()) {
    std::unique_ptr<Pipe> pipe = std::move(idle_.back());
    idle_.pop_back();
    ++lent_;
    return pipe;
  }
  int fds[2];
  if (open() >= maxOpen_ || ::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    ++refused_;
    return nullptr;
  }
  ++lent_;
  return std::make_unique<Pipe>(fds[0], fds[1]);
}

void PipePool::release(std::unique_ptr<Pipe> pipe) {
  if (!pipe) return;
  assert(lent_ > 0);
  --lent_;
  if (pipe->bytes == 0 && idle_.size() < maxIdle_) idle_.push_back(std::move(pipe));
}

}  // namespace evgate::gateway
