// fsck_command.cc: `cascadefs fsck STORE` (docs/fsck.md). Takes the store's lock (a mounted
// store is refused), checks every layer it knows and prints one line per finding, naming the
// file and offset. Exit codes follow e2fsck: 0 clean, 4 errors left, 8 the check could not run.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "engine/check.h"
#include "engine/env.h"
#include "engine/io/scheduler.h"

namespace cascadefs::tools {
namespace {

constexpr int kExitClean = 0;
constexpr int kExitErrorsLeft = 4;
constexpr int kExitOperational = 8;

const char* SeverityName(engine::CheckSeverity severity) {
  return severity == engine::CheckSeverity::kError ? "error" : "note";
}

// "STORE/000012.sst: offset 4096: what" (the offset only when known).
std::string FindingLine(const std::string& store, const engine::CheckFinding& finding) {
  std::string line = store + "/" + finding.file + ": ";
  if (finding.offset) line += "offset " + std::to_string(*finding.offset) + ": ";
  return line + SeverityName(finding.severity) + ": " + finding.problem;
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
  const std::uint64_t errors = r.errors();
  const std::uint64_t notes = r.findings.size() - errors;
  const int exit_code = errors == 0 ? kExitClean : kExitErrorsLeft;
  if (args.json) {
    nlohmann::json findings = nlohmann::json::array();
    for (const engine::CheckFinding& f : r.findings) {
      nlohmann::json item = {{"severity", SeverityName(f.severity)},
                             {"layer", "engine"},
                             {"file", f.file},
                             {"problem", f.problem}};
      item["offset"] = f.offset ? nlohmann::json(*f.offset) : nlohmann::json(nullptr);
      findings.push_back(std::move(item));
    }
    const nlohmann::json out = {{"store", store},
                                {"exit_code", exit_code},
                                {"errors", errors},
                                {"notes", notes},
                                {"files_checked", r.files_checked},
                                {"bytes_checked", r.bytes_checked},
                                {"sst_files", r.sst_files},
                                {"sst_entries", r.sst_entries},
                                {"wal_records", r.wal_records},
                                {"vlog_files", r.vlog_files},
                                {"vlog_records", r.vlog_records},
                                {"findings", findings}};
    fmt::print("{}\n", out.dump());
    return exit_code;
  }
  for (const engine::CheckFinding& f : r.findings) fmt::print("{}\n", FindingLine(store, f));
  fmt::print(
      "{}: {} files, {} bytes checked ({} SSTs with {} entries, {} WAL records, {} value "
      "logs with {} records): {} errors, {} notes: {}\n",
      store, r.files_checked, r.bytes_checked, r.sst_files, r.sst_entries, r.wal_records,
      r.vlog_files, r.vlog_records, errors, notes, errors == 0 ? "clean" : "damaged");
  return exit_code;
}

}  // namespace cascadefs::tools
