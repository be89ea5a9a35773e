// cached_chunk_store.h: the chunk cache (cache/chunk_cache.h) in front of a chunk store, for the
// filesystem's reads (docs/fusefs.md, "The chunk cache").
//
// Get looks in the cache first and inserts what it reads from the store; GetMany makes one
// promised read of the cache for all its names and reads only the ones the cache lacks from
// the store, concurrently with the cache's deliveries. Every chunk the cache hands back is
// hashed against its name before use (the cache's own checksums catch damage on disk; this
// catches anything else): a mismatch is read from the store instead, so the cache can make a
// read slower, never wrong. Put goes straight to the store: a written chunk is cached when it
// is read (the cache admits a chunk the second time it is offered).
//
// Thread safety: as the inner store; the cache is safe for concurrent use.
#pragma once

#include <atomic>
#include <functional>
#include <memory>

#include "cache/chunk_cache.h"
#include "fusefs/chunk_store.h"

namespace cascadefs::fusefs {

struct CachedChunkStoreStats {
  std::atomic<std::uint64_t> hits{0};            // chunks served by the cache (Get or GetMany)
  std::atomic<std::uint64_t> misses{0};          // chunks read from the store
  std::atomic<std::uint64_t> bad_entries{0};     // cache answers that did not hash to the name
  std::atomic<std::uint64_t> promised_reads{0};  // GetMany calls answered by a promise
};

// Called with every chunk a read asks for, before the cache is looked at: the stream of
// requests bench/cache_bench replays (`--trace`). May be called from many threads at once.
using ChunkReadTrace = std::function<void(const ChunkName& name, std::size_t length)>;

class CachedChunkStore final : public ChunkStore {
 public:
  // `inner` is owned; `cache` is not and must outlive the store. `cache` may be null when
  // only `trace` is wanted (the store then reads the inner store directly).
  CachedChunkStore(std::unique_ptr<ChunkStore> inner, cache::ChunkCache* cache,
                   ChunkReadTrace trace = {});

  io::Task<Result<std::string>> Get(const ChunkName& name) override;
  io::Task<std::vector<Result<std::string>>> GetMany(std::vector<ChunkName> names) override;
  io::Task<Result<PutOutcome>> Put(const ChunkName& name, std::string_view data) override;
  io::Task<Result<bool>> Contains(const ChunkName& name) override;

  const CachedChunkStoreStats& cache_stats() const { return cache_stats_; }

 private:
  // A chunk read from the store, offered to the cache (which may drop it).
  void Offer(const ChunkName& name, const Result<std::string>& read);

  std::unique_ptr<ChunkStore> inner_;
  cache::ChunkCache* const cache_;
  const ChunkReadTrace trace_;
  CachedChunkStoreStats cache_stats_;
};

}  // namespace cascadefs::fusefs
