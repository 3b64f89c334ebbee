#include "gateway/load_balancer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace evgate::gateway {
namespace {

constexpr uint64_t kSeed = 42;

std::vector<EndpointView> views(const std::vector<uint32_t>& weights) {
  std::vector<EndpointView> endpoints;
  for (uint32_t w : weights) endpoints.push_back({.weight = w});
  return endpoints;
}

std::unique_ptr<LoadBalancer> make(LbPolicy policy, const std::vector<EndpointView>& endpoints,
                                   uint64_t seed = kSeed) {
  std::vector<uint32_t> weights;
  for (const EndpointView& e : endpoints) weights.push_back(e.weight);
  return LoadBalancer::create(policy, weights, seed);
}

// Picks `n` times with no exclusions and the same client hash; counts per endpoint.
std::vector<size_t> countPicks(LoadBalancer& lb, const std::vector<EndpointView>& endpoints,
                               size_t n, uint64_t clientHash = 0) {
  std::vector<size_t> counts(endpoints.size());
  for (size_t i = 0; i < n; ++i) {
    std::optional<size_t> picked = lb.pick(endpoints, clientHash, {});
    EXPECT_TRUE(picked.has_value());
    if (picked) ++counts.at(*picked);
  }
  return counts;
}

reactor::SocketAddress address(const std::string& text) {
  std::optional<reactor::SocketAddress> parsed = reactor::SocketAddress::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed.value_or(reactor::SocketAddress{});
}

// Client hashes of `n` distinct-enough random IPv4 clients, the same on every run.
std::vector<uint64_t> randomClients(size_t n) {
  std::mt19937 gen(7);
  std::vector<uint64_t> hashes;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t ip = gen();
    const std::string text = std::to_string(ip >> 24) + "." + std::to_string((ip >> 16) & 255) +
                             "." + std::to_string((ip >> 8) & 255) + "." +
                             std::to_string(ip & 255) + ":" + std::to_string(1024 + i % 60000);
    hashes.push_back(hashClientAddress(address(text)));
  }
  return hashes;
}

// Behaviour every policy shares: one suite run against each.
class EveryPolicyTest : public ::testing::TestWithParam<LbPolicy> {};

std::string policyName(const ::testing::TestParamInfo<LbPolicy>& param) {
  switch (param.param) {
    case LbPolicy::kRoundRobin:
      return "RoundRobin";
    case LbPolicy::kLeastConnections:
      return "LeastConnections";
    case LbPolicy::kRandomTwo:
      return "RandomTwo";
    case LbPolicy::kHashClientIp:
      return "HashClientIp";
  }
  return "Unknown";
}

INSTANTIATE_TEST_SUITE_P(Policies, EveryPolicyTest,
                         ::testing::Values(LbPolicy::kRoundRobin, LbPolicy::kLeastConnections,
                                           LbPolicy::kRandomTwo, LbPolicy::kHashClientIp),
                         policyName);

TEST_P(EveryPolicyTest, NoEndpointsGivesNullopt) {
  auto lb = LoadBalancer::create(GetParam(), {}, kSeed);
  EXPECT_EQ(lb->pick({}, 1, {}), std::nullopt);
}

TEST_P(EveryPolicyTest, NoneAvailableGivesNullopt) {
  std::vector<EndpointView> endpoints = views({1, 2, 3});
  auto lb = make(GetParam(), endpoints);
  for (EndpointView& e : endpoints) e.available = false;
  for (uint64_t client = 0; client < 100; ++client) {
    EXPECT_EQ(lb->pick(endpoints, client, {}), std::nullopt);
  }
}

TEST_P(EveryPolicyTest, SingleEndpointIsAlwaysPicked) {
  const std::vector<EndpointView> endpoints = views({5});
  auto lb = make(GetParam(), endpoints);
  for (uint64_t client = 0; client < 100; ++client) {
    EXPECT_EQ(lb->pick(endpoints, client * 0x9e3779b97f4a7c15ULL, {}), 0u);
  }
  const size_t tried[] = {0};
  EXPECT_EQ(lb->pick(endpoints, 1, tried), std::nullopt);
}

TEST_P(EveryPolicyTest, OnlyTheAvailableEndpointIsPicked) {
  std::vector<EndpointView> endpoints = views({1, 1, 1, 1});
  auto lb = make(GetParam(), endpoints);
  endpoints[0].available = endpoints[1].available = endpoints[3].available = false;
  for (uint64_t client = 0; client < 200; ++client) {
    EXPECT_EQ(lb->pick(endpoints, client * 0x9e3779b97f4a7c15ULL, {}), 2u);
  }
}

