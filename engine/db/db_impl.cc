// db_impl.cc: DB::Open and DBImpl (db_impl.h has the design and invariants).
#include "db/db_impl.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "compaction/compaction_job.h"
#include "db/db_iter.h"
#include "db/merging_iterator.h"
#include "db/write_batch_internal.h"
#include "manifest/filename.h"
#include "sst/table_builder.h"
#include "vlog/vlog_file.h"
#include "wal/wal_reader.h"

namespace cascadefs::engine {

namespace {

// How long a write waits at level0_slowdown_writes_trigger.
constexpr std::chrono::milliseconds kWriteSlowdown{1};
// A compaction that ran out of disk space is tried again after this pause, which it spends
// in steps of kNoSpaceRetryStepMs so that Close never waits longer than one step.
constexpr std::uint32_t kNoSpaceRetryMs = 2000;
constexpr std::uint32_t kNoSpaceRetryStepMs = 100;
// Value-log GC reads at most this many bytes of records per step, then yields.
constexpr std::uint64_t kVlogGcStepBytes = 1 << 20;

std::uint64_t MicrosSince(std::chrono::steady_clock::time_point start) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::steady_clock::now() - start)
                                        .count());
}

}  // namespace

class DBImpl::SnapshotImpl final : public Snapshot {
 public:
  explicit SnapshotImpl(SequenceNumber sequence) : sequence(sequence) {}
  ~SnapshotImpl() override = default;
  const SequenceNumber sequence;
};

DBImpl::SuperVersion::SuperVersion(MemTable* mem, MemTable* imm,
                                   std::shared_ptr<const Version> version)
    : mem(mem), imm(imm), version(std::move(version)) {
  mem->Ref();
  if (imm != nullptr) imm->Ref();
}

DBImpl::SuperVersion::~SuperVersion() {
  mem->Unref();
  if (imm != nullptr) imm->Unref();
}

DBImpl::DBImpl(const Options& options, std::string dir) : options_(options), dir_(std::move(dir)) {
  table_options_.block_size_bytes = options_.block_size_bytes;
  table_options_.block_restart_interval = options_.block_restart_interval;
  table_options_.index_partition_size_bytes = options_.index_partition_size_bytes;
  table_options_.bloom_bits_per_key = options_.bloom_bits_per_key;
  table_options_.compression = options_.compression;
  table_options_.zstd_level = options_.zstd_level;
  compaction_options_ = CompactionOptions::From(options_);
}

DBImpl::~DBImpl() {
  Status status = Close();
  if (!status.ok()) Log("close: " + status.ToString());
}

void DBImpl::Log(std::string_view line) const {
  if (options_.info_log) options_.info_log(line);
}

Status DBImpl::CheckOptions() const {
  auto out_of_range = [](const char* name) {
    return Status::InvalidArgument(std::string("option ") + name + " is out of range");
  };
  if (options_.write_buffer_size_bytes < (4 << 10) ||
      options_.write_buffer_size_bytes > (std::size_t{4} << 30)) {
    return out_of_range("write_buffer_size_bytes (4 KiB..4 GiB)");
  }
  if (options_.wal_segment_size_bytes < (64 << 10) ||
      options_.wal_segment_size_bytes > (std::uint64_t{1} << 30) ||
      options_.wal_segment_size_bytes % kWalBlockSizeBytes != 0) {
    return out_of_range("wal_segment_size_bytes (64 KiB..1 GiB, a multiple of 32 KiB)");
  }
  if (options_.wal_buffer_size_bytes > (64 << 20)) {
    return out_of_range("wal_buffer_size_bytes (0..64 MiB)");
  }
  if (options_.wal_in_flight_bytes_max < (64 << 10) ||
      options_.wal_in_flight_bytes_max > (std::size_t{1} << 30)) {
    return out_of_range("wal_in_flight_bytes_max (64 KiB..1 GiB)");
  }
  if (options_.block_size_bytes < kBlockSizeMinBytes || options_.block_size_bytes > (1 << 20)) {
    return out_of_range("block_size_bytes");
  }
  if (options_.block_restart_interval < 1 || options_.block_restart_interval > 1024) {
    return out_of_range("block_restart_interval (1..1024)");
  }
  if (options_.index_partition_size_bytes < kBlockSizeMinBytes ||
      options_.index_partition_size_bytes > (1 << 20)) {
    return out_of_range("index_partition_size_bytes");
  }
  if (options_.bloom_bits_per_key > 32) return out_of_range("bloom_bits_per_key (0..32)");
  if (options_.zstd_level < 1 || options_.zstd_level > 19) {
    return out_of_range("zstd_level (1..19)");
  }
  if (options_.max_open_files < 16 || options_.max_open_files > 100000) {
    return out_of_range("max_open_files (16..100000)");
  }
  if (options_.block_cache_size_bytes > (std::uint64_t{1} << 40)) {
    return out_of_range("block_cache_size_bytes (0..1 TiB)");
  }
  if (options_.level0_compaction_trigger < 1 || options_.level0_compaction_trigger > 1000) {
    return out_of_range("level0_compaction_trigger (1..1000)");
  }
  if (options_.level0_stop_writes_trigger > 1000) {
    return out_of_range("level0_stop_writes_trigger (..1000)");
  }
  if (options_.level0_slowdown_writes_trigger < options_.level0_compaction_trigger ||
      options_.level0_slowdown_writes_trigger > options_.level0_stop_writes_trigger) {
    return Status::InvalidArgument(
        "options level0_compaction_trigger <= level0_slowdown_writes_trigger <= "
        "level0_stop_writes_trigger must hold (got " +
        std::to_string(options_.level0_compaction_trigger) + ", " +
        std::to_string(options_.level0_slowdown_writes_trigger) + ", " +
        std::to_string(options_.level0_stop_writes_trigger) + ")");
  }
  if (options_.max_bytes_for_level_base < (16 << 10) ||
      options_.max_bytes_for_level_base > (std::uint64_t{1} << 40)) {
    return out_of_range("max_bytes_for_level_base (16 KiB..1 TiB)");
  }
  if (options_.level_size_multiplier < 2 || options_.level_size_multiplier > 100) {
    return out_of_range("level_size_multiplier (2..100)");
  }
  if (options_.target_file_size_bytes < (2 << 10) ||
      options_.target_file_size_bytes > (std::uint64_t{4} << 30)) {
    return out_of_range("target_file_size_bytes (2 KiB..4 GiB)");
  }
  if (options_.compaction_rate_limit_mb_per_sec > 100000) {
    return out_of_range("compaction_rate_limit_mb_per_sec (0..100000)");
  }
  if (options_.min_blob_size_bytes != 0 &&
      (options_.min_blob_size_bytes < 16 || options_.min_blob_size_bytes > kValueSizeMax)) {
    return out_of_range("min_blob_size_bytes (0 or 16..8 MiB)");
  }
  if (options_.vlog_file_size_bytes < (64 << 10) ||
      options_.vlog_file_size_bytes > (std::uint64_t{4} << 30)) {
    return out_of_range("vlog_file_size_bytes (64 KiB..4 GiB)");
  }
  if (!(options_.vlog_gc_garbage_ratio >= 0.05 && options_.vlog_gc_garbage_ratio <= 1.0)) {
    return out_of_range("vlog_gc_garbage_ratio (0.05..1.0)");
  }
  if (options_.vlog_unwritten_bytes_max < (1 << 20) ||
      options_.vlog_unwritten_bytes_max > (std::size_t{1} << 30)) {
    return out_of_range("vlog_unwritten_bytes_max (1 MiB..1 GiB)");
  }
  return Status::OK();
}

Result<std::unique_ptr<DB>> DB::Open(const Options& options, const std::string& dir) {
  auto db = std::make_unique<DBImpl>(options, dir);
  Status status = db->OpenStore();
  if (!status.ok()) return status;
  return std::unique_ptr<DB>(std::move(db));
}

Status DBImpl::OpenStore() {
  CFS_RETURN_IF_ERROR(CheckOptions());
  if (options_.scheduler != nullptr) {
    scheduler_ = options_.scheduler;
  } else {
    auto created = io::Scheduler::Create(io::SchedulerOptions{});
    if (!created.ok()) return created.status();
    owned_scheduler_ = std::move(created).value();
    scheduler_ = owned_scheduler_.get();
  }
  if (options_.env != nullptr) {
    env_ = options_.env;
  } else {
    owned_env_ = NewSchedulerEnv(scheduler_);
    env_ = owned_env_.get();
  }
  // Read-only: create_if_missing is ignored, and no LOCK is taken (the caller keeps writers
  // away; fsck holds the lock itself, and a second flock on another descriptor of the same
  // process would conflict with it).
  if (options_.create_if_missing && !options_.read_only) {
    CFS_RETURN_IF_ERROR(env_->CreateDirIfMissing(dir_));
  } else if (auto listed = env_->ListDir(dir_); !listed.ok()) {
    if (listed.status().IsNotFound()) {
      return Status::InvalidArgument(
          dir_ + ": no store here (the directory does not exist) " +
          (options_.read_only ? "and the open is read-only" : "and create_if_missing is off"));
    }
    return listed.status();
  }
  if (!options_.read_only) {
    auto lock = env_->LockFile(LockFileName(dir_));
    if (!lock.ok()) return lock.status();
    lock_ = std::move(lock).value();
  }

  if (options_.block_cache_size_bytes > 0) {
    block_cache_ = std::make_unique<BlockCache>(options_.block_cache_size_bytes);
    table_options_.block_cache = block_cache_.get();
  }
  table_cache_ = std::make_unique<TableCache>(env_, dir_, table_options_, options_.max_open_files);
  versions_ = std::make_unique<VersionSet>(env_, dir_);
  Status status = scheduler_->BlockOn(OpenAsync());
  if (!status.ok()) {
    // Leave nothing running: the WAL writer (if opened) and the manifest close here.
    if (wal_) (void)scheduler_->BlockOn(wal_->Close());
    wal_.reset();
    if (vlog_) (void)scheduler_->BlockOn(vlog_->Close());
    vlog_.reset();
    (void)scheduler_->BlockOn(versions_->Close());
    std::lock_guard guard(mutex_);
    closed_ = true;
    super_.reset();
    if (mem_ != nullptr) mem_->Unref();
    mem_ = nullptr;
  }
  return status;
}

