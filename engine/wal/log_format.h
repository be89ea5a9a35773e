// log_format.h: constants of the WAL segment format. docs/formats/wal.md is the full page.
//
// A segment is a fixed-size file of kBlockSizeBytes blocks. Fragments never cross a block;
// a block tail shorter than a header is padding. Fragment header (kHeaderBytes, little-endian):
//   checksum u32 | length u16 | type u8 | log_number u32 | payload (length bytes)
// checksum = Checksum32(type | log_number | payload, seed kChecksumSeed) over those 5 + length
// bytes as they lie in the file (type and log_number are contiguous at header offset 6).
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/options.h"

namespace cascadefs::engine {

inline constexpr std::size_t kWalBlockSizeBytes = 32 << 10;
inline constexpr std::size_t kWalHeaderBytes = 4 + 2 + 1 + 4;
static_assert(kWalHeaderBytes == 11, "header = checksum + length + type + log number");
inline constexpr std::uint64_t kWalChecksumSeed = 0x43415343574c3031ull;  // "CASCWL01"
// A logical record (a WriteBatch encoding) is at most this large; checked before a replay
// buffer grows.
inline constexpr std::size_t kWalRecordSizeMax = kWriteBatchSizeMax + 4096;
// Payload of a sync mark: the durable position, log number u64 | offset u64.
inline constexpr std::size_t kSyncMarkPayloadBytes = 16;

// Stored in every fragment: never renumber. 0 is never written (a zeroed header is invalid).
enum class WalFragmentType : std::uint8_t {
  kFull = 1,        // a whole record
  kFirst = 2,       // the first fragment of a record
  kMiddle = 3,      // neither first nor last
  kLast = 4,        // the last fragment of a record
  kSyncMark = 5,    // everything before the position in the payload is durable
  kSegmentEnd = 6,  // no more fragments in this segment: the log continues in the next
  kPadding = 7,     // no payload meaning: fills a block tail of exactly one header
};
inline constexpr std::uint8_t kWalFragmentTypeMax = 7;

// A place in the log: segments in log-number order, then bytes within the segment.
struct WalPosition {
  std::uint64_t log_number = 0;
  std::uint64_t offset = 0;
  auto operator<=>(const WalPosition&) const = default;
};

// "<dir>/NNNNNN.wal": the decimal log number, zero-padded to at least 6 digits.
std::string WalSegmentPath(const std::string& dir, std::uint64_t log_number);

}  // namespace cascadefs::engine
