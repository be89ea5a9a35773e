// filesystem.h: the POSIX filesystem over the engine, independent of how requests arrive.
//
// The FUSE transports (fuse/) decode kernel requests and call these coroutines; tests may call
// them directly. Every operation returns 0 or a positive errno, like libfuse's do_* helpers,
// and fills its out-parameters only on 0.
//
// Design (docs/fusefs.md):
// - The namespace lives in the engine (fs/inode_record.h). Each metadata change is one atomic
//   WriteBatch, written while holding namespace_mutex_, which serializes every write of an
//   inode record, so a record is always written from the newest in-memory copy.
// - Inodes the kernel knows (lookup count > 0), open files and inodes an operation is using
//   are held in memory (Inode) in inodes_; the in-memory record is authoritative for them.
// - A file's writes land in its DirtyBuffer and become chunks (a new recipe root, one batch)
//   on Flush/Fsync/Release, on truncate, or when the file's or the whole filesystem's dirty
//   bytes pass their bounds (FsOptions). Reads overlay the dirty bytes on the chunks.
// - Durability: Fsync and SyncAll make the WAL durable after flushing; nothing else syncs.
//
// Lock order: Inode::data_mutex, then namespace_mutex_, then state_mutex_. state_mutex_ is a
// std::mutex held only for short sections that never await.
#pragma once

#include <sys/statvfs.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "cache/chunk_cache.h"
#include "engine/db.h"
#include "engine/io/task.h"
#include "fs/async_mutex.h"
#include "fs/dirty_buffer.h"
#include "fs/gc_fence.h"
#include "fs/inode_record.h"
#include "fusefs/check.h"
#include "fusefs/chunk_store.h"
#include "fusefs/recipe.h"

namespace cascadefs::fusefs {

struct FsOptions {
  // Unflushed written bytes one file may hold before its writer turns them into chunks.
  // Range: 1 MiB..1 GiB. Default: 64 MiB.
  std::uint64_t dirty_bytes_per_file_max = 64 << 20;
  // Unflushed written bytes of all files together; a writer that finds more flushes its own
  // file, then others, until under. Range: dirty_bytes_per_file_max..16 GiB. Default: 256 MiB.
  std::uint64_t dirty_bytes_max = 256 << 20;
  // Free space of the store's filesystem kept back: writes that would go below it get ENOSPC,
  // while deletes, truncates and renames still work so a user can make room. Range: 0..1 TiB.
  // Default: 256 MiB (room for a memtable flush).
  std::uint64_t space_reserve_bytes = 256 << 20;
  // The store directory, for statfs and the free-space check.
  std::string store_dir;
  // The chunk cache reads check before the engine (cache/chunk_cache.h; not owned, must
  // outlive the filesystem). Null: no cache. Default: null.
  cache::ChunkCache* chunk_cache = nullptr;
  // Called with every chunk a read asks for (fusefs/cached_chunk_store.h, ChunkReadTrace), for
  // recording the request stream cache_bench replays. Empty: none. Default: empty.
  std::function<void(const ChunkName& name, std::size_t length)> chunk_read_trace;
  // Log lines (a damaged record, a failed engine write). Default: dropped.
  std::function<void(std::string_view)> log;
  // Called after every namespace change is written (a create, a flush's new root, a rename,
  // a setattr...), from the IO thread that wrote it: the synced mount's cue to look for
  // local changes (fusefs/sync/sync_agent.h). Must not block. Default: none.
  std::function<void()> on_change;
};

struct FsStats {
  std::uint64_t dirty_bytes = 0;
  std::uint64_t inodes_cached = 0;
  std::uint64_t data_flushes = 0;
  std::uint64_t flushed_bytes = 0;
  std::uint64_t chunks_written = 0;
  std::uint64_t chunks_reused = 0;
  std::uint64_t wal_syncs = 0;
  std::uint64_t gc_cycles = 0;  // finished gc cycles
  std::uint64_t gc_deleted_chunks = 0;
  std::uint64_t gc_deleted_bytes = 0;
  std::uint64_t read_retries = 0;  // reads that found a chunk gone and read the new root
  // The chunk cache's side of the read path (FsOptions::chunk_cache; 0 without one): chunks
  // served by the cache, chunks read from the engine, cache answers that did not hash to
  // their name (read from the engine instead), and reads of many chunks answered by a
  // promised read.
  std::uint64_t cache_hits = 0;
  std::uint64_t cache_misses = 0;
  std::uint64_t cache_bad_entries = 0;
  std::uint64_t cache_promised_reads = 0;
};

// What a create, lookup or link returns: the inode and its attributes.
struct EntryOut {
  std::uint64_t ino = 0;
  InodeRecord attr;
};

// Fields of SetAttr, as bits of `valid`.
struct SetAttrIn {
  static constexpr std::uint32_t kMode = 1 << 0;
  static constexpr std::uint32_t kUid = 1 << 1;
  static constexpr std::uint32_t kGid = 1 << 2;
  static constexpr std::uint32_t kSize = 1 << 3;
  static constexpr std::uint32_t kAtime = 1 << 4;
  static constexpr std::uint32_t kMtime = 1 << 5;
  static constexpr std::uint32_t kAtimeNow = 1 << 6;
  static constexpr std::uint32_t kMtimeNow = 1 << 7;
  static constexpr std::uint32_t kCtime = 1 << 8;
  std::uint32_t valid = 0;
  std::uint32_t mode = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint64_t size = 0;
  std::int64_t atime_ns = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;
};

// Who asks: new inodes get these owners.
struct Caller {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
};

class Filesystem {
 public:
  // Opens the namespace of `db` (creating the root directory in a new store) and removes the
  // orphans a crash left behind. `db` must outlive the filesystem.
  static io::Task<Result<std::unique_ptr<Filesystem>>> Open(engine::DB* db, FsOptions options);
  ~Filesystem();

