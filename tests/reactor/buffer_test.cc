#include "reactor/buffer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace evgate::reactor {
namespace {

constexpr size_t kMiB = size_t{1024} * 1024;

// n deterministic pseudo-random bytes; the same seed gives the same bytes.
std::string pattern(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (char& c : s) {
    c = static_cast<char>(gen());
  }
  return s;
}

std::string contents(const Buffer& b) {
  std::string s(b.length(), '\0');
  EXPECT_EQ(b.copyOut(s.data(), s.size()), s.size());
  return s;
}

std::vector<iovec> chunks(const Buffer& b) {
  std::vector<iovec> iov(b.length() + 1);
  iov.resize(b.peek(iov));
  return iov;
}

// A buffer whose chunks hold exactly the given pieces, built by moving one buffer per piece to
// the front (prependBuffer always relinks; appendBuffer copies small sources).
Buffer chained(const std::vector<std::string>& pieces) {
  Buffer b;
  for (auto piece = pieces.rbegin(); piece != pieces.rend(); ++piece) {
    Buffer one;
    one.append(*piece);
    b.prependBuffer(one);
  }
  return b;
}

struct Recorder {
  std::vector<BufferChange> changes;

  static void record(Buffer& /*buffer*/, const BufferChange& change, void* arg) {
    static_cast<Recorder*>(arg)->changes.push_back(change);
  }
};

void expectChange(const BufferChange& c, size_t origLength, size_t added, size_t deleted) {
  EXPECT_EQ(c.origLength, origLength);
  EXPECT_EQ(c.added, added);
  EXPECT_EQ(c.deleted, deleted);
}

// A connected, non-blocking AF_UNIX stream pair, closed on destruction.
struct SocketPair {
  int fds[2] = {-1, -1};

  SocketPair() {
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  }
  ~SocketPair() {
    closeEnd(0);
    closeEnd(1);
  }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;

  void closeEnd(int i) {
    if (fds[i] >= 0) {
      ::close(fds[i]);
      fds[i] = -1;
    }
  }
};

TEST(BufferTest, NewBufferIsEmpty) {
  Buffer b;
  char out[4];
  iovec iov[2];
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.length(), 0u);
  EXPECT_EQ(b.contiguousSpace(), 0u);
  EXPECT_EQ(b.drain(10), 0u);
  EXPECT_EQ(b.remove(out, sizeof(out)), 0u);
  EXPECT_EQ(b.copyOut(out, sizeof(out)), 0u);
  EXPECT_EQ(b.peek(iov), 0u);
  EXPECT_EQ(b.pullup(SIZE_MAX), nullptr);
  EXPECT_EQ(b.search("x"), std::nullopt);
  EXPECT_EQ(b.readLine(EolStyle::kLf), std::nullopt);
}

TEST(BufferTest, AppendSmallPiecesFillsTheTailChunk) {
  Buffer b;
  std::string expected;
  for (int i = 0; i < 2000; ++i) {
    std::string piece = pattern(10, static_cast<uint32_t>(i));
    b.append(piece);
    expected += piece;
  }
  EXPECT_EQ(b.length(), 20000u);
  EXPECT_EQ(contents(b), expected);
  // 20000 bytes in 10-byte appends must not make a chunk per append.
  EXPECT_LE(chunks(b).size(), 8u);
}

TEST(BufferTest, AppendLargerThanAChunkKeepsOrder) {
  Buffer b;
  std::string expected;
  for (size_t n : {1u, 5000u, 3u, 100000u, 16384u, 7u, 70000u}) {
    std::string piece = pattern(n, static_cast<uint32_t>(n));
    b.append(piece.data(), piece.size());
    expected += piece;
  }
  EXPECT_EQ(b.length(), expected.size());
  EXPECT_EQ(contents(b), expected);
  EXPECT_GT(chunks(b).size(), 1u);
}

TEST(BufferTest, PrependPutsBytesBeforeExistingOnes) {
  Buffer b;
  b.append("world");
  b.prepend("hello ", 6);
  EXPECT_EQ(contents(b), "hello world");

  // After a drain the consumed space at the front takes prepended bytes.
  b.drain(6);
  b.prepend("brave ", 6);
  EXPECT_EQ(contents(b), "brave world");

  std::string big = pattern(50000, 1);
  b.prepend(big.data(), big.size());
  b.prepend("<", 1);
  EXPECT_EQ(contents(b), "<" + big + "brave world");

  Buffer fresh;
  fresh.prepend("abc", 3);
  fresh.prepend("xy", 2);
  fresh.append("z");
  EXPECT_EQ(contents(fresh), "xyabcz");
}

