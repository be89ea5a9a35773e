// mount_fixture.cc: see mount_fixture.h for the design.
#include "mount/mount_fixture.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string_view>
#include <thread>

namespace cascadefs::mounttest {
namespace {

using Clock = std::chrono::steady_clock;

// Poll interval while waiting for a mount to come up or a process to exit.
constexpr auto kPollInterval = std::chrono::milliseconds(10);
// Timeout of `cascadefs umount` and of each fallback unmount command.
constexpr int kUmountTimeoutS = 60;
constexpr int kFallbackTimeoutS = 20;
// After SIGTERM, how long the daemon gets before SIGKILL.
constexpr int kTermGraceMs = 5000;
// Lines of the daemon log quoted in a failure message.
constexpr int kLogTailLines = 20;
// RunProgram reads output in pieces of this size and keeps at most kOutputBytesMax of it
// (the rest is dropped: the tail of a huge output is still kept by dropping the front).
constexpr std::size_t kReadBytes = 64 * 1024;
constexpr std::size_t kOutputBytesMax = 4 << 20;

std::string ErrnoText(int err) { return std::strerror(err); }

// True if /proc/self/mounts lists a mount exactly at `path` (or, with prefix, below it).
bool ListedInMounts(const std::string& path, bool prefix) {
  std::ifstream mounts("/proc/self/mounts");
  std::string line;
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string device, mount_point;
    fields >> device >> mount_point;
    if (mount_point == path) return true;
    if (prefix && mount_point.size() > path.size() &&
        mount_point.compare(0, path.size(), path) == 0 && mount_point[path.size()] == '/') {
      return true;
    }
  }
  return false;
}

// True once `path` answers stat on a different device than its parent: the mount is up.
bool MountAnswers(const std::string& path) {
  struct stat self {
  }, parent{};
  if (stat(path.c_str(), &self) != 0) return false;
  if (stat((path + "/..").c_str(), &parent) != 0) return false;
  return self.st_dev != parent.st_dev;
}

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace

Target TargetFromEnv() {
  const char* value = std::getenv("CFS_MOUNT_TARGET");
  if (value != nullptr && std::string_view(value) == "native") return Target::kNative;
  return Target::kCascadefs;
}

std::string TransportFromEnv() {
  const char* value = std::getenv("CFS_MOUNT_TRANSPORT");
  if (value != nullptr && std::string_view(value) == "io-uring") return "io-uring";
  return "dev-fuse";
}

namespace {

constexpr const char* kEnableUringParameter = "/sys/module/fuse/parameters/enable_uring";
std::string g_mount_skip_reason;  // set by UringParameterEnvironment::SetUp

// For CFS_MOUNT_TRANSPORT=io-uring: the kernel serves FUSE over io_uring only with the fuse
// module's enable_uring parameter on. On for the whole test program, then restored.
class UringParameterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (TransportFromEnv() != "io-uring" || TargetFromEnv() == Target::kNative) return;
    std::ifstream in(kEnableUringParameter);
    if (!(in >> old_value_)) {
      g_mount_skip_reason =
          std::string("this kernel has no FUSE over io_uring (no ") + kEnableUringParameter + ")";
      return;
    }
    if (!Write("Y")) {
      g_mount_skip_reason = std::string("cannot turn on ") + kEnableUringParameter + ": " +
                            ErrnoText(errno) + " (the io-uring runs need root)";
      return;
    }
    restore_ = true;
  }
  void TearDown() override {
    if (restore_) (void)Write(old_value_);
    restore_ = false;
  }

 private:
  static bool Write(const std::string& value) {
    std::ofstream out(kEnableUringParameter);
    out << value << '\n';
    out.close();
    return static_cast<bool>(out);
  }
  std::string old_value_;
  bool restore_ = false;
};

[[maybe_unused]] ::testing::Environment* const g_uring_environment =
    ::testing::AddGlobalTestEnvironment(new UringParameterEnvironment);

}  // namespace

std::string MountSkipReason() { return g_mount_skip_reason; }

