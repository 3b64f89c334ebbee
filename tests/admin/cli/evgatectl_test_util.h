// The harness of the evgatectl tests: a FakeAdmin server in the test process and the real
// evgatectl binary run against it as a child process.

#pragma once

#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "tests/admin/cli/fake_admin.h"
#include "tests/integration/process.h"

namespace evgate::test {

// Generous for a command that normally takes milliseconds (a sanitizer build is slower).
constexpr auto kCommandLimit = std::chrono::seconds(20);

// How one evgatectl run ended.
struct CtlResult {
  int code = -1;  // the exit code; -1 if it did not exit normally in time
  std::string out;
  std::string err;
};

inline std::ostream& operator<<(std::ostream& os, const CtlResult& r) {
  return os << "exit " << r.code << "\n--- stdout:\n" << r.out << "--- stderr:\n" << r.err;
}

// Runs evgatectl with `args`. EVGATE_ADDRESS and EVGATE_TOKEN_FILE are cleared (empty counts as
// unset) unless `env` sets them.
inline CtlResult runCtl(std::vector<std::string> args, std::vector<std::string> env = {}) {
  args.insert(args.begin(), EVGATECTL_BINARY);
  env.insert(env.begin(), {"EVGATE_ADDRESS=", "EVGATE_TOKEN_FILE="});
  // Later entries win in Process's environment; keep the test's own after the defaults by
  // dropping a default that the test overrides.
  std::vector<std::string> merged;
  for (const std::string& entry : env) {
    const std::string name = entry.substr(0, entry.find('='));
    std::erase_if(merged, [&](const std::string& e) { return e.substr(0, e.find('=')) == name; });
    merged.push_back(entry);
  }
  Process process(args, merged);
  CtlResult result;
  if (!process.started()) {
    result.err = process.error();
    return result;
  }
  const auto exit = process.wait(kCommandLimit);
  result.out = process.out();
  result.err = process.err();
  if (exit && exit->exited()) result.code = exit->code();
  return result;
}

// runCtl with the arguments of a command line split at spaces ("listener get web").
inline CtlResult runCtl(const std::string& line, std::vector<std::string> env = {}) {
  std::vector<std::string> args;
  std::istringstream words(line);
  for (std::string word; words >> word;) args.push_back(word);
  return runCtl(std::move(args), std::move(env));
}

// A message from protobuf text format; fails the test if it does not parse.
template <typename Message>
Message textProto(const std::string& text) {
  Message message;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &message)) << text;
  return message;
}

// `actual` equals the message written in text format.
template <typename Message>
::testing::AssertionResult equalsText(const Message& actual, const std::string& expected) {
  const Message want = textProto<Message>(expected);
  if (google::protobuf::util::MessageDifferencer::Equals(actual, want)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "got:\n"
                                       << actual.DebugString() << "want:\n"
                                       << want.DebugString();
}

// A FakeAdmin per test and evgatectl pointed at it.
class EvgatectlTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fake_.start()); }

  // evgatectl --address FAKE args...
  CtlResult ctl(std::vector<std::string> args, std::vector<std::string> env = {}) {
    args.insert(args.begin(), {"--address", fake_.address()});
    return runCtl(std::move(args), std::move(env));
  }

  CtlResult ctl(const std::string& line, std::vector<std::string> env = {}) {
    std::vector<std::string> args;
    std::istringstream words(line);
    for (std::string word; words >> word;) args.push_back(word);
    return ctl(std::move(args), std::move(env));
  }

  FakeAdmin fake_;
};

}  // namespace evgate::test
