// wal_test.cc: the WAL writer and replay: round trips, segment switches and reuse, torn
// tails versus damage, group commit, and the in-flight bound.
//
// Method: records of many sizes are appended through WalWriter on a real directory with
// tiny segments (64 KiB) and buffers, then replayed with ReplayWal and compared. Damage is
// made by editing segment files between writing and replaying.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "engine/env.h"
#include "engine/io/scheduler.h"
#include "testutil/temp_dir.h"
#include "wal/wal_reader.h"
#include "wal/wal_writer.h"

namespace cascadefs::engine {
namespace {

namespace fs = std::filesystem;

class WalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 2});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    env_ = NewSchedulerEnv(scheduler_.get());
    options_.segment_size_bytes = 64 << 10;
    options_.buffer_size_bytes = 1000;
    options_.in_flight_bytes_max = 64 << 10;
  }

  std::unique_ptr<WalWriter> OpenWriter(std::uint64_t first,
                                        std::vector<std::uint64_t> reuse = {}) {
    auto writer =
        scheduler_->BlockOn(WalWriter::Open(env_.get(), dir_.path(), options_, first,
                                            std::move(reuse), [this] { return next_number_++; }));
    EXPECT_TRUE(writer.ok()) << writer.status().ToString();
    return writer.ok() ? std::move(writer).value() : nullptr;
  }

  // Appends with the Busy protocol, from a plain thread.
  WalPosition AppendOrDie(WalWriter& writer, std::string_view record) {
    for (;;) {
      auto appended = writer.Append(record);
      if (appended.ok()) return appended.value();
      EXPECT_TRUE(appended.status().IsBusy()) << appended.status().ToString();
      if (!appended.status().IsBusy()) return {};
      scheduler_->BlockOn(writer.WaitWritable(record.size()));
    }
  }

  std::vector<std::uint64_t> Segments() const {
    std::vector<std::uint64_t> numbers;
    for (const auto& entry : fs::directory_iterator(dir_.path())) {
      if (entry.path().extension() == ".wal") {
        numbers.push_back(std::stoull(entry.path().stem().string()));
      }
    }
    std::sort(numbers.begin(), numbers.end());
    return numbers;
  }

  Status Replay(std::vector<std::string>* records, WalReplayResult* result) {
    return scheduler_->BlockOn(ReplayWal(
        env_.get(), dir_.path(), Segments(),
        [records](std::string_view record, const WalPosition&) {
          records->emplace_back(record);
          return Status::OK();
        },
        result));
  }

  static std::string Record(int i, std::size_t size) {
    std::string record(size, '\0');
    for (std::size_t b = 0; b < size; ++b) record[b] = static_cast<char>(i * 31 + b * 7);
    return record;
  }

  testutil::TempDir dir_;
  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> env_;
  WalOptions options_;
  std::uint64_t next_number_ = 100;
};

TEST_F(WalTest, RoundTripAcrossBlocksAndSegments) {
  std::vector<std::string> written;
  {
    auto writer = OpenWriter(next_number_++);
    std::mt19937 rng(5);
    for (int i = 0; i < 300; ++i) {
      const std::size_t size = i % 50 == 0 ? 100000 : rng() % 3000;  // some span segments
      written.push_back(Record(i, size));
      AppendOrDie(*writer, written.back());
      if (i % 97 == 0) {
        for (;;) {
          auto switched = writer->SwitchSegment();
          if (switched.ok()) break;
          ASSERT_TRUE(switched.status().IsBusy()) << switched.status().ToString();
          scheduler_->BlockOn(writer->WaitWritable(0));
        }
      }
    }
    ASSERT_TRUE(scheduler_->BlockOn(writer->Close()).ok());
    EXPECT_GT(writer->stats().segments_started, 3u);
  }
  std::vector<std::string> replayed;
  WalReplayResult result;
  ASSERT_TRUE(Replay(&replayed, &result).ok());
  EXPECT_FALSE(result.torn_tail) << result.torn_tail_reason;
  ASSERT_EQ(replayed.size(), written.size());
  for (std::size_t i = 0; i < written.size(); ++i) ASSERT_EQ(replayed[i], written[i]) << i;
}

