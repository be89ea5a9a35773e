// value_log.cc: see value_log.h.
#include "vlog/value_log.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "engine/assert.h"
#include "engine/io/scheduler.h"
#include "manifest/filename.h"
#include "vlog/vlog_file.h"

namespace cascadefs::engine {
namespace {

std::uint64_t NowNs() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

// Reads `size` bytes at `offset` of `file`; Corruption when the file ends first.
io::Task<Status> ReadExactly(const RandomAccessFile& file, std::uint64_t offset, std::size_t size,
                             char* out) {
  Result<std::size_t> got = co_await file.Read(offset, size, out);
  if (!got.ok()) co_return got.status();
  if (got.value() != size) {
    co_return Status::Corruption(file.path() + " at offset " + std::to_string(offset) +
                                 ": the file ends inside a record");
  }
  co_return Status::OK();
}

// What one existing file holds: finished (valid footer), or scanned to its first bad record.
// An unfinished file with records is synced, unless `read_only`.
io::Task<Result<VlogFileState>> InspectFile(Env* env, const std::string& path, std::uint64_t number,
                                            bool read_only) {
  auto opened = co_await env->NewRandomAccessFile(path);
  if (!opened.ok()) co_return opened.status();
  const RandomAccessFile& file = *opened.value();
  VlogFileState state;
  state.number = number;
  const std::uint64_t size = file.size_bytes();
  if (size < kVlogFileHeaderBytes) co_return state;  // created, the crash came before its header
  if (size >= kVlogFileHeaderBytes + kVlogFooterBytes) {
    std::string footer(kVlogFooterBytes, '\0');
    CFS_CO_RETURN_IF_ERROR(
        co_await ReadExactly(file, size - kVlogFooterBytes, kVlogFooterBytes, footer.data()));
    Result<VlogFooter> decoded = DecodeVlogFooter(footer);
    if (decoded.ok()) {
      std::string header(kVlogFileHeaderBytes, '\0');
      CFS_CO_RETURN_IF_ERROR(co_await ReadExactly(file, 0, header.size(), header.data()));
      Result<VlogFileHeader> head = DecodeVlogFileHeader(header);
      if (!head.ok()) co_return head.status().WithContext(path);
      if (head.value().file_number != number) {
        co_return Status::Corruption(path + ": the header names file " +
                                     std::to_string(head.value().file_number));
      }
      state.finished = true;
      state.valid_end = size - kVlogFooterBytes;
      state.records = decoded.value().records;
      state.value_bytes = decoded.value().value_bytes;
      state.durable_end = state.valid_end;
      co_return state;
    }
  }
  Status scanned = co_await ScanVlogRecords(
      file, number,
      [&state](const ValuePointer&, const VlogRecord& record) {
        ++state.records;
        state.value_bytes += record.value.size();
        return Status::OK();
      },
      &state.valid_end);
  if (!scanned.ok()) co_return scanned;
  if (state.records > 0 && !read_only) {
    // Left by a crash: its records may sit in the page cache only (a kill -9). Make them
    // durable before recovery writes SSTs that name them.
    auto writer = co_await env->NewWritableFile(path, WriteMode::kOpenExisting);
    if (!writer.ok()) co_return writer.status();
    Status synced = co_await writer.value()->Sync();
    Status closed = co_await writer.value()->Close();
    if (!synced.ok()) co_return synced;
    if (!closed.ok()) co_return closed;
  }
  // Read-only, nothing was synced: durable_end then says what a writable open would have made
  // durable, and nothing reads it (a read-only store records nothing in the manifest).
  state.durable_end = state.valid_end;
  co_return state;
}

}  // namespace

ValueLog::ValueLog(Env* env, std::string dir, ValueLogOptions options,
                   std::function<std::uint64_t()> allocate_number)
    : env_(env),
      dir_(std::move(dir)),
      options_(options),
      allocate_number_(std::move(allocate_number)) {}

ValueLog::~ValueLog() {
  std::unique_lock lock(mutex_);
  // Background tasks hold `this`: wait for them (Close normally did).
  while (loop_running_ || preparing_ || sync_running_) changed_.WaitBlocking(lock);
}

io::Task<Result<std::unique_ptr<ValueLog>>> ValueLog::Open(
    Env* env, std::string dir, ValueLogOptions options, std::vector<std::uint64_t> existing,
    std::function<std::uint64_t()> allocate_number) {
  std::unique_ptr<ValueLog> log(
      new ValueLog(env, std::move(dir), options, std::move(allocate_number)));
  std::sort(existing.begin(), existing.end());
  for (std::uint64_t number : existing) {
    auto state =
        co_await InspectFile(env, VlogFileName(log->dir_, number), number, options.read_only);
    if (!state.ok()) co_return state.status();
    log->recovered_.push_back(state.value());
    log->sealed_[number] = state.value();
  }
  if (options.read_only) {
    // Invariant 5: readable files only; reads of an unfinished one end at its scanned
    // valid end (ValidEndLocked: sealed_), which replay checks pointers against.
    CFS_ASSERT(log->current_ == nullptr && log->files_.empty());
    co_return log;
  }
  auto file = co_await log->CreateFile();
  if (!file.ok()) co_return file.status();
  std::lock_guard guard(log->mutex_);
  log->current_ = std::move(file).value();
  log->files_[log->current_->number] = log->current_;
  log->preparing_ = true;
  env->scheduler()->Spawn(log->PrepareNext(), io::Priority::kForeground);
  co_return log;
}

io::Task<Result<std::shared_ptr<ValueLog::File>>> ValueLog::CreateFile() {
  const std::uint64_t number = allocate_number_();
  const std::string path = VlogFileName(dir_, number);
  auto writer = co_await env_->NewWritableFile(path, WriteMode::kCreateExclusive);
  if (!writer.ok()) co_return writer.status();
  auto file = std::make_shared<File>();
  file->number = number;
  file->writer = std::move(writer).value();
  const std::string header = EncodeVlogFileHeader({.file_number = number, .created_ns = NowNs()});
  Status status = co_await file->writer->WriteAt(0, header);
  // The header and the name are durable before any record: a pointer never names a file
  // that a power cut could leave without its header.
  if (status.ok()) status = co_await file->writer->Sync();
  if (status.ok()) status = co_await env_->SyncDir(dir_);
  if (!status.ok()) {
    (void)co_await file->writer->Close();
    (void)co_await env_->RemoveFile(path);
    co_return status.WithContext(path);
  }
  file->appended = file->written = file->synced = header.size();
  std::lock_guard guard(mutex_);
  ++stats_.files_created;
  stats_.bytes_written += header.size();
  co_return file;
}

io::Task<void> ValueLog::PrepareNext() {
  auto file = co_await CreateFile();
  std::lock_guard guard(mutex_);
  preparing_ = false;
  if (!file.ok()) {
    if (error_.ok()) error_ = file.status();
  } else {
    prepared_ = std::move(file).value();  // after Close, Close removes it
  }
  changed_.NotifyAll();
}

bool ValueLog::PointerInBounds(const ValuePointer& pointer) const {
  std::lock_guard guard(mutex_);
  const std::uint64_t end = ValidEndLocked(pointer.file_number);
  return pointer.offset >= kVlogFileHeaderBytes && pointer.size <= end &&
         pointer.offset <= end - pointer.size;
}

void ValueLog::ForgetRecovered(std::uint64_t number) {
  std::lock_guard guard(mutex_);
  sealed_.erase(number);
  std::erase_if(recovered_, [number](const VlogFileState& file) { return file.number == number; });
}

std::uint64_t ValueLog::ValidEndLocked(std::uint64_t number) const {
  if (auto it = files_.find(number); it != files_.end()) return it->second->appended;
  if (auto it = sealed_.find(number); it != sealed_.end()) return it->second.valid_end;
  return 0;
}

bool ValueLog::HasRoomFor(std::size_t record_bytes) const {
  std::lock_guard guard(mutex_);
  return !error_.ok() || unwritten_bytes_ == 0 ||
         unwritten_bytes_ + record_bytes <= options_.unwritten_bytes_max;
}

io::Task<void> ValueLog::WaitForRoom(std::size_t record_bytes) {
  std::unique_lock lock(mutex_);
  ++stats_.waits_for_room;
  while (error_.ok() && unwritten_bytes_ > 0 &&
         unwritten_bytes_ + record_bytes > options_.unwritten_bytes_max) {
    // The bytes may all sit in the buffer: write them out, or nothing would free room.
    if (current_ != nullptr) IssueBufferLocked(current_);
    KickLocked();
    co_await changed_.Wait(lock);
  }
}

Result<ValuePointer> ValueLog::Append(std::string_view key, std::string_view value) {
  std::lock_guard guard(mutex_);
  CFS_ASSERT(!options_.read_only);
  if (!error_.ok()) return error_;
  CFS_ASSERT(!closed_ && current_ != nullptr);
  if (key.size() > kVlogKeyBytesMax || value.size() > kVlogValueBytesMax) {
    return Status::InvalidArgument("value log: key or value larger than a record may hold");
  }
  if (current_->appended >= options_.file_size_bytes && current_->records > 0 &&
      prepared_ != nullptr) {
    RollLocked();
  }
  File& file = *current_;
  ValuePointer pointer;
  pointer.file_number = file.number;
  pointer.offset = file.appended;
  const std::size_t before = file.buffer.size();
  pointer.checksum = AppendVlogRecord(
      VlogRecord{.key = key, .value = value, .compression = VlogCompression::kNone}, &file.buffer);
  const std::size_t size = file.buffer.size() - before;
  pointer.size = static_cast<std::uint32_t>(size);
  file.appended += size;
  ++file.records;
  file.value_bytes += value.size();
  unwritten_bytes_ += size;
  stats_.unwritten_peak_bytes =
      std::max<std::uint64_t>(stats_.unwritten_peak_bytes, unwritten_bytes_);
  ++stats_.records_appended;
  stats_.bytes_appended += size;
  if (file.buffer.size() >= options_.buffer_bytes) IssueBufferLocked(current_);
  return pointer;
}

VlogPosition ValueLog::AppendedPosition() const {
  std::lock_guard guard(mutex_);
  if (current_ == nullptr) return {};
  return {current_->number, current_->appended};
}

void ValueLog::IssueBufferLocked(const std::shared_ptr<File>& file) {
  if (file->buffer.empty()) return;
  Chunk chunk;
  chunk.file = file;
  chunk.offset = file->appended - file->buffer.size();
  chunk.data = std::move(file->buffer);
  file->buffer.clear();
  queue_.push_back(std::move(chunk));
  KickLocked();
}

void ValueLog::KickLocked() {
  if (loop_running_ || queue_.empty()) return;
  loop_running_ = true;
  env_->scheduler()->Spawn(WriteLoop(), io::Priority::kForeground);
}

void ValueLog::FinishLocked(const std::shared_ptr<File>& file) {
  IssueBufferLocked(file);
  Chunk finish;
  finish.file = file;
  finish.finish = true;
  queue_.push_back(std::move(finish));
  ++finishes_pending_;  // invariant 3
  KickLocked();
}

void ValueLog::RollLocked() {
  FinishLocked(current_);
  current_ = std::move(prepared_);
  files_[current_->number] = current_;
  preparing_ = true;
  // Foreground: a roll needs it before writes that keep coming (the file grows until then).
  env_->scheduler()->Spawn(PrepareNext(), io::Priority::kForeground);
}

io::Task<void> ValueLog::WriteLoop() {
  std::unique_lock lock(mutex_);
  while (!queue_.empty()) {
    // The chunk stays queued (readable) until it is in the file (invariant 1).
    Chunk& chunk = queue_.front();
    std::shared_ptr<File> file = chunk.file;
    const bool finish = chunk.finish;
    const std::uint64_t offset = chunk.offset;
    const std::string_view data = chunk.data;
    const bool failed = !error_.ok();
    std::string footer;
    if (finish) {
      footer = EncodeVlogFooter({.records = file->records, .value_bytes = file->value_bytes});
    }
    lock.unlock();
    Status status;
    if (failed) {
      status = Status::OK();  // an earlier write failed: drain without writing
    } else if (finish) {
      // The records are durable before the footer is written: a footer that survives a
      // power cut then vouches for every byte before it (Open trusts a footer and does not
      // scan the file), even where the disk kept a later page and dropped an earlier one.
      status = co_await file->writer->Sync();
      if (status.ok()) status = co_await file->writer->WriteAt(file->appended, footer);
      if (status.ok()) status = co_await file->writer->Sync();
      Status closed = co_await file->writer->Close();
      if (status.ok()) status = closed;
    } else {
      status = co_await file->writer->WriteAt(offset, data);
    }
    lock.lock();
    if (!status.ok() && error_.ok()) error_ = status.WithContext(VlogFileName(dir_, file->number));
    if (finish) {
      --finishes_pending_;
      if (status.ok()) {
        file->finished = true;
        file->synced = file->written = file->appended;
        stats_.bytes_written += footer.size();
        sealed_[file->number] = VlogFileState{.number = file->number,
                                              .valid_end = file->appended,
                                              .durable_end = file->appended,
                                              .records = file->records,
                                              .value_bytes = file->value_bytes,
                                              .finished = true};
        file->writer.reset();
        files_.erase(file->number);
      }
    } else {
      if (status.ok()) {
        file->written = offset + data.size();
        stats_.bytes_written += data.size();
      }
      unwritten_bytes_ -= data.size();
    }
    queue_.pop_front();
    changed_.NotifyAll();
  }
  loop_running_ = false;
  changed_.NotifyAll();
}

io::Task<Status> ValueLog::SyncTo(VlogPosition position) {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (!error_.ok()) co_return error_;
    auto it = files_.find(position.file_number);
    // Rolled files up to the position's are durable once their finish (footer, sync) is done.
    const bool older_finishing = FinishPendingThroughLocked(position.file_number);
    // A file no longer open was finished: its footer's sync covered it.
    if (it == files_.end()) {
      if (!older_finishing) co_return Status::OK();
      co_await changed_.Wait(lock);
      continue;
    }
    std::shared_ptr<File> file = it->second;
    if (file->synced >= position.offset && !older_finishing) co_return Status::OK();
    if (file->written < position.offset) {
      IssueBufferLocked(file);
      co_await changed_.Wait(lock);
      continue;
    }
    if (older_finishing || sync_running_) {
      KickLocked();
      co_await changed_.Wait(lock);
      continue;
    }
    if (file->synced >= position.offset) co_return Status::OK();
    // One sync for everyone waiting: it covers every write finished before it starts.
    sync_running_ = true;
    const std::uint64_t target = file->written;
    std::shared_ptr<WritableFile> writer = file->writer;
    lock.unlock();
    Status status = co_await writer->Sync();
    lock.lock();
    sync_running_ = false;
    ++stats_.syncs;
    if (!status.ok()) {
      if (error_.ok()) error_ = status.WithContext(VlogFileName(dir_, file->number));
    } else {
      file->synced = std::max(file->synced, target);
    }
    changed_.NotifyAll();
  }
}

