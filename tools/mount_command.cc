// mount_command.cc: `cascadefs mount`: the daemon's life, from fork to exit.
//
// Without -f the command forks; the child becomes the daemon (setsid, stdio to /dev/null,
// log to <store>/cascadefs.log) and reports through a pipe whether the mount came up, so the
// parent returns only once the mount answers, with the daemon's error line if it did not.
// The fork happens before any thread exists (Mount::Start creates them).
//
// The daemon runs three threads of its own besides the mount's IO threads: main (waits for
// the unmount, then tears down), a signal thread (SIGTERM, SIGINT, SIGHUP: unmount like
// `cascadefs umount`), and the control thread (control.h).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "commands.h"
#include "control.h"
#include "fusefs/mount.h"

namespace cascadefs::tools {
namespace {

constexpr int kPollIntervalMs = 200;  // how often the helper threads look at `stopping`

nlohmann::json StatsJson(const fusefs::MountStats& s) {
  nlohmann::json requests = nlohmann::json::array();
  for (const fusefs::MountRequest& r : s.oldest_requests) {
    requests.push_back({{"opcode", r.opcode}, {"nodeid", r.nodeid}, {"age_ms", r.age_ms}});
  }
  return {{"oldest_requests", requests},
          {"transport", s.transport},
          {"read_ahead_kb", s.read_ahead_kb},
          {"requests", s.requests},
          {"errors", s.errors},
          {"reads", s.reads},
          {"writes", s.writes},
          {"read_bytes", s.read_bytes},
          {"write_bytes", s.write_bytes},
          {"dirty_bytes", s.dirty_bytes},
          {"inodes_cached", s.inodes_cached},
          {"data_flushes", s.data_flushes},
          {"chunks_written", s.chunks_written},
          {"chunks_reused", s.chunks_reused},
          {"fsyncs", s.fsyncs},
          {"engine_sst_files", s.engine_sst_files},
          {"engine_sst_bytes", s.engine_sst_bytes},
          {"engine_block_cache_bytes", s.engine_block_cache_bytes},
          {"memory_rss_bytes", s.memory_rss_bytes},
          {"gc_cycles", s.gc_cycles},
          {"gc_deleted_chunks", s.gc_deleted_chunks},
          {"gc_deleted_bytes", s.gc_deleted_bytes},
          {"gc_last_error", s.gc_last_error},
          {"read_retries", s.read_retries},
          {"cache_hits", s.cache_hits},
          {"cache_misses", s.cache_misses},
          {"cache_hit_ratio", s.cache_hits + s.cache_misses == 0
                                  ? 0.0
                                  : static_cast<double>(s.cache_hits) /
                                        static_cast<double>(s.cache_hits + s.cache_misses)},
          {"cache_capacity_bytes", s.cache_capacity_bytes},
          {"cache_bytes", s.cache_bytes},
          {"cache_entries", s.cache_entries},
          {"cache_inserts_dropped", s.cache_inserts_dropped},
          {"cache_writer_waits", s.cache_writer_waits},
          {"cache_damaged_entries", s.cache_damaged_entries},
          {"cache_promised_reads", s.cache_promised_reads},
          {"cache_promise_latency_us_max", s.cache_promise_latency_us_max},
          {"sync", s.sync_enabled},
          {"sync_state", s.sync_state},
          {"sync_last_error", s.sync_last_error},
          {"sync_cursor", s.sync_cursor},
          {"sync_head", s.sync_head},
          {"sync_pending", s.sync_pending},
          {"sync_commits", s.sync_commits},
          {"sync_applied", s.sync_applied},
          {"sync_conflicts", s.sync_conflicts},
          {"sync_uploaded_chunks", s.sync_uploaded_chunks},
          {"sync_uploaded_bytes", s.sync_uploaded_bytes},
          {"sync_fetched_chunks", s.sync_fetched_chunks},
          {"sync_fetched_bytes", s.sync_fetched_bytes},
          {"sync_wire_bytes_sent", s.sync_wire_bytes_sent},
          {"sync_wire_bytes_received", s.sync_wire_bytes_received}};
}

void WriteLine(int fd, const nlohmann::json& j) {
  const std::string line = j.dump() + "\n";
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = send(fd, line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;
    }
    done += static_cast<std::size_t>(n);
  }
}

class Daemon {
 public:
  Daemon(fusefs::Mount* mount, std::string store, std::string mountpoint,
         std::shared_ptr<spdlog::logger> log)
      : mount_(mount),
        store_(std::move(store)),
        mountpoint_(std::move(mountpoint)),
        log_(std::move(log)) {}

