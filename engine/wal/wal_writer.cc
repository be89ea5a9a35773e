// wal_writer.cc: WalWriter (wal_writer.h has the design and invariants).
#include "wal/wal_writer.h"

#include <algorithm>
#include <utility>

#include "engine/assert.h"
#include "engine/io/scheduler.h"
#include "util/checksum.h"
#include "util/coding.h"

namespace cascadefs::engine {

WalWriter::WalWriter(Env* env, std::string dir, WalOptions options,
                     std::function<std::uint64_t()> allocate_log_number)
    : env_(env),
      dir_(std::move(dir)),
      options_(options),
      allocate_log_number_(std::move(allocate_log_number)) {
  CFS_ASSERT(options_.segment_size_bytes % kWalBlockSizeBytes == 0);
  CFS_ASSERT(options_.segment_size_bytes >= 2 * kWalBlockSizeBytes);
}

WalWriter::~WalWriter() {
  std::lock_guard guard(mutex_);
  CFS_ASSERT(pending_.empty());  // Close (or the writes) finished before destruction
  CFS_ASSERT(!preparing_);
}

io::Task<Result<std::unique_ptr<WalWriter>>> WalWriter::Open(
    Env* env, std::string dir, WalOptions options, std::uint64_t first_log_number,
    std::vector<std::uint64_t> recyclable, std::function<std::uint64_t()> allocate_log_number) {
  if (options.segment_size_bytes % kWalBlockSizeBytes != 0 ||
      options.segment_size_bytes < 2 * kWalBlockSizeBytes) {
    co_return Status::InvalidArgument("WAL segment size must be a multiple of 32 KiB, >= 64 KiB");
  }
  std::unique_ptr<WalWriter> writer(
      new WalWriter(env, std::move(dir), options, std::move(allocate_log_number)));
  std::sort(recyclable.begin(), recyclable.end());
  // Beyond kRecycleMax, the oldest segments are deleted.
  while (recyclable.size() > kRecycleMax) {
    Status removed = co_await env->RemoveFile(WalSegmentPath(writer->dir_, recyclable.front()));
    if (!removed.ok() && !removed.IsNotFound()) co_return removed;
    recyclable.erase(recyclable.begin());
  }
  writer->recyclable_ = std::move(recyclable);
  // The first segment gets the number the DB recorded; later ones come from the allocator.
  auto first = co_await writer->PrepareSegment(first_log_number);
  if (!first.ok()) co_return first.status();
  std::lock_guard guard(writer->mutex_);
  writer->current_ = first.value();
  writer->open_[writer->current_->log_number] = writer->current_;
  writer->used_.insert(writer->current_->log_number);
  writer->issued_through_ = writer->synced_through_ = writer->PositionLocked();
  ++writer->stats_.segments_started;
  writer->StartPrepareLocked(1);
  co_return std::move(writer);
}

io::Task<Result<std::shared_ptr<WalWriter::Segment>>> WalWriter::PrepareSegment(
    std::optional<std::uint64_t> log_number) {
  std::optional<std::uint64_t> reuse;
  {
    std::lock_guard guard(mutex_);
    if (!recyclable_.empty()) {
      reuse = recyclable_.back();
      recyclable_.pop_back();
    }
  }
  const std::uint64_t number = log_number ? *log_number : allocate_log_number_();
  const std::string path = WalSegmentPath(dir_, number);
  std::unique_ptr<WritableFile> file;
  if (reuse) {
    Status renamed = co_await env_->RenameFile(WalSegmentPath(dir_, *reuse), path);
    if (renamed.ok()) {
      auto opened = co_await env_->NewWritableFile(path, WriteMode::kOpenExisting);
      if (!opened.ok()) co_return opened.status();
      file = std::move(opened).value();
      std::lock_guard guard(mutex_);
      ++stats_.segments_recycled;
    }
  }
  if (file == nullptr) {
    auto created = co_await env_->NewWritableFile(path, WriteMode::kCreateTruncate);
    if (!created.ok()) co_return created.status();
    file = std::move(created).value();
  }
  Status allocated = co_await file->Allocate(0, options_.segment_size_bytes);
  if (!allocated.ok() && !allocated.IsNotSupported()) co_return allocated;
  // The segment's name must be durable before any record in it counts as synced.
  CFS_CO_RETURN_IF_ERROR(co_await env_->SyncDir(dir_));
  auto segment = std::make_shared<Segment>();
  segment->log_number = number;
  segment->file = std::move(file);
  co_return segment;
}

io::Task<void> WalWriter::WaitIdle() {
  std::unique_lock lock(mutex_);
  while (!pending_.empty() || preparing_) co_await changed_.Wait(lock);
}

io::Task<void> WalWriter::PrepareAhead() {
  for (;;) {
    {
      std::lock_guard guard(mutex_);
      if (closed_ || !error_.ok() || prepared_.size() >= prepared_wanted_) {
        preparing_ = false;
        changed_.NotifyAll();
        co_return;
      }
    }
    auto segment = co_await PrepareSegment(std::nullopt);
    std::lock_guard guard(mutex_);
    if (!segment.ok()) {
      if (error_.ok()) error_ = segment.status();
      preparing_ = false;
      changed_.NotifyAll();
      co_return;
    }
    prepared_.push_back(segment.value());
    changed_.NotifyAll();
  }
}

void WalWriter::StartPrepareLocked(std::size_t wanted) {
  prepared_wanted_ = std::max<std::size_t>(1, wanted);
  if (preparing_ || closed_ || prepared_.size() >= prepared_wanted_) return;
  preparing_ = true;
  env_->scheduler()->Spawn(PrepareAhead(), io::Priority::kBackground);
}

std::size_t WalWriter::SegmentsNeededLocked(std::size_t record_bytes) const {
  // An upper bound of the framed size: a header per block touched, padding per block, and a
  // sync mark in front.
  const std::size_t payload_per_block = kWalBlockSizeBytes - 2 * kWalHeaderBytes;
  const std::size_t framed = record_bytes +
                             (record_bytes / payload_per_block + 2) * (2 * kWalHeaderBytes) +
                             kWalHeaderBytes + kSyncMarkPayloadBytes;
  const std::uint64_t left_here =
      options_.segment_size_bytes - offset_ > kSegmentEndReserveBytes + kWalHeaderBytes
          ? options_.segment_size_bytes - offset_ - kSegmentEndReserveBytes - kWalHeaderBytes
          : 0;
  if (framed <= left_here) return 0;
  const std::uint64_t per_segment =
      options_.segment_size_bytes - kSegmentEndReserveBytes - 2 * kWalHeaderBytes;
  return static_cast<std::size_t>((framed - left_here + per_segment - 1) / per_segment);
}

void WalWriter::PadBlockLocked() {
  const std::uint64_t block_left = kWalBlockSizeBytes - offset_ % kWalBlockSizeBytes;
  if (block_left < kWalHeaderBytes) {
    buffer_.append(block_left, '\0');  // readers skip a tail shorter than a header
    offset_ += block_left;
  } else if (block_left == kWalHeaderBytes) {
    EmitFragmentLocked(WalFragmentType::kPadding, {});
  }
}

void WalWriter::EmitFragmentLocked(WalFragmentType type, std::string_view payload) {
  CFS_ASSERT(payload.size() + kWalHeaderBytes <= kWalBlockSizeBytes - offset_ % kWalBlockSizeBytes);
  char header[kWalHeaderBytes];
  EncodeFixed16(header + 4, static_cast<std::uint16_t>(payload.size()));
  header[6] = static_cast<char>(type);
  EncodeFixed32(header + 7, static_cast<std::uint32_t>(current_->log_number));
  // Checksum over type | log number | payload, as they lie in the file.
  std::string covered(header + 6, 5);
  covered.append(payload);
  EncodeFixed32(header, Checksum32(covered.data(), covered.size(), kWalChecksumSeed));
  buffer_.append(header, kWalHeaderBytes);
  buffer_.append(payload);
  offset_ += kWalHeaderBytes + payload.size();
}

void WalWriter::IssueBufferLocked() {
  if (buffer_.empty()) return;
  auto data = std::make_shared<std::string>(std::move(buffer_));
  buffer_.clear();
  const WalPosition start{current_->log_number, buffer_offset_};
  const WalPosition end{current_->log_number, buffer_offset_ + data->size()};
  pending_[start] = end;
  in_flight_bytes_ += data->size();
  stats_.in_flight_peak_bytes =
      std::max<std::uint64_t>(stats_.in_flight_peak_bytes, in_flight_bytes_);
  stats_.bytes_written += data->size();
  ++current_->pending_writes;
  current_->dirty = true;
  issued_through_ = end;
  buffer_offset_ = end.offset;
  CFS_ASSERT(buffer_offset_ == offset_);  // invariant 1
  env_->scheduler()->Spawn(WriteTask(current_, start.offset, std::move(data)));
}

io::Task<void> WalWriter::WriteTask(std::shared_ptr<Segment> segment, std::uint64_t offset,
                                    std::shared_ptr<std::string> data) {
  Status status = co_await segment->file->WriteAt(offset, *data);
  std::lock_guard guard(mutex_);
  pending_.erase(WalPosition{segment->log_number, offset});
  in_flight_bytes_ -= data->size();
  --segment->pending_writes;
  if (!status.ok() && error_.ok()) error_ = status;
  if (segment->retired && segment->pending_writes == 0) RetireLocked(segment);
  changed_.NotifyAll();
}

void WalWriter::EndSegmentLocked() {
  CFS_ASSERT(!prepared_.empty());
  const std::uint64_t block_left = kWalBlockSizeBytes - offset_ % kWalBlockSizeBytes;
  if (block_left < kWalHeaderBytes) {
    buffer_.append(block_left, '\0');
    offset_ += block_left;
  }
  EmitFragmentLocked(WalFragmentType::kSegmentEnd, {});  // invariant 3: room was kept
  CFS_ASSERT(offset_ <= options_.segment_size_bytes);
  IssueBufferLocked();
  current_ = prepared_.front();
  prepared_.pop_front();
  open_[current_->log_number] = current_;
  used_.insert(current_->log_number);
  ++stats_.segments_started;
  offset_ = 0;
  buffer_offset_ = 0;
  issued_through_ = PositionLocked();
  StartPrepareLocked(1);
}

Result<WalPosition> WalWriter::Append(std::string_view record) {
  std::lock_guard guard(mutex_);
  if (!error_.ok()) return error_;
  if (closed_) return Status::InvalidArgument(dir_ + ": WAL is closed");
  const std::size_t needed = SegmentsNeededLocked(record.size());
  if (needed > prepared_.size()) {
    StartPrepareLocked(needed);
    return Status::Busy("WAL: waiting for a segment");
  }
  if (in_flight_bytes_ >= options_.in_flight_bytes_max) {
    return Status::Busy("WAL: too many bytes in flight");
  }
  const std::uint64_t segment_size = options_.segment_size_bytes;
  if (mark_to_write_) {
    PadBlockLocked();
    // A mark is one fragment and never spans blocks. When the block's tail is too short for it,
    // it waits for a later record: it states a position that was durable, which stays true.
    const std::uint64_t block_left = kWalBlockSizeBytes - offset_ % kWalBlockSizeBytes;
    if (block_left >= kWalHeaderBytes + kSyncMarkPayloadBytes) {
      if (offset_ + kWalHeaderBytes + kSyncMarkPayloadBytes + kSegmentEndReserveBytes <=
          segment_size) {
        char payload[kSyncMarkPayloadBytes];
        EncodeFixed64(payload, mark_to_write_->log_number);
        EncodeFixed64(payload + 8, mark_to_write_->offset);
        EmitFragmentLocked(WalFragmentType::kSyncMark,
                           std::string_view(payload, kSyncMarkPayloadBytes));
      }
      mark_to_write_.reset();
    }
  }
  bool first = true;
  do {
    PadBlockLocked();
    const std::uint64_t block_room =
        kWalBlockSizeBytes - offset_ % kWalBlockSizeBytes - kWalHeaderBytes;
    const std::uint64_t segment_room =
        segment_size - offset_ >= kWalHeaderBytes + kSegmentEndReserveBytes
            ? segment_size - offset_ - kWalHeaderBytes - kSegmentEndReserveBytes
            : 0;
    const std::uint64_t room = std::min(block_room, segment_room);
    if (room == 0 || (segment_room < record.size() && segment_room < 64)) {
      // Too little of this segment is left to be worth a fragment: continue in the next.
      EndSegmentLocked();
      continue;
    }
    const std::size_t size = static_cast<std::size_t>(std::min<std::uint64_t>(room, record.size()));
    const bool last = size == record.size();
    const WalFragmentType type = first ? (last ? WalFragmentType::kFull : WalFragmentType::kFirst)
                                       : (last ? WalFragmentType::kLast : WalFragmentType::kMiddle);
    EmitFragmentLocked(type, record.substr(0, size));
    record.remove_prefix(size);
    first = false;
    if (last) break;
  } while (true);
  const WalPosition end = PositionLocked();
  if (buffer_.size() >= options_.buffer_size_bytes) IssueBufferLocked();
  return end;
}

io::Task<void> WalWriter::WaitWritable(std::size_t record_bytes) {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (!error_.ok() || closed_) co_return;
    const std::size_t needed = std::max<std::size_t>(1, SegmentsNeededLocked(record_bytes));
    const bool segments_ready = prepared_.size() >= needed;
    const bool room = in_flight_bytes_ < options_.in_flight_bytes_max;
    if (segments_ready && room) co_return;
    if (!segments_ready) StartPrepareLocked(needed);
    co_await changed_.Wait(lock);
  }
}