// ---- MountGuard ----------------------------------------------------------------------------

MountGuard::MountGuard(Target target, std::string temp_dir, std::string store_dir)
    : target_(target), temp_dir_(std::move(temp_dir)), store_dir_(std::move(store_dir)) {
  log_path_ = temp_dir_ + "/daemon.log";
  if (native()) {
    root_ = store_dir_ + "/native";
  } else {
    root_ = temp_dir_ + "/mnt";
  }
}

std::unique_ptr<MountGuard> MountGuard::Create(Target target, const MountGuardOptions& options,
                                               std::string* error) {
  const char* base = std::getenv("CFS_MOUNT_TMP");
  std::string pattern =
      std::string(base != nullptr && base[0] != '\0' ? base : "/var/tmp") + "/cfs-mount-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (mkdtemp(buffer.data()) == nullptr) {
    *error = "mkdtemp " + pattern + ": " + ErrnoText(errno);
    return nullptr;
  }
  std::string temp_dir(buffer.data());
  // 0755 all the way down: the permission tests run as uid 65534 and must reach the mount.
  chmod(temp_dir.c_str(), 0755);
  std::string store_dir = options.store_dir.empty() ? temp_dir + "/store" : options.store_dir;
  std::unique_ptr<MountGuard> guard(new MountGuard(target, temp_dir, store_dir));
  for (const std::string& dir : {store_dir, guard->root_}) {
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      *error = "mkdir " + dir + ": " + ErrnoText(errno);
      return nullptr;
    }
    chmod(dir.c_str(), 0755);
  }
  *error = guard->Mount();
  if (!error->empty()) return nullptr;
  return guard;
}

MountGuard::~MountGuard() {
  if (!native()) {
    const std::string error = Unmount();
    if (!error.empty()) std::fprintf(stderr, "MountGuard: %s\n", error.c_str());
  }
  // Never delete through a mount: whatever is still mounted keeps its temporary directory.
  if (ListedInMounts(temp_dir_, /*prefix=*/true) || ListedInMounts(root_, false)) {
    std::fprintf(stderr, "MountGuard: %s: still mounted, left in place\n", temp_dir_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(temp_dir_, ec);
  if (!store_dir_.empty() && store_dir_.compare(0, temp_dir_.size(), temp_dir_) != 0) {
    // A store placed elsewhere (the ENOSPC test): its contents are ours, the directory is not.
    std::filesystem::remove_all(root_, ec);
  }
}

std::string MountGuard::Mount() {
  if (native()) return "";
  if (daemon_pid_ > 0) return "Mount: already mounted";
  const char* bin = std::getenv("CFS_CASCADEFS_BIN");
  if (bin == nullptr || bin[0] == '\0') {
    return "CFS_CASCADEFS_BIN is not set: run through ctest (label mount), or set it to the "
           "cascadefs binary, or set CFS_MOUNT_TARGET=native";
  }
  if (access(bin, X_OK) != 0) return std::string(bin) + ": " + ErrnoText(errno);
  if (access("/dev/fuse", R_OK | W_OK) != 0) {
    return "/dev/fuse: " + ErrnoText(errno) + " (the mount tests need FUSE; never skipped)";
  }
  const int log_fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return log_path_ + ": " + ErrnoText(errno);
  std::vector<std::string> args = {bin,       "mount",    "--transport", TransportFromEnv(),
                                   "--store", store_dir_, "-f"};
  // CFS_MOUNT_VALUE_LOG=1: the daemon keeps chunks in the engine's value log.
  if (const char* value_log = std::getenv("CFS_MOUNT_VALUE_LOG");
      value_log != nullptr && std::string_view(value_log) == "1") {
    args.push_back("--value-log");
  }
  args.push_back(root_);
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return "fork: " + ErrnoText(errno);
  }
  if (pid == 0) {
    // The child: only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(126);
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execv(bin, argv.data());
    _exit(127);
  }
  close(log_fd);
  daemon_pid_ = pid;
  const auto deadline = Clock::now() + std::chrono::milliseconds(kMountWaitMs);
  while (Clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      daemon_pid_ = -1;
      ForceUnmount();
      return "cascadefs mount -f " + root_ + " ended (" + DescribeStatus(status) +
             ") before the mount came up; its log:\n" + LogTail();
    }
    if (MountAnswers(root_)) return "";
    std::this_thread::sleep_for(kPollInterval);
  }
  const std::string log = LogTail();
  (void)Unmount();
  return "cascadefs mount: " + root_ + " not a mount point after " + std::to_string(kMountWaitMs) +
         " ms; its log:\n" + log;
}

