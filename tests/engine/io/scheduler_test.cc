// scheduler_test.cc: the Scheduler (scheduler.h): creation, its option checks and its failures
// (no descriptors left, no locked memory for fixed buffers), handing work in from outside
// threads (Spawn, SpawnOn, BlockOn), the in-flight limit under 100,000 concurrent reads,
// waking a sleeping IO thread, long operations next to short ones, moving tasks between IO
// threads (SwitchTo, RunOn, WhenAll across threads), foreground/background priorities, full
// submission queues, and shutdown: idle, repeated, from the destructor, with operations in
// flight or waiting for a slot, racing with Spawn, and past its timeout.
//
// Goal: every documented promise of scheduler.h holds on both backends where it applies, and
// nothing hangs.
//
// Method: each case builds its own scheduler with the options it needs (one IO thread where
// the order of events on the thread must be deterministic). Cases that depend on the backend
// are parametrized over Backend::kIoUring and Backend::kThreadPool. Operations that must stay
// in flight are real: reads of pipes and sockets nobody writes to, an accept on a socket
// nobody connects to, a one-hour sleep. Pass or fail never depends on how fast the machine is:
// the cases wait for states (a counter reaching a value, a thread asleep) rather than for
// durations, and every wait that could hang is guarded by a generous watchdog (10 s) that
// fails the case instead, so a hang fails only that case's process (ctest runs each case
// alone). Task frames are observed through destructors of objects passed by value as
// coroutine parameters. Failures of Create are provoked in death-test children (lowered
// RLIMIT_NOFILE, or RLIMIT_MEMLOCK without CAP_IPC_LOCK), so the limits stay there.
#include "engine/io/scheduler.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include <gtest/gtest.h>

#include "engine/io/task.h"
#include "engine/result.h"
#include "engine/status.h"

