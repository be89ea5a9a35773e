// wait_queue_test.cc: WaitQueue wakes waiting tasks and waiting threads, loses no wake-up
// made under the caller's mutex, and lets a task wait without blocking its IO thread.
//
// Method: tasks and threads wait on a predicate guarded by a mutex; another party flips it
// and notifies. The lost-wake-up test repeats the hand-off many times between a task and a
// thread in both directions (under TSan in `make tsan`).
#include "engine/io/wait_queue.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "engine/io/scheduler.h"
#include "engine/io/task.h"

namespace cascadefs::io {
namespace {

std::unique_ptr<Scheduler> MakeScheduler(std::uint32_t threads) {
  SchedulerOptions options;
  options.io_threads = threads;
  auto scheduler = Scheduler::Create(options);
  CFS_ASSERT(scheduler.ok());
  return std::move(scheduler).value();
}

struct Gate {
  std::mutex mutex;
  WaitQueue queue;
  int value = 0;  // GUARDED_BY(mutex)
};

Task<int> WaitForValue(Gate& gate, int wanted) {
  std::unique_lock lock(gate.mutex);
  while (gate.value < wanted) co_await gate.queue.Wait(lock);
  EXPECT_TRUE(lock.owns_lock());
  co_return gate.value;
}

TEST(WaitQueueTest, TaskWaitsForThreadNotify) {
  auto scheduler = MakeScheduler(1);
  Gate gate;
  std::thread notifier([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::lock_guard lock(gate.mutex);
    gate.value = 1;
    gate.queue.NotifyAll();
  });
  EXPECT_EQ(scheduler->BlockOn(WaitForValue(gate, 1)), 1);
  notifier.join();
}

TEST(WaitQueueTest, WaitingTaskDoesNotBlockItsThread) {
  auto scheduler = MakeScheduler(1);
  Gate gate;
  std::atomic<bool> waiter_done{false};
  auto waiter = [&]() -> Task<void> {
    co_await WaitForValue(gate, 1);
    waiter_done.store(true);
  };
  scheduler->Spawn(waiter());
  // The same (only) IO thread runs the notifying task while the waiter is suspended.
  auto notifier = [&]() -> Task<int> {
    std::lock_guard lock(gate.mutex);
    gate.value = 1;
    gate.queue.NotifyAll();
    co_return 0;
  };
  scheduler->BlockOn(notifier());
  for (int i = 0; i < 1000 && !waiter_done.load(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(waiter_done.load());
}

TEST(WaitQueueTest, ThreadWaitsForTaskNotify) {
  auto scheduler = MakeScheduler(2);
  Gate gate;
  auto notifier = [&]() -> Task<void> {
    (void)co_await Sleep(std::chrono::milliseconds(10));
    std::lock_guard lock(gate.mutex);
    gate.value = 7;
    gate.queue.NotifyAll();
  };
  scheduler->Spawn(notifier());
  std::unique_lock lock(gate.mutex);
  while (gate.value < 7) gate.queue.WaitBlocking(lock);
  EXPECT_EQ(gate.value, 7);
}

TEST(WaitQueueTest, ManyWaitersAllWokenNoneLost) {
  auto scheduler = MakeScheduler(2);
  constexpr int kRounds = 300;
  Gate gate;
  std::atomic<int> finished{0};
  auto task_waiter = [&]() -> Task<void> {
    for (int round = 1; round <= kRounds; ++round) {
      std::unique_lock lock(gate.mutex);
      while (gate.value < round) co_await gate.queue.Wait(lock);
    }
    finished.fetch_add(1);
  };
  for (int i = 0; i < 4; ++i) scheduler->Spawn(task_waiter());
  std::thread thread_waiter([&] {
    for (int round = 1; round <= kRounds; ++round) {
      std::unique_lock lock(gate.mutex);
      while (gate.value < round) gate.queue.WaitBlocking(lock);
    }
    finished.fetch_add(1);
  });
  for (int round = 1; round <= kRounds; ++round) {
    std::lock_guard lock(gate.mutex);
    gate.value = round;
    gate.queue.NotifyAll();
  }
  thread_waiter.join();
  for (int i = 0; i < 5000 && finished.load() < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(finished.load(), 5);
}

}  // namespace
}  // namespace cascadefs::io
