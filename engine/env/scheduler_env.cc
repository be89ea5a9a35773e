// scheduler_env.cc: the production Env (env.h): each file operation is an io_uring operation
// on the store's scheduler.
//
// Descriptors: a RandomAccessFile and a WritableFile each own one descriptor for their
// lifetime (the table cache bounds how many SSTs are open). Directory syncs open the
// directory, fsync it and close it again. The store lock is flock(2) on LOCK, plus a
// process-wide set of locked paths, because flock does not stop a second open file
// description of the same process from locking again.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>  // RENAME_NOREPLACE
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "engine/assert.h"
#include "engine/env.h"
#include "engine/io/scheduler.h"

namespace cascadefs::engine {
namespace {

class SchedulerRandomAccessFile final : public RandomAccessFile {
 public:
  SchedulerRandomAccessFile(std::string path, int fd, std::uint64_t size_bytes)
      : path_(std::move(path)), fd_(fd), size_bytes_(size_bytes) {}
  ~SchedulerRandomAccessFile() override { ::close(fd_); }

  io::Task<Result<std::size_t>> Read(std::uint64_t offset, std::size_t size_bytes,
                                     char* scratch) const override {
    co_return co_await io::ReadFull(fd_, scratch, size_bytes, offset);
  }
  std::uint64_t size_bytes() const override { return size_bytes_; }
  const std::string& path() const override { return path_; }

 private:
  const std::string path_;
  const int fd_;
  const std::uint64_t size_bytes_;
};

class SchedulerWritableFile final : public WritableFile {
 public:
  SchedulerWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~SchedulerWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  io::Task<Status> WriteAt(std::uint64_t offset, std::string_view data) override {
    if (fd_ < 0) co_return Status::InvalidArgument(path_ + ": write after close");
    co_return co_await io::WriteAll(fd_, data.data(), data.size(), offset);
  }
  io::Task<Status> Sync() override {
    if (fd_ < 0) co_return Status::InvalidArgument(path_ + ": sync after close");
    co_return co_await io::Fdatasync(fd_);
  }
  io::Task<Status> Allocate(std::uint64_t offset, std::uint64_t size_bytes) override {
    if (fd_ < 0) co_return Status::InvalidArgument(path_ + ": allocate after close");
    Status status = co_await io::Fallocate(fd_, 0, offset, size_bytes);
    if (!status.ok() && status.errno_value() == EOPNOTSUPP) {
      co_return Status::NotSupported(path_ + ": fallocate is not supported here");
    }
    co_return status;
  }
  io::Task<Status> Close() override {
    if (fd_ < 0) co_return Status::OK();
    const int fd = std::exchange(fd_, -1);
    co_return co_await io::Close(fd);
  }
  const std::string& path() const override { return path_; }

 private:
  const std::string path_;
  int fd_;
};

// Paths locked by this process (flock alone would let a second descriptor lock again).
std::mutex locked_paths_mutex;
std::set<std::string>& LockedPaths() {
  static auto* paths = new std::set<std::string>();  // never destroyed: used at exit
  return *paths;
}

class PosixFileLock final : public FileLock {
 public:
  PosixFileLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixFileLock() override {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
    std::lock_guard guard(locked_paths_mutex);
    LockedPaths().erase(path_);
  }

 private:
  const std::string path_;
  const int fd_;
};

class SchedulerEnv final : public Env {
 public:
  explicit SchedulerEnv(io::Scheduler* scheduler) : scheduler_(scheduler) {
    CFS_ASSERT(scheduler_ != nullptr);
  }

  io::Scheduler* scheduler() const override { return scheduler_; }

  io::Task<Result<std::unique_ptr<WritableFile>>> NewWritableFile(const std::string& path,
                                                                  WriteMode mode) override {
    int flags = O_WRONLY;
    switch (mode) {
      case WriteMode::kCreateTruncate:
        flags |= O_CREAT | O_TRUNC;
        break;
      case WriteMode::kCreateExclusive:
        flags |= O_CREAT | O_EXCL;
        break;
      case WriteMode::kOpenExisting:
        break;
    }
    Result<int> fd = co_await io::Openat(AT_FDCWD, path.c_str(), flags, 0644);
    if (!fd.ok()) co_return MapOpenError(fd.status(), path);
    co_return std::unique_ptr<WritableFile>(
        std::make_unique<SchedulerWritableFile>(path, fd.value()));
  }

  io::Task<Result<std::unique_ptr<RandomAccessFile>>> NewRandomAccessFile(
      const std::string& path) override {
    Result<int> fd = co_await io::Openat(AT_FDCWD, path.c_str(), O_RDONLY);
    if (!fd.ok()) co_return MapOpenError(fd.status(), path);
    struct statx info {};
    Status status = co_await io::Statx(fd.value(), "", AT_EMPTY_PATH, STATX_SIZE, &info);
    if (!status.ok()) {
      ::close(fd.value());
      co_return status;
    }
    co_return std::unique_ptr<RandomAccessFile>(
        std::make_unique<SchedulerRandomAccessFile>(path, fd.value(), info.stx_size));
  }

  io::Task<Status> RenameFile(const std::string& from, const std::string& to) override {
    co_return co_await io::Renameat(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str());
  }

  io::Task<Status> RemoveFile(const std::string& path) override {
    Status status = co_await io::Unlinkat(AT_FDCWD, path.c_str());
    if (!status.ok() && status.errno_value() == ENOENT) {
      co_return Status::NotFound(path + ": no such file");
    }
    co_return status;
  }

