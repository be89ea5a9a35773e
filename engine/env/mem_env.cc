// mem_env.cc: NewMemEnv (mem_env.h).
#include "env/mem_env.h"

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/assert.h"

namespace cascadefs::engine {
namespace {

// A file's bytes, shared by every handle on it; renames move the pointer, not the bytes.
struct MemFile {
  std::mutex mutex;
  std::string bytes;  // GUARDED_BY(mutex)
};

std::string ParentOf(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash == 0 ? 1 : slash);
}

class MemRandomAccessFile final : public RandomAccessFile {
 public:
  MemRandomAccessFile(std::string path, std::shared_ptr<MemFile> file)
      : path_(std::move(path)), file_(std::move(file)) {
    std::lock_guard guard(file_->mutex);
    size_bytes_ = file_->bytes.size();
  }
  io::Task<Result<std::size_t>> Read(std::uint64_t offset, std::size_t size_bytes,
                                     char* scratch) const override {
    std::lock_guard guard(file_->mutex);
    if (offset >= file_->bytes.size()) co_return std::size_t{0};
    const std::size_t count = std::min<std::size_t>(size_bytes, file_->bytes.size() - offset);
    file_->bytes.copy(scratch, count, offset);
    co_return count;
  }
  std::uint64_t size_bytes() const override { return size_bytes_; }
  const std::string& path() const override { return path_; }

 private:
  const std::string path_;
  const std::shared_ptr<MemFile> file_;
  std::uint64_t size_bytes_ = 0;
};

class MemWritableFile final : public WritableFile {
 public:
  MemWritableFile(std::string path, std::shared_ptr<MemFile> file)
      : path_(std::move(path)), file_(std::move(file)) {}
  io::Task<Status> WriteAt(std::uint64_t offset, std::string_view data) override {
    if (closed_) co_return Status::InvalidArgument(path_ + ": write after close");
    std::lock_guard guard(file_->mutex);
    if (file_->bytes.size() < offset + data.size()) file_->bytes.resize(offset + data.size());
    file_->bytes.replace(offset, data.size(), data);
    co_return Status::OK();
  }
  io::Task<Status> Sync() override {
    if (closed_) co_return Status::InvalidArgument(path_ + ": sync after close");
    co_return Status::OK();
  }
  io::Task<Status> Allocate(std::uint64_t offset, std::uint64_t size_bytes) override {
    std::lock_guard guard(file_->mutex);
    if (file_->bytes.size() < offset + size_bytes) file_->bytes.resize(offset + size_bytes);
    co_return Status::OK();
  }
  io::Task<Status> Close() override {
    closed_ = true;
    co_return Status::OK();
  }
  const std::string& path() const override { return path_; }

 private:
  const std::string path_;
  const std::shared_ptr<MemFile> file_;
  bool closed_ = false;
};

class MemEnv;

class MemFileLock final : public FileLock {
 public:
  MemFileLock(MemEnv* env, std::string path) : env_(env), path_(std::move(path)) {}
  ~MemFileLock() override;

 private:
  MemEnv* const env_;
  const std::string path_;
};

class MemEnv final : public Env {
 public:
  explicit MemEnv(io::Scheduler* scheduler) : scheduler_(scheduler) { dirs_.insert("/"); }

  io::Scheduler* scheduler() const override { return scheduler_; }

  io::Task<Result<std::unique_ptr<WritableFile>>> NewWritableFile(const std::string& path,
                                                                  WriteMode mode) override {
    std::lock_guard guard(mutex_);
    if (dirs_.count(ParentOf(path)) == 0) {
      co_return Status::NotFound(path + ": no such directory");
    }
    auto it = files_.find(path);
    switch (mode) {
      case WriteMode::kCreateExclusive:
        if (it != files_.end()) co_return Status::Busy(path + ": file exists");
        [[fallthrough]];
      case WriteMode::kCreateTruncate:
        if (it == files_.end()) {
          it = files_.emplace(path, std::make_shared<MemFile>()).first;
        } else {
          std::lock_guard file_guard(it->second->mutex);
          it->second->bytes.clear();
        }
        break;
      case WriteMode::kOpenExisting:
        if (it == files_.end()) co_return Status::NotFound(path + ": no such file");
        break;
    }
    co_return std::unique_ptr<WritableFile>(std::make_unique<MemWritableFile>(path, it->second));
  }

  io::Task<Result<std::unique_ptr<RandomAccessFile>>> NewRandomAccessFile(
      const std::string& path) override {
    std::lock_guard guard(mutex_);
    auto it = files_.find(path);
    if (it == files_.end()) co_return Status::NotFound(path + ": no such file");
    co_return std::unique_ptr<RandomAccessFile>(
        std::make_unique<MemRandomAccessFile>(path, it->second));
  }

  io::Task<Status> RenameFile(const std::string& from, const std::string& to) override {
    std::lock_guard guard(mutex_);
    auto it = files_.find(from);
    if (it == files_.end()) co_return Status::NotFound(from + ": no such file");
    std::shared_ptr<MemFile> file = it->second;
    files_.erase(it);
    files_[to] = std::move(file);
    co_return Status::OK();
  }

  io::Task<Status> RemoveFile(const std::string& path) override {
    std::lock_guard guard(mutex_);
    if (files_.erase(path) == 0) co_return Status::NotFound(path + ": no such file");
    co_return Status::OK();
  }

  io::Task<Status> SyncDir(const std::string& dir) override {
    std::lock_guard guard(mutex_);
    if (dirs_.count(dir) == 0) co_return Status::NotFound(dir + ": no such directory");
    co_return Status::OK();
  }

