// version_edit.h: VersionEdit, one change to the set of live files, and its encoding.
//
// The store's shape (which SSTs are live at which level, the next file number, the last
// sequence number, the oldest WAL segment still needed) is the result of applying every edit
// of the manifest in order (manifest_log.h, VersionSet). An edit records only what changed:
// files added and removed per level, and new values of the counters.
//
// Encoding (docs/formats/manifest.md, "Edit"): a sequence of fields, each a varint32 tag
// followed by the tag's value. Tags are never renumbered. A decoder meeting an unknown tag
// reports Corruption: a newer writer that adds a tag also raises the store format version,
// and the format version field is always the first field, so an older reader reports
// NotSupported (the store is newer) before it could meet the unknown tag.
//
// Invariants (asserted by the setters, checked again by DecodeFrom, which reports Corruption):
//  1. Levels are in [0, kNumLevels).
//  2. A file's smallest and largest are valid internal keys, at most kInternalKeySizeMax bytes,
//     with smallest <= largest (CompareInternalKeys); its sequences satisfy
//     smallest_sequence <= largest_sequence <= kSequenceMax.
//  3. last_sequence <= kSequenceMax; format_version is in [1, kStoreFormatVersion].
//  4. One edit adds a file number at most once and removes a (level, number) at most once.
//     (Removing and adding the same number is allowed: a file moved to another level.)
//  5. Every scalar field appears at most once in an encoding.
//
// Thread safety: a value type; const methods may be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "db/dbformat.h"
#include "engine/options.h"
#include "engine/status.h"

namespace cascadefs::engine {

// Levels of the LSM tree: L0 (overlapping files, newest first) to L6.
inline constexpr int kNumLevels = 7;

// The store format version this build writes, and the newest it reads. Raised whenever a
// store file format changes in a way an older build cannot read (docs/formats/manifest.md,
// "Versioning"). Version 0 is invalid.
// Version 2 added the value log: value pointers (ValueType 2) in WAL records and SSTs, and
// the edit tags 8-10.
inline constexpr std::uint32_t kStoreFormatVersion = 2;

// Largest internal key a file's smallest/largest may be: the largest user key plus trailer.
inline constexpr std::size_t kInternalKeySizeMax = kKeySizeMax + kInternalKeyTrailerBytes;

// Tags of the encoded fields. Stored on disk: never renumber, never reuse.
enum class VersionEditTag : std::uint32_t {
  kFormatVersion = 1,   // varint32
  kLogNumber = 2,       // varint64
  kNextFileNumber = 3,  // varint64
  kLastSequence = 4,    // varint64
  kCompactPointer = 5,  // varint32 level, length-prefixed internal key
  kRemovedFile = 6,     // varint32 level, varint64 number
  kAddedFile = 7,       // varint32 level, then the FileMetaData fields (manifest.md)
  kAddedVlog = 8,       // varint64 number, size, records, value bytes (VlogFileMeta)
  kVlogGarbage = 9,     // varint64 number, garbage records, garbage bytes (added to the file's)
  kRemovedVlog = 10,    // varint64 number
};

// What the manifest records about one value-log file (docs/formats/vlog.md, "Manifest").
struct VlogFileMeta {
  std::uint64_t number = 0;
  std::uint64_t size_bytes = 0;   // the end of its valid records when last recorded
  std::uint64_t records = 0;      // records in it when last recorded
  std::uint64_t value_bytes = 0;  // stored value bytes of those records
  std::uint64_t garbage_records = 0;
  std::uint64_t garbage_bytes = 0;  // whole records no live pointer names any more

  bool operator==(const VlogFileMeta&) const = default;
};

// Garbage found in one value-log file by one flush or compaction.
struct VlogGarbage {
  std::uint64_t records = 0;
  std::uint64_t bytes = 0;
};

// What the manifest records about one SST.
struct FileMetaData {
  std::uint64_t number = 0;              // names the file: SstFileName(dir, number)
  std::uint64_t file_size_bytes = 0;     // the file's size when it was written
  std::string smallest;                  // internal key: the first entry of the file
  std::string largest;                   // internal key: the last entry of the file
  SequenceNumber smallest_sequence = 0;  // the smallest sequence number of any entry
  SequenceNumber largest_sequence = 0;   // the largest sequence number of any entry
  std::uint64_t num_entries = 0;         // entries (values and deletions) in the file

  bool operator==(const FileMetaData&) const = default;
};

class VersionEdit {
 public:
  VersionEdit() = default;

  // Resets to an empty edit (no field set).
  void Clear();

