// version_set.cc: recovery from the manifest and LogAndApply (version_set.h).
#include "db/version_set.h"

#include <algorithm>
#include <utility>

#include "manifest/current_file.h"
#include "manifest/filename.h"
#include "manifest/manifest_log.h"

namespace cascadefs::engine {

std::uint64_t Version::TotalFiles() const {
  std::uint64_t count = 0;
  for (const auto& level : files) count += level.size();
  return count;
}

std::uint64_t Version::TotalBytes() const {
  std::uint64_t bytes = 0;
  for (const auto& level : files) {
    for (const auto& file : level) bytes += file->file_size_bytes;
  }
  return bytes;
}

VersionSet::VersionSet(Env* env, std::string dir)
    : env_(env), dir_(std::move(dir)), current_(std::make_shared<Version>()) {}

VersionSet::~VersionSet() = default;

std::shared_ptr<const Version> VersionSet::current() const {
  std::lock_guard guard(current_mutex_);
  return current_;
}

void VersionSet::MarkFileNumberUsed(std::uint64_t number) {
  std::uint64_t next = next_file_number_.load();
  while (next <= number && !next_file_number_.compare_exchange_weak(next, number + 1)) {
  }
}

std::array<std::string, kNumLevels> VersionSet::compact_pointers() const {
  std::lock_guard guard(current_mutex_);
  return compact_pointers_;
}

std::vector<std::uint64_t> VersionSet::TakeObsoleteManifests() {
  return std::exchange(obsolete_manifests_, {});
}

Status VersionSet::Apply(const Version& base, const VersionEdit& edit, Version* out) {
  *out = base;
  // Files the edit removes, by number: one it adds again (a trivial move to another level)
  // keeps its FileMetaData object, so every Version listing the file, before and after the
  // move, shares one object, and the DB's weak reference to it (db_impl.h, invariant 7)
  // expires only when none of them lists the file any more.
  std::map<std::uint64_t, std::shared_ptr<const FileMetaData>> removed_files;
  for (const auto& [level, number] : edit.removed_files()) {
    if (level < 0 || level >= kNumLevels) {
      return Status::Corruption("manifest edit removes a file from level " + std::to_string(level));
    }
    auto& files = out->files[static_cast<std::size_t>(level)];
    // A copy: clang 14 cannot capture a structured binding.
    const std::uint64_t removed = number;
    auto it = std::find_if(files.begin(), files.end(),
                           [removed](const auto& file) { return file->number == removed; });
    if (it == files.end()) {
      return Status::Corruption("manifest edit removes file " + std::to_string(number) +
                                " which level " + std::to_string(level) + " lacks");
    }
    removed_files[number] = *it;
    files.erase(it);
  }
  for (const auto& [level, meta] : edit.added_files()) {
    if (level < 0 || level >= kNumLevels) {
      return Status::Corruption("manifest edit adds a file to level " + std::to_string(level));
    }
    for (const auto& files : out->files) {
      for (const auto& file : files) {
        if (file->number == meta.number) {
          return Status::Corruption("manifest edit adds file " + std::to_string(meta.number) +
                                    " twice");
        }
      }
    }
    auto moved = removed_files.find(meta.number);
    out->files[static_cast<std::size_t>(level)].push_back(
        moved != removed_files.end() && *moved->second == meta
            ? moved->second
            : std::make_shared<const FileMetaData>(meta));
  }
  for (const std::uint64_t number : edit.removed_vlogs()) {
    if (out->vlogs.erase(number) == 0) {
      return Status::Corruption("manifest edit removes value log " + std::to_string(number) +
                                " which the store lacks");
    }
    out->vlog_pins.erase(number);
  }
  for (const auto& [number, meta] : edit.added_vlogs()) {
    if (!out->vlog_pins.contains(number)) out->vlog_pins[number] = std::make_shared<const int>(0);
    VlogFileMeta& file = out->vlogs[number];
    const VlogGarbage kept{file.garbage_records, file.garbage_bytes};
    file = meta;
    file.garbage_records = kept.records;
    file.garbage_bytes = kept.bytes;
  }
  for (const auto& [number, garbage] : edit.vlog_garbage()) {
    // Garbage found in a file already removed (a compaction that ran beside its GC) counts
    // for nothing.
    auto it = out->vlogs.find(number);
    if (it == out->vlogs.end()) continue;
    it->second.garbage_records += garbage.records;
    it->second.garbage_bytes += garbage.bytes;
  }
  // Invariant 1: level 0 newest first; deeper levels by smallest key.
  auto& level0 = out->files[0];
  std::sort(level0.begin(), level0.end(),
            [](const auto& a, const auto& b) { return a->number > b->number; });
  for (std::size_t level = 1; level < out->files.size(); ++level) {
    auto& files = out->files[level];
    std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
      return CompareInternalKeys(a->smallest, b->smallest) < 0;
    });
  }
  return Status::OK();
}

