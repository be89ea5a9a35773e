// chunk_cache_test: ChunkCache on a real file in a temporary directory, single-threaded
// callers (the cache's own writer and reader threads still run): insert and lookup, the
// checks on bad input, reclaim and the second chance, admission, the bounded queue and the
// writer waiting at a promised head, promise delivery and missing keys, warm restart,
// reformat on a geometry change, a crash mid-write simulated by tearing and corrupting bytes,
// and CheckCacheFile's findings. Segments are 64 KiB so the writer laps within a few hundred
// inserts.
#include "cache/chunk_cache.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "cache_format.h"
#include "cache_test_util.h"
#include "engine/io/scheduler.h"

namespace cascadefs::cache {
namespace {

using testing::Key;
using testing::TempDir;
using testing::Value;

constexpr std::uint32_t kSegment = 64 << 10;

ChunkCacheOptions SmallOptions(std::uint32_t segments = 8) {
  ChunkCacheOptions options;
  options.segment_size_bytes = kSegment;
  options.capacity_bytes = std::uint64_t{segments} * kSegment;
  options.insert_queue_bytes = 4 * kSegment;
  options.admission = Admission::kAll;
  return options;
}

std::unique_ptr<ChunkCache> MustOpen(const std::string& path, const ChunkCacheOptions& options) {
  Result<std::unique_ptr<ChunkCache>> cache = ChunkCache::Open(path, options);
  EXPECT_TRUE(cache.ok()) << cache.status().ToString();
  return cache.ok() ? std::move(cache).value() : nullptr;
}

void WriteAt(const std::string& path, std::uint64_t offset, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
            static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

std::string ReadAt(const std::string& path, std::uint64_t offset, std::size_t size) {
  std::string bytes(size, '\0');
  const int fd = ::open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::pread(fd, bytes.data(), size, static_cast<off_t>(offset)),
            static_cast<ssize_t>(size));
  ::close(fd);
  return bytes;
}

std::uint64_t IdOf(const std::string& key) {
  std::uint64_t id = 0;
  for (int i = 0; i < 8; ++i)
    id |= std::uint64_t{static_cast<unsigned char>(key[1 + i])} << (8 * i);
  return id;
}

// Waits (bounded) until `done` holds.
template <typename F>
bool Eventually(F done) {
  for (int i = 0; i < 2000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

TEST(ChunkCacheTest, InsertFlushLookup) {
  TempDir dir;
  auto cache = MustOpen(dir.File("cache"), SmallOptions());
  std::string value;
  EXPECT_TRUE(cache->Lookup(Key(1), &value).IsNotFound());
  ASSERT_TRUE(cache->Insert(Key(1), Value(1, 5000)).ok());
  cache->Flush();
  EXPECT_TRUE(cache->Contains(Key(1)));
  ASSERT_TRUE(cache->Lookup(Key(1), &value).ok());
  EXPECT_EQ(value, Value(1, 5000));
  // A second insert of a cached key is counted and changes nothing.
  ASSERT_TRUE(cache->Insert(Key(1), Value(1, 5000)).ok());
  ChunkCacheStats stats = cache->stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.entries, 1u);
  EXPECT_EQ(stats.bytes_cached, 5000u);
  EXPECT_EQ(stats.inserts_written, 1u);
  EXPECT_EQ(stats.inserts_already_cached, 1u);
  EXPECT_DOUBLE_EQ(stats.hit_ratio(), 0.5);
  EXPECT_TRUE(cache->Close().ok());
}

TEST(ChunkCacheTest, RejectsBadKeysValuesAndOptions) {
  TempDir dir;
  auto cache = MustOpen(dir.File("cache"), SmallOptions());
  EXPECT_TRUE(cache->Insert("", "v").IsInvalidArgument());
  EXPECT_TRUE(cache->Insert(std::string(33, 'k'), "v").IsInvalidArgument());
  EXPECT_TRUE(cache->Insert(Key(1), std::string(kSegment, 'v')).IsInvalidArgument());
  // The largest entry that fits a segment is accepted.
  const std::size_t largest = kSegment - kSegmentHeaderBytes - kEntryOverheadBytes - 17;
  EXPECT_TRUE(cache->Insert(Key(2), std::string(largest, 'v')).ok());
  cache->Flush();
  EXPECT_TRUE(cache->Contains(Key(2)));
  std::string value;
  EXPECT_TRUE(cache->Lookup(std::string(33, 'k'), &value).IsInvalidArgument());

  ChunkCacheOptions bad = SmallOptions();
  bad.segment_size_bytes = 5000;
  EXPECT_TRUE(ChunkCache::Open(dir.File("bad"), bad).status().IsInvalidArgument());
  bad = SmallOptions(3);  // fewer than 4 segments
  EXPECT_TRUE(ChunkCache::Open(dir.File("bad"), bad).status().IsInvalidArgument());
  bad = SmallOptions();
  bad.insert_queue_bytes = 1000;
  EXPECT_TRUE(ChunkCache::Open(dir.File("bad"), bad).status().IsInvalidArgument());
  EXPECT_TRUE(ChunkCache::Open("/nonexistent-dir/cache", SmallOptions()).status().IsNotFound());
}

TEST(ChunkCacheTest, ReclaimEvictsTheOldestAndKeepsHitEntries) {
  TempDir dir;
  auto cache = MustOpen(dir.File("cache"), SmallOptions());
  std::string value;
  // ~15 entries of 4 KiB per segment; 400 entries lap the 8 segments three times. Key 0 is
  // hit after every segment's worth of inserts, so it always has a second chance pending.
  for (std::uint64_t id = 0; id < 400; ++id) {
    ASSERT_TRUE(cache->Insert(Key(id), Value(id, 4000)).ok());
    if (id % 8 == 0) {
      cache->Flush();
      ASSERT_TRUE(cache->Lookup(Key(0), &value).ok()) << id;
      ASSERT_EQ(value, Value(0, 4000));
    }
  }
  cache->Flush();
  ChunkCacheStats stats = cache->stats();
  EXPECT_GT(stats.segments_reclaimed, 16u);
  EXPECT_GT(stats.reinsertions, 0u);
  EXPECT_GT(stats.evictions, 0u);
  EXPECT_FALSE(cache->Contains(Key(1)));   // never hit: evicted on the first lap
  EXPECT_TRUE(cache->Contains(Key(399)));  // the newest
  EXPECT_TRUE(cache->Lookup(Key(0), &value).ok());
  EXPECT_EQ(value, Value(0, 4000));
  // Never more bytes cached than the file holds.
  EXPECT_LE(stats.bytes_cached, 8u * kSegment);
  EXPECT_TRUE(cache->Close().ok());
}

TEST(ChunkCacheTest, SeenTwiceAdmitsEverythingUntilFullThenOnTheSecondInsert) {
  TempDir dir;
  ChunkCacheOptions options = SmallOptions();
  options.admission = Admission::kSeenTwice;
  auto cache = MustOpen(dir.File("cache"), options);
  // Free space: admitted at once.
  ASSERT_TRUE(cache->Insert(Key(1), Value(1, 100)).ok());
  cache->Flush();
  EXPECT_TRUE(cache->Contains(Key(1)));
  // Fill past the capacity (8 segments of ~15 entries) so the writer evicts.
  for (std::uint64_t id = 10; id < 200; ++id) {
    ASSERT_TRUE(cache->Insert(Key(id), Value(id, 4000)).ok());
    if (id % 8 == 0) cache->Flush();
  }
  cache->Flush();
  ASSERT_GT(cache->stats().evictions, 0u);
  const std::uint64_t refused = cache->stats().inserts_not_admitted;
  // Full: a new key is refused once (and remembered), then admitted.
  ASSERT_TRUE(cache->Insert(Key(1000), Value(1000, 100)).ok());
  cache->Flush();
  EXPECT_FALSE(cache->Contains(Key(1000)));
  EXPECT_EQ(cache->stats().inserts_not_admitted, refused + 1);
  ASSERT_TRUE(cache->Insert(Key(1000), Value(1000, 100)).ok());
  cache->Flush();
  EXPECT_TRUE(cache->Contains(Key(1000)));
}

TEST(ChunkCacheTest, WriterWaitsAtAPromisedHeadAndTheQueueDropsAtItsBound) {
  TempDir dir;
  ChunkCacheOptions options = SmallOptions(4);
  options.insert_queue_bytes = kSegment;
  auto cache = MustOpen(dir.File("cache"), options);
  // Key 0 lands in segment 0; 40 entries of 4 KiB move the writer on to segment 2. Flushes
  // keep the queue (one segment) from dropping any (a slow writer under TSan would).
  for (std::uint64_t id = 0; id < 40; ++id) {
    ASSERT_TRUE(cache->Insert(Key(id), Value(id, 4000)).ok());
    if (id % 8 == 7) cache->Flush();
  }
  cache->Flush();
  ASSERT_EQ(cache->stats().inserts_written, 40u);  // so key 0 is not in the write segment
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> delivered{0};
  std::string got;
  const std::vector<std::string> keys = {Key(0)};
  std::vector<std::string_view> views(keys.begin(), keys.end());
  PromiseResult promised = cache->Promise(views, [&](const PromisedChunk& chunk) {
    // Runs on the reader thread; holds the delivery (and so the pin) until released.
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
    EXPECT_TRUE(chunk.status.ok()) << chunk.status.ToString();
    got.assign(chunk.value);
    delivered.fetch_add(1);
  });
  EXPECT_TRUE(promised.missing.empty());
  EXPECT_EQ(promised.promised, 1u);

  // The writer fills segments 2 and 3, reaches segment 0 (the head, pinned) and waits there.
  // Inserts go on meanwhile: the queue fills to its bound and the rest are dropped, never
  // blocking this thread.
  std::uint64_t id = 100;
  ASSERT_TRUE(Eventually([&] {
    for (int i = 0; i < 8; ++i, ++id) EXPECT_TRUE(cache->Insert(Key(id), Value(id, 4000)).ok());
    return cache->stats().writer_waits_on_promises >= 1;
  }));
  for (int i = 0; i < 64; ++i, ++id) ASSERT_TRUE(cache->Insert(Key(id), Value(id, 4000)).ok());
  ChunkCacheStats stats = cache->stats();
  EXPECT_GT(stats.inserts_dropped_queue_full, 0u);
  EXPECT_LE(stats.insert_queue_bytes_peak, options.insert_queue_bytes);
  EXPECT_EQ(delivered.load(), 0);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  cache->Flush();
  EXPECT_EQ(delivered.load(), 1);
  EXPECT_EQ(got, Value(0, 4000));  // delivered intact although its segment was next in line
  stats = cache->stats();
  EXPECT_EQ(stats.promised_delivered, 1u);
  EXPECT_EQ(stats.promises_completed, 1u);
  EXPECT_TRUE(cache->Close().ok());
}

// After a warm restart, ring order and age differ: a segment whose header was damaged is
// "never written" (the oldest) although it sits in the middle of the ring. The segment after
// the write cursor is then not the head; if it is promised, the writer skips it instead of
// waiting, and the promised chunk survives.
TEST(ChunkCacheTest, WriterSkipsAPromisedSegmentThatIsNotTheHead) {
  TempDir dir;
  const std::string path = dir.File("cache");
  ChunkCacheOptions options = SmallOptions(4);
  {
    // 4049-byte entries, 16 per segment: ids 0..15 in segment 0, ..., 48..59 in segment 3.
    auto cache = MustOpen(path, options);
    for (std::uint64_t id = 0; id < 60; ++id) {
      ASSERT_TRUE(cache->Insert(Key(id), Value(id, 4000)).ok());
      if (id % 8 == 7) cache->Flush();
    }
    ASSERT_TRUE(cache->Close().ok());
  }
  WriteAt(path, 2 * kSegment + 30, "X");  // segment 2's header
  auto cache = MustOpen(path, options);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::string got;
  const std::vector<std::string> keys = {Key(0)};
  std::vector<std::string_view> views(keys.begin(), keys.end());
  PromiseResult promised = cache->Promise(views, [&](const PromisedChunk& chunk) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
    got.assign(chunk.value);
  });
  ASSERT_EQ(promised.promised, 1u);
  // Segment 3 overflows; the next in the ring is segment 0 (promised, not the head: segment
  // 2 is older), so the writer skips to segment 1.
  for (std::uint64_t id = 100; id < 110; ++id) {
    ASSERT_TRUE(cache->Insert(Key(id), Value(id, 4000)).ok());
  }
  cache->Flush();
  ChunkCacheStats stats = cache->stats();
  EXPECT_EQ(stats.writer_skips_promised, 1u);
  EXPECT_EQ(stats.writer_waits_on_promises, 0u);
  EXPECT_FALSE(cache->Contains(Key(16)));  // segment 1 was reclaimed instead
  EXPECT_TRUE(cache->Contains(Key(0)));
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  ASSERT_TRUE(cache->Close().ok());
  EXPECT_EQ(got, Value(0, 4000));
}

TEST(ChunkCacheTest, PromiseReturnsMissingAndDeliversTheRestOnceFromTheHead) {
  TempDir dir;
  auto cache = MustOpen(dir.File("cache"), SmallOptions());
  // 3049-byte entries, 21 per segment: ids 0..20 in segment 0, 21..41 in 1, 42..59 in 2 (the
  // segment being written).
  for (std::uint64_t id = 0; id < 60; ++id) {
    ASSERT_TRUE(cache->Insert(Key(id), Value(id, 3000)).ok());
  }
  cache->Flush();
  // Ask newest first, with absent keys mixed in.
  std::vector<std::string> keys;
  for (std::uint64_t id = 59; id != UINT64_MAX; --id) {
    keys.push_back(Key(id));
    if (id % 10 == 0) keys.push_back(Key(1000 + id));
  }
  std::vector<std::string_view> views(keys.begin(), keys.end());
  const std::thread::id caller = std::this_thread::get_id();
  std::mutex mu;
  std::vector<std::uint64_t> reader_ids;  // delivered by the reader loop, in order
  std::map<std::uint32_t, int> times;
  PromiseResult promised = cache->Promise(views, [&](const PromisedChunk& chunk) {
    std::lock_guard lock(mu);
    EXPECT_TRUE(chunk.status.ok()) << chunk.status.ToString();
    const std::uint64_t id = IdOf(keys[chunk.key_index]);
    EXPECT_EQ(chunk.value, Value(id, 3000));
    if (std::this_thread::get_id() != caller) reader_ids.push_back(id);
    ++times[chunk.key_index];
  });
  ASSERT_EQ(promised.missing.size(), 6u);
  for (std::uint32_t index : promised.missing) EXPECT_GE(IdOf(keys[index]), 1000u);
  EXPECT_EQ(promised.promised, 60u);
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard lock(mu);
    return times.size() == 60;
  }));
  std::lock_guard lock(mu);
  for (const auto& [index, count] : times) EXPECT_EQ(count, 1) << index;
  // Keys of the segment being written are read by the caller (unpinned); the others come from
  // the reader loop, oldest segment first and in offset order: ids 0..41 ascending.
  ASSERT_EQ(reader_ids.size(), 42u);
  for (std::size_t i = 0; i < reader_ids.size(); ++i) EXPECT_EQ(reader_ids[i], i);
  EXPECT_EQ(cache->stats().promised_chunks, 60u);
}

