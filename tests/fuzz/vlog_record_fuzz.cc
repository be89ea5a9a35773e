// vlog_record_fuzz.cc: the value log's decoders on arbitrary bytes.
//
// The first byte picks the decoder (mod 4: record, value pointer, file header, footer); the
// rest is its input. Properties: no decoder reads out of bounds (ASan) or asserts; a failure is
// Corruption (or NotSupported for a header of a newer version); a success re-encodes to
// exactly the input (every encoding is canonical).
// Seeds: tests/fuzz/corpus/vlog_record/.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/assert.h"
#include "vlog/vlog_format.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cascadefs::engine;
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      auto record = DecodeVlogRecord(input);
      if (!record.ok()) {
        CFS_ASSERT(record.status().IsCorruption());
        return 0;
      }
      std::string again;
      AppendVlogRecord(record.value(), &again);
      CFS_ASSERT(again == input);
      return 0;
    }
    case 1: {
      auto pointer = DecodeValuePointer(input);
      if (!pointer.ok()) {
        CFS_ASSERT(pointer.status().IsCorruption());
        return 0;
      }
      CFS_ASSERT(EncodeValuePointer(pointer.value()) == input);
      return 0;
    }
    case 2: {
      auto header = DecodeVlogFileHeader(input);
      if (!header.ok()) {
        CFS_ASSERT(header.status().IsCorruption() || header.status().IsNotSupported());
        return 0;
      }
      CFS_ASSERT(EncodeVlogFileHeader(header.value()) == input);
      return 0;
    }
    default: {
      auto footer = DecodeVlogFooter(input);
      if (!footer.ok()) {
        CFS_ASSERT(footer.status().IsCorruption());
        return 0;
      }
      CFS_ASSERT(EncodeVlogFooter(footer.value()) == input);
      return 0;
    }
  }
}
