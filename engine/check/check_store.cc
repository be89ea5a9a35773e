// check_store.cc: CheckStoreFiles (engine/check.h). Reads only; the order is the order of
// dependence: CURRENT, then the manifest it names (which says which other files are live),
// then each live SST, the WAL segments still to be replayed, and each live value-log file.
#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "check/store_state.h"
#include "db/dbformat.h"
#include "db/version_set.h"
#include "db/write_batch_internal.h"
#include "engine/check.h"
#include "manifest/current_file.h"
#include "manifest/filename.h"
#include "sst/table.h"
#include "vlog/vlog_file.h"
#include "vlog/vlog_format.h"
#include "wal/wal_reader.h"

namespace cascadefs::engine {

std::uint64_t CheckReport::errors() const {
  return static_cast<std::uint64_t>(
      std::count_if(findings.begin(), findings.end(),
                    [](const CheckFinding& f) { return f.severity == CheckSeverity::kError; }));
}

namespace {

// The engine's messages say "<path>: ... at offset N: ..."; the finding keeps the offset as a
// number and drops the path it names separately.
std::optional<std::uint64_t> OffsetIn(std::string_view message) {
  const std::size_t at = message.find("offset ");
  if (at == std::string_view::npos) return std::nullopt;
  std::size_t i = at + 7;
  if (i >= message.size() || std::isdigit(static_cast<unsigned char>(message[i])) == 0) {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  for (; i < message.size() && std::isdigit(static_cast<unsigned char>(message[i])) != 0; ++i) {
    value = value * 10 + static_cast<std::uint64_t>(message[i] - '0');
  }
  return value;
}

std::string WithoutPath(std::string_view message, const std::string& path) {
  std::string out(message);
  for (std::size_t at; (at = out.find(path + ": ")) != std::string::npos;) {
    out.erase(at, path.size() + 2);
  }
  return out;
}

class Checker {
 public:
  Checker(Env* env, std::string dir, CheckOptions options)
      : env_(env), dir_(std::move(dir)), options_(std::move(options)) {}

  io::Task<Result<CheckReport>> Run() {
    Result<std::vector<std::string>> names = env_->ListDir(dir_);
    if (!names.ok()) co_return names.status();
    for (const std::string& name : names.value()) {
      std::uint64_t number = 0;
      FileType type{};
      if (!ParseFileName(name, &number, &type)) continue;
      present_[type].insert(number);
      Result<std::uint64_t> size = co_await env_->FileSize(dir_ + "/" + name);
      if (size.ok()) total_bytes_ += size.value();
    }
    const bool have_version = co_await CheckManifest();
    if (have_version) {
      for (int level = 0; level < kNumLevels; ++level) {
        for (const auto& file : version_.files[level]) co_await CheckSst(level, *file);
      }
      CheckLevelRanges();
      co_await CheckWal();
      for (const auto& [number, meta] : version_.vlogs) co_await CheckVlog(meta);
      NoteUnlistedFiles();
    }
    co_return std::move(report_);
  }

 private:
  void Add(CheckSeverity severity, const std::string& file, std::optional<std::uint64_t> offset,
           std::string problem) {
    report_.findings.push_back({severity, file, offset, std::move(problem)});
  }
  void AddStatus(const std::string& file, const Status& status) {
    const std::string path = dir_ + "/" + file;
    Add(CheckSeverity::kError, file, OffsetIn(status.message()),
        WithoutPath(status.ToString(), path));
  }
  io::Task<void> Progress(const std::string& file) {
    if (options_.progress) {
      options_.progress(CheckProgress{file, report_.bytes_checked, total_bytes_});
    }
    Result<std::uint64_t> size = co_await env_->FileSize(dir_ + "/" + file);
    if (size.ok()) report_.bytes_checked += size.value();
    ++report_.files_checked;
  }

  // CURRENT and the manifest: fills version_ and log_number_; false when there is no state
  // to check the other files against.
  io::Task<bool> CheckManifest() {
    co_await Progress("CURRENT");
    Result<std::uint64_t> manifest = co_await ReadCurrentFile(env_, dir_);
    if (!manifest.ok()) {
      AddStatus("CURRENT", manifest.status().IsNotFound()
                               ? Status::Corruption("missing: no manifest is named, so no "
                                                    "other file of the store can be trusted")
                               : manifest.status());
      co_return false;
    }
    const std::string name = BaseFileName(FileType::kManifest, manifest.value());
    manifest_number_ = manifest.value();
    co_await Progress(name);
    Result<StoreState> state = co_await ReadStoreState(env_, dir_);
    if (!state.ok()) {
      AddStatus(name, state.status());
      co_return false;
    }
    const ManifestSummary& summary = state.value().manifest;
    if (summary.torn_tail()) {
      Add(CheckSeverity::kNote, name, summary.valid_length_bytes,
          "torn last record (an edit cut by a crash, never acknowledged): " +
              WithoutPath(summary.torn_tail_reason, dir_ + "/" + name));
    }
    log_number_ = state.value().log_number;
    version_ = std::move(state.value().version);
    co_return true;
  }

  io::Task<void> CheckSst(int level, const FileMetaData& meta) {
    ++report_.sst_files;
    const std::string name = BaseFileName(FileType::kSst, meta.number);
    const std::string where = "level " + std::to_string(level) + " file";
    listed_[FileType::kSst].insert(meta.number);
    if (!present_[FileType::kSst].contains(meta.number)) {
      Add(CheckSeverity::kError, name, std::nullopt,
          "missing: the manifest lists it as a " + where);
      co_return;
    }
    co_await Progress(name);
    auto file = co_await env_->NewRandomAccessFile(dir_ + "/" + name);
    if (!file.ok()) {
      AddStatus(name, file.status());
      co_return;
    }
    if (file.value()->size_bytes() != meta.file_size_bytes) {
      Add(CheckSeverity::kError, name, std::nullopt,
          "size " + std::to_string(file.value()->size_bytes()) + " bytes, the manifest says " +
              std::to_string(meta.file_size_bytes) + " (truncated or overwritten)");
    }
    auto table = co_await Table::Open(TableOptions{}, std::move(file).value());
    if (!table.ok()) {
      AddStatus(name, table.status());
      co_return;
    }
    std::string previous;
    std::string first;
    std::uint64_t entries = 0;
    bool order_reported = false;
    bool damaged = false;
    co_await table.value()->CheckBlocks(
        [&](std::uint64_t offset, const Status& status) {
          damaged = true;
          Add(CheckSeverity::kError, name, offset,
              WithoutPath(status.ToString(), dir_ + "/" + name));
        },
        [&](std::string_view key, std::string_view value) {
          // One finding per kind and file: a damaged table repeats itself.
          ParsedInternalKey parsed;
          const bool parsed_ok = ParseInternalKey(key, &parsed);
          if (!parsed_ok && !order_reported) {
            order_reported = true;
            Add(CheckSeverity::kError, name, std::nullopt,
                "an entry with a malformed internal key (entry " + std::to_string(entries) + ")");
          } else if (parsed_ok && parsed.type == ValueType::kValuePointer &&
                     !DecodeValuePointer(value).ok() && !order_reported) {
            order_reported = true;
            Add(CheckSeverity::kError, name, std::nullopt,
                "a value pointer that does not decode (entry " + std::to_string(entries) + ")");
          }
          if (entries == 0) first.assign(key);
          if (entries > 0 && CompareInternalKeys(previous, key) >= 0 && !order_reported) {
            order_reported = true;
            Add(CheckSeverity::kError, name, std::nullopt,
                "entries out of order at entry " + std::to_string(entries));
          }
          previous.assign(key);
          ++entries;
        });
    report_.sst_entries += entries;
    if (damaged) co_return;  // counts and ranges are meaningless past a bad block
    if (entries != meta.num_entries) {
      Add(CheckSeverity::kError, name, std::nullopt,
          std::to_string(entries) + " entries, the manifest says " +
              std::to_string(meta.num_entries));
    }
    if (entries > 0 && (first != meta.smallest || previous != meta.largest)) {
      Add(CheckSeverity::kError, name, std::nullopt,
          "its first or last key differs from the key range the manifest records");
    }
  }

  // Files of one level >= 1 hold disjoint key ranges (reads look in one file per level).
  void CheckLevelRanges() {
    for (int level = 1; level < kNumLevels; ++level) {
      std::vector<const FileMetaData*> files;
      for (const auto& file : version_.files[level]) files.push_back(file.get());
      std::sort(files.begin(), files.end(), [](const FileMetaData* a, const FileMetaData* b) {
        return CompareInternalKeys(a->smallest, b->smallest) < 0;
      });
      for (std::size_t i = 1; i < files.size(); ++i) {
        if (CompareUserKeys(ExtractUserKey(files[i - 1]->largest),
                            ExtractUserKey(files[i]->smallest)) >= 0) {
          Add(CheckSeverity::kError, BaseFileName(FileType::kManifest, manifest_number_),
              std::nullopt,
              "level " + std::to_string(level) + ": the key ranges of " +
                  BaseFileName(FileType::kSst, files[i - 1]->number) + " and " +
                  BaseFileName(FileType::kSst, files[i]->number) + " overlap");
        }
      }
    }
  }

  io::Task<void> CheckWal() {
    std::vector<std::uint64_t> to_replay;
    for (std::uint64_t number : present_[FileType::kWal]) {
      if (number >= log_number_) to_replay.push_back(number);
      listed_[FileType::kWal].insert(number);  // older ones are kept for recycling
    }
    if (to_replay.empty()) co_return;
    for (std::uint64_t number : to_replay) co_await Progress(BaseFileName(FileType::kWal, number));
    WalReplayResult result;
    // The value pointers the records carry, in replay order: the open reads their records
    // back (a value log written since the last flush is not in the manifest yet).
    struct NamedValue {
      WalPosition at;
      ValuePointer pointer;
    };
    std::vector<NamedValue> named;
    class Pointers final : public InternalBatchHandler {
     public:
      void Put(std::string_view, std::string_view) override {}
      void Delete(std::string_view) override {}
      void PutValuePointer(std::string_view, std::string_view pointer) override {
        Result<ValuePointer> decoded = DecodeValuePointer(pointer);
        if (decoded.ok()) found.push_back(decoded.value());
      }
      std::vector<ValuePointer> found;
    };
    Status status = co_await ReplayWal(
        env_, dir_, to_replay,
        [&](std::string_view record, const WalPosition& at) {
          ++report_.wal_records;
          Pointers pointers;
          // A record that does not parse is the open's error too; the WAL layer names it.
          if (WriteBatchInternal::IterateInternal(record, &pointers).ok()) {
            for (const ValuePointer& p : pointers.found) named.push_back({at, p});
          }
          return Status::OK();
        },
        &result);
    co_await CheckNamedValues(named.begin(), named.end(), result.synced_end);
    // The reader's messages name the segment; the finding names it too.
    auto segment_named = [&](std::string_view message) {
      std::string file = BaseFileName(FileType::kWal, to_replay.back());
      for (std::uint64_t number : to_replay) {
        const std::string candidate = BaseFileName(FileType::kWal, number);
        if (message.find(candidate) != std::string_view::npos) file = candidate;
      }
      return file;
    };
    if (!status.ok()) {
      AddStatus(segment_named(status.message()), status);
    } else if (result.torn_tail) {
      const std::string file = segment_named(result.torn_tail_reason);
      Add(CheckSeverity::kNote, file, OffsetIn(result.torn_tail_reason),
          "the log ends here, before the end of the segment, in bytes never synced (a "
          "crash's torn tail, or an earlier lap's bytes): " +
              WithoutPath(result.torn_tail_reason, dir_ + "/" + file));
    }
  }

  // The value-log records the WAL's records name must read back, as the open reads them. The
  // first that does not ends the open's replay: a torn tail when no sync mark vouches for the
  // record naming it (a crash lost both), damage when one does (the open then fails).
  template <typename It>
  io::Task<void> CheckNamedValues(It begin, It end, const WalPosition& synced_end) {
    std::map<std::uint64_t, std::optional<std::uint64_t>> valid_end;  // nullopt: unreadable
    for (It it = begin; it != end; ++it) {
      const ValuePointer& p = it->pointer;
      if (!valid_end.contains(p.file_number)) {
        valid_end[p.file_number] = co_await VlogValidEnd(p.file_number);
      }
      const std::optional<std::uint64_t> file_end = valid_end[p.file_number];
      if (file_end && p.offset >= kVlogFileHeaderBytes && p.size <= *file_end &&
          p.offset <= *file_end - p.size) {
        continue;
      }
      const std::string vlog = BaseFileName(FileType::kVlog, p.file_number);
      const std::string wal = BaseFileName(FileType::kWal, it->at.log_number);
      const std::string what = "the WAL record at offset " + std::to_string(it->at.offset) +
                               " of " + wal + " names the value at offset " +
                               std::to_string(p.offset) + ", past the records that read back";
      if (it->at < synced_end) {
        Add(CheckSeverity::kError, vlog, file_end.value_or(0),
            what + " (" + (file_end ? "damaged" : "missing or unreadable") +
                "): a sync mark vouches for the record, so its value was synced");
      } else {
        Add(CheckSeverity::kNote, wal, it->at.offset,
            what +
                ": a crash's torn tail (no sync mark vouches for it); the open replays up to "
                "here");
      }
      co_return;
    }
  }

  // Where the decodable records of value log `number` end; nullopt when it cannot be read.
  io::Task<std::optional<std::uint64_t>> VlogValidEnd(std::uint64_t number) {
    auto file =
        co_await env_->NewRandomAccessFile(dir_ + "/" + BaseFileName(FileType::kVlog, number));
    if (!file.ok()) co_return std::nullopt;
    std::uint64_t end = 0;
    Status scanned = co_await ScanVlogRecords(
        *file.value(), number, [](const ValuePointer&, const VlogRecord&) { return Status::OK(); },
        &end);
    if (!scanned.ok()) co_return std::nullopt;
    co_return end;
  }

  io::Task<void> CheckVlog(const VlogFileMeta& meta) {
    ++report_.vlog_files;
    const std::string name = BaseFileName(FileType::kVlog, meta.number);
    listed_[FileType::kVlog].insert(meta.number);
    if (!present_[FileType::kVlog].contains(meta.number)) {
      Add(CheckSeverity::kError, name, std::nullopt,
          "missing: the manifest lists it as a live value log");
      co_return;
    }
    co_await Progress(name);
    auto file = co_await env_->NewRandomAccessFile(dir_ + "/" + name);
    if (!file.ok()) {
      AddStatus(name, file.status());
      co_return;
    }
    if (file.value()->size_bytes() < meta.size_bytes) {
      Add(CheckSeverity::kError, name, file.value()->size_bytes(),
          "shorter than the " + std::to_string(meta.size_bytes) +
              " bytes of records the manifest records (truncated)");
    }
    std::uint64_t valid_end = 0;
    std::uint64_t records = 0;
    Status status = co_await ScanVlogRecords(
        *file.value(), meta.number,
        [&](const ValuePointer&, const VlogRecord&) {
          ++records;
          return Status::OK();
        },
        &valid_end);
    report_.vlog_records += records;
    if (!status.ok()) {
      AddStatus(name, status);
    } else if (valid_end < meta.size_bytes) {
      // The scan stops at the first record that does not decode: before the recorded end,
      // that is damage (a changed byte, or a hole punched by a truncation and regrowth).
      Add(CheckSeverity::kError, name, valid_end,
          "the record here does not decode (checksum or framing), before the recorded end at " +
              std::to_string(meta.size_bytes));
    }
  }

  // Store files the manifest does not list: the next open removes them (or, for value logs
  // that replayed WAL records name, adopts them).
  void NoteUnlistedFiles() {
    for (FileType type : {FileType::kSst, FileType::kVlog}) {
      for (std::uint64_t number : present_[type]) {
        if (listed_[type].contains(number)) continue;
        Add(CheckSeverity::kNote, BaseFileName(type, number), std::nullopt,
            type == FileType::kVlog
                ? "not listed by the manifest (prepared for the next values, or left by a "
                  "crash): the next open adopts it if the WAL names it, else removes it"
                : "not listed by the manifest (left by a crash): removed at the next open");
      }
    }
    for (std::uint64_t number : present_[FileType::kManifest]) {
      if (number == manifest_number_) continue;
      Add(CheckSeverity::kNote, BaseFileName(FileType::kManifest, number), std::nullopt,
          "an older manifest CURRENT does not name: removed at the next open");
    }
  }

  Env* const env_;
  const std::string dir_;
  const CheckOptions options_;
  CheckReport report_;
  std::map<FileType, std::set<std::uint64_t>> present_;
  std::map<FileType, std::set<std::uint64_t>> listed_;
  std::uint64_t total_bytes_ = 0;
  std::uint64_t manifest_number_ = 0;
  std::uint64_t log_number_ = 0;
  Version version_;
};

}  // namespace

io::Task<Result<CheckReport>> CheckStoreFiles(Env* env, std::string dir, CheckOptions options) {
  Checker checker(env, std::move(dir), std::move(options));
  co_return co_await checker.Run();
}

}  // namespace cascadefs::engine