TEST(ChunkCacheTest, WarmRestartServesWhatWasWritten) {
  TempDir dir;
  {
    auto cache = MustOpen(dir.File("cache"), SmallOptions());
    for (std::uint64_t id = 0; id < 50; ++id)
      ASSERT_TRUE(cache->Insert(Key(id), Value(id, 2000 + id)).ok());
    ASSERT_TRUE(cache->Close().ok());
  }
  auto cache = MustOpen(dir.File("cache"), SmallOptions());
  EXPECT_EQ(cache->stats().warm_restart_entries, 50u);
  std::string value;
  for (std::uint64_t id = 0; id < 50; ++id) {
    ASSERT_TRUE(cache->Lookup(Key(id), &value).ok()) << id;
    EXPECT_EQ(value, Value(id, 2000 + id));
  }
  // Appends go on after the restart, and a second restart sees both.
  for (std::uint64_t id = 50; id < 300; ++id) {
    ASSERT_TRUE(cache->Insert(Key(id), Value(id, 2000)).ok());
    if (id % 32 == 0) cache->Flush();  // no drop on a full queue, however slow the writer
  }
  ASSERT_TRUE(cache->Close().ok());
  cache = MustOpen(dir.File("cache"), SmallOptions());
  EXPECT_TRUE(cache->Lookup(Key(299), &value).ok());
  EXPECT_EQ(value, Value(299, 2000));
  EXPECT_EQ(cache->stats().damaged_entries_dropped, 0u);
  Result<CacheCheckReport> report = CheckCacheFile(dir.File("cache"));
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->findings.empty()) << report->findings[0].message;
  EXPECT_EQ(report->segments, 8u);
}