namespace cascadefs::io {

// Failure messages show the backend by name. (ops_test.cc has the same definition: gtest's
// printer for Backend is one template instantiation for the whole binary.)
inline void PrintTo(Backend backend, std::ostream* os) { *os << BackendName(backend); }

namespace {

using std::chrono::steady_clock;

// How long a case waits for something that must happen before it calls it a hang.
constexpr auto kHangTimeout = std::chrono::seconds(10);

std::string BackendParamName(const testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kIoUring ? "IoUring" : "ThreadPool";
}

// Options for a case: no fixed buffers (ops_test.cc covers them), and a log that fails the
// case, since no line is expected unless a case installs its own log.
SchedulerOptions TestOptions(Backend backend, std::uint32_t io_threads) {
  SchedulerOptions options;
  options.backend = backend;
  options.io_threads = io_threads;
  options.fixed_buffer_count = 0;
  options.log = [](std::string_view line) {
    ADD_FAILURE() << "unexpected scheduler log line: " << line;
  };
  return options;
}

std::unique_ptr<Scheduler> MustCreate(const SchedulerOptions& options) {
  Result<std::unique_ptr<Scheduler>> scheduler = Scheduler::Create(options);
  if (!scheduler.ok()) {
    ADD_FAILURE() << "Scheduler::Create: " << scheduler.status().ToString();
    return nullptr;
  }
  return std::move(scheduler).value();
}

// Runs `fn` on a helper thread and gives it kHangTimeout. A hang ends the process with a
// message: the stuck thread cannot be cancelled, and the scheduler it is stuck on could not
// shut down either, so continuing would only hang ctest until its own timeout.
void MustFinish(const char* what, std::function<void()> fn) {
  std::packaged_task<void()> job(std::move(fn));
  std::future<void> done = job.get_future();
  std::thread thread(std::move(job));
  if (done.wait_for(kHangTimeout) != std::future_status::ready) {
    std::fprintf(stderr, "watchdog: %s did not finish within %lld s (hang)\n", what,
                 static_cast<long long>(kHangTimeout.count()));
    std::fflush(stderr);
    std::_Exit(1);
  }
  thread.join();
}

// Polls `condition` until it holds; false after kHangTimeout.
bool WaitUntil(const std::function<bool()>& condition) {
  const auto deadline = steady_clock::now() + kHangTimeout;
  while (!condition()) {
    if (steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Statuses reported by tasks on IO threads, read by the test thread.
class StatusLog {
 public:
  void Add(const std::string& who, const Status& status) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.push_back(who + ": " + status.ToString());
    if (status.IsCancelled()) cancelled_++;
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.size();
  }
  std::size_t cancelled() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cancelled_;
  }
  std::string Dump() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out;
    for (const std::string& entry : entries_) out += "\n  " + entry;
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> entries_;  // GUARDED_BY(mutex_)
  std::size_t cancelled_ = 0;         // GUARDED_BY(mutex_)
};

// Counts destructions of the instance that owns the pointer (moved-from ones count nothing).
class DestroyCounter {
 public:
  explicit DestroyCounter(std::atomic<int>* destroyed) : destroyed_(destroyed) {}
  DestroyCounter(DestroyCounter&& other) noexcept
      : destroyed_(std::exchange(other.destroyed_, nullptr)) {}
  DestroyCounter& operator=(DestroyCounter&&) = delete;
  ~DestroyCounter() {
    if (destroyed_ != nullptr) destroyed_->fetch_add(1);
  }

 private:
  std::atomic<int>* destroyed_;
};

// A pipe or socket pair, closed at the end of the case (ends already closed are skipped).
struct FdPair {
  int fds[2] = {-1, -1};
  static FdPair Pipe() {
    FdPair pair;
    CFS_ASSERT(pipe2(pair.fds, O_CLOEXEC) == 0);
    return pair;
  }
  static FdPair SocketPair() {
    FdPair pair;
    CFS_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair.fds) == 0);
    return pair;
  }
  FdPair() = default;
  FdPair(FdPair&& other) noexcept {
    fds[0] = std::exchange(other.fds[0], -1);
    fds[1] = std::exchange(other.fds[1], -1);
  }
  ~FdPair() {
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
  }
};

// A TCP socket listening on 127.0.0.1 at an ephemeral port; nobody ever connects.
struct Listener {
  int fd = -1;
  Listener() {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CFS_ASSERT(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CFS_ASSERT(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    CFS_ASSERT(listen(fd, 4) == 0);
  }
  ~Listener() { close(fd); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
};

Task<int> Add(int a, int b) { co_return a + b; }

Task<void> CountUp(std::atomic<int>* counter) {
  counter->fetch_add(1);
  co_return;
}

// Tasks blocked in operations that never complete by themselves.
Task<void> BlockedRead(int fd, StatusLog* log) {
  char byte;
  Result<std::size_t> n = co_await Read(fd, &byte, 1, kCurrentPosition);
  log->Add("read", n.ok() ? Status::OK() : n.status());
}
Task<void> BlockedRecv(int fd, StatusLog* log) {
  char byte;
  Result<std::size_t> n = co_await Recv(fd, &byte, 1);
  log->Add("recv", n.ok() ? Status::OK() : n.status());
}
Task<void> BlockedSleep(StatusLog* log) {
  log->Add("sleep", co_await Sleep(std::chrono::hours(1)));
}
Task<void> BlockedAccept(int fd, StatusLog* log) {
  sockaddr_in peer{};
  socklen_t len = sizeof(peer);
  Result<int> conn = co_await Accept(fd, reinterpret_cast<sockaddr*>(&peer), &len);
  if (conn.ok()) close(*conn);
  log->Add("accept", conn.ok() ? Status::OK() : conn.status());
}

// ---- Creation -------------------------------------------------------------------------------

TEST(SchedulerCreateTest, RejectsOptionsOutOfRange) {
  struct Case {
    const char* name;
    std::function<void(SchedulerOptions&)> change;
    const char* message;
  };
  const Case cases[] = {
      {"io_threads above the maximum", [](auto& o) { o.io_threads = kIoThreadsMax + 1; },
       "io_threads"},
      {"ring_entries below 8", [](auto& o) { o.ring_entries = 4; }, "ring_entries"},
      {"ring_entries not a power of two", [](auto& o) { o.ring_entries = 100; }, "ring_entries"},
      {"ring_entries above 4096", [](auto& o) { o.ring_entries = 8192; }, "ring_entries"},
      {"in_flight_max zero", [](auto& o) { o.in_flight_max = 0; }, "in_flight_max"},
      {"in_flight_max above 2*ring_entries",
       [](auto& o) {
         o.ring_entries = 64;
         o.in_flight_max = 129;
       },
       "in_flight_max"},
      {"submit_queue_max below 16", [](auto& o) { o.submit_queue_max = 8; }, "submit_queue_max"},
      {"submit_queue_max not a power of two", [](auto& o) { o.submit_queue_max = 1000; },
       "submit_queue_max"},
      {"submit_queue_max above 65536", [](auto& o) { o.submit_queue_max = 131072; },
       "submit_queue_max"},
      {"busy_poll_spins above 1000000", [](auto& o) { o.busy_poll_spins = 1000001; },
       "busy_poll_spins"},
      {"completion_batch_max zero", [](auto& o) { o.completion_batch_max = 0; },
       "completion_batch_max"},
      {"completion_batch_max above 1024", [](auto& o) { o.completion_batch_max = 1025; },
       "completion_batch_max"},
      {"fallback_pool_threads zero", [](auto& o) { o.fallback_pool_threads = 0; },
       "fallback_pool_threads"},
      {"fallback_pool_threads above 256", [](auto& o) { o.fallback_pool_threads = 257; },
       "fallback_pool_threads"},
      {"fixed_buffer_count above 1024", [](auto& o) { o.fixed_buffer_count = 1025; },
       "fixed_buffer_count"},
      {"fixed_buffer_size_bytes not a multiple of 4096",
       [](auto& o) { o.fixed_buffer_size_bytes = 6000; }, "fixed_buffer_size_bytes"},
      {"fixed_buffer_size_bytes below 4 KiB", [](auto& o) { o.fixed_buffer_size_bytes = 0; },
       "fixed_buffer_size_bytes"},
      {"fixed_buffer_size_bytes above 16 MiB",
       [](auto& o) { o.fixed_buffer_size_bytes = 32u << 20; }, "fixed_buffer_size_bytes"},
      {"shutdown_timeout_ms zero", [](auto& o) { o.shutdown_timeout_ms = 0; },
       "shutdown_timeout_ms"},
      {"shutdown_timeout_ms above 600000", [](auto& o) { o.shutdown_timeout_ms = 600001; },
       "shutdown_timeout_ms"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    SchedulerOptions options;
    c.change(options);
    Result<std::unique_ptr<Scheduler>> scheduler = Scheduler::Create(options);
    ASSERT_FALSE(scheduler.ok());
    EXPECT_TRUE(scheduler.status().IsInvalidArgument()) << scheduler.status().ToString();
    EXPECT_NE(scheduler.status().message().find(c.message), std::string_view::npos)
        << scheduler.status().ToString();
  }
}

// The smallest legal settings still run I/O: an SQ of 8 entries with 16 ops in flight, a
// 16-entry queue, one-completion batches, no spinning, and fixed buffers off with their size
// left at 0 (ignored when the count is 0).
Task<int> ReadManyTimes(int fd, int count) {
  std::vector<Task<Result<std::size_t>>> reads;
  std::vector<std::unique_ptr<char[]>> bufs;
  for (int i = 0; i < count; ++i) {
    bufs.push_back(std::make_unique<char[]>(16));
    reads.push_back(ReadFull(fd, bufs.back().get(), 16, 0));
  }
  std::vector<Result<std::size_t>> results = co_await WhenAll(std::move(reads));
  int good = 0;
  for (const Result<std::size_t>& r : results) good += r.ok() && *r == 16 ? 1 : 0;
  co_return good;
}

class SchedulerBackendTest : public testing::TestWithParam<Backend> {};
INSTANTIATE_TEST_SUITE_P(Backends, SchedulerBackendTest,
                         testing::Values(Backend::kIoUring, Backend::kThreadPool),
                         BackendParamName);

TEST_P(SchedulerBackendTest, SmallestLegalOptionsWork) {
  SchedulerOptions options = TestOptions(GetParam(), 1);
  options.ring_entries = 8;
  options.in_flight_max = 16;
  options.submit_queue_max = 16;
  options.completion_batch_max = 1;
  options.busy_poll_spins = 0;
  options.fallback_pool_threads = 1;
  options.fixed_buffer_size_bytes = 0;
  options.shutdown_timeout_ms = 1;
  std::unique_ptr<Scheduler> scheduler = MustCreate(options);
  ASSERT_NE(scheduler, nullptr);
  const int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  int good = 0;
  MustFinish("100 reads with an 8-entry ring",
             [&] { good = scheduler->BlockOn(ReadManyTimes(fd, 100)); });
  close(fd);
  EXPECT_EQ(good, 100);
  EXPECT_LE(scheduler->stats().in_flight_peak, 16u);
  EXPECT_TRUE(scheduler->Shutdown().ok());
}

TEST(SchedulerCreateTest, DefaultIoThreadsIsOnePerOnlineCpu) {
  SchedulerOptions options;
  options.fixed_buffer_count = 0;
  std::unique_ptr<Scheduler> scheduler = MustCreate(options);
  ASSERT_NE(scheduler, nullptr);
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  EXPECT_EQ(scheduler->io_threads(),
            static_cast<std::uint32_t>(std::clamp<long>(cpus, 1, kIoThreadsMax)));
}

// Each IO thread ends pinned to one allowed CPU, the one PinIoThreadsToCpus reports for it,
// and a thread beyond the allowed CPUs stays as it was.
Task<int> OnlyCpuOfThisThread() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0 || CPU_COUNT(&set) != 1) co_return -1;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) co_return cpu;
  }
  co_return -1;
}

Task<int> OnlyCpuOfThread(Scheduler* scheduler, std::uint32_t thread_index) {
  co_await SwitchTo(*scheduler, thread_index);
  co_return co_await OnlyCpuOfThisThread();
}

TEST(SchedulerCreateTest, PinIoThreadsToCpusPinsEachThreadToOneAllowedCpu) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  const std::uint32_t threads = static_cast<std::uint32_t>(CPU_COUNT(&allowed)) + 1;
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(Backend::kIoUring, threads));
  ASSERT_NE(scheduler, nullptr);
  Result<std::vector<int>> pinned = scheduler->PinIoThreadsToCpus();
  ASSERT_TRUE(pinned.ok()) << pinned.status().ToString();
  ASSERT_EQ(pinned->size(), threads);
  EXPECT_EQ(pinned->back(), -1) << "one thread more than CPUs stays unpinned";
  for (std::uint32_t t = 0; t + 1 < threads; ++t) {
    const int cpu = (*pinned)[t];
    ASSERT_GE(cpu, 0);
    EXPECT_TRUE(CPU_ISSET(cpu, &allowed)) << "thread " << t;
    EXPECT_EQ(scheduler->BlockOn(OnlyCpuOfThread(scheduler.get(), t)), cpu) << "thread " << t;
  }
  EXPECT_TRUE(scheduler->Shutdown().ok());
}

TEST(SchedulerCreateTest, ReportsItsBackend) {
  EXPECT_STREQ(BackendName(Backend::kAuto), "auto");
  EXPECT_STREQ(BackendName(Backend::kIoUring), "io-uring");
  EXPECT_STREQ(BackendName(Backend::kThreadPool), "thread-pool");
  for (Backend backend : {Backend::kIoUring, Backend::kThreadPool}) {
    std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(backend, 1));
    ASSERT_NE(scheduler, nullptr);
    EXPECT_EQ(scheduler->backend(), backend);
    EXPECT_EQ(scheduler->io_threads(), 1u);
  }
  // This machine allows io_uring (fallback_test.cc covers the refusal), so kAuto picks it.
  std::unique_ptr<Scheduler> automatic = MustCreate(TestOptions(Backend::kAuto, 1));
  ASSERT_NE(automatic, nullptr);
  EXPECT_EQ(automatic->backend(), Backend::kIoUring);
}

// In a death-test child: without CAP_IPC_LOCK and with RLIMIT_MEMLOCK at 128 KiB (room for the
// rings, which this kernel also charges to it, but not for 4 x 64 KiB of buffers), the kernel
// refuses to register fixed buffers. The scheduler must still start, log one line saying so, and
// hand out no fixed buffers. Exits 0 when it does.
Task<bool> HasFixedBuffer() { co_return AcquireFixedBuffer().has_value(); }

