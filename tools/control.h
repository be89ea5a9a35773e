// control.h: the running daemon's control socket, and finding a mount's daemon.
//
// Each daemon listens on an abstract Unix socket (no file to clean up after a kill -9) named
// "cascadefs-<XXH3-64 of the store's canonical path, hex>". `cascadefs status` and
// `cascadefs umount` find the store of a mount point in /proc/self/mountinfo (the mount's
// source is the store path, its type fuse.cascadefs) and connect. The protocol is one request
// line ("status", "umount" or "gc") answered by JSON lines (docs/fusefs.md, "Control socket"):
//   status -> one object of MountStats fields plus "store", "mountpoint", "pid"
//   umount -> {"unmounted":true} once the kernel let go (or {"error":...}), then, when the
//             daemon finished flushing and closing the store, {"stopped":true} (or
//             {"error":...}) and the connection closes.
//   gc     -> one object once a gc cycle ran (GcReport fields) or {"error":...}.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace cascadefs::tools {

std::string ControlSocketName(const std::string& canonical_store);

struct MountEntry {
  std::string mountpoint;
  std::string store;  // the mount's source: the store directory
  std::string type;   // "fuse.cascadefs"
};

// The cascadefs mount whose mount point is `mountpoint` (made absolute, not resolved through
// symlinks, so a dead mount is found too), if any.
std::optional<MountEntry> FindMount(const std::string& mountpoint);

// Client side of the protocol: one request line; answers read a line at a time (`fd` has a
// receive timeout or none). False at EOF or error.
bool SendControlRequest(int fd, const char* request);
bool ReadControlLine(int fd, std::string* pending, std::string* line);

// Connects to the daemon's control socket; -1 with errno set when nobody listens.
int ConnectControl(const std::string& canonical_store);
// Asks the daemon on `fd` for its status and closes `fd`: the status object, or nullopt when
// no well-formed answer comes within 10 s.
std::optional<nlohmann::json> RequestStatus(int fd);
// The daemon's side: a listening socket; -1 with errno set (EADDRINUSE: another daemon).
int ListenControl(const std::string& canonical_store);

}  // namespace cascadefs::tools
