#include "reactor/buffer.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace evgate::reactor {
namespace {

// Chunk sizes count the whole allocation, header included, so each is a round request to malloc.
//
// The first chunk of a buffer is 1 KiB, libevent's MIN_BUFFER_SIZE: small enough that glibc
// serves it from its per-thread cache (requests up to 1032 bytes), which keeps the common
// "append a little, hand it on, drain it" cycle cheap, and an idle connection's buffer small.
constexpr size_t kMinChunkAlloc = 1024;
// Each further chunk doubles the tail's size up to 16 KiB, so a stream of small appends settles
// on 16 KiB chunks: few mallocs and few iovecs per writev, while the free space left at the end
// of a buffer stays below 16 KiB.
constexpr size_t kMaxAutoChunkAlloc = size_t{16} * 1024;
// Appends larger than that get a chunk of their own rounded up to whole pages.
constexpr size_t kPageSize = 4096;
// readFrom offers one chunk this large after the tail's free space, so a single readv can take
// up to 64 KiB: a busy connection needs few syscalls, and this is no larger than what a socket
// usually holds. Unused space over kReadSlackKept is given back right after the read.
constexpr size_t kReadChunkAlloc = size_t{64} * 1024;
constexpr size_t kReadSlackKept = size_t{4} * 1024;
// writeTo gathers at most this many chunks per call; 64 x 16 KiB covers a socket's send buffer
// and stays far below IOV_MAX (1024).
constexpr int kMaxWriteIovecs = 64;
// An append that does not fit in the tail's free space moves the tail's bytes to the start of
// the chunk when that makes room and they are this few (libevent's MAX_TO_REALIGN_IN_EXPAND):
// a short memmove is cheaper than a malloc.
constexpr size_t kMaxRealign = 2048;
// appendBuffer copies a source of at most this many bytes into our free tail space instead of
// relinking its chunks: a relay moving many small reads into a stalled peer's output would
// otherwise keep one allocation per read, many times the bytes the watermarks count.
constexpr size_t kCopyInsteadOfLink = 512;
// A shrunk read chunk is rounded to this, not to a page: a 100-byte read then costs about 200
// bytes of heap while it waits, not 4 KiB.
constexpr size_t kShrinkGranularity = 64;

constexpr size_t roundUp(size_t n, size_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

bool isEolChar(char c) { return c == '\r' || c == '\n'; }

// One gathering write. sendmsg() takes MSG_NOSIGNAL, which writev() cannot, so a peer that has
// gone away costs EPIPE rather than a process-wide SIGPIPE; fds that are not sockets (pipes,
// files) refuse sendmsg() with ENOTSOCK and get writev() instead.
ssize_t writeGather(int fd, iovec* iov, int count) {
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = static_cast<size_t>(count);
  ssize_t n = 0;
  do {
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n >= 0 || errno != ENOTSOCK) {
    return n;
  }
  do {
    n = ::writev(fd, iov, count);
  } while (n < 0 && errno == EINTR);
  return n;
}

}  // namespace

Buffer::~Buffer() { freeAll(); }

Buffer::Buffer(Buffer&& other) noexcept
    : head_(std::exchange(other.head_, nullptr)),
      tail_(std::exchange(other.tail_, nullptr)),
      length_(std::exchange(other.length_, 0)) {}

// Takes the bytes only, not the callback (buffer.h says why).
// cppcheck-suppress operatorEqVarError
Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    freeAll();
    head_ = std::exchange(other.head_, nullptr);
    tail_ = std::exchange(other.tail_, nullptr);
    length_ = std::exchange(other.length_, 0);
  }
  return *this;
}

// Chunks come from malloc rather than operator new so that readFrom can shrink a partly filled
// read chunk with realloc, which glibc does in place.
Buffer::Chunk* Buffer::newChunk(size_t capacity) {
  void* p = std::malloc(sizeof(Chunk) + capacity);
  if (p == nullptr) {
    throw std::bad_alloc();
  }
  return new (p) Chunk{nullptr, capacity, 0, 0};
}

void Buffer::freeChunk(Chunk* c) { std::free(c); }

