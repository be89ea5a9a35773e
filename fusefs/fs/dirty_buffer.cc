// dirty_buffer.cc
#include "fs/dirty_buffer.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include "engine/assert.h"

namespace cascadefs::fusefs {

void DirtyBuffer::Insert(std::uint64_t offset, std::string_view data) {
  if (data.empty()) return;
  auto it = extents_.lower_bound(offset);
  if (it != extents_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second.size() >= offset) it = prev;
  }
  std::uint64_t start = offset;
  std::string merged;
  if (it != extents_.end() && it->first <= offset) {
    // `it` overlaps or abuts the new bytes from the left: extend it.
    start = it->first;
    merged = std::move(it->second);
    bytes_ -= merged.size();
    it = extents_.erase(it);
  }
  const std::size_t relative = offset - start;
  if (merged.size() < relative + data.size()) merged.resize(relative + data.size());
  std::memcpy(merged.data() + relative, data.data(), data.size());
  // Absorb every later extent that starts within or right after the merged bytes.
  while (it != extents_.end() && it->first <= start + merged.size()) {
    const std::uint64_t merged_end = start + merged.size();
    const std::uint64_t extent_end = it->first + it->second.size();
    if (extent_end > merged_end) {
      merged.append(it->second, merged_end - it->first, std::string::npos);
    }
    bytes_ -= it->second.size();
    it = extents_.erase(it);
  }
  bytes_ += merged.size();
  extents_.emplace(start, std::move(merged));
}

void DirtyBuffer::Overlay(std::uint64_t offset, std::uint64_t length, char* out) const {
  const std::uint64_t end = offset + length;
  auto it = extents_.upper_bound(offset);
  if (it != extents_.begin()) --it;
  for (; it != extents_.end() && it->first < end; ++it) {
    const std::uint64_t extent_end = it->first + it->second.size();
    const std::uint64_t from = std::max(offset, it->first);
    const std::uint64_t to = std::min(end, extent_end);
    if (from >= to) continue;
    std::memcpy(out + (from - offset), it->second.data() + (from - it->first), to - from);
  }
}

void DirtyBuffer::Truncate(std::uint64_t length) {
  auto it = extents_.lower_bound(length);
  if (it != extents_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second.size() > length) {
      bytes_ -= prev->second.size() - (length - prev->first);
      prev->second.resize(length - prev->first);
    }
  }
  while (it != extents_.end()) {
    bytes_ -= it->second.size();
    it = extents_.erase(it);
  }
  CFS_ASSERT(end() <= length || extents_.empty());
}

std::uint64_t DirtyBuffer::end() const {
  if (extents_.empty()) return 0;
  const auto& last = *extents_.rbegin();
  return last.first + last.second.size();
}

}  // namespace cascadefs::fusefs