io::Task<Status> DBImpl::OpenAsync() {
  auto names = env_->ListDir(dir_);
  if (!names.ok()) co_return names.status();
  bool have_current = false;
  std::vector<std::uint64_t> wal_numbers;
  std::vector<std::uint64_t> sst_numbers;
  std::vector<std::uint64_t> manifest_numbers;
  std::vector<std::uint64_t> vlog_numbers;
  std::vector<std::string> temp_files;
  for (const std::string& name : names.value()) {
    std::uint64_t number = 0;
    FileType type{};
    if (!ParseFileName(name, &number, &type)) continue;  // not ours: left alone
    switch (type) {
      case FileType::kCurrent:
        have_current = true;
        break;
      case FileType::kWal:
        wal_numbers.push_back(number);
        break;
      case FileType::kSst:
        sst_numbers.push_back(number);
        break;
      case FileType::kManifest:
        manifest_numbers.push_back(number);
        break;
      case FileType::kVlog:
        vlog_numbers.push_back(number);
        break;
      case FileType::kTemp:
        temp_files.push_back(name);
        break;
      default:
        break;
    }
  }

  if (!have_current) {
    if (options_.read_only) {
      co_return Status::InvalidArgument(dir_ +
                                        ": no store here (CURRENT is missing) and the open "
                                        "is read-only");
    }
    if (!options_.create_if_missing) {
      co_return Status::InvalidArgument(dir_ +
                                        ": no store here (CURRENT is missing) and "
                                        "create_if_missing is off");
    }
    CFS_CO_RETURN_IF_ERROR(co_await versions_->Create());
  } else {
    if (options_.error_if_exists) {
      co_return Status::InvalidArgument(dir_ + ": a store exists and error_if_exists is on");
    }
    // Reads only: the manifest is first written by the first LogAndApply, which a read-only
    // store never calls.
    CFS_CO_RETURN_IF_ERROR(co_await versions_->Recover());
  }
  for (std::uint64_t number : wal_numbers) versions_->MarkFileNumberUsed(number);
  for (std::uint64_t number : sst_numbers) versions_->MarkFileNumberUsed(number);
  for (std::uint64_t number : manifest_numbers) versions_->MarkFileNumberUsed(number);
  for (std::uint64_t number : vlog_numbers) versions_->MarkFileNumberUsed(number);

  // The value log: every file in the manifest must be here; the rest (made just before a
  // crash) are adopted when they hold records and removed when they do not.
  {
    ValueLogOptions vlog_options;
    vlog_options.file_size_bytes = options_.vlog_file_size_bytes;
    vlog_options.unwritten_bytes_max = options_.vlog_unwritten_bytes_max;
    // Several write-outs fit under the bound, so one can be written while the next fills.
    vlog_options.buffer_bytes =
        std::min<std::size_t>(1 << 20, options_.vlog_unwritten_bytes_max / 4);
    vlog_options.read_only = options_.read_only;
    VersionSet* versions = versions_.get();
    auto vlog = co_await ValueLog::Open(env_, dir_, vlog_options, vlog_numbers,
                                        [versions] { return versions->NewFileNumber(); });
    if (!vlog.ok()) co_return vlog.status();
    vlog_ = std::move(vlog).value();
  }
  const std::shared_ptr<const Version> recovered_version = versions_->current();
  for (const auto& [number, meta] : recovered_version->vlogs) {
    if (std::find(vlog_numbers.begin(), vlog_numbers.end(), number) == vlog_numbers.end()) {
      co_return Status::Corruption(VlogFileName(dir_, number) +
                                   ": a value log the manifest lists is missing");
    }
  }

  // Replay every segment the manifest does not cover (invariant 3), oldest first.
  std::sort(wal_numbers.begin(), wal_numbers.end());
  std::vector<std::uint64_t> to_replay;
  for (std::uint64_t number : wal_numbers) {
    if (number >= versions_->log_number()) to_replay.push_back(number);
  }
  std::vector<MemTable*> recovered;
  SequenceNumber max_sequence = versions_->last_sequence();
  std::set<std::uint64_t> replayed_vlogs;
  Status status = co_await ReplayWal(to_replay, &recovered, &max_sequence, &replayed_vlogs);
  if (options_.read_only) co_return FinishReadOnlyOpen(status, recovered, max_sequence);
  {
    // Statistics only: a damaged or unreadable file counts from zero (and says so).
    auto totals = co_await ReadIoTotals(env_, dir_);
    if (!totals.ok()) {
      Log("IO totals start again from zero: " + totals.status().ToString());
    } else if (totals.value()) {
      io_totals_base_ = *totals.value();
    }
  }

  // Recovered memtables go to level-0 SSTs now, so the old segments can be recycled and the
  // next Open replays nothing of them.
  VersionEdit edit;
  // A value log the manifest lacks and no replayed pointer names holds nothing anyone can
  // read (prepared and unused, or its WAL records were lost with the crash): removed. One
  // that replayed pointers name is adopted by this edit.
  for (const VlogFileState& file : std::vector<VlogFileState>(vlog_->recovered())) {
    if (!recovered_version->vlogs.contains(file.number) && !replayed_vlogs.contains(file.number)) {
      Log("removing unreferenced " + VlogFileName(dir_, file.number));
      vlog_->ForgetRecovered(file.number);
      (void)co_await env_->RemoveFile(VlogFileName(dir_, file.number));
    }
  }
  RecordVlogFiles(&edit);
  for (MemTable* mem : recovered) {
    if (status.ok()) {
      FileMetaData meta;
      std::map<std::uint64_t, VlogGarbage> garbage;
      status = co_await WriteLevel0Table(mem, &meta, {}, &garbage);
      if (status.ok() && meta.file_size_bytes > 0) edit.AddFile(0, meta);
      for (const auto& [number, dropped] : garbage) {
        edit.AddVlogGarbage(number, dropped.records, dropped.bytes);
      }
    }
    mem->Unref();
  }
  if (!status.ok()) co_return status;

  const std::uint64_t first_log_number = versions_->NewFileNumber();
  edit.SetLogNumber(first_log_number);
  edit.SetLastSequence(max_sequence);
  versions_->set_last_sequence(max_sequence);
  last_sequence_.store(max_sequence, std::memory_order_release);
  CFS_CO_RETURN_IF_ERROR(co_await versions_->LogAndApply(&edit));

  // Files nothing refers to: SSTs of a flush that crashed before its manifest edit, old
  // manifests, temporary files.
  std::shared_ptr<const Version> version = versions_->current();
  std::set<std::uint64_t> live;
  for (const auto& files : version->files) {
    for (const auto& file : files) live.insert(file->number);
  }
  for (std::uint64_t number : sst_numbers) {
    if (live.count(number) == 0) {
      Log("removing unreferenced " + SstFileName(dir_, number));
      (void)co_await env_->RemoveFile(SstFileName(dir_, number));
    }
  }
  for (std::uint64_t number : manifest_numbers) {
    if (number != versions_->manifest_number()) {
      (void)co_await env_->RemoveFile(ManifestFileName(dir_, number));
    }
  }
  (void)versions_->TakeObsoleteManifests();
  for (const std::string& name : temp_files) (void)co_await env_->RemoveFile(dir_ + "/" + name);

  WalOptions wal_options;
  wal_options.segment_size_bytes = options_.wal_segment_size_bytes;
  wal_options.buffer_size_bytes = options_.wal_buffer_size_bytes;
  wal_options.in_flight_bytes_max = options_.wal_in_flight_bytes_max;
  // Every existing segment is below first_log_number and fully replayed: reusable.
  VersionSet* versions = versions_.get();
  auto wal = co_await WalWriter::Open(env_, dir_, wal_options, first_log_number, wal_numbers,
                                      [versions] { return versions->NewFileNumber(); });
  if (!wal.ok()) co_return wal.status();
  wal_ = std::move(wal).value();

  std::lock_guard guard(mutex_);
  mem_ = new MemTable();
  mem_->Ref();
  mem_log_number_ = first_log_number;
  InstallSuperVersionLocked();
  // A store reopened with a deep level 0 (or after a crash mid-compaction) catches up now.
  MaybeScheduleCompactionLocked();
  MaybeScheduleVlogGcLocked();
  co_return Status::OK();
}

Status DBImpl::FinishReadOnlyOpen(const Status& replayed, const std::vector<MemTable*>& recovered,
                                  SequenceNumber max_sequence) {
  CFS_ASSERT(options_.read_only);
  CFS_ASSERT(recovered.size() <= 1);  // ReplayWal fills one memtable when read-only
  if (!replayed.ok()) {
    for (MemTable* mem : recovered) mem->Unref();
    return replayed;
  }
  // Nothing is written: no level-0 table, no manifest edit, no file removed (not even
  // unreferenced SSTs, value logs, manifests or temporary files), no WAL writer. What the WAL
  // replayed stays in mem_, never flushed; imm_ stays null, so the read path (mem_, imm_,
  // then the Version's SSTs) sees all of it.
  versions_->set_last_sequence(max_sequence);
  last_sequence_.store(max_sequence, std::memory_order_release);
  std::lock_guard guard(mutex_);
  if (recovered.empty()) {
    mem_ = new MemTable();
    mem_->Ref();
  } else {
    mem_ = recovered.front();  // the replay's reference becomes mem_'s
  }
  mem_log_number_ = versions_->log_number();
  InstallSuperVersionLocked();
  CFS_ASSERT(imm_ == nullptr && wal_ == nullptr);
  return Status::OK();
}

