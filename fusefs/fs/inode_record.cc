// inode_record.cc: byte layouts of docs/formats/namespace.md.
#include "fs/inode_record.h"

#include <sys/stat.h>

#include <cstring>

#include "chunk/varint.h"
#include "engine/assert.h"

namespace cascadefs::fusefs {
namespace {

void AppendBig64(std::string* out, std::uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

template <typename T>
void AppendLittle(std::string* out, T value) {
  static_assert(std::is_integral_v<T>);
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    out->push_back(static_cast<char>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xff));
  }
}

// Reads a little-endian T from the front of *input; false when too short.
template <typename T>
bool ConsumeLittle(std::string_view* input, T* value) {
  if (input->size() < sizeof(T)) return false;
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    v |= static_cast<std::uint64_t>(static_cast<unsigned char>((*input)[i])) << (8 * i);
  }
  *value = static_cast<T>(v);
  input->remove_prefix(sizeof(T));
  return true;
}

Status Damaged(std::string_view what) {
  return Status::Corruption(std::string("namespace record damaged: ") + std::string(what));
}

Status CheckVersion(std::string_view* input, std::string_view what) {
  std::uint8_t version = 0;
  if (!ConsumeLittle(input, &version)) return Damaged(what);
  if (version > kNamespaceFormatVersion) {
    return Status::NotSupported(std::string(what) + " written by a newer cascadefs (format " +
                                std::to_string(version) + ")");
  }
  if (version == 0) return Damaged(what);
  return Status::OK();
}

std::string KeyWithIno(char tag, std::uint64_t ino) {
  std::string key(1, tag);
  AppendBig64(&key, ino);
  return key;
}

}  // namespace

std::string SuperblockKey() { return "m"; }
std::string InodeKey(std::uint64_t ino) { return KeyWithIno('i', ino); }
std::string DirentKey(std::uint64_t parent, std::string_view name) {
  std::string key = KeyWithIno('d', parent);
  key.append(name);
  return key;
}
std::string ListingPrefix(std::uint64_t parent) { return KeyWithIno('e', parent); }
std::string ListingKey(std::uint64_t parent, std::uint64_t cookie) {
  std::string key = ListingPrefix(parent);
  AppendBig64(&key, cookie);
  return key;
}
std::string XattrPrefix(std::uint64_t ino) { return KeyWithIno('x', ino); }
std::string XattrKey(std::uint64_t ino, std::string_view name) {
  std::string key = XattrPrefix(ino);
  key.append(name);
  return key;
}
std::string OrphanKey(std::uint64_t ino) { return KeyWithIno('o', ino); }
std::uint64_t OrphanKeyIno(std::string_view key) {
  CFS_ASSERT(key.size() == 9 && key[0] == 'o');
  return DecodeBig64(key.substr(1));
}

std::string LostChunkKey(const ChunkName& name) {
  std::string key(1, kLostChunkTag);
  key += name.encoded();
  return key;
}

std::string LostChunkRecord::Encode() const {
  std::string out;
  AppendLittle<std::uint8_t>(&out, kNamespaceFormatVersion);
  AppendLittle(&out, static_cast<std::uint8_t>(cause));
  AppendLittle(&out, recorded_ns);
  return out;
}

Result<LostChunkRecord> LostChunkRecord::Decode(std::string_view bytes) {
  CFS_RETURN_IF_ERROR(CheckVersion(&bytes, "lost chunk record"));
  LostChunkRecord record;
  std::uint8_t cause = 0;
  if (!ConsumeLittle(&bytes, &cause) || !ConsumeLittle(&bytes, &record.recorded_ns) ||
      !bytes.empty() ||
      (cause != static_cast<std::uint8_t>(LostCause::kMissing) &&
       cause != static_cast<std::uint8_t>(LostCause::kDamaged))) {
    return Damaged("lost chunk record");
  }
  record.cause = static_cast<LostCause>(cause);
  return record;
}

