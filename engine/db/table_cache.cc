#include "db/table_cache.h"

#include <utility>

#include "manifest/filename.h"

namespace cascadefs::engine {

TableCache::TableCache(Env* env, std::string dir, const TableOptions& options,
                       std::uint32_t capacity)
    : env_(env), dir_(std::move(dir)), options_(options), capacity_(capacity) {
  CFS_ASSERT(capacity_ > 0);
}

io::Task<Result<std::shared_ptr<Table>>> TableCache::Get(std::uint64_t file_number) {
  {
    std::lock_guard guard(mutex_);
    auto it = entries_.find(file_number);
    if (it != entries_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru_position);
      co_return it->second.table;
    }
  }
  const std::string path = SstFileName(dir_, file_number);
  auto file = co_await env_->NewRandomAccessFile(path);
  if (!file.ok()) co_return file.status();
  auto opened = co_await Table::Open(options_, std::move(file).value());
  if (!opened.ok()) co_return opened.status();
  std::shared_ptr<Table> table(std::move(opened).value());
  opens_.fetch_add(1, std::memory_order_relaxed);

  std::lock_guard guard(mutex_);
  auto [it, inserted] = entries_.try_emplace(file_number);
  if (!inserted) {
    lru_.splice(lru_.begin(), lru_, it->second.lru_position);
    co_return it->second.table;  // another task opened it meanwhile; ours closes now
  }
  lru_.push_front(file_number);
  it->second.table = table;
  it->second.lru_position = lru_.begin();
  while (entries_.size() > capacity_) {
    const std::uint64_t victim = lru_.back();
    lru_.pop_back();
    auto victim_it = entries_.find(victim);
    evicted_bloom_negatives_.fetch_add(victim_it->second.table->bloom_negatives(),
                                       std::memory_order_relaxed);
    entries_.erase(victim_it);
  }
  co_return table;
}

void TableCache::Evict(std::uint64_t file_number) {
  std::lock_guard guard(mutex_);
  auto it = entries_.find(file_number);
  if (it == entries_.end()) return;
  evicted_bloom_negatives_.fetch_add(it->second.table->bloom_negatives(),
                                     std::memory_order_relaxed);
  lru_.erase(it->second.lru_position);
  entries_.erase(it);
}

namespace {

class HoldingIterator final : public InternalIterator {
 public:
  HoldingIterator(std::shared_ptr<Table> table, bool use_block_cache)
      : table_(std::move(table)), inner_(table_->NewIterator(use_block_cache)) {}
  bool Valid() const override { return inner_->Valid(); }
  std::string_view key() const override { return inner_->key(); }
  std::string_view value() const override { return inner_->value(); }
  Status status() const override { return inner_->status(); }
  io::Task<void> SeekToFirst() override { return inner_->SeekToFirst(); }
  io::Task<void> SeekToLast() override { return inner_->SeekToLast(); }
  io::Task<void> Seek(std::string_view target) override { return inner_->Seek(target); }
  io::Task<void> Next() override { return inner_->Next(); }
  io::Task<void> Prev() override { return inner_->Prev(); }

 private:
  std::shared_ptr<Table> table_;  // declared first: destroyed after inner_
  std::unique_ptr<InternalIterator> inner_;
};

}  // namespace

std::unique_ptr<InternalIterator> NewTableIteratorHolding(std::shared_ptr<Table> table,
                                                          bool use_block_cache) {
  return std::make_unique<HoldingIterator>(std::move(table), use_block_cache);
}

std::uint64_t TableCache::BloomNegatives() const {
  std::uint64_t total = evicted_bloom_negatives_.load(std::memory_order_relaxed);
  std::lock_guard guard(mutex_);
  for (const auto& [number, entry] : entries_) total += entry.table->bloom_negatives();
  return total;
}

}  // namespace cascadefs::engine
