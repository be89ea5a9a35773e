// cache_segment_fuzz.cc: arbitrary bytes parsed as a chunk-cache segment.
//
// The input is a segment image (at least the 64-byte header; at most 1 MiB is used). Its
// header is decoded (DecodeSegmentHeader); the entries are walked (WalkSegment, the parser of
// the warm restart and of fsck) with the header's sequence when it decodes, else with the
// sequence in bytes 24..31. Neither may crash or read past the image. Every entry the walk
// accepts must lie inside the image, be re-encoded to exactly its bytes (the property from
// the other side), and the walk's end must not pass the image's end.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cache_format.h"
#include "engine/assert.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cascadefs::cache;
  if (size < kSegmentHeaderBytes) return 0;
  const std::size_t image_bytes = size < (1u << 20) ? size : (1u << 20);
  // A private copy, so an over-read is caught by the sanitizer at the copy's end.
  const std::string image(reinterpret_cast<const char*>(data), image_bytes);
  cascadefs::Result<SegmentHeader> header = DecodeSegmentHeader(image.data(), image.size());
  const std::uint64_t sequence = header.ok() ? header->sequence : DecodeFixed64(image.data() + 24);
  WalkResult walk =
      WalkSegment(image.data(), image.size(), sequence, [&](const WalkedEntry& entry) {
        CFS_ASSERT(entry.offset >= kSegmentHeaderBytes);
        CFS_ASSERT(entry.offset + entry.view.entry_bytes <= image.size());
        std::string again;
        EncodeEntry(entry.view.key, entry.view.value, sequence, &again);
        CFS_ASSERT(again == image.substr(entry.offset, entry.view.entry_bytes));
      });
  CFS_ASSERT(walk.end_offset <= image.size());
  CFS_ASSERT(walk.damaged.size() == walk.damaged_entries);
  return 0;
}
