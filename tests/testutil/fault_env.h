// fault_env.h: an Env that simulates power cuts and injects I/O errors, for crash tests.
//
// FaultEnv wraps another Env (usually MemEnv) and passes every operation through, while
// remembering what a power cut would keep (env.h's durability model):
//  - a file's bytes as of its last Sync (its durable image) and the writes since then;
//  - each directory's names as of its last SyncDir (which file each name pointed to).
// SimulatePowerCut rewrites the base Env's files to what survives: every name that was not
// made durable disappears, every durable name comes back with its durable image plus, per
// PowerCutMode, none, some, or torn parts of the unsynced writes.
//
// Error injection: FailOperation makes the Nth operation of a kind fail (once, or from then
// on); SetNoSpaceAfterBytes fails writes beyond a byte budget with NoSpace;
// SetFilesystemActive(false) fails every mutating operation with IOError ("simulated power
// cut"), which freezes the disk while the store's objects are torn down.
//
// Hard links (LinkFile) give the file a second name in the same record: the name is durable
// after SyncDir of its directory, the bytes are the file's. A directory rename (RenameDir)
// moves what the directory holds, durable state included (it is one inode), and is undone by a
// power cut unless the new name's parent directory was synced after it.
//
// What is not simulated: reordering between files is covered only through what each file and
// directory made durable; metadata-only operations (Allocate) are not tracked; files that
// existed before the FaultEnv was created count as durable; creating and removing a directory
// (CreateDirIfMissing, CreateDir, RemoveDir) is durable at once.
//
// Thread safety: every method may be called from any thread (one mutex).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/env.h"

namespace cascadefs::testutil {

enum class PowerCutMode {
  kDropAll,     // only synced data survives
  kDropRandom,  // each unsynced write survives or not, independently
  kTear,        // like kDropRandom, and a surviving write may be cut at a 512-byte boundary
};

// kRename counts RenameFile and RenameDir; kRemove counts RemoveFile and RemoveDir.
enum class FaultOp { kWrite, kSync, kRename, kOpenWrite, kRead, kRemove, kSyncDir, kLink, kMkdir };

class FaultEnv final : public engine::Env {
 public:
  explicit FaultEnv(engine::Env* base);
  ~FaultEnv() override;

  io::Scheduler* scheduler() const override { return base_->scheduler(); }
  io::Task<Result<std::unique_ptr<engine::WritableFile>>> NewWritableFile(
      const std::string& path, engine::WriteMode mode) override;
  io::Task<Result<std::unique_ptr<engine::RandomAccessFile>>> NewRandomAccessFile(
      const std::string& path) override;
  io::Task<Status> RenameFile(const std::string& from, const std::string& to) override;
  io::Task<Status> RemoveFile(const std::string& path) override;
  io::Task<Status> SyncDir(const std::string& dir) override;
  io::Task<Result<std::uint64_t>> FileSize(const std::string& path) override;
  io::Task<Status> LinkFile(const std::string& from, const std::string& to) override;
  io::Task<Status> CreateDir(const std::string& dir) override;
  io::Task<Status> RenameDir(const std::string& from, const std::string& to) override;
  io::Task<Status> RemoveDir(const std::string& dir) override;
  Status CreateDirIfMissing(const std::string& dir) override;
  Result<std::vector<std::string>> ListDir(const std::string& dir) override;
  Status Truncate(const std::string& path, std::uint64_t size_bytes) override;
  Result<std::unique_ptr<engine::FileLock>> LockFile(const std::string& path) override;

  // The (after_count + 1)th operation of `op` from now fails with `error`; with `sticky`, so
  // does every later one.
  void FailOperation(FaultOp op, std::uint64_t after_count, Status error, bool sticky);
  // A power cut at the (after_count + 1)th operation of `op` from now: that operation and every
  // later mutating one fail with IOError, as after SetFilesystemActive(false).
  void PowerCutAt(FaultOp op, std::uint64_t after_count);
  // Writes fail with NoSpace once files grew by `bytes` more bytes (overwrites are free).
  // With `path_suffix`, only files whose path ends with it are refused (and counted).
  void SetNoSpaceAfterBytes(std::uint64_t bytes, std::string path_suffix = "");
  void ClearFaults();
  void SetFilesystemActive(bool active);
  // Rewrites the base Env's files to what a power cut leaves. REQUIRES: the store using this
  // Env is destroyed (nothing writes meanwhile).
  io::Task<Status> SimulatePowerCut(PowerCutMode mode, std::uint64_t seed);
  std::uint64_t operations(FaultOp op) const;

 private:
  friend class FaultWritableFile;
  struct FileData {
    std::string durable;  // contents as of the last Sync
    struct Write {
      std::uint64_t offset;
      std::string bytes;
    };
    std::vector<Write> unsynced;
    // The furthest byte ever written: only writes beyond it take disk space (an overwrite
    // of allocated bytes, like a WAL rewriting its last partial block, cannot meet ENOSPC).
    std::uint64_t allocated_bytes = 0;
  };
  using FileId = std::uint64_t;

  // A failure to inject for this operation, or OK. REQUIRES: mutex_ held.
  Status CheckLocked(FaultOp op, const std::string& path);
  static std::string DirOf(const std::string& path);
  // Renames every name and durable directory record at or below `from` to sit below `to`.
  // REQUIRES: mutex_ held.
  void MoveTreeLocked(const std::string& from, const std::string& to);
  // The id of `path`, creating its record (durable image = the base file's current bytes).
  io::Task<FileId> TrackExisting(const std::string& path);

  engine::Env* const base_;
  mutable std::mutex mutex_;
  bool active_ = true;
  std::map<FileId, std::shared_ptr<FileData>> files_;
  std::map<std::string, FileId> names_;                           // now
  std::map<std::string, std::map<std::string, FileId>> durable_;  // dir -> name -> file
  std::map<std::string, bool> dir_tracked_;                       // dirs seen
  // Directory renames (from, to) not yet made durable by a SyncDir of to's parent, oldest
  // first; a power cut undoes them newest first.
  std::vector<std::pair<std::string, std::string>> pending_dir_renames_;
  FileId next_id_ = 1;
  struct Injection {
    std::uint64_t countdown = 0;
    Status error;
    bool sticky = false;
    bool armed = false;
    bool power_cut = false;  // firing freezes the file system (PowerCutAt)
  };
  std::map<FaultOp, Injection> injections_;
  std::map<FaultOp, std::uint64_t> counts_;
  std::optional<std::uint64_t> space_left_bytes_;
  std::string no_space_path_suffix_;  // empty: every file
};

}  // namespace cascadefs::testutil
