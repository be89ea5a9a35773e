// table.cc: Table (table.h) and its two-level iterator.
#include "sst/table.h"

#include <algorithm>
#include <utility>

#include "sst/block.h"
#include "sst/block_cache.h"
#include "sst/bloom.h"
#include "util/coding.h"

namespace cascadefs::engine {

namespace {

Status Corrupt(const RandomAccessFile& file, std::uint64_t offset, const std::string& what) {
  return Status::Corruption(file.path() + ": block at offset " + std::to_string(offset) + ": " +
                            what);
}

std::string Where(const RandomAccessFile& file, std::uint64_t offset) {
  return file.path() + ": block at offset " + std::to_string(offset);
}

}  // namespace

io::Task<Result<std::unique_ptr<Table>>> Table::Open(const TableOptions& options,
                                                     std::unique_ptr<RandomAccessFile> file) {
  const std::uint64_t size = file->size_bytes();
  if (size < kFooterBytes) co_return Status::Corruption(file->path() + ": too short for an SST");
  std::string footer_bytes(kFooterBytes, '\0');
  auto got = co_await file->Read(size - kFooterBytes, kFooterBytes, footer_bytes.data());
  if (!got.ok()) co_return got.status();
  if (got.value() != kFooterBytes) co_return Status::Corruption(file->path() + ": short footer");
  Footer footer;
  CFS_CO_RETURN_IF_ERROR(footer.DecodeFrom(footer_bytes, file->path()));
  std::unique_ptr<Table> table(new Table(std::move(file)));
  table->block_cache_ = options.block_cache;
  if (table->block_cache_ != nullptr) table->cache_id_ = table->block_cache_->NewTableId();
  const RandomAccessFile& f = *table->file_;

  // Properties.
  auto properties = co_await ReadBlock(f, footer.properties);
  if (!properties.ok()) co_return properties.status();
  {
    std::string_view in(properties.value());
    std::uint32_t version = 0;
    std::uint64_t raw_keys = 0;
    std::uint64_t raw_values = 0;
    std::uint64_t blocks = 0;
    std::string_view smallest;
    std::string_view largest;
    if (!GetVarint32(&in, &version) || !GetVarint64(&in, &table->num_entries_) ||
        !GetVarint64(&in, &raw_keys) || !GetVarint64(&in, &raw_values) ||
        !GetVarint64(&in, &blocks) || !GetLengthPrefixed(&in, &smallest) ||
        !GetLengthPrefixed(&in, &largest)) {
      co_return Corrupt(f, footer.properties.offset, "malformed properties");
    }
    table->smallest_key_.assign(smallest);
    table->largest_key_.assign(largest);
  }

  // Filters.
  if (footer.filter.size > kMetaRegionSizeMax) {
    co_return Corrupt(f, footer.filter.offset, "filter block too large");
  }
  auto filter = co_await ReadBlock(f, footer.filter);
  if (!filter.ok()) co_return filter.status();
  {
    const std::string& bytes = filter.value();
    if (bytes.size() < 8) co_return Corrupt(f, footer.filter.offset, "filter block too short");
    const std::uint32_t count = DecodeFixed32(bytes.data() + bytes.size() - 4);
    const std::uint32_t filters_size = DecodeFixed32(bytes.data() + bytes.size() - 8);
    if (std::uint64_t{count} * 4 + 8 + filters_size != bytes.size()) {
      co_return Corrupt(f, footer.filter.offset, "filter block sizes do not add up");
    }
    table->filters_.assign(bytes.data(), filters_size);
    table->filter_offsets_.resize(count + 1);
    for (std::uint32_t i = 0; i < count; ++i) {
      table->filter_offsets_[i] = DecodeFixed32(bytes.data() + filters_size + std::size_t{4} * i);
      if (table->filter_offsets_[i] > filters_size ||
          (i > 0 && table->filter_offsets_[i] < table->filter_offsets_[i - 1])) {
        co_return Corrupt(f, footer.filter.offset, "filter offsets out of order");
      }
    }
    table->filter_offsets_[count] = filters_size;
  }

  // The top-level index, then every partition it names (in one read: they are contiguous).
  auto top_contents = co_await ReadBlock(f, footer.top_index);
  if (!top_contents.ok()) co_return top_contents.status();
  auto top = Block::Parse(std::move(top_contents).value(), Where(f, footer.top_index.offset));
  if (!top.ok()) co_return top.status();
  std::vector<BlockHandle> partitions;
  CFS_CO_RETURN_IF_ERROR(top.value()->ForEach([&](std::string_view, std::string_view value) {
    BlockHandle handle;
    if (!GetVarint64(&value, &handle.offset) || !GetVarint64(&value, &handle.size)) {
      return Corrupt(f, footer.top_index.offset, "malformed top-level index entry");
    }
    partitions.push_back(handle);
    return Status::OK();
  }));
  if (!partitions.empty()) {
    const std::uint64_t begin = partitions.front().offset;
    const BlockHandle& last = partitions.back();
    const std::uint64_t end = last.offset + last.size + kBlockTrailerBytes;
    if (end < begin || end - begin > kMetaRegionSizeMax || end > size) {
      co_return Corrupt(f, footer.top_index.offset, "index partitions lie outside the file");
    }
    std::string region(end - begin, '\0');
    auto read = co_await f.Read(begin, region.size(), region.data());
    if (!read.ok()) co_return read.status();
    if (read.value() != region.size()) co_return Corrupt(f, begin, "index region cut short");
    for (const BlockHandle& handle : partitions) {
      if (handle.offset < begin || handle.offset + handle.size + kBlockTrailerBytes > end) {
        co_return Corrupt(f, handle.offset, "index partition out of order");
      }
      auto contents = DecodeBlock(
          std::string_view(region).substr(handle.offset - begin, handle.size + kBlockTrailerBytes),
          f.path(), handle.offset);
      if (!contents.ok()) co_return contents.status();
      auto partition = Block::Parse(std::move(contents).value(), Where(f, handle.offset));
      if (!partition.ok()) co_return partition.status();
      CFS_CO_RETURN_IF_ERROR(partition.value()->ForEach([&](std::string_view key,
                                                            std::string_view value) {
        IndexEntry entry;
        entry.last_key.assign(key);
        if (!GetVarint64(&value, &entry.handle.offset) ||
            !GetVarint64(&value, &entry.handle.size) || !GetVarint32(&value, &entry.block_number) ||
            entry.block_number + 1 >= table->filter_offsets_.size()) {
          return Corrupt(f, handle.offset, "malformed index entry");
        }
        if (!table->index_.empty() &&
            CompareInternalKeys(table->index_.back().last_key, entry.last_key) >= 0) {
          return Corrupt(f, handle.offset, "index keys out of order");
        }
        table->index_.push_back(std::move(entry));
        return Status::OK();
      }));
    }
  }
  co_return std::move(table);
}

std::size_t Table::FindBlock(std::string_view internal_key) const {
  auto it = std::lower_bound(index_.begin(), index_.end(), internal_key,
                             [](const IndexEntry& entry, std::string_view key) {
                               return CompareInternalKeys(entry.last_key, key) < 0;
                             });
  return static_cast<std::size_t>(it - index_.begin());
}

std::string_view Table::FilterOf(std::uint32_t block_number) const {
  if (block_number + 1 >= filter_offsets_.size()) return {};
  const std::uint32_t begin = filter_offsets_[block_number];
  const std::uint32_t end = filter_offsets_[block_number + 1];
  return std::string_view(filters_).substr(begin, end - begin);
}

io::Task<Result<std::shared_ptr<const Block>>> Table::LoadBlock(std::size_t index,
                                                                bool use_block_cache) const {
  const BlockHandle& handle = index_[index].handle;
  BlockCache* const block_cache = use_block_cache ? block_cache_ : nullptr;
  if (block_cache != nullptr) {
    std::shared_ptr<const Block> cached = block_cache_->Lookup(cache_id_, handle.offset);
    if (cached != nullptr) co_return cached;
  }
  auto contents = co_await ReadBlock(*file_, handle);
  if (!contents.ok()) co_return contents.status();
  auto block = Block::Parse(std::move(contents).value(), Where(*file_, handle.offset));
  if (block.ok() && block_cache != nullptr) {
    block_cache->Insert(cache_id_, handle.offset, block.value());
  }
  co_return block;
}

io::Task<Status> Table::Get(std::string_view lookup_key, TableGetResult* result) const {
  result->found = false;
  const std::size_t index = FindBlock(lookup_key);
  if (index == index_.size()) co_return Status::OK();
  const std::string_view user_key = ExtractUserKey(lookup_key);
  const std::string_view filter = FilterOf(index_[index].block_number);
  if (!filter.empty() && !BloomMayContain(filter, BloomHash(user_key))) {
    bloom_negatives_.fetch_add(1, std::memory_order_relaxed);
    co_return Status::OK();
  }
  auto block = co_await LoadBlock(index, /*use_block_cache=*/true);
  if (!block.ok()) co_return block.status();
  std::unique_ptr<InternalIterator> it = Block::NewIterator(block.value());
  co_await it->Seek(lookup_key);
  if (!it->status().ok()) co_return it->status();
  if (!it->Valid()) {
    // The index promised an entry >= lookup_key in this block.
    co_return Status::Corruption(Where(*file_, index_[index].handle.offset) +
                                 ": block ends before its index key");
  }
  ParsedInternalKey parsed;
  if (!ParseInternalKey(it->key(), &parsed)) {
    co_return Status::Corruption(Where(*file_, index_[index].handle.offset) +
                                 ": malformed internal key");
  }
  if (parsed.user_key != user_key) co_return Status::OK();
  result->found = true;
  result->type = parsed.type;
  result->value.assign(it->value());
  co_return Status::OK();
}

io::Task<void> Table::CheckBlocks(
    const std::function<void(std::uint64_t offset, const Status& status)>& on_damage,
    const std::function<void(std::string_view key, std::string_view value)>& on_entry) const {
  for (std::size_t index = 0; index < index_.size(); ++index) {
    const std::uint64_t offset = index_[index].handle.offset;
    auto block = co_await LoadBlock(index, /*use_block_cache=*/false);
    if (!block.ok()) {
      on_damage(offset, block.status());
      continue;
    }
    std::unique_ptr<InternalIterator> it = Block::NewIterator(block.value());
    std::string last_key;
    for (co_await it->SeekToFirst(); it->Valid(); co_await it->Next()) {
      last_key.assign(it->key());
      on_entry(it->key(), it->value());
    }
    if (!it->status().ok()) {
      on_damage(offset, it->status());
    } else if (last_key != index_[index].last_key) {
      on_damage(offset, Status::Corruption(Where(*file_, offset) +
                                           ": its last key is not the one its index entry names"));
    }
  }
}

class TableIterator final : public InternalIterator {
 public:
  TableIterator(const Table* table, bool use_block_cache)
      : table_(table), use_block_cache_(use_block_cache) {}

