#pragma once

// What the tests under load share: whether this build runs under a sanitizer (which makes every
// byte, connection and call several times dearer, so those builds use smaller sizes), and how a
// measured figure is printed for a reader of the test log and of docs/reliability.md:
//
//   const size_t kClients = kSanitized ? 8 : 32;
//   report("p99 round trip " + std::to_string(p99) + " ms");   // "[ figure   ] p99 ..."
//
// Thread rule: stateless; safe from any thread (a report is one printf).

#include <cstdio>
#include <string>

namespace evgate::test {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

// Prints a measured figure where a reader of the test log (and docs/reliability.md) finds it.
inline void report(const std::string& figure) {
  std::printf("[ figure   ] %s\n", figure.c_str());
  std::fflush(stdout);
}

}  // namespace evgate::test