bool ValueLog::FinishPendingThroughLocked(std::uint64_t number) const {
  if (finishes_pending_ == 0) return false;
  // Bounded by the queue (unwritten_bytes_max / buffer_bytes chunks, plus finishes).
  return std::any_of(queue_.begin(), queue_.end(), [number](const Chunk& chunk) {
    return chunk.finish && chunk.file->number <= number;
  });
}

io::Task<Result<std::shared_ptr<RandomAccessFile>>> ValueLog::Reader(std::uint64_t number) {
  {
    std::lock_guard guard(readers_mutex_);
    if (auto it = readers_.find(number); it != readers_.end()) {
      reader_lru_.splice(reader_lru_.begin(), reader_lru_, it->second.second);
      co_return it->second.first;
    }
  }
  auto opened = co_await env_->NewRandomAccessFile(VlogFileName(dir_, number));
  if (!opened.ok()) co_return opened.status();
  std::shared_ptr<RandomAccessFile> reader = std::move(opened).value();
  std::lock_guard guard(readers_mutex_);
  if (auto it = readers_.find(number); it != readers_.end()) co_return it->second.first;
  reader_lru_.push_front(number);
  readers_[number] = {reader, reader_lru_.begin()};
  while (readers_.size() > kVlogOpenReadersMax) {
    readers_.erase(reader_lru_.back());
    reader_lru_.pop_back();
  }
  co_return reader;
}

