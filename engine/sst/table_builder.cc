#include "sst/table_builder.h"

#include "db/dbformat.h"
#include "engine/assert.h"
#include "sst/bloom.h"
#include "util/coding.h"

namespace cascadefs::engine {

TableBuilder::TableBuilder(const TableOptions& options, WritableFile* file)
    : options_(options),
      file_(file),
      // Alignment pays only for uncompressed blocks of at least a page; below that (tests'
      // tiny blocks) the padding would dwarf the data.
      aligned_(options.compression == Compression::kNone &&
               options.block_size_bytes >= kBlockAlignBytes),
      data_block_(options.block_restart_interval) {}

void TableBuilder::Add(std::string_view internal_key, std::string_view value) {
  CFS_ASSERT(!finished_);
  CFS_ASSERT(num_entries_ == 0 || CompareInternalKeys(last_key_, internal_key) < 0);
  // Cut the block before this entry would push it past the target: with the trailer, a
  // block then fits its 4 KiB page and alignment wastes little.
  if (!data_block_.empty() &&
      data_block_.CurrentSizeEstimate() +
              BlockBuilder::EntrySizeMax(internal_key.size(), value.size()) + kBlockTrailerBytes >
          options_.block_size_bytes) {
    FinishDataBlock();
  }
  if (num_entries_ == 0) smallest_key_.assign(internal_key);
  data_block_.Add(internal_key, value);
  const std::string_view user_key = ExtractUserKey(internal_key);
  if (block_hashes_.empty() || user_key != last_user_key_) {
    block_hashes_.push_back(BloomHash(user_key));
    last_user_key_.assign(user_key);
  }
  last_key_.assign(internal_key);
  ++num_entries_;
  raw_key_bytes_ += internal_key.size();
  raw_value_bytes_ += value.size();
}

void TableBuilder::FinishDataBlock() {
  if (data_block_.empty()) return;
  if (aligned_ && offset_ % kBlockAlignBytes != 0) {
    Append(std::string(kBlockAlignBytes - offset_ % kBlockAlignBytes, '\0'));
  }
  IndexEntry entry;
  entry.last_key.assign(data_block_.last_key());
  entry.block_number = static_cast<std::uint32_t>(index_.size());
  std::string stored;
  AppendBlock(data_block_.Finish(), options_.compression, options_.zstd_level, &stored,
              &entry.handle, offset_);
  Append(stored);
  index_.push_back(std::move(entry));
  filter_offsets_.push_back(static_cast<std::uint32_t>(filters_.size()));
  if (options_.bloom_bits_per_key > 0) {
    AppendBloomFilter(block_hashes_, options_.bloom_bits_per_key, &filters_);
  }
  block_hashes_.clear();
  last_user_key_.clear();
  data_block_.Reset();
}

io::Task<Status> TableBuilder::WritePending() {
  if (!status_.ok()) co_return status_;
  if (pending_.empty()) co_return Status::OK();
  status_ = co_await file_->WriteAt(pending_offset_, pending_);
  pending_offset_ += pending_.size();
  pending_.clear();
  co_return status_;
}

io::Task<Status> TableBuilder::Finish() {
  CFS_ASSERT(!finished_);
  finished_ = true;
  FinishDataBlock();
  Footer footer;
  // Filter block: filters | offsets (u32 each, one per block, then the end) | count u32.
  {
    std::string contents = filters_;
    for (std::uint32_t offset : filter_offsets_) PutFixed32(&contents, offset);
    PutFixed32(&contents, static_cast<std::uint32_t>(filters_.size()));
    PutFixed32(&contents, static_cast<std::uint32_t>(filter_offsets_.size()));
    std::string stored;
    AppendBlock(contents, Compression::kNone, 0, &stored, &footer.filter, offset_);
    Append(stored);
  }
  // Index partitions, then the top-level index over them.
  BlockBuilder top(1);
  BlockBuilder partition(1);
  auto finish_partition = [&] {
    if (partition.empty()) return;
    std::string last(partition.last_key());
    BlockHandle handle;
    std::string stored;
    AppendBlock(partition.Finish(), options_.compression, options_.zstd_level, &stored, &handle,
                offset_);
    Append(stored);
    std::string value;
    PutVarint64(&value, handle.offset);
    PutVarint64(&value, handle.size);
    top.Add(last, value);
    partition.Reset();
  };
  for (const IndexEntry& entry : index_) {
    std::string value;
    PutVarint64(&value, entry.handle.offset);
    PutVarint64(&value, entry.handle.size);
    PutVarint32(&value, entry.block_number);
    if (!partition.empty() &&
        partition.CurrentSizeEstimate() >= options_.index_partition_size_bytes) {
      finish_partition();
    }
    partition.Add(entry.last_key, value);
  }
  finish_partition();
  {
    std::string stored;
    AppendBlock(top.Finish(), Compression::kNone, 0, &stored, &footer.top_index, offset_);
    Append(stored);
  }
  // Properties.
  {
    std::string contents;
    PutVarint32(&contents, kSstFormatVersion);
    PutVarint64(&contents, num_entries_);
    PutVarint64(&contents, raw_key_bytes_);
    PutVarint64(&contents, raw_value_bytes_);
    PutVarint64(&contents, index_.size());
    PutLengthPrefixed(&contents, smallest_key_);
    PutLengthPrefixed(&contents, last_key_);
    std::string stored;
    AppendBlock(contents, Compression::kNone, 0, &stored, &footer.properties, offset_);
    Append(stored);
  }
  std::string encoded;
  footer.EncodeTo(&encoded);
  Append(encoded);
  co_return co_await WritePending();
}

}  // namespace cascadefs::engine