TEST(ChunkCacheTest, AnotherGeometryReformatsTheFile) {
  TempDir dir;
  {
    auto cache = MustOpen(dir.File("cache"), SmallOptions(8));
    ASSERT_TRUE(cache->Insert(Key(1), Value(1, 100)).ok());
    ASSERT_TRUE(cache->Close().ok());
  }
  auto cache = MustOpen(dir.File("cache"), SmallOptions(16));
  EXPECT_FALSE(cache->Contains(Key(1)));
  EXPECT_EQ(cache->stats().warm_restart_entries, 0u);
}

// A crash mid-write, simulated: the last entry written is torn (its second half zeroed), one
// older entry has a flipped bit, and one segment header is damaged. A reopen must drop exactly
// those entries (and the damaged segment's), count them, and serve the rest intact; fsck
// names each spot.
TEST(ChunkCacheTest, TornAndCorruptBytesAreDetectedAndDropped) {
  TempDir dir;
  const std::string path = dir.File("cache");
  std::map<std::uint64_t, std::uint64_t> where;  // id -> file offset of its entry
  {
    auto cache = MustOpen(path, SmallOptions());
    for (std::uint64_t id = 0; id < 60; ++id)
      ASSERT_TRUE(cache->Insert(Key(id), Value(id, 3000)).ok());
    ASSERT_TRUE(cache->Close().ok());
  }
  // Entries are 3049 bytes; a 64 KiB segment holds 21 of them (64 + 21 * 3049 = 64093).
  const std::uint64_t entry = EntryBytes(17, 3000);
  auto offset_of = [&](std::uint64_t id) {
    return (id / 21) * kSegment + kSegmentHeaderBytes + (id % 21) * entry;
  };
  ASSERT_EQ(ReadAt(path, offset_of(59) + kEntryHeaderBytes, 17), Key(59));
  WriteAt(path, offset_of(59) + entry / 2, std::string(entry - entry / 2, '\0'));  // torn
  std::string byte = ReadAt(path, offset_of(5) + 1000, 1);
  byte[0] ^= 0x04;
  WriteAt(path, offset_of(5) + 1000, byte);  // bit rot in segment 0
  WriteAt(path, 1 * kSegment + 30, "X");     // segment 1's header (ids 21..41)

  Result<CacheCheckReport> report = CheckCacheFile(path);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(report->findings.size(), 3u);
  EXPECT_EQ(report->findings[0].segment_index, 0u);
  EXPECT_EQ(report->findings[0].file_offset, offset_of(5));
  EXPECT_EQ(report->findings[1].segment_index, 1u);
  EXPECT_EQ(report->findings[1].file_offset, kSegment);
  EXPECT_EQ(report->findings[2].file_offset, offset_of(59));
  EXPECT_NE(report->findings[2].message.find("segment 2 at offset"), std::string::npos);

  auto cache = MustOpen(path, SmallOptions());
  std::string value;
  for (std::uint64_t id = 0; id < 60; ++id) {
    const bool lost = id == 5 || id == 59 || (id >= 21 && id < 42);
    Status status = cache->Lookup(Key(id), &value);
    if (lost) {
      EXPECT_TRUE(status.IsNotFound()) << id;
    } else {
      ASSERT_TRUE(status.ok()) << id << ": " << status.ToString();
      EXPECT_EQ(value, Value(id, 3000));
    }
  }
  // The damaged header and the two entries.
  EXPECT_EQ(cache->stats().damaged_entries_dropped, 3u);
  // The cache works on: the key is written again (after the torn bytes) and served.
  ASSERT_TRUE(cache->Insert(Key(59), Value(59, 3000)).ok());
  cache->Flush();
  ASSERT_TRUE(cache->Lookup(Key(59), &value).ok());
  EXPECT_EQ(value, Value(59, 3000));
}

