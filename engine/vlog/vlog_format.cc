// vlog_format.cc: see vlog_format.h and docs/formats/vlog.md.
#include "vlog/vlog_format.h"

#include <cstring>

#include "util/checksum.h"
#include "util/coding.h"

namespace cascadefs::engine {
namespace {

constexpr char kFileMagic[] = "CASCVLOG";  // 8 bytes, no NUL on disk
constexpr char kFooterMagic[] = "CASCVEND";
constexpr std::size_t kMagicBytes = 8;
constexpr std::uint64_t kHeaderChecksumSeed = 0x43415343564c4f47ull;  // "CASCVLOG"
constexpr std::uint64_t kRecordChecksumSeed = 0x4341534356524543ull;  // "CASCVREC"
constexpr std::uint64_t kFooterChecksumSeed = 0x4341534356454e44ull;  // "CASCVEND"

// A varint from the front of *input that is the shortest encoding of its value.
bool GetCanonicalVarint64(std::string_view* input, std::uint64_t* value) {
  const std::size_t before = input->size();
  if (!GetVarint64(input, value)) return false;
  return before - input->size() == static_cast<std::size_t>(VarintLength(*value));
}

Status Damaged(std::string_view what) { return Status::Corruption(std::string(what)); }

}  // namespace

std::string EncodeVlogFileHeader(const VlogFileHeader& header) {
  std::string out(kFileMagic, kMagicBytes);
  PutFixed32(&out, kVlogFormatVersion);
  PutFixed64(&out, header.file_number);
  PutFixed64(&out, header.created_ns);
  PutFixed32(&out, Checksum32(out.data(), out.size(), kHeaderChecksumSeed));
  return out;
}

Result<VlogFileHeader> DecodeVlogFileHeader(std::string_view bytes) {
  if (bytes.size() != kVlogFileHeaderBytes) return Damaged("value log header: wrong size");
  if (std::memcmp(bytes.data(), kFileMagic, kMagicBytes) != 0) {
    return Damaged("value log header: not a value log (bad magic)");
  }
  const std::size_t covered = kVlogFileHeaderBytes - 4;
  if (DecodeFixed32(bytes.data() + covered) !=
      Checksum32(bytes.data(), covered, kHeaderChecksumSeed)) {
    return Damaged("value log header: checksum mismatch");
  }
  const std::uint32_t version = DecodeFixed32(bytes.data() + 8);
  if (version == 0) return Damaged("value log header: format version 0");
  if (version > kVlogFormatVersion) {
    return Status::NotSupported("value log format version " + std::to_string(version) +
                                " is newer than this cascadefs supports (" +
                                std::to_string(kVlogFormatVersion) + ")");
  }
  VlogFileHeader header;
  header.file_number = DecodeFixed64(bytes.data() + 12);
  header.created_ns = DecodeFixed64(bytes.data() + 20);
  return header;
}

std::uint32_t AppendVlogRecord(const VlogRecord& record, std::string* out) {
  const std::size_t start = out->size();
  PutFixed32(out, static_cast<std::uint32_t>(record.key.size()));
  PutFixed32(out, static_cast<std::uint32_t>(record.value.size()));
  out->push_back(static_cast<char>(record.compression));
  out->append(record.key);
  out->append(record.value);
  const std::uint32_t checksum =
      Checksum32(out->data() + start, out->size() - start, kRecordChecksumSeed);
  PutFixed32(out, checksum);
  return checksum;
}

Result<VlogRecord> DecodeVlogRecord(std::string_view bytes,
                                    const std::uint32_t* expected_checksum) {
  if (bytes.size() < kVlogRecordOverheadBytes) return Damaged("value log record: truncated");
  const std::uint32_t key_bytes = DecodeFixed32(bytes.data());
  const std::uint32_t value_bytes = DecodeFixed32(bytes.data() + 4);
  if (key_bytes > kVlogKeyBytesMax || value_bytes > kVlogValueBytesMax ||
      std::uint64_t{key_bytes} + value_bytes + kVlogRecordOverheadBytes != bytes.size()) {
    return Damaged("value log record: lengths disagree with the record size");
  }
  const std::size_t covered = bytes.size() - 4;
  const std::uint32_t checksum = DecodeFixed32(bytes.data() + covered);
  if (checksum != Checksum32(bytes.data(), covered, kRecordChecksumSeed)) {
    return Damaged("value log record: checksum mismatch");
  }
  if (expected_checksum != nullptr && checksum != *expected_checksum) {
    return Damaged("value log record: not the record its pointer names (checksum differs)");
  }
  const auto compression = static_cast<std::uint8_t>(bytes[8]);
  if (compression > static_cast<std::uint8_t>(VlogCompression::kZstd)) {
    return Damaged("value log record: unknown compression " + std::to_string(compression));
  }
  VlogRecord record;
  record.compression = static_cast<VlogCompression>(compression);
  record.key = bytes.substr(9, key_bytes);
  record.value = bytes.substr(9 + key_bytes, value_bytes);
  return record;
}

std::string EncodeVlogFooter(const VlogFooter& footer) {
  std::string out(kFooterMagic, kMagicBytes);
  PutFixed64(&out, footer.records);
  PutFixed64(&out, footer.value_bytes);
  PutFixed32(&out, 0);  // reserved
  PutFixed32(&out, Checksum32(out.data(), out.size(), kFooterChecksumSeed));
  return out;
}

Result<VlogFooter> DecodeVlogFooter(std::string_view bytes) {
  if (bytes.size() != kVlogFooterBytes) return Damaged("value log footer: wrong size");
  if (std::memcmp(bytes.data(), kFooterMagic, kMagicBytes) != 0) {
    return Damaged("value log footer: bad magic (the file was not finished)");
  }
  const std::size_t covered = kVlogFooterBytes - 4;
  if (DecodeFixed32(bytes.data() + covered) !=
      Checksum32(bytes.data(), covered, kFooterChecksumSeed)) {
    return Damaged("value log footer: checksum mismatch");
  }
  if (DecodeFixed32(bytes.data() + 24) != 0) return Damaged("value log footer: reserved not 0");
  VlogFooter footer;
  footer.records = DecodeFixed64(bytes.data() + 8);
  footer.value_bytes = DecodeFixed64(bytes.data() + 16);
  return footer;
}

std::string EncodeValuePointer(const ValuePointer& pointer) {
  std::string out;
  PutVarint64(&out, pointer.file_number);
  PutVarint64(&out, pointer.offset);
  PutVarint64(&out, pointer.size);
  PutFixed32(&out, pointer.checksum);
  return out;
}

Result<ValuePointer> DecodeValuePointer(std::string_view bytes) {
  ValuePointer pointer;
  std::uint64_t size = 0;
  if (!GetCanonicalVarint64(&bytes, &pointer.file_number) ||
      !GetCanonicalVarint64(&bytes, &pointer.offset) || !GetCanonicalVarint64(&bytes, &size)) {
    return Damaged("value pointer: bad varint");
  }
  if (size < kVlogRecordOverheadBytes ||
      size > kVlogKeyBytesMax + std::uint64_t{kVlogValueBytesMax} + kVlogRecordOverheadBytes) {
    return Damaged("value pointer: record size out of range");
  }
  if (bytes.size() != 4) return Damaged("value pointer: wrong length");
  pointer.size = static_cast<std::uint32_t>(size);
  pointer.checksum = DecodeFixed32(bytes.data());
  return pointer;
}

}  // namespace cascadefs::engine
