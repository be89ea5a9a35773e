// hub_impl.cc: the hub's store, writer thread and requests (hub_impl.h). The network server is
// in server.cc.
#include "hub_impl.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <unordered_set>
#include <utility>

#include "engine/assert.h"
#include "engine/iterator.h"
#include "engine/options.h"
#include "engine/write_batch.h"
#include "fusefs/cached_chunk_store.h"
#include "fusefs/recipe.h"
#include "net/delta.h"

namespace cascadefs::hub {
namespace {

// The engine has no bare "sync the WAL" call: a StoreBatch ends with a synced delete of this
// key, which is never written (docs/formats/journal.md, "Keys").
constexpr std::string_view kSyncMarkerKey = "HS";
// Deletes per engine batch when gc removes chunks.
constexpr std::size_t kGcDeleteBatchMax = 4096;

std::int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Runs the completeness walk of every file entry of `entries`, in order, into `verdicts`.
io::Task<Status> CheckFiles(CompletenessWalk* walk, const std::vector<net::CommitEntry>* entries,
                            std::vector<FileVerdict>* verdicts) {
  for (std::size_t i = 0; i < entries->size(); ++i) {
    const net::ChangeEntry& change = (*entries)[i].change;
    if (change.kind != net::EntryKind::kFile) continue;
    Result<FileVerdict> verdict = co_await walk->Check(change.root);
    if (!verdict.ok()) co_return verdict.status();
    (*verdicts)[i] = verdict.value();
  }
  co_return Status::OK();
}

// zstd level of the deltas Retrieve sends: chunks are at most 256 KiB, so even 19 costs
// about a millisecond each, and deltas are sent for changed chunks only.
constexpr int kDeltaLevel = 19;

io::Task<Status> PutChunks(fusefs::ChunkStore* store, const net::StoreBatch* batch,
                           std::string* refused, std::uint32_t* stored) {
  for (const net::ChunkBytes& chunk : batch->chunks) {
    Result<fusefs::ChunkName> name = fusefs::ChunkName::Decode(chunk.name);
    const std::string* data = &chunk.data;
    std::string undelta;
    if (name.ok() && !chunk.delta_base.empty()) {
      // A delta against a chunk this hub holds (net/delta.h). A base it lacks, or a delta that
      // does not decode, makes the chunk refused like a wrong one: the client's commit then
      // finds it missing and sends it whole.
      Result<fusefs::ChunkName> base_name = fusefs::ChunkName::Decode(chunk.delta_base);
      Result<std::string> base = Status::InvalidArgument("delta base: not a chunk name");
      if (base_name.ok()) base = co_await store->Get(base_name.value());
      Result<std::string> decoded =
          base.ok() ? net::DecodeDelta(base.value(), chunk.data, net::kChunkBytesMax)
                    : Result<std::string>(base.status());
      if (!decoded.ok()) {
        refused->append(chunk.name);
        continue;
      }
      undelta = std::move(decoded).value();
      data = &undelta;
    }
    if (!name.ok() || name.value().is_null() || !name.value().Matches(*data)) {
      refused->append(chunk.name);
      continue;
    }
    Result<fusefs::PutOutcome> put = co_await store->Put(name.value(), *data);
    if (!put.ok()) co_return put.status();
    ++*stored;
  }
  co_return Status::OK();
}

}  // namespace

Result<std::unique_ptr<Hub>> Hub::Open(const HubOptions& options) {
  auto hub = std::make_unique<HubImpl>(options);
  Status started = hub->Start();
  if (!started.ok()) {
    Status closed = hub->Close();
    static_cast<void>(closed);  // the first error is the one to report
    return started.WithContext(options.store_dir);
  }
  return std::unique_ptr<Hub>(std::move(hub));
}

HubImpl::HubImpl(const HubOptions& options) : options_(options) {}

HubImpl::~HubImpl() {
  Status closed = Close();
  if (!closed.ok()) Log("closing the hub: " + std::string(closed.message()));
}

void HubImpl::Log(std::string_view line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "cascadefs serve: %.*s\n", static_cast<int>(line.size()), line.data());
  }
}