io::Task<Status> VersionSet::Create() {
  manifest_number_ = 0;
  log_number_ = 0;
  last_sequence_ = 0;
  next_file_number_.store(1);
  {
    std::lock_guard guard(current_mutex_);
    current_ = std::make_shared<Version>();
  }
  // The first LogAndApply writes MANIFEST and CURRENT.
  VersionEdit edit;
  co_return co_await LogAndApply(&edit);
}

io::Task<Status> VersionSet::Recover() {
  Result<std::uint64_t> manifest_number = co_await ReadCurrentFile(env_, dir_);
  if (!manifest_number.ok()) co_return manifest_number.status();
  const std::string path = ManifestFileName(dir_, manifest_number.value());

  Version version;
  bool have_log_number = false;
  bool have_next_file = false;
  bool have_last_sequence = false;
  std::uint64_t log_number = 0;
  std::uint64_t next_file = 0;
  SequenceNumber last_sequence = 0;
  std::array<std::string, kNumLevels> compact_pointers;
  auto on_edit = [&](const VersionEdit& edit, std::uint64_t /*offset*/) -> Status {
    Version next;
    CFS_RETURN_IF_ERROR(Apply(version, edit, &next));
    version = std::move(next);
    for (const auto& [level, key] : edit.compact_pointers()) {
      compact_pointers[static_cast<std::size_t>(level)] = key;
    }
    if (edit.has_log_number()) {
      log_number = edit.log_number();
      have_log_number = true;
    }
    if (edit.has_next_file_number()) {
      next_file = edit.next_file_number();
      have_next_file = true;
    }
    if (edit.has_last_sequence()) {
      last_sequence = edit.last_sequence();
      have_last_sequence = true;
    }
    return Status::OK();
  };
  // Checks the format version (NotSupported when newer) and the framing of every record.
  auto summary = co_await ReadManifest(env_, path, on_edit);
  if (!summary.ok()) co_return summary.status();
  if (summary.value().torn_tail()) {
    // Every edit is synced before it takes effect, so a torn last record was never in
    // effect. The manifest is not appended to again (Open starts a new one).
    torn_tail_reason_ = summary.value().torn_tail_reason;
  }
  if (!have_log_number || !have_next_file || !have_last_sequence) {
    co_return Status::Corruption(path +
                                 ": manifest lacks the log number, next file number "
                                 "or last sequence");
  }
  manifest_number_ = manifest_number.value();
  log_number_ = log_number;
  last_sequence_ = last_sequence;
  next_file_number_.store(next_file);
  MarkFileNumberUsed(manifest_number_);
  for (const auto& files : version.files) {
    for (const auto& file : files) MarkFileNumberUsed(file->number);
  }
  for (const auto& [number, vlog] : version.vlogs) MarkFileNumberUsed(number);
  {
    std::lock_guard guard(current_mutex_);
    current_ = std::make_shared<const Version>(std::move(version));
    compact_pointers_ = std::move(compact_pointers);
  }
  co_return Status::OK();
}

