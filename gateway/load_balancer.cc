#include "gateway/load_balancer.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

namespace evgate::gateway {
namespace {

constexpr size_t kNone = std::numeric_limits<size_t>::max();

// The splitmix64 finalizer (Steele, Lea, Flood, "Fast splittable pseudorandom number generators",
// OOPSLA 2014): a bijective 64-bit mix where every input bit affects every output bit.
uint64_t mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// splitmix64 as a generator: tiny state, good enough for picking among a few endpoints, and the
// same sequence on every platform (unlike std::uniform_int_distribution).
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}

  uint64_t next() { return mix64(state_ += 0x9e3779b97f4a7c15ULL); }
  // Uniform in [0, bound). The modulo bias is below bound / 2^64: negligible for endpoint weights.
  // `bound` > 0: callers draw among eligible endpoints, whose weights are all > 0 (the analyzers
  // cannot see that an eligible endpoint has a weight).
  // NOLINTNEXTLINE(clang-analyzer-core.DivideZero)
  uint64_t below(uint64_t bound) { return next() % bound; }  // cppcheck-suppress zerodiv

 private:
  uint64_t state_;
};

// Whether `a` carries less load per weight than `b`: a.active / a.weight < b.active / b.weight,
// cross-multiplied in 64 bits so that it is exact. Both weights are non-zero.
bool lessLoaded(const EndpointView& a, const EndpointView& b) {
  return uint64_t{a.activeConnections} * b.weight < uint64_t{b.activeConnections} * a.weight;
}

// The endpoint set a balancer is built for (count and weights), and the eligibility scratch that
// each pick fills, so that picks do not allocate.
class EndpointSet {
 public:
  explicit EndpointSet(std::span<const uint32_t> weights)
      : weights_(weights.begin(), weights.end()), eligible_(weights.size(), 0) {}

  // Whether `endpoints` is the set this was built for.
  bool matches(std::span<const EndpointView> endpoints) const {
    return endpoints.size() == weights_.size() &&
           std::equal(endpoints.begin(), endpoints.end(), weights_.begin(),
                      [](const EndpointView& e, uint32_t w) { return e.weight == w; });
  }

  // Adopts the count and weights of `endpoints` (allocates).
  void assign(std::span<const EndpointView> endpoints) {
    weights_.resize(endpoints.size());
    std::transform(endpoints.begin(), endpoints.end(), weights_.begin(),
                   [](const EndpointView& e) { return e.weight; });
    eligible_.assign(endpoints.size(), 0);
  }

  // Marks the endpoints that are available, weighted and not excluded; returns how many.
  size_t markEligible(std::span<const EndpointView> endpoints, std::span<const size_t> exclude) {
    assert(matches(endpoints));
    size_t count = 0;
    for (size_t i = 0; i < endpoints.size(); ++i) {
      eligible_[i] = endpoints[i].available && endpoints[i].weight > 0;
    }
    for (size_t index : exclude) {
      assert(index < eligible_.size() && "excluded index out of range");
      if (index < eligible_.size()) eligible_[index] = 0;
    }
    for (uint8_t e : eligible_) count += e;
    return count;
  }

  size_t size() const { return weights_.size(); }
  std::span<const uint32_t> weights() const { return weights_; }
  bool eligible(size_t i) const { return eligible_[i] != 0; }

 private:
  std::vector<uint32_t> weights_;
  std::vector<uint8_t> eligible_;
};

// Smooth weighted round robin, as in nginx (ngx_http_upstream_get_peer, 2012): each pick adds
// every eligible endpoint's weight to its `current`, takes the highest `current` (first index on
// a tie) and subtracts the eligible total from it. Over any run of sum(weights) picks with a fixed
// eligible set, each endpoint is picked exactly `weight` times, interleaved rather than in bursts.
// An ineligible endpoint's `current` is left alone, so it resumes where it was.
class RoundRobin final : public LoadBalancer {
 public:
  explicit RoundRobin(std::span<const uint32_t> weights) : set_(weights), current_(set_.size()) {}

  std::optional<size_t> pick(std::span<const EndpointView> endpoints, uint64_t /*clientHash*/,
                             std::span<const size_t> exclude) override {
    if (!set_.matches(endpoints)) {
      set_.assign(endpoints);
      current_.assign(endpoints.size(), 0);
    }
    if (set_.markEligible(endpoints, exclude) == 0) return std::nullopt;
    int64_t total = 0;
    size_t best = kNone;
    for (size_t i = 0; i < endpoints.size(); ++i) {
      if (!set_.eligible(i)) continue;
      current_[i] += endpoints[i].weight;
      total += endpoints[i].weight;
      if (best == kNone || current_[i] > current_[best]) best = i;
    }
    current_[best] -= total;
    return best;
  }

 private:
  EndpointSet set_;
  std::vector<int64_t> current_;
};

