// format.h: the byte layout of an SST file. docs/formats/sst.md is the full page.
//
// File: data blocks | filter block | index partitions | top-level index | properties | footer.
// Every block is followed by a 5-byte trailer: compression u8 | Checksum32(contents +
// compression byte, seed kBlockChecksumSeed) u32. Uncompressed tables start every data block
// at a multiple of kBlockAlignBytes (zero padding between blocks).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/options.h"
#include "engine/result.h"
#include "engine/status.h"

namespace cascadefs::engine {

inline constexpr std::uint64_t kSstMagic = 0x3130545353534143ull;  // "CASSST01" little-endian
inline constexpr std::uint32_t kSstFormatVersion = 1;
inline constexpr std::size_t kBlockTrailerBytes = 5;
inline constexpr std::uint64_t kBlockChecksumSeed = 0x43415343424c4b31ull;  // "CASCBLK1"
inline constexpr std::uint64_t kFooterChecksumSeed = 0x43415343465452ull;
inline constexpr std::uint64_t kBlockAlignBytes = 4096;
// Footer: 3 handles (offset u64, size u64) | format version u32 | reserved u32 (0)
//         | magic u64 | checksum u32 over the 64 bytes before it.
inline constexpr std::size_t kFooterBytes = 3 * 16 + 4 + 4 + 8 + 4;
static_assert(kFooterBytes == 68, "footer layout");
// Largest block (contents as stored) a reader accepts: a data block holds at most one value
// of kValueSizeMax beyond its target size.
inline constexpr std::uint64_t kBlockSizeMax = kValueSizeMax + kKeySizeMax + (1 << 20);
// Largest filter or index region a reader loads at Open.
inline constexpr std::uint64_t kMetaRegionSizeMax = std::uint64_t{1} << 30;

enum class BlockCompression : std::uint8_t { kNone = 0, kZstd = 1 };

struct BlockHandle {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;  // bytes of contents as stored, without the trailer
};

struct Footer {
  BlockHandle top_index;
  BlockHandle filter;
  BlockHandle properties;
  std::uint32_t format_version = kSstFormatVersion;
  void EncodeTo(std::string* dst) const;
  // Corruption (bad magic, checksum) or NotSupported (newer format), naming `path`.
  Status DecodeFrom(std::string_view src, const std::string& path);
};

// Appends `contents` (compressed when that saves at least 1/8) and its trailer to `dst`.
void AppendBlock(std::string_view contents, Compression compression, int zstd_level,
                 std::string* dst, BlockHandle* handle, std::uint64_t block_offset);

// Verifies a stored block (contents + trailer, as read from the file) and returns its
// uncompressed contents. Corruption naming `path` and the offset on any damage.
Result<std::string> DecodeBlock(std::string_view stored, const std::string& path,
                                std::uint64_t offset);

// Reads the block at `handle` and decodes it.
io::Task<Result<std::string>> ReadBlock(const RandomAccessFile& file, const BlockHandle& handle);

class BlockCache;

struct TableOptions {
  std::uint32_t block_size_bytes = 4096;
  std::uint32_t block_restart_interval = 16;
  std::uint32_t index_partition_size_bytes = 4096;
  std::uint32_t bloom_bits_per_key = 10;
  Compression compression = Compression::kNone;
  int zstd_level = 1;
  // Data blocks read by tables go through this cache (not owned); null: no cache.
  BlockCache* block_cache = nullptr;
};

}  // namespace cascadefs::engine
