// dbformat.h: internal keys, the one key format of the memtable, the WAL's batches and SSTs.
//
// An internal key is the user key followed by an 8-byte little-endian trailer
// (sequence << 8) | type. Internal keys sort by user key ascending (bytewise, like memcmp
// then shorter first), then by trailer descending: the newest version of a key comes first,
// so a lookup for (key, snapshot sequence S) seeks to (key, S, kValueTypeForSeek) and takes
// the first entry at or after it whose user key matches. docs/formats/sst.md shows the layout.
//
// Invariants:
//  1. sequence <= kSequenceMax (56 bits), so the trailer never overflows.
//  2. A type byte read from disk is checked by ParseInternalKey; an unknown one is Corruption.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "util/coding.h"

namespace cascadefs::engine {

using SequenceNumber = std::uint64_t;

// 56 bits: at a million writes per second, 2,284 years of sequence numbers.
inline constexpr SequenceNumber kSequenceMax = (std::uint64_t{1} << 56) - 1;
inline constexpr std::size_t kInternalKeyTrailerBytes = 8;

// Stored in WAL records and internal keys: never renumber. kValuePointer (store format
// version 2): the value is an encoded ValuePointer to a value-log record (docs/formats/vlog.md).
enum class ValueType : std::uint8_t {
  kDeletion = 0,
  kValue = 1,
  kValuePointer = 2,
};
inline constexpr std::uint8_t kValueTypeMax = 2;
// The type with the highest number sorts first among equal sequences (trailer descending),
// so a seek key built with it lands before every entry of that sequence.
inline constexpr ValueType kValueTypeForSeek = ValueType::kValuePointer;

inline std::uint64_t PackSequenceAndType(SequenceNumber sequence, ValueType type) {
  return (sequence << 8) | static_cast<std::uint8_t>(type);
}

inline void AppendInternalKey(std::string* out, std::string_view user_key, SequenceNumber sequence,
                              ValueType type) {
  out->append(user_key);
  PutFixed64(out, PackSequenceAndType(sequence, type));
}

inline std::string MakeInternalKey(std::string_view user_key, SequenceNumber sequence,
                                   ValueType type) {
  std::string key;
  key.reserve(user_key.size() + kInternalKeyTrailerBytes);
  AppendInternalKey(&key, user_key, sequence, type);
  return key;
}

struct ParsedInternalKey {
  std::string_view user_key;
  SequenceNumber sequence = 0;
  ValueType type = ValueType::kValue;
};

// False when `internal_key` is shorter than the trailer or carries an unknown type: the
// caller reports Corruption.
inline bool ParseInternalKey(std::string_view internal_key, ParsedInternalKey* parsed) {
  if (internal_key.size() < kInternalKeyTrailerBytes) return false;
  const std::size_t user_size = internal_key.size() - kInternalKeyTrailerBytes;
  const std::uint64_t trailer = DecodeFixed64(internal_key.data() + user_size);
  const std::uint8_t type = static_cast<std::uint8_t>(trailer & 0xff);
  if (type > kValueTypeMax) return false;
  parsed->user_key = internal_key.substr(0, user_size);
  parsed->sequence = trailer >> 8;
  parsed->type = static_cast<ValueType>(type);
  return true;
}

// REQUIRES: internal_key.size() >= kInternalKeyTrailerBytes.
inline std::string_view ExtractUserKey(std::string_view internal_key) {
  return internal_key.substr(0, internal_key.size() - kInternalKeyTrailerBytes);
}
inline std::uint64_t ExtractTrailer(std::string_view internal_key) {
  return DecodeFixed64(internal_key.data() + internal_key.size() - kInternalKeyTrailerBytes);
}

// Bytewise user-key order: memcmp, then the shorter key first.
inline int CompareUserKeys(std::string_view a, std::string_view b) { return a.compare(b); }

// <0, 0, >0 as a sorts before, equal to, after b. Keys shorter than the trailer (only
// possible in corrupt input, which callers reject before comparing) compare as user keys.
inline int CompareInternalKeys(std::string_view a, std::string_view b) {
  if (a.size() < kInternalKeyTrailerBytes || b.size() < kInternalKeyTrailerBytes) {
    return a.compare(b);
  }
  const int by_user = CompareUserKeys(ExtractUserKey(a), ExtractUserKey(b));
  if (by_user != 0) return by_user;
  const std::uint64_t ta = ExtractTrailer(a);
  const std::uint64_t tb = ExtractTrailer(b);
  if (ta > tb) return -1;
  if (ta < tb) return 1;
  return 0;
}

struct InternalKeyLess {
  bool operator()(std::string_view a, std::string_view b) const {
    return CompareInternalKeys(a, b) < 0;
  }
};

}  // namespace cascadefs::engine