  // The store format version. Set in (and only meaningful for) the first edit of every
  // manifest. REQUIRES: 1 <= version <= kStoreFormatVersion.
  void SetFormatVersion(std::uint32_t version);
  // WAL segments numbered below `number` hold nothing that must be replayed.
  void SetLogNumber(std::uint64_t number);
  // The next unused file number (every numbered file of the store draws from it).
  void SetNextFileNumber(std::uint64_t number);
  // The sequence number of the newest write whose effect the live files or WAL hold.
  // REQUIRES: sequence <= kSequenceMax.
  void SetLastSequence(SequenceNumber sequence);
  // Where the next compaction of `level` starts: after this internal key. At most one per
  // level per edit; a second call for a level replaces the first.
  // REQUIRES: 0 <= level < kNumLevels; internal_key is a valid internal key.
  void SetCompactPointer(int level, std::string_view internal_key);
  // Adds `file` at `level`. REQUIRES: invariants 1, 2 and 4 of this file's header.
  void AddFile(int level, const FileMetaData& file);
  // Removes file `number` from `level`. REQUIRES: invariants 1 and 4.
  void RemoveFile(int level, std::uint64_t number);

  // Adds value-log file `file.number`, or replaces its size and counts (not its garbage) when
  // the version already has it. At most one per number per edit.
  void AddVlog(const VlogFileMeta& file);
  // Adds garbage to value-log file `number` (summed when called twice for a number).
  void AddVlogGarbage(std::uint64_t number, std::uint64_t records, std::uint64_t bytes);
  // Removes value-log file `number`.
  void RemoveVlog(std::uint64_t number);

  // Appends the encoding of this edit to *dst (format version first, then the other fields).
  void EncodeTo(std::string* dst) const;
  // Replaces this edit with the one `src` encodes. On error the edit is left cleared and the
  // Status is Corruption "version edit: <field>: <problem>", or NotSupported "store format
  // version N is newer than this cascadefs supports (M)". The caller adds file and offset.
  Status DecodeFrom(std::string_view src);

  // A multi-line human-readable form, for logs and `cascadefs inspect`.
  std::string DebugString() const;

  bool has_format_version() const { return has_format_version_; }
  std::uint32_t format_version() const { return format_version_; }
  bool has_log_number() const { return has_log_number_; }
  std::uint64_t log_number() const { return log_number_; }
  bool has_next_file_number() const { return has_next_file_number_; }
  std::uint64_t next_file_number() const { return next_file_number_; }
  bool has_last_sequence() const { return has_last_sequence_; }
  SequenceNumber last_sequence() const { return last_sequence_; }
  // (level, internal key), in level order.
  const std::vector<std::pair<int, std::string>>& compact_pointers() const {
    return compact_pointers_;
  }
  // (level, file), in the order added.
  const std::vector<std::pair<int, FileMetaData>>& added_files() const { return added_files_; }
  // (level, number), sorted.
  const std::set<std::pair<int, std::uint64_t>>& removed_files() const { return removed_files_; }

  const std::map<std::uint64_t, VlogFileMeta>& added_vlogs() const { return added_vlogs_; }
  const std::map<std::uint64_t, VlogGarbage>& vlog_garbage() const { return vlog_garbage_; }
  const std::set<std::uint64_t>& removed_vlogs() const { return removed_vlogs_; }

  // True when both edits encode to the same bytes.
  bool operator==(const VersionEdit& other) const;

 private:
  bool has_format_version_ = false;
  bool has_log_number_ = false;
  bool has_next_file_number_ = false;
  bool has_last_sequence_ = false;
  std::uint32_t format_version_ = 0;
  std::uint64_t log_number_ = 0;
  std::uint64_t next_file_number_ = 0;
  SequenceNumber last_sequence_ = 0;
  std::vector<std::pair<int, std::string>> compact_pointers_;  // sorted by level, unique
  std::vector<std::pair<int, FileMetaData>> added_files_;      // numbers unique (invariant 4)
  std::set<std::uint64_t> added_numbers_;  // the numbers of added_files_, to check invariant 4
  std::set<std::pair<int, std::uint64_t>> removed_files_;
  std::map<std::uint64_t, VlogFileMeta> added_vlogs_;  // garbage fields unused (zero)
  std::map<std::uint64_t, VlogGarbage> vlog_garbage_;
  std::set<std::uint64_t> removed_vlogs_;
};

// Checks invariant 2 for `file`: OK, or Corruption naming the problem (no file or offset).
Status ValidateFileMetaData(const FileMetaData& file);

}  // namespace cascadefs::engine
