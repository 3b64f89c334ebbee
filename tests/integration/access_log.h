#pragma once

// The daemon's access log as tests read it: one JSON line per ended flow (gateway/flow.cc,
// accessLogLine), parsed for the fields tests check.
//
//   for (const AccessRecord& record : accessRecords(daemon.out())) ...
//
// A line that is not an access record is a test failure (ADD_FAILURE), not skipped.
//
// Thread rule: stateless; safe from any thread.

#include <gtest/gtest.h>

#include <cstdint>
#include <regex>
#include <string>
#include <vector>

namespace evgate::test {

struct AccessRecord {
  std::string client;    // "127.0.0.1:PORT"
  std::string upstream;  // "null" when no connect succeeded
  uint64_t bytesIn = 0;
  uint64_t bytesOut = 0;
  std::string reason;
};

inline std::vector<AccessRecord> accessRecords(const std::string& out) {
  static const std::regex kLine(
      R"re(^\{"id":\d+,.*"client":"([^"]*)","upstream":(null|"[^"]*"),"bytes_in":(\d+),"bytes_out":(\d+),"reason":"([a-z_]+)"\}$)re");
  std::vector<AccessRecord> records;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    const std::string line = out.substr(start, end - start);
    start = end + 1;
    std::smatch match;
    if (!std::regex_match(line, match, kLine)) {
      ADD_FAILURE() << "not an access log line: " << line;
      continue;
    }
    std::string upstream = match[2].str();
    if (upstream != "null") upstream = upstream.substr(1, upstream.size() - 2);
    records.push_back(AccessRecord{match[1].str(), upstream, std::stoull(match[3].str()),
                                   std::stoull(match[4].str()), match[5].str()});
  }
  return records;
}

}  // namespace evgate::test
