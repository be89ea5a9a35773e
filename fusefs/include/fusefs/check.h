// check.h: fsck's logical layer and gc, over a store's keys (docs/fsck.md, "Chunks, recipes,
// namespace", and "gc").
//
// CheckNamespace reads every key of the store once, in key order, through the engine: every
// chunk is decoded and hashed against its name; every regular file's recipe tree is walked
// (every node decodes, every referenced chunk is present and intact, lengths add up to the
// inode's size); the namespace is checked as a whole (the superblock, every inode record,
// each directory entry's twin, link counts, directory entry counts and parents, reachability
// from the root, xattr counts, orphans). Findings name the inode and a path to it (or the
// chunk); the engine-file layer (engine/check.h) names files and offsets.
//
// With `repair`, what can be fixed without guessing is fixed, each fix one atomic write batch:
// a missing twin of a directory entry is rebuilt from the other; an entry naming no inode is
// removed; link counts, entry counts, xattr counts, a directory's parent and the superblock's
// next inode number are set to what the keys show; an inode no directory reaches is linked
// into /lost+found as "#INO"; an inode with no links and no orphan key is deleted; a missing
// root inode is written again. A file whose chunks are missing or damaged keeps naming them
// (nothing can be rebuilt without guessing): repair deletes damaged chunk bytes and records
// each such chunk as lost ("l" key), after which fsck reports the file as a warning and a write
// of the same bytes heals it. An inode record that does not decode is reported and left.
//
// CollectGarbage deletes every chunk that no inode's recipe tree refers to in a snapshot (the
// roots: every inode record, open-unlinked files included; a store keeps no older roots), and
// the lost-chunk records no file needs, then compacts so the space returns. CheckNamespace and
// CollectGarbage need a store no other writer uses (a mount holds its LOCK); the daemon runs
// CollectGarbageAsync with its fence.
//
// Memory: one entry per inode, directory entry and chunk (about 100 bytes each), like e2fsck's
// in-memory maps; a store of 10 M chunks needs about 1 GiB.
//
// Blocking calls: REQUIRES not on an IO thread of the store's scheduler.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/check.h"
#include "engine/io/task.h"
#include "engine/result.h"

namespace cascadefs::engine {
class DB;
}

