// task_test.cc: Task<T> and WhenAll, the coroutine types of the io_uring runtime (task.h).
//
// Goal: a Task returns its value (plain, move-only, Result<T>, Status, void) to its awaiter; a
// chain of nested awaits uses stack in proportion to its depth only, both when it completes
// synchronously and when it suspends at the bottom and is resumed by the IO loop, and a loop
// of a million synchronously completing awaits does not grow the stack at all; an unstarted
// Task frees its frame when destroyed; and
// WhenAll of 0, 1 or many tasks returns their values in input order once the last child
// finished, also when the children suspend on I/O for different durations.
//
// Method: every case runs its coroutines on a real Scheduler (one IO thread, so the order of
// events on the thread is deterministic) through BlockOn, except the unstarted-frame cases,
// which need no scheduler. Frame lifetimes are observed through the destructor of an object
// passed by value as a coroutine parameter (the parameter copy lives in the frame); a leaked
// frame would also be reported by LeakSanitizer in the ASan build. Nothing is timed: where the
// order of completion matters, the children record it.
#include "engine/io/task.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "engine/io/scheduler.h"
#include "engine/result.h"
#include "engine/status.h"

namespace cascadefs::io {
namespace {

// Counts its own destructions through a pointer; moved-from instances count nothing. Passed by
// value to a coroutine, its copy in the frame is destroyed exactly when the frame is.
class DestroyCounter {
 public:
  explicit DestroyCounter(int* destroyed) : destroyed_(destroyed) {}
  DestroyCounter(DestroyCounter&& other) noexcept
      : destroyed_(std::exchange(other.destroyed_, nullptr)) {}
  DestroyCounter& operator=(DestroyCounter&&) = delete;
  ~DestroyCounter() {
    if (destroyed_ != nullptr) ++*destroyed_;
  }

 private:
  int* destroyed_;
};

std::unique_ptr<Scheduler> NewScheduler() {
  SchedulerOptions options;
  options.io_threads = 1;
  options.fixed_buffer_count = 0;
  Result<std::unique_ptr<Scheduler>> scheduler = Scheduler::Create(options);
  CFS_ASSERT(scheduler.ok());
  return std::move(scheduler).value();
}

class TaskTest : public testing::Test {
 protected:
  std::unique_ptr<Scheduler> scheduler_ = NewScheduler();
};

// ---- Values -------------------------------------------------------------------------------

Task<int> Add(int a, int b) { co_return a + b; }

Task<int> AddThrice(int a) {
  const int x = co_await Add(a, 1);
  const int y = co_await Add(x, 10);
  co_return co_await Add(y, 100);
}

TEST_F(TaskTest, ReturnsItsValue) {
  EXPECT_EQ(scheduler_->BlockOn(Add(2, 3)), 5);
  EXPECT_EQ(scheduler_->BlockOn(AddThrice(1)), 112);
}

Task<void> SetFlag(bool* flag) {
  *flag = true;
  co_return;
}

TEST_F(TaskTest, VoidTaskRuns) {
  bool flag = false;
  scheduler_->BlockOn(SetFlag(&flag));
  EXPECT_TRUE(flag);
}

Task<std::string> Greeting(std::string name) { co_return "hello " + name; }

Task<std::string> AwaitAnLvalueTask() {
  Task<std::string> task = Greeting("lvalue");
  EXPECT_TRUE(task.valid());
  std::string value = co_await task;  // operator co_await() &: the task stays owned here
  EXPECT_TRUE(task.valid());
  co_return value;
}

TEST_F(TaskTest, AwaitingAnLvalueTaskReturnsItsValue) {
  EXPECT_EQ(scheduler_->BlockOn(AwaitAnLvalueTask()), "hello lvalue");
}

Task<std::unique_ptr<int>> MakeBox(int value) { co_return std::make_unique<int>(value); }

Task<std::unique_ptr<int>> DoubleBox() {
  std::unique_ptr<int> box = co_await MakeBox(21);
  *box *= 2;
  co_return box;  // moved: a unique_ptr cannot be copied
}

TEST_F(TaskTest, MoveOnlyResults) {
  std::unique_ptr<int> box = scheduler_->BlockOn(DoubleBox());
  ASSERT_NE(box, nullptr);
  EXPECT_EQ(*box, 42);
}

Task<Result<std::unique_ptr<std::string>>> MaybeName(bool ok) {
  if (!ok) co_return Status::NotFound("no name");
  co_return std::make_unique<std::string>("cascade");
}

Task<Status> CheckPositive(int value) {
  if (value <= 0) co_return Status::InvalidArgument("value " + std::to_string(value));
  co_return Status::OK();
}

// A Status travelling up through CFS_CO_RETURN_IF_ERROR picks up context on the way.
Task<Result<int>> SumOfPositives(int a, int b) {
  CFS_CO_RETURN_IF_ERROR(co_await CheckPositive(a));
  Status second = co_await CheckPositive(b);
  if (!second.ok()) co_return std::move(second).WithContext("second operand");
  co_return a + b;
}

TEST_F(TaskTest, ResultAndStatusReturns) {
  Result<std::unique_ptr<std::string>> name = scheduler_->BlockOn(MaybeName(true));
  ASSERT_TRUE(name.ok()) << name.status().ToString();
  EXPECT_EQ(**name, "cascade");

  Result<std::unique_ptr<std::string>> missing = scheduler_->BlockOn(MaybeName(false));
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().IsNotFound());
  EXPECT_EQ(missing.status().message(), "no name");