// A read chunk that received little keeps at most kReadSlackKept free bytes. Its chunk may be
// handed on whole (appendBuffer) to an output buffer and wait there for a slow peer, where 64 KiB
// holding a few bytes would multiply memory far beyond what watermarks, which count bytes, see.
Buffer::Chunk* Buffer::shrinkReadChunk(Chunk* c) {
  if (c->tailSpace() <= kReadSlackKept) {
    return c;
  }
  size_t alloc = roundUp(sizeof(Chunk) + c->misalign + c->off, kShrinkGranularity);
  void* p = std::realloc(c, alloc);
  if (p == nullptr) {
    return c;  // Keeping the larger chunk is harmless.
  }
  c = static_cast<Chunk*>(p);
  c->capacity = alloc - sizeof(Chunk);
  return c;
}

size_t Buffer::nextChunkCapacity(size_t n) const {
  if (n > SIZE_MAX / 2) {
    throw std::bad_alloc();
  }
  size_t alloc = kMinChunkAlloc;
  if (tail_ != nullptr) {
    alloc = std::clamp(2 * (sizeof(Chunk) + tail_->capacity), kMinChunkAlloc, kMaxAutoChunkAlloc);
  }
  if (sizeof(Chunk) + n > alloc) {
    alloc = roundUp(sizeof(Chunk) + n, kPageSize);
  }
  return alloc - sizeof(Chunk);
}

void Buffer::linkBack(Chunk* first, Chunk* last) {
  assert(last->next == nullptr);
  if (tail_ != nullptr) {
    tail_->next = first;
  } else {
    head_ = first;
  }
  tail_ = last;
}

void Buffer::appendBytes(const char* data, size_t n) {
  if (tail_ != nullptr) {
    Chunk* t = tail_;
    if (t->tailSpace() < n && t->misalign > 0 && t->off <= kMaxRealign &&
        t->capacity - t->off >= n) {
      std::memmove(t->base(), t->begin(), t->off);
      t->misalign = 0;
    }
    size_t m = std::min(t->tailSpace(), n);
    std::memcpy(t->end(), data, m);
    t->off += m;
    length_ += m;
    data += m;
    n -= m;
  }
  if (n == 0) {
    return;
  }
  Chunk* c = newChunk(nextChunkCapacity(n));
  std::memcpy(c->base(), data, n);
  c->off = n;
  linkBack(c, c);
  length_ += n;
}

size_t Buffer::drainFront(size_t n) {
  if (n >= length_) {
    n = length_;
    freeAll();
    return n;
  }
  // n < length_, so the loop stops inside a chunk that keeps at least one byte.
  size_t left = n;
  while (left >= head_->off) {
    Chunk* c = head_;
    left -= c->off;
    head_ = c->next;
    freeChunk(c);
  }
  head_->misalign += left;
  head_->off -= left;
  length_ -= n;
  return n;
}

void Buffer::freeAll() {
  for (Chunk* c = head_; c != nullptr;) {
    Chunk* next = c->next;
    freeChunk(c);
    c = next;
  }
  head_ = nullptr;
  tail_ = nullptr;
  length_ = 0;
}

void Buffer::checkInvariants() const {
  assert((head_ == nullptr) == (tail_ == nullptr));
  assert((head_ == nullptr) == (length_ == 0));
  assert(tail_ == nullptr || tail_->next == nullptr);
  assert(head_ == nullptr || (head_->off > 0 && tail_->off > 0));
}

void Buffer::append(const void* data, size_t n) {
  if (n == 0) {
    return;
  }
  size_t orig = length_;
  appendBytes(static_cast<const char*>(data), n);
  checkInvariants();
  notify(orig, n, 0);
}

void Buffer::prepend(const void* data, size_t n) {
  if (n == 0) {
    return;
  }
  size_t orig = length_;
  const char* src = static_cast<const char*>(data);
  // The last bytes of data go into the consumed space before the first chunk's bytes, the rest
  // at the end of a new chunk, leaving its start free for further prepends. The chunk is
  // allocated first so that a bad_alloc leaves the buffer as it was.
  size_t intoHead = head_ != nullptr ? std::min(head_->misalign, n) : 0;
  size_t left = n - intoHead;
  Chunk* c = left > 0 ? newChunk(nextChunkCapacity(left)) : nullptr;
  if (intoHead > 0) {
    head_->misalign -= intoHead;
    head_->off += intoHead;
    std::memcpy(head_->begin(), src + left, intoHead);
  }
  if (c != nullptr) {
    c->misalign = c->capacity - left;
    c->off = left;
    std::memcpy(c->begin(), src, left);
    c->next = head_;
    head_ = c;
    if (tail_ == nullptr) {
      tail_ = c;
    }
  }
  length_ += n;
  checkInvariants();
  notify(orig, n, 0);
}

