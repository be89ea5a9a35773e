// collect_garbage.cc: gc (fusefs/check.h, docs/fsck.md "gc"): mark every chunk an inode's
// recipe tree names in a snapshot, delete the snapshot's other chunks. Offline (no writer) or
// in the daemon, where the fence (fs/gc_fence.h) keeps racing writes safe.
#include <sys/stat.h>

#include <memory>
#include <unordered_set>
#include <vector>

#include "engine/db.h"
#include "engine/iterator.h"
#include "engine/write_batch.h"
#include "fs/gc_fence.h"
#include "fs/inode_record.h"
#include "fusefs/check.h"
#include "fusefs/chunk_store.h"

namespace cascadefs::fusefs {
namespace {

// Chunk deletes per write batch: 1,024 keys are ~20 KiB, far below the batch bound, and the
// names a Put may wait for (gc_fence.h) stay few.
constexpr std::size_t kDeletesPerBatch = 1024;
constexpr std::uint64_t kProgressEvery = 4096;

using Marked = std::unordered_set<ChunkName, ChunkNameHash>;

Status Cancelled() { return Status::Busy("gc stopped: the mount is stopping"); }

// Marks the subtree of `entry` at `level`, reading nodes as of `read`. Corruption when a node
// is missing or does not decode: the chunks below it are unknown, so gc must delete nothing.
// A node fsck --repair recorded lost is the exception: the loss is known and reported, and
// what was below it is no longer reachable through it.
io::Task<Status> Mark(engine::DB* db, const engine::ReadOptions& read, const NodeEntry& entry,
                      int level, Marked* marked) {
  if (entry.hole() || !marked->insert(entry.name).second) co_return Status::OK();
  if (level == 0) co_return Status::OK();
  std::string value;
  Status got = co_await db->GetAsync(read, ChunkKey(entry.name), &value);
  if (got.IsNotFound()) {
    std::string record;
    Status lost = co_await db->GetAsync(read, LostChunkKey(entry.name), &record);
    if (lost.ok()) co_return Status::OK();
  }
  if (!got.ok()) {
    co_return Status::Corruption("recipe node " + entry.name.ToHex() +
                                 " cannot be read: " + std::string(got.message()));
  }
  Result<std::string> bytes = DecodeChunkValue(entry.name, value);
  if (!bytes.ok()) co_return bytes.status();
  Result<DecodedNode> node = DecodeNode(bytes.value());
  if (!node.ok()) co_return node.status().WithContext("recipe node " + entry.name.ToHex());
  for (const NodeEntry& child : node.value().entries) {
    Status marking = co_await Mark(db, read, child, level - 1, marked);
    if (!marking.ok()) co_return marking;
  }
  co_return Status::OK();
}

// Writes one batch of deletes: the names the fence lets go (all of them offline). Busy when
// the fence stopped tracking the cycle's writes (nothing of this batch is deleted).
io::Task<Status> DeleteBatch(engine::DB* db, ChunkGcFence* fence, std::vector<ChunkName>* batch,
                             std::vector<std::uint64_t>* sizes, GcReport* report) {
  if (fence != nullptr && fence->Overflowed()) {
    co_return Status::Busy(
        "gc stopped: more chunks were written during the cycle than it tracks; run it again");
  }
  std::vector<ChunkName> names = fence != nullptr ? fence->Claim(*batch) : *batch;
  engine::WriteBatch deletes;
  for (const ChunkName& name : names) deletes.Delete(ChunkKey(name));
  Status status = Status::OK();
  if (deletes.Count() > 0) status = co_await db->WriteAsync(engine::WriteOptions(), deletes);
  if (fence != nullptr) fence->DoneDeleting();
  if (!status.ok()) status = status.WithContext("deleting unreferenced chunks");
  if (status.ok()) {
    report->deleted_chunks += names.size();
    // Claim keeps the candidates' order, so the deleted names are a subsequence of `batch`.
    for (std::size_t i = 0, n = 0; i < batch->size() && n < names.size(); ++i) {
      if ((*batch)[i] != names[n]) continue;
      report->deleted_bytes += (*sizes)[i];
      ++n;
    }
    report->kept_touched_chunks += batch->size() - names.size();
  }
  batch->clear();
  sizes->clear();
  co_return status;
}

}  // namespace

io::Task<Result<GcReport>> CollectGarbageAsync(engine::DB* db, ChunkGcFence* fence,
                                               GcOptions options) {
  GcReport report;
  if (fence != nullptr) co_await fence->BeginCycle();
  // Whatever happens below, the cycle ends (Puts stop being recorded) and the snapshot goes.
  struct CycleEnd {
    ChunkGcFence* fence;
    engine::DB* db;
    const engine::Snapshot* snapshot;
    void Release() {
      if (snapshot != nullptr) db->ReleaseSnapshot(snapshot);
      snapshot = nullptr;
      if (fence != nullptr) fence->EndCycle();
      fence = nullptr;
    }
    ~CycleEnd() { Release(); }
  } cycle_end{fence, db, db->GetSnapshot()};
  engine::ReadOptions at;
  at.snapshot = cycle_end.snapshot;
  at.iterator_values = false;

  // Mark: every inode record of the snapshot (open-unlinked files included: they keep their
  // record until their last close).
  Marked marked;
  std::unique_ptr<engine::Iterator> it = db->NewIterator(at);
  std::uint64_t inodes = 0;
  for (co_await it->SeekAsync("i"); it->Valid() && it->key().starts_with("i");
       co_await it->NextAsync()) {
    if (options.progress && (++inodes % kProgressEvery) == 0) {
      options.progress({.phase = "mark", .done = inodes, .total = 0});
    }
    if (options.cancelled && options.cancelled()) co_return Cancelled();
    if (!co_await it->PrepareValueAsync()) break;
    Result<InodeRecord> record = InodeRecord::Decode(it->value());
    if (!record.ok()) {
      // A record that does not decode may name chunks: nothing is known unreferenced.
      co_return record.status().WithContext(
          "an inode record does not decode (run cascadefs fsck); gc deleted nothing");
    }
    if (!S_ISREG(record.value().mode)) continue;
    const FileRoot& root = record.value().root;
    if (root.empty() || root.all_hole()) continue;
    engine::ReadOptions node_read;
    node_read.snapshot = cycle_end.snapshot;
    Status marking = co_await Mark(
        db, node_read,
        NodeEntry{.name = root.name, .length = root.length, .hole_bytes = root.hole_bytes},
        root.height, &marked);
    if (!marking.ok()) {
      co_return marking.WithContext(
          "a recipe tree cannot be walked (run cascadefs fsck); gc "
          "deleted nothing");
    }
  }
  if (!it->status().ok()) co_return it->status().WithContext("reading inode records");

  // Sweep: the snapshot's chunks that nothing marked. Chunks written after it are not seen.
  std::vector<ChunkName> batch;
  std::vector<std::uint64_t> sizes;
  it = db->NewIterator(at);
  for (co_await it->SeekAsync("c"); it->Valid() && it->key().starts_with("c");
       co_await it->NextAsync()) {
    if (options.cancelled && options.cancelled()) co_return Cancelled();
    Result<ChunkName> name = ChunkName::Decode(it->key().substr(1));
    if (!name.ok()) continue;  // not a chunk key: fsck reports it
    ++report.chunks;
    if (marked.contains(name.value())) {
      ++report.referenced_chunks;
      continue;
    }
    if (!co_await it->PrepareValueAsync()) break;
    if (options.dry_run) {
      ++report.deleted_chunks;
      report.deleted_bytes += it->value().size();
      continue;
    }
    batch.push_back(name.value());
    sizes.push_back(it->value().size());
    if (batch.size() >= kDeletesPerBatch) {
      Status deleted = co_await DeleteBatch(db, fence, &batch, &sizes, &report);
      if (!deleted.ok()) co_return deleted;
      if (options.progress) {
        options.progress({.phase = "delete", .done = report.deleted_chunks, .total = 0});
      }
    }
  }
  if (!it->status().ok()) co_return it->status().WithContext("reading chunk keys");
  if (!batch.empty()) {
    Status deleted = co_await DeleteBatch(db, fence, &batch, &sizes, &report);
    if (!deleted.ok()) co_return deleted;
  }
  // Lost-chunk records ("l" keys, written by fsck --repair) that no file names any more, or
  // whose chunk is stored again. No fence: writers never write these keys, and a chunk stored
  // after the snapshot only makes a kept record stale (the next cycle removes it).
  engine::WriteBatch stale_records;
  it = db->NewIterator(at);
  const std::string lost_prefix(1, kLostChunkTag);
  for (co_await it->SeekAsync(lost_prefix); it->Valid() && it->key().starts_with(lost_prefix);
       co_await it->NextAsync()) {
    Result<ChunkName> name = ChunkName::Decode(it->key().substr(1));
    if (!name.ok()) continue;  // fsck reports it
    bool stale = !marked.contains(name.value());
    if (!stale) {
      std::string value;
      Status stored = co_await db->GetAsync(at, ChunkKey(name.value()), &value);
      stale = stored.ok();
    }
    if (stale && !options.dry_run) stale_records.Delete(it->key());
    if (stale) ++report.lost_records_removed;
  }
  if (!it->status().ok()) co_return it->status().WithContext("reading lost-chunk records");
  if (stale_records.Count() > 0) {
    Status removed = co_await db->WriteAsync(engine::WriteOptions(), stale_records);
    if (!removed.ok()) co_return removed.WithContext("removing stale lost-chunk records");
  }
  // The snapshot would keep every deleted chunk alive through the compaction below; the
  // cycle's deletes are written, so the fence has nothing more to guard either.
  it.reset();
  cycle_end.Release();
  if (options.dry_run || report.deleted_chunks == 0) co_return report;
  // The deletes are durable, then compacted away so their space (and, through the value
  // log's GC, the values' space) returns now rather than as compaction passes by.
  Status flushed = co_await db->FlushAsync();
  if (!flushed.ok()) co_return flushed;
  if (options.compact) {
    if (options.progress) options.progress({.phase = "compact", .done = 0, .total = 0});
    Status compacted = co_await db->CompactRangeAsync(std::nullopt, std::nullopt);
    if (!compacted.ok()) co_return compacted;
  }
  co_return report;
}

Result<GcReport> CollectGarbage(engine::DB* db, const GcOptions& options) {
  return db->scheduler()->BlockOn(CollectGarbageAsync(db, nullptr, options));
}

}  // namespace cascadefs::fusefs
