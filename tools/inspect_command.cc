// inspect_command.cc: `cascadefs inspect STORE [summary|levels|vlog] [--json]` (docs/fsck.md,
// "inspect"): what a store holds, as tables on a terminal or one JSON object for scripts. Reads
// the manifest and sizes the directory's files; writes nothing, so it may run beside a mount.
#include <filesystem>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "engine/env.h"
#include "engine/inspect.h"
#include "engine/io/scheduler.h"

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
  fmt::print("\n");
  PrintLevels(s);
  if (!s.vlogs.empty()) {
    fmt::print("\n");
    PrintVlogs(s);
  }
}

}  // namespace

int RunInspect(const InspectArgs& args) {
  const std::string& store = args.store;
  std::error_code ec;
  if (!std::filesystem::exists(store + "/CURRENT", ec)) {
    fmt::print(stderr, "cascadefs inspect: {}: not a cascadefs store (no CURRENT file)\n", store);
    return kExitFailed;
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
