// chunk_cache_concurrency_test: one writer (the cache's), many inserters, readers and
// promisers on a tiny cache (8 segments of 64 KiB) so the writer laps every few hundred
// inserts, run under ThreadSanitizer too (label tsan). Invariants checked:
//  - every byte served by Lookup or a promise is the value inserted under that key;
//  - every promised key is handed to its callback exactly once (delivered, or reported
//    missing), none is lost: each promise's count reaches its promised number;
//  - a chunk pinned by a promise is always delivered: the writer never reclaimed its segment
//    before the delivery (a reclaimed segment would make the read fail or the DASSERT in the
//    reader loop fire); only keys of the segment being written, read unpinned, may miss;
//  - no damage is ever seen on a healthy file;
//  - queued bytes never exceed the bound.
#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "cache/chunk_cache.h"
#include "cache_test_util.h"

namespace cascadefs::cache {
namespace {

using testing::Key;
using testing::TempDir;
using testing::Value;

constexpr std::uint32_t kSegment = 64 << 10;
constexpr std::uint64_t kKeys = 600;

std::size_t SizeOf(std::uint64_t id) { return 500 + (id * 7919) % 12000; }

struct MixedRun {
  std::uint32_t segments = 8;
  Admission admission = Admission::kAll;
  int inserters = 2;
  int readers = 2;
  int promisers = 2;
  std::chrono::milliseconds duration{800};
};

void RunMixed(const MixedRun& run) {
  TempDir dir;
  ChunkCacheOptions options;
  options.segment_size_bytes = kSegment;
  options.capacity_bytes = std::uint64_t{run.segments} * kSegment;
  options.insert_queue_bytes = 2 * kSegment;
  options.admission = run.admission;
  options.promised_chunks_max = 256;
  Result<std::unique_ptr<ChunkCache>> opened = ChunkCache::Open(dir.File("cache"), options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<ChunkCache> cache = std::move(opened).value();

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> served{0}, bad_bytes{0}, promised{0}, delivered_ok{0},
      reported_missing{0}, corruption{0}, lost{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < run.inserters; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      while (!stop.load()) {
        const std::uint64_t id = rng() % kKeys;
        EXPECT_TRUE(cache->Insert(Key(id), Value(id, SizeOf(id))).ok());
      }
    });
  }
  for (int t = 0; t < run.readers; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(200 + t);
      std::string value;
      while (!stop.load()) {
        const std::uint64_t id = rng() % kKeys;
        Status status = cache->Lookup(Key(id), &value);
        if (!status.ok()) {
          EXPECT_TRUE(status.IsNotFound()) << status.ToString();
          continue;
        }
        served.fetch_add(1);
        if (value != Value(id, SizeOf(id))) bad_bytes.fetch_add(1);
      }
    });
  }
  for (int t = 0; t < run.promisers; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(300 + t);
      while (!stop.load()) {
        const std::size_t count = 1 + rng() % 24;
        auto ids = std::make_shared<std::vector<std::uint64_t>>();
        std::vector<std::string> keys;
        for (std::size_t i = 0; i < count; ++i) {
          ids->push_back(rng() % kKeys);
          keys.push_back(Key(ids->back()));
        }
        std::vector<std::string_view> views(keys.begin(), keys.end());
        auto seen = std::make_shared<std::vector<std::atomic<int>>>(count);
        auto done = std::make_shared<std::atomic<std::uint32_t>>(0);
        PromiseResult result = cache->Promise(views, [&, ids, seen, done](const PromisedChunk& c) {
          (*seen)[c.key_index].fetch_add(1);
          if (c.status.ok()) {
            delivered_ok.fetch_add(1);
            if (c.value != Value((*ids)[c.key_index], SizeOf((*ids)[c.key_index]))) {
              bad_bytes.fetch_add(1);
            }
          } else {
            reported_missing.fetch_add(1);
            if (c.status.IsCorruption()) corruption.fetch_add(1);
          }
          done->fetch_add(1);
        });
        promised.fetch_add(result.promised);
        EXPECT_EQ(result.promised + result.missing.size(), count);
        // Every promised key arrives, bounded wait (the reader loop has a few segments to go).
        for (int spin = 0; spin < 20000 && done->load() < result.promised; ++spin) {
          std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        if (done->load() != result.promised) lost.fetch_add(result.promised - done->load());
        for (std::uint32_t missing : result.missing) EXPECT_EQ((*seen)[missing].load(), 0);
        for (std::size_t i = 0; i < count; ++i) EXPECT_LE((*seen)[i].load(), 1) << i;
      }
    });
  }
  std::this_thread::sleep_for(run.duration);
  stop.store(true);
  for (std::thread& thread : threads) thread.join();
  cache->Flush();
  const ChunkCacheStats stats = cache->stats();
  ASSERT_TRUE(cache->Close().ok());

  EXPECT_EQ(bad_bytes.load(), 0u);
  EXPECT_EQ(lost.load(), 0u);
  EXPECT_EQ(corruption.load(), 0u);
  EXPECT_EQ(stats.damaged_entries_dropped, 0u);
  EXPECT_EQ(delivered_ok.load() + reported_missing.load(), promised.load());
  EXPECT_EQ(stats.promised_delivered, delivered_ok.load());
  EXPECT_EQ(stats.promised_reported_missing, reported_missing.load());
  EXPECT_LE(stats.insert_queue_bytes_peak, options.insert_queue_bytes);
  EXPECT_EQ(stats.insert_queue_bytes, 0u);
  // The run must have exercised what it claims to.
  EXPECT_GT(stats.segments_reclaimed, 2u * run.segments);
  EXPECT_GT(served.load(), 0u);
  EXPECT_GT(delivered_ok.load(), 0u);
  std::printf(
      "served %llu, promised %llu (missing %llu), reclaimed %llu, writer waits %llu, "
      "skips %llu, dropped %llu, reinsertions %llu\n",
      static_cast<unsigned long long>(served.load()),
      static_cast<unsigned long long>(promised.load()),
      static_cast<unsigned long long>(reported_missing.load()),
      static_cast<unsigned long long>(stats.segments_reclaimed),
      static_cast<unsigned long long>(stats.writer_waits_on_promises),
      static_cast<unsigned long long>(stats.writer_skips_promised),
      static_cast<unsigned long long>(stats.inserts_dropped_queue_full),
      static_cast<unsigned long long>(stats.reinsertions));
}

TEST(ChunkCacheConcurrencyTest, InsertersReadersPromisersOnATinyCache) { RunMixed(MixedRun{}); }

TEST(ChunkCacheConcurrencyTest, ManyPromisersFewSegments) {
  MixedRun run;
  run.segments = 4;
  run.inserters = 1;
  run.readers = 1;
  run.promisers = 4;
  RunMixed(run);
}

TEST(ChunkCacheConcurrencyTest, SeenTwiceAdmission) {
  MixedRun run;
  run.admission = Admission::kSeenTwice;
  RunMixed(run);
}

}  // namespace
}  // namespace cascadefs::cache
