// Fuzzes reactor::Buffer: the input is a program of Buffer operations on two buffers, run
// against two std::string models. After every operation each buffer's length and bytes must
// equal its model's, and every value an operation returns must be what the model predicts.
// Every length change must have been reported to the buffer's callback, with figures that add
// up. Chunk boundaries come from the operations themselves (moves between buffers, prepends,
// partial drains, reads from a pipe), so they fall everywhere.

#include <fcntl.h>
#include <fuzzer/FuzzedDataProvider.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "reactor/buffer.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using evgate::reactor::Buffer;
using evgate::reactor::BufferChange;
using evgate::reactor::EolStyle;

// Bigger than a chunk (so data spans several) but small enough to keep each run fast.
constexpr size_t kMaxModelSize = 1 << 20;
constexpr size_t kMaxAppend = 70'000;

// A buffer, its model, and the length its callback has been told about.
struct Subject {
  Buffer buffer;
  std::string model;
  size_t notifiedLength = 0;
};

void onChange(Buffer& buffer, const BufferChange& change, void* arg) {
  Subject& subject = *static_cast<Subject*>(arg);
  FUZZ_CHECK(&buffer == &subject.buffer);
  // Reports come in order and describe the buffer as it is now (both buffers of a move between
  // two are updated before either callback runs).
  FUZZ_CHECK(change.origLength == subject.notifiedLength);
  FUZZ_CHECK(change.added > 0 || change.deleted > 0);
  FUZZ_CHECK(change.deleted <= change.origLength);
  FUZZ_CHECK(buffer.length() == change.origLength + change.added - change.deleted);
  subject.notifiedLength = buffer.length();
}

std::string contents(const Buffer& buffer) {
  std::string out(buffer.length(), '\0');
  FUZZ_CHECK(buffer.copyOut(out.data(), out.size()) == out.size());
  return out;
}

void checkSubject(const Subject& s) {
  FUZZ_CHECK(s.buffer.length() == s.model.size());
  FUZZ_CHECK(s.buffer.empty() == s.model.empty());
  FUZZ_CHECK(s.buffer.contiguousSpace() <= s.buffer.length());
  FUZZ_CHECK((s.buffer.contiguousSpace() > 0) == !s.model.empty());
  FUZZ_CHECK(contents(s.buffer) == s.model);
  FUZZ_CHECK(s.notifiedLength == s.buffer.length());
}

// Bytes to add: a few from the input, or a long run made from one input byte, so that large
// buffers cost little input.
std::string someBytes(FuzzedDataProvider& in) {
  if (in.ConsumeBool()) return in.ConsumeRandomLengthString(64);
  const size_t n = in.ConsumeIntegralInRange<size_t>(0, kMaxAppend);
  const char fill = in.ConsumeIntegral<char>();
  std::string out(n, fill);
  // A line end now and then, so that readLine and search find something in long data.
  for (size_t i = 97; i < n; i += 997) out[i] = static_cast<char>("\r\n\0x"[i % 4]);
  return out;
}

// Up to twice the length, or SIZE_MAX: counts past the end must be clamped, not trusted.
size_t someCount(FuzzedDataProvider& in, size_t length) {
  if (in.ConsumeIntegralInRange<int>(0, 15) == 0) return SIZE_MAX;
  return in.ConsumeIntegralInRange<size_t>(0, 2 * length + 2);
}

// libevent's end-of-line rules (buffer.h, EolStyle), on the model: the line's length and the
// marker's, or nullopt if no line is complete.
std::optional<std::pair<size_t, size_t>> findEol(const std::string& s, EolStyle style) {
  size_t at = std::string::npos;
  switch (style) {
    case EolStyle::kLf:
      at = s.find('\n');
      return at == std::string::npos ? std::nullopt : std::optional(std::pair(at, size_t{1}));
    case EolStyle::kNul:
      at = s.find('\0');
      return at == std::string::npos ? std::nullopt : std::optional(std::pair(at, size_t{1}));
    case EolStyle::kCrlfStrict:
      at = s.find("\r\n");
      return at == std::string::npos ? std::nullopt : std::optional(std::pair(at, size_t{2}));
    case EolStyle::kCrlf:
      at = s.find('\n');
      if (at == std::string::npos) return std::nullopt;
      if (at > 0 && s[at - 1] == '\r') return std::pair(at - 1, size_t{2});
      return std::pair(at, size_t{1});
    case EolStyle::kAny: {
      at = s.find_first_of("\r\n");
      if (at == std::string::npos) return std::nullopt;
      const size_t end = std::min(s.find_first_not_of("\r\n", at), s.size());
      return std::pair(at, end - at);
    }
  }
  return std::nullopt;
}