io::Task<Status> DBImpl::ReplayWal(const std::vector<std::uint64_t>& log_numbers,
                                   std::vector<MemTable*>* recovered, SequenceNumber* max_sequence,
                                   std::set<std::uint64_t>* replayed_vlogs) {
  if (log_numbers.empty()) co_return Status::OK();
  MemTable* mem = nullptr;
  WriteBatch batch;
  // A pointer past its value log's valid records: the value-log tail was lost with the
  // unsynced writes (docs/formats/vlog.md), so the replay ends before this record.
  bool vlog_torn = false;
  WalPosition vlog_torn_at;
  class PointerCheck final : public InternalBatchHandler {
   public:
    explicit PointerCheck(const ValueLog* vlog) : vlog_(vlog) {}
    void Put(std::string_view, std::string_view) override {}
    void Delete(std::string_view) override {}
    void PutValuePointer(std::string_view, std::string_view pointer) override {
      Result<ValuePointer> decoded = DecodeValuePointer(pointer);
      if (!decoded.ok() || !vlog_->PointerInBounds(decoded.value())) {
        bad = true;
      } else {
        files.insert(decoded.value().file_number);
      }
    }
    bool bad = false;
    std::set<std::uint64_t> files;

   private:
    const ValueLog* vlog_;
  };
  auto on_record = [&](std::string_view record, const WalPosition& at) -> Status {
    if (vlog_torn) return Status::OK();
    Status status = WriteBatchInternal::SetContents(&batch, record);
    if (status.ok()) status = WriteBatchInternal::ValidateRecord(record);
    if (!status.ok()) {
      return status.WithContext(WalFileName(dir_, at.log_number) + ": record at offset " +
                                std::to_string(at.offset));
    }
    PointerCheck check(vlog_.get());
    CFS_RETURN_IF_ERROR(WriteBatchInternal::IterateInternal(record, &check));
    if (check.bad) {
      vlog_torn = true;
      vlog_torn_at = at;
      Log(WalFileName(dir_, at.log_number) + ": replay stops at the record at offset " +
          std::to_string(at.offset) +
          ": it names value-log bytes lost at the crash (unsynced writes after it are dropped)");
      return Status::OK();
    }
    replayed_vlogs->insert(check.files.begin(), check.files.end());
    if (mem == nullptr) {
      mem = new MemTable();
      mem->Ref();
      recovered->push_back(mem);
    }
    CFS_RETURN_IF_ERROR(WriteBatchInternal::InsertInto(record, mem));
    const std::uint32_t count = WriteBatchInternal::Count(batch);
    if (count > 0) {
      *max_sequence = std::max(*max_sequence, WriteBatchInternal::Sequence(batch) + count - 1);
    }
    // Read-only, every record goes to one memtable: it is never flushed, and the read path
    // sees one active memtable beside at most one immutable one. Its size is bounded by the
    // records the WAL holds beyond the manifest's log number: the memtables the writer had
    // not yet flushed (mem_ and imm_, about 2 x its write_buffer_size_bytes, plus the batch
    // that filled the last; docs/engine.md "Read-only open").
    if (!options_.read_only && mem->ApproximateMemoryUsage() >= options_.write_buffer_size_bytes) {
      mem = nullptr;  // the next record starts another memtable; each becomes one SST
    }
    return Status::OK();
  };
  WalReplayResult result;
  Status status = co_await engine::ReplayWal(env_, dir_, log_numbers, on_record, &result);
  if (!status.ok()) co_return status;
  if (vlog_torn && vlog_torn_at < result.synced_end) {
    // A later sync mark vouches for the record, and so for the values it names (they are
    // synced first): their bytes were damaged after the sync. Stopping here would drop synced
    // writes silently; like synced WAL damage, the open fails and fsck --repair salvages.
    co_return Status::Corruption(WalFileName(dir_, vlog_torn_at.log_number) +
                                 ": the synced record at offset " +
                                 std::to_string(vlog_torn_at.offset) +
                                 " names a value-log record that does not read back (damaged "
                                 "value log; run cascadefs fsck --repair)");
  }
  if (result.torn_tail) {
    Log("WAL replay stopped at a torn tail: " + result.torn_tail_reason +
        " (unsynced writes after it are dropped)");
  }
  co_return Status::OK();
}

void DBImpl::InstallSuperVersionLocked() {
  super_ = std::make_shared<const SuperVersion>(mem_, imm_, versions_->current());
}

std::shared_ptr<const DBImpl::SuperVersion> DBImpl::CurrentSuperVersion() const {
  std::lock_guard guard(mutex_);
  return super_;
}

void DBImpl::RecordBackgroundErrorLocked(const Status& status) {
  if (bg_error_.ok()) {
    bg_error_ = status;
    Log("store refuses writes from now on: " + status.ToString());
  }
  background_changed_.NotifyAll();
}

// ---- writes ----

DBImpl::WriteStep DBImpl::SwitchMemTableLocked(Status* status) {
  CFS_ASSERT(imm_ == nullptr);
  Result<std::uint64_t> next_log = wal_->SwitchSegment();
  if (!next_log.ok()) {
    if (next_log.status().code() == Status::Code::kBusy) return WriteStep::kWaitForWal;
    *status = next_log.status();
    RecordBackgroundErrorLocked(*status);
    return WriteStep::kFailed;
  }
  imm_ = mem_;
  imm_next_log_number_ = next_log.value();
  mem_ = new MemTable();
  mem_->Ref();
  mem_log_number_ = next_log.value();
  // One flush per immutable memtable: Flush() waits for flushes_completed_ to reach this count.
  ++flushes_started_;
  InstallSuperVersionLocked();
  ScheduleFlushLocked();
  return WriteStep::kDone;
}

std::size_t DBImpl::Level0FilesLocked() const {
  CFS_ASSERT(super_ != nullptr);
  return super_->version->files[0].size();
}

Status DBImpl::PlanBatch(const WriteBatch& batch, BatchPlan* plan) const {
  CFS_RETURN_IF_ERROR(WriteBatchInternal::Validate(batch));
  plan->separated_bytes = 0;
  if (options_.min_blob_size_bytes == 0) return Status::OK();
  class Planner final : public WriteBatch::Handler {
   public:
    explicit Planner(std::size_t min_bytes) : min_bytes_(min_bytes) {}
    void Put(std::string_view key, std::string_view value) override {
      if (value.size() >= min_bytes_) bytes += key.size() + value.size() + kVlogRecordOverheadBytes;
    }
    void Delete(std::string_view) override {}
    std::size_t bytes = 0;

   private:
    const std::size_t min_bytes_;
  };
  Planner planner(options_.min_blob_size_bytes);
  CFS_RETURN_IF_ERROR(batch.Iterate(&planner));
  plan->separated_bytes = planner.bytes;
  return Status::OK();
}

Status DBImpl::SeparateValuesLocked(const WriteBatch& batch, std::string* record) {
  class Separator final : public WriteBatch::Handler {
   public:
    Separator(ValueLog* vlog, std::size_t min_bytes, std::string* out)
        : vlog_(vlog), min_bytes_(min_bytes), out_(out) {}
    void Put(std::string_view key, std::string_view value) override {
      if (!status.ok()) return;
      if (value.size() < min_bytes_) {
        out_->push_back(static_cast<char>(ValueType::kValue));
        PutLengthPrefixed(out_, key);
        PutLengthPrefixed(out_, value);
        return;
      }
      Result<ValuePointer> pointer = vlog_->Append(key, value);
      if (!pointer.ok()) {
        status = pointer.status();
        return;
      }
      out_->push_back(static_cast<char>(ValueType::kValuePointer));
      PutLengthPrefixed(out_, key);
      PutLengthPrefixed(out_, EncodeValuePointer(pointer.value()));
    }
    void Delete(std::string_view key) override {
      out_->push_back(static_cast<char>(ValueType::kDeletion));
      PutLengthPrefixed(out_, key);
    }
    Status status;

   private:
    ValueLog* const vlog_;
    const std::size_t min_bytes_;
    std::string* const out_;
  };
  const std::string_view contents = WriteBatchInternal::Contents(batch);
  record->assign(contents.substr(0, kWriteBatchHeaderBytes));
  Separator separator(vlog_.get(), options_.min_blob_size_bytes, record);
  CFS_RETURN_IF_ERROR(batch.Iterate(&separator));
  return separator.status;
}

DBImpl::WriteStep DBImpl::TryWriteLocked(const WriteBatch& batch, const BatchPlan& plan,
                                         bool allow_delay, WalPosition* position,
                                         VlogPosition* vlog_position, std::string* separated_record,
                                         const WriteCondition* condition, Status* status) {
  if (closed_) {
    *status = Status::InvalidArgument(dir_ + ": store is closed");
    return WriteStep::kFailed;
  }
  if (!bg_error_.ok()) {
    *status = bg_error_;
    return WriteStep::kFailed;
  }
  // Level 0 too deep: compaction is behind. Stop at the stop trigger; below it, slow each
  // write down once so compaction catches up before writes must stop.
  const std::size_t level0_files = Level0FilesLocked();
  if (level0_files >= options_.level0_stop_writes_trigger) return WriteStep::kWaitForCompaction;
  if (allow_delay && level0_files >= options_.level0_slowdown_writes_trigger) {
    return WriteStep::kDelay;
  }
  if (mem_->ApproximateMemoryUsage() >= options_.write_buffer_size_bytes) {
    if (imm_ != nullptr && !flush_no_space_.ok()) {
      // The flush that would make room waits for disk space: fail this write now (it changed
      // nothing) rather than hold it until space appears.
      *status = flush_no_space_;
      return WriteStep::kFailed;
    }
    if (imm_ != nullptr) return WriteStep::kWaitForFlush;
    const WriteStep step = SwitchMemTableLocked(status);
    if (step != WriteStep::kDone) return step;
  }
  if (condition != nullptr && !ConditionHoldsLocked(*condition)) {
    return WriteStep::kConditionFailed;
  }
  const std::uint32_t count = batch.Count();
  const SequenceNumber first = last_sequence_.load(std::memory_order_relaxed) + 1;
  std::string_view contents = WriteBatchInternal::Contents(batch);
  std::string* record = &wal_record_;
  if (plan.separated_bytes > 0) {
    // Separated once per write (a retry after a busy WAL reuses the record). Room for every
    // value first, so a batch is never half appended when it must wait.
    if (separated_record->empty()) {
      if (!vlog_->HasRoomFor(plan.separated_bytes)) return WriteStep::kWaitForVlog;
      Status separated = SeparateValuesLocked(batch, separated_record);
      if (!separated.ok()) {
        *status = separated;
        RecordBackgroundErrorLocked(*status);
        return WriteStep::kFailed;
      }
    }
    record = separated_record;
  } else {
    wal_record_.assign(contents);
  }
  EncodeFixed64(record->data(), first);
  // Everything appended to the value log so far: a sync write makes it durable before the
  // WAL, so no durable WAL record (this one or an earlier one) names bytes a crash can lose.
  // Only a sync write needs it (the value log's mutex stays off the other writes' path).
  if (plan.sync) *vlog_position = vlog_->AppendedPosition();
  Result<WalPosition> appended = wal_->Append(*record);
  if (!appended.ok()) {
    if (appended.status().code() == Status::Code::kBusy) return WriteStep::kWaitForWal;
    *status = appended.status();
    RecordBackgroundErrorLocked(*status);
    return WriteStep::kFailed;
  }
  *position = appended.value();
  Status inserted = WriteBatchInternal::InsertInto(*record, mem_);
  CFS_ASSERT(inserted.ok());  // validated before the lock was taken
  if (count > 0) {
    // Invariant 1: publish only after the whole batch is in mem_.
    last_sequence_.store(first + count - 1, std::memory_order_release);
  }
  counters_.writes.fetch_add(1, std::memory_order_relaxed);
  counters_.user_bytes_written.fetch_add(contents.size(), std::memory_order_relaxed);
  return WriteStep::kDone;
}