// A sync leaves a mark to write before the next record; the block's tail may then be too short
// for it (between one header and a header plus the mark's payload). Every such tail, each
// followed by a sync and a record, must append and replay.
TEST_F(WalTest, SyncMarkAfterEveryShortBlockTail) {
  options_.segment_size_bytes = 1 << 20;
  options_.buffer_size_bytes = 1 << 20;
  options_.in_flight_bytes_max = 1 << 20;
  constexpr std::size_t kBlock = kWalBlockSizeBytes;
  std::vector<std::string> written;
  {
    auto writer = OpenWriter(next_number_++);
    auto append = [&](std::string record) {
      written.push_back(std::move(record));
      return AppendOrDie(*writer, written.back());
    };
    for (std::size_t tail = 1; tail <= kWalHeaderBytes + kSyncMarkPayloadBytes + 2; ++tail) {
      // End a record exactly `tail` bytes before a block's end. A mark left by the last sync
      // may be written in front of one of these records and shift it: then try again.
      WalPosition at{};
      bool landed = false;
      for (int attempt = 0; attempt < 4 && !landed; ++attempt) {
        at = append("x");
        std::size_t left = kBlock - at.offset % kBlock;
        if (left < tail + kWalHeaderBytes + 1) {
          at = append(std::string(left + 1, 'p'));  // ends in the next block
          left = kBlock - at.offset % kBlock;
        }
        at = append(Record(static_cast<int>(tail), left - tail - kWalHeaderBytes));
        landed = kBlock - at.offset % kBlock == tail;
      }
      ASSERT_TRUE(landed) << "could not end a record " << tail << " bytes before a block end";
      ASSERT_TRUE(scheduler_->BlockOn(writer->SyncTo(at)).ok());
      append(Record(1000 + static_cast<int>(tail), 40));  // the mark comes first, if it fits
    }
    ASSERT_TRUE(scheduler_->BlockOn(writer->Close()).ok());
  }
  std::vector<std::string> replayed;
  WalReplayResult result;
  ASSERT_TRUE(Replay(&replayed, &result).ok());
  EXPECT_FALSE(result.torn_tail) << result.torn_tail_reason;
  ASSERT_EQ(replayed.size(), written.size());
  for (std::size_t i = 0; i < written.size(); ++i) ASSERT_EQ(replayed[i], written[i]) << i;
}

TEST_F(WalTest, RecycledSegmentsDoNotReplayTheirOldLap) {
  {
    auto writer = OpenWriter(next_number_++);
    for (int i = 0; i < 200; ++i) AppendOrDie(*writer, Record(i, 700));
    ASSERT_TRUE(scheduler_->BlockOn(writer->Close()).ok());
  }
  const std::vector<std::uint64_t> old_segments = Segments();
  ASSERT_GE(old_segments.size(), 2u);
  // A new lap reuses every old segment file, writing fewer records.
  {
    auto writer = OpenWriter(next_number_++, old_segments);
    for (int i = 0; i < 3; ++i) AppendOrDie(*writer, Record(1000 + i, 50));
    ASSERT_TRUE(scheduler_->BlockOn(writer->Close()).ok());
    EXPECT_GE(writer->stats().segments_recycled, 1u);
  }
  std::vector<std::string> replayed;
  WalReplayResult result;
  // Replay only the segments of the new lap (the DB replays from its recorded log number).
  const std::vector<std::uint64_t> all = Segments();
  std::vector<std::uint64_t> new_lap;
  for (std::uint64_t n : all) {
    if (n > old_segments.back()) new_lap.push_back(n);
  }
  Status status = scheduler_->BlockOn(ReplayWal(
      env_.get(), dir_.path(), new_lap,
      [&](std::string_view record, const WalPosition&) {
        replayed.emplace_back(record);
        return Status::OK();
      },
      &result));
  ASSERT_TRUE(status.ok()) << status.ToString();
  ASSERT_EQ(replayed.size(), 3u);
  EXPECT_EQ(replayed[2], Record(1002, 50));
}