void CreateWithoutLockedMemory() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) std::_Exit(20);
  data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
  if (syscall(SYS_capset, &header, data) != 0) std::_Exit(21);
  rlimit limit{128 << 10, 128 << 10};
  if (setrlimit(RLIMIT_MEMLOCK, &limit) != 0) std::_Exit(22);
  SchedulerOptions options;
  options.backend = Backend::kIoUring;
  options.io_threads = 1;
  options.fixed_buffer_count = 4;
  int log_lines = 0;
  options.log = [&log_lines](std::string_view line) {
    ++log_lines;
    std::fprintf(stderr, "log: %.*s\n", static_cast<int>(line.size()), line.data());
  };
  Result<std::unique_ptr<Scheduler>> scheduler = Scheduler::Create(options);
  if (!scheduler.ok()) {
    std::fprintf(stderr, "create: %s\n", scheduler.status().ToString().c_str());
    std::_Exit(10);
  }
  if ((*scheduler)->BlockOn(HasFixedBuffer())) std::_Exit(11);
  if (!(*scheduler)->Shutdown().ok()) std::_Exit(12);
  std::_Exit(log_lines == 1 ? 0 : 13);
}

TEST(SchedulerCreateDeathTest, FixedBuffersAreDisabledWhenTheKernelRefusesToLockThem) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(CreateWithoutLockedMemory(), testing::ExitedWithCode(0),
              "log: IO thread 0: io_uring_register_buffers: .*; fixed buffers disabled");
}

// Lowers RLIMIT_NOFILE so that exactly `fds_left` more descriptors can be opened: every free
// slot below the highest open descriptor is filled first (with /dev/null), then the limit is
// set just above. Runs in a death-test child only.
void AllowOnlyMoreFds(int fds_left) {
  std::vector<int> fillers;
  int highest = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    highest = std::max(highest, std::atoi(entry.path().filename().c_str()));
  }
  for (;;) {
    const int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) std::_Exit(20);
    if (fd > highest) {
      close(fd);
      break;
    }
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) std::_Exit(21);
  limit.rlim_cur = static_cast<rlim_t>(highest + 1 + fds_left);
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) std::_Exit(22);
}

std::size_t CountEntries(const char* dir) {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++count;
  return count;
}

// In a death-test child: Create with two IO threads where only the first can get its
// descriptors. Exits 0 when Create returned an error naming IO thread 1 and left no thread
// and no descriptor behind; other codes say what went wrong.
void CreateWithTooFewFds(Backend backend, int fds_left) {
  // A first thread makes the sanitizer runtimes start their own helper threads now, so that
  // they are counted in `threads_before`.
  std::thread([] {}).join();
  AllowOnlyMoreFds(fds_left);
  const std::size_t threads_before = CountEntries("/proc/self/task");
  const std::size_t fds_before = CountEntries("/proc/self/fd");
  SchedulerOptions options;
  options.backend = backend;
  options.io_threads = 2;
  options.fixed_buffer_count = 0;
  Result<std::unique_ptr<Scheduler>> scheduler = Scheduler::Create(options);
  if (scheduler.ok()) std::_Exit(10);
  std::fprintf(stderr, "create: %s\n", scheduler.status().ToString().c_str());
  if (scheduler.status().message().find("IO thread 1") == std::string_view::npos) std::_Exit(11);
  if (scheduler.status().errno_value() != EMFILE) std::_Exit(12);
  // A joined thread leaves /proc a moment after join() returns: allow for that.
  if (!WaitUntil([&] { return CountEntries("/proc/self/task") == threads_before; })) {
    std::_Exit(13);
  }
  if (CountEntries("/proc/self/fd") != fds_before) std::_Exit(14);
  std::_Exit(0);
}

// Running out of descriptors while the second IO thread creates its ring is an operating
// error: Create returns it, and stops and joins the first thread.
TEST(SchedulerCreateDeathTest, IoUringFailureLeavesNothingRunning) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Thread 0 takes an eventfd and a ring; thread 1 gets its eventfd but no ring.
  EXPECT_EXIT(CreateWithTooFewFds(Backend::kIoUring, 3), testing::ExitedWithCode(0),
              "IO thread 1: io_uring_queue_init: Too many open files");
}

// The same for the thread-pool backend, whose IO threads each need one eventfd.
TEST(SchedulerCreateDeathTest, ThreadPoolFailureLeavesNothingRunning) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(CreateWithTooFewFds(Backend::kThreadPool, 1), testing::ExitedWithCode(0),
              "IO thread 1: .*Too many open files");
}

// ---- Outside threads: Spawn, SpawnOn, BlockOn ------------------------------------------------

// (`co_return {a, b};` does not compile: promise_type::return_value is a template.)
Task<std::pair<Scheduler*, int>> WhereAmI() {
  co_return std::pair<Scheduler*, int>{CurrentScheduler(), CurrentThreadIndex()};
}

TEST(SchedulerTest, CurrentSchedulerAndThreadIndex) {
  EXPECT_EQ(CurrentScheduler(), nullptr);
  EXPECT_EQ(CurrentThreadIndex(), -1);
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(Backend::kAuto, 2));
  ASSERT_NE(scheduler, nullptr);
  for (int i = 0; i < 4; ++i) {
    auto [where, index] = scheduler->BlockOn(WhereAmI());
    EXPECT_EQ(where, scheduler.get());
    EXPECT_GE(index, 0);
    EXPECT_LT(index, 2);
  }
  EXPECT_EQ(CurrentScheduler(), nullptr);
}

Task<void> RecordThread(std::atomic<int>* per_thread, std::atomic<int>* done) {
  per_thread[CurrentThreadIndex()].fetch_add(1);
  done->fetch_add(1);
  co_return;
}

TEST_P(SchedulerBackendTest, SpawnDistributesRoundRobin) {
  constexpr int kTasks = 1000;
  std::atomic<int> per_thread[2] = {0, 0};
  std::atomic<int> done{0};
  // Declared after the state its tasks point to, so it goes first on every path out.
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 2));
  ASSERT_NE(scheduler, nullptr);
  for (int i = 0; i < kTasks; ++i) scheduler->Spawn(RecordThread(per_thread, &done));
  ASSERT_TRUE(WaitUntil([&] { return done.load() == kTasks; })) << done.load();
  // This thread is the only one spawning, so round robin alternates exactly.
  EXPECT_EQ(per_thread[0].load(), kTasks / 2);
  EXPECT_EQ(per_thread[1].load(), kTasks / 2);
  EXPECT_EQ(scheduler->stats().tasks_spawned, static_cast<std::uint64_t>(kTasks));
}

TEST_P(SchedulerBackendTest, SpawnOnRunsOnTheChosenThread) {
  std::atomic<int> per_thread[2] = {0, 0};
  std::atomic<int> done{0};
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 2));
  ASSERT_NE(scheduler, nullptr);
  for (int i = 0; i < 30; ++i) scheduler->SpawnOn(1, RecordThread(per_thread, &done));
  for (int i = 0; i < 20; ++i) scheduler->SpawnOn(0, RecordThread(per_thread, &done));
  ASSERT_TRUE(WaitUntil([&] { return done.load() == 50; })) << done.load();
  EXPECT_EQ(per_thread[0].load(), 20);
  EXPECT_EQ(per_thread[1].load(), 30);
}

Task<int> SleepThenAdd(int a, int b) {
  Status slept = co_await Sleep(std::chrono::microseconds(a % 50));
  if (!slept.ok()) co_return -1;
  co_return a + b;
}

TEST_P(SchedulerBackendTest, BlockOnFromManyOutsideThreadsAtOnce) {
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 2));
  ASSERT_NE(scheduler, nullptr);
  constexpr int kThreads = 16;
  constexpr int kCallsPerThread = 200;
  std::atomic<int> wrong{0};
  std::latch start(kThreads);
  MustFinish("BlockOn from 16 threads", [&] {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        for (int i = 0; i < kCallsPerThread; ++i) {
          const int a = t * 1000 + i;
          const int sum =
              (i % 2 == 0) ? scheduler->BlockOn(Add(a, 1)) : scheduler->BlockOn(SleepThenAdd(a, 1));
          if (sum != a + 1) wrong.fetch_add(1);
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
  });
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(scheduler->stats().tasks_spawned,
            static_cast<std::uint64_t>(kThreads) * kCallsPerThread);
}

