// index.cc: the commit rules over the journal index (index.h).
#include "index.h"

#include <utility>
#include <vector>

#include "engine/assert.h"

namespace cascadefs::hub {

const PathState* NamespaceIndex::Find(std::string_view path) const {
  auto it = paths.find(path);
  return it == paths.end() ? nullptr : &it->second;
}

const NamespaceIndex* Index::Find(std::string_view ns) const {
  auto it = namespaces.find(ns);
  return it == namespaces.end() ? nullptr : it->second.get();
}

bool IsAtOrUnder(std::string_view path, std::string_view dir) {
  if (!path.starts_with(dir)) return false;
  return path.size() == dir.size() || path[dir.size()] == '/';
}

namespace {

PathState Tombstone(std::uint64_t jid) {
  PathState state;
  state.jid = jid;
  state.kind = net::EntryKind::kDelete;
  return state;
}

// The iterators of `path` and every path under "path/", in order. std::map orders "a" < "a!" <
// "a/" < "a0", so the subtree is the range [path + "/", path + "0") plus `path` itself.
template <typename Fn>
void ForSubtree(std::map<std::string, PathState, std::less<>>& paths, const std::string& path,
                Fn fn) {
  auto self = paths.find(path);
  if (self != paths.end()) fn(self);
  const std::string begin = path + "/";
  const std::string end = path + "0";  // '0' follows '/' in ASCII
  for (auto it = paths.lower_bound(begin); it != paths.end() && it->first < end; ++it) fn(it);
}

}  // namespace

Decision Decide(const NamespaceIndex& ns, const net::CommitEntry& entry) {
  const net::ChangeEntry& change = entry.change;
  const PathState* cur = ns.Find(change.path);
  const std::uint64_t cur_jid = cur == nullptr ? 0 : cur->jid;
  Decision d;
  if (entry.parent_jid != cur_jid) {
    d.status = net::CommitStatus::kConflict;
    d.jid = cur_jid;
    return d;
  }
  switch (change.kind) {
    case net::EntryKind::kFile:
    case net::EntryKind::kDirectory:
    case net::EntryKind::kSymlink:
      d.journal = true;
      return d;
    case net::EntryKind::kDelete:
      if (cur == nullptr || cur->tombstone()) {
        d.status = net::CommitStatus::kOk;
        d.jid = cur_jid;
        return d;
      }
      d.journal = true;
      return d;
    case net::EntryKind::kRename: {
      if (cur == nullptr || cur->tombstone()) {
        d.status = net::CommitStatus::kConflict;
        d.jid = cur_jid;
        return d;
      }
      if (IsAtOrUnder(change.target, change.path)) {
        d.status = net::CommitStatus::kRejected;
        return d;
      }
      const PathState* target = ns.Find(change.target);
      if (target != nullptr && !target->tombstone()) {
        d.status = net::CommitStatus::kRejected;
        d.jid = target->jid;
        return d;
      }
      d.journal = true;
      return d;
    }
  }
  d.status = net::CommitStatus::kRejected;
  return d;
}

void Apply(NamespaceIndex* ns, const net::JournalEntry& entry) {
  CFS_ASSERT(entry.jid > ns->head_jid);  // == head + 1 when live; gaps after pruning
  const net::ChangeEntry& change = entry.change;
  const std::uint64_t jid = entry.jid;
  switch (change.kind) {
    case net::EntryKind::kFile:
    case net::EntryKind::kDirectory:
    case net::EntryKind::kSymlink: {
      PathState state;
      state.jid = jid;
      state.source_jid = jid;
      state.kind = change.kind;
      state.mode = change.mode;
      state.mtime_ns = change.mtime_ns;
      state.root = change.root;
      state.target = change.target;
      ns->paths[change.path] = std::move(state);
      break;
    }
    case net::EntryKind::kDelete: {
      // The path itself becomes a tombstone even when absent: a replay after pruning then
      // still leaves the tombstone the live hub had.
      ns->paths[change.path] = Tombstone(jid);
      ForSubtree(ns->paths, change.path, [jid](auto it) { it->second = Tombstone(jid); });
      break;
    }
    case net::EntryKind::kRename: {
      std::vector<std::pair<std::string, PathState>> moved;
      ForSubtree(ns->paths, change.path, [&](auto it) {
        PathState state = std::move(it->second);
        state.jid = jid;
        moved.emplace_back(change.target + it->first.substr(change.path.size()), std::move(state));
        it->second = Tombstone(jid);
      });
      for (auto& [path, state] : moved) ns->paths[path] = std::move(state);
      break;
    }
  }
  ns->head_jid = jid;
  CFS_ASSERT(ns->head_jid == jid);
}

std::unordered_set<std::uint64_t> LiveSourceJids(const NamespaceIndex& ns) {
  std::unordered_set<std::uint64_t> out;
  for (const auto& [path, state] : ns.paths) {
    if (!state.tombstone()) out.insert(state.source_jid);
  }
  return out;
}

}  // namespace cascadefs::hub
