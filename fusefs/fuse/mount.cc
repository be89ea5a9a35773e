// mount.cc: the two transports and the mount's lifecycle (fusefs/mount.h).
//
// libfuse3 is used for mounting and unmounting only (fuse_session_mount runs mount(2) as root
// and fusermount3 otherwise). Requests come either from the session's /dev/fuse descriptor,
// read by requests_in_flight serving loops on the io_uring scheduler, or from the kernel's
// FUSE-over-io_uring queues, as ring entries on the scheduler's rings (uring_queue_depth per
// possible CPU). Each loop or entry decodes and answers one request at a time with the one
// FuseHandler. docs/fusefs.md tells the whole flow, docs/fuse-io-uring.md the io_uring part.
#include "fusefs/mount.h"

#define FUSE_USE_VERSION 314
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <fuse3/fuse_lowlevel.h>

#include "cache/chunk_cache.h"
#include "engine/db.h"
#include "engine/io/scheduler.h"
#include "fs/filesystem.h"
#include "fuse/fuse_handler.h"
#include "fuse/fuse_uring.h"
#include "net/connection.h"
#include "sync/sync_agent.h"

namespace cascadefs::fusefs {
namespace {

// A store on a small filesystem gets a smaller engine, so that the space reserve (which holds
// a memtable flush, a compaction's output and the WAL's preallocated segments, so that deletes
// keep working when the store is full) leaves most of the space for data. From 4 GiB up the
// engine's defaults stand (64 MiB memtable, 16 MiB WAL segments, 64 MiB SSTs, 256 MiB level
// base) and the reserve is the configured one; below, each shrinks with the filesystem
// (memtable and SSTs 1/32 of it, WAL segments 1/64, reserve 1/8, none below its floor).
void SizeForStoreFilesystem(const std::string& store_dir, engine::Options* engine_options,
                            std::uint64_t* reserve_bytes) {
  struct statvfs vfs {};
  if (statvfs(store_dir.c_str(), &vfs) != 0) return;
  const std::uint64_t fs_bytes = std::uint64_t{vfs.f_blocks} * vfs.f_frsize;
  constexpr std::uint64_t kSmallFilesystemBytes = std::uint64_t{4} << 30;
  if (fs_bytes >= kSmallFilesystemBytes) return;
  constexpr std::uint64_t kWalBlock = 32 << 10;
  const std::uint64_t buffer = std::clamp<std::uint64_t>(fs_bytes / 32, 1 << 20, 64 << 20);
  const std::uint64_t segment =
      std::clamp<std::uint64_t>(fs_bytes / 64 / kWalBlock * kWalBlock, 256 << 10, 16 << 20);
  engine_options->write_buffer_size_bytes = buffer;
  engine_options->target_file_size_bytes = buffer;
  engine_options->max_bytes_for_level_base = 4 * buffer;
  engine_options->wal_segment_size_bytes = segment;
  const std::uint64_t floor = 3 * buffer + 2 * segment;
  *reserve_bytes = std::min(*reserve_bytes, std::max(floor, fs_bytes / 8));
}

// How long Start waits for the kernel's FUSE_INIT after mount(2).
constexpr int kInitTimeoutMs = 30'000;
// How long Start waits for the first request over io_uring once the entries are posted.
constexpr int kUringStartTimeoutMs = 10'000;
// /dev/fuse reads posted while the io_uring transport serves (FORGET, INTERRUPT and the
// requests sent before the queues were ready come this way).
constexpr std::uint32_t kDevFuseReadsBesideUring = 2;
// A REGISTER sent before the kernel has processed our INIT reply gets EAGAIN: retried after
// kRegisterRetryPause, at most kRegisterRetriesMax times.
constexpr auto kRegisterRetryPause = std::chrono::milliseconds(1);
constexpr int kRegisterRetriesMax = 2000;

constexpr const char* kEnableUringParameter = "/sys/module/fuse/parameters/enable_uring";

// Why the kernel cannot serve this mount over io_uring, or "" when it can (as far as can be
// known before the mount: INIT still has to offer it).
std::string UringUnavailableReason() {
  std::ifstream parameter(kEnableUringParameter);
  if (!parameter) {
    return std::string("this kernel has no FUSE over io_uring (no ") + kEnableUringParameter +
           "; it needs Linux >= 6.14)";
  }
  std::string value;
  parameter >> value;
  if (value != "Y" && value != "1") {
    return std::string("FUSE over io_uring is off in the kernel (") + kEnableUringParameter +
           " is " + value + "; as root: echo Y > " + kEnableUringParameter + ")";
  }
  return "";
}

// The kernel keeps one queue per possible CPU (qid = CPU index) and serves none until each
// has an entry: the highest index in /sys/devices/system/cpu/possible ("0-3", "0,2-5"), + 1.
std::uint32_t PossibleCpuCount() {
  std::ifstream possible("/sys/devices/system/cpu/possible");
  std::string ranges;
  std::uint32_t count = 0;
  if (possible >> ranges) {
    std::size_t start = 0;
    while (start < ranges.size()) {
      std::size_t end = ranges.find(',', start);
      if (end == std::string::npos) end = ranges.size();
      const std::string range = ranges.substr(start, end - start);
      const std::size_t dash = range.find('-');
      const std::string last = dash == std::string::npos ? range : range.substr(dash + 1);
      char* parse_end = nullptr;
      const unsigned long index = std::strtoul(last.c_str(), &parse_end, 10);
      if (parse_end != last.c_str()) count = std::max(count, static_cast<std::uint32_t>(index + 1));
      start = end + 1;
    }
  }
  if (count == 0) count = static_cast<std::uint32_t>(std::max(1L, sysconf(_SC_NPROCESSORS_CONF)));
  return count;
}

// libfuse's option parser takes "\," for a comma inside a value.
std::string EscapeOption(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

std::uint64_t ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size_pages = 0;
  unsigned long resident_pages = 0;
  const int got = std::fscanf(f, "%lu %lu", &size_pages, &resident_pages);
  std::fclose(f);
  if (got != 2) return 0;
  return std::uint64_t{resident_pages} * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

// The chunk cache's size: what was asked, but never more than an eighth of the space its file
// system has free (counting what the cache file already holds), so the cache cannot take the
// room the store needs; a power of two of MiB, so small changes of free space keep the same
// size (another size reformats the file); 0 below 4 MiB (too small to hold a working set).
std::uint64_t ChunkCacheBytes(std::uint64_t asked, const std::string& path) {
  constexpr std::uint64_t kMiB = 1 << 20;
  constexpr std::uint64_t kSmallest = 4 * kMiB;
  if (asked == 0) return 0;
  const std::filesystem::path file(path);
  std::error_code ec;
  const std::filesystem::space_info space = std::filesystem::space(file.parent_path(), ec);
  if (ec) return 0;
  std::uint64_t held = 0;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) held = static_cast<std::uint64_t>(st.st_blocks) * 512;
  const std::uint64_t limit = std::min(asked, (space.available + held) / 8);
  std::uint64_t size = kSmallest;
  if (limit < size) return 0;
  while (size * 2 <= limit) size *= 2;
  return size;
}

class MountImpl final : public Mount {
 public:
  explicit MountImpl(const MountOptions& options) : options_(options) {}
  ~MountImpl() override {
    Status status = Teardown();
    if (!status.ok()) Log("stopping: " + std::string(status.message()));
  }

