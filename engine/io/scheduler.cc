// scheduler.cc: Scheduler and Scheduler::Impl: creation, spawning, cross-thread hand-off,
// shutdown and stats. The IO thread's loop is in worker.cc; operations in ops.cc.
//
// Spreading work: Spawn and BlockOn pick IO threads round robin (an atomic counter); a task
// then stays on its thread, as do the children it awaits, unless it moves on purpose with
// SwitchTo/RunOn. Round robin keeps the rings evenly loaded without measuring load, and
// affinity keeps a task's frames and buffers in one core's cache.
//
// Shutdown protocol (see Scheduler::Shutdown in scheduler.h):
//   1. `deadline` is set, then `stopping` published (seq_cst). Spawn increments
//      spawns_in_progress before it reads `stopping` and backs out if set; otherwise it counts
//      its task in live_tasks before it leaves spawns_in_progress. So either Spawn sees
//      `stopping`, or the workers see it in one of the two counts (a Dekker pair on seq_cst
//      atomics), and once the workers have exited live_tasks no longer moves: a Spawn that
//      backs out never touches it.
//   2. Each worker, seeing `stopping`, cancels its in-flight ops (repeating every 20 ms) and
//      fails new ones with -ECANCELED, and keeps turning until no root task is alive and it
//      holds nothing, or until the deadline.
//   3. The last root task to finish wakes every worker; Shutdown joins them, then reports
//      what was left behind.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "io/scheduler_impl.h"

