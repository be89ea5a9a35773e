// wire_coding.h: the field coding of sync messages (docs/formats/wire.md, "Field types").
//
// WireWriter appends fields to a payload; WireReader takes them off the front of one and
// never reads past its end. Integers are varints (LEB128: 7 bits a byte, low group first, high
// bit set on every byte but the last; at most 10 bytes; canonical, so a value has exactly one
// encoding) or fixed little-endian. A string is a varint length, then that many bytes.
//
// Every Reader method returns InvalidArgument naming the field on failure ("<field>: varint
// truncated"); the Decode functions prepend the message and entry context.
//
// Thread safety: value types, one thread each.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/status.h"

namespace cascadefs::net {

inline constexpr std::size_t kVarintBytesMax = 10;

class WireWriter {
 public:
  void PutU8(std::uint8_t value) { out_.push_back(static_cast<char>(value)); }
  void PutVarint(std::uint64_t value) {
    while (value >= 0x80) {
      out_.push_back(static_cast<char>((value & 0x7f) | 0x80));
      value >>= 7;
    }
    out_.push_back(static_cast<char>(value));
  }
  void PutFixed64(std::uint64_t value) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }
  void PutBytes(std::string_view bytes) { out_.append(bytes); }
  void PutString(std::string_view bytes) {
    PutVarint(bytes.size());
    out_.append(bytes);
  }
  std::string Finish() && { return std::move(out_); }

 private:
  std::string out_;
};

class WireReader {
 public:
  explicit WireReader(std::string_view payload) : in_(payload) {}

  std::size_t remaining() const { return in_.size(); }

  Status U8(std::string_view field, std::uint8_t* value) {
    if (in_.empty()) return Truncated(field);
    *value = static_cast<std::uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return Status::OK();
  }

  // A varint in 0..max.
  Status Varint(std::string_view field, std::uint64_t max, std::uint64_t* value) {
    std::uint64_t result = 0;
    for (std::size_t i = 0; i < kVarintBytesMax; ++i) {
      if (i >= in_.size()) return Error(field, "varint truncated");
      const auto byte = static_cast<std::uint8_t>(in_[i]);
      // The 10th byte holds bit 63 only.
      if (i == kVarintBytesMax - 1 && byte > 1) return Error(field, "varint over 64 bits");
      result |= static_cast<std::uint64_t>(byte & 0x7f) << (7 * i);
      if ((byte & 0x80) == 0) {
        // Canonical: a last byte of zero after others is padding (an overlong encoding).
        if (byte == 0 && i > 0) return Error(field, "varint not canonical (overlong)");
        in_.remove_prefix(i + 1);
        if (result > max) {
          return Error(field, std::to_string(result) + " over the limit " + std::to_string(max));
        }
        *value = result;
        return Status::OK();
      }
    }
    return Error(field, "varint longer than 10 bytes");
  }
  Status Varint32(std::string_view field, std::uint32_t max, std::uint32_t* value) {
    std::uint64_t wide = 0;
    CFS_RETURN_IF_ERROR(Varint(field, max, &wide));
    *value = static_cast<std::uint32_t>(wide);
    return Status::OK();
  }

  Status Fixed64(std::string_view field, std::uint64_t* value) {
    if (in_.size() < 8) return Truncated(field);
    std::uint64_t result = 0;
    for (int i = 0; i < 8; ++i) {
      result |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(in_[i])) << (8 * i);
    }
    in_.remove_prefix(8);
    *value = result;
    return Status::OK();
  }

  // Exactly `size` raw bytes.
  Status Bytes(std::string_view field, std::size_t size, std::string* value) {
    if (in_.size() < size) return Truncated(field);
    value->assign(in_.data(), size);
    in_.remove_prefix(size);
    return Status::OK();
  }

  // A string of min..max bytes. The length is checked before anything is allocated.
  Status String(std::string_view field, std::size_t min, std::size_t max, std::string* value) {
    std::uint64_t length = 0;
    CFS_RETURN_IF_ERROR(Varint(field, UINT64_MAX, &length));
    if (length < min || length > max) {
      return Error(field, "length " + std::to_string(length) + " outside " + std::to_string(min) +
                              ".." + std::to_string(max));
    }
    if (length > in_.size()) return Truncated(field);
    value->assign(in_.data(), static_cast<std::size_t>(length));
    in_.remove_prefix(static_cast<std::size_t>(length));
    return Status::OK();
  }

  // OK when the rest of the payload can hold `count` items of at least `item_bytes_min` bytes
  // each: a count is checked this way before a vector is sized by it.
  Status CountFits(std::string_view field, std::uint64_t count, std::size_t item_bytes_min) const {
    if (count <= in_.size() / item_bytes_min) return Status::OK();
    return Error(field, std::to_string(count) + " items do not fit in the " +
                            std::to_string(in_.size()) + " bytes left");
  }

  // OK when every byte was consumed.
  Status Finish() const {
    if (in_.empty()) return Status::OK();
    return Status::InvalidArgument(std::to_string(in_.size()) + " trailing bytes");
  }

  static Status Error(std::string_view field, std::string_view cause) {
    std::string message(field);
    message += ": ";
    message += cause;
    return Status::InvalidArgument(message);
  }

 private:
  static Status Truncated(std::string_view field) { return Error(field, "truncated"); }

  std::string_view in_;
};

}  // namespace cascadefs::net