  Status StartImpl();
  Status Unmount() override;
  Status Wait() override;
  MountStats stats() const override;
  Result<GcReport> CollectGarbage() override;

 private:
  void Log(std::string_view line) const {
    if (options_.log) options_.log(line);
  }
  io::Task<void> ServeLoop();
  void SendReply(std::uint64_t unique, const FuseReply& reply);
  void SpawnServeLoops(std::uint32_t count);
  // Sets the mount's read-ahead (MountOptions::read_ahead_kb) once the kernel took INIT.
  void SetReadAhead();
  // Chooses the transport once INIT is answered; on io_uring, posts the ring entries and waits
  // for the first request through them.
  Status StartUring(std::string reason_unavailable);
  io::Task<void> UringEntryLoop(std::uint16_t qid);
  void LoopExited();
  // The periodic gc cycles (MountOptions::gc_interval_sec), until Teardown.
  void GcLoop();
  Result<GcReport> RunGc(GcOptions options);
  // Undoes whatever Start did, in reverse order. Idempotent.
  Status Teardown();
  // FUSE_NOTIFY_INVAL_ENTRY: the kernel forgets `name` in `parent` (a synced change).
  void NotifyInvalEntry(std::uint64_t parent, std::string_view name);

  MountOptions options_;
  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<engine::DB> db_;
  std::unique_ptr<cache::ChunkCache> chunk_cache_;  // null when MountOptions says none
  std::FILE* chunk_trace_ = nullptr;  // MountOptions::chunk_trace_path; closed by Teardown
  std::mutex chunk_trace_mutex_;      // one line at a time
  std::unique_ptr<Filesystem> fs_;
  // The synced mount's agent (MountOptions::sync_hub), set once started; stopped before fs_
  // goes. on_change reads it from IO threads.
  std::unique_ptr<sync::SyncAgent> sync_agent_;
  std::atomic<sync::SyncAgent*> sync_agent_ptr_{nullptr};
  sync::SyncAgentOptions sync_options_;
  std::unique_ptr<FuseHandler> handler_;
  fuse_session* session_ = nullptr;
  int fd_ = -1;

  mutable std::mutex mutex_;
  std::condition_variable loops_done_;
  std::uint32_t loops_running_ = 0;     // /dev/fuse loops and ring entries; GUARDED_BY(mutex_)
  bool torn_down_ = false;              // GUARDED_BY(mutex_)
  std::uint32_t gc_running_ = 0;        // gc cycles using fs_; GUARDED_BY(mutex_)
  std::condition_variable gc_changed_;  // a cycle ended, or the loop must stop
  std::thread gc_thread_;
  std::string gc_last_error_;             // GUARDED_BY(mutex_)
  std::atomic<bool> gc_stopping_{false};  // Teardown began: a running cycle stops