namespace cascadefs::io {

using detail::ReadyNode;

const char* BackendName(Backend backend) {
  switch (backend) {
    case Backend::kAuto:
      return "auto";
    case Backend::kIoUring:
      return "io-uring";
    case Backend::kThreadPool:
      return "thread-pool";
  }
  return "unknown";
}

namespace {

// The root of every spawned task: owns the task, is queued on a worker through the ReadyNode
// in its promise, and destroys itself at the end (final_suspend never suspends), telling the
// scheduler one root task fewer is alive.
struct DetachedTask {
  struct promise_type : detail::PromiseBase {
    ReadyNode node;
    Scheduler::Impl* impl = nullptr;
    ~promise_type() {
      if (impl != nullptr) impl->TaskFinished();
    }
    DetachedTask get_return_object() {
      return DetachedTask{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
  };
  std::coroutine_handle<promise_type> handle;
};

DetachedTask RunDetached(Task<void> task) { co_await std::move(task); }

Status ValidateOptions(const SchedulerOptions& o) {
  auto power_of_two = [](std::uint32_t v) { return v != 0 && (v & (v - 1)) == 0; };
  if (o.io_threads > kIoThreadsMax) {
    return Status::InvalidArgument("io_threads must be at most " + std::to_string(kIoThreadsMax));
  }
  if (!power_of_two(o.ring_entries) || o.ring_entries < 8 || o.ring_entries > 4096) {
    return Status::InvalidArgument("ring_entries must be a power of two in 8..4096");
  }
  if (o.in_flight_max < 1 || o.in_flight_max > 2 * o.ring_entries) {
    return Status::InvalidArgument("in_flight_max must be in 1..2*ring_entries");
  }
  if (!power_of_two(o.submit_queue_max) || o.submit_queue_max < 16 || o.submit_queue_max > 65536) {
    return Status::InvalidArgument("submit_queue_max must be a power of two in 16..65536");
  }
  if (o.submit_batch_max < 1 || o.submit_batch_max > 4096) {
    return Status::InvalidArgument("submit_batch_max must be in 1..4096");
  }
  if (o.busy_poll_spins > 1000000) {
    return Status::InvalidArgument("busy_poll_spins must be at most 1000000");
  }
  if (o.completion_batch_max < 1 || o.completion_batch_max > 1024) {
    return Status::InvalidArgument("completion_batch_max must be in 1..1024");
  }
  if (o.fallback_pool_threads < 1 || o.fallback_pool_threads > 256) {
    return Status::InvalidArgument("fallback_pool_threads must be in 1..256");
  }
  if (o.fixed_buffer_count > 1024) {
    return Status::InvalidArgument("fixed_buffer_count must be at most 1024");
  }
  if (o.fixed_buffer_count > 0 &&
      (o.fixed_buffer_size_bytes < 4096 || o.fixed_buffer_size_bytes > (16u << 20) ||
       o.fixed_buffer_size_bytes % 4096 != 0)) {
    return Status::InvalidArgument(
        "fixed_buffer_size_bytes must be a multiple of 4096 in 4 KiB..16 MiB");
  }
  if (o.shutdown_timeout_ms < 1 || o.shutdown_timeout_ms > 600000) {
    return Status::InvalidArgument("shutdown_timeout_ms must be in 1..600000");
  }
  return Status::OK();
}

}  // namespace

// ---- Impl ----------------------------------------------------------------------------------

Scheduler::Impl::~Impl() { ShutdownIfRunning(); }

void Scheduler::Impl::ShutdownIfRunning() {
  {
    std::lock_guard<std::mutex> lock(shutdown_mutex);
    if (shut_down) return;
  }
  Status status = Shutdown();
  if (!status.ok()) Log("scheduler shutdown: " + status.ToString());
}

void Scheduler::Impl::Log(const std::string& line) const {
  if (options.log) {
    options.log(line);
  } else {
    std::fprintf(stderr, "cascadefs: %s\n", line.c_str());
  }
}

bool Scheduler::Impl::Spawn(std::uint32_t thread_index, Task<void> task, Priority priority) {
  CFS_ASSERT(thread_index < workers.size());
  CFS_ASSERT(task.valid());
  spawns_in_progress.fetch_add(1, std::memory_order_seq_cst);
  if (stopping.load(std::memory_order_seq_cst)) {
    spawns_in_progress.fetch_sub(1, std::memory_order_seq_cst);
    return false;  // `task` is destroyed unrun by the caller's scope
  }
  live_tasks.fetch_add(1, std::memory_order_seq_cst);
  spawns_in_progress.fetch_sub(1, std::memory_order_seq_cst);
  tasks_spawned.fetch_add(1, std::memory_order_relaxed);
  DetachedTask root = RunDetached(std::move(task));
  DetachedTask::promise_type& promise = root.handle.promise();
  promise.impl = this;
  promise.node.handle = root.handle;
  promise.node.priority = priority;
  workers[thread_index]->PushRemote(&promise.node);
  return true;
}

void Scheduler::Impl::TaskFinished() {
  if (live_tasks.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
      stopping.load(std::memory_order_seq_cst)) {
    for (auto& worker : workers) worker->ForceWake();
  }
}

Status Scheduler::Impl::Shutdown() {
  std::lock_guard<std::mutex> lock(shutdown_mutex);
  if (shut_down) return shutdown_status;
  shut_down = true;
  deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options.shutdown_timeout_ms);
  stopping.store(true, std::memory_order_seq_cst);
  for (auto& worker : workers) worker->ForceWake();
  for (auto& worker : workers) worker->Join();
  std::uint64_t leftovers = 0;
  for (auto& worker : workers) leftovers += worker->LeftoverCount();
  const std::uint64_t tasks_alive = live_tasks.load(std::memory_order_seq_cst);
  pool.reset();  // joins the fallback threads
  if (leftovers > 0 || tasks_alive > 0) {
    shutdown_status = Status::Busy(
        "scheduler shutdown timed out after " + std::to_string(options.shutdown_timeout_ms) +
        " ms: " + std::to_string(tasks_alive) + " tasks still alive, " + std::to_string(leftovers) +
        " operations or ready tasks left; they are abandoned");
  }
  return shutdown_status;
}

// ---- Scheduler ------------------------------------------------------------------------------

Scheduler::Scheduler(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) { impl_->owner = this; }

Scheduler::~Scheduler() {
  AssertNotOnIoThread();
  impl_->ShutdownIfRunning();
}

Result<std::unique_ptr<Scheduler>> Scheduler::Create(const SchedulerOptions& options_in) {
  CFS_RETURN_IF_ERROR(ValidateOptions(options_in));
  SchedulerOptions options = options_in;
  if (options.io_threads == 0) {
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    options.io_threads = static_cast<std::uint32_t>(std::clamp<long>(cpus, 1, kIoThreadsMax));
  }
  auto impl = std::make_unique<Impl>(options);
  Backend backend = options.backend;
  if (backend != Backend::kThreadPool) {
    Status probe = ProbeIoUring();
    if (!probe.ok()) {
      if (backend == Backend::kIoUring) return probe.WithContext("io_uring backend");
      impl->Log("io_uring unavailable (" + std::string(probe.message()) +
                "); serving I/O from a pool of " + std::to_string(options.fallback_pool_threads) +
                " blocking threads instead");
      backend = Backend::kThreadPool;
    } else {
      backend = Backend::kIoUring;
    }
  }
  impl->backend = backend;
  if (backend == Backend::kThreadPool) {
    impl->pool = std::make_unique<ThreadPool>(options.fallback_pool_threads,
                                              options.io_threads * options.in_flight_max);
  }
  impl->workers.reserve(options.io_threads);
  for (std::uint32_t i = 0; i < options.io_threads; ++i) {
    impl->workers.push_back(std::make_unique<Worker>(impl.get(), i));
  }
  for (std::uint32_t i = 0; i < options.io_threads; ++i) {
    Status status = impl->workers[i]->Init(backend, impl->pool.get());
    if (!status.ok()) {
      impl->workers.resize(i);  // [0, i) run; i already joined; the rest never started
      (void)impl->Shutdown();
      return status.WithContext("IO thread " + std::to_string(i));
    }
  }
  return std::unique_ptr<Scheduler>(new Scheduler(std::move(impl)));
}

std::uint32_t Scheduler::Impl::NextWorkerIndex() {
  return static_cast<std::uint32_t>(next_worker.fetch_add(1, std::memory_order_relaxed) %
                                    workers.size());
}

void Scheduler::Spawn(Task<void> task, Priority priority) {
  (void)impl_->Spawn(impl_->NextWorkerIndex(), std::move(task), priority);
}

void Scheduler::SpawnOn(std::uint32_t thread_index, Task<void> task, Priority priority) {
  CFS_ASSERT(thread_index < impl_->workers.size());
  (void)impl_->Spawn(thread_index, std::move(task), priority);
}

Status Scheduler::Shutdown() {
  AssertNotOnIoThread();
  return impl_->Shutdown();
}

namespace {

// Runs on IO thread `thread_index`, pinning it to `cpu`; the errno of sched_setaffinity or 0.
Task<int> PinThisIoThread(Scheduler* scheduler, std::uint32_t thread_index, int cpu) {
  co_await SwitchTo(*scheduler, thread_index);
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  co_return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : errno;
}

}  // namespace

Result<std::vector<int>> Scheduler::PinIoThreadsToCpus() {
  AssertNotOnIoThread();
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
    return Status::FromErrno(errno, "sched_getaffinity");
  }
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
  }
  std::vector<int> pinned(io_threads(), -1);
  for (std::uint32_t t = 0; t < io_threads() && t < cpus.size(); ++t) {
    const int err = BlockOn(PinThisIoThread(this, t, cpus[t]));
    if (err != 0) {
      return Status::FromErrno(
          err, "pinning IO thread " + std::to_string(t) + " to CPU " + std::to_string(cpus[t]));
    }
    pinned[t] = cpus[t];
  }
  return pinned;
}

