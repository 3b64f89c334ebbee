#pragma once

// `promtool check metrics` on an exposition text: Prometheus's own linter (names, suffixes, HELP,
// TYPE, histogram shape) run on what a test scraped.
//
//   PromtoolVerdict verdict = promtoolCheckMetrics(PROMTOOL_BINARY, page.body);
//   EXPECT_TRUE(verdict.passed()) << verdict.describe();
//
// promtool reads the text on stdin: it is written to a temporary file and redirected by /bin/sh
// (Process gives children /dev/null as stdin). Exit status: 0 clean, 1 unparsable, 3 lint
// problems (printed on stderr, one per line).
//
// Thread rule: stateless; safe from any thread.

#include <chrono>
#include <string>

#include "tests/integration/net_util.h"
#include "tests/integration/process.h"

namespace evgate::test {

struct PromtoolVerdict {
  std::string error;   // could not run promtool at all
  int code = -1;       // its exit status
  std::string output;  // stdout and stderr

  bool passed() const { return error.empty() && code == 0; }
  std::string describe() const {
    if (!error.empty()) return "promtool did not run: " + error;
    return "promtool check metrics exited " + std::to_string(code) + ":\n" + output;
  }
};

inline PromtoolVerdict promtoolCheckMetrics(const std::string& promtool, const std::string& text,
                                            Clock::duration limit = std::chrono::seconds(10)) {
  PromtoolVerdict verdict;
  const TempDir dir("evgate-promtool");
  const std::string input = dir.file("metrics.txt");
  writeFile(input, text);
  Process process({"/bin/sh", "-c", "exec \"$0\" check metrics < \"$1\"", promtool, input});
  if (!process.started()) {
    verdict.error = process.error();
    return verdict;
  }
  const auto exit = process.wait(limit);
  verdict.output = process.out() + process.err();
  if (!exit) {
    verdict.error = "still running after the time limit";
    return verdict;
  }
  if (!exit->exited()) {
    verdict.error = exit->describe();
    return verdict;
  }
  verdict.code = exit->code();
  return verdict;
}

}  // namespace evgate::test
