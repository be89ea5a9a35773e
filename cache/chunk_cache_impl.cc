// chunk_cache_impl.cc: the circular chunk cache (design: chunk_cache_impl.h, docs/cache.md).
#include "chunk_cache_impl.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include <xxhash.h>

#include "cache_file.h"
#include "cache_format.h"
#include "engine/assert.h"

namespace cascadefs::cache {

namespace {

constexpr std::uint32_t kSegmentsMin = 4;         // head, write segment, and room to skip
constexpr std::uint32_t kSegmentsMax = 1u << 20;  // bounds the O(segments) head search
constexpr std::size_t kPromiseKeysMax = 65536;

std::uint32_t GhostCapacity(const ChunkCacheOptions& options) {
  if (options.ghost_entries != 0) return options.ghost_entries;
  return static_cast<std::uint32_t>(
      std::max<std::uint64_t>(1024, options.capacity_bytes / (8u << 10)));
}

Status ValidateOptions(const ChunkCacheOptions& o) {
  if (o.segment_size_bytes < kSegmentMinBytes || o.segment_size_bytes > kSegmentMaxBytes ||
      o.segment_size_bytes % 4096 != 0) {
    return Status::InvalidArgument(
        "segment_size_bytes must be a multiple of 4096 in [64 KiB, "
        "64 MiB]");
  }
  if (o.capacity_bytes % o.segment_size_bytes != 0 ||
      o.capacity_bytes / o.segment_size_bytes < kSegmentsMin ||
      o.capacity_bytes / o.segment_size_bytes > kSegmentsMax) {
    return Status::InvalidArgument(
        "capacity_bytes must be a multiple of segment_size_bytes, 4 to 2^20 segments");
  }
  if (o.insert_queue_bytes < o.segment_size_bytes) {
    return Status::InvalidArgument("insert_queue_bytes must be at least one segment");
  }
  if (o.reinsert_percent_max > 90) {
    return Status::InvalidArgument("reinsert_percent_max must be <= 90");
  }
  if (o.promised_chunks_max == 0) {
    return Status::InvalidArgument("promised_chunks_max must be >= 1");
  }
  return Status::OK();
}

void UpdateMax(std::atomic<std::uint64_t>& max, std::uint64_t value) {
  std::uint64_t seen = max.load(std::memory_order_relaxed);
  while (value > seen && !max.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

}  // namespace

Result<std::unique_ptr<ChunkCache>> ChunkCache::Open(const std::string& path,
                                                     const ChunkCacheOptions& options) {
  CFS_RETURN_IF_ERROR(ValidateOptions(options).WithContext(path));
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, path + ": open");
  auto cache = std::make_unique<ChunkCacheImpl>(path, options, fd);
  CFS_RETURN_IF_ERROR(cache->Start());
  return std::unique_ptr<ChunkCache>(std::move(cache));
}

ChunkCacheImpl::ChunkCacheImpl(std::string path, const ChunkCacheOptions& options, int fd)
    : path_(std::move(path)),
      options_(options),
      fd_(fd),
      entry_bytes_max_(options.segment_size_bytes -
                       static_cast<std::uint32_t>(kSegmentHeaderBytes)),
      ghost_(GhostCapacity(options)),
      segments_(std::make_unique<Segment[]>(segment_count())) {
  staged_bytes_.reserve(options_.segment_size_bytes);
}

ChunkCacheImpl::~ChunkCacheImpl() {
  (void)Close();
  ::close(fd_);
}

Status ChunkCacheImpl::Start() {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::FromErrno(errno, path_ + ": fstat");
  const std::uint64_t file_bytes = static_cast<std::uint64_t>(st.st_size);
  if (file_bytes > 0 && file_bytes < options_.capacity_bytes) {
    // A file cut short (truncated by a tool, or a copy that stopped) keeps what it has: the
    // missing tail reads as zeros, that is, never-written segments, and an entry cut in two
    // fails its checksum. Recover reformats it anyway if its headers say another geometry.
    if (::ftruncate(fd_, static_cast<off_t>(options_.capacity_bytes)) != 0) {
      return Status::FromErrno(errno, path_ + ": ftruncate");
    }
    CFS_RETURN_IF_ERROR(Recover().WithContext(path_));
  } else if (file_bytes == options_.capacity_bytes) {
    CFS_RETURN_IF_ERROR(Recover().WithContext(path_));
  } else {
    CFS_RETURN_IF_ERROR(Format().WithContext(path_));  // new, or larger than its geometry
  }
  writer_ = std::thread([this] { WriterLoop(); });
  reader_ = std::thread([this] { ReaderLoop(); });
  return Status::OK();
}

Status ChunkCacheImpl::Format() {
  // Truncating to zero and back leaves every segment header zero (never written), so no
  // segment of an earlier file identity or geometry survives a reformat.
  if (::ftruncate(fd_, 0) != 0) return Status::FromErrno(errno, "ftruncate");
  if (::ftruncate(fd_, static_cast<off_t>(options_.capacity_bytes)) != 0) {
    return Status::FromErrno(errno, "ftruncate");
  }
  do {
    if (::getrandom(&file_identity_, sizeof(file_identity_), 0) !=
        static_cast<ssize_t>(sizeof(file_identity_))) {
      return Status::FromErrno(errno, "getrandom");
    }
  } while (file_identity_ == 0);
  write_segment_ = segment_count() - 1;
  write_offset_ = options_.segment_size_bytes;  // full: the first append advances
  staged_offset_ = write_offset_;
  next_sequence_ = 1;
  return Status::OK();
}

Status ChunkCacheImpl::Recover() {
  const std::uint32_t count = segment_count();
  std::vector<SegmentHeader> headers(count);
  std::vector<bool> valid(count, false);
  char raw[kSegmentHeaderBytes];
  std::uint64_t identity = 0;
  std::uint64_t best_sequence = 0;
  for (std::uint32_t s = 0; s < count; ++s) {
    CFS_RETURN_IF_ERROR(PreadFull(fd_, raw, sizeof(raw), SegmentFileOffset(s)));
    Result<SegmentHeader> header = DecodeSegmentHeader(raw, sizeof(raw));
    if (!header.ok()) {
      // Another format version or geometry: the file is not ours to read; start afresh.
      if (header.status().IsNotSupported()) return Format();
      if (header.status().IsCorruption()) damaged_.fetch_add(1, std::memory_order_relaxed);
      continue;  // NotFound: never written
    }
    if (header->segment_size_bytes != options_.segment_size_bytes ||
        header->capacity_bytes != options_.capacity_bytes || header->segment_index != s) {
      return Format();
    }
    headers[s] = *header;
    valid[s] = true;
    if (header->sequence > best_sequence) {
      best_sequence = header->sequence;
      identity = header->file_identity;
    }
  }
  if (identity == 0) return Format();
  file_identity_ = identity;

  // Replay segments oldest first, so a key written twice ends up at its newer copy.
  std::vector<std::uint32_t> order;
  for (std::uint32_t s = 0; s < count; ++s) {
    if (valid[s] && headers[s].file_identity == identity) order.push_back(s);
  }
  std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    return headers[a].sequence < headers[b].sequence;
  });
  std::string image(options_.segment_size_bytes, '\0');
  std::uint32_t last_end = 0;
  for (std::uint32_t s : order) {
    CFS_RETURN_IF_ERROR(PreadFull(fd_, image.data(), image.size(), SegmentFileOffset(s)));
    const std::uint64_t sequence = headers[s].sequence;
    Segment& segment = segments_[s];
    segment.sequence.store(sequence, std::memory_order_relaxed);
    WalkResult walk = WalkSegment(image.data(), image.size(), sequence, [&](const WalkedEntry& e) {
      const CacheKey key = CacheKey::From(e.view.key);
      index_.Put(
          key, Location{s, e.offset, static_cast<std::uint32_t>(e.view.value.size()), sequence}, 0);
      segment.keys.push_back(key);
      warm_entries_.fetch_add(1, std::memory_order_relaxed);
    });
    damaged_.fetch_add(walk.damaged_entries, std::memory_order_relaxed);
    last_end = walk.end_offset;
  }
  if (order.empty()) return Format();
  // Appends continue in the newest segment, after its last valid entry (a torn entry there is
  // overwritten).
  // Full when every segment holds data: the next segment the writer takes evicts.
  full_.store(order.size() == count, std::memory_order_relaxed);
  write_segment_ = order.back();
  write_offset_ = last_end;
  staged_offset_ = last_end;
  next_sequence_ = headers[order.back()].sequence + 1;
  // Entries replaced by a newer copy were overwritten in the index; drop their counts.
  warm_entries_.store(index_.entries(), std::memory_order_relaxed);
  return Status::OK();
}

