// io_totals_test.cc: the IOTOTALS file (db/io_totals.h) and the write amplification
// `cascadefs inspect` shows from it.
//
// Goal: each clean close of a writable open adds what that open wrote; a read-only open
// writes nothing; a damaged file is refused by its checksum and the next open counts from zero
// instead of failing; SummarizeStore reports the totals of a closed store.
// Method: stores on a MemEnv; the file's bytes are read, flipped and compared directly.
#include "db/io_totals.h"

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "engine/db.h"
#include "engine/inspect.h"
#include "engine/io/scheduler.h"
#include "env/mem_env.h"

namespace cascadefs::engine {
namespace {

class IoTotalsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 1});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    env_ = NewMemEnv(scheduler_.get());
  }

  void WriteAndClose(bool read_only, int keys) {
    Options options;
    options.scheduler = scheduler_.get();
    options.env = env_.get();
    options.read_only = read_only;
    options.write_buffer_size_bytes = 64 << 10;
    auto db = DB::Open(options, kDir);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    for (int i = 0; i < keys; ++i) {
      ASSERT_TRUE(db.value()->Put({}, "key" + std::to_string(i), std::string(200, 'v')).ok());
    }
    if (keys > 0) {
      ASSERT_TRUE(db.value()->Flush().ok());
    }
    ASSERT_TRUE(db.value()->Close().ok());
  }

  std::optional<IoTotals> Read() {
    auto totals = scheduler_->BlockOn(ReadIoTotals(env_.get(), kDir));
    EXPECT_TRUE(totals.ok()) << totals.status().ToString();
    return totals.ok() ? totals.value() : std::nullopt;
  }

  static constexpr const char* kDir = "/store";
  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> env_;
};

TEST_F(IoTotalsTest, EncodingRoundTripsAndAFlippedByteIsRefused) {
  const IoTotals totals{.opens = 3,
                        .user_bytes_written = 1000,
                        .wal_bytes_written = 1100,
                        .vlog_bytes_written = 7,
                        .flush_bytes_written = 900,
                        .compaction_bytes_written = 1800};
  const std::string bytes = totals.Encode();
  ASSERT_EQ(bytes.size(), 64u);
  auto decoded = IoTotals::Decode(bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded.value().opens, 3u);
  EXPECT_EQ(decoded.value().compaction_bytes_written, 1800u);
  EXPECT_DOUBLE_EQ(decoded.value().write_amplification(), 3.807);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::string damaged = bytes;
    damaged[i] = static_cast<char>(damaged[i] ^ 1);
    EXPECT_FALSE(IoTotals::Decode(damaged).ok()) << "byte " << i;
  }
  EXPECT_FALSE(IoTotals::Decode(bytes.substr(0, 63)).ok());
}

TEST_F(IoTotalsTest, EachCleanCloseAddsItsOpenAndReadOnlyOpensWriteNothing) {
  EXPECT_FALSE(Read().has_value());
  ASSERT_NO_FATAL_FAILURE(WriteAndClose(false, 500));
  const std::optional<IoTotals> first = Read();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->opens, 1u);
  EXPECT_GT(first->user_bytes_written, 500u * 200);
  EXPECT_GT(first->wal_bytes_written, first->user_bytes_written / 2);
  EXPECT_GT(first->flush_bytes_written, 0u);
  EXPECT_GT(first->write_amplification(), 1.0);

  ASSERT_NO_FATAL_FAILURE(WriteAndClose(true, 0));
  const std::optional<IoTotals> after_read_only = Read();
  ASSERT_TRUE(after_read_only.has_value());
  EXPECT_EQ(after_read_only->opens, 1u);

  ASSERT_NO_FATAL_FAILURE(WriteAndClose(false, 500));
  const std::optional<IoTotals> second = Read();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->opens, 2u);
  EXPECT_GT(second->user_bytes_written, first->user_bytes_written);

  auto summary = scheduler_->BlockOn(SummarizeStore(env_.get(), kDir));
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_TRUE(summary.value().io_totals_known);
  EXPECT_EQ(summary.value().opens, 2u);
  EXPECT_EQ(summary.value().user_bytes_written, second->user_bytes_written);
  EXPECT_DOUBLE_EQ(summary.value().write_amplification, second->write_amplification());
}

TEST_F(IoTotalsTest, ADamagedFileIsRefusedAndTheNextOpenCountsFromZero) {
  ASSERT_NO_FATAL_FAILURE(WriteAndClose(false, 100));
  const std::string path = std::string(kDir) + "/" + kIoTotalsFileName;
  {
    auto file = scheduler_->BlockOn(env_->NewWritableFile(path, WriteMode::kCreateTruncate));
    ASSERT_TRUE(file.ok());
    ASSERT_TRUE(scheduler_->BlockOn(file.value()->WriteAt(0, std::string(64, 'x'))).ok());
    ASSERT_TRUE(scheduler_->BlockOn(file.value()->Close()).ok());
  }
  auto damaged = scheduler_->BlockOn(ReadIoTotals(env_.get(), kDir));
  EXPECT_TRUE(damaged.status().IsCorruption()) << damaged.status().ToString();
  auto summary = scheduler_->BlockOn(SummarizeStore(env_.get(), kDir));
  ASSERT_TRUE(summary.ok());
  EXPECT_FALSE(summary.value().io_totals_known);
  ASSERT_NO_FATAL_FAILURE(WriteAndClose(false, 100));
  const std::optional<IoTotals> again = Read();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->opens, 1u);
}

}  // namespace
}  // namespace cascadefs::engine
