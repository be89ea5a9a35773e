// engine_journal_store.cc: the JournalStore over a cascade engine DB (journal_store.h).
//
// Append writes one engine WriteBatch with WriteOptions::sync: the superblock (when a namespace
// is new), the namespace records and the entries, so a batch is atomic and durable at once.
// Scan is a range read of the namespace's "J" keys. Prune deletes keys in one synced batch.
#include <sys/random.h>

#include <algorithm>
#include <memory>
#include <mutex>

#include "engine/db.h"
#include "engine/iterator.h"
#include "engine/write_batch.h"
#include "hub/journal_store.h"
#include "journal_format.h"

namespace cascadefs::hub {
namespace {

std::string NewHubId() {
  std::string id(kHubIdBytes, '\0');
  std::size_t filled = 0;
  while (filled < id.size()) {
    const ssize_t n = getrandom(id.data() + filled, id.size() - filled, 0);
    CFS_ASSERT(n > 0);  // getrandom of 16 bytes does not fail once the pool is initialized
    filled += static_cast<std::size_t>(n);
  }
  return id;
}

class EngineJournalStore final : public JournalStore {
 public:
  EngineJournalStore(engine::DB* db, HubSuperblock superblock)
      : db_(db), superblock_(std::move(superblock)) {}

  const std::string& hub_id() const override { return superblock_.hub_id; }

  Result<std::vector<NamespaceRecord>> ListNamespaces() override {
    std::vector<NamespaceRecord> out;
    std::unique_ptr<engine::Iterator> it = db_->NewIterator(engine::ReadOptions{});
    const std::string prefix(1, kNamespaceTag);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      NamespaceRecord record;
      record.name = std::string(it->key().substr(1));
      Result<std::uint64_t> id = DecodeNamespaceValue(it->value());
      if (!id.ok()) return id.status().WithContext("namespace " + record.name);
      record.id = id.value();
      out.push_back(std::move(record));
    }
    if (!it->status().ok()) return it->status();
    return out;
  }

  Status Append(const JournalBatch& batch) override {
    engine::WriteBatch wb;
    std::lock_guard lock(mutex_);
    HubSuperblock next = superblock_;
    for (const NamespaceRecord& ns : batch.new_namespaces) {
      CFS_ASSERT(ns.id >= next.next_ns_id);
      next.next_ns_id = ns.id + 1;
      wb.Put(NamespaceKey(ns.name), EncodeNamespaceValue(ns.id));
    }
    if (next.next_ns_id != superblock_.next_ns_id) wb.Put(kSuperblockKey, next.Encode());
    for (const StoredEntry& e : batch.entries) {
      wb.Put(EntryKey(e.ns_id, e.entry.jid), EncodeEntry(e.entry));
    }
    Status s = db_->Write(engine::WriteOptions{.sync = true}, wb);
    if (s.ok()) superblock_ = std::move(next);
    return s;
  }

  Status Scan(std::uint64_t ns_id, std::uint64_t from_jid,
              const std::function<bool(const net::JournalEntry&)>& visit) override {
    std::unique_ptr<engine::Iterator> it = db_->NewIterator(engine::ReadOptions{});
    const std::string prefix = EntryPrefix(ns_id);
    for (it->Seek(EntryKey(ns_id, from_jid)); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      std::uint64_t key_ns = 0;
      std::uint64_t key_jid = 0;
      if (!ParseEntryKey(it->key(), &key_ns, &key_jid)) {
        return Status::Corruption("namespace id " + std::to_string(ns_id) +
                                  ": a journal key of the wrong size");
      }
      Result<net::JournalEntry> entry = DecodeEntry(it->value());
      if (!entry.ok()) {
        return entry.status().WithContext("namespace id " + std::to_string(ns_id) + " jid " +
                                          std::to_string(key_jid));
      }
      if (entry.value().jid != key_jid) {
        return Status::Corruption("namespace id " + std::to_string(ns_id) + " jid " +
                                  std::to_string(key_jid) + ": the entry says jid " +
                                  std::to_string(entry.value().jid));
      }
      if (!visit(entry.value())) return Status::OK();
    }
    return it->status();
  }

  Status Prune(std::uint64_t ns_id, const std::vector<std::uint64_t>& jids) override {
    if (jids.empty()) return Status::OK();
    engine::WriteBatch wb;
    for (std::uint64_t jid : jids) wb.Delete(EntryKey(ns_id, jid));
    return db_->Write(engine::WriteOptions{.sync = true}, wb);
  }

 private:
  engine::DB* const db_;
  std::mutex mutex_;          // serializes Append's read-modify-write of superblock_
  HubSuperblock superblock_;  // GUARDED_BY(mutex_) for writes; hub_id never changes
};

}  // namespace

bool IsHubStore(engine::DB* db) {
  std::string value;
  return db->Get(engine::ReadOptions{}, kSuperblockKey, &value).ok();
}

Result<std::unique_ptr<JournalStore>> OpenEngineJournalStore(engine::DB* db, bool create) {
  std::string value;
  Status got = db->Get(engine::ReadOptions{}, kSuperblockKey, &value);
  if (got.ok()) {
    Result<HubSuperblock> sb = HubSuperblock::Decode(value);
    if (!sb.ok()) return sb.status();
    return std::unique_ptr<JournalStore>(new EngineJournalStore(db, std::move(sb.value())));
  }
  if (!got.IsNotFound()) return got;
  if (db->Get(engine::ReadOptions{}, "m", &value).ok()) {
    return Status::InvalidArgument("a filesystem store, not a hub store");
  }
  if (!create) return Status::InvalidArgument("not a hub store (no hub superblock)");
  HubSuperblock sb;
  sb.hub_id = NewHubId();
  sb.next_ns_id = 1;
  Status put = db->Put(engine::WriteOptions{.sync = true}, kSuperblockKey, sb.Encode());
  if (!put.ok()) return put;
  return std::unique_ptr<JournalStore>(new EngineJournalStore(db, std::move(sb)));
}

}  // namespace cascadefs::hub
