// options.h: how a cascade store is opened, read and written.
//
// Each option says what it does, when to change it, its unit and range, and its default.
// Options are copied at Open; changing the struct afterwards has no effect.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

namespace cascadefs::io {
class Scheduler;
}

namespace cascadefs::engine {

class Env;
class Snapshot;

// Largest user key, in bytes. Keys of the filesystem are inode numbers, directory entries
// (names up to 255 bytes) and chunk names (17 bytes); 2 KiB leaves room and keeps the
// partitioned index's entries small. Put/Delete/Write with a longer key: InvalidArgument.
inline constexpr std::size_t kKeySizeMax = 2048;
// Largest value, in bytes. The filesystem's largest values are 64 KiB chunks; 8 MiB bounds
// the memory one write or one SST data block may take. Longer: InvalidArgument.
inline constexpr std::size_t kValueSizeMax = 8 << 20;
// Largest WriteBatch, in bytes of its encoding (one WAL record stream). Larger: InvalidArgument.
inline constexpr std::size_t kWriteBatchSizeMax = 64 << 20;
// Smallest block_size_bytes and index_partition_size_bytes. Real stores use 4 KiB; tests use
// tiny blocks to make multi-block tables and multi-partition indexes out of a few keys.
inline constexpr std::uint32_t kBlockSizeMinBytes = 256;

enum class Compression : std::uint8_t {
  kNone = 0,
  kZstd = 1,
};

struct Options {
  // Creates the store when `dir` holds none. Default: true.
  bool create_if_missing = true;
  // Fails Open with InvalidArgument when the store already exists. Default: false.
  bool error_if_exists = false;
  // Opens an existing store for reading only, writing nothing to its directory (RocksDB's
  // OpenForReadOnly): for fsck and inspection of a store that may be damaged. Open reads
  // CURRENT, the manifest, the value logs and the WAL segments the manifest does not cover,
  // and keeps what the WAL replays in memory (docs/engine.md, "Read-only open"). No LOCK is
  // taken: the caller makes sure nothing writes the store meanwhile (fsck holds the store's
  // lock itself). create_if_missing is ignored (a missing store is InvalidArgument); with
  // error_if_exists Open always fails. Put, Delete, Write, Flush and Checkpoint (and their
  // coroutine forms) return NotSupported; no flush, compaction or value-log GC ever runs;
  // Close writes nothing. Memory: the replayed WAL records stay in one memtable, which is
  // not bounded by write_buffer_size_bytes (the WAL's unflushed records bound it).
  // Default: false.
  bool read_only = false;

  // The scheduler that runs the store's I/O and background work (flushes, compactions). When
  // null, Open creates one with default options and the store owns it. Share one scheduler between
  // a store and its users (the FUSE daemon) so no request hops between runtimes. Must outlive the
  // store. Default: null.
  io::Scheduler* scheduler = nullptr;
  // The Env all file I/O goes through. When null, a scheduler-backed Env on `scheduler`.
  // Tests pass a MemEnv or FaultEnv. Must outlive the store. Default: null.
  Env* env = nullptr;

  // Bytes of user data (keys + values + per-entry overhead) one memtable takes before it
  // becomes immutable and a background task flushes it to an L0 SST. Larger means fewer,
  // larger L0 files and a longer WAL replay after a crash; memory use is up to twice this
  // (one active and one flushing memtable). Range: 4 KiB..4 GiB. Default: 64 MiB.
  std::size_t write_buffer_size_bytes = 64 << 20;

  // Size of each WAL segment file. Segments are preallocated, filled front to back, and
  // reused as a ring once the memtable whose records they hold is flushed. A record larger
  // than a segment spans several. Multiple of 32 KiB (the WAL's block). Range: 64 KiB..1 GiB.
  // Default: 16 MiB.
  std::uint64_t wal_segment_size_bytes = 16 << 20;
  // Unsynced WAL bytes held in memory before they are written to the segment (without a
  // sync). A write with WriteOptions::sync, Flush and Close write them out at once. A kill -9
  // loses at most this much of the writes made without sync (a power cut loses every unsynced
  // write, as with any store). 0 writes every batch out as it commits. Range: 0..64 MiB.
  // Default: 64 KiB.
  std::size_t wal_buffer_size_bytes = 64 << 10;
  // Bytes of WAL writes in flight (submitted, not completed) at once; a writer beyond this
  // waits for completions. Bounds the memory pinned by unsynced WAL data.
  // Range: 64 KiB..1 GiB. Default: 8 MiB.
  std::size_t wal_in_flight_bytes_max = 8 << 20;

  // Target size of an SST data block before compression. Smaller blocks read less per point
  // lookup; larger ones compress better and shrink the index. Blocks start 4 KiB-aligned in
  // the file. Range: kBlockSizeMinBytes..1 MiB. Default: 4096.
  std::uint32_t block_size_bytes = 4096;
  // Keys between restart points in a block: a restart stores its key whole, the others share
  // a prefix with their predecessor. Smaller: faster seeks, larger blocks. Range: 1..1024.
  // Default: 16.
  std::uint32_t block_restart_interval = 16;
  // Target size of one index partition block (the second level of the partitioned index).
  // Range: kBlockSizeMinBytes..1 MiB. Default: 4096.
  std::uint32_t index_partition_size_bytes = 4096;
  // Bloom filter bits per key; 10 gives ~1% false positives. 0 disables filters.
  // Range: 0..32. Default: 10.
  std::uint32_t bloom_bits_per_key = 10;
  // Per-block compression of SST data blocks (a block is stored compressed only when that
  // saves at least 1/8 of its size). The filesystem compresses its chunks itself, so the
  // engine's own default is off. Default: kNone.
  Compression compression = Compression::kNone;
  // zstd level when compression is kZstd. Range: 1..19. Default: 1.
  int zstd_level = 1;