Status HubImpl::Start() {
  CFS_ASSERT(!options_.store_dir.empty());
  std::error_code ec;
  std::filesystem::create_directories(options_.store_dir, ec);
  if (ec) return Status::IOError("creating the directory: " + ec.message());

  io::SchedulerOptions scheduler_options;
  scheduler_options.io_threads = options_.io_threads;
  scheduler_options.log = options_.log;
  Result<std::unique_ptr<io::Scheduler>> scheduler = io::Scheduler::Create(scheduler_options);
  if (!scheduler.ok()) return scheduler.status();
  scheduler_ = std::move(scheduler.value());

  engine::Options engine_options;
  engine_options.scheduler = scheduler_.get();
  engine_options.create_if_missing = true;
  engine_options.info_log = options_.log;
  // As the filesystem's default: chunks stay in the LSM (no value log).
  engine_options.min_blob_size_bytes = 0;
  Result<std::unique_ptr<engine::DB>> db = engine::DB::Open(engine_options, options_.store_dir);
  if (!db.ok()) {
    if (db.status().IsBusy()) return Status::Busy("the store is in use (a hub runs on it?)");
    return db.status();
  }
  db_ = std::move(db.value());

  Result<std::unique_ptr<JournalStore>> journal = OpenEngineJournalStore(db_.get(), true);
  if (!journal.ok()) return journal.status();
  journal_ = std::move(journal.value());
  hub_id_ = journal_->hub_id();

  if (options_.cache_size_bytes > 0) {
    cache::ChunkCacheOptions cache_options;
    cache_options.capacity_bytes = options_.cache_size_bytes;
    Result<std::unique_ptr<cache::ChunkCache>> cache =
        cache::ChunkCache::Open(options_.store_dir + "/cache", cache_options);
    if (!cache.ok()) return cache.status().WithContext("cache");
    cache_ = std::move(cache.value());
  }
  std::unique_ptr<fusefs::ChunkStore> engine_chunks = fusefs::NewEngineChunkStore(db_.get());
  engine_chunks_ = engine_chunks.get();
  chunks_ = std::make_unique<fusefs::CachedChunkStore>(std::move(engine_chunks), cache_.get());

  Status rebuilt = RebuildIndex();
  if (!rebuilt.ok()) return rebuilt;
  std::uint64_t pruned = 0;
  Status prune = DoPrune(&pruned);
  if (!prune.ok()) return prune.WithContext("pruning the journal");
  writer_ = std::thread([this] { WriterLoop(); });
  return Status::OK();
}

Status HubImpl::RebuildIndex() {
  Result<std::vector<NamespaceRecord>> namespaces = journal_->ListNamespaces();
  if (!namespaces.ok()) return namespaces.status();
  auto index = std::make_shared<Index>();
  for (const NamespaceRecord& record : namespaces.value()) {
    auto ns = std::make_shared<NamespaceIndex>();
    ns->id = record.id;
    Status bad;
    Status scanned = journal_->Scan(record.id, 1, [&](const net::JournalEntry& entry) {
      if (entry.jid <= ns->head_jid) {
        bad = Status::Corruption("namespace " + record.name + " jid " + std::to_string(entry.jid) +
                                 ": not above the previous jid");
        return false;
      }
      Apply(ns.get(), entry);
      return true;
    });
    if (!scanned.ok()) return scanned.WithContext("namespace " + record.name);
    if (!bad.ok()) return bad;
    index->next_ns_id = std::max(index->next_ns_id, record.id + 1);
    index->namespaces.emplace(record.name, std::move(ns));
  }
  snapshot_.store(std::move(index));
  return Status::OK();
}

// ---- The writer ----

Status HubImpl::Submit(Work* work) {
  {
    std::unique_lock lock(queue_mutex_);
    // The bound: a full queue makes the handler wait for room.
    queue_cv_.wait(lock, [&] { return stopping_ || queue_.size() < kCommitQueueMax; });
    if (stopping_) return Status::Cancelled("the hub is shutting down");
    queue_.push_back(work);
  }
  queue_cv_.notify_all();
  std::unique_lock lock(work->mutex);
  work->cv.wait(lock, [&] { return work->done; });
  return work->status;
}

void HubImpl::Finish(Work* work, Status status) {
  std::lock_guard lock(work->mutex);
  work->status = std::move(status);
  work->done = true;
  work->cv.notify_all();
}

