// fs_bench.cc: the filesystem side by side: cascadefs, two FUSE passthroughs and the native
// directory, the same workloads in one run.
//
// Targets (--targets, in the order given):
//   - `cascadefs`: ours over /dev/fuse, `cascadefs mount --transport dev-fuse --store <fresh
//     store> MNT` (daemonizes, returns once the mount answers), unmounted by `cascadefs umount
//     MNT`. The binary: --cascadefs, else build/release/tools/cascadefs relative to the working
//     directory, else ../tools/cascadefs next to this binary.
//   - `cascadefs-uring`: the same over the kernel's FUSE-over-io_uring queues (`--transport
//     io-uring`). Needs root: the fuse module's enable_uring parameter is turned on for the
//     target's run and put back as it was afterwards.
//   - `cascadefs-vlog`: `cascadefs` with `--value-log` (chunks in the engine's value log).
//   - `bindfs`: Debian's bindfs over a directory, with `-o big_writes` (without it, it sends
//     4 KiB writes). Unmounted by `fusermount3 -u`.
//   - `passthrough_ll`: libfuse3's low-level passthrough example, built by bench/CMakeLists.txt
//     from the source Debian's libfuse3-dev ships, `passthrough_ll -o source=DIR MNT` with its
//     defaults (cache=auto, 1 s timeouts, no writeback cache). Found next to this binary, or
//     --passthrough-ll.
//   - `native`: a plain directory on the same disk: the limit.
// Each target works under --dir/<target>/ (default /var/tmp/cfs_fs_bench: a real disk; /tmp
// may be tmpfs elsewhere), deleted after its workloads.
//
// Workloads (--workloads, default all), one JSON row each {"system", "workload", <metric>,
// extras}; MB means MiB here:
//   - `seqwrite`: --size-mb MiB in 1 MiB writes to a new file, fsync at the end, timed from
//     open to the end of close -> mb_per_sec. The data is incompressible and no 4 KiB block
//     repeats (each starts with its index), so neither compression nor dedup flatters anyone.
//   - `seqread`: cold (remount the target, sync, drop the page cache), 1 MiB reads of that file
//     to EOF, every 4 KiB block's index checked -> mb_per_sec.
//   - `randread`: cold again; --threads threads (8) of 4 KiB preads at random aligned offsets
//     of that file for --randread-seconds, O_DIRECT where the target accepts it (else buffered
//     with POSIX_FADV_RANDOM; the row says which), every block's index checked -> ops_per_sec.
//   - `metadata`: create (open O_CREAT|O_EXCL + close), stat, then unlink 10,000 empty files
//     spread over 100 directories, one thread -> ops_per_sec = 30,000 / seconds of the three
//     phases; each phase's rate as an extra.
//   - `untar`: a tarball of /usr/include (made once as --dir/usr_include.tar) extracted by tar
//     into the target, then syncfs -> mb_per_sec of tarball bytes.
// Without root, the page cache cannot be dropped: rows then carry "cold": false and a warning
// goes to stderr.
//
// Mounts are always undone: RAII (Mount's destructor) on every return path, and on SIGINT,
// SIGTERM and SIGHUP a handler that only makes async-signal-safe calls: umount2(MNT_DETACH) of
// every mount point in a fixed table, else fork+execv of fusermount3 -uz; then it re-raises.
//
// Output: with --json only JSON rows go to stdout (one per line, as each finishes); progress
// and the summary table go to stderr. Errors: a target that cannot be set up or a workload
// that fails ends the run with one line `fs_bench: <target>: <cause>` and exit status 1 (rows
// already printed stay valid); every target is checked for its binary before anything runs.
//
// Thread safety: the main thread drives everything; randread's threads share only atomics and
// an error slot behind a mutex.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
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
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "engine/assert.h"
#include "engine/status.h"

extern char** environ;

