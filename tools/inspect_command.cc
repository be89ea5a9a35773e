// inspect_command.cc: `cascadefs inspect STORE [summary|levels|vlog|chunks|file PATH|chunk
// HASH] [--json]` (docs/fsck.md, "inspect"): what a store holds, as tables on a terminal or one
// JSON object for scripts. summary, levels and vlog read the manifest and size the directory's
// files; chunks, file and chunk read the keys through the engine opened read-only. Nothing is
// written, so inspect may run beside a mount (a file compacted away during the read gives an
// error: run it again).
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cache/chunk_cache.h"
#include "commands.h"
#include "engine/db.h"
#include "engine/env.h"
#include "engine/inspect.h"
#include "engine/io/scheduler.h"
#include "engine/options.h"
#include "fusefs/check.h"

namespace cascadefs::tools {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 8;

double MiB(std::uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

nlohmann::json LevelsJson(const engine::StoreSummary& s) {
  nlohmann::json levels = nlohmann::json::array();
  for (const engine::LevelSummary& l : s.levels) {
    levels.push_back(
        {{"level", l.level}, {"files", l.files}, {"bytes", l.bytes}, {"entries", l.entries}});
  }
  return levels;
}

nlohmann::json VlogJson(const engine::StoreSummary& s) {
  nlohmann::json vlogs = nlohmann::json::array();
  for (const engine::VlogFileSummary& v : s.vlogs) {
    vlogs.push_back({{"number", v.number},
                     {"size_bytes", v.size_bytes},
                     {"records", v.records},
                     {"value_bytes", v.value_bytes},
                     {"garbage_records", v.garbage_records},
                     {"garbage_bytes", v.garbage_bytes},
                     {"garbage_ratio", v.garbage_ratio()}});
  }
  return vlogs;
}

nlohmann::json SummaryJson(const engine::StoreSummary& s) {
  std::uint64_t files = 0;
  std::uint64_t entries = 0;
  for (const engine::LevelSummary& l : s.levels) {
    files += l.files;
    entries += l.entries;
  }
  std::uint64_t garbage = 0;
  for (const engine::VlogFileSummary& v : s.vlogs) garbage += v.garbage_bytes;
  return {{"format_version", s.format_version},
          {"manifest_number", s.manifest_number},
          {"manifest_bytes", s.manifest_bytes},
          {"last_sequence", s.last_sequence},
          {"sst_files", files},
          {"sst_entries", entries},
          {"sst_bytes", s.sst_bytes},
          {"vlog_files", s.vlogs.size()},
          {"vlog_bytes", s.vlog_bytes},
          {"vlog_garbage_bytes", garbage},
          {"wal_bytes", s.wal_bytes},
          {"other_bytes", s.other_bytes},
          {"total_bytes", s.total_bytes()},
          {"io_totals_known", s.io_totals_known},
          {"opens", s.opens},
          {"user_bytes_written", s.user_bytes_written},
          {"disk_bytes_written", s.disk_bytes_written},
          {"write_amplification", s.write_amplification},
          {"levels", LevelsJson(s)}};
}

void PrintLevels(const engine::StoreSummary& s) {
  fmt::print("{:>5}  {:>7}  {:>12}  {:>12}\n", "level", "files", "MiB", "entries");
  for (const engine::LevelSummary& l : s.levels) {
    fmt::print("{:>5}  {:>7}  {:>12.1f}  {:>12}\n", l.level, l.files, MiB(l.bytes), l.entries);
  }
}

void PrintVlogs(const engine::StoreSummary& s) {
  if (s.vlogs.empty()) {
    fmt::print("no value-log files (the store keeps every value in its SSTs)\n");
    return;
  }
  fmt::print("{:>10}  {:>10}  {:>10}  {:>12}  {:>8}\n", "file", "MiB", "records", "garbage MiB",
             "garbage");
  for (const engine::VlogFileSummary& v : s.vlogs) {
    fmt::print("{:>10}  {:>10.1f}  {:>10}  {:>12.1f}  {:>7.1f}%\n", v.number, MiB(v.size_bytes),
               v.records, MiB(v.garbage_bytes), 100.0 * v.garbage_ratio());
  }
}

void PrintSummary(const std::string& store, const engine::StoreSummary& s) {
  fmt::print("store            {}\n", store);
  fmt::print("format version   {}\n", s.format_version);
  fmt::print("manifest         MANIFEST-{:06} ({} bytes)\n", s.manifest_number, s.manifest_bytes);
  fmt::print("last sequence    {}\n", s.last_sequence);
  fmt::print(
      "on disk          {:.1f} MiB: SSTs {:.1f}, value logs {:.1f}, WAL {:.1f}, other {:.1f}\n",
      MiB(s.total_bytes()), MiB(s.sst_bytes), MiB(s.vlog_bytes), MiB(s.wal_bytes),
      MiB(s.other_bytes));
  if (s.io_totals_known) {
    fmt::print(
        "write amp        {:.2f}: {:.1f} MiB written to disk for {:.1f} MiB users wrote, over {} "
        "clean closes\n",
        s.write_amplification, MiB(s.disk_bytes_written), MiB(s.user_bytes_written), s.opens);
  } else {
    fmt::print("write amp        unknown until the store is first closed cleanly\n");
  }
  fmt::print("\n");
  PrintLevels(s);
  if (!s.vlogs.empty()) {
    fmt::print("\n");
    PrintVlogs(s);
  }
}

int Fail(const std::string& store, std::string_view message) {
  fmt::print(stderr, "cascadefs inspect: {}: {}\n", store, message);
  return kExitFailed;
}

int InspectChunks(engine::DB* db, const InspectArgs& args, std::uint64_t store_bytes) {
  auto summary = fusefs::SummarizeChunks(db);
  if (!summary.ok()) return Fail(args.store, summary.status().message());
  const fusefs::ChunkSummary& c = summary.value();
  const std::uint64_t live = c.stored_bytes - c.unreferenced_bytes;
  const double space_amplification =
      live == 0 ? 1.0 : static_cast<double>(store_bytes) / static_cast<double>(live);
  if (args.json) {
    const nlohmann::json out = {{"store", args.store},
                                {"files", c.files},
                                {"file_bytes", c.file_bytes},
                                {"chunks", c.chunks},
                                {"chunk_bytes", c.chunk_bytes},
                                {"stored_bytes", c.stored_bytes},
                                {"referenced_chunk_bytes", c.referenced_chunk_bytes},
                                {"unreferenced_chunks", c.unreferenced_chunks},
                                {"unreferenced_bytes", c.unreferenced_bytes},
                                {"dedup_ratio", c.dedup_ratio()},
                                {"compression_ratio", c.compression_ratio()},
                                {"store_bytes", store_bytes},
                                {"space_amplification", space_amplification}};
    fmt::print("{}\n", out.dump());
    return kExitOk;
  }
  fmt::print("files              {} ({:.1f} MiB of data, holes excluded)\n", c.files,
             MiB(c.file_bytes));
  fmt::print("chunks             {} ({:.1f} MiB, {:.1f} MiB stored)\n", c.chunks,
             MiB(c.chunk_bytes), MiB(c.stored_bytes));
  fmt::print("dedup ratio        {:.2f} (file data / referenced chunk bytes)\n", c.dedup_ratio());
  fmt::print("compression ratio  {:.2f} (chunk bytes / stored bytes)\n", c.compression_ratio());
  fmt::print("unreferenced       {} chunks, {:.1f} MiB stored (cascadefs gc reclaims them)\n",
             c.unreferenced_chunks, MiB(c.unreferenced_bytes));
  fmt::print("space amplification {:.2f} (store on disk / referenced chunks stored)\n",
             space_amplification);
  return kExitOk;
}

int InspectFile(engine::DB* db, const InspectArgs& args) {
  auto file = fusefs::InspectFile(db, args.target);
  if (!file.ok()) return Fail(args.store, file.status().message());
  const fusefs::FileInfo& f = file.value();
  if (args.json) {
    nlohmann::json tree = nlohmann::json::array();
    for (const fusefs::TreeEntryInfo& e : f.tree) {
      tree.push_back({{"level", e.level},
                      {"offset", e.offset},
                      {"length", e.length},
                      {"chunk", e.chunk},
                      {"stored_bytes", e.stored_bytes},
                      {"present", e.present}});
    }
    const nlohmann::json out = {{"store", args.store},
                                {"path", args.target},
                                {"ino", f.ino},
                                {"mode", f.mode},
                                {"nlink", f.nlink},
                                {"uid", f.uid},
                                {"gid", f.gid},
                                {"size", f.size},
                                {"hole_bytes", f.hole_bytes},
                                {"mtime_ns", f.mtime_ns},
                                {"height", f.height},
                                {"chunker", f.chunker},
                                {"root", f.root},
                                {"symlink_target", f.symlink_target},
                                {"leaves", f.leaves},
                                {"nodes", f.nodes},
                                {"stored_bytes", f.stored_bytes},
                                {"tree", tree}};
    fmt::print("{}\n", out.dump());
    return kExitOk;
  }
  fmt::print("{}: inode {}, mode {:o}, {} links, owner {}:{}, {} bytes\n", args.target, f.ino,
             f.mode, f.nlink, f.uid, f.gid, f.size);
  if (S_ISLNK(f.mode)) fmt::print("symlink to {}\n", f.symlink_target);
  if (!S_ISREG(f.mode)) return kExitOk;
  fmt::print(
      "{} chunker, tree height {}, root {}, {} leaves, {} nodes, {} hole bytes, {} bytes "
      "stored\n",
      f.chunker, f.height, f.root.empty() ? "-" : f.root, f.leaves, f.nodes, f.hole_bytes,
      f.stored_bytes);
  if (f.tree.empty()) return kExitOk;
  fmt::print("{:>5}  {:>14}  {:>10}  {:>10}  {}\n", "level", "offset", "length", "stored", "chunk");
  for (const fusefs::TreeEntryInfo& e : f.tree) {
    fmt::print("{:>5}  {:>14}  {:>10}  {:>10}  {}{}\n", e.level, e.offset, e.length, e.stored_bytes,
               e.chunk.empty() ? "(hole)" : e.chunk, e.present ? "" : "  MISSING OR DAMAGED");
  }
  return kExitOk;
}

int InspectChunk(engine::DB* db, const InspectArgs& args) {
  auto chunk = fusefs::InspectChunk(db, args.target);
  if (!chunk.ok()) return Fail(args.store, chunk.status().message());
  const fusefs::ChunkInfo& c = chunk.value();
  if (args.json) {
    nlohmann::json refs = nlohmann::json::array();
    for (const auto& r : c.references) {
      refs.push_back({{"ino", r.ino}, {"path", r.path}, {"offset", r.offset}});
    }
    const nlohmann::json out = {{"store", args.store},
                                {"chunk", c.chunk},
                                {"present", c.present},
                                {"damaged", c.damaged},
                                {"problem", c.problem},
                                {"length", c.length},
                                {"stored_bytes", c.stored_bytes},
                                {"compressed", c.compressed},
                                {"node", c.node},
                                {"references", refs}};
    fmt::print("{}\n", out.dump());
    return kExitOk;
  }
  if (!c.present) {
    fmt::print("chunk {}: not in the store\n", c.chunk);
  } else if (c.damaged) {
    fmt::print("chunk {}: DAMAGED ({}), {} bytes stored\n", c.chunk, c.problem, c.stored_bytes);
  } else {
    fmt::print("chunk {}: {} bytes, {} stored ({}){}\n", c.chunk, c.length, c.stored_bytes,
               c.compressed ? "zstd" : "raw", c.node ? ", a recipe node" : "");
  }
  if (c.references.empty()) {
    fmt::print("no file refers to it\n");
    return kExitOk;
  }
  for (const auto& r : c.references) {
    fmt::print("  inode {} {} at offset {}\n", r.ino, r.path.empty() ? "(unreachable)" : r.path,
               r.offset);
  }
  return kExitOk;
}

// `inspect STORE cache`: the chunk cache file, read and validated (cache::CheckCacheFile);
// writes nothing, so it runs beside a mount (its counts are then a moment's). Hit ratios are
// the running mount's (`cascadefs status`).
int InspectCache(const InspectArgs& args) {
  const std::string path = args.store + "/cache";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Fail(args.store, "no chunk cache file (cache): the store was never mounted with one");
  }
  const std::uint64_t file_bytes = std::filesystem::file_size(path, ec);
  Result<cache::CacheCheckReport> checked = cache::CheckCacheFile(path);
  if (!checked.ok()) return Fail(args.store, checked.status().message());
  const cache::CacheCheckReport& c = checked.value();
  if (args.json) {
    nlohmann::json findings = nlohmann::json::array();
    for (const cache::CacheFinding& f : c.findings) {
      findings.push_back(
          {{"segment", f.segment_index}, {"offset", f.file_offset}, {"problem", f.message}});
    }
    const nlohmann::json out = {{"store", args.store},
                                {"file_bytes", file_bytes},
                                {"segments", c.segments},
                                {"segments_written", c.segments_written},
                                {"segments_empty", c.segments_empty},
                                {"entries_valid", c.entries_valid},
                                {"findings", findings}};
    fmt::print("{}\n", out.dump());
    return kExitOk;
  }
  fmt::print("cache file       {} ({:.1f} MiB)\n", path, MiB(file_bytes));
  fmt::print("segments         {}: {} written, {} never written\n", c.segments, c.segments_written,
             c.segments_empty);
  fmt::print("chunks           {} valid entries (a warm mount serves them)\n", c.entries_valid);
  fmt::print("damaged entries  {} (never served)\n", c.findings.size());
  for (const cache::CacheFinding& f : c.findings) fmt::print("  {}\n", f.message);
  fmt::print("hit ratio        see cascadefs status MOUNTPOINT while mounted\n");
  return kExitOk;
}

// The views over the store's keys: the engine opened read-only.
int InspectKeys(const InspectArgs& args, std::uint64_t store_bytes) {
  engine::Options options;
  options.create_if_missing = false;
  options.read_only = true;
  auto db = engine::DB::Open(options, args.store);
  if (!db.ok()) return Fail(args.store, db.status().message());
  int exit_code = kExitOk;
  if (args.what == "chunks") {
    exit_code = InspectChunks(db.value().get(), args, store_bytes);
  } else if (args.what == "file") {
    exit_code = InspectFile(db.value().get(), args);
  } else {
    exit_code = InspectChunk(db.value().get(), args);
  }
  (void)db.value()->Close();  // read-only: nothing to write
  return exit_code;
}

}  // namespace

