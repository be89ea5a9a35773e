// sync_bench.cc: cascadefs's sync next to rsync and syncthing: the bytes each puts on the wire
// and how long the other side waits, for the same changes.
//
// Rows (one per system and workload) {"system", "workload", "wire_bytes", "seconds", extras}:
//  - wire_bytes: every byte of TCP payload on every connection of the system, both directions,
//    TLS included (TCP/IP headers are not counted), from the change until the other side has
//    it. Counted by a relay inside this program that the system's peers must talk through:
//      * cascadefs: both mounts' --sync point at a CountingRelay (127.0.0.1:ephemeral) that
//        forwards each connection to the hub; the counters are read before the change and at
//        the moment the other side has it (their difference is the row).
//      * syncthing: each instance's only address for the other is a CountingRelay forwarding to
//        the other's listen port; discovery, relays, NAT, usage and crash reports and upgrades
//        are off, so there is no other route and no other connection.
//      * rsync: `rsync -a -z --no-whole-file -e "<this binary> --relay COUNTFILE" SRC/
//        localhost:DST/`. rsync runs the "remote shell" as `<this> --relay COUNTFILE localhost
//        rsync --server ...`; relay mode drops the host, runs the rest with pipes, copies
//        stdin->child and child->stdout counting both ways, and appends the totals to
//        COUNTFILE at exit: a counted pipe, no ssh (so no ssh overhead either).
//  - seconds: from the writer's close (t0) to the new content being readable on the other side
//    (t1). The other side is polled every kPollMs: the changed region and the tail of the text
//    file, or, for trees, every entry's type and size then a few sentinel files' content. The
//    clock stops when that passes; a full comparison of every byte then validates it, and if
//    it fails polling resumes (so t1 only ever moves later). rsync: t1 is the end of the rsync
//    command (started right after t0), and the other side must then already compare equal.
//  - extras: bytes each way, connections, the bytes that still crossed in the kTrailingMs
//    after t1 (trailing_bytes: not in wire_bytes, by the definition, but shown), the change's
//    own size.
//
// Workloads (--workloads, default all). Each group runs on a fresh setup (fresh hub, stores
// and mounts; fresh directories; fresh syncthing homes), so nothing is deduplicated against
// an earlier group:
//  - `lineedit`: a --text-mib MiB text file, already synced (written to A, waited for on B,
//    not measured); the first line starting past the middle is rewritten with the case of its
//    letters swapped (same length): open, pwrite, close.
//  - `lineinsert`: then (same setup) a 71-byte line is inserted at that line's start: the
//    tail is read and written back shifted by one pwrite of line+tail, then close.
//  - `initial`: the text file and a copy of /usr/include (dirs, files, symlinks, modes)
//    written into A; synced fresh.
//  - `smallfiles`: --small-files files of 1-8 KiB of text in directories of 100.
// The text is words from a seeded vocabulary with a skewed (Zipf-like) choice, lines of
// 20-100 characters: it compresses like prose or code, so zlib/LZ4/zstd all get a fair chance.
// Same seed, same bytes, for every system.
//
// Before each measured change the setup is settled: the other side has the prior state,
// syncthing reports both folders idle and B complete, and the counters have not moved for
// kQuietMs (at most kQuietWaitMaxS; if they never stop, a line on stderr says so).
//
// Cleanup: every child (hub, syncthing, rsync) and mount lives in an RAII object; on SIGINT,
// SIGTERM and SIGHUP a handler that makes only async-signal-safe calls kills the children in
// a fixed table and unmounts the mount points in another (umount2 MNT_DETACH, else fork+execve
// of fusermount3 -uz), then re-raises.
//
// Output: with --json, JSON rows on stdout, one object per line as each finishes; progress
// and the summary table on stderr. A system that fails prints one line `sync_bench: <system>:
// <workload>: <cause>` and an error row; the other systems still run; the exit status is 1.
//
// Thread safety: the main thread drives everything; each relay has an accept thread and two
// copy threads per connection that share only atomics, and its connection list behind a mutex.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "engine/assert.h"
#include "engine/result.h"
#include "engine/status.h"

extern char** environ;

namespace cascadefs::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Row = nlohmann::ordered_json;
using Json = nlohmann::json;

constexpr int kPollMs = 20;                // how often the other side is checked
constexpr int kConvergeTimeoutS = 600;     // a change (or prior state) must arrive within this
constexpr int kQuietMs = 1000;             // settled: no byte on the wire for this long
constexpr int kQuietWaitMaxS = 15;         // ... waited for at most this long
constexpr int kTrailingMs = 1000;          // bytes after t1 are watched this long (not counted)
constexpr int kWatcherDelayMs = 2000;      // syncthing's fsWatcherDelayS=1, and a margin
constexpr int kStartTimeoutS = 60;         // hub, mounts, syncthing must be up within this
constexpr int kStopTimeoutS = 30;          // SIGTERM, then SIGKILL after this
constexpr int kCommandTimeoutS = 1200;     // keygen, mount, umount, rsync (an initial sync)
constexpr std::size_t kIoBytes = 1 << 20;  // read/write/compare unit
constexpr std::size_t kRelayBufferBytes = 64 << 10;
constexpr std::size_t kRelayConnectionsMax = 64;  // more are refused (closed at once)
constexpr std::size_t kChildSlots = 16;           // the signal handler's table of live children
constexpr std::size_t kMountSlots = 4;            // ... and of live mount points
constexpr std::uint32_t kTextMibMax = 16384;
constexpr std::uint32_t kSmallFilesMax = 1000000;
constexpr std::uint32_t kSmallFilesPerDir = 100;
constexpr std::size_t kSmallFileBytesMin = 1024;
constexpr std::size_t kSmallFileBytesMax = 8192;
constexpr std::size_t kVocabularyWords = 8192;
constexpr std::size_t kSentinelFiles = 3;  // files whose content the poll compares
constexpr std::size_t kTailCheckBytes = 64 << 10;
constexpr std::uint64_t kTextSeed = 0x5EEDC0DE2024ULL;
constexpr std::string_view kTextName = "text.txt";
constexpr std::string_view kInsertedLine =
    "an inserted line: the quick brown fox jumps over the lazy dog 01234567\n";
static_assert(kRelayBufferBytes <= kIoBytes);

double Seconds(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double>(end - start).count();
}
double Round(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}
void Progress(std::string_view what) { fmt::print(stderr, "sync_bench: {}\n", what); }
std::string LastLine(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last.empty() ? "no output" : last;
}

// ---- Signal-safe tables of children and mounts ---------------------------------------------

std::atomic<pid_t> g_children[kChildSlots];  // 0 = free; written by the main thread only
char g_mount_points[kMountSlots][PATH_MAX];
std::atomic<bool> g_mount_live[kMountSlots];
char g_fusermount_path[PATH_MAX];  // resolved at start, so the handler need not search PATH

