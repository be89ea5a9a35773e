// checkpoint.cc: DBImpl::Checkpoint, a copy of an open store that opens as a store of its own
// (db.h has the contract, docs/engine.md "Checkpoints" the design).
//
// Steps, in order, each one's failure removing what was built so far:
//  1. refuse a target that exists;
//  2. flush the memtable (FlushAsync): every write acknowledged before the call is in an SST;
//  3. take the current Version. Holding it pins its SSTs: an SST replaced by a compaction is
//     deleted only once no Version lists it (db_impl.h, invariant 7), so no file we link can
//     vanish under us, however many compactions run meanwhile;
//  4. in `dir`.tmp-checkpoint: hard-link every SST of the Version (copy it when linking is not
//     possible) and every finished value log (copy the one being written), write a manifest whose
//     one edit is that Version, and CURRENT naming it; sync the files and the directory;
//  5. rename the temporary directory to `dir` (never replacing anything) and sync the parent.
//
// Why hard links are safe: an SST is written once, front to back, by a flush or a compaction
// (WriteLevel0Table, compaction_job.cc), synced and closed before the manifest edit naming it;
// the engine never opens one for writing again (only WAL segments are opened with
// WriteMode::kOpenExisting), and file numbers are never reused within a store, so no
// kCreateTruncate ever reaches a linked inode. Both stores only ever unlink their own names.
// After linking, the file's size is checked against the Version's record of it.
//
// Thread safety: runs on the caller's task; touches DB state only through FlushAsync, the
// VersionSet's thread-safe accessors and the atomic last_sequence_.
#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "db/db_impl.h"
#include "manifest/current_file.h"
#include "manifest/filename.h"
#include "manifest/manifest_log.h"

namespace cascadefs::engine {

namespace {

// The temporary directory a checkpoint is built in, beside its target.
constexpr std::string_view kCheckpointTempSuffix = ".tmp-checkpoint";
// A copied SST is read and written in steps of this size; the task yields between steps.
constexpr std::size_t kCheckpointCopyStepBytes = 1 << 20;

std::string ParentDir(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? std::string("/") : path.substr(0, slash);
}

}  // namespace

Status DBImpl::Checkpoint(const std::string& dir) {
  if (options_.read_only) return ReadOnlyError("checkpoint " + dir);
  {
    std::lock_guard guard(mutex_);
    if (closed_)
      return Status::InvalidArgument("checkpoint " + dir + ": " + dir_ + ": store is closed");
  }
  return scheduler_->BlockOn(CheckpointAsync(dir));
}

io::Task<Status> DBImpl::CheckpointAsync(std::string dir) {
  // Read-only: a checkpoint flushes first, and the new manifest names no WAL to replay.
  if (options_.read_only) co_return ReadOnlyError("checkpoint " + dir);
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) co_return Status::InvalidArgument("checkpoint: empty target directory");
  const std::string tmp = dir + std::string(kCheckpointTempSuffix);
  auto context = [&dir](const Status& status) { return status.WithContext("checkpoint " + dir); };

  // 1. The target must not exist (a file there counts, too). The final rename checks again
  // (RenameDir never replaces), for a target made meanwhile.
  if ((co_await env_->FileSize(dir)).ok()) {
    co_return Status::InvalidArgument("checkpoint " + dir + ": target exists");
  }
  // 2. Every acknowledged write into an SST.
  Status status = co_await FlushAsync();
  if (!status.ok()) co_return context(status.WithContext("flush"));

  // 3. The state to copy, pinned while `version` lives. last_sequence_ is loaded after the
  // Version was taken, so it covers every entry of the Version's files (invariant 1).
  const std::shared_ptr<const Version> version = versions_->current();
  SequenceNumber last_sequence = last_sequence_.load(std::memory_order_acquire);
  for (const auto& files : version->files) {
    for (const auto& file : files) last_sequence = std::max(last_sequence, file->largest_sequence);
  }
  // A number above every file of the Version (VersionSet invariant 2), drawn from the source so
  // the two never hand out the same number for a file of the Version.
  const std::uint64_t manifest_number = versions_->NewFileNumber();

  // 4. Build it beside the target.
  status = co_await env_->CreateDir(tmp);
  if (status.IsBusy()) {
    co_return Status::InvalidArgument("checkpoint " + dir + ": " + tmp +
                                      " exists (left by an interrupted checkpoint, or one "
                                      "running now): remove it and retry");
  }
  if (!status.ok()) co_return context(status);
  status = co_await BuildCheckpoint(tmp, *version, manifest_number, last_sequence);
  // 5. Publish it: after the rename `dir` is complete; after the parent sync, durably so.
  if (status.ok()) status = co_await env_->RenameDir(tmp, dir);
  if (status.ok()) {
    status = co_await env_->SyncDir(ParentDir(dir));
    if (!status.ok()) {
      // Complete but perhaps not durable: the caller hears of an error, so nothing stays.
      co_await RemoveCheckpointDir(dir);
      co_return context(status);
    }
    Log("checkpoint " + dir + ": " + std::to_string(version->TotalFiles()) + " SSTs, " +
        std::to_string(version->TotalBytes()) + " bytes, up to sequence " +
        std::to_string(last_sequence));
    co_return Status::OK();
  }
  co_await RemoveCheckpointDir(tmp);
  co_return context(status);
}