bool MountGuard::WaitDaemon(int wait_ms, int* status) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
  while (true) {
    const pid_t got = waitpid(daemon_pid_, status, WNOHANG);
    if (got == daemon_pid_) return true;
    if (got < 0 && errno == ECHILD) {
      *status = 0;
      return true;  // reaped elsewhere; nothing left to wait for
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollInterval);
  }
}

bool MountGuard::ForceUnmount() {
  if (!ListedInMounts(root_, false)) return true;
  (void)RunProgram({"fusermount3", "-uz", root_}, "", nullptr, kFallbackTimeoutS);
  if (!ListedInMounts(root_, false)) return true;
  (void)RunProgram({"umount", "-l", root_}, "", nullptr, kFallbackTimeoutS);
  return !ListedInMounts(root_, false);
}

std::string MountGuard::Unmount() {
  if (native() || daemon_pid_ <= 0) return "";
  std::string error;
  const char* bin = std::getenv("CFS_CASCADEFS_BIN");
  std::string output;
  const int rc = RunProgram({bin, "umount", root_}, "", &output, kUmountTimeoutS);
  if (rc != 0) {
    error = "cascadefs umount " + root_ + ": exit " + std::to_string(rc) + ": " + Tail(output, 5);
  }
  int status = 0;
  bool exited = WaitDaemon(rc == 0 ? kDaemonExitWaitMs : 0, &status);
  if (exited && error.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    error =
        "the daemon ended with " + DescribeStatus(status) + " after umount; its log:\n" + LogTail();
  }
  if (!exited) {
    if (error.empty()) error = "the daemon did not exit within the wait after umount";
    kill(daemon_pid_, SIGTERM);
    exited = WaitDaemon(kTermGraceMs, &status);
    if (!exited) {
      kill(daemon_pid_, SIGKILL);
      exited = WaitDaemon(kDaemonExitWaitMs, &status);
    }
  }
  if (!exited) error += "; the daemon survived SIGKILL (pid " + std::to_string(daemon_pid_) + ")";
  daemon_pid_ = -1;
  if (ListedInMounts(root_, false)) {
    if (error.empty()) error = root_ + " still mounted after umount";
    if (!ForceUnmount()) error += "; lazy unmount failed too";
  }
  return error;
}

std::string MountGuard::WaitDaemonAfterExternalUnmount() {
  if (native()) return "";
  if (daemon_pid_ <= 0) return "no daemon";
  int status = 0;
  const bool exited = WaitDaemon(kDaemonExitWaitMs, &status);
  std::string error;
  if (!exited) {
    error = "the daemon did not exit within " + std::to_string(kDaemonExitWaitMs) +
            " ms of the unmount";
    kill(daemon_pid_, SIGKILL);
    (void)WaitDaemon(kDaemonExitWaitMs, &status);
  } else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    error = "the daemon ended with " + DescribeStatus(status) + "; its log:\n" + LogTail();
  }
  daemon_pid_ = -1;
  if (!ForceUnmount()) error += (error.empty() ? "" : "; ") + root_ + " is still mounted";
  return error;
}

std::string MountGuard::Remount() {
  if (native()) return "";
  std::string error = Unmount();
  if (!error.empty()) return "remount: " + error;
  error = Mount();
  return error.empty() ? "" : "remount: " + error;
}

