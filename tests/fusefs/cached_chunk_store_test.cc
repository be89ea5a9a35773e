// cached_chunk_store_test.cc: the chunk cache in the read path (fusefs/cached_chunk_store.h).
//
// Goal: a chunk read once is served by the cache the next time (Get and GetMany), a read of
// many chunks takes the cached ones from one promised read and the rest from the store, and
// bytes the cache returns under a name they do not hash to are never used: the store's are.
// Method: a memory chunk store behind a real ChunkCache on a small file (64 KiB segments,
// every insert admitted), driven on a scheduler.
#include "fusefs/cached_chunk_store.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cache/chunk_cache.h"
#include "engine/io/scheduler.h"
#include "testutil/temp_dir.h"

namespace cascadefs::fusefs {
namespace {

class CachedChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 1});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    cache::ChunkCacheOptions options;
    options.capacity_bytes = 4 << 20;
    options.segment_size_bytes = 64 << 10;
    options.admission = cache::Admission::kAll;
    auto opened = cache::ChunkCache::Open(dir_.path() + "/cache", options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    cache_ = std::move(opened).value();
    auto inner = NewMemoryChunkStore();
    inner_ = inner.get();
    store_ = std::make_unique<CachedChunkStore>(std::move(inner), cache_.get());
  }
  void TearDown() override {
    store_.reset();
    if (cache_) {
      EXPECT_TRUE(cache_->Close().ok());
    }
  }

  ChunkName Put(const std::string& data) {
    const ChunkName name = ChunkName::Of(data);
    EXPECT_TRUE(scheduler_->BlockOn(store_->Put(name, data)).ok());
    return name;
  }
  static std::string Chunk(int i) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(i));
    std::string out(4000 + static_cast<std::size_t>(i) * 10, '\0');
    for (char& c : out) c = static_cast<char>(rng());
    return out;
  }

  testutil::TempDir dir_;
  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<cache::ChunkCache> cache_;
  ChunkStore* inner_ = nullptr;
  std::unique_ptr<CachedChunkStore> store_;
};

TEST_F(CachedChunkStoreTest, AChunkReadOnceIsServedByTheCacheNextTime) {
  const std::string data = Chunk(1);
  const ChunkName name = Put(data);
  // A Put does not fill the cache: chunks are cached when read.
  EXPECT_FALSE(cache_->Contains(name.encoded()));
  auto first = scheduler_->BlockOn(store_->Get(name));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first.value(), data);
  EXPECT_EQ(store_->cache_stats().misses.load(), 1u);
  cache_->Flush();
  const std::uint64_t store_reads = inner_->stats().reads.load();
  auto second = scheduler_->BlockOn(store_->Get(name));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second.value(), data);
  EXPECT_EQ(store_->cache_stats().hits.load(), 1u);
  EXPECT_EQ(inner_->stats().reads.load(), store_reads) << "a hit read the store";
}

TEST_F(CachedChunkStoreTest, AReadOfManyChunksTakesTheCachedOnesFromOnePromise) {
  std::vector<std::string> chunks;
  std::vector<ChunkName> names;
  for (int i = 0; i < 40; ++i) {
    chunks.push_back(Chunk(i));
    names.push_back(Put(chunks.back()));
  }
  // Half of them read (and so cached) before.
  for (int i = 0; i < 40; i += 2) {
    ASSERT_TRUE(scheduler_->BlockOn(store_->Get(names[static_cast<std::size_t>(i)])).ok());
  }
  cache_->Flush();
  const std::uint64_t hits_before = store_->cache_stats().hits.load();
  auto all = scheduler_->BlockOn(store_->GetMany(names));
  ASSERT_EQ(all.size(), names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    ASSERT_TRUE(all[i].ok()) << i << ": " << all[i].status().ToString();
    EXPECT_EQ(all[i].value(), chunks[i]) << i;
  }
  EXPECT_EQ(store_->cache_stats().promised_reads.load(), 1u);
  EXPECT_EQ(store_->cache_stats().hits.load() - hits_before, 20u);
  EXPECT_EQ(cache_->stats().promised_delivered, 20u);
  // Now every one is cached.
  cache_->Flush();
  auto again = scheduler_->BlockOn(store_->GetMany(names));
  for (std::size_t i = 0; i < names.size(); ++i) {
    ASSERT_TRUE(again[i].ok());
    EXPECT_EQ(again[i].value(), chunks[i]);
  }
  EXPECT_EQ(store_->cache_stats().hits.load() - hits_before, 60u);
}

TEST_F(CachedChunkStoreTest, BytesThatDoNotHashToTheirNameAreNeverServed) {
  const std::string data = Chunk(7);
  const ChunkName name = Put(data);
  // The cache holds other bytes under the name (what a bug upstream of it would leave).
  ASSERT_TRUE(cache_->Insert(name.encoded(), "not the chunk's bytes").ok());
  cache_->Flush();
  ASSERT_TRUE(cache_->Contains(name.encoded()));
  auto got = scheduler_->BlockOn(store_->Get(name));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got.value(), data);
  EXPECT_EQ(store_->cache_stats().bad_entries.load(), 1u);
  auto many = scheduler_->BlockOn(store_->GetMany({name, Put(Chunk(8))}));
  ASSERT_TRUE(many[0].ok());
  EXPECT_EQ(many[0].value(), data);
  EXPECT_EQ(store_->cache_stats().bad_entries.load(), 2u);
}

}  // namespace
}  // namespace cascadefs::fusefs
