// version_edit.cc: VersionEdit's setters, encoding and decoding (version_edit.h).
//
// Layout written by EncodeTo (docs/formats/manifest.md, "Edit"):
//   [kFormatVersion varint32]                         first, when set
//   [kLogNumber varint64] [kNextFileNumber varint64] [kLastSequence varint64]
//   {kCompactPointer level:varint32 key:length-prefixed}      one per level, level order
//   {kRemovedFile level:varint32 number:varint64}             sorted by (level, number)
//   {kAddedFile level:varint32 number:varint64 size:varint64 smallest:length-prefixed
//    largest:length-prefixed smallest_seq:varint64 largest_seq:varint64 entries:varint64}
//   {kAddedVlog number size records value_bytes: varint64 each}            by number
//   {kVlogGarbage number records bytes: varint64 each}                     by number
//   {kRemovedVlog number:varint64}                                         by number
// Each field starts with its tag as a varint32. DecodeFrom accepts the fields in any order,
// except that the format version, when present, must be the first.
#include "manifest/version_edit.h"

#include <algorithm>
#include <cstdio>

#include "engine/assert.h"
#include "util/coding.h"

namespace cascadefs::engine {
namespace {

void PutTag(std::string* dst, VersionEditTag tag) {
  PutVarint32(dst, static_cast<std::uint32_t>(tag));
}

bool ValidLevel(std::uint32_t level) { return level < static_cast<std::uint32_t>(kNumLevels); }

// Corruption "version edit: <field>: <problem>".
Status EditCorruption(std::string_view field, std::string_view problem) {
  std::string msg = "version edit: ";
  msg += field;
  msg += ": ";
  msg += problem;
  return Status::Corruption(msg);
}

// Checks that `key` may be a file bound or compaction pointer: a parseable internal key of
// at most kInternalKeySizeMax bytes. Returns the problem, or an empty view when valid.
std::string_view InternalKeyProblem(std::string_view key) {
  if (key.size() > kInternalKeySizeMax) return "internal key longer than the maximum";
  ParsedInternalKey parsed;
  if (!ParseInternalKey(key, &parsed)) return "malformed internal key";
  return {};
}

// Appends `bytes` for humans: printable ASCII as is, anything else (and the quote and
// backslash) as \xNN.
void AppendEscaped(std::string* out, std::string_view bytes) {
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && c != '\'' && c != '\\') {
      out->push_back(c);
    } else {
      char buf[5];
      std::snprintf(buf, sizeof(buf), "\\x%02x", byte);
      out->append(buf);
    }
  }
}

void AppendInternalKeyForDisplay(std::string* out, std::string_view key) {
  ParsedInternalKey parsed;
  if (!ParseInternalKey(key, &parsed)) {
    out->append("(bad key) '");
    AppendEscaped(out, key);
    out->push_back('\'');
    return;
  }
  out->push_back('\'');
  AppendEscaped(out, parsed.user_key);
  out->append("' @ ");
  out->append(std::to_string(parsed.sequence));
  out->append(" : ");
  out->append(std::to_string(static_cast<unsigned>(parsed.type)));
}

}  // namespace

Status ValidateFileMetaData(const FileMetaData& file) {
  std::string_view problem = InternalKeyProblem(file.smallest);
  if (!problem.empty()) return Status::Corruption(std::string("smallest key: ").append(problem));
  problem = InternalKeyProblem(file.largest);
  if (!problem.empty()) return Status::Corruption(std::string("largest key: ").append(problem));
  if (CompareInternalKeys(file.smallest, file.largest) > 0) {
    return Status::Corruption("smallest key sorts after largest key");
  }
  if (file.largest_sequence > kSequenceMax) {
    return Status::Corruption("largest sequence " + std::to_string(file.largest_sequence) +
                              " exceeds the maximum");
  }
  if (file.smallest_sequence > file.largest_sequence) {
    return Status::Corruption("smallest sequence " + std::to_string(file.smallest_sequence) +
                              " exceeds largest sequence " + std::to_string(file.largest_sequence));
  }
  return Status::OK();
}

void VersionEdit::Clear() { *this = VersionEdit(); }

void VersionEdit::SetFormatVersion(std::uint32_t version) {
  CFS_ASSERT(version >= 1);
  CFS_ASSERT(version <= kStoreFormatVersion);
  has_format_version_ = true;
  format_version_ = version;
}

void VersionEdit::SetLogNumber(std::uint64_t number) {
  has_log_number_ = true;
  log_number_ = number;
}

void VersionEdit::SetNextFileNumber(std::uint64_t number) {
  has_next_file_number_ = true;
  next_file_number_ = number;
}

void VersionEdit::SetLastSequence(SequenceNumber sequence) {
  CFS_ASSERT(sequence <= kSequenceMax);
  has_last_sequence_ = true;
  last_sequence_ = sequence;
}