  // The CPU each IO thread is pinned to (-1: not pinned); empty when pinning failed.
  std::vector<int> io_thread_cpus_;
  std::atomic<bool> uring_serving_{false};
  std::atomic<std::uint32_t> read_ahead_set_kb_{0};  // 0: the kernel's value stays
  std::atomic<std::uint64_t> uring_requests_{0};
  std::atomic<int> uring_entry_error_{0};  // the first errno an entry failed with
};

Status MountImpl::StartImpl() {
  // The mount point: a directory, and not a dead mount left by a killed daemon.
  struct stat st {};
  if (stat(options_.mountpoint.c_str(), &st) != 0) {
    const int e = errno;
    if (e == ENOTCONN) {
      return Status::IOError(options_.mountpoint +
                             ": a dead mount is left here (Transport endpoint is not "
                             "connected); clear it with `cascadefs umount " +
                             options_.mountpoint + "` or `fusermount3 -uz " + options_.mountpoint +
                             "`");
    }
    return Status::FromErrno(e, options_.mountpoint);
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(options_.mountpoint + ": not a directory");
  }
  std::error_code ec;
  options_.mountpoint = std::filesystem::canonical(options_.mountpoint, ec).string();
  if (ec) return Status::IOError(options_.mountpoint + ": " + ec.message());
  std::filesystem::create_directories(options_.store_dir, ec);
  if (ec) return Status::IOError(options_.store_dir + ": " + ec.message());
  options_.store_dir = std::filesystem::canonical(options_.store_dir, ec).string();
  if (ec) return Status::IOError(options_.store_dir + ": " + ec.message());

  std::string uring_unavailable;
  if (options_.transport != Transport::kDevFuse) {
    uring_unavailable = UringUnavailableReason();
    if (!uring_unavailable.empty() && options_.transport == Transport::kIoUring) {
      return Status::NotSupported(options_.mountpoint +
                                  ": --transport io-uring: " + uring_unavailable);
    }
  } else {
    uring_unavailable = "--transport dev-fuse";
  }

  if (!options_.sync_hub.empty()) {
    Result<net::HostPort> hub = net::ParseHostPort(options_.sync_hub);
    if (!hub.ok()) return hub.status().WithContext("--sync");
    if (options_.sync_key_file.empty()) {
      return Status::InvalidArgument("--sync " + options_.sync_hub + ": needs --key FILE");
    }
    Result<net::PresharedKey> key = net::LoadKeyFile(options_.sync_key_file);
    if (!key.ok()) return key.status();
    if (!net::IsValidNamespace(options_.sync_namespace)) {
      return Status::InvalidArgument("--namespace '" + options_.sync_namespace +
                                     "': 1 to 64 of the characters A-Z a-z 0-9 . _ -");
    }
    sync_options_.hub = hub.value();
    sync_options_.key = key.value();
    sync_options_.ns = options_.sync_namespace;
    sync_options_.receive_only = options_.sync_receive_only;
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "unknown");
    sync_options_.host = host;
    sync_options_.owner_uid = geteuid();
    sync_options_.owner_gid = getegid();
    sync_options_.log = options_.log;
    sync_options_.invalidate_entry = [this](std::uint64_t parent, std::string_view name) {
      NotifyInvalEntry(parent, name);
    };
  }

  io::SchedulerOptions scheduler_options;
  scheduler_options.log = options_.log;
  // The ring commands of FUSE over io_uring carry 24 bytes: 128-byte SQEs.
  scheduler_options.big_sqes = uring_unavailable.empty();
  Result<std::unique_ptr<io::Scheduler>> scheduler = io::Scheduler::Create(scheduler_options);
  if (!scheduler.ok()) return scheduler.status();
  scheduler_ = std::move(scheduler.value());
  if (uring_unavailable.empty() && scheduler_->backend() != io::Backend::kIoUring) {
    uring_unavailable = "the kernel refuses io_uring to this process";
    if (options_.transport == Transport::kIoUring) {
      return Status::NotSupported(options_.mountpoint +
                                  ": --transport io-uring: " + uring_unavailable);
    }
  }

  // IO thread i runs on CPU i, with the io_uring workers it starts (they inherit its CPUs):
  // a request is then read, handled and answered on one CPU. Measured here on /dev/fuse:
  // metadata +25%, randread +5-15%; the io_uring transport needs it most (fuse-io-uring.md).
  Result<std::vector<int>> cpus = scheduler_->PinIoThreadsToCpus();
  if (cpus.ok()) {
    io_thread_cpus_ = std::move(cpus).value();
  } else {
    Log("IO threads left unpinned: " + std::string(cpus.status().message()));
  }

  engine::Options engine_options;
  engine_options.scheduler = scheduler_.get();
  engine_options.create_if_missing = true;
  engine_options.block_cache_size_bytes = options_.block_cache_bytes;
  engine_options.info_log = options_.log;
  // Chunk values are >= 512 bytes but for the smallest text chunks and nodes.
  engine_options.min_blob_size_bytes = options_.value_log ? 512 : 0;
  SizeForStoreFilesystem(options_.store_dir, &engine_options, &options_.space_reserve_bytes);
  Result<std::unique_ptr<engine::DB>> db = engine::DB::Open(engine_options, options_.store_dir);
  if (!db.ok()) {
    if (db.status().IsBusy()) {
      return Status::Busy(options_.store_dir + ": the store is in use (mounted elsewhere?)");
    }
    return db.status().WithContext(options_.store_dir);
  }
  db_ = std::move(db.value());

