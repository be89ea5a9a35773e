// block.h: reading one block (layout in block_builder.h): binary search over the restart
// points, then a scan of one restart interval.
//
// A Block validates its trailer (restart count and width) when parsed; entries are checked
// as they are decoded, and a malformed one makes the iterator invalid with Corruption naming
// the block's file and offset. Nothing is trusted, since the bytes come from disk.
//
// Thread safety: a Block is immutable; each iterator belongs to one task.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "db/internal_iterator.h"
#include "engine/result.h"

namespace cascadefs::engine {

class Block {
 public:
  // Parses `contents` (uncompressed); `where` ("<path>: block at offset N") names it in errors.
  static Result<std::shared_ptr<const Block>> Parse(std::string contents, std::string where);

  // An iterator over the entries, ordered by CompareInternalKeys (the block's keys must be
  // internal keys) or bytewise when `bytewise` is set (index blocks hold internal keys too;
  // the filter-free tests use plain keys). Keeps the block alive.
  static std::unique_ptr<InternalIterator> NewIterator(std::shared_ptr<const Block> block,
                                                       bool bytewise = false);

  // Visits every entry in order; Corruption on a malformed one.
  template <typename Visitor>
  Status ForEach(Visitor&& visit) const;

  std::size_t size_bytes() const { return contents_.size(); }
  const std::string& where() const { return where_; }

 private:
  friend class BlockIter;
  Block(std::string contents, std::string where)
      : contents_(std::move(contents)), where_(std::move(where)) {}

  std::string contents_;
  std::string where_;
  std::uint32_t data_end_ = 0;  // entries occupy [0, data_end_)
  std::uint32_t num_restarts_ = 0;
  std::uint8_t restart_width_ = 2;

 public:
  std::uint32_t RestartOffset(std::uint32_t index) const;
  // Decodes the entry at `offset` given the previous key; false when malformed.
  bool DecodeEntry(std::uint32_t offset, std::string* key, std::string_view* value,
                   std::uint32_t* next_offset) const;
};

template <typename Visitor>
Status Block::ForEach(Visitor&& visit) const {
  std::string key;
  std::uint32_t offset = 0;
  while (offset < data_end_) {
    std::string_view value;
    std::uint32_t next = 0;
    if (!DecodeEntry(offset, &key, &value, &next)) {
      return Status::Corruption(where_ + ": malformed entry at block offset " +
                                std::to_string(offset));
    }
    Status status = visit(std::string_view(key), value);
    if (!status.ok()) return status;
    offset = next;
  }
  return Status::OK();
}

}  // namespace cascadefs::engine
