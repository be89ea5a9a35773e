#include "fusefs/chunk_store.h"

#include <array>
#include <cmath>
#include <map>
#include <mutex>

#include <zstd.h>

#include "engine/assert.h"
#include "engine/db.h"
#include "fusefs/chunker.h"

namespace cascadefs::fusefs {
namespace {

// The first byte of a stored chunk value (docs/formats/chunks.md, "Stored value").
constexpr char kEncodingRaw = 0;
constexpr char kEncodingZstd = 1;

// The compressibility guess (LooksIncompressible): bytes sampled, and the entropy of their
// distribution above which zstd is not tried. Random or already compressed bytes (photos,
// video, archives) sample at ~7.9 bits per byte (the estimate from 2,048 samples of uniform
// bytes is 8 - 255 / (2 x 2048 x ln 2) = 7.91); text at 4-6. zstd level 1 on such a chunk
// took 17% of the daemon's CPU in a sequential write of random data, for nothing.
constexpr std::size_t kEntropySampleBytes = 2048;
constexpr double kIncompressibleBitsPerByte = 7.6;

Status ChunkCorruption(const ChunkName& name, const std::string& what) {
  return Status::Corruption("chunk " + name.ToHex() + ": " + what);
}

class EngineChunkStore final : public ChunkStore {
 public:
  EngineChunkStore(engine::DB* db, const EngineChunkStoreOptions& options)
      : db_(db), options_(options) {}

  io::Task<Result<std::string>> Get(const ChunkName& name) override {
    std::string value;
    Status status = co_await db_->GetAsync(engine::ReadOptions(), ChunkKey(name), &value);
    stats_.reads.fetch_add(1, std::memory_order_relaxed);
    if (status.IsNotFound()) co_return MissingChunk(name);
    if (!status.ok()) co_return status.WithContext("chunk " + name.ToHex());
    co_return DecodeChunkValue(name, value);
  }

  io::Task<Result<PutOutcome>> Put(const ChunkName& name, std::string_view data) override {
    CFS_DASSERT(name == ChunkName::Of(data));
    const std::string key = ChunkKey(name);
    std::string existing;
    Status status = co_await db_->GetAsync(engine::ReadOptions(), key, &existing);
    if (status.ok()) {
      stats_.chunks_deduplicated.fetch_add(1, std::memory_order_relaxed);
      co_return PutOutcome{};
    }
    if (!status.IsNotFound()) co_return status.WithContext("chunk " + name.ToHex());
    const std::string value = EncodeChunkValue(data, options_.zstd_level);
    status = co_await db_->PutAsync(engine::WriteOptions(), key, value);
    if (!status.ok()) co_return status.WithContext("chunk " + name.ToHex());
    stats_.chunks_added.fetch_add(1, std::memory_order_relaxed);
    stats_.logical_bytes_added.fetch_add(data.size(), std::memory_order_relaxed);
    stats_.stored_bytes_added.fetch_add(value.size(), std::memory_order_relaxed);
    co_return PutOutcome{true, value.size()};
  }

  io::Task<Result<bool>> Contains(const ChunkName& name) override {
    std::string value;
    Status status = co_await db_->GetAsync(engine::ReadOptions(), ChunkKey(name), &value);
    if (status.ok()) co_return true;
    if (status.IsNotFound()) co_return false;
    co_return status.WithContext("chunk " + name.ToHex());
  }

 private:
  static Status MissingChunk(const ChunkName& name) {
    return Status::NotFound("chunk " + name.ToHex() + ": not in the store");
  }

  engine::DB* db_;
  EngineChunkStoreOptions options_;
};

class MemoryChunkStore final : public ChunkStore {
 public:
  explicit MemoryChunkStore(int zstd_level) : zstd_level_(zstd_level) {}

  io::Task<Result<std::string>> Get(const ChunkName& name) override {
    stats_.reads.fetch_add(1, std::memory_order_relaxed);
    std::string value;
    {
      std::lock_guard lock(mutex_);
      auto it = chunks_.find(name);
      if (it == chunks_.end()) {
        co_return Status::NotFound("chunk " + name.ToHex() + ": not in the store");
      }
      value = it->second;
    }
    co_return DecodeChunkValue(name, value);
  }

