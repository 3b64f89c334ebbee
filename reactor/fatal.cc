#include "reactor/fatal.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace evgate::reactor {

void fatalSyscall(const char* what) {
  const int err = errno;
  (void)std::fprintf(stderr, "evgate: fatal: %s: %s\n", what, errnoText(err).c_str());
  std::abort();
}

std::string errnoText(int err) {
  char buffer[256];
  // The GNU strerror_r (g++ defines _GNU_SOURCE): it returns the text, in `buffer` or static.
  return ::strerror_r(err, buffer, sizeof buffer);
}

}  // namespace evgate::reactor
