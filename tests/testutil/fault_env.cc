// fault_env.cc: FaultEnv (fault_env.h).
#include "testutil/fault_env.h"

#include <functional>
#include <utility>

namespace cascadefs::testutil {

using engine::FileLock;
using engine::RandomAccessFile;
using engine::WritableFile;
using engine::WriteMode;

class FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(FaultEnv* env, std::unique_ptr<WritableFile> base,
                    std::shared_ptr<FaultEnv::FileData> data)
      : env_(env), base_(std::move(base)), data_(std::move(data)) {}

  io::Task<Status> WriteAt(std::uint64_t offset, std::string_view bytes) override {
    {
      std::lock_guard guard(env_->mutex_);
      Status injected = env_->CheckLocked(FaultOp::kWrite, path());
      const std::uint64_t end = offset + bytes.size();
      const std::uint64_t growth = end > data_->allocated_bytes ? end - data_->allocated_bytes : 0;
      if (injected.ok() && env_->space_left_bytes_ &&
          path().ends_with(env_->no_space_path_suffix_)) {
        if (*env_->space_left_bytes_ < growth) {
          injected = Status::NoSpace(path() + ": no space left on device (injected)");
        } else {
          *env_->space_left_bytes_ -= growth;
        }
      }
      if (injected.ok()) data_->allocated_bytes = std::max(data_->allocated_bytes, end);
      if (!injected.ok()) co_return injected;
    }
    Status status = co_await base_->WriteAt(offset, bytes);
    if (status.ok()) {
      std::lock_guard guard(env_->mutex_);
      data_->unsynced.push_back({offset, std::string(bytes)});
    }
    co_return status;
  }

  io::Task<Status> Sync() override {
    {
      std::lock_guard guard(env_->mutex_);
      Status injected = env_->CheckLocked(FaultOp::kSync, path());
      if (!injected.ok()) co_return injected;
    }
    Status status = co_await base_->Sync();
    if (status.ok()) {
      std::lock_guard guard(env_->mutex_);
      for (const auto& write : data_->unsynced) {
        if (data_->durable.size() < write.offset + write.bytes.size()) {
          data_->durable.resize(write.offset + write.bytes.size());
        }
        data_->durable.replace(write.offset, write.bytes.size(), write.bytes);
      }
      data_->unsynced.clear();
    }
    co_return status;
  }

  io::Task<Status> Allocate(std::uint64_t offset, std::uint64_t size_bytes) override {
    co_return co_await base_->Allocate(offset, size_bytes);
  }
  io::Task<Status> Close() override { co_return co_await base_->Close(); }
  const std::string& path() const override { return base_->path(); }

 private:
  FaultEnv* const env_;
  std::unique_ptr<WritableFile> base_;
  std::shared_ptr<FaultEnv::FileData> data_;
};

namespace {

class FaultRandomAccessFile final : public RandomAccessFile {
 public:
  FaultRandomAccessFile(std::unique_ptr<RandomAccessFile> base,
                        std::function<Status(const std::string&)> check)
      : base_(std::move(base)), check_(std::move(check)) {}
  io::Task<Result<std::size_t>> Read(std::uint64_t offset, std::size_t size_bytes,
                                     char* scratch) const override {
    Status injected = check_(path());
    if (!injected.ok()) co_return injected;
    co_return co_await base_->Read(offset, size_bytes, scratch);
  }
  std::uint64_t size_bytes() const override { return base_->size_bytes(); }
  const std::string& path() const override { return base_->path(); }

 private:
  std::unique_ptr<RandomAccessFile> base_;
  std::function<Status(const std::string&)> check_;
};

}  // namespace

FaultEnv::FaultEnv(engine::Env* base) : base_(base) {}
FaultEnv::~FaultEnv() = default;

std::string FaultEnv::DirOf(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash == 0 ? 1 : slash);
}

