// dirty_buffer.h: a file's written bytes not yet turned into chunks.
//
// Extents never overlap or touch: an insert merges with every extent it overlaps or abuts, so
// a sequential writer grows one extent. Not thread-safe: the owning inode's lock guards it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace cascadefs::fusefs {

class DirtyBuffer {
 public:
  // Writes `data` at `offset`, over anything buffered there.
  void Insert(std::uint64_t offset, std::string_view data);
  // Copies into out[0, length) the buffered bytes of [offset, offset + length), leaving bytes
  // not buffered as they are.
  void Overlay(std::uint64_t offset, std::uint64_t length, char* out) const;
  // Drops buffered bytes at or beyond `length` (a truncate).
  void Truncate(std::uint64_t length);
  // One past the last buffered byte; 0 when empty.
  std::uint64_t end() const;
  std::uint64_t bytes() const { return bytes_; }
  bool empty() const { return extents_.empty(); }
  void Clear() {
    extents_.clear();
    bytes_ = 0;
  }
  // offset -> bytes, in offset order.
  const std::map<std::uint64_t, std::string>& extents() const { return extents_; }

 private:
  std::map<std::uint64_t, std::string> extents_;
  std::uint64_t bytes_ = 0;  // sum of the extents' sizes
};

}  // namespace cascadefs::fusefs
