// string_file.h: test helpers to run manifest code over bytes in memory, with no scheduler.
//
// StringFile is a RandomAccessFile over a string whose Read finishes without suspending;
// StringWritableFile and InlineEnv do the same for writes and whole Env calls (with injected
// failures and a log of calls). RunInline drives a Task to completion on the calling thread:
// awaiting a Task starts it with a plain call (task.h), so a task that never awaits real I/O
// finishes inside that call. The fuzz targets (tests/fuzz/manifest_*_fuzz.cc) use these to
// feed arbitrary bytes to the reader fast, and the unit tests use them to damage files byte by
// byte and to fail each step of a protocol.
//
// Thread safety: none needed; everything runs on the calling thread.
#pragma once

#include <algorithm>
#include <coroutine>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/assert.h"
#include "engine/env.h"
#include "engine/io/task.h"

namespace cascadefs::engine::testing {

class StringFile final : public RandomAccessFile {
 public:
  StringFile(std::string path, std::string contents)
      : path_(std::move(path)), contents_(std::move(contents)) {}

  io::Task<Result<std::size_t>> Read(std::uint64_t offset, std::size_t size_bytes,
                                     char* scratch) const override {
    if (offset >= contents_.size()) co_return std::size_t{0};
    const std::size_t count =
        std::min<std::size_t>(size_bytes, contents_.size() - static_cast<std::size_t>(offset));
    std::memcpy(scratch, contents_.data() + offset, count);
    co_return count;
  }
  std::uint64_t size_bytes() const override { return contents_.size(); }
  const std::string& path() const override { return path_; }

 private:
  std::string path_;
  std::string contents_;
};

// A WritableFile into a string, with injectable failures. Counts syncs.
class StringWritableFile final : public WritableFile {
 public:
  explicit StringWritableFile(std::string path) : path_(std::move(path)) {}

  io::Task<Status> WriteAt(std::uint64_t offset, std::string_view data) override {
    if (fail_writes) co_return Status::IOError(path_ + ": injected write error");
    const auto end = static_cast<std::size_t>(offset) + data.size();
    if (contents.size() < end) contents.resize(end);
    contents.replace(static_cast<std::size_t>(offset), data.size(), data);
    co_return Status::OK();
  }
  io::Task<Status> Sync() override {
    if (fail_syncs) co_return Status::IOError(path_ + ": injected sync error");
    ++sync_count;
    co_return Status::OK();
  }
  io::Task<Status> Allocate(std::uint64_t, std::uint64_t) override {
    co_return Status::NotSupported("StringWritableFile");
  }
  io::Task<Status> Close() override {
    closed = true;
    co_return Status::OK();
  }
  const std::string& path() const override { return path_; }

  std::string contents;
  bool fail_writes = false;
  bool fail_syncs = false;
  int sync_count = 0;
  bool closed = false;

 private:
  std::string path_;
};

// An Env over a map of paths to strings, whose tasks never suspend (run them with RunInline).
// It logs every mutating call ("write <path>", "sync <path>", "close <path>", "rename <from>
// <to>", "remove <path>", "syncdir <dir>") so tests can check the order of a protocol, and
// fails the operation named in `fail_op` (same spelling, first word only) with IOError.
// Directories are not modelled: any path may hold a file.
class InlineEnv final : public Env {
 public:
  io::Scheduler* scheduler() const override { return nullptr; }

