// repair.h: repairing a store's own files without opening the store (docs/fsck.md,
// "Repairing the engine's files").
//
// RepairStoreFiles first checks the store (CheckStoreFiles, engine/check.h). A store with no
// error is left exactly as it is and the report is empty. Otherwise it rebuilds what the
// damage broke, keeping every entry that still reads intact and guessing nothing:
//  - each SST's intact data blocks are kept (found through the index, or by their own framing
//    when the footer or index is damaged); damaged blocks are dropped and counted;
//  - the WAL segments still to replay are read in salvage mode (a damaged synced record is
//    skipped, later intact ones kept) and their records written to a table, so the WAL starts
//    empty;
//  - a value pointer whose record is damaged or missing becomes a deletion marker at the same
//    sequence (the key reads as missing, never as an older value); intact records of a damaged
//    value log are copied to a new value log and their pointers rewritten;
//  - a new manifest describes the result (the old manifest's levels when one reads intact;
//    else every table goes to the bottom level, those whose key ranges overlap merged into one
//    run), CURRENT is switched to it atomically, and every file replaced is moved into
//    DIR/lost/ (hard-linked there before the switch), never deleted.
// Afterwards CheckStoreFiles finds no error and DB::Open opens the store. A key whose newest
// version lay in a dropped SST block or WAL record reads as its previous version (or missing):
// a deletion lost that way brings the value it had deleted back (docs/fsck.md).
//
// The caller holds the store's LOCK (Env::LockFile) so that nothing else changes the files.
// Thread safety: one call per store at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/result.h"

namespace cascadefs::engine {

struct RepairAction {
  std::string file;                     // the store file acted on (its name in the directory)
  std::optional<std::uint64_t> offset;  // the byte offset of the damage, when known
  std::string action;                   // what was found and done, one line
};

struct RepairReport {
  std::vector<RepairAction> actions;      // empty when the store had no error
  std::uint64_t errors_found = 0;         // errors CheckStoreFiles reported before the repair
  std::uint64_t errors_left = 0;          // errors it reports after (0 unless the repair failed)
  bool manifest_rebuilt = false;          // a new manifest was written and made current
  std::uint64_t sst_blocks_dropped = 0;   // damaged SST data blocks (or unreadable regions)
  std::uint64_t sst_entries_dropped = 0;  // entries lost with them (against the manifest's count)
  std::uint64_t sst_entries_kept = 0;     // entries written to the rebuilt tables
  std::uint64_t wal_records_kept = 0;     // WAL records written to a table
  std::uint64_t wal_records_dropped = 0;  // damaged WAL records skipped
  std::uint64_t pointers_lost = 0;        // keys whose value-log record is damaged or gone
  std::uint64_t hidden_pointers_dropped = 0;  // the same for versions a newer one hides
  std::uint64_t vlog_records_moved = 0;       // intact records copied out of a damaged value log
  std::uint64_t files_missing = 0;            // files the manifest names that are not there
  std::uint64_t files_moved_to_lost = 0;      // originals moved into DIR/lost/
};

struct RepairOptions {
  // Target size of the tables repair writes (it cuts only between user keys).
  std::uint64_t target_file_size_bytes = 64 << 20;
};

// The directory, below the store, that receives every file repair replaces.
inline constexpr const char* kLostDirName = "lost";

// Repairs the store in `dir` (see the file comment). An error Status only when the repair
// could not run or could not complete a step (an I/O error, no space): the store is then as
// it was before the manifest switch, or fully switched; files already written are left for
// the next open to remove. Everything found and done is in the report.
io::Task<Result<RepairReport>> RepairStoreFiles(Env* env, std::string dir, RepairOptions options);

}  // namespace cascadefs::engine