// A file cut short in the middle of a segment (a copy that stopped, a truncate): the entries
// before the cut are served, the entry cut in two is detected and dropped, the rest is gone.
TEST(ChunkCacheTest, TruncatedFileKeepsTheEntriesBeforeTheCut) {
  TempDir dir;
  const std::string path = dir.File("cache");
  {
    auto cache = MustOpen(path, SmallOptions());
    for (std::uint64_t id = 0; id < 60; ++id) {
      ASSERT_TRUE(cache->Insert(Key(id), Value(id, 3000)).ok());
    }
    ASSERT_TRUE(cache->Close().ok());
  }
  // 21 entries of 3049 bytes per segment: cut in the middle of id 30 (segment 1, 10th entry).
  const std::uint64_t entry = EntryBytes(17, 3000);
  const std::uint64_t cut = kSegment + kSegmentHeaderBytes + 9 * entry + entry / 2;
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(cut)), 0);
  auto cache = MustOpen(path, SmallOptions());
  std::string value;
  for (std::uint64_t id = 0; id < 60; ++id) {
    Status status = cache->Lookup(Key(id), &value);
    if (id < 30) {
      ASSERT_TRUE(status.ok()) << id << ": " << status.ToString();
      EXPECT_EQ(value, Value(id, 3000));
    } else {
      EXPECT_TRUE(status.IsNotFound()) << id;
    }
  }
  EXPECT_EQ(cache->stats().damaged_entries_dropped, 1u);  // the entry cut in two
  ASSERT_TRUE(cache->Insert(Key(100), Value(100, 3000)).ok());
  cache->Flush();
  EXPECT_TRUE(cache->Lookup(Key(100), &value).ok());
}

