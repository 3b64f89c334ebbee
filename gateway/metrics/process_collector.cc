#include "gateway/metrics/process_collector.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "gateway/metrics/family_builder.h"

namespace evgate::gateway::metrics {
namespace {

// The fields of /proc/self/stat this collector needs (proc(5)).
struct ProcStat {
  double cpuSeconds = 0;     // utime + stime
  double startTicks = 0;     // starttime, clock ticks after boot
  double virtualBytes = 0;   // vsize
  double residentPages = 0;  // rss
};

std::optional<ProcStat> readProcStat() {
  std::ifstream file("/proc/self/stat");
  std::string line;
  if (!std::getline(file, line)) return std::nullopt;
  // The command name (field 2) is in parentheses and may hold spaces: fields start after the
  // last ')'. The first field after it is field 3 (state).
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 1));
  std::vector<std::string> values;
  for (std::string value; fields >> value;) values.push_back(value);
  const auto field = [&values](size_t number) { return std::stod(values.at(number - 3)); };
  try {
    const auto ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
    return ProcStat{(field(14) + field(15)) / ticks, field(22), field(23), field(24)};
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<double> bootTimeSeconds() {
  std::ifstream file("/proc/stat");
  for (std::string key; file >> key;) {
    if (key == "btime") {
      double value = 0;
      if (file >> value) return value;
      return std::nullopt;
    }
    file.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return std::nullopt;
}

std::optional<double> openFds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return std::nullopt;
  double count = 0;
  // readdir on a stream no other thread uses is thread-safe in glibc; readdir_r is deprecated.
  // cppcheck-suppress readdirCalled
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count - 1;  // the directory stream's own fd
}

}  // namespace

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  std::vector<prometheus::MetricFamily> out;
  gaugeFamily("evgate_build_info", "Always 1; version is the running evgate's version.")
      .add({{"version", version_}}, 1)
      .moveTo(out);
  if (const std::optional<ProcStat> stat = readProcStat()) {
    counterFamily("process_cpu_seconds_total", "User and system CPU time the process has used.")
        .add({}, stat->cpuSeconds)
        .moveTo(out);
    gaugeFamily("process_resident_memory_bytes", "Resident memory size in bytes.")
        .add({}, stat->residentPages * static_cast<double>(::sysconf(_SC_PAGESIZE)))
        .moveTo(out);
    gaugeFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.")
        .add({}, stat->virtualBytes)
        .moveTo(out);
    if (const std::optional<double> boot = bootTimeSeconds()) {
      gaugeFamily("process_start_time_seconds", "Start time of the process since the Unix epoch.")
          .add({}, *boot + stat->startTicks / static_cast<double>(::sysconf(_SC_CLK_TCK)))
          .moveTo(out);
    }
  }
  if (const std::optional<double> fds = openFds()) {
    gaugeFamily("process_open_fds", "Open file descriptors.").add({}, *fds).moveTo(out);
  }
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    gaugeFamily("process_max_fds", "The file-descriptor limit (soft RLIMIT_NOFILE).")
        .add({}, static_cast<double>(limit.rlim_cur))
        .moveTo(out);
  }
  return out;
}

}  // namespace evgate::gateway::metrics
