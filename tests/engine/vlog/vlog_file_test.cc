// vlog_file_test.cc: value-log files written and read through the Env (engine/vlog/vlog_file.h).
//
// Goal: every pointer VlogWriter hands out reads back its value through VlogFileReader;
// ScanVlogRecords sees the same records in order; damage is Corruption naming the file and
// offset, never a wrong value; after a power cut the synced records scan back and the scan
// stops at the torn tail. Method: MemEnv (and FaultEnv for power cuts), values of many sizes,
// some compressible.
#include "vlog/vlog_file.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/io/scheduler.h"
#include "env/mem_env.h"
#include "testutil/fault_env.h"

namespace cascadefs::engine {
namespace {

struct Written {
  std::string key;
  std::string value;
  ValuePointer pointer;
};

std::string ValueOf(std::uint64_t seed, std::size_t size, bool compressible) {
  std::mt19937_64 rng(seed);
  std::string value(size, '\0');
  for (char& c : value)
    c = compressible ? static_cast<char>('a' + rng() % 3) : static_cast<char>(rng());
  return value;
}

class VlogFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 1});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    env_ = NewMemEnv(scheduler_.get());
    ASSERT_TRUE(env_->CreateDirIfMissing("/db").ok());
  }

  template <typename T>
  T Run(io::Task<T> task) {
    return scheduler_->BlockOn(std::move(task));
  }

  // Writes `count` records to /db/000007.vlog through `env`; syncs after the first `synced`.
  io::Task<Status> WriteRecords(Env* env, int count, int synced, bool finish,
                                std::vector<Written>* out) {
    auto writer = co_await VlogWriter::Create(
        env, "/db/000007.vlog", 7, VlogWriterOptions{.zstd_level = 1, .buffer_bytes = 64 << 10});
    if (!writer.ok()) co_return writer.status();
    for (int i = 0; i < count; ++i) {
      Written w;
      w.key = "key" + std::to_string(i);
      w.value = ValueOf(i, static_cast<std::size_t>(i * 97 % 20000), i % 2 == 0);
      auto pointer = co_await writer.value()->Add(w.key, w.value);
      if (!pointer.ok()) co_return pointer.status();
      w.pointer = pointer.value();
      out->push_back(std::move(w));
      if (i + 1 == synced) CFS_CO_RETURN_IF_ERROR(co_await writer.value()->Sync());
    }
    if (finish) co_return co_await writer.value()->Finish();
    co_return co_await writer.value()->Flush();
  }

  io::Task<Result<std::string>> ReadBack(Env* env, const Written& w) {
    auto file = co_await env->NewRandomAccessFile("/db/000007.vlog");
    if (!file.ok()) co_return file.status();
    VlogFileReader reader(std::move(file).value());
    co_return co_await reader.ReadValue(w.pointer, w.key);
  }

  io::Task<Status> Scan(Env* env, std::vector<std::pair<ValuePointer, std::string>>* seen,
                        std::uint64_t* valid_end) {
    auto file = co_await env->NewRandomAccessFile("/db/000007.vlog");
    if (!file.ok()) co_return file.status();
    co_return co_await ScanVlogRecords(
        *file.value(), 7,
        [&](const ValuePointer& pointer, const VlogRecord& record) {
          seen->emplace_back(pointer, std::string(record.key));
          return Status::OK();
        },
        valid_end);
  }

  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> env_;
};

TEST_F(VlogFileTest, EveryPointerReadsBackAndTheScanSeesTheSameRecords) {
  std::vector<Written> written;
  ASSERT_TRUE(Run(WriteRecords(env_.get(), 300, 0, true, &written)).ok());
  for (const Written& w : written) {
    Result<std::string> value = Run(ReadBack(env_.get(), w));
    ASSERT_TRUE(value.ok()) << w.key << ": " << value.status().ToString();
    EXPECT_TRUE(value.value() == w.value) << w.key;
  }
  EXPECT_LT(written[20].pointer.size, written[20].value.size() / 2) << "compressible: zstd";
  EXPECT_GT(written[21].pointer.size, written[21].value.size()) << "random bytes: stored as given";
  std::vector<std::pair<ValuePointer, std::string>> seen;
  std::uint64_t valid_end = 0;
  ASSERT_TRUE(Run(Scan(env_.get(), &seen, &valid_end)).ok());
  ASSERT_EQ(seen.size(), written.size());
  for (std::size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].first, written[i].pointer) << i;
    EXPECT_EQ(seen[i].second, written[i].key) << i;
  }
  const Result<std::uint64_t> size = Run(env_->FileSize("/db/000007.vlog"));
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(valid_end, size.value() - kVlogFooterBytes) << "the scan stops at the footer";
}