TEST(BufferTest, DrainAcrossChunks) {
  std::string data = pattern(300000, 2);
  Buffer b;
  b.append(data);
  size_t consumed = 0;
  for (size_t n : {1u, 4095u, 20000u, 16384u, 100000u, 3u}) {
    EXPECT_EQ(b.drain(n), n);
    consumed += n;
    EXPECT_EQ(b.length(), data.size() - consumed);
    EXPECT_EQ(contents(b), data.substr(consumed));
  }
  EXPECT_EQ(b.drain(SIZE_MAX), data.size() - consumed);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.contiguousSpace(), 0u);
}

TEST(BufferTest, RemoveCopiesAndDrains) {
  Buffer b = chained({"abc", "defg", "hi"});
  char out[16] = {};
  EXPECT_EQ(b.remove(out, 5), 5u);
  EXPECT_EQ(std::string(out, 5), "abcde");
  EXPECT_EQ(contents(b), "fghi");
  EXPECT_EQ(b.remove(out, sizeof(out)), 4u);
  EXPECT_EQ(std::string(out, 4), "fghi");
  EXPECT_TRUE(b.empty());
}

TEST(BufferTest, CopyOutWithOffsetsAcrossChunks) {
  Buffer b = chained({"0123", "4567", "89"});
  char out[16] = {};
  EXPECT_EQ(b.copyOut(out, 4, 3), 4u);
  EXPECT_EQ(std::string(out, 4), "3456");
  EXPECT_EQ(b.copyOut(out, 100, 4), 6u);
  EXPECT_EQ(std::string(out, 6), "456789");
  EXPECT_EQ(b.copyOut(out, 3, 9), 1u);
  EXPECT_EQ(out[0], '9');
  EXPECT_EQ(b.copyOut(out, 3, 10), 0u);
  EXPECT_EQ(b.copyOut(out, 3, 1000), 0u);
  EXPECT_EQ(b.length(), 10u);
}

TEST(BufferTest, SmallAppendBufferCopiesIntoTheTailInsteadOfLinking) {
  // A relay that moves many small reads into a stalled peer's output must not keep one chunk
  // per read: small sources are copied into the destination's free tail space.
  Buffer dst;
  dst.append("head");
  for (int i = 0; i < 100; ++i) {
    Buffer read;
    read.append("0123456789");
    dst.appendBuffer(read);
    EXPECT_TRUE(read.empty());
  }
  EXPECT_EQ(dst.length(), 4u + 100u * 10u);
  std::vector<iovec> iov(8);
  EXPECT_LE(dst.peek(iov), 2u);  // 1004 bytes: the first 1 KiB chunk and at most one more
  EXPECT_EQ(contents(dst).substr(0, 14), "head0123456789");
}

TEST(BufferTest, ContiguousSpaceIsTheFrontChunk) {
  Buffer b = chained({"abc", "defgh"});
  EXPECT_EQ(b.contiguousSpace(), 3u);
  b.drain(1);
  EXPECT_EQ(b.contiguousSpace(), 2u);
  b.drain(2);
  EXPECT_EQ(b.contiguousSpace(), 5u);
}

TEST(BufferTest, AppendBufferMovesChunksWithoutCopying) {
  std::string data = pattern(8 * kMiB, 3);
  Buffer src;
  for (size_t at = 0; at < data.size(); at += 100000) {
    src.append(data.substr(at, 100000));
  }
  Buffer dst;
  dst.append("head");
  std::vector<iovec> before = chunks(src);
  size_t dstChunks = chunks(dst).size();

  dst.appendBuffer(src);

  EXPECT_TRUE(src.empty());
  EXPECT_EQ(src.contiguousSpace(), 0u);
  EXPECT_EQ(dst.length(), 4 + data.size());
  std::vector<iovec> after = chunks(dst);
  ASSERT_EQ(after.size(), dstChunks + before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(after[dstChunks + i].iov_base, before[i].iov_base);
    EXPECT_EQ(after[dstChunks + i].iov_len, before[i].iov_len);
  }
  EXPECT_EQ(contents(dst), "head" + data);

  // src is still usable, and moving an empty buffer or the buffer itself changes nothing.
  src.append("more");
  EXPECT_EQ(contents(src), "more");
  Buffer none;
  dst.appendBuffer(none);
  dst.appendBuffer(dst);
  EXPECT_EQ(dst.length(), 4 + data.size());
}