  io::Task<Status> SyncDir(const std::string& dir) override {
    Result<int> fd = co_await io::Openat(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (!fd.ok()) co_return MapOpenError(fd.status(), dir);
    Status status = co_await io::Fsync(fd.value());
    Status closed = co_await io::Close(fd.value());
    co_return status.ok() ? closed : status;
  }

  io::Task<Result<std::uint64_t>> FileSize(const std::string& path) override {
    struct statx info {};
    Status status = co_await io::Statx(AT_FDCWD, path.c_str(), 0, STATX_SIZE, &info);
    if (!status.ok()) {
      if (status.errno_value() == ENOENT) co_return Status::NotFound(path + ": no such file");
      co_return status;
    }
    co_return static_cast<std::uint64_t>(info.stx_size);
  }

  io::Task<Status> LinkFile(const std::string& from, const std::string& to) override {
    Status status = co_await io::Linkat(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str());
    if (status.ok()) co_return status;
    switch (status.errno_value()) {
      case ENOENT:
        co_return Status::NotFound(from + ": no such file");
      case EEXIST:
        co_return Status::Busy(to + ": file exists");
      case EXDEV:   // another file system
      case EPERM:   // a file system without hard links (vfat), or protected_hardlinks
      case EMLINK:  // the file has too many links already
      case EOPNOTSUPP:
      case EINVAL:  // a kernel older than 5.15, without IORING_OP_LINKAT
        co_return Status::NotSupported(from + " -> " + to + ": cannot hard-link here (" +
                                       status.ToString() + ")");
      default:
        co_return status;
    }
  }

  io::Task<Status> CreateDir(const std::string& dir) override {
    Status status = co_await io::Mkdirat(AT_FDCWD, dir.c_str(), 0755);
    if (!status.ok() && status.errno_value() == EEXIST) {
      co_return Status::Busy(dir + ": exists");
    }
    co_return status;
  }

  io::Task<Status> RenameDir(const std::string& from, const std::string& to) override {
    Status status =
        co_await io::Renameat(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE);
    if (!status.ok() && status.errno_value() == EEXIST) co_return Status::Busy(to + ": exists");
    if (!status.ok() && status.errno_value() == ENOENT) {
      co_return Status::NotFound(from + ": no such directory");
    }
    co_return status;
  }

  io::Task<Status> RemoveDir(const std::string& dir) override {
    Status status = co_await io::Unlinkat(AT_FDCWD, dir.c_str(), AT_REMOVEDIR);
    if (!status.ok() && status.errno_value() == ENOENT) {
      co_return Status::NotFound(dir + ": no such directory");
    }
    co_return status;
  }

  Status CreateDirIfMissing(const std::string& dir) override {
    if (::mkdir(dir.c_str(), 0755) == 0) return Status::OK();
    const int error = errno;
    struct stat info {};
    if (error == EEXIST && ::stat(dir.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
      return Status::OK();
    }
    return Status::FromErrno(error, dir + ": cannot create directory");
  }

  Result<std::vector<std::string>> ListDir(const std::string& dir) override {
    DIR* stream = ::opendir(dir.c_str());
    if (stream == nullptr) {
      const int error = errno;
      if (error == ENOENT) return Status::NotFound(dir + ": no such directory");
      return Status::FromErrno(error, dir + ": cannot list directory");
    }
    std::vector<std::string> names;
    errno = 0;
    while (dirent* entry = ::readdir(stream)) {
      const std::string_view name(entry->d_name);
      if (name != "." && name != "..") names.emplace_back(name);
    }
    const int error = errno;
    ::closedir(stream);
    if (error != 0) return Status::FromErrno(error, dir + ": cannot list directory");
    return names;
  }

  Status Truncate(const std::string& path, std::uint64_t size_bytes) override {
    if (::truncate(path.c_str(), static_cast<off_t>(size_bytes)) == 0) return Status::OK();
    return Status::FromErrno(errno, path + ": cannot truncate");
  }

  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    {
      std::lock_guard guard(locked_paths_mutex);
      if (!LockedPaths().insert(path).second) {
        return Status::Busy(path + ": store is in use (already open in this process)");
      }
    }
    auto unregister = [&path] {
      std::lock_guard guard(locked_paths_mutex);
      LockedPaths().erase(path);
    };
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      const int error = errno;
      unregister();
      return Status::FromErrno(error, path + ": cannot open lock file");
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int error = errno;
      ::close(fd);
      unregister();
      if (error == EWOULDBLOCK) {
        return Status::Busy(path + ": store is in use by another process");
      }
      return Status::FromErrno(error, path + ": cannot lock");
    }
    return std::unique_ptr<FileLock>(std::make_unique<PosixFileLock>(path, fd));
  }

 private:
  static Status MapOpenError(const Status& status, const std::string& path) {
    if (status.errno_value() == ENOENT) return Status::NotFound(path + ": no such file");
    if (status.errno_value() == EEXIST) return Status::Busy(path + ": file exists");
    return status;
  }

  io::Scheduler* const scheduler_;
};

}  // namespace

std::unique_ptr<Env> NewSchedulerEnv(io::Scheduler* scheduler) {
  return std::make_unique<SchedulerEnv>(scheduler);
}

}  // namespace cascadefs::engine