  bool Valid() const override { return block_it_ != nullptr && block_it_->Valid(); }
  std::string_view key() const override { return block_it_->key(); }
  std::string_view value() const override { return block_it_->value(); }
  Status status() const override {
    if (!status_.ok()) return status_;
    return block_it_ != nullptr ? block_it_->status() : Status::OK();
  }

  io::Task<void> SeekToFirst() override {
    const bool loaded = co_await LoadBlock(0);
    if (loaded) co_await block_it_->SeekToFirst();
    co_await SkipEmptyForward();
  }
  io::Task<void> SeekToLast() override {
    if (table_->index_.empty()) {
      block_it_.reset();
      co_return;
    }
    const bool loaded = co_await LoadBlock(table_->index_.size() - 1);
    if (loaded) co_await block_it_->SeekToLast();
    co_await SkipEmptyBackward();
  }
  io::Task<void> Seek(std::string_view target) override {
    const bool loaded = co_await LoadBlock(table_->FindBlock(target));
    if (loaded) co_await block_it_->Seek(target);
    co_await SkipEmptyForward();
  }
  io::Task<void> Next() override {
    co_await block_it_->Next();
    co_await SkipEmptyForward();
  }
  io::Task<void> Prev() override {
    co_await block_it_->Prev();
    co_await SkipEmptyBackward();
  }

