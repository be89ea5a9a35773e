// scheduler_impl.h: the private parts of the scheduler: Scheduler::Impl, the IO threads
// (Worker) and the two backends that execute operations (io_uring, blocking thread pool).
//
// Ownership: Impl owns the workers and the fallback pool; each Worker owns its thread, its MPSC
// queue, its ready lists and its backend (an io_uring, or a handle on the shared pool).
//
// Thread safety: every Worker member without an atomic type is touched only by its own thread
// (the "owner"); the MPSC queue, `sleeping_`, the counters and the backend's Wake() are the only
// entry points for other threads.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <liburing.h>

#include "engine/io/scheduler.h"
#include "io/mpsc_queue.h"

namespace cascadefs::io {

class Worker;

// The IO thread the calling thread is (null off the runtime), and the priority of the
// coroutine it is running (set each time the loop resumes one).
extern thread_local Worker* tls_worker;
extern thread_local Priority tls_priority;

// An intrusive FIFO of ReadyNodes (ready lists, the pending list, the outbox). No allocation;
// its length is bounded by the number of live coroutines, each of which owns its node.
class NodeList {
 public:
  bool empty() const { return head_ == nullptr; }
  std::uint64_t size() const { return size_; }
  void PushBack(detail::ReadyNode* node) {
    node->next_ready = nullptr;
    if (tail_ == nullptr) {
      head_ = node;
    } else {
      tail_->next_ready = node;
    }
    tail_ = node;
    ++size_;
  }
  void PushFront(detail::ReadyNode* node) {
    node->next_ready = head_;
    head_ = node;
    if (tail_ == nullptr) tail_ = node;
    ++size_;
  }
  detail::ReadyNode* PopFront() {
    detail::ReadyNode* node = head_;
    if (node == nullptr) return nullptr;
    head_ = node->next_ready;
    if (head_ == nullptr) tail_ = nullptr;
    node->next_ready = nullptr;
    --size_;
    return node;
  }

 private:
  detail::ReadyNode* head_ = nullptr;
  detail::ReadyNode* tail_ = nullptr;
  std::uint64_t size_ = 0;
};

// What executes operations for one Worker. Prep/Submit/Reap/Wait run on the worker's thread;
// Wake runs on any thread.
class OpBackend {
 public:
  virtual ~OpBackend() = default;
  // Starts `op` (result lands in op->result). False when no submission slot is free right now
  // even after flushing: the caller keeps the op pending.
  virtual bool Prep(detail::IoOp* op) = 0;
  // Hands every prepared op to the kernel (io_uring: one io_uring_enter).
  virtual void Submit() = 0;
  // Copies out up to `max` finished ops without blocking; returns how many.
  virtual std::uint32_t Reap(detail::IoOp** out, std::uint32_t max) = 0;
  // Blocks until an op finishes or Wake() is called. Also submits what is prepared.
  virtual void Wait() = 0;
  // Interrupts Wait() from any thread.
  virtual void Wake() = 0;
  // Asks every op in flight to finish now with -ECANCELED (best effort; results still arrive
  // through Reap).
  virtual void CancelAll() = 0;
  // Registers the worker's fixed buffers (io_uring); the pool ignores registration.
  virtual Status RegisterBuffers(const std::vector<iovec>& buffers) = 0;
};

// The blocking fallback: a pool of threads shared by all workers, each running one system
// call at a time. Jobs wait in a FIFO bounded by the workers' in-flight limits (each worker
// hands it at most in_flight_max ops), so `jobs_max` = workers * in_flight_max bounds it.
class ThreadPool {
 public:
  ThreadPool(std::uint32_t thread_count, std::uint32_t jobs_max);
  // Joins the threads after they finished the jobs still queued.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  struct Job {
    detail::IoOp* op;
    Worker* worker;  // gets the finished op
  };
  void Enqueue(detail::IoOp* op, Worker* worker);
  // Completes the kSleep `op` after its timeout, on the timer thread.
  void AddTimer(detail::IoOp* op, Worker* worker);
  // Interrupts every system call the pool is blocked in (a signal without SA_RESTART, so it
  // returns EINTR) and makes every job not yet started finish with -ECANCELED. Used only at
  // shutdown; may be repeated (a thread about to enter its call can miss one signal).
  void CancelAll();