Status DBImpl::ReadOnlyError(std::string_view what) const {
  return Status::NotSupported(dir_ + ": " + std::string(what) + ": the store is opened read-only");
}

Status DBImpl::Write(const WriteOptions& options, const WriteBatch& batch) {
  if (options_.read_only) return ReadOnlyError("write");
  BatchPlan plan;
  plan.sync = options.sync;
  CFS_RETURN_IF_ERROR(PlanBatch(batch, &plan));
  WalPosition position;
  VlogPosition vlog_position;
  std::string separated;  // the WAL record once large values went to the value log
  Status status;
  bool allow_delay = true;
  for (;;) {
    std::unique_lock lock(mutex_);
    const WriteStep step = TryWriteLocked(batch, plan, allow_delay, &position, &vlog_position,
                                          &separated, nullptr, &status);
    if (step == WriteStep::kDone) break;
    if (step == WriteStep::kFailed) return status;
    if (step == WriteStep::kWaitForFlush) {
      const auto start = std::chrono::steady_clock::now();
      counters_.write_stalls.fetch_add(1, std::memory_order_relaxed);
      while (imm_ != nullptr && bg_error_.ok() && flush_no_space_.ok() && !closed_) {
        background_changed_.WaitBlocking(lock);
      }
      counters_.write_stall_micros.fetch_add(MicrosSince(start), std::memory_order_relaxed);
      continue;
    }
    if (step == WriteStep::kDelay) {
      lock.unlock();
      const auto start = std::chrono::steady_clock::now();
      counters_.write_slowdowns.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(kWriteSlowdown);
      counters_.write_stall_micros.fetch_add(MicrosSince(start), std::memory_order_relaxed);
      allow_delay = false;
      continue;
    }
    if (step == WriteStep::kWaitForCompaction) {
      const auto start = std::chrono::steady_clock::now();
      counters_.write_stalls.fetch_add(1, std::memory_order_relaxed);
      MaybeScheduleCompactionLocked();
      while (!closed_ && bg_error_.ok() &&
             Level0FilesLocked() >= options_.level0_stop_writes_trigger) {
        background_changed_.WaitBlocking(lock);
      }
      counters_.write_stall_micros.fetch_add(MicrosSince(start), std::memory_order_relaxed);
      continue;
    }
    if (step == WriteStep::kWaitForVlog) {
      lock.unlock();
      scheduler_->BlockOn(vlog_->WaitForRoom(plan.separated_bytes));
      continue;
    }
    lock.unlock();
    scheduler_->BlockOn(wal_->WaitWritable(WriteBatchInternal::Contents(batch).size()));
  }
  if (options.sync) {
    status = scheduler_->BlockOn(vlog_->SyncTo(vlog_position));
    if (status.ok()) status = scheduler_->BlockOn(wal_->SyncTo(position));
    if (!status.ok()) {
      std::lock_guard guard(mutex_);
      RecordBackgroundErrorLocked(status);
    }
  }
  return status;
}

io::Task<Status> DBImpl::WriteAsync(const WriteOptions& options, const WriteBatch& batch) {
  co_return co_await WriteAsyncImpl(options, batch, nullptr);
}

bool DBImpl::ConditionHoldsLocked(const WriteCondition& condition) const {
  if (flushes_completed_ != condition.flushes_completed) return false;
  std::string newest;
  std::string then;
  for (const std::string& key : condition.keys) {
    for (MemTable* mem : {mem_, imm_}) {
      if (mem == nullptr) continue;
      const MemTable::GetResult now = mem->Get(key, kSequenceMax, &newest);
      const MemTable::GetResult at = mem->Get(key, condition.looked_at, &then);
      if (now != at) return false;
      if (now != MemTable::GetResult::kNotPresent && now != MemTable::GetResult::kDeleted &&
          newest != then) {
        return false;
      }
    }
  }
  return true;
}

io::Task<Status> DBImpl::WriteAsyncImpl(const WriteOptions& options, const WriteBatch& batch,
                                        const WriteCondition* condition) {
  if (options_.read_only) co_return ReadOnlyError("write");
  BatchPlan plan;
  plan.sync = options.sync;
  CFS_CO_RETURN_IF_ERROR(PlanBatch(batch, &plan));
  WalPosition position;
  VlogPosition vlog_position;
  std::string separated;  // the WAL record once large values went to the value log
  Status status;
  bool allow_delay = true;
  for (;;) {
    std::unique_lock lock(mutex_);
    const WriteStep step = TryWriteLocked(batch, plan, allow_delay, &position, &vlog_position,
                                          &separated, condition, &status);
    if (step == WriteStep::kDone) break;
    if (step == WriteStep::kFailed) co_return status;
    if (step == WriteStep::kConditionFailed) co_return Status::Busy("condition failed");
    if (step == WriteStep::kWaitForFlush) {
      const auto start = std::chrono::steady_clock::now();
      counters_.write_stalls.fetch_add(1, std::memory_order_relaxed);
      while (imm_ != nullptr && bg_error_.ok() && flush_no_space_.ok() && !closed_) {
        co_await background_changed_.Wait(lock);
      }
      counters_.write_stall_micros.fetch_add(MicrosSince(start), std::memory_order_relaxed);
      continue;
    }
    if (step == WriteStep::kDelay) {
      lock.unlock();
      const auto start = std::chrono::steady_clock::now();
      counters_.write_slowdowns.fetch_add(1, std::memory_order_relaxed);
      (void)co_await io::Sleep(kWriteSlowdown);
      counters_.write_stall_micros.fetch_add(MicrosSince(start), std::memory_order_relaxed);
      allow_delay = false;
      continue;
    }
    if (step == WriteStep::kWaitForCompaction) {
      const auto start = std::chrono::steady_clock::now();
      counters_.write_stalls.fetch_add(1, std::memory_order_relaxed);
      MaybeScheduleCompactionLocked();
      while (!closed_ && bg_error_.ok() &&
             Level0FilesLocked() >= options_.level0_stop_writes_trigger) {
        co_await background_changed_.Wait(lock);
      }
      counters_.write_stall_micros.fetch_add(MicrosSince(start), std::memory_order_relaxed);
      continue;
    }
    if (step == WriteStep::kWaitForVlog) {
      lock.unlock();
      co_await vlog_->WaitForRoom(plan.separated_bytes);
      continue;
    }
    lock.unlock();
    co_await wal_->WaitWritable(WriteBatchInternal::Contents(batch).size());
  }
  if (options.sync) {
    status = co_await vlog_->SyncTo(vlog_position);
    if (status.ok()) status = co_await wal_->SyncTo(position);
    if (!status.ok()) {
      std::lock_guard guard(mutex_);
      RecordBackgroundErrorLocked(status);
    }
  }
  co_return status;
}

Status DBImpl::Put(const WriteOptions& options, std::string_view key, std::string_view value) {
  WriteBatch batch;
  batch.Put(key, value);
  return Write(options, batch);
}

Status DBImpl::Delete(const WriteOptions& options, std::string_view key) {
  WriteBatch batch;
  batch.Delete(key);
  return Write(options, batch);
}

io::Task<Status> DBImpl::PutAsync(const WriteOptions& options, std::string_view key,
                                  std::string_view value) {
  WriteBatch batch;
  batch.Put(key, value);
  co_return co_await WriteAsync(options, batch);
}

io::Task<Status> DBImpl::DeleteAsync(const WriteOptions& options, std::string_view key) {
  WriteBatch batch;
  batch.Delete(key);
  co_return co_await WriteAsync(options, batch);
}

// ---- reads ----

SequenceNumber DBImpl::ReadSequence(const ReadOptions& options) const {
  if (options.snapshot != nullptr) {
    return static_cast<const SnapshotImpl*>(options.snapshot)->sequence;
  }
  return last_sequence_.load(std::memory_order_acquire);
}

bool DBImpl::GetFromMemTables(const SuperVersion& super_version, std::string_view key,
                              SequenceNumber sequence, std::string* value, Status* status,
                              bool* is_pointer) const {
  *is_pointer = false;
  for (MemTable* mem : {super_version.mem, super_version.imm}) {
    if (mem == nullptr) continue;
    switch (mem->Get(key, sequence, value)) {
      case MemTable::GetResult::kFound:
        *status = Status::OK();
        return true;
      case MemTable::GetResult::kFoundPointer:
        *status = Status::OK();
        *is_pointer = true;
        return true;
      case MemTable::GetResult::kDeleted:
        *status = Status::NotFound(key);
        return true;
      case MemTable::GetResult::kNotPresent:
        break;
    }
  }
  return false;
}

io::Task<Status> DBImpl::GetFromTables(std::shared_ptr<const SuperVersion> super_version,
                                       std::string_view key, SequenceNumber sequence,
                                       std::string* value, ValueType* raw_type) {
  const std::string lookup = MakeInternalKey(key, sequence, kValueTypeForSeek);
  const Version& version = *super_version->version;
  std::vector<const FileMetaData*> candidates;
  for (std::size_t level = 0; level < version.files.size(); ++level) {
    const auto& files = version.files[level];
    candidates.clear();
    if (level == 0) {
      // Level 0 is newest first and may overlap: every file whose range holds the key.
      for (const auto& file : files) {
        if (CompareUserKeys(key, ExtractUserKey(file->smallest)) >= 0 &&
            CompareUserKeys(key, ExtractUserKey(file->largest)) <= 0) {
          candidates.push_back(file.get());
        }
      }
    } else {
      // Deeper levels are sorted and do not overlap, and a user key lives in one file of a
      // level (compaction.h invariant 1): the first file ending at or after the key.
      auto it = std::partition_point(files.begin(), files.end(), [key](const auto& file) {
        return CompareUserKeys(ExtractUserKey(file->largest), key) < 0;
      });
      if (it != files.end() && CompareUserKeys(key, ExtractUserKey((*it)->smallest)) >= 0) {
        candidates.push_back(it->get());
      }
    }
    for (const FileMetaData* file : candidates) {
      auto table = co_await table_cache_->Get(file->number);
      if (!table.ok()) co_return table.status();
      TableGetResult result;
      Status status = co_await table.value()->Get(lookup, &result);
      if (!status.ok()) co_return status;
      if (!result.found) continue;
      if (result.type == ValueType::kDeletion) co_return Status::NotFound(key);
      *value = std::move(result.value);
      if (raw_type != nullptr) {
        *raw_type = result.type;
        co_return Status::OK();
      }
      if (result.type == ValueType::kValuePointer) co_return co_await ResolvePointer(key, value);
      co_return Status::OK();
    }
  }
  co_return Status::NotFound(key);
}

