// checksum.h: the checksum of every cascade record and block.
//
// Checksum32 is the low 32 bits of XXH3-64 (xxHash) over the covered bytes with a seed. XXH3
// runs at memory speed (tens of GB/s), so checksumming every block on every read costs far
// less than the read; 32 bits detect a random corruption with probability 1 - 2^-32, the
// same strength as the CRC32C of LevelDB and RocksDB. The seed lets a format bind a header
// field (a record type) into the checksum without copying it next to the payload. Each
// docs/formats/ page states the exact bytes covered.
#pragma once

#include <cstddef>
#include <cstdint>

#include <xxhash.h>

namespace cascadefs::engine {

inline std::uint32_t Checksum32(const void* data, std::size_t size_bytes, std::uint64_t seed = 0) {
  return static_cast<std::uint32_t>(XXH3_64bits_withSeed(data, size_bytes, seed));
}

}  // namespace cascadefs::engine