std::string MountGuard::KillDaemon(const std::function<void()>& after_kill) {
  if (native()) return "KillDaemon on the native target";
  if (daemon_pid_ <= 0) return "KillDaemon: no daemon";
  kill(daemon_pid_, SIGKILL);
  int status = 0;
  if (!WaitDaemon(kDaemonExitWaitMs, &status)) return "the daemon survived SIGKILL";
  daemon_pid_ = -1;
  if (after_kill) after_kill();
  if (!ForceUnmount()) return "lazy unmount of the dead mount " + root_ + " failed";
  const std::string error = Mount();
  return error.empty() ? "" : "mount after kill -9: " + error;
}

std::string MountGuard::LogTail() const {
  std::string log;
  if (!ReadFile(log_path_, &log)) return "(no daemon log)";
  return Tail(log, kLogTailLines);
}

// ---- MountedFs -----------------------------------------------------------------------------

void MountedFs::SetUp() {
  if (!MountSkipReason().empty()) GTEST_SKIP() << MountSkipReason();
  std::string error;
  guard_ = MountGuard::Create(TargetFromEnv(), Options(), &error);
  ASSERT_NE(guard_, nullptr) << error;
}

void MountedFs::TearDown() {
  if (guard_ == nullptr) return;
  const std::string error = guard_->Unmount();
  EXPECT_EQ(error, "") << "unmount at the end of the test was not clean";
  guard_.reset();
}

void MountedFs::Remount() {
  ASSERT_NE(guard_, nullptr);
  const std::string error = guard_->Remount();
  ASSERT_EQ(error, "");
}

void MountedFs::KillDaemon(const std::function<void()>& after_kill) {
  ASSERT_NE(guard_, nullptr);
  const std::string error = guard_->KillDaemon(after_kill);
  ASSERT_EQ(error, "");
}

std::string MountedFs::path(std::string_view rel) const {
  return guard_->root() + "/" + std::string(rel);
}

// ---- Helpers -------------------------------------------------------------------------------

int RunProgram(const std::vector<std::string>& args, const std::string& cwd, std::string* output,
               int timeout_s) {
  std::string sink;
  if (output == nullptr) output = &sink;
  output->clear();
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    *output = "pipe: " + ErrnoText(errno);
    return -1;
  }
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    *output = "fork: " + ErrnoText(errno);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return -1;
  }
  if (pid == 0) {
    setpgid(0, 0);  // its own group, so a timeout kills everything it started
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(pipe_fds[1], 1);
    dup2(pipe_fds[1], 2);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  std::vector<char> buffer(kReadBytes);
  bool timed_out = false;
  while (true) {
    pollfd pfd{pipe_fds[0], POLLIN, 0};
    const int ready = poll(&pfd, 1, 100);
    if (ready > 0) {
      const ssize_t got = read(pipe_fds[0], buffer.data(), buffer.size());
      if (got == 0) break;  // EOF: every writer is gone
      if (got > 0) {
        output->append(buffer.data(), static_cast<std::size_t>(got));
        if (output->size() > kOutputBytesMax) output->erase(0, output->size() - kOutputBytesMax);
      }
    }
    if (Clock::now() >= deadline) {
      timed_out = true;
      break;
    }
  }
  close(pipe_fds[0]);
  if (timed_out) kill(-pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    *output += "\n(killed after " + std::to_string(timeout_s) + " s)";
    return -1;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

bool HaveProgram(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && access((dir + "/" + name).c_str(), X_OK) == 0) return true;
  }
  return false;
}

std::string Tail(const std::string& text, int lines) {
  std::size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (int i = 0; i < lines && pos > 0; ++i) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return pos == 0 ? text : text.substr(pos + 1);
}

bool WriteFile(const std::string& path, std::string_view data) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      close(fd);
      errno = err;
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return close(fd) == 0;
}

bool ReadFile(const std::string& path, std::string* data) {
  data->clear();
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buffer[65536];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      errno = err;
      return false;
    }
    if (n == 0) break;
    data->append(buffer, static_cast<std::size_t>(n));
  }
  return close(fd) == 0;
}

