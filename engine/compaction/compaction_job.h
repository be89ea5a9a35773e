// compaction_job.h: runs one picked Compaction: merges its input files into new SSTs of the
// output level and describes the result as a VersionEdit (docs/engine.md, "Compaction").
//
// Design. The inputs' table iterators are merged into one stream of internal keys, newest
// version of each user key first. The live snapshots s1 < s2 < ... < sn cut the sequence
// numbers into stripes: (0, s1], (s1, s2], ..., (sn, newest]; every reader (a snapshot, or
// the newest state) sees the newest version of a key within one stripe or below. Per entry:
//  - an entry in the same stripe as the newer version of its user key just before it is
//    dropped: every reader that could see it sees that newer version instead (RocksDB's
//    rule; LevelDB's compares with s1 only and keeps more);
//  - a deletion marker in the first stripe (at or below s1, or any marker when no snapshot
//    is held) is dropped when no level below the output can hold the key
//    (Compaction::IsBaseLevelForKey): nothing is left for it to hide;
//  - everything else is written. Outputs are cut at target_file_size_bytes and where an
//    output would overlap too much of the grandparents, but only between two user keys
//    (compaction.h invariant 1).
// A dropped entry holding a value pointer makes its value-log record garbage: the job counts
// it per file, and the edit carries the counts (VersionEdit::AddVlogGarbage).
// The job works in bounded steps: after each SST write-out (at most kPendingWriteBytesMax) or
// kCompactionStepEntriesMax entries it yields to other tasks (foreground first), sleeps when
// ahead of the rate limit, and stops with Cancelled when the store is closing.
//
// Crash safety: every output is synced and closed, then the directory is synced, before Run
// returns the edit; the caller logs the edit to the manifest, and only after that removes the
// inputs. Until the edit is durable the outputs are unreferenced (a crash leaves them as
// orphans that Open removes); on error Run removes the outputs it made.
//
// Thread safety: one task runs a job; the job only reads the input files.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compaction/compaction.h"
#include "db/table_cache.h"
#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/status.h"
#include "manifest/version_edit.h"
#include "sst/format.h"

namespace cascadefs::engine {

// Entries merged between two yields when no output is written (everything dropped).
inline constexpr std::uint64_t kCompactionStepEntriesMax = 4096;
// The longest single sleep of the rate limiter; it re-checks for shutdown after each.
inline constexpr std::uint64_t kCompactionSleepMaxMicros = 100'000;

struct CompactionJobContext {
  Env* env = nullptr;
  std::string dir;
  TableCache* table_cache = nullptr;
  TableOptions table_options;
  VersionSet* versions = nullptr;  // for file numbers
  // The sequences of the live snapshots, ascending (duplicates allowed). Snapshots taken
  // after the job started see every input entry, so they need nothing more.
  std::vector<SequenceNumber> snapshots;
  std::uint64_t target_file_size_bytes = 0;
  std::uint32_t rate_limit_mb_per_sec = 0;  // 0: unlimited
  const std::atomic<bool>* shutting_down = nullptr;
};

struct CompactionJobResult {
  std::vector<FileMetaData> outputs;  // in key order
  std::uint64_t bytes_read = 0;       // input file sizes
  std::uint64_t bytes_written = 0;    // output file sizes
  std::uint64_t entries_dropped = 0;
  // Value-log records whose pointers the job dropped, per file: garbage (docs/formats/vlog.md).
  std::map<std::uint64_t, VlogGarbage> vlog_garbage;
};

// Merges `compaction`'s inputs into new SSTs. On OK, `edit` removes the inputs, adds the
// outputs at the output level and moves the level's compaction pointer, and every output is
// durable (file and directory synced). On error nothing it wrote is left behind (best
// effort: a failed removal leaves an orphan for the next Open) and `edit` is untouched.
// Cancelled when ctx.shutting_down became true.
io::Task<Status> RunCompactionJob(Compaction* compaction, const CompactionJobContext& ctx,
                                  VersionEdit* edit, CompactionJobResult* result);

}  // namespace cascadefs::engine
