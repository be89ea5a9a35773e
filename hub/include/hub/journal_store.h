// journal_store.h: where the hub keeps its namespaces and their journals (docs/sync.md, "Hub";
// the engine layout in docs/formats/journal.md).
//
// A JournalStore is the hub's metadata engine behind one small interface, so a distributed
// one (etcd) can replace the embedded default without touching the protocol or the hub's
// rules: it assigns nothing and decides nothing. The hub's writer thread assigns namespace ids
// and journal ids (jids) and hands the store whole batches; the store makes each batch durable
// and atomic, and reads back what it holds in jid order.
//
// The default, NewEngineJournalStore, keeps everything in a cascade engine DB next to the
// chunks ("c" keys, fusefs/chunk_store.h) under keys the filesystem never uses:
//   "H"                          -> hub superblock: format version, hub id, next namespace id
//   "N" name                     -> namespace record: format version, namespace id
//   "J" ns-id(8 BE) jid(8 BE)    -> journal entry (version, fields, XXH3-64 checksum)
//
// Thread safety: every method may be called from any thread that is not an IO thread of the
// DB's scheduler. The hub calls Append and Prune from its writer thread only; Scan runs from
// many handler threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/result.h"
#include "engine/status.h"
#include "net/wire.h"

namespace cascadefs::engine {
class DB;
}

namespace cascadefs::hub {

inline constexpr std::size_t kHubIdBytes = 16;

struct NamespaceRecord {
  std::string name;      // net::IsValidNamespace
  std::uint64_t id = 0;  // >= 1, never reused
};

// One entry as the store keeps it: the wire's JournalEntry plus its namespace.
struct StoredEntry {
  std::uint64_t ns_id = 0;
  net::JournalEntry entry;
};

// What one Append makes durable, all or nothing.
struct JournalBatch {
  std::vector<NamespaceRecord> new_namespaces;  // ids above every id the store holds
  std::vector<StoredEntry> entries;             // per namespace, jids ascending
};

class JournalStore {
 public:
  virtual ~JournalStore() = default;

  // The 16 random bytes naming this hub store, made when the store was created.
  virtual const std::string& hub_id() const = 0;

  // Every namespace, by name.
  virtual Result<std::vector<NamespaceRecord>> ListNamespaces() = 0;

  // Makes `batch` durable (synced) and atomic: after OK a crash loses none of it; after an
  // error none or (an I/O error after the write reached the log) all of it may survive a
  // restart, and the store may refuse further writes until reopened.
  virtual Status Append(const JournalBatch& batch) = 0;

  // Calls `visit` with the entries of namespace `ns_id` whose jid >= from_jid, jid ascending,
  // until it returns false or the namespace ends. Corruption naming the namespace and jid for
  // an entry that does not decode (the scan stops there).
  virtual Status Scan(std::uint64_t ns_id, std::uint64_t from_jid,
                      const std::function<bool(const net::JournalEntry&)>& visit) = 0;

  // Removes the entries `jids` of namespace `ns_id` durably (absent ones are ignored).
  virtual Status Prune(std::uint64_t ns_id, const std::vector<std::uint64_t>& jids) = 0;
};

// The store in `db` (not owned; must outlive it). With `create`, a DB without a hub superblock
// gets one (a new random hub id); without it, such a DB is InvalidArgument ("not a hub store").
// A DB that holds the filesystem's superblock ("m") is never made a hub: InvalidArgument.
// NotSupported for a superblock of a newer format version; Corruption for a damaged one.
Result<std::unique_ptr<JournalStore>> OpenEngineJournalStore(engine::DB* db, bool create);

// True when `db` holds a hub superblock (how tools tell a hub store from a filesystem's).
bool IsHubStore(engine::DB* db);

}  // namespace cascadefs::hub
