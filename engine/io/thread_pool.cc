// thread_pool.cc: the blocking fallback backend, used where the kernel refuses io_uring.
//
// A ThreadPool of SchedulerOptions::fallback_pool_threads threads is shared by all IO threads.
// A worker's Prep() appends the op to the pool's FIFO; a pool thread runs the plain system call
// (ExecuteBlocking) and hands the finished op back to its worker's completion list, waking the
// worker through its eventfd if it sleeps. The FIFO holds at most the sum of the workers'
// in_flight_max ops, since every op in it counts as in flight for its worker.
//
// Sleeps do not occupy a pool thread: one timer thread keeps them in a heap ordered by
// deadline (bounded like the FIFO) and completes each at its deadline.
//
// Cancellation (Shutdown): queued jobs (but Close) and pending sleeps finish with -ECANCELED
// without running; a thread blocked
// in a system call (a recv, an accept) is interrupted with kCancelSignal, whose handler is a
// no-op installed without SA_RESTART so the call returns EINTR, reported as -ECANCELED.
//
// Thread safety: Enqueue and CancelAll from any thread; jobs_ under mutex_.
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <mutex>

#include "io/scheduler_impl.h"

namespace cascadefs::io {
namespace {

using detail::IoOp;

// SIGURG is ignored by default, so a stray delivery to a thread that is not ours is harmless.
constexpr int kCancelSignal = SIGURG;

void NoOpSignalHandler(int) {}

void InstallCancelHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_handler = NoOpSignalHandler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: a blocked system call returns EINTR
    sigaction(kCancelSignal, &action, nullptr);
  });
}

class PoolBackend final : public OpBackend {
 public:
  PoolBackend(ThreadPool* pool, Worker* worker, int event_fd)
      : pool_(pool), worker_(worker), event_fd_(event_fd) {}
  ~PoolBackend() override { close(event_fd_); }

  bool Prep(IoOp* op) override {
    if (op->code == detail::OpCode::kSleep) {
      pool_->AddTimer(op, worker_);
    } else {
      pool_->Enqueue(op, worker_);
    }
    return true;
  }
  void Submit() override {}

  std::uint32_t Reap(IoOp** out, std::uint32_t max) override {
    std::lock_guard<std::mutex> lock(mutex_);
    std::uint32_t count = 0;
    while (count < max && !completed_.empty()) {
      out[count++] = static_cast<IoOp*>(completed_.PopFront());
    }
    return count;
  }

  void Wait() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!completed_.empty()) return;
    }
    std::uint64_t value = 0;
    [[maybe_unused]] ssize_t n = read(event_fd_, &value, sizeof(value));
  }

  void Wake() override {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(event_fd_, &one, sizeof(one));
  }

  void CancelAll() override { pool_->CancelAll(); }

  Status RegisterBuffers(const std::vector<iovec>&) override { return Status::OK(); }

  void PushCompletion(IoOp* op) {
    std::lock_guard<std::mutex> lock(mutex_);
    completed_.PushBack(op);
  }

 private:
  ThreadPool* const pool_;
  Worker* const worker_;
  const int event_fd_;
  std::mutex mutex_;
  NodeList completed_;  // GUARDED_BY(mutex_)
};

}  // namespace

Result<std::unique_ptr<OpBackend>> NewPoolBackend(ThreadPool* pool, Worker* worker) {
  const int event_fd = eventfd(0, EFD_CLOEXEC);
  if (event_fd < 0) return Status::FromErrno(errno, "eventfd for the IO thread's wake-ups");
  return std::unique_ptr<OpBackend>(std::make_unique<PoolBackend>(pool, worker, event_fd));
}

void PushPoolCompletion(OpBackend* backend, IoOp* op) {
  static_cast<PoolBackend*>(backend)->PushCompletion(op);
}