void OnFatalSignal(int sig) {
  for (auto& child : g_children) {
    const pid_t pid = child.load();
    if (pid > 0) kill(pid, SIGTERM);
  }
  for (std::size_t i = 0; i < kMountSlots; ++i) {
    if (!g_mount_live[i].load()) continue;
    if (umount2(g_mount_points[i], MNT_DETACH) == 0) continue;
    if (g_fusermount_path[0] == '\0') continue;
    const pid_t pid = fork();
    if (pid == 0) {
      char* const argv[] = {const_cast<char*>("fusermount3"), const_cast<char*>("-uz"),
                            g_mount_points[i], nullptr};
      execve(g_fusermount_path, argv, environ);
      _exit(127);
    }
    if (pid > 0) waitpid(pid, nullptr, 0);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

std::size_t RegisterChild(pid_t pid) {
  for (std::size_t i = 0; i < kChildSlots; ++i) {
    pid_t expected = 0;
    if (g_children[i].compare_exchange_strong(expected, pid)) return i;
  }
  CFS_ASSERT(false);  // more live children than slots: at most a hub or two syncthings + one
  return 0;
}
void UnregisterChild(std::size_t slot) { g_children[slot].store(0); }

std::size_t RegisterMount(const std::string& mount_point) {
  for (std::size_t i = 0; i < kMountSlots; ++i) {
    if (g_mount_live[i].load()) continue;
    std::snprintf(g_mount_points[i], PATH_MAX, "%s", mount_point.c_str());
    g_mount_live[i].store(true);
    return i;
  }
  CFS_ASSERT(false);  // two mounts per setup, one setup at a time
  return 0;
}

std::string FindInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = dir + "/" + name;
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string ExeDir() {
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

// ---- Children ------------------------------------------------------------------------------

// A process started with stdin from /dev/null and stdout+stderr appended to a log; SIGTERM
// (then SIGKILL after kStopTimeoutS) in Stop() and in the destructor.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { (void)Stop(); }

  Status Start(const std::vector<std::string>& args, const std::string& log_path) {
    CFS_ASSERT(pid_ == 0);
    std::vector<char*> argv;
    for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = 0;
    const int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return Status::FromErrno(rc, args[0]);
    pid_ = pid;
    slot_ = RegisterChild(pid);
    name_ = args[0];
    log_path_ = log_path;
    return Status::OK();
  }

  // True while the process runs; once it has exited, reaps it and records its status.
  bool Running() {
    if (pid_ == 0) return false;
    if (waitpid(pid_, &status_, WNOHANG) == 0) return true;
    Forget();
    return false;
  }

  // Waits for exit, at most timeout_s (then SIGKILL). OK on exit status 0.
  Status Wait(int timeout_s) {
    const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    while (Running()) {
      if (Clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status_, 0);
        Forget();
        return Status::IOError(fmt::format("{}: killed after {} s", name_, timeout_s));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return ExitStatus();
  }

  Status Stop() {
    if (pid_ == 0) return Status::OK();
    kill(pid_, SIGTERM);
    (void)Wait(kStopTimeoutS);
    return Status::OK();
  }

  // The exited process's status as a Status naming it and its log's last line.
  Status ExitStatus() const {
    if (WIFEXITED(status_) && WEXITSTATUS(status_) == 0) return Status::OK();
    return Status::IOError(fmt::format(
        "{} failed ({} {}): {}", name_, WIFEXITED(status_) ? "exit status" : "signal",
        WIFEXITED(status_) ? WEXITSTATUS(status_) : WTERMSIG(status_), LastLine(log_path_)));
  }

 private:
  void Forget() {
    UnregisterChild(slot_);
    pid_ = 0;
  }
  pid_t pid_ = 0;
  int status_ = 0;
  std::size_t slot_ = 0;
  std::string name_;
  std::string log_path_;
};

// Runs argv to completion (at most timeout_s), output appended to log_path.
Status RunCommand(const std::vector<std::string>& args, const std::string& log_path,
                  int timeout_s = kCommandTimeoutS) {
  Child child;
  CFS_RETURN_IF_ERROR(child.Start(args, log_path));
  return child.Wait(timeout_s);
}

// ---- Sockets -------------------------------------------------------------------------------

sockaddr_in Loopback(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// A listening socket on 127.0.0.1:<ephemeral>; *port gets the port.
Result<int> ListenLoopback(std::uint16_t* port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno(errno, "socket");
  sockaddr_in addr = Loopback(0);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    close(fd);
    return Status::FromErrno(err, "listen on 127.0.0.1");
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// A port that was free a moment ago (for a child that must bind it itself).
Result<std::uint16_t> FreePort() {
  std::uint16_t port = 0;
  Result<int> fd = ListenLoopback(&port);
  if (!fd.ok()) return fd.status();
  close(*fd);
  return port;
}

Result<int> ConnectLoopback(std::uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno(errno, "socket");
  const sockaddr_in addr = Loopback(port);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    close(fd);
    return Status::FromErrno(err, fmt::format("connect to 127.0.0.1:{}", port));
  }
  return fd;
}

bool WriteAll(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// ---- The counting relay --------------------------------------------------------------------

struct WireCount {
  std::uint64_t to_target_bytes = 0;    // client -> server (mount -> hub; dialer -> listener)
  std::uint64_t from_target_bytes = 0;  // server -> client
  std::uint32_t connections = 0;        // accepted so far
  std::uint64_t total() const { return to_target_bytes + from_target_bytes; }
};
WireCount operator+(const WireCount& a, const WireCount& b) {
  return {a.to_target_bytes + b.to_target_bytes, a.from_target_bytes + b.from_target_bytes,
          a.connections + b.connections};
}
WireCount operator-(const WireCount& a, const WireCount& b) {
  return {a.to_target_bytes - b.to_target_bytes, a.from_target_bytes - b.from_target_bytes,
          a.connections - b.connections};
}

// Listens on 127.0.0.1:<ephemeral>; each accepted connection is forwarded to 127.0.0.1:target
// by two threads (one per direction, blocking I/O, so neither direction can stall the other),
// which count every payload byte they forward. A half-close is passed on (shutdown SHUT_WR).
// Thread safety: counters are atomics; connections_ is guarded by mutex_.
class CountingRelay {
 public:
  CountingRelay() = default;
  CountingRelay(const CountingRelay&) = delete;
  CountingRelay& operator=(const CountingRelay&) = delete;
  ~CountingRelay() { Stop(); }

  Status Start(std::uint16_t target_port) {
    CFS_ASSERT(listen_fd_ < 0);
    target_port_ = target_port;
    Result<int> fd = ListenLoopback(&port_);
    if (!fd.ok()) return fd.status();
    listen_fd_ = *fd;
    stop_fd_ = eventfd(0, EFD_CLOEXEC);
    if (stop_fd_ < 0) return Status::FromErrno(errno, "eventfd");
    acceptor_ = std::thread([this] { AcceptLoop(); });
    return Status::OK();
  }

  void Stop() {
    if (listen_fd_ < 0) return;
    const std::uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
    if (acceptor_.joinable()) acceptor_.join();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& connection : connections_) {
        shutdown(connection->client_fd, SHUT_RDWR);
        shutdown(connection->target_fd, SHUT_RDWR);
      }
    }
    for (auto& connection : connections_) {
      connection->up.join();
      connection->down.join();
      close(connection->client_fd);
      close(connection->target_fd);
    }
    connections_.clear();
    close(listen_fd_);
    close(stop_fd_);
    listen_fd_ = -1;
    stop_fd_ = -1;
  }

  std::uint16_t port() const { return port_; }
  WireCount Count() const { return {to_target_.load(), from_target_.load(), accepted_.load()}; }

 private:
  struct Connection {
    int client_fd = -1;
    int target_fd = -1;
    std::thread up;    // client -> target
    std::thread down;  // target -> client
  };

  void AcceptLoop() {
    while (true) {  // the accept event loop: ends when stop_fd_ is written
      pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents != 0) return;
      const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      Result<int> target = ConnectLoopback(target_port_);
      std::lock_guard<std::mutex> lock(mutex_);
      if (!target.ok() || connections_.size() >= kRelayConnectionsMax) {
        close(client);  // the peer retries; a refused connection carried no bytes
        if (target.ok()) close(*target);
        continue;
      }
      const int one = 1;
      setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      setsockopt(*target, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      accepted_.fetch_add(1);
      auto connection = std::make_unique<Connection>();
      connection->client_fd = client;
      connection->target_fd = *target;
      connection->up = std::thread([this, client, fd = *target] { Copy(client, fd, &to_target_); });
      connection->down =
          std::thread([this, client, fd = *target] { Copy(fd, client, &from_target_); });
      connections_.push_back(std::move(connection));
    }
  }

  static void Copy(int from_fd, int to_fd, std::atomic<std::uint64_t>* counter) {
    std::vector<char> buffer(kRelayBufferBytes);
    while (true) {  // ends at EOF or error of either side
      const ssize_t n = read(from_fd, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (!WriteAll(to_fd, buffer.data(), static_cast<std::size_t>(n))) break;
      counter->fetch_add(static_cast<std::uint64_t>(n));
    }
    shutdown(to_fd, SHUT_WR);
  }

  std::uint16_t port_ = 0;
  std::uint16_t target_port_ = 0;
  int listen_fd_ = -1;
  int stop_fd_ = -1;
  std::thread acceptor_;
  std::atomic<std::uint64_t> to_target_{0};
  std::atomic<std::uint64_t> from_target_{0};
  std::atomic<std::uint32_t> accepted_{0};
  std::mutex mutex_;
  std::vector<std::unique_ptr<Connection>> connections_;  // GUARDED_BY(mutex_) while running
};

// ---- rsync's counted pipe (relay mode) -----------------------------------------------------

// `sync_bench --relay COUNTFILE HOST CMD...`: runs CMD (HOST is dropped), copies stdin to its
// stdin and its stdout to stdout, and appends "<stdin bytes> <stdout bytes>\n" to COUNTFILE
// when CMD's output ends and it exits. Returns CMD's exit status.
int RelayMain(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "sync_bench --relay: usage: --relay COUNTFILE HOST COMMAND...\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int to_child[2], from_child[2];
  if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "sync_bench --relay: pipe: %s\n", std::strerror(errno));
    return 1;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, to_child[0], 0);
  posix_spawn_file_actions_adddup2(&actions, from_child[1], 1);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[4], &actions, nullptr, argv + 4, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    std::fprintf(stderr, "sync_bench --relay: %s: %s\n", argv[4], std::strerror(rc));
    return 1;
  }
  close(to_child[0]);
  close(from_child[1]);
  std::atomic<std::uint64_t> sent{0}, received{0};
  const int child_in = to_child[1];
  // stdin -> child. Detached: the rsync client may keep its end open until we exit.
  std::thread([&sent, child_in] {
    std::vector<char> buffer(kRelayBufferBytes);
    while (true) {
      const ssize_t n = read(0, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (!WriteAll(child_in, buffer.data(), static_cast<std::size_t>(n))) break;
      sent.fetch_add(static_cast<std::uint64_t>(n));
    }
    close(child_in);
  }).detach();
  std::vector<char> buffer(kRelayBufferBytes);
  while (true) {  // child -> stdout, until the child's output ends
    const ssize_t n = read(from_child[0], buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (!WriteAll(1, buffer.data(), static_cast<std::size_t>(n))) break;
    received.fetch_add(static_cast<std::uint64_t>(n));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::FILE* out = std::fopen(argv[2], "a");
  if (out != nullptr) {
    std::fprintf(out, "%llu %llu\n", static_cast<unsigned long long>(sent.load()),
                 static_cast<unsigned long long>(received.load()));
    std::fclose(out);
  }
  std::fflush(stdout);
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

// ---- Minimal HTTP for syncthing's REST API -------------------------------------------------

// GET http://127.0.0.1:port/path with the API key; the body parsed as JSON.
Result<Json> RestGet(std::uint16_t port, const std::string& api_key, const std::string& path) {
  Result<int> fd = ConnectLoopback(port);
  if (!fd.ok()) return fd.status();
  timeval timeout{10, 0};
  setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  const std::string request = fmt::format(
      "GET {} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nX-API-Key: {}\r\nConnection: close\r\n\r\n", path,
      port, api_key);
  std::string response;
  if (WriteAll(*fd, request.data(), request.size())) {
    char buffer[16384];
    while (true) {
      const ssize_t n = read(*fd, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      response.append(buffer, static_cast<std::size_t>(n));
    }
  }
  close(*fd);
  const std::size_t body = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || body == std::string::npos) {
    return Status::IOError(fmt::format("GET {}: no HTTP response", path));
  }
  const std::string status_line = response.substr(0, response.find("\r\n"));
  if (status_line.find(" 200") == std::string::npos) {
    return Status::IOError(fmt::format("GET {}: {}", path, status_line));
  }
  Json json = Json::parse(response.substr(body + 4), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Status::Corruption(fmt::format("GET {}: not JSON", path));
  return json;
}

// ---- Generated content ---------------------------------------------------------------------

// English syllables: the vocabulary's words are made of them, so words share substrings and
// letters follow letters as in English (random letters would leave LZ-style compressors
// little to find and make LZ4, syncthing's, look worse than on real text).
constexpr std::string_view kSyllables[] = {
    "the", "ing",  "er",   "an",   "re",  "on",   "at", "en",  "ed",   "es",  "or",  "ti",  "is",
    "it",  "al",   "ar",   "st",   "to",  "nt",   "ng", "se",  "ha",   "ou",  "as",  "le",  "ve",
    "co",  "me",   "de",   "hi",   "ri",  "ro",   "ic", "ne",  "ea",   "ra",  "ce",  "li",  "ch",
    "ll",  "be",   "ma",   "si",   "om",  "ur",   "ca", "el",  "ta",   "la",  "ns",  "di",  "fo",
    "ho",  "pe",   "ec",   "pr",   "no",  "ct",   "us", "ac",  "ot",   "il",  "tr",  "ly",  "nc",
    "et",  "ut",   "ss",   "so",   "rs",  "un",   "lo", "wa",  "ge",   "ie",  "wh",  "ee",  "wi",
    "em",  "ad",   "ol",   "rt",   "po",  "we",   "na", "ul",  "ni",   "ts",  "mo",  "ow",  "pa",
    "im",  "mi",   "ai",   "sh",   "ir",  "su",   "id", "os",  "iv",   "ia",  "am",  "fi",  "ci",
    "vi",  "pl",   "ig",   "tu",   "ev",  "ld",   "ry", "mp",  "fe",   "bl",  "ab",  "gh",  "ty",
    "op",  "wo",   "sa",   "ay",   "ex",  "ke",   "fr", "oo",  "av",   "ag",  "if",  "ap",  "gr",
    "od",  "bo",   "sp",   "rd",   "do",  "uc",   "bu", "ei",  "ov",   "by",  "rm",  "ep",  "tt",
    "oc",  "tion", "ment", "able", "ous", "ness", "ly", "ful", "less", "pro", "con", "com", "sta"};
constexpr std::size_t kSyllableCount = sizeof(kSyllables) / sizeof(kSyllables[0]);

// `bytes` bytes of lines (20-100 characters of words and a newline), deterministic in `seed`.
// Words come from a seeded vocabulary of kVocabularyWords, each 1-3 syllables; word rank r is
// drawn with probability about 1/r (Zipf, as in English: the top 10 words are a quarter of the
// text). Measured on 16 MiB: gzip -6 2.60x, lz4 -1 1.57x, zstd -3 2.64x; English text here
// (/usr/share/common-licenses and docs, 0.8 MB) gets 3.33x, 2.07x, 3.62x: a little harder to
// compress, with the compressors in the same order and about the same proportions.
std::string GenerateText(std::uint64_t bytes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> vocabulary(kVocabularyWords);
  for (std::string& word : vocabulary) {
    const std::size_t syllables = 1 + rng() % 3;
    for (std::size_t i = 0; i < syllables; ++i) word.append(kSyllables[rng() % kSyllableCount]);
  }
  const double log_words = std::log(static_cast<double>(kVocabularyWords) + 1.0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::string text;
  text.reserve(bytes + 128);
  while (text.size() < bytes) {
    const std::size_t target = 20 + rng() % 81;
    const std::size_t line_start = text.size();
    bool first = true;
    while (text.size() - line_start < target) {
      const double u = unit(rng);
      const auto index = static_cast<std::size_t>(std::exp(u * log_words)) - 1;
      const std::string& word = vocabulary[std::min(index, kVocabularyWords - 1)];
      if (!first) text.append(rng() % 12 == 0 ? ", " : " ");
      if (first) {
        text.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(word[0]))));
        text.append(word, 1);
      } else {
        text.append(word);
      }
      first = false;
    }
    text.append(".\n");
  }
  text.resize(bytes);
  if (!text.empty()) text.back() = '\n';
  return text;
}

// The offset of the first line that starts at or past the middle of `text`.
std::size_t MiddleLineStart(const std::string& text) {
  const std::size_t newline = text.find('\n', text.size() / 2);
  CFS_ASSERT(newline != std::string::npos);
  return newline + 1 < text.size() ? newline + 1 : 0;
}

// ---- Files ---------------------------------------------------------------------------------

Status WriteFile(const std::string& path, std::string_view data, mode_t mode = 0644) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Status::FromErrno(errno, path + ": create");
  for (std::size_t offset = 0; offset < data.size(); offset += kIoBytes) {
    const std::size_t n = std::min(kIoBytes, data.size() - offset);
    if (!WriteAll(fd, data.data() + offset, n)) {
      const int err = errno;
      close(fd);
      return Status::FromErrno(err, fmt::format("{}: write at {}", path, offset));
    }
  }
  if (close(fd) != 0) return Status::FromErrno(errno, path + ": close");
  return Status::OK();
}

// pread of exactly `size` bytes at `offset`; fails on a short read.
Status ReadAt(int fd, std::uint64_t offset, std::size_t size, std::string* out,
              const std::string& path) {
  out->resize(size);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = pread(fd, out->data() + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, fmt::format("{}: pread at {}", path, offset + done));
    if (n == 0) return Status::IOError(fmt::format("{}: short read at {}", path, offset + done));
    done += static_cast<std::size_t>(n);
  }
  return Status::OK();
}

// OK when the file at `path` holds exactly `expected` in [offset, offset + size) and its size is
// expected.size(); `whole` compares every byte, else only that range.
Status CompareWithText(const std::string& path, const std::string& expected, std::size_t offset,
                       std::size_t size) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, path);
  struct stat st {};
  Status status;
  if (fstat(fd, &st) != 0) {
    status = Status::FromErrno(errno, path + ": fstat");
  } else if (static_cast<std::uint64_t>(st.st_size) != expected.size()) {
    status = Status::NotFound(
        fmt::format("{}: {} bytes, expected {}", path, st.st_size, expected.size()));
  }
  std::string got;
  for (std::size_t at = offset; status.ok() && at < offset + size; at += kIoBytes) {
    const std::size_t n = std::min(kIoBytes, offset + size - at);
    status = ReadAt(fd, at, n, &got, path);
    if (status.ok() && std::memcmp(got.data(), expected.data() + at, n) != 0) {
      status = Status::NotFound(fmt::format("{}: differs in [{}, {})", path, at, at + n));
    }
  }
  close(fd);
  return status;
}