io::Task<Status> DBImpl::BuildCheckpoint(const std::string& tmp, const Version& version,
                                         std::uint64_t manifest_number,
                                         SequenceNumber last_sequence) {
  VersionEdit snapshot;
  snapshot.SetFormatVersion(kStoreFormatVersion);
  // The checkpoint has no WAL: its first segment will be numbered above the manifest.
  snapshot.SetLogNumber(manifest_number + 1);
  snapshot.SetNextFileNumber(manifest_number + 1);
  snapshot.SetLastSequence(last_sequence);
  for (std::size_t level = 0; level < version.files.size(); ++level) {
    for (const auto& file : version.files[level]) {
      CFS_ASSERT(file->number < manifest_number);  // VersionSet invariant 2
      const std::string from = SstFileName(dir_, file->number);
      const std::string to = SstFileName(tmp, file->number);
      Status status = co_await env_->LinkFile(from, to);
      if (status.IsNotSupported()) {
        status = co_await CopySstFile(from, to, file->file_size_bytes);
      } else if (status.ok()) {
        // An SST is never written after it was synced (file comment): its size must match.
        auto size = co_await env_->FileSize(to);
        if (!size.ok()) co_return size.status();
        if (size.value() != file->file_size_bytes) {
          co_return Status::Corruption(from + ": " + std::to_string(size.value()) +
                                       " bytes, the manifest says " +
                                       std::to_string(file->file_size_bytes));
        }
      }
      if (!status.ok()) co_return status;
      snapshot.AddFile(static_cast<int>(level), *file);
    }
  }
  // Value logs: a finished file is never written again (value_log.h, invariant 4), so it is
  // linked like an SST; the file still being appended to is copied up to its size in the
  // Version, which the flush above made durable and which covers every pointer of the
  // Version's SSTs. The copy has no footer: the checkpoint's Open scans it like a file left
  // by a crash.
  std::set<std::uint64_t> finished;
  for (const VlogFileState& state : vlog_->Files()) {
    if (state.finished) finished.insert(state.number);
  }
  for (const auto& [number, vlog] : version.vlogs) {
    CFS_ASSERT(number < manifest_number);
    const std::string from = VlogFileName(dir_, number);
    const std::string to = VlogFileName(tmp, number);
    Status status = Status::NotSupported("copy");
    if (finished.contains(number)) status = co_await env_->LinkFile(from, to);
    if (status.IsNotSupported()) status = co_await CopySstFile(from, to, vlog.size_bytes);
    if (!status.ok()) co_return status;
    snapshot.AddVlog(vlog);
    if (vlog.garbage_records > 0 || vlog.garbage_bytes > 0) {
      snapshot.AddVlogGarbage(number, vlog.garbage_records, vlog.garbage_bytes);
    }
  }
  const std::array<std::string, kNumLevels> pointers = versions_->compact_pointers();
  for (std::size_t level = 0; level < pointers.size(); ++level) {
    if (!pointers[level].empty()) {
      snapshot.SetCompactPointer(static_cast<int>(level), pointers[level]);
    }
  }

  // A fresh manifest of one edit, not a copy of ours: the live manifest keeps growing (and may
  // roll) while we work, and its edits name files the checkpoint does not hold.
  const std::string manifest_path = ManifestFileName(tmp, manifest_number);
  auto file = co_await env_->NewWritableFile(manifest_path, WriteMode::kCreateExclusive);
  if (!file.ok()) co_return file.status();
  ManifestWriter writer(std::move(file).value());
  std::string record;
  snapshot.EncodeTo(&record);
  Status status = co_await writer.AddRecord(record);
  if (status.ok()) status = co_await writer.Sync();
  Status closed = co_await writer.Close();
  if (status.ok()) status = closed;
  if (!status.ok()) co_return status;
  // CURRENT (written, synced, renamed into place, and the directory synced).
  CFS_CO_RETURN_IF_ERROR(co_await SetCurrentFile(env_, tmp, manifest_number));
  // The links' names, should SetCurrentFile ever stop syncing the directory.
  co_return co_await env_->SyncDir(tmp);
}

io::Task<Status> DBImpl::CopySstFile(const std::string& from, const std::string& to,
                                     std::uint64_t size_bytes) {
  auto source = co_await env_->NewRandomAccessFile(from);
  if (!source.ok()) co_return source.status();
  auto target = co_await env_->NewWritableFile(to, WriteMode::kCreateExclusive);
  if (!target.ok()) co_return target.status();
  std::string buffer(
      static_cast<std::size_t>(std::min<std::uint64_t>(size_bytes, kCheckpointCopyStepBytes)),
      '\0');
  Status status;
  std::uint64_t offset = 0;
  while (status.ok() && offset < size_bytes) {  // bounded: size_bytes / step steps
    const std::size_t step =
        static_cast<std::size_t>(std::min<std::uint64_t>(size_bytes - offset, buffer.size()));
    auto got = co_await source.value()->Read(offset, step, buffer.data());
    if (!got.ok()) {
      status = got.status();
    } else if (got.value() != step) {
      status =
          Status::Corruption(from + ": ends at offset " + std::to_string(offset + got.value()) +
                             ", the manifest says " + std::to_string(size_bytes) + " bytes");
    } else {
      status = co_await target.value()->WriteAt(offset, std::string_view(buffer.data(), step));
      offset += step;
      co_await io::Yield();  // a bounded step: let foreground work run
    }
  }
  if (status.ok()) status = co_await target.value()->Sync();
  Status closed = co_await target.value()->Close();
  if (status.ok()) status = closed;
  co_return status;
}

io::Task<void> DBImpl::RemoveCheckpointDir(const std::string& dir) {
  auto names = env_->ListDir(dir);
  if (names.ok()) {
    for (const std::string& name : names.value()) {
      (void)co_await env_->RemoveFile(dir + "/" + name);
    }
  }
  Status status = co_await env_->RemoveDir(dir);
  if (!status.ok() && !status.IsNotFound()) {
    Log("checkpoint: cannot remove the partial " + dir + ": " + status.ToString());
  }
}

}  // namespace cascadefs::engine