io::Task<Result<std::string>> ValueLog::Read(const ValuePointer& pointer, std::string_view key) {
  const std::string path = VlogFileName(dir_, pointer.file_number);
  std::string bytes;
  {
    std::lock_guard guard(mutex_);
    ++stats_.reads;
    const std::uint64_t end = ValidEndLocked(pointer.file_number);
    if (end == 0) {
      co_return Status::Corruption(path + ": a value pointer names a value log the store " +
                                   "does not have (offset " + std::to_string(pointer.offset) + ")");
    }
    if (pointer.offset < kVlogFileHeaderBytes || pointer.size > end ||
        pointer.offset > end - pointer.size) {
      co_return Status::Corruption(path + ": a value pointer names bytes " +
                                   std::to_string(pointer.offset) + "+" +
                                   std::to_string(pointer.size) + " past the file's records (" +
                                   std::to_string(end) + " bytes)");
    }
    if (auto it = files_.find(pointer.file_number); it != files_.end()) {
      const File& file = *it->second;
      const std::uint64_t buffer_start = file.appended - file.buffer.size();
      if (pointer.offset >= buffer_start) {
        bytes.assign(file.buffer, pointer.offset - buffer_start, pointer.size);
      } else if (pointer.offset + pointer.size > file.written) {
        for (const Chunk& chunk : queue_) {
          if (chunk.finish || chunk.file.get() != &file) continue;
          if (pointer.offset >= chunk.offset &&
              pointer.offset + pointer.size <= chunk.offset + chunk.data.size()) {
            bytes.assign(chunk.data, pointer.offset - chunk.offset, pointer.size);
            break;
          }
        }
        if (bytes.empty()) {
          co_return Status::Corruption(path + " at offset " + std::to_string(pointer.offset) +
                                       ": a value pointer straddles unwritten chunks");
        }
      }
      if (!bytes.empty()) ++stats_.reads_from_memory;
    }
  }
  if (bytes.empty()) {
    auto reader = co_await Reader(pointer.file_number);
    if (!reader.ok()) co_return reader.status();
    bytes.resize(pointer.size);
    CFS_CO_RETURN_IF_ERROR(
        co_await ReadExactly(*reader.value(), pointer.offset, pointer.size, bytes.data()));
  }
  co_return DecodeVlogValue(bytes, pointer, key, path);
}