Status ChunkCacheImpl::Close() {
  std::lock_guard close_guard(close_mu_);
  if (closed_) {
    std::lock_guard guard(error_mu_);
    return first_error_;
  }
  closed_ = true;
  {
    std::lock_guard guard(queue_mu_);
    writer_stop_ = true;
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  {
    std::lock_guard guard(mu_);
    reader_stop_ = true;
  }
  reader_cv_.notify_all();
  if (reader_.joinable()) reader_.join();
  if (::fdatasync(fd_) != 0) RecordError(Status::FromErrno(errno, path_ + ": fdatasync"));
  std::lock_guard guard(error_mu_);
  return first_error_;
}

void ChunkCacheImpl::RecordError(const Status& status) {
  std::lock_guard guard(error_mu_);
  if (first_error_.ok()) first_error_ = status;
}

Status ChunkCacheImpl::ReadEntry(const CacheKey& key, const Location& location,
                                 std::string* value) {
  const std::size_t entry_bytes = EntryBytes(key.size, location.value_bytes);
  CFS_ASSERT(entry_bytes <= entry_bytes_max_);
  CFS_ASSERT(location.segment < segment_count());
  // Sized to this entry only: a miss or a small chunk does not pay for the largest.
  thread_local std::string buffer;
  buffer.resize(entry_bytes);
  Segment& segment = segments_[location.segment];
  {
    std::shared_lock lock(segment.io_mutex);  // I2
    if (segment.sequence.load(std::memory_order_acquire) != location.sequence) {
      return Status::NotFound("entry reclaimed");
    }
    Status read = PreadFull(fd_, buffer.data(), entry_bytes,
                            SegmentFileOffset(location.segment) + location.offset);
    if (!read.ok()) return read.WithContext(path_);
  }
  EntryView view;
  const EntryDamage damage = DecodeEntry(buffer.data(), entry_bytes, location.sequence, &view);
  if (damage != EntryDamage::kNone || view.key != key.view() ||
      view.value.size() != location.value_bytes) {
    damaged_.fetch_add(1, std::memory_order_relaxed);
    (void)index_.EraseIf(key, location.segment, location.sequence);
    return Status::Corruption(path_ + ": segment " + std::to_string(location.segment) +
                              " at offset " + std::to_string(location.offset) +
                              ": damaged entry dropped");
  }
  value->assign(view.value);
  return Status::OK();
}

Status ChunkCacheImpl::Lookup(std::string_view key, std::string* value) {
  if (key.empty() || key.size() > kKeyMaxBytes) return Status::InvalidArgument("cache key size");
  const CacheKey cache_key = CacheKey::From(key);
  Location location;
  if (!index_.Find(cache_key, &location, /*touch=*/true)) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return Status::NotFound("not cached");
  }
  Status status = ReadEntry(cache_key, location, value);
  if (status.ok()) {
    hits_.fetch_add(1, std::memory_order_relaxed);
    return status;
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  // A stale or damaged entry is a miss to the caller; only a failed read is an error.
  if (status.IsIOError()) return status;
  return Status::NotFound(status.message());
}

io::Task<Status> ChunkCacheImpl::LookupAsync(std::string_view key, std::string* value) {
  co_return Lookup(key, value);
}

bool ChunkCacheImpl::Contains(std::string_view key) {
  if (key.empty() || key.size() > kKeyMaxBytes) return false;
  Location location;
  return index_.Find(CacheKey::From(key), &location, /*touch=*/false);
}

Status ChunkCacheImpl::Insert(std::string_view key, std::string_view value) {
  if (key.empty() || key.size() > kKeyMaxBytes) {
    return Status::InvalidArgument("cache key must be 1 to 32 bytes");
  }
  if (EntryBytes(key.size(), value.size()) > entry_bytes_max_) {
    return Status::InvalidArgument("chunk of " + std::to_string(value.size()) +
                                   " bytes does not fit a cache segment");
  }
  const CacheKey cache_key = CacheKey::From(key);
  Location location;
  if (index_.Find(cache_key, &location, /*touch=*/false)) {
    already_cached_.fetch_add(1, std::memory_order_relaxed);
    return Status::OK();
  }
  // The doorkeeper guards against evicting hot chunks for cold ones; before the cache is full
  // nothing is evicted, so it would only cost a second miss per chunk.
  if (options_.admission == Admission::kSeenTwice && full_.load(std::memory_order_relaxed)) {
    const std::uint64_t fingerprint = cache_key.Hash();
    if (!ghost_.Contains(fingerprint)) {
      ghost_.Add(fingerprint);
      not_admitted_.fetch_add(1, std::memory_order_relaxed);
      return Status::OK();
    }
  }
  const std::uint64_t charge = key.size() + value.size();
  // The copy is made before the lock, so the lock covers a few pointer moves only.
  QueuedInsert item{cache_key, std::string(value)};
  {
    std::lock_guard guard(queue_mu_);
    if (writer_stop_ || queued_bytes_ + charge > options_.insert_queue_bytes) {
      dropped_full_.fetch_add(1, std::memory_order_relaxed);  // at the bound: drop (I6)
      return Status::OK();
    }
    queue_.push_back(std::move(item));
    queued_bytes_ += charge;
    ++inserts_enqueued_;
    CFS_ASSERT(queued_bytes_ <= options_.insert_queue_bytes);  // I6
    UpdateMax(queue_peak_, queued_bytes_);
  }
  inserts_queued_.fetch_add(1, std::memory_order_relaxed);
  queue_cv_.notify_one();
  return Status::OK();
}

void ChunkCacheImpl::Flush() {
  std::unique_lock lock(queue_mu_);
  const std::uint64_t target = inserts_enqueued_;
  flush_cv_.wait(lock, [&] { return inserts_done_ >= target; });
}

PromiseResult ChunkCacheImpl::Promise(const std::vector<std::string_view>& keys,
                                      PromiseCallback callback) {
  CFS_ASSERT(keys.size() <= kPromiseKeysMax);
  CFS_ASSERT(callback != nullptr);
  PromiseResult result;
  auto promise = std::make_shared<PromiseState>();
  promise->callback = std::move(callback);
  promise->start = std::chrono::steady_clock::now();
  // Keys in the segment being written: read by this thread after mu_ is dropped (a promise
  // cannot pin write_segment_, I4).
  std::vector<PendingDelivery> direct;
  {
    std::lock_guard guard(mu_);
    // The count is set before any delivery can run: the reader loop needs mu_ to see these.
    for (std::uint32_t i = 0; i < keys.size(); ++i) {
      const std::string_view key = keys[i];
      CFS_ASSERT(!key.empty() && key.size() <= kKeyMaxBytes);
      const CacheKey cache_key = CacheKey::From(key);
      Location location;
      if (pending_total_ >= options_.promised_chunks_max ||
          !index_.Find(cache_key, &location, /*touch=*/true)) {
        result.missing.push_back(i);
        continue;
      }
      PendingDelivery delivery{promise, i, cache_key, location};
      ++result.promised;
      if (location.segment == write_segment_) {
        direct.push_back(std::move(delivery));
        continue;
      }
      // I3: the entry is current, and I4 keeps it so until delivered.
      Segment& segment = segments_[location.segment];
      ++segment.pins;
      ++pending_total_;
      segment.pending.push_back(std::move(delivery));
    }
    promise->remaining.store(result.promised, std::memory_order_relaxed);
  }
  promises_.fetch_add(1, std::memory_order_relaxed);
  promised_chunks_.fetch_add(result.promised, std::memory_order_relaxed);
  if (result.promised > direct.size()) reader_cv_.notify_one();
  std::string buffer;
  for (const PendingDelivery& delivery : direct) Deliver(delivery, &buffer);
  return result;
}

void ChunkCacheImpl::Deliver(const PendingDelivery& delivery, std::string* buffer) {
  PromisedChunk chunk;
  chunk.key_index = delivery.key_index;
  chunk.status = ReadEntry(delivery.key, delivery.location, buffer);
  if (chunk.status.ok()) {
    chunk.value = *buffer;
    promised_delivered_.fetch_add(1, std::memory_order_relaxed);
  } else {
    promised_missing_.fetch_add(1, std::memory_order_relaxed);
  }
  delivery.promise->callback(chunk);
  if (delivery.promise->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    const auto elapsed = std::chrono::steady_clock::now() - delivery.promise->start;
    const auto us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count());
    promise_latency_total_us_.fetch_add(us, std::memory_order_relaxed);
    UpdateMax(promise_latency_max_us_, us);
    promises_completed_.fetch_add(1, std::memory_order_relaxed);
  }
}