void HubImpl::WriterLoop() {
  const auto interval =
      std::chrono::seconds(std::max<std::uint32_t>(1, options_.prune_interval_sec));
  auto next_prune = std::chrono::steady_clock::now() + interval;
  for (;;) {
    std::vector<Work*> group;
    {
      std::unique_lock lock(queue_mutex_);
      queue_cv_.wait_until(lock, next_prune, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) break;  // drained
      // A prune runs alone; commits are grouped up to kCommitGroupMax.
      while (!queue_.empty() && group.size() < kCommitGroupMax) {
        if (queue_.front()->kind != Work::Kind::kCommit && !group.empty()) break;
        group.push_back(queue_.front());
        queue_.pop_front();
        if (group.back()->kind != Work::Kind::kCommit) break;
      }
    }
    queue_cv_.notify_all();  // room in the queue
    if (std::chrono::steady_clock::now() >= next_prune) {
      std::uint64_t pruned = 0;
      Status s = DoPrune(&pruned);
      if (!s.ok()) Log("pruning the journal: " + std::string(s.message()));
      next_prune = std::chrono::steady_clock::now() + interval;
    }
    if (group.empty()) continue;
    if (group.front()->kind == Work::Kind::kPrune) {
      Status s = DoPrune(&group.front()->count);
      Finish(group.front(), std::move(s));
      continue;
    }
    ApplyCommits(group);
  }
}

void HubImpl::ApplyCommits(std::vector<Work*>& group) {
  std::shared_ptr<const Index> base = snapshot_.load();
  auto next = std::make_shared<Index>(*base);
  std::map<std::string, std::shared_ptr<NamespaceIndex>, std::less<>> touched;
  JournalBatch batch;
  const std::int64_t now_ns = NowNs();
  for (Work* work : group) {
    NamespaceIndex* ns = nullptr;
    auto it = touched.find(work->ns);
    if (it != touched.end()) {
      ns = it->second.get();
    } else {
      std::shared_ptr<NamespaceIndex> copy;
      if (const NamespaceIndex* old = next->Find(work->ns)) {
        copy = std::make_shared<NamespaceIndex>(*old);  // copy-on-write: this namespace only
      } else {
        copy = std::make_shared<NamespaceIndex>();
        copy->id = next->next_ns_id++;
        batch.new_namespaces.push_back({work->ns, copy->id});
      }
      ns = copy.get();
      touched.emplace(work->ns, std::move(copy));
    }
    work->results.clear();
    if (work->entries == nullptr) continue;
    for (std::size_t i = 0; i < work->entries->size(); ++i) {
      const net::CommitEntry& entry = (*work->entries)[i];
      const Decision decision = Decide(*ns, entry);
      if (!decision.journal) {
        work->results.push_back({decision.status, decision.jid});
        continue;
      }
      if (work->verdicts[i] != FileVerdict::kComplete) {
        const PathState* cur = ns->Find(entry.change.path);
        work->results.push_back({work->verdicts[i] == FileVerdict::kMissing
                                     ? net::CommitStatus::kMissing
                                     : net::CommitStatus::kRejected,
                                 cur == nullptr ? 0 : cur->jid});
        continue;
      }
      net::JournalEntry journaled;
      journaled.jid = ns->head_jid + 1;  // invariant 1
      journaled.change = entry.change;
      journaled.time_ns = now_ns;
      journaled.origin = work->origin;
      Apply(ns, journaled);
      work->results.push_back({net::CommitStatus::kOk, journaled.jid});
      batch.entries.push_back({ns->id, std::move(journaled)});
    }
    CFS_ASSERT(work->results.size() == work->entries->size());
  }
  Status appended;
  if (!batch.entries.empty() || !batch.new_namespaces.empty()) {
    appended = journal_->Append(batch);  // synced: the replies below promise durability
  }
  if (appended.ok()) {
    for (auto& [name, ns] : touched) next->namespaces[name] = std::move(ns);
    snapshot_.store(std::move(next));
    std::lock_guard lock(publish_mutex_);
    published_cv_.notify_all();
  } else {
    Log("appending to the journal: " + std::string(appended.message()));
  }
  for (Work* work : group) Finish(work, appended);
}