  // Kernel lookup counting: every successful Lookup, MakeNode, Symlink, Link and each entry
  // ReadDir's `plus` form returns counts one; Forget gives them back.
  io::Task<int> Lookup(std::uint64_t parent, std::string_view name, EntryOut* out);
  void Forget(std::uint64_t ino, std::uint64_t count);

  io::Task<int> GetAttr(std::uint64_t ino, InodeRecord* out);
  io::Task<int> SetAttr(std::uint64_t ino, const SetAttrIn& in, InodeRecord* out);
  io::Task<int> ReadLink(std::uint64_t ino, std::string* out);

  // Regular files, directories, device nodes, FIFOs and sockets by `mode`'s type bits.
  io::Task<int> MakeNode(std::uint64_t parent, std::string_view name, std::uint32_t mode,
                         std::uint32_t rdev, const Caller& caller, EntryOut* out);
  io::Task<int> Symlink(std::uint64_t parent, std::string_view name, std::string_view target,
                        const Caller& caller, EntryOut* out);
  io::Task<int> Link(std::uint64_t ino, std::uint64_t new_parent, std::string_view new_name,
                     EntryOut* out);
  io::Task<int> Unlink(std::uint64_t parent, std::string_view name);
  io::Task<int> Rmdir(std::uint64_t parent, std::string_view name);
  // `flags`: 0, RENAME_NOREPLACE or RENAME_EXCHANGE.
  io::Task<int> Rename(std::uint64_t parent, std::string_view name, std::uint64_t new_parent,
                       std::string_view new_name, std::uint32_t flags);

  // Open counting: an unlinked file lives until its last Release.
  io::Task<int> Open(std::uint64_t ino, bool truncate);
  io::Task<int> Release(std::uint64_t ino);
  io::Task<int> Read(std::uint64_t ino, std::uint64_t offset, std::uint32_t size, std::string* out);
  // Who sets mtime and ctime for a write. With the kernel's writeback cache, a write from the
  // page cache (FUSE_WRITE_CACHE) may reach us after the kernel has already sent the file's
  // times in a SETATTR; stamping "now" then would overwrite the times the kernel shows users.
  enum class WriteTimes { kStampNow, kKernelOwns };
  io::Task<int> Write(std::uint64_t ino, std::uint64_t offset, std::string_view data,
                      WriteTimes times = WriteTimes::kStampNow);
  // Close of one descriptor: the file's writes become chunks (not durable).
  io::Task<int> Flush(std::uint64_t ino);
  // The file's writes become chunks and durable, with everything written before.
  io::Task<int> Fsync(std::uint64_t ino);
  // Everything written so far becomes durable (fsync of a directory, syncfs).
  io::Task<int> SyncAll();
  // FALLOC_FL_* modes: 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE[|KEEP_SIZE].
  io::Task<int> Fallocate(std::uint64_t ino, std::uint32_t mode, std::uint64_t offset,
                          std::uint64_t length);
  io::Task<int> Lseek(std::uint64_t ino, std::uint64_t offset, int whence, std::uint64_t* out);

  // Directory listing from `cookie` (0: the start). `emit` gets each entry in cookie order with
  // the cookie that resumes after it, and the entry's attributes when `plus`; it returns false
  // when the reply is full, and that entry is then not counted as looked up.
  using DirEmitter =
      std::function<bool(std::string_view name, std::uint64_t ino, std::uint32_t mode,
                         std::uint64_t next_cookie, const InodeRecord* attr)>;
  //
  // `listing_end` bounds one listing so it ends even while entries are being created: a
  // listing from cookie 0 sets it to the directory's next cookie, and entries created after
  // that (cookies at or above it) are not listed, as POSIX allows for entries added after
  // opendir/rewinddir. 0 means no bound (a listing resumed on a handle that never started
  // one).
  io::Task<int> ReadDir(std::uint64_t ino, std::uint64_t cookie, bool plus, const DirEmitter& emit,
                        std::uint64_t* listing_end);
  io::Task<int> StatFs(struct statvfs* out);