io::Task<Status> ValueLog::Close() {
  std::unique_lock lock(mutex_);
  if (closed_) co_return error_;
  closed_ = true;
  // Read-only (invariant 5): current_ and prepared_ are null and nothing runs, so what
  // follows writes and removes nothing.
  std::shared_ptr<File> empty;
  if (current_ != nullptr && current_->records == 0) {
    // Nothing names it: remove it instead of finishing it.
    empty = current_;
    files_.erase(current_->number);
  } else if (current_ != nullptr) {
    FinishLocked(current_);
  }
  while (loop_running_ || preparing_ || sync_running_) co_await changed_.Wait(lock);
  Status status = error_;
  std::shared_ptr<File> prepared = std::move(prepared_);
  lock.unlock();
  for (const std::shared_ptr<File>& unused : {prepared, empty}) {
    // Never used: it holds only a header, and nothing names it.
    if (unused == nullptr) continue;
    (void)co_await unused->writer->Close();
    (void)co_await env_->RemoveFile(VlogFileName(dir_, unused->number));
  }
  co_return status;
}

bool ValueLog::IsBeingWritten(std::uint64_t number) const {
  std::lock_guard guard(mutex_);
  return files_.contains(number);
}

std::uint64_t ValueLog::ValidEnd(std::uint64_t number) const {
  std::lock_guard guard(mutex_);
  return ValidEndLocked(number);
}

