// store_scan.cc: the key pass shared by fsck's logical layer and gc (store_scan.h).
#include "check/store_scan.h"

#include <memory>
#include <string_view>

#include "engine/db.h"
#include "engine/iterator.h"
#include "engine/write_batch.h"
#include "fusefs/chunk_store.h"
#include "sync/sync_state.h"

namespace cascadefs::fusefs {
namespace {

constexpr std::size_t kUnknownKeysKept = 100;
constexpr std::uint64_t kProgressEveryKeys = 4096;

// The smallest key after `key`.
std::string Successor(std::string_view key) { return std::string(key) + '\0'; }

void Record(StoreScan* scan, std::string_view key, std::string_view value, bool verify_chunks) {
  const char tag = key[0];
  const std::string_view rest = key.substr(1);
  switch (tag) {
    case 'c': {
      Result<ChunkName> name = ChunkName::Decode(rest);
      if (!name.ok()) break;  // malformed: below
      ScannedChunk& chunk = scan->chunks[name.value()];
      chunk.stored_bytes = value.size();
      if (verify_chunks) {
        Result<std::string> data = DecodeChunkValue(name.value(), value);
        if (data.ok()) {
          chunk.length = data.value().size();
        } else {
          chunk.damaged = true;
          chunk.problem = data.status().message();
        }
      }
      return;
    }
    case 'd': {
      if (rest.size() < 9 || rest.size() > 8 + kNameBytesMax) break;
      ScannedDirent dirent{.parent = DecodeBig64(rest), .name = std::string(rest.substr(8))};
      Result<DirentValue> decoded = DirentValue::Decode(value);
      dirent.decoded = decoded.ok();
      if (decoded.ok()) {
        dirent.value = decoded.value();
      } else {
        dirent.problem = decoded.status().message();
      }
      scan->dirents.push_back(std::move(dirent));
      return;
    }
    case 'e': {
      if (rest.size() != 16) break;
      ScannedListing listing{.parent = DecodeBig64(rest), .cookie = DecodeBig64(rest.substr(8))};
      Result<ListingValue> decoded = ListingValue::Decode(value);
      listing.decoded = decoded.ok();
      if (decoded.ok()) {
        listing.ino = decoded.value().ino;
        listing.mode = decoded.value().mode;
        listing.name = decoded.value().name;
      } else {
        listing.problem = decoded.status().message();
      }
      scan->listings.push_back(std::move(listing));
      return;
    }
    case 'i': {
      if (rest.size() != 8) break;
      ScannedInode& inode = scan->inodes[DecodeBig64(rest)];
      Result<InodeRecord> decoded = InodeRecord::Decode(value);
      inode.decoded = decoded.ok();
      if (decoded.ok()) {
        inode.record = std::move(decoded).value();
      } else {
        inode.problem = decoded.status().message();
      }
      return;
    }
    case kLostChunkTag: {
      Result<ChunkName> name = ChunkName::Decode(rest);
      if (!name.ok()) break;
      ScannedLostChunk& lost = scan->lost_chunks[name.value()];
      Result<LostChunkRecord> decoded = LostChunkRecord::Decode(value);
      lost.decoded = decoded.ok();
      if (decoded.ok()) {
        lost.record = decoded.value();
      } else {
        lost.problem = decoded.status().message();
      }
      return;
    }
    case 'm':
      if (!rest.empty()) break;
      scan->superblock = std::string(value);
      return;
    case 'o':
      if (rest.size() != 8) break;
      scan->orphans.insert(DecodeBig64(rest));
      return;
    case 'x':
      if (rest.size() < 9) break;
      ++scan->xattr_counts[DecodeBig64(rest)];
      return;
    case 's': {
      // A synced mount's state (fusefs/sync/sync_state.h): the cursor and base entries.
      bool decoded = false;
      if (rest == "c") {
        decoded = sync::SyncCursor::Decode(value).ok();
      } else if (!rest.empty() && rest[0] == 'b') {
        decoded = sync::BaseEntry::Decode(value).ok();
      }
      if (!decoded) break;
      ++scan->sync_state_keys;
      return;
    }
    default:
      if (scan->unknown_keys.size() < kUnknownKeysKept) scan->unknown_keys.emplace_back(key);
      return;
  }
  scan->malformed_keys.emplace_back(key);
}

}  // namespace

Status ScanStore(engine::DB* db, StoreScan* scan, const ScanProgress& progress,
                 bool verify_chunks) {
  engine::ReadOptions read;
  read.iterator_values = false;  // read each value by PrepareValue, so a bad one is skipped
  std::unique_ptr<engine::Iterator> it = db->NewIterator(read);
  it->SeekToFirst();
  std::uint64_t keys = 0;
  for (;;) {
    if (!it->Valid()) {
      if (!it->status().ok()) return it->status().WithContext("reading the store's keys");
      break;
    }
    const std::string key(it->key());
    if (progress && (++keys % kProgressEveryKeys) == 0) {
      progress({.phase = "keys", .done = keys, .total = 0});
    }
    if (key.empty()) {
      it->Next();
      continue;
    }
    if (!it->PrepareValue()) {
      // A separated value that does not read back (the value-log layer names the file and
      // offset). The iterator stops at an error: continue from the next key.
      const Status error = it->status();
      if (key[0] == 'c') {
        if (Result<ChunkName> name = ChunkName::Decode(std::string_view(key).substr(1));
            name.ok()) {
          ScannedChunk& chunk = scan->chunks[name.value()];
          chunk.damaged = true;
          chunk.problem = error.message();
        }
      } else {
        return error.WithContext("reading the value of a namespace key");
      }
      it = db->NewIterator(read);
      it->Seek(Successor(key));
      continue;
    }
    Record(scan, key, it->value(), verify_chunks);
    it->Next();
  }
  return Status::OK();
}

Status DeleteWithPrefix(engine::DB* db, const std::string& prefix, engine::WriteBatch* batch) {
  std::unique_ptr<engine::Iterator> it =
      db->NewIterator(engine::ReadOptions{.snapshot = nullptr, .iterator_values = false});
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    batch->Delete(it->key());
  }
  return it->status();
}

}  // namespace cascadefs::fusefs
