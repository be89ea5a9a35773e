// wal_reader.h: replaying WAL segments at Open.
//
// Recovery rule (docs/formats/wal.md, "Recovery"): segments are read in log-number order and
// their records handed to the caller. The first fragment that is not valid (bad checksum,
// impossible length, unknown type, a log number of an earlier lap of the ring, zeros, a
// fragment out of sequence, the end of the file) at position D ends the log. It is the torn
// tail of unsynced writes, and replay stops cleanly there, unless a valid sync mark further
// on (in this or a later segment) says a position beyond D was durable: then the bytes at D
// had been synced and were damaged afterwards, and replay fails with Corruption naming the
// segment and offset.
//
// Memory: segments are read in chunks of kWalReadChunkBytes; one record being assembled is
// bounded by kWalRecordSizeMax.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/status.h"
#include "wal/log_format.h"

namespace cascadefs::engine {

inline constexpr std::size_t kWalReadChunkBytes = 1 << 20;
static_assert(kWalReadChunkBytes % kWalBlockSizeBytes == 0, "chunks hold whole blocks");

struct WalReplayResult {
  std::uint64_t records = 0;
  WalPosition end;               // just after the last record replayed
  bool torn_tail = false;        // replay stopped at unsynced damaged bytes or a cut record
  std::string torn_tail_reason;  // where replay stopped (set also at a plain end), and why
  // The furthest position a valid sync mark read during the replay vouches for: every record
  // starting before it had been synced (so had every value-log record it names: a sync write
  // syncs the value log first). {0, 0} when no sync mark was read.
  WalPosition synced_end;
};

using WalRecordCallback = std::function<Status(std::string_view record, const WalPosition& at)>;

// Salvage mode, for repair (engine/repair.h) only: where the recovery rule would fail with
// Corruption (damage a later sync mark shows had been synced), the damaged record is skipped
// instead, noted here, and the replay resynchronizes at the next 32 KiB block: fragments that
// continue the skipped record (kMiddle, kLast without a kFirst) are skipped too, and the next
// kFull or kFirst starts a record again. The torn-tail rule is unchanged: damage no later
// sync mark vouches for still ends the log, so what salvage keeps beyond a skip is synced.
struct WalSkippedRecord {
  WalPosition at;      // where the damaged fragment (or the cut record) starts
  std::string reason;  // "<segment path>: WAL record at offset N: <what>"
};
struct WalSalvage {
  std::vector<WalSkippedRecord> skipped;
};

// Replays the segments `log_numbers` (ascending) of `dir`. An error from `on_record` stops
// the replay and is returned. With `salvage` set, synced damage is skipped and noted there
// instead of being Corruption (WalSalvage).
io::Task<Status> ReplayWal(Env* env, const std::string& dir,
                           const std::vector<std::uint64_t>& log_numbers,
                           const WalRecordCallback& on_record, WalReplayResult* result,
                           WalSalvage* salvage = nullptr);

// Where a block's bytes come from: a segment file, or memory (the fuzz target). Returns the
// bytes of block `block_index` of segment `segment_index` (fewer than a block at the end of
// the data, empty past it).
class WalBlockSource {
 public:
  virtual ~WalBlockSource() = default;
  virtual std::size_t segment_count() const = 0;
  virtual std::uint64_t log_number(std::size_t segment_index) const = 0;
  virtual std::string segment_name(std::size_t segment_index) const = 0;
  virtual io::Task<Result<std::string_view>> ReadBlock(std::size_t segment_index,
                                                       std::uint64_t block_index) = 0;
};

// The replay state machine over any block source (ReplayWal uses it over files).
io::Task<Status> ReplayBlocks(WalBlockSource* source, const WalRecordCallback& on_record,
                              WalReplayResult* result, WalSalvage* salvage = nullptr);

}  // namespace cascadefs::engine
