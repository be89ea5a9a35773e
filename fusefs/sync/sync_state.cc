// sync_state.cc: encodings of the synced mount's state keys (docs/formats/namespace.md).
#include "sync/sync_state.h"

#include "chunk/varint.h"

namespace cascadefs::fusefs::sync {
namespace {

void PutString(std::string* out, std::string_view s) {
  AppendVarint64(out, s.size());
  out->append(s);
}

bool GetString(std::string_view* in, std::string* out) {
  std::uint64_t size = 0;
  if (!ConsumeVarint64(in, &size) || size > in->size()) return false;
  out->assign(in->substr(0, size));
  in->remove_prefix(size);
  return true;
}

std::uint64_t ZigZag(std::int64_t v) {
  return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}
std::int64_t UnZigZag(std::uint64_t v) {
  return static_cast<std::int64_t>(v >> 1) ^ -static_cast<std::int64_t>(v & 1);
}

}  // namespace

std::string CursorKey() { return "sc"; }
std::string BaseKey(std::string_view path) { return std::string(kBasePrefix) + std::string(path); }

std::string SyncCursor::Encode() const {
  std::string out(1, static_cast<char>(kSyncStateFormatVersion));
  PutString(&out, hub_id);
  PutString(&out, ns);
  AppendVarint64(&out, cursor);
  return out;
}

Result<SyncCursor> SyncCursor::Decode(std::string_view bytes) {
  SyncCursor out;
  if (bytes.empty() || static_cast<std::uint8_t>(bytes[0]) != kSyncStateFormatVersion) {
    return Status::Corruption("sync cursor: unknown format version");
  }
  bytes.remove_prefix(1);
  if (!GetString(&bytes, &out.hub_id) || !GetString(&bytes, &out.ns) ||
      !ConsumeVarint64(&bytes, &out.cursor) || !bytes.empty()) {
    return Status::Corruption("sync cursor: truncated or trailing bytes");
  }
  return out;
}

std::string BaseEntry::Encode() const {
  std::string out(1, static_cast<char>(kSyncStateFormatVersion));
  AppendVarint64(&out, jid);
  out.push_back(static_cast<char>(kind));
  AppendVarint64(&out, mode);
  AppendVarint64(&out, ZigZag(mtime_ns));
  PutString(&out, kind == BaseKind::kFile ? root.Encode() : std::string());
  PutString(&out, target);
  AppendVarint64(&out, ino);
  return out;
}

Result<BaseEntry> BaseEntry::Decode(std::string_view bytes) {
  BaseEntry out;
  if (bytes.empty() || static_cast<std::uint8_t>(bytes[0]) != kSyncStateFormatVersion) {
    return Status::Corruption("sync base entry: unknown format version");
  }
  bytes.remove_prefix(1);
  std::uint64_t mode = 0;
  std::uint64_t mtime = 0;
  std::string root;
  if (!ConsumeVarint64(&bytes, &out.jid) || bytes.empty()) {
    return Status::Corruption("sync base entry: truncated");
  }
  const auto kind = static_cast<std::uint8_t>(bytes[0]);
  bytes.remove_prefix(1);
  if (kind < 1 || kind > 4) return Status::Corruption("sync base entry: unknown kind");
  out.kind = static_cast<BaseKind>(kind);
  if (!ConsumeVarint64(&bytes, &mode) || mode > 07777 || !ConsumeVarint64(&bytes, &mtime) ||
      !GetString(&bytes, &root) || !GetString(&bytes, &out.target) ||
      !ConsumeVarint64(&bytes, &out.ino) || !bytes.empty()) {
    return Status::Corruption("sync base entry: truncated, trailing or out-of-range fields");
  }
  out.mode = static_cast<std::uint32_t>(mode);
  out.mtime_ns = UnZigZag(mtime);
  if (out.kind == BaseKind::kFile) {
    Result<FileRoot> decoded = FileRoot::Decode(root);
    if (!decoded.ok()) return decoded.status().WithContext("sync base entry");
    out.root = decoded.value();
  }
  return out;
}

}  // namespace cascadefs::fusefs::sync
