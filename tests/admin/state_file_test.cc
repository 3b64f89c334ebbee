#include "admin/state_file.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/admin/test_certs.h"

namespace evgate::admin {
namespace {

using testing::readTextFile;
using testing::TempDir;
using testing::writeTextFile;

// Every entry of `dir` by name: a failed or finished write must leave nothing but its target.
std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(StateFileTest, WriteThenReadRoundTrips) {
  const TempDir dir;
  const std::string path = dir.file("state.yaml");
  const std::string contents = std::string("listeners: []\n") + '\0' + "binary\xff tail";
  EXPECT_EQ(writeFileDurably(path, contents), std::nullopt);
  std::string read = "stale";
  EXPECT_EQ(readWholeFile(path, read), std::nullopt);
  EXPECT_EQ(read, contents);
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"state.yaml"});
}

TEST(StateFileTest, NewFileHasMode0600) {
  const TempDir dir;
  const std::string path = dir.file("state.yaml");
  ASSERT_EQ(writeFileDurably(path, "x"), std::nullopt);
  struct stat info {};
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 07777, 0600u);
}

TEST(StateFileTest, OverwriteReplacesTheWholeFile) {
  const TempDir dir;
  const std::string path = dir.file("state.yaml");
  ASSERT_EQ(writeFileDurably(path, std::string(10000, 'a')), std::nullopt);
  ASSERT_EQ(writeFileDurably(path, "short"), std::nullopt);
  EXPECT_EQ(readTextFile(path), "short");
  ASSERT_EQ(writeFileDurably(path, ""), std::nullopt);
  std::string read = "stale";
  EXPECT_EQ(readWholeFile(path, read), std::nullopt);
  EXPECT_EQ(read, "");
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"state.yaml"});
}

TEST(StateFileTest, RelativePathWritesInTheCurrentDirectory) {
  const TempDir dir;
  const std::filesystem::path previous = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  const std::optional<std::string> error = writeFileDurably("state.yaml", "relative");
  std::filesystem::current_path(previous);
  EXPECT_EQ(error, std::nullopt);
  EXPECT_EQ(readTextFile(dir.file("state.yaml")), "relative");
}

TEST(StateFileTest, MissingDirectoryFailsCleanly) {
  const TempDir dir;
  const std::string path = dir.file("no-such-dir/state.yaml");
  const std::optional<std::string> error = writeFileDurably(path, "x");
  ASSERT_TRUE(error);
  EXPECT_EQ(*error, "cannot write " + path + ": create a temporary file in " +
                        dir.file("no-such-dir") + ": No such file or directory");
  EXPECT_TRUE(entries(dir.path()).empty());
}

TEST(StateFileTest, DirectoryThatIsAFileFailsAndLeavesItAlone) {
  const TempDir dir;
  const std::string notADir = dir.file("plain");
  ASSERT_TRUE(writeTextFile(notADir, "old"));
  const std::optional<std::string> error = writeFileDurably(notADir + "/state.yaml", "x");
  ASSERT_TRUE(error);
  EXPECT_NE(error->find("create a temporary file in " + notADir + ": Not a directory"),
            std::string::npos)
      << *error;
  EXPECT_EQ(readTextFile(notADir), "old");
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"plain"});
}

TEST(StateFileTest, FailureBeforeTheRenameKeepsTheOldFile) {
  const TempDir dir;
  // A name that fits NAME_MAX (255) while the temporary name (dot, name, ".tmp-XXXXXX") does
  // not: creating the temporary file fails although the target exists.
  const std::string path = dir.file(std::string(250, 'n'));
  ASSERT_TRUE(writeTextFile(path, "old contents"));
  const std::optional<std::string> error = writeFileDurably(path, "new contents");
  ASSERT_TRUE(error);
  EXPECT_NE(error->find("File name too long"), std::string::npos) << *error;
  EXPECT_EQ(readTextFile(path), "old contents");
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{std::string(250, 'n')});
}

TEST(StateFileTest, FailedWriteRemovesTheTemporaryFile) {
  const TempDir dir;
  const std::string path = dir.file("state.yaml");
  ASSERT_TRUE(writeTextFile(path, "old contents"));
  // Tests run as root, so permissions cannot make write() fail; a file size limit can (with
  // SIGXFSZ ignored, write() returns EFBIG).
  rlimit previous{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &previous), 0);
  const rlimit small{4096, previous.rlim_max};
  const auto previousHandler = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::optional<std::string> error = writeFileDurably(path, std::string(8192, 'x'));
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &previous), 0);
  ::signal(SIGXFSZ, previousHandler);
  ASSERT_TRUE(error);
  EXPECT_NE(error->find(": write " + dir.path() + "/.state.yaml.tmp-"), std::string::npos)
      << *error;
  EXPECT_NE(error->find("File too large"), std::string::npos) << *error;
  EXPECT_EQ(readTextFile(path), "old contents");
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"state.yaml"});
}