Result<std::uint64_t> WalWriter::SwitchSegment() {
  std::lock_guard guard(mutex_);
  if (!error_.ok()) return error_;
  if (closed_) return Status::InvalidArgument(dir_ + ": WAL is closed");
  if (prepared_.empty()) {
    StartPrepareLocked(1);
    return Status::Busy("WAL: waiting for a segment");
  }
  EndSegmentLocked();
  return current_->log_number;
}

WalPosition WalWriter::CompletedThroughLocked() const {
  return pending_.empty() ? issued_through_ : pending_.begin()->first;
}

io::Task<Status> WalWriter::SyncTo(WalPosition position) {
  std::unique_lock lock(mutex_);
  ++stats_.synced_writers;
  for (;;) {
    if (synced_through_ >= position) co_return Status::OK();
    if (!error_.ok()) co_return error_;
    if (position > issued_through_) IssueBufferLocked();
    if (sync_running_) {
      co_await changed_.Wait(lock);
      continue;
    }
    sync_running_ = true;
    const WalPosition target = issued_through_;
    while (CompletedThroughLocked() < target && error_.ok()) co_await changed_.Wait(lock);
    std::vector<std::shared_ptr<Segment>> to_sync;
    if (error_.ok()) {
      for (auto& [number, segment] : open_) {
        if (segment->dirty && number <= target.log_number) {
          segment->dirty = false;
          to_sync.push_back(segment);
        }
      }
    }
    lock.unlock();
    Status status;
    for (auto& segment : to_sync) {
      status = co_await segment->file->Sync();
      if (!status.ok()) break;
    }
    lock.lock();
    sync_running_ = false;
    if (!status.ok() && error_.ok()) error_ = status;
    if (error_.ok()) {
      synced_through_ = std::max(synced_through_, target);
      mark_to_write_ = synced_through_;
      ++stats_.syncs;
      // Ended segments with nothing pending and nothing unsynced are done: close them.
      for (auto it = open_.begin(); it != open_.end();) {
        const auto& segment = it->second;
        if (segment != current_ && segment->pending_writes == 0 && !segment->dirty &&
            segment->log_number < current_->log_number) {
          it = open_.erase(it);  // the file closes when its last holder lets go
        } else {
          ++it;
        }
      }
    }
    changed_.NotifyAll();
  }
}