Status FaultEnv::CheckLocked(FaultOp op, const std::string& path) {
  ++counts_[op];
  if (!active_ && op != FaultOp::kRead) {
    return Status::IOError(path + ": simulated power cut in progress");
  }
  auto it = injections_.find(op);
  if (it == injections_.end() || !it->second.armed) return Status::OK();
  Injection& injection = it->second;
  if (injection.countdown > 0) {
    --injection.countdown;
    return Status::OK();
  }
  if (!injection.sticky) injection.armed = false;
  if (injection.power_cut) {
    active_ = false;
    return Status::IOError(path + ": simulated power cut");
  }
  return injection.error.WithContext(path);
}

io::Task<FaultEnv::FileId> FaultEnv::TrackExisting(const std::string& path) {
  {
    std::lock_guard guard(mutex_);
    auto it = names_.find(path);
    if (it != names_.end()) co_return it->second;
  }
  // A file from before: durable as it is.
  std::string contents;
  auto file = co_await base_->NewRandomAccessFile(path);
  if (file.ok()) {
    contents.resize(file.value()->size_bytes());
    auto got = co_await file.value()->Read(0, contents.size(), contents.data());
    contents.resize(got.ok() ? got.value() : 0);
  }
  std::lock_guard guard(mutex_);
  auto it = names_.find(path);
  if (it != names_.end()) co_return it->second;
  const FileId id = next_id_++;
  auto data = std::make_shared<FileData>();
  data->durable = std::move(contents);
  files_[id] = data;
  names_[path] = id;
  durable_[DirOf(path)][path] = id;
  co_return id;
}

io::Task<Result<std::unique_ptr<WritableFile>>> FaultEnv::NewWritableFile(const std::string& path,
                                                                          WriteMode mode) {
  {
    std::lock_guard guard(mutex_);
    Status injected = CheckLocked(FaultOp::kOpenWrite, path);
    if (!injected.ok()) co_return injected;
  }
  std::shared_ptr<FileData> data;
  if (mode == WriteMode::kOpenExisting) {
    const FileId id = co_await TrackExisting(path);
    std::lock_guard guard(mutex_);
    data = files_[id];
  }
  auto file = co_await base_->NewWritableFile(path, mode);
  if (!file.ok()) co_return file.status();
  if (mode != WriteMode::kOpenExisting) {
    // A new inode under this name; the name is durable only after SyncDir.
    std::lock_guard guard(mutex_);
    const FileId id = next_id_++;
    data = std::make_shared<FileData>();
    files_[id] = data;
    names_[path] = id;
  }
  co_return std::unique_ptr<WritableFile>(
      std::make_unique<FaultWritableFile>(this, std::move(file).value(), std::move(data)));
}

io::Task<Result<std::unique_ptr<RandomAccessFile>>> FaultEnv::NewRandomAccessFile(
    const std::string& path) {
  {
    std::lock_guard guard(mutex_);
    Status injected = CheckLocked(FaultOp::kRead, path);
    if (!injected.ok()) co_return injected;
  }
  auto file = co_await base_->NewRandomAccessFile(path);
  if (!file.ok()) co_return file.status();
  auto check = [this](const std::string& name) {
    std::lock_guard guard(mutex_);
    return CheckLocked(FaultOp::kRead, name);
  };
  co_return std::unique_ptr<RandomAccessFile>(
      std::make_unique<FaultRandomAccessFile>(std::move(file).value(), check));
}

io::Task<Status> FaultEnv::RenameFile(const std::string& from, const std::string& to) {
  {
    std::lock_guard guard(mutex_);
    Status injected = CheckLocked(FaultOp::kRename, from);
    if (!injected.ok()) co_return injected;
  }
  const FileId id = co_await TrackExisting(from);
  (void)co_await TrackExisting(to);  // a replaced file must come back if not made durable
  Status status = co_await base_->RenameFile(from, to);
  if (status.ok()) {
    std::lock_guard guard(mutex_);
    names_.erase(from);
    names_[to] = id;
  }
  co_return status;
}

io::Task<Status> FaultEnv::RemoveFile(const std::string& path) {
  {
    std::lock_guard guard(mutex_);
    Status injected = CheckLocked(FaultOp::kRemove, path);
    if (!injected.ok()) co_return injected;
  }
  (void)co_await TrackExisting(path);
  Status status = co_await base_->RemoveFile(path);
  if (status.ok()) {
    std::lock_guard guard(mutex_);
    names_.erase(path);
  }
  co_return status;
}

