// current_file_test.cc: SetCurrentFile follows write-temp, sync, rename, sync-dir, and cleans up
// on failure; ReadCurrentFile accepts exactly "MANIFEST-NNNNNN\n".
//
// Method: run both against InlineEnv (string_file.h), which logs every call and fails the one
// a test names, so the order of the protocol and each failure path are checked; feed
// ReadCurrentFile a table of malformed contents. The same calls over MemEnv and the
// scheduler Env are in manifest_env_test.cc.pending, enabled once helper/env is merged.
#include "manifest/current_file.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/manifest/string_file.h"

namespace cascadefs::engine {
namespace {

using testing::InlineEnv;
using testing::RunInline;

constexpr char kDir[] = "store";

TEST(CurrentFileTest, ContentsNameTheManifest) {
  EXPECT_EQ(CurrentFileContents(5), "MANIFEST-000005\n");
  EXPECT_EQ(CurrentFileContents(std::numeric_limits<std::uint64_t>::max()).size(),
            kCurrentFileSizeMax);
}

TEST(CurrentFileTest, SetThenReadRoundTrips) {
  InlineEnv env;
  ASSERT_TRUE(RunInline(SetCurrentFile(&env, kDir, 5)).ok());
  EXPECT_EQ(env.Contents("store/CURRENT"), "MANIFEST-000005\n");
  EXPECT_FALSE(env.Contents("store/000005.dbtmp").has_value());
  Result<std::uint64_t> number = RunInline(ReadCurrentFile(&env, kDir));
  ASSERT_TRUE(number.ok()) << number.status().ToString();
  EXPECT_EQ(*number, 5u);

  // A switch replaces it.
  ASSERT_TRUE(RunInline(SetCurrentFile(&env, kDir, 1234567)).ok());
  number = RunInline(ReadCurrentFile(&env, kDir));
  ASSERT_TRUE(number.ok());
  EXPECT_EQ(*number, 1234567u);

  const std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  ASSERT_TRUE(RunInline(SetCurrentFile(&env, kDir, kMax)).ok());
  number = RunInline(ReadCurrentFile(&env, kDir));
  ASSERT_TRUE(number.ok());
  EXPECT_EQ(*number, kMax);
}

TEST(CurrentFileTest, SwitchIsWriteSyncRenameSyncDir) {
  InlineEnv env;
  ASSERT_TRUE(RunInline(SetCurrentFile(&env, kDir, 7)).ok());
  const std::vector<std::string> expected = {
      "write store/000007.dbtmp",
      "sync store/000007.dbtmp",
      "close store/000007.dbtmp",
      "rename store/000007.dbtmp store/CURRENT",
      "syncdir store",
  };
  EXPECT_EQ(env.log, expected);
}

TEST(CurrentFileTest, FailureBeforeTheRenameLeavesCurrentAndRemovesTheTemporary) {
  for (const char* step : {"open", "write", "sync", "close", "rename"}) {
    InlineEnv env;
    ASSERT_TRUE(RunInline(SetCurrentFile(&env, kDir, 3)).ok());
    env.log.clear();
    env.fail_op = step;
    const Status status = RunInline(SetCurrentFile(&env, kDir, 4));
    ASSERT_TRUE(status.IsIOError()) << step << ": " << status.ToString();
    EXPECT_NE(status.message().find("injected"), std::string_view::npos) << step;
    EXPECT_EQ(env.Contents("store/CURRENT"), "MANIFEST-000003\n") << step;
    EXPECT_FALSE(env.Contents("store/000004.dbtmp").has_value()) << step;
    ASSERT_FALSE(env.log.empty());
    EXPECT_EQ(env.log.back(), "remove store/000004.dbtmp") << step;
    for (const std::string& call : env.log) EXPECT_NE(call, "syncdir store") << step;
  }
}

TEST(CurrentFileTest, SyncDirFailureIsReportedAfterTheRename) {
  InlineEnv env;
  env.fail_op = "syncdir";
  const Status status = RunInline(SetCurrentFile(&env, kDir, 9));
  ASSERT_TRUE(status.IsIOError()) << status.ToString();
  // The rename happened (it may not be durable): CURRENT names the new manifest for now.
  EXPECT_EQ(env.Contents("store/CURRENT"), "MANIFEST-000009\n");
  EXPECT_FALSE(env.Contents("store/000009.dbtmp").has_value());
}

TEST(CurrentFileTest, MissingCurrentIsNotFound) {
  InlineEnv env;
  const Result<std::uint64_t> number = RunInline(ReadCurrentFile(&env, kDir));
  EXPECT_TRUE(number.status().IsNotFound()) << number.status().ToString();
}

TEST(CurrentFileTest, MalformedCurrentIsCorruption) {
  const struct {
    std::string contents;
    const char* quoted;
  } kCases[] = {
      {"", "\"\""},
      {"MANIFEST-000005", "\"MANIFEST-000005\""},
      {"MANIFEST-000005\n\n", "\"MANIFEST-000005\\x0a\\x0a\""},
      {"MANIFEST-000005\r\n", "\"MANIFEST-000005\\x0d\\x0a\""},
      {"MANIFEST-5\n", "\"MANIFEST-5\\x0a\""},
      {"manifest-000005\n", "\"manifest-000005\\x0a\""},
      {" MANIFEST-000005\n", "\" MANIFEST-000005\\x0a\""},
      {"000005.sst\n", "\"000005.sst\\x0a\""},
      {"CURRENT\n", "\"CURRENT\\x0a\""},
      {"LOCK\n", "\"LOCK\\x0a\""},
      {"MANIFEST-18446744073709551616\n", "\"MANIFEST-18446744073709551616\\x0a\""},
      {std::string("MANIFEST-\0\"\\05\n", 15), "\"MANIFEST-\\x00\\x22\\x5c05\\x0a\""},
  };
  for (const auto& c : kCases) {
    InlineEnv env;
    env.files["store/CURRENT"] = std::make_shared<std::string>(c.contents);
    const Result<std::uint64_t> number = RunInline(ReadCurrentFile(&env, kDir));
    ASSERT_TRUE(number.status().IsCorruption()) << c.quoted << ": " << number.status().ToString();
    EXPECT_EQ(number.status().message(),
              std::string("store/CURRENT: contents ") + c.quoted +
                  " are not a manifest name (expected \"MANIFEST-NNNNNN\\n\")");
  }
}

TEST(CurrentFileTest, OversizedCurrentIsCorruptionBeforeReading) {
  InlineEnv env;
  env.files["store/CURRENT"] = std::make_shared<std::string>(kCurrentFileSizeMax + 1, 'M');
  const Result<std::uint64_t> number = RunInline(ReadCurrentFile(&env, kDir));
  ASSERT_TRUE(number.status().IsCorruption());
  EXPECT_EQ(number.status().message(),
            "store/CURRENT: 31 bytes, longer than any manifest name (at most 30)");
}

}  // namespace
}  // namespace cascadefs::engine