 private:
  void Run(std::uint32_t index);
  void RunTimers();

  struct Timer {
    std::chrono::steady_clock::time_point deadline;
    Job job;
  };
  static bool LaterDeadline(const Timer& a, const Timer& b) { return a.deadline > b.deadline; }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Job> jobs_;       // GUARDED_BY(mutex_); a ring of jobs_max entries
  std::size_t jobs_head_ = 0;   // GUARDED_BY(mutex_); the oldest job
  std::size_t jobs_count_ = 0;  // GUARDED_BY(mutex_); jobs queued

  bool stopping_ = false;  // GUARDED_BY(mutex_)
  std::atomic<bool> cancelling_{false};
  std::atomic<std::size_t> exited_count_{0};  // threads that left Run
  std::vector<Timer> timers_;                 // GUARDED_BY(mutex_); a min-heap, capacity jobs_max
  std::condition_variable timer_cv_;
  std::thread timer_thread_;
  std::vector<std::thread> threads_;
  std::vector<std::atomic<bool>> busy_;  // busy_[i]: thread i is inside a system call
  std::vector<pthread_t> handles_;
};

class Worker {
 public:
  Worker(Scheduler::Impl* impl, std::uint32_t index);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the IO thread, which creates its backend (a ring of its own, or a handle on the
  // pool) and registers its fixed buffers, then runs the loop. Returns once the backend is
  // up: OK, or the backend's error with the thread already joined.
  Status Init(Backend backend, ThreadPool* pool);
  void Join();
  // Wakes the worker whether or not it announced a sleep (Shutdown).
  void ForceWake();
  // Ops, ready tasks and parked nodes the loop still held when it exited (after Join).
  std::uint64_t LeftoverCount() const;

  // From any thread: hands `node` to this worker. Outside threads wait while the queue is
  // full; an IO thread parks the node in its own outbox instead (see Outbox in scheduler.cc)
  // so two IO threads can never wait on each other's full queues.
  void PushRemote(detail::ReadyNode* node);
  // From any thread: wakes the worker if it sleeps.
  void WakeIfSleeping();

  // Owner thread only.
  void SubmitOp(detail::IoOp* op);
  void MakeReady(detail::ReadyNode* node);
  std::optional<FixedBuffer> AcquireFixedBuffer();
  void ReleaseFixedBuffer(const FixedBuffer& buf);

  // From a pool thread: a finished op for this worker.
  void CompleteFromPool(detail::IoOp* op);

  std::uint32_t index() const { return index_; }
  Scheduler::Impl* impl() const { return impl_; }

  // Counters, read by stats() from any thread.
  struct Counters {
    std::atomic<std::uint64_t> ops_completed{0};
    std::atomic<std::uint64_t> ops_retried{0};
    std::atomic<std::uint64_t> ops_waited_pending{0};
    std::atomic<std::uint64_t> submit_calls{0};
    std::atomic<std::uint64_t> sleeps{0};
    std::atomic<std::uint64_t> wakeups_sent{0};
    std::atomic<std::uint64_t> queue_full_waits{0};
    std::atomic<std::uint64_t> background_resumes{0};
    std::atomic<std::uint64_t> in_flight{0};
    std::atomic<std::uint64_t> in_flight_peak{0};
  };
  Counters counters;

 private:
  void Run();
  Status InitFixedBuffers();
  // Hands `op` to the backend; false (op back at the head of pending_) when no SQE is free.
  bool Issue(detail::IoOp* op);
  void SubmitPrepared();
  void SubmitIfBatchFull();
  bool DrainQueue();
  bool ReapCompletions();
  bool RunReady();
  void FlushPending();
  bool FlushOutbox();
  void Sleep();
  bool Quiescent() const;
  void CompleteOp(detail::IoOp* op);

  Scheduler::Impl* const impl_;
  const std::uint32_t index_;
  std::unique_ptr<OpBackend> backend_;
  MpscQueue<detail::ReadyNode> queue_;
  std::thread thread_;
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> exited_{false};

  // Owner thread only.
  NodeList ready_foreground_;
  NodeList ready_background_;
  NodeList pending_;             // ops waiting for an in-flight slot, FIFO
  NodeList outbox_;              // nodes bound for another worker's full queue (ReadyNode::route)
  std::uint64_t in_flight_ = 0;  // ops handed to the backend and not yet reaped
  std::uint64_t prepared_ = 0;   // ops prepped since the last Submit
  std::uint64_t turn_ = 0;
  bool submitted_this_turn_ = false;  // the loop looks at completions first after a submit
  bool cancel_sent_ = false;
  std::vector<detail::IoOp*> reap_batch_;  // completion_batch_max entries, allocated once

  // Fixed buffers: one aligned allocation, cut into fixed_buffer_count pieces.
  std::byte* fixed_memory_ = nullptr;
  std::vector<std::uint16_t> fixed_free_;  // indices of free buffers (a stack)

  friend class Scheduler::Impl;
};

class Scheduler::Impl {
 public:
  explicit Impl(const SchedulerOptions& options) : options(options) {}
  ~Impl();

