// control.cc
#include "control.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/core.h>
#include <xxhash.h>

namespace cascadefs::tools {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& field) {
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const std::string octal = field.substr(i + 1, 3);
      if (octal.size() == 3 && octal.find_first_not_of("01234567") == std::string::npos) {
        out.push_back(static_cast<char>(std::stoi(octal, nullptr, 8)));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

sockaddr_un ControlAddress(const std::string& canonical_store, socklen_t* length) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string name = ControlSocketName(canonical_store);
  // Abstract namespace: sun_path starts with a NUL; the length counts the name exactly.
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  *length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  return addr;
}

}  // namespace

std::string ControlSocketName(const std::string& canonical_store) {
  return fmt::format("cascadefs-{:016x}",
                     XXH3_64bits(canonical_store.data(), canonical_store.size()));
}

std::optional<MountEntry> FindMount(const std::string& mountpoint) {
  const std::string wanted = std::filesystem::absolute(mountpoint).lexically_normal().string();
  std::string wanted_trimmed = wanted;
  while (wanted_trimmed.size() > 1 && wanted_trimmed.back() == '/') wanted_trimmed.pop_back();
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::optional<MountEntry> found;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional...] - type source superoptions
    std::istringstream fields(line);
    std::string id, parent, dev, root, point, options;
    fields >> id >> parent >> dev >> root >> point >> options;
    std::string word;
    while (fields >> word && word != "-") {
    }
    std::string type, source;
    fields >> type >> source;
    if (type != "fuse.cascadefs") continue;
    if (Unescape(point) != wanted_trimmed) continue;
    found = MountEntry{Unescape(point), Unescape(source), type};  // the last one is on top
  }
  return found;
}

int ConnectControl(const std::string& canonical_store) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  socklen_t length = 0;
  const sockaddr_un addr = ControlAddress(canonical_store, &length);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), length) != 0) {
    const int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

int ListenControl(const std::string& canonical_store) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  socklen_t length = 0;
  const sockaddr_un addr = ControlAddress(canonical_store, &length);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), length) != 0 || listen(fd, 16) != 0) {
    const int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

bool SendControlRequest(int fd, const char* request) {
  const std::string line = std::string(request) + "\n";
  return send(fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size());
}

bool ReadControlLine(int fd, std::string* pending, std::string* line) {
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

std::optional<nlohmann::json> RequestStatus(int fd) {
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  std::string pending;
  std::string line;
  const bool ok = SendControlRequest(fd, "status") && ReadControlLine(fd, &pending, &line);
  close(fd);
  if (!ok) return std::nullopt;
  nlohmann::json reply = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (reply.is_discarded() || !reply.is_object()) return std::nullopt;
  return reply;
}

}  // namespace cascadefs::tools