  // SST files kept open (their descriptors and parsed index/filter blocks) at once; the least
  // recently used is closed beyond it. These machines cap a process at 20,000 descriptors.
  // Range: 16..100,000. Default: 1,000.
  std::uint32_t max_open_files = 1000;
  // Bytes of parsed SST data blocks kept in memory (a sharded LRU, 16 shards); 0 disables the
  // cache. Index and filter blocks are held by each open table instead (max_open_files bounds
  // them). Range: 0..1 TiB. Default: 256 MiB.
  std::uint64_t block_cache_size_bytes = std::uint64_t{256} << 20;

  // ---- compaction (docs/engine.md, "Compaction") ----
  // Level 0 holds whole flushed memtables, whose key ranges overlap, so a point read probes
  // every level-0 file. Level-0 files are compacted into level 1 once there are this many.
  // Smaller: faster reads, more compaction work. Range: 1..1000. Default: 4.
  std::uint32_t level0_compaction_trigger = 4;
  // With this many level-0 files each write is delayed by about 1 ms, so compaction catches
  // up before writes must stop (counted in DbStats::write_slowdowns).
  // Range: level0_compaction_trigger..level0_stop_writes_trigger. Default: 20.
  std::uint32_t level0_slowdown_writes_trigger = 20;
  // With this many level-0 files writes wait until compaction brings the count below it
  // (counted in DbStats::write_stalls). Range: level0_slowdown_writes_trigger..1000.
  // Default: 36.
  std::uint32_t level0_stop_writes_trigger = 36;
  // Level 1 is compacted into level 2 once its files total more than this; level L >= 1 holds
  // up to max_bytes_for_level_base * level_size_multiplier^(L-1). Make it about the size of
  // level 0 at the compaction trigger (level0_compaction_trigger x write_buffer_size_bytes),
  // so an L0->L1 compaction rewrites about as much as it brings. Range: 16 KiB..1 TiB.
  // Default: 256 MiB.
  std::uint64_t max_bytes_for_level_base = std::uint64_t{256} << 20;
  // How much larger each level from 1 on may grow than the one above it. Larger: fewer
  // levels (fewer probes per read), more rewriting per byte (write amplification grows with
  // it). Range: 2..100. Default: 10.
  std::uint32_t level_size_multiplier = 10;
  // A compaction cuts its output into SSTs of about this size (cut only between user keys, so
  // a key with many versions may overshoot). Also cut early when one output would overlap
  // more than 10x this of the level below its own (bounding a later compaction's size).
  // Range: 2 KiB..4 GiB. Default: 64 MiB.
  std::uint64_t target_file_size_bytes = std::uint64_t{64} << 20;
  // Caps the bytes a compaction writes per second, in MiB/s; the compaction sleeps between
  // its steps when ahead of the rate. Use it to keep compaction from taking the disk's whole
  // bandwidth from foreground reads; too low and level 0 grows until writes stall.
  // 0 means unlimited. Range: 0..100,000. Default: 0.
  std::uint32_t compaction_rate_limit_mb_per_sec = 0;

  // ---- value log (docs/formats/vlog.md) ----
  // Values of at least this many bytes are written once, at the write, to the value log, and
  // the LSM (WAL, memtable, SSTs) keeps a ~15-byte pointer to them: flushes and compactions
  // then move pointers, not values. A read of such a value costs one more read. 0 keeps every
  // value in the LSM (values already separated stay readable). Range: 0 or 16..kValueSizeMax.
  // Default: 512.
  std::size_t min_blob_size_bytes = 512;
  // A value-log file rolls at about this size. Range: 64 KiB..4 GiB. Default: 256 MiB.
  std::uint64_t vlog_file_size_bytes = std::uint64_t{256} << 20;
  // Separated values appended but not yet written to their file, at most: the value log's
  // memory bound; a writer beyond it waits for the writes. Range: 1 MiB..1 GiB.
  // Default: 32 MiB.
  std::size_t vlog_unwritten_bytes_max = 32 << 20;
  // A finished value-log file whose garbage (records whose pointers compactions dropped) is at
  // least this fraction of its bytes is collected: its live values are written again (to the
  // current file, through the normal write path) and the file is deleted once no reader can
  // reach it. Lower: less space, more rewriting. Range: 0.05..1.0. Default: 0.5.
  double vlog_gc_garbage_ratio = 0.5;

  // Receives the store's few log lines (recovery truncating a torn WAL tail, a background
  // error). Called from any thread. Default: none (dropped).
  std::function<void(std::string_view line)> info_log;
};

struct ReadOptions {
  // Read as of this snapshot (GetSnapshot); null reads the latest state. Default: null.
  const Snapshot* snapshot = nullptr;
  // Iterators only. True: a value kept in the value log is read when the iterator lands on its
  // entry (hidden versions are never read). False: it is read only by PrepareValue, value() is
  // empty until then, so a scan of keys reads no value-log record (RocksDB's
  // allow_unprepared_value). Default: true.
  bool iterator_values = true;
};

struct WriteOptions {
  // When true, the write is durable when it returns: the WAL is synced (fdatasync) first,
  // sharing one sync with every writer waiting at the same time (group commit). When false,
  // a power cut may lose the write and a kill -9 may lose up to wal_buffer_size_bytes of
  // recent writes; the store stays consistent either way (a prefix of the writes survives).
  // Default: false.
  bool sync = false;
};

}  // namespace cascadefs::engine
