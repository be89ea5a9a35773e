#include "sst/block_builder.h"

#include <algorithm>

#include "engine/assert.h"
#include "util/coding.h"

namespace cascadefs::engine {

namespace {
constexpr std::size_t kNarrowRestartLimit = 1 << 16;  // offsets fit in 2 bytes below this
}  // namespace

BlockBuilder::BlockBuilder(std::uint32_t restart_interval) : restart_interval_(restart_interval) {
  CFS_ASSERT(restart_interval_ >= 1);
  Reset();
}

void BlockBuilder::Reset() {
  buffer_.clear();
  restarts_.assign(1, 0);
  since_restart_ = 0;
  entries_ = 0;
  last_key_.clear();
  finished_ = false;
}

std::size_t BlockBuilder::EntrySizeMax(std::size_t key_bytes, std::size_t value_bytes) {
  return 3 * 5 + key_bytes + value_bytes + 4;  // varints, bytes, a restart slot
}

std::size_t BlockBuilder::CurrentSizeEstimate() const {
  const std::size_t width = buffer_.size() < kNarrowRestartLimit ? 2 : 4;
  return buffer_.size() + restarts_.size() * width + 4 + 1;
}

void BlockBuilder::Add(std::string_view key, std::string_view value) {
  CFS_ASSERT(!finished_);
  std::size_t shared = 0;
  if (since_restart_ < restart_interval_) {
    const std::size_t limit = std::min(last_key_.size(), key.size());
    while (shared < limit && last_key_[shared] == key[shared]) ++shared;
  } else {
    restarts_.push_back(static_cast<std::uint32_t>(buffer_.size()));
    since_restart_ = 0;
  }
  const std::size_t non_shared = key.size() - shared;
  PutVarint32(&buffer_, static_cast<std::uint32_t>(shared));
  PutVarint32(&buffer_, static_cast<std::uint32_t>(non_shared));
  PutVarint32(&buffer_, static_cast<std::uint32_t>(value.size()));
  buffer_.append(key.data() + shared, non_shared);
  buffer_.append(value);
  last_key_.assign(key);
  ++since_restart_;
  ++entries_;
}

std::string_view BlockBuilder::Finish() {
  CFS_ASSERT(!finished_);
  const bool narrow = buffer_.size() < kNarrowRestartLimit;
  for (std::uint32_t restart : restarts_) {
    if (narrow) {
      PutFixed16(&buffer_, static_cast<std::uint16_t>(restart));
    } else {
      PutFixed32(&buffer_, restart);
    }
  }
  PutFixed32(&buffer_, static_cast<std::uint32_t>(restarts_.size()));
  buffer_.push_back(static_cast<char>(narrow ? 2 : 4));
  finished_ = true;
  return buffer_;
}

}  // namespace cascadefs::engine