namespace cascadefs::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kBlockBytes = 4096;               // randread's unit; O_DIRECT alignment
constexpr std::size_t kIoBytes = std::size_t{1} << 20;  // seqwrite/seqread request size
constexpr std::uint64_t kSizeMbMax = std::uint64_t{1} << 20;
constexpr std::uint32_t kThreadsMax = 256;
constexpr std::uint32_t kSecondsMax = 3600;
constexpr std::uint32_t kMetadataDirs = 100;
constexpr std::uint32_t kMetadataFiles = 10000;
constexpr int kMountWaitMs = 60000;     // a mount must answer within this
constexpr int kCommandTimeoutS = 600;   // mount, umount, tar (tar of 140 MB on a slow FUSE)
constexpr std::size_t kMountSlots = 8;  // the signal handler's table of live mount points
static_assert(kIoBytes % kBlockBytes == 0);

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}
double Round(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}
std::string ErrnoText(int err) { return std::strerror(err); }

// ---- Signal-safe unmount table -------------------------------------------------------------

// Mount points live while mounted; written by the main thread only, read by the handler.
char g_mount_points[kMountSlots][PATH_MAX];
std::atomic<bool> g_mount_live[kMountSlots];
char g_fusermount_path[PATH_MAX];  // resolved at start, so the handler need not search PATH

