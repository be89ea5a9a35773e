// check.h: checking a store's files without opening the store (docs/fsck.md, "Engine files").
//
// CheckStoreFiles reads every file the store depends on and reports what is wrong with each,
// naming the file and, where known, the byte offset: CURRENT, every record of the manifest it
// names, each live SST (present, of the recorded size, every block's checksum, entries in
// order and inside the recorded key range, the recorded entry count, no overlap within a level
// >= 1), the WAL segments the next open replays (every record's checksum; a torn tail is a
// note, since unsynced writes may be cut), and each live value-log file (every record's
// checksum, up to its recorded end). Files the store does not list are notes: the next open
// removes them. It writes nothing, and takes no lock: the caller holds the store's LOCK
// (Env::LockFile) so that no writer changes the files meanwhile.
//
// Thread safety: one call per store at a time; the progress callback runs on the calling task.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/result.h"

namespace cascadefs::engine {

enum class CheckSeverity : std::uint8_t {
  kError,    // damage: data a reader needs is wrong or missing
  kNote,     // harmless (a torn WAL tail, a file the next open removes), reported for the record
  kWarning,  // damage an earlier repair recorded (a file's lost bytes): known, nothing to fix
};

struct CheckFinding {
  CheckSeverity severity = CheckSeverity::kError;
  std::string file;                     // the file's name in the store directory
  std::optional<std::uint64_t> offset;  // the byte offset of the damage, when known
  std::string problem;                  // what is wrong, one line
};

struct CheckProgress {
  std::string file;               // the file being checked
  std::uint64_t done_bytes = 0;   // bytes of all files checked so far
  std::uint64_t total_bytes = 0;  // bytes of all files to check
};

struct CheckOptions {
  // Called once per file before it is checked; may be empty.
  std::function<void(const CheckProgress&)> progress;
};

struct CheckReport {
  std::vector<CheckFinding> findings;
  std::uint64_t files_checked = 0;
  std::uint64_t bytes_checked = 0;
  std::uint64_t sst_files = 0;
  std::uint64_t sst_entries = 0;  // entries read from live SSTs
  std::uint64_t wal_records = 0;  // records read from the WAL segments still to be replayed
  std::uint64_t vlog_files = 0;
  std::uint64_t vlog_records = 0;  // records read from live value-log files
  std::uint64_t errors() const;
};

// Checks the store in `dir` (see the file comment). An error Status only when the check could
// not run at all (the directory cannot be listed); everything found is in the report.
io::Task<Result<CheckReport>> CheckStoreFiles(Env* env, std::string dir, CheckOptions options);

}  // namespace cascadefs::engine