// Damage that appears while the cache runs (a byte flipped under it) is caught at Lookup.
TEST(ChunkCacheTest, DamageUnderARunningCacheIsAMissNeverServed) {
  TempDir dir;
  const std::string path = dir.File("cache");
  auto cache = MustOpen(path, SmallOptions());
  ASSERT_TRUE(cache->Insert(Key(1), Value(1, 3000)).ok());
  cache->Flush();
  std::string byte = ReadAt(path, kSegmentHeaderBytes + 500, 1);
  byte[0] ^= 0x01;
  WriteAt(path, kSegmentHeaderBytes + 500, byte);
  std::string value;
  EXPECT_TRUE(cache->Lookup(Key(1), &value).IsNotFound());
  EXPECT_FALSE(cache->Contains(Key(1)));  // dropped from the index
  EXPECT_EQ(cache->stats().damaged_entries_dropped, 1u);
}

// A real kill -9 of a process inserting as fast as it can, then a reopen: whatever is
// served is intact (possibly nothing of the last moments).
TEST(ChunkCacheTest, KillDuringWritesThenReopenServesOnlyIntactEntries) {
  TempDir dir;
  const std::string path = dir.File("cache");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Result<std::unique_ptr<ChunkCache>> cache = ChunkCache::Open(path, SmallOptions());
    if (!cache.ok()) ::_exit(1);
    for (std::uint64_t id = 0;; ++id) {
      (void)(*cache)->Insert(Key(id % 5000), Value(id % 5000, 1000 + (id % 7) * 1000));
      if (id % 64 == 0) (*cache)->Flush();
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wstatus)) << "the child exited early: " << wstatus;

  auto cache = MustOpen(path, SmallOptions());
  std::string value;
  int served = 0;
  for (std::uint64_t id = 0; id < 5000; ++id) {
    if (!cache->Lookup(Key(id), &value).ok()) continue;
    ++served;
    bool matches = false;
    for (std::uint64_t k = 0; k < 7 && !matches; ++k) matches = value == Value(id, 1000 + k * 1000);
    EXPECT_TRUE(matches) << id;
  }
  EXPECT_GT(served, 0);
  EXPECT_EQ(static_cast<std::uint64_t>(served), cache->stats().hits);
}