void OnFatalSignal(int sig) {
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

std::size_t RegisterMount(const std::string& mount_point) {
  for (std::size_t i = 0; i < kMountSlots; ++i) {
    if (g_mount_live[i].load()) continue;
    std::snprintf(g_mount_points[i], PATH_MAX, "%s", mount_point.c_str());
    g_mount_live[i].store(true);
    return i;
  }
  CFS_ASSERT(false);  // more live mounts than slots: one per target at a time
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

// ---- Subprocesses and mounts ---------------------------------------------------------------

// Runs argv with stdout and stderr appended to `log_path`; returns OK on exit status 0, else a
// Status with the status and the log's last line.
Status RunCommand(const std::vector<std::string>& args, const std::string& log_path) {
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
  const auto deadline = Clock::now() + std::chrono::seconds(kCommandTimeoutS);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return Status::IOError(fmt::format("{}: killed after {} s", args[0], kCommandTimeoutS));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::OK();
  std::ifstream log(log_path);
  std::string line, last;
  while (std::getline(log, line)) {
    if (!line.empty()) last = line;
  }
  return Status::IOError(fmt::format("{} failed ({} {}): {}", args[0],
                                     WIFEXITED(status) ? "exit status" : "signal",
                                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                                     last.empty() ? "no output" : last));
}

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

struct Binaries {
  std::string cascadefs;
  std::string passthrough_ll;
  std::string bindfs;
  std::string tar;
};

// One target: where its workloads run, and how it mounts. Unmounts in its destructor.
class Target {
 public:
  Target(std::string name, std::string base_dir, const Binaries& binaries)
      : name_(std::move(name)), dir_(std::move(base_dir) + "/" + name_), binaries_(binaries) {
    log_path_ = dir_ + ".log";
  }
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;
  ~Target() {
    const Status status = Unmount();
    if (!status.ok()) {
      fmt::print(stderr, "fs_bench: {}: {}\n", name_, std::string(status.message()));
    }
    std::error_code ec;
    if (!ListedInMounts(mount_point())) std::filesystem::remove_all(dir_, ec);
  }

  const std::string& name() const { return name_; }
  bool native() const { return name_ == "native"; }
  bool cascadefs() const {
    return name_ == "cascadefs" || name_ == "cascadefs-uring" || name_ == "cascadefs-vlog";
  }
  std::string mount_point() const { return dir_ + "/mnt"; }
  // The backing directory (passthroughs), the store (cascadefs), the directory itself (native).
  std::string backing() const { return dir_ + (cascadefs() ? "/store" : "/src"); }
  std::string root() const { return native() ? backing() : mount_point(); }

  // Fresh directories, then the mount.
  Status Setup() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    if (ec) return Status::IOError(fmt::format("{}: remove: {}", dir_, ec.message()));
    std::filesystem::create_directories(backing(), ec);
    if (!ec && !native()) std::filesystem::create_directories(mount_point(), ec);
    if (ec) return Status::IOError(fmt::format("{}: mkdir: {}", dir_, ec.message()));
    std::filesystem::remove(log_path_, ec);
    return Mount();
  }

  Status Mount() {
    if (native() || mounted_) return Status::OK();
    std::vector<std::string> args;
    if (cascadefs()) {
      const char* transport = name_ == "cascadefs-uring" ? "io-uring" : "dev-fuse";
      args = {binaries_.cascadefs, "mount",   "--transport", transport,
              "--store",           backing(), mount_point()};
      if (name_ == "cascadefs-vlog") args.insert(args.end() - 1, "--value-log");
    } else if (name_ == "bindfs") {
      args = {binaries_.bindfs, "-o", "big_writes", backing(), mount_point()};
    } else {
      args = {binaries_.passthrough_ll, "-o", "source=" + backing(), mount_point()};
    }
    slot_ = RegisterMount(mount_point());
    mounted_ = true;
    CFS_RETURN_IF_ERROR(RunCommand(args, log_path_));
    const auto deadline = Clock::now() + std::chrono::milliseconds(kMountWaitMs);
    while (!MountAnswers(mount_point())) {
      if (Clock::now() > deadline) {
        return Status::IOError(fmt::format("{}: not mounted {} ms after {} returned", mount_point(),
                                           kMountWaitMs, args[0]));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return Status::OK();
  }

  Status Unmount() {
    if (native() || !mounted_) return Status::OK();
    Status status;
    if (cascadefs()) {
      status = RunCommand({binaries_.cascadefs, "umount", mount_point()}, log_path_);
    } else {
      status = RunCommand({"fusermount3", "-u", mount_point()}, log_path_);
    }
    if (ListedInMounts(mount_point())) {
      (void)RunCommand({"fusermount3", "-uz", mount_point()}, log_path_);
      if (status.ok()) status = Status::IOError(mount_point() + ": still mounted after unmount");
    }
    mounted_ = false;
    g_mount_live[slot_].store(false);
    return status;
  }

  Status Remount() {
    CFS_RETURN_IF_ERROR(Unmount());
    return Mount();
  }

 private:
  std::string name_;
  std::string dir_;
  std::string log_path_;
  const Binaries& binaries_;
  bool mounted_ = false;
  std::size_t slot_ = 0;
};

// ---- Workload helpers ----------------------------------------------------------------------

struct Config {
  std::vector<std::string> targets{"cascadefs", "bindfs", "passthrough_ll", "native"};
  // seqread and randread read the file seqwrite leaves: they need it in the list.
  std::vector<std::string> workloads{"seqwrite", "seqread", "randread", "metadata", "untar"};
  bool json = false;
  std::string dir = "/var/tmp/cfs_fs_bench";
  std::uint64_t size_mb = 1024;
  std::uint32_t threads = 8;
  std::uint32_t randread_seconds = 10;
  std::string cascadefs;
  std::string passthrough_ll;
};

using Row = nlohmann::ordered_json;

Row NewRow(const Target& target, std::string_view workload) {
  Row row;
  row["system"] = target.name();
  row["workload"] = std::string(workload);
  return row;
}

// Sync, then drop the page cache (root only). False when it could not be dropped.
bool DropCaches() {
  sync();
  const int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = write(fd, "3", 1) == 1;
  close(fd);
  return ok;
}

// Cold start for a read workload: remount, drop caches. Sets row["cold"].
Status MakeCold(Target& target, Row& row) {
  CFS_RETURN_IF_ERROR(target.Remount());
  const bool dropped = DropCaches();
  if (!dropped) {
    fmt::print(stderr, "fs_bench: cannot drop the page cache (needs root): {} reads are warm\n",
               target.name());
  }
  row["cold"] = dropped;
  return Status::OK();
}

// The 1 MiB source buffer: random bytes; each 4 KiB block gets its index in the file stamped
// into its first 8 bytes as it is written.
std::unique_ptr<std::uint64_t[]> RandomBuffer() {
  auto words = std::make_unique<std::uint64_t[]>(kIoBytes / 8);
  std::uint64_t state = 0x9E3779B97F4A7C15ULL;
  for (std::size_t i = 0; i < kIoBytes / 8; ++i) {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    words[i] = state * 0x2545F4914F6CDD1DULL;
  }
  return words;
}
constexpr std::size_t kWordsPerBlock = kBlockBytes / 8;
// The stamp of block `index`: its index, mixed so a block of zeros never matches.
std::uint64_t Stamp(std::uint64_t index) { return (index + 1) * 0x9E3779B97F4A7C15ULL; }

constexpr std::string_view kSeqFile = "seq.dat";

Status SeqWrite(const Config& config, Target& target, Row& row) {
  const std::string path = target.root() + "/" + std::string(kSeqFile);
  auto buffer = RandomBuffer();
  const std::uint64_t total_bytes = config.size_mb * kIoBytes;
  const auto start = Clock::now();
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, path + ": create");
  std::uint64_t block = 0;
  for (std::uint64_t offset = 0; offset < total_bytes; offset += kIoBytes) {
    for (std::size_t b = 0; b < kIoBytes / kBlockBytes; ++b)
      buffer[b * kWordsPerBlock] = Stamp(block++);
    const ssize_t n = write(fd, buffer.get(), kIoBytes);
    if (n != static_cast<ssize_t>(kIoBytes)) {
      const int err = n < 0 ? errno : EIO;
      close(fd);
      return Status::FromErrno(err, fmt::format("{}: write at {}", path, offset));
    }
  }
  if (fsync(fd) != 0) {
    const int err = errno;
    close(fd);
    return Status::FromErrno(err, path + ": fsync");
  }
  if (close(fd) != 0) return Status::FromErrno(errno, path + ": close");
  const double seconds = Seconds(start);
  row["mb_per_sec"] = Round(static_cast<double>(config.size_mb) / seconds, 1);
  row["bytes"] = total_bytes;
  row["seconds"] = Round(seconds, 3);
  return Status::OK();
}

Status SeqRead(const Config& config, Target& target, Row& row) {
  CFS_RETURN_IF_ERROR(MakeCold(target, row));
  const std::string path = target.root() + "/" + std::string(kSeqFile);
  auto buffer = std::make_unique<std::uint64_t[]>(kIoBytes / 8);
  const auto start = Clock::now();
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, path + ": open");
  std::uint64_t total_bytes = 0;
  std::uint64_t block = 0;
  Status status;
  while (status.ok()) {
    const ssize_t n = read(fd, buffer.get(), kIoBytes);
    if (n < 0) {
      status = Status::FromErrno(errno, fmt::format("{}: read at {}", path, total_bytes));
      break;
    }
    if (n == 0) break;
    if (n % kBlockBytes != 0) {
      status = Status::IOError(fmt::format("{}: read of {} bytes at {}", path, n, total_bytes));
      break;
    }
    for (ssize_t b = 0; b < n / static_cast<ssize_t>(kBlockBytes); ++b) {
      if (buffer[b * kWordsPerBlock] != Stamp(block)) {
        status = Status::Corruption(fmt::format("{}: block {} reads wrong data", path, block));
        break;
      }
      block++;
    }
    total_bytes += static_cast<std::uint64_t>(n);
  }
  close(fd);
  CFS_RETURN_IF_ERROR(status);
  const double seconds = Seconds(start);
  if (total_bytes != config.size_mb * kIoBytes) {
    return Status::Corruption(
        fmt::format("{}: read {} bytes, wrote {}", path, total_bytes, config.size_mb * kIoBytes));
  }
  row["mb_per_sec"] = Round(static_cast<double>(config.size_mb) / seconds, 1);
  row["bytes"] = total_bytes;
  row["seconds"] = Round(seconds, 3);
  return Status::OK();
}

Status RandRead(const Config& config, Target& target, Row& row) {
  CFS_RETURN_IF_ERROR(MakeCold(target, row));
  const std::string path = target.root() + "/" + std::string(kSeqFile);
  bool direct = true;
  int fd = open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0 && errno == EINVAL) {
    direct = false;
    fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) (void)posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
  }
  if (fd < 0) return Status::FromErrno(errno, path + ": open");
  const std::uint64_t blocks = config.size_mb * (kIoBytes / kBlockBytes);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> ops{0};
  std::mutex error_mutex;
  std::string error;  // GUARDED_BY(error_mutex)
  auto reader = [&](std::uint32_t index) {
    void* raw = std::aligned_alloc(kBlockBytes, kBlockBytes);
    CFS_ASSERT(raw != nullptr);
    auto* words = static_cast<std::uint64_t*>(raw);
    std::uint64_t state = 0x632BE59BD9B4E019ULL * (index + 1);
    std::uint64_t done = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      state ^= state >> 12;
      state ^= state << 25;
      state ^= state >> 27;
      const std::uint64_t block = (state * 0x2545F4914F6CDD1DULL) % blocks;
      const ssize_t n = pread(fd, raw, kBlockBytes, static_cast<off_t>(block * kBlockBytes));
      if (n != static_cast<ssize_t>(kBlockBytes) || words[0] != Stamp(block)) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (error.empty()) {
          error = n < 0 ? fmt::format("{}: pread: {}", path, ErrnoText(errno))
                        : fmt::format("{}: block {} reads wrong data ({} bytes)", path, block, n);
        }
        stop = true;
        break;
      }
      done++;
    }
    ops.fetch_add(done);
    std::free(raw);
  };
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (std::uint32_t i = 0; i < config.threads; ++i) threads.emplace_back(reader, i);
  const auto deadline = start + std::chrono::seconds(config.randread_seconds);
  while (!stop.load() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop = true;
  for (std::thread& thread : threads) thread.join();
  const double seconds = Seconds(start);
  close(fd);
  if (!error.empty()) return Status::IOError(error);
  row["ops_per_sec"] = Round(static_cast<double>(ops.load()) / seconds, 1);
  row["threads"] = config.threads;
  row["o_direct"] = direct;
  row["ops"] = ops.load();
  row["seconds"] = Round(seconds, 3);
  row["mean_latency_us"] =
      ops.load() == 0 ? 0.0
                      : Round(seconds * 1e6 * config.threads / static_cast<double>(ops.load()), 1);
  return Status::OK();
}

