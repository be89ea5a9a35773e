// chunker.h: where a file's bytes are cut into chunks (docs/formats/chunks.md, "Chunking").
//
// Two content-defined chunkers, chosen per file from its first bytes (DetectChunkerKind) and
// recorded in the file's root, so a file keeps its chunker for life:
// - text: a cut may fall only right after a newline. Whether it falls after a given line is
//   decided by a hash of the 16 bytes before the newline, with probability
//   line_length / (target - min), so chunks average about `target` bytes whatever the line
//   lengths, and the decision after a line depends only on that line's last 16 bytes: editing
//   a line changes only the chunk holding it, and inserting or deleting lines moves no other
//   cut (except within `min` bytes after a cut, see below). A cut is never taken before `min`
//   bytes; at `max` the chunk ends at its last newline, or inside a line longer than that.
//   target = 1 with min = 0 gives one line per chunk.
// - binary: FastCDC (Xia et al., USENIX ATC'16) gear hash with normalized chunking: no cut before
//   `min`, a strict mask up to `avg` and a loose one after it, a hard cut at `max`.
// Both are pure functions of the bytes from the chunk's start: every piece of state restarts at
// a cut. A recipe edit (recipe.h) relies on that to re-chunk from the nearest old cut and to
// stop as soon as a new cut lands on an old one.
//
// Thread safety: Chunker is immutable after construction; FindCut may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "engine/status.h"

namespace cascadefs::fusefs {

enum class ChunkerKind : std::uint8_t {
  kText = 1,
  kBinary = 2,
};

// The largest chunk any chunker option allows (bytes); also the largest leaf a reader accepts.
inline constexpr std::size_t kChunkSizeMax = std::size_t{256} * 1024;

// How many leading bytes DetectChunkerKind looks at.
inline constexpr std::size_t kDetectPrefixBytes = std::size_t{8} * 1024;

struct ChunkerOptions {
  // Text. Defaults: 4 KiB target, the page size the kernel reads in and small enough that a
  // one-line edit rewrites ~4 KiB; min 1 KiB keeps tiny chunks (and their per-chunk index cost)
  // rare; max 16 KiB bounds a chunk of very long lines. Range: 1 <= target <= 8 KiB,
  // min <= target, target <= max <= kChunkSizeMax.
  std::size_t text_min_bytes = 1024;
  std::size_t text_target_bytes = 4096;
  std::size_t text_max_bytes = 16384;

  // Binary (FastCDC). Defaults: 4 KiB / 16 KiB / 64 KiB, the paper's ratios around a 16 KiB
  // average. Range: 64 <= min < avg < max <= kChunkSizeMax, avg a power of two.
  std::size_t binary_min_bytes = 4096;
  std::size_t binary_avg_bytes = 16384;
  std::size_t binary_max_bytes = 65536;

  // InvalidArgument naming the first option out of range.
  Status Validate() const;
};

// Text unless the first kDetectPrefixBytes of `prefix` hold a NUL byte or are not valid UTF-8
// (a multi-byte sequence cut off by the end of the prefix does not count).
ChunkerKind DetectChunkerKind(std::string_view prefix);

class Chunker {
 public:
  // `options` must be valid (asserted).
  Chunker(ChunkerKind kind, const ChunkerOptions& options);

  ChunkerKind kind() const { return kind_; }
  std::size_t max_chunk_bytes() const { return max_; }

  // The length of the chunk that starts at data[0]: a value in [1, max_chunk_bytes()], or
  // nullopt when `data` (shorter than max_chunk_bytes()) ends before a cut is decided; the caller
  // then supplies more bytes, or at the end of the file takes all of `data` as the last chunk.
  std::optional<std::size_t> FindCut(std::string_view data) const;

 private:
  std::optional<std::size_t> FindTextCut(const std::uint8_t* data, std::size_t size) const;
  std::optional<std::size_t> FindBinaryCut(const std::uint8_t* data, std::size_t size) const;

  ChunkerKind kind_;
  std::size_t min_;
  std::size_t max_;
  // text: cut after a line of length L when hash < L * text_scale_ (saturating)
  std::uint64_t text_scale_ = 0;
  std::size_t text_span_ = 1;  // target - min, at least 1
  // binary: normalized FastCDC masks over the gear hash's top bits
  std::size_t binary_avg_ = 0;
  std::uint64_t mask_strict_ = 0;
  std::uint64_t mask_loose_ = 0;
};

}  // namespace cascadefs::fusefs
