// mount.h: a mounted cascadefs filesystem, as the `cascadefs mount` daemon runs it.
//
// Mount::Start opens (or creates) the store, mounts it with the kernel (libfuse3 performs the
// mount(2) or fusermount3 call; cascadefs speaks the protocol itself, docs/fusefs.md) and
// serves requests on the io_uring scheduler until the filesystem is unmounted, by
// `cascadefs umount`, umount(8), fusermount3 -u, or Unmount here.
//
// Lifecycle: Start -> (serving) -> Unmount or an external unmount -> Wait returns after the
// daemon flushed every file, flushed the engine's memtable (the next mount replays no WAL)
// and closed the store.
//
// Thread safety: Unmount, stats and CollectGarbage may be called from any thread that is not
// one of the mount's IO threads; Wait from one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/result.h"
#include "engine/status.h"
#include "fusefs/check.h"

namespace cascadefs::fusefs {

// How the kernel's requests reach the daemon (docs/fuse-io-uring.md).
enum class Transport : std::uint8_t {
  // io_uring when the kernel offers it (Linux >= 6.14 with the fuse module's enable_uring
  // parameter on), else /dev/fuse, with one log line saying why.
  kAuto = 0,
  kIoUring = 1,  // the kernel's FUSE-over-io_uring queues, or Start fails saying why
  kDevFuse = 2,  // read(2) and write(2) of /dev/fuse
};

struct MountOptions {
  // The store directory (created on first use) and the directory to mount on.
  std::string store_dir;
  std::string mountpoint;
  // Mount read-only (the kernel refuses writes with EROFS). Default: false.
  bool read_only = false;
  // Let other users in (mount option allow_other), under the kernel's permission checks
  // (default_permissions is always on). Only root may; `cascadefs mount` sets it as root.
  // Default: false.
  bool allow_other = false;
  // Largest write the kernel sends; read requests are as large. Multiple of 4096,
  // 4 KiB..1 MiB. Default: 1 MiB.
  std::uint32_t max_write_bytes = 1 << 20;
  // Kernel requests read and handled at once. Each holds a buffer of max_write_bytes plus
  // 5 KiB: with the defaults, 32 MiB. Range: 1..1024. Default: 32.
  std::uint32_t requests_in_flight = 32;
  // The kernel's read-ahead for the mount (its bdi's read_ahead_kb), set once the mount
  // answers. The kernel's own 128 KiB sends reads of 128 KiB: too little to keep many chunk
  // reads in flight. Needs root (sysfs); otherwise the kernel's value stays, and the log says
  // so. 0 leaves the kernel's value. Range: 0..65536. Default: 1024 (one max_write).
  std::uint32_t read_ahead_kb = 1024;
  Transport transport = Transport::kAuto;
  // io_uring transport: ring entries per queue (the kernel has one queue per possible CPU).
  // Each entry holds a payload buffer of max_write_bytes plus 4.4 KiB, so with the defaults
  // on 2 CPUs: 32 MiB. While the io_uring transport serves, only 2 /dev/fuse reads stay
  // posted (the kernel sends FORGET and INTERRUPT there). Range: 1..256. Default: 16.
  std::uint32_t uring_queue_depth = 16;
  // Seconds the kernel caches names and attributes. Default: 1.
  double entry_timeout_sec = 1.0;
  double attr_timeout_sec = 1.0;
  // Per-file and total unflushed write bytes (docs/fusefs.md, "Memory").
  // Defaults: 64 MiB and 256 MiB.
  std::uint64_t dirty_bytes_per_file_max = 64 << 20;
  std::uint64_t dirty_bytes_max = 256 << 20;
  // Free bytes kept back on the store's filesystem so deletes work when it is full.
  // Default: 256 MiB.
  std::uint64_t space_reserve_bytes = 256 << 20;
  // The engine's block cache. Default: 256 MiB.
  std::uint64_t block_cache_bytes = 256 << 20;
  // Chunks of 512 bytes and more go to the engine's value log (docs/formats/vlog.md): written
  // once, never rewritten by compactions. Off by default: with it a deleted file's space
  // returns only after a gc cycle and the value log's GC, while the LSM alone frees
  // compaction's slack at once (what a full store needs to make room). Default: false.
  bool value_log = false;
  // Seconds between the daemon's gc cycles, which delete the chunks no file refers to while
  // the mount serves (docs/fsck.md, "gc"); the first runs one interval after the start. A
  // periodic cycle leaves the space to background compaction; `cascadefs gc STORE` runs one
  // now and compacts. 0: only on request. Range: 0..31,536,000 (a year). Default: 3,600.
  std::uint32_t gc_interval_sec = 3600;
  // The chunk cache (docs/cache.md): a file of this size, in 1 MiB segments, that chunk reads
  // check before the engine; it survives restarts (warm). Larger holds more of a working set
  // that outgrows the page cache; it is disk space, and ~100 bytes of index memory per
  // cached chunk. The size used is this, capped at an eighth of the free space beside the
  // file (the cache never takes the store's room) and rounded down to a power of two of MiB;
  // below 4 MiB the cache is off. 0: no cache. Range: 0, or 4 MiB..1 TiB. Default: 1 GiB.
  std::uint64_t chunk_cache_bytes = std::uint64_t{1} << 30;
  // Where the cache file lives. Empty: "<store_dir>/cache". Default: empty.
  std::string chunk_cache_path;
  // Appends one line per chunk a read asks for, "HEX-NAME LENGTH", to this file: the request
  // stream `cache_bench --trace` replays. Costs a locked write per chunk; for benchmarks.
  // Empty: none. Default: empty.
  std::string chunk_trace_path;
  // Sync with a hub (docs/sync.md): "HOST:PORT" of `cascadefs serve`; empty: not synced.
  // Local changes are committed about 100 ms after the last one (at most 1 s after the
  // first), remote ones applied as they are journaled. Default: empty.
  std::string sync_hub;
  // The pre-shared key file (`cascadefs keygen`) the hub holds too. Required with sync_hub.
  std::string sync_key_file;
  // The hub's namespace this mount follows: 1..64 of [A-Za-z0-9._-]. Default: "default".
  std::string sync_namespace = "default";
  // Apply remote changes, never commit local ones. Default: false.
  bool sync_receive_only = false;
  // Log lines (engine recovery, damaged records, the unmount). Called from any thread.
  std::function<void(std::string_view)> log;
};

// A kernel request being handled now.
struct MountRequest {
  std::uint32_t opcode = 0;  // FUSE opcode (linux/fuse.h)
  std::uint64_t nodeid = 0;
  std::uint64_t age_ms = 0;
};

struct MountStats {
  std::string transport;  // "io-uring" or "dev-fuse"
  // The read-ahead set on the mount (MountOptions::read_ahead_kb); 0 when the kernel's stays.
  std::uint32_t read_ahead_kb = 0;
  std::uint64_t requests = 0;
  // Replies with an error, except those of normal operation: ENOENT of a lookup, ENODATA and
  // ERANGE of xattr calls, ENOSYS and EOPNOTSUPP of features not offered.
  std::uint64_t errors = 0;
  std::uint64_t reads = 0;
  std::uint64_t writes = 0;
  std::uint64_t read_bytes = 0;
  std::uint64_t write_bytes = 0;
  std::uint64_t dirty_bytes = 0;
  std::uint64_t inodes_cached = 0;
  std::uint64_t data_flushes = 0;
  std::uint64_t chunks_written = 0;
  std::uint64_t chunks_reused = 0;
  std::uint64_t fsyncs = 0;  // WAL syncs asked for by fsync, fsyncdir, syncfs
  std::uint64_t engine_sst_files = 0;
  std::uint64_t engine_sst_bytes = 0;
  std::uint64_t engine_block_cache_bytes = 0;
  std::uint64_t memory_rss_bytes = 0;  // resident set of the daemon process
  std::uint64_t gc_cycles = 0;         // finished gc cycles
  std::uint64_t gc_deleted_chunks = 0;
  std::uint64_t gc_deleted_bytes = 0;
  std::string gc_last_error;       // of the last cycle; empty when it succeeded
  std::uint64_t read_retries = 0;  // reads that met a root replaced and collected meanwhile
  // The chunk cache (all 0 without one): chunks served by it and read from the engine past
  // it; its size, contents and the bounds it hit (cache/chunk_cache.h, ChunkCacheStats).
  std::uint64_t cache_hits = 0;
  std::uint64_t cache_misses = 0;
  std::uint64_t cache_capacity_bytes = 0;
  std::uint64_t cache_bytes = 0;
  std::uint64_t cache_entries = 0;
  std::uint64_t cache_inserts_dropped = 0;  // the insert queue was at its bound
  std::uint64_t cache_writer_waits = 0;     // the writer waited for a promise at the head
  std::uint64_t cache_damaged_entries = 0;  // found damaged, dropped, never served
  std::uint64_t cache_promised_reads = 0;
  std::uint64_t cache_promise_latency_us_max = 0;
  std::vector<MountRequest> oldest_requests;  // up to 8 in progress, oldest first
  // Sync (MountOptions::sync_hub; all empty or 0 without it): the connection's state, the
  // journal cursor applied and the hub's head, local paths not yet committed at the last
  // look, and counts of what went each way.
  bool sync_enabled = false;
  std::string sync_state;  // "connected", "connecting", "offline", "stopped"
  std::string sync_last_error;
  std::uint64_t sync_cursor = 0;
  std::uint64_t sync_head = 0;
  std::uint64_t sync_pending = 0;
  std::uint64_t sync_commits = 0;
  std::uint64_t sync_applied = 0;
  std::uint64_t sync_conflicts = 0;
  std::uint64_t sync_uploaded_chunks = 0;
  std::uint64_t sync_uploaded_bytes = 0;
  std::uint64_t sync_fetched_chunks = 0;
  std::uint64_t sync_fetched_bytes = 0;
  std::uint64_t sync_wire_bytes_sent = 0;
  std::uint64_t sync_wire_bytes_received = 0;
};

class Mount {
 public:
  // Returns once the kernel's FUSE_INIT is answered: the mount point then serves requests.
  // Errors name the mount point or store: a store in use (Busy), a store of a newer format
  // (NotSupported), a dead mount left on the mount point, a mount(2) refusal.
  // REQUIRES: called before any other thread of the process needs to fork (it starts threads).
  static Result<std::unique_ptr<Mount>> Start(const MountOptions& options);

  virtual ~Mount() = default;

  // Flushes every file and syncs, then unmounts. Busy ("target is busy") when files are still
  // open on it; the mount then keeps serving. Returns once the kernel has let go; Wait then
  // finishes the teardown.
  virtual Status Unmount() = 0;
  // Blocks until the filesystem is unmounted (by anyone), then flushes and closes the store.
  // Returns the first error of that teardown.
  virtual Status Wait() = 0;

  virtual MountStats stats() const = 0;

  // Runs one gc cycle now and compacts, while the mount serves; waits for a running cycle
  // first. Busy when the cycle had to stop (too many writes during it: run it again).
  virtual Result<GcReport> CollectGarbage() = 0;
};

}  // namespace cascadefs::fusefs
