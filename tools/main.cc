// main.cc: the `cascadefs` command line.
//
// Subcommands: mount, umount, status, fsck, inspect, gc, serve, keygen.
// This file parses the command line with CLI11 and turns every failure into the one-line
// error and exit code of STYLE.md ("cascadefs <command>: <path or key>: <cause>").
// It is the only place that catches an exception: CLI11 reports parse errors by throwing.
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "commands.h"

namespace {

constexpr const char* kVersion = "0.1.0";

int Run(int argc, char** argv) {
  CLI::App app{"cascadefs: a FUSE filesystem of content-addressed chunks in an LSM engine"};
  app.set_version_flag("--version", std::string("cascadefs ") + kVersion);
  app.require_subcommand(0, 1);

  cascadefs::tools::MountArgs mount_args;
  CLI::App* mount = app.add_subcommand("mount", "mount a store on a directory");
  mount->add_option("--store", mount_args.store,
                    "store directory, created on first use (default: "
                    "$XDG_DATA_HOME/cascadefs/default)");
  mount->add_flag("-f,--foreground", mount_args.foreground,
                  "stay in the foreground, logging to stderr, until unmounted");
  mount->add_flag("--read-only", mount_args.read_only, "mount read-only");
  mount->add_option("--log-level", mount_args.log_level, "trace, debug, info, warn or error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  mount
      ->add_option("--transport", mount_args.transport,
                   "how kernel requests arrive: io-uring (the kernel's FUSE-over-io_uring "
                   "queues), dev-fuse, or auto (io-uring when the kernel offers it)")
      ->check(CLI::IsMember({"auto", "io-uring", "dev-fuse"}));
  mount
      ->add_option("--uring-queue-depth", mount_args.uring_queue_depth,
                   "io_uring transport: ring entries per CPU queue, each with a 1 MiB buffer "
                   "(default 16)")
      ->check(CLI::Range(1, 256));
  mount
      ->add_option("--read-ahead-kb", mount_args.read_ahead_kb,
                   "the kernel's read-ahead for the mount in KiB, 0 to leave the kernel's 128 "
                   "(default 1024; needs root)")
      ->check(CLI::Range(0, 65536));
  mount
      ->add_option("--gc-interval", mount_args.gc_interval_sec,
                   "seconds between background gc cycles that delete chunks no file refers to; "
                   "0 for none (default 3600)")
      ->check(CLI::Range(0, 31'536'000));
  mount
      ->add_option("--cache-size", mount_args.cache_size_mb,
                   "MiB of the chunk cache file STORE/cache, which reads check before the store "
                   "and which stays warm across mounts; at most an eighth of the free space is "
                   "used; 0 for none (default 1024)")
      ->check(CLI::Range(0, 1 << 20));
  mount->add_option("--sync", mount_args.sync,
                    "keep this mount in sync through the hub at HOST:PORT (cascadefs serve)");
  mount->add_option("--key", mount_args.key, "the hub's pre-shared key file (cascadefs keygen)");
  mount->add_option("--namespace", mount_args.ns, "the hub's namespace to follow")
      ->capture_default_str();
  mount->add_flag("--receive-only", mount_args.receive_only,
                  "apply the hub's changes, never send local ones");
  mount->add_option("--chunk-trace", mount_args.chunk_trace,
                    "append every chunk a read asks for (HEX LENGTH per line) to this file, for "
                    "cache_bench --trace");
  mount->add_flag("--value-log", mount_args.value_log,
                  "keep chunks in the engine's value log: written once, not rewritten by "
                  "compactions (off until cascadefs gc reclaims deleted files' chunks)");
  mount->add_option("MOUNTPOINT", mount_args.mountpoint, "directory to mount on")->required();

  std::string umount_point;
  CLI::App* umount = app.add_subcommand(
      "umount", "flush, unmount and wait for the daemon to exit (clears a dead mount too)");
  umount->add_option("MOUNTPOINT", umount_point, "the mount point")->required();

  std::string status_point;
  bool status_json = false;
  CLI::App* status =
      app.add_subcommand("status", "a running mount's store, transport, memory and counters");
  status->add_option("MOUNTPOINT", status_point, "the mount point")->required();
  status->add_flag("--json", status_json, "one JSON object");

  cascadefs::tools::FsckArgs fsck_args;
  CLI::App* fsck = app.add_subcommand(
      "fsck",
      "check every file, chunk, recipe and inode of a store that is not mounted (exit 0 "
      "clean, 1 repaired, 4 errors left, 8 could not check)");
  fsck->add_option("STORE", fsck_args.store, "the store directory")->required();
  fsck->add_flag("--repair", fsck_args.repair,
                 "fix what can be fixed without guessing (link counts, entries, orphans to "
                 "/lost+found, unreferenced chunks)");
  fsck->add_flag("--json", fsck_args.json, "one JSON object with every finding");

  cascadefs::tools::GcArgs gc_args;
  CLI::App* gc = app.add_subcommand(
      "gc",
      "delete the chunks no file refers to and give their space back (a mount runs it in its "
      "daemon); on a hub store not being served, the chunks no retained journal entry reaches");
  gc->add_option("STORE", gc_args.store, "the store directory")->required();
  gc->add_flag("--dry-run", gc_args.dry_run, "count what would be deleted, delete nothing");
  gc->add_flag("--json", gc_args.json, "one JSON object");

  cascadefs::tools::ServeArgs serve_args;
  CLI::App* serve = app.add_subcommand(
      "serve", "run the sync hub in the foreground: journal and chunks for synced mounts");
  serve->add_option("--store", serve_args.store, "the hub's store directory (made on first use)")
      ->required();
  serve->add_option("--listen", serve_args.listen, "HOST:PORT to listen on")->required();
  serve->add_option("--key", serve_args.key, "the pre-shared key file (cascadefs keygen)")
      ->required();
  serve
      ->add_option("--retention-days", serve_args.retention_days,
                   "keep replaced file versions this long")
      ->capture_default_str();
  serve
      ->add_option("--cache-size", serve_args.cache_size_mb,
                   "MiB of the chunk cache serving retrievals (0: none)")
      ->capture_default_str();
  serve
      ->add_option("--gc-interval", serve_args.gc_interval_hours,
                   "hours between gc cycles deleting chunks no retained version names (0: none)")
      ->capture_default_str();

  std::string keygen_path;
  CLI::App* keygen = app.add_subcommand("keygen", "write a new pre-shared key for sync");
  keygen->add_option("FILE", keygen_path, "the key file to create (never overwritten)")->required();

  cascadefs::tools::InspectArgs inspect_args;
  CLI::App* inspect = app.add_subcommand(
      "inspect",
      "what a store holds: levels, sizes, value-log garbage, dedup, a file's chunks (safe "
      "beside a mount)");
  inspect->add_option("STORE", inspect_args.store, "the store directory")->required();
  inspect
      ->add_option("WHAT", inspect_args.what,
                   "summary (default), levels (SSTs per level), vlog (garbage per value log), "
                   "chunks (dedup and compression), file PATH (its chunk tree), chunk HASH "
                   "(the files that refer to it), cache (the chunk cache file) or journal (a hub "
                   "store's journal; TARGET or --namespace picks one namespace)")
      ->check(CLI::IsMember(
          {"summary", "levels", "vlog", "chunks", "file", "chunk", "cache", "journal"}));
  inspect->add_option("TARGET", inspect_args.target,
                      "for file: a path inside the store (/dir/name); for chunk: its hash");
  inspect->add_option("--namespace", inspect_args.target, "journal: only this namespace");
  inspect->add_flag("--json", inspect_args.json, "one JSON object");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "cascadefs: {}\n", e.what());
    return 2;
  }
  if (mount->parsed()) return cascadefs::tools::RunMount(mount_args);
  if (umount->parsed()) return cascadefs::tools::RunUmount(umount_point);
  if (status->parsed()) return cascadefs::tools::RunStatus(status_point, status_json);
  if (fsck->parsed()) return cascadefs::tools::RunFsck(fsck_args);
  if (inspect->parsed()) return cascadefs::tools::RunInspect(inspect_args);
  if (gc->parsed()) return cascadefs::tools::RunGc(gc_args);
  if (serve->parsed()) return cascadefs::tools::RunServe(serve_args);
  if (keygen->parsed()) return cascadefs::tools::RunKeygen(keygen_path);
  fmt::print(stderr, "{}", app.help());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // CLI11 and fmt report failures by throwing; nothing else in the binary does. Whatever
  // escapes becomes the one-line error, never a stack trace.
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cascadefs: %s\n", e.what());
    return 8;
  }
}