// OK when two regular files have the same bytes.
Status CompareFiles(const std::string& expected_path, const std::string& path) {
  const int a = open(expected_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (a < 0) return Status::FromErrno(errno, expected_path);
  const int b = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (b < 0) {
    const int err = errno;
    close(a);
    return Status::FromErrno(err, path);
  }
  std::vector<char> buf_a(kIoBytes), buf_b(kIoBytes);
  Status status;
  std::uint64_t offset = 0;
  while (status.ok()) {
    const ssize_t na = read(a, buf_a.data(), kIoBytes);
    ssize_t nb = 0;
    while (na > 0 && nb < na) {  // fill b to na bytes (FUSE may return short reads)
      const ssize_t n = read(b, buf_b.data() + nb, static_cast<std::size_t>(na - nb));
      if (n <= 0) break;
      nb += n;
    }
    if (na < 0) {
      status = Status::FromErrno(errno, expected_path + ": read");
    } else if (na == 0) {
      if (read(b, buf_b.data(), 1) != 0) status = Status::NotFound(path + ": longer than expected");
      break;
    } else if (nb != na || std::memcmp(buf_a.data(), buf_b.data(), static_cast<std::size_t>(na))) {
      status = Status::NotFound(fmt::format("{}: differs at or after {}", path, offset));
    }
    offset += static_cast<std::uint64_t>(na > 0 ? na : 0);
  }
  close(a);
  close(b);
  return status;
}

// One entry of a tree written on the writer side, in the order it was written.
struct Entry {
  enum class Type { kDir, kFile, kSymlink } type;
  std::string relative;
  std::uint64_t size_bytes = 0;  // files
  std::string link_target;       // symlinks
  mode_t mode = 0;
};

// Copies the tree at `source` (directories, regular files, symlinks; other types skipped)
// into `dest` (created), appending each entry to *entries with `prefix` before its name.
Status CopyTree(const std::string& source, const std::string& dest, const std::string& prefix,
                std::vector<Entry>* entries) {
  std::error_code ec;
  std::vector<char> buffer(kIoBytes);
  if (mkdir(dest.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::FromErrno(errno, dest + ": mkdir");
  }
  entries->push_back({Entry::Type::kDir, prefix, 0, "", 0755});
  std::vector<std::string> stack = {""};
  while (!stack.empty()) {  // depth first; bounded by the tree
    const std::string dir = stack.back();
    stack.pop_back();
    std::vector<std::string> names;
    for (const auto& item : fs::directory_iterator(source + dir, ec)) {
      names.push_back(item.path().filename().string());
    }
    if (ec) return Status::IOError(fmt::format("{}{}: {}", source, dir, ec.message()));
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      const std::string rel = dir + "/" + name;
      const std::string from = source + rel;
      const std::string to = dest + rel;
      struct stat st {};
      if (lstat(from.c_str(), &st) != 0) return Status::FromErrno(errno, from + ": lstat");
      const mode_t mode = st.st_mode & 07777;
      if (S_ISDIR(st.st_mode)) {
        if (mkdir(to.c_str(), mode | 0700) != 0) return Status::FromErrno(errno, to + ": mkdir");
        entries->push_back({Entry::Type::kDir, prefix + rel, 0, "", mode | 0700});
        stack.push_back(rel);
      } else if (S_ISLNK(st.st_mode)) {
        std::string target(static_cast<std::size_t>(st.st_size) + 1, '\0');
        const ssize_t n = readlink(from.c_str(), target.data(), target.size());
        if (n < 0) return Status::FromErrno(errno, from + ": readlink");
        target.resize(static_cast<std::size_t>(n));
        if (symlink(target.c_str(), to.c_str()) != 0) {
          return Status::FromErrno(errno, to + ": symlink");
        }
        entries->push_back({Entry::Type::kSymlink, prefix + rel, 0, target, 0});
      } else if (S_ISREG(st.st_mode)) {
        const int in = open(from.c_str(), O_RDONLY | O_CLOEXEC);
        if (in < 0) return Status::FromErrno(errno, from);
        const int out = open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode | 0600);
        if (out < 0) {
          const int err = errno;
          close(in);
          return Status::FromErrno(err, to + ": create");
        }
        std::uint64_t copied = 0;
        Status status;
        while (status.ok()) {
          const ssize_t n = read(in, buffer.data(), buffer.size());
          if (n < 0) status = Status::FromErrno(errno, from + ": read");
          if (n <= 0) break;
          if (!WriteAll(out, buffer.data(), static_cast<std::size_t>(n))) {
            status = Status::FromErrno(errno, to + ": write");
          }
          copied += static_cast<std::uint64_t>(n);
        }
        close(in);
        if (close(out) != 0 && status.ok()) status = Status::FromErrno(errno, to + ": close");
        CFS_RETURN_IF_ERROR(status);
        entries->push_back({Entry::Type::kFile, prefix + rel, copied, "", mode | 0600});
      }
    }
  }
  return Status::OK();
}

