// cached_chunk_store.cc: the chunk cache in front of the store (cached_chunk_store.h).
#include "fusefs/cached_chunk_store.h"

#include <algorithm>
#include <mutex>
#include <optional>
#include <utility>

#include "engine/io/wait_queue.h"

namespace cascadefs::fusefs {

CachedChunkStore::CachedChunkStore(std::unique_ptr<ChunkStore> inner, cache::ChunkCache* cache,
                                   ChunkReadTrace trace)
    : inner_(std::move(inner)), cache_(cache), trace_(std::move(trace)) {}

void CachedChunkStore::Offer(const ChunkName& name, const Result<std::string>& read) {
  if (!read.ok() || cache_ == nullptr) return;
  // OK whether queued or dropped (a full queue, not admitted): never waits for the writer.
  Status queued = cache_->Insert(name.encoded(), read.value());
  static_cast<void>(queued);
}

io::Task<Result<std::string>> CachedChunkStore::Get(const ChunkName& name) {
  if (cache_ == nullptr) {
    Result<std::string> read = co_await inner_->Get(name);
    if (trace_ && read.ok()) trace_(name, read.value().size());
    co_return read;
  }
  std::string value;
  Status cached = co_await cache_->LookupAsync(name.encoded(), &value);
  if (cached.ok()) {
    if (name.Matches(value)) {
      cache_stats_.hits.fetch_add(1, std::memory_order_relaxed);
      if (trace_) trace_(name, value.size());
      co_return value;
    }
    cache_stats_.bad_entries.fetch_add(1, std::memory_order_relaxed);
  }
  cache_stats_.misses.fetch_add(1, std::memory_order_relaxed);
  Result<std::string> read = co_await inner_->Get(name);
  if (trace_ && read.ok()) trace_(name, read.value().size());
  Offer(name, read);
  co_return read;
}

io::Task<std::vector<Result<std::string>>> CachedChunkStore::GetMany(std::vector<ChunkName> names) {
  if (cache_ == nullptr) {
    std::vector<Result<std::string>> out = co_await inner_->GetMany(names);
    for (std::size_t i = 0; trace_ && i < out.size(); ++i) {
      if (out[i].ok()) trace_(names[i], out[i].value().size());
    }
    co_return out;
  }
  if (names.size() <= 1) {
    std::vector<Result<std::string>> out;
    for (const ChunkName& name : names) out.push_back(co_await Get(name));
    co_return out;
  }
  // The deliveries of the promise land here, from the cache's reader thread (or this one,
  // inside Promise). `remaining` counts promised chunks not yet delivered; the task waits for
  // it to reach 0 before this frame (which the callback writes into) can end.
  struct Deliveries {
    std::mutex mutex;
    io::WaitQueue delivered;
    std::uint32_t remaining = 0;                     // GUARDED_BY(mutex)
    std::vector<std::optional<std::string>> values;  // GUARDED_BY(mutex); nullopt: not served
  } deliveries;
  deliveries.values.resize(names.size());
  std::vector<std::string_view> keys;
  keys.reserve(names.size());
  for (const ChunkName& name : names) keys.push_back(name.encoded());
  {
    std::lock_guard lock(deliveries.mutex);
    // Set before Promise can deliver anything: a delivery decrements it.
    deliveries.remaining = static_cast<std::uint32_t>(names.size());
  }
  cache::PromiseResult promise =
      cache_->Promise(keys, [&deliveries, &names](const cache::PromisedChunk& chunk) {
        std::lock_guard lock(deliveries.mutex);
        if (chunk.status.ok() && names[chunk.key_index].Matches(chunk.value)) {
          deliveries.values[chunk.key_index] = std::string(chunk.value);
        }
        if (--deliveries.remaining == 0) deliveries.delivered.NotifyAll();
      });
  {
    // Exactly `promised` deliveries come (the keys the cache does not hold, never): take the
    // others off the count.
    std::lock_guard lock(deliveries.mutex);
    deliveries.remaining -= static_cast<std::uint32_t>(names.size()) - promise.promised;
  }
  cache_stats_.promised_reads.fetch_add(1, std::memory_order_relaxed);
  // The store reads of the missing ones run while the cache delivers the rest.
  std::vector<ChunkName> missing_names;
  missing_names.reserve(promise.missing.size());
  for (std::uint32_t index : promise.missing) missing_names.push_back(names[index]);
  std::vector<Result<std::string>> read_missing = co_await inner_->GetMany(missing_names);
  std::vector<Result<std::string>> out(names.size(), Status::NotFound("not read"));
  for (std::size_t i = 0; i < promise.missing.size(); ++i) {
    Offer(names[promise.missing[i]], read_missing[i]);
    out[promise.missing[i]] = std::move(read_missing[i]);
  }
  std::vector<std::uint32_t> refetch;
  {
    std::unique_lock lock(deliveries.mutex);
    while (deliveries.remaining > 0) co_await deliveries.delivered.Wait(lock);
    for (std::uint32_t i = 0; i < names.size(); ++i) {
      if (deliveries.values[i]) {
        out[i] = std::move(*deliveries.values[i]);
      } else if (std::find(promise.missing.begin(), promise.missing.end(), i) ==
                 promise.missing.end()) {
        refetch.push_back(i);  // promised, but damaged or unreadable in the cache
      }
    }
  }
  const std::uint64_t served = names.size() - promise.missing.size() - refetch.size();
  cache_stats_.hits.fetch_add(served, std::memory_order_relaxed);
  cache_stats_.misses.fetch_add(promise.missing.size() + refetch.size(), std::memory_order_relaxed);
  if (!refetch.empty()) {
    cache_stats_.bad_entries.fetch_add(refetch.size(), std::memory_order_relaxed);
    std::vector<ChunkName> again;
    for (std::uint32_t i : refetch) again.push_back(names[i]);
    std::vector<Result<std::string>> read_again = co_await inner_->GetMany(std::move(again));
    for (std::size_t j = 0; j < refetch.size(); ++j) out[refetch[j]] = std::move(read_again[j]);
  }
  if (trace_) {
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (out[i].ok()) trace_(names[i], out[i].value().size());
    }
  }
  co_return out;
}

io::Task<Result<PutOutcome>> CachedChunkStore::Put(const ChunkName& name, std::string_view data) {
  return inner_->Put(name, data);
}

io::Task<Result<bool>> CachedChunkStore::Contains(const ChunkName& name) {
  return inner_->Contains(name);
}

}  // namespace cascadefs::fusefs