TEST_F(WalTest, TornTailStopsCleanly) {
  {
    auto writer = OpenWriter(next_number_++);
    for (int i = 0; i < 20; ++i) AppendOrDie(*writer, Record(i, 100));
    WalPosition synced = AppendOrDie(*writer, Record(20, 100));
    ASSERT_TRUE(scheduler_->BlockOn(writer->SyncTo(synced)).ok());
    for (int i = 21; i < 40; ++i) AppendOrDie(*writer, Record(i, 100));
    ASSERT_TRUE(scheduler_->BlockOn(writer->FlushBuffer()).ok());
    // A segment may still be in preparation in the background (the writer prepares ahead).
    scheduler_->BlockOn(writer->WaitIdle());
    // Simulate a crash: the writer's object goes without Close (nothing is in flight).
  }
  // Garbage over the unsynced part: what a power cut may leave.
  const std::vector<std::uint64_t> segments = Segments();
  const fs::path first = WalSegmentPath(dir_.path(), segments.front());
  {
    std::fstream file(first, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(30 * 111 + 50);
    const std::string garbage(200, '\x77');
    file.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  std::vector<std::string> replayed;
  WalReplayResult result;
  Status status = Replay(&replayed, &result);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(result.torn_tail);
  EXPECT_NE(result.torn_tail_reason.find(".wal"), std::string::npos);
  EXPECT_GE(replayed.size(), 21u);  // every synced record
  EXPECT_LT(replayed.size(), 40u);
  for (std::size_t i = 0; i < replayed.size(); ++i) EXPECT_EQ(replayed[i], Record(i, 100));
}

TEST_F(WalTest, DamagedSyncedRecordIsCorruptionWithFileAndOffset) {
  {
    auto writer = OpenWriter(next_number_++);
    for (int i = 0; i < 50; ++i) {
      WalPosition at = AppendOrDie(*writer, Record(i, 100));
      ASSERT_TRUE(scheduler_->BlockOn(writer->SyncTo(at)).ok());
    }
    ASSERT_TRUE(scheduler_->BlockOn(writer->Close()).ok());
  }
  const fs::path first = WalSegmentPath(dir_.path(), Segments().front());
  {
    std::fstream file(first, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(500);
    file.put('\x01');
  }
  std::vector<std::string> replayed;
  WalReplayResult result;
  Status status = Replay(&replayed, &result);
  ASSERT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.ToString().find(first.filename().string()), std::string::npos);
  EXPECT_NE(status.ToString().find("offset"), std::string::npos);
}

// Salvage mode (repair): the damaged synced record is skipped and named, the fragments that
// continue it in the next block are skipped too, and every later record is replayed.
TEST_F(WalTest, SalvageSkipsADamagedSyncedRecordAndKeepsTheRest) {
  std::vector<std::string> written;
  std::vector<WalPosition> ends;
  {
    auto writer = OpenWriter(next_number_++);
    for (int i = 0; i < 80; ++i) {
      // Record 10 spans two blocks: its first fragment is damaged below.
      written.push_back(Record(i, i == 10 ? 40000 : 1000));
      ends.push_back(AppendOrDie(*writer, written.back()));
      ASSERT_TRUE(scheduler_->BlockOn(writer->SyncTo(ends.back())).ok());
    }
    ASSERT_TRUE(scheduler_->BlockOn(writer->Close()).ok());
  }
  ASSERT_EQ(ends[9].log_number, ends[10].log_number);
  const WalPosition start = ends[9];  // record 10 starts where record 9 ends
  const fs::path segment = WalSegmentPath(dir_.path(), start.log_number);
  {
    std::fstream file(segment, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(start.offset + 11 + 5));  // in its payload
    file.put('\x5a');
  }
  std::vector<std::string> replayed;
  WalReplayResult result;
  WalSalvage salvage;
  Status status = scheduler_->BlockOn(ReplayWal(
      env_.get(), dir_.path(), Segments(),
      [&](std::string_view record, const WalPosition&) {
        replayed.emplace_back(record);
        return Status::OK();
      },
      &result, &salvage));
  ASSERT_TRUE(status.ok()) << status.ToString();
  ASSERT_EQ(salvage.skipped.size(), 1u);
  EXPECT_EQ(salvage.skipped[0].at, start);
  EXPECT_NE(salvage.skipped[0].reason.find(segment.filename().string()), std::string::npos);
  std::vector<std::string> expected = written;
  expected.erase(expected.begin() + 10);
  ASSERT_EQ(replayed.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(replayed[i], expected[i]) << i;
}

TEST_F(WalTest, ConcurrentSyncsShareFsyncs) {
  auto writer = OpenWriter(next_number_++);
  WalWriter* raw = writer.get();
  std::mutex append_mutex;  // the DB's mutex
  std::atomic<int> failures{0};
  auto client = [&](int id) -> io::Task<void> {
    for (int i = 0; i < 20; ++i) {
      WalPosition at;
      for (;;) {
        Result<WalPosition> appended = [&] {
          std::lock_guard guard(append_mutex);
          return raw->Append(Record(id * 100 + i, 64));
        }();
        if (appended.ok()) {
          at = appended.value();
          break;
        }
        co_await raw->WaitWritable(64);
      }
      if (!(co_await raw->SyncTo(at)).ok()) failures.fetch_add(1);
    }
  };
  std::vector<io::Task<void>> clients;
  for (int id = 0; id < 8; ++id) clients.push_back(client(id));
  scheduler_->BlockOn(io::WhenAll(std::move(clients)));
  EXPECT_EQ(failures.load(), 0);
  const WalStats stats = writer->stats();
  EXPECT_EQ(stats.synced_writers, 160u);
  EXPECT_LT(stats.syncs, 160u) << "no sync was shared";
  ASSERT_TRUE(scheduler_->BlockOn(writer->Close()).ok());
  std::vector<std::string> replayed;
  WalReplayResult result;
  ASSERT_TRUE(Replay(&replayed, &result).ok());
  EXPECT_EQ(replayed.size(), 160u);
}

TEST_F(WalTest, AppendSaysBusyBeyondTheInFlightBound) {
  options_.buffer_size_bytes = 0;  // every record is written out at once
  auto writer = OpenWriter(next_number_++);
  int busy = 0;
  for (int i = 0; i < 2000 && busy == 0; ++i) {
    auto appended = writer->Append(Record(i, 2000));
    if (!appended.ok()) {
      ASSERT_TRUE(appended.status().IsBusy());
      ++busy;
    }
  }
  scheduler_->BlockOn(writer->WaitWritable(2000));
  EXPECT_TRUE(writer->Append(Record(1, 10)).ok());
  EXPECT_LE(writer->stats().in_flight_peak_bytes, options_.in_flight_bytes_max + 4096);
  ASSERT_TRUE(scheduler_->BlockOn(writer->Close()).ok());
  EXPECT_FALSE(writer->Append("after close").ok());
}

}  // namespace
}  // namespace cascadefs::engine
