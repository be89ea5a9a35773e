// manifest_log.cc: ManifestWriter, ManifestReader and ReadManifest (manifest_log.h).
//
// The reader buffers the file in chunks of kManifestReadChunkBytes (a record longer than a
// chunk is read whole), so reading a manifest of many small edits takes one read per chunk,
// not two per record. Damage sends it into FindValidRecordAfter, which tries every later byte
// offset as a record start; most offsets fail on the length check (zero, above the maximum, or
// past the end of the file) before any checksum is computed.
#include "manifest/manifest_log.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <utility>

#include "engine/assert.h"
#include "util/checksum.h"
#include "util/coding.h"

namespace cascadefs::engine {
namespace {

std::uint32_t RecordChecksum(std::string_view payload) {
  return Checksum32(payload.data(), payload.size(), kManifestRecordChecksumSeed);
}

std::string Hex32(std::uint32_t value) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08" PRIx32, value);
  return buf;
}

std::string RecordAt(std::uint64_t offset) { return "record at offset " + std::to_string(offset); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// ManifestWriter

ManifestWriter::ManifestWriter(std::unique_ptr<WritableFile> file, std::uint64_t start_offset_bytes)
    : file_(std::move(file)), size_bytes_(start_offset_bytes) {
  CFS_ASSERT(file_ != nullptr);
}

io::Task<Status> ManifestWriter::AddRecord(std::string_view edit) {
  CFS_ASSERT(!closed_);
  if (!error_.ok()) co_return error_;
  CFS_ASSERT(!edit.empty());
  // The recovery rule (manifest_log.h) holds only if at most the last record is unsynced.
  CFS_ASSERT(!unsynced_record_);
  if (edit.size() > kManifestRecordSizeMax) {
    co_return Status::InvalidArgument(path() + ": edit of " + std::to_string(edit.size()) +
                                      " bytes exceeds the manifest record maximum of " +
                                      std::to_string(kManifestRecordSizeMax));
  }
  record_.clear();
  record_.reserve(kManifestRecordHeaderBytes + edit.size());
  PutFixed32(&record_, static_cast<std::uint32_t>(edit.size()));
  PutFixed32(&record_, RecordChecksum(edit));
  record_.append(edit);
  CFS_ASSERT(record_.size() == kManifestRecordHeaderBytes + edit.size());
  Status status = co_await file_->WriteAt(size_bytes_, record_);
  if (!status.ok()) {
    error_ = status;
    co_return status;
  }
  size_bytes_ += record_.size();
  unsynced_record_ = true;
  co_return Status::OK();
}

io::Task<Status> ManifestWriter::Sync() {
  CFS_ASSERT(!closed_);
  if (!error_.ok()) co_return error_;
  Status status = co_await file_->Sync();
  if (!status.ok()) {
    error_ = status;
    co_return status;
  }
  unsynced_record_ = false;
  co_return Status::OK();
}

io::Task<Status> ManifestWriter::Close() {
  closed_ = true;
  co_return co_await file_->Close();
}

// ---------------------------------------------------------------------------------------------
// ManifestReader

ManifestReader::ManifestReader(std::unique_ptr<RandomAccessFile> file)
    : file_(std::move(file)), file_size_bytes_(file_->size_bytes()) {}

io::Task<Result<std::unique_ptr<ManifestReader>>> ManifestReader::Open(Env* env, std::string path) {
  CFS_ASSERT(env != nullptr);
  Result<std::unique_ptr<RandomAccessFile>> file = co_await env->NewRandomAccessFile(path);
  if (!file.ok()) co_return std::move(file).status();
  co_return std::make_unique<ManifestReader>(std::move(file).value());
}

std::string_view ManifestReader::Buffered(std::uint64_t offset, std::size_t size_bytes) const {
  CFS_ASSERT(offset >= buffer_offset_);
  CFS_ASSERT(offset - buffer_offset_ + size_bytes <= buffer_.size());
  return std::string_view(buffer_).substr(offset - buffer_offset_, size_bytes);
}

io::Task<Status> ManifestReader::Fill(std::uint64_t offset, std::size_t size_bytes) {
  CFS_ASSERT(offset + size_bytes <= file_size_bytes_);
  if (offset >= buffer_offset_ && offset - buffer_offset_ + size_bytes <= buffer_.size()) {
    co_return Status::OK();
  }
  const std::uint64_t remaining_bytes = file_size_bytes_ - offset;
  const auto read_bytes = static_cast<std::size_t>(
      std::min<std::uint64_t>(std::max(size_bytes, kManifestReadChunkBytes), remaining_bytes));
  buffer_offset_ = offset;
  buffer_.resize(read_bytes);
  Result<std::size_t> read = co_await file_->Read(offset, read_bytes, buffer_.data());
  if (!read.ok()) {
    buffer_.clear();
    co_return std::move(read).status();
  }
  if (*read != read_bytes) {
    // Short only at end of file: the file shrank after it was opened.
    buffer_.clear();
    co_return Status::IOError(path() + ": file shrank while being read: " + std::to_string(*read) +
                              " of " + std::to_string(read_bytes) + " bytes at offset " +
                              std::to_string(offset));
  }
  co_return Status::OK();
}

std::string_view ManifestReader::BufferedFrom(std::uint64_t offset) const {
  if (offset < buffer_offset_ || offset - buffer_offset_ > buffer_.size()) return {};
  return std::string_view(buffer_).substr(offset - buffer_offset_);
}

ManifestReader::Framing ManifestReader::CheckBuffered(std::uint64_t offset,
                                                      std::uint32_t* length) const {
  CFS_ASSERT(offset <= file_size_bytes_);
  const std::uint64_t remaining_bytes = file_size_bytes_ - offset;
  if (remaining_bytes < kManifestRecordHeaderBytes) return Framing::kHeaderTruncated;
  const std::string_view bytes = BufferedFrom(offset);
  if (bytes.size() < kManifestRecordHeaderBytes) return Framing::kNeedBytes;
  *length = DecodeFixed32(bytes.data());
  if (*length == 0) return Framing::kZeroLength;
  if (*length > kManifestRecordSizeMax) return Framing::kTooLong;
  if (*length > remaining_bytes - kManifestRecordHeaderBytes) return Framing::kPastEnd;
  if (bytes.size() < kManifestRecordHeaderBytes + *length) return Framing::kNeedBytes;
  const std::uint32_t stored_checksum = DecodeFixed32(bytes.data() + 4);
  if (RecordChecksum(bytes.substr(kManifestRecordHeaderBytes, *length)) != stored_checksum) {
    return Framing::kChecksumMismatch;
  }
  return Framing::kValid;
}

io::Task<Result<ManifestReader::Framing>> ManifestReader::CheckAt(std::uint64_t offset,
                                                                  std::uint32_t* length) {
  Framing framing = CheckBuffered(offset, length);
  // At most two reads: one for the header, then (knowing the length) one for the payload.
  for (int reads = 0; reads < 2 && framing == Framing::kNeedBytes; ++reads) {
    const bool have_header = BufferedFrom(offset).size() >= kManifestRecordHeaderBytes;
    // The length was checked against kManifestRecordSizeMax before this read allocates.
    const std::size_t need_bytes =
        kManifestRecordHeaderBytes + (have_header ? std::size_t{*length} : 0);
    Status status = co_await Fill(offset, need_bytes);
    if (!status.ok()) co_return status;
    framing = CheckBuffered(offset, length);
  }
  CFS_ASSERT(framing != Framing::kNeedBytes);
  co_return framing;
}

std::string ManifestReader::DescribeProblem(std::uint64_t offset, Framing framing) const {
  const std::uint64_t remaining_bytes = file_size_bytes_ - offset;
  const std::string_view bytes = BufferedFrom(offset);
  const std::uint32_t length =
      bytes.size() >= kManifestRecordHeaderBytes ? DecodeFixed32(bytes.data()) : 0;
  switch (framing) {
    case Framing::kHeaderTruncated:
      return "header truncated: " + std::to_string(remaining_bytes) + " of " +
             std::to_string(kManifestRecordHeaderBytes) + " bytes";
    case Framing::kZeroLength:
      return "length 0 is invalid";
    case Framing::kTooLong:
      return "length " + std::to_string(length) + " exceeds the maximum " +
             std::to_string(kManifestRecordSizeMax);
    case Framing::kPastEnd:
      return "length " + std::to_string(length) + " runs past the end of the file (" +
             std::to_string(remaining_bytes - kManifestRecordHeaderBytes) + " bytes follow)";
    case Framing::kChecksumMismatch: {
      const std::string_view payload = bytes.substr(kManifestRecordHeaderBytes, length);
      return "checksum mismatch (stored " + Hex32(DecodeFixed32(bytes.data() + 4)) + ", computed " +
             Hex32(RecordChecksum(payload)) + ")";
    }
    case Framing::kValid:
    case Framing::kNeedBytes:
      break;
  }
  CFS_ASSERT(false && "DescribeProblem of a valid record");
  return {};
}

io::Task<Result<std::uint64_t>> ManifestReader::FindValidRecordAfter(std::uint64_t offset) {
  // Bounded by the file size. The smallest record is a header and one byte. Most offsets fail
  // in CheckBuffered without reading or allocating; a read happens only when a candidate
  // reaches past the buffer.
  for (std::uint64_t candidate = offset + 1;
       candidate + kManifestRecordHeaderBytes + 1 <= file_size_bytes_; ++candidate) {
    std::uint32_t length = 0;
    Framing framing = CheckBuffered(candidate, &length);
    if (framing == Framing::kNeedBytes) {
      Result<Framing> checked = co_await CheckAt(candidate, &length);
      if (!checked.ok()) co_return std::move(checked).status();
      framing = *checked;
    }
    if (framing == Framing::kValid) co_return candidate;
  }
  co_return file_size_bytes_;
}

io::Task<Result<bool>> ManifestReader::ReadRecord(std::string* record) {
  if (state_ == State::kEnded) co_return false;
  if (state_ == State::kFailed) co_return error_;
  if (offset_ == file_size_bytes_) {
    state_ = State::kEnded;
    co_return false;
  }
  std::uint32_t length = 0;
  Result<Framing> framing = co_await CheckAt(offset_, &length);
  Status status;
  if (!framing.ok()) {
    status = std::move(framing).status();
  } else if (*framing == Framing::kValid) {
    record->assign(Buffered(offset_ + kManifestRecordHeaderBytes, length));
    last_record_offset_ = offset_;
    offset_ += kManifestRecordHeaderBytes + length;
    CFS_ASSERT(offset_ <= file_size_bytes_);
    co_return true;
  } else {
    // A damaged record: a torn tail, unless a valid record follows (the recovery rule).
    const std::string problem = RecordAt(offset_) + ": " + DescribeProblem(offset_, *framing);
    Result<std::uint64_t> next = co_await FindValidRecordAfter(offset_);
    if (!next.ok()) {
      status = std::move(next).status();
    } else if (*next == file_size_bytes_) {
      state_ = State::kEnded;
      torn_tail_reason_ = problem;
      co_return false;
    } else {
      status = Status::Corruption(path() + ": " + problem + "; a valid record follows at offset " +
                                  std::to_string(*next));
    }
  }
  CFS_ASSERT(!status.ok());
  state_ = State::kFailed;
  error_ = status;
  co_return status;
}

// ---------------------------------------------------------------------------------------------
// ReadManifest

io::Task<Result<ManifestSummary>> ReadManifest(std::unique_ptr<RandomAccessFile> file,
                                               ManifestEditCallback on_edit) {
  CFS_ASSERT(on_edit != nullptr);
  ManifestReader reader(std::move(file));
  ManifestSummary summary;
  summary.file_size_bytes = reader.file_size_bytes();
  std::string record;
  VersionEdit edit;
  // Bounded: each record takes at least kManifestRecordHeaderBytes + 1 bytes of the file.
  while (true) {
    Result<bool> more = co_await reader.ReadRecord(&record);
    if (!more.ok()) co_return std::move(more).status();
    if (!*more) break;
    const std::uint64_t offset = reader.last_record_offset();
    const std::string context = reader.path() + ": edit at offset " + std::to_string(offset);
    Status status = edit.DecodeFrom(record);
    if (!status.ok()) co_return std::move(status).WithContext(context);
    if (summary.edit_count == 0) {
      if (!edit.has_format_version()) {
        co_return Status::Corruption(context + ": the first edit has no format version");
      }
      summary.format_version = edit.format_version();
    } else if (edit.has_format_version() && edit.format_version() != summary.format_version) {
      co_return Status::Corruption(
          context + ": format version " + std::to_string(edit.format_version()) +
          " differs from the first edit's " + std::to_string(summary.format_version));
    }
    status = on_edit(edit, offset);
    if (!status.ok()) co_return std::move(status).WithContext(context);
    ++summary.edit_count;
  }
  summary.valid_length_bytes = reader.valid_length_bytes();
  summary.torn_tail_reason = reader.torn_tail_reason();
  if (summary.edit_count == 0) {
    std::string msg = reader.path() + ": holds no complete edit";
    if (reader.torn_tail()) msg += " (" + summary.torn_tail_reason + ")";
    co_return Status::Corruption(msg);
  }
  CFS_ASSERT(summary.format_version >= 1);
  CFS_ASSERT(summary.valid_length_bytes <= summary.file_size_bytes);
  co_return summary;
}

io::Task<Result<ManifestSummary>> ReadManifest(Env* env, std::string path,
                                               ManifestEditCallback on_edit) {
  CFS_ASSERT(env != nullptr);
  Result<std::unique_ptr<RandomAccessFile>> file = co_await env->NewRandomAccessFile(path);
  if (!file.ok()) co_return std::move(file).status();
  co_return co_await ReadManifest(std::move(file).value(), std::move(on_edit));
}

}  // namespace cascadefs::engine
