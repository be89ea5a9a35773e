// mount.cc: the /dev/fuse transport and the mount's lifecycle (fusefs/mount.h).
//
// libfuse3 is used for mounting and unmounting only (fuse_session_mount runs mount(2) as root
// and fusermount3 otherwise); the requests are read from the session's /dev/fuse descriptor by
// requests_in_flight serving loops on the io_uring scheduler, each decoding and answering one
// request at a time with FuseHandler. docs/fusefs.md tells the whole flow.
#include "fusefs/mount.h"

#define FUSE_USE_VERSION 314
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <vector>

#include <fuse3/fuse_lowlevel.h>

#include "engine/db.h"
#include "engine/io/scheduler.h"
#include "fs/filesystem.h"
#include "fuse/fuse_handler.h"

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

 private:
  void Log(std::string_view line) const {
    if (options_.log) options_.log(line);
  }
  io::Task<void> ServeLoop();
  void SendReply(std::uint64_t unique, const FuseReply& reply);
  // Undoes whatever Start did, in reverse order. Idempotent.
  Status Teardown();

  MountOptions options_;
  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<engine::DB> db_;
  std::unique_ptr<Filesystem> fs_;
  std::unique_ptr<FuseHandler> handler_;
  fuse_session* session_ = nullptr;
  int fd_ = -1;

  mutable std::mutex mutex_;
  std::condition_variable loops_done_;
  std::uint32_t loops_running_ = 0;  // GUARDED_BY(mutex_)
  bool torn_down_ = false;           // GUARDED_BY(mutex_)
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

  io::SchedulerOptions scheduler_options;
  scheduler_options.log = options_.log;
  Result<std::unique_ptr<io::Scheduler>> scheduler = io::Scheduler::Create(scheduler_options);
  if (!scheduler.ok()) return scheduler.status();
  scheduler_ = std::move(scheduler.value());

  engine::Options engine_options;
  engine_options.scheduler = scheduler_.get();
  engine_options.create_if_missing = true;
  engine_options.block_cache_size_bytes = options_.block_cache_bytes;
  engine_options.info_log = options_.log;
  SizeForStoreFilesystem(options_.store_dir, &engine_options, &options_.space_reserve_bytes);
  Result<std::unique_ptr<engine::DB>> db = engine::DB::Open(engine_options, options_.store_dir);
  if (!db.ok()) {
    if (db.status().IsBusy()) {
      return Status::Busy(options_.store_dir + ": the store is in use (mounted elsewhere?)");
    }
    return db.status().WithContext(options_.store_dir);
  }
  db_ = std::move(db.value());

  FsOptions fs_options;
  fs_options.dirty_bytes_per_file_max = options_.dirty_bytes_per_file_max;
  fs_options.dirty_bytes_max = options_.dirty_bytes_max;
  fs_options.space_reserve_bytes = options_.space_reserve_bytes;
  fs_options.store_dir = options_.store_dir;
  fs_options.log = options_.log;
  Result<std::unique_ptr<Filesystem>> fs =
      scheduler_->BlockOn(Filesystem::Open(db_.get(), fs_options));
  if (!fs.ok()) return fs.status().WithContext(options_.store_dir);
  fs_ = std::move(fs.value());

  FuseHandlerOptions handler_options;
  handler_options.max_write_bytes = options_.max_write_bytes;
  handler_options.entry_timeout_sec = options_.entry_timeout_sec;
  handler_options.attr_timeout_sec = options_.attr_timeout_sec;
  handler_options.log = options_.log;
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

  {
    std::lock_guard lock(mutex_);
    loops_running_ = options_.requests_in_flight;
  }
  for (std::uint32_t i = 0; i < options_.requests_in_flight; ++i) scheduler_->Spawn(ServeLoop());
  if (!handler_->WaitInitialized(kInitTimeoutMs)) {
    Status teardown = Teardown();
    if (!teardown.ok()) Log("stopping: " + std::string(teardown.message()));
    return Status::IOError(options_.mountpoint + ": the kernel never initialized the mount");
  }
  Log("mounted " + options_.store_dir + " on " + options_.mountpoint);
  return Status::OK();
}

io::Task<void> MountImpl::ServeLoop() {
  std::vector<char> buffer(options_.max_write_bytes + kRequestHeaderBytesMax);
  std::uint64_t unique = 0;
  FuseReply reply;
  for (;;) {
    Result<std::size_t> got =
        co_await io::ReadBlockingDevice(fd_, buffer.data(), buffer.size());
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
  std::lock_guard lock(mutex_);
  if (--loops_running_ == 0) loops_done_.notify_all();
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

Status MountImpl::Teardown() {
  {
    std::lock_guard lock(mutex_);
    if (torn_down_) return Status::OK();
    torn_down_ = true;
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
    handler_.reset();
    fs_.reset();
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
  out.transport = "dev-fuse";
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
  if (options.dirty_bytes_max < options.dirty_bytes_per_file_max) {
    return Status::InvalidArgument("dirty_bytes_max must be at least dirty_bytes_per_file_max");
  }
  auto mount = std::make_unique<MountImpl>(options);
  Status status = mount->StartImpl();
  if (!status.ok()) return status;
  return std::unique_ptr<Mount>(std::move(mount));
}

}  // namespace cascadefs::fusefs
