// serve_command.cc: `cascadefs serve` (the sync hub, docs/sync.md "Hub") and `cascadefs keygen`,
// and the hub-store forms of `inspect STORE journal` and `fsck STORE`.
//
// serve runs in the foreground: SIGTERM and SIGINT are blocked in every thread and taken by
// sigwait here, so the hub stops in order (no more accepts, connections shut down, the writer
// drained, the engine closed) instead of dying inside a write.
#include <signal.h>
#include <unistd.h>

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
#include "fusefs/chunk_name.h"
#include "hub/hub.h"
#include "hub/hub_store.h"
#include "hub/journal_store.h"
#include "net/connection.h"

namespace cascadefs::tools {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 8;
constexpr int kExitUsage = 2;

std::string Hex(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

const char* KindName(net::EntryKind kind) {
  switch (kind) {
    case net::EntryKind::kFile:
      return "file";
    case net::EntryKind::kDirectory:
      return "dir";
    case net::EntryKind::kSymlink:
      return "symlink";
    case net::EntryKind::kDelete:
      return "delete";
    case net::EntryKind::kRename:
      return "rename";
  }
  return "?";
}

std::string TimeText(std::int64_t time_ns) {
  const time_t seconds = static_cast<time_t>(time_ns / 1000000000);
  struct tm tm_utc {};
  gmtime_r(&seconds, &tm_utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm_utc);
  return text;
}

}  // namespace

int RunHubGc(const GcArgs& args) {
  hub::HubOptions options;
  options.store_dir = args.store;
  options.cache_size_bytes = 0;  // gc reads every root once: a cache would not help
  options.log = [](std::string_view line) { fmt::print(stderr, "cascadefs gc: {}\n", line); };
  if (args.dry_run) {
    fmt::print(stderr, "cascadefs gc: {}: --dry-run is not offered for a hub store\n", args.store);
    return kExitFailed;
  }
  Result<std::unique_ptr<hub::Hub>> hub = hub::Hub::Open(options);
  if (!hub.ok()) {
    if (hub.status().IsBusy()) {
      fmt::print(stderr,
                 "cascadefs gc: {}: the hub store is in use: `cascadefs serve` runs its own gc "
                 "(--gc-interval)\n",
                 args.store);
    } else {
      fmt::print(stderr, "cascadefs gc: {}\n", hub.status().message());
    }
    return kExitFailed;
  }
  Result<hub::HubGcReport> gc = hub.value()->CollectGarbage();
  Status closed = hub.value()->Close();
  if (!gc.ok() || !closed.ok()) {
    fmt::print(stderr, "cascadefs gc: {}: {}\n", args.store,
               !gc.ok() ? gc.status().message() : closed.message());
    return kExitFailed;
  }
  if (args.json) {
    fmt::print("{}\n", nlohmann::json{{"store", args.store},
                                      {"hub", true},
                                      {"chunks", gc.value().chunks},
                                      {"referenced_chunks", gc.value().referenced_chunks},
                                      {"deleted_chunks", gc.value().deleted_chunks}}
                           .dump());
  } else {
    fmt::print("{}: hub store: {} chunks, {} referenced by the retained journal, {} deleted\n",
               args.store, gc.value().chunks, gc.value().referenced_chunks,
               gc.value().deleted_chunks);
  }
  return kExitOk;
}

int RunKeygen(const std::string& file) {
  Status written = net::WriteNewKeyFile(file);
  if (!written.ok()) {
    // net's message names the file already.
    fmt::print(stderr, "cascadefs keygen: {}\n", written.message());
    return kExitFailed;
  }
  return kExitOk;
}

int RunServe(const ServeArgs& args) {
  Result<net::HostPort> address = net::ParseHostPort(args.listen);
  if (!address.ok()) {
    fmt::print(stderr, "cascadefs serve: {}: {}\n", args.listen, address.status().message());
    return kExitUsage;
  }
  Result<net::PresharedKey> key = net::LoadKeyFile(args.key);
  if (!key.ok()) {
    fmt::print(stderr, "cascadefs serve: {}: {}\n", args.key, key.status().message());
    return kExitFailed;
  }
  // Blocked before any thread starts, so every thread inherits the mask and sigwait gets them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  hub::HubOptions options;
  options.store_dir = args.store;
  options.retention_sec = static_cast<std::uint64_t>(args.retention_days) * 24 * 3600;
  options.cache_size_bytes = static_cast<std::uint64_t>(args.cache_size_mb) << 20;
  options.log = [](std::string_view line) { fmt::print(stderr, "cascadefs serve: {}\n", line); };
  Result<std::unique_ptr<hub::Hub>> hub = hub::Hub::Open(options);
  if (!hub.ok()) {
    fmt::print(stderr, "cascadefs serve: {}\n", hub.status().message());
    return kExitFailed;
  }
  Status listening = hub.value()->Listen(address.value(), key.value());
  if (!listening.ok()) {
    fmt::print(stderr, "cascadefs serve: {}: {}\n", args.listen, listening.message());
    Status closed = hub.value()->Close();
    static_cast<void>(closed);
    return kExitFailed;
  }
  fmt::print(stderr, "cascadefs serve: {}: started (hub id {})\n", args.store,
             Hex(hub.value()->hub_id()));
  fmt::print("serving on {}:{}\n", address.value().host, hub.value()->port());
  std::fflush(stdout);
  // The main thread waits for a stop signal, and runs the hub's gc every gc_interval_hours
  // meanwhile (commits and uploads wait during a cycle; docs/sync.md, "Retention and gc").
  int signal_number = 0;
  for (;;) {
    if (args.gc_interval_hours == 0) {
      sigwait(&signals, &signal_number);
      break;
    }
    timespec interval{static_cast<time_t>(args.gc_interval_hours) * 3600, 0};
    signal_number = sigtimedwait(&signals, nullptr, &interval);
    if (signal_number > 0) break;
    Result<hub::HubGcReport> gc = hub.value()->CollectGarbage();
    if (gc.ok()) {
      fmt::print(stderr, "cascadefs serve: gc: {} chunks, {} referenced, {} deleted\n",
                 gc.value().chunks, gc.value().referenced_chunks, gc.value().deleted_chunks);
    } else {
      fmt::print(stderr, "cascadefs serve: gc: {}\n", gc.status().message());
    }
  }
  fmt::print(stderr, "cascadefs serve: {}: stopping ({})\n", args.store,
             signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  Status closed = hub.value()->Close();
  if (!closed.ok()) {
    fmt::print(stderr, "cascadefs serve: {}: {}\n", args.store, closed.message());
    return kExitFailed;
  }
  fmt::print(stderr, "cascadefs serve: {}: stopped\n", args.store);
  return kExitOk;
}

bool IsHubStoreDir(const std::string& store) {
  std::error_code ec;
  if (!std::filesystem::exists(store + "/CURRENT", ec)) return false;
  engine::Options options;
  options.read_only = true;
  auto db = engine::DB::Open(options, store);
  if (!db.ok()) return false;
  const bool hub = hub::IsHubStore(db.value().get());
  Status closed = db.value()->Close();
  static_cast<void>(closed);
  return hub;
}

int InspectHubJournal(const InspectArgs& args) {
  engine::Options options;
  options.read_only = true;  // beside a running hub too: nothing is written
  auto db = engine::DB::Open(options, args.store);
  if (!db.ok()) {
    fmt::print(stderr, "cascadefs inspect: {}: {}\n", args.store, db.status().message());
    return kExitFailed;
  }
  Result<std::vector<hub::ListedEntry>> entries = hub::ReadJournal(db.value().get(), args.target);
  Status closed = db.value()->Close();
  static_cast<void>(closed);
  if (!entries.ok()) {
    fmt::print(stderr, "cascadefs inspect: {}: {}\n", args.store, entries.status().message());
    return kExitFailed;
  }
  auto root_text = [](const net::JournalEntry& e) {
    return e.change.kind == net::EntryKind::kFile ? Hex(e.change.root) : e.change.target;
  };
  if (args.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const hub::ListedEntry& l : entries.value()) {
      const net::JournalEntry& e = l.entry;
      out.push_back({{"namespace", l.ns},
                     {"jid", e.jid},
                     {"time_ns", e.time_ns},
                     {"origin", e.origin},
                     {"kind", KindName(e.change.kind)},
                     {"path", e.change.path},
                     {"root", e.change.kind == net::EntryKind::kFile ? Hex(e.change.root) : ""},
                     {"target", e.change.target},
                     {"mode", e.change.mode},
                     {"mtime_ns", e.change.mtime_ns}});
    }
    fmt::print("{}\n", nlohmann::json{{"store", args.store}, {"journal", out}}.dump());
    return kExitOk;
  }
  fmt::print("{:<12} {:>8} {:<20} {:<12} {:<7} {:>6} {} -> {}\n", "namespace", "jid", "time",
             "origin", "kind", "mode", "path", "root/target");
  for (const hub::ListedEntry& l : entries.value()) {
    const net::JournalEntry& e = l.entry;
    fmt::print("{:<12} {:>8} {:<20} {:<12} {:<7} {:>6o} {} -> {}\n", l.ns, e.jid,
               TimeText(e.time_ns), e.origin, KindName(e.change.kind), e.change.mode, e.change.path,
               root_text(e));
  }
  return kExitOk;
}

int FsckHubStore(const FsckArgs& args) {
  const std::string& store = args.store;
  auto scheduler = io::Scheduler::Create(io::SchedulerOptions{});
  if (!scheduler.ok()) {
    fmt::print(stderr, "cascadefs fsck: {}: {}\n", store, scheduler.status().message());
    return kExitFailed;
  }
  std::unique_ptr<engine::Env> env = engine::NewSchedulerEnv(scheduler.value().get());
  auto lock = env->LockFile(store + "/LOCK");
  if (!lock.ok()) {
    fmt::print(stderr,
               "cascadefs fsck: {}: the hub store is in use (is cascadefs serve running "
               "on it?)\n",
               store);
    return kExitFailed;
  }
  Result<engine::CheckReport> engine_check =
      scheduler.value()->BlockOn(engine::CheckStoreFiles(env.get(), store, {}));
  if (!engine_check.ok()) {
    fmt::print(stderr, "cascadefs fsck: {}: {}\n", store, engine_check.status().message());
    return kExitFailed;
  }
  engine::Options options;
  options.read_only = true;
  options.scheduler = scheduler.value().get();
  options.env = env.get();
  auto db = engine::DB::Open(options, store);
  if (!db.ok()) {
    fmt::print(stderr, "cascadefs fsck: {}: {}\n", store, db.status().message());
    return kExitFailed;
  }
  Result<hub::HubCheckReport> checked = hub::CheckHubStore(db.value().get());
  Status closed = db.value()->Close();
  static_cast<void>(closed);
  if (!checked.ok()) {
    fmt::print(stderr, "cascadefs fsck: {}: {}\n", store, checked.status().message());
    return kExitFailed;
  }
  const hub::HubCheckReport& r = checked.value();
  const std::uint64_t errors = engine_check.value().errors() + r.findings.size();
  if (args.json) {
    nlohmann::json findings = nlohmann::json::array();
    for (const auto& f : engine_check.value().findings) {
      findings.push_back({{"file", f.file}, {"problem", f.problem}});
    }
    for (const auto& f : r.findings) {
      findings.push_back(
          {{"namespace", f.ns}, {"jid", f.jid}, {"path", f.path}, {"problem", f.problem}});
    }
    fmt::print("{}\n", nlohmann::json{{"store", store},
                                      {"hub", true},
                                      {"namespaces", r.namespaces},
                                      {"entries", r.entries},
                                      {"live_files", r.live_files},
                                      {"chunks_checked", r.chunks_checked},
                                      {"errors", errors},
                                      {"findings", findings}}
                           .dump());
    return errors == 0 ? kExitOk : 4;
  }
  for (const auto& f : engine_check.value().findings) {
    fmt::print("{}/{}: {}\n", store, f.file, f.problem);
  }
  for (const auto& f : r.findings) {
    std::string where = store + ": ";
    if (!f.ns.empty()) where += "namespace " + f.ns + ": ";
    if (f.jid != 0) where += "jid " + std::to_string(f.jid) + ": ";
    if (!f.path.empty()) where += f.path + ": ";
    fmt::print("{}error: {}\n", where, f.problem);
  }
  fmt::print(
      "{}: hub store: {} namespaces, {} journal entries, {} live files, {} chunks "
      "checked; {} errors\n",
      store, r.namespaces, r.entries, r.live_files, r.chunks_checked, errors);
  if (args.repair && errors > 0) {
    fmt::print("{}: --repair does not repair hub stores yet: nothing was changed\n", store);
  }
  return errors == 0 ? kExitOk : 4;
}

}  // namespace cascadefs::tools