io::Task<Status> FaultEnv::SyncDir(const std::string& dir) {
  {
    std::lock_guard guard(mutex_);
    Status injected = CheckLocked(FaultOp::kSyncDir, dir);
    if (!injected.ok()) co_return injected;
  }
  Status status = co_await base_->SyncDir(dir);
  if (status.ok()) {
    std::lock_guard guard(mutex_);
    auto& durable = durable_[dir];
    durable.clear();
    for (const auto& [path, id] : names_) {
      if (DirOf(path) == dir) durable[path] = id;
    }
    std::erase_if(pending_dir_renames_,
                  [&](const auto& rename) { return DirOf(rename.second) == dir; });
  }
  co_return status;
}

io::Task<Result<std::uint64_t>> FaultEnv::FileSize(const std::string& path) {
  co_return co_await base_->FileSize(path);
}

io::Task<Status> FaultEnv::LinkFile(const std::string& from, const std::string& to) {
  {
    std::lock_guard guard(mutex_);
    Status injected = CheckLocked(FaultOp::kLink, to);
    if (!injected.ok()) co_return injected;
  }
  const FileId id = co_await TrackExisting(from);
  Status status = co_await base_->LinkFile(from, to);
  if (status.ok()) {
    std::lock_guard guard(mutex_);
    names_[to] = id;  // a second name of the same file; durable after SyncDir
  }
  co_return status;
}

io::Task<Status> FaultEnv::CreateDir(const std::string& dir) {
  {
    std::lock_guard guard(mutex_);
    Status injected = CheckLocked(FaultOp::kMkdir, dir);
    if (!injected.ok()) co_return injected;
  }
  co_return co_await base_->CreateDir(dir);
}

void FaultEnv::MoveTreeLocked(const std::string& from, const std::string& to) {
  auto below = [&](const std::string& path) {
    return path == from ||
           (path.size() > from.size() && path.starts_with(from) && path[from.size()] == '/');
  };
  auto moved = [&](const std::string& path) { return to + path.substr(from.size()); };
  std::map<std::string, FileId> names;
  for (const auto& [path, id] : names_) names[below(path) ? moved(path) : path] = id;
  names_ = std::move(names);
  std::map<std::string, std::map<std::string, FileId>> durable;
  for (auto& [dir, entries] : durable_) {
    if (!below(dir)) {
      durable[dir] = std::move(entries);
      continue;
    }
    auto& out = durable[moved(dir)];
    for (const auto& [path, id] : entries) out[moved(path)] = id;
  }
  durable_ = std::move(durable);
}

io::Task<Status> FaultEnv::RenameDir(const std::string& from, const std::string& to) {
  {
    std::lock_guard guard(mutex_);
    Status injected = CheckLocked(FaultOp::kRename, from);
    if (!injected.ok()) co_return injected;
  }
  Status status = co_await base_->RenameDir(from, to);
  if (status.ok()) {
    std::lock_guard guard(mutex_);
    MoveTreeLocked(from, to);
    pending_dir_renames_.emplace_back(from, to);
  }
  co_return status;
}

io::Task<Status> FaultEnv::RemoveDir(const std::string& dir) {
  {
    std::lock_guard guard(mutex_);
    Status injected = CheckLocked(FaultOp::kRemove, dir);
    if (!injected.ok()) co_return injected;
  }
  Status status = co_await base_->RemoveDir(dir);
  if (status.ok()) {
    std::lock_guard guard(mutex_);
    durable_.erase(dir);  // empty now, and gone at once (not simulated: see the header)
  }
  co_return status;
}

Status FaultEnv::CreateDirIfMissing(const std::string& dir) {
  {
    std::lock_guard guard(mutex_);
    if (!active_) return Status::IOError(dir + ": simulated power cut in progress");
  }
  return base_->CreateDirIfMissing(dir);
}

Result<std::vector<std::string>> FaultEnv::ListDir(const std::string& dir) {
  return base_->ListDir(dir);
}

