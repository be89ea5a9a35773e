// io_totals.h: the bytes a store has written over its whole life, kept across opens in the
// file IOTOTALS (docs/formats/manifest.md, "IOTOTALS"), so `cascadefs inspect` can show write
// amplification for a store that is not open.
//
// A writable open reads the file (a missing or damaged one counts from zero); Close writes
// the sum of what it read and what this open wrote. A crash loses the crashed open's counts
// (they are statistics, not data: nothing depends on them).
//
// Thread safety: pure functions and a value type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/result.h"

namespace cascadefs::engine {

inline constexpr const char* kIoTotalsFileName = "IOTOTALS";

// Totals over every open that closed cleanly. Units: bytes.
struct IoTotals {
  std::uint64_t opens = 0;               // writable opens that closed and wrote the file
  std::uint64_t user_bytes_written = 0;  // write batches as users made them (DbStats)
  std::uint64_t wal_bytes_written = 0;
  std::uint64_t vlog_bytes_written = 0;
  std::uint64_t flush_bytes_written = 0;
  std::uint64_t compaction_bytes_written = 0;

  // Bytes written to disk per byte users wrote (0 before anything was written).
  double write_amplification() const;
  std::string Encode() const;
  static Result<IoTotals> Decode(std::string_view bytes);
};

// The store's totals: nullopt when the file is absent, Corruption when it does not decode.
io::Task<Result<std::optional<IoTotals>>> ReadIoTotals(Env* env, std::string dir);

// Replaces the file (a temporary file, synced, renamed over it, the directory synced).
io::Task<Status> WriteIoTotals(Env* env, std::string dir, IoTotals totals);

}  // namespace cascadefs::engine