std::string RandomBytes(std::uint64_t seed, std::size_t size) {
  std::string out(size, '\0');
  std::uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
  for (std::size_t i = 0; i < size; i += 8) {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    const std::uint64_t value = state * 0x2545F4914F6CDD1DULL;
    std::memcpy(out.data() + i, &value, std::min<std::size_t>(8, size - i));
  }
  return out;
}

std::uint64_t Checksum(std::string_view data) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (const char c : data) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

std::uint64_t TestSeed() {
  const char* value = std::getenv("CFS_TEST_SEED");
  if (value != nullptr && value[0] != '\0') return std::strtoull(value, nullptr, 0);
  return std::random_device{}() * 0x100000001ULL ^ std::random_device{}();
}

namespace {

std::string XattrsOf(const std::string& path) {
  std::vector<char> names(65536);
  const ssize_t size = llistxattr(path.c_str(), names.data(), names.size());
  if (size <= 0) return "";
  std::vector<std::string> sorted;
  for (ssize_t i = 0; i < size;) {
    std::string name(names.data() + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    sorted.push_back(name);
  }
  std::sort(sorted.begin(), sorted.end());
  std::string out;
  for (const std::string& name : sorted) {
    std::vector<char> value(65536);
    const ssize_t n = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    out += " " + name + "=" +
           (n < 0 ? "?" : std::to_string(Checksum(std::string_view(value.data(), n))));
  }
  return out;
}

}  // namespace

bool SnapshotTree(const std::string& root, std::map<std::string, std::string>* snapshot,
                  std::string* error) {
  snapshot->clear();
  std::error_code ec;
  std::filesystem::recursive_directory_iterator it(root, std::filesystem::directory_options::none,
                                                   ec);
  if (ec) {
    *error = root + ": " + ec.message();
    return false;
  }
  for (; it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) {
      *error = root + ": iterating: " + ec.message();
      return false;
    }
    const std::string full = it->path().string();
    const std::string rel = full.substr(root.size() + 1);
    struct stat st {};
    if (lstat(full.c_str(), &st) != 0) {
      *error = full + ": lstat: " + ErrnoText(errno);
      return false;
    }
    std::ostringstream line;
    line << std::oct << st.st_mode << std::dec << " uid=" << st.st_uid << " gid=" << st.st_gid
         << " size=" << st.st_size << " nlink=" << st.st_nlink << " mtime=" << st.st_mtim.tv_sec
         << "." << st.st_mtim.tv_nsec << " ctime=" << st.st_ctim.tv_sec << "."
         << st.st_ctim.tv_nsec;
    if (S_ISREG(st.st_mode)) {
      std::string data;
      if (!ReadFile(full, &data)) {
        *error = full + ": read: " + ErrnoText(errno);
        return false;
      }
      line << " data=" << std::hex << Checksum(data) << std::dec;
    } else if (S_ISLNK(st.st_mode)) {
      std::vector<char> target(PATH_MAX + 1);
      const ssize_t n = readlink(full.c_str(), target.data(), PATH_MAX);
      line << " target=" << (n < 0 ? "?" : std::string(target.data(), n));
    }
    line << XattrsOf(full);
    (*snapshot)[rel] = line.str();
  }
  return true;
}

std::string DiffSnapshots(const std::map<std::string, std::string>& before,
                          const std::map<std::string, std::string>& after, int lines_max) {
  std::string out;
  int lines = 0;
  auto note = [&](const std::string& text) {
    if (lines++ < lines_max) out += text + "\n";
  };
  for (const auto& [path, line] : before) {
    const auto found = after.find(path);
    if (found == after.end()) {
      note("lost: " + path + " (" + line + ")");
    } else if (found->second != line) {
      note("changed: " + path + "\n  before: " + line + "\n  after:  " + found->second);
    }
  }
  for (const auto& [path, line] : after) {
    if (before.find(path) == before.end()) note("appeared: " + path + " (" + line + ")");
  }
  if (lines > lines_max) out += std::to_string(lines - lines_max) + " more differences\n";
  return out;
}

}  // namespace cascadefs::mounttest