// ---- Checks of the other side --------------------------------------------------------------

// What the other side must show: a quick check repeated every poll (OK = looks complete,
// anything else = not yet, with the reason), and a full comparison run once it passes.
struct Expectation {
  std::function<Status()> quick;
  std::function<Status()> full;
};

// Every entry present on `root` with its type and size (files), link target (symlinks); then
// the last kSentinelFiles files' bytes equal to the writer side's. Entries confirmed once are
// not checked again by later polls (the cursor); the full comparison checks them all.
Expectation TreeExpectation(std::shared_ptr<const std::vector<Entry>> entries,
                            std::string writer_root, std::string reader_root,
                            std::function<Status()> extra_quick) {
  auto cursor = std::make_shared<std::size_t>(0);
  auto check_entry = [=](const Entry& entry, bool content) -> Status {
    const std::string path = reader_root + "/" + entry.relative;
    struct stat st {};
    if (lstat(path.c_str(), &st) != 0) return Status::FromErrno(errno, path);
    switch (entry.type) {
      case Entry::Type::kDir:
        if (!S_ISDIR(st.st_mode)) return Status::NotFound(path + ": not a directory");
        return Status::OK();
      case Entry::Type::kSymlink: {
        if (!S_ISLNK(st.st_mode)) return Status::NotFound(path + ": not a symlink");
        std::string target(PATH_MAX, '\0');
        const ssize_t n = readlink(path.c_str(), target.data(), target.size());
        if (n < 0) return Status::FromErrno(errno, path + ": readlink");
        target.resize(static_cast<std::size_t>(n));
        if (target != entry.link_target) return Status::NotFound(path + ": wrong link target");
        return Status::OK();
      }
      case Entry::Type::kFile:
        if (!S_ISREG(st.st_mode)) return Status::NotFound(path + ": not a regular file");
        if (static_cast<std::uint64_t>(st.st_size) != entry.size_bytes) {
          return Status::NotFound(
              fmt::format("{}: {} bytes, expected {}", path, st.st_size, entry.size_bytes));
        }
        if (!content) return Status::OK();
        return CompareFiles(writer_root + "/" + entry.relative, path);
    }
    return Status::OK();
  };
  Expectation expectation;
  expectation.quick = [=]() -> Status {
    while (*cursor < entries->size()) {
      CFS_RETURN_IF_ERROR(check_entry((*entries)[*cursor], false));
      ++*cursor;
    }
    std::size_t sentinels = 0;
    for (auto it = entries->rbegin(); it != entries->rend() && sentinels < kSentinelFiles; ++it) {
      if (it->type != Entry::Type::kFile) continue;
      CFS_RETURN_IF_ERROR(check_entry(*it, true));
      ++sentinels;
    }
    return extra_quick ? extra_quick() : Status::OK();
  };
  expectation.full = [=]() -> Status {
    for (const Entry& entry : *entries) CFS_RETURN_IF_ERROR(check_entry(entry, true));
    return Status::OK();
  };
  return expectation;
}

// ---- Systems -------------------------------------------------------------------------------

// One system's two sides, fresh per workload group. Setup() leaves them connected and empty;
// the destructor (and Teardown) stops everything and removes the directory.
class SyncSystem {
 public:
  virtual ~SyncSystem() = default;
  virtual Status Setup(const std::string& dir) = 0;
  virtual Status Teardown() = 0;
  virtual std::string writer_root() const = 0;  // side A: where changes are made
  virtual std::string reader_root() const = 0;  // side B: where they must appear
  // Called right after the writer's close. Push systems (rsync) transfer here; continuous
  // systems return at once.
  virtual Status AfterWrite() { return Status::OK(); }
  virtual bool push() const { return false; }
  // Bytes on the wire so far (monotonic).
  virtual WireCount Wire() const = 0;
  // Extra waiting before a measurement (syncthing: both folders idle). The caller has already
  // seen the prior state on the reader side, and then waits for a quiet wire itself.
  virtual Status Settle() { return Status::OK(); }
  // The next Teardown leaves the directory (logs, stores) in place, for a failed group.
  void KeepDirectory() { keep_dir_ = true; }

 protected:
  // Teardown's last step: removes `dir` unless KeepDirectory() was called since the last one.
  void RemoveDirectory(const std::string& dir) {
    std::error_code ec;
    if (!keep_dir_) fs::remove_all(dir, ec);
    keep_dir_ = false;
  }

 private:
  bool keep_dir_ = false;
};

// ---- rsync ---------------------------------------------------------------------------------

class RsyncSystem : public SyncSystem {
 public:
  RsyncSystem(std::string rsync, std::string self)
      : rsync_(std::move(rsync)), self_(std::move(self)) {}
  ~RsyncSystem() override { (void)Teardown(); }

