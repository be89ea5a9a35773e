// index.h: the hub's journal index, the protocol's commit rules (docs/sync.md, "Hub").
//
// Per namespace: path -> its current state (a file, directory, symlink, or a tombstone left by a
// delete or a rename away), and the head jid. Published as an immutable Index that handler
// threads read without locks; only the writer thread builds a new one, copying the namespaces a
// commit group touches (copy-on-write per namespace) and sharing the rest.
//
// Invariants (cited by number):
//  1. jids of a namespace start at 1 and increase by exactly 1 per journaled entry; head_jid is
//     the last one (0: nothing journaled yet).
//  2. Every state's jid is <= head_jid; a tombstone's source_jid is 0, any other state's
//     source_jid is the jid of the file, directory or symlink entry whose content it holds
//     (a rename moves content without changing its source).
//  3. Decide never changes the index; Apply is the only mutation and is deterministic, so
//     replaying the journal rebuilds the same index.
//
// Thread safety: Index and NamespaceIndex are values; a published one is never changed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>

#include "net/wire.h"

namespace cascadefs::hub {

struct PathState {
  std::uint64_t jid = 0;         // the entry that last changed this path
  std::uint64_t source_jid = 0;  // the entry whose content this is; 0 for a tombstone (inv. 2)
  net::EntryKind kind = net::EntryKind::kDelete;  // kFile, kDirectory, kSymlink; kDelete: gone
  std::uint32_t mode = 0;
  std::int64_t mtime_ns = 0;
  std::string root;    // kFile
  std::string target;  // kSymlink
  bool tombstone() const { return kind == net::EntryKind::kDelete; }
};

struct NamespaceIndex {
  std::uint64_t id = 0;
  std::uint64_t head_jid = 0;
  std::map<std::string, PathState, std::less<>> paths;

  // The state of `path`; nullptr when the path was never seen (the protocol's jid 0).
  const PathState* Find(std::string_view path) const;
};

struct Index {
  std::map<std::string, std::shared_ptr<const NamespaceIndex>, std::less<>> namespaces;
  std::uint64_t next_ns_id = 1;

  const NamespaceIndex* Find(std::string_view ns) const;
};

// True when `path` is `dir` itself or under "dir/".
bool IsAtOrUnder(std::string_view path, std::string_view dir);

// What the rules say of one entry against `ns`, chunk completeness aside (the caller checks
// that for kFile entries before). journal: the entry is to be journaled with jid head_jid + 1;
// else `status`/`jid` are the answer (kConflict with the current jid; kOk with the current jid
// for a delete of an absent path; kRejected for a rename onto a live path or into itself).
// REQUIRES: entry.change.path and a rename's target are valid paths (net::IsValidPath).
struct Decision {
  bool journal = false;
  net::CommitStatus status = net::CommitStatus::kOk;
  std::uint64_t jid = 0;
};
Decision Decide(const NamespaceIndex& ns, const net::CommitEntry& entry);

// Applies a journaled entry. REQUIRES: entry.jid > ns->head_jid: head_jid + 1 for a new entry
// (invariant 1); a replay of a pruned journal has gaps.
void Apply(NamespaceIndex* ns, const net::JournalEntry& entry);

// The source jids of every live state: the file entries retention must keep (invariant 2).
std::unordered_set<std::uint64_t> LiveSourceJids(const NamespaceIndex& ns);

}  // namespace cascadefs::hub