void VersionEdit::SetCompactPointer(int level, std::string_view internal_key) {
  CFS_ASSERT(level >= 0);
  CFS_ASSERT(level < kNumLevels);
  CFS_ASSERT(InternalKeyProblem(internal_key).empty());
  auto it = std::lower_bound(compact_pointers_.begin(), compact_pointers_.end(), level,
                             [](const auto& entry, int l) { return entry.first < l; });
  if (it != compact_pointers_.end() && it->first == level) {
    it->second.assign(internal_key);
  } else {
    compact_pointers_.emplace(it, level, std::string(internal_key));
  }
}

void VersionEdit::AddFile(int level, const FileMetaData& file) {
  CFS_ASSERT(level >= 0);
  CFS_ASSERT(level < kNumLevels);
  CFS_ASSERT(ValidateFileMetaData(file).ok());
  const bool inserted = added_numbers_.insert(file.number).second;
  CFS_ASSERT(inserted);  // invariant 4
  added_files_.emplace_back(level, file);
}

void VersionEdit::RemoveFile(int level, std::uint64_t number) {
  CFS_ASSERT(level >= 0);
  CFS_ASSERT(level < kNumLevels);
  const bool inserted = removed_files_.emplace(level, number).second;
  CFS_ASSERT(inserted);  // invariant 4
}

void VersionEdit::AddVlog(const VlogFileMeta& file) {
  VlogFileMeta meta = file;
  meta.garbage_records = meta.garbage_bytes = 0;
  const bool inserted = added_vlogs_.emplace(file.number, meta).second;
  CFS_ASSERT(inserted);
}

void VersionEdit::AddVlogGarbage(std::uint64_t number, std::uint64_t records, std::uint64_t bytes) {
  VlogGarbage& garbage = vlog_garbage_[number];
  garbage.records += records;
  garbage.bytes += bytes;
}

void VersionEdit::RemoveVlog(std::uint64_t number) {
  const bool inserted = removed_vlogs_.insert(number).second;
  CFS_ASSERT(inserted);
}

void VersionEdit::EncodeTo(std::string* dst) const {
  // The format version goes first, so that an older reader sees it before any tag it does not
  // know (file header, "Versioning" in manifest.md).
  if (has_format_version_) {
    PutTag(dst, VersionEditTag::kFormatVersion);
    PutVarint32(dst, format_version_);
  }
  if (has_log_number_) {
    PutTag(dst, VersionEditTag::kLogNumber);
    PutVarint64(dst, log_number_);
  }
  if (has_next_file_number_) {
    PutTag(dst, VersionEditTag::kNextFileNumber);
    PutVarint64(dst, next_file_number_);
  }
  if (has_last_sequence_) {
    PutTag(dst, VersionEditTag::kLastSequence);
    PutVarint64(dst, last_sequence_);
  }
  for (const auto& [level, key] : compact_pointers_) {
    PutTag(dst, VersionEditTag::kCompactPointer);
    PutVarint32(dst, static_cast<std::uint32_t>(level));
    PutLengthPrefixed(dst, key);
  }
  for (const auto& [level, number] : removed_files_) {
    PutTag(dst, VersionEditTag::kRemovedFile);
    PutVarint32(dst, static_cast<std::uint32_t>(level));
    PutVarint64(dst, number);
  }
  for (const auto& [level, file] : added_files_) {
    PutTag(dst, VersionEditTag::kAddedFile);
    PutVarint32(dst, static_cast<std::uint32_t>(level));
    PutVarint64(dst, file.number);
    PutVarint64(dst, file.file_size_bytes);
    PutLengthPrefixed(dst, file.smallest);
    PutLengthPrefixed(dst, file.largest);
    PutVarint64(dst, file.smallest_sequence);
    PutVarint64(dst, file.largest_sequence);
    PutVarint64(dst, file.num_entries);
  }
  for (const auto& [number, file] : added_vlogs_) {
    PutTag(dst, VersionEditTag::kAddedVlog);
    PutVarint64(dst, number);
    PutVarint64(dst, file.size_bytes);
    PutVarint64(dst, file.records);
    PutVarint64(dst, file.value_bytes);
  }
  for (const auto& [number, garbage] : vlog_garbage_) {
    PutTag(dst, VersionEditTag::kVlogGarbage);
    PutVarint64(dst, number);
    PutVarint64(dst, garbage.records);
    PutVarint64(dst, garbage.bytes);
  }
  for (const std::uint64_t number : removed_vlogs_) {
    PutTag(dst, VersionEditTag::kRemovedVlog);
    PutVarint64(dst, number);
  }
}