TEST(BufferTest, PrependBufferMovesChunksToTheFront) {
  Buffer src = chained({"one ", "two "});
  Buffer dst;
  dst.append("three");
  std::vector<iovec> before = chunks(src);
  dst.prependBuffer(src);
  EXPECT_TRUE(src.empty());
  EXPECT_EQ(contents(dst), "one two three");
  std::vector<iovec> after = chunks(dst);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[0].iov_base, before[0].iov_base);
  EXPECT_EQ(after[1].iov_base, before[1].iov_base);

  Buffer empty;
  Buffer more;
  more.append("x");
  empty.prependBuffer(more);
  empty.append("y");
  EXPECT_EQ(contents(empty), "xy");
  empty.prependBuffer(more);
  empty.prependBuffer(empty);
  EXPECT_EQ(contents(empty), "xy");
}

TEST(BufferTest, RemoveBufferMovesWholeChunksAndCopiesASplitOne) {
  Buffer src = chained({"aaaa", "bbbb", "cccc"});
  std::vector<iovec> srcChunks = chunks(src);
  Buffer dst;
  EXPECT_EQ(src.removeBuffer(dst, 6), 6u);
  EXPECT_EQ(contents(dst), "aaaabb");
  EXPECT_EQ(contents(src), "bbcccc");
  // The whole first chunk moved; the split one stayed, minus its first two bytes.
  std::vector<iovec> dstChunks = chunks(dst);
  ASSERT_GE(dstChunks.size(), 1u);
  EXPECT_EQ(dstChunks[0].iov_base, srcChunks[0].iov_base);
  EXPECT_EQ(chunks(src)[0].iov_base, static_cast<char*>(srcChunks[1].iov_base) + 2);

  EXPECT_EQ(src.removeBuffer(dst, 100), 6u);
  EXPECT_TRUE(src.empty());
  EXPECT_EQ(contents(dst), "aaaabbbbcccc");
  EXPECT_EQ(src.removeBuffer(dst, 5), 0u);
  EXPECT_EQ(dst.removeBuffer(dst, 5), 0u);
  EXPECT_EQ(dst.length(), 12u);
}

TEST(BufferTest, RemoveBufferMovesASplitChunkWithItsLongerSide) {
  Buffer src = chained({"ab", "cdefghij"});
  std::vector<iovec> srcChunks = chunks(src);
  Buffer dst;
  dst.append("<");
  EXPECT_EQ(src.removeBuffer(dst, 7), 7u);
  EXPECT_EQ(contents(dst), "<abcdefg");
  EXPECT_EQ(contents(src), "hij");
  // Five of the split chunk's eight bytes went to dst: the chunk went along, "hij" was copied.
  std::vector<iovec> dstChunks = chunks(dst);
  ASSERT_EQ(dstChunks.size(), 3u);
  EXPECT_EQ(dstChunks[1].iov_base, srcChunks[0].iov_base);
  EXPECT_EQ(dstChunks[2].iov_base, srcChunks[1].iov_base);
  EXPECT_EQ(dstChunks[2].iov_len, 5u);

  // Both buffers keep working at their ends.
  src.append("k");
  dst.append("!");
  src.prepend("-", 1);
  EXPECT_EQ(contents(src), "-hijk");
  EXPECT_EQ(contents(dst), "<abcdefg!");
}

TEST(BufferTest, RemoveBufferMovesLargeDataIntact) {
  std::string data = pattern(8 * kMiB, 4);
  Buffer src;
  src.append(data);
  Buffer dst;
  size_t moved = 0;
  for (size_t step : {kMiB + 7, size_t{3}, 2 * kMiB, size_t{65536}, 5 * kMiB}) {
    size_t expected = std::min(step, data.size() - moved);
    EXPECT_EQ(src.removeBuffer(dst, step), expected);
    moved += expected;
    EXPECT_EQ(src.length(), data.size() - moved);
    EXPECT_EQ(dst.length(), moved);
  }
  EXPECT_TRUE(src.empty());
  EXPECT_EQ(contents(dst), data);
}

