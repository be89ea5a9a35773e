// inspect.h: what a store holds, from its manifest and directory, without opening it
// (`cascadefs inspect`, docs/fsck.md "inspect").
//
// Reads CURRENT and the manifest it names, and sizes the files in the directory; writes
// nothing and takes no lock, so it may run beside a mount (a manifest rolled meanwhile is a
// NotFound: run it again).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/result.h"

namespace cascadefs::engine {

struct LevelSummary {
  int level = 0;
  std::uint64_t files = 0;
  std::uint64_t bytes = 0;
  std::uint64_t entries = 0;  // values, deletions and pointers, as the manifest counts them
};

struct VlogFileSummary {
  std::uint64_t number = 0;
  std::uint64_t size_bytes = 0;  // the end of its records when last recorded
  std::uint64_t records = 0;
  std::uint64_t value_bytes = 0;
  std::uint64_t garbage_records = 0;
  std::uint64_t garbage_bytes = 0;  // records no live pointer names any more
  double garbage_ratio() const;     // garbage_bytes / value_bytes (0 when empty)
};

struct StoreSummary {
  std::uint32_t format_version = 0;
  std::uint64_t manifest_number = 0;
  std::uint64_t manifest_bytes = 0;
  std::uint64_t last_sequence = 0;   // as of the manifest's last edit
  std::vector<LevelSummary> levels;  // every level, empty ones included
  std::vector<VlogFileSummary> vlogs;
  // Bytes on disk by kind, from the directory.
  std::uint64_t sst_bytes = 0;
  std::uint64_t vlog_bytes = 0;
  std::uint64_t wal_bytes = 0;
  std::uint64_t other_bytes = 0;  // manifests, CURRENT, LOCK, the daemon's log and the rest
  std::uint64_t total_bytes() const { return sst_bytes + vlog_bytes + wal_bytes + other_bytes; }
  // Write amplification over the store's life (the IOTOTALS file, written by each clean
  // close of a writable open; a crashed open's bytes are not in it). Unknown before the
  // first clean close.
  bool io_totals_known = false;
  std::uint64_t opens = 0;
  std::uint64_t user_bytes_written = 0;  // what users wrote
  std::uint64_t disk_bytes_written = 0;  // WAL, value log, flushes and compactions
  double write_amplification = 0;        // disk_bytes_written / user_bytes_written
};

io::Task<Result<StoreSummary>> SummarizeStore(Env* env, std::string dir);

}  // namespace cascadefs::engine