  io::Task<Result<PutOutcome>> Put(const ChunkName& name, std::string_view data) override {
    CFS_DASSERT(name == ChunkName::Of(data));
    {
      std::lock_guard lock(mutex_);
      if (chunks_.contains(name)) {
        stats_.chunks_deduplicated.fetch_add(1, std::memory_order_relaxed);
        co_return PutOutcome{};
      }
    }
    std::string value = EncodeChunkValue(data, zstd_level_);
    const std::uint64_t stored = value.size();
    {
      std::lock_guard lock(mutex_);
      if (!chunks_.emplace(name, std::move(value)).second) co_return PutOutcome{};
    }
    stats_.chunks_added.fetch_add(1, std::memory_order_relaxed);
    stats_.logical_bytes_added.fetch_add(data.size(), std::memory_order_relaxed);
    stats_.stored_bytes_added.fetch_add(stored, std::memory_order_relaxed);
    co_return PutOutcome{true, stored};
  }

  io::Task<Result<bool>> Contains(const ChunkName& name) override {
    std::lock_guard lock(mutex_);
    co_return chunks_.contains(name);
  }

 private:
  const int zstd_level_;
  std::mutex mutex_;
  std::map<ChunkName, std::string> chunks_;
};

}  // namespace

std::string ChunkKey(const ChunkName& name) {
  std::string key;
  key.reserve(1 + ChunkName::kEncodedSize);
  key.push_back('c');
  key.append(name.encoded());
  return key;
}

bool LooksIncompressible(std::string_view data) {
  if (data.size() < kEntropySampleBytes) return false;
  // Every stride-th byte, kEntropySampleBytes of them, spread over the whole chunk.
  const std::size_t stride = data.size() / kEntropySampleBytes;
  std::array<std::uint32_t, 256> counts{};
  for (std::size_t i = 0; i < kEntropySampleBytes; ++i) {
    ++counts[static_cast<unsigned char>(data[i * stride])];
  }
  double bits = 0;
  for (const std::uint32_t count : counts) {
    if (count == 0) continue;
    const double p = static_cast<double>(count) / kEntropySampleBytes;
    bits -= p * std::log2(p);
  }
  return bits > kIncompressibleBitsPerByte;
}

std::string EncodeChunkValue(std::string_view data, int zstd_level) {
  std::string value;
  if (data.size() >= 64 && !LooksIncompressible(data)) {
    value.resize(1 + ZSTD_compressBound(data.size()));
    const std::size_t size =
        ZSTD_compress(value.data() + 1, value.size() - 1, data.data(), data.size(), zstd_level);
    // Compressed only when it saves at least 1/16: below that, decompressing on every read
    // costs more than the bytes it saves.
    if (!ZSTD_isError(size) && size <= data.size() - data.size() / 16) {
      value[0] = kEncodingZstd;
      value.resize(1 + size);
      return value;
    }
  }
  value.assign(1, kEncodingRaw);
  value.append(data);
  return value;
}

Result<std::string> DecodeChunkValue(const ChunkName& name, std::string_view value) {
  if (value.empty()) return ChunkCorruption(name, "empty stored value");
  std::string data;
  const std::string_view payload = value.substr(1);
  if (value[0] == kEncodingRaw) {
    data.assign(payload);
  } else if (value[0] == kEncodingZstd) {
    const unsigned long long size = ZSTD_getFrameContentSize(payload.data(), payload.size());
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
      return ChunkCorruption(name, "zstd frame without a valid content size");
    }
    if (size > kChunkSizeMax) {
      return ChunkCorruption(
          name, "zstd frame claims " + std::to_string(size) + " bytes, above the chunk limit");
    }
    data.resize(size);
    const std::size_t got =
        ZSTD_decompress(data.data(), data.size(), payload.data(), payload.size());
    if (ZSTD_isError(got) || got != size) {
      return ChunkCorruption(name, "zstd frame does not decode");
    }
  } else {
    return ChunkCorruption(
        name, "unknown encoding " + std::to_string(static_cast<unsigned char>(value[0])));
  }
  if (!name.Matches(data)) return ChunkCorruption(name, "bytes do not hash to the chunk's name");
  return data;
}

std::unique_ptr<ChunkStore> NewEngineChunkStore(engine::DB* db,
                                                const EngineChunkStoreOptions& options) {
  return std::make_unique<EngineChunkStore>(db, options);
}

std::unique_ptr<ChunkStore> NewMemoryChunkStore(int zstd_level) {
  return std::make_unique<MemoryChunkStore>(zstd_level);
}

}  // namespace cascadefs::fusefs