  Status Setup(const std::string& dir) override {
    dir_ = dir;
    for (const std::string& path : {dir_, self_}) {
      if (path.find_first_of(" \t'\"\\") != std::string::npos) {
        return Status::InvalidArgument(path + ": rsync's -e command cannot take this path");
      }
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
    fs::create_directories(dir_ + "/src", ec);
    if (!ec) fs::create_directories(dir_ + "/dst", ec);
    if (ec) return Status::IOError(fmt::format("{}: mkdir: {}", dir_, ec.message()));
    wire_ = {};
    return Status::OK();
  }

  Status Teardown() override {
    if (dir_.empty()) return Status::OK();
    RemoveDirectory(dir_);
    dir_.clear();
    return Status::OK();
  }

  std::string writer_root() const override { return dir_ + "/src"; }
  std::string reader_root() const override { return dir_ + "/dst"; }
  bool push() const override { return true; }
  WireCount Wire() const override { return wire_; }

  Status AfterWrite() override {
    const std::string count_path = dir_ + "/relay.count";
    std::error_code ec;
    fs::remove(count_path, ec);
    const std::string shell = self_ + " --relay " + count_path;
    CFS_RETURN_IF_ERROR(RunCommand({rsync_, "-a", "-z", "--no-whole-file", "-e", shell,
                                    writer_root() + "/", "localhost:" + reader_root() + "/"},
                                   dir_ + "/rsync.log"));
    std::ifstream in(count_path);
    unsigned long long sent = 0, received = 0;
    bool any = false;
    while (in >> sent >> received) {
      wire_.to_target_bytes += sent;
      wire_.from_target_bytes += received;
      wire_.connections += 1;
      any = true;
    }
    if (!any) return Status::IOError(count_path + ": the counted pipe wrote no totals");
    return Status::OK();
  }

 private:
  std::string rsync_;
  std::string self_;  // this binary: rsync's remote shell in relay mode
  std::string dir_;
  WireCount wire_;
};

// ---- cascadefs -----------------------------------------------------------------------------

bool MountAnswers(const std::string& path) {
  struct stat self {
  }, parent{};
  return stat(path.c_str(), &self) == 0 && stat((path + "/..").c_str(), &parent) == 0 &&
         self.st_dev != parent.st_dev;
}

bool ListedInMounts(const std::string& path) {
  std::ifstream mounts("/proc/self/mounts");
  std::string device, mount_point, rest;
  while (mounts >> device >> mount_point && std::getline(mounts, rest)) {
    if (mount_point == path) return true;
  }
  return false;
}

// Waits until 127.0.0.1:port accepts a connection, or `child` exits, or kStartTimeoutS.
Status WaitForPort(std::uint16_t port, Child& child, const std::string& what) {
  const auto deadline = Clock::now() + std::chrono::seconds(kStartTimeoutS);
  while (true) {
    Result<int> fd = ConnectLoopback(port);
    if (fd.ok()) {
      close(*fd);
      return Status::OK();
    }
    if (!child.Running()) {
      Status exited = child.ExitStatus();
      return Status::IOError(fmt::format("{} exited before listening on 127.0.0.1:{}: {}", what,
                                         port, std::string(exited.message())));
    }
    if (Clock::now() > deadline) {
      return Status::IOError(
          fmt::format("{} not listening on 127.0.0.1:{} after {} s", what, port, kStartTimeoutS));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// A hub (`cascadefs serve`) and two synced mounts A and B whose --sync is the relay.
class CascadefsSystem : public SyncSystem {
 public:
  explicit CascadefsSystem(std::string cascadefs) : cascadefs_(std::move(cascadefs)) {}
  ~CascadefsSystem() override { (void)Teardown(); }

  Status Setup(const std::string& dir) override {
    dir_ = dir;
    std::error_code ec;
    fs::remove_all(dir_, ec);
    for (const char* sub : {"/hub", "/store-a", "/store-b", "/mnt-a", "/mnt-b"}) {
      if (!ec) fs::create_directories(dir_ + sub, ec);
    }
    if (ec) return Status::IOError(fmt::format("{}: mkdir: {}", dir_, ec.message()));
    const std::string key = dir_ + "/key";
    CFS_RETURN_IF_ERROR(RunCommand({cascadefs_, "keygen", key}, dir_ + "/keygen.log"));
    Result<std::uint16_t> port = FreePort();
    if (!port.ok()) return port.status();
    CFS_RETURN_IF_ERROR(hub_.Start({cascadefs_, "serve", "--store", dir_ + "/hub", "--listen",
                                    fmt::format("127.0.0.1:{}", *port), "--key", key},
                                   dir_ + "/hub.log"));
    CFS_RETURN_IF_ERROR(WaitForPort(*port, hub_, "cascadefs serve"));
    CFS_RETURN_IF_ERROR(relay_.Start(*port));
    for (const char* side : {"a", "b"}) {
      const std::string mount_point = fmt::format("{}/mnt-{}", dir_, side);
      const std::string log = fmt::format("{}/mount-{}.log", dir_, side);
      mounts_.push_back({mount_point, RegisterMount(mount_point)});
      CFS_RETURN_IF_ERROR(RunCommand(
          {cascadefs_, "mount", "--store", fmt::format("{}/store-{}", dir_, side), "--sync",
           fmt::format("127.0.0.1:{}", relay_.port()), "--key", key, mount_point},
          log, kStartTimeoutS));
      const auto deadline = Clock::now() + std::chrono::seconds(kStartTimeoutS);
      while (!MountAnswers(mount_point)) {
        if (Clock::now() > deadline) {
          return Status::IOError(fmt::format("{}: not mounted {} s after cascadefs mount returned",
                                             mount_point, kStartTimeoutS));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    return Status::OK();
  }

  // Unmounts (they flush to the hub through the relay), then stops the hub and the relay.
  Status Teardown() override {
    if (dir_.empty()) return Status::OK();
    Status status;
    for (const auto& [mount_point, slot] : mounts_) {
      Status one = RunCommand({cascadefs_, "umount", mount_point}, dir_ + "/umount.log");
      if (ListedInMounts(mount_point)) {
        (void)RunCommand({"fusermount3", "-uz", mount_point}, dir_ + "/umount.log");
        if (one.ok()) one = Status::IOError(mount_point + ": still mounted after umount");
      }
      g_mount_live[slot].store(false);
      if (status.ok() && !one.ok()) status = one;
    }
    mounts_.clear();
    (void)hub_.Stop();
    relay_.Stop();
    bool still_mounted = false;
    for (const char* side : {"a", "b"}) {
      still_mounted |= ListedInMounts(fmt::format("{}/mnt-{}", dir_, side));
    }
    if (!still_mounted) RemoveDirectory(dir_);
    dir_.clear();
    return status;
  }

  std::string writer_root() const override { return dir_ + "/mnt-a"; }
  std::string reader_root() const override { return dir_ + "/mnt-b"; }
  WireCount Wire() const override { return relay_.Count(); }

 private:
  std::string cascadefs_;
  std::string dir_;
  Child hub_;
  CountingRelay relay_;
  std::vector<std::pair<std::string, std::size_t>> mounts_;  // mount point, signal table slot
};

// ---- syncthing -----------------------------------------------------------------------------

// Two `syncthing serve` instances, each reaching the other only through a CountingRelay.
class SyncthingSystem : public SyncSystem {
 public:
  explicit SyncthingSystem(std::string syncthing) : syncthing_(std::move(syncthing)) {}
  ~SyncthingSystem() override { (void)Teardown(); }

  Status Setup(const std::string& dir) override {
    dir_ = dir;
    std::error_code ec;
    fs::remove_all(dir_, ec);
    for (Side& side : sides_) {
      const std::string base = dir_ + "/" + side.name;
      side.home = base + "-home";
      side.folder = base;
      if (!ec) fs::create_directories(side.folder + "/.stfolder", ec);
      if (!ec) fs::create_directories(side.home, ec);
    }
    if (ec) return Status::IOError(fmt::format("{}: mkdir: {}", dir_, ec.message()));
    std::mt19937_64 rng(std::random_device{}());
    for (Side& side : sides_) {
      const std::string log = side.home + "/generate.log";
      CFS_RETURN_IF_ERROR(RunCommand({syncthing_, "generate", "--home", side.home,
                                      "--no-default-folder", "--skip-port-probing"},
                                     log, kStartTimeoutS));
      const std::string id_log = side.home + "/device-id.log";
      CFS_RETURN_IF_ERROR(
          RunCommand({syncthing_, "serve", "--home", side.home, "--device-id"}, id_log));
      side.device_id = LastLine(id_log);
      if (side.device_id.size() != 63) {
        return Status::IOError(fmt::format("syncthing --device-id printed '{}'", side.device_id));
      }
      for (std::uint16_t* port : {&side.listen_port, &side.gui_port}) {
        Result<std::uint16_t> free = FreePort();
        if (!free.ok()) return free.status();
        *port = *free;
      }
      side.api_key = fmt::format("{:016x}{:016x}", rng(), rng());
      CFS_RETURN_IF_ERROR(side.relay.Start(side.listen_port));
    }
    for (std::size_t i = 0; i < 2; ++i) {
      CFS_RETURN_IF_ERROR(WriteFile(sides_[i].home + "/config.xml", Config(i)));
    }
    for (Side& side : sides_) {
      CFS_RETURN_IF_ERROR(
          side.process.Start({syncthing_, "serve", "--home", side.home, "--no-browser",
                              "--no-restart", "--no-upgrade", "--logflags=3"},
                             side.home + "/syncthing.log"));
    }
    // Up, then connected to each other.
    const auto deadline = Clock::now() + std::chrono::seconds(kStartTimeoutS);
    for (std::size_t i = 0; i < 2; ++i) {
      Side& side = sides_[i];
      const Side& other = sides_[1 - i];
      std::string last = "no answer";
      while (true) {
        if (!side.process.Running()) return side.process.ExitStatus();
        Result<Json> connections = RestGet(side.gui_port, side.api_key, "/rest/system/connections");
        if (connections.ok()) {
          const Json& peer = (*connections)["connections"][other.device_id];
          if (peer.is_object() && peer.value("connected", false)) break;
          last = "not connected to the other instance";
        } else {
          last = std::string(connections.status().message());
        }
        if (Clock::now() > deadline) {
          return Status::IOError(fmt::format("syncthing {}: {} after {} s (log {})", side.name,
                                             last, kStartTimeoutS, side.home + "/syncthing.log"));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    return Status::OK();
  }

  Status Teardown() override {
    if (dir_.empty()) return Status::OK();
    for (Side& side : sides_) (void)side.process.Stop();
    for (Side& side : sides_) side.relay.Stop();
    RemoveDirectory(dir_);
    dir_.clear();
    return Status::OK();
  }

  std::string writer_root() const override { return sides_[0].folder; }
  std::string reader_root() const override { return sides_[1].folder; }
  WireCount Wire() const override { return sides_[0].relay.Count() + sides_[1].relay.Count(); }

  // Both folders idle with nothing needed, and A sees B 100% complete. First waits out the
  // watcher's delay (fsWatcherDelayS=1), so a change made just before is already being scanned.
  Status Settle() override {
    std::this_thread::sleep_for(std::chrono::milliseconds(kWatcherDelayMs));
    const auto deadline = Clock::now() + std::chrono::seconds(kConvergeTimeoutS);
    std::string last;
    while (Clock::now() < deadline) {
      bool settled = true;
      for (Side& side : sides_) {
        if (!side.process.Running()) return side.process.ExitStatus();
        Result<Json> status = RestGet(side.gui_port, side.api_key, "/rest/db/status?folder=bench");
        if (!status.ok()) {
          last = std::string(status.status().message());
          settled = false;
          break;
        }
        if (status->value("state", "") != "idle" || status->value("needTotalItems", 1) != 0) {
          last = fmt::format("{} is {}", side.name, status->value("state", "?"));
          settled = false;
          break;
        }
      }
      if (settled) {
        Result<Json> completion =
            RestGet(sides_[0].gui_port, sides_[0].api_key,
                    "/rest/db/completion?folder=bench&device=" + sides_[1].device_id);
        if (completion.ok() && completion->value("completion", 0.0) >= 100.0 &&
            completion->value("needItems", 1) == 0) {
          return Status::OK();
        }
        last = completion.ok() ? "b not complete" : std::string(completion.status().message());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return Status::IOError(
        fmt::format("syncthing not idle after {} s: {}", kConvergeTimeoutS, last));
  }

 private:
  struct Side {
    std::string name;
    std::string home;
    std::string folder;
    std::string device_id;
    std::string api_key;
    std::uint16_t listen_port = 0;
    std::uint16_t gui_port = 0;
    CountingRelay relay;  // forwards to this side's listen_port
    Child process;
  };

  // config.xml of side i: the folder shared with both devices, the other device reachable
  // only at the other side's relay, every outside service off. compression="always": the
  // peer's messages (data blocks too) go LZ4-compressed, syncthing's best against rsync -z.
  std::string Config(std::size_t i) const {
    const Side& self = sides_[i];
    const Side& other = sides_[1 - i];
    return fmt::format(
        R"(<configuration version="36">
    <folder id="bench" label="bench" path="{folder}" type="sendreceive" rescanIntervalS="86400" fsWatcherEnabled="true" fsWatcherDelayS="1" ignorePerms="false" autoNormalize="true">
        <filesystemType>basic</filesystemType>
        <device id="{a}" introducedBy=""></device>
        <device id="{b}" introducedBy=""></device>
    </folder>
    <device id="{self}" name="{self_name}" compression="always" introducer="false" skipIntroductionRemovals="false" introducedBy="">
        <address>dynamic</address>
    </device>
    <device id="{other}" name="{other_name}" compression="always" introducer="false" skipIntroductionRemovals="false" introducedBy="">
        <address>tcp://127.0.0.1:{relay}</address>
    </device>
    <gui enabled="true" tls="false" debugging="false">
        <address>127.0.0.1:{gui}</address>
        <apikey>{api_key}</apikey>
    </gui>
    <options>
        <listenAddress>tcp://127.0.0.1:{listen}</listenAddress>
        <globalAnnounceEnabled>false</globalAnnounceEnabled>
        <localAnnounceEnabled>false</localAnnounceEnabled>
        <relaysEnabled>false</relaysEnabled>
        <natEnabled>false</natEnabled>
        <urAccepted>-1</urAccepted>
        <crashReportingEnabled>false</crashReportingEnabled>
        <autoUpgradeIntervalH>0</autoUpgradeIntervalH>
        <startBrowser>false</startBrowser>
        <reconnectionIntervalS>1</reconnectionIntervalS>
        <setLowPriority>false</setLowPriority>
        <stunKeepaliveStartS>0</stunKeepaliveStartS>
        <announceLANAddresses>false</announceLANAddresses>
    </options>
</configuration>
)",
        fmt::arg("folder", self.folder), fmt::arg("a", sides_[0].device_id),
        fmt::arg("b", sides_[1].device_id), fmt::arg("self", self.device_id),
        fmt::arg("self_name", self.name), fmt::arg("other", other.device_id),
        fmt::arg("other_name", other.name), fmt::arg("relay", other.relay.port()),
        fmt::arg("gui", self.gui_port), fmt::arg("api_key", self.api_key),
        fmt::arg("listen", self.listen_port));
  }

  std::string syncthing_;
  std::string dir_;
  Side sides_[2] = {Side{.name = "a"}, Side{.name = "b"}};
};

// ---- Measurement ---------------------------------------------------------------------------

struct Config {
  std::vector<std::string> systems{"cascadefs", "rsync", "syncthing"};
  std::vector<std::string> workloads{"lineedit", "lineinsert", "initial", "smallfiles"};
  bool json = false;
  std::uint32_t text_mib = 100;
  std::uint32_t small_files = 10000;
  std::string work_dir = "/var/tmp/cfs_sync_bench";
  std::string cascadefs;
  std::string include_dir = "/usr/include";
};

// Waits until `expectation` holds on the reader side (unmeasured: a prior state).
Status WaitFor(SyncSystem& system, const Expectation& expectation, const std::string& what) {
  CFS_RETURN_IF_ERROR(system.AfterWrite());
  const auto deadline = Clock::now() + std::chrono::seconds(kConvergeTimeoutS);
  while (true) {
    Status quick = expectation.quick();
    if (quick.ok()) {
      Status full = expectation.full();
      if (full.ok()) break;
      quick = full;
    }
    if (system.push()) {
      return Status::IOError(
          fmt::format("{}: transfer ended, but {}", what, std::string(quick.message())));
    }
    if (Clock::now() > deadline) {
      return Status::IOError(fmt::format("{}: not on the other side after {} s: {}", what,
                                         kConvergeTimeoutS, std::string(quick.message())));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
  }
  CFS_RETURN_IF_ERROR(system.Settle());
  if (!system.push()) {
    const auto quiet_deadline = Clock::now() + std::chrono::seconds(kQuietWaitMaxS);
    WireCount before = system.Wire();
    while (true) {
      std::this_thread::sleep_for(std::chrono::milliseconds(kQuietMs));
      const WireCount now = system.Wire();
      if (now.total() == before.total()) break;
      if (Clock::now() > quiet_deadline) {
        Progress(
            fmt::format("{}: the wire never went quiet for {} ms within {} s; measuring anyway",
                        what, kQuietMs, kQuietWaitMaxS));
        break;
      }
      before = now;
    }
  }
  return Status::OK();
}

// Makes the change (`write`, whose end is the writer's close = t0), then measures until
// `expectation` holds on the reader side, filling the row.
Status Measure(SyncSystem& system, const std::function<Status()>& write,
               const Expectation& expectation, Row& row) {
  const WireCount start = system.Wire();
  CFS_RETURN_IF_ERROR(write());
  const auto t0 = Clock::now();
  CFS_RETURN_IF_ERROR(system.AfterWrite());
  const auto pushed = Clock::now();  // push systems: the end of the transfer is t1
  const auto deadline = t0 + std::chrono::seconds(kConvergeTimeoutS);
  std::uint32_t full_failures = 0;
  while (true) {
    Status quick = expectation.quick();
    const auto t1 = Clock::now();
    if (quick.ok()) {
      const WireCount at_t1 = system.Wire();
      std::this_thread::sleep_for(std::chrono::milliseconds(system.push() ? 0 : kTrailingMs));
      const WireCount trailing = system.Wire() - at_t1;
      Status full = expectation.full();
      if (full.ok()) {
        const WireCount wire = at_t1 - start;
        row["wire_bytes"] = wire.total();
        row["seconds"] = Round(Seconds(t0, system.push() ? pushed : t1), 4);
        row["to_server_bytes"] = wire.to_target_bytes;
        row["to_client_bytes"] = wire.from_target_bytes;
        row["connections_opened"] = wire.connections;
        row["trailing_bytes"] = trailing.total();
        row["full_check_retries"] = full_failures;
        return Status::OK();
      }
      ++full_failures;
      quick = full;
      Progress(fmt::format("quick check passed but the full comparison did not ({}); polling on",
                           std::string(full.message())));
    }
    if (system.push()) {
      return Status::IOError(fmt::format("transfer ended, but {}", std::string(quick.message())));
    }
    if (Clock::now() > deadline) {
      return Status::IOError(fmt::format("not on the other side after {} s: {}", kConvergeTimeoutS,
                                         std::string(quick.message())));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
  }
}

// ---- Workloads -----------------------------------------------------------------------------

void Emit(const Config& config, const Row& row, std::vector<Row>& rows) {
  rows.push_back(row);
  if (config.json) {
    std::printf("%s\n", row.dump().c_str());
    std::fflush(stdout);
  }
  Progress(row.dump());
}

bool Wants(const std::vector<std::string>& list, std::string_view name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

// Sets the file's times one minute back, so the next change gets a visibly newer mtime (rsync's
// quick check compares sizes and whole-second mtimes; a same-size edit within the second of
// the last sync would look unchanged to it).
Status AgeFile(const std::string& path) {
  timespec times[2];
  clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= 60;
  times[1] = times[0];
  if (utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) {
    return Status::FromErrno(errno, path + ": utimensat");
  }
  return Status::OK();
}

// Runs one system's workload groups, each on a fresh setup, emitting a row per workload.
class Runner {
 public:
  Runner(const Config& config, std::string name, SyncSystem& system, const std::string& text,
         std::vector<Row>& rows)
      : config_(config), name_(std::move(name)), system_(system), text_(text), rows_(rows) {}

  // The workload that was running when a Status came back (for the error line and row).
  const std::string& current() const { return current_; }

  Status Run() {
    const auto& w = config_.workloads;
    if (Wants(w, "lineedit") || Wants(w, "lineinsert")) {
      CFS_RETURN_IF_ERROR(Group("text", [&] { return TextGroup(); }));
    }
    if (Wants(w, "initial")) CFS_RETURN_IF_ERROR(Group("initial", [&] { return Initial(); }));
    if (Wants(w, "smallfiles")) {
      CFS_RETURN_IF_ERROR(Group("smallfiles", [&] { return SmallFiles(); }));
    }
    return Status::OK();
  }

 private:
  Status Group(const std::string& group, const std::function<Status()>& body) {
    current_ = group + " setup";
    Progress(fmt::format("{}: {}: setting up", name_, group));
    const std::string dir = fmt::format("{}/{}-{}", config_.work_dir, name_, group);
    Status status = system_.Setup(dir);
    if (status.ok()) status = body();
    if (!status.ok()) {
      system_.KeepDirectory();
      Progress(fmt::format("{}: {} failed; its logs and stores stay in {}", name_, current_, dir));
      (void)system_.Teardown();
      return status;
    }
    current_ = group + " teardown";
    return system_.Teardown();
  }

  Row NewRow(std::string_view workload) const {
    Row row;
    row["system"] = name_;
    row["workload"] = std::string(workload);
    return row;
  }

  // The text file's size and the ranges around `offset` and at its end, or all of it.
  static Expectation TextExpectation(const std::string& path, std::shared_ptr<std::string> text,
                                     std::size_t offset, std::size_t changed_bytes) {
    Expectation expectation;
    expectation.quick = [=]() -> Status {
      const std::size_t size = text->size();
      const std::size_t tail = std::min(size, kTailCheckBytes);
      CFS_RETURN_IF_ERROR(CompareWithText(path, *text, size - tail, tail));
      return CompareWithText(path, *text, offset, std::min(changed_bytes, size - offset));
    };
    expectation.full = [=]() { return CompareWithText(path, *text, 0, text->size()); };
    return expectation;
  }

  // lineedit and lineinsert on one setup: the text file synced first (not measured).
  Status TextGroup() {
    auto text = std::make_shared<std::string>(text_);
    const std::string writer_path = system_.writer_root() + "/" + std::string(kTextName);
    const std::string reader_path = system_.reader_root() + "/" + std::string(kTextName);
    current_ = "text prior state";
    Progress(fmt::format("{}: writing the {} MiB text file and waiting for the other side", name_,
                         config_.text_mib));
    CFS_RETURN_IF_ERROR(WriteFile(writer_path, *text));
    CFS_RETURN_IF_ERROR(AgeFile(writer_path));
    CFS_RETURN_IF_ERROR(
        WaitFor(system_, TextExpectation(reader_path, text, 0, 0), "the text file (prior state)"));
    if (Wants(config_.workloads, "lineedit")) {
      current_ = "lineedit";
      Progress(fmt::format("{}: lineedit", name_));
      const std::size_t offset = MiddleLineStart(*text);
      const std::size_t end = text->find('\n', offset);
      std::string line = text->substr(offset, end - offset);
      for (char& c : line) {
        const auto u = static_cast<unsigned char>(c);
        c = static_cast<char>(std::islower(u) ? std::toupper(u) : std::tolower(u));
      }
      CFS_ASSERT(line != text->substr(offset, end - offset));
      text->replace(offset, line.size(), line);
      Row row = NewRow("lineedit");
      auto write = [&]() -> Status {
        const int fd = open(writer_path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0) return Status::FromErrno(errno, writer_path);
        const ssize_t n = pwrite(fd, line.data(), line.size(), static_cast<off_t>(offset));
        const int err = errno;
        if (close(fd) != 0 && n == static_cast<ssize_t>(line.size())) {
          return Status::FromErrno(errno, writer_path + ": close");
        }
        if (n != static_cast<ssize_t>(line.size())) {
          return Status::FromErrno(n < 0 ? err : EIO, writer_path + ": pwrite");
        }
        return Status::OK();
      };
      CFS_RETURN_IF_ERROR(
          Measure(system_, write, TextExpectation(reader_path, text, offset, line.size()), row));
      row["changed_bytes"] = line.size();
      row["file_bytes"] = text->size();
      Emit(config_, row, rows_);
      if (Wants(config_.workloads, "lineinsert")) {
        // B has the edit; this settles the system again (syncthing's index exchange after it).
        current_ = "lineinsert prior state";
        CFS_RETURN_IF_ERROR(WaitFor(system_, TextExpectation(reader_path, text, 0, 0),
                                    "the edited text file (prior state)"));
      }
    }
    if (Wants(config_.workloads, "lineinsert")) {
      current_ = "lineinsert";
      Progress(fmt::format("{}: lineinsert", name_));
      const std::size_t offset = MiddleLineStart(*text);
      const std::size_t tail_bytes = text->size() - offset;
      Row row = NewRow("lineinsert");
      // The writer reads the tail from its file (not from memory), then writes line + tail.
      std::string buffer;
      {
        const int fd = open(writer_path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return Status::FromErrno(errno, writer_path);
        std::string tail;
        const Status read = ReadAt(fd, offset, tail_bytes, &tail, writer_path);
        close(fd);
        CFS_RETURN_IF_ERROR(read);
        if (tail != std::string_view(*text).substr(offset)) {
          return Status::Corruption(writer_path + ": the writer's own file differs from the text");
        }
        buffer = std::string(kInsertedLine) + tail;
      }
      text->insert(offset, kInsertedLine);
      auto write = [&]() -> Status {
        const int fd = open(writer_path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0) return Status::FromErrno(errno, writer_path);
        Status status;
        std::size_t done = 0;
        while (status.ok() && done < buffer.size()) {
          const std::size_t n = std::min(kIoBytes, buffer.size() - done);
          const ssize_t wrote =
              pwrite(fd, buffer.data() + done, n, static_cast<off_t>(offset + done));
          if (wrote <= 0)
            status = Status::FromErrno(wrote < 0 ? errno : EIO, writer_path + ": pwrite");
          if (wrote > 0) done += static_cast<std::size_t>(wrote);
        }
        if (close(fd) != 0 && status.ok())
          status = Status::FromErrno(errno, writer_path + ": close");
        return status;
      };
      CFS_RETURN_IF_ERROR(Measure(
          system_, write,
          TextExpectation(reader_path, text, offset, kInsertedLine.size() + kTailCheckBytes), row));
      row["changed_bytes"] = kInsertedLine.size();
      row["rewritten_bytes"] = buffer.size();
      row["file_bytes"] = text->size();
      Emit(config_, row, rows_);
    }
    return Status::OK();
  }

  // Nothing to wait for but a settled system with an empty folder.
  Status SettleEmpty() {
    Expectation empty{[] { return Status::OK(); }, [] { return Status::OK(); }};
    if (system_.push()) return Status::OK();  // nothing to transfer before the change
    return WaitFor(system_, empty, "the empty setup");
  }

  static void AddTotals(const std::vector<Entry>& entries, Row& row) {
    std::uint64_t files = 0, bytes = 0;
    for (const Entry& entry : entries) {
      if (entry.type != Entry::Type::kFile) continue;
      ++files;
      bytes += entry.size_bytes;
    }
    row["files"] = files;
    row["entries"] = entries.size();
    row["content_bytes"] = bytes;
  }

  // The text file and a copy of /usr/include, synced fresh.
  Status Initial() {
    current_ = "initial";
    CFS_RETURN_IF_ERROR(SettleEmpty());
    Progress(fmt::format("{}: initial: writing the text file and {}", name_, config_.include_dir));
    auto entries = std::make_shared<std::vector<Entry>>();
    const std::string writer = system_.writer_root();
    const std::string reader_text = system_.reader_root() + "/" + std::string(kTextName);
    auto write = [&]() -> Status {
      CFS_RETURN_IF_ERROR(WriteFile(writer + "/" + std::string(kTextName), text_));
      entries->push_back({Entry::Type::kFile, std::string(kTextName), text_.size(), "", 0644});
      return CopyTree(config_.include_dir, writer + "/include", "include", entries.get());
    };
    auto text = std::make_shared<std::string>(text_);
    const Expectation text_check = TextExpectation(reader_text, text, 0, 0);
    Row row = NewRow("initial");
    CFS_RETURN_IF_ERROR(
        Measure(system_, write,
                TreeExpectation(entries, writer, system_.reader_root(), text_check.quick), row));
    AddTotals(*entries, row);
    Emit(config_, row, rows_);
    return Status::OK();
  }

  // --small-files files of 1-8 KiB of text, kSmallFilesPerDir per directory.
  Status SmallFiles() {
    current_ = "smallfiles";
    CFS_RETURN_IF_ERROR(SettleEmpty());
    std::mt19937_64 rng(kTextSeed + 1);
    std::vector<std::size_t> sizes(config_.small_files);
    std::size_t total = 0;
    for (std::size_t& size : sizes) {
      size = kSmallFileBytesMin + rng() % (kSmallFileBytesMax - kSmallFileBytesMin + 1);
      total += size;
    }
    const std::string pool = GenerateText(total, kTextSeed + 2);
    Progress(
        fmt::format("{}: smallfiles: writing {} files ({} bytes)", name_, sizes.size(), total));
    auto entries = std::make_shared<std::vector<Entry>>();
    const std::string writer = system_.writer_root();
    auto write = [&]() -> Status {
      std::size_t offset = 0;
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        const std::string dir = fmt::format("small/d{:04}", i / kSmallFilesPerDir);
        if (i == 0 && mkdir((writer + "/small").c_str(), 0755) != 0) {
          return Status::FromErrno(errno, writer + "/small: mkdir");
        }
        if (i == 0) entries->push_back({Entry::Type::kDir, "small", 0, "", 0755});
        if (i % kSmallFilesPerDir == 0) {
          if (mkdir((writer + "/" + dir).c_str(), 0755) != 0) {
            return Status::FromErrno(errno, writer + "/" + dir + ": mkdir");
          }
          entries->push_back({Entry::Type::kDir, dir, 0, "", 0755});
        }
        const std::string rel = fmt::format("{}/f{:06}.txt", dir, i);
        CFS_RETURN_IF_ERROR(
            WriteFile(writer + "/" + rel, std::string_view(pool).substr(offset, sizes[i])));
        entries->push_back({Entry::Type::kFile, rel, sizes[i], "", 0644});
        offset += sizes[i];
      }
      return Status::OK();
    };
    Row row = NewRow("smallfiles");
    CFS_RETURN_IF_ERROR(
        Measure(system_, write, TreeExpectation(entries, writer, system_.reader_root(), {}), row));
    AddTotals(*entries, row);
    Emit(config_, row, rows_);
    return Status::OK();
  }

  const Config& config_;
  std::string name_;
  SyncSystem& system_;
  const std::string& text_;
  std::vector<Row>& rows_;
  std::string current_;
};

std::string SelfPath() {
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.string();
}

struct Binaries {
  std::string cascadefs;
  std::string rsync;
  std::string syncthing;
};

// Finds every binary the chosen systems need; fails naming the first missing one.
Status FindBinaries(const Config& config, Binaries* binaries) {
  if (Wants(config.systems, "cascadefs")) {
    std::vector<std::string> candidates;
    if (!config.cascadefs.empty()) {
      candidates = {config.cascadefs};
    } else {
      candidates = {"build/release/tools/cascadefs", ExeDir() + "/../tools/cascadefs"};
    }
    for (const std::string& candidate : candidates) {
      if (access(candidate.c_str(), X_OK) == 0) {
        binaries->cascadefs = fs::absolute(candidate).string();
        break;
      }
    }
    if (binaries->cascadefs.empty()) {
      return Status::NotFound("cascadefs: binary not found (tried " + candidates.front() +
                              "; build it with make bench, or pass --cascadefs PATH)");
    }
    if (FindInPath("fusermount3").empty()) {
      return Status::NotFound("cascadefs: fusermount3 not found in PATH (Debian package fuse3)");
    }
  }
  if (Wants(config.systems, "rsync")) {
    binaries->rsync = FindInPath("rsync");
    if (binaries->rsync.empty()) {
      return Status::NotFound("rsync: not found in PATH (make bench installs Debian's rsync)");
    }
  }
  if (Wants(config.systems, "syncthing")) {
    binaries->syncthing = FindInPath("syncthing");
    if (binaries->syncthing.empty()) {
      return Status::NotFound(
          "syncthing: not found in PATH (make bench installs Debian's syncthing)");
    }
  }
  return Status::OK();
}

void PrintSummary(const std::vector<Row>& rows, const Config& config) {
  if (rows.empty()) return;
  std::FILE* out = config.json ? stderr : stdout;
  fmt::print(out, "{:<10} {:<11} {:>14} {:>10}\n", "system", "workload", "wire_bytes", "seconds");
  for (const Row& row : rows) {
    if (row.contains("error")) {
      fmt::print(out, "{:<10} {:<11} failed: {}\n", row["system"].get<std::string>(),
                 row["workload"].get<std::string>(), row["error"].get<std::string>());
      continue;
    }
    fmt::print(out, "{:<10} {:<11} {:>14} {:>10.3f}\n", row["system"].get<std::string>(),
               row["workload"].get<std::string>(), row["wire_bytes"].get<std::uint64_t>(),
               row["seconds"].get<double>());
  }
}

}  // namespace
}  // namespace cascadefs::bench

int main(int argc, char** argv) {
  using namespace cascadefs::bench;
  if (argc > 1 && std::string_view(argv[1]) == "--relay") return RelayMain(argc, argv);
  Config config;
  CLI::App app{
      "sync_bench: cascadefs's sync next to rsync and syncthing: bytes on the wire and seconds "
      "until the other side has the change (bench/README.md says how each is measured)"};
  app.add_option("--systems", config.systems, "Systems to run, comma separated, in this order")
      ->delimiter(',')
      ->check(CLI::IsMember({"cascadefs", "rsync", "syncthing"}))
      ->capture_default_str();
  app.add_option("--workloads", config.workloads, "Workloads to run, comma separated")
      ->delimiter(',')
      ->check(CLI::IsMember({"lineedit", "lineinsert", "initial", "smallfiles"}))
      ->capture_default_str();
  app.add_flag("--json", config.json, "JSON rows on stdout; progress and the table on stderr");
  app.add_option("--text-mib", config.text_mib, "Size of the text file in MiB")
      ->check(CLI::Range(1u, kTextMibMax))
      ->capture_default_str();
  app.add_option("--small-files", config.small_files, "Files of the smallfiles workload")
      ->check(CLI::Range(1u, kSmallFilesMax))
      ->capture_default_str();
  app.add_option("--work-dir", config.work_dir,
                 "Base directory for stores, mounts and folders (a real disk)")
      ->capture_default_str();
  app.add_option("--include-dir", config.include_dir, "The tree the initial workload copies")
      ->capture_default_str();
  app.add_option("--cascadefs", config.cascadefs,
                 "cascadefs binary (default: build/release/tools/cascadefs)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (config.systems.empty() || config.workloads.empty()) {
    std::fprintf(stderr, "sync_bench: --systems and --workloads need at least one entry\n");
    return 2;
  }
  if (SelfPath().empty()) {
    std::fprintf(stderr,
                 "sync_bench: /proc/self/exe: cannot find this binary (rsync's counted "
                 "pipe runs it)\n");
    return 1;
  }
  std::error_code ec;
  fs::create_directories(config.work_dir, ec);
  if (ec) {
    std::fprintf(stderr, "sync_bench: %s: %s\n", config.work_dir.c_str(), ec.message().c_str());
    return 1;
  }
  config.work_dir = fs::canonical(config.work_dir).string();
  std::snprintf(g_fusermount_path, PATH_MAX, "%s", FindInPath("fusermount3").c_str());
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, OnFatalSignal);
  signal(SIGPIPE, SIG_IGN);
  Binaries binaries;
  cascadefs::Status status = FindBinaries(config, &binaries);
  if (!status.ok()) {
    std::fprintf(stderr, "sync_bench: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  std::string text;
  if (Wants(config.workloads, "lineedit") || Wants(config.workloads, "lineinsert") ||
      Wants(config.workloads, "initial")) {
    Progress(fmt::format("generating the {} MiB text file", config.text_mib));
    text = GenerateText(std::uint64_t{config.text_mib} << 20, kTextSeed);
  }
  std::vector<Row> rows;
  bool failed = false;
  for (const std::string& name : config.systems) {
    std::unique_ptr<SyncSystem> system;
    if (name == "cascadefs") system = std::make_unique<CascadefsSystem>(binaries.cascadefs);
    if (name == "rsync") system = std::make_unique<RsyncSystem>(binaries.rsync, SelfPath());
    if (name == "syncthing") system = std::make_unique<SyncthingSystem>(binaries.syncthing);
    CFS_ASSERT(system != nullptr);
    Runner runner(config, name, *system, text, rows);
    status = runner.Run();
    if (!status.ok()) {
      failed = true;
      const std::string message = std::string(status.message());
      std::fprintf(stderr, "sync_bench: %s: %s: %s\n", name.c_str(), runner.current().c_str(),
                   message.c_str());
      Row row;
      row["system"] = name;
      row["workload"] = runner.current();
      row["error"] = message;
      rows.push_back(row);
      if (config.json) {
        std::printf("%s\n", row.dump().c_str());
        std::fflush(stdout);
      }
    }
  }
  PrintSummary(rows, config);
  return failed ? 1 : 0;
}
