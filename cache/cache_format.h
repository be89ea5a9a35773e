// cache_format.h: the byte layout of the chunk cache file (docs/formats/cache.md), its
// encoders, and the decoders that validate every byte read back.
//
// The cache file is `segment_count` segments of `segment_size_bytes` each. A segment starts
// with a 64-byte header (kSegmentHeaderBytes) and holds entries back to back after it; an
// entry never crosses a segment's end. Integers are little-endian fixed width (EncodeFixed32/64
// below); nothing is memcpy'd from a struct. Every header and entry carries an XXH3-64 checksum
// of all its other bytes, and every entry carries the sequence number of the segment write that
// holds it, so an entry left over from an earlier lap of the ring is recognised as stale.
//
// Decoders take (pointer, limit), never read past the limit, and return Status::Corruption for
// damaged bytes: stored bytes are never asserted on (STYLE.md, "Assertions").
//
// Thread safety: pure functions on caller-owned buffers.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/result.h"
#include "engine/status.h"

namespace cascadefs::cache {

static_assert(std::endian::native == std::endian::little,
              "the cache encoders copy integers as little-endian bytes");

// "CFSCACHE" read as a little-endian u64: the first 8 bytes of every written segment.
inline constexpr std::uint64_t kSegmentMagic = 0x4548434143534643ull;
// Format version of segments and entries. A reader treats any other version as a segment it
// cannot read (Open reformats the file; CheckCacheFile reports it).
inline constexpr std::uint32_t kFormatVersion = 1;
inline constexpr std::size_t kSegmentHeaderBytes = 64;

// "CFCE" as bytes: the first 4 bytes of every entry.
inline constexpr std::uint32_t kEntryMagic = 0x45434643u;
// magic(4) key_length(1) flags(1) reserved(2) value_length(4) reserved(4) sequence(8)
inline constexpr std::size_t kEntryHeaderBytes = 24;
inline constexpr std::size_t kEntryChecksumBytes = 8;
inline constexpr std::size_t kEntryOverheadBytes = kEntryHeaderBytes + kEntryChecksumBytes;
static_assert(kEntryHeaderBytes == 4 + 1 + 1 + 2 + 4 + 4 + 8);
static_assert(kSegmentHeaderBytes == 8 + 4 + 4 + 8 + 8 + 4 + 4 + 8 + 8 + 8);

// Keys are opaque, 1..kKeyMaxBytes bytes (the filesystem's chunk names are 17).
inline constexpr std::size_t kKeyMaxBytes = 32;

// Segment size bounds: at least 64 KiB (tests), at most 64 MiB (offsets and lengths stay well
// inside u32), a multiple of 4096 (page-aligned segment starts).
inline constexpr std::uint32_t kSegmentMinBytes = 64u << 10;
inline constexpr std::uint32_t kSegmentMaxBytes = 64u << 20;
static_assert(kSegmentMinBytes % 4096 == 0 && kSegmentMaxBytes % 4096 == 0);

inline void EncodeFixed32(char* dst, std::uint32_t value) { std::memcpy(dst, &value, 4); }
inline void EncodeFixed64(char* dst, std::uint64_t value) { std::memcpy(dst, &value, 8); }
inline std::uint32_t DecodeFixed32(const char* src) {
  std::uint32_t value;
  std::memcpy(&value, src, 4);
  return value;
}
inline std::uint64_t DecodeFixed64(const char* src) {
  std::uint64_t value;
  std::memcpy(&value, src, 8);
  return value;
}

// The fields of a segment header (docs/formats/cache.md, "Segment header").
struct SegmentHeader {
  std::uint64_t file_identity = 0;  // random, non-zero, the same in every segment of one file
  std::uint64_t sequence = 0;       // >= 1; grows by one with every segment write of the file
  std::uint32_t segment_size_bytes = 0;
  std::uint32_t segment_index = 0;   // position of this segment in the file
  std::uint64_t capacity_bytes = 0;  // file size: segment_size_bytes * segment count
};

// Writes the 64 header bytes to dst. REQUIRES: header.sequence >= 1, file_identity != 0.
void EncodeSegmentHeader(const SegmentHeader& header, char* dst);

// Decodes and validates the header in [data, data + size). NotFound when the bytes do not
// start with kSegmentMagic (a never-written segment: zeros); NotSupported for another format
// version; Corruption for a bad checksum or a field out of bounds.
Result<SegmentHeader> DecodeSegmentHeader(const char* data, std::size_t size);

// Total on-disk size of an entry with these lengths.
inline constexpr std::size_t EntryBytes(std::size_t key_bytes, std::size_t value_bytes) {
  return kEntryOverheadBytes + key_bytes + value_bytes;
}

// Appends one encoded entry to *dst. REQUIRES: 1 <= key.size() <= kKeyMaxBytes.
void EncodeEntry(std::string_view key, std::string_view value, std::uint64_t sequence,
                 std::string* dst);

// A decoded entry: views into the buffer it was decoded from.
struct EntryView {
  std::string_view key;
  std::string_view value;
  std::size_t entry_bytes = 0;  // EntryBytes(key.size(), value.size())
};

// How far an entry's bytes could be trusted (WalkSegment uses it to decide whether it can step
// over a damaged entry or must stop).
enum class EntryDamage : std::uint8_t {
  kNone,         // valid
  kEnd,          // no entry here: another magic or another segment sequence (stale bytes of
                 // an earlier lap, or zeros), or fewer than kEntryOverheadBytes bytes left
  kBadHeader,    // our magic and sequence, but a length or flag out of bounds: stop here
  kBadChecksum,  // plausible header, payload damaged: the entry can be stepped over
};

// Decodes the entry at [data, data + size) that must belong to the segment write `sequence`.
// On kNone fills *entry. Never reads past data + size.
EntryDamage DecodeEntry(const char* data, std::size_t size, std::uint64_t sequence,
                        EntryView* entry);

// One entry found by WalkSegment, or one damaged spot.
struct WalkedEntry {
  std::uint32_t offset = 0;  // from the segment start
  EntryView view;
};
struct WalkResult {
  std::uint32_t end_offset = 0;  // where the next entry would be appended
  std::uint32_t damaged_entries = 0;
  // Damaged entries in offset order: offset from the segment start and what was wrong.
  std::vector<std::pair<std::uint32_t, EntryDamage>> damaged;
  bool stopped_at_damage = false;  // a kBadHeader ended the walk; bytes after it are unread
};

// Walks the entries of one segment image [segment, segment + size) written as `sequence`:
// calls on_entry for every valid entry in offset order, steps over an entry with a bad
// checksum (counted), stops at the end of the entries or at a header it cannot trust.
// REQUIRES: size >= kSegmentHeaderBytes.
WalkResult WalkSegment(const char* segment, std::size_t size, std::uint64_t sequence,
                       const std::function<void(const WalkedEntry&)>& on_entry);

}  // namespace cascadefs::cache