Status VersionEdit::DecodeFrom(std::string_view src) {
  Clear();
  VersionEdit edit;
  std::string_view input = src;
  bool first_field = true;
  while (!input.empty()) {
    std::uint32_t tag_value = 0;
    if (!GetVarint32(&input, &tag_value)) return EditCorruption("tag", "truncated or malformed");
    const bool was_first = first_field;
    first_field = false;
    switch (static_cast<VersionEditTag>(tag_value)) {
      case VersionEditTag::kFormatVersion: {
        constexpr std::string_view kField = "format version";
        std::uint32_t version = 0;
        if (!GetVarint32(&input, &version)) return EditCorruption(kField, "truncated");
        if (!was_first) return EditCorruption(kField, "not the first field");
        // The newer-version check comes before anything else can fail: a newer store is
        // NotSupported, never Corruption.
        if (version > kStoreFormatVersion) {
          return Status::NotSupported("store format version " + std::to_string(version) +
                                      " is newer than this cascadefs supports (" +
                                      std::to_string(kStoreFormatVersion) + ")");
        }
        if (version == 0) return EditCorruption(kField, "version 0 is invalid");
        edit.has_format_version_ = true;
        edit.format_version_ = version;
        break;
      }
      case VersionEditTag::kLogNumber: {
        constexpr std::string_view kField = "log number";
        if (edit.has_log_number_) return EditCorruption(kField, "appears twice");
        if (!GetVarint64(&input, &edit.log_number_)) return EditCorruption(kField, "truncated");
        edit.has_log_number_ = true;
        break;
      }
      case VersionEditTag::kNextFileNumber: {
        constexpr std::string_view kField = "next file number";
        if (edit.has_next_file_number_) return EditCorruption(kField, "appears twice");
        if (!GetVarint64(&input, &edit.next_file_number_)) {
          return EditCorruption(kField, "truncated");
        }
        edit.has_next_file_number_ = true;
        break;
      }
      case VersionEditTag::kLastSequence: {
        constexpr std::string_view kField = "last sequence";
        if (edit.has_last_sequence_) return EditCorruption(kField, "appears twice");
        if (!GetVarint64(&input, &edit.last_sequence_)) return EditCorruption(kField, "truncated");
        if (edit.last_sequence_ > kSequenceMax) {
          return EditCorruption(
              kField, std::to_string(edit.last_sequence_) + " exceeds the maximum sequence number");
        }
        edit.has_last_sequence_ = true;
        break;
      }
      case VersionEditTag::kCompactPointer: {
        constexpr std::string_view kField = "compaction pointer";
        std::uint32_t level = 0;
        std::string_view key;
        if (!GetVarint32(&input, &level) || !GetLengthPrefixed(&input, &key)) {
          return EditCorruption(kField, "truncated");
        }
        if (!ValidLevel(level)) {
          return EditCorruption(kField, "level " + std::to_string(level) + " out of range");
        }
        const std::string_view problem = InternalKeyProblem(key);
        if (!problem.empty()) return EditCorruption(kField, problem);
        const int l = static_cast<int>(level);
        if (std::any_of(edit.compact_pointers_.begin(), edit.compact_pointers_.end(),
                        [l](const auto& entry) { return entry.first == l; })) {
          return EditCorruption(kField, "level " + std::to_string(level) + " appears twice");
        }
        edit.SetCompactPointer(l, key);
        break;
      }
      case VersionEditTag::kRemovedFile: {
        constexpr std::string_view kField = "removed file";
        std::uint32_t level = 0;
        std::uint64_t number = 0;
        if (!GetVarint32(&input, &level) || !GetVarint64(&input, &number)) {
          return EditCorruption(kField, "truncated");
        }
        if (!ValidLevel(level)) {
          return EditCorruption(kField, "level " + std::to_string(level) + " out of range");
        }
        if (!edit.removed_files_.emplace(static_cast<int>(level), number).second) {
          return EditCorruption(kField, "file " + std::to_string(number) + " at level " +
                                            std::to_string(level) + " listed twice");
        }
        break;
      }
      case VersionEditTag::kAddedFile: {
        constexpr std::string_view kField = "added file";
        std::uint32_t level = 0;
        FileMetaData file;
        std::string_view smallest;
        std::string_view largest;
        if (!GetVarint32(&input, &level) || !GetVarint64(&input, &file.number) ||
            !GetVarint64(&input, &file.file_size_bytes) || !GetLengthPrefixed(&input, &smallest) ||
            !GetLengthPrefixed(&input, &largest) || !GetVarint64(&input, &file.smallest_sequence) ||
            !GetVarint64(&input, &file.largest_sequence) ||
            !GetVarint64(&input, &file.num_entries)) {
          return EditCorruption(kField, "truncated");
        }
        const std::string file_name = "file " + std::to_string(file.number);
        if (!ValidLevel(level)) {
          return EditCorruption(kField,
                                file_name + ": level " + std::to_string(level) + " out of range");
        }
        file.smallest.assign(smallest);
        file.largest.assign(largest);
        const Status valid = ValidateFileMetaData(file);
        if (!valid.ok())
          return EditCorruption(kField, file_name + ": " + std::string(valid.message()));
        if (edit.added_numbers_.contains(file.number)) {
          return EditCorruption(kField, file_name + ": listed twice");
        }
        edit.AddFile(static_cast<int>(level), file);
        break;
      }
      case VersionEditTag::kAddedVlog: {
        constexpr std::string_view kField = "added value log";
        VlogFileMeta file;
        if (!GetVarint64(&input, &file.number) || !GetVarint64(&input, &file.size_bytes) ||
            !GetVarint64(&input, &file.records) || !GetVarint64(&input, &file.value_bytes)) {
          return EditCorruption(kField, "truncated");
        }
        if (edit.added_vlogs_.contains(file.number)) {
          return EditCorruption(kField, "file " + std::to_string(file.number) + " listed twice");
        }
        edit.added_vlogs_.emplace(file.number, file);
        break;
      }
      case VersionEditTag::kVlogGarbage: {
        constexpr std::string_view kField = "value-log garbage";
        std::uint64_t number = 0;
        VlogGarbage garbage;
        if (!GetVarint64(&input, &number) || !GetVarint64(&input, &garbage.records) ||
            !GetVarint64(&input, &garbage.bytes)) {
          return EditCorruption(kField, "truncated");
        }
        if (edit.vlog_garbage_.contains(number)) {
          return EditCorruption(kField, "file " + std::to_string(number) + " listed twice");
        }
        edit.vlog_garbage_.emplace(number, garbage);
        break;
      }
      case VersionEditTag::kRemovedVlog: {
        constexpr std::string_view kField = "removed value log";
        std::uint64_t number = 0;
        if (!GetVarint64(&input, &number)) return EditCorruption(kField, "truncated");
        if (!edit.removed_vlogs_.insert(number).second) {
          return EditCorruption(kField, "file " + std::to_string(number) + " listed twice");
        }
        break;
      }
      default:
        return EditCorruption("tag", "unknown tag " + std::to_string(tag_value));
    }
  }
  *this = std::move(edit);
  return Status::OK();
}

