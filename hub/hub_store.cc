// hub_store.cc: the tools' view of a hub store (hub/hub_store.h).
#include "hub/hub_store.h"

#include <map>
#include <unordered_set>

#include "engine/db.h"
#include "engine/io/scheduler.h"
#include "engine/iterator.h"
#include "fusefs/chunk_store.h"
#include "fusefs/recipe.h"
#include "hub/journal_store.h"
#include "index.h"
#include "journal_format.h"

namespace cascadefs::hub {

Result<std::vector<ListedEntry>> ReadJournal(engine::DB* db, std::string_view ns) {
  Result<std::unique_ptr<JournalStore>> store = OpenEngineJournalStore(db, false);
  if (!store.ok()) return store.status();
  Result<std::vector<NamespaceRecord>> namespaces = store.value()->ListNamespaces();
  if (!namespaces.ok()) return namespaces.status();
  std::vector<ListedEntry> out;
  bool found = ns.empty();
  for (const NamespaceRecord& record : namespaces.value()) {
    if (!ns.empty() && record.name != ns) continue;
    found = true;
    Status scanned = store.value()->Scan(record.id, 1, [&](const net::JournalEntry& e) {
      out.push_back({record.name, e});
      return true;
    });
    if (!scanned.ok()) return scanned.WithContext("namespace " + record.name);
  }
  if (!found) return Status::InvalidArgument("no namespace '" + std::string(ns) + "'");
  return out;
}

namespace {

io::Task<void> CheckTree(fusefs::ChunkStore* store, fusefs::FileRoot root,
                         std::unordered_set<fusefs::ChunkName, fusefs::ChunkNameHash>* checked,
                         std::string* problem) {
  fusefs::RecipeTree tree(store, fusefs::ChunkerOptions{});
  std::vector<fusefs::ChunkName> names;
  std::vector<int> levels;
  Status listed = co_await tree.ListChunks(root, &names, &levels);
  if (!listed.ok()) {
    *problem = "its tree cannot be walked: " + std::string(listed.message());
    co_return;
  }
  for (const fusefs::ChunkName& name : names) {
    if (!checked->insert(name).second) continue;
    Result<std::string> bytes = co_await store->Get(name);  // verifies the hash
    if (!bytes.ok()) {
      *problem = std::string(bytes.status().message());
      co_return;
    }
  }
}

}  // namespace

Result<HubCheckReport> CheckHubStore(engine::DB* db) {
  HubCheckReport report;
  Result<std::unique_ptr<JournalStore>> store = OpenEngineJournalStore(db, false);
  if (!store.ok()) return store.status();
  // Namespace records, read raw so a damaged one is a finding, not the end of the check.
  std::map<std::uint64_t, std::string> names_by_id;
  std::unique_ptr<engine::Iterator> it = db->NewIterator(engine::ReadOptions{});
  const std::string ns_prefix(1, kNamespaceTag);
  for (it->Seek(ns_prefix); it->Valid() && it->key().starts_with(ns_prefix); it->Next()) {
    const std::string name(it->key().substr(1));
    Result<std::uint64_t> id = DecodeNamespaceValue(it->value());
    if (!id.ok()) {
      report.findings.push_back({name, 0, "", std::string(id.status().message())});
      continue;
    }
    if (!net::IsValidNamespace(name)) {
      report.findings.push_back({name, 0, "", "not a valid namespace name"});
    }
    if (names_by_id.contains(id.value())) {
      report.findings.push_back({name, 0, "",
                                 "namespace id " + std::to_string(id.value()) + " is also " +
                                     names_by_id[id.value()] + "'s"});
    }
    names_by_id[id.value()] = name;
  }
  if (!it->status().ok()) return it->status();
  report.namespaces = names_by_id.size();
  // Every entry, in key order: namespace by namespace, jid ascending.
  std::map<std::uint64_t, NamespaceIndex> indexes;
  const std::string entry_prefix(1, kEntryTag);
  for (it->Seek(entry_prefix); it->Valid() && it->key().starts_with(entry_prefix); it->Next()) {
    std::uint64_t ns_id = 0;
    std::uint64_t jid = 0;
    if (!ParseEntryKey(it->key(), &ns_id, &jid)) {
      report.findings.push_back(
          {"", 0, "", "a journal key of " + std::to_string(it->key().size()) + " bytes"});
      continue;
    }
    ++report.entries;
    auto name = names_by_id.find(ns_id);
    const std::string ns_name =
        name == names_by_id.end() ? "id " + std::to_string(ns_id) : name->second;
    if (name == names_by_id.end()) {
      report.findings.push_back({ns_name, jid, "", "no namespace record for this id"});
    }
    Result<net::JournalEntry> entry = DecodeEntry(it->value());
    if (!entry.ok()) {
      report.findings.push_back({ns_name, jid, "", std::string(entry.status().message())});
      continue;
    }
    const net::JournalEntry& e = entry.value();
    if (e.jid != jid) {
      report.findings.push_back(
          {ns_name, jid, e.change.path, "the entry says jid " + std::to_string(e.jid)});
      continue;
    }
    if (!net::IsValidPath(e.change.path)) {
      report.findings.push_back({ns_name, jid, e.change.path, "not a valid path"});
    }
    NamespaceIndex& index = indexes[ns_id];
    if (jid <= index.head_jid) {
      report.findings.push_back({ns_name, jid, e.change.path, "jid not above the previous one"});
      continue;
    }
    Apply(&index, e);
  }
  if (!it->status().ok()) return it->status();
  it.reset();
  // Every live file's tree: present and hashing to its names.
  std::unique_ptr<fusefs::ChunkStore> chunks = fusefs::NewEngineChunkStore(db);
  std::unordered_set<fusefs::ChunkName, fusefs::ChunkNameHash> checked;
  for (const auto& [ns_id, index] : indexes) {
    auto name = names_by_id.find(ns_id);
    const std::string ns_name =
        name == names_by_id.end() ? "id " + std::to_string(ns_id) : name->second;
    for (const auto& [path, state] : index.paths) {
      if (state.kind != net::EntryKind::kFile) continue;
      ++report.live_files;
      Result<fusefs::FileRoot> root = fusefs::FileRoot::Decode(state.root);
      if (!root.ok()) {
        report.findings.push_back(
            {ns_name, state.source_jid, path, "root: " + std::string(root.status().message())});
        continue;
      }
      std::string problem;
      db->scheduler()->BlockOn(CheckTree(chunks.get(), root.value(), &checked, &problem));
      if (!problem.empty()) report.findings.push_back({ns_name, state.source_jid, path, problem});
    }
  }
  report.chunks_checked = checked.size();
  return report;
}

}  // namespace cascadefs::hub
