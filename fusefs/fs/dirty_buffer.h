// dirty_buffer.h: a file's written bytes not yet turned into chunks.
//
// The bytes are held in pieces of at most piece_bytes (default kPieceBytes), keyed by file offset.
// Pieces never overlap; they may abut (a run of pieces is contiguous file bytes). A write over
// buffered bytes overwrites them in place; a write into a gap appends to the piece ending there
// while it has room, else starts new pieces. So a sequential writer fills 1 MiB pieces one after
// the other: no buffer ever grows by copying what it holds, and freed pieces are reused by the
// allocator (a single growing buffer of tens of MiB would be mapped fresh, and fault in every
// page, for each flush). Not thread-safe: the owning inode's lock guards it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace cascadefs::fusefs {

class DirtyBuffer {
 public:
  // The largest piece, in bytes, by default.
  static constexpr std::size_t kPieceBytes = std::size_t{1} << 20;

  // `piece_bytes` > 0: the largest piece (tests use small ones).
  explicit DirtyBuffer(std::size_t piece_bytes = kPieceBytes) : piece_bytes_(piece_bytes) {}

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
  bool empty() const { return pieces_.empty(); }
  void Clear() {
    pieces_.clear();
    bytes_ = 0;
  }
  // offset -> bytes, in offset order; abutting pieces are contiguous bytes of the file.
  const std::map<std::uint64_t, std::string>& pieces() const { return pieces_; }
  std::size_t piece_bytes() const { return piece_bytes_; }

 private:
  std::size_t piece_bytes_;
  std::map<std::uint64_t, std::string> pieces_;
  std::uint64_t bytes_ = 0;  // sum of the pieces' sizes
};

}  // namespace cascadefs::fusefs