// Fewest active connections per weight. Ties go to the first tied endpoint at or after a cursor
// that moves past each pick, so equal loads are served in turn.
class LeastConnections final : public LoadBalancer {
 public:
  explicit LeastConnections(std::span<const uint32_t> weights) : set_(weights) {}

  std::optional<size_t> pick(std::span<const EndpointView> endpoints, uint64_t /*clientHash*/,
                             std::span<const size_t> exclude) override {
    if (!set_.matches(endpoints)) {
      set_.assign(endpoints);
      cursor_ = 0;
    }
    if (set_.markEligible(endpoints, exclude) == 0) return std::nullopt;
    const size_t n = endpoints.size();
    size_t best = kNone;
    for (size_t k = 0, i = cursor_; k < n; ++k, i = i + 1 == n ? 0 : i + 1) {
      if (!set_.eligible(i)) continue;
      if (best == kNone || lessLoaded(endpoints[i], endpoints[best])) best = i;
    }
    cursor_ = best + 1 == n ? 0 : best + 1;
    return best;
  }

 private:
  EndpointSet set_;
  size_t cursor_ = 0;
};

// Power of two choices (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing",
// 2001): two distinct eligible endpoints drawn with probability proportional to weight, and the
// one with fewer active connections per weight wins; on a tie the first draw wins, so that equal
// loads give a weight-proportional spread.
class RandomTwo final : public LoadBalancer {
 public:
  RandomTwo(std::span<const uint32_t> weights, uint64_t seed) : set_(weights), random_(seed) {}

  std::optional<size_t> pick(std::span<const EndpointView> endpoints, uint64_t /*clientHash*/,
                             std::span<const size_t> exclude) override {
    if (!set_.matches(endpoints)) set_.assign(endpoints);
    const size_t count = set_.markEligible(endpoints, exclude);
    if (count == 0) return std::nullopt;
    uint64_t total = 0;
    for (size_t i = 0; i < endpoints.size(); ++i) {
      if (set_.eligible(i)) total += endpoints[i].weight;
    }
    const size_t first = draw(endpoints, total, kNone);
    if (count == 1) return first;
    const size_t second = draw(endpoints, total - endpoints[first].weight, first);
    return lessLoaded(endpoints[second], endpoints[first]) ? second : first;
  }

 private:
  // An eligible endpoint other than `skip`, with probability weight / `total`, where `total` is
  // the sum of the weights of the eligible endpoints other than `skip`.
  size_t draw(std::span<const EndpointView> endpoints, uint64_t total, size_t skip) {
    uint64_t point = random_.below(total);
    size_t i = 0;
    for (;; ++i) {
      if (i == skip || !set_.eligible(i)) continue;
      if (point < endpoints[i].weight) break;
      point -= endpoints[i].weight;
    }
    return i;
  }

  EndpointSet set_;
  Random random_;
};

// The smallest prime >= n (trial division: table sizes are far below 2^32).
size_t nextPrime(size_t n) {
  for (;; ++n) {
    bool prime = n >= 2;
    for (size_t d = 2; prime && d * d <= n; ++d) prime = n % d != 0;
    if (prime) return n;
  }
}

// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, section 3.4), weighted: a lookup table of a prime number of slots, each
// owning endpoint, filled once per endpoint set from per-endpoint permutations derived from the
// endpoint's index. A client goes to table[clientHash % size]. Availability changes do not touch
// the table: when that slot's endpoint is ineligible, the client's hash is rehashed to probe other
// slots, deterministically. So clients of an eligible endpoint never move, and only the clients of
// an ineligible one are spread over the others, in proportion to weight.
class MaglevHash final : public LoadBalancer {
 public:
  // Slots per endpoint: the Maglev paper keeps the table at least 100 times the endpoint count so
  // that shares stay within about 1% of the weights; 65537 (Envoy's default) is the floor.
  static constexpr size_t kSlotsPerEndpoint = 100;
  static constexpr size_t kMinTableSize = 65537;
  // Rehashed probes before falling back to walking the table; with a fraction f of the weight
  // eligible, the walk is needed for a share (1 - f)^32 of the picks (3% when f = 10%).
  static constexpr uint64_t kMaxRehashes = 32;

  explicit MaglevHash(std::span<const uint32_t> weights) : set_(weights) { build(); }

  std::optional<size_t> pick(std::span<const EndpointView> endpoints, uint64_t clientHash,
                             std::span<const size_t> exclude) override {
    if (!set_.matches(endpoints)) {
      set_.assign(endpoints);
      build();
    }
    if (set_.markEligible(endpoints, exclude) == 0) return std::nullopt;
    // Probe the client's slot, then slots picked by rehashing: each probe lands on an endpoint
    // with probability proportional to its weight, so the clients of an ineligible endpoint are
    // spread over the others by weight. (The next slot in the table would not do: Maglev's
    // permutations make a slot's owner predict its neighbour's.)
    size_t slot = clientHash % table_.size();
    for (uint64_t probe = 1; probe <= kMaxRehashes; ++probe) {
      if (set_.eligible(table_[slot])) return table_[slot];
      slot = mix64(clientHash + probe * 0x9e3779b97f4a7c15ULL) % table_.size();
    }
    // Few eligible endpoints: walk the table from there. Every endpoint with a weight owns at
    // least one slot, so the walk finds an eligible one.
    for (size_t k = 0; k < table_.size(); ++k) {
      if (set_.eligible(table_[slot])) return table_[slot];
      slot = slot + 1 == table_.size() ? 0 : slot + 1;
    }
    assert(false && "an eligible endpoint owns no slot");
    return std::nullopt;
  }

