// vlog_file.cc: see vlog_file.h.
#include "vlog/vlog_file.h"

#include <chrono>
#include <string>
#include <utility>

#include <zstd.h>

#include "engine/assert.h"
#include "util/coding.h"

namespace cascadefs::engine {
namespace {

std::uint64_t NowNs() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

Status RecordError(const std::string& path, std::uint64_t offset, const Status& status) {
  return Status::Corruption(path + " at offset " + std::to_string(offset) + ": " +
                            std::string(status.message()));
}

}  // namespace

io::Task<Result<std::unique_ptr<VlogWriter>>> VlogWriter::Create(Env* env, std::string path,
                                                                 std::uint64_t number,
                                                                 VlogWriterOptions options) {
  auto file = co_await env->NewWritableFile(path, WriteMode::kCreateExclusive);
  if (!file.ok()) co_return file.status();
  std::unique_ptr<VlogWriter> writer(
      new VlogWriter(std::move(file).value(), std::move(path), number, options));
  writer->buffer_ = EncodeVlogFileHeader({.file_number = number, .created_ns = NowNs()});
  co_return writer;
}

VlogWriter::VlogWriter(std::unique_ptr<WritableFile> file, std::string path, std::uint64_t number,
                       VlogWriterOptions options)
    : file_(std::move(file)), path_(std::move(path)), number_(number), options_(options) {}

VlogWriter::~VlogWriter() = default;

io::Task<Result<ValuePointer>> VlogWriter::Add(std::string_view key, std::string_view value) {
  CFS_ASSERT(!finished_);
  if (key.size() > kVlogKeyBytesMax || value.size() > kVlogValueBytesMax) {
    co_return Status::InvalidArgument(path_ + ": key or value larger than a record may hold");
  }
  std::string compressed;
  VlogRecord record{.key = key, .value = value, .compression = VlogCompression::kNone};
  if (options_.zstd_level > 0 && !value.empty()) {
    compressed.resize(ZSTD_compressBound(value.size()));
    const std::size_t size = ZSTD_compress(compressed.data(), compressed.size(), value.data(),
                                           value.size(), options_.zstd_level);
    if (!ZSTD_isError(size) && size <= value.size() - value.size() / 8) {
      compressed.resize(size);
      record.value = compressed;
      record.compression = VlogCompression::kZstd;
    }
  }
  ValuePointer pointer;
  pointer.file_number = number_;
  pointer.offset = size_bytes();
  pointer.checksum = AppendVlogRecord(record, &buffer_);
  pointer.size = static_cast<std::uint32_t>(size_bytes() - pointer.offset);
  ++records_;
  value_bytes_ += record.value.size();
  if (buffer_.size() >= options_.buffer_bytes) {
    Status flushed = co_await Flush();
    if (!flushed.ok()) co_return flushed;
  }
  co_return pointer;
}

io::Task<Status> VlogWriter::Flush() {
  if (buffer_.empty()) co_return Status::OK();
  Status status = co_await file_->WriteAt(written_, buffer_);
  if (!status.ok()) co_return status;
  written_ += buffer_.size();
  buffer_.clear();
  co_return Status::OK();
}

io::Task<Status> VlogWriter::Sync() {
  CFS_CO_RETURN_IF_ERROR(co_await Flush());
  co_return co_await file_->Sync();
}

io::Task<Status> VlogWriter::Finish() {
  CFS_ASSERT(!finished_);
  finished_ = true;
  buffer_ += EncodeVlogFooter({.records = records_, .value_bytes = value_bytes_});
  Status status = co_await Sync();
  Status closed = co_await file_->Close();
  co_return status.ok() ? closed : status;
}

io::Task<Result<std::string>> VlogFileReader::ReadValue(const ValuePointer& pointer,
                                                        std::string_view key) const {
  if (pointer.offset < kVlogFileHeaderBytes ||
      pointer.offset + pointer.size > file_->size_bytes()) {
    co_return Status::Corruption(path() + ": a value pointer names bytes " +
                                 std::to_string(pointer.offset) + "+" +
                                 std::to_string(pointer.size) + " outside the file (" +
                                 std::to_string(file_->size_bytes()) + " bytes)");
  }
  std::string bytes(pointer.size, '\0');
  Result<std::size_t> got = co_await file_->Read(pointer.offset, pointer.size, bytes.data());
  if (!got.ok()) co_return got.status();
  if (got.value() != pointer.size) {
    co_return Status::Corruption(path() + " at offset " + std::to_string(pointer.offset) +
                                 ": the record is cut short");
  }
  co_return DecodeVlogValue(bytes, pointer, key, path());
}

Result<std::string> DecodeVlogValue(std::string_view bytes, const ValuePointer& pointer,
                                    std::string_view key, const std::string& path) {
  Result<VlogRecord> record = DecodeVlogRecord(bytes, &pointer.checksum);
  if (!record.ok()) return RecordError(path, pointer.offset, record.status());
  if (record.value().key != key) {
    return Status::Corruption(path + " at offset " + std::to_string(pointer.offset) +
                              ": the record holds another key than its pointer's");
  }
  if (record.value().compression == VlogCompression::kNone) {
    return std::string(record.value().value);
  }
  const std::string_view stored = record.value().value;
  const unsigned long long size = ZSTD_getFrameContentSize(stored.data(), stored.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
      size > kVlogValueBytesMax) {
    return Status::Corruption(path + " at offset " + std::to_string(pointer.offset) +
                              ": a compressed value without a valid size");
  }
  std::string value(static_cast<std::size_t>(size), '\0');
  const std::size_t out = ZSTD_decompress(value.data(), value.size(), stored.data(), stored.size());
  if (ZSTD_isError(out) || out != size) {
    return Status::Corruption(path + " at offset " + std::to_string(pointer.offset) +
                              ": the compressed value does not decompress");
  }
  return value;
}

io::Task<Status> ScanVlogRecords(const RandomAccessFile& file, std::uint64_t number,
                                 const VlogRecordVisitor& on_record, std::uint64_t* valid_end,
                                 std::uint64_t start, std::uint64_t max_bytes) {
  *valid_end = start;
  Result<std::size_t> got = std::size_t{0};
  if (start < kVlogFileHeaderBytes) {
    std::string header(kVlogFileHeaderBytes, '\0');
    got = co_await file.Read(0, header.size(), header.data());
    if (!got.ok()) co_return got.status();
    header.resize(got.value());
    Result<VlogFileHeader> decoded = DecodeVlogFileHeader(header);
    if (!decoded.ok()) co_return RecordError(file.path(), 0, decoded.status());
    if (decoded.value().file_number != number) {
      co_return Status::Corruption(file.path() + ": the header names file " +
                                   std::to_string(decoded.value().file_number));
    }
    start = kVlogFileHeaderBytes;
  }
  std::uint64_t offset = start;
  *valid_end = offset;
  constexpr std::size_t kPrefixBytes = 9;  // key length, value length, compression
  std::string bytes;
  for (;;) {  // bounded by the file's size: every step advances past one record
    if (offset > start && offset - start >= max_bytes) break;
    char prefix[kPrefixBytes];
    got = co_await file.Read(offset, kPrefixBytes, prefix);
    if (!got.ok()) co_return got.status();
    if (got.value() < kPrefixBytes) break;
    const std::uint64_t key_bytes = DecodeFixed32(prefix);
    const std::uint64_t value_bytes = DecodeFixed32(prefix + 4);
    if (key_bytes > kVlogKeyBytesMax || value_bytes > kVlogValueBytesMax) break;
    const std::size_t size = key_bytes + value_bytes + kVlogRecordOverheadBytes;
    bytes.resize(size);
    got = co_await file.Read(offset, size, bytes.data());
    if (!got.ok()) co_return got.status();
    if (got.value() < size) break;
    Result<VlogRecord> record = DecodeVlogRecord(bytes);
    if (!record.ok()) break;
    ValuePointer pointer;
    pointer.file_number = number;
    pointer.offset = offset;
    pointer.size = static_cast<std::uint32_t>(size);
    pointer.checksum = DecodeFixed32(bytes.data() + size - 4);
    CFS_CO_RETURN_IF_ERROR(on_record(pointer, record.value()));
    offset += size;
    *valid_end = offset;
  }
  co_return Status::OK();
}

}  // namespace cascadefs::engine
