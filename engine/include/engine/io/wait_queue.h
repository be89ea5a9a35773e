// wait_queue.h: a condition variable for tasks and threads alike.
//
// Engine code waits for conditions guarded by its own std::mutex (a WAL sync to finish, a
// memtable flush to make room) from two kinds of callers: tasks on IO threads, which must
// never block their thread, and plain threads using the blocking API. A WaitQueue serves
// both: a task awaits Wait(lock) and is resumed later on its own IO thread; a thread calls
// WaitBlocking(lock). Use it like std::condition_variable, looping on the predicate:
//
//   std::unique_lock lock(mu_);
//   while (!ready_) co_await ready_queue_.Wait(lock);
//
// Guarantee: a waiter registers while still holding the caller's mutex and releases it only
// afterwards, so a NotifyAll made under that mutex after the predicate changed is never
// lost. Wake-ups may be spurious (a NotifyAll for another reason): always re-check.
//
// Bounds: each waiter is an intrusive node in the waiting task's frame or the waiting
// thread's stack; the queue allocates nothing and holds at most one node per waiter.
//
// Thread safety: every method may be called from any thread. The queue must outlive its
// waiters.
#pragma once

#include <condition_variable>
#include <coroutine>
#include <mutex>

#include "engine/io/scheduler.h"

namespace cascadefs::io {

class WaitQueue {
 public:
  struct Waiter {
    Waiter* next = nullptr;
    // A task: resumed through its IO thread's queue. A thread: woken through `woken`.
    detail::ReadyNode node;
    Scheduler* scheduler = nullptr;
    std::uint32_t thread_index = 0;
    bool is_task = false;
    bool woken = false;  // a thread's wake-up flag; GUARDED_BY(list_mutex_)
  };

  class [[nodiscard]] Awaiter {
   public:
    Awaiter(WaitQueue& queue, std::unique_lock<std::mutex>& lock) : queue_(queue), lock_(lock) {}
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> handle);
    // Reacquires the caller's mutex before the task continues.
    void await_resume() { lock_.lock(); }

   private:
    WaitQueue& queue_;
    std::unique_lock<std::mutex>& lock_;
    Waiter waiter_;
  };

  WaitQueue() = default;
  WaitQueue(const WaitQueue&) = delete;
  WaitQueue& operator=(const WaitQueue&) = delete;
  ~WaitQueue();

  // Releases `lock`, suspends the task until a NotifyAll, and reacquires `lock`.
  // REQUIRES: awaited on an IO thread; `lock` owns its mutex.
  Awaiter Wait(std::unique_lock<std::mutex>& lock) { return Awaiter(*this, lock); }
  // The same for a thread that is not an IO thread: blocks it.
  // REQUIRES: not on an IO thread; `lock` owns its mutex.
  void WaitBlocking(std::unique_lock<std::mutex>& lock);
  // Wakes every current waiter. Waiters that register afterwards wait for the next call.
  void NotifyAll();

 private:
  void Push(Waiter* waiter);

  // Lock order: the caller's mutex, then list_mutex_ (never the other way round).
  std::mutex list_mutex_;
  std::condition_variable threads_woken_;  // waiting threads sleep here, on list_mutex_
  Waiter* head_ = nullptr;                 // GUARDED_BY(list_mutex_)
};

}  // namespace cascadefs::io
