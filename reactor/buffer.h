#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace evgate::reactor {

class Buffer;

// What one operation did to a Buffer's length, as libevent's evbuffer_cb_info.
struct BufferChange {
  size_t origLength;  // length before the operation
  size_t added;       // bytes added to either end
  size_t deleted;     // bytes removed from the front
};

// Observer of a Buffer; `arg` is whatever was given to setCallback.
using BufferCallback = void (*)(Buffer& buffer, const BufferChange& change, void* arg);

// How readLine finds the end of a line; the meanings of libevent's EVBUFFER_EOL_*.
enum class EolStyle {
  kAny,         // any run of '\r' and '\n' characters ends the line; the whole run is dropped
  kCrlf,        // "\n", optionally preceded by one '\r'
  kCrlfStrict,  // exactly "\r\n"
  kLf,          // exactly "\n"
  kNul,         // a single '\0'
};

// A byte queue made of a chain of heap chunks, the evbuffer of this reactor. Bytes are appended
// at the end and consumed from the front; draining frees whole chunks or advances past consumed
// bytes without moving any, and whole chunks move between buffers without copying their bytes.
//
// Not thread-safe: use from one thread (the owning loop's) only.
//
// Ownership: the Buffer owns its chunks. Pointers it hands out (pullup, peek) stay valid only
// until the next call that changes the buffer. The callback and its arg are not owned.
//
// Callback: after every operation that changes length(), the callback (if any) runs
// synchronously with what changed; operations that change nothing do not call it. The callback
// may modify the buffer (which calls it again) or clear or replace itself. It must not destroy
// the buffer: an owner that wants to go away from inside it defers its deletion. When an
// operation changes two buffers (appendBuffer, prependBuffer, removeBuffer), both are fully
// updated before either callback runs, and the receiving buffer's callback runs first.
class Buffer {
 public:
  Buffer() = default;
  ~Buffer();

  // Moving takes the bytes only: a callback belongs to the object it was set on (its arg is
  // usually that object's owner), so the new buffer starts with none, an assigned-to buffer keeps
  // its own and the moved-from buffer, left empty, keeps its own. No callback runs for a move:
  // the owner may itself be in the middle of being moved. Use appendBuffer to move bytes between
  // observed buffers.
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // Bytes stored.
  size_t length() const { return length_; }
  bool empty() const { return length_ == 0; }
  // Bytes readable contiguously at the front, as evbuffer_get_contiguous_space.
  size_t contiguousSpace() const { return head_ != nullptr ? head_->off : 0; }

  // Copies n bytes to the end, filling the last chunk's free space first.
  void append(const void* data, size_t n);
  void append(std::string_view s) { append(s.data(), s.size()); }
  // Copies n bytes to the front, filling the first chunk's consumed space first.
  void prepend(const void* data, size_t n);

  // Removes up to n bytes from the front; returns how many were removed.
  size_t drain(size_t n);
  // Copies up to n bytes from the front into out and drains them, as evbuffer_remove; returns
  // how many.
  size_t remove(void* out, size_t n);
  // Copies up to n bytes starting `offset` bytes past the front into out, draining nothing;
  // returns how many.
  size_t copyOut(void* out, size_t n, size_t offset = 0) const;

  // Moves all of src to our end (evbuffer_add_buffer) or front (evbuffer_prepend_buffer) in
  // O(1), by relinking src's chunks; no byte is copied and src ends empty. Passing this buffer
  // itself does nothing.
  void appendBuffer(Buffer& src);
  void prependBuffer(Buffer& src);
  // Moves up to n bytes from our front to dst's end (evbuffer_remove_buffer); returns how many.
  // Whole chunks are relinked; of a chunk split at n only the shorter side is copied (the chunk
  // goes with its longer side). Passing this buffer itself as dst moves nothing and returns 0.
  size_t removeBuffer(Buffer& dst, size_t n);

  // One readv() of up to maxBytes (> 0) from fd into the last chunk's free space plus, when that
  // is not enough, one fresh chunk of up to 64 KiB. Returns the bytes read, 0 at end of file, or
  // -1 with errno set (EAGAIN on an empty non-blocking fd). Retries on EINTR.
  ssize_t readFrom(int fd, size_t maxBytes);
  // One gathering write of up to maxBytes from the front (at most 64 chunks) to fd, draining what
  // was written. Returns the bytes written (0 if the buffer is empty) or -1 with errno set. A
  // socket is written with MSG_NOSIGNAL, so a closed peer gives EPIPE, not SIGPIPE; any other fd
  // falls back to writev() (a pipe without a reader still raises SIGPIPE). Retries on EINTR.
  ssize_t writeTo(int fd, size_t maxBytes = SIZE_MAX);

  // Offset of the first occurrence of needle at or after start, matches spanning chunks
  // included. An empty needle matches at start if start <= length().
  std::optional<size_t> search(std::string_view needle, size_t start = 0) const;
  // Removes the first complete line and its end-of-line marker, as evbuffer_readln; returns the
  // line without the marker, or nullopt (and leaves the buffer alone) if no line is complete.
  std::optional<std::string> readLine(EolStyle style);

  // Makes the first n bytes contiguous and returns a pointer to them, as evbuffer_pullup;
  // n == SIZE_MAX means the whole buffer. Returns nullptr if n is 0 or more than length() (and
  // for SIZE_MAX on an empty buffer). Copies only when the front chunk is too short.
  const char* pullup(size_t n);
  // Points out's iovecs at the front chunks in order, copying nothing; returns how many were
  // filled (fewer than out.size() when the buffer has fewer chunks).
  size_t peek(std::span<iovec> out) const;

  // Removes everything and frees all chunks.
  void clear();

  // Sets the one observer; nullptr clears it.
  void setCallback(BufferCallback cb, void* arg) {
    callback_ = cb;
    callbackArg_ = arg;
  }

 private:
  // A chunk and its bytes are one allocation: the header, then `capacity` bytes. The bytes in
  // use are [misalign, misalign + off); the space after them is free for appends, the space
  // before them for prepends.
  struct Chunk {
    Chunk* next;
    size_t capacity;
    size_t misalign;
    size_t off;

    char* base() { return reinterpret_cast<char*>(this + 1); }
    char* begin() { return base() + misalign; }
    char* end() { return begin() + off; }
    size_t tailSpace() const { return capacity - misalign - off; }
  };

  static Chunk* newChunk(size_t capacity);
  static void freeChunk(Chunk* c);
  static Chunk* shrinkReadChunk(Chunk* c);
  static bool matchesAt(Chunk* c, size_t pos, std::string_view needle);
  size_t nextChunkCapacity(size_t n) const;

  void linkBack(Chunk* first, Chunk* last);
  void appendBytes(const char* data, size_t n);
  size_t drainFront(size_t n);
  void moveSplitChunk(Buffer& dst, size_t prefix);
  void freeAll();
  std::optional<size_t> findEol(EolStyle style, size_t& eolLength) const;
  std::optional<size_t> findAnyEol(size_t& eolLength) const;
  void checkInvariants() const;

  void notify(size_t origLength, size_t added, size_t deleted) {
    if (callback_ != nullptr) {
      callback_(*this, BufferChange{origLength, added, deleted}, callbackArg_);
    }
  }

  // Every chunk in the chain holds at least one byte, so head_ is null exactly when empty.
  Chunk* head_ = nullptr;
  Chunk* tail_ = nullptr;
  size_t length_ = 0;
  BufferCallback callback_ = nullptr;
  void* callbackArg_ = nullptr;
};

}  // namespace evgate::reactor