io::Task<Status> WalWriter::FlushBuffer() {
  std::unique_lock lock(mutex_);
  if (!closed_) IssueBufferLocked();
  while (!pending_.empty()) co_await changed_.Wait(lock);
  co_return error_;
}

void WalWriter::RetireLocked(const std::shared_ptr<Segment>& segment) {
  open_.erase(segment->log_number);
  AddRecyclableLocked(segment->log_number);
}

void WalWriter::AddRecyclableLocked(std::uint64_t log_number) {
  recyclable_.push_back(log_number);
  if (recyclable_.size() <= kRecycleMax) return;
  // Beyond the bound the oldest file goes.
  std::sort(recyclable_.begin(), recyclable_.end());
  const std::string path = WalSegmentPath(dir_, recyclable_.front());
  recyclable_.erase(recyclable_.begin());
  env_->scheduler()->Spawn(
      [](Env* env, std::string victim) -> io::Task<void> {
        (void)co_await env->RemoveFile(victim);
      }(env_, path),
      io::Priority::kBackground);
}

void WalWriter::RecycleBelow(std::uint64_t log_number) {
  std::lock_guard guard(mutex_);
  for (auto it = used_.begin(); it != used_.end() && *it < log_number;) {
    const std::uint64_t number = *it;
    it = used_.erase(it);
    auto open = open_.find(number);
    if (open != open_.end()) {
      std::shared_ptr<Segment> segment = open->second;
      CFS_ASSERT(segment != current_);
      if (segment->pending_writes > 0) {
        segment->retired = true;  // WriteTask recycles it when its last write finishes
        continue;
      }
      RetireLocked(segment);
    } else {
      AddRecyclableLocked(number);
    }
  }
}

io::Task<Status> WalWriter::Close() {
  WalPosition end;
  {
    std::lock_guard guard(mutex_);
    if (closed_) co_return error_;
    IssueBufferLocked();
    end = issued_through_;
  }
  Status status = co_await SyncTo(end);
  std::unique_lock lock(mutex_);
  closed_ = true;
  while (!pending_.empty() || preparing_) co_await changed_.Wait(lock);
  std::vector<std::shared_ptr<Segment>> files;
  for (auto& [number, segment] : open_) files.push_back(segment);
  for (auto& segment : prepared_) files.push_back(segment);
  lock.unlock();
  for (auto& segment : files) {
    Status closed = co_await segment->file->Close();
    if (status.ok()) status = closed;
  }
  lock.lock();
  if (error_.ok() && !status.ok()) error_ = status;
  co_return error_;
}

WalStats WalWriter::stats() const {
  std::lock_guard guard(mutex_);
  return stats_;
}

}  // namespace cascadefs::engine
