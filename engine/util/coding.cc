#include "util/coding.h"

namespace cascadefs::engine {

char* EncodeVarint32(char* dst, std::uint32_t value) { return EncodeVarint64(dst, value); }

char* EncodeVarint64(char* dst, std::uint64_t value) {
  auto* out = reinterpret_cast<unsigned char*>(dst);
  while (value >= 0x80) {
    *out++ = static_cast<unsigned char>(value | 0x80);
    value >>= 7;
  }
  *out++ = static_cast<unsigned char>(value);
  return reinterpret_cast<char*>(out);
}

void PutVarint32(std::string* dst, std::uint32_t value) {
  char buf[kVarint32LengthMax];
  dst->append(buf, static_cast<std::size_t>(EncodeVarint32(buf, value) - buf));
}

void PutVarint64(std::string* dst, std::uint64_t value) {
  char buf[kVarint64LengthMax];
  dst->append(buf, static_cast<std::size_t>(EncodeVarint64(buf, value) - buf));
}

int VarintLength(std::uint64_t value) {
  int length = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++length;
  }
  return length;
}

const char* GetVarint64Ptr(const char* p, const char* limit, std::uint64_t* value) {
  std::uint64_t result = 0;
  for (int shift = 0; shift <= 63 && p < limit; shift += 7) {
    const std::uint64_t byte = static_cast<unsigned char>(*p++);
    if (shift == 63 && byte > 1) return nullptr;  // more than 64 bits
    if (byte & 0x80) {
      result |= (byte & 0x7f) << shift;
    } else {
      result |= byte << shift;
      *value = result;
      return p;
    }
  }
  return nullptr;
}

const char* GetVarint32Ptr(const char* p, const char* limit, std::uint32_t* value) {
  std::uint32_t result = 0;
  for (int shift = 0; shift <= 28 && p < limit; shift += 7) {
    const std::uint32_t byte = static_cast<unsigned char>(*p++);
    if (shift == 28 && byte > 0x0f) return nullptr;  // more than 32 bits
    if (byte & 0x80) {
      result |= (byte & 0x7f) << shift;
    } else {
      result |= byte << shift;
      *value = result;
      return p;
    }
  }
  return nullptr;
}

bool GetVarint32(std::string_view* input, std::uint32_t* value) {
  const char* p = input->data();
  const char* limit = p + input->size();
  const char* q = GetVarint32Ptr(p, limit, value);
  if (q == nullptr) return false;
  input->remove_prefix(static_cast<std::size_t>(q - p));
  return true;
}

bool GetVarint64(std::string_view* input, std::uint64_t* value) {
  const char* p = input->data();
  const char* limit = p + input->size();
  const char* q = GetVarint64Ptr(p, limit, value);
  if (q == nullptr) return false;
  input->remove_prefix(static_cast<std::size_t>(q - p));
  return true;
}

void PutLengthPrefixed(std::string* dst, std::string_view value) {
  PutVarint32(dst, static_cast<std::uint32_t>(value.size()));
  dst->append(value);
}

bool GetLengthPrefixed(std::string_view* input, std::string_view* value) {
  std::uint32_t length = 0;
  if (!GetVarint32(input, &length) || input->size() < length) return false;
  *value = input->substr(0, length);
  input->remove_prefix(length);
  return true;
}

bool GetFixed32(std::string_view* input, std::uint32_t* value) {
  if (input->size() < 4) return false;
  *value = DecodeFixed32(input->data());
  input->remove_prefix(4);
  return true;
}

bool GetFixed64(std::string_view* input, std::uint64_t* value) {
  if (input->size() < 8) return false;
  *value = DecodeFixed64(input->data());
  input->remove_prefix(8);
  return true;
}

}  // namespace cascadefs::engine
