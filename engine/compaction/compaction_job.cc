// compaction_job.cc: the merge loop of a compaction (compaction_job.h has the rules).
#include "compaction/compaction_job.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <utility>

#include "db/merging_iterator.h"
#include "engine/assert.h"
#include "engine/io/scheduler.h"
#include "manifest/filename.h"
#include "sst/table_builder.h"
#include "vlog/vlog_format.h"

namespace cascadefs::engine {

namespace {

// One output SST being written.
struct Output {
  FileMetaData meta;
  std::unique_ptr<WritableFile> file;
  std::unique_ptr<TableBuilder> builder;
};

class Job {
 public:
  Job(Compaction* compaction, const CompactionJobContext& ctx, CompactionJobResult* result)
      : compaction_(compaction), ctx_(ctx), result_(result) {}

  io::Task<Status> Run(VersionEdit* edit);

 private:
  io::Task<Status> OpenOutput();
  io::Task<Status> FinishOutput();
  // Ends a bounded step: yield, then sleep while ahead of the rate limit. Cancelled when the
  // store is closing.
  io::Task<Status> EndStep();
  bool ShuttingDown() const {
    return ctx_.shutting_down != nullptr && ctx_.shutting_down->load(std::memory_order_acquire);
  }
  std::uint64_t BytesWritten() const {
    return result_->bytes_written + (output_ ? output_->builder->file_size_bytes() : 0);
  }

