// delta.h: a chunk sent as its difference from a similar chunk both ends hold.
//
// A delta is one zstd frame of the new chunk compressed with the base chunk as zstd's "prefix"
// (a raw-content dictionary: matches may point into the base). The version of a changed text
// chunk or recipe node shares nearly all its bytes with the old version at the same place in
// the file, so its delta is tens of bytes where the chunk is kilobytes. The frame records the
// new chunk's size; DecodeDelta refuses one over `size_max`, or trailing bytes, before it
// allocates. The result is not trusted: the receiver checks it hashes to its name.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "engine/result.h"

namespace cascadefs::net {

// REQUIRES: 1 <= level <= 19.
std::string EncodeDelta(std::string_view base, std::string_view data, int level);
// InvalidArgument naming what is wrong (not one zstd frame, no or a too large content size, a
// frame that does not decode against `base`).
Result<std::string> DecodeDelta(std::string_view base, std::string_view delta,
                                std::size_t size_max);

}  // namespace cascadefs::net