  // Serves until the filesystem is unmounted; returns the exit code.
  int Run(int listen_fd) {
    std::thread signals([&] { SignalLoop(); });
    std::thread control([&] { ControlLoop(listen_fd); });
    const Status status = mount_->Wait();
    stopping_.store(true);
    signals.join();
    control.join();
    for (GcRequest& gc : gc_requests_) gc.thread.join();  // Wait ended their cycles
    close(listen_fd);
    // The umount callers learn how the teardown ended, then their connections close.
    for (int fd : waiting_umounts_) {
      if (status.ok()) {
        WriteLine(fd, {{"stopped", true}});
      } else {
        WriteLine(fd, {{"error", std::string(status.message())}});
      }
      close(fd);
    }
    if (!status.ok()) {
      log_->error("stopping: {}", status.message());
      return 1;
    }
    return 0;
  }

 private:
  // Whether the kernel let go of the mount (the daemon then tears down and stops).
  bool RequestUnmount(int reply_fd) {
    const Status status = mount_->Unmount();
    if (status.ok()) {
      log_->info("unmount requested");
      if (reply_fd >= 0) WriteLine(reply_fd, {{"unmounted", true}});
      return true;
    }
    log_->warn("unmount refused: {}", status.message());
    if (reply_fd >= 0) WriteLine(reply_fd, {{"error", std::string(status.message())}});
    return false;
  }

  void SignalLoop() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    const timespec interval{0, kPollIntervalMs * 1'000'000L};
    while (!stopping_.load()) {
      const int sig = sigtimedwait(&set, nullptr, &interval);
      if (sig > 0) {
        log_->info("signal {}: unmounting", sig);
        RequestUnmount(-1);
      }
    }
  }

  void ControlLoop(int listen_fd) {
    while (!stopping_.load()) {
      pollfd pfd{listen_fd, POLLIN, 0};
      if (poll(&pfd, 1, kPollIntervalMs) <= 0) continue;
      const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      // One request line, read with a bound (a client that sends nothing is dropped).
      timeval timeout{2, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
      char buf[64];
      const ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
      std::string request = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
      while (!request.empty() && (request.back() == '\n' || request.back() == '\r')) {
        request.pop_back();
      }
      // Only the daemon's own user and root may ask (the abstract socket has no file mode to
      // keep others out).
      ucred peer{};
      socklen_t peer_len = sizeof(peer);
      if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &peer_len) != 0 ||
          (peer.uid != 0 && peer.uid != geteuid())) {
        WriteLine(fd, {{"error", "permission denied: this mount belongs to uid " +
                                     std::to_string(geteuid())}});
        close(fd);
        continue;
      }
      if (request == "status") {
        nlohmann::json j = StatsJson(mount_->stats());
        j["store"] = store_;
        j["mountpoint"] = mountpoint_;
        j["pid"] = getpid();
        WriteLine(fd, j);
        close(fd);
      } else if (request == "umount") {
        if (RequestUnmount(fd)) {
          waiting_umounts_.push_back(fd);  // answered again once the daemon has stopped
        } else {
          close(fd);  // refused (files open): the mount keeps serving
        }
      } else if (request == "gc") {
        // A cycle may take minutes: on its own thread, so status and umount still answer.
        // Cycles run one at a time; finished requests are joined here, and at most
        // kGcRequestsMax wait at once (a client looping on `gc` gets an error, not a thread).
        std::erase_if(gc_requests_, [](GcRequest& r) {
          if (!r.done->load()) return false;
          r.thread.join();
          return true;
        });
        if (gc_requests_.size() >= kGcRequestsMax) {
          WriteLine(fd, {{"error", "Busy: " + std::to_string(kGcRequestsMax) +
                                       " gc requests are waiting already; try again later"}});
          close(fd);
          continue;
        }
        auto done = std::make_shared<std::atomic<bool>>(false);
        gc_requests_.push_back({std::thread([this, fd, done] {
                                  log_->info("gc requested");
                                  Result<fusefs::GcReport> report = mount_->CollectGarbage();
                                  if (report.ok()) {
                                    const fusefs::GcReport& r = report.value();
                                    log_->info("gc: deleted {} chunks ({} bytes) of {}",
                                               r.deleted_chunks, r.deleted_bytes, r.chunks);
                                    WriteLine(fd, {{"chunks", r.chunks},
                                                   {"referenced_chunks", r.referenced_chunks},
                                                   {"deleted_chunks", r.deleted_chunks},
                                                   {"deleted_bytes", r.deleted_bytes},
                                                   {"kept_touched_chunks", r.kept_touched_chunks}});
                                  } else {
                                    log_->warn("gc: {}", report.status().ToString());
                                    WriteLine(fd, {{"error", report.status().ToString()}});
                                  }
                                  close(fd);
                                  done->store(true);
                                }),
                                done});
      } else {
        WriteLine(fd, {{"error", "unknown request: " + request}});
        close(fd);
      }
    }
  }

  fusefs::Mount* const mount_;
  const std::string store_;
  const std::string mountpoint_;
  std::shared_ptr<spdlog::logger> log_;
  std::atomic<bool> stopping_{false};
  std::vector<int> waiting_umounts_;  // touched by the control thread, then by Run after join
  struct GcRequest {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;  // set by the thread as it ends
  };
  static constexpr std::size_t kGcRequestsMax = 4;
  std::vector<GcRequest> gc_requests_;  // the same: one thread per requested gc cycle
};