TEST_P(EveryPolicyTest, ZeroWeightIsNeverPicked) {
  const std::vector<EndpointView> endpoints = views({1, 0, 1});
  auto lb = make(GetParam(), endpoints);
  for (uint64_t client = 0; client < 500; ++client) {
    EXPECT_NE(lb->pick(endpoints, client * 0x9e3779b97f4a7c15ULL, {}), 1u);
  }
}

// A flow retrying with everything it tried excluded gets a new endpoint each time, visits every
// available endpoint, and then gets nullopt.
TEST_P(EveryPolicyTest, RetriesVisitEveryAvailableEndpointThenStop) {
  std::vector<EndpointView> endpoints = views({1, 2, 3, 4, 5});
  endpoints[3].available = false;
  auto lb = make(GetParam(), endpoints);
  for (uint64_t client = 0; client < 50; ++client) {
    const uint64_t hash = client * 0x9e3779b97f4a7c15ULL;
    std::vector<size_t> tried;
    while (std::optional<size_t> picked = lb->pick(endpoints, hash, tried)) {
      EXPECT_TRUE(endpoints[*picked].available);
      EXPECT_EQ(std::count(tried.begin(), tried.end(), *picked), 0) << "picked twice";
      tried.push_back(*picked);
      ASSERT_LE(tried.size(), 4u);
    }
    EXPECT_EQ(std::set<size_t>(tried.begin(), tried.end()), (std::set<size_t>{0, 1, 2, 4}));
  }
}

TEST_P(EveryPolicyTest, ExcludedEndpointIsNotPickedWhileAnotherIsAvailable) {
  const std::vector<EndpointView> endpoints = views({10, 1});
  auto lb = make(GetParam(), endpoints);
  const size_t tried[] = {0};
  for (uint64_t client = 0; client < 200; ++client) {
    EXPECT_EQ(lb->pick(endpoints, client * 0x9e3779b97f4a7c15ULL, tried), 1u);
  }
}

// The views changed count and weights (a new endpoint set): the balancer rebuilds and still picks
// in range.
TEST_P(EveryPolicyTest, FollowsAChangedEndpointSet) {
  auto lb = make(GetParam(), views({1, 2, 3}));
  const std::vector<EndpointView> bigger = views({1, 1, 1, 1, 1, 1, 1});
  std::set<size_t> seen;
  for (uint64_t client = 0; client < 2000; ++client) {
    std::optional<size_t> picked = lb->pick(bigger, client * 0x9e3779b97f4a7c15ULL, {});
    ASSERT_TRUE(picked.has_value());
    ASSERT_LT(*picked, bigger.size());
    seen.insert(*picked);
  }
  EXPECT_EQ(seen.size(), bigger.size());
  const std::vector<EndpointView> smaller = views({4, 4});
  EXPECT_LT(lb->pick(smaller, 3, {}).value_or(99), 2u);
}

// Weighted round robin.

TEST(RoundRobinTest, WeightsAreHonouredExactlyOverEachCycle) {
  const std::vector<EndpointView> endpoints = views({1, 2, 3});
  auto lb = make(LbPolicy::kRoundRobin, endpoints);
  for (int cycle = 0; cycle < 1000; ++cycle) {
    ASSERT_EQ(countPicks(*lb, endpoints, 6), (std::vector<size_t>{1, 2, 3})) << cycle;
  }
  lb = make(LbPolicy::kRoundRobin, endpoints);
  EXPECT_EQ(countPicks(*lb, endpoints, 6000), (std::vector<size_t>{1000, 2000, 3000}));
}

// nginx's example: weights {5, 1, 1} give a a b a c a a, not a burst of five a's.
TEST(RoundRobinTest, IsSmooth) {
  const std::vector<EndpointView> endpoints = views({5, 1, 1});
  auto lb = make(LbPolicy::kRoundRobin, endpoints);
  std::vector<size_t> sequence;
  for (int i = 0; i < 14; ++i) sequence.push_back(lb->pick(endpoints, 0, {}).value_or(99));
  EXPECT_EQ(sequence, (std::vector<size_t>{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}));
}