Status Metadata(const Config&, Target& target, Row& row) {
  const std::string base = target.root() + "/meta";
  if (mkdir(base.c_str(), 0755) != 0) return Status::FromErrno(errno, base + ": mkdir");
  for (std::uint32_t d = 0; d < kMetadataDirs; ++d) {
    const std::string dir = fmt::format("{}/d{:02}", base, d);
    if (mkdir(dir.c_str(), 0755) != 0) return Status::FromErrno(errno, dir + ": mkdir");
  }
  std::vector<std::string> paths;
  paths.reserve(kMetadataFiles);
  for (std::uint32_t i = 0; i < kMetadataFiles; ++i) {
    paths.push_back(fmt::format("{}/d{:02}/file{:05}", base, i % kMetadataDirs, i));
  }
  auto start = Clock::now();
  for (const std::string& path : paths) {
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return Status::FromErrno(errno, path + ": create");
    if (close(fd) != 0) return Status::FromErrno(errno, path + ": close");
  }
  const double create_s = Seconds(start);
  start = Clock::now();
  for (const std::string& path : paths) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, path + ": stat");
    if (!S_ISREG(st.st_mode) || st.st_size != 0) return Status::Corruption(path + ": wrong stat");
  }
  const double stat_s = Seconds(start);
  start = Clock::now();
  for (const std::string& path : paths) {
    if (unlink(path.c_str()) != 0) return Status::FromErrno(errno, path + ": unlink");
  }
  const double unlink_s = Seconds(start);
  for (std::uint32_t d = 0; d < kMetadataDirs; ++d) {
    const std::string dir = fmt::format("{}/d{:02}", base, d);
    if (rmdir(dir.c_str()) != 0) return Status::FromErrno(errno, dir + ": rmdir (not empty?)");
  }
  const double total_s = create_s + stat_s + unlink_s;
  const double files = kMetadataFiles;
  row["ops_per_sec"] = Round(3 * files / total_s, 1);
  row["create_ops_per_sec"] = Round(files / create_s, 1);
  row["stat_ops_per_sec"] = Round(files / stat_s, 1);
  row["unlink_ops_per_sec"] = Round(files / unlink_s, 1);
  row["files"] = kMetadataFiles;
  row["dirs"] = kMetadataDirs;
  row["seconds"] = Round(total_s, 3);
  return Status::OK();
}