  EXPECT_TRUE(scheduler_->BlockOn(CheckPositive(1)).ok());
  EXPECT_TRUE(scheduler_->BlockOn(CheckPositive(0)).IsInvalidArgument());

  Result<int> sum = scheduler_->BlockOn(SumOfPositives(2, 3));
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(*sum, 5);
  Result<int> first_bad = scheduler_->BlockOn(SumOfPositives(-1, 3));
  ASSERT_FALSE(first_bad.ok());
  EXPECT_EQ(first_bad.status().ToString(), "Invalid argument: value -1");
  Result<int> second_bad = scheduler_->BlockOn(SumOfPositives(1, -3));
  ASSERT_FALSE(second_bad.ok());
  EXPECT_EQ(second_bad.status().ToString(), "Invalid argument: second operand: value -3");
}

// ---- Stack use of chains and loops ---------------------------------------------------------
//
// task.h's contract: stack use grows with how deeply awaits nest, never with how many awaits
// run in sequence, in every build (GCC 12 turns symmetric transfer into a tail call only when
// optimizing without sanitizers, so the Task awaiter does not rely on it for tasks that finish
// without suspending).

// Nesting depth of the chains: deep for real code (a B-tree descent is < 10 levels).
constexpr int kChainDepth = 1000;
// Stack allowed per nesting level: an awaiter's call into the child plus the child's body,
// generous for AddressSanitizer's larger frames.
constexpr std::uintptr_t kStackPerLevelMaxBytes = 2048;
// Iterations of a loop of awaits that each complete without suspending: if each iteration
// left even 16 bytes on the stack, this loop would pass kLoopStackGrowthMaxBytes.
constexpr int kLoopAwaits = 1000000;
constexpr std::uintptr_t kLoopStackGrowthMaxBytes = 64 << 10;

// Watches the stack pointer of the thread running a chain. Only that thread touches it.
struct StackProbe {
  // How far below its starting point the stack may grow. Past it the chain stops and the case
  // fails at once, instead of crashing on a stack overflow much later.
  std::uintptr_t bound_bytes = kChainDepth * kStackPerLevelMaxBytes;
  std::uintptr_t top = 0;
  std::uintptr_t max_growth_bytes = 0;
  int exceeded_at = -1;  // where the growth passed the bound, in `unit`
  const char* unit = "remaining depth";