  const std::string cache_path =
      options_.chunk_cache_path.empty() ? options_.store_dir + "/cache" : options_.chunk_cache_path;
  const std::uint64_t cache_bytes = ChunkCacheBytes(options_.chunk_cache_bytes, cache_path);
  if (options_.chunk_cache_bytes > 0 && cache_bytes == 0) {
    Log("chunk cache off: too little free space beside " + cache_path);
  }
  if (cache_bytes > 0) {
    const std::string& path = cache_path;
    cache::ChunkCacheOptions cache_options;
    cache_options.capacity_bytes = cache_bytes;
    Result<std::unique_ptr<cache::ChunkCache>> opened =
        cache::ChunkCache::Open(path, cache_options);
    if (!opened.ok()) return opened.status().WithContext("chunk cache " + path);
    chunk_cache_ = std::move(opened).value();
    const cache::ChunkCacheStats warm = chunk_cache_->stats();
    if (warm.warm_restart_entries > 0 || warm.damaged_entries_dropped > 0) {
      Log("chunk cache " + path + ": " + std::to_string(warm.warm_restart_entries) +
          " chunks kept from the last run, " + std::to_string(warm.damaged_entries_dropped) +
          " damaged entries dropped");
    }
  }

  FsOptions fs_options;
  fs_options.chunk_cache = chunk_cache_.get();
  if (!options_.chunk_trace_path.empty()) {
    chunk_trace_ = std::fopen(options_.chunk_trace_path.c_str(), "a");
    if (chunk_trace_ == nullptr) {
      return Status::FromErrno(errno, options_.chunk_trace_path + ": the chunk trace");
    }
    fs_options.chunk_read_trace = [this](const ChunkName& name, std::size_t length) {
      std::lock_guard lock(chunk_trace_mutex_);
      std::fprintf(chunk_trace_, "%s %zu\n", name.ToHex().c_str(), length);
    };
  }
  fs_options.dirty_bytes_per_file_max = options_.dirty_bytes_per_file_max;
  fs_options.dirty_bytes_max = options_.dirty_bytes_max;
  fs_options.space_reserve_bytes = options_.space_reserve_bytes;
  fs_options.store_dir = options_.store_dir;
  fs_options.log = options_.log;
  if (!options_.sync_hub.empty()) {
    fs_options.on_change = [this] {
      if (sync::SyncAgent* agent = sync_agent_ptr_.load(std::memory_order_acquire)) {
        agent->NotifyChange();
      }
    };
  }
  Result<std::unique_ptr<Filesystem>> fs =
      scheduler_->BlockOn(Filesystem::Open(db_.get(), fs_options));
  if (!fs.ok()) return fs.status().WithContext(options_.store_dir);
  fs_ = std::move(fs.value());

  FuseHandlerOptions handler_options;
  handler_options.max_write_bytes = options_.max_write_bytes;
  handler_options.entry_timeout_sec = options_.entry_timeout_sec;
  handler_options.attr_timeout_sec = options_.attr_timeout_sec;
  handler_options.log = options_.log;
  handler_options.offer_io_uring = uring_unavailable.empty();
  handler_ = std::make_unique<FuseHandler>(fs_.get(), handler_options);

  std::string mount_options =
      "fsname=" + EscapeOption(options_.store_dir) + ",subtype=cascadefs,default_permissions";
  if (options_.allow_other) mount_options += ",allow_other";
  if (options_.read_only) mount_options += ",ro";
  std::string arg0 = "cascadefs";
  std::string arg1 = "-o";
  char* argv[] = {arg0.data(), arg1.data(), mount_options.data(), nullptr};
  fuse_args args = FUSE_ARGS_INIT(3, argv);
  fuse_lowlevel_ops no_ops{};  // libfuse only mounts; it never dispatches a request
  session_ = fuse_session_new(&args, &no_ops, sizeof(no_ops), nullptr);
  fuse_opt_free_args(&args);  // parsing replaced `args` with a copy libfuse allocated
  if (session_ == nullptr) {
    return Status::InvalidArgument(options_.mountpoint +
                                   ": mount options refused: " + mount_options);
  }
  if (fuse_session_mount(session_, options_.mountpoint.c_str()) != 0) {
    fuse_session_destroy(session_);
    session_ = nullptr;
    return Status::IOError(options_.mountpoint + ": mount failed (see the line above)");
  }
  fd_ = fuse_session_fd(session_);

