// mpsc_queue_test.cc: MpscQueue, the bounded multi-producer single-consumer queue through which
// outside threads and other IO threads hand work to an IO thread.
//
// Goal: the queue delivers every item exactly once, in each producer's order, never holds more
// than its capacity, keeps working after its counters lap the cell array many times, and a
// producer waiting for space (WaitForSpace) is released by the consumer's next pop.
//
// Method: single-threaded cases check FIFO order, the full-queue refusal and the wrap-around
// against a std::deque model. The concurrent cases run 8 producers of 100,000 items each
// against one consumer through a 64-cell queue, so the queue is full most of the time; each
// item names its producer and sequence number, and the consumer checks per-producer order and
// a seen-bitmap. The waiting cases drive the exact interleavings WaitForSpace must handle, one
// step at a time, and find out whether a producer is blocked by reading its thread state in
// /proc (so no case depends on how fast the machine is). A hang fails the case through a
// watchdog instead of hanging ctest. Built with ThreadSanitizer in the tsan tree.
#include "io/mpsc_queue.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace cascadefs::io {
namespace {

using std::chrono::steady_clock;

// How long a case waits for something that must happen before it calls it a hang. Generous:
// the machine is shared and slow under sanitizers; a pass never waits for it.
constexpr auto kHangTimeout = std::chrono::seconds(10);

struct Item {
  std::uint32_t producer = 0;
  std::uint32_t sequence = 0;
};

// The scheduling state of thread `tid` ('R' running, 'S' sleeping, ...), from /proc.
char ThreadState(pid_t tid) {
  std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string line;
  std::getline(stat, line);
  // The state follows the command name, which is in parentheses and may contain spaces.
  const std::size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return '?';
  return line[close + 2];
}

// Waits until thread `tid` sleeps in the kernel (here: the futex under WaitForSpace).
// False on timeout.
bool WaitUntilAsleep(pid_t tid) {
  const auto deadline = steady_clock::now() + kHangTimeout;
  while (steady_clock::now() < deadline) {
    if (ThreadState(tid) == 'S') return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// Waits until `flag` is set. False on timeout.
bool WaitForFlag(const std::atomic<bool>& flag) {
  const auto deadline = steady_clock::now() + kHangTimeout;
  while (!flag.load(std::memory_order_acquire)) {
    if (steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST(MpscQueueTest, SingleThreadFifoOrder) {
  MpscQueue<Item> queue(16);
  Item items[10];
  for (std::uint32_t i = 0; i < 10; ++i) {
    items[i].sequence = i;
    ASSERT_TRUE(queue.TryPush(&items[i]));
  }
  EXPECT_FALSE(queue.Empty());
  for (std::uint32_t i = 0; i < 10; ++i) {
    Item* item = queue.TryPop();
    ASSERT_NE(item, nullptr);
    EXPECT_EQ(item, &items[i]);
  }
  EXPECT_EQ(queue.TryPop(), nullptr);
  EXPECT_TRUE(queue.Empty());
}

TEST(MpscQueueTest, EmptyQueuePopsNothing) {
  MpscQueue<Item> queue(2);
  EXPECT_TRUE(queue.Empty());
  EXPECT_EQ(queue.TryPop(), nullptr);
  EXPECT_EQ(queue.TryPop(), nullptr);
  EXPECT_TRUE(queue.Empty());
}

TEST(MpscQueueTest, FullQueueRefusesPushAndKeepsItsContents) {
  MpscQueue<Item> queue(4);
  Item items[5];
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(queue.TryPush(&items[i]));
  // Refused pushes, repeated, change nothing: the same four items come out in order.
  for (int attempt = 0; attempt < 3; ++attempt) EXPECT_FALSE(queue.TryPush(&items[4]));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(queue.TryPop(), &items[i]);
  EXPECT_EQ(queue.TryPop(), nullptr);
  // One pop makes room for exactly one push.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(queue.TryPush(&items[i]));
  EXPECT_EQ(queue.TryPop(), &items[0]);
  EXPECT_TRUE(queue.TryPush(&items[4]));
  EXPECT_FALSE(queue.TryPush(&items[0]));
  for (int i : {1, 2, 3, 4}) EXPECT_EQ(queue.TryPop(), &items[i]);
}

TEST(MpscQueueTest, HoldsExactlyCapacityItems) {
  for (std::uint32_t capacity : {2u, 16u, 64u, 1024u}) {
    SCOPED_TRACE("capacity " + std::to_string(capacity));
    MpscQueue<Item> queue(capacity);
    EXPECT_EQ(queue.capacity(), capacity);
    std::vector<Item> items(capacity + 1);
    for (std::uint32_t i = 0; i < capacity; ++i) ASSERT_TRUE(queue.TryPush(&items[i]));
    EXPECT_FALSE(queue.TryPush(&items[capacity]));
    std::uint32_t popped = 0;
    while (queue.TryPop() != nullptr) ++popped;
    EXPECT_EQ(popped, capacity);
  }
}

// Pushes and pops at varying fill levels for many laps of the cell array, against a model.
TEST(MpscQueueTest, WrapsAroundManyLaps) {
  constexpr std::uint32_t kCapacity = 8;
  constexpr std::uint32_t kSteps = 200000;  // 25,000 laps' worth of pushes
  MpscQueue<Item> queue(kCapacity);
  std::vector<Item> items(kCapacity * 2);
  std::deque<Item*> model;
  std::uint32_t next = 0;
  std::uint64_t pushed = 0;
  for (std::uint32_t step = 0; step < kSteps; ++step) {
    // Fill to a level that cycles through 0..capacity, then drain to another.
    const std::uint32_t fill_to = step % (kCapacity + 1);
    while (model.size() < fill_to) {
      Item* item = &items[next++ % items.size()];
      ASSERT_TRUE(queue.TryPush(item));
      model.push_back(item);
      ++pushed;
    }
    if (model.size() == kCapacity) {
      ASSERT_FALSE(queue.TryPush(&items[0]));
    }
    const std::uint32_t drain_to = (step * 7) % (fill_to + 1);
    while (model.size() > drain_to) {
      ASSERT_EQ(queue.TryPop(), model.front());
      model.pop_front();
    }
  }
  while (!model.empty()) {
    ASSERT_EQ(queue.TryPop(), model.front());
    model.pop_front();
  }
  EXPECT_EQ(queue.TryPop(), nullptr);
  EXPECT_GT(pushed, std::uint64_t{20} * kCapacity * 1000);
}

// How producers behave on a full queue in the concurrent cases.
enum class FullPolicy { kSpin, kWaitForSpace };

// 8 producers x 100,000 items through 64 cells into one consumer: every item arrives exactly
// once and each producer's items arrive in the order it pushed them.
void RunManyProducers(FullPolicy policy) {
  constexpr std::uint32_t kProducers = 8;
  constexpr std::uint32_t kItemsPerProducer = 100000;
  constexpr std::uint32_t kCapacity = 64;
  MpscQueue<Item> queue(kCapacity);
  std::vector<Item> items(std::size_t{kProducers} * kItemsPerProducer);
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    for (std::uint32_t s = 0; s < kItemsPerProducer; ++s) {
      items[std::size_t{p} * kItemsPerProducer + s] = Item{p, s};
    }
  }
  std::atomic<std::uint64_t> full_count{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> producers;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      for (std::uint32_t s = 0; s < kItemsPerProducer; ++s) {
        Item* item = &items[std::size_t{p} * kItemsPerProducer + s];
        for (;;) {
          const std::uint32_t epoch = queue.space_epoch();
          if (queue.TryPush(item)) break;
          full_count.fetch_add(1, std::memory_order_relaxed);
          if (policy == FullPolicy::kWaitForSpace) {
            queue.WaitForSpace(epoch);
          } else {
            std::this_thread::yield();
          }
        }
      }
    });
  }

  std::vector<std::uint32_t> next_sequence(kProducers, 0);
  std::vector<bool> seen(items.size(), false);
  std::uint64_t received = 0;
  std::uint64_t order_errors = 0;
  std::uint64_t duplicates = 0;
  bool hung = false;
  go.store(true, std::memory_order_release);
  auto last_progress = steady_clock::now();
  while (received < items.size()) {
    Item* item = queue.TryPop();
    if (item == nullptr) {
      // The consumer of the scheduler sleeps when its queue is empty; this one spins, but it
      // gives up after a long time without an item: producers are stuck, the case failed.
      if (steady_clock::now() - last_progress > kHangTimeout) {
        hung = true;
        queue.WakeWaiters();  // release any stuck producer so the threads can be joined
        last_progress = steady_clock::now();
        continue;
      }
      std::this_thread::yield();
      continue;
    }
    last_progress = steady_clock::now();
    const std::size_t index = std::size_t{item->producer} * kItemsPerProducer + item->sequence;
    if (seen[index]) {
      ++duplicates;
    } else {
      seen[index] = true;
      ++received;
    }
    if (item->sequence != next_sequence[item->producer]) ++order_errors;
    next_sequence[item->producer] = item->sequence + 1;
  }
  for (std::thread& producer : producers) producer.join();
  EXPECT_FALSE(hung) << "no item arrived for " << kHangTimeout.count()
                     << " s while producers still had items: a producer was stuck";
  EXPECT_EQ(received, items.size());
  EXPECT_EQ(duplicates, 0u);
  EXPECT_EQ(order_errors, 0u);
  EXPECT_EQ(queue.TryPop(), nullptr);
  for (std::uint32_t p = 0; p < kProducers; ++p) EXPECT_EQ(next_sequence[p], kItemsPerProducer);
  // Not asserted (it depends on scheduling), but it says whether the case exercised the full
  // queue at all.
  std::printf("producers found the queue full %llu times\n",
              static_cast<unsigned long long>(full_count.load()));
}

TEST(MpscQueueTest, ManyProducersSpinningOnFullQueue) { RunManyProducers(FullPolicy::kSpin); }

TEST(MpscQueueTest, ManyProducersWaitingForSpace) { RunManyProducers(FullPolicy::kWaitForSpace); }

// A producer blocked in WaitForSpace on a full queue stays blocked while nothing is popped, and
// the consumer's next pop releases it; its retried push then succeeds.
TEST(MpscQueueTest, WaitForSpaceBlocksUntilAPop) {
  MpscQueue<Item> queue(2);
  Item items[3];
  ASSERT_TRUE(queue.TryPush(&items[0]));
  ASSERT_TRUE(queue.TryPush(&items[1]));
  std::atomic<pid_t> producer_tid{0};
  std::atomic<bool> returned{false};
  std::atomic<bool> pushed{false};
  std::thread producer([&] {
    producer_tid.store(static_cast<pid_t>(syscall(SYS_gettid)), std::memory_order_release);
    const std::uint32_t epoch = queue.space_epoch();
    if (queue.TryPush(&items[2])) return;  // impossible: the queue is full
    queue.WaitForSpace(epoch);
    returned.store(true, std::memory_order_release);
    pushed.store(queue.TryPush(&items[2]), std::memory_order_release);
  });
  while (producer_tid.load(std::memory_order_acquire) == 0) std::this_thread::yield();
  ASSERT_TRUE(WaitUntilAsleep(producer_tid.load())) << "the producer never blocked";
  EXPECT_FALSE(returned.load()) << "WaitForSpace returned while the queue was still full";

  EXPECT_EQ(queue.TryPop(), &items[0]);
  const bool released = WaitForFlag(returned);
  if (!released) queue.WakeWaiters();  // let the thread finish so the case can fail cleanly
  producer.join();
  EXPECT_TRUE(released) << "a pop did not release the producer waiting for space";
  EXPECT_TRUE(pushed.load());
  EXPECT_EQ(queue.TryPop(), &items[1]);
  EXPECT_EQ(queue.TryPop(), &items[2]);
}

// The interleaving every producer of the scheduler can hit (Worker::PushRemote reads the epoch,
// fails TryPush, then calls WaitForSpace): the consumer pops after the producer read the epoch
// but before the producer registered as a waiter. The contract of WaitForSpace ("blocks until
// the consumer popped something after `epoch` was read") says it must return at once: there is
// room. The steps run in a fixed order on two threads, so the case is deterministic.
TEST(MpscQueueTest, WaitForSpaceReturnsWhenThePopCameBeforeTheWait) {
  MpscQueue<Item> queue(2);
  Item items[3];
  ASSERT_TRUE(queue.TryPush(&items[0]));
  ASSERT_TRUE(queue.TryPush(&items[1]));
  // Producer, step 1: read the epoch, find the queue full.
  const std::uint32_t epoch = queue.space_epoch();
  ASSERT_FALSE(queue.TryPush(&items[2]));
  // Consumer: pop. No producer is registered as a waiter yet.
  ASSERT_EQ(queue.TryPop(), &items[0]);
  // Producer, step 2: wait for space with the epoch read before the failed push.
  std::atomic<bool> returned{false};
  std::thread producer([&] {
    queue.WaitForSpace(epoch);
    returned.store(true, std::memory_order_release);
  });
  const bool released = WaitForFlag(returned);
  if (!released) queue.WakeWaiters();  // release the thread so the case fails, not hangs
  producer.join();
  EXPECT_TRUE(released)
      << "WaitForSpace(epoch) blocked although a pop happened after `epoch` was read: the pop "
         "saw no registered waiter and did not advance the epoch (lost wake-up). In the "
         "scheduler, an outside Spawn can then sleep forever on a queue that has room.";
  EXPECT_TRUE(queue.TryPush(&items[2]));
}

// WakeWaiters (used at shutdown) releases a producer although nothing was popped.
TEST(MpscQueueTest, WakeWaitersReleasesABlockedProducer) {
  MpscQueue<Item> queue(2);
  Item items[3];
  ASSERT_TRUE(queue.TryPush(&items[0]));
  ASSERT_TRUE(queue.TryPush(&items[1]));
  std::atomic<pid_t> producer_tid{0};
  std::atomic<bool> returned{false};
  std::thread producer([&] {
    producer_tid.store(static_cast<pid_t>(syscall(SYS_gettid)), std::memory_order_release);
    const std::uint32_t epoch = queue.space_epoch();
    if (!queue.TryPush(&items[2])) queue.WaitForSpace(epoch);
    returned.store(true, std::memory_order_release);
  });
  while (producer_tid.load(std::memory_order_acquire) == 0) std::this_thread::yield();
  ASSERT_TRUE(WaitUntilAsleep(producer_tid.load()));
  queue.WakeWaiters();
  if (!WaitForFlag(returned)) {
    // Nothing else can release the thread, and joining it would hang ctest.
    std::fprintf(stderr, "WakeWaiters did not release the producer blocked in WaitForSpace\n");
    std::_Exit(1);
  }
  producer.join();
  // Nothing was popped: the queue is still full with the same items.
  EXPECT_FALSE(queue.TryPush(&items[2]));
  EXPECT_EQ(queue.TryPop(), &items[0]);
  EXPECT_EQ(queue.TryPop(), &items[1]);
}

}  // namespace
}  // namespace cascadefs::io