namespace cascadefs::fusefs {

class ChunkGcFence;

struct NamespaceFinding {
  engine::CheckSeverity severity = engine::CheckSeverity::kError;
  std::optional<std::uint64_t> ino;  // the inode concerned, when there is one
  std::string path;                  // a path to it ("" when no directory reaches it)
  std::string chunk;                 // the chunk concerned, in hex, when there is one
  std::string problem;               // what is wrong, one line
  bool repaired = false;             // --repair fixed it
};

struct NamespaceCheckProgress {
  std::string phase;  // "keys", "recipes", "namespace", "repair"
  std::uint64_t done = 0;
  std::uint64_t total = 0;  // 0 when not known in advance
};

struct NamespaceCheckOptions {
  bool repair = false;
  // Called now and then (at most every 4,096 items); may be empty.
  std::function<void(const NamespaceCheckProgress&)> progress;
};

struct NamespaceCheckReport {
  std::vector<NamespaceFinding> findings;
  std::uint64_t inodes = 0;
  std::uint64_t directories = 0;
  std::uint64_t files = 0;
  std::uint64_t symlinks = 0;
  std::uint64_t entries = 0;  // directory entries ("d" keys)
  std::uint64_t chunks = 0;
  std::uint64_t chunk_bytes = 0;         // uncompressed bytes of every stored chunk
  std::uint64_t chunk_stored_bytes = 0;  // their stored (encoded) size
  std::uint64_t referenced_chunks = 0;   // chunks some recipe tree names
  std::uint64_t unreferenced_chunks = 0;
  std::uint64_t unreferenced_bytes = 0;      // stored bytes gc would free
  std::uint64_t file_bytes = 0;              // sum of regular files' sizes (holes included)
  std::uint64_t file_data_bytes = 0;         // the same without holes
  std::uint64_t referenced_chunk_bytes = 0;  // uncompressed bytes of referenced chunks
  std::uint64_t files_damaged = 0;           // files with a missing or damaged chunk
  std::uint64_t files_with_lost_data = 0;    // files naming chunks recorded lost (warnings)
  std::uint64_t garbage_chunks_deleted = 0;  // --repair: unreferenced chunks deleted
  std::uint64_t errors() const;              // findings of severity kError
  std::uint64_t errors_left() const;         // errors not repaired
  std::uint64_t repaired() const;            // errors repaired
};

// Checks (and with options.repair, repairs) the namespace, recipes and chunks of `db`. An error
// Status only when the check could not run (a read of the store failed); damage is in the
// report. Repair writes need `db` opened for writing.
Result<NamespaceCheckReport> CheckNamespace(engine::DB* db, const NamespaceCheckOptions& options);

struct GcOptions {
  bool dry_run = false;  // count, delete nothing
  // Compact the whole store after deleting, so the space returns now (the command and a
  // requested cycle); a periodic cycle in the daemon leaves it to background compaction.
  bool compact = true;
  std::function<void(const NamespaceCheckProgress&)> progress;
  // Asked between steps (every chunk key and inode); true stops the cycle with Busy, having
  // deleted only whole batches. May be empty.
  std::function<bool()> cancelled;
};

struct GcReport {
  std::uint64_t chunks = 0;             // chunks in the snapshot
  std::uint64_t referenced_chunks = 0;  // kept: a tree names them
  std::uint64_t deleted_chunks = 0;
  std::uint64_t deleted_bytes = 0;         // their stored size
  std::uint64_t kept_touched_chunks = 0;   // unreferenced, but written again during the cycle
  std::uint64_t lost_records_removed = 0;  // "l" keys no file needs any more
};

// Deletes the chunks no inode refers to (see the file comment). Refuses (deleting nothing)
// when an inode record does not decode or a recipe tree cannot be walked: what they name is
// unknown. REQUIRES: no other writer (the daemon uses CollectGarbageAsync with its fence).
Result<GcReport> CollectGarbage(engine::DB* db, const GcOptions& options);

// The same as a task. With `fence` (the daemon's, fs/gc_fence.h), writes may run meanwhile:
// chunks written during the cycle are never deleted.
io::Task<Result<GcReport>> CollectGarbageAsync(engine::DB* db, ChunkGcFence* fence,
                                               GcOptions options);

}  // namespace cascadefs::fusefs