std::shared_ptr<spdlog::logger> MakeLogger(bool to_file, const std::string& store,
                                           const std::string& level) {
  std::shared_ptr<spdlog::logger> logger;
  if (to_file) {
    logger = spdlog::basic_logger_mt("cascadefs", store + "/cascadefs.log");
  } else {
    logger = spdlog::stderr_logger_mt("cascadefs");
  }
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  return logger;
}

// On a terminal, a synced mount's first catch-up with the hub shows progress until the mount
// has applied the hub's journal and sent its own changes; the mount serves meanwhile, and
// Ctrl-C stops only the watching. Offline for kOfflineGiveUpMs: says why and returns.
void ShowInitialSync(const std::string& canonical_store) {
  constexpr int kPollMs = 200;
  constexpr int kOfflineGiveUpMs = 10000;
  int offline_ms = 0;
  std::string last_line;
  for (;;) {
    const int fd = ConnectControl(canonical_store);
    if (fd < 0) return;
    const std::optional<nlohmann::json> status = RequestStatus(fd);
    if (!status || !status->value("sync", false)) return;
    const nlohmann::json& s = *status;
    const std::string state = s.value("sync_state", "");
    const std::uint64_t cursor = s.value("sync_cursor", std::uint64_t{0});
    const std::uint64_t head = s.value("sync_head", std::uint64_t{0});
    const std::uint64_t to_send = s.value("sync_pending", std::uint64_t{0});
    const double fetched_mb =
        static_cast<double>(s.value("sync_fetched_bytes", std::uint64_t{0})) / (1 << 20);
    const double sent_mb =
        static_cast<double>(s.value("sync_uploaded_bytes", std::uint64_t{0})) / (1 << 20);
    if (state == "connected" && cursor >= head && to_send == 0) {
      fmt::print(stderr, "\rsync: up to date with the hub (journal entry {}){:20}\n", cursor, "");
      return;
    }
    if (state != "connected") {
      offline_ms += kPollMs;
      if (offline_ms >= kOfflineGiveUpMs) {
        fmt::print(stderr,
                   "\rsync: the hub is not reachable yet ({}); the mount keeps trying{:10}\n",
                   s.value("sync_last_error", std::string("connecting")), "");
        return;
      }
    } else {
      offline_ms = 0;
    }
    const std::string progress = fmt::format(
        "sync: {} of {} journal entries applied, {:.1f} MiB fetched, {:.1f} MiB sent, {} local "
        "changes to send",
        cursor, head, fetched_mb, sent_mb, to_send);
    if (progress != last_line) {
      fmt::print(stderr, "\r{}{:8}", progress, "");
      last_line = progress;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
  }
}

// Runs the daemon in this process. `ready_fd` (>= 0 when daemonized) gets "ok\n" once the
// mount answers, or the error line; it is closed afterwards.
int Serve(const MountArgs& args, const std::string& store, int ready_fd) {
  auto report = [&](const std::string& line) {
    if (ready_fd < 0) return;
    const std::string msg = line + "\n";
    ssize_t ignored = write(ready_fd, msg.data(), msg.size());
    (void)ignored;
    close(ready_fd);
    ready_fd = -1;
  };
  auto fail = [&](const std::string& line) {
    if (ready_fd >= 0) {
      report(line);
    } else {
      fmt::print(stderr, "cascadefs mount: {}\n", line);
    }
    return 1;
  };
  std::error_code ec;
  std::filesystem::create_directories(store, ec);
  if (ec) return fail(store + ": " + ec.message());
  const std::string canonical_store = std::filesystem::canonical(store, ec).string();
  if (ec) return fail(store + ": " + ec.message());

  std::shared_ptr<spdlog::logger> log;
  try {
    log = MakeLogger(ready_fd >= 0, canonical_store, args.log_level);
  } catch (const spdlog::spdlog_ex& e) {
    return fail(canonical_store + ": cannot open the log: " + e.what());
  }

  // One daemon per store: the control socket name is taken first (the engine's LOCK file
  // would refuse a second one too, but later and after mounting work).
  const int listen_fd = ListenControl(canonical_store);
  if (listen_fd < 0) {
    if (errno == EADDRINUSE)
      return fail(canonical_store + ": the store is in use by another mount");
    return fail(canonical_store + ": control socket: " + std::strerror(errno));
  }

  // Signals go to the signal thread only: block them before any thread starts.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  fusefs::MountOptions options;
  options.store_dir = canonical_store;
  options.mountpoint = args.mountpoint;
  options.read_only = args.read_only;
  options.allow_other = geteuid() == 0;
  options.transport = args.transport == "io-uring"   ? fusefs::Transport::kIoUring
                      : args.transport == "dev-fuse" ? fusefs::Transport::kDevFuse
                                                     : fusefs::Transport::kAuto;
  options.uring_queue_depth = args.uring_queue_depth;
  options.read_ahead_kb = args.read_ahead_kb;
  options.value_log = args.value_log;
  options.gc_interval_sec = args.gc_interval_sec;
  options.chunk_cache_bytes = std::uint64_t{args.cache_size_mb} << 20;
  // The daemon leaves the working directory: a relative path is made absolute here.
  if (!args.chunk_trace.empty()) {
    options.chunk_trace_path = std::filesystem::absolute(args.chunk_trace).string();
  }
  options.sync_hub = args.sync;
  if (!args.key.empty()) options.sync_key_file = std::filesystem::absolute(args.key).string();
  options.sync_namespace = args.ns;
  options.sync_receive_only = args.receive_only;
  options.log = [log](std::string_view line) { log->info("{}", line); };
  Result<std::unique_ptr<fusefs::Mount>> mount = fusefs::Mount::Start(options);
  if (!mount.ok()) {
    close(listen_fd);
    log->error("{}", mount.status().message());
    return fail(std::string(mount.status().message()));
  }
  const std::string mountpoint = std::filesystem::canonical(args.mountpoint, ec).string();
  report("ok");
  Daemon daemon(mount.value().get(), canonical_store, mountpoint, log);
  const int code = daemon.Run(listen_fd);
  mount.value().reset();
  return code;
}

}  // namespace