Backend Scheduler::backend() const { return impl_->backend; }
std::uint32_t Scheduler::io_threads() const {
  return static_cast<std::uint32_t>(impl_->workers.size());
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats total;
  for (const auto& worker : impl_->workers) {
    const Worker::Counters& c = worker->counters;
    total.ops_completed += c.ops_completed.load(std::memory_order_relaxed);
    total.ops_retried += c.ops_retried.load(std::memory_order_relaxed);
    total.ops_waited_pending += c.ops_waited_pending.load(std::memory_order_relaxed);
    total.submit_calls += c.submit_calls.load(std::memory_order_relaxed);
    total.sleeps += c.sleeps.load(std::memory_order_relaxed);
    total.wakeups_sent += c.wakeups_sent.load(std::memory_order_relaxed);
    total.queue_full_waits += c.queue_full_waits.load(std::memory_order_relaxed);
    total.background_resumes += c.background_resumes.load(std::memory_order_relaxed);
    total.in_flight += c.in_flight.load(std::memory_order_relaxed);
    total.in_flight_peak = std::max<std::uint64_t>(
        total.in_flight_peak, c.in_flight_peak.load(std::memory_order_relaxed));
  }
  total.tasks_spawned = impl_->tasks_spawned.load(std::memory_order_relaxed);
  return total;
}

