// coding.h: the integer encodings of every cascade file format.
//
// Byte order, once for all formats: fixed-width integers are little-endian; varints are
// LEB128 (7 bits per byte, low group first, high bit set on every byte but the last), at most
// 5 bytes for 32-bit and 10 bytes for 64-bit values. Decoders take (pointer, limit) or a
// std::string_view they consume from the front, never read past the limit, and report a
// malformed or truncated input by returning nullptr/false: callers turn that into
// Status::Corruption naming the file and offset.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace cascadefs::engine {

inline constexpr int kVarint32LengthMax = 5;
inline constexpr int kVarint64LengthMax = 10;

// REQUIRES: dst has room for 4 (8) bytes.
inline void EncodeFixed32(char* dst, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) dst[i] = static_cast<char>(value >> (8 * i));
}
inline void EncodeFixed64(char* dst, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) dst[i] = static_cast<char>(value >> (8 * i));
}
inline void EncodeFixed16(char* dst, std::uint16_t value) {
  dst[0] = static_cast<char>(value);
  dst[1] = static_cast<char>(value >> 8);
}

// REQUIRES: src has 4 (8, 2) readable bytes.
inline std::uint32_t DecodeFixed32(const char* src) {
  std::uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    value |= static_cast<std::uint32_t>(static_cast<unsigned char>(src[i])) << (8 * i);
  }
  return value;
}
inline std::uint64_t DecodeFixed64(const char* src) {
  std::uint64_t value = 0;
  for (int i = 0; i < 8; ++i) {
    value |= static_cast<std::uint64_t>(static_cast<unsigned char>(src[i])) << (8 * i);
  }
  return value;
}
inline std::uint16_t DecodeFixed16(const char* src) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(src[0]) |
                                    (static_cast<unsigned char>(src[1]) << 8));
}

inline void PutFixed16(std::string* dst, std::uint16_t value) {
  char buf[2];
  EncodeFixed16(buf, value);
  dst->append(buf, 2);
}
inline void PutFixed32(std::string* dst, std::uint32_t value) {
  char buf[4];
  EncodeFixed32(buf, value);
  dst->append(buf, 4);
}
inline void PutFixed64(std::string* dst, std::uint64_t value) {
  char buf[8];
  EncodeFixed64(buf, value);
  dst->append(buf, 8);
}

// Writes the varint of `value` at dst and returns the byte after it.
// REQUIRES: dst has room for kVarint32LengthMax (kVarint64LengthMax) bytes.
char* EncodeVarint32(char* dst, std::uint32_t value);
char* EncodeVarint64(char* dst, std::uint64_t value);
void PutVarint32(std::string* dst, std::uint32_t value);
void PutVarint64(std::string* dst, std::uint64_t value);
// Bytes the varint of `value` takes: 1..10.
int VarintLength(std::uint64_t value);

// Decodes a varint starting at p, reading no byte at or beyond limit. Returns the byte after
// it, or nullptr when the input is truncated or longer than the maximum length.
const char* GetVarint32Ptr(const char* p, const char* limit, std::uint32_t* value);
const char* GetVarint64Ptr(const char* p, const char* limit, std::uint64_t* value);

// Consume a varint (a varint32 length followed by that many bytes) from the front of `input`.
// False, with `input` unspecified, on truncated or malformed input.
bool GetVarint32(std::string_view* input, std::uint32_t* value);
bool GetVarint64(std::string_view* input, std::uint64_t* value);
void PutLengthPrefixed(std::string* dst, std::string_view value);
bool GetLengthPrefixed(std::string_view* input, std::string_view* value);
bool GetFixed32(std::string_view* input, std::uint32_t* value);
bool GetFixed64(std::string_view* input, std::uint64_t* value);

}  // namespace cascadefs::engine
