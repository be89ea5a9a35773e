// wire_frame_fuzz.cc: DecodeFrameHeader and DecodeFrameBody on arbitrary bytes.
//
// The input is a frame as it arrives: 6 header bytes, then the body (the header's length is
// replaced by the bytes actually present, so every input reaches DecodeFrameBody). Properties:
// no read out of bounds (ASan), no assertion, failures are InvalidArgument, a decoded payload
// is at most kMessageBytesMax, and re-framing it (EncodeFrame) decodes to the same payload.
// Seeds: tests/fuzz/corpus/wire_frame/.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/assert.h"
#include "net/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cascadefs::net;
  if (size < kFrameHeaderBytes) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto header = DecodeFrameHeader(input.substr(0, kFrameHeaderBytes));
  if (!header.ok()) {
    CFS_ASSERT(header.status().IsInvalidArgument());
    return 0;
  }
  const std::string_view body = input.substr(kFrameHeaderBytes);
  if (body.size() > kFrameBodyBytesMax) return 0;
  FrameHeader actual = header.value();
  actual.body_length = static_cast<std::uint32_t>(body.size());
  auto payload = DecodeFrameBody(actual, body);
  if (!payload.ok()) {
    CFS_ASSERT(payload.status().IsInvalidArgument());
    return 0;
  }
  CFS_ASSERT(payload.value().size() <= kMessageBytesMax);
  if (!actual.compressed) CFS_ASSERT(payload.value() == body);
  const std::string frame = EncodeFrame(actual.type, payload.value(), 1);
  auto again = DecodeFrameHeader(std::string_view(frame).substr(0, kFrameHeaderBytes));
  CFS_ASSERT(again.ok());
  auto round_trip =
      DecodeFrameBody(again.value(), std::string_view(frame).substr(kFrameHeaderBytes));
  CFS_ASSERT(round_trip.ok());
  CFS_ASSERT(round_trip.value() == payload.value());
  return 0;
}