namespace cascadefs::fusefs {

// `cascadefs inspect STORE file PATH`: a file's inode and its recipe tree, parents first.
struct TreeEntryInfo {
  int level = 0;             // 0: a leaf chunk or a hole; >= 1: a recipe node
  std::uint64_t offset = 0;  // the file offset of the entry's first byte
  std::uint64_t length = 0;  // file bytes under it
  std::string chunk;         // hex name; empty for a hole
  std::uint64_t stored_bytes = 0;
  bool present = true;  // false: the chunk is missing or damaged (shown, never hidden)
};

struct FileInfo {
  std::uint64_t ino = 0;
  std::uint32_t mode = 0;
  std::uint32_t nlink = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint64_t size = 0;
  std::uint64_t hole_bytes = 0;
  std::int64_t mtime_ns = 0;
  int height = 0;
  std::string chunker;  // "text" or "binary"
  std::string root;     // hex; empty for an empty or all-hole file
  std::string symlink_target;
  std::vector<TreeEntryInfo> tree;
  std::uint64_t leaves = 0;
  std::uint64_t nodes = 0;
  std::uint64_t stored_bytes = 0;  // of every distinct chunk of the tree
};

// NotFound naming the component when PATH does not resolve.
Result<FileInfo> InspectFile(engine::DB* db, std::string_view path);

// `cascadefs inspect STORE chunk HASH`: a chunk and every file that refers to it.
struct ChunkInfo {
  std::string chunk;  // hex
  bool present = false;
  bool damaged = false;
  std::string problem;
  std::uint64_t length = 0;  // uncompressed
  std::uint64_t stored_bytes = 0;
  bool compressed = false;
  bool node = false;  // a recipe node (it decodes as one and a tree names it at level >= 1)
  struct Reference {
    std::uint64_t ino = 0;
    std::string path;          // "" when no directory reaches the inode
    std::uint64_t offset = 0;  // the file offset where the chunk's bytes start
  };
  std::vector<Reference> references;
};

Result<ChunkInfo> InspectChunk(engine::DB* db, std::string_view hex);

// `cascadefs inspect STORE chunks`: dedup and compression over the whole store (reads every
// chunk).
struct ChunkSummary {
  std::uint64_t files = 0;
  std::uint64_t file_bytes = 0;  // regular files' data, holes excluded
  std::uint64_t chunks = 0;
  std::uint64_t chunk_bytes = 0;   // distinct chunks, uncompressed
  std::uint64_t stored_bytes = 0;  // distinct chunks as stored
  std::uint64_t referenced_chunk_bytes = 0;
  std::uint64_t unreferenced_chunks = 0;
  std::uint64_t unreferenced_bytes = 0;  // stored
  double dedup_ratio() const;            // file_bytes / referenced_chunk_bytes (1 when empty)
  double compression_ratio() const;      // chunk_bytes / stored_bytes (1 when empty)
};

Result<ChunkSummary> SummarizeChunks(engine::DB* db);

}  // namespace cascadefs::fusefs

#include "cache/chunk_cache.h"
#include "engine/repair.h"

namespace cascadefs::fusefs {

// `cascadefs fsck`: every layer of a store, in order (docs/fsck.md, "Running it").
//  1. The store's LOCK is taken (a mounted store: Busy, nothing read).
//  2. The engine's files are checked (engine::CheckStoreFiles).
//  3. With `repair` and engine damage: the engine's files are repaired
//     (engine::RepairStoreFiles): intact entries kept, what is lost dropped and reported.
//  4. The chunk cache file, when there is one (cache::CheckCacheFile).
//  5. When the engine's files are (now) intact, the chunks, recipes and namespace are checked
//     (CheckNamespace), and with `repair` repaired, over the engine opened for writing; else
//     over the engine opened read-only, when it opens at all.
// Nothing is written without `repair`.
struct FsckOptions {
  bool repair = false;
  std::function<void(const engine::CheckProgress&)> engine_progress;  // may be empty
  std::function<void(const NamespaceCheckProgress&)> progress;        // may be empty
};

struct FsckReport {
  engine::CheckReport engine;                         // the engine's files as found
  std::optional<engine::RepairReport> engine_repair;  // when --repair met engine damage
  NamespaceCheckReport logical;                       // chunks, recipes, namespace
  // The chunk cache file (STORE/cache), when there is one. Its damage is a note: the cache
  // never serves a damaged entry (its checksums and the read path's hash check), so nothing
  // is lost but hits. --repair deletes a damaged file (the next mount starts it empty).
  std::optional<cache::CacheCheckReport> cache;
  bool cache_removed = false;
  bool engine_repaired() const;  // the repair left no engine error
  std::uint64_t errors() const;
  std::uint64_t errors_left() const;
  std::uint64_t repaired() const;
  std::uint64_t warnings() const;
  std::uint64_t notes() const;
  // e2fsck's: 0 clean (warnings and notes allowed), 1 every error repaired, 4 errors left.
  int exit_code() const;
};

// Runs fsck over the store in `dir` (see above). An error Status only when the check could
// not run: `dir` is not a store (InvalidArgument), the store is in use (Busy), a repair step
// failed (its Status). REQUIRES: not on an IO thread of `scheduler`.
Result<FsckReport> FsckStore(io::Scheduler* scheduler, const std::string& dir,
                             const FsckOptions& options);

}  // namespace cascadefs::fusefs