 private:
  // Makes block `index` current; false (and no block) past the end or on error.
  io::Task<bool> LoadBlock(std::size_t index) {
    block_it_.reset();
    block_index_ = index;
    if (index >= table_->index_.size() || !status_.ok()) co_return false;
    auto block = co_await table_->LoadBlock(index, use_block_cache_);
    if (!block.ok()) {
      status_ = block.status();
      co_return false;
    }
    block_it_ = Block::NewIterator(std::move(block).value());
    co_return true;
  }

  io::Task<void> SkipEmptyForward() {
    while (block_it_ != nullptr && !block_it_->Valid() && block_it_->status().ok()) {
      const bool loaded = co_await LoadBlock(block_index_ + 1);
      if (!loaded) co_return;
      co_await block_it_->SeekToFirst();
    }
  }

  io::Task<void> SkipEmptyBackward() {
    while (block_it_ != nullptr && !block_it_->Valid() && block_it_->status().ok()) {
      if (block_index_ == 0) {
        block_it_.reset();
        co_return;
      }
      const bool loaded = co_await LoadBlock(block_index_ - 1);
      if (!loaded) co_return;
      co_await block_it_->SeekToLast();
    }
  }

  const Table* const table_;
  const bool use_block_cache_;
  std::unique_ptr<InternalIterator> block_it_;
  std::size_t block_index_ = 0;
  Status status_;
};

std::unique_ptr<InternalIterator> Table::NewIterator(bool use_block_cache) const {
  return std::make_unique<TableIterator>(this, use_block_cache);
}

}  // namespace cascadefs::engine