  // `flags`: XATTR_CREATE, XATTR_REPLACE or 0.
  io::Task<int> SetXattr(std::uint64_t ino, std::string_view name, std::string_view value,
                         std::uint32_t flags);
  io::Task<int> GetXattr(std::uint64_t ino, std::string_view name, std::string* value);
  // Names, each followed by a NUL.
  io::Task<int> ListXattr(std::uint64_t ino, std::string* names);
  io::Task<int> RemoveXattr(std::uint64_t ino, std::string_view name);

  // Flushes every file's dirty bytes and syncs (unmount).
  io::Task<Status> FlushAll();

  // One gc cycle over the store while the filesystem runs (fusefs/check.h, fs/gc_fence.h):
  // deletes the chunks no inode refers to; writes and reads go on meanwhile. Cycles run one at
  // a time (a second call waits).
  io::Task<Result<GcReport>> CollectGarbage(GcOptions options);

  FsStats stats() const;

  // ---- For the synced mount (fusefs/sync/sync_agent.h), which installs remote versions. ----

  // Sets the contents of regular file `ino` to `root`, whose chunks the store already holds,
  // and its mtime; one atomic record write. EBUSY when the file has unflushed writes, EINVAL
  // when it is not a regular file.
  io::Task<int> SetFileRoot(std::uint64_t ino, const FileRoot& root, std::int64_t mtime_ns);
  // Held from before the first chunk Put of a remote file until SetFileRoot committed its
  // root, so a gc cycle cannot collect the chunks in between (fs/gc_fence.h, point 1).
  ChunkGcFence::Token HoldGcFence() { return gc_fence_.Enter(); }
  // The store and tree the filesystem reads and writes chunks through (fenced and cached).
  ChunkStore* chunk_store() { return chunk_store_.get(); }
  RecipeTree* recipe_tree() { return tree_.get(); }

 private:
  struct Inode;
  class InodeRef;
  Filesystem(engine::DB* db, FsOptions options);

  io::Task<Status> Init();
  // The shared part of mknod, mkdir, create and symlink: `rec` (type, owner, link count and
  // payload set) gets its times, setgid inheritance and number, and joins `parent`.
  io::Task<int> CreateNode(std::uint64_t parent, std::string_view name, InodeRecord rec,
                           EntryOut* out);
  // The in-memory inode `ino`, loaded from the engine if needed; ENOENT when it does not exist.
  io::Task<int> Pin(std::uint64_t ino, InodeRef* out);
  void Unpin(Inode* inode);
  io::Task<int> GetDirent(std::uint64_t parent, std::string_view name, DirentValue* out);
  // Writes `batch` (non-sync) and maps errors to errnos, logging them.
  io::Task<int> Commit(const engine::WriteBatch& batch, std::string_view what);
  io::Task<int> FlushLocked(Inode* inode);
  io::Task<int> FlushOthersOverBudget(Inode* self);
  io::Task<int> TruncateLocked(Inode* inode, std::uint64_t size);
  io::Task<int> ZeroRangeLocked(Inode* inode, std::uint64_t offset, std::uint64_t length);
  // Adds to `batch` what removes an inode whose last link and last open are gone.
  io::Task<int> AddDeleteInode(std::uint64_t ino, engine::WriteBatch* batch);
  // After a link count drop: the inode's fate (kept, orphaned while open, deleted).
  io::Task<int> AddUnlinked(Inode* inode, engine::WriteBatch* batch);
  io::Task<int> IsAncestor(std::uint64_t ancestor, std::uint64_t dir, bool* out);
  bool SpaceLow();
  int EngineErrno(const Status& status, std::string_view what);
  void Log(std::string_view line) const;

  engine::DB* const db_;
  const FsOptions options_;
  // Every chunk Put passes the fence (gc_fence.h); flushes, truncates and punches hold a token.
  ChunkGcFence gc_fence_;
  AsyncMutex gc_mutex_;  // one gc cycle at a time
  // The chunk cache's store inside chunk_store_ (null without a cache); set by the
  // constructor, then only read.
  class CachedChunkStore* cached_chunks_ = nullptr;
  std::unique_ptr<ChunkStore> chunk_store_;
  std::unique_ptr<RecipeTree> tree_;

  AsyncMutex namespace_mutex_;
  std::uint64_t next_ino_ = kRootIno + 1;  // GUARDED_BY(namespace_mutex_)

  mutable std::mutex state_mutex_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Inode>> inodes_;  // GUARDED_BY(state_mutex_)
  // Bumped by every record write; a load that saw it change retries (its copy may be stale).
  std::uint64_t record_epoch_ = 0;  // GUARDED_BY(state_mutex_)
  std::uint64_t dirty_bytes_ = 0;   // GUARDED_BY(state_mutex_)

  std::atomic<std::int64_t> space_checked_ns_{0};
  std::atomic<bool> space_low_{false};

  mutable std::mutex stats_mutex_;
  FsStats stats_;  // GUARDED_BY(stats_mutex_)
};

}  // namespace cascadefs::fusefs