  io::Task<Result<std::unique_ptr<WritableFile>>> NewWritableFile(const std::string& path,
                                                                  WriteMode mode) override {
    if (fail_op == "open") co_return Status::IOError(path + ": injected open error");
    auto it = files.find(path);
    if (mode == WriteMode::kCreateExclusive && it != files.end()) {
      co_return Status::Busy(path + ": exists");
    }
    if (mode == WriteMode::kOpenExisting && it == files.end()) {
      co_return Status::NotFound(path + ": no such file");
    }
    if (it == files.end() || mode == WriteMode::kCreateTruncate) {
      files[path] = std::make_shared<std::string>();
    }
    co_return std::unique_ptr<WritableFile>(std::make_unique<File>(this, path, files[path]));
  }
  io::Task<Result<std::unique_ptr<RandomAccessFile>>> NewRandomAccessFile(
      const std::string& path) override {
    auto it = files.find(path);
    if (it == files.end()) co_return Status::NotFound(path + ": no such file");
    co_return std::unique_ptr<RandomAccessFile>(std::make_unique<StringFile>(path, *it->second));
  }
  io::Task<Status> RenameFile(const std::string& from, const std::string& to) override {
    log.push_back("rename " + from + " " + to);
    if (fail_op == "rename") co_return Status::IOError(from + ": injected rename error");
    auto it = files.find(from);
    if (it == files.end()) co_return Status::NotFound(from + ": no such file");
    files[to] = it->second;
    files.erase(from);
    co_return Status::OK();
  }
  io::Task<Status> RemoveFile(const std::string& path) override {
    log.push_back("remove " + path);
    if (files.erase(path) == 0) co_return Status::NotFound(path + ": no such file");
    co_return Status::OK();
  }
  io::Task<Status> SyncDir(const std::string& dir) override {
    log.push_back("syncdir " + dir);
    if (fail_op == "syncdir") co_return Status::IOError(dir + ": injected sync error");
    co_return Status::OK();
  }
  // Directories and links are not modelled (no manifest code uses them).
  io::Task<Status> LinkFile(const std::string& from, const std::string&) override {
    co_return Status::NotSupported(from + ": InlineEnv has no links");
  }
  io::Task<Status> CreateDir(const std::string& dir) override {
    co_return Status::NotSupported(dir + ": InlineEnv has no directories");
  }
  io::Task<Status> RenameDir(const std::string& from, const std::string&) override {
    co_return Status::NotSupported(from + ": InlineEnv has no directories");
  }
  io::Task<Status> RemoveDir(const std::string& dir) override {
    co_return Status::NotSupported(dir + ": InlineEnv has no directories");
  }
  io::Task<Result<std::uint64_t>> FileSize(const std::string& path) override {
    auto it = files.find(path);
    if (it == files.end()) co_return Status::NotFound(path + ": no such file");
    co_return static_cast<std::uint64_t>(it->second->size());
  }
  Status CreateDirIfMissing(const std::string&) override { return Status::OK(); }
  Result<std::vector<std::string>> ListDir(const std::string&) override {
    return Status::NotSupported("InlineEnv::ListDir");
  }
  Status Truncate(const std::string& path, std::uint64_t size_bytes) override {
    auto it = files.find(path);
    if (it == files.end()) return Status::NotFound(path + ": no such file");
    it->second->resize(static_cast<std::size_t>(size_bytes));
    return Status::OK();
  }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string&) override {
    return Status::NotSupported("InlineEnv::LockFile");
  }

  // The contents of `path`, or nullopt when it does not exist.
  std::optional<std::string> Contents(const std::string& path) const {
    auto it = files.find(path);
    if (it == files.end()) return std::nullopt;
    return *it->second;
  }

  std::map<std::string, std::shared_ptr<std::string>> files;
  std::vector<std::string> log;
  std::string fail_op;  // "open", "write", "sync", "close", "rename" or "syncdir"

 private:
  class File final : public WritableFile {
   public:
    File(InlineEnv* env, std::string path, std::shared_ptr<std::string> contents)
        : env_(env), path_(std::move(path)), contents_(std::move(contents)) {}
    io::Task<Status> WriteAt(std::uint64_t offset, std::string_view data) override {
      env_->log.push_back("write " + path_);
      if (env_->fail_op == "write") co_return Status::IOError(path_ + ": injected write error");
      const auto end = static_cast<std::size_t>(offset) + data.size();
      if (contents_->size() < end) contents_->resize(end);
      contents_->replace(static_cast<std::size_t>(offset), data.size(), data);
      co_return Status::OK();
    }
    io::Task<Status> Sync() override {
      env_->log.push_back("sync " + path_);
      if (env_->fail_op == "sync") co_return Status::IOError(path_ + ": injected sync error");
      co_return Status::OK();
    }
    io::Task<Status> Allocate(std::uint64_t, std::uint64_t) override {
      co_return Status::NotSupported("InlineEnv::Allocate");
    }
    io::Task<Status> Close() override {
      env_->log.push_back("close " + path_);
      if (env_->fail_op == "close") co_return Status::IOError(path_ + ": injected close error");
      co_return Status::OK();
    }
    const std::string& path() const override { return path_; }

   private:
    InlineEnv* env_;
    std::string path_;
    std::shared_ptr<std::string> contents_;
  };
};

namespace detail {

// A coroutine that starts at once and keeps its frame after finishing, so RunInline can check
// that it finished before destroying it.
struct InlineDriver {
  struct promise_type {
    InlineDriver get_return_object() {
      return InlineDriver{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { CFS_ASSERT(false && "exception in InlineDriver"); }
  };
  std::coroutine_handle<promise_type> handle;
};

template <typename T>
InlineDriver DriveInline(io::Task<T> task, std::optional<T>* out) {
  out->emplace(co_await std::move(task));
}

}  // namespace detail

// Runs `task` to completion on this thread. REQUIRES: the task awaits no real I/O (only
// StringFile and other tasks that finish without suspending); asserted.
template <typename T>
T RunInline(io::Task<T> task) {
  std::optional<T> out;
  detail::InlineDriver driver = detail::DriveInline(std::move(task), &out);
  CFS_ASSERT(driver.handle.done());
  driver.handle.destroy();
  CFS_ASSERT(out.has_value());
  return std::move(*out);
}

}  // namespace cascadefs::engine::testing