size_t Buffer::drain(size_t n) {
  size_t orig = length_;
  n = drainFront(n);
  checkInvariants();
  if (n > 0) {
    notify(orig, 0, n);
  }
  return n;
}

size_t Buffer::remove(void* out, size_t n) {
  size_t orig = length_;
  n = drainFront(copyOut(out, n));
  checkInvariants();
  if (n > 0) {
    notify(orig, 0, n);
  }
  return n;
}

size_t Buffer::copyOut(void* out, size_t n, size_t offset) const {
  if (offset >= length_) {
    return 0;
  }
  n = std::min(n, length_ - offset);
  Chunk* c = head_;
  while (offset >= c->off) {
    offset -= c->off;
    c = c->next;
  }
  char* dst = static_cast<char*>(out);
  for (size_t left = n; left > 0; c = c->next, offset = 0) {
    size_t m = std::min(c->off - offset, left);
    std::memcpy(dst, c->begin() + offset, m);
    dst += m;
    left -= m;
  }
  return n;
}

void Buffer::appendBuffer(Buffer& src) {
  if (&src == this || src.head_ == nullptr) {
    return;
  }
  size_t orig = length_;
  size_t moved = src.length_;
  if (moved <= kCopyInsteadOfLink) {
    for (Chunk* c = src.head_; c != nullptr; c = c->next) {
      appendBytes(c->begin(), c->off);
    }
    src.freeAll();
    checkInvariants();
    notify(orig, moved, 0);
    src.notify(moved, 0, moved);
    return;
  }
  linkBack(src.head_, src.tail_);
  length_ += moved;
  src.head_ = nullptr;
  src.tail_ = nullptr;
  src.length_ = 0;
  checkInvariants();
  notify(orig, moved, 0);
  src.notify(moved, 0, moved);
}

void Buffer::prependBuffer(Buffer& src) {
  if (&src == this || src.head_ == nullptr) {
    return;
  }
  size_t orig = length_;
  size_t moved = src.length_;
  src.tail_->next = head_;
  head_ = src.head_;
  if (tail_ == nullptr) {
    tail_ = src.tail_;
  }
  length_ += moved;
  src.head_ = nullptr;
  src.tail_ = nullptr;
  src.length_ = 0;
  checkInvariants();
  notify(orig, moved, 0);
  src.notify(moved, 0, moved);
}

size_t Buffer::removeBuffer(Buffer& dst, size_t n) {
  n = std::min(n, length_);
  if (&dst == this || n == 0) {
    return 0;
  }
  size_t orig = length_;
  size_t dstOrig = dst.length_;
  // Relink the run of chunks that fits entirely in n. Unless that is everything, the run stops
  // before the tail, at the chunk that straddles n.
  Chunk* last = nullptr;
  size_t whole = 0;
  for (Chunk* c = head_; c != nullptr && whole + c->off <= n; c = c->next) {
    whole += c->off;
    last = c;
  }
  if (last != nullptr) {
    Chunk* first = head_;
    head_ = last->next;
    if (head_ == nullptr) {
      tail_ = nullptr;
    }
    last->next = nullptr;
    dst.linkBack(first, last);
    dst.length_ += whole;
    length_ -= whole;
  }
  if (whole < n) {
    moveSplitChunk(dst, n - whole);
  }
  checkInvariants();
  dst.checkInvariants();
  dst.notify(dstOrig, n, 0);
  notify(orig, 0, n);
  return n;
}