// ---- 100,000 concurrent reads ---------------------------------------------------------------

constexpr int kConcurrentReads = 100000;
constexpr std::size_t kReadBytes = 256;
constexpr std::uint64_t kReadFileBytes = 1 << 20;

std::uint8_t PatternByte(std::uint64_t offset) {
  return static_cast<std::uint8_t>((offset * 131) ^ (offset >> 9));
}

Task<bool> ReadAndCheck(int fd, std::uint64_t offset) {
  std::uint8_t buf[kReadBytes];
  Result<std::size_t> n = co_await Read(fd, buf, sizeof(buf), offset);
  if (!n.ok() || *n != kReadBytes) co_return false;
  for (std::size_t i = 0; i < kReadBytes; ++i) {
    if (buf[i] != PatternByte(offset + i)) co_return false;
  }
  co_return true;
}

// All reads are started by one WhenAll, so all 100,000 coroutines are alive and suspended in
// their Read at once; the IO thread keeps at most in_flight_max of them in the kernel.
Task<int> ReadConcurrently(int fd) {
  std::vector<Task<bool>> reads;
  reads.reserve(kConcurrentReads);
  for (int i = 0; i < kConcurrentReads; ++i) {
    const std::uint64_t offset =
        (std::uint64_t{static_cast<std::uint32_t>(i)} * 4099 * kReadBytes) %
        (kReadFileBytes - kReadBytes);
    reads.push_back(ReadAndCheck(fd, offset));
  }
  std::vector<bool> results = co_await WhenAll(std::move(reads));
  int good = 0;
  for (bool ok : results) good += ok ? 1 : 0;
  co_return good;
}

TEST_P(SchedulerBackendTest, HundredThousandConcurrentReadsRespectTheInFlightLimit) {
  char dir_pattern[] = "/var/tmp/cascadefs-scheduler-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir_pattern), nullptr);
  const std::string path = std::string(dir_pattern) + "/data";
  {
    std::vector<std::uint8_t> bytes(kReadFileBytes);
    for (std::uint64_t i = 0; i < kReadFileBytes; ++i) bytes[i] = PatternByte(i);
    const int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    close(fd);
  }
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);

  SchedulerOptions options = TestOptions(GetParam(), 1);
  std::unique_ptr<Scheduler> scheduler = MustCreate(options);
  ASSERT_NE(scheduler, nullptr);
  int good = 0;
  MustFinish("100,000 concurrent reads", [&] { good = scheduler->BlockOn(ReadConcurrently(fd)); });
  close(fd);
  std::filesystem::remove_all(dir_pattern);

  EXPECT_EQ(good, kConcurrentReads);
  const SchedulerStats stats = scheduler->stats();
  // The limit was reached and never exceeded, and the rest waited in the pending list.
  EXPECT_EQ(stats.in_flight_peak, options.in_flight_max);
  EXPECT_GE(stats.ops_waited_pending,
            static_cast<std::uint64_t>(kConcurrentReads) - options.in_flight_max);
  EXPECT_GE(stats.ops_completed, static_cast<std::uint64_t>(kConcurrentReads));
  EXPECT_EQ(stats.in_flight, 0u);
  EXPECT_TRUE(scheduler->Shutdown().ok());
}

// ---- Waking a sleeping IO thread ------------------------------------------------------------

struct LongRead {
  std::atomic<bool> done{false};
  Status status;          // written before `done`
  std::size_t bytes = 0;  // written before `done`
};

Task<void> ReadOneByte(int fd, LongRead* out) {
  char byte = 0;
  Result<std::size_t> n = co_await Read(fd, &byte, 1, kCurrentPosition);
  out->status = n.ok() ? Status::OK() : n.status();
  out->bytes = n.ok() ? *n : 0;
  out->done.store(true, std::memory_order_release);
}

struct WakeCase {
  Backend backend;
  std::uint32_t busy_poll_spins;
};

class SchedulerWakeTest : public testing::TestWithParam<WakeCase> {};

INSTANTIATE_TEST_SUITE_P(
    BackendsAndSpins, SchedulerWakeTest,
    testing::Values(WakeCase{Backend::kIoUring, 0}, WakeCase{Backend::kIoUring, 64},
                    WakeCase{Backend::kThreadPool, 0}, WakeCase{Backend::kThreadPool, 64}),
    [](const testing::TestParamInfo<WakeCase>& info) {
      return std::string(info.param.backend == Backend::kIoUring ? "IoUring" : "ThreadPool") +
             "Spins" + std::to_string(info.param.busy_poll_spins);
    });

// One read stays in flight forever (a pipe nobody writes to) while the IO thread sleeps in the
// kernel; a new task handed in from outside must still run: the submitter wakes the thread.
TEST_P(SchedulerWakeTest, NewTaskWakesAThreadAsleepWithAReadInFlight) {
  SchedulerOptions options = TestOptions(GetParam().backend, 1);
  options.busy_poll_spins = GetParam().busy_poll_spins;
  FdPair pipe = FdPair::Pipe();
  LongRead long_read;
  std::unique_ptr<Scheduler> scheduler = MustCreate(options);
  ASSERT_NE(scheduler, nullptr);
  const bool no_spinning = options.busy_poll_spins == 0;
  std::uint64_t sleeps_before = 0;
  if (no_spinning) {
    // An idle thread that does not spin goes to sleep at once; wait until it did.
    ASSERT_TRUE(WaitUntil([&] { return scheduler->stats().sleeps >= 1; }));
    sleeps_before = scheduler->stats().sleeps;
  }
  scheduler->Spawn(ReadOneByte(pipe.fds[0], &long_read));
  ASSERT_TRUE(WaitUntil([&] { return scheduler->stats().in_flight == 1; }));
  if (no_spinning) {
    // After issuing the read the thread has nothing to do: it sleeps again.
    ASSERT_TRUE(WaitUntil([&] { return scheduler->stats().sleeps > sleeps_before; }));
  }

  int sum = 0;
  MustFinish("BlockOn while the IO thread sleeps", [&] { sum = scheduler->BlockOn(Add(40, 2)); });
  EXPECT_EQ(sum, 42);
  // And once more with I/O of its own, next to the read that is still in flight.
  MustFinish("BlockOn with I/O while the IO thread sleeps",
             [&] { sum = scheduler->BlockOn(SleepThenAdd(1, 2)); });
  EXPECT_EQ(sum, 3);
  EXPECT_FALSE(long_read.done.load());

  const SchedulerStats stats = scheduler->stats();
  EXPECT_GT(stats.sleeps, 0u);
  if (no_spinning) {
    EXPECT_GT(stats.wakeups_sent, 0u);
  }

  // The long read still completes when data arrives.
  ASSERT_EQ(write(pipe.fds[1], "x", 1), 1);
  ASSERT_TRUE(WaitUntil([&] { return long_read.done.load(std::memory_order_acquire); }));
  EXPECT_TRUE(long_read.status.ok()) << long_read.status.ToString();
  EXPECT_EQ(long_read.bytes, 1u);
  EXPECT_TRUE(scheduler->Shutdown().ok());
}

// ---- Long operations next to short ones ------------------------------------------------------

Task<Result<std::size_t>> ReadSomeBytes(int fd) {
  char buf[64];
  co_return co_await Read(fd, buf, sizeof(buf), 0);
}

