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

// Reads one line; false at EOF or error. `fd` has a receive timeout or none.
bool ReadLine(int fd, std::string* pending, std::string* line) {
  for (;;) {
    const std::size_t nl = pending->find('\n');
    if (nl != std::string::npos) {
      *line = pending->substr(0, nl);
      pending->erase(0, nl + 1);
      return true;
    }
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    pending->append(buf, static_cast<std::size_t>(n));
  }
}

bool SendRequest(int fd, const char* request) {
  const std::string line = std::string(request) + "\n";
  return send(fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size());
}

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
  if (!SendRequest(fd, "umount")) {
    close(fd);
    return ClearDeadMount(entry->mountpoint);
  }
  std::string pending;
  std::string line;
  int code = 1;
  bool unmounted = false;
  while (ReadLine(fd, &pending, &line)) {
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
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  std::string pending;
  std::string line;
  const bool ok = SendRequest(fd, "status") && ReadLine(fd, &pending, &line);
  close(fd);
  const nlohmann::json reply = ok ? nlohmann::json::parse(line, nullptr, false) : nlohmann::json();
  if (!ok || reply.is_discarded() || !reply.is_object()) {
    fmt::print(stderr, "cascadefs status: {}: no answer from the daemon\n", entry->mountpoint);
    return 1;
  }
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
