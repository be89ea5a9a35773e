// env.h: every file operation of the cascade engine goes through an Env.
//
// Design: the engine never calls the OS directly. The default Env (NewSchedulerEnv) runs each
// operation as an io_uring operation on the engine's io::Scheduler; tests swap in MemEnv (files
// in memory, engine/env/mem_env.h) or FaultEnv (tests/fault/: drops unsynced data at a
// simulated power cut, injects EIO and ENOSPC). All methods returning io::Task must be awaited
// on an IO thread of the Env's scheduler. The few operations io_uring cannot do (listing a
// directory, taking the store's lock, truncating) are blocking calls, made while the store
// opens, and by a checkpoint that failed, to list the partial directory it removes.
//
// Durability model (what FaultEnv simulates and what the engine relies on):
//  1. Data written to a file survives a power cut only after that file's Sync() returned OK.
//  2. A new file's name, a rename and a removal survive a power cut only after SyncDir() of
//     the directory holding them returned OK.
//  3. Nothing else is promised: after a power cut an unsynced region may hold old bytes, new
//     bytes, or a torn mix.
//
// Thread safety: an Env is safe to use from many tasks at once. A file object may be used by
// several tasks at once for reads; writes to one file are the caller's to order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/io/task.h"
#include "engine/result.h"
#include "engine/status.h"

namespace cascadefs::io {
class Scheduler;
}

namespace cascadefs::engine {

// A file opened for positioned reads.
class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Reads up to `size_bytes` bytes at `offset` into `scratch`. Returns the count read, which
  // is less than `size_bytes` only at end of file. Errors name the file and offset.
  // REQUIRES: scratch has room for size_bytes and stays valid until the task finishes.
  virtual io::Task<Result<std::size_t>> Read(std::uint64_t offset, std::size_t size_bytes,
                                             char* scratch) const = 0;
  // The file's size when it was opened, in bytes.
  virtual std::uint64_t size_bytes() const = 0;
  virtual const std::string& path() const = 0;
};

// A file opened for positioned writes. The engine writes SSTs and the manifest front to back
// and WAL segments at offsets of its choosing (segments are reused as a ring).
class WritableFile {
 public:
  // Closes the descriptor if Close() was not awaited (errors are then lost: await Close()).
  virtual ~WritableFile() = default;
  // Writes all of `data` at `offset` (short writes are continued). On error, the bytes at
  // [offset, offset + data.size()) are unspecified. REQUIRES: data stays valid until the task
  // finishes.
  virtual io::Task<Status> WriteAt(std::uint64_t offset, std::string_view data) = 0;
  // Makes every write that finished before this call durable (fdatasync: data and size).
  virtual io::Task<Status> Sync() = 0;
  // Reserves [offset, offset + size_bytes) on disk (fallocate, keep size false), so later
  // writes there neither fail with ENOSPC nor extend metadata. NotSupported where the file
  // system cannot; callers treat that as a hint that failed.
  virtual io::Task<Status> Allocate(std::uint64_t offset, std::uint64_t size_bytes) = 0;
  // Closes the file. Does not sync. Idempotent.
  virtual io::Task<Status> Close() = 0;
  virtual const std::string& path() const = 0;
};

// Held while the store is open; the lock is released when this is destroyed. Another
// process (or another Open in this one) trying to take it gets Status::Busy.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

enum class WriteMode : std::uint8_t {
  kCreateTruncate = 0,   // create, or truncate an existing file to 0 bytes
  kCreateExclusive = 1,  // create; fail if the file exists
  kOpenExisting = 2,     // open an existing file without truncating (reused WAL segments)
};

class Env {
 public:
  virtual ~Env() = default;

  // The scheduler whose IO threads run this Env's tasks.
  virtual io::Scheduler* scheduler() const = 0;

  // Opens `path` for writing. kCreateExclusive fails with Status::Busy when the file exists;
  // kOpenExisting fails with NotFound when it does not.
  virtual io::Task<Result<std::unique_ptr<WritableFile>>> NewWritableFile(const std::string& path,
                                                                          WriteMode mode) = 0;
  // Opens an existing file for reading. NotFound when it does not exist.
  virtual io::Task<Result<std::unique_ptr<RandomAccessFile>>> NewRandomAccessFile(
      const std::string& path) = 0;
  // rename(2): atomically replaces `to`. Durable after SyncDir of the directory.
  virtual io::Task<Status> RenameFile(const std::string& from, const std::string& to) = 0;
  // unlink(2). NotFound when the file does not exist.
  virtual io::Task<Status> RemoveFile(const std::string& path) = 0;
  // fsync(2) of a directory: makes its entries' creations, renames and removals durable.
  virtual io::Task<Status> SyncDir(const std::string& dir) = 0;
  // NotFound when nothing named `path` exists; for a directory, some size (stat's).
  virtual io::Task<Result<std::uint64_t>> FileSize(const std::string& path) = 0;
  // link(2): `to` becomes a second name of the file `from` (same bytes: a write through one
  // name shows through the other, so link only files nobody writes any more). Busy when `to`
  // exists; NotFound when `from` does not; NotSupported when the two are on different file
  // systems or this one has no hard links (the caller copies instead). The new name is
  // durable after SyncDir of its directory; the bytes are as durable as `from`'s.
  virtual io::Task<Status> LinkFile(const std::string& from, const std::string& to) = 0;
  // mkdir(2) of `dir` (not its parents). Busy when something named `dir` exists. Durable
  // after SyncDir of the parent directory.
  virtual io::Task<Status> CreateDir(const std::string& dir) = 0;
  // rename(2) of the directory `from` to `to`, with what it holds, refusing to replace
  // anything: Busy when `to` exists (RENAME_NOREPLACE). Durable after SyncDir of the parent
  // directories.
  virtual io::Task<Status> RenameDir(const std::string& from, const std::string& to) = 0;
  // rmdir(2): removes the empty directory `dir`. NotFound when it does not exist.
  virtual io::Task<Status> RemoveDir(const std::string& dir) = 0;

  // Blocking (no io_uring operation exists for these); used while a store opens.
  // Creates `dir` (not its parents) unless it exists as a directory.
  virtual Status CreateDirIfMissing(const std::string& dir) = 0;
  // The names (not paths) in `dir`, without "." and "..", in no particular order.
  virtual Result<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  // Truncates `path` to `size_bytes` (ftruncate). Used by recovery to cut a torn tail.
  virtual Status Truncate(const std::string& path, std::uint64_t size_bytes) = 0;
  // Takes an exclusive advisory lock on `path` (created if missing). Busy with a message
  // naming the path when another holder has it.
  virtual Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) = 0;
};

// The production Env: every read, write, sync, rename and removal is an io_uring operation on
// `scheduler`, which must outlive the Env.
std::unique_ptr<Env> NewSchedulerEnv(io::Scheduler* scheduler);

}  // namespace cascadefs::engine
