// block.cc: Block parsing and its iterator (block.h).
#include "sst/block.h"

#include <utility>

#include "db/dbformat.h"
#include "engine/assert.h"
#include "util/coding.h"

namespace cascadefs::engine {

Result<std::shared_ptr<const Block>> Block::Parse(std::string contents, std::string where) {
  auto corrupt = [&](const std::string& what) { return Status::Corruption(where + ": " + what); };
  if (contents.size() < 5) return corrupt("block shorter than its restart trailer");
  std::shared_ptr<Block> block(new Block(std::move(contents), std::move(where)));
  const std::string& bytes = block->contents_;
  const std::uint8_t width = static_cast<std::uint8_t>(bytes.back());
  if (width != 2 && width != 4) return corrupt("bad restart width " + std::to_string(width));
  const std::uint32_t num_restarts = DecodeFixed32(bytes.data() + bytes.size() - 5);
  const std::uint64_t trailer = std::uint64_t{num_restarts} * width + 5;
  if (num_restarts == 0 || trailer > bytes.size()) {
    return corrupt("bad restart count " + std::to_string(num_restarts));
  }
  block->restart_width_ = width;
  block->num_restarts_ = num_restarts;
  block->data_end_ = static_cast<std::uint32_t>(bytes.size() - trailer);
  for (std::uint32_t i = 0; i < num_restarts; ++i) {
    if (block->RestartOffset(i) >= block->data_end_ && !(i == 0 && block->data_end_ == 0)) {
      return corrupt("restart point beyond the entries");
    }
  }
  return std::shared_ptr<const Block>(std::move(block));
}

std::uint32_t Block::RestartOffset(std::uint32_t index) const {
  const char* p = contents_.data() + data_end_ + std::size_t{index} * restart_width_;
  return restart_width_ == 2 ? DecodeFixed16(p) : DecodeFixed32(p);
}

bool Block::DecodeEntry(std::uint32_t offset, std::string* key, std::string_view* value,
                        std::uint32_t* next_offset) const {
  const char* p = contents_.data() + offset;
  const char* limit = contents_.data() + data_end_;
  std::uint32_t shared = 0;
  std::uint32_t non_shared = 0;
  std::uint32_t value_size = 0;
  if ((p = GetVarint32Ptr(p, limit, &shared)) == nullptr) return false;
  if ((p = GetVarint32Ptr(p, limit, &non_shared)) == nullptr) return false;
  if ((p = GetVarint32Ptr(p, limit, &value_size)) == nullptr) return false;
  if (shared > key->size()) return false;
  if (static_cast<std::uint64_t>(limit - p) < std::uint64_t{non_shared} + value_size) return false;
  key->resize(shared);
  key->append(p, non_shared);
  *value = std::string_view(p + non_shared, value_size);
  *next_offset = static_cast<std::uint32_t>(p + non_shared + value_size - contents_.data());
  return true;
}

class BlockIter final : public InternalIterator {
 public:
  BlockIter(std::shared_ptr<const Block> block, bool bytewise)
      : block_(std::move(block)), bytewise_(bytewise) {}

  bool Valid() const override { return valid_; }
  std::string_view key() const override {
    CFS_DASSERT(valid_);
    return key_;
  }
  std::string_view value() const override {
    CFS_DASSERT(valid_);
    return value_;
  }
  Status status() const override { return status_; }

  io::Task<void> SeekToFirst() override {
    SeekToRestart(0);
    co_return;
  }
  io::Task<void> SeekToLast() override {
    SeekToRestart(block_->num_restarts_ - 1);
    while (valid_ && next_ < block_->data_end_) {
      if (!ParseAt(next_)) break;
    }
    co_return;
  }
  io::Task<void> Seek(std::string_view target) override {
    SeekSync(target);
    co_return;
  }
  io::Task<void> Next() override {
    CFS_DASSERT(valid_);
    if (next_ >= block_->data_end_) {
      valid_ = false;
    } else {
      ParseAt(next_);
    }
    co_return;
  }
  io::Task<void> Prev() override {
    CFS_DASSERT(valid_);
    const std::uint32_t original = current_;
    // The last restart before the current entry, then forward to just before it.
    std::uint32_t restart = restart_index_;
    while (block_->RestartOffset(restart) >= original) {
      if (restart == 0) {
        valid_ = false;
        co_return;
      }
      --restart;
    }
    SeekToRestart(restart);
    while (valid_ && next_ < original) {
      if (!ParseAt(next_)) break;
    }
    co_return;
  }

  // Synchronous Seek, for Table::Get.
  void SeekSync(std::string_view target) {
    // Binary search: the last restart whose key is < target.
    std::uint32_t left = 0;
    std::uint32_t right = block_->num_restarts_ - 1;
    while (left < right) {
      const std::uint32_t mid = (left + right + 1) / 2;
      std::string mid_key;
      std::string_view ignored;
      std::uint32_t next = 0;
      if (!block_->DecodeEntry(block_->RestartOffset(mid), &mid_key, &ignored, &next)) {
        Fail(block_->RestartOffset(mid));
        return;
      }
      if (Compare(mid_key, target) < 0) {
        left = mid;
      } else {
        right = mid - 1;
      }
    }
    SeekToRestart(left);
    while (valid_ && Compare(key_, target) < 0) {
      if (next_ >= block_->data_end_) {
        valid_ = false;
        return;
      }
      if (!ParseAt(next_)) return;
    }
  }

 private:
  int Compare(std::string_view a, std::string_view b) const {
    return bytewise_ ? a.compare(b) : CompareInternalKeys(a, b);
  }

  void SeekToRestart(std::uint32_t index) {
    restart_index_ = index;
    key_.clear();
    valid_ = false;
    if (block_->data_end_ == 0) return;  // an empty block
    ParseAt(block_->RestartOffset(index));
  }

  // Decodes the entry at `offset` (following key_); false and invalid on damage.
  bool ParseAt(std::uint32_t offset) {
    std::uint32_t next = 0;
    if (!block_->DecodeEntry(offset, &key_, &value_, &next)) {
      Fail(offset);
      return false;
    }
    current_ = offset;
    next_ = next;
    valid_ = true;
    while (restart_index_ + 1 < block_->num_restarts_ &&
           block_->RestartOffset(restart_index_ + 1) <= current_) {
      ++restart_index_;
    }
    return true;
  }

  void Fail(std::uint32_t offset) {
    valid_ = false;
    if (status_.ok()) {
      status_ = Status::Corruption(block_->where() + ": malformed entry at block offset " +
                                   std::to_string(offset));
    }
  }

  std::shared_ptr<const Block> block_;
  const bool bytewise_;
  bool valid_ = false;
  std::string key_;
  std::string_view value_;
  std::uint32_t current_ = 0;
  std::uint32_t next_ = 0;
  std::uint32_t restart_index_ = 0;
  Status status_;
};

std::unique_ptr<InternalIterator> Block::NewIterator(std::shared_ptr<const Block> block,
                                                     bool bytewise) {
  return std::make_unique<BlockIter>(std::move(block), bytewise);
}

}  // namespace cascadefs::engine
