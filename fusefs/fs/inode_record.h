// inode_record.h: how the namespace is stored in the engine (docs/formats/namespace.md).
//
// Keys (every integer in a key is big-endian, so the engine's byte order is numeric order):
//   "m"                               -> superblock: format version, next inode number
//   "i" ino(8)                        -> InodeRecord
//   "d" parent(8) name                -> DirentValue: the entry by name (lookup)
//   "e" parent(8) cookie(8)           -> ListingValue: the entry by cookie (readdir order)
//   "x" ino(8) name                   -> an extended attribute's value
//   "o" ino(8)                        -> "" : an orphan (nlink 0, still open); removed at mount
//   "c" chunk-name(17)                -> a chunk (fusefs/chunk_store.h)
//   "l" chunk-name(17)                -> LostChunkRecord: fsck --repair found the chunk missing
//                                        or damaged; files naming it read EIO there until
//                                        the same bytes are stored again
// A metadata change writes every key it touches in one engine WriteBatch: atomic.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engine/result.h"
#include "fusefs/recipe.h"

namespace cascadefs::fusefs {

inline constexpr std::uint64_t kRootIno = 1;
// Names longer than this are refused with ENAMETOOLONG (NAME_MAX, as on ext4).
inline constexpr std::size_t kNameBytesMax = 255;
// Symlink targets longer than this are refused with ENAMETOOLONG (PATH_MAX).
inline constexpr std::size_t kSymlinkBytesMax = 4095;
// xattr names (with namespace prefix) and values, as the kernel's own limits.
inline constexpr std::size_t kXattrNameBytesMax = 255;
inline constexpr std::size_t kXattrValueBytesMax = 64 * 1024;
// readdir cookies 1 and 2 are "." and ".."; entries start at kFirstCookie.
inline constexpr std::uint64_t kFirstCookie = 3;

// Format version of the superblock and of every record; a store with a newer one is refused.
inline constexpr std::uint8_t kNamespaceFormatVersion = 1;

std::string SuperblockKey();
std::string InodeKey(std::uint64_t ino);
std::string DirentKey(std::uint64_t parent, std::string_view name);
std::string ListingKey(std::uint64_t parent, std::uint64_t cookie);
std::string ListingPrefix(std::uint64_t parent);
std::string XattrKey(std::uint64_t ino, std::string_view name);
std::string XattrPrefix(std::uint64_t ino);
std::string OrphanKey(std::uint64_t ino);
inline constexpr std::string_view kOrphanPrefix = "o";
// The inode number of an orphan key. REQUIRES: key starts with kOrphanPrefix, 9 bytes.
std::uint64_t OrphanKeyIno(std::string_view key);
// The big-endian u64 in the first 8 bytes of `bytes` (an inode number or cookie in a key).
// REQUIRES: bytes.size() >= 8.
std::uint64_t DecodeBig64(std::string_view bytes);

// The key of a lost chunk's record: "l" + the 17-byte chunk name.
std::string LostChunkKey(const ChunkName& name);
inline constexpr char kLostChunkTag = 'l';

// Why fsck --repair recorded a chunk as lost.
enum class LostCause : std::uint8_t {
  kMissing = 1,  // no "c" key held it (the engine lost the key)
  kDamaged = 2,  // its stored bytes did not decode or hash to the name; repair deleted them
};

// A lost chunk (docs/formats/namespace.md, "Lost chunk"): the bytes are gone and repair says
// so once, instead of reporting the same damage on every fsck. Nothing is guessed: the files
// that name the chunk keep naming it and read EIO over its bytes; storing the same bytes again
// (a write or a sync peer) heals every one of them, and the record is then stale.
struct LostChunkRecord {
  LostCause cause = LostCause::kMissing;
  std::int64_t recorded_ns = 0;  // when repair wrote it, nanoseconds since the epoch
  std::string Encode() const;
  static Result<LostChunkRecord> Decode(std::string_view bytes);
};

struct Superblock {
  std::uint64_t next_ino = kRootIno + 1;  // never reused: inode generations are always 0
  std::string Encode() const;
  static Result<Superblock> Decode(std::string_view bytes);
};

// One inode. Times are nanoseconds since the epoch.
struct InodeRecord {
  std::uint32_t mode = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint32_t nlink = 0;
  std::uint32_t rdev = 0;
  std::uint64_t size = 0;  // regular files: root.length once committed; symlinks: target length
  std::int64_t atime_ns = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;
  std::int64_t btime_ns = 0;
  std::uint64_t parent = 0;       // directories: the directory holding this one (root: itself)
  std::uint64_t next_cookie = 0;  // directories: readdir cookie of the next entry added
  std::uint64_t entry_count = 0;  // directories: entries, "." and ".." not counted
  std::uint32_t xattr_count = 0;
  FileRoot root;               // regular files: the contents' recipe tree
  std::string symlink_target;  // symlinks

  // For a regular file the encoded size is root.length: a file with unflushed writes has a
  // larger visible size in memory, but the record holds only what its chunks hold.
  std::string Encode() const;
  static Result<InodeRecord> Decode(std::string_view bytes);
};

// Value of a "d" key.
struct DirentValue {
  std::uint64_t ino = 0;
  std::uint64_t cookie = 0;
  std::uint32_t mode = 0;  // the entry's file type bits (S_IFMT), for readdir
  std::string Encode() const;
  static Result<DirentValue> Decode(std::string_view bytes);
};

// Value of an "e" key.
struct ListingValue {
  std::uint64_t ino = 0;
  std::uint32_t mode = 0;
  std::string name;
  std::string Encode() const;
  static Result<ListingValue> Decode(std::string_view bytes);
};

}  // namespace cascadefs::fusefs
