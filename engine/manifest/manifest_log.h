// manifest_log.h: the manifest file's record framing: ManifestWriter, ManifestReader and
// ReadManifest. The format is drawn in docs/formats/manifest.md.
//
// A manifest (MANIFEST-NNNNNN) is an append-only sequence of records, one encoded VersionEdit
// each, with nothing before the first record or between records:
//
//   record := length:fixed32 | checksum:fixed32 | payload:length bytes
//   checksum = Checksum32(payload, seed = kManifestRecordChecksumSeed)
//
// 1 <= length <= kManifestRecordSizeMax. The first record's edit carries the store format
// version (VersionEdit::SetFormatVersion); ReadManifest checks and reports it.
//
// Recovery rule. Every edit is synced before it takes effect, and a writer never appends a
// record while the previous one is unsynced (ManifestWriter asserts it). So a crash can damage
// only the last record of a file, and what follows a damaged record decides what it was:
//  - nothing that forms a valid record (end of file, zeros, garbage): a torn tail. The record
//    was never acknowledged; the reader stops cleanly at it and reports the valid length
//    (valid_length_bytes) so the caller can log it and truncate the file there.
//  - at least one valid record, found by trying every later byte offset: damage the crash
//    cannot explain (a bad disk, a stray write). The reader reports Corruption naming the file,
//    the damaged record's offset, the problem and the offset of the valid record after it.
//
// Thread safety: a writer or a reader is used by one task at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/result.h"
#include "engine/status.h"
#include "manifest/version_edit.h"

namespace cascadefs::engine {

// length:fixed32 + checksum:fixed32.
inline constexpr std::size_t kManifestRecordHeaderBytes = 8;
// The largest payload. An edit lists files: at ~100 bytes per file, 64 MiB describes over half
// a million SSTs (tens of terabytes of 64 MiB files), and bounds the memory a reader allocates
// for one length read from disk before it can check the checksum.
inline constexpr std::uint32_t kManifestRecordSizeMax = 64u << 20;
// The checksum seed: binds the record type into the checksum, so a WAL or value log record
// (other seeds) never passes as a manifest record. ASCII "MANIFEST" read as a big-endian
// integer. Stored on disk in effect: never change it.
inline constexpr std::uint64_t kManifestRecordChecksumSeed = 0x4d414e4946455354;
// Bytes a reader reads at a time. Records are far smaller, so one read serves many.
inline constexpr std::size_t kManifestReadChunkBytes = 64 << 10;

// Appends records to a manifest.
//
// State: after any failed write or sync the writer is failed: the bytes at the tail are
// unknown, so every later AddRecord and Sync returns that first error. The caller then
// abandons this manifest (writes a new one and points CURRENT at it).
class ManifestWriter {
 public:
  // Writes records from `start_offset_bytes` of `file` on. A new manifest starts at 0; a
  // reopened one at the valid length its reader reported, after the caller truncated it there.
  explicit ManifestWriter(std::unique_ptr<WritableFile> file, std::uint64_t start_offset_bytes = 0);
  ManifestWriter(const ManifestWriter&) = delete;
  ManifestWriter& operator=(const ManifestWriter&) = delete;

  // Appends one record holding `edit` (an encoded VersionEdit) without syncing it. OK means
  // the record was written (not that it is durable: await Sync). InvalidArgument, writing
  // nothing, when edit is longer than kManifestRecordSizeMax. On a write error the writer is
  // failed (see the class comment).
  // REQUIRES: edit is not empty and stays valid until the task finishes; the previous record
  // was synced (has_unsynced_record() is false), which the recovery rule depends on; not
  // closed.
  io::Task<Status> AddRecord(std::string_view edit);
  // Makes every record added so far durable. On error the writer is failed.
  io::Task<Status> Sync();
  // Closes the file without syncing. Idempotent.
  io::Task<Status> Close();

  // Bytes of the file written so far (start offset included): where the next record goes.
  std::uint64_t size_bytes() const { return size_bytes_; }
  bool has_unsynced_record() const { return unsynced_record_; }
  const std::string& path() const { return file_->path(); }

 private:
  std::unique_ptr<WritableFile> file_;
  std::uint64_t size_bytes_;      // offset of the next record
  bool unsynced_record_ = false;  // a record was added after the last successful Sync
  bool closed_ = false;
  Status error_;        // the first write or sync error; OK while the writer is healthy
  std::string record_;  // the record being written: header and payload, one write
};

// Reads the records of a manifest front to back, applying the recovery rule (file header).
class ManifestReader {
 public:
  // Reads `file` (the file size is the one `file` reports).
  explicit ManifestReader(std::unique_ptr<RandomAccessFile> file);
  // Opens `path` through `env`. NotFound when it does not exist. Parameters are copied into
  // the coroutine frame.
  static io::Task<Result<std::unique_ptr<ManifestReader>>> Open(Env* env, std::string path);
  ManifestReader(const ManifestReader&) = delete;
  ManifestReader& operator=(const ManifestReader&) = delete;