io::Task<Status> DBImpl::ResolvePointer(std::string_view key, std::string* value) {
  Result<ValuePointer> pointer = DecodeValuePointer(*value);
  if (!pointer.ok()) {
    co_return pointer.status().WithContext(dir_ + ": the value pointer of a key");
  }
  Result<std::string> resolved = co_await vlog_->Read(pointer.value(), key);
  if (!resolved.ok()) co_return resolved.status();
  *value = std::move(resolved).value();
  co_return Status::OK();
}

io::Task<Status> DBImpl::GetNewestEntry(std::shared_ptr<const SuperVersion> super_version,
                                        std::string_view key, SequenceNumber sequence,
                                        ValueType* type, std::string* bytes) {
  Status status;
  bool is_pointer = false;
  if (GetFromMemTables(*super_version, key, sequence, bytes, &status, &is_pointer)) {
    *type = is_pointer ? ValueType::kValuePointer : ValueType::kValue;
    co_return status;
  }
  co_return co_await GetFromTables(std::move(super_version), key, sequence, bytes, type);
}

Status DBImpl::Get(const ReadOptions& options, std::string_view key, std::string* value) {
  std::shared_ptr<const SuperVersion> super_version = CurrentSuperVersion();
  if (super_version == nullptr) return Status::InvalidArgument(dir_ + ": store is closed");
  const SequenceNumber sequence = ReadSequence(options);
  Status status;
  bool is_pointer = false;
  if (GetFromMemTables(*super_version, key, sequence, value, &status, &is_pointer)) {
    if (!is_pointer) return status;
    return scheduler_->BlockOn(ResolvePointer(key, value));
  }
  if (super_version->version->TotalFiles() == 0) return Status::NotFound(key);
  return scheduler_->BlockOn(GetFromTables(std::move(super_version), key, sequence, value));
}

io::Task<Status> DBImpl::GetAsync(const ReadOptions& options, std::string_view key,
                                  std::string* value) {
  std::shared_ptr<const SuperVersion> super_version = CurrentSuperVersion();
  if (super_version == nullptr) co_return Status::InvalidArgument(dir_ + ": store is closed");
  const SequenceNumber sequence = ReadSequence(options);
  Status status;
  bool is_pointer = false;
  if (GetFromMemTables(*super_version, key, sequence, value, &status, &is_pointer)) {
    if (!is_pointer) co_return status;
    co_return co_await ResolvePointer(key, value);
  }
  co_return co_await GetFromTables(std::move(super_version), key, sequence, value);
}

std::unique_ptr<Iterator> DBImpl::NewIterator(const ReadOptions& options) {
  std::shared_ptr<const SuperVersion> super_version = CurrentSuperVersion();
  const SequenceNumber sequence = ReadSequence(options);
  std::vector<std::unique_ptr<InternalIterator>> children;
  if (super_version == nullptr) {
    children.push_back(NewEmptyIterator(Status::InvalidArgument(dir_ + ": store is closed")));
    return NewDBIterator(NewMergingIterator(std::move(children)), sequence, scheduler_, nullptr,
                         nullptr, false);
  }
  children.push_back(super_version->mem->NewIterator());
  if (super_version->imm != nullptr) children.push_back(super_version->imm->NewIterator());
  TableCache* table_cache = table_cache_.get();
  for (const auto& files : super_version->version->files) {
    for (const auto& file : files) {
      const std::uint64_t number = file->number;
      children.push_back(NewLazyIterator(
          [table_cache, number]() -> io::Task<Result<std::unique_ptr<InternalIterator>>> {
            auto table = co_await table_cache->Get(number);
            if (!table.ok()) co_return table.status();
            // The iterator keeps its table open even if the cache evicts it.
            co_return NewTableIteratorHolding(std::move(table).value());
          }));
    }
  }
  // The iterator is destroyed before the store (REQUIRES of NewIterator).
  ValueResolver resolver = [this](std::string_view key,
                                  std::string_view pointer) -> io::Task<Result<std::string>> {
    std::string value(pointer);
    Status status = co_await ResolvePointer(key, &value);
    if (!status.ok()) co_return status;
    co_return value;
  };
  return NewDBIterator(NewMergingIterator(std::move(children)), sequence, scheduler_, super_version,
                       std::move(resolver), !options.iterator_values);
}

const Snapshot* DBImpl::GetSnapshot() {
  std::lock_guard guard(mutex_);
  const SequenceNumber sequence = last_sequence_.load(std::memory_order_acquire);
  snapshots_.insert(sequence);
  return new SnapshotImpl(sequence);
}

void DBImpl::ReleaseSnapshot(const Snapshot* snapshot) {
  const auto* impl = static_cast<const SnapshotImpl*>(snapshot);
  {
    std::lock_guard guard(mutex_);
    auto it = snapshots_.find(impl->sequence);
    CFS_ASSERT(it != snapshots_.end());  // REQUIRES: a snapshot of this store, released once
    snapshots_.erase(it);
  }
  delete impl;
}

// ---- flushes ----

void DBImpl::ScheduleFlushLocked() {
  CFS_ASSERT(imm_ != nullptr);
  if (flush_scheduled_) return;  // that task schedules the next when it ends (BackgroundFlush)
  flush_scheduled_ = true;
  scheduler_->Spawn(BackgroundFlush(), io::Priority::kBackground);
}

io::Task<void> DBImpl::BackgroundFlush() {
  bool table_out_of_space = false;
  Status status = co_await FlushImmutable(&table_out_of_space);
  // A full disk while writing the table is not the store's fault: the table was removed, the
  // memtable stays and its records stay in the WAL, and the flush is tried again after a
  // pause, once deletes, compaction or another process have freed space. Writers that need
  // the memtable's room wait meanwhile; writes that fit the current memtable (deletes) go on.
  // Only a shutdown ends the retries, and then the error is the store's: the next open
  // replays the records from the WAL.
  while (table_out_of_space && !shutting_down_.load(std::memory_order_acquire)) {
    counters_.flushes_failed_no_space.fetch_add(1, std::memory_order_relaxed);
    Log(dir_ + ": flush: " + status.ToString() + " (retried in " + std::to_string(kNoSpaceRetryMs) +
        " ms)");
    {
      std::lock_guard guard(mutex_);
      flush_no_space_ = status.WithContext(dir_ + ": flush");
      background_changed_.NotifyAll();  // writers waiting for the memtable's room fail now
    }
    co_await WaitBeforeNoSpaceRetry();
    if (shutting_down_.load(std::memory_order_acquire)) break;
    status = co_await FlushImmutable(&table_out_of_space);
  }
  std::lock_guard guard(mutex_);
  flush_scheduled_ = false;
  flush_no_space_ = Status::OK();
  if (!status.ok()) {
    RecordBackgroundErrorLocked(status.WithContext(dir_ + ": flush"));
  } else {
    ++flushes_completed_;
    // A writer may have filled mem_ and made it immutable between FlushImmutable releasing the
    // lock and this task taking it again: it saw flush_scheduled_ still set and scheduled
    // nothing. Flush that memtable now, or its writers would wait forever.
    if (imm_ != nullptr && !closed_) ScheduleFlushLocked();
    MaybeScheduleCompactionLocked();
  }
  background_changed_.NotifyAll();
}

io::Task<Status> DBImpl::FlushImmutable(bool* table_out_of_space) {
  *table_out_of_space = false;
  MemTable* imm = nullptr;
  std::uint64_t next_log_number = 0;
  std::vector<SequenceNumber> snapshots;
  {
    std::lock_guard guard(mutex_);
    imm = imm_;
    next_log_number = imm_next_log_number_;
    // Snapshots taken later see at least every entry of imm.
    snapshots.assign(snapshots_.begin(), snapshots_.end());
  }
  CFS_ASSERT(imm != nullptr);  // invariant 2
  FileMetaData meta;
  std::map<std::uint64_t, VlogGarbage> garbage;
  Status written = co_await WriteLevel0Table(imm, &meta, snapshots, &garbage);
  if (!written.ok()) {
    *table_out_of_space = written.IsNoSpace();
    co_return written;
  }
  // The SST may name any value-log record appended so far: those are durable, and their files
  // in the manifest, before the edit that makes the SST live.
  CFS_CO_RETURN_IF_ERROR(co_await vlog_->SyncTo(vlog_->AppendedPosition()));
  VersionEdit edit;
  if (meta.file_size_bytes > 0) edit.AddFile(0, meta);
  for (const auto& [number, dropped] : garbage) {
    edit.AddVlogGarbage(number, dropped.records, dropped.bytes);
  }
  edit.SetLogNumber(next_log_number);
  // Every sequence in imm is durable in the SST now; later ones are in the WAL.
  edit.SetLastSequence(std::max(versions_->last_sequence(), meta.largest_sequence));
  CFS_CO_RETURN_IF_ERROR(co_await LogAndApplyExclusive(&edit, /*record_vlog_files=*/true));
  {
    std::lock_guard guard(mutex_);
    imm_->Unref();
    imm_ = nullptr;
    InstallSuperVersionLocked();
  }
  // Invariant 3: the segments below next_log_number hold only flushed records.
  wal_->RecycleBelow(next_log_number);
  counters_.memtable_flushes.fetch_add(1, std::memory_order_relaxed);
  counters_.flush_bytes_written.fetch_add(meta.file_size_bytes, std::memory_order_relaxed);
  co_return Status::OK();
}