void ValueLog::Retire(std::uint64_t number) {
  std::lock_guard guard(mutex_);
  retired_.insert(number);
}

io::Task<Status> ValueLog::DeleteFile(std::uint64_t number) {
  CFS_ASSERT(!options_.read_only);  // invariant 5
  {
    std::lock_guard guard(mutex_);
    CFS_ASSERT(!files_.contains(number));
    sealed_.erase(number);
    retired_.erase(number);
    std::erase_if(recovered_,
                  [number](const VlogFileState& file) { return file.number == number; });
  }
  {
    std::lock_guard guard(readers_mutex_);
    if (auto it = readers_.find(number); it != readers_.end()) {
      reader_lru_.erase(it->second.second);
      readers_.erase(it);
    }
  }
  co_return co_await env_->RemoveFile(VlogFileName(dir_, number));
}

std::vector<VlogFileState> ValueLog::Files() const {
  std::lock_guard guard(mutex_);
  std::vector<VlogFileState> out;
  for (const auto& [number, state] : sealed_) {
    if (!retired_.contains(number)) out.push_back(state);
  }
  for (const auto& [number, file] : files_) {
    out.push_back(VlogFileState{.number = number,
                                .valid_end = file->appended,
                                .durable_end = file->synced,
                                .records = file->records,
                                .value_bytes = file->value_bytes,
                                .finished = file->finished});
  }
  std::sort(out.begin(), out.end(),
            [](const VlogFileState& a, const VlogFileState& b) { return a.number < b.number; });
  return out;
}

ValueLogStats ValueLog::stats() const {
  std::lock_guard guard(mutex_);
  return stats_;
}

}  // namespace cascadefs::engine
