// fsck_command.cc: `cascadefs fsck [--repair] STORE` (docs/fsck.md). Takes the store's lock (a
// mounted store is refused), checks the engine's files, then the chunks, recipes and namespace
// through the engine (opened read-only, or for writing with --repair), and prints one line per
// finding, naming the file and offset, or the inode and path. Exit codes follow e2fsck: 0
// clean, 1 errors repaired, 4 errors left, 8 the check could not run.
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

constexpr int kExitClean = 0;
constexpr int kExitRepaired = 1;
constexpr int kExitErrorsLeft = 4;
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

// The logical layer. With `repair` (and undamaged engine files) the store is opened for
// writing, after `lock` is let go (the engine takes it again); otherwise read-only, under it.
// A store that does not open is one error finding: the check cannot see past it.
fusefs::NamespaceCheckReport CheckLogical(const std::string& store, bool repair, bool show_progress,
                                          std::unique_ptr<engine::FileLock>* lock) {
  fusefs::NamespaceCheckReport report;
  engine::Options options;
  options.create_if_missing = false;
  options.read_only = !repair;
  if (repair) lock->reset();
  auto db = engine::DB::Open(options, store);
  if (!db.ok()) {
    report.findings.push_back(fusefs::NamespaceFinding{
        .problem = "the store does not open, so its chunks, recipes and namespace cannot be "
                   "checked: " +
                   db.status().ToString()});
    return report;
  }
  fusefs::NamespaceCheckOptions check;
  check.repair = repair;
  if (show_progress) check.progress = ShowProgress;
  auto checked = fusefs::CheckNamespace(db.value().get(), check);
  Status closed = db.value()->Close();
  if (!checked.ok()) {
    report.findings.push_back(
        fusefs::NamespaceFinding{.problem = "the check of chunks, recipes and namespace stopped: " +
                                            checked.status().ToString()});
    return report;
  }
  report = std::move(checked).value();
  if (!closed.ok()) {
    report.findings.push_back(
        fusefs::NamespaceFinding{.problem = "closing the store: " + closed.ToString()});
  }
  return report;
}

}  // namespace

int RunFsck(const FsckArgs& args) {
  const std::string& store = args.store;
  std::error_code ec;
  if (!std::filesystem::is_directory(store, ec)) {
    fmt::print(stderr, "cascadefs fsck: {}: not a directory\n", store);
    return kExitOperational;
  }
  if (!std::filesystem::exists(store + "/CURRENT", ec)) {
    fmt::print(stderr, "cascadefs fsck: {}: not a cascadefs store (no CURRENT file)\n", store);
    return kExitOperational;
  }
  auto scheduler = io::Scheduler::Create(io::SchedulerOptions{});
  if (!scheduler.ok()) {
    fmt::print(stderr, "cascadefs fsck: {}: {}\n", store, scheduler.status().message());
    return kExitOperational;
  }
  std::unique_ptr<engine::Env> env = engine::NewSchedulerEnv(scheduler.value().get());
  // Nothing may change the files while they are read: a mounted store is refused.
  auto lock = env->LockFile(store + "/LOCK");
  if (!lock.ok()) {
    if (lock.status().IsBusy()) {
      fmt::print(stderr,
                 "cascadefs fsck: {}: the store is in use (mounted?): unmount it first "
                 "(cascadefs umount MOUNTPOINT)\n",
                 store);
    } else {
      fmt::print(stderr, "cascadefs fsck: {}: {}\n", store, lock.status().message());
    }
    return kExitOperational;
  }

  const bool show_progress = !args.json && isatty(STDERR_FILENO) == 1;
  engine::CheckOptions options;
  if (show_progress) {
    options.progress = [](const engine::CheckProgress& p) {
      const double percent = p.total_bytes == 0 ? 100.0
                                                : 100.0 * static_cast<double>(p.done_bytes) /
                                                      static_cast<double>(p.total_bytes);
      fmt::print(stderr, "\r\033[Kchecking {} ({:.0f}%)", p.file, percent);
      std::fflush(stderr);
    };
  }
  Result<engine::CheckReport> report =
      scheduler.value()->BlockOn(engine::CheckStoreFiles(env.get(), store, options));
  if (show_progress) fmt::print(stderr, "\r\033[K");
  if (!report.ok()) {
    fmt::print(stderr, "cascadefs fsck: {}: {}\n", store, report.status().message());
    return kExitOperational;
  }
  const engine::CheckReport& r = report.value();
  const std::uint64_t engine_errors = r.errors();
  // Repair writes through the engine only over intact engine files: a damaged SST or log is
  // not something fsck rebuilds (it would have to guess), so those stores are checked only.
  const bool repair = args.repair && engine_errors == 0;
  fusefs::NamespaceCheckReport logical = CheckLogical(store, repair, show_progress, &lock.value());
  if (show_progress) fmt::print(stderr, "\r\033[K");

  const std::uint64_t errors = engine_errors + logical.errors();
  const std::uint64_t errors_left = engine_errors + logical.errors_left();
  const std::uint64_t repaired = logical.repaired();
  const auto warnings = static_cast<std::uint64_t>(std::count_if(
      logical.findings.begin(), logical.findings.end(), [](const fusefs::NamespaceFinding& f) {
        return f.severity == engine::CheckSeverity::kWarning;
      }));
  const std::uint64_t notes =
      r.findings.size() - engine_errors + logical.findings.size() - logical.errors() - warnings;
  const int exit_code = errors_left > 0 ? kExitErrorsLeft
                        : repaired > 0  ? kExitRepaired
                                        : kExitClean;
  if (args.json) {
    nlohmann::json findings = nlohmann::json::array();
    for (const engine::CheckFinding& f : r.findings) {
      nlohmann::json item = {{"severity", SeverityName(f.severity)},
                             {"layer", "engine"},
                             {"file", f.file},
                             {"problem", f.problem},
                             {"repaired", false}};
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
    const nlohmann::json out = {{"store", store},
                                {"exit_code", exit_code},
                                {"errors", errors},
                                {"errors_left", errors_left},
                                {"repaired", repaired},
                                {"warnings", warnings},
                                {"notes", notes},
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
    fmt::print("{}\n", out.dump());
    return exit_code;
  }
  for (const engine::CheckFinding& f : r.findings) fmt::print("{}\n", FindingLine(store, f));
  for (const fusefs::NamespaceFinding& f : logical.findings) {
    fmt::print("{}\n", FindingLine(store, f));
  }
  if (args.repair && engine_errors > 0) {
    fmt::print(
        "{}: the engine's files are damaged: fsck does not repair them (nothing was "
        "written); the findings above name what is lost\n",
        store);
  }
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
      errors, repaired > 0 ? " (" + std::to_string(repaired) + " repaired)" : std::string(),
      warnings, notes, errors_left > 0 ? "damaged" : (repaired > 0 ? "repaired" : "clean"));
  return exit_code;
}

}  // namespace cascadefs::tools