io::Task<Status> DBImpl::WriteLevel0Table(MemTable* mem, FileMetaData* meta,
                                          const std::vector<SequenceNumber>& snapshots,
                                          std::map<std::uint64_t, VlogGarbage>* garbage) {
  meta->file_size_bytes = 0;
  if (mem->num_entries() == 0) co_return Status::OK();
  const std::uint64_t number = versions_->NewFileNumber();
  const std::string path = SstFileName(dir_, number);
  auto file = co_await env_->NewWritableFile(path, WriteMode::kCreateTruncate);
  if (!file.ok()) co_return file.status();
  TableBuilder builder(table_options_, file.value().get());
  std::unique_ptr<InternalIterator> iter = mem->NewIterator();
  Status status;
  bool first = true;
  std::uint64_t added = 0;
  // Versions hidden from every reader are dropped here already, by compaction's rule
  // (compaction_job.h: a newer version of the key in the same snapshot stripe), so an
  // overwritten separated value is garbage as soon as its memtable is flushed.
  std::string current_user_key;
  bool have_current_user_key = false;
  constexpr std::size_t kNoStripe = ~std::size_t{0};
  std::size_t newer_stripe = kNoStripe;
  for (co_await iter->SeekToFirst(); iter->Valid(); co_await iter->Next()) {
    ParsedInternalKey parsed;
    if (!ParseInternalKey(iter->key(), &parsed)) {
      status = Status::Corruption("memtable: an entry with an unparsable internal key");
      break;
    }
    if (!have_current_user_key || CompareUserKeys(parsed.user_key, current_user_key) != 0) {
      current_user_key.assign(parsed.user_key);
      have_current_user_key = true;
      newer_stripe = kNoStripe;
    }
    const auto stripe = static_cast<std::size_t>(
        std::lower_bound(snapshots.begin(), snapshots.end(), parsed.sequence) - snapshots.begin());
    const bool hidden = stripe == newer_stripe;
    newer_stripe = stripe;
    if (hidden) {
      if (parsed.type == ValueType::kValuePointer && garbage != nullptr) {
        Result<ValuePointer> pointer = DecodeValuePointer(iter->value());
        if (pointer.ok()) {
          VlogGarbage& file = (*garbage)[pointer.value().file_number];
          ++file.records;
          file.bytes += pointer.value().size;
        }
      }
      continue;
    }
    if (first) {
      meta->smallest.assign(iter->key());
      first = false;
    }
    meta->largest.assign(iter->key());
    meta->smallest_sequence =
        added == 0 ? parsed.sequence : std::min(meta->smallest_sequence, parsed.sequence);
    meta->largest_sequence = std::max(meta->largest_sequence, parsed.sequence);
    builder.Add(iter->key(), iter->value());
    ++added;
    if (builder.NeedsWrite()) {
      status = co_await builder.WritePending();
      if (!status.ok()) break;
      co_await io::Yield();  // a bounded step: let foreground work run
    }
  }
  if (status.ok()) status = iter->status();
  if (status.ok()) status = co_await builder.Finish();
  if (status.ok()) status = co_await file.value()->Sync();
  Status closed = co_await file.value()->Close();
  if (status.ok()) status = closed;
  // The new name must be durable before the manifest edit that refers to it.
  if (status.ok()) status = co_await env_->SyncDir(dir_);
  if (!status.ok()) {
    (void)co_await env_->RemoveFile(path);
    co_return status.WithContext(path);
  }
  if (added == 0) {
    // Everything was hidden (cannot happen: a key's newest version is never hidden), or the
    // memtable was empty: no file.
    (void)co_await env_->RemoveFile(path);
    co_return Status::OK();
  }
  meta->number = number;
  meta->file_size_bytes = builder.file_size_bytes();
  meta->num_entries = added;
  co_return Status::OK();
}

DBImpl::WriteStep DBImpl::StartFlushLocked(std::uint64_t* wait_for_flushes, Status* status) {
  if (closed_) {
    *status = Status::InvalidArgument(dir_ + ": store is closed");
    return WriteStep::kFailed;
  }
  if (!bg_error_.ok()) {
    *status = bg_error_;
    return WriteStep::kFailed;
  }
  if (imm_ != nullptr && !flush_no_space_.ok()) {
    *status = flush_no_space_;
    return WriteStep::kFailed;
  }
  if (imm_ != nullptr) return WriteStep::kWaitForFlush;
  if (mem_->num_entries() == 0) {
    *wait_for_flushes = flushes_completed_;  // nothing to write
    return WriteStep::kDone;
  }
  const WriteStep step = SwitchMemTableLocked(status);
  if (step == WriteStep::kDone) *wait_for_flushes = flushes_started_;
  return step;
}

Status DBImpl::Flush() {
  if (options_.read_only) return ReadOnlyError("flush");
  std::uint64_t target = 0;
  Status status;
  std::unique_lock lock(mutex_);
  for (;;) {
    const WriteStep step = StartFlushLocked(&target, &status);
    if (step == WriteStep::kDone) break;
    if (step == WriteStep::kFailed) return status;
    if (step == WriteStep::kWaitForFlush) {
      background_changed_.WaitBlocking(lock);
      continue;
    }
    lock.unlock();
    scheduler_->BlockOn(wal_->WaitWritable(0));
    lock.lock();
  }
  while (flushes_completed_ < target && bg_error_.ok() && flush_no_space_.ok() && !closed_) {
    background_changed_.WaitBlocking(lock);
  }
  if (bg_error_.ok() && flushes_completed_ < target && !flush_no_space_.ok()) {
    return flush_no_space_;
  }
  return bg_error_;
}

io::Task<Status> DBImpl::FlushAsync() {
  if (options_.read_only) co_return ReadOnlyError("flush");
  std::uint64_t target = 0;
  Status status;
  std::unique_lock lock(mutex_);
  for (;;) {
    const WriteStep step = StartFlushLocked(&target, &status);
    if (step == WriteStep::kDone) break;
    if (step == WriteStep::kFailed) co_return status;
    if (step == WriteStep::kWaitForFlush) {
      co_await background_changed_.Wait(lock);
      continue;
    }
    lock.unlock();
    co_await wal_->WaitWritable(0);
    lock.lock();
  }
  while (flushes_completed_ < target && bg_error_.ok() && flush_no_space_.ok() && !closed_) {
    co_await background_changed_.Wait(lock);
  }
  if (bg_error_.ok() && flushes_completed_ < target && !flush_no_space_.ok()) {
    co_return flush_no_space_;
  }
  co_return bg_error_;
}

// ---- closing ----

Status DBImpl::Close() {
  std::unique_lock lock(mutex_);
  // vlog_ is set exactly while the store is open, read-only or not (wal_ only when writable).
  if (closed_ || scheduler_ == nullptr || vlog_ == nullptr) return Status::OK();
  // A running compaction stops at its next step; a finishing flush starts no new one.
  shutting_down_.store(true, std::memory_order_release);
  while (flush_scheduled_ || compaction_scheduled_ || vlog_gc_scheduled_) {
    background_changed_.WaitBlocking(lock);
  }
  CFS_ASSERT(snapshots_.empty());  // REQUIRES: every snapshot released
  // Every iterator is gone (REQUIRES), so every obsolete file is unreferenced now.
  lock.unlock();
  // Read-only: nothing is obsolete (no compaction or GC ran), and nothing may be removed.
  if (!options_.read_only) scheduler_->BlockOn(DeleteObsoleteFiles(), io::Priority::kBackground);
  lock.lock();
  closed_ = true;
  Status status = bg_error_;
  background_changed_.NotifyAll();
  lock.unlock();

  // The value log first: the WAL's last records may name its last values. Read-only, neither
  // writes anything (the value log has no current file, and there is no WAL writer).
  Status vlog_closed = scheduler_->BlockOn(vlog_->Close());
  if (status.ok()) status = vlog_closed;
  if (wal_ != nullptr) {
    Status wal_closed = scheduler_->BlockOn(wal_->Close());
    if (status.ok()) status = wal_closed;
  }
  if (!options_.read_only) {
    // After the WAL and value log wrote their last bytes, so this open's counts are whole.
    const DbStats session = stats();
    IoTotals totals = io_totals_base_;
    totals.opens += 1;
    totals.user_bytes_written += session.user_bytes_written;
    totals.wal_bytes_written += session.wal_bytes_written;
    totals.vlog_bytes_written += session.vlog_bytes_written;
    totals.flush_bytes_written += session.flush_bytes_written;
    totals.compaction_bytes_written += session.compaction_bytes_written;
    // Statistics: failing to write them (a full disk) does not fail the close.
    Status written = scheduler_->BlockOn(WriteIoTotals(env_, dir_, totals));
    if (!written.ok()) Log("IO totals not written: " + written.ToString());
  }
  Status manifest_closed = scheduler_->BlockOn(versions_->Close());
  if (status.ok()) status = manifest_closed;
  {
    std::lock_guard guard(mutex_);
    super_.reset();
    if (mem_ != nullptr) mem_->Unref();
    mem_ = nullptr;
    // Still set only after a failed flush: its data is in the WAL, replayed at the next Open.
    if (imm_ != nullptr) imm_->Unref();
    imm_ = nullptr;
  }
  wal_.reset();
  vlog_.reset();
  table_cache_.reset();
  lock_.reset();
  if (owned_scheduler_) {
    Status shutdown = owned_scheduler_->Shutdown();
    if (status.ok()) status = shutdown;
  }
  return status;
}

DbStats DBImpl::stats() const {
  DbStats out;
  out.writes = counters_.writes.load(std::memory_order_relaxed);
  out.user_bytes_written = counters_.user_bytes_written.load(std::memory_order_relaxed);
  out.memtable_flushes = counters_.memtable_flushes.load(std::memory_order_relaxed);
  out.flush_bytes_written = counters_.flush_bytes_written.load(std::memory_order_relaxed);
  out.write_stalls = counters_.write_stalls.load(std::memory_order_relaxed);
  out.write_stall_micros = counters_.write_stall_micros.load(std::memory_order_relaxed);
  out.write_slowdowns = counters_.write_slowdowns.load(std::memory_order_relaxed);
  out.compactions = counters_.compactions.load(std::memory_order_relaxed);
  out.trivial_moves = counters_.trivial_moves.load(std::memory_order_relaxed);
  out.compaction_bytes_read = counters_.compaction_bytes_read.load(std::memory_order_relaxed);
  out.compaction_bytes_written = counters_.compaction_bytes_written.load(std::memory_order_relaxed);
  out.compaction_micros = counters_.compaction_micros.load(std::memory_order_relaxed);
  out.compactions_failed_no_space =
      counters_.compactions_failed_no_space.load(std::memory_order_relaxed);
  out.flushes_failed_no_space = counters_.flushes_failed_no_space.load(std::memory_order_relaxed);
  out.manual_compactions = counters_.manual_compactions.load(std::memory_order_relaxed);
  out.obsolete_files_deleted = counters_.obsolete_files_deleted.load(std::memory_order_relaxed);
  out.last_sequence = last_sequence_.load(std::memory_order_relaxed);
  if (wal_) {
    const WalStats wal = wal_->stats();
    out.wal_syncs = wal.syncs;
    out.wal_synced_writes = wal.synced_writers;
    out.wal_bytes_written = wal.bytes_written;
  }
  if (versions_) {
    std::shared_ptr<const Version> version = versions_->current();
    out.sst_files = version->TotalFiles();
    out.sst_bytes = version->TotalBytes();
    for (const auto& [number, vlog] : version->vlogs) {
      ++out.vlog_files;
      out.vlog_bytes += vlog.size_bytes;
      out.vlog_garbage_bytes += vlog.garbage_bytes;
    }
  }
  if (vlog_) {
    const ValueLogStats vlog = vlog_->stats();
    out.vlog_records_written = vlog.records_appended;
    out.vlog_bytes_written = vlog.bytes_written;
    out.vlog_syncs = vlog.syncs;
    out.vlog_reads = vlog.reads;
  }
  out.vlog_gc_files = counters_.vlog_gc_files.load(std::memory_order_relaxed);
  out.vlog_gc_bytes_rewritten = counters_.vlog_gc_bytes_rewritten.load(std::memory_order_relaxed);
  out.vlog_gc_conflicts = counters_.vlog_gc_conflicts.load(std::memory_order_relaxed);
  out.vlog_files_deleted = counters_.vlog_files_deleted.load(std::memory_order_relaxed);
  if (table_cache_) {
    out.table_cache_opens = table_cache_->opens();
    out.bloom_useful = table_cache_->BloomNegatives();
  }
  if (block_cache_ != nullptr) {
    const BlockCacheStats cache = block_cache_->stats();
    out.block_cache_hits = cache.hits;
    out.block_cache_misses = cache.misses;
    out.block_cache_bytes = cache.bytes;
  }
  return out;
}