TEST(BufferTest, SearchFindsNeedlesAcrossChunks) {
  Buffer b = chained({"hello wo", "r", "ld, hello", " world"});
  EXPECT_EQ(b.search("world"), 6u);
  EXPECT_EQ(b.search("world", 7), 19u);
  EXPECT_EQ(b.search("hello"), 0u);
  EXPECT_EQ(b.search("hello", 1), 13u);
  EXPECT_EQ(b.search("o wor"), 4u);
  EXPECT_EQ(b.search("d"), 10u);
  EXPECT_EQ(b.search("worlds"), std::nullopt);
  EXPECT_EQ(b.search("world", 20), std::nullopt);
  EXPECT_EQ(b.search("hello world, hello world, more"), std::nullopt);
  EXPECT_EQ(b.search("", 3), 3u);
  EXPECT_EQ(b.search("", b.length()), b.length());
  EXPECT_EQ(b.search("", b.length() + 1), std::nullopt);
  EXPECT_EQ(b.search("d", b.length()), std::nullopt);
}

TEST(BufferTest, SearchMatchesStdStringFindOnRandomData) {
  // A four-letter alphabet makes partial matches common, including across chunk boundaries.
  std::mt19937 gen(5);
  std::string data;
  Buffer b;
  for (int i = 0; i < 200; ++i) {
    std::string piece(1 + gen() % 40, 'a');
    for (char& c : piece) {
      c = static_cast<char>('a' + gen() % 4);
    }
    Buffer one;
    one.append(piece);
    b.appendBuffer(one);
    data += piece;
  }
  for (int i = 0; i < 500; ++i) {
    size_t start = gen() % data.size();
    std::string needle = data.substr(gen() % data.size(), 1 + gen() % 6);
    size_t found = data.find(needle, start);
    std::optional<size_t> expected;
    if (found != std::string::npos) {
      expected = found;
    }
    EXPECT_EQ(b.search(needle, start), expected) << needle << " from " << start;
  }
}

TEST(BufferTest, ReadLineLf) {
  Buffer b;
  b.append("one\ntwo\r\n\nthree");
  EXPECT_EQ(b.readLine(EolStyle::kLf), "one");
  EXPECT_EQ(b.readLine(EolStyle::kLf), "two\r");
  EXPECT_EQ(b.readLine(EolStyle::kLf), "");
  EXPECT_EQ(b.readLine(EolStyle::kLf), std::nullopt);
  EXPECT_EQ(contents(b), "three");
}

TEST(BufferTest, ReadLineCrlf) {
  Buffer b;
  b.append("one\r\ntwo\nth\rree\r\n\r");
  EXPECT_EQ(b.readLine(EolStyle::kCrlf), "one");
  EXPECT_EQ(b.readLine(EolStyle::kCrlf), "two");
  EXPECT_EQ(b.readLine(EolStyle::kCrlf), "th\rree");
  // A trailing '\r' may still be followed by '\n': no line yet.
  EXPECT_EQ(b.readLine(EolStyle::kCrlf), std::nullopt);
  EXPECT_EQ(contents(b), "\r");
  b.append("\n");
  EXPECT_EQ(b.readLine(EolStyle::kCrlf), "");
  EXPECT_TRUE(b.empty());
}

TEST(BufferTest, ReadLineCrlfStrict) {
  Buffer b;
  b.append("a\nb\r\nc\r");
  EXPECT_EQ(b.readLine(EolStyle::kCrlfStrict), "a\nb");
  EXPECT_EQ(b.readLine(EolStyle::kCrlfStrict), std::nullopt);
  b.append("\n");
  EXPECT_EQ(b.readLine(EolStyle::kCrlfStrict), "c");
  EXPECT_TRUE(b.empty());
}

TEST(BufferTest, ReadLineAnyDropsTheWholeEolRun) {
  Buffer b;
  b.append("one\r\n\r\ntwo\rthree\n\nfour");
  EXPECT_EQ(b.readLine(EolStyle::kAny), "one");
  EXPECT_EQ(b.readLine(EolStyle::kAny), "two");
  EXPECT_EQ(b.readLine(EolStyle::kAny), "three");
  EXPECT_EQ(b.readLine(EolStyle::kAny), std::nullopt);
  EXPECT_EQ(contents(b), "four");
  // As in libevent, a run reaching the end of the buffer ends the line at once.
  b.append("\r");
  EXPECT_EQ(b.readLine(EolStyle::kAny), "four");
  EXPECT_TRUE(b.empty());
}

TEST(BufferTest, ReadLineNul) {
  Buffer b;
  b.append(std::string_view("key\0value\0tail", 14));
  EXPECT_EQ(b.readLine(EolStyle::kNul), "key");
  EXPECT_EQ(b.readLine(EolStyle::kNul), "value");
  EXPECT_EQ(b.readLine(EolStyle::kNul), std::nullopt);
  EXPECT_EQ(contents(b), "tail");
}