io::Task<Status> VersionSet::StartNewManifest(const Version& version, const VersionEdit& edit) {
  const std::uint64_t number = NewFileNumber();
  const std::string path = ManifestFileName(dir_, number);
  auto file = co_await env_->NewWritableFile(path, WriteMode::kCreateTruncate);
  if (!file.ok()) co_return file.status();
  auto writer = std::make_unique<ManifestWriter>(std::move(file).value());
  // The whole state as one edit: a reader needs nothing older.
  VersionEdit snapshot;
  snapshot.SetFormatVersion(kStoreFormatVersion);
  snapshot.SetLogNumber(log_number_);
  snapshot.SetNextFileNumber(next_file_number_.load());
  snapshot.SetLastSequence(last_sequence_);
  for (std::size_t level = 0; level < version.files.size(); ++level) {
    for (const auto& file_meta : version.files[level]) {
      snapshot.AddFile(static_cast<int>(level), *file_meta);
    }
  }
  for (const auto& [number, vlog] : version.vlogs) {
    snapshot.AddVlog(vlog);
    if (vlog.garbage_records > 0 || vlog.garbage_bytes > 0) {
      snapshot.AddVlogGarbage(number, vlog.garbage_records, vlog.garbage_bytes);
    }
  }
  // The pointers as they will be once `edit` (which gets no record of its own) is applied.
  std::array<std::string, kNumLevels> pointers = compact_pointers();
  for (const auto& [level, key] : edit.compact_pointers()) {
    pointers[static_cast<std::size_t>(level)] = key;
  }
  for (std::size_t level = 0; level < pointers.size(); ++level) {
    if (!pointers[level].empty())
      snapshot.SetCompactPointer(static_cast<int>(level), pointers[level]);
  }
  std::string record;
  snapshot.EncodeTo(&record);
  Status status = co_await writer->AddRecord(record);
  if (status.ok()) status = co_await writer->Sync();
  if (status.ok()) status = co_await SetCurrentFile(env_, dir_, number);
  if (!status.ok()) {
    (void)co_await writer->Close();
    (void)co_await env_->RemoveFile(path);
    co_return status;
  }
  if (manifest_) {
    (void)co_await manifest_->Close();
    obsolete_manifests_.push_back(manifest_number_);
  }
  manifest_ = std::move(writer);
  manifest_number_ = number;
  co_return Status::OK();
}

io::Task<Status> VersionSet::LogAndApply(VersionEdit* edit) {
  Version next;
  {
    std::shared_ptr<const Version> base = current();
    CFS_CO_RETURN_IF_ERROR(Apply(*base, *edit, &next));
  }
  if (edit->has_log_number()) {
    CFS_ASSERT(edit->log_number() >= log_number_);
  }
  if (edit->has_last_sequence()) {
    CFS_ASSERT(edit->last_sequence() >= last_sequence_);
  }
  const std::uint64_t previous_log_number = log_number_;
  const SequenceNumber previous_last_sequence = last_sequence_;
  if (edit->has_log_number()) log_number_ = edit->log_number();
  if (edit->has_last_sequence()) last_sequence_ = edit->last_sequence();

  Status status;
  if (!manifest_ || manifest_->size_bytes() >= kManifestRollSizeBytes) {
    // The new manifest's first record already holds `next`, so the edit needs no record.
    status = co_await StartNewManifest(next, *edit);
  } else {
    edit->SetNextFileNumber(next_file_number_.load());
    edit->SetLastSequence(last_sequence_);
    std::string record;
    edit->EncodeTo(&record);
    status = co_await manifest_->AddRecord(record);
    if (status.ok()) status = co_await manifest_->Sync();
  }
  if (!status.ok()) {
    log_number_ = previous_log_number;
    last_sequence_ = previous_last_sequence;
    co_return status;
  }
  std::lock_guard guard(current_mutex_);
  current_ = std::make_shared<const Version>(std::move(next));
  for (const auto& [level, key] : edit->compact_pointers()) {
    compact_pointers_[static_cast<std::size_t>(level)] = key;
  }
  co_return Status::OK();
}

io::Task<Status> VersionSet::Close() {
  if (!manifest_) co_return Status::OK();
  Status status = co_await manifest_->Close();
  manifest_.reset();
  co_return status;
}

}  // namespace cascadefs::engine