// Sleep "suspends the task for `duration` without blocking the thread". Tasks sleeping for an
// hour, as many as the fallback pool has threads, must not hold up an unrelated file read. (On
// io_uring a sleep is a kernel timer; on the thread pool each sleep occupies a pool thread in
// clock_nanosleep for its whole duration.)
TEST_P(SchedulerBackendTest, LongSleepsDoNotHoldUpOtherIo) {
  StatusLog log;
  SchedulerOptions options = TestOptions(GetParam(), 1);
  options.fallback_pool_threads = 2;
  std::unique_ptr<Scheduler> scheduler = MustCreate(options);
  ASSERT_NE(scheduler, nullptr);
  for (std::uint32_t i = 0; i < options.fallback_pool_threads; ++i) {
    scheduler->Spawn(BlockedSleep(&log));
  }
  ASSERT_TRUE(WaitUntil([&] { return scheduler->stats().in_flight == 2; }));
  const int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  // The read runs on a helper thread so that a stuck read can be released by Shutdown (which
  // cancels the sleeps) and the case fails instead of hanging.
  std::promise<Result<std::size_t>> promise;
  std::future<Result<std::size_t>> read = promise.get_future();
  std::thread reader([&] { promise.set_value(scheduler->BlockOn(ReadSomeBytes(fd))); });
  const bool finished = read.wait_for(kHangTimeout) == std::future_status::ready;
  Status shutdown;
  MustFinish("Shutdown", [&] { shutdown = scheduler->Shutdown(); });
  reader.join();
  close(fd);
  Result<std::size_t> n = read.get();
  EXPECT_TRUE(finished) << "a file read waited " << kHangTimeout.count()
                        << " s behind two sleeping tasks (it ended with "
                        << (n.ok() ? std::string("OK") : n.status().ToString()) << " at Shutdown)";
  EXPECT_TRUE(n.ok() || !finished) << n.status().ToString();
  EXPECT_TRUE(shutdown.ok()) << shutdown.ToString();
}

// ---- Moving between IO threads --------------------------------------------------------------

struct Places {
  int before = -2;
  int inner = -2;
  int inner_after_io = -2;
  int after = -2;
};

Task<int> InnerTask(Places* places) {
  places->inner = CurrentThreadIndex();
  Status slept = co_await Sleep(std::chrono::microseconds(100));
  places->inner_after_io = CurrentThreadIndex();
  co_return slept.ok() ? 7 : -1;
}

Task<int> RunOnFromThreadZero(Scheduler* scheduler, Places* places) {
  co_await SwitchTo(*scheduler, 0);
  places->before = CurrentThreadIndex();
  const int value = co_await RunOn(*scheduler, 1, InnerTask(places));
  places->after = CurrentThreadIndex();
  co_return value;
}

TEST_P(SchedulerBackendTest, RunOnRunsTheTaskThereAndComesBack) {
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 2));
  ASSERT_NE(scheduler, nullptr);
  for (int round = 0; round < 20; ++round) {
    Places places;
    int value = 0;
    MustFinish("RunOn",
               [&] { value = scheduler->BlockOn(RunOnFromThreadZero(scheduler.get(), &places)); });
    EXPECT_EQ(value, 7);
    EXPECT_EQ(places.before, 0);
    EXPECT_EQ(places.inner, 1);
    EXPECT_EQ(places.inner_after_io, 1);
    EXPECT_EQ(places.after, 0);
  }
}

Task<void> RecordInner(int* inner) {
  *inner = CurrentThreadIndex();
  co_return;
}

Task<std::pair<int, int>> RunOnVoid(Scheduler* scheduler) {
  co_await SwitchTo(*scheduler, 1);
  int inner = -2;
  co_await RunOn(*scheduler, 0, RecordInner(&inner));
  co_return std::pair<int, int>{inner, CurrentThreadIndex()};
}

TEST_P(SchedulerBackendTest, RunOnOfAVoidTask) {
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 2));
  ASSERT_NE(scheduler, nullptr);
  std::pair<int, int> where;
  MustFinish("RunOn<void>", [&] { where = scheduler->BlockOn(RunOnVoid(scheduler.get())); });
  EXPECT_EQ(where.first, 0);   // the inner task ran on thread 0
  EXPECT_EQ(where.second, 1);  // and the caller came back to thread 1
}

// Bounces between the threads; after each SwitchTo the task must be on the thread it asked
// for (SwitchTo the thread it is already on completes without suspending).
Task<int> PingPong(Scheduler* scheduler, int switches) {
  int misplaced = 0;
  for (int i = 0; i < switches; ++i) {
    const auto target = static_cast<std::uint32_t>((i / 2) % 2);  // 0,0,1,1,0,0,...
    co_await SwitchTo(*scheduler, target);
    if (CurrentThreadIndex() != static_cast<int>(target)) ++misplaced;
    if (i % 10 == 0) {
      Status slept = co_await Sleep(std::chrono::nanoseconds(0));
      if (!slept.ok() || CurrentThreadIndex() != static_cast<int>(target)) ++misplaced;
    }
  }
  co_return misplaced;
}

TEST_P(SchedulerBackendTest, SwitchToMovesTheTask) {
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 2));
  ASSERT_NE(scheduler, nullptr);
  int misplaced = -1;
  MustFinish("SwitchTo ping-pong",
             [&] { misplaced = scheduler->BlockOn(PingPong(scheduler.get(), 1000)); });
  EXPECT_EQ(misplaced, 0);
}

// Many tasks switching threads at once through 16-entry queues: IO threads then find each
// other's queues full and park the nodes in their outboxes; every task must still finish.
Task<int> ManyPingPongs(Scheduler* scheduler, int tasks, int switches) {
  std::vector<Task<int>> all;
  for (int i = 0; i < tasks; ++i) all.push_back(PingPong(scheduler, switches));
  std::vector<int> misplaced = co_await WhenAll(std::move(all));
  int total = 0;
  for (int m : misplaced) total += m;
  co_return total;
}

TEST_P(SchedulerBackendTest, ManyTasksSwitchingThreadsThroughSmallQueues) {
  SchedulerOptions options = TestOptions(GetParam(), 2);
  options.submit_queue_max = 16;
  std::unique_ptr<Scheduler> scheduler = MustCreate(options);
  ASSERT_NE(scheduler, nullptr);
  int misplaced = -1;
  MustFinish("1000 tasks switching threads",
             [&] { misplaced = scheduler->BlockOn(ManyPingPongs(scheduler.get(), 1000, 20)); });
  EXPECT_EQ(misplaced, 0);
  std::printf("queue_full_waits: %llu\n",
              static_cast<unsigned long long>(scheduler->stats().queue_full_waits));
}

struct ChildResult {
  int value = 0;
  int thread = -2;
};

Task<ChildResult> ChildWork(int i) {
  Status slept = co_await Sleep(std::chrono::microseconds((i % 3) * 200));
  co_return ChildResult{slept.ok() ? i * i : -1, CurrentThreadIndex()};
}

struct JoinPlaces {
  std::vector<ChildResult> children;
  int parent_after = -2;
};

// The parent on thread 0 awaits a WhenAll of children that run on thread 1 (through RunOn,
// which brings each back to thread 0 before it finishes).
Task<JoinPlaces> JoinAcrossThreads(Scheduler* scheduler, int count) {
  co_await SwitchTo(*scheduler, 0);
  std::vector<Task<ChildResult>> children;
  for (int i = 0; i < count; ++i) children.push_back(RunOn(*scheduler, 1, ChildWork(i)));
  JoinPlaces out;
  out.children = co_await WhenAll(std::move(children));
  out.parent_after = CurrentThreadIndex();
  co_return out;
}

TEST_P(SchedulerBackendTest, WhenAllOfTasksRunningOnAnotherThread) {
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 2));
  ASSERT_NE(scheduler, nullptr);
  JoinPlaces places;
  MustFinish("WhenAll across threads",
             [&] { places = scheduler->BlockOn(JoinAcrossThreads(scheduler.get(), 50)); });
  ASSERT_EQ(places.children.size(), 50u);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(places.children[i].value, i * i);
    EXPECT_EQ(places.children[i].thread, 1);
  }
  EXPECT_EQ(places.parent_after, 0);
}

// Children that move to thread 1 and finish there: the parent resumes on thread 1, where the
// last child finished (the documented WhenAll behaviour).
Task<int> MoveAndStay(Scheduler* scheduler, int i) {
  co_await SwitchTo(*scheduler, 1);
  Status slept = co_await Sleep(std::chrono::microseconds((i % 4) * 100));
  co_return slept.ok() ? CurrentThreadIndex() : -1;
}

Task<std::pair<std::vector<int>, int>> JoinChildrenThatMove(Scheduler* scheduler) {
  co_await SwitchTo(*scheduler, 0);
  std::vector<Task<int>> children;
  for (int i = 0; i < 20; ++i) children.push_back(MoveAndStay(scheduler, i));
  std::vector<int> threads = co_await WhenAll(std::move(children));
  co_return std::pair<std::vector<int>, int>{threads, CurrentThreadIndex()};
}

