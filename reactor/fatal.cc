#include "reactor/fatal.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace evgate::reactor {

void fatalSyscall(const char* what) {
  std::fprintf(stderr, "evgate: fatal: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

}  // namespace evgate::reactor