  io::Task<Result<std::uint64_t>> FileSize(const std::string& path) override {
    std::lock_guard guard(mutex_);
    if (dirs_.count(path) != 0) co_return std::uint64_t{0};  // a directory: stat says it exists
    auto it = files_.find(path);
    if (it == files_.end()) co_return Status::NotFound(path + ": no such file");
    std::lock_guard file_guard(it->second->mutex);
    co_return static_cast<std::uint64_t>(it->second->bytes.size());
  }

  // A hard link shares the MemFile, as two names share an inode.
  io::Task<Status> LinkFile(const std::string& from, const std::string& to) override {
    std::lock_guard guard(mutex_);
    auto it = files_.find(from);
    if (it == files_.end()) co_return Status::NotFound(from + ": no such file");
    if (dirs_.count(ParentOf(to)) == 0) co_return Status::NotFound(to + ": no such directory");
    if (files_.count(to) != 0 || dirs_.count(to) != 0) {
      co_return Status::Busy(to + ": file exists");
    }
    files_[to] = it->second;
    co_return Status::OK();
  }

  io::Task<Status> CreateDir(const std::string& dir) override {
    std::lock_guard guard(mutex_);
    if (dirs_.count(ParentOf(dir)) == 0) co_return Status::NotFound(dir + ": no parent directory");
    if (files_.count(dir) != 0 || !dirs_.insert(dir).second) {
      co_return Status::Busy(dir + ": exists");
    }
    co_return Status::OK();
  }

  io::Task<Status> RenameDir(const std::string& from, const std::string& to) override {
    std::lock_guard guard(mutex_);
    if (dirs_.count(from) == 0) co_return Status::NotFound(from + ": no such directory");
    if (dirs_.count(ParentOf(to)) == 0) co_return Status::NotFound(to + ": no parent directory");
    if (files_.count(to) != 0 || dirs_.count(to) != 0) co_return Status::Busy(to + ": exists");
    // Every path at or below `from` moves; both maps are sorted, so they sit together.
    const std::string prefix = from + "/";
    auto moved = [&](const std::string& path) { return to + path.substr(from.size()); };
    std::vector<std::string> dirs;
    for (auto it = dirs_.lower_bound(prefix); it != dirs_.end() && it->starts_with(prefix); ++it) {
      dirs.push_back(*it);
    }
    for (const std::string& dir : dirs) {
      dirs_.erase(dir);
      dirs_.insert(moved(dir));
    }
    dirs_.erase(from);
    dirs_.insert(to);
    std::vector<std::string> files;
    for (auto it = files_.lower_bound(prefix); it != files_.end() && it->first.starts_with(prefix);
         ++it) {
      files.push_back(it->first);
    }
    for (const std::string& path : files) {
      auto node = files_.extract(path);
      node.key() = moved(path);
      files_.insert(std::move(node));
    }
    co_return Status::OK();
  }

  io::Task<Status> RemoveDir(const std::string& dir) override {
    std::lock_guard guard(mutex_);
    if (dirs_.count(dir) == 0) co_return Status::NotFound(dir + ": no such directory");
    const std::string prefix = dir + "/";
    auto file = files_.lower_bound(prefix);
    auto sub = dirs_.lower_bound(prefix);
    if ((file != files_.end() && file->first.starts_with(prefix)) ||
        (sub != dirs_.end() && sub->starts_with(prefix))) {
      co_return Status::IOError(dir + ": rmdir: directory not empty");
    }
    dirs_.erase(dir);
    co_return Status::OK();
  }

  Status CreateDirIfMissing(const std::string& dir) override {
    std::lock_guard guard(mutex_);
    // Parents are created too: a memory file system has nothing to fail on.
    std::string path = dir;
    while (!path.empty() && path != "/" && path != ".") {
      dirs_.insert(path);
      path = ParentOf(path);
    }
    return Status::OK();
  }

  Result<std::vector<std::string>> ListDir(const std::string& dir) override {
    std::lock_guard guard(mutex_);
    if (dirs_.count(dir) == 0) return Status::NotFound(dir + ": no such directory");
    std::vector<std::string> names;
    for (const auto& [path, file] : files_) {
      if (ParentOf(path) == dir) names.push_back(path.substr(dir.size() + 1));
    }
    return names;
  }

  Status Truncate(const std::string& path, std::uint64_t size_bytes) override {
    std::lock_guard guard(mutex_);
    auto it = files_.find(path);
    if (it == files_.end()) return Status::NotFound(path + ": no such file");
    std::lock_guard file_guard(it->second->mutex);
    it->second->bytes.resize(size_bytes);
    return Status::OK();
  }

  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    std::lock_guard guard(mutex_);
    if (!locks_.insert(path).second) return Status::Busy(path + ": store is in use");
    files_.try_emplace(path, std::make_shared<MemFile>());
    return std::unique_ptr<FileLock>(std::make_unique<MemFileLock>(this, path));
  }

  void Unlock(const std::string& path) {
    std::lock_guard guard(mutex_);
    locks_.erase(path);
  }

 private:
  io::Scheduler* const scheduler_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<MemFile>> files_;  // GUARDED_BY(mutex_)
  std::set<std::string> dirs_;                             // GUARDED_BY(mutex_)
  std::set<std::string> locks_;                            // GUARDED_BY(mutex_)
};

MemFileLock::~MemFileLock() { env_->Unlock(path_); }

}  // namespace

std::unique_ptr<Env> NewMemEnv(io::Scheduler* scheduler) {
  return std::make_unique<MemEnv>(scheduler);
}

}  // namespace cascadefs::engine