// The tarball of /usr/include, made once under the base directory.
Status EnsureTarball(const Config& config, const Binaries& binaries, std::string* path) {
  *path = config.dir + "/usr_include.tar";
  struct stat st {};
  if (stat(path->c_str(), &st) == 0 && st.st_size > 0) return Status::OK();
  fmt::print(stderr, "fs_bench: making {} from /usr/include\n", *path);
  const std::string temp = *path + ".tmp";
  CFS_RETURN_IF_ERROR(
      RunCommand({binaries.tar, "-cf", temp, "-C", "/usr", "include"}, config.dir + "/tar.log"));
  if (rename(temp.c_str(), path->c_str()) != 0) return Status::FromErrno(errno, *path);
  return Status::OK();
}

Status Untar(const Config& config, const Binaries& binaries, const std::string& tarball,
             Target& target, Row& row) {
  struct stat st {};
  if (stat(tarball.c_str(), &st) != 0) return Status::FromErrno(errno, tarball);
  const std::string dest = target.root() + "/untar";
  if (mkdir(dest.c_str(), 0755) != 0) return Status::FromErrno(errno, dest + ": mkdir");
  DropCaches();  // the tarball's pages, so every target reads it from the same state
  const auto start = Clock::now();
  CFS_RETURN_IF_ERROR(
      RunCommand({binaries.tar, "-xf", tarball, "-C", dest}, config.dir + "/tar.log"));
  const int fd = open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, dest);
  const int rc = syncfs(fd);
  const int err = errno;
  close(fd);
  if (rc != 0) return Status::FromErrno(err, dest + ": syncfs");
  const double seconds = Seconds(start);
  row["mb_per_sec"] =
      Round(static_cast<double>(st.st_size) / static_cast<double>(kIoBytes) / seconds, 1);
  row["bytes"] = static_cast<std::uint64_t>(st.st_size);
  row["seconds"] = Round(seconds, 3);
  return Status::OK();
}