 private:
  static constexpr uint32_t kEmpty = std::numeric_limits<uint32_t>::max();

  // Maglev's population loop with weights: the heaviest endpoint claims one slot per round and an
  // endpoint of weight w earns w/max of a slot per round as credit. Every credit starts full, so
  // every weighted endpoint claims a slot in the first round, however light it is.
  void build() {
    const std::span<const uint32_t> weights = set_.weights();
    const size_t n = weights.size();
    const uint32_t maxWeight = n == 0 ? 0 : *std::max_element(weights.begin(), weights.end());
    table_.assign(nextPrime(std::max(kMinTableSize, kSlotsPerEndpoint * n)), kEmpty);
    if (maxWeight == 0) return;  // No endpoint can be eligible: pick() never reads the table.
    const uint64_t size = table_.size();
    std::vector<uint64_t> position(n);
    std::vector<uint64_t> skip(n);
    std::vector<uint64_t> credit(n, maxWeight);
    for (size_t i = 0; i < n; ++i) {
      // offset and skip of the paper, from two independent hashes of the endpoint's identity.
      position[i] = mix64(i ^ 0x6d61676c65766f66ULL) % size;
      skip[i] = mix64(i ^ 0x736b69702d736b69ULL) % (size - 1) + 1;
    }
    for (size_t filled = 0; filled < size;) {
      for (size_t i = 0; i < n && filled < size; ++i) {
        if (weights[i] == 0) continue;
        credit[i] += weights[i];
        if (credit[i] < maxWeight) continue;
        credit[i] -= maxWeight;
        // The size is prime and 0 < skip < size, so position walks every slot: this terminates.
        while (table_[position[i]] != kEmpty) position[i] = (position[i] + skip[i]) % size;
        table_[position[i]] = static_cast<uint32_t>(i);
        ++filled;
      }
    }
  }

  EndpointSet set_;
  std::vector<uint32_t> table_;
};

// Appends `bytes` to a running hash, eight at a time in a fixed (little-endian) order, so that the
// result does not depend on the host.
uint64_t hashBytes(uint64_t h, const uint8_t* bytes, size_t length) {
  for (size_t i = 0; i < length; i += 8) {
    uint64_t chunk = 0;
    for (size_t j = 0; j < 8 && i + j < length; ++j) chunk |= uint64_t{bytes[i + j]} << (8 * j);
    h = mix64(h ^ chunk);
  }
  return h;
}

}  // namespace

std::unique_ptr<LoadBalancer> LoadBalancer::create(LbPolicy policy,
                                                   std::span<const uint32_t> weights,
                                                   uint64_t seed) {
  switch (policy) {
    case LbPolicy::kRoundRobin:
      return std::make_unique<RoundRobin>(weights);
    case LbPolicy::kLeastConnections:
      return std::make_unique<LeastConnections>(weights);
    case LbPolicy::kRandomTwo:
      return std::make_unique<RandomTwo>(weights, seed);
    case LbPolicy::kHashClientIp:
      return std::make_unique<MaglevHash>(weights);
  }
  assert(false && "corrupt LbPolicy");
  std::abort();
}

uint64_t hashClientAddress(const reactor::SocketAddress& client) {
  // The fixed key: the family tag is mixed in first, so that IPv4 and IPv6 never collide by
  // construction of the input (0.0.0.1 and ::1 hash different tags).
  constexpr uint64_t kKey = 0x65766761746521ULL;
  if (client.family() == AF_INET) {
    sockaddr_in v4{};
    std::memcpy(&v4, client.data(), sizeof v4);
    return hashBytes(mix64(kKey ^ 4), reinterpret_cast<const uint8_t*>(&v4.sin_addr), 4);
  }
  if (client.family() == AF_INET6) {
    sockaddr_in6 v6{};
    std::memcpy(&v6, client.data(), sizeof v6);
    const auto* bytes = reinterpret_cast<const uint8_t*>(&v6.sin6_addr);
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: same client, same hash.
    if (IN6_IS_ADDR_V4MAPPED(&v6.sin6_addr)) return hashBytes(mix64(kKey ^ 4), bytes + 12, 4);
    return hashBytes(mix64(kKey ^ 6), bytes, 16);
  }
  return mix64(kKey ^ static_cast<uint64_t>(client.family()));
}

}  // namespace evgate::gateway