void ChunkCacheImpl::ReaderLoop() {
  std::string buffer;
  // The event loop of the reader thread: it ends when stopping and nothing is pending.
  for (;;) {
    std::vector<PendingDelivery> batch;
    std::uint32_t segment_index = 0;
    {
      std::unique_lock lock(mu_);
      reader_cv_.wait(lock, [&] { return pending_total_ > 0 || reader_stop_; });
      if (pending_total_ == 0) break;  // reader_stop_ and nothing left
      // Deliver from the head: the pending segment with the oldest sequence.
      std::uint64_t oldest = UINT64_MAX;
      for (std::uint32_t s = 0; s < segment_count(); ++s) {
        const Segment& segment = segments_[s];
        if (segment.pending.empty()) continue;
        const std::uint64_t sequence = segment.sequence.load(std::memory_order_relaxed);
        if (sequence < oldest) {
          oldest = sequence;
          segment_index = s;
        }
      }
      CFS_ASSERT(oldest != UINT64_MAX);
      batch.swap(segments_[segment_index].pending);
    }
    // Offset order: one forward pass over the segment.
    std::sort(batch.begin(), batch.end(), [](const PendingDelivery& a, const PendingDelivery& b) {
      return a.location.offset < b.location.offset;
    });
    for (const PendingDelivery& delivery : batch) {
      // I3 + I4: the segment still carries the promised sequence.
      CFS_DASSERT(segments_[segment_index].sequence.load() == delivery.location.sequence);
      Deliver(delivery, &buffer);
    }
    {
      std::lock_guard guard(mu_);
      Segment& segment = segments_[segment_index];
      CFS_ASSERT(segment.pins >= batch.size());
      CFS_ASSERT(pending_total_ >= batch.size());
      segment.pins -= static_cast<std::uint32_t>(batch.size());
      pending_total_ -= batch.size();
    }
    writer_cv_.notify_all();
  }
}