Status HubImpl::DoPrune(std::uint64_t* pruned) {
  const std::int64_t cutoff_ns =
      NowNs() - static_cast<std::int64_t>(options_.retention_sec) * 1000000000;
  std::shared_ptr<const Index> index = snapshot_.load();
  for (const auto& [name, ns] : index->namespaces) {
    const std::unordered_set<std::uint64_t> live = LiveSourceJids(*ns);
    std::vector<std::uint64_t> jids;
    Status scanned = journal_->Scan(ns->id, 1, [&](const net::JournalEntry& entry) {
      // Superseded file versions past the retention go; everything else stays.
      if (entry.change.kind == net::EntryKind::kFile && entry.time_ns < cutoff_ns &&
          !live.contains(entry.jid) && entry.jid < ns->head_jid) {
        jids.push_back(entry.jid);
      }
      return true;
    });
    if (!scanned.ok()) return scanned.WithContext("namespace " + name);
    Status s = journal_->Prune(ns->id, jids);
    if (!s.ok()) return s.WithContext("namespace " + name);
    *pruned += jids.size();
  }
  return Status::OK();
}

// ---- Requests ----

Result<std::shared_ptr<const Index>> HubImpl::SnapshotWithNamespace(const std::string& ns) {
  std::shared_ptr<const Index> index = snapshot_.load();
  if (index->Find(ns) != nullptr) return index;
  Work work;
  work.ns = ns;
  Status s = Submit(&work);  // creates the namespace
  if (!s.ok()) return s;
  index = snapshot_.load();
  CFS_ASSERT(index->Find(ns) != nullptr);
  return index;
}

Result<net::CommitReply> HubImpl::Commit(const net::Commit& commit, std::string_view origin) {
  if (!net::IsValidNamespace(commit.ns)) {
    return Status::InvalidArgument("namespace '" + commit.ns + "': not a valid namespace name");
  }
  if (commit.entries.empty() || commit.entries.size() > net::kEntriesMax) {
    return Status::InvalidArgument("a commit of " + std::to_string(commit.entries.size()) +
                                   " entries");
  }
  Work work;
  work.ns = commit.ns;
  work.entries = &commit.entries;
  work.origin = std::string(origin);
  work.verdicts.assign(commit.entries.size(), FileVerdict::kComplete);
  for (std::size_t i = 0; i < commit.entries.size(); ++i) {
    const net::ChangeEntry& change = commit.entries[i].change;
    if (!net::IsValidPath(change.path)) {
      return Status::InvalidArgument("entry " + std::to_string(i) + ": not a valid path");
    }
    if (change.kind == net::EntryKind::kRename && !net::IsValidPath(change.target)) {
      work.verdicts[i] = FileVerdict::kRejected;
    }
  }
  // Held from the walk until the entries are journaled, so gc cannot delete what was verified.
  std::shared_lock gc_lock(gc_mutex_);
  CompletenessWalk walk(chunks_.get(), &verified_, net::kNamesMax);
  Status checked = scheduler_->BlockOn(CheckFiles(&walk, &commit.entries, &work.verdicts));
  if (!checked.ok()) return checked;
  Status submitted = Submit(&work);
  if (!submitted.ok()) return submitted;
  net::CommitReply reply;
  reply.results = std::move(work.results);
  bool any_missing = false;
  for (const net::CommitResult& r : reply.results) {
    any_missing = any_missing || r.status == net::CommitStatus::kMissing;
  }
  if (any_missing) {
    reply.missing.reserve(walk.missing().size() * fusefs::ChunkName::kEncodedSize);
    for (const fusefs::ChunkName& name : walk.missing()) reply.missing.append(name.encoded());
  }
  return reply;
}

Status HubImpl::SyncChunks() {
  return db_->Delete(engine::WriteOptions{.sync = true}, kSyncMarkerKey);
}

Result<net::StoreReply> HubImpl::StoreBatch(const net::StoreBatch& batch) {
  net::StoreReply reply;
  std::shared_lock gc_lock(gc_mutex_);
  Status put = scheduler_->BlockOn(PutChunks(chunks_.get(), &batch, &reply.refused, &reply.stored));
  if (!put.ok()) return put;
  if (reply.stored > 0) {
    Status synced = SyncChunks();  // once per batch: the reply promises durability
    if (!synced.ok()) return synced;
  }
  return reply;
}

