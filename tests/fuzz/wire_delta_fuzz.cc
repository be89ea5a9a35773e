// wire_delta_fuzz.cc: DecodeDelta (net/delta.h) on arbitrary bytes from a peer.
//
// The first input byte splits the rest into a base (the first byte's value x 16 bytes, at
// most the rest) and a delta. Properties: no read out of bounds (ASan), no assertion, failures
// are InvalidArgument, and a decoded chunk is at most the bound asked for.
// Seeds: tests/fuzz/corpus/wire_delta/.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/assert.h"
#include "net/delta.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cascadefs::net;
  if (size < 1) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t base_size = std::min<std::size_t>(std::size_t{data[0]} * 16, input.size());
  constexpr std::size_t kBound = 256 << 10;
  auto decoded = DecodeDelta(input.substr(0, base_size), input.substr(base_size), kBound);
  if (!decoded.ok()) {
    CFS_ASSERT(decoded.status().IsInvalidArgument());
    return 0;
  }
  CFS_ASSERT(decoded.value().size() <= kBound);
  return 0;
}