TEST_P(SchedulerBackendTest, WhenAllResumesTheParentWhereTheLastChildFinished) {
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 2));
  ASSERT_NE(scheduler, nullptr);
  std::pair<std::vector<int>, int> result;
  MustFinish("WhenAll of moving children",
             [&] { result = scheduler->BlockOn(JoinChildrenThatMove(scheduler.get())); });
  EXPECT_EQ(result.first, std::vector<int>(20, 1));
  EXPECT_EQ(result.second, 1);
}

// ---- Priorities -----------------------------------------------------------------------------

// Foreground turns: enough that the thread goes through many loop turns while the foreground
// task is ready (a turn resumes at most kRunBatchMax = 1024 coroutines, worker.cc), so the
// starvation guard must let the background move.
constexpr int kForegroundYields = 100000;
constexpr int kBackgroundTasks = 3;
// Each background task stops by itself after this many turns if the case forgot it.
constexpr int kBackgroundTurnsMax = 10000000;

struct PriorityState {
  std::atomic<int> background_started{0};
  std::atomic<int> background_finished{0};
  std::atomic<bool> stop{false};
  // Touched only by tasks on the one IO thread.
  bool foreground_active = false;
  std::uint64_t background_turns_while_foreground_ready = 0;
  std::uint64_t foreground_turns = 0;
};

Task<void> BackgroundLoop(PriorityState* state) {
  state->background_started.fetch_add(1);
  for (int i = 0; i < kBackgroundTurnsMax && !state->stop.load(); ++i) {
    co_await Yield();
    if (state->foreground_active) state->background_turns_while_foreground_ready++;
  }
  state->background_finished.fetch_add(1);
}

Task<std::uint64_t> ForegroundLoop(PriorityState* state) {
  state->foreground_active = true;
  for (int i = 0; i < kForegroundYields; ++i) {
    co_await Yield();
    state->foreground_turns++;
  }
  state->foreground_active = false;
  co_return state->background_turns_while_foreground_ready;
}

// One IO thread; three background tasks yield in a loop, then a foreground task yields
// 100,000 times. While the foreground task is ready, a background task may run only once
// every kBackgroundStarveTurnsMax loop turns (and every turn resumes the foreground at least
// once), yet it must run at least once: background work always moves.
TEST(SchedulerPriorityTest, ForegroundRunsFirstAndBackgroundStillMoves) {
  PriorityState state;
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(Backend::kAuto, 1));
  ASSERT_NE(scheduler, nullptr);
  for (int i = 0; i < kBackgroundTasks; ++i) {
    scheduler->Spawn(BackgroundLoop(&state), Priority::kBackground);
  }
  ASSERT_TRUE(WaitUntil([&] { return state.background_started.load() == kBackgroundTasks; }));
  std::uint64_t background_turns = 0;
  MustFinish("foreground loop", [&] {
    background_turns = scheduler->BlockOn(ForegroundLoop(&state), Priority::kForeground);
  });
  state.stop.store(true);
  ASSERT_TRUE(WaitUntil([&] { return state.background_finished.load() == kBackgroundTasks; }));
  EXPECT_EQ(state.foreground_turns, static_cast<std::uint64_t>(kForegroundYields));
  EXPECT_GE(background_turns, 1u) << "the background starved while the foreground was ready";
  EXPECT_LE(background_turns, kForegroundYields / kBackgroundStarveTurnsMax + 1)
      << "the background ran more than once every " << kBackgroundStarveTurnsMax
      << " turns while the foreground was ready";
  EXPECT_GT(scheduler->stats().background_resumes, 0u);
}

// Two background tasks and one foreground task, each yielding 500 times on one IO thread. The
// background tasks are already running (yielding in a loop until `go`) when the foreground
// task arrives, so from then on all three are ready at once. The foreground must finish before
// the background tasks get more than one turn per kBackgroundStarveTurnsMax turns; with 1000
// background turns to go, that is far from most of them.
struct OrderState {
  std::mutex mutex;
  std::vector<char> order;  // 'F' or 'B', one per resumption after a Yield
  std::atomic<int> background_ready{0};
  std::atomic<bool> go{false};
  std::atomic<int> background_finished{0};
};

Task<void> BackgroundYields(OrderState* state, int yields) {
  state->background_ready.fetch_add(1);
  while (!state->go.load()) co_await Yield();
  for (int i = 0; i < yields; ++i) {
    co_await Yield();
    std::lock_guard<std::mutex> lock(state->mutex);
    state->order.push_back('B');
  }
  state->background_finished.fetch_add(1);
}

Task<void> ForegroundYields(OrderState* state, int yields) {
  state->go.store(true);
  for (int i = 0; i < yields; ++i) {
    co_await Yield();
    std::lock_guard<std::mutex> lock(state->mutex);
    state->order.push_back('F');
  }
}

TEST(SchedulerPriorityTest, ForegroundWorkFinishesBeforeBackgroundGetsMostOfItsTurns) {
  OrderState state;
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(Backend::kAuto, 1));
  ASSERT_NE(scheduler, nullptr);
  constexpr int kYields = 500;
  for (int i = 0; i < 2; ++i) {
    scheduler->Spawn(BackgroundYields(&state, kYields), Priority::kBackground);
  }
  ASSERT_TRUE(WaitUntil([&] { return state.background_ready.load() == 2; }));
  MustFinish("foreground yields", [&] { scheduler->BlockOn(ForegroundYields(&state, kYields)); });
  ASSERT_TRUE(WaitUntil([&] { return state.background_finished.load() == 2; }));
  std::lock_guard<std::mutex> lock(state.mutex);
  ASSERT_EQ(state.order.size(), 3u * kYields);
  // Where the foreground's last turn is, and how many background turns came before it.
  std::size_t last_foreground = 0;
  for (std::size_t i = 0; i < state.order.size(); ++i) {
    if (state.order[i] == 'F') last_foreground = i;
  }
  std::size_t background_before = 0;
  for (std::size_t i = 0; i < last_foreground; ++i) background_before += state.order[i] == 'B';
  // 1000 background turns in all; at most one per kBackgroundStarveTurnsMax turns while the
  // foreground was ready.
  EXPECT_LE(background_before, kYields / kBackgroundStarveTurnsMax + 1);
}

// ---- Full submission queues -----------------------------------------------------------------

// 1000 outside threads spawn at once into 16-entry queues: submitters find the queues full
// and wait for space; every task must run.
TEST_P(SchedulerBackendTest, SpawnsFromManyThreadsIntoFullQueuesAllRun) {
  SchedulerOptions options = TestOptions(GetParam(), 2);
  options.submit_queue_max = 16;
  constexpr int kThreads = 1000;
  constexpr int kSpawnsPerThread = 4;
  std::atomic<int> done{0};
  std::unique_ptr<Scheduler> scheduler = MustCreate(options);
  ASSERT_NE(scheduler, nullptr);
  // Creating 1000 threads takes seconds under ThreadSanitizer and cannot hang, so it happens
  // before the watchdog starts; the threads then spawn together when `start` opens.
  std::latch start(1);
  std::atomic<int> finished_threads{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.wait();
      for (int i = 0; i < kSpawnsPerThread; ++i) scheduler->Spawn(CountUp(&done));
      finished_threads.fetch_add(1);
    });
  }
  start.count_down();
  const bool all_returned = WaitUntil([&] { return finished_threads.load() == kThreads; });
  if (!all_returned) {
    std::fprintf(stderr, "watchdog: %d of %d spawning threads still blocked in Spawn (hang)\n",
                 kThreads - finished_threads.load(), kThreads);
    std::fflush(stderr);
    std::_Exit(1);
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_TRUE(WaitUntil([&] { return done.load() == kThreads * kSpawnsPerThread; })) << done.load();
  std::printf("queue_full_waits: %llu\n",
              static_cast<unsigned long long>(scheduler->stats().queue_full_waits));
}

// ---- Shutdown -------------------------------------------------------------------------------

TEST_P(SchedulerBackendTest, ShutdownWhileIdle) {
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 2));
  ASSERT_NE(scheduler, nullptr);
  EXPECT_EQ(scheduler->BlockOn(Add(1, 1)), 2);
  Status first = scheduler->Shutdown();
  EXPECT_TRUE(first.ok()) << first.ToString();
  Status second = scheduler->Shutdown();  // idempotent
  EXPECT_TRUE(second.ok()) << second.ToString();
  EXPECT_EQ(scheduler->stats().in_flight, 0u);
}