// Copies the shorter side of the split, so no more than half a chunk is ever copied: either the
// first `prefix` bytes go to dst, or the chunk itself goes to dst cut down to them and the rest
// is copied into a new first chunk here.
void Buffer::moveSplitChunk(Buffer& dst, size_t prefix) {
  Chunk* split = head_;
  size_t rest = split->off - prefix;
  assert(prefix > 0 && rest > 0);
  if (prefix <= rest) {
    dst.appendBytes(split->begin(), prefix);
    split->misalign += prefix;
    split->off -= prefix;
  } else {
    Chunk* c = newChunk(nextChunkCapacity(rest));
    std::memcpy(c->base(), split->begin() + prefix, rest);
    c->off = rest;
    c->next = split->next;
    head_ = c;
    if (tail_ == split) {
      tail_ = c;
    }
    split->off = prefix;
    split->next = nullptr;
    dst.linkBack(split, split);
    dst.length_ += prefix;
  }
  length_ -= prefix;
}

ssize_t Buffer::readFrom(int fd, size_t maxBytes) {
  assert(maxBytes > 0);
  iovec iov[2];
  int count = 0;
  size_t slack = tail_ != nullptr ? std::min(tail_->tailSpace(), maxBytes) : 0;
  if (slack > 0) {
    iov[count++] = {tail_->end(), slack};
  }
  // The fresh chunk lets one syscall take much more than the tail's leftover space without
  // asking the kernel (FIONREAD) how much is waiting.
  Chunk* fresh = nullptr;
  if (slack < maxBytes) {
    size_t want = std::min(maxBytes - slack, kReadChunkAlloc - sizeof(Chunk));
    fresh = newChunk(nextChunkCapacity(want));
    iov[count++] = {fresh->base(), want};
  }
  ssize_t n = 0;
  do {
    n = ::readv(fd, iov, count);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    int savedErrno = errno;
    freeChunk(fresh);
    errno = savedErrno;
    return n;
  }
  size_t orig = length_;
  auto got = static_cast<size_t>(n);
  size_t intoTail = std::min(got, slack);
  if (intoTail > 0) {
    tail_->off += intoTail;
  }
  size_t intoFresh = got - intoTail;
  if (intoFresh == 0) {
    freeChunk(fresh);
  } else {
    fresh->off = intoFresh;
    fresh = shrinkReadChunk(fresh);
    linkBack(fresh, fresh);
  }
  length_ += got;
  checkInvariants();
  notify(orig, got, 0);
  return n;
}

ssize_t Buffer::writeTo(int fd, size_t maxBytes) {
  iovec iov[kMaxWriteIovecs];
  int count = 0;
  size_t total = 0;
  for (Chunk* c = head_; c != nullptr && count < kMaxWriteIovecs && total < maxBytes; c = c->next) {
    size_t m = std::min(c->off, maxBytes - total);
    iov[count++] = {c->begin(), m};
    total += m;
  }
  if (count == 0) {
    return 0;
  }
  ssize_t n = writeGather(fd, iov, count);
  if (n <= 0) {
    return n;
  }
  size_t orig = length_;
  drainFront(static_cast<size_t>(n));
  checkInvariants();
  notify(orig, 0, static_cast<size_t>(n));
  return n;
}

bool Buffer::matchesAt(Chunk* c, size_t pos, std::string_view needle) {
  while (!needle.empty()) {
    size_t m = std::min(c->off - pos, needle.size());
    if (std::memcmp(c->begin() + pos, needle.data(), m) != 0) {
      return false;
    }
    needle.remove_prefix(m);
    c = c->next;
    pos = 0;
  }
  return true;
}

std::optional<size_t> Buffer::search(std::string_view needle, size_t start) const {
  if (start > length_ || needle.size() > length_ - start) {
    return std::nullopt;
  }
  if (needle.empty()) {
    return start;
  }
  // Matches may begin no later than `last`, so matchesAt never runs off the end of the chain.
  const size_t last = length_ - needle.size();
  Chunk* c = head_;
  size_t chunkStart = 0;
  while (start >= chunkStart + c->off) {
    chunkStart += c->off;
    c = c->next;
  }
  size_t pos = start - chunkStart;
  for (; c != nullptr && chunkStart <= last; chunkStart += c->off, c = c->next, pos = 0) {
    const char* data = c->begin();
    while (pos < c->off) {
      const void* hit = std::memchr(data + pos, needle.front(), c->off - pos);
      if (hit == nullptr) {
        break;
      }
      pos = static_cast<size_t>(static_cast<const char*>(hit) - data);
      if (chunkStart + pos > last) {
        return std::nullopt;
      }
      if (matchesAt(c, pos, needle)) {
        return chunkStart + pos;
      }
      ++pos;
    }
  }
  return std::nullopt;
}