bool VersionEdit::operator==(const VersionEdit& other) const {
  std::string mine;
  std::string theirs;
  EncodeTo(&mine);
  other.EncodeTo(&theirs);
  return mine == theirs;
}

std::string VersionEdit::DebugString() const {
  std::string out = "VersionEdit {";
  if (has_format_version_) out += "\n  format_version: " + std::to_string(format_version_);
  if (has_log_number_) out += "\n  log_number: " + std::to_string(log_number_);
  if (has_next_file_number_) {
    out += "\n  next_file_number: " + std::to_string(next_file_number_);
  }
  if (has_last_sequence_) out += "\n  last_sequence: " + std::to_string(last_sequence_);
  for (const auto& [level, key] : compact_pointers_) {
    out += "\n  compact_pointer: L" + std::to_string(level) + " ";
    AppendInternalKeyForDisplay(&out, key);
  }
  for (const auto& [level, number] : removed_files_) {
    out += "\n  remove_file: L" + std::to_string(level) + " #" + std::to_string(number);
  }
  for (const auto& [level, file] : added_files_) {
    out += "\n  add_file: L" + std::to_string(level) + " #" + std::to_string(file.number) + " " +
           std::to_string(file.file_size_bytes) + " bytes, " + std::to_string(file.num_entries) +
           " entries, sequences [" + std::to_string(file.smallest_sequence) + ", " +
           std::to_string(file.largest_sequence) + "], keys [";
    AppendInternalKeyForDisplay(&out, file.smallest);
    out += " .. ";
    AppendInternalKeyForDisplay(&out, file.largest);
    out += "]";
  }
  for (const auto& [number, file] : added_vlogs_) {
    out += "\n  add_vlog: #" + std::to_string(number) + " " + std::to_string(file.size_bytes) +
           " bytes, " + std::to_string(file.records) + " records, " +
           std::to_string(file.value_bytes) + " value bytes";
  }
  for (const auto& [number, garbage] : vlog_garbage_) {
    out += "\n  vlog_garbage: #" + std::to_string(number) + " +" + std::to_string(garbage.records) +
           " records, +" + std::to_string(garbage.bytes) + " bytes";
  }
  for (const std::uint64_t number : removed_vlogs_) {
    out += "\n  remove_vlog: #" + std::to_string(number);
  }
  out += "\n}\n";
  return out;
}

}  // namespace cascadefs::engine