  // Before INIT it is not known which transport serves: a few /dev/fuse reads first, the
  // rest once it is /dev/fuse.
  const std::uint32_t first_reads =
      uring_unavailable.empty() ? std::min(kDevFuseReadsBesideUring, options_.requests_in_flight)
                                : options_.requests_in_flight;
  SpawnServeLoops(first_reads);
  if (!handler_->WaitInitialized(kInitTimeoutMs)) {
    Status teardown = Teardown();
    if (!teardown.ok()) Log("stopping: " + std::string(teardown.message()));
    return Status::IOError(options_.mountpoint + ": the kernel never initialized the mount");
  }
  Status transport = StartUring(uring_unavailable);
  if (!transport.ok()) {
    Status teardown = Teardown();
    if (!teardown.ok()) Log("stopping: " + std::string(teardown.message()));
    return transport;
  }
  if (!uring_serving_.load()) SpawnServeLoops(options_.requests_in_flight - first_reads);
  SetReadAhead();
  if (options_.gc_interval_sec > 0) gc_thread_ = std::thread([this] { GcLoop(); });
  if (!options_.sync_hub.empty()) {
    Result<std::unique_ptr<sync::SyncAgent>> agent =
        sync::SyncAgent::Start(fs_.get(), db_.get(), scheduler_.get(), sync_options_);
    if (!agent.ok()) {
      Status teardown = Teardown();
      if (!teardown.ok()) Log("stopping: " + std::string(teardown.message()));
      return agent.status().WithContext("sync");
    }
    {
      std::lock_guard lock(mutex_);
      sync_agent_ = std::move(agent).value();
      sync_agent_ptr_.store(sync_agent_.get(), std::memory_order_release);
    }
    Log("syncing with " + options_.sync_hub + ", namespace " + options_.sync_namespace +
        (options_.sync_receive_only ? " (receive only)" : ""));
  }
  Log("mounted " + options_.store_dir + " on " + options_.mountpoint + " (transport " +
      (uring_serving_.load() ? "io-uring" : "dev-fuse") + ")");
  return Status::OK();
}

void MountImpl::SetReadAhead() {
  if (options_.read_ahead_kb == 0) return;
  // The mount's device names its bdi. stat also waits until the kernel has taken the INIT
  // reply (which lowers read-ahead to what the reply allows), so nothing undoes this write.
  struct stat mounted {};
  if (stat(options_.mountpoint.c_str(), &mounted) != 0) {
    Log("read-ahead left as the kernel set it: stat " + options_.mountpoint + ": " +
        std::strerror(errno));
    return;
  }
  const std::string path = "/sys/class/bdi/" + std::to_string(major(mounted.st_dev)) + ":" +
                           std::to_string(minor(mounted.st_dev)) + "/read_ahead_kb";
  std::ofstream out(path);
  out << options_.read_ahead_kb << '\n';
  out.close();
  if (!out) {
    Log("read-ahead left as the kernel set it: cannot write " + path + " (needs root)");
    return;
  }
  read_ahead_set_kb_.store(options_.read_ahead_kb, std::memory_order_relaxed);
  Log("read-ahead " + std::to_string(options_.read_ahead_kb) + " KiB (" + path + ")");
}

void MountImpl::SpawnServeLoops(std::uint32_t count) {
  {
    std::lock_guard lock(mutex_);
    loops_running_ += count;
  }
  for (std::uint32_t i = 0; i < count; ++i) scheduler_->Spawn(ServeLoop());
}

void MountImpl::LoopExited() {
  std::lock_guard lock(mutex_);
  if (--loops_running_ == 0) loops_done_.notify_all();
}

Status MountImpl::StartUring(std::string reason_unavailable) {
  if (reason_unavailable.empty() && (handler_->negotiated_flags() & kFuseOverIoUring) == 0) {
    reason_unavailable = "the kernel did not offer FUSE over io_uring in FUSE_INIT";
  }
  if (reason_unavailable.empty()) {
    const std::uint32_t queues = PossibleCpuCount();
    {
      std::lock_guard lock(mutex_);
      loops_running_ += queues * options_.uring_queue_depth;
    }
    // Queue q's entries go to the IO thread pinned to CPU q (StartImpl pinned them), so a
    // request is served on the CPU its caller runs on; a queue of a CPU no thread is pinned
    // to goes to thread q mod count.
    for (std::uint32_t qid = 0; qid < queues; ++qid) {
      std::uint32_t thread = qid % scheduler_->io_threads();
      const auto it =
          std::find(io_thread_cpus_.begin(), io_thread_cpus_.end(), static_cast<int>(qid));
      if (it != io_thread_cpus_.end()) {
        thread = static_cast<std::uint32_t>(it - io_thread_cpus_.begin());
      }
      for (std::uint32_t i = 0; i < options_.uring_queue_depth; ++i) {
        scheduler_->SpawnOn(thread, UringEntryLoop(static_cast<std::uint16_t>(qid)));
      }
    }
    // The kernel switches to the queues once every one holds an entry. STATFS is never cached
    // by the kernel: each call is a request, and the first one served by an entry proves it.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kUringStartTimeoutMs);
    while (uring_requests_.load() == 0 && uring_entry_error_.load() == 0 &&
           std::chrono::steady_clock::now() < deadline) {
      struct statvfs vfs {};
      (void)statvfs(options_.mountpoint.c_str(), &vfs);
      if (uring_requests_.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (uring_requests_.load() > 0) {
      uring_serving_.store(true);
      return Status::OK();
    }
    const int e = uring_entry_error_.load();
    reason_unavailable =
        e != 0 ? std::string(Status::FromErrno(e, "registering a ring entry").message())
               : "no request arrived through the io_uring queues";
    // Entries that did register keep serving whatever reaches them; /dev/fuse serves the rest.
  }
  if (options_.transport == Transport::kIoUring) {
    return Status::NotSupported(options_.mountpoint +
                                ": --transport io-uring: " + reason_unavailable);
  }
  if (options_.transport == Transport::kAuto) {
    Log("transport dev-fuse: " + reason_unavailable);
  }
  return Status::OK();
}

io::Task<void> MountImpl::UringEntryLoop(std::uint16_t qid) {
  // The kernel fills the header and the payload buffer while the command is pending; both
  // stay put until the entry ends (the frame owns them).
  const std::size_t payload_bytes =
      std::max<std::size_t>(options_.max_write_bytes, 8192) + kRequestHeaderBytesMax;
  auto header = std::make_unique<FuseUringReqHeader>();
  std::vector<char> buffer(kFuseUringRequestPrefixBytes + payload_bytes);
  char* const payload = buffer.data() + kFuseUringRequestPrefixBytes;
  iovec iov[2] = {{header.get(), sizeof(FuseUringReqHeader)}, {payload, payload_bytes}};
  FuseUringCmdReq command{};
  command.qid = qid;
  std::uint32_t command_op = kFuseUringCmdRegister;
  int register_retries = 0;
  std::uint64_t unique = 0;
  FuseReply reply;
  for (;;) {
    Result<std::size_t> fetched =
        co_await io::UringCommand(fd_, command_op, &command, sizeof(command), iov, 2);
    if (!fetched.ok()) {
      const int e = fetched.status().errno_value();
      if (e == EAGAIN && command_op == kFuseUringCmdRegister &&
          ++register_retries <= kRegisterRetriesMax) {
        Status slept = co_await io::Sleep(kRegisterRetryPause);
        if (slept.ok()) continue;
      }
      // ENOTCONN: the mount is gone (unmount, abort). Cancelled: the scheduler stops.
      if (e != ENOTCONN && e != ENODEV && !fetched.status().IsCancelled()) {
        int expected = 0;
        if (uring_entry_error_.compare_exchange_strong(expected, e == 0 ? EIO : e)) {
          Log("io_uring queue " + std::to_string(qid) + ": " +
              std::string(fetched.status().message()));
        }
      }
      break;
    }
    const std::uint64_t commit_id = header->ring_ent_in_out.commit_id;
    std::string_view request;
    if (AssembleUringRequest(*header, payload, payload_bytes, &request)) {
      co_await handler_->Handle(request, &unique, &reply);
    } else {
      Log("a FUSE request from the io_uring queue " + std::to_string(qid) +
          " disagrees with its sizes: answered EIO");
      reply = FuseReply{};
      reply.error = EIO;
    }
    PlaceUringReply(reply, commit_id, header.get(), payload, payload_bytes);
    uring_requests_.fetch_add(1, std::memory_order_relaxed);
    command.commit_id = commit_id;
    command_op = kFuseUringCmdCommitAndFetch;
  }
  LoopExited();
}

io::Task<void> MountImpl::ServeLoop() {
  std::vector<char> buffer(options_.max_write_bytes + kRequestHeaderBytesMax);
  std::uint64_t unique = 0;
  FuseReply reply;
  for (;;) {
    Result<std::size_t> got = co_await io::ReadBlockingDevice(fd_, buffer.data(), buffer.size());
    if (!got.ok()) {
      const int e = got.status().errno_value();
      // ENOENT: the request was interrupted before we read it. ENODEV: the mount is gone.
      if (e == EINTR || e == EAGAIN || e == ENOENT) continue;
      if (e != ENODEV && !got.status().IsCancelled()) {
        Log("reading /dev/fuse: " + std::string(got.status().message()));
      }
      break;
    }
    co_await handler_->Handle(std::string_view(buffer.data(), got.value()), &unique, &reply);
    if (!reply.none) SendReply(unique, reply);
  }
  LoopExited();
}

void MountImpl::SendReply(std::uint64_t unique, const FuseReply& reply) {
  fuse_out_header header{};
  header.unique = unique;
  iovec iov[3];
  int count = 1;
  iov[0] = {&header, sizeof(header)};
  if (reply.error != 0) {
    header.error = -reply.error;
    header.len = sizeof(header);
  } else {
    if (!reply.fixed.empty()) {
      iov[count++] = {const_cast<char*>(reply.fixed.data()), reply.fixed.size()};
    }
    if (!reply.data.empty()) {
      iov[count++] = {const_cast<char*>(reply.data.data()), reply.data.size()};
    }
    header.len =
        static_cast<std::uint32_t>(sizeof(header) + reply.fixed.size() + reply.data.size());
  }
  // A write to /dev/fuse never waits for the device: it copies the reply to the waiting
  // caller. So the IO thread writes it directly instead of through the ring.
  const ssize_t written = writev(fd_, iov, count);
  if (written < 0 && errno != ENOENT && errno != ENODEV) {
    // ENOENT: the request was interrupted meanwhile; ENODEV: the mount is gone.
    Log(std::string("replying to the kernel: ") + std::strerror(errno));
  }
}

void MountImpl::NotifyInvalEntry(std::uint64_t parent, std::string_view name) {
  if (fd_ < 0) return;
  fuse_out_header header{};
  fuse_notify_inval_entry_out arg{};
  arg.parent = parent;
  arg.namelen = static_cast<std::uint32_t>(name.size());
  header.error = FUSE_NOTIFY_INVAL_ENTRY;
  header.unique = 0;
  header.len = static_cast<std::uint32_t>(sizeof(header) + sizeof(arg) + name.size() + 1);
  char nul = 0;
  iovec iov[4] = {{&header, sizeof(header)},
                  {&arg, sizeof(arg)},
                  {const_cast<char*>(name.data()), name.size()},
                  {&nul, 1}};
  // ENOENT: the kernel holds no such entry; ENODEV: the mount is gone. Neither matters.
  if (writev(fd_, iov, 4) < 0 && errno != ENOENT && errno != ENODEV) {
    Log(std::string("invalidating a name in the kernel: ") + std::strerror(errno));
  }
}

Status MountImpl::Unmount() {
  Status flushed = scheduler_->BlockOn(fs_->FlushAll());
  if (!flushed.ok()) Log("flushing before unmount: " + std::string(flushed.message()));
  if (geteuid() == 0) {
    if (umount2(options_.mountpoint.c_str(), 0) != 0) {
      const int e = errno;
      if (e == EBUSY) {
        return Status::Busy(options_.mountpoint + ": target is busy (files are open on it)");
      }
      if (e != EINVAL) return Status::FromErrno(e, options_.mountpoint);  // EINVAL: not mounted
    }
  } else {
    const pid_t child = fork();
    if (child < 0) return Status::FromErrno(errno, "fork for fusermount3");
    if (child == 0) {
      execlp("fusermount3", "fusermount3", "-u", "-q", options_.mountpoint.c_str(),
             static_cast<char*>(nullptr));
      _exit(127);
    }
    int wstatus = 0;
    while (waitpid(child, &wstatus, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
      return Status::Busy(options_.mountpoint + ": fusermount3 -u failed (files open on it?)");
    }
  }
  return Status::OK();
}

Status MountImpl::Wait() {
  {
    std::unique_lock lock(mutex_);
    loops_done_.wait(lock, [&] { return loops_running_ == 0; });
  }
  return Teardown();
}

void MountImpl::GcLoop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    gc_changed_.wait_for(lock, std::chrono::seconds(options_.gc_interval_sec),
                         [&] { return torn_down_; });
    if (torn_down_) return;
    lock.unlock();
    GcOptions gc;
    gc.compact = false;  // background compaction gives the space back in its time
    Result<GcReport> report = RunGc(gc);
    if (report.ok() && report.value().deleted_chunks > 0) {
      Log("gc: deleted " + std::to_string(report.value().deleted_chunks) +
          " chunks no file refers to (" + std::to_string(report.value().deleted_bytes) + " bytes)");
    }
    lock.lock();
  }
}

Result<GcReport> MountImpl::RunGc(GcOptions options) {
  {
    std::lock_guard lock(mutex_);
    if (torn_down_ || fs_ == nullptr) return Status::Busy("the mount is stopping");
    ++gc_running_;
  }
  // An unmount does not wait for a whole cycle: it stops at the next step.
  options.cancelled = [this] { return gc_stopping_.load(std::memory_order_relaxed); };
  Result<GcReport> report = scheduler_->BlockOn(fs_->CollectGarbage(std::move(options)));
  std::lock_guard lock(mutex_);
  gc_last_error_ = report.ok() ? "" : report.status().ToString();
  --gc_running_;
  gc_changed_.notify_all();
  return report;
}

Result<GcReport> MountImpl::CollectGarbage() { return RunGc(GcOptions{}); }

Status MountImpl::Teardown() {
  {
    std::unique_lock lock(mutex_);
    if (torn_down_) return Status::OK();
    torn_down_ = true;
    gc_stopping_.store(true);
    gc_changed_.notify_all();
  }
  if (gc_thread_.joinable()) gc_thread_.join();
  {
    // A requested cycle (the control thread) finishes before fs_ goes.
    std::unique_lock lock(mutex_);
    gc_changed_.wait(lock, [&] { return gc_running_ == 0; });
  }
  Status first;
  auto keep = [&](Status status) {
    if (first.ok() && !status.ok()) first = std::move(status);
  };
  if (session_ != nullptr) {
    // Unmounts if still mounted (a failed start); after an unmount the device reports an
    // error and libfuse skips it. Then the serving loops see ENODEV.
    fuse_session_unmount(session_);
    std::unique_lock lock(mutex_);
    loops_done_.wait(lock, [&] { return loops_running_ == 0; });
  }
  if (fs_ != nullptr) {
    keep(scheduler_->BlockOn(fs_->FlushAll()));
    std::unique_ptr<sync::SyncAgent> agent;
    {
      std::lock_guard lock(mutex_);  // stats() reads the agent under it
      agent = std::move(sync_agent_);
      sync_agent_ptr_.store(nullptr, std::memory_order_release);
    }
    // After the last flush, so a final push round carries the last writes.
    if (agent != nullptr) agent->Stop();
    agent.reset();
    handler_.reset();
    fs_.reset();
  }
  if (chunk_trace_ != nullptr) {
    std::fclose(chunk_trace_);
    chunk_trace_ = nullptr;
  }
  if (chunk_cache_ != nullptr) {
    // After the filesystem, its only user: queued inserts are written and the file synced,
    // so the next mount starts warm. A cache that could not write (a full disk) lost only
    // hits: logged, not an error of the unmount.
    Status closed = chunk_cache_->Close();
    if (!closed.ok()) Log("chunk cache: " + std::string(closed.message()));
    chunk_cache_.reset();
  }
  if (db_ != nullptr) {
    // A clean stop leaves nothing in the WAL to replay at the next mount.
    keep(db_->Flush());
    keep(db_->Close());
    db_.reset();
  }
  if (session_ != nullptr) {
    fuse_session_destroy(session_);
    session_ = nullptr;
    fd_ = -1;
  }
  if (scheduler_ != nullptr) {
    keep(scheduler_->Shutdown());
    scheduler_.reset();
  }
  if (first.ok()) Log("unmounted " + options_.mountpoint);
  return first;
}

MountStats MountImpl::stats() const {
  MountStats out;
  out.transport = uring_serving_.load() ? "io-uring" : "dev-fuse";
  out.read_ahead_kb = read_ahead_set_kb_.load(std::memory_order_relaxed);
  if (handler_ != nullptr) {
    const FuseHandlerStats h = handler_->stats();
    out.requests = h.requests;
    out.errors = h.errors;
    out.reads = h.reads;
    out.writes = h.writes;
    out.read_bytes = h.read_bytes;
    out.write_bytes = h.write_bytes;
    for (const RequestInProgress& r : handler_->InProgress(8)) {
      out.oldest_requests.push_back({r.opcode, r.nodeid, r.age_ms});
    }
  }
  if (fs_ != nullptr) {
    const FsStats f = fs_->stats();
    out.dirty_bytes = f.dirty_bytes;
    out.inodes_cached = f.inodes_cached;
    out.data_flushes = f.data_flushes;
    out.chunks_written = f.chunks_written;
    out.chunks_reused = f.chunks_reused;
    out.fsyncs = f.wal_syncs;
    out.gc_cycles = f.gc_cycles;
    out.gc_deleted_chunks = f.gc_deleted_chunks;
    out.gc_deleted_bytes = f.gc_deleted_bytes;
    out.read_retries = f.read_retries;
    out.cache_hits = f.cache_hits;
    out.cache_misses = f.cache_misses;
    out.cache_promised_reads = f.cache_promised_reads;
  }
  if (chunk_cache_ != nullptr) {
    const cache::ChunkCacheStats c = chunk_cache_->stats();
    out.cache_capacity_bytes = c.capacity_bytes;
    out.cache_bytes = c.bytes_cached;
    out.cache_entries = c.entries;
    out.cache_inserts_dropped = c.inserts_dropped_queue_full;
    out.cache_writer_waits = c.writer_waits_on_promises;
    out.cache_damaged_entries = c.damaged_entries_dropped;
    out.cache_promise_latency_us_max = c.promise_latency_us_max;
  }
  {
    std::lock_guard lock(mutex_);
    out.gc_last_error = gc_last_error_;
    if (sync_agent_ != nullptr) {
      const sync::SyncStats y = sync_agent_->stats();
      out.sync_enabled = true;
      out.sync_state = y.state;
      out.sync_last_error = y.last_error;
      out.sync_cursor = y.cursor;
      out.sync_head = y.head;
      out.sync_pending = y.pending;
      out.sync_commits = y.commits;
      out.sync_applied = y.applied;
      out.sync_conflicts = y.conflicts;
      out.sync_uploaded_chunks = y.uploaded_chunks;
      out.sync_uploaded_bytes = y.uploaded_bytes;
      out.sync_fetched_chunks = y.fetched_chunks;
      out.sync_fetched_bytes = y.fetched_bytes;
      out.sync_wire_bytes_sent = y.wire_bytes_sent;
      out.sync_wire_bytes_received = y.wire_bytes_received;
    }
  }
  if (db_ != nullptr) {
    const engine::DbStats d = db_->stats();
    out.engine_sst_files = d.sst_files;
    out.engine_sst_bytes = d.sst_bytes;
    out.engine_block_cache_bytes = d.block_cache_bytes;
  }
  out.memory_rss_bytes = ResidentBytes();
  return out;
}

}  // namespace

Result<std::unique_ptr<Mount>> Mount::Start(const MountOptions& options) {
  if (options.max_write_bytes < 4096 || options.max_write_bytes > (1u << 20) ||
      options.max_write_bytes % 4096 != 0) {
    return Status::InvalidArgument("max_write_bytes must be a multiple of 4096 in 4 KiB..1 MiB");
  }
  if (options.requests_in_flight < 1 || options.requests_in_flight > 1024) {
    return Status::InvalidArgument("requests_in_flight must be in 1..1024");
  }
  if (options.uring_queue_depth < 1 || options.uring_queue_depth > 256) {
    return Status::InvalidArgument("uring_queue_depth must be in 1..256");
  }
  if (options.read_ahead_kb > 65536) {
    return Status::InvalidArgument("read_ahead_kb must be in 0..65536");
  }
  if (options.gc_interval_sec > 31'536'000) {
    return Status::InvalidArgument("gc_interval_sec must be in 0..31536000");
  }
  if (options.chunk_cache_bytes != 0 &&
      (options.chunk_cache_bytes < (4u << 20) || options.chunk_cache_bytes > (1ull << 40))) {
    return Status::InvalidArgument("chunk_cache_bytes must be 0 or in 4 MiB..1 TiB");
  }
  if (options.dirty_bytes_max < options.dirty_bytes_per_file_max) {
    return Status::InvalidArgument("dirty_bytes_max must be at least dirty_bytes_per_file_max");
  }
  auto mount = std::make_unique<MountImpl>(options);
  Status status = mount->StartImpl();
  if (!status.ok()) return status;
  return std::unique_ptr<Mount>(std::move(mount));
}

}  // namespace cascadefs::fusefs