  // Starts measuring from the caller's stack position.
  [[gnu::noinline]] void Reset() {
    top = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  }
  // False once the stack grew past bound_bytes below `top`.
  [[gnu::noinline]] bool Check(int where) {
    const auto here = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
    const std::uintptr_t growth = here < top ? top - here : 0;
    if (growth > max_growth_bytes) max_growth_bytes = growth;
    if (growth <= bound_bytes) return true;
    if (exceeded_at < 0) exceeded_at = where;
    return false;
  }
  std::string Report() const {
    return "the stack grew by " + std::to_string(max_growth_bytes) + " bytes (bound " +
           std::to_string(bound_bytes) + "), passing the bound at " + unit + " " +
           std::to_string(exceeded_at);
  }
};

constexpr int kGaveUp = -1000000000;

// Each level awaits the next; the bottom returns without suspending.
Task<int> SyncChain(int depth, StackProbe* probe) {
  if (!probe->Check(depth)) co_return kGaveUp;
  if (depth == 0) co_return 0;
  const int below = co_await SyncChain(depth - 1, probe);
  if (!probe->Check(depth)) co_return kGaveUp;
  co_return below == kGaveUp ? kGaveUp : below + 1;
}

// The bottom suspends (Yield, or a real io_uring timeout): the whole chain is then resumed
// from the IO loop and unwinds through kChainDepth final awaiters.
enum class Bottom { kYield, kSleep };

Task<int> SuspendingChain(int depth, Bottom bottom, StackProbe* probe) {
  if (!probe->Check(depth)) co_return kGaveUp;
  if (depth == 0) {
    if (bottom == Bottom::kYield) {
      co_await Yield();
    } else {
      Status slept = co_await Sleep(std::chrono::milliseconds(1));
      if (!slept.ok()) co_return kGaveUp;
    }
    probe->Reset();  // resumed from the IO loop: measure the way up from here
    co_return 0;
  }
  const int below = co_await SuspendingChain(depth - 1, bottom, probe);
  if (!probe->Check(depth)) co_return kGaveUp;
  co_return below == kGaveUp ? kGaveUp : below + 1;
}

Task<int> One(StackProbe* probe, int iteration) { co_return probe->Check(iteration) ? 1 : 0; }

Task<int> LoopOfSynchronousAwaits(int count, StackProbe* probe) {
  probe->Reset();
  int sum = 0;
  for (int i = 0; i < count; ++i) {
    const int one = co_await One(probe, i);
    if (one == 0) break;
    sum += one;
  }
  co_return sum;
}

Task<int> StartSyncChain(int depth, StackProbe* probe) {
  probe->Reset();
  co_return co_await SyncChain(depth, probe);
}

Task<int> StartSuspendingChain(int depth, Bottom bottom, StackProbe* probe) {
  probe->Reset();
  co_return co_await SuspendingChain(depth, bottom, probe);
}

TEST_F(TaskTest, DeepChainCompletingSynchronouslyUsesStackByDepthOnly) {
  StackProbe probe;
  EXPECT_EQ(scheduler_->BlockOn(StartSyncChain(kChainDepth, &probe)), kChainDepth)
      << probe.Report();
}

TEST_F(TaskTest, DeepChainYieldingAtTheBottomUsesStackByDepthOnly) {
  StackProbe probe;
  EXPECT_EQ(scheduler_->BlockOn(StartSuspendingChain(kChainDepth, Bottom::kYield, &probe)),
            kChainDepth)
      << probe.Report();
}

TEST_F(TaskTest, DeepChainSleepingAtTheBottomUsesStackByDepthOnly) {
  StackProbe probe;
  EXPECT_EQ(scheduler_->BlockOn(StartSuspendingChain(kChainDepth, Bottom::kSleep, &probe)),
            kChainDepth)
      << probe.Report();
}

TEST_F(TaskTest, LoopOfSynchronousAwaitsDoesNotGrowTheStack) {
  StackProbe probe;
  probe.unit = "iteration";
  probe.bound_bytes = kLoopStackGrowthMaxBytes;
  EXPECT_EQ(scheduler_->BlockOn(LoopOfSynchronousAwaits(kLoopAwaits, &probe)), kLoopAwaits)
      << probe.Report();
}

// ---- Frames ---------------------------------------------------------------------------------

Task<int> CountedValue(DestroyCounter counter, int value) {
  (void)counter;
  co_return value;
}

Task<void> CountedVoid(DestroyCounter counter) {
  (void)counter;
  co_return;
}

TEST(TaskFrameTest, UnstartedTaskFreesItsFrameWhenDestroyed) {
  int destroyed = 0;
  {
    Task<int> task = CountedValue(DestroyCounter(&destroyed), 7);
    EXPECT_TRUE(task.valid());
    EXPECT_EQ(destroyed, 0);  // lazily started: the frame (and the parameter) lives on
  }
  EXPECT_EQ(destroyed, 1);
  {
    Task<void> task = CountedVoid(DestroyCounter(&destroyed));
    EXPECT_EQ(destroyed, 1);
  }
  EXPECT_EQ(destroyed, 2);
}

TEST(TaskFrameTest, MovingATaskTransfersTheFrame) {
  int destroyed = 0;
  Task<int> first = CountedValue(DestroyCounter(&destroyed), 1);
  Task<int> moved(std::move(first));
  EXPECT_FALSE(first.valid());  // NOLINT(bugprone-use-after-move): the moved-from state
  EXPECT_TRUE(moved.valid());
  EXPECT_EQ(destroyed, 0);
  // Assigning over a task destroys the frame it held.
  moved = CountedValue(DestroyCounter(&destroyed), 2);
  EXPECT_EQ(destroyed, 1);
  Task<int> empty;
  EXPECT_FALSE(empty.valid());
  moved = std::move(empty);
  EXPECT_EQ(destroyed, 2);
  EXPECT_FALSE(moved.valid());
}

// A task awaited inside another is destroyed (with its parameters) when the awaiting
// expression ends, before the awaiter goes on. (Through BlockOn the outermost frame is
// destroyed on the IO thread; scheduler_test.cc checks when that happens relative to
// BlockOn's return.)
Task<int> AwaitCountedValue(int* destroyed) {
  const int value = co_await CountedValue(DestroyCounter(destroyed), 9);
  EXPECT_EQ(*destroyed, 1);
  co_return value;
}

TEST_F(TaskTest, AwaitedTaskIsDestroyedWhenTheAwaitEnds) {
  int destroyed = 0;
  EXPECT_EQ(scheduler_->BlockOn(AwaitCountedValue(&destroyed)), 9);
}

// ---- WhenAll --------------------------------------------------------------------------------

Task<int> YieldThenReturn(int value, int yields, std::vector<int>* finish_order) {
  for (int i = 0; i < yields; ++i) co_await Yield();
  finish_order->push_back(value);
  co_return value;
}

Task<std::vector<int>> JoinValues(std::vector<Task<int>> tasks) {
  co_return co_await WhenAll(std::move(tasks));
}

TEST_F(TaskTest, WhenAllOfNoTasks) {
  EXPECT_TRUE(scheduler_->BlockOn(JoinValues({})).empty());
  bool after = false;
  scheduler_->BlockOn([](bool* flag) -> Task<void> {
    co_await WhenAll(std::vector<Task<void>>{});
    *flag = true;
  }(&after));
  EXPECT_TRUE(after);
}

TEST_F(TaskTest, WhenAllOfOneTask) {
  std::vector<int> finish_order;
  std::vector<Task<int>> tasks;
  tasks.push_back(YieldThenReturn(17, 3, &finish_order));
  EXPECT_EQ(scheduler_->BlockOn(JoinValues(std::move(tasks))), std::vector<int>{17});
  EXPECT_EQ(finish_order, std::vector<int>{17});
}

// The children finish in the reverse of their input order (the first yields the most), and
// some finish without suspending at all; the values still come back in input order.
TEST_F(TaskTest, WhenAllReturnsValuesInInputOrder) {
  constexpr int kCount = 100;
  std::vector<int> finish_order;
  std::vector<Task<int>> tasks;
  std::vector<int> expected;
  for (int i = 0; i < kCount; ++i) {
    tasks.push_back(YieldThenReturn(i, (kCount - i) % 37, &finish_order));
    expected.push_back(i);
  }
  EXPECT_EQ(scheduler_->BlockOn(JoinValues(std::move(tasks))), expected);
  ASSERT_EQ(finish_order.size(), static_cast<std::size_t>(kCount));
  EXPECT_NE(finish_order, expected);  // the case really finished them out of order
}

Task<std::vector<std::unique_ptr<int>>> JoinBoxes() {
  std::vector<Task<std::unique_ptr<int>>> tasks;
  for (int i = 0; i < 10; ++i) tasks.push_back(MakeBox(i));
  co_return co_await WhenAll(std::move(tasks));
}

TEST_F(TaskTest, WhenAllOfMoveOnlyValues) {
  std::vector<std::unique_ptr<int>> boxes = scheduler_->BlockOn(JoinBoxes());
  ASSERT_EQ(boxes.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    ASSERT_NE(boxes[i], nullptr);
    EXPECT_EQ(*boxes[i], i);
  }
}

// Each child sleeps a different time on the ring; WhenAll resumes the parent only after the
// longest one, which every child proves by recording its end before the parent looks.
Task<Status> SleepAndRecord(int index, int sleep_ms, std::vector<int>* finished) {
  Status status = co_await Sleep(std::chrono::milliseconds(sleep_ms));
  finished->push_back(index);
  co_return status;
}

struct SleepJoin {
  std::vector<Status> statuses;
  std::vector<int> finished_when_parent_resumed;
};

Task<SleepJoin> JoinSleeps(std::vector<int> sleeps_ms) {
  std::vector<int> finished;
  std::vector<Task<Status>> tasks;
  for (std::size_t i = 0; i < sleeps_ms.size(); ++i) {
    tasks.push_back(SleepAndRecord(static_cast<int>(i), sleeps_ms[i], &finished));
  }
  SleepJoin out;
  out.statuses = co_await WhenAll(std::move(tasks));
  out.finished_when_parent_resumed = finished;
  co_return out;
}

TEST_F(TaskTest, WhenAllCompletesAfterTheLongestSuspendedChild) {
  // Index 1 sleeps longest; index 3 does not sleep at all (a zero timeout).
  const std::vector<int> sleeps_ms = {5, 60, 20, 0, 40};
  SleepJoin join = scheduler_->BlockOn(JoinSleeps(sleeps_ms));
  ASSERT_EQ(join.statuses.size(), sleeps_ms.size());
  for (const Status& status : join.statuses) EXPECT_TRUE(status.ok()) << status.ToString();
  ASSERT_EQ(join.finished_when_parent_resumed.size(), sleeps_ms.size());
  // io_uring timeouts of different lengths complete in length order: the longest is last.
  EXPECT_EQ(join.finished_when_parent_resumed.back(), 1);
}

Task<void> IncrementAfterSleep(int sleep_ms, int* counter) {
  Status status = co_await Sleep(std::chrono::milliseconds(sleep_ms));
  EXPECT_TRUE(status.ok()) << status.ToString();
  ++*counter;
}

TEST_F(TaskTest, WhenAllOfVoidTasks) {
  int counter = 0;
  int destroyed = 0;
  scheduler_->BlockOn([](int* counter, int* destroyed) -> Task<void> {
    std::vector<Task<void>> tasks;
    for (int i = 0; i < 20; ++i) tasks.push_back(IncrementAfterSleep(i % 4, counter));
    tasks.push_back(CountedVoid(DestroyCounter(destroyed)));
    co_await WhenAll(std::move(tasks));
    EXPECT_EQ(*counter, 20);   // every child finished before the parent resumed
    EXPECT_EQ(*destroyed, 1);  // and WhenAll destroyed the children's frames
  }(&counter, &destroyed));
  EXPECT_EQ(counter, 20);
}

// WhenAll inside WhenAll: a tree of 10 x 10 leaves.
Task<int> SumOfLeaves(int base) {
  std::vector<Task<int>> leaves;
  std::vector<int> ignored;
  for (int i = 0; i < 10; ++i) leaves.push_back(YieldThenReturn(base + i, i % 3, &ignored));
  std::vector<int> values = co_await WhenAll(std::move(leaves));
  int sum = 0;
  for (int v : values) sum += v;
  co_return sum;
}

Task<std::vector<int>> NestedJoins() {
  std::vector<Task<int>> subtrees;
  for (int i = 0; i < 10; ++i) subtrees.push_back(SumOfLeaves(i * 10));
  co_return co_await WhenAll(std::move(subtrees));
}

TEST_F(TaskTest, NestedWhenAll) {
  std::vector<int> sums = scheduler_->BlockOn(NestedJoins());
  ASSERT_EQ(sums.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(sums[i], i * 100 + 45);
}

}  // namespace
}  // namespace cascadefs::io