std::vector<LevelStats> DBImpl::GetLevelStats() const {
  std::vector<LevelStats> out(kNumLevels);
  if (!versions_) return out;
  std::shared_ptr<const Version> version = versions_->current();
  const std::array<double, kNumLevels> scores = ComputeScores(*version, compaction_options_);
  for (std::size_t level = 0; level < out.size(); ++level) {
    out[level].score = scores[level];
    for (const auto& file : version->files[level]) {
      ++out[level].files;
      out[level].bytes += file->file_size_bytes;
      out[level].entries += file->num_entries;
    }
  }
  return out;
}

// ---- compactions ----

io::Task<Status> DBImpl::LogAndApplyExclusive(VersionEdit* edit, bool record_vlog_files) {
  {
    std::unique_lock lock(mutex_);
    while (manifest_busy_) co_await background_changed_.Wait(lock);
    manifest_busy_ = true;  // invariant 6
  }
  // Inside the turn, so a file GC retired and removed in an earlier turn is not recorded again.
  if (record_vlog_files) RecordVlogFiles(edit);
  Status status = co_await versions_->LogAndApply(edit);
  std::vector<std::uint64_t> manifests = versions_->TakeObsoleteManifests();
  {
    std::lock_guard guard(mutex_);
    manifest_busy_ = false;
    background_changed_.NotifyAll();
  }
  for (std::uint64_t number : manifests) {
    (void)co_await env_->RemoveFile(ManifestFileName(dir_, number));
  }
  co_return status;
}

io::Task<void> DBImpl::WaitBeforeNoSpaceRetry() {
  // In steps, so Close is not held up by a whole pause.
  for (std::uint32_t waited = 0;
       waited < kNoSpaceRetryMs && !shutting_down_.load(std::memory_order_acquire);
       waited += kNoSpaceRetryStepMs) {
    (void)co_await io::Sleep(std::chrono::milliseconds(kNoSpaceRetryStepMs));
  }
}

void DBImpl::MaybeScheduleCompactionLocked() {
  if (options_.read_only || compaction_scheduled_ || closed_ || super_ == nullptr ||
      !bg_error_.ok() || shutting_down_.load(std::memory_order_acquire)) {
    return;
  }
  const std::array<double, kNumLevels> scores =
      ComputeScores(*versions_->current(), compaction_options_);
  if (*std::max_element(scores.begin(), scores.end()) < 1.0) return;
  // A CompactRange waits for the slot: it runs the automatic picks itself between its steps.
  if (manual_compactions_waiting_ > 0) return;
  compaction_scheduled_ = true;  // invariant 5
  scheduler_->Spawn(BackgroundCompaction(), io::Priority::kBackground);
}

io::Task<void> DBImpl::BackgroundCompaction() {
  Status status = co_await CompactOnce(-1);
  if (status.IsNoSpace()) {
    // The job removed its outputs and the inputs are untouched: nothing is lost, and the store
    // keeps serving. Wait (in steps, so Close is not held up) and let the next pick try again,
    // once deletes, a smaller pick or another process have freed space.
    counters_.compactions_failed_no_space.fetch_add(1, std::memory_order_relaxed);
    Log(dir_ + ": compaction: " + status.ToString() + " (retried in " +
        std::to_string(kNoSpaceRetryMs) + " ms)");
    co_await WaitBeforeNoSpaceRetry();
    status = Status::OK();
  }
  std::lock_guard guard(mutex_);
  compaction_scheduled_ = false;
  if (!status.ok() && !status.IsCancelled()) {
    RecordBackgroundErrorLocked(status.WithContext(dir_ + ": compaction"));
  }
  // One compaction may not be enough (level 0 filled up meanwhile, or the output level is
  // now over its limit): the next starts here, until every score is below 1.
  MaybeScheduleCompactionLocked();
  // The garbage it counted may have pushed a value-log file over the ratio.
  MaybeScheduleVlogGcLocked();
  background_changed_.NotifyAll();
}

Status DBImpl::CompactLevelForTest(int level) {
  CFS_ASSERT(level >= 0 && level < kNumLevels - 1);
  if (options_.read_only) return ReadOnlyError("compaction");
  std::unique_lock lock(mutex_);
  while (compaction_scheduled_ && !closed_) background_changed_.WaitBlocking(lock);
  if (closed_) return Status::InvalidArgument(dir_ + ": store is closed");
  compaction_scheduled_ = true;
  lock.unlock();
  Status status = scheduler_->BlockOn(CompactOnce(level), io::Priority::kBackground);
  lock.lock();
  compaction_scheduled_ = false;
  if (!status.ok() && !status.IsCancelled()) {
    RecordBackgroundErrorLocked(status.WithContext(dir_ + ": compaction"));
  }
  MaybeScheduleCompactionLocked();
  background_changed_.NotifyAll();
  return status;
}

io::Task<Status> DBImpl::CompactOnce(int forced_level) {
  std::unique_ptr<Compaction> compaction =
      forced_level >= 0 ? PickCompactionAt(versions_->current(), forced_level,
                                           versions_->compact_pointers(), compaction_options_)
                        : PickCompaction(versions_->current(), versions_->compact_pointers(),
                                         compaction_options_);
  if (compaction == nullptr) co_return Status::OK();
  co_return co_await RunCompaction(std::move(compaction), nullptr);
}

io::Task<Status> DBImpl::RunCompaction(std::unique_ptr<Compaction> compaction,
                                       std::vector<std::uint64_t>* outputs) {
  CFS_ASSERT(compaction != nullptr);
  const auto start = std::chrono::steady_clock::now();
  VersionEdit edit;
  Status status;
  if (compaction->IsTrivialMove()) {
    // The file is already durable; only its level changes.
    const FileRef& file = compaction->inputs(0).front();
    edit.RemoveFile(compaction->level(), file->number);
    edit.AddFile(compaction->output_level(), *file);
    edit.SetCompactPointer(compaction->level(), file->largest);
    status = co_await LogAndApplyExclusive(&edit);
    if (status.ok()) counters_.trivial_moves.fetch_add(1, std::memory_order_relaxed);
  } else {
    CompactionJobContext context;
    context.env = env_;
    context.dir = dir_;
    context.table_cache = table_cache_.get();
    context.table_options = table_options_;
    context.versions = versions_.get();
    context.target_file_size_bytes = options_.target_file_size_bytes;
    context.rate_limit_mb_per_sec = options_.compaction_rate_limit_mb_per_sec;
    context.shutting_down = &shutting_down_;
    {
      // Snapshots taken later see at least last_sequence_ now, newer than every input entry.
      std::lock_guard guard(mutex_);
      context.snapshots.assign(snapshots_.begin(), snapshots_.end());
    }
    CompactionJobResult result;
    status = co_await RunCompactionJob(compaction.get(), context, &edit, &result);
    // On a manifest error the outputs stay: the edit may have reached the disk, and only the
    // next Open can tell (it removes whichever files the manifest does not name).
    if (status.ok()) status = co_await LogAndApplyExclusive(&edit);
    if (status.ok()) {
      counters_.compaction_bytes_read.fetch_add(result.bytes_read, std::memory_order_relaxed);
      counters_.compaction_bytes_written.fetch_add(result.bytes_written, std::memory_order_relaxed);
      if (outputs != nullptr) {
        for (const FileMetaData& meta : result.outputs) outputs->push_back(meta.number);
      }
      std::lock_guard guard(mutex_);
      // Invariant 7: the edit dropping the inputs is durable.
      for (int which = 0; which < 2; ++which) {
        for (const FileRef& file : compaction->inputs(which)) {
          obsolete_files_.emplace_back(file->number, file);
        }
      }
    }
  }
  if (status.ok()) {
    std::lock_guard guard(mutex_);
    if (!closed_) InstallSuperVersionLocked();
  }
  compaction.reset();  // drops the input Version
  co_await DeleteObsoleteFiles();
  if (status.ok()) {
    counters_.compactions.fetch_add(1, std::memory_order_relaxed);
    counters_.compaction_micros.fetch_add(MicrosSince(start), std::memory_order_relaxed);
  }
  co_return status;
}

// ---- value-log GC ----

std::uint64_t DBImpl::PickVlogForGcLocked(double garbage_ratio) const {
  const std::shared_ptr<const Version> version = versions_->current();
  std::uint64_t best = 0;
  double best_ratio = 0;
  for (const auto& [number, file] : version->vlogs) {
    if (vlog_->IsBeingWritten(number) || file.size_bytes <= kVlogFileHeaderBytes) continue;
    const bool collecting =
        std::any_of(obsolete_vlogs_.begin(), obsolete_vlogs_.end(),
                    [number](const auto& vlog) { return vlog.number == number; });
    if (collecting) continue;
    const double ratio = static_cast<double>(file.garbage_bytes) /
                         static_cast<double>(file.size_bytes - kVlogFileHeaderBytes);
    if (ratio >= garbage_ratio && ratio > best_ratio) {
      best = number;
      best_ratio = ratio;
    }
  }
  return best;
}

void DBImpl::MaybeScheduleVlogGcLocked() {
  if (options_.read_only || vlog_gc_scheduled_ || closed_ || super_ == nullptr || !bg_error_.ok() ||
      shutting_down_.load(std::memory_order_acquire) || vlog_ == nullptr) {
    return;
  }
  if (PickVlogForGcLocked(options_.vlog_gc_garbage_ratio) == 0) return;
  vlog_gc_scheduled_ = true;
  scheduler_->Spawn(BackgroundVlogGc(), io::Priority::kBackground);
}