  Compaction* const compaction_;
  const CompactionJobContext& ctx_;
  CompactionJobResult* const result_;
  std::optional<Output> output_;
  std::vector<std::uint64_t> created_;  // every output file number, for cleanup on error
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

io::Task<Status> Job::OpenOutput() {
  CFS_ASSERT(!output_.has_value());
  const std::uint64_t number = ctx_.versions->NewFileNumber();
  created_.push_back(number);
  auto file =
      co_await ctx_.env->NewWritableFile(SstFileName(ctx_.dir, number), WriteMode::kCreateTruncate);
  if (!file.ok()) co_return file.status();
  output_.emplace();
  output_->meta.number = number;
  output_->file = std::move(file).value();
  output_->builder = std::make_unique<TableBuilder>(ctx_.table_options, output_->file.get());
  co_return Status::OK();
}

io::Task<Status> Job::FinishOutput() {
  CFS_ASSERT(output_.has_value());
  CFS_ASSERT(output_->builder->num_entries() > 0);
  Status status = co_await output_->builder->Finish();
  if (status.ok()) status = co_await output_->file->Sync();
  Status closed = co_await output_->file->Close();
  if (status.ok()) status = closed;
  if (!status.ok()) co_return status.WithContext(output_->file->path());
  output_->meta.file_size_bytes = output_->builder->file_size_bytes();
  output_->meta.num_entries = output_->builder->num_entries();
  result_->bytes_written += output_->meta.file_size_bytes;
  result_->outputs.push_back(std::move(output_->meta));
  output_.reset();
  co_return Status::OK();
}

io::Task<Status> Job::EndStep() {
  co_await io::Yield();
  if (ShuttingDown()) co_return Status::Cancelled("compaction: the store is closing");
  if (ctx_.rate_limit_mb_per_sec == 0) co_return Status::OK();
  // Where the schedule says we may be: bytes / rate. Sleep off any lead, in bounded slices.
  const double rate_bytes_per_micro =
      static_cast<double>(ctx_.rate_limit_mb_per_sec) * (1 << 20) / 1e6;
  for (;;) {
    const auto due_micros =
        static_cast<std::uint64_t>(static_cast<double>(BytesWritten()) / rate_bytes_per_micro);
    const auto elapsed_micros =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                       std::chrono::steady_clock::now() - start_)
                                       .count());
    if (due_micros <= elapsed_micros) co_return Status::OK();
    const std::uint64_t sleep_micros =
        std::min(due_micros - elapsed_micros, kCompactionSleepMaxMicros);
    (void)co_await io::Sleep(std::chrono::microseconds(sleep_micros));
    if (ShuttingDown()) co_return Status::Cancelled("compaction: the store is closing");
  }
}

io::Task<Status> Job::Run(VersionEdit* edit) {
  std::vector<std::unique_ptr<InternalIterator>> children;
  for (int which = 0; which < 2; ++which) {
    for (const FileRef& file : compaction_->inputs(which)) {
      auto table = co_await ctx_.table_cache->Get(file->number);
      if (!table.ok()) co_return table.status();
      result_->bytes_read += file->file_size_bytes;
      children.push_back(
          NewTableIteratorHolding(std::move(table).value(), /*use_block_cache=*/false));
    }
  }
  std::unique_ptr<InternalIterator> input = NewMergingIterator(std::move(children));

  Status status;
  std::string current_user_key;
  bool have_current_user_key = false;
  // The stripe (compaction_job.h) of the previous, newer entry of the current user key;
  // kNoStripe when the entry is the key's first.
  constexpr std::size_t kNoStripe = ~std::size_t{0};
  std::size_t newer_stripe = kNoStripe;
  const std::vector<SequenceNumber>& snapshots = ctx_.snapshots;
  CFS_DASSERT(std::is_sorted(snapshots.begin(), snapshots.end()));
  std::uint64_t step_entries = 0;
  for (co_await input->SeekToFirst(); input->Valid(); co_await input->Next()) {
    const std::string_view key = input->key();
    ParsedInternalKey parsed;
    if (!ParseInternalKey(key, &parsed)) {
      status = Status::Corruption("compaction input: an entry with an unparsable internal key");
      break;
    }
    const bool first_of_user_key =
        !have_current_user_key || CompareUserKeys(parsed.user_key, current_user_key) != 0;
    if (first_of_user_key) {
      // Invariant 1 of compaction.h: an output ends only between two user keys.
      const bool grandparents_full = compaction_->ShouldStopBefore(key);
      if (output_ && (grandparents_full ||
                      output_->builder->file_size_bytes() >= ctx_.target_file_size_bytes)) {
        status = co_await FinishOutput();
        if (!status.ok()) break;
      }
      current_user_key.assign(parsed.user_key);
      have_current_user_key = true;
      newer_stripe = kNoStripe;
    }
    // The index of the first snapshot at or above the entry; snapshots.size() past them all.
    const auto stripe = static_cast<std::size_t>(
        std::lower_bound(snapshots.begin(), snapshots.end(), parsed.sequence) - snapshots.begin());
    // A newer version in the same stripe hides this one from every reader; or a marker every
    // reader sees has nothing below it to hide.
    const bool hidden = stripe == newer_stripe;
    const bool useless_marker = !hidden && parsed.type == ValueType::kDeletion && stripe == 0 &&
                                compaction_->IsBaseLevelForKey(parsed.user_key);
    const bool drop = hidden || useless_marker;
    newer_stripe = stripe;
    if (drop) {
      ++result_->entries_dropped;
      if (parsed.type == ValueType::kValuePointer) {
        Result<ValuePointer> pointer = DecodeValuePointer(input->value());
        if (!pointer.ok()) {
          status = pointer.status().WithContext("compaction input: the value pointer of a key");
          break;
        }
        VlogGarbage& garbage = result_->vlog_garbage[pointer.value().file_number];
        ++garbage.records;
        garbage.bytes += pointer.value().size;
      }
    } else {
      if (!output_) {
        status = co_await OpenOutput();
        if (!status.ok()) break;
        output_->meta.smallest.assign(key);
        output_->meta.smallest_sequence = parsed.sequence;
      }
      output_->meta.largest.assign(key);
      output_->meta.smallest_sequence = std::min(output_->meta.smallest_sequence, parsed.sequence);
      output_->meta.largest_sequence = std::max(output_->meta.largest_sequence, parsed.sequence);
      output_->builder->Add(key, input->value());
      if (output_->builder->NeedsWrite()) {
        status = co_await output_->builder->WritePending();
        if (!status.ok()) break;
        step_entries = kCompactionStepEntriesMax;  // a write-out ends the step
      }
    }
    if (++step_entries >= kCompactionStepEntriesMax) {
      step_entries = 0;
      status = co_await EndStep();
      if (!status.ok()) break;
    }
  }
  if (status.ok()) status = input->status();
  if (status.ok() && output_) status = co_await FinishOutput();
  // The outputs' names must be durable before the manifest edit that refers to them.
  if (status.ok() && !created_.empty()) status = co_await ctx_.env->SyncDir(ctx_.dir);
  if (!status.ok()) {
    if (output_) (void)co_await output_->file->Close();
    output_.reset();
    for (std::uint64_t number : created_) {
      (void)co_await ctx_.env->RemoveFile(SstFileName(ctx_.dir, number));
    }
    result_->outputs.clear();
    co_return status;
  }
  compaction_->AddInputDeletions(edit);
  for (const FileMetaData& meta : result_->outputs)
    edit->AddFile(compaction_->output_level(), meta);
  for (const auto& [number, garbage] : result_->vlog_garbage) {
    edit->AddVlogGarbage(number, garbage.records, garbage.bytes);
  }
  co_return Status::OK();
}

}  // namespace

io::Task<Status> RunCompactionJob(Compaction* compaction, const CompactionJobContext& ctx,
                                  VersionEdit* edit, CompactionJobResult* result) {
  CFS_ASSERT(compaction != nullptr && ctx.env != nullptr && ctx.table_cache != nullptr);
  CFS_ASSERT(ctx.versions != nullptr && ctx.target_file_size_bytes > 0);
  Job job(compaction, ctx, result);
  co_return co_await job.Run(edit);
}

}  // namespace cascadefs::engine
