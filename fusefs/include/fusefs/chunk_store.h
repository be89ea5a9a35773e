// chunk_store.h: where chunks live, by name (docs/formats/chunks.md, "Storage").
//
// A ChunkStore maps a ChunkName to the chunk's bytes and holds each name once, however many
// files refer to it. Get verifies what it returns against the name: damaged bytes come back as
// Corruption naming the chunk, never as data. The engine-backed store keeps each chunk under
// key "c" + name, its value a one-byte encoding (raw or zstd) and the payload; a chunk is
// compressed when that saves at least 1/16 of its size.
//
// Every call is a coroutine so the daemon's handlers never block an IO thread; tools and tests
// run them with Scheduler::BlockOn.
//
// Thread safety: the engine store may be used from many tasks at once (the engine serializes
// writes). Stats are atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/io/task.h"
#include "engine/result.h"
#include "engine/status.h"
#include "fusefs/chunk_name.h"

namespace cascadefs::engine {
class DB;
}

namespace cascadefs::fusefs {

struct PutOutcome {
  bool added = false;  // false: the store already held this name
  std::uint64_t stored_bytes =
      0;  // bytes the new value occupies (encoding byte included); 0 if !added
};

struct ChunkStoreStats {
  std::atomic<std::uint64_t> chunks_added{0};
  std::atomic<std::uint64_t> chunks_deduplicated{0};  // Puts of a name already held
  std::atomic<std::uint64_t> logical_bytes_added{0};  // uncompressed bytes of added chunks
  std::atomic<std::uint64_t> stored_bytes_added{0};   // their encoded size
  std::atomic<std::uint64_t> reads{0};
};

class ChunkStore {
 public:
  virtual ~ChunkStore() = default;

  // The chunk's uncompressed bytes, verified against `name`. NotFound when absent, Corruption
  // naming the chunk when its stored bytes do not decode or do not hash to the name.
  virtual io::Task<Result<std::string>> Get(const ChunkName& name) = 0;

  // Stores `data` under `name` unless already held. `name` must be ChunkName::Of(data)
  // (asserted in debug builds). Not durable by itself: the engine's WAL sync rules apply.
  virtual io::Task<Result<PutOutcome>> Put(const ChunkName& name, std::string_view data) = 0;

  virtual io::Task<Result<bool>> Contains(const ChunkName& name) = 0;

  // The chunks `names`, in order, each as Get returns it. A read of many leaves (a large FUSE
  // read) asks for them together so a store that can serve many at once does: the chunk cache
  // answers with one promised read. The default runs the Gets concurrently.
  // (Inline: a virtual defined out of line would be the key function, and the library, built
  // without RTTI, would then own the class's typeinfo that RTTI-enabled tests need.)
  virtual io::Task<std::vector<Result<std::string>>> GetMany(std::vector<ChunkName> names) {
    std::vector<io::Task<Result<std::string>>> reads;
    reads.reserve(names.size());
    for (const ChunkName& name : names) reads.push_back(Get(name));
    co_return co_await io::WhenAll(std::move(reads));
  }

  const ChunkStoreStats& stats() const { return stats_; }

 protected:
  ChunkStoreStats stats_;
};

struct EngineChunkStoreOptions {
  int zstd_level = 1;  // 1..19; chunks are written once and read often, so speed wins by default
};

// Chunks in `db` (not owned; must outlive the store) under the "c" key prefix.
std::unique_ptr<ChunkStore> NewEngineChunkStore(engine::DB* db,
                                                const EngineChunkStoreOptions& options = {});

// Chunks in memory, encoded exactly as the engine store encodes them (so stored_bytes agree):
// for tools that measure a recipe without a store on disk (chunk_bench) and for tests.
std::unique_ptr<ChunkStore> NewMemoryChunkStore(int zstd_level = 1);

// The engine key of a chunk: "c" + its 17-byte name.
std::string ChunkKey(const ChunkName& name);

// The stored value format, shared by every store and by fsck/inspect.
// EncodeChunkValue compresses when it saves >= 1/16, and does not try when LooksIncompressible;
// DecodeChunkValue verifies against `name`.
std::string EncodeChunkValue(std::string_view data, int zstd_level);
// True when a sample of `data` (2,048 bytes spread over it) has a byte distribution so even
// (entropy above 7.6 bits per byte) that compression would not pay: random or already
// compressed bytes. False for data under 2 KiB. It can miss a chunk made of one random block
// repeated (an even distribution that LZ would still shrink); that chunk is stored raw.
bool LooksIncompressible(std::string_view data);
Result<std::string> DecodeChunkValue(const ChunkName& name, std::string_view value);

}  // namespace cascadefs::fusefs