std::optional<size_t> Buffer::findEol(EolStyle style, size_t& eolLength) const {
  switch (style) {
    case EolStyle::kLf:
      eolLength = 1;
      return search("\n");
    case EolStyle::kNul:
      eolLength = 1;
      return search(std::string_view("\0", 1));
    case EolStyle::kCrlfStrict:
      eolLength = 2;
      return search("\r\n");
    case EolStyle::kCrlf: {
      // libevent skips a '\r' that is not followed by '\n', so the line ends at the first '\n'
      // and the marker takes in one '\r' right before it.
      std::optional<size_t> lf = search("\n");
      char before = 0;
      if (lf && *lf > 0 && copyOut(&before, 1, *lf - 1) == 1 && before == '\r') {
        eolLength = 2;
        return *lf - 1;
      }
      eolLength = 1;
      return lf;
    }
    case EolStyle::kAny:
      return findAnyEol(eolLength);
  }
  return std::nullopt;
}

std::optional<size_t> Buffer::findAnyEol(size_t& eolLength) const {
  std::optional<size_t> lineEnd;
  size_t offset = 0;
  for (Chunk* c = head_; c != nullptr; offset += c->off, c = c->next) {
    const char* data = c->begin();
    for (size_t i = 0; i < c->off; ++i) {
      if (isEolChar(data[i])) {
        if (!lineEnd) {
          lineEnd = offset + i;
        }
      } else if (lineEnd) {
        eolLength = offset + i - *lineEnd;
        return lineEnd;
      }
    }
  }
  // The run of end-of-line characters reaches the end of the buffer.
  if (lineEnd) {
    eolLength = length_ - *lineEnd;
  }
  return lineEnd;
}

std::optional<std::string> Buffer::readLine(EolStyle style) {
  size_t eolLength = 0;
  std::optional<size_t> lineLength = findEol(style, eolLength);
  if (!lineLength) {
    return std::nullopt;
  }
  std::string line(*lineLength, '\0');
  copyOut(line.data(), *lineLength);
  size_t orig = length_;
  size_t removed = drainFront(*lineLength + eolLength);
  checkInvariants();
  notify(orig, 0, removed);
  return line;
}

const char* Buffer::pullup(size_t n) {
  if (n == SIZE_MAX) {
    n = length_;
  }
  if (n == 0 || n > length_) {
    return nullptr;
  }
  if (head_->off >= n) {
    return head_->begin();
  }
  // Gather into the first chunk when it is big enough (moving its bytes to its start if the
  // space after them is short), otherwise into a new chunk that replaces the ones it drains.
  Chunk* dst = head_;
  Chunk* src = head_->next;
  if (dst->capacity >= n) {
    if (dst->capacity - dst->misalign < n) {
      std::memmove(dst->base(), dst->begin(), dst->off);
      dst->misalign = 0;
    }
  } else {
    dst = newChunk(nextChunkCapacity(n));
    src = head_;
  }
  for (size_t need = n - dst->off; need > 0;) {
    size_t m = std::min(src->off, need);
    std::memcpy(dst->end(), src->begin(), m);
    dst->off += m;
    need -= m;
    if (m < src->off) {
      src->misalign += m;
      src->off -= m;
      break;
    }
    Chunk* next = src->next;
    freeChunk(src);
    src = next;
  }
  dst->next = src;
  head_ = dst;
  if (src == nullptr) {
    tail_ = dst;
  }
  checkInvariants();
  return head_->begin();
}

size_t Buffer::peek(std::span<iovec> out) const {
  size_t filled = 0;
  for (Chunk* c = head_; c != nullptr && filled < out.size(); c = c->next) {
    out[filled++] = {c->begin(), c->off};
  }
  return filled;
}

void Buffer::clear() {
  size_t orig = length_;
  freeAll();
  if (orig > 0) {
    notify(orig, 0, orig);
  }
}

}  // namespace evgate::reactor