TEST(BufferTest, ReadLineWithEolSplitAcrossChunks) {
  Buffer crlf = chained({"GET / HTTP/1.1\r", "\nHost: x\r", "\n", "\r", "\n"});
  EXPECT_EQ(crlf.readLine(EolStyle::kCrlfStrict), "GET / HTTP/1.1");
  EXPECT_EQ(crlf.readLine(EolStyle::kCrlf), "Host: x");
  EXPECT_EQ(crlf.readLine(EolStyle::kCrlfStrict), "");
  EXPECT_TRUE(crlf.empty());

  Buffer any = chained({"a\r", "\n", "\rb", "c\n"});
  EXPECT_EQ(any.readLine(EolStyle::kAny), "a");
  EXPECT_EQ(any.readLine(EolStyle::kAny), "bc");
  EXPECT_TRUE(any.empty());

  std::string text(5000, 'x');
  Buffer longLine = chained({text.substr(0, 4000), text.substr(4000), "\r", "\n", "next"});
  EXPECT_EQ(longLine.readLine(EolStyle::kCrlf), text);
  EXPECT_EQ(contents(longLine), "next");
}

TEST(BufferTest, PullupMakesTheFrontContiguous) {
  Buffer b = chained({"abc", "defg", "hij"});
  const char* front = static_cast<const char*>(chunks(b)[0].iov_base);
  // Already contiguous: no copy.
  EXPECT_EQ(b.pullup(2), front);

  const char* p = b.pullup(5);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::string(p, 5), "abcde");
  EXPECT_GE(b.contiguousSpace(), 5u);
  EXPECT_EQ(contents(b), "abcdefghij");

  EXPECT_EQ(b.pullup(11), nullptr);
  EXPECT_EQ(b.pullup(0), nullptr);
  EXPECT_EQ(contents(b), "abcdefghij");

  p = b.pullup(SIZE_MAX);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::string(p, 10), "abcdefghij");
  EXPECT_EQ(b.contiguousSpace(), 10u);
  EXPECT_EQ(chunks(b).size(), 1u);
  b.append("k");
  EXPECT_EQ(contents(b), "abcdefghijk");
}

TEST(BufferTest, PullupLargerThanTheFrontChunk) {
  std::string data = pattern(200000, 7);
  Buffer b;
  for (size_t at = 0; at < data.size(); at += 1000) {
    Buffer one;
    one.append(data.substr(at, 1000));
    b.appendBuffer(one);
  }
  const char* p = b.pullup(150001);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::memcmp(p, data.data(), 150001), 0);
  EXPECT_EQ(contents(b), data);
  b.drain(10);
  p = b.pullup(SIZE_MAX);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::memcmp(p, data.data() + 10, data.size() - 10), 0);
}

TEST(BufferTest, PullupMovesTheFrontChunksBytesToMakeRoom) {
  // A buffer's first chunk holds 992 bytes (1 KiB with its header). With 900 drained, 95 bytes
  // fit in it only by reusing the drained front.
  std::string data = pattern(980, 14);
  Buffer b;
  b.append(data);
  b.drain(900);
  Buffer next;
  next.append("tail bytes and more");
  next.prependBuffer(b);
  b = std::move(next);
  const char* p = b.pullup(95);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::string(p, 95), data.substr(900) + "tail bytes and ");
  EXPECT_EQ(contents(b), data.substr(900) + "tail bytes and more");
}

TEST(BufferTest, PeekPointsAtTheFrontChunks) {
  Buffer b = chained({"ab", "cde", "f"});
  iovec iov[2];
  ASSERT_EQ(b.peek(iov), 2u);
  EXPECT_EQ(std::string(static_cast<char*>(iov[0].iov_base), iov[0].iov_len), "ab");
  EXPECT_EQ(std::string(static_cast<char*>(iov[1].iov_base), iov[1].iov_len), "cde");
  iovec all[8];
  EXPECT_EQ(b.peek(all), 3u);
  EXPECT_EQ(std::string(static_cast<char*>(all[2].iov_base), all[2].iov_len), "f");
  EXPECT_EQ(b.length(), 6u);
}

TEST(BufferTest, ClearEmptiesTheBuffer) {
  Buffer b;
  b.append(pattern(100000, 8));
  b.clear();
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.contiguousSpace(), 0u);
  b.append("again");
  EXPECT_EQ(contents(b), "again");
}

