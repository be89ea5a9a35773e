// control_commands.cc: `cascadefs umount` and `cascadefs status`, clients of the daemon's
// control socket (control.h).
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "control.h"

namespace cascadefs::tools {
namespace {

// A mount whose daemon is gone (killed): detach it so the mount point is usable again.
int ClearDeadMount(const std::string& mountpoint) {
  if (geteuid() == 0) {
    if (umount2(mountpoint.c_str(), MNT_DETACH) != 0) {
      fmt::print(stderr, "cascadefs umount: {}: {}\n", mountpoint, std::strerror(errno));
      return 1;
    }
  } else {
    const pid_t child = fork();
    if (child == 0) {
      execlp("fusermount3", "fusermount3", "-u", "-z", mountpoint.c_str(),
             static_cast<char*>(nullptr));
      _exit(127);
    }
    int wstatus = 0;
    if (child < 0 || waitpid(child, &wstatus, 0) < 0 || !WIFEXITED(wstatus) ||
        WEXITSTATUS(wstatus) != 0) {
      fmt::print(stderr, "cascadefs umount: {}: fusermount3 -uz failed\n", mountpoint);
      return 1;
    }
  }
  fmt::print(stderr,
             "cascadefs umount: {}: its daemon was not running; the dead mount is cleared\n",
             mountpoint);
  return 0;
}

}  // namespace

int RunUmount(const std::string& mountpoint) {
  const std::optional<MountEntry> entry = FindMount(mountpoint);
  if (!entry) {
    fmt::print(stderr, "cascadefs umount: {}: not a cascadefs mount\n", mountpoint);
    return 1;
  }
  const int fd = ConnectControl(entry->store);
  if (fd < 0) return ClearDeadMount(entry->mountpoint);
  if (!SendControlRequest(fd, "umount")) {
    close(fd);
    return ClearDeadMount(entry->mountpoint);
  }
  std::string pending;
  std::string line;
  int code = 1;
  bool unmounted = false;
  while (ReadControlLine(fd, &pending, &line)) {
    const nlohmann::json reply = nlohmann::json::parse(line, nullptr, false);
    if (reply.is_discarded()) break;
    if (reply.contains("error")) {
      fmt::print(stderr, "cascadefs umount: {}\n", reply["error"].get<std::string>());
      code = 1;
      break;
    }
    if (reply.value("unmounted", false)) unmounted = true;
    if (reply.value("stopped", false)) {
      code = 0;
      break;
    }
  }
  close(fd);
  if (code != 0 && unmounted) {
    fmt::print(
        stderr,
        "cascadefs umount: {}: the daemon stopped without finishing (see {}/cascadefs.log)\n",
        entry->mountpoint, entry->store);
  }
  return code;
}

int RunStatus(const std::string& mountpoint, bool json) {
  const std::optional<MountEntry> entry = FindMount(mountpoint);
  if (!entry) {
    fmt::print(stderr, "cascadefs status: {}: not a cascadefs mount\n", mountpoint);
    return 1;
  }
  const int fd = ConnectControl(entry->store);
  if (fd < 0) {
    fmt::print(stderr,
               "cascadefs status: {}: the daemon is not running (a dead mount: clear it with "
               "`cascadefs umount {}`)\n",
               entry->mountpoint, entry->mountpoint);
    return 1;
  }
  const std::optional<nlohmann::json> answer = RequestStatus(fd);
  if (!answer) {
    fmt::print(stderr, "cascadefs status: {}: no answer from the daemon\n", entry->mountpoint);
    return 1;
  }
  const nlohmann::json& reply = *answer;
  if (json) {
    fmt::print("{}\n", reply.dump());
    return 0;
  }
  for (const auto& [key, value] : reply.items()) {
    fmt::print("{:<26} {}\n", key, value.is_string() ? value.get<std::string>() : value.dump());
  }
  return 0;
}

}  // namespace cascadefs::tools
