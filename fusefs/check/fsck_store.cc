// fsck_store.cc: fsck's layers in order (fusefs/check.h, FsckStore): the engine's files, their
// repair, then the chunks, recipes and namespace through the engine.
#include <algorithm>
#include <filesystem>

#include "engine/db.h"
#include "engine/env.h"
#include "engine/io/scheduler.h"
#include "engine/options.h"
#include "fusefs/check.h"

namespace cascadefs::fusefs {

bool FsckReport::engine_repaired() const {
  return engine_repair.has_value() && engine_repair->errors_left == 0;
}

std::uint64_t FsckReport::errors() const { return engine.errors() + logical.errors(); }

std::uint64_t FsckReport::errors_left() const {
  const std::uint64_t engine_left = engine_repair ? engine_repair->errors_left : engine.errors();
  return engine_left + logical.errors_left();
}

std::uint64_t FsckReport::repaired() const {
  const std::uint64_t engine_fixed =
      engine_repair ? engine.errors() - std::min(engine.errors(), engine_repair->errors_left) : 0;
  return engine_fixed + logical.repaired();
}

std::uint64_t FsckReport::warnings() const {
  return static_cast<std::uint64_t>(
      std::count_if(logical.findings.begin(), logical.findings.end(),
                    [](const auto& f) { return f.severity == engine::CheckSeverity::kWarning; }));
}

std::uint64_t FsckReport::notes() const {
  const auto engine_notes = static_cast<std::uint64_t>(
      std::count_if(engine.findings.begin(), engine.findings.end(),
                    [](const auto& f) { return f.severity == engine::CheckSeverity::kNote; }));
  const auto logical_notes = static_cast<std::uint64_t>(
      std::count_if(logical.findings.begin(), logical.findings.end(),
                    [](const auto& f) { return f.severity == engine::CheckSeverity::kNote; }));
  const std::uint64_t cache_notes = cache ? cache->findings.size() : 0;
  return engine_notes + logical_notes + cache_notes;
}

int FsckReport::exit_code() const {
  if (errors_left() > 0) return 4;
  return repaired() > 0 ? 1 : 0;
}

namespace {

// The logical layer. With `repair` the store is opened for writing, after `lock` is let go
// (the engine takes it again); otherwise read-only, under it. A store that does not open is
// one error finding: the check cannot see past it.
NamespaceCheckReport CheckLogical(io::Scheduler* scheduler, const std::string& dir, bool repair,
                                  const FsckOptions& options,
                                  std::unique_ptr<engine::FileLock>* lock) {
  NamespaceCheckReport report;
  engine::Options open;
  open.create_if_missing = false;
  open.read_only = !repair;
  open.scheduler = scheduler;
  if (repair) lock->reset();
  auto db = engine::DB::Open(open, dir);
  if (!db.ok()) {
    report.findings.push_back(NamespaceFinding{
        .problem = "the store does not open, so its chunks, recipes and namespace cannot be "
                   "checked: " +
                   db.status().ToString()});
    return report;
  }
  NamespaceCheckOptions check;
  check.repair = repair;
  check.progress = options.progress;
  auto checked = CheckNamespace(db.value().get(), check);
  Status closed = db.value()->Close();
  if (!checked.ok()) {
    report.findings.push_back(
        NamespaceFinding{.problem = "the check of chunks, recipes and namespace stopped: " +
                                    checked.status().ToString()});
    return report;
  }
  report = std::move(checked).value();
  if (!closed.ok()) {
    report.findings.push_back(
        NamespaceFinding{.problem = "closing the store: " + closed.ToString()});
  }
  return report;
}

}  // namespace

Result<FsckReport> FsckStore(io::Scheduler* scheduler, const std::string& dir,
                             const FsckOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return Status::InvalidArgument(dir + ": not a directory");
  }
  // A store without CURRENT may still be one whose CURRENT was lost: the engine's check and
  // repair decide from the files present (a manifest, tables).
  bool has_store_files = false;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name == "CURRENT" || name.starts_with("MANIFEST-") || name.ends_with(".sst")) {
      has_store_files = true;
      break;
    }
  }
  if (!has_store_files) {
    return Status::InvalidArgument(dir + ": not a cascadefs store (no CURRENT, manifest or table)");
  }
  std::unique_ptr<engine::Env> env = engine::NewSchedulerEnv(scheduler);
  // Nothing may change the files while they are read: a mounted store is refused.
  auto lock = env->LockFile(dir + "/LOCK");
  if (!lock.ok()) {
    if (lock.status().IsBusy()) {
      return Status::Busy(dir +
                          ": the store is in use (mounted?): unmount it first (cascadefs umount "
                          "MOUNTPOINT)");
    }
    return lock.status().WithContext(dir);
  }
  FsckReport report;
  engine::CheckOptions engine_options;
  engine_options.progress = options.engine_progress;
  Result<engine::CheckReport> checked =
      scheduler->BlockOn(engine::CheckStoreFiles(env.get(), dir, engine_options));
  if (!checked.ok()) return checked.status().WithContext(dir);
  report.engine = std::move(checked).value();
  if (options.repair && report.engine.errors() > 0) {
    Result<engine::RepairReport> repaired =
        scheduler->BlockOn(engine::RepairStoreFiles(env.get(), dir, engine::RepairOptions{}));
    if (!repaired.ok()) return repaired.status().WithContext("repairing the engine's files");
    report.engine_repair = std::move(repaired).value();
  }
  const std::string cache_path = dir + "/cache";
  if (std::filesystem::exists(cache_path, ec)) {
    Result<cache::CacheCheckReport> cache = cache::CheckCacheFile(cache_path);
    if (cache.ok()) {
      report.cache = std::move(cache).value();
    } else {
      report.cache = cache::CacheCheckReport{};
      report.cache->findings.push_back(
          {.message = "cannot be read: " + std::string(cache.status().message())});
    }
    if (options.repair && !report.cache->findings.empty()) {
      report.cache_removed = std::filesystem::remove(cache_path, ec);
    }
  }
  // The namespace is repaired only over intact engine files: a write through a damaged engine
  // could land on top of what a later engine repair would have to salvage.
  const bool engine_intact = report.engine.errors() == 0 || report.engine_repaired();
  report.logical =
      CheckLogical(scheduler, dir, options.repair && engine_intact, options, &lock.value());
  return report;
}

}  // namespace cascadefs::fusefs