// ---- Driver --------------------------------------------------------------------------------

std::string ExeDir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

// Finds every binary the chosen targets need; fails naming the first missing one.
Status FindBinaries(const Config& config, Binaries* binaries) {
  auto wants = [&](std::string_view name) {
    return std::find(config.targets.begin(), config.targets.end(), name) != config.targets.end();
  };
  binaries->tar = FindInPath("tar");
  if (binaries->tar.empty()) return Status::NotFound("untar: tar not found in PATH");
  if (wants("cascadefs") || wants("cascadefs-uring") || wants("cascadefs-vlog")) {
    std::vector<std::string> candidates;
    if (!config.cascadefs.empty()) {
      candidates = {config.cascadefs};
    } else {
      candidates = {"build/release/tools/cascadefs", ExeDir() + "/../tools/cascadefs"};
    }
    for (const std::string& candidate : candidates) {
      if (access(candidate.c_str(), X_OK) == 0) {
        binaries->cascadefs = std::filesystem::absolute(candidate).string();
        break;
      }
    }
    if (binaries->cascadefs.empty()) {
      return Status::NotFound("cascadefs: binary not found (tried " + candidates.front() +
                              "; build it with make bench, or pass --cascadefs PATH)");
    }
  }
  if (wants("bindfs")) {
    binaries->bindfs = FindInPath("bindfs");
    if (binaries->bindfs.empty()) {
      return Status::NotFound("bindfs: not found in PATH (make bench installs Debian's bindfs)");
    }
  }
  if (wants("passthrough_ll")) {
    const std::string candidate =
        config.passthrough_ll.empty() ? ExeDir() + "/passthrough_ll" : config.passthrough_ll;
    if (access(candidate.c_str(), X_OK) != 0) {
      return Status::NotFound("passthrough_ll: " + candidate +
                              " not found (bench/CMakeLists.txt builds it from libfuse3-dev's "
                              "examples; or pass --passthrough-ll PATH)");
    }
    binaries->passthrough_ll = candidate;
  }
  if (!wants("native") && FindInPath("fusermount3").empty()) {
    return Status::NotFound("fusermount3 not found in PATH (Debian package fuse3)");
  }
  return Status::OK();
}