Result<net::ListReply> HubImpl::List(const net::List& list) {
  if (!net::IsValidNamespace(list.ns)) {
    return Status::InvalidArgument("namespace '" + list.ns + "': not a valid namespace name");
  }
  Result<std::shared_ptr<const Index>> snap = SnapshotWithNamespace(list.ns);
  if (!snap.ok()) return snap.status();
  std::shared_ptr<const Index> index = std::move(snap.value());
  if (index->Find(list.ns)->head_jid <= list.cursor && list.wait_ms > 0) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(std::min(list.wait_ms, net::kListWaitMsMax));
    std::unique_lock lock(publish_mutex_);
    while (!closing_.load()) {
      index = snapshot_.load();
      if (index->Find(list.ns)->head_jid > list.cursor) break;
      if (published_cv_.wait_until(lock, deadline) == std::cv_status::timeout) break;
    }
    index = snapshot_.load();
  }
  const NamespaceIndex* ns = index->Find(list.ns);
  net::ListReply reply;
  reply.head_jid = ns->head_jid;
  const std::size_t max_entries =
      std::min<std::size_t>(std::max<std::uint32_t>(list.max_entries, 1), net::kEntriesMax);
  // Entries can be ~8 KiB each (a 4 KiB path and a 4 KiB target): the reply also stops at
  // kListReplyBytesMax so it always fits one frame.
  constexpr std::size_t kListReplyBytesMax = 8 << 20;
  std::size_t reply_bytes = 0;
  if (list.cursor < ns->head_jid) {
    Status scanned = journal_->Scan(ns->id, list.cursor + 1, [&](const net::JournalEntry& e) {
      if (e.jid > reply.head_jid) return false;  // appended, not yet published
      reply_bytes += e.change.path.size() + e.change.target.size() + e.change.root.size() +
                     e.origin.size() + 64;
      reply.entries.push_back(e);
      return reply.entries.size() < max_entries && reply_bytes < kListReplyBytesMax;
    });
    if (!scanned.ok()) return scanned;
  }
  return reply;
}

Result<net::RetrieveReply> HubImpl::Retrieve(const net::Retrieve& retrieve) {
  constexpr std::size_t kNameBytes = fusefs::ChunkName::kEncodedSize;
  if (retrieve.names.empty() || retrieve.names.size() % kNameBytes != 0) {
    return Status::InvalidArgument("a retrieve of a partial name");
  }
  const std::size_t count = retrieve.names.size() / kNameBytes;
  net::RetrieveReply reply;
  std::size_t bytes = 0;
  for (std::size_t begin = 0; begin < count; begin += kRetrieveReadNamesMax) {
    const std::size_t end = std::min(count, begin + kRetrieveReadNamesMax);
    std::vector<fusefs::ChunkName> names;
    std::vector<std::size_t> positions;  // index into [begin, end) of each valid name
    for (std::size_t i = begin; i < end; ++i) {
      Result<fusefs::ChunkName> name = fusefs::ChunkName::Decode(
          std::string_view(retrieve.names).substr(i * kNameBytes, kNameBytes));
      if (name.ok() && !name.value().is_null()) {
        names.push_back(name.value());
        positions.push_back(i);
      }
    }
    // One promised read of the cache for the group; the engine reads what it lacks.
    std::vector<Result<std::string>> reads = scheduler_->BlockOn(chunks_->GetMany(names));
    std::size_t next_read = 0;
    for (std::size_t i = begin; i < end; ++i) {
      net::RetrievedChunk chunk;
      chunk.name = retrieve.names.substr(i * kNameBytes, kNameBytes);
      if (next_read < positions.size() && positions[next_read] == i) {
        Result<std::string>& read = reads[next_read++];
        if (read.ok()) {
          chunk.found = true;
          chunk.data = std::move(read.value());
          // The client holds a likely similar chunk: its difference is usually far smaller.
          const std::string_view base_name =
              retrieve.bases.empty()
                  ? std::string_view()
                  : std::string_view(retrieve.bases).substr(i * kNameBytes, kNameBytes);
          Result<fusefs::ChunkName> base = fusefs::ChunkName::Decode(base_name);
          if (base.ok() && !base.value().is_null()) {
            Result<std::string> base_bytes = scheduler_->BlockOn(chunks_->Get(base.value()));
            if (base_bytes.ok()) {
              std::string delta = net::EncodeDelta(base_bytes.value(), chunk.data, kDeltaLevel);
              if (delta.size() < chunk.data.size()) {
                chunk.delta_base = std::string(base_name);
                chunk.data = std::move(delta);
              }
            }
          }
          if (bytes + chunk.data.size() > net::kBatchBytesMax && !reply.chunks.empty()) {
            return reply;  // the prefix; the client asks again for the rest
          }
          bytes += chunk.data.size();
        } else if (!read.status().IsNotFound()) {
          Log("retrieve: " + std::string(read.status().message()));
        }
      }
      reply.chunks.push_back(std::move(chunk));
    }
  }
  return reply;
}