void ChunkCacheImpl::WriterLoop() {
  // The event loop of the writer thread: it ends when stopping and the queue is empty.
  for (;;) {
    std::deque<QueuedInsert> batch;
    std::uint64_t batch_bytes = 0;
    {
      std::unique_lock lock(queue_mu_);
      queue_cv_.wait(lock, [&] { return !queue_.empty() || writer_stop_; });
      if (queue_.empty()) break;  // writer_stop_ and drained
      // At most about one segment per batch, so entries become visible in bounded time.
      while (!queue_.empty() && batch_bytes < options_.segment_size_bytes) {
        batch_bytes += queue_.front().key.size + queue_.front().value.size();
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    for (const QueuedInsert& item : batch) {
      Location existing;
      if (index_.Find(item.key, &existing, /*touch=*/false)) {
        already_cached_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      Append(item.key, item.value, 0, /*reinserted=*/false);
    }
    WriteStaged();
    {
      std::lock_guard guard(queue_mu_);
      CFS_ASSERT(queued_bytes_ >= batch_bytes);
      queued_bytes_ -= batch_bytes;  // I6: released only once written
      inserts_done_ += batch.size();
    }
    flush_cv_.notify_all();
  }
  WriteStaged();
}

void ChunkCacheImpl::Append(const CacheKey& key, std::string_view value, std::uint8_t frequency,
                            bool reinserted) {
  const std::size_t entry_bytes = EntryBytes(key.size, value.size());
  CFS_ASSERT(entry_bytes <= entry_bytes_max_);
  if (write_offset_ + entry_bytes > options_.segment_size_bytes) {
    CFS_ASSERT(!reinserted);  // reinsertions fit the fresh segment by their byte budget
    WriteStaged();
    AdvanceSegment();
  }
  CFS_ASSERT(write_offset_ + entry_bytes <= options_.segment_size_bytes);
  CFS_ASSERT(staged_offset_ + staged_bytes_.size() == write_offset_);
  const std::uint64_t sequence = segments_[write_segment_].sequence.load(std::memory_order_relaxed);
  EncodeEntry(key.view(), value, sequence, &staged_bytes_);
  staged_.push_back(Staged{
      key,
      Location{write_segment_, write_offset_, static_cast<std::uint32_t>(value.size()), sequence},
      frequency, reinserted});
  write_offset_ += static_cast<std::uint32_t>(entry_bytes);
}

void ChunkCacheImpl::WriteStaged() {
  if (staged_bytes_.empty()) return;
  Segment& segment = segments_[write_segment_];
  // I2: no index entry points at these bytes until the pwrite returned.
  Status written = PwriteFull(fd_, staged_bytes_.data(), staged_bytes_.size(),
                              SegmentFileOffset(write_segment_) + staged_offset_);
  if (written.ok()) {
    for (const Staged& staged : staged_) {
      index_.Put(staged.key, staged.location, staged.frequency);
      segment.keys.push_back(staged.key);
      if (staged.reinserted) {
        reinsertions_.fetch_add(1, std::memory_order_relaxed);
      } else {
        inserts_written_.fetch_add(1, std::memory_order_relaxed);
      }
    }
  } else {
    // The entries are lost to the cache (a miss later), never served half-written: nothing
    // was published. The space stays used until the segment is reclaimed.
    RecordError(written.WithContext(path_));
  }
  staged_offset_ += static_cast<std::uint32_t>(staged_bytes_.size());
  staged_bytes_.clear();
  staged_.clear();
  CFS_ASSERT(staged_offset_ == write_offset_);
}

void ChunkCacheImpl::AdvanceSegment() {
  CFS_ASSERT(staged_bytes_.empty());
  const std::uint32_t count = segment_count();
  std::uint32_t chosen = 0;
  {
    std::unique_lock lock(mu_);
    // The head: the oldest segment other than the one just filled (never written counts as
    // oldest, sequence 0).
    std::uint32_t head = (write_segment_ + 1) % count;
    for (std::uint32_t s = 0; s < count; ++s) {
      if (s == write_segment_) continue;
      if (segments_[s].sequence.load(std::memory_order_relaxed) <
          segments_[head].sequence.load(std::memory_order_relaxed)) {
        head = s;
      }
    }
    // Bounded: count - 1 candidates; the head is among them, and at the head we wait.
    for (std::uint32_t step = 1; step < count; ++step) {
      const std::uint32_t candidate = (write_segment_ + step) % count;
      if (segments_[candidate].pins == 0) {
        chosen = candidate;
        break;
      }
      if (candidate == head) {
        // The reader loop delivers from the head first, so this wait is short and cannot
        // deadlock: the reader needs neither the writer nor the segment exclusively.
        writer_waits_.fetch_add(1, std::memory_order_relaxed);
        writer_cv_.wait(lock, [&] { return segments_[candidate].pins == 0; });
        chosen = candidate;
        break;
      }
      writer_skips_.fetch_add(1, std::memory_order_relaxed);
    }
    CFS_ASSERT(segments_[chosen].pins == 0);  // I4
    CFS_ASSERT(chosen != write_segment_);
    write_segment_ = chosen;  // from here on no promise can pin it (I4)
  }

  // Forget the chosen segment's entries (I3); remember those hit since they were written.
  Segment& segment = segments_[chosen];
  const std::uint64_t old_sequence = segment.sequence.load(std::memory_order_relaxed);
  if (old_sequence != 0) full_.store(true, std::memory_order_relaxed);  // evicting from now on
  struct Second {
    CacheKey key;
    Location location;
    std::uint8_t frequency;
  };
  std::vector<Second> second_chance;
  const std::uint64_t reinsert_budget =
      std::uint64_t{entry_bytes_max_} * options_.reinsert_percent_max / 100;
  std::uint64_t reinsert_bytes = 0;
  std::uint32_t read_end = 0;
  for (const CacheKey& key : segment.keys) {
    Location location;
    if (!index_.Find(key, &location, false) || location.segment != chosen ||
        location.sequence != old_sequence) {
      continue;  // a newer copy lives elsewhere, or it was dropped as damaged
    }
    const int frequency = index_.EraseIf(key, chosen, old_sequence);
    if (frequency < 0) continue;
    const std::uint64_t entry_bytes = EntryBytes(key.size, location.value_bytes);
    if (frequency > 0 && reinsert_bytes + entry_bytes <= reinsert_budget) {
      reinsert_bytes += entry_bytes;
      second_chance.push_back(Second{key, location, static_cast<std::uint8_t>(frequency)});
      read_end = std::max<std::uint32_t>(read_end,
                                         location.offset + static_cast<std::uint32_t>(entry_bytes));
    } else {
      evictions_.fetch_add(1, std::memory_order_relaxed);
      ghost_.Add(key.Hash());
    }
  }
  segment.keys.clear();

  const std::uint64_t new_sequence = next_sequence_++;
  {
    std::unique_lock lock(segment.io_mutex);  // I2: no reader is inside this segment
    if (read_end > 0) {
      reclaim_buffer_.resize(read_end);
      Status read = PreadFull(fd_, reclaim_buffer_.data(), read_end, SegmentFileOffset(chosen));
      if (!read.ok()) {
        RecordError(read.WithContext(path_));
        second_chance.clear();
      }
    }
    char header[kSegmentHeaderBytes];
    EncodeSegmentHeader(SegmentHeader{file_identity_, new_sequence, options_.segment_size_bytes,
                                      chosen, options_.capacity_bytes},
                        header);
    Status written = PwriteFull(fd_, header, sizeof(header), SegmentFileOffset(chosen));
    if (!written.ok()) RecordError(written.WithContext(path_));
    // Even when the header write failed: entries stamped new_sequence are then never found at
    // a warm restart, which only costs hits.
    segment.sequence.store(new_sequence, std::memory_order_release);
  }
  reclaimed_.fetch_add(1, std::memory_order_relaxed);
  write_offset_ = static_cast<std::uint32_t>(kSegmentHeaderBytes);
  staged_offset_ = write_offset_;

  // Second chance: the bytes come back from the reclaimed image, validated again.
  for (const Second& second : second_chance) {
    EntryView view;
    const std::size_t entry_bytes = EntryBytes(second.key.size, second.location.value_bytes);
    const EntryDamage damage = DecodeEntry(reclaim_buffer_.data() + second.location.offset,
                                           entry_bytes, old_sequence, &view);
    if (damage != EntryDamage::kNone || view.key != second.key.view()) {
      damaged_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    Append(second.key, view.value, static_cast<std::uint8_t>(second.frequency - 1),
           /*reinserted=*/true);
  }
}

ChunkCacheStats ChunkCacheImpl::stats() const {
  ChunkCacheStats out;
  out.hits = hits_.load(std::memory_order_relaxed);
  out.misses = misses_.load(std::memory_order_relaxed);
  out.entries = index_.entries();
  out.bytes_cached = index_.value_bytes();
  out.capacity_bytes = options_.capacity_bytes;
  out.inserts_queued = inserts_queued_.load(std::memory_order_relaxed);
  out.inserts_written = inserts_written_.load(std::memory_order_relaxed);
  out.inserts_dropped_queue_full = dropped_full_.load(std::memory_order_relaxed);
  out.inserts_not_admitted = not_admitted_.load(std::memory_order_relaxed);
  out.inserts_already_cached = already_cached_.load(std::memory_order_relaxed);
  {
    std::lock_guard guard(queue_mu_);
    out.insert_queue_bytes = queued_bytes_;
  }
  out.insert_queue_bytes_peak = queue_peak_.load(std::memory_order_relaxed);
  out.segments_reclaimed = reclaimed_.load(std::memory_order_relaxed);
  out.reinsertions = reinsertions_.load(std::memory_order_relaxed);
  out.evictions = evictions_.load(std::memory_order_relaxed);
  out.writer_waits_on_promises = writer_waits_.load(std::memory_order_relaxed);
  out.writer_skips_promised = writer_skips_.load(std::memory_order_relaxed);
  out.damaged_entries_dropped = damaged_.load(std::memory_order_relaxed);
  out.promises = promises_.load(std::memory_order_relaxed);
  out.promised_chunks = promised_chunks_.load(std::memory_order_relaxed);
  out.promised_delivered = promised_delivered_.load(std::memory_order_relaxed);
  out.promised_reported_missing = promised_missing_.load(std::memory_order_relaxed);
  out.promise_latency_us_total = promise_latency_total_us_.load(std::memory_order_relaxed);
  out.promise_latency_us_max = promise_latency_max_us_.load(std::memory_order_relaxed);
  out.promises_completed = promises_completed_.load(std::memory_order_relaxed);
  out.warm_restart_entries = warm_entries_.load(std::memory_order_relaxed);
  return out;
}

}  // namespace cascadefs::cache
