#pragma once

// What Linux's /proc says about another process (a daemon under test): its resident memory, the
// CPU time it has used and the fds it holds. Every reader returns 0 or empty when the process
// is gone.
//
// Thread rule: stateless; safe from any thread.

#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace evgate::test {

// VmRSS of `pid` in bytes.
inline size_t residentBytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

// User plus system CPU time `pid` has used, in seconds (the kernel counts in clock ticks, 10 ms
// here).
inline double cpuSeconds(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  // Fields 3.. from here: state is field 3; utime and stime are fields 14 and 15.
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index == 14) utime = std::stoull(field);
    if (index == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// The fd numbers `pid` holds, ascending.
inline std::vector<int> openFds(pid_t pid) {
  std::vector<int> fds;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error)) {
    fds.push_back(std::stoi(entry.path().filename().string()));
  }
  std::sort(fds.begin(), fds.end());
  return fds;
}

// How many fds `pid` holds of each kind: "socket", "pipe", "anon_inode:[eventfd]", or for a file
// its path ("/dev/null").
inline std::map<std::string, size_t> openFdKinds(pid_t pid) {
  std::map<std::string, size_t> kinds;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error)) {
    std::error_code linkError;
    std::string target = std::filesystem::read_symlink(entry.path(), linkError).string();
    if (linkError) continue;  // closed meanwhile
    // "socket:[123]", "pipe:[456]": the inode tells one from another, not the kind.
    if (const size_t colon = target.find(":["); colon != std::string::npos) {
      target.resize(colon);
    }
    ++kinds[target];
  }
  return kinds;
}

}  // namespace evgate::test
