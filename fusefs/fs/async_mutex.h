// async_mutex.h: a mutex that tasks hold across co_await without blocking an IO thread.
//
// A std::mutex held across a suspension would block every other task of that IO thread that
// wants it (and deadlock when the holder resumes on the same thread). AsyncMutex suspends the
// waiting task instead; plain threads may wait too (LockBlocking). Fairness is not promised:
// Unlock wakes every waiter and one wins. Use it for long critical sections (a file's flush);
// keep std::mutex for short ones that never await.
#pragma once

#include <mutex>

#include "engine/io/task.h"
#include "engine/io/wait_queue.h"

namespace cascadefs::fusefs {

class AsyncMutex {
 public:
  AsyncMutex() = default;
  AsyncMutex(const AsyncMutex&) = delete;
  AsyncMutex& operator=(const AsyncMutex&) = delete;

  // REQUIRES: awaited on an IO thread.
  io::Task<void> Lock() {
    std::unique_lock lock(mutex_);
    while (locked_) co_await waiters_.Wait(lock);
    locked_ = true;
  }
  bool TryLock() {
    std::lock_guard lock(mutex_);
    if (locked_) return false;
    locked_ = true;
    return true;
  }
  void Unlock() {
    std::lock_guard lock(mutex_);
    locked_ = false;
    waiters_.NotifyAll();
  }

 private:
  std::mutex mutex_;
  io::WaitQueue waiters_;
  bool locked_ = false;  // GUARDED_BY(mutex_)
};

// Unlocks on scope exit. Construct right after `co_await mutex.Lock()`.
class AsyncMutexUnlocker {
 public:
  explicit AsyncMutexUnlocker(AsyncMutex& mutex) : mutex_(&mutex) {}
  AsyncMutexUnlocker(const AsyncMutexUnlocker&) = delete;
  AsyncMutexUnlocker& operator=(const AsyncMutexUnlocker&) = delete;
  ~AsyncMutexUnlocker() {
    if (mutex_ != nullptr) mutex_->Unlock();
  }

 private:
  AsyncMutex* mutex_;
};

}  // namespace cascadefs::fusefs
