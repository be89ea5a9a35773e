// gc_command.cc: `cascadefs gc STORE [--dry-run] [--json]` (docs/fsck.md, "gc"): deletes the
// chunks no file refers to and compacts the store so their space returns. A mounted store's
// daemon runs the cycle itself (asked through its control socket); otherwise the command opens
// the store (its LOCK keeps a mount from starting meanwhile).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "control.h"
#include "engine/db.h"
#include "engine/options.h"
#include "fusefs/check.h"

namespace cascadefs::tools {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 8;

// Bytes of every file directly in `dir` (a store keeps no subdirectories that matter here).
std::uint64_t DirectoryBytes(const std::string& dir) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::error_code size_ec;
    if (entry.is_regular_file(size_ec)) total += entry.file_size(size_ec);
  }
  return total;
}

// A mounted store: its daemon runs the cycle beside its writes (its gc fence keeps them safe).
int GcThroughDaemon(const GcArgs& args, int fd) {
  const std::string& store = args.store;
  std::string pending;
  std::string line;
  const bool answered = SendControlRequest(fd, "gc") && ReadControlLine(fd, &pending, &line);
  close(fd);
  if (!answered) {
    fmt::print(stderr, "cascadefs gc: {}: the mount's daemon did not answer\n", store);
    return kExitFailed;
  }
  const nlohmann::json reply = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (reply.is_discarded() || !reply.is_object()) {
    fmt::print(stderr, "cascadefs gc: {}: the mount's daemon answered something else\n", store);
    return kExitFailed;
  }
  if (reply.contains("error")) {
    fmt::print(stderr, "cascadefs gc: {}: {}\n", store, reply["error"].get<std::string>());
    return kExitFailed;
  }
  const std::uint64_t bytes_after = DirectoryBytes(store);
  if (args.json) {
    nlohmann::json out = reply;
    out["store"] = store;
    out["mounted"] = true;
    out["store_bytes_after"] = bytes_after;
    fmt::print("{}\n", out.dump());
    return kExitOk;
  }
  fmt::print(
      "{}: (mounted: the daemon ran the cycle) {} chunks, {} referenced; deleted {} "
      "unreferenced chunks ({} stored bytes); store now {} bytes\n",
      store, reply.value("chunks", 0ULL), reply.value("referenced_chunks", 0ULL),
      reply.value("deleted_chunks", 0ULL), reply.value("deleted_bytes", 0ULL), bytes_after);
  return kExitOk;
}

}  // namespace

int RunGc(const GcArgs& args) {
  const std::string& store = args.store;
  if (IsHubStoreDir(store)) return RunHubGc(args);
  std::error_code ec;
  if (!std::filesystem::exists(store + "/CURRENT", ec)) {
    fmt::print(stderr, "cascadefs gc: {}: not a cascadefs store (no CURRENT file)\n", store);
    return kExitFailed;
  }
  const std::string canonical = std::filesystem::canonical(store, ec).string();
  if (!ec) {
    const int fd = ConnectControl(canonical);
    if (fd >= 0) {
      if (args.dry_run) {
        close(fd);
        fmt::print(stderr, "cascadefs gc: {}: --dry-run needs the store unmounted\n", store);
        return kExitFailed;
      }
      return GcThroughDaemon(args, fd);
    }
  }
  const std::uint64_t bytes_before = DirectoryBytes(store);
  engine::Options options;
  options.create_if_missing = false;
  auto db = engine::DB::Open(options, store);
  if (!db.ok()) {
    if (db.status().IsBusy()) {
      fmt::print(stderr,
                 "cascadefs gc: {}: the store is in use (its LOCK is held) and no mount's "
                 "daemon answers: is cascadefs fsck running on it?\n",
                 store);
    } else {
      fmt::print(stderr, "cascadefs gc: {}: {}\n", store, db.status().message());
    }
    return kExitFailed;
  }
  fusefs::GcOptions gc;
  gc.dry_run = args.dry_run;
  const bool show_progress = !args.json && isatty(STDERR_FILENO) == 1;
  if (show_progress) {
    gc.progress = [](const fusefs::NamespaceCheckProgress& p) {
      if (p.total > 0) {
        fmt::print(stderr, "\r\033[Kgc {}: {} of {}", p.phase, p.done, p.total);
      } else {
        fmt::print(stderr, "\r\033[Kgc {}: {}", p.phase, p.done);
      }
      std::fflush(stderr);
    };
  }
  auto report = fusefs::CollectGarbage(db.value().get(), gc);
  if (show_progress) fmt::print(stderr, "\r\033[K");
  Status closed = db.value()->Close();
  if (!report.ok()) {
    fmt::print(stderr, "cascadefs gc: {}: {}\n", store, report.status().message());
    return kExitFailed;
  }
  if (!closed.ok()) {
    fmt::print(stderr, "cascadefs gc: {}: closing the store: {}\n", store, closed.message());
    return kExitFailed;
  }
  const fusefs::GcReport& r = report.value();
  const std::uint64_t bytes_after = DirectoryBytes(store);
  if (args.json) {
    const nlohmann::json out = {{"store", store},
                                {"dry_run", args.dry_run},
                                {"chunks", r.chunks},
                                {"referenced_chunks", r.referenced_chunks},
                                {"deleted_chunks", r.deleted_chunks},
                                {"deleted_bytes", r.deleted_bytes},
                                {"store_bytes_before", bytes_before},
                                {"store_bytes_after", bytes_after}};
    fmt::print("{}\n", out.dump());
    return kExitOk;
  }
  fmt::print(
      "{}: {} chunks, {} referenced; {} {} unreferenced chunks ({} stored bytes); store "
      "{} -> {} bytes\n",
      store, r.chunks, r.referenced_chunks, args.dry_run ? "would delete" : "deleted",
      r.deleted_chunks, r.deleted_bytes, bytes_before, bytes_after);
  return kExitOk;
}

}  // namespace cascadefs::tools
