#include "sst/format.h"

#include <zstd.h>

#include "util/checksum.h"
#include "util/coding.h"

namespace cascadefs::engine {

void Footer::EncodeTo(std::string* dst) const {
  const std::size_t start = dst->size();
  for (const BlockHandle* handle : {&top_index, &filter, &properties}) {
    PutFixed64(dst, handle->offset);
    PutFixed64(dst, handle->size);
  }
  PutFixed32(dst, format_version);
  PutFixed32(dst, 0);
  PutFixed64(dst, kSstMagic);
  PutFixed32(dst, Checksum32(dst->data() + start, 64, kFooterChecksumSeed));
}

Status Footer::DecodeFrom(std::string_view src, const std::string& path) {
  if (src.size() != kFooterBytes) return Status::Corruption(path + ": file too short for a footer");
  if (DecodeFixed64(src.data() + 56) != kSstMagic) {
    return Status::Corruption(path + ": not an SST file (bad magic in the footer)");
  }
  if (Checksum32(src.data(), 64, kFooterChecksumSeed) != DecodeFixed32(src.data() + 64)) {
    return Status::Corruption(path + ": footer checksum mismatch");
  }
  format_version = DecodeFixed32(src.data() + 48);
  if (format_version > kSstFormatVersion) {
    return Status::NotSupported(path + ": SST format version " + std::to_string(format_version) +
                                " is newer than this cascadefs supports (" +
                                std::to_string(kSstFormatVersion) + ")");
  }
  if (format_version == 0) return Status::Corruption(path + ": SST format version 0");
  BlockHandle* handles[] = {&top_index, &filter, &properties};
  for (int i = 0; i < 3; ++i) {
    handles[i]->offset = DecodeFixed64(src.data() + 16 * i);
    handles[i]->size = DecodeFixed64(src.data() + 16 * i + 8);
  }
  return Status::OK();
}

void AppendBlock(std::string_view contents, Compression compression, int zstd_level,
                 std::string* dst, BlockHandle* handle, std::uint64_t block_offset) {
  std::string compressed;
  BlockCompression type = BlockCompression::kNone;
  std::string_view stored = contents;
  if (compression == Compression::kZstd && !contents.empty()) {
    compressed.resize(ZSTD_compressBound(contents.size()));
    const std::size_t size = ZSTD_compress(compressed.data(), compressed.size(), contents.data(),
                                           contents.size(), zstd_level);
    if (!ZSTD_isError(size) && size < contents.size() - contents.size() / 8) {
      compressed.resize(size);
      stored = compressed;
      type = BlockCompression::kZstd;
    }
  }
  handle->offset = block_offset;
  handle->size = stored.size();
  const std::size_t start = dst->size();
  dst->append(stored);
  dst->push_back(static_cast<char>(type));
  PutFixed32(dst, Checksum32(dst->data() + start, stored.size() + 1, kBlockChecksumSeed));
}

Result<std::string> DecodeBlock(std::string_view stored, const std::string& path,
                                std::uint64_t offset) {
  auto corrupt = [&](const std::string& what) {
    return Status::Corruption(path + ": block at offset " + std::to_string(offset) + ": " + what);
  };
  if (stored.size() < kBlockTrailerBytes) return corrupt("shorter than its trailer");
  const std::size_t size = stored.size() - kBlockTrailerBytes;
  if (Checksum32(stored.data(), size + 1, kBlockChecksumSeed) !=
      DecodeFixed32(stored.data() + size + 1)) {
    return corrupt("checksum mismatch");
  }
  const auto type = static_cast<std::uint8_t>(stored[size]);
  if (type == static_cast<std::uint8_t>(BlockCompression::kNone)) {
    return std::string(stored.substr(0, size));
  }
  if (type != static_cast<std::uint8_t>(BlockCompression::kZstd)) {
    return corrupt("unknown compression type " + std::to_string(type));
  }
  const unsigned long long original = ZSTD_getFrameContentSize(stored.data(), size);
  if (original == ZSTD_CONTENTSIZE_ERROR || original == ZSTD_CONTENTSIZE_UNKNOWN ||
      original > kBlockSizeMax) {
    return corrupt("bad zstd frame size");
  }
  std::string out(static_cast<std::size_t>(original), '\0');
  const std::size_t got = ZSTD_decompress(out.data(), out.size(), stored.data(), size);
  if (ZSTD_isError(got) || got != out.size()) return corrupt("zstd decompression failed");
  return out;
}

io::Task<Result<std::string>> ReadBlock(const RandomAccessFile& file, const BlockHandle& handle) {
  if (handle.size > kBlockSizeMax ||
      handle.offset + handle.size + kBlockTrailerBytes > file.size_bytes()) {
    co_return Status::Corruption(file.path() + ": block handle at offset " +
                                 std::to_string(handle.offset) + " lies outside the file");
  }
  std::string stored(handle.size + kBlockTrailerBytes, '\0');
  auto got = co_await file.Read(handle.offset, stored.size(), stored.data());
  if (!got.ok()) co_return got.status();
  if (got.value() != stored.size()) {
    co_return Status::Corruption(file.path() + ": block at offset " +
                                 std::to_string(handle.offset) + " is cut short");
  }
  co_return DecodeBlock(stored, file.path(), handle.offset);
}

}  // namespace cascadefs::engine
