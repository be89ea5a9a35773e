// hub_store.h: reading a hub store for tools (`cascadefs inspect HUBSTORE journal`, `cascadefs
// fsck HUBSTORE`), over an engine DB the caller opened (read-only is enough). The store's layout
// is docs/formats/journal.md.
//
// Thread safety: each call reads `db` only; run them from a thread that is not an IO thread of
// the DB's scheduler.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/result.h"
#include "net/wire.h"

namespace cascadefs::engine {
class DB;
}

namespace cascadefs::hub {

struct ListedEntry {
  std::string ns;
  net::JournalEntry entry;
};

// Every journal entry, namespace by namespace (name order), jid ascending; only namespace `ns`
// when it is not empty. InvalidArgument when `db` is not a hub store or `ns` is unknown;
// Corruption naming namespace and jid for an entry that does not decode.
Result<std::vector<ListedEntry>> ReadJournal(engine::DB* db, std::string_view ns = {});

struct HubCheckFinding {
  std::string ns;         // empty: the store as a whole
  std::uint64_t jid = 0;  // 0: not about one entry
  std::string path;       // the entry's path, when known
  std::string problem;    // one line
};

struct HubCheckReport {
  std::uint64_t namespaces = 0;
  std::uint64_t entries = 0;
  std::uint64_t live_files = 0;           // file states of the rebuilt indexes
  std::uint64_t chunks_checked = 0;       // distinct chunks read and hashed
  std::vector<HubCheckFinding> findings;  // empty: clean
};

// Checks the journal: the superblock, every namespace record, every entry (checksum, decode,
// its key's jid, jids strictly increasing per namespace, a namespace record for its id), that
// each namespace's index rebuilds, and that every file root of a latest state is complete (each
// chunk present and hashing to its name). An error Status only when the check could not run.
Result<HubCheckReport> CheckHubStore(engine::DB* db);

}  // namespace cascadefs::hub