  // Reads the next record's payload into *record (replacing its contents).
  //  - true: a record; it starts at last_record_offset().
  //  - false: the log ended, at the end of the file or at a torn tail (torn_tail());
  //    valid_length_bytes() is where the valid records end. Every later call returns false.
  //  - Corruption "<path>: record at offset N: <problem>; a valid record follows at offset M"
  //    for damage before the end; a read error as the Env reports it. Every later call
  //    returns the same error.
  // REQUIRES: record stays valid until the task finishes.
  io::Task<Result<bool>> ReadRecord(std::string* record);

  // The offset of the record the last successful ReadRecord returned.
  std::uint64_t last_record_offset() const { return last_record_offset_; }
  // The offset just after the last valid record read so far: at the end, the valid length.
  std::uint64_t valid_length_bytes() const { return offset_; }
  std::uint64_t file_size_bytes() const { return file_size_bytes_; }
  // After ReadRecord returned false: whether the file ended in a damaged record, and what was
  // wrong with it ("record at offset N: checksum mismatch"), for the caller's log line.
  bool torn_tail() const { return !torn_tail_reason_.empty(); }
  const std::string& torn_tail_reason() const { return torn_tail_reason_; }
  const std::string& path() const { return file_->path(); }

 private:
  enum class State : std::uint8_t { kReading, kEnded, kFailed };

  // How the bytes at an offset frame a record (manifest_log.cc).
  enum class Framing : std::uint8_t {
    kValid,
    kNeedBytes,  // the buffer holds too little of the file to tell
    kHeaderTruncated,
    kZeroLength,
    kTooLong,
    kPastEnd,
    kChecksumMismatch,
  };

  // Checks the record at `offset` from buffered bytes only: kNeedBytes when they do not
  // suffice. Sets *length once the header is known. Allocates nothing, so the damage scan can
  // call it at every offset.
  Framing CheckBuffered(std::uint64_t offset, std::uint32_t* length) const;
  // The same, reading what the buffer lacks: never kNeedBytes. Errors only from reads.
  io::Task<Result<Framing>> CheckAt(std::uint64_t offset, std::uint32_t* length);
  // The problem `framing` (not kValid or kNeedBytes) found at `offset`, for a message.
  std::string DescribeProblem(std::uint64_t offset, Framing framing) const;
  // The offset of the first valid record after `offset`, or file_size_bytes_ when none.
  io::Task<Result<std::uint64_t>> FindValidRecordAfter(std::uint64_t offset);
  // Makes buffer_ hold the file bytes [offset, offset + size_bytes), reading at least
  // kManifestReadChunkBytes when it reads. REQUIRES: offset + size_bytes <= file_size_bytes_.
  io::Task<Status> Fill(std::uint64_t offset, std::size_t size_bytes);
  std::string_view Buffered(std::uint64_t offset, std::size_t size_bytes) const;
  // The buffered bytes from `offset` to the end of the buffer; empty when not buffered.
  std::string_view BufferedFrom(std::uint64_t offset) const;

  std::unique_ptr<RandomAccessFile> file_;
  std::uint64_t file_size_bytes_;
  State state_ = State::kReading;
  Status error_;              // set in kFailed
  std::uint64_t offset_ = 0;  // the next record's offset; <= file_size_bytes_
  std::uint64_t last_record_offset_ = 0;
  std::string torn_tail_reason_;  // set in kEnded when the tail was damaged
  std::string buffer_;            // file bytes [buffer_offset_, + buffer_.size())
  std::uint64_t buffer_offset_ = 0;
};

// What ReadManifest found.
struct ManifestSummary {
  std::uint32_t format_version = 0;      // the store format version of the first edit
  std::uint64_t edit_count = 0;          // edits passed to the callback
  std::uint64_t valid_length_bytes = 0;  // where the last valid record ends
  std::uint64_t file_size_bytes = 0;
  std::string torn_tail_reason;  // empty unless the file ended in a torn record
  bool torn_tail() const { return !torn_tail_reason.empty(); }
};

// Called with each edit in file order and the offset of its record. A non-OK Status stops the
// read and is returned with "<path>: edit at offset N: " prepended.
using ManifestEditCallback = std::function<Status(const VersionEdit& edit, std::uint64_t offset)>;

// Reads the manifest at `path`, decodes every record into a VersionEdit and passes it to
// `on_edit`. OK: the summary (a torn tail is not an error: log it, and truncate the file at
// valid_length_bytes before appending to it). Errors, each naming the file:
//  - NotSupported "<path>: edit at offset 0: store format version N is newer than this
//    cascadefs supports (M)";
//  - Corruption: damage before the end (ManifestReader::ReadRecord), an edit that does not
//    decode, a first edit without a format version, a later edit with a different one, or a
//    file without one complete edit (CURRENT names a manifest only once its first edit is
//    synced, so that is damage too);
//  - NotFound when the file does not exist; read errors as the Env reports them;
//  - the callback's error.
// Parameters are copied into the coroutine frame. REQUIRES: on_edit is not empty.
io::Task<Result<ManifestSummary>> ReadManifest(Env* env, std::string path,
                                               ManifestEditCallback on_edit);
// The same over an open file (the fuzz target reads bytes in memory this way).
io::Task<Result<ManifestSummary>> ReadManifest(std::unique_ptr<RandomAccessFile> file,
                                               ManifestEditCallback on_edit);

}  // namespace cascadefs::engine