Status FaultEnv::Truncate(const std::string& path, std::uint64_t size_bytes) {
  {
    std::lock_guard guard(mutex_);
    if (!active_) return Status::IOError(path + ": simulated power cut in progress");
  }
  return base_->Truncate(path, size_bytes);
}

Result<std::unique_ptr<FileLock>> FaultEnv::LockFile(const std::string& path) {
  return base_->LockFile(path);
}

void FaultEnv::FailOperation(FaultOp op, std::uint64_t after_count, Status error, bool sticky) {
  std::lock_guard guard(mutex_);
  injections_[op] = Injection{after_count, std::move(error), sticky, true};
}

void FaultEnv::PowerCutAt(FaultOp op, std::uint64_t after_count) {
  std::lock_guard guard(mutex_);
  injections_[op] = Injection{after_count, Status::OK(), false, true, true};
}

void FaultEnv::SetNoSpaceAfterBytes(std::uint64_t bytes, std::string path_suffix) {
  std::lock_guard guard(mutex_);
  space_left_bytes_ = bytes;
  no_space_path_suffix_ = std::move(path_suffix);
}

void FaultEnv::ClearFaults() {
  std::lock_guard guard(mutex_);
  injections_.clear();
  space_left_bytes_.reset();
}

void FaultEnv::SetFilesystemActive(bool active) {
  std::lock_guard guard(mutex_);
  active_ = active;
}

std::uint64_t FaultEnv::operations(FaultOp op) const {
  std::lock_guard guard(mutex_);
  auto it = counts_.find(op);
  return it == counts_.end() ? 0 : it->second;
}

io::Task<Status> FaultEnv::SimulatePowerCut(PowerCutMode mode, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> to_remove;
  std::vector<std::pair<std::string, std::string>> to_write;      // path, surviving bytes
  std::vector<std::pair<std::string, std::string>> undo_renames;  // (now at, back to)
  {
    std::lock_guard guard(mutex_);
    // Directory renames that were not made durable go back, newest first.
    for (auto it = pending_dir_renames_.rbegin(); it != pending_dir_renames_.rend(); ++it) {
      MoveTreeLocked(it->second, it->first);
      undo_renames.emplace_back(it->second, it->first);
    }
    pending_dir_renames_.clear();
    auto survivor = [&](const FileData& data) {
      std::string bytes = data.durable;
      for (const auto& write : data.unsynced) {
        if (mode == PowerCutMode::kDropAll || rng() % 2 == 0) continue;
        std::string_view kept(write.bytes);
        if (mode == PowerCutMode::kTear && rng() % 2 == 0) {
          kept = kept.substr(0, (rng() % (kept.size() / 512 + 1)) * 512);
        }
        if (bytes.size() < write.offset + kept.size()) bytes.resize(write.offset + kept.size());
        bytes.replace(write.offset, kept.size(), kept);
      }
      return bytes;
    };
    // Names that exist now but are not durable vanish.
    for (const auto& [path, id] : names_) {
      const auto dir = durable_.find(DirOf(path));
      if (dir == durable_.end() || dir->second.count(path) == 0) to_remove.push_back(path);
    }
    // Durable names come back with the surviving bytes of the file they named.
    for (const auto& [dir, entries] : durable_) {
      for (const auto& [path, id] : entries) to_write.emplace_back(path, survivor(*files_[id]));
    }
    // Afterwards everything left is the durable state.
    files_.clear();
    names_.clear();
    durable_.clear();
  }
  for (const auto& [now, back] : undo_renames) {
    CFS_CO_RETURN_IF_ERROR(co_await base_->RenameDir(now, back));
  }
  for (const std::string& path : to_remove) (void)co_await base_->RemoveFile(path);
  for (const auto& [path, bytes] : to_write) {
    auto file = co_await base_->NewWritableFile(path, WriteMode::kCreateTruncate);
    if (!file.ok()) co_return file.status();
    CFS_CO_RETURN_IF_ERROR(co_await file.value()->WriteAt(0, bytes));
    CFS_CO_RETURN_IF_ERROR(co_await file.value()->Close());
  }
  co_return Status::OK();
}

}  // namespace cascadefs::testutil