TEST_F(VlogFileTest, DamageIsCorruptionNamingTheFileAndOffsetNeverAWrongValue) {
  std::vector<Written> written;
  ASSERT_TRUE(Run(WriteRecords(env_.get(), 20, 0, true, &written)).ok());
  const Written& victim = written[10];
  ASSERT_TRUE(
      Run([&]() -> io::Task<Status> {
        auto file = co_await env_->NewWritableFile("/db/000007.vlog", WriteMode::kOpenExisting);
        if (!file.ok()) co_return file.status();
        CFS_CO_RETURN_IF_ERROR(co_await file.value()->WriteAt(victim.pointer.offset + 15, "X"));
        co_return co_await file.value()->Close();
      }())
          .ok());
  Result<std::string> value = Run(ReadBack(env_.get(), victim));
  ASSERT_TRUE(value.status().IsCorruption()) << value.status().ToString();
  EXPECT_NE(value.status().message().find("000007.vlog at offset " +
                                          std::to_string(victim.pointer.offset)),
            std::string::npos)
      << value.status().ToString();
  EXPECT_TRUE(Run(ReadBack(env_.get(), written[9])).ok()) << "its neighbours still read";
  EXPECT_TRUE(Run(ReadBack(env_.get(), written[11])).ok());

  Written wrong_key = written[3];
  wrong_key.key = "another";
  EXPECT_TRUE(Run(ReadBack(env_.get(), wrong_key)).status().IsCorruption());
  Written outside = written[3];
  outside.pointer.offset = 1 << 30;
  EXPECT_TRUE(Run(ReadBack(env_.get(), outside)).status().IsCorruption());
  Written shifted = written[3];
  shifted.pointer = written[4].pointer;
  shifted.pointer.checksum = written[3].pointer.checksum;
  EXPECT_TRUE(Run(ReadBack(env_.get(), shifted)).status().IsCorruption())
      << "a record other than the one the pointer names";
}

TEST_F(VlogFileTest, AfterAPowerCutTheSyncedRecordsScanBackAndTheTornTailIsCut) {
  for (const testutil::PowerCutMode mode :
       {testutil::PowerCutMode::kDropAll, testutil::PowerCutMode::kDropRandom,
        testutil::PowerCutMode::kTear}) {
    for (std::uint64_t seed = 1; seed <= 5; ++seed) {
      auto base = NewMemEnv(scheduler_.get());
      ASSERT_TRUE(base->CreateDirIfMissing("/db").ok());
      ASSERT_TRUE(Run(base->SyncDir("/db")).ok());
      testutil::FaultEnv fault(base.get());
      std::vector<Written> written;
      ASSERT_TRUE(Run(WriteRecords(&fault, 120, 60, false, &written)).ok());
      ASSERT_TRUE(Run(fault.SyncDir("/db")).ok());
      ASSERT_TRUE(Run(fault.SimulatePowerCut(mode, seed)).ok());
      std::vector<std::pair<ValuePointer, std::string>> seen;
      std::uint64_t valid_end = 0;
      ASSERT_TRUE(Run(Scan(base.get(), &seen, &valid_end)).ok());
      ASSERT_GE(seen.size(), 60u) << "every synced record survives";
      ASSERT_LE(seen.size(), written.size());
      for (std::size_t i = 0; i < seen.size(); ++i) {
        ASSERT_EQ(seen[i].first, written[i].pointer) << "a prefix of what was written, " << i;
        Result<std::string> value = Run(ReadBack(base.get(), written[i]));
        ASSERT_TRUE(value.ok()) << value.status().ToString();
        EXPECT_TRUE(value.value() == written[i].value) << i;
      }
      EXPECT_EQ(valid_end, seen.back().first.offset + seen.back().first.size);
    }
  }
}

}  // namespace
}  // namespace cascadefs::engine
