// cache_format.cc: encoders and validating decoders of the cache file (docs/formats/cache.md).
#include "cache_format.h"

#include <xxhash.h>

#include "engine/assert.h"

namespace cascadefs::cache {

namespace {

constexpr std::size_t kHeaderChecksumOffset = 56;

std::uint64_t Checksum(const char* data, std::size_t size) { return XXH3_64bits(data, size); }

}  // namespace

void EncodeSegmentHeader(const SegmentHeader& header, char* dst) {
  CFS_ASSERT(header.sequence >= 1);
  CFS_ASSERT(header.file_identity != 0);
  std::memset(dst, 0, kSegmentHeaderBytes);
  EncodeFixed64(dst + 0, kSegmentMagic);
  EncodeFixed32(dst + 8, kFormatVersion);
  EncodeFixed32(dst + 12, static_cast<std::uint32_t>(kSegmentHeaderBytes));
  EncodeFixed64(dst + 16, header.file_identity);
  EncodeFixed64(dst + 24, header.sequence);
  EncodeFixed32(dst + 32, header.segment_size_bytes);
  EncodeFixed32(dst + 36, header.segment_index);
  EncodeFixed64(dst + 40, header.capacity_bytes);
  // Bytes 48..55 are reserved and stay zero.
  EncodeFixed64(dst + kHeaderChecksumOffset, Checksum(dst, kHeaderChecksumOffset));
}

Result<SegmentHeader> DecodeSegmentHeader(const char* data, std::size_t size) {
  if (size < kSegmentHeaderBytes) return Status::Corruption("segment header truncated");
  if (DecodeFixed64(data) != kSegmentMagic) return Status::NotFound("no segment header");
  if (DecodeFixed64(data + kHeaderChecksumOffset) != Checksum(data, kHeaderChecksumOffset)) {
    return Status::Corruption("segment header checksum mismatch");
  }
  const std::uint32_t version = DecodeFixed32(data + 8);
  if (version != kFormatVersion) {
    return Status::NotSupported("segment format version " + std::to_string(version) +
                                " (this reader knows " + std::to_string(kFormatVersion) + ")");
  }
  if (DecodeFixed32(data + 12) != kSegmentHeaderBytes) {
    return Status::Corruption("segment header size field is not 64");
  }
  SegmentHeader header;
  header.file_identity = DecodeFixed64(data + 16);
  header.sequence = DecodeFixed64(data + 24);
  header.segment_size_bytes = DecodeFixed32(data + 32);
  header.segment_index = DecodeFixed32(data + 36);
  header.capacity_bytes = DecodeFixed64(data + 40);
  if (header.file_identity == 0) return Status::Corruption("segment header: zero file identity");
  if (header.sequence == 0) return Status::Corruption("segment header: zero sequence");
  if (header.segment_size_bytes < kSegmentMinBytes ||
      header.segment_size_bytes > kSegmentMaxBytes || header.segment_size_bytes % 4096 != 0) {
    return Status::Corruption("segment header: segment size out of bounds");
  }
  if (header.capacity_bytes % header.segment_size_bytes != 0 ||
      std::uint64_t{header.segment_index} >= header.capacity_bytes / header.segment_size_bytes) {
    return Status::Corruption("segment header: index or capacity out of bounds");
  }
  return header;
}

void EncodeEntry(std::string_view key, std::string_view value, std::uint64_t sequence,
                 std::string* dst) {
  CFS_ASSERT(!key.empty());
  CFS_ASSERT(key.size() <= kKeyMaxBytes);
  CFS_ASSERT(value.size() <= kSegmentMaxBytes);
  CFS_ASSERT(sequence >= 1);
  const std::size_t start = dst->size();
  dst->resize(start + kEntryHeaderBytes);
  char* header = dst->data() + start;
  std::memset(header, 0, kEntryHeaderBytes);
  EncodeFixed32(header + 0, kEntryMagic);
  header[4] = static_cast<char>(key.size());
  // header[5] flags and header[6..7] reserved stay zero.
  EncodeFixed32(header + 8, static_cast<std::uint32_t>(value.size()));
  // header[12..15] reserved stay zero.
  EncodeFixed64(header + 16, sequence);
  dst->append(key);
  dst->append(value);
  char checksum[kEntryChecksumBytes];
  EncodeFixed64(checksum, Checksum(dst->data() + start, dst->size() - start));
  dst->append(checksum, kEntryChecksumBytes);
  CFS_ASSERT(dst->size() - start == EntryBytes(key.size(), value.size()));
}

EntryDamage DecodeEntry(const char* data, std::size_t size, std::uint64_t sequence,
                        EntryView* entry) {
  if (size < kEntryOverheadBytes) return EntryDamage::kEnd;
  if (DecodeFixed32(data) != kEntryMagic) return EntryDamage::kEnd;
  // Another segment write's entry: stale bytes of an earlier lap, not damage.
  if (DecodeFixed64(data + 16) != sequence) return EntryDamage::kEnd;
  const std::size_t key_bytes = static_cast<std::uint8_t>(data[4]);
  const std::uint8_t flags = static_cast<std::uint8_t>(data[5]);
  const std::uint64_t value_bytes = DecodeFixed32(data + 8);
  if (key_bytes == 0 || key_bytes > kKeyMaxBytes || flags != 0 || data[6] != 0 || data[7] != 0 ||
      DecodeFixed32(data + 12) != 0) {
    return EntryDamage::kBadHeader;
  }
  // Checked in u64 so a huge value length cannot wrap.
  const std::uint64_t total = kEntryOverheadBytes + key_bytes + value_bytes;
  if (total > size) return EntryDamage::kBadHeader;
  const std::size_t checked = static_cast<std::size_t>(total) - kEntryChecksumBytes;
  if (DecodeFixed64(data + checked) != Checksum(data, checked)) return EntryDamage::kBadChecksum;
  entry->key = std::string_view(data + kEntryHeaderBytes, key_bytes);
  entry->value = std::string_view(data + kEntryHeaderBytes + key_bytes, value_bytes);
  entry->entry_bytes = static_cast<std::size_t>(total);
  return EntryDamage::kNone;
}

WalkResult WalkSegment(const char* segment, std::size_t size, std::uint64_t sequence,
                       const std::function<void(const WalkedEntry&)>& on_entry) {
  CFS_ASSERT(size >= kSegmentHeaderBytes);
  CFS_ASSERT(size <= kSegmentMaxBytes);
  WalkResult result;
  std::size_t offset = kSegmentHeaderBytes;
  // Bounded: every step advances offset by at least kEntryOverheadBytes, or ends the walk.
  while (offset < size) {
    WalkedEntry walked;
    walked.offset = static_cast<std::uint32_t>(offset);
    const EntryDamage damage = DecodeEntry(segment + offset, size - offset, sequence, &walked.view);
    if (damage == EntryDamage::kEnd) break;
    if (damage == EntryDamage::kBadHeader) {
      ++result.damaged_entries;
      result.damaged.emplace_back(walked.offset, damage);
      result.stopped_at_damage = true;
      break;
    }
    if (damage == EntryDamage::kBadChecksum) {
      // The lengths passed their bounds, so stepping over the entry stays inside the segment.
      const std::size_t key_bytes = static_cast<std::uint8_t>(segment[offset + 4]);
      const std::size_t value_bytes = DecodeFixed32(segment + offset + 8);
      ++result.damaged_entries;
      result.damaged.emplace_back(walked.offset, damage);
      offset += EntryBytes(key_bytes, value_bytes);
      continue;
    }
    on_entry(walked);
    offset += walked.view.entry_bytes;
  }
  CFS_ASSERT(offset <= size);
  result.end_offset = static_cast<std::uint32_t>(offset);
  return result;
}

}  // namespace cascadefs::cache
