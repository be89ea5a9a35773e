// chunk_cache_model_test: random operations on a ChunkCache checked against a model, a map
// of every value ever inserted per key (values are fixed per key and size, so the model is
// what a hit must return). Operations: insert, lookup, flush, promise, close and reopen (warm
// restart), and flipping a random byte of the file under the running cache. Checked: a hit
// returns exactly the model's bytes (never damaged, stale or another key's bytes); a key just
// inserted and flushed into a cache that has room is found; every promised key reaches its
// callback exactly once with the model's bytes or a failure; a reopen serves only model bytes.
// The seed comes from CFS_TEST_SEED or is random, and is printed on failure.
#include <fcntl.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <string>
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

std::uint64_t Seed() {
  const char* env = std::getenv("CFS_TEST_SEED");
  if (env != nullptr && *env != '\0') return std::strtoull(env, nullptr, 10);
  return std::random_device()();
}

void FlipByte(const std::string& path, std::uint64_t offset) {
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char byte = 0;
  ASSERT_EQ(::pread(fd, &byte, 1, static_cast<off_t>(offset)), 1);
  byte = static_cast<char>(byte ^ 0x20);
  ASSERT_EQ(::pwrite(fd, &byte, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

void RunModel(std::uint64_t seed, std::uint32_t segments, int operations) {
  SCOPED_TRACE("CFS_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  const std::string path = dir.File("cache");
  ChunkCacheOptions options;
  options.segment_size_bytes = kSegment;
  options.capacity_bytes = std::uint64_t{segments} * kSegment;
  options.insert_queue_bytes = 4 * kSegment;
  options.admission = Admission::kAll;
  Result<std::unique_ptr<ChunkCache>> opened = ChunkCache::Open(path, options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<ChunkCache> cache = std::move(opened).value();

  constexpr std::uint64_t kKeys = 300;
  auto size_of = [](std::uint64_t id) {
    return static_cast<std::size_t>(1 + (id * 2654435761u) % 9000);
  };
  std::map<std::uint64_t, std::string> model;  // id -> the bytes a hit must return
  std::uint64_t flips = 0;
  std::string value;
  for (int op = 0; op < operations; ++op) {
    const std::uint64_t id = rng() % kKeys;
    const int kind = static_cast<int>(rng() % 100);
    if (kind < 40) {
      const std::string bytes = Value(id, size_of(id));
      model[id] = bytes;
      ASSERT_TRUE(cache->Insert(Key(id), bytes).ok());
      if (rng() % 4 == 0) {
        const bool was_cached = cache->Contains(Key(id));
        cache->Flush();
        // Just written (or already there): found, unless damage was injected into it.
        if (!was_cached && flips == 0) {
          EXPECT_TRUE(cache->Contains(Key(id))) << "op " << op;
        }
      }
    } else if (kind < 80) {
      Status status = cache->Lookup(Key(id), &value);
      if (status.ok()) {
        ASSERT_TRUE(model.contains(id)) << "op " << op << ": a key never inserted was served";
        ASSERT_EQ(value, model[id]) << "op " << op << ": wrong bytes for key " << id;
      } else {
        ASSERT_TRUE(status.IsNotFound()) << status.ToString();
      }
    } else if (kind < 92) {
      std::vector<std::uint64_t> ids;
      std::vector<std::string> keys;
      for (std::uint64_t i = 0, n = 1 + rng() % 16; i < n; ++i) {
        ids.push_back(rng() % kKeys);
        keys.push_back(Key(ids.back()));
      }
      std::vector<std::string_view> views(keys.begin(), keys.end());
      std::vector<int> calls(keys.size(), 0);
      std::mutex mu;
      std::condition_variable cv;
      std::uint32_t done = 0;
      PromiseResult result = cache->Promise(views, [&](const PromisedChunk& chunk) {
        std::lock_guard lock(mu);
        ++calls[chunk.key_index];
        if (chunk.status.ok()) {
          EXPECT_EQ(chunk.value, model.at(ids[chunk.key_index])) << "op " << op;
        }
        ++done;
        cv.notify_all();
      });
      std::unique_lock lock(mu);
      ASSERT_TRUE(
          cv.wait_for(lock, std::chrono::seconds(20), [&] { return done == result.promised; }))
          << "op " << op << ": promised chunks lost";
      for (std::uint32_t missing : result.missing) EXPECT_EQ(calls[missing], 0);
      std::uint32_t total = 0;
      for (int c : calls) {
        EXPECT_LE(c, 1);
        total += static_cast<std::uint32_t>(c);
      }
      EXPECT_EQ(total, result.promised);
    } else if (kind < 96) {
      ASSERT_TRUE(cache->Close().ok());
      cache.reset();
      opened = ChunkCache::Open(path, options);
      ASSERT_TRUE(opened.ok()) << opened.status().ToString();
      cache = std::move(opened).value();
    } else {
      FlipByte(path, rng() % options.capacity_bytes);
      ++flips;
    }
  }
  // Everything still indexed is served with the model's bytes or dropped as damaged.
  for (std::uint64_t id = 0; id < kKeys; ++id) {
    if (cache->Lookup(Key(id), &value).ok()) {
      ASSERT_EQ(value, model.at(id)) << id;
    }
  }
  ASSERT_TRUE(cache->Close().ok());
}

TEST(ChunkCacheModelTest, RandomOperationsAgainstAMap) {
  const std::uint64_t seed = Seed();
  RunModel(seed, 8, 2000);
}

TEST(ChunkCacheModelTest, FourSegments) {
  const std::uint64_t seed = Seed() + 1;
  RunModel(seed, 4, 2000);
}

}  // namespace
}  // namespace cascadefs::cache