TEST(StateFileTest, TargetThatIsADirectoryFailsAtTheRename) {
  const TempDir dir;
  const std::string path = dir.file("state.d");
  ASSERT_TRUE(std::filesystem::create_directory(path));
  const std::optional<std::string> error = writeFileDurably(path, "x");
  ASSERT_TRUE(error);
  EXPECT_NE(error->find("rename over the file"), std::string::npos) << *error;
  EXPECT_TRUE(std::filesystem::is_directory(path));
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"state.d"});
  EXPECT_TRUE(writeFileDurably(dir.path() + "/", "x"));
}

TEST(StateFileTest, ReadDistinguishesAMissingFile) {
  const TempDir dir;
  std::string out = "stale";
  const std::optional<FileError> missing = readWholeFile(dir.file("absent"), out);
  ASSERT_TRUE(missing);
  EXPECT_TRUE(missing->missing());
  EXPECT_EQ(missing->code, ENOENT);
  EXPECT_EQ(missing->message, "cannot open " + dir.file("absent") + ": No such file or directory");
  EXPECT_EQ(out, "");

  const std::optional<FileError> isDir = readWholeFile(dir.path(), out);
  ASSERT_TRUE(isDir);
  EXPECT_FALSE(isDir->missing());
  EXPECT_EQ(isDir->code, EISDIR);
}

TEST(StateFileTest, ReadRefusesAFileLargerThanTheLimit) {
  const TempDir dir;
  const std::string path = dir.file("big");
  ASSERT_TRUE(writeTextFile(path, std::string(200000, 'b')));
  std::string out;
  EXPECT_EQ(readWholeFile(path, out, 200000), std::nullopt);
  EXPECT_EQ(out.size(), 200000u);
  const std::optional<FileError> tooBig = readWholeFile(path, out, 199999);
  ASSERT_TRUE(tooBig);
  EXPECT_EQ(tooBig->code, EFBIG);
  EXPECT_EQ(tooBig->message, "cannot read " + path + ": larger than 199999 bytes");
  EXPECT_EQ(out, "");
  // A device that never ends is cut off too.
  EXPECT_TRUE(readWholeFile("/dev/zero", out, 1000));
}

TEST(StateFileTest, StaleTemporariesOfAnInterruptedWriteAreRemovedAndNothingElse) {
  const TempDir dir;
  const std::string path = dir.file("state.yaml");
  ASSERT_TRUE(writeTextFile(path, "current"));
  // What kill -9 between mkostemp() and rename() leaves: two crashes, two files.
  ASSERT_TRUE(writeTextFile(dir.file(".state.yaml.tmp-a1B2c3"), "half"));
  ASSERT_TRUE(writeTextFile(dir.file(".state.yaml.tmp-ZZZZZZ"), ""));
  // Look-alikes that are not ours stay: another file's temporaries, other suffix lengths, no
  // leading dot, a directory of the right name.
  const std::vector<std::string> others = {".other.yaml.tmp-abcdef", ".state.yaml.tmp-abcde",
                                           ".state.yaml.tmp-abcdefg", "state.yaml.tmp-abcdef",
                                           ".state.yaml.tmp-dir123"};
  for (size_t i = 0; i + 1 < others.size(); ++i) {
    ASSERT_TRUE(writeTextFile(dir.file(others[i]), "x"));
  }
  std::filesystem::create_directory(dir.file(others.back()));

  const StaleTemporaries first = removeStaleTemporaries(path);
  EXPECT_EQ(first.removed, 2u);
  EXPECT_EQ(first.error, std::nullopt);
  std::vector<std::string> expected = others;
  expected.push_back("state.yaml");
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(entries(dir.path()), expected);
  EXPECT_EQ(readTextFile(path), "current");

  const StaleTemporaries again = removeStaleTemporaries(path);
  EXPECT_EQ(again.removed, 0u);
  EXPECT_EQ(again.error, std::nullopt);
}

TEST(StateFileTest, StaleTemporariesInAMissingDirectoryIsAnError) {
  const TempDir dir;
  const StaleTemporaries result = removeStaleTemporaries(dir.file("gone/state.yaml"));
  EXPECT_EQ(result.removed, 0u);
  ASSERT_TRUE(result.error);
  EXPECT_NE(result.error->find("cannot list " + dir.file("gone")), std::string::npos)
      << *result.error;
}

}  // namespace
}  // namespace evgate::admin