// A non-blocking pipe for readFrom/writeTo, made once per process and always left empty.
struct Pipe {
  int readEnd = -1;
  int writeEnd = -1;
  Pipe() {
    int fds[2];
    FUZZ_CHECK(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
    readEnd = fds[0];
    writeEnd = fds[1];
  }
  std::string readAll() const {
    std::string out;
    char chunk[4096];
    ssize_t n;
    while ((n = ::read(readEnd, chunk, sizeof chunk)) > 0)
      out.append(chunk, static_cast<size_t>(n));
    return out;
  }
};

const Pipe& pipeForIo() {
  static const Pipe pipe;
  return pipe;
}

void writeTo(FuzzedDataProvider& in, Subject& s) {
  const Pipe& pipe = pipeForIo();
  const size_t max = in.ConsumeBool() ? SIZE_MAX : in.ConsumeIntegralInRange<size_t>(0, 100'000);
  const ssize_t written = s.buffer.writeTo(pipe.writeEnd, max);
  if (s.model.empty() || max == 0) {
    FUZZ_CHECK(written == 0);
  } else {
    FUZZ_CHECK(written > 0);  // an empty pipe takes at least one byte
  }
  const std::string out = pipe.readAll();
  FUZZ_CHECK(out.size() == static_cast<size_t>(std::max<ssize_t>(written, 0)));
  FUZZ_CHECK(out.size() <= max);
  FUZZ_CHECK(s.model.compare(0, out.size(), out) == 0);
  s.model.erase(0, out.size());
}

void readFrom(FuzzedDataProvider& in, Subject& s) {
  const Pipe& pipe = pipeForIo();
  const std::string bytes = in.ConsumeRandomLengthString(4096);
  const size_t max = in.ConsumeIntegralInRange<size_t>(1, 8192);
  if (!bytes.empty()) {
    FUZZ_CHECK(::write(pipe.writeEnd, bytes.data(), bytes.size()) ==
               static_cast<ssize_t>(bytes.size()));
  }
  const ssize_t read = s.buffer.readFrom(pipe.readEnd, max);
  if (bytes.empty()) {
    FUZZ_CHECK(read == -1 && errno == EAGAIN);
  } else {
    FUZZ_CHECK(read > 0 && static_cast<size_t>(read) <= std::min(max, bytes.size()));
    s.model.append(bytes, 0, static_cast<size_t>(read));
  }
  pipe.readAll();
}

void peek(FuzzedDataProvider& in, const Subject& s) {
  std::array<iovec, 8> vecs{};
  const size_t room = in.ConsumeIntegralInRange<size_t>(0, vecs.size());
  const size_t filled = s.buffer.peek(std::span(vecs.data(), room));
  FUZZ_CHECK(filled <= room);
  std::string seen;
  for (size_t i = 0; i < filled; ++i) {
    FUZZ_CHECK(vecs[i].iov_len > 0);  // chunks in the chain are never empty
    seen.append(static_cast<const char*>(vecs[i].iov_base), vecs[i].iov_len);
  }
  FUZZ_CHECK(s.model.compare(0, seen.size(), seen) == 0);
  if (filled < room) FUZZ_CHECK(seen.size() == s.model.size());  // every chunk was given
}

// Runs one operation on `s` (and `other` for the two-buffer ones), updating the models.
void step(FuzzedDataProvider& in, Subject& s, Subject& other) {
  const size_t length = s.model.size();
  switch (in.ConsumeIntegralInRange<int>(0, 16)) {
    case 0: {
      const std::string bytes = someBytes(in);
      if (length + bytes.size() > kMaxModelSize) return;
      s.buffer.append(bytes);
      s.model += bytes;
      return;
    }
    case 1: {
      const std::string bytes = someBytes(in);
      if (length + bytes.size() > kMaxModelSize) return;
      s.buffer.prepend(bytes.data(), bytes.size());
      s.model.insert(0, bytes);
      return;
    }
    case 2: {
      const size_t n = someCount(in, length);
      FUZZ_CHECK(s.buffer.drain(n) == std::min(n, length));
      s.model.erase(0, n);
      return;
    }
    case 3: {
      const size_t n = std::min(someCount(in, length), 2 * length + 2);
      std::string out(n, '\0');
      const size_t got = s.buffer.remove(out.data(), n);
      FUZZ_CHECK(got == std::min(n, length));
      FUZZ_CHECK(out.compare(0, got, s.model, 0, got) == 0);
      s.model.erase(0, got);
      return;
    }
    case 4: {
      const size_t n = std::min(someCount(in, length), 2 * length + 2);
      const size_t offset = someCount(in, length);
      std::string out(n, '\0');
      const size_t got = s.buffer.copyOut(out.data(), n, offset);
      const size_t expected = offset >= length ? 0 : std::min(n, length - offset);
      FUZZ_CHECK(got == expected);
      FUZZ_CHECK(got == 0 || out.compare(0, got, s.model, offset, got) == 0);
      return;
    }
    case 5:
      if (in.ConsumeBool()) {
        s.buffer.appendBuffer(s.buffer);  // documented as doing nothing
        return;
      }
      s.buffer.appendBuffer(other.buffer);
      s.model += other.model;
      other.model.clear();
      return;
    case 6:
      if (in.ConsumeBool()) {
        s.buffer.prependBuffer(s.buffer);
        return;
      }
      s.buffer.prependBuffer(other.buffer);
      s.model.insert(0, other.model);
      other.model.clear();
      return;
    case 7: {
      const size_t n = someCount(in, length);
      if (in.ConsumeBool()) {
        FUZZ_CHECK(s.buffer.removeBuffer(s.buffer, n) == 0);
        return;
      }
      const size_t moved = s.buffer.removeBuffer(other.buffer, n);
      FUZZ_CHECK(moved == std::min(n, length));
      other.model += s.model.substr(0, moved);
      s.model.erase(0, moved);
      return;
    }
    case 8: {
      const std::string needle = in.ConsumeRandomLengthString(8);
      const size_t start = someCount(in, length);
      const std::optional<size_t> found = s.buffer.search(needle, start);
      const size_t expected = start > length ? std::string::npos : s.model.find(needle, start);
      FUZZ_CHECK(found.value_or(std::string::npos) == expected);
      return;
    }
    case 9: {
      const auto style = static_cast<EolStyle>(in.ConsumeIntegralInRange<int>(0, 4));
      const auto eol = findEol(s.model, style);
      const std::optional<std::string> line = s.buffer.readLine(style);
      FUZZ_CHECK(line.has_value() == eol.has_value());
      if (!eol) return;
      FUZZ_CHECK(*line == s.model.substr(0, eol->first));
      s.model.erase(0, eol->first + eol->second);
      return;
    }
    case 10: {
      const size_t n = someCount(in, length);
      const char* front = s.buffer.pullup(n);
      const size_t want = n == SIZE_MAX ? length : n;
      if (want == 0 || want > length) {
        FUZZ_CHECK(front == nullptr);
        return;
      }
      FUZZ_CHECK(front != nullptr && std::memcmp(front, s.model.data(), want) == 0);
      FUZZ_CHECK(s.buffer.contiguousSpace() >= want);
      return;
    }
    case 11:
      peek(in, s);
      return;
    case 12:
      s.buffer.clear();
      s.model.clear();
      return;
    case 13:
      writeTo(in, s);
      return;
    case 14:
      if (length + 4096 > kMaxModelSize) return;
      readFrom(in, s);
      return;
    case 15: {
      // Moves carry the bytes and no callback, and report nothing (buffer.h): swap the contents
      // through a third buffer, then start counting afresh.
      Buffer held(std::move(s.buffer));
      FUZZ_CHECK(s.buffer.empty());
      s.buffer = std::move(other.buffer);
      other.buffer = std::move(held);
      FUZZ_CHECK(held.empty());
      std::swap(s.model, other.model);
      s.notifiedLength = s.model.size();
      other.notifiedLength = other.model.size();
      return;
    }
    case 16:
      // The callback may be cleared and set again; lengths changed meanwhile go unreported.
      s.buffer.setCallback(nullptr, nullptr);
      if (length + 1 <= kMaxModelSize) {
        s.buffer.append("x");
        s.model += 'x';
      }
      s.buffer.setCallback(onChange, &s);
      s.notifiedLength = s.model.size();
      return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  Subject a;
  Subject b;
  a.buffer.setCallback(onChange, &a);
  b.buffer.setCallback(onChange, &b);
  while (in.remaining_bytes() > 0) {
    const bool first = in.ConsumeBool();
    step(in, first ? a : b, first ? b : a);
    checkSubject(a);
    checkSubject(b);
  }
  return 0;
}