TEST_P(SchedulerBackendTest, DestructorShutsDownWithoutAnExplicitShutdown) {
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 2));
  ASSERT_NE(scheduler, nullptr);
  EXPECT_EQ(scheduler->BlockOn(Add(1, 1)), 2);
  MustFinish("~Scheduler", [&] { scheduler.reset(); });
}

// Spawns one task per kind of never-ending operation and waits until all are in flight.
struct BlockedOps {
  FdPair pipe1 = FdPair::Pipe();
  FdPair pipe2 = FdPair::Pipe();
  FdPair sockets = FdPair::SocketPair();
  Listener listener;
  StatusLog log;
  static constexpr int kCount = 5;

  bool Start(Scheduler& scheduler) {
    scheduler.Spawn(BlockedRead(pipe1.fds[0], &log));
    scheduler.Spawn(BlockedRead(pipe2.fds[0], &log));
    scheduler.Spawn(BlockedRecv(sockets.fds[0], &log));
    scheduler.Spawn(BlockedSleep(&log));
    scheduler.Spawn(BlockedAccept(listener.fd, &log));
    return WaitUntil([&] { return scheduler.stats().in_flight == kCount; });
  }
};

TEST_P(SchedulerBackendTest, ShutdownCancelsOperationsInFlight) {
  SchedulerOptions options = TestOptions(GetParam(), 2);
  BlockedOps ops;
  std::unique_ptr<Scheduler> scheduler = MustCreate(options);
  ASSERT_NE(scheduler, nullptr);
  ASSERT_TRUE(ops.Start(*scheduler)) << "in flight: " << scheduler->stats().in_flight;
  Status status;
  const auto start = steady_clock::now();
  MustFinish("Shutdown with operations in flight", [&] { status = scheduler->Shutdown(); });
  const auto elapsed_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - start);
  // OK means every operation drained before shutdown_timeout_ms (5 s); nothing was abandoned.
  EXPECT_TRUE(status.ok()) << status.ToString() << " after " << elapsed_ms.count() << " ms";
  EXPECT_EQ(ops.log.size(), static_cast<std::size_t>(BlockedOps::kCount)) << ops.log.Dump();
  EXPECT_EQ(ops.log.cancelled(), static_cast<std::size_t>(BlockedOps::kCount)) << ops.log.Dump();
  std::printf("shutdown took %lld ms\n", static_cast<long long>(elapsed_ms.count()));
}

TEST_P(SchedulerBackendTest, DestructorCancelsOperationsInFlight) {
  BlockedOps ops;
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 2));
  ASSERT_NE(scheduler, nullptr);
  ASSERT_TRUE(ops.Start(*scheduler));
  MustFinish("~Scheduler with operations in flight", [&] { scheduler.reset(); });
  EXPECT_EQ(ops.log.cancelled(), static_cast<std::size_t>(BlockedOps::kCount)) << ops.log.Dump();
}

// After the cancellation, a task keeps using the runtime: new operations fail at once with
// Cancelled (they must not hold up the drain), but Close still runs so the task can release
// what it holds (worker.cc, Worker::SubmitOp).
struct AfterCancel {
  StatusLog log;
  Status close_status = Status::IOError("close not reached");  // written before `done`
  std::atomic<bool> done{false};
};

Task<void> ReadThenCleanUp(int fd, int file_fd, AfterCancel* out) {
  char byte;
  Result<std::size_t> n = co_await Read(fd, &byte, 1, kCurrentPosition);
  out->log.Add("blocked read", n.ok() ? Status::OK() : n.status());
  Result<std::size_t> again = co_await Read(file_fd, &byte, 1, 0);
  out->log.Add("read after cancel", again.ok() ? Status::OK() : again.status());
  out->log.Add("sleep after cancel", co_await Sleep(std::chrono::milliseconds(1)));
  out->close_status = co_await Close(fd);
  out->done.store(true, std::memory_order_release);
}

TEST_P(SchedulerBackendTest, AfterCancellationNewOpsFailButCloseRuns) {
  FdPair sockets = FdPair::SocketPair();
  const int file_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(file_fd, 0);
  AfterCancel after;
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 1));
  ASSERT_NE(scheduler, nullptr);
  scheduler->Spawn(ReadThenCleanUp(sockets.fds[0], file_fd, &after));
  ASSERT_TRUE(WaitUntil([&] { return scheduler->stats().in_flight == 1; }));
  Status status;
  MustFinish("Shutdown", [&] { status = scheduler->Shutdown(); });
  close(file_fd);
  EXPECT_TRUE(status.ok()) << status.ToString();
  ASSERT_TRUE(after.done.load(std::memory_order_acquire));
  EXPECT_EQ(after.log.cancelled(), 3u) << after.log.Dump();
  EXPECT_TRUE(after.close_status.ok()) << after.close_status.ToString();
  // The task's end of the socket pair is really closed: the peer reads end-of-file.
  char byte;
  const ssize_t n = recv(sockets.fds[1], &byte, 1, MSG_DONTWAIT);
  EXPECT_EQ(n, 0) << "the descriptor is still open (recv: "
                  << (n < 0 ? std::strerror(errno) : "data") << ")";
  if (after.close_status.ok()) sockets.fds[0] = -1;  // the task closed it
}

// Operations waiting in the pending list (in_flight_max reached) when Shutdown begins are
// cancelled too: here one read is in the kernel and three wait behind it.
TEST_P(SchedulerBackendTest, ShutdownCancelsOperationsWaitingForAnInFlightSlot) {
  FdPair pipes[4] = {FdPair::Pipe(), FdPair::Pipe(), FdPair::Pipe(), FdPair::Pipe()};
  StatusLog log;
  SchedulerOptions options = TestOptions(GetParam(), 1);
  options.in_flight_max = 1;
  std::unique_ptr<Scheduler> scheduler = MustCreate(options);
  ASSERT_NE(scheduler, nullptr);
  for (FdPair& pipe : pipes) scheduler->Spawn(BlockedRead(pipe.fds[0], &log));
  ASSERT_TRUE(WaitUntil([&] { return scheduler->stats().ops_waited_pending == 3; }));
  EXPECT_EQ(scheduler->stats().in_flight, 1u);
  Status status;
  MustFinish("Shutdown with pending operations", [&] { status = scheduler->Shutdown(); });
  EXPECT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(log.cancelled(), 4u) << log.Dump();
}

// Spawns racing with Shutdown: every task either runs or is destroyed unrun, never lost, and
// Shutdown still drains (the race of scheduler.cc, "Shutdown protocol", step 1).
Task<void> CountedCountUp(DestroyCounter counter, std::atomic<int>* ran) {
  (void)counter;
  ran->fetch_add(1);
  co_await Yield();
}

TEST_P(SchedulerBackendTest, SpawnsRacingWithShutdownRunOrAreDestroyed) {
  std::atomic<int> ran{0};
  std::atomic<int> destroyed{0};
  std::atomic<int> spawned{0};
  std::atomic<bool> spawning{true};
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 2));
  ASSERT_NE(scheduler, nullptr);
  Status status;
  MustFinish("Spawn racing with Shutdown", [&] {
    std::thread spawner([&] {
      // Keeps spawning until Shutdown returned, then a few more (those must be destroyed).
      for (int after = 0; after < 100;) {
        scheduler->Spawn(CountedCountUp(DestroyCounter(&destroyed), &ran));
        spawned.fetch_add(1);
        if (!spawning.load()) ++after;
      }
    });
    while (spawned.load() < 1000) std::this_thread::yield();
    status = scheduler->Shutdown();
    spawning.store(false);
    spawner.join();
  });
  EXPECT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(destroyed.load(), spawned.load()) << "ran: " << ran.load();
  EXPECT_LE(static_cast<std::uint64_t>(ran.load()), scheduler->stats().tasks_spawned);
  EXPECT_LT(ran.load(), spawned.load());  // the last 100 came after Shutdown returned
  EXPECT_GE(ran.load(), 1000);
}

TEST(SchedulerTest, NoFixedBuffersWhenTheCountIsZero) {
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(Backend::kAuto, 1));
  ASSERT_NE(scheduler, nullptr);
  EXPECT_FALSE(scheduler->BlockOn(HasFixedBuffer()));
}

