#pragma once

// Pseudo-random payloads that a receiver checks byte for byte without storing them: the stream
// opens with its 8-byte seed, and every later byte is a function of the seed and its offset. A
// byte lost, duplicated or moved is a mismatch at the first offset it disturbs.
//
//   PayloadSource source(seed);                 // the sender
//   source.fill(buffer, n);                     // the next n bytes of the stream
//   PayloadChecker checker;                     // the receiver: learns the seed from the stream
//   if (!checker.feed(data, n)) ... checker.error() ...;
//   checker.matched();                          // bytes that matched, header included
//
// The generator is splitmix64 over (seed, offset / 8): a few cycles per 8 bytes, so a test can
// push a GiB through a gateway with the checks costing far less than the copies.
//
// Thread rule: one object per thread.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace evgate::test {

// Bytes [8k, 8k+8) of the stream after its header, as one little-endian word.
inline uint64_t payloadWord(uint64_t seed, uint64_t k) {
  uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The byte at `offset` of the stream of `seed` (the header, the seed's 8 bytes, included).
inline uint8_t payloadByte(uint64_t seed, uint64_t offset) {
  if (offset < 8) return static_cast<uint8_t>(seed >> (8 * offset));
  const uint64_t body = offset - 8;
  return static_cast<uint8_t>(payloadWord(seed, body / 8) >> (8 * (body % 8)));
}

class PayloadSource {
 public:
  explicit PayloadSource(uint64_t seed) : seed_(seed) {}

  // Writes the next `n` bytes of the stream to `out`: a word at a time where the stream is
  // aligned (the bytes of a word are its little-endian bytes, as on the x86 and arm hosts here).
  void fill(char* out, size_t n) {
    size_t i = 0;
    while (i < n) {
      if (offset_ >= 8 && (offset_ - 8) % 8 == 0 && n - i >= 8) {
        const uint64_t word = payloadWord(seed_, (offset_ - 8) / 8);
        std::memcpy(out + i, &word, 8);
        i += 8;
        offset_ += 8;
        continue;
      }
      out[i++] = static_cast<char>(next());
    }
  }
  uint64_t offset() const { return offset_; }

 private:
  uint8_t next() {
    if (offset_ < 8) return static_cast<uint8_t>(seed_ >> (8 * offset_++));
    const uint64_t body = offset_++ - 8;
    if (body % 8 == 0) word_ = payloadWord(seed_, body / 8);
    return static_cast<uint8_t>(word_ >> (8 * (body % 8)));
  }

  const uint64_t seed_;
  uint64_t offset_ = 0;
  uint64_t word_ = 0;
};

class PayloadChecker {
 public:
  // A checker for any stream: the seed is read from the first 8 bytes.
  PayloadChecker() = default;
  // A checker for the stream of `seed` only: a header with another seed is a mismatch.
  explicit PayloadChecker(uint64_t seed) : expected_(seed), known_(true) {}

  // Checks the next `n` received bytes; false (and error() says where) from the first mismatch
  // on, which stays the verdict whatever comes later.
  bool feed(const char* data, size_t n) {
    for (size_t i = 0; i < n && error_.empty(); ++i) {
      // Whole aligned words at once; a word that differs is checked byte by byte below.
      while (matched_ >= 8 && (matched_ - 8) % 8 == 0 && n - i >= 8) {
        const uint64_t expected = payloadWord(seed_, (matched_ - 8) / 8);
        uint64_t got = 0;
        std::memcpy(&got, data + i, 8);
        if (got != expected) break;
        i += 8;
        matched_ += 8;
      }
      if (i == n) break;
      const auto byte = static_cast<uint8_t>(data[i]);
      if (matched_ < 8) {
        seed_ |= uint64_t{byte} << (8 * matched_);
        if (known_ && byte != static_cast<uint8_t>(expected_ >> (8 * matched_))) {
          error_ = "seed byte " + std::to_string(matched_) + " differs";
          return false;
        }
        ++matched_;
        continue;
      }
      const uint64_t body = matched_ - 8;
      if (body % 8 == 0) word_ = payloadWord(seed_, body / 8);
      if (byte != static_cast<uint8_t>(word_ >> (8 * (body % 8)))) {
        error_ = "byte " + std::to_string(matched_) + " differs";
        return false;
      }
      ++matched_;
    }
    return error_.empty();
  }

  uint64_t matched() const { return matched_; }
  // The stream's seed (complete once 8 bytes matched).
  uint64_t seed() const { return seed_; }
  // Empty while every byte matched.
  const std::string& error() const { return error_; }

 private:
  uint64_t expected_ = 0;
  bool known_ = false;
  uint64_t seed_ = 0;
  uint64_t matched_ = 0;
  uint64_t word_ = 0;
  std::string error_;
};

}  // namespace evgate::test