void Scheduler::AssertNotOnIoThread() const {
  CFS_ASSERT(tls_worker == nullptr || tls_worker->impl() != impl_.get());
}

struct Scheduler::BlockOnLatch {
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;  // GUARDED_BY(mutex)
};

std::shared_ptr<Scheduler::BlockOnLatch> Scheduler::NewLatch() {
  return std::make_shared<BlockOnLatch>();
}

void Scheduler::LatchWait(BlockOnLatch& latch) {
  std::unique_lock<std::mutex> lock(latch.mutex);
  latch.cv.wait(lock, [&latch] { return latch.done; });
}

void Scheduler::LatchRelease(BlockOnLatch& latch) {
  std::lock_guard<std::mutex> lock(latch.mutex);
  latch.done = true;
  latch.cv.notify_all();
}

bool Scheduler::SpawnForBlockOn(Task<void> task, Priority priority) {
  return impl_->Spawn(impl_->NextWorkerIndex(), std::move(task), priority);
}

Task<void> Scheduler::BlockOnBodyVoid(Task<void> task, std::shared_ptr<BlockOnLatch> latch) {
  {
    Task<void> owned = std::move(task);  // destroyed before the latch is released
    co_await std::move(owned);
  }
  LatchRelease(*latch);
}

void Scheduler::BlockOn(Task<void> task, Priority priority) {
  AssertNotOnIoThread();
  std::shared_ptr<BlockOnLatch> latch = NewLatch();
  const bool spawned = SpawnForBlockOn(BlockOnBodyVoid(std::move(task), latch), priority);
  CFS_ASSERT(spawned);  // REQUIRES: Shutdown has not begun
  LatchWait(*latch);
}

// ---- Awaitables that move tasks -------------------------------------------------------------

void YieldAwaiter::await_suspend(std::coroutine_handle<> handle) {
  CFS_ASSERT(tls_worker != nullptr);
  node_.handle = handle;
  node_.priority = tls_priority;
  tls_worker->MakeReady(&node_);
}

bool SwitchToAwaiter::await_ready() const noexcept {
  return tls_worker != nullptr && tls_worker->impl() == scheduler_.impl() &&
         tls_worker->index() == thread_index_;
}

void SwitchToAwaiter::await_suspend(std::coroutine_handle<> handle) {
  CFS_ASSERT(tls_worker != nullptr);
  CFS_ASSERT(tls_worker->impl() == scheduler_.impl());
  CFS_ASSERT(thread_index_ < scheduler_.io_threads());
  node_.handle = handle;
  node_.priority = tls_priority;
  scheduler_.impl()->workers[thread_index_]->PushRemote(&node_);
}

Scheduler* CurrentScheduler() { return tls_worker ? tls_worker->impl()->owner : nullptr; }
int CurrentThreadIndex() { return tls_worker ? static_cast<int>(tls_worker->index()) : -1; }

std::optional<FixedBuffer> AcquireFixedBuffer() {
  CFS_ASSERT(tls_worker != nullptr);
  return tls_worker->AcquireFixedBuffer();
}

void ReleaseFixedBuffer(const FixedBuffer& buf) {
  CFS_ASSERT(tls_worker != nullptr);
  tls_worker->ReleaseFixedBuffer(buf);
}

}  // namespace cascadefs::io
