#include "engine/io/wait_queue.h"

#include "engine/assert.h"
#include "io/scheduler_impl.h"

namespace cascadefs::io {

WaitQueue::~WaitQueue() {
  std::lock_guard guard(list_mutex_);
  CFS_ASSERT(head_ == nullptr);  // REQUIRES: no waiter outlives the queue
}

void WaitQueue::Push(Waiter* waiter) {
  std::lock_guard guard(list_mutex_);
  waiter->next = head_;
  head_ = waiter;
}

void WaitQueue::Awaiter::await_suspend(std::coroutine_handle<> handle) {
  CFS_ASSERT(tls_worker != nullptr);  // REQUIRES: on an IO thread
  CFS_ASSERT(lock_.owns_lock());
  waiter_.is_task = true;
  waiter_.node.handle = handle;
  waiter_.node.priority = tls_priority;
  waiter_.scheduler = tls_worker->impl()->owner;
  waiter_.thread_index = tls_worker->index();
  // Registered before the caller's mutex is released: a notifier that changes the predicate
  // under that mutex finds this waiter in the list.
  queue_.Push(&waiter_);
  lock_.unlock();
}

void WaitQueue::WaitBlocking(std::unique_lock<std::mutex>& lock) {
  CFS_ASSERT(tls_worker == nullptr);  // an IO thread must await Wait instead
  CFS_ASSERT(lock.owns_lock());
  Waiter waiter;
  {
    std::unique_lock list_lock(list_mutex_);
    waiter.next = head_;
    head_ = &waiter;
    lock.unlock();
    threads_woken_.wait(list_lock, [&] { return waiter.woken; });
  }
  lock.lock();
}

void WaitQueue::NotifyAll() {
  Waiter* tasks = nullptr;
  {
    std::lock_guard guard(list_mutex_);
    bool any_thread = false;
    while (head_ != nullptr) {
      Waiter* waiter = head_;
      head_ = waiter->next;
      if (waiter->is_task) {
        waiter->next = tasks;
        tasks = waiter;
      } else {
        waiter->woken = true;
        any_thread = true;
      }
    }
    if (any_thread) threads_woken_.notify_all();
  }
  // Outside list_mutex_: handing a task to a full queue may wait. A task's node lives in its
  // suspended frame, which stays put until the task is resumed.
  while (tasks != nullptr) {
    Waiter* waiter = tasks;
    tasks = waiter->next;  // read before the hand-off: the task may run and free it at once
    waiter->scheduler->impl()->workers[waiter->thread_index]->PushRemote(&waiter->node);
  }
}

}  // namespace cascadefs::io