ThreadPool::ThreadPool(std::uint32_t thread_count, std::uint32_t jobs_max)
    : jobs_(jobs_max), busy_(thread_count) {
  CFS_ASSERT(thread_count > 0);
  CFS_ASSERT(jobs_max > 0);
  InstallCancelHandler();
  timers_.reserve(jobs_max);
  threads_.reserve(thread_count);
  handles_.reserve(thread_count);
  for (std::uint32_t i = 0; i < thread_count; ++i) {
    threads_.emplace_back([this, i] { Run(i); });
    handles_.push_back(threads_.back().native_handle());
  }
  timer_thread_ = std::thread([this] { RunTimers(); });
}

void ThreadPool::AddTimer(IoOp* op, Worker* worker) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::seconds(op->timeout.tv_sec) +
                        std::chrono::nanoseconds(op->timeout.tv_nsec);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Every timer counts against its worker's in_flight_max, so reserve() made room.
    CFS_ASSERT(timers_.size() < timers_.capacity());
    timers_.push_back(Timer{deadline, Job{op, worker}});
    std::push_heap(timers_.begin(), timers_.end(), LaterDeadline);
  }
  timer_cv_.notify_one();
}

void ThreadPool::RunTimers() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    const bool cancelling = cancelling_.load(std::memory_order_acquire);
    if (timers_.empty()) {
      if (stopping_) return;
      timer_cv_.wait(lock);
      continue;
    }
    const Timer& earliest = timers_.front();
    if (!cancelling && earliest.deadline > std::chrono::steady_clock::now()) {
      timer_cv_.wait_until(lock, earliest.deadline);
      continue;
    }
    std::pop_heap(timers_.begin(), timers_.end(), LaterDeadline);
    Job job = timers_.back().job;
    timers_.pop_back();
    job.op->result = cancelling ? -ECANCELED : 0;
    lock.unlock();
    job.worker->CompleteFromPool(job.op);
    lock.lock();
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  timer_cv_.notify_all();
  // After a shutdown timeout a thread may still be blocked in a system call: interrupt it
  // until every thread has left. A call that ignores signals (an uninterruptible disk wait)
  // holds this up until it returns.
  while (exited_count_.load(std::memory_order_acquire) < threads_.size()) {
    CancelAll();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (std::thread& thread : threads_) thread.join();
  CancelAll();  // sleeps left after a shutdown timeout end now instead of at their deadline
  timer_thread_.join();
}

void ThreadPool::Enqueue(IoOp* op, Worker* worker) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Every job counts against its worker's in_flight_max, so the ring cannot be full.
    CFS_ASSERT(jobs_count_ < jobs_.size());
    jobs_[(jobs_head_ + jobs_count_) % jobs_.size()] = Job{op, worker};
    jobs_count_++;
  }
  cv_.notify_one();
}

void ThreadPool::CancelAll() {
  cancelling_.store(true, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(mutex_);  // orders the flag before the timer thread's wait
  }
  timer_cv_.notify_all();
  for (std::size_t i = 0; i < threads_.size(); ++i) {
    if (busy_[i].load(std::memory_order_acquire)) pthread_kill(handles_[i], kCancelSignal);
  }
}

void ThreadPool::Run(std::uint32_t index) {
  for (;;) {
    Job job{};
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || jobs_count_ > 0; });
      if (jobs_count_ == 0) {  // stopping and nothing left
        exited_count_.fetch_add(1, std::memory_order_release);
        return;
      }
      job = jobs_[jobs_head_];
      jobs_head_ = (jobs_head_ + 1) % jobs_.size();
      jobs_count_--;
    }
    // Close still runs after cancellation, so tasks can release what they hold.
    if (cancelling_.load(std::memory_order_acquire) && job.op->code != detail::OpCode::kClose) {
      job.op->result = -ECANCELED;
    } else {
      busy_[index].store(true, std::memory_order_release);
      job.op->result = ExecuteBlocking(job.op);
      busy_[index].store(false, std::memory_order_release);
      if (job.op->result == -EINTR && cancelling_.load(std::memory_order_acquire)) {
        job.op->result = -ECANCELED;
      }
    }
    job.worker->CompleteFromPool(job.op);
  }
}

}  // namespace cascadefs::io