void Emit(const Config& config, const Row& row, std::vector<Row>& rows) {
  rows.push_back(row);
  if (config.json) {
    std::printf("%s\n", row.dump().c_str());
    std::fflush(stdout);
  }
  fmt::print(stderr, "fs_bench: {}\n", row.dump());
}

// The fuse module's enable_uring parameter, on for the life of this object, then put back.
class UringParameterOn {
 public:
  Status Enable() {
    std::ifstream in(kPath);
    if (!(in >> old_value_)) {
      return Status::NotSupported(std::string(kPath) +
                                  ": missing (this kernel has no FUSE over io_uring)");
    }
    CFS_RETURN_IF_ERROR(Write("Y"));
    restore_ = true;
    return Status::OK();
  }
  ~UringParameterOn() {
    if (restore_) (void)Write(old_value_);
  }

 private:
  static constexpr const char* kPath = "/sys/module/fuse/parameters/enable_uring";
  static Status Write(const std::string& value) {
    std::ofstream out(kPath);
    out << value << '\n';
    out.close();
    if (!out) return Status::IOError(std::string(kPath) + ": cannot write (needs root)");
    return Status::OK();
  }
  std::string old_value_;
  bool restore_ = false;
};

// Runs every workload on one target; the target is unmounted and removed when it returns.
Status RunTarget(const Config& config, const Binaries& binaries, const std::string& tarball,
                 const std::string& name, std::vector<Row>& rows) {
  UringParameterOn uring_parameter;
  if (name == "cascadefs-uring") CFS_RETURN_IF_ERROR(uring_parameter.Enable());
  Target target(name, config.dir, binaries);
  fmt::print(stderr, "fs_bench: {}: mounting\n", name);
  CFS_RETURN_IF_ERROR(target.Setup());
  struct Workload {
    std::string_view name;
    std::function<Status(Row&)> run;
  };
  const std::vector<Workload> workloads = {
      {"seqwrite", [&](Row& row) { return SeqWrite(config, target, row); }},
      {"seqread", [&](Row& row) { return SeqRead(config, target, row); }},
      {"randread", [&](Row& row) { return RandRead(config, target, row); }},
      {"metadata", [&](Row& row) { return Metadata(config, target, row); }},
      {"untar", [&](Row& row) { return Untar(config, binaries, tarball, target, row); }},
  };
  for (const Workload& workload : workloads) {
    if (std::find(config.workloads.begin(), config.workloads.end(), workload.name) ==
        config.workloads.end()) {
      continue;
    }
    fmt::print(stderr, "fs_bench: {}: {}\n", name, workload.name);
    Row row = NewRow(target, workload.name);
    const Status status = workload.run(row);
    if (!status.ok()) {
      return Status::IOError(fmt::format("{}: {}", workload.name, std::string(status.message())));
    }
    Emit(config, row, rows);
  }
  return target.Unmount();
}