io::Task<void> DBImpl::BackgroundVlogGc() {
  std::uint64_t number = 0;
  {
    std::lock_guard guard(mutex_);
    number = PickVlogForGcLocked(options_.vlog_gc_garbage_ratio);
  }
  Status status;
  // GCC 12: never co_await inside ?: (it miscompiles the temporaries).
  if (number != 0) status = co_await CollectVlogFile(number);
  std::lock_guard guard(mutex_);
  vlog_gc_scheduled_ = false;
  if (!status.ok() && !status.IsCancelled()) {
    // GC changes nothing a reader sees: a failed round leaves the file for a later one.
    Log(VlogFileName(dir_, number) + ": value-log GC: " + status.ToString());
  } else if (status.ok()) {
    MaybeScheduleVlogGcLocked();
  }
  background_changed_.NotifyAll();
}

io::Task<Status> DBImpl::CollectVlogFile(std::uint64_t number) {
  const std::string path = VlogFileName(dir_, number);
  const std::uint64_t end = vlog_->ValidEnd(number);
  if (end == 0) co_return Status::OK();  // already gone
  auto opened = co_await env_->NewRandomAccessFile(path);
  if (!opened.ok()) co_return opened.status();
  const RandomAccessFile& file = *opened.value();
  // Rate limit: GC shares compaction's budget of bytes per second.
  const auto start = std::chrono::steady_clock::now();
  std::uint64_t bytes_done = 0;

  struct Record {
    ValuePointer pointer;
    std::string key;
    std::string value;
  };
  std::uint64_t offset = kVlogFileHeaderBytes;
  bool header_checked = false;
  while (offset < end) {
    if (shutting_down_.load(std::memory_order_acquire)) {
      co_return Status::Cancelled("value-log GC: the store is closing");
    }
    // One bounded step: at most kVlogGcStepBytes of records.
    std::vector<Record> records;
    std::uint64_t next = 0;
    Status scanned = co_await ScanVlogRecords(
        file, number,
        [&records, end](const ValuePointer& pointer, const VlogRecord& record) {
          if (pointer.offset + pointer.size > end) return Status::OK();  // past the valid end
          if (record.compression != VlogCompression::kNone) {
            return Status::NotSupported("value-log GC of compressed records");
          }
          records.push_back({pointer, std::string(record.key), std::string(record.value)});
          return Status::OK();
        },
        &next, header_checked ? offset : 0, kVlogGcStepBytes);
    header_checked = true;
    if (!scanned.ok()) co_return scanned.WithContext(path);
    if (next <= offset) break;  // a record that does not decode: checked below
    const std::uint64_t step_bytes = next - offset;
    offset = next;

    // Live: the newest entry of the key is a pointer to exactly this record. Rewrite those
    // through the write path, on the condition that none was written meanwhile; when one was,
    // look again (it may be dead now).
    for (int attempt = 0;; ++attempt) {
      WriteCondition condition;
      std::shared_ptr<const SuperVersion> super_version;
      {
        std::lock_guard guard(mutex_);
        if (closed_) co_return Status::Cancelled("value-log GC: the store is closing");
        condition.flushes_completed = flushes_completed_;
        condition.looked_at = last_sequence_.load(std::memory_order_acquire);
        super_version = super_;
      }
      WriteBatch batch;
      std::uint64_t live_bytes = 0;
      for (const Record& record : records) {
        ValueType type = ValueType::kValue;
        std::string bytes;
        Status found =
            co_await GetNewestEntry(super_version, record.key, condition.looked_at, &type, &bytes);
        if (found.IsNotFound()) continue;
        if (!found.ok()) co_return found;
        if (type != ValueType::kValuePointer) continue;
        Result<ValuePointer> pointer = DecodeValuePointer(bytes);
        if (!pointer.ok()) co_return pointer.status();
        if (pointer.value().file_number != number ||
            pointer.value().offset != record.pointer.offset) {
          continue;
        }
        batch.Put(record.key, record.value);
        condition.keys.push_back(record.key);
        live_bytes += record.value.size();
      }
      super_version.reset();
      if (batch.Count() == 0) break;
      Status written = co_await WriteAsyncImpl(WriteOptions{}, batch, &condition);
      if (written.ok()) {
        counters_.vlog_gc_bytes_rewritten.fetch_add(live_bytes, std::memory_order_relaxed);
        break;
      }
      if (!written.IsBusy()) co_return written;
      counters_.vlog_gc_conflicts.fetch_add(1, std::memory_order_relaxed);
      if (attempt >= 8) co_return Status::Busy(path + ": value-log GC: keys kept changing");
    }
    bytes_done += step_bytes;
    co_await io::Yield();  // a bounded step: let foreground work run
    if (options_.compaction_rate_limit_mb_per_sec > 0) {
      const double due_seconds =
          static_cast<double>(bytes_done) /
          (static_cast<double>(options_.compaction_rate_limit_mb_per_sec) * (1 << 20));
      const auto due =
          start + std::chrono::microseconds(static_cast<std::int64_t>(due_seconds * 1e6));
      while (std::chrono::steady_clock::now() < due &&
             !shutting_down_.load(std::memory_order_acquire)) {
        (void)co_await io::Sleep(std::chrono::milliseconds(10));
      }
    }
  }
  if (offset < end) {
    // A damaged record: the values after it cannot be moved, so the file stays (fsck names it).
    co_return Status::Corruption(path + ": value-log GC stopped at offset " +
                                 std::to_string(offset) + ", a record that does not decode; " +
                                 "the file is left as it is");
  }
  // Every live value has a newer version elsewhere. Flush, so that no WAL record a crash
  // could replay names this file, then drop it from the manifest.
  CFS_CO_RETURN_IF_ERROR(co_await FlushAsync());
  const SequenceNumber collected_at = last_sequence_.load(std::memory_order_acquire);
  std::weak_ptr<const int> pin;
  {
    const std::shared_ptr<const Version> version = versions_->current();
    auto it = version->vlog_pins.find(number);
    if (it == version->vlog_pins.end()) co_return Status::OK();
    pin = it->second;
  }
  VersionEdit edit;
  edit.RemoveVlog(number);
  // Retired first: a flush running beside this edit must not record the file again.
  vlog_->Retire(number);
  CFS_CO_RETURN_IF_ERROR(co_await LogAndApplyExclusive(&edit));
  {
    std::lock_guard guard(mutex_);
    if (!closed_) InstallSuperVersionLocked();
    obsolete_vlogs_.push_back({number, pin, collected_at});
  }
  counters_.vlog_gc_files.fetch_add(1, std::memory_order_relaxed);
  co_await DeleteObsoleteFiles();
  co_return Status::OK();
}

Result<std::uint64_t> DBImpl::RunVlogGcForTest(double garbage_ratio) {
  if (options_.read_only) return ReadOnlyError("value-log GC");
  if (garbage_ratio < 0) garbage_ratio = options_.vlog_gc_garbage_ratio;
  std::uint64_t collected = 0;
  for (;;) {
    std::unique_lock lock(mutex_);
    while (vlog_gc_scheduled_ && !closed_) background_changed_.WaitBlocking(lock);
    if (closed_) return Status::InvalidArgument(dir_ + ": store is closed");
    const std::uint64_t number = PickVlogForGcLocked(garbage_ratio);
    if (number == 0) break;
    vlog_gc_scheduled_ = true;
    lock.unlock();
    Status status = scheduler_->BlockOn(CollectVlogFile(number), io::Priority::kBackground);
    lock.lock();
    vlog_gc_scheduled_ = false;
    background_changed_.NotifyAll();
    if (!status.ok()) return status;
    ++collected;
  }
  scheduler_->BlockOn(DeleteObsoleteFiles(), io::Priority::kBackground);
  return collected;
}

void DBImpl::RecordVlogFiles(VersionEdit* edit) const {
  const std::shared_ptr<const Version> version = versions_->current();
  for (const VlogFileState& file : vlog_->Files()) {
    if (file.records == 0 || file.durable_end <= kVlogFileHeaderBytes) continue;
    const VlogFileMeta meta{.number = file.number,
                            .size_bytes = file.durable_end,
                            .records = file.records,
                            .value_bytes = file.value_bytes};
    auto it = version->vlogs.find(file.number);
    if (it != version->vlogs.end() && it->second.size_bytes == meta.size_bytes &&
        it->second.records == meta.records && it->second.value_bytes == meta.value_bytes) {
      continue;
    }
    edit->AddVlog(meta);
  }
}

io::Task<void> DBImpl::DeleteObsoleteFiles() {
  std::vector<std::uint64_t> deletable;
  std::vector<std::uint64_t> deletable_vlogs;
  {
    std::lock_guard guard(mutex_);
    // A collected value log: no Version lists it, and every snapshot that could still see
    // an old pointer to it (taken before its values were written again) is released.
    const SequenceNumber oldest_snapshot = snapshots_.empty() ? kSequenceMax : *snapshots_.begin();
    auto unreachable = std::partition(
        obsolete_vlogs_.begin(), obsolete_vlogs_.end(), [oldest_snapshot](const auto& vlog) {
          return !vlog.pin.expired() || oldest_snapshot < vlog.collected_at;
        });
    for (auto it = unreachable; it != obsolete_vlogs_.end(); ++it) {
      deletable_vlogs.push_back(it->number);
    }
    obsolete_vlogs_.erase(unreachable, obsolete_vlogs_.end());
    auto unreferenced = std::partition(obsolete_files_.begin(), obsolete_files_.end(),
                                       [](const auto& entry) { return !entry.second.expired(); });
    for (auto it = unreferenced; it != obsolete_files_.end(); ++it) deletable.push_back(it->first);
    obsolete_files_.erase(unreferenced, obsolete_files_.end());
  }
  for (std::uint64_t number : deletable) {
    table_cache_->Evict(number);
    Status status = co_await env_->RemoveFile(SstFileName(dir_, number));
    if (status.ok()) {
      counters_.obsolete_files_deleted.fetch_add(1, std::memory_order_relaxed);
    } else {
      // Left for the next Open, which removes every SST the manifest does not name.
      Log("removing obsolete " + SstFileName(dir_, number) + ": " + status.ToString());
    }
  }
  for (std::uint64_t number : deletable_vlogs) {
    Status status = co_await vlog_->DeleteFile(number);
    if (status.ok()) {
      counters_.vlog_files_deleted.fetch_add(1, std::memory_order_relaxed);
    } else {
      // Left for the next Open, which removes value logs nothing names.
      Log("removing collected " + VlogFileName(dir_, number) + ": " + status.ToString());
    }
  }
}

}  // namespace cascadefs::engine
