// scheduler_env_test.cc: the production Env on a real directory.
//
// Method: every Env operation is run through the scheduler on a fresh directory under
// /var/tmp and its effect checked with the Env itself, including the error paths (missing
// files, an existing file with kCreateExclusive, a store lock taken twice).
#include <memory>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "engine/env.h"
#include "engine/io/scheduler.h"
#include "testutil/temp_dir.h"

namespace cascadefs::engine {
namespace {

class SchedulerEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 1});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    env_ = NewSchedulerEnv(scheduler_.get());
  }
  template <typename T>
  T Run(io::Task<T> task) {
    return scheduler_->BlockOn(std::move(task));
  }
  std::string Path(const std::string& name) const { return dir_.path() + "/" + name; }

  testutil::TempDir dir_;
  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> env_;
};

TEST_F(SchedulerEnvTest, WriteSyncReadRoundTripAndShortReadAtEnd) {
  auto body = [&]() -> io::Task<std::string> {
    auto file = co_await env_->NewWritableFile(Path("f"), WriteMode::kCreateTruncate);
    if (!file.ok()) co_return file.status().ToString();
    Status status = co_await file.value()->WriteAt(0, "hello ");
    if (status.ok()) status = co_await file.value()->WriteAt(6, "world");
    if (status.ok()) status = co_await file.value()->Sync();
    if (status.ok()) status = co_await file.value()->Close();
    if (status.ok()) status = co_await file.value()->Close();  // idempotent
    if (!status.ok()) co_return status.ToString();
    auto reader = co_await env_->NewRandomAccessFile(Path("f"));
    if (!reader.ok()) co_return reader.status().ToString();
    char buf[32] = {};
    auto got = co_await reader.value()->Read(3, sizeof(buf), buf);
    if (!got.ok()) co_return got.status().ToString();
    auto size = co_await env_->FileSize(Path("f"));
    co_return std::string(buf, got.value()) + "|" + std::to_string(reader.value()->size_bytes()) +
        "|" + std::to_string(size.value());
  };
  EXPECT_EQ(Run(body()), "lo world|11|11");
}

TEST_F(SchedulerEnvTest, MissingFilesAreNotFound) {
  auto body = [&]() -> io::Task<bool> {
    auto reader = co_await env_->NewRandomAccessFile(Path("missing"));
    auto writer = co_await env_->NewWritableFile(Path("missing"), WriteMode::kOpenExisting);
    Status removed = co_await env_->RemoveFile(Path("missing"));
    auto size = co_await env_->FileSize(Path("missing"));
    co_return reader.status().IsNotFound() && writer.status().IsNotFound() &&
        removed.IsNotFound() && size.status().IsNotFound() &&
        reader.status().ToString().find("missing") != std::string::npos;
  };
  EXPECT_TRUE(Run(body()));
}

TEST_F(SchedulerEnvTest, ExclusiveCreateRenameRemoveListAndSyncDir) {
  auto body = [&]() -> io::Task<std::string> {
    auto a = co_await env_->NewWritableFile(Path("a"), WriteMode::kCreateExclusive);
    if (!a.ok()) co_return a.status().ToString();
    (void)co_await a.value()->WriteAt(0, "A");
    (void)co_await a.value()->Close();
    auto again = co_await env_->NewWritableFile(Path("a"), WriteMode::kCreateExclusive);
    if (again.ok()) co_return std::string("exclusive create succeeded twice");
    auto b = co_await env_->NewWritableFile(Path("b"), WriteMode::kCreateTruncate);
    (void)co_await b.value()->Close();
    Status status = co_await env_->RenameFile(Path("a"), Path("b"));  // replaces b
    if (status.ok()) status = co_await env_->SyncDir(dir_.path());
    if (!status.ok()) co_return status.ToString();
    auto size = co_await env_->FileSize(Path("b"));
    if (!size.ok() || size.value() != 1) co_return std::string("rename did not replace");
    status = co_await env_->RemoveFile(Path("b"));
    co_return status.ok() ? std::string("ok") : status.ToString();
  };
  EXPECT_EQ(Run(body()), "ok");
  auto names = env_->ListDir(dir_.path());
  ASSERT_TRUE(names.ok());
  EXPECT_TRUE(names.value().empty());
  EXPECT_TRUE(env_->ListDir(Path("nope")).status().IsNotFound());
}

TEST_F(SchedulerEnvTest, CreateDirTruncateAndAllocate) {
  ASSERT_TRUE(env_->CreateDirIfMissing(Path("sub")).ok());
  ASSERT_TRUE(env_->CreateDirIfMissing(Path("sub")).ok());
  auto body = [&]() -> io::Task<Status> {
    auto file = co_await env_->NewWritableFile(Path("sub/f"), WriteMode::kCreateTruncate);
    if (!file.ok()) co_return file.status();
    Status status = co_await file.value()->Allocate(0, 1 << 20);
    if (!status.ok() && !status.IsNotSupported()) co_return status;
    status = co_await file.value()->WriteAt(0, std::string(100, 'x'));
    if (status.ok()) status = co_await file.value()->Close();
    co_return status;
  };
  ASSERT_TRUE(Run(body()).ok());
  ASSERT_TRUE(env_->Truncate(Path("sub/f"), 10).ok());
  EXPECT_EQ(Run(env_->FileSize(Path("sub/f"))).value(), 10u);
}

TEST_F(SchedulerEnvTest, LockIsExclusiveUntilReleased) {
  auto first = env_->LockFile(Path("LOCK"));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = env_->LockFile(Path("LOCK"));
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(second.status().IsBusy());
  EXPECT_NE(second.status().ToString().find("in use"), std::string::npos);
  first.value().reset();
  EXPECT_TRUE(env_->LockFile(Path("LOCK")).ok());
}

}  // namespace
}  // namespace cascadefs::engine