std::uint64_t DecodeBig64(std::string_view bytes) {
  CFS_ASSERT(bytes.size() >= 8);
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < 8; ++i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

std::string Superblock::Encode() const {
  std::string out;
  AppendLittle<std::uint8_t>(&out, kNamespaceFormatVersion);
  AppendLittle<std::uint64_t>(&out, next_ino);
  return out;
}

Result<Superblock> Superblock::Decode(std::string_view bytes) {
  CFS_RETURN_IF_ERROR(CheckVersion(&bytes, "superblock"));
  Superblock sb;
  if (!ConsumeLittle(&bytes, &sb.next_ino) || !bytes.empty() || sb.next_ino <= kRootIno) {
    return Damaged("superblock");
  }
  return sb;
}

std::string InodeRecord::Encode() const {
  std::string out;
  out.reserve(96 + symlink_target.size());
  AppendLittle<std::uint8_t>(&out, kNamespaceFormatVersion);
  AppendLittle(&out, mode);
  AppendLittle(&out, uid);
  AppendLittle(&out, gid);
  AppendLittle(&out, nlink);
  AppendLittle(&out, rdev);
  AppendLittle<std::uint64_t>(&out, S_ISREG(mode) ? root.length : size);
  AppendLittle(&out, atime_ns);
  AppendLittle(&out, mtime_ns);
  AppendLittle(&out, ctime_ns);
  AppendLittle(&out, btime_ns);
  AppendLittle(&out, parent);
  AppendLittle(&out, next_cookie);
  AppendLittle(&out, entry_count);
  AppendLittle(&out, xattr_count);
  std::string payload;
  if (S_ISREG(mode)) {
    payload = root.Encode();
  } else if (S_ISLNK(mode)) {
    payload = symlink_target;
  }
  AppendVarint64(&out, payload.size());
  out.append(payload);
  return out;
}

Result<InodeRecord> InodeRecord::Decode(std::string_view bytes) {
  CFS_RETURN_IF_ERROR(CheckVersion(&bytes, "inode"));
  InodeRecord r;
  std::uint64_t payload_size = 0;
  const bool fixed_ok = ConsumeLittle(&bytes, &r.mode) && ConsumeLittle(&bytes, &r.uid) &&
                        ConsumeLittle(&bytes, &r.gid) && ConsumeLittle(&bytes, &r.nlink) &&
                        ConsumeLittle(&bytes, &r.rdev) && ConsumeLittle(&bytes, &r.size) &&
                        ConsumeLittle(&bytes, &r.atime_ns) && ConsumeLittle(&bytes, &r.mtime_ns) &&
                        ConsumeLittle(&bytes, &r.ctime_ns) && ConsumeLittle(&bytes, &r.btime_ns) &&
                        ConsumeLittle(&bytes, &r.parent) && ConsumeLittle(&bytes, &r.next_cookie) &&
                        ConsumeLittle(&bytes, &r.entry_count) &&
                        ConsumeLittle(&bytes, &r.xattr_count) &&
                        ConsumeVarint64(&bytes, &payload_size);
  if (!fixed_ok || payload_size != bytes.size()) return Damaged("inode (length)");
  if (S_ISREG(r.mode)) {
    Result<FileRoot> root = FileRoot::Decode(bytes);
    if (!root.ok()) return Damaged("inode (file root)");
    r.root = root.value();
    if (r.root.length != r.size) return Damaged("inode (size differs from its root)");
  } else if (S_ISLNK(r.mode)) {
    r.symlink_target.assign(bytes);
    if (r.symlink_target.size() != r.size) return Damaged("inode (symlink size)");
  } else if (!bytes.empty()) {
    return Damaged("inode (payload on a non-file)");
  }
  return r;
}

std::string DirentValue::Encode() const {
  std::string out;
  AppendLittle(&out, ino);
  AppendLittle(&out, cookie);
  AppendLittle(&out, mode);
  return out;
}

Result<DirentValue> DirentValue::Decode(std::string_view bytes) {
  DirentValue v;
  if (!ConsumeLittle(&bytes, &v.ino) || !ConsumeLittle(&bytes, &v.cookie) ||
      !ConsumeLittle(&bytes, &v.mode) || !bytes.empty() || v.ino == 0) {
    return Damaged("directory entry");
  }
  return v;
}

std::string ListingValue::Encode() const {
  std::string out;
  AppendLittle(&out, ino);
  AppendLittle(&out, mode);
  out.append(name);
  return out;
}

Result<ListingValue> ListingValue::Decode(std::string_view bytes) {
  ListingValue v;
  if (!ConsumeLittle(&bytes, &v.ino) || !ConsumeLittle(&bytes, &v.mode) || bytes.empty() ||
      bytes.size() > kNameBytesMax || v.ino == 0) {
    return Damaged("directory listing entry");
  }
  v.name.assign(bytes);
  return v;
}

}  // namespace cascadefs::fusefs
