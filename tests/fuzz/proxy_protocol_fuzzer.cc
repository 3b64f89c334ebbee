// Fuzzes the PROXY protocol v1/v2 parser the way a listener drives it: the bytes arrive a few at
// a time, spread over the input buffer's chunks, and the parser runs after every arrival. Checks
// that the answers form one consistent story (need more, then done or invalid, never back), that
// the final answer does not depend on how the bytes were chunked, that the input is left alone,
// and that a parsed header re-encodes to one that parses to the same addresses.
//
// Input: the first byte chooses how each later byte is fed (see feed()); the rest is the stream.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "gateway/proxy_protocol.h"
#include "reactor/buffer.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using evgate::gateway::ProxyHeader;
using evgate::gateway::ProxyParse;
using evgate::reactor::Buffer;
namespace gw = evgate::gateway;

struct Answer {
  ProxyParse parse = ProxyParse::kNeedMore;
  ProxyHeader header;
  std::string error;
};

bool sameHeader(const ProxyHeader& a, const ProxyHeader& b) {
  return a.version == b.version && a.length == b.length && a.source == b.source &&
         a.destination == b.destination;
}

bool sameAnswer(const Answer& a, const Answer& b) {
  if (a.parse != b.parse) return false;
  return a.parse != ProxyParse::kDone || sameHeader(a.header, b.header);
}

std::string contents(const Buffer& buffer) {
  std::string out(buffer.length(), '\0');
  buffer.copyOut(out.data(), out.size());
  return out;
}

Answer parse(const Buffer& input) {
  const std::string before = contents(input);
  Answer answer;
  answer.parse = gw::parseProxyHeader(input, answer.header, answer.error);
  FUZZ_CHECK(contents(input) == before);  // the parser only looks
  return answer;
}

// What any single answer must satisfy for an input of `available` bytes.
void checkAnswer(const Answer& answer, size_t available) {
  switch (answer.parse) {
    case ProxyParse::kNeedMore:
      // The parser reads at most kProxyMaxLength bytes, so with that many it must decide.
      FUZZ_CHECK(available < gw::kProxyMaxLength);
      return;
    case ProxyParse::kInvalid:
      FUZZ_CHECK(!answer.error.empty());
      return;
    case ProxyParse::kDone:
      break;
  }
  const ProxyHeader& h = answer.header;
  FUZZ_CHECK(h.version == 1 || h.version == 2);
  FUZZ_CHECK(h.length > 0 && h.length <= available);
  FUZZ_CHECK(h.length <= (h.version == 1 ? gw::kProxyV1MaxLength : gw::kProxyV2MaxLength));
  FUZZ_CHECK(h.source.has_value() == h.destination.has_value());
  if (!h.source) return;
  FUZZ_CHECK(h.source->family() == h.destination->family());
  FUZZ_CHECK(h.source->family() == AF_INET || h.source->family() == AF_INET6);
  // Re-encoding what was parsed gives a header that parses to the same endpoints.
  for (const std::string& encoded : {gw::encodeProxyV1(*h.source, *h.destination),
                                     gw::encodeProxyV2(*h.source, *h.destination)}) {
    Buffer again;
    again.append(encoded);
    const Answer reparsed = parse(again);
    FUZZ_CHECK(reparsed.parse == ProxyParse::kDone);
    FUZZ_CHECK(reparsed.header.length == encoded.size());
    FUZZ_CHECK(reparsed.header.source == h.source);
    FUZZ_CHECK(reparsed.header.destination == h.destination);
  }
}

// Adds one byte to `input`: appended in place, or as a chunk of its own moved in with
// appendBuffer, so that the header ends up spread over chunks in every arrangement.
void feed(Buffer& input, char byte, bool ownChunk) {
  if (!ownChunk) {
    input.append(&byte, 1);
    return;
  }
  Buffer piece;
  piece.append(&byte, 1);
  input.appendBuffer(piece);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t layout = data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);

  Buffer incremental;
  Answer previous = parse(incremental);
  FUZZ_CHECK(previous.parse == ProxyParse::kNeedMore);  // nothing yet: always need more
  for (size_t i = 0; i < stream.size(); ++i) {
    feed(incremental, stream[i], ((layout >> (i % 8)) & 1) != 0);
    const Answer now = parse(incremental);
    checkAnswer(now, i + 1);
    // Once decided, more bytes change nothing: the header is the same, or it stays invalid.
    if (previous.parse != ProxyParse::kNeedMore) FUZZ_CHECK(sameAnswer(now, previous));
    previous = now;
  }

  // The same bytes in one chunk give the same answer as the byte-by-byte, many-chunk feed.
  Buffer whole;
  whole.append(stream);
  FUZZ_CHECK(sameAnswer(parse(whole), previous));
  return 0;
}
