// skiplist_test.cc: the skiplist against std::set, and one writer racing readers.
//
// Method: random inserts compared with a std::set through every iterator operation; then a
// writer inserts while reader threads iterate and check that what they see is sorted and
// only ever keys that were inserted (run under TSan by `make tsan`).
#include "memtable/skiplist.h"

#include <atomic>
#include <cstdint>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace cascadefs::engine {
namespace {

struct U64Compare {
  int operator()(std::uint64_t a, std::uint64_t b) const { return a < b ? -1 : a > b ? 1 : 0; }
};
using List = SkipList<std::uint64_t, U64Compare>;

TEST(SkipListTest, EmptyList) {
  Arena arena;
  List list(U64Compare{}, &arena);
  EXPECT_FALSE(list.Contains(10));
  List::Iterator it(&list);
  it.SeekToFirst();
  EXPECT_FALSE(it.Valid());
  it.SeekToLast();
  EXPECT_FALSE(it.Valid());
  it.Seek(100);
  EXPECT_FALSE(it.Valid());
}

TEST(SkipListTest, MatchesStdSet) {
  std::mt19937_64 rng(301);
  Arena arena;
  List list(U64Compare{}, &arena);
  std::set<std::uint64_t> model;
  for (int i = 0; i < 5000; ++i) {
    const std::uint64_t key = rng() % 20000;
    if (model.insert(key).second) list.Insert(key);
  }
  for (std::uint64_t key = 0; key < 20000; ++key) {
    ASSERT_EQ(list.Contains(key), model.count(key) == 1) << key;
  }
  List::Iterator it(&list);
  auto expected = model.begin();
  for (it.SeekToFirst(); it.Valid(); it.Next(), ++expected) {
    ASSERT_NE(expected, model.end());
    ASSERT_EQ(it.key(), *expected);
  }
  EXPECT_EQ(expected, model.end());
  auto reverse = model.rbegin();
  for (it.SeekToLast(); it.Valid(); it.Prev(), ++reverse) {
    ASSERT_NE(reverse, model.rend());
    ASSERT_EQ(it.key(), *reverse);
  }
  EXPECT_EQ(reverse, model.rend());
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t target = rng() % 21000;
    it.Seek(target);
    auto lower = model.lower_bound(target);
    ASSERT_EQ(it.Valid(), lower != model.end());
    if (it.Valid()) {
      ASSERT_EQ(it.key(), *lower);
    }
  }
}

TEST(SkipListTest, ReadersRaceOneWriter) {
  Arena arena;
  List list(U64Compare{}, &arena);
  constexpr std::uint64_t kInserts = 20000;
  std::atomic<bool> done{false};
  // Keys are multiples of 3 in a scrambled order; readers must see only those, sorted.
  std::vector<std::thread> readers;
  std::atomic<std::uint64_t> seen_total{0};
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      while (!done.load(std::memory_order_acquire)) {
        List::Iterator it(&list);
        std::uint64_t previous = 0;
        bool first = true;
        std::uint64_t seen = 0;
        for (it.SeekToFirst(); it.Valid(); it.Next()) {
          ASSERT_EQ(it.key() % 3, 0u);
          if (!first) {
            ASSERT_LT(previous, it.key());
          }
          previous = it.key();
          first = false;
          ++seen;
        }
        seen_total.fetch_add(seen);
      }
    });
  }
  for (std::uint64_t i = 0; i < kInserts; ++i) {
    list.Insert(((i * 7919) % kInserts) * 3);
  }
  done.store(true, std::memory_order_release);
  for (auto& reader : readers) reader.join();
  for (std::uint64_t i = 0; i < kInserts; ++i) ASSERT_TRUE(list.Contains(i * 3));
}

TEST(ArenaTest, AlignmentAndUsage) {
  Arena arena;
  EXPECT_EQ(arena.MemoryUsage(), 0u);
  std::size_t requested = 0;
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    const std::size_t size = 1 + rng() % (i % 100 == 0 ? 40000 : 200);
    char* p = (i % 2 == 0) ? arena.AllocateAligned(size) : arena.Allocate(size);
    if (i % 2 == 0) {
      ASSERT_EQ(reinterpret_cast<std::uintptr_t>(p) % 8, 0u);
    }
    for (std::size_t b = 0; b < size; ++b) p[b] = static_cast<char>(i);
    requested += size;
  }
  EXPECT_GE(arena.MemoryUsage(), requested);
  EXPECT_LE(arena.MemoryUsage(), requested * 2 + Arena::kBlockSizeBytes);
}

}  // namespace
}  // namespace cascadefs::engine
