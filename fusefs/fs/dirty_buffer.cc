// dirty_buffer.cc
#include "fs/dirty_buffer.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include "engine/assert.h"

namespace cascadefs::fusefs {

void DirtyBuffer::Insert(std::uint64_t offset, std::string_view data) {
  std::uint64_t position = offset;
  const std::uint64_t end = offset + data.size();
  // The first piece that ends after `position`, or the one it may extend.
  auto it = pieces_.upper_bound(position);
  if (it != pieces_.begin()) --it;
  while (position < end) {
    const char* from = data.data() + (position - offset);
    if (it != pieces_.end() && it->first <= position && position < it->first + it->second.size()) {
      // Buffered already: overwrite in place.
      const std::uint64_t piece_end = it->first + it->second.size();
      const std::uint64_t take = std::min(end, piece_end) - position;
      std::memcpy(it->second.data() + (position - it->first), from, take);
      position += take;
      // A gap right after this piece is filled by extending it (next branch).
      const auto next = std::next(it);
      if (position == end || (next != pieces_.end() && next->first == position)) it = next;
      continue;
    }
    if (it != pieces_.end() && it->first + it->second.size() <= position) {
      // `it` lies before position: the gap starts here, and `it` may be the piece ending at it.
      const auto next = std::next(it);
      const std::uint64_t gap_end = next == pieces_.end() ? end : std::min(end, next->first);
      if (it->first + it->second.size() == position && it->second.size() < piece_bytes_) {
        const std::uint64_t take =
            std::min<std::uint64_t>(gap_end - position, piece_bytes_ - it->second.size());
        it->second.append(from, take);
        bytes_ += take;
        position += take;
        if (it->second.size() == piece_bytes_ || position == gap_end) ++it;
        continue;
      }
      it = next;
      if (it != pieces_.end() && it->first <= position) continue;  // abuts: overwrite next
    }
    // A gap before `it` (or at the end): a new piece.
    const std::uint64_t gap_end = it == pieces_.end() ? end : std::min(end, it->first);
    const std::uint64_t take = std::min<std::uint64_t>(gap_end - position, piece_bytes_);
    it = pieces_.emplace_hint(it, position, std::string(from, take));
    bytes_ += take;
    position += take;
    if (position == gap_end) ++it;
  }
}

void DirtyBuffer::Overlay(std::uint64_t offset, std::uint64_t length, char* out) const {
  const std::uint64_t end = offset + length;
  auto it = pieces_.upper_bound(offset);
  if (it != pieces_.begin()) --it;
  for (; it != pieces_.end() && it->first < end; ++it) {
    const std::uint64_t piece_end = it->first + it->second.size();
    const std::uint64_t from = std::max(offset, it->first);
    const std::uint64_t to = std::min(end, piece_end);
    if (from >= to) continue;
    std::memcpy(out + (from - offset), it->second.data() + (from - it->first), to - from);
  }
}

void DirtyBuffer::Truncate(std::uint64_t length) {
  auto it = pieces_.lower_bound(length);
  if (it != pieces_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second.size() > length) {
      bytes_ -= prev->second.size() - (length - prev->first);
      prev->second.resize(length - prev->first);
    }
  }
  while (it != pieces_.end()) {
    bytes_ -= it->second.size();
    it = pieces_.erase(it);
  }
  CFS_ASSERT(end() <= length || pieces_.empty());
}

std::uint64_t DirtyBuffer::end() const {
  if (pieces_.empty()) return 0;
  const auto& last = *pieces_.rbegin();
  return last.first + last.second.size();
}

}  // namespace cascadefs::fusefs