Status HubImpl::PruneJournal(std::uint64_t* pruned) {
  Work work;
  work.kind = Work::Kind::kPrune;
  Status s = Submit(&work);
  if (pruned != nullptr) *pruned = work.count;
  return s;
}

Result<HubGcReport> HubImpl::CollectGarbage() {
  // No commit walks or stores while gc runs (they hold gc_mutex_ shared).
  std::unique_lock gc_lock(gc_mutex_);
  return DoGc();
}

Result<HubGcReport> HubImpl::DoGc() {
  verified_.Clear();
  HubGcReport report;
  std::unordered_set<fusefs::ChunkName, fusefs::ChunkNameHash> reachable;
  fusefs::RecipeTree tree(engine_chunks_, fusefs::ChunkerOptions{});
  std::shared_ptr<const Index> index = snapshot_.load();
  for (const auto& [name, ns] : index->namespaces) {
    std::vector<net::JournalEntry> files;
    Status scanned = journal_->Scan(ns->id, 1, [&](const net::JournalEntry& e) {
      if (e.change.kind == net::EntryKind::kFile) files.push_back(e);
      return true;
    });
    if (!scanned.ok()) return scanned.WithContext("namespace " + name);
    for (const net::JournalEntry& e : files) {
      Result<fusefs::FileRoot> root = fusefs::FileRoot::Decode(e.change.root);
      if (!root.ok()) continue;  // never journaled (commit checks it); fsck reports it
      std::vector<fusefs::ChunkName> names;
      std::vector<int> levels;
      Status listed = scheduler_->BlockOn(tree.ListChunks(root.value(), &names, &levels));
      if (!listed.ok()) {
        // A chunk of a journaled tree is unreadable: keep everything rather than guess.
        return listed.WithContext("namespace " + name + " jid " + std::to_string(e.jid) + " path " +
                                  e.change.path);
      }
      reachable.insert(names.begin(), names.end());
    }
  }
  report.referenced_chunks = reachable.size();
  engine::ReadOptions read_options;
  read_options.iterator_values = false;
  std::unique_ptr<engine::Iterator> it = db_->NewIterator(read_options);
  engine::WriteBatch deletes;
  std::size_t queued = 0;
  for (it->Seek("c"); it->Valid() && it->key().starts_with("c"); it->Next()) {
    if (it->key().size() != 1 + fusefs::ChunkName::kEncodedSize) continue;
    ++report.chunks;
    Result<fusefs::ChunkName> name = fusefs::ChunkName::Decode(it->key().substr(1));
    if (!name.ok() || reachable.contains(name.value())) continue;
    deletes.Delete(it->key());
    ++report.deleted_chunks;
    if (++queued == kGcDeleteBatchMax) {
      Status s = db_->Write(engine::WriteOptions{}, deletes);
      if (!s.ok()) return s;
      deletes = engine::WriteBatch();
      queued = 0;
    }
  }
  if (!it->status().ok()) return it->status();
  it.reset();
  Status s = db_->Write(engine::WriteOptions{.sync = true}, deletes);
  if (!s.ok()) return s;
  return report;
}

Status HubImpl::Close() {
  {
    std::lock_guard lock(close_mutex_);
    if (closed_) return Status::OK();
    closed_ = true;
  }
  closing_.store(true);
  {
    std::lock_guard lock(publish_mutex_);
    published_cv_.notify_all();
  }
  StopServer();
  {
    std::lock_guard lock(queue_mutex_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  Status first;
  chunks_.reset();
  engine_chunks_ = nullptr;
  if (cache_ != nullptr) {
    Status s = cache_->Close();
    if (first.ok() && !s.ok()) first = s.WithContext("closing the cache");
    cache_.reset();
  }
  journal_.reset();
  if (db_ != nullptr) {
    Status s = db_->Close();
    if (first.ok() && !s.ok()) first = s.WithContext("closing the store");
    db_.reset();
  }
  scheduler_.reset();
  return first;
}

}  // namespace cascadefs::hub