// Spawn after Shutdown destroys the task without running it: its frame, and the parameter in
// it, are destroyed before Spawn returns.
Task<void> MustNotRun(DestroyCounter counter, std::atomic<bool>* ran) {
  (void)counter;
  ran->store(true);
  co_return;
}

TEST_P(SchedulerBackendTest, SpawnAfterShutdownDestroysTheTaskUnrun) {
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 2));
  ASSERT_NE(scheduler, nullptr);
  ASSERT_TRUE(scheduler->Shutdown().ok());
  std::atomic<int> destroyed{0};
  std::atomic<bool> ran{false};
  scheduler->Spawn(MustNotRun(DestroyCounter(&destroyed), &ran));
  EXPECT_EQ(destroyed.load(), 1);
  scheduler->SpawnOn(1, MustNotRun(DestroyCounter(&destroyed), &ran), Priority::kBackground);
  EXPECT_EQ(destroyed.load(), 2);
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(scheduler->stats().tasks_spawned, 0u);
}

// BlockOn "blocks the calling thread until [the task] finishes". A coroutine finishes when its
// frame, and with it every parameter, is destroyed; a caller that returns from BlockOn while
// a parameter's destructor is still running on the IO thread races with it (and a destructor
// that touches the caller's stack may touch a dead frame). Here the parameter's destructor
// takes a while, so BlockOn must not return before it completed.
class SlowToDestroy {
 public:
  explicit SlowToDestroy(std::atomic<bool>* destroyed) : destroyed_(destroyed) {}
  SlowToDestroy(SlowToDestroy&& other) noexcept
      : destroyed_(std::exchange(other.destroyed_, nullptr)) {}
  SlowToDestroy& operator=(SlowToDestroy&&) = delete;
  ~SlowToDestroy() {
    if (destroyed_ == nullptr) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    destroyed_->store(true);
  }

 private:
  std::atomic<bool>* destroyed_;
};

Task<int> ValueWithSlowParameter(SlowToDestroy parameter) {
  (void)parameter;
  co_return 5;
}

Task<void> VoidWithSlowParameter(SlowToDestroy parameter) {
  (void)parameter;
  co_return;
}

TEST_P(SchedulerBackendTest, BlockOnReturnsAfterTheTaskFrameIsDestroyed) {
  std::atomic<bool> value_destroyed{false};
  std::atomic<bool> void_destroyed{false};
  std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(GetParam(), 1));
  ASSERT_NE(scheduler, nullptr);
  EXPECT_EQ(scheduler->BlockOn(ValueWithSlowParameter(SlowToDestroy(&value_destroyed))), 5);
  EXPECT_TRUE(value_destroyed.load())
      << "BlockOn<T> returned while the task's parameters were still being destroyed on the "
         "IO thread (the latch is released before the frames are destroyed)";
  scheduler->BlockOn(VoidWithSlowParameter(SlowToDestroy(&void_destroyed)));
  EXPECT_TRUE(void_destroyed.load())
      << "BlockOn(Task<void>) returned while the task's parameters were still being destroyed";
  // Wait for the IO thread before the atomics go out of scope, whatever happened above.
  EXPECT_TRUE(WaitUntil([&] { return value_destroyed.load() && void_destroyed.load(); }));
}

TEST(SchedulerDeathTest, BlockOnAfterShutdownAsserts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(Backend::kAuto, 1));
        (void)scheduler->Shutdown();
        (void)scheduler->BlockOn(Add(1, 2));
      },
      "assertion failed: spawned");
}

Task<void> ShutdownFromInside(Scheduler* scheduler) {
  (void)scheduler->Shutdown();
  co_return;
}

TEST(SchedulerDeathTest, ShutdownOnAnIoThreadAsserts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::unique_ptr<Scheduler> scheduler = MustCreate(TestOptions(Backend::kAuto, 1));
        scheduler->BlockOn(ShutdownFromInside(scheduler.get()));
      },
      "assertion failed");
}

// A task that ignores cancellation and keeps the thread busy past shutdown_timeout_ms: Shutdown
// gives up at the deadline, reports Busy, and abandons the task (never resumed again, its frame
// leaked on purpose; the leak is excluded from LeakSanitizer below). The loop ends by itself
// after kStubbornLoopMax, so the case cannot spin forever if the deadline is missed.
constexpr auto kStubbornLoopMax = std::chrono::seconds(3);
std::atomic<std::uint64_t> stubborn_iterations{0};

Task<void> IgnoreCancellation() {
  const auto end = steady_clock::now() + kStubbornLoopMax;
  while (steady_clock::now() < end) {
    co_await Yield();
    stubborn_iterations.fetch_add(1, std::memory_order_relaxed);
  }
}

// Spawns IgnoreCancellation. Its frames are abandoned at the timeout on purpose, so they are
// kept out of LeakSanitizer's report.
void SpawnStubbornTask(Scheduler& scheduler) {
#if defined(__SANITIZE_ADDRESS__)
  __lsan::ScopedDisabler abandoned_frames_are_expected;
#endif
  scheduler.Spawn(IgnoreCancellation());
}

// Collects the scheduler's log lines (instead of failing the case on them).
struct LogLines {
  std::mutex mutex;
  std::vector<std::string> lines;  // GUARDED_BY(mutex)
  std::function<void(std::string_view)> Sink() {
    return [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(mutex);
      lines.emplace_back(line);
    };
  }
  std::string Dump() {
    std::lock_guard<std::mutex> lock(mutex);
    std::string out;
    for (const std::string& line : lines) out += "\n  " + line;
    return out;
  }
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mutex);
    return lines.size();
  }
};

TEST_P(SchedulerBackendTest, ShutdownGivesUpAfterItsTimeout) {
  LogLines log;
  SchedulerOptions options = TestOptions(GetParam(), 1);
  options.shutdown_timeout_ms = 200;
  options.log = log.Sink();
  stubborn_iterations.store(0);
  std::unique_ptr<Scheduler> scheduler = MustCreate(options);
  ASSERT_NE(scheduler, nullptr);
  SpawnStubbornTask(*scheduler);
  ASSERT_TRUE(WaitUntil([] { return stubborn_iterations.load() > 0; }));
  Status status;
  const auto start = steady_clock::now();
  MustFinish("Shutdown past its timeout", [&] { status = scheduler->Shutdown(); });
  const auto elapsed = steady_clock::now() - start;
  EXPECT_TRUE(status.IsBusy()) << status.ToString();
  EXPECT_NE(status.message().find("timed out after 200 ms"), std::string_view::npos)
      << status.ToString();
  EXPECT_GE(elapsed, std::chrono::milliseconds(200));  // it did wait for the deadline
  // The task is abandoned: it does not run any more.
  const std::uint64_t iterations = stubborn_iterations.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(stubborn_iterations.load(), iterations);
  // Shutdown is idempotent and keeps reporting what happened.
  Status again = scheduler->Shutdown();
  EXPECT_TRUE(again.IsBusy());
  EXPECT_EQ(again.ToString(), status.ToString());
  MustFinish("~Scheduler after a timed-out Shutdown", [&] { scheduler.reset(); });
}

// A scheduler destroyed without Shutdown, whose shutdown then times out, says so in one log
// line (the destructor cannot return the Status).
TEST_P(SchedulerBackendTest, DestructorLogsATimedOutShutdownOnce) {
  LogLines log;
  SchedulerOptions options = TestOptions(GetParam(), 1);
  options.shutdown_timeout_ms = 100;
  options.log = log.Sink();
  stubborn_iterations.store(0);
  std::unique_ptr<Scheduler> scheduler = MustCreate(options);
  ASSERT_NE(scheduler, nullptr);
  SpawnStubbornTask(*scheduler);
  ASSERT_TRUE(WaitUntil([] { return stubborn_iterations.load() > 0; }));
  MustFinish("~Scheduler past the shutdown timeout", [&] { scheduler.reset(); });
  EXPECT_EQ(log.size(), 1u) << "the destructor logged:" << log.Dump();
  EXPECT_NE(log.Dump().find("timed out after 100 ms"), std::string::npos) << log.Dump();
}

}  // namespace
}  // namespace cascadefs::io
