#pragma once

// Whether this build runs under AddressSanitizer or ThreadSanitizer (GCC defines
// __SANITIZE_*__, clang answers __has_feature). Tests scale sizes and counts down with it:
// sanitizers make every byte and every connection several times dearer.

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

}  // namespace evgate::test