TEST(BufferTest, RandomOperationsMatchAStringModel) {
  std::mt19937 gen(9);
  Buffer b;
  std::string model;
  for (int i = 0; i < 5000; ++i) {
    size_t n = gen() % 3 == 0 ? gen() % 40000 : gen() % 100;
    switch (gen() % 7) {
      case 0: {
        std::string piece = pattern(n, static_cast<uint32_t>(i));
        b.append(piece);
        model += piece;
        break;
      }
      case 1: {
        std::string piece = pattern(n, static_cast<uint32_t>(i));
        b.prepend(piece.data(), piece.size());
        model.insert(0, piece);
        break;
      }
      case 2:
        ASSERT_EQ(b.drain(n), std::min(n, model.size()));
        model.erase(0, n);
        break;
      case 3: {
        std::string out(n, '\0');
        size_t got = b.remove(out.data(), n);
        ASSERT_EQ(out.substr(0, got), model.substr(0, n));
        model.erase(0, n);
        break;
      }
      case 4: {
        size_t offset = model.empty() ? 0 : gen() % model.size();
        std::string out(n, '\0');
        size_t got = b.copyOut(out.data(), n, offset);
        ASSERT_EQ(out.substr(0, got), model.substr(offset, n));
        break;
      }
      case 5: {
        Buffer other;
        std::string piece = pattern(n, static_cast<uint32_t>(i));
        other.append(piece);
        b.appendBuffer(other);
        model += piece;
        break;
      }
      default: {
        // Rotates the front n bytes to the end through another buffer.
        Buffer other;
        size_t moved = b.removeBuffer(other, n);
        ASSERT_EQ(moved, std::min(n, model.size()));
        std::string front = model.substr(0, moved);
        ASSERT_EQ(contents(other), front);
        b.appendBuffer(other);
        model.erase(0, moved);
        model += front;
        break;
      }
    }
    ASSERT_EQ(b.length(), model.size());
  }
  EXPECT_EQ(contents(b), model);
}

TEST(BufferTest, ReadFromAndWriteToRoundTripOverASocketPair) {
  SocketPair sp;
  std::string data = pattern(4 * kMiB, 10);
  Buffer out;
  out.append(data);
  Buffer in;
  // Each pass writes what the socket takes and reads it back, so each makes progress.
  for (int pass = 0; pass < 100000 && in.length() < data.size(); ++pass) {
    if (!out.empty()) {
      ssize_t n = out.writeTo(sp.fds[0]);
      ASSERT_TRUE(n > 0 || (n < 0 && errno == EAGAIN)) << errno;
    }
    ssize_t n = in.readFrom(sp.fds[1], SIZE_MAX);
    ASSERT_TRUE(n > 0 || (n < 0 && errno == EAGAIN)) << errno;
  }
  EXPECT_TRUE(out.empty());
  ASSERT_EQ(in.length(), data.size());
  EXPECT_EQ(contents(in), data);
}

TEST(BufferTest, ReadFromTakesMuchInOneCallAndAppendsAfterExistingBytes) {
  SocketPair sp;
  std::string data = pattern(100000, 11);
  ASSERT_EQ(::write(sp.fds[0], data.data(), data.size()), static_cast<ssize_t>(data.size()));
  Buffer in;
  in.append("x");
  ssize_t n = in.readFrom(sp.fds[1], SIZE_MAX);
  ASSERT_GT(n, 32 * 1024);
  while (in.length() < data.size() + 1) {
    ASSERT_GT(in.readFrom(sp.fds[1], SIZE_MAX), 0);
  }
  EXPECT_EQ(contents(in), "x" + data);
}

TEST(BufferTest, ReadFromHonoursMaxBytesAndReusesTailSpace) {
  SocketPair sp;
  ASSERT_EQ(::write(sp.fds[0], "0123456789", 10), 10);
  Buffer in;
  EXPECT_EQ(in.readFrom(sp.fds[1], 4), 4);
  EXPECT_EQ(contents(in), "0123");
  EXPECT_EQ(in.readFrom(sp.fds[1], SIZE_MAX), 6);
  EXPECT_EQ(contents(in), "0123456789");
  // Small reads land in one chunk rather than one chunk each.
  EXPECT_EQ(chunks(in).size(), 1u);
  EXPECT_EQ(in.contiguousSpace(), 10u);
}