TEST(RoundRobinTest, IsDeterministic) {
  const std::vector<EndpointView> endpoints = views({3, 1, 4, 1, 5});
  auto a = make(LbPolicy::kRoundRobin, endpoints, 1);
  auto b = make(LbPolicy::kRoundRobin, endpoints, 2);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(a->pick(endpoints, 0, {}), b->pick(endpoints, 0, {}));
}

// While an endpoint is unavailable the others share its turns by weight; when it returns, the
// rotation resumes and every cycle is exact again.
TEST(RoundRobinTest, SkipsUnavailableWithoutLosingItsPlace) {
  std::vector<EndpointView> endpoints = views({1, 2, 3});
  auto lb = make(LbPolicy::kRoundRobin, endpoints);
  EXPECT_EQ(countPicks(*lb, endpoints, 4).size(), 3u);  // Somewhere in the middle of a cycle.
  endpoints[1].available = false;
  EXPECT_EQ(countPicks(*lb, endpoints, 400), (std::vector<size_t>{100, 0, 300}));
  endpoints[1].available = true;
  // The first cycle back completes the interrupted one; from then on every cycle is exact.
  countPicks(*lb, endpoints, 6);
  for (int cycle = 0; cycle < 100; ++cycle) {
    ASSERT_EQ(countPicks(*lb, endpoints, 6), (std::vector<size_t>{1, 2, 3})) << cycle;
  }
}

// Least connections.

TEST(LeastConnectionsTest, PicksTheLeastLoadedAndFollowsLoadChanges) {
  std::vector<EndpointView> endpoints = views({1, 1, 1});
  auto lb = make(LbPolicy::kLeastConnections, endpoints);
  endpoints[0].activeConnections = 5;
  endpoints[1].activeConnections = 2;
  endpoints[2].activeConnections = 7;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(lb->pick(endpoints, 0, {}), 1u);
  endpoints[1].activeConnections = 9;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(lb->pick(endpoints, 0, {}), 0u);
  endpoints[2].activeConnections = 0;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(lb->pick(endpoints, 0, {}), 2u);
  const size_t tried[] = {2};
  EXPECT_EQ(lb->pick(endpoints, 0, tried), 0u);
}

TEST(LeastConnectionsTest, LoadIsRelativeToWeight) {
  std::vector<EndpointView> endpoints = views({1, 4});
  auto lb = make(LbPolicy::kLeastConnections, endpoints);
  endpoints[0].activeConnections = 1;
  endpoints[1].activeConnections = 3;  // 3/4 < 1/1
  EXPECT_EQ(lb->pick(endpoints, 0, {}), 1u);
  endpoints[1].activeConnections = 5;  // 5/4 > 1/1
  EXPECT_EQ(lb->pick(endpoints, 0, {}), 0u);
}