void PrintSummary(const std::vector<Row>& rows, const Config& config) {
  if (rows.empty()) return;
  std::FILE* out = config.json ? stderr : stdout;
  fmt::print(out, "{:<16} {:<10} {:>14} {:>12}\n", "system", "workload", "value", "unit");
  for (const Row& row : rows) {
    const bool ops = row.contains("ops_per_sec");
    fmt::print(out, "{:<16} {:<10} {:>14.1f} {:>12}\n", row["system"].get<std::string>(),
               row["workload"].get<std::string>(),
               ops ? row["ops_per_sec"].get<double>() : row["mb_per_sec"].get<double>(),
               ops ? "ops/s" : "MiB/s");
  }
}

}  // namespace
}  // namespace cascadefs::bench

int main(int argc, char** argv) {
  using namespace cascadefs::bench;
  Config config;
  CLI::App app{
      "fs_bench: cascadefs, bindfs, libfuse's passthrough_ll and the native directory, "
      "the same file workloads side by side"};
  app.add_option("--targets", config.targets, "Targets to run, comma separated, in this order")
      ->delimiter(',')
      ->check(CLI::IsMember(
          {"cascadefs", "cascadefs-uring", "cascadefs-vlog", "bindfs", "passthrough_ll", "native"}))
      ->capture_default_str();
  app.add_option("--workloads", config.workloads,
                 "Workloads to run, comma separated (seqread and randread need seqwrite)")
      ->delimiter(',')
      ->check(CLI::IsMember({"seqwrite", "seqread", "randread", "metadata", "untar"}))
      ->capture_default_str();
  app.add_flag("--json", config.json, "JSON rows on stdout; progress and the table on stderr");
  app.add_option("--dir", config.dir, "Base directory (a real disk)")->capture_default_str();
  app.add_option("--size-mb", config.size_mb, "seqwrite/seqread/randread file size in MiB")
      ->check(CLI::Range(std::uint64_t{1}, kSizeMbMax))
      ->capture_default_str();
  app.add_option("--threads", config.threads, "randread threads")
      ->check(CLI::Range(1u, kThreadsMax))
      ->capture_default_str();
  app.add_option("--randread-seconds", config.randread_seconds, "randread duration")
      ->check(CLI::Range(1u, kSecondsMax))
      ->capture_default_str();
  app.add_option("--cascadefs", config.cascadefs,
                 "cascadefs binary (default: build/release/tools/cascadefs)");
  app.add_option("--passthrough-ll", config.passthrough_ll,
                 "passthrough_ll binary (default: next to fs_bench)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  const bool reads =
      std::find_if(config.workloads.begin(), config.workloads.end(), [](const std::string& w) {
        return w == "seqread" || w == "randread";
      }) != config.workloads.end();
  if (reads && std::find(config.workloads.begin(), config.workloads.end(), "seqwrite") ==
                   config.workloads.end()) {
    std::fprintf(stderr, "fs_bench: seqread and randread read seqwrite's file: add seqwrite\n");
    return 2;
  }
  if (config.targets.empty()) {
    std::fprintf(stderr, "fs_bench: --targets needs at least one target\n");
    return 2;
  }
  cascadefs::Status status;
  Binaries binaries;
  std::string tarball;
  std::vector<Row> rows;
  std::error_code ec;
  std::filesystem::create_directories(config.dir, ec);
  if (ec) {
    std::fprintf(stderr, "fs_bench: %s: %s\n", config.dir.c_str(), ec.message().c_str());
    return 1;
  }
  config.dir = std::filesystem::canonical(config.dir).string();
  std::snprintf(g_fusermount_path, PATH_MAX, "%s", FindInPath("fusermount3").c_str());
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, OnFatalSignal);
  status = FindBinaries(config, &binaries);
  if (status.ok()) status = EnsureTarball(config, binaries, &tarball);
  for (const std::string& target : config.targets) {
    if (!status.ok()) break;
    status = RunTarget(config, binaries, tarball, target, rows);
    if (!status.ok()) {
      status = cascadefs::Status::IOError(target + ": " + std::string(status.message()));
    }
  }
  PrintSummary(rows, config);
  if (!status.ok()) {
    std::fprintf(stderr, "fs_bench: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