TEST(BufferTest, ReadFromAnEmptyNonBlockingSocketGivesEagain) {
  SocketPair sp;
  Buffer in;
  errno = 0;
  EXPECT_EQ(in.readFrom(sp.fds[1], SIZE_MAX), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_TRUE(in.empty());
}

TEST(BufferTest, ReadFromAClosedPeerGivesEof) {
  SocketPair sp;
  ASSERT_EQ(::write(sp.fds[0], "bye", 3), 3);
  sp.closeEnd(0);
  Buffer in;
  EXPECT_EQ(in.readFrom(sp.fds[1], SIZE_MAX), 3);
  EXPECT_EQ(in.readFrom(sp.fds[1], SIZE_MAX), 0);
  EXPECT_EQ(contents(in), "bye");
}

TEST(BufferTest, WriteToAClosedPeerGivesEpipeWithoutSigpipe) {
  SocketPair sp;
  sp.closeEnd(1);
  Buffer out;
  out.append("lost");
  errno = 0;
  // Without MSG_NOSIGNAL this would kill the test process.
  EXPECT_EQ(out.writeTo(sp.fds[0]), -1);
  EXPECT_EQ(errno, EPIPE);
  EXPECT_EQ(contents(out), "lost");
}

TEST(BufferTest, WriteToHonoursMaxBytesAndGathersManyChunks) {
  SocketPair sp;
  std::vector<std::string> pieces;
  std::string data;
  for (int i = 0; i < 200; ++i) {
    pieces.push_back(pattern(10, static_cast<uint32_t>(i)));
    data += pieces.back();
  }
  Buffer out = chained(pieces);
  EXPECT_EQ(out.writeTo(sp.fds[0], 15), 15);
  EXPECT_EQ(out.length(), data.size() - 15);
  // One call takes many chunks, not just the first.
  EXPECT_GT(out.writeTo(sp.fds[0]), 100);
  while (!out.empty()) {
    ASSERT_GT(out.writeTo(sp.fds[0]), 0);
  }
  Buffer in;
  while (in.length() < data.size()) {
    ASSERT_GT(in.readFrom(sp.fds[1], SIZE_MAX), 0);
  }
  EXPECT_EQ(contents(in), data);
  EXPECT_EQ(out.writeTo(sp.fds[0]), 0);
}

TEST(BufferTest, WriteToAPipeFallsBackToWritev) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  Buffer out = chained({"through ", "a pipe"});
  EXPECT_EQ(out.writeTo(fds[1]), 14);
  EXPECT_TRUE(out.empty());
  Buffer in;
  EXPECT_EQ(in.readFrom(fds[0], SIZE_MAX), 14);
  EXPECT_EQ(contents(in), "through a pipe");
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(BufferTest, CallbackReportsEveryChange) {
  Recorder rec;
  Buffer b;
  b.setCallback(&Recorder::record, &rec);
  b.append("hello");
  b.prepend(">>", 2);
  b.drain(1);
  char out[2];
  b.remove(out, 2);
  b.append("\nrest");
  EXPECT_EQ(b.readLine(EolStyle::kLf), "ello");
  b.clear();
  ASSERT_EQ(rec.changes.size(), 7u);
  expectChange(rec.changes[0], 0, 5, 0);
  expectChange(rec.changes[1], 5, 2, 0);
  expectChange(rec.changes[2], 7, 0, 1);
  expectChange(rec.changes[3], 6, 0, 2);
  expectChange(rec.changes[4], 4, 5, 0);
  expectChange(rec.changes[5], 9, 0, 5);
  expectChange(rec.changes[6], 4, 0, 4);

  // Operations that change nothing stay silent.
  rec.changes.clear();
  b.drain(5);
  b.append("", 0);
  b.clear();
  b.append("ab");
  b.copyOut(out, 2);
  b.pullup(2);
  b.search("b");
  b.readLine(EolStyle::kLf);
  ASSERT_EQ(rec.changes.size(), 1u);
  expectChange(rec.changes[0], 0, 2, 0);
}

TEST(BufferTest, CallbackReportsBothSidesOfAMove) {
  Recorder srcRec;
  Recorder dstRec;
  Buffer src;
  Buffer dst;
  src.append("abcdef");
  dst.append("xy");
  src.setCallback(&Recorder::record, &srcRec);
  dst.setCallback(&Recorder::record, &dstRec);

  src.removeBuffer(dst, 2);
  dst.prependBuffer(src);
  src.append("123");
  src.appendBuffer(dst);

  ASSERT_EQ(dstRec.changes.size(), 3u);
  expectChange(dstRec.changes[0], 2, 2, 0);
  expectChange(dstRec.changes[1], 4, 4, 0);
  expectChange(dstRec.changes[2], 8, 0, 8);
  ASSERT_EQ(srcRec.changes.size(), 4u);
  expectChange(srcRec.changes[0], 6, 0, 2);
  expectChange(srcRec.changes[1], 4, 0, 4);
  expectChange(srcRec.changes[2], 0, 3, 0);
  expectChange(srcRec.changes[3], 3, 8, 0);
  EXPECT_EQ(contents(src), "123cdefxyab");
}

TEST(BufferTest, CallbackReportsReadFromAndWriteTo) {
  SocketPair sp;
  Recorder rec;
  Buffer b;
  b.setCallback(&Recorder::record, &rec);
  b.append("ping");
  EXPECT_EQ(b.writeTo(sp.fds[0]), 4);
  EXPECT_EQ(b.readFrom(sp.fds[1], SIZE_MAX), 4);
  EXPECT_EQ(b.readFrom(sp.fds[1], SIZE_MAX), -1);
  ASSERT_EQ(rec.changes.size(), 3u);
  expectChange(rec.changes[1], 4, 0, 4);
  expectChange(rec.changes[2], 0, 4, 0);
}

TEST(BufferTest, CallbackThatClearsItselfRunsOnce) {
  struct Once {
    int calls = 0;
    static void run(Buffer& buffer, const BufferChange& /*change*/, void* arg) {
      ++static_cast<Once*>(arg)->calls;
      buffer.setCallback(nullptr, nullptr);
    }
  } once;
  Buffer b;
  b.setCallback(&Once::run, &once);
  b.append("a");
  b.append("b");
  b.drain(2);
  EXPECT_EQ(once.calls, 1);
  EXPECT_TRUE(b.empty());
}

TEST(BufferTest, CallbackThatModifiesTheBufferSeesConsistentState) {
  // Consumes complete lines as bytes arrive, like a line-oriented reader. Its own readLine calls
  // run the callback again (nested, with nothing added), which must see the updated length.
  struct LineEater {
    std::vector<std::string> lines;
    int calls = 0;
    static void run(Buffer& buffer, const BufferChange& change, void* arg) {
      auto* self = static_cast<LineEater*>(arg);
      ++self->calls;
      EXPECT_EQ(buffer.length(), change.origLength + change.added - change.deleted);
      if (change.added == 0) {
        return;
      }
      while (std::optional<std::string> line = buffer.readLine(EolStyle::kLf)) {
        self->lines.push_back(*line);
      }
    }
  } eater;
  Buffer b;
  b.setCallback(&LineEater::run, &eater);
  b.append("one\ntwo\nthr");
  b.append("ee\n");
  EXPECT_EQ(eater.lines, (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(eater.calls, 5);  // two appends, three readLine drains
  EXPECT_TRUE(b.empty());
}

TEST(BufferTest, MoveConstructionTakesTheBytesButNotTheCallback) {
  Recorder rec;
  Buffer a;
  a.append(pattern(50000, 12));
  a.setCallback(&Recorder::record, &rec);
  std::vector<iovec> before = chunks(a);

  Buffer b(std::move(a));
  EXPECT_EQ(b.length(), 50000u);
  EXPECT_EQ(chunks(b)[0].iov_base, before[0].iov_base);
  EXPECT_EQ(contents(b), pattern(50000, 12));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from state is specified.
  EXPECT_TRUE(rec.changes.empty());

  b.append("x");
  EXPECT_TRUE(rec.changes.empty());
  a.append("y");
  ASSERT_EQ(rec.changes.size(), 1u);
  expectChange(rec.changes[0], 0, 1, 0);
}

TEST(BufferTest, MoveAssignmentReplacesTheBytes) {
  Recorder rec;
  Buffer a;
  a.append("new bytes");
  Buffer b;
  b.append(pattern(30000, 13));
  b.setCallback(&Recorder::record, &rec);

  b = std::move(a);
  EXPECT_EQ(contents(b), "new bytes");
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from state is specified.
  EXPECT_TRUE(rec.changes.empty());
  b.drain(4);
  ASSERT_EQ(rec.changes.size(), 1u);
  expectChange(rec.changes[0], 9, 0, 4);

  Buffer& self = b;
  b = std::move(self);
  EXPECT_EQ(contents(b), "bytes");
}

}  // namespace
}  // namespace evgate::reactor
