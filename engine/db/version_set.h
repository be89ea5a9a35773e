// version_set.h: which SST files make up the store, and the manifest that records it.
//
// A Version is an immutable list of live SST files per level. The VersionSet holds the
// current one and changes it only through LogAndApply: the VersionEdit is appended to the
// manifest and synced first, then the new Version is installed, so what readers see is
// always something a restart would reproduce. docs/formats/manifest.md has the file format;
// docs/engine.md the life cycle.
//
// Invariants:
//  1. Level 0 files are ordered newest first (file number descending); their key ranges may
//     overlap. Level >= 1 files are ordered by smallest key and never overlap.
//  2. Every file number handed out by NewFileNumber is below next_file_number(), also after a
//     restart (the manifest records next_file_number before any such file is referenced).
//  3. A Version never changes after it is installed; holders keep it alive by shared_ptr.
//
// Thread safety: current(), NewFileNumber() and the accessors may be called from any thread.
// Recover, Create, LogAndApply and Close must not run concurrently with each other (the DB
// runs one at a time: at Open, then from its flush and compaction tasks, which take turns
// through DBImpl::LogAndApplyExclusive).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "db/dbformat.h"
#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/status.h"
#include "manifest/version_edit.h"

namespace cascadefs::engine {

class ManifestWriter;

// A manifest larger than this is replaced by a new one holding only the current state.
inline constexpr std::uint64_t kManifestRollSizeBytes = 64 << 20;

struct Version {
  std::array<std::vector<std::shared_ptr<const FileMetaData>>, kNumLevels> files;
  // The live value-log files, by number.
  std::map<std::uint64_t, VlogFileMeta> vlogs;
  // One token per live value-log file, made when the file enters a Version and shared by every
  // later Version that lists it: once no Version holds it, no reader can meet the file through
  // a Version (the DB deletes a collected file only then).
  std::map<std::uint64_t, std::shared_ptr<const int>> vlog_pins;

  std::uint64_t TotalFiles() const;
  std::uint64_t TotalBytes() const;
};

class VersionSet {
 public:
  VersionSet(Env* env, std::string dir);
  ~VersionSet();

  // A new store: writes MANIFEST with the format version and an empty state, then CURRENT.
  io::Task<Status> Create();
  // Reads CURRENT and replays the manifest it names. NotSupported for a newer store format;
  // Corruption naming the file and offset for damage.
  io::Task<Status> Recover();
  // Appends `edit` (with next_file_number and last_sequence filled in) to the manifest,
  // syncs it, and installs the resulting Version. At the first call after Recover/Create (and
  // whenever the manifest passed kManifestRollSizeBytes) it starts a new manifest holding the
  // whole state and points CURRENT at it. On error nothing is installed.
  io::Task<Status> LogAndApply(VersionEdit* edit);
  io::Task<Status> Close();

  std::shared_ptr<const Version> current() const;
  std::uint64_t NewFileNumber() { return next_file_number_.fetch_add(1); }
  // Ensures later numbers are above `number` (a file found in the directory).
  void MarkFileNumberUsed(std::uint64_t number);
  std::uint64_t next_file_number() const { return next_file_number_.load(); }
  std::uint64_t log_number() const { return log_number_; }
  SequenceNumber last_sequence() const { return last_sequence_; }
  void set_last_sequence(SequenceNumber sequence) { last_sequence_ = sequence; }
  std::uint64_t manifest_number() const { return manifest_number_; }
  // Why the manifest read at Recover ended early (a torn last record), or empty.
  const std::string& torn_tail_reason() const { return torn_tail_reason_; }
  // Where the next compaction of each level starts (compaction.h): the largest key of the
  // level's last compaction, or empty. Set by edits carrying a compaction pointer, recovered
  // from the manifest and written into every new manifest's first edit.
  std::array<std::string, kNumLevels> compact_pointers() const;
  // Manifests made obsolete by a roll; the DB removes them.
  std::vector<std::uint64_t> TakeObsoleteManifests();

  // The state of `base` with `edit` applied. Corruption when the edit removes a file the
  // version lacks or adds one twice. (Public for fsck, which rebuilds a Version read-only.)
  static Status Apply(const Version& base, const VersionEdit& edit, Version* out);

 private:
  // A new manifest whose first edit holds `version` and the compaction pointers with those of
  // `edit` applied.
  io::Task<Status> StartNewManifest(const Version& version, const VersionEdit& edit);

  Env* const env_;
  const std::string dir_;
  std::atomic<std::uint64_t> next_file_number_{2};
  std::uint64_t log_number_ = 0;
  SequenceNumber last_sequence_ = 0;
  std::uint64_t manifest_number_ = 0;
  std::unique_ptr<ManifestWriter> manifest_;
  std::vector<std::uint64_t> obsolete_manifests_;
  std::string torn_tail_reason_;

  mutable std::mutex current_mutex_;
  std::shared_ptr<const Version> current_;                // GUARDED_BY(current_mutex_)
  std::array<std::string, kNumLevels> compact_pointers_;  // GUARDED_BY(current_mutex_)
};

}  // namespace cascadefs::engine
