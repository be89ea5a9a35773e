// journal_format.cc: encoders and decoders of the hub's records (journal_format.h).
//
// Entry value (docs/formats/journal.md, "Journal entry"):
//   u8 version | varint jid | u8 kind | string path | varint mode | i64 mtime_ns (LE)
//   | string root | string target | i64 time_ns (LE) | string origin | u64 xxh3-64 (LE)
// where a string is a varint length and its bytes.
#include "journal_format.h"

#include <cstring>

#include <xxhash.h>

namespace cascadefs::hub {
namespace {

constexpr std::size_t kChecksumBytes = 8;

void AppendVarint(std::string* dst, std::uint64_t value) {
  while (value >= 0x80) {
    dst->push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  dst->push_back(static_cast<char>(value));
}

bool ConsumeVarint(std::string_view* input, std::uint64_t* value) {
  std::uint64_t result = 0;
  for (std::size_t i = 0; i < input->size() && i < 10; ++i) {
    const auto byte = static_cast<std::uint8_t>((*input)[i]);
    if (i == 9 && byte > 1) return false;
    result |= static_cast<std::uint64_t>(byte & 0x7F) << (7 * i);
    if ((byte & 0x80) == 0) {
      *value = result;
      input->remove_prefix(i + 1);
      return true;
    }
  }
  return false;
}

void AppendFixed64(std::string* dst, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) dst->push_back(static_cast<char>(value >> (8 * i)));
}

bool ConsumeFixed64(std::string_view* input, std::uint64_t* value) {
  if (input->size() < 8) return false;
  std::uint64_t result = 0;
  for (int i = 0; i < 8; ++i) {
    result |= static_cast<std::uint64_t>(static_cast<std::uint8_t>((*input)[i])) << (8 * i);
  }
  *value = result;
  input->remove_prefix(8);
  return true;
}

void AppendBig64(std::string* dst, std::uint64_t value) {
  for (int i = 7; i >= 0; --i) dst->push_back(static_cast<char>(value >> (8 * i)));
}

std::uint64_t DecodeBig64(std::string_view bytes) {
  std::uint64_t result = 0;
  for (int i = 0; i < 8; ++i) result = (result << 8) | static_cast<std::uint8_t>(bytes[i]);
  return result;
}

void AppendString(std::string* dst, std::string_view s) {
  AppendVarint(dst, s.size());
  dst->append(s);
}

bool ConsumeString(std::string_view* input, std::size_t max_bytes, std::string* out) {
  std::uint64_t length = 0;
  if (!ConsumeVarint(input, &length) || length > max_bytes || length > input->size()) {
    return false;
  }
  out->assign(input->substr(0, length));
  input->remove_prefix(length);
  return true;
}

void AppendChecksum(std::string* dst) { AppendFixed64(dst, XXH3_64bits(dst->data(), dst->size())); }

// The body of `value` without its checksum, after checking it; Corruption otherwise.
Result<std::string_view> CheckedBody(std::string_view value, std::string_view what) {
  if (value.size() < 1 + kChecksumBytes) {
    return Status::Corruption(std::string(what) + ": record too short");
  }
  std::string_view body = value.substr(0, value.size() - kChecksumBytes);
  std::string_view tail = value.substr(body.size());
  std::uint64_t stored = 0;
  ConsumeFixed64(&tail, &stored);
  if (stored != XXH3_64bits(body.data(), body.size())) {
    return Status::Corruption(std::string(what) + ": checksum mismatch");
  }
  const auto version = static_cast<std::uint8_t>(body[0]);
  if (version > kJournalFormatVersion) {
    return Status::NotSupported(std::string(what) + ": format version " + std::to_string(version) +
                                " is newer than this build's " +
                                std::to_string(kJournalFormatVersion));
  }
  if (version == 0) return Status::Corruption(std::string(what) + ": format version 0");
  body.remove_prefix(1);
  return body;
}

}  // namespace

std::string HubSuperblock::Encode() const {
  std::string out;
  out.push_back(static_cast<char>(kJournalFormatVersion));
  AppendString(&out, hub_id);
  AppendVarint(&out, next_ns_id);
  AppendChecksum(&out);
  return out;
}

Result<HubSuperblock> HubSuperblock::Decode(std::string_view value) {
  Result<std::string_view> body = CheckedBody(value, "hub superblock");
  if (!body.ok()) return body.status();
  std::string_view in = body.value();
  HubSuperblock sb;
  if (!ConsumeString(&in, 64, &sb.hub_id) || sb.hub_id.size() != 16 ||
      !ConsumeVarint(&in, &sb.next_ns_id) || sb.next_ns_id == 0 || !in.empty()) {
    return Status::Corruption("hub superblock: malformed");
  }
  return sb;
}

std::string NamespaceKey(std::string_view name) {
  std::string key(1, kNamespaceTag);
  key.append(name);
  return key;
}

std::string EncodeNamespaceValue(std::uint64_t id) {
  std::string out;
  out.push_back(static_cast<char>(kJournalFormatVersion));
  AppendVarint(&out, id);
  AppendChecksum(&out);
  return out;
}

Result<std::uint64_t> DecodeNamespaceValue(std::string_view value) {
  Result<std::string_view> body = CheckedBody(value, "namespace record");
  if (!body.ok()) return body.status();
  std::string_view in = body.value();
  std::uint64_t id = 0;
  if (!ConsumeVarint(&in, &id) || id == 0 || !in.empty()) {
    return Status::Corruption("namespace record: malformed");
  }
  return id;
}

std::string EntryKey(std::uint64_t ns_id, std::uint64_t jid) {
  std::string key(1, kEntryTag);
  AppendBig64(&key, ns_id);
  AppendBig64(&key, jid);
  return key;
}

std::string EntryPrefix(std::uint64_t ns_id) {
  std::string key(1, kEntryTag);
  AppendBig64(&key, ns_id);
  return key;
}

bool ParseEntryKey(std::string_view key, std::uint64_t* ns_id, std::uint64_t* jid) {
  if (key.size() != kEntryKeyBytes || key[0] != kEntryTag) return false;
  *ns_id = DecodeBig64(key.substr(1, 8));
  *jid = DecodeBig64(key.substr(9, 8));
  return true;
}

std::string EncodeEntry(const net::JournalEntry& entry) {
  std::string out;
  out.push_back(static_cast<char>(kJournalFormatVersion));
  AppendVarint(&out, entry.jid);
  out.push_back(static_cast<char>(entry.change.kind));
  AppendString(&out, entry.change.path);
  AppendVarint(&out, entry.change.mode);
  AppendFixed64(&out, static_cast<std::uint64_t>(entry.change.mtime_ns));
  AppendString(&out, entry.change.root);
  AppendString(&out, entry.change.target);
  AppendFixed64(&out, static_cast<std::uint64_t>(entry.time_ns));
  AppendString(&out, entry.origin);
  AppendChecksum(&out);
  return out;
}

Result<net::JournalEntry> DecodeEntry(std::string_view value) {
  Result<std::string_view> body = CheckedBody(value, "journal entry");
  if (!body.ok()) return body.status();
  std::string_view in = body.value();
  net::JournalEntry e;
  std::uint64_t mode = 0;
  std::uint64_t mtime = 0;
  std::uint64_t time = 0;
  if (!ConsumeVarint(&in, &e.jid) || e.jid == 0 || in.empty()) {
    return Status::Corruption("journal entry: malformed jid");
  }
  const auto kind = static_cast<std::uint8_t>(in[0]);
  in.remove_prefix(1);
  if (kind < static_cast<std::uint8_t>(net::EntryKind::kFile) ||
      kind > static_cast<std::uint8_t>(net::EntryKind::kRename)) {
    return Status::Corruption("journal entry: unknown kind " + std::to_string(kind));
  }
  e.change.kind = static_cast<net::EntryKind>(kind);
  if (!ConsumeString(&in, net::kPathBytesMax, &e.change.path) || !ConsumeVarint(&in, &mode) ||
      mode > 07777 || !ConsumeFixed64(&in, &mtime) ||
      !ConsumeString(&in, net::kRootBytesMax, &e.change.root) ||
      !ConsumeString(&in, net::kSymlinkBytesMax, &e.change.target) || !ConsumeFixed64(&in, &time) ||
      !ConsumeString(&in, net::kHostBytesMax, &e.origin) || !in.empty()) {
    return Status::Corruption("journal entry: malformed fields");
  }
  e.change.mode = static_cast<std::uint32_t>(mode);
  e.change.mtime_ns = static_cast<std::int64_t>(mtime);
  e.time_ns = static_cast<std::int64_t>(time);
  return e;
}

}  // namespace cascadefs::hub
