// commands.h: the subcommands of the `cascadefs` binary. Each returns the process exit code
// and prints its own one-line errors ("cascadefs <command>: <path or key>: <cause>").
#pragma once

#include <cstdint>
#include <string>

namespace cascadefs::tools {

struct MountArgs {
  std::string store;  // empty: $XDG_DATA_HOME/cascadefs/default
  std::string mountpoint;
  bool foreground = false;
  bool read_only = false;
  std::string log_level = "info";
  std::string transport = "auto";  // auto, io-uring or dev-fuse
  std::uint32_t uring_queue_depth = 16;
  std::uint32_t read_ahead_kb = 1024;
  bool value_log = false;
  std::uint32_t gc_interval_sec = 3600;
  std::uint32_t cache_size_mb = 1024;  // the chunk cache file; 0: none
  std::string chunk_trace;             // file to append the chunk read stream to; empty: none
  std::string sync;                    // HOST:PORT of a hub; empty: not synced
  std::string key;                     // the hub's pre-shared key file
  std::string ns = "default";          // the hub's namespace
  bool receive_only = false;
};

struct FsckArgs {
  std::string store;
  bool repair = false;
  bool json = false;
};
struct GcArgs {
  std::string store;
  bool dry_run = false;
  bool json = false;
};

struct InspectArgs {
  std::string store;
  std::string what = "summary";  // summary, levels, vlog, chunks, file or chunk
  std::string target;            // file: a path inside the store; chunk: its hash in hex
  bool json = false;
};

struct ServeArgs {
  std::string store;
  std::string listen;  // HOST:PORT
  std::string key;     // the key file (cascadefs keygen)
  std::uint32_t retention_days = 30;
  std::uint32_t cache_size_mb = 1024;    // the hub's chunk cache file; 0: none
  std::uint32_t gc_interval_hours = 24;  // the hub's gc cycles; 0: none
};

int RunMount(const MountArgs& args);
// `cascadefs serve`: the sync hub, in the foreground until SIGTERM/SIGINT: 0 after a clean
// stop, 2 for a bad address, 8 when it could not start or stop cleanly.
int RunServe(const ServeArgs& args);
// `cascadefs keygen FILE`: 0, or 8 (the file exists, or cannot be written).
int RunKeygen(const std::string& file);
// Hub stores (docs/formats/journal.md): detected by their superblock key.
bool IsHubStoreDir(const std::string& store);
int InspectHubJournal(const InspectArgs& args);
int FsckHubStore(const FsckArgs& args);
// `cascadefs gc HUBSTORE` on a hub store not being served: deletes the chunks no retained
// journal entry reaches.
int RunHubGc(const GcArgs& args);
// `cascadefs inspect STORE [summary|levels|vlog|chunks|file PATH|chunk HASH]`: 0, or 8 when
// the store cannot be read.
int RunInspect(const InspectArgs& args);
// `cascadefs fsck [--repair] STORE`: 0 clean, 1 errors repaired, 4 errors left, 8 the check
// could not run (e2fsck's codes).
int RunFsck(const FsckArgs& args);
// `cascadefs gc STORE`: 0, or 8 when the store could not be collected.
int RunGc(const GcArgs& args);
int RunUmount(const std::string& mountpoint);
int RunStatus(const std::string& mountpoint, bool json);

// $XDG_DATA_HOME/cascadefs/default, or ~/.local/share/cascadefs/default.
std::string DefaultStore();

}  // namespace cascadefs::tools
