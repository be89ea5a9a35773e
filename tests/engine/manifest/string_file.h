// string_file.h: test helpers to run manifest readers over bytes in memory, with no scheduler.
//
// StringFile is a RandomAccessFile over a string whose Read finishes without suspending, and
// RunInline drives a Task to completion on the calling thread: awaiting a Task starts it with
// a plain call (task.h), so a task that never awaits real I/O finishes inside that call. The
// fuzz targets (tests/fuzz/manifest_*_fuzz.cc) use these to feed arbitrary bytes to the
// reader fast, and the unit tests use them to damage files byte by byte.
//
// Thread safety: none needed; everything runs on the calling thread.
#pragma once

#include <algorithm>
#include <coroutine>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

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