int RunInspect(const InspectArgs& args) {
  const std::string& store = args.store;
  std::error_code ec;
  if (!std::filesystem::exists(store + "/CURRENT", ec)) {
    fmt::print(stderr, "cascadefs inspect: {}: not a cascadefs store (no CURRENT file)\n", store);
    return kExitFailed;
  }
  if (args.what == "cache") return InspectCache(args);
  if (args.what == "journal") {
    if (!IsHubStoreDir(store)) return Fail(store, "not a hub store (no hub superblock)");
    return InspectHubJournal(args);
  }
  if ((args.what == "file" || args.what == "chunk") && args.target.empty()) {
    return Fail(store, "inspect " + args.what + " needs " +
                           (args.what == "file" ? "a PATH inside the store (/dir/name)"
                                                : "a chunk HASH (34 hex digits)"));
  }
  auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 1});
  if (!scheduler.ok()) {
    fmt::print(stderr, "cascadefs inspect: {}: {}\n", store, scheduler.status().message());
    return kExitFailed;
  }
  std::unique_ptr<engine::Env> env = engine::NewSchedulerEnv(scheduler.value().get());
  Result<engine::StoreSummary> summary =
      scheduler.value()->BlockOn(engine::SummarizeStore(env.get(), store));
  if (!summary.ok()) {
    fmt::print(stderr, "cascadefs inspect: {}: {}\n", store, summary.status().message());
    return kExitFailed;
  }
  const engine::StoreSummary& s = summary.value();
  if (args.what == "chunks" || args.what == "file" || args.what == "chunk") {
    return InspectKeys(args, s.total_bytes());
  }
  if (args.json) {
    nlohmann::json out;
    if (args.what == "levels") {
      out = {{"levels", LevelsJson(s)}};
    } else if (args.what == "vlog") {
      out = {{"vlogs", VlogJson(s)}};
    } else {
      out = SummaryJson(s);
    }
    out["store"] = store;
    fmt::print("{}\n", out.dump());
    return kExitOk;
  }
  if (args.what == "levels") {
    PrintLevels(s);
  } else if (args.what == "vlog") {
    PrintVlogs(s);
  } else {
    PrintSummary(store, s);
  }
  return kExitOk;
}

}  // namespace cascadefs::tools