  const SchedulerOptions options;
  Backend backend = Backend::kIoUring;
  std::vector<std::unique_ptr<Worker>> workers;
  std::unique_ptr<ThreadPool> pool;
  Scheduler* owner = nullptr;

  std::atomic<std::uint32_t> next_worker{0};  // round robin for Spawn
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> live_tasks{0};          // spawned root tasks not yet finished
  std::atomic<std::uint64_t> spawns_in_progress{0};  // Spawn calls between check and count
  std::atomic<std::uint64_t> tasks_spawned{0};
  std::chrono::steady_clock::time_point deadline;  // set before `stopping` is published
  std::mutex shutdown_mutex;
  bool shut_down = false;  // GUARDED_BY(shutdown_mutex)
  Status shutdown_status;  // GUARDED_BY(shutdown_mutex)

  // The worker for a new task from Spawn or BlockOn: round robin.
  std::uint32_t NextWorkerIndex();
  // Queues `task` on worker `thread_index`; false (task destroyed unrun) once stopping.
  bool Spawn(std::uint32_t thread_index, Task<void> task, Priority priority);
  // A root task's frame was destroyed; the last one during shutdown wakes every worker.
  void TaskFinished();
  Status Shutdown();
  // Shutdown unless it already happened; a non-OK result is logged (destructors).
  void ShutdownIfRunning();
  void Log(const std::string& line) const;
};

}  // namespace cascadefs::io

namespace cascadefs::io {

// The io_uring backend of one worker (uring_backend.cc). Created on the worker's own thread.
Result<std::unique_ptr<OpBackend>> NewUringBackend(const SchedulerOptions& options);
// The thread-pool backend of one worker (thread_pool.cc).
Result<std::unique_ptr<OpBackend>> NewPoolBackend(ThreadPool* pool, Worker* worker);
// Hands a finished op to a pool backend's completion list (from a pool thread).
void PushPoolCompletion(OpBackend* backend, detail::IoOp* op);
// Checks that this kernel lets us create an io_uring with every opcode the scheduler uses.
// OK, or the reason it cannot (a Status whose errno_value() is the kernel's refusal).
Status ProbeIoUring();
// Runs `op` as a plain blocking system call; returns the io_uring-style result (-errno on
// failure). Used by the thread pool (ops.cc).
std::int32_t ExecuteBlocking(detail::IoOp* op);
// "read", "openat", ... for messages.
const char* OpName(detail::OpCode code);

}  // namespace cascadefs::io