std::string DefaultStore() {
  const char* xdg = std::getenv("XDG_DATA_HOME");
  if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/cascadefs/default";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : ".") + "/.local/share/cascadefs/default";
}

int RunMount(const MountArgs& args) {
  const std::string store = args.store.empty() ? DefaultStore() : args.store;
  if (args.foreground) return Serve(args, store, -1);
  // Absolute before the daemon leaves the working directory.
  MountArgs daemon_args = args;
  daemon_args.mountpoint = std::filesystem::absolute(args.mountpoint).string();
  const std::string daemon_store = std::filesystem::absolute(store).string();
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    fmt::print(stderr, "cascadefs mount: pipe: {}\n", std::strerror(errno));
    return 1;
  }
  const pid_t child = fork();
  if (child < 0) {
    fmt::print(stderr, "cascadefs mount: fork: {}\n", std::strerror(errno));
    return 1;
  }
  if (child == 0) {
    close(pipe_fds[0]);
    setsid();
    const int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd >= 0) {
      dup2(null_fd, STDIN_FILENO);
      dup2(null_fd, STDOUT_FILENO);
      dup2(null_fd, STDERR_FILENO);
      close(null_fd);
    }
    if (chdir("/") != 0) {
      // Stay where we are: the paths were made absolute already.
    }
    _exit(Serve(daemon_args, daemon_store, pipe_fds[1]));
  }
  close(pipe_fds[1]);
  std::string message;
  char buf[512];
  for (;;) {
    const ssize_t n = read(pipe_fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    message.append(buf, static_cast<std::size_t>(n));
  }
  close(pipe_fds[0]);
  while (!message.empty() && message.back() == '\n') message.pop_back();
  if (message == "ok") {
    if (!args.sync.empty() && isatty(STDERR_FILENO)) ShowInitialSync(daemon_store);
    return 0;
  }
  if (message.empty()) message = "the daemon exited before the mount came up";
  fmt::print(stderr, "cascadefs mount: {}\n", message);
  return 1;
}

}  // namespace cascadefs::tools