TEST(LeastConnectionsTest, EqualLoadsAreServedInTurn) {
  const std::vector<EndpointView> endpoints = views({1, 2, 3});
  auto lb = make(LbPolicy::kLeastConnections, endpoints);
  std::vector<size_t> sequence;
  for (int i = 0; i < 6; ++i) sequence.push_back(lb->pick(endpoints, 0, {}).value_or(99));
  EXPECT_EQ(sequence, (std::vector<size_t>{0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(countPicks(*lb, endpoints, 6000), (std::vector<size_t>{2000, 2000, 2000}));
}

// Connections that stay open pile up in proportion to weight.
TEST(LeastConnectionsTest, OpenConnectionsFollowWeights) {
  std::vector<EndpointView> endpoints = views({1, 2, 3});
  auto lb = make(LbPolicy::kLeastConnections, endpoints);
  for (int i = 0; i < 600; ++i)
    ++endpoints.at(lb->pick(endpoints, 0, {}).value()).activeConnections;
  EXPECT_EQ(endpoints[0].activeConnections, 100u);
  EXPECT_EQ(endpoints[1].activeConnections, 200u);
  EXPECT_EQ(endpoints[2].activeConnections, 300u);
}

// Power of two choices.

TEST(RandomTwoTest, EqualLoadsSpreadByWeight) {
  const std::vector<EndpointView> endpoints = views({1, 2, 3});
  auto lb = make(LbPolicy::kRandomTwo, endpoints);
  const std::vector<size_t> counts = countPicks(*lb, endpoints, 6000);
  EXPECT_NEAR(static_cast<double>(counts[0]), 1000, 100);
  EXPECT_NEAR(static_cast<double>(counts[1]), 2000, 150);
  EXPECT_NEAR(static_cast<double>(counts[2]), 3000, 150);
}

// With two endpoints both are always candidates (the draws are distinct), so the less loaded one
// always wins.
TEST(RandomTwoTest, PrefersTheLessLoadedOfTwo) {
  std::vector<EndpointView> endpoints = views({1, 1});
  auto lb = make(LbPolicy::kRandomTwo, endpoints);
  endpoints[0].activeConnections = 10;
  EXPECT_EQ(countPicks(*lb, endpoints, 1000), (std::vector<size_t>{0, 1000}));
  endpoints[1].activeConnections = 11;
  EXPECT_EQ(countPicks(*lb, endpoints, 1000), (std::vector<size_t>{1000, 0}));
}

// Of three, the most loaded never wins and the least loaded wins whenever drawn (2 draws in 3).
TEST(RandomTwoTest, TheMostLoadedOfThreeNeverWins) {
  std::vector<EndpointView> endpoints = views({1, 1, 1});
  endpoints[0].activeConnections = 0;
  endpoints[1].activeConnections = 5;
  endpoints[2].activeConnections = 10;
  auto lb = make(LbPolicy::kRandomTwo, endpoints);
  const std::vector<size_t> counts = countPicks(*lb, endpoints, 3000);
  EXPECT_EQ(counts[2], 0u);
  EXPECT_NEAR(static_cast<double>(counts[0]), 2000, 100);
}

TEST(RandomTwoTest, SameSeedSamePicksOtherSeedOtherPicks) {
  const std::vector<EndpointView> endpoints = views({1, 1, 1, 1, 1, 1, 1, 1});
  auto a = make(LbPolicy::kRandomTwo, endpoints, 1);
  auto b = make(LbPolicy::kRandomTwo, endpoints, 1);
  auto c = make(LbPolicy::kRandomTwo, endpoints, 2);
  size_t differences = 0;
  for (int i = 0; i < 200; ++i) {
    const std::optional<size_t> picked = a->pick(endpoints, 0, {});
    ASSERT_EQ(picked, b->pick(endpoints, 0, {}));
    differences += picked != c->pick(endpoints, 0, {});
  }
  EXPECT_GT(differences, 100u);
}

// Consistent hashing on the client IP (Maglev).

TEST(HashClientIpTest, SameClientSameEndpointInEveryWorker) {
  const std::vector<EndpointView> endpoints = views({1, 2, 3, 4});
  auto worker1 = make(LbPolicy::kHashClientIp, endpoints, 1);
  auto worker2 = make(LbPolicy::kHashClientIp, endpoints, 2);
  for (uint64_t client : randomClients(1000)) {
    const std::optional<size_t> picked = worker1->pick(endpoints, client, {});
    ASSERT_TRUE(picked.has_value());
    EXPECT_EQ(worker1->pick(endpoints, client, {}), picked);
    EXPECT_EQ(worker2->pick(endpoints, client, {}), picked);
  }
}

TEST(HashClientIpTest, ClientsSpreadByWeight) {
  const std::vector<EndpointView> endpoints = views({1, 2, 3});
  auto lb = make(LbPolicy::kHashClientIp, endpoints);
  std::vector<size_t> counts(3);
  const std::vector<uint64_t> clients = randomClients(10000);
  for (uint64_t client : clients) ++counts.at(lb->pick(endpoints, client, {}).value());
  for (size_t i = 0; i < 3; ++i) {
    const double expected = 10000.0 * endpoints[i].weight / 6;
    EXPECT_NEAR(static_cast<double>(counts[i]), expected, expected * 0.15) << i;
  }
}

// Marking one of five endpoints unavailable moves only its own clients, spread over the other
// four; when it comes back, everyone is where they started.
TEST(HashClientIpTest, UnavailableEndpointMovesOnlyItsClients) {
  std::vector<EndpointView> endpoints = views({1, 1, 1, 1, 1});
  auto lb = make(LbPolicy::kHashClientIp, endpoints);
  const std::vector<uint64_t> clients = randomClients(10000);
  std::vector<size_t> before;
  for (uint64_t client : clients) before.push_back(lb->pick(endpoints, client, {}).value());

  endpoints[2].available = false;
  std::vector<size_t> movedTo(5);
  size_t moved = 0;
  for (size_t c = 0; c < clients.size(); ++c) {
    const size_t after = lb->pick(endpoints, clients[c], {}).value();
    ASSERT_NE(after, 2u);
    if (before[c] != 2) {
      ASSERT_EQ(after, before[c]) << "client " << c << " of a healthy endpoint moved";
    } else {
      ++moved;
      ++movedTo[after];
    }
  }
  EXPECT_NEAR(static_cast<double>(moved), 2000, 300);
  for (size_t i : {0, 1, 3, 4}) {
    EXPECT_NEAR(static_cast<double>(movedTo[i]), moved / 4.0, moved / 4.0 * 0.15) << i;
  }

  endpoints[2].available = true;
  for (size_t c = 0; c < clients.size(); ++c) {
    ASSERT_EQ(lb->pick(endpoints, clients[c], {}), before[c]);
  }
}

// With almost all the weight unavailable the rehashed probes miss, and the table walk still
// finds the one light endpoint left.
TEST(HashClientIpTest, FindsTheLastLightEndpoint) {
  std::vector<EndpointView> endpoints = views(std::vector<uint32_t>(50, 1000));
  endpoints.push_back({.weight = 1});
  auto lb = make(LbPolicy::kHashClientIp, endpoints);
  for (size_t i = 0; i < 50; ++i) endpoints[i].available = false;
  for (uint64_t client : randomClients(200)) EXPECT_EQ(lb->pick(endpoints, client, {}), 50u);
}

// A retry moves the client off the endpoint it tried, and only that client.
TEST(HashClientIpTest, ExclusionMovesTheRetryingClientOnly) {
  const std::vector<EndpointView> endpoints = views({1, 1, 1});
  auto lb = make(LbPolicy::kHashClientIp, endpoints);
  for (uint64_t client : randomClients(300)) {
    const size_t first = lb->pick(endpoints, client, {}).value();
    const size_t tried[] = {first};
    const size_t retry = lb->pick(endpoints, client, tried).value();
    EXPECT_NE(retry, first);
    EXPECT_EQ(lb->pick(endpoints, client, tried), retry);  // Retries are deterministic too.
    EXPECT_EQ(lb->pick(endpoints, client, {}), first);
  }
}

// hashClientAddress.

TEST(HashClientAddressTest, IgnoresThePort) {
  EXPECT_EQ(hashClientAddress(address("10.1.2.3:1")), hashClientAddress(address("10.1.2.3:65535")));
  EXPECT_EQ(hashClientAddress(address("[2001:db8::7]:80")),
            hashClientAddress(address("[2001:db8::7]:443")));
}

TEST(HashClientAddressTest, DistinguishesAddressesAndFamilies) {
  const uint64_t v4 = hashClientAddress(address("1.2.3.4:80"));
  EXPECT_NE(v4, hashClientAddress(address("1.2.3.5:80")));
  EXPECT_NE(v4, hashClientAddress(address("4.3.2.1:80")));
  // The same four bytes as an IPv6 address (IPv4-compatible form) are another client.
  EXPECT_NE(v4, hashClientAddress(address("[::102:304]:80")));
  EXPECT_NE(hashClientAddress(address("0.0.0.1:80")), hashClientAddress(address("[::1]:80")));
  EXPECT_NE(hashClientAddress(address("[2001:db8::1]:80")),
            hashClientAddress(address("[2001:db8::2]:80")));
}

TEST(HashClientAddressTest, Ipv4MappedIpv6IsTheIpv4Client) {
  EXPECT_EQ(hashClientAddress(address("[::ffff:1.2.3.4]:80")),
            hashClientAddress(address("1.2.3.4:9")));
}

// The value is part of the contract (every worker and process must agree): pin it.
TEST(HashClientAddressTest, IsStable) {
  EXPECT_EQ(hashClientAddress(address("192.0.2.1:80")), 11177385772967508045u);
  EXPECT_EQ(hashClientAddress(address("[2001:db8::1]:80")), 8257154957398524344u);
}

TEST(HashClientAddressTest, SpreadsSequentialAddresses) {
  std::set<uint64_t> buckets;
  for (int i = 0; i < 256; ++i) {
    buckets.insert(hashClientAddress(address("10.0.0." + std::to_string(i) + ":1")) % 16);
  }
  EXPECT_EQ(buckets.size(), 16u);
}

}  // namespace
}  // namespace evgate::gateway
