// vlog_format.h: the byte layout of value-log files and of the pointers to their records
// (docs/formats/vlog.md). Pure encoders and checking decoders; no I/O.
//
// The value log is being built (issue 7): these functions are its format and are tested and
// fuzzed now; the writer, the reader and the engine's use of them come next. Every decoder
// checks lengths before reading and reports damage as Corruption, never reading out of
// bounds; every encoding is canonical (a successful decode re-encodes to the same bytes).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engine/options.h"
#include "engine/result.h"
#include "engine/status.h"

namespace cascadefs::engine {

inline constexpr std::uint32_t kVlogFormatVersion = 1;
inline constexpr std::size_t kVlogFileHeaderBytes = 32;
inline constexpr std::size_t kVlogFooterBytes = 32;
// A record: key length u32, stored value length u32, compression u8, key, value, checksum u32.
inline constexpr std::size_t kVlogRecordOverheadBytes = 4 + 4 + 1 + 4;
// Bounds a decoder enforces (a larger length is damage): the engine's own key and value
// bounds (options.h), since a record holds one entry of a write.
inline constexpr std::uint32_t kVlogKeyBytesMax = kKeySizeMax;
inline constexpr std::uint32_t kVlogValueBytesMax = kValueSizeMax;

// How a record's value is stored.
enum class VlogCompression : std::uint8_t { kNone = 0, kZstd = 1 };

struct VlogFileHeader {
  std::uint64_t file_number = 0;
  std::uint64_t created_ns = 0;  // ns since the epoch; for inspect only
};
std::string EncodeVlogFileHeader(const VlogFileHeader& header);
// Corruption for a wrong magic or checksum, NotSupported for a newer format version.
Result<VlogFileHeader> DecodeVlogFileHeader(std::string_view bytes);

struct VlogRecord {
  std::string_view key;
  std::string_view value;  // as stored (compressed when `compression` says so)
  VlogCompression compression = VlogCompression::kNone;
};
// Appends the record to *out; returns its checksum (the pointer keeps a copy).
std::uint32_t AppendVlogRecord(const VlogRecord& record, std::string* out);
// Decodes the record that `bytes` holds exactly (a pointer names its size). The views point
// into `bytes`. Corruption: sizes that disagree with `bytes`, an unknown compression, a
// checksum mismatch, or a checksum other than `expected_checksum` when one is given.
Result<VlogRecord> DecodeVlogRecord(std::string_view bytes,
                                    const std::uint32_t* expected_checksum = nullptr);

struct VlogFooter {
  std::uint64_t records = 0;
  std::uint64_t value_bytes = 0;  // stored value bytes of all records
};
std::string EncodeVlogFooter(const VlogFooter& footer);
Result<VlogFooter> DecodeVlogFooter(std::string_view bytes);

// What the LSM keeps for a separated value: which record of which file.
struct ValuePointer {
  std::uint64_t file_number = 0;
  std::uint64_t offset = 0;    // of the record in the file
  std::uint32_t size = 0;      // of the whole record
  std::uint32_t checksum = 0;  // the record's checksum
  bool operator==(const ValuePointer&) const = default;
};
std::string EncodeValuePointer(const ValuePointer& pointer);
// Decodes exactly `bytes`: trailing bytes, a truncated varint or a record size below the
// overhead are Corruption.
Result<ValuePointer> DecodeValuePointer(std::string_view bytes);

}  // namespace cascadefs::engine