TEST(ChunkCacheTest, LookupAsyncRunsOnTheScheduler) {
  TempDir dir;
  auto cache = MustOpen(dir.File("cache"), SmallOptions());
  ASSERT_TRUE(cache->Insert(Key(7), Value(7, 1234)).ok());
  cache->Flush();
  io::SchedulerOptions options;
  options.io_threads = 1;
  options.fixed_buffer_count = 0;
  Result<std::unique_ptr<io::Scheduler>> scheduler = io::Scheduler::Create(options);
  ASSERT_TRUE(scheduler.ok()) << scheduler.status().ToString();
  std::string value;
  Status status = (*scheduler)->BlockOn(cache->LookupAsync(Key(7), &value));
  EXPECT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(value, Value(7, 1234));
  EXPECT_TRUE((*scheduler)->Shutdown().ok());
}

TEST(ChunkCacheTest, CheckCacheFileErrors) {
  TempDir dir;
  EXPECT_TRUE(CheckCacheFile(dir.File("absent")).status().IsNotFound());
  // A file that is not a whole number of segments is reported, not an error.
  {
    const int fd = ::open(dir.File("odd").c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_EQ(::ftruncate(fd, 3 * kSegment + 10), 0);
    ::close(fd);
  }
  Result<CacheCheckReport> report = CheckCacheFile(dir.File("odd"), kSegment);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->findings.size(), 1u);
  EXPECT_EQ(report->segments_empty, 3u);
  EXPECT_TRUE(CheckCacheFile(dir.File("odd"), 5000).status().IsInvalidArgument());
}

}  // namespace
}  // namespace cascadefs::cache
