#pragma once

// The fuzz targets' one assertion. A broken invariant prints what was expected and aborts,
// which libFuzzer reports as a crash and saves the input for. Unlike assert(), it stays on
// whatever the build type.

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(condition)                                                                \
  do {                                                                                       \
    if (!(condition)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (false)
