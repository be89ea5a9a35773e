// fsck_command.cc: `cascadefs fsck [--repair] [--json] STORE` (docs/fsck.md). Runs
// fusefs::FsckStore (the store's lock, the engine's files and their repair, then the chunks,
// recipes and namespace) and prints one line per finding, naming the file and offset, or the
// inode and path, and one per repair action. Exit codes follow e2fsck: 0 clean, 1 errors
// repaired, 4 errors left, 8 the check could not run.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "engine/check.h"
#include "engine/db.h"
#include "engine/env.h"
#include "engine/io/scheduler.h"
#include "engine/options.h"
#include "fusefs/check.h"

namespace cascadefs::tools {
namespace {

// e2fsck's 8; 0, 1 and 4 come from FsckReport::exit_code.
constexpr int kExitOperational = 8;

const char* SeverityName(engine::CheckSeverity severity) {
  switch (severity) {
    case engine::CheckSeverity::kError:
      return "error";
    case engine::CheckSeverity::kWarning:
      return "warning";
    case engine::CheckSeverity::kNote:
      break;
  }
  return "note";
}

// "STORE/000012.sst: offset 4096: what" (the offset only when known).
std::string FindingLine(const std::string& store, const engine::CheckFinding& finding) {
  std::string line = store + "/" + finding.file + ": ";
  if (finding.offset) line += "offset " + std::to_string(*finding.offset) + ": ";
  return line + SeverityName(finding.severity) + ": " + finding.problem;
}

// "STORE: inode 42 (/a/b): error: what [repaired]", "STORE: chunk HEX: error: what".
std::string FindingLine(const std::string& store, const fusefs::NamespaceFinding& finding) {
  std::string line = store + ": ";
  if (finding.ino) {
    line += "inode " + std::to_string(*finding.ino);
    if (!finding.path.empty()) line += " (" + finding.path + ")";
    line += ": ";
  } else if (!finding.chunk.empty()) {
    line += "chunk " + finding.chunk + ": ";
  } else {
    line += "namespace: ";
  }
  line += std::string(SeverityName(finding.severity)) + ": " + finding.problem;
  if (finding.repaired) line += " [repaired]";
  return line;
}

void ShowProgress(const fusefs::NamespaceCheckProgress& p) {
  if (p.total > 0) {
    fmt::print(stderr, "\r\033[Kchecking {}: {} of {}", p.phase, p.done, p.total);
  } else {
    fmt::print(stderr, "\r\033[Kchecking {}: {}", p.phase, p.done);
  }
  std::fflush(stderr);
}

void ShowEngineProgress(const engine::CheckProgress& p) {
  const double percent = p.total_bytes == 0 ? 100.0
                                            : 100.0 * static_cast<double>(p.done_bytes) /
                                                  static_cast<double>(p.total_bytes);
  fmt::print(stderr, "\r\033[Kchecking {} ({:.0f}%)", p.file, percent);
  std::fflush(stderr);
}

// "STORE/000012.sst: offset 4096: repaired: what was done".
std::string ActionLine(const std::string& store, const engine::RepairAction& action) {
  std::string line = store + "/" + action.file + ": ";
  if (action.offset) line += "offset " + std::to_string(*action.offset) + ": ";
  return line + "repair: " + action.action;
}

nlohmann::json Json(const std::string& store, const fusefs::FsckReport& report) {
  const engine::CheckReport& r = report.engine;
  const fusefs::NamespaceCheckReport& logical = report.logical;
  nlohmann::json findings = nlohmann::json::array();
  for (const engine::CheckFinding& f : r.findings) {
    nlohmann::json item = {
        {"severity", SeverityName(f.severity)},
        {"layer", "engine"},
        {"file", f.file},
        {"problem", f.problem},
        {"repaired", f.severity == engine::CheckSeverity::kError && report.engine_repaired()}};
    item["offset"] = f.offset ? nlohmann::json(*f.offset) : nlohmann::json(nullptr);
    findings.push_back(std::move(item));
  }
  for (const fusefs::NamespaceFinding& f : logical.findings) {
    nlohmann::json item = {{"severity", SeverityName(f.severity)},
                           {"layer", "namespace"},
                           {"path", f.path},
                           {"chunk", f.chunk},
                           {"problem", f.problem},
                           {"repaired", f.repaired}};
    item["ino"] = f.ino ? nlohmann::json(*f.ino) : nlohmann::json(nullptr);
    findings.push_back(std::move(item));
  }
  nlohmann::json out = {{"store", store},
                        {"exit_code", report.exit_code()},
                        {"errors", report.errors()},
                        {"errors_left", report.errors_left()},
                        {"repaired", report.repaired()},
                        {"warnings", report.warnings()},
                        {"notes", report.notes()},
                        {"files_checked", r.files_checked},
                        {"bytes_checked", r.bytes_checked},
                        {"sst_files", r.sst_files},
                        {"sst_entries", r.sst_entries},
                        {"wal_records", r.wal_records},
                        {"vlog_files", r.vlog_files},
                        {"vlog_records", r.vlog_records},
                        {"inodes", logical.inodes},
                        {"directories", logical.directories},
                        {"files", logical.files},
                        {"symlinks", logical.symlinks},
                        {"entries", logical.entries},
                        {"chunks", logical.chunks},
                        {"chunk_bytes", logical.chunk_bytes},
                        {"chunk_stored_bytes", logical.chunk_stored_bytes},
                        {"unreferenced_chunks", logical.unreferenced_chunks},
                        {"unreferenced_bytes", logical.unreferenced_bytes},
                        {"garbage_chunks_deleted", logical.garbage_chunks_deleted},
                        {"files_damaged", logical.files_damaged},
                        {"files_with_lost_data", logical.files_with_lost_data},
                        {"findings", findings}};
  if (report.cache) {
    nlohmann::json cache_findings = nlohmann::json::array();
    for (const cache::CacheFinding& f : report.cache->findings) {
      cache_findings.push_back(
          {{"segment", f.segment_index}, {"offset", f.file_offset}, {"problem", f.message}});
    }
    out["cache"] = {{"segments", report.cache->segments},
                    {"segments_written", report.cache->segments_written},
                    {"entries_valid", report.cache->entries_valid},
                    {"removed", report.cache_removed},
                    {"findings", cache_findings}};
  }
  if (report.engine_repair) {
    const engine::RepairReport& repair = *report.engine_repair;
    nlohmann::json actions = nlohmann::json::array();
    for (const engine::RepairAction& a : repair.actions) {
      nlohmann::json item = {{"file", a.file}, {"action", a.action}};
      item["offset"] = a.offset ? nlohmann::json(*a.offset) : nlohmann::json(nullptr);
      actions.push_back(std::move(item));
    }
    out["engine_repair"] = {{"errors_found", repair.errors_found},
                            {"errors_left", repair.errors_left},
                            {"manifest_rebuilt", repair.manifest_rebuilt},
                            {"sst_blocks_dropped", repair.sst_blocks_dropped},
                            {"sst_entries_dropped", repair.sst_entries_dropped},
                            {"sst_entries_kept", repair.sst_entries_kept},
                            {"wal_records_kept", repair.wal_records_kept},
                            {"wal_records_dropped", repair.wal_records_dropped},
                            {"pointers_lost", repair.pointers_lost},
                            {"vlog_records_moved", repair.vlog_records_moved},
                            {"files_missing", repair.files_missing},
                            {"files_moved_to_lost", repair.files_moved_to_lost},
                            {"actions", actions}};
  }
  return out;
}

}  // namespace

int RunFsck(const FsckArgs& args) {
  const std::string& store = args.store;
  if (IsHubStoreDir(store)) return FsckHubStore(args);
  auto scheduler = io::Scheduler::Create(io::SchedulerOptions{});
  if (!scheduler.ok()) {
    fmt::print(stderr, "cascadefs fsck: {}: {}\n", store, scheduler.status().message());
    return kExitOperational;
  }
  const bool show_progress = !args.json && isatty(STDERR_FILENO) == 1;
  fusefs::FsckOptions options;
  options.repair = args.repair;
  if (show_progress) {
    options.engine_progress = ShowEngineProgress;
    options.progress = ShowProgress;
  }
  Result<fusefs::FsckReport> checked = fusefs::FsckStore(scheduler.value().get(), store, options);
  if (show_progress) fmt::print(stderr, "\r\033[K");
  if (!checked.ok()) {
    // The status names the store (or the step) already.
    fmt::print(stderr, "cascadefs fsck: {}\n", checked.status().message());
    return kExitOperational;
  }
  const fusefs::FsckReport& report = checked.value();
  if (args.json) {
    fmt::print("{}\n", Json(store, report).dump());
    return report.exit_code();
  }
  const engine::CheckReport& r = report.engine;
  const fusefs::NamespaceCheckReport& logical = report.logical;
  for (const engine::CheckFinding& f : r.findings) {
    std::string line = FindingLine(store, f);
    if (f.severity == engine::CheckSeverity::kError && report.engine_repaired()) {
      line += " [repaired]";
    }
    fmt::print("{}\n", line);
  }
  if (report.engine_repair) {
    for (const engine::RepairAction& a : report.engine_repair->actions) {
      fmt::print("{}\n", ActionLine(store, a));
    }
    if (!report.engine_repaired()) {
      fmt::print(
          "{}: the engine's files still have {} errors after repair: the namespace was checked, "
          "not repaired\n",
          store, report.engine_repair->errors_left);
    }
  }
  for (const fusefs::NamespaceFinding& f : logical.findings) {
    fmt::print("{}\n", FindingLine(store, f));
  }
  if (report.cache) {
    for (const cache::CacheFinding& f : report.cache->findings) {
      fmt::print("{}/cache: offset {}: note: {} (never served; the next lap rewrites it){}\n",
                 store, f.file_offset, f.message,
                 report.cache_removed ? " [the cache file was removed]" : "");
    }
  }
  const std::uint64_t errors_left = report.errors_left();
  const std::uint64_t repaired = report.repaired();
  fmt::print(
      "{}: {} files, {} bytes checked ({} SSTs with {} entries, {} WAL records, {} value "
      "logs with {} records); {} inodes ({} directories, {} files, {} symlinks), {} chunks "
      "({} unreferenced{}): {} errors{}, {} warnings, {} notes: {}\n",
      store, r.files_checked, r.bytes_checked, r.sst_files, r.sst_entries, r.wal_records,
      r.vlog_files, r.vlog_records, logical.inodes, logical.directories, logical.files,
      logical.symlinks, logical.chunks, logical.unreferenced_chunks,
      logical.garbage_chunks_deleted > 0
          ? ", " + std::to_string(logical.garbage_chunks_deleted) + " deleted"
          : std::string(),
      report.errors(),
      repaired > 0 ? " (" + std::to_string(repaired) + " repaired)" : std::string(),
      report.warnings(), report.notes(),
      errors_left > 0 ? "damaged" : (repaired > 0 ? "repaired" : "clean"));
  return report.exit_code();
}

}  // namespace cascadefs::tools
