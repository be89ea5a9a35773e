// BlockCache: hits and misses, the byte bound and LRU order per shard, replacement, and
// concurrent use.
#include "sst/block_cache.h"

#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sst/block.h"
#include "sst/block_builder.h"

namespace cascadefs::engine {
namespace {

// A parsed block of about `bytes` bytes.
std::shared_ptr<const Block> MakeBlock(std::size_t bytes) {
  BlockBuilder builder(16);
  builder.Add("key", std::string(bytes, 'v'));
  auto block = Block::Parse(std::string(builder.Finish()), "test block");
  EXPECT_TRUE(block.ok());
  return block.value();
}

TEST(BlockCacheTest, HitsMissesAndTheByteBound) {
  BlockCache cache(64 << 10, /*shard_bits=*/0);  // one shard: exact LRU order
  const std::uint64_t table = cache.NewTableId();
  EXPECT_EQ(cache.Lookup(table, 0), nullptr);
  for (std::uint64_t i = 0; i < 8; ++i) cache.Insert(table, i * 4096, MakeBlock(4000));
  EXPECT_NE(cache.Lookup(table, 0), nullptr);
  BlockCacheStats stats = cache.stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.inserts, 8u);
  EXPECT_EQ(stats.evictions, 0u);
  // 24 more blocks of ~4 KiB overflow 64 KiB: the least recently used go; block 0 (just hit)
  // outlives block 1.
  for (std::uint64_t i = 8; i < 32; ++i) cache.Insert(table, i * 4096, MakeBlock(4000));
  EXPECT_EQ(cache.Lookup(table, 4096), nullptr);
  stats = cache.stats();
  EXPECT_GT(stats.evictions, 0u);
  EXPECT_LE(stats.bytes, stats.capacity_bytes);
  EXPECT_EQ(stats.capacity_bytes, 64u << 10);
}

TEST(BlockCacheTest, RecentlyUsedBlocksOutliveOlderOnes) {
  BlockCache cache(64 << 10, /*shard_bits=*/0);
  const std::uint64_t table = cache.NewTableId();
  for (std::uint64_t i = 0; i < 12; ++i) cache.Insert(table, i, MakeBlock(4000));
  ASSERT_NE(cache.Lookup(table, 0), nullptr);  // 0 becomes the most recent
  for (std::uint64_t i = 12; i < 20; ++i) cache.Insert(table, i, MakeBlock(4000));
  EXPECT_NE(cache.Lookup(table, 0), nullptr);
  EXPECT_EQ(cache.Lookup(table, 1), nullptr);
}

TEST(BlockCacheTest, TablesHaveSeparateKeysAndLargeBlocksAreNotCached) {
  BlockCache cache(1 << 20, /*shard_bits=*/4);
  const std::uint64_t a = cache.NewTableId();
  const std::uint64_t b = cache.NewTableId();
  ASSERT_NE(a, b);
  auto block = MakeBlock(100);
  cache.Insert(a, 0, block);
  EXPECT_EQ(cache.Lookup(a, 0), block);
  EXPECT_EQ(cache.Lookup(b, 0), nullptr);
  cache.Insert(a, 0, MakeBlock(200));  // replaces
  EXPECT_NE(cache.Lookup(a, 0), block);
  cache.Insert(b, 0, MakeBlock(100 << 10));  // above a shard's 64 KiB
  EXPECT_EQ(cache.Lookup(b, 0), nullptr);
  EXPECT_LT(cache.stats().bytes, 1000u);
}

TEST(BlockCacheTest, ConcurrentLookupsAndInsertsStayWithinTheBound) {
  BlockCache cache(256 << 10, /*shard_bits=*/2);
  const std::uint64_t table = cache.NewTableId();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, table, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::uint64_t offset = static_cast<std::uint64_t>((i * 7 + t) % 300) * 4096;
        if (cache.Lookup(table, offset) == nullptr) cache.Insert(table, offset, MakeBlock(2000));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const BlockCacheStats stats = cache.stats();
  EXPECT_LE(stats.bytes, stats.capacity_bytes);
  EXPECT_EQ(stats.hits + stats.misses, 8000u);
  EXPECT_GT(stats.hits, 0u);
}

}  // namespace
}  // namespace cascadefs::engine
