// store_scan.h: one pass over every key of a store, sorted by kind, for fsck's logical layer
// and gc (fusefs/check.h). Private to fusefs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/status.h"
#include "fs/inode_record.h"
#include "fusefs/check.h"
#include "fusefs/chunk_name.h"

namespace cascadefs::engine {
class DB;
class WriteBatch;
}  // namespace cascadefs::engine

namespace cascadefs::fusefs {

struct ScannedChunk {
  std::uint64_t length = 0;        // uncompressed bytes (0 when damaged or not verified)
  std::uint64_t stored_bytes = 0;  // the value's size
  bool damaged = false;
  std::string problem;
};

struct ScannedInode {
  bool decoded = false;
  InodeRecord record;   // when decoded
  std::string problem;  // when not
};

struct ScannedDirent {
  std::uint64_t parent = 0;
  std::string name;
  bool decoded = false;
  DirentValue value;
  std::string problem;
};

struct ScannedListing {
  std::uint64_t parent = 0;
  std::uint64_t cookie = 0;
  bool decoded = false;
  std::uint64_t ino = 0;
  std::uint32_t mode = 0;
  std::string name;
  std::string problem;
};

struct ScannedLostChunk {
  bool decoded = false;
  LostChunkRecord record;  // when decoded
  std::string problem;     // when not
};

struct StoreScan {
  std::unordered_map<ChunkName, ScannedChunk, ChunkNameHash> chunks;
  std::map<std::uint64_t, ScannedInode> inodes;
  std::vector<ScannedDirent> dirents;    // in key order: by parent, then name
  std::vector<ScannedListing> listings;  // in key order: by parent, then cookie
  std::optional<std::string> superblock;
  std::map<std::uint64_t, std::uint64_t> xattr_counts;                         // "x" keys per inode
  std::set<std::uint64_t> orphans;                                             // "o" keys
  std::unordered_map<ChunkName, ScannedLostChunk, ChunkNameHash> lost_chunks;  // "l" keys
  std::vector<std::string> malformed_keys;  // a known tag with an impossible length
  std::vector<std::string> unknown_keys;    // tags nothing writes (the first 100)
  std::uint64_t sync_state_keys = 0;        // "s" keys of a synced mount that decode
};

using ScanProgress = std::function<void(const NamespaceCheckProgress&)>;

// Reads every key of `db` into `scan`. With `verify_chunks`, each chunk's value is decoded and
// hashed against its name (damage is recorded, not returned); without, only names and sizes
// are kept. An error Status only when the store cannot be read.
Status ScanStore(engine::DB* db, StoreScan* scan, const ScanProgress& progress,
                 bool verify_chunks = true);

// Adds a delete of every key starting with `prefix` (an inode's xattrs) to `batch`.
Status DeleteWithPrefix(engine::DB* db, const std::string& prefix, engine::WriteBatch* batch);

}  // namespace cascadefs::fusefs
