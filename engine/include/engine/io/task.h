// task.h: Task<T>, the coroutine type of the io_uring runtime, and WhenAll (fork/join).
//
// A Task<T> is a lazily started coroutine returning T. Nothing runs until the Task is awaited
// (`T v = co_await SomeTask();`) or handed to Scheduler::Spawn / BlockOn. Awaiting starts the
// child on the awaiting thread with a plain call, and nothing goes through a queue:
// - a child that finishes without suspending returns from that call, and the awaiter goes on
//   without suspending. A loop of such awaits (cache hits, say) runs in constant stack in every
//   build. (Pure symmetric transfer would need the compiler to turn each transfer into a tail
//   call, which GCC 12 does only when optimizing without sanitizers: a Debug or ASan build
//   grew the stack by ~320 bytes per iteration.)
// - a child that suspends (on I/O) returns from the call at once; when it later finishes, it
//   resumes its awaiter by symmetric transfer.
// The stack used is proportional to how deeply awaits nest, never to how many run in sequence.
// A handshake on one atomic (PromiseBase::handoff) decides which of the two cases happened, so
// a child that moved to another IO thread and finished there before the awaiter suspended is
// handled too.
//
// Frames come from a per-thread free list of size classes (detail::AllocateFrame), so the hot
// path allocates nothing once the lists are warm (STYLE.md, "Limits and memory").
//
// Exceptions: none. unhandled_exception() aborts; the storage modules build with -fno-exceptions.
//
// Thread safety: a Task is owned by one awaiter at a time. A task may move between IO threads
// (SwitchTo, RunOn in scheduler.h); it then resumes its awaiter on the thread it finished on.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "engine/assert.h"

namespace cascadefs::io {

namespace detail {

// Frame allocation for every coroutine of the runtime. Frames up to kFrameClassMaxBytes are
// served from a per-thread free list per 64-byte class (at most kFrameCacheMax cached per
// class; beyond that they go back to malloc). Larger frames go straight to malloc. Out of
// memory aborts: a coroutine without a frame cannot report an error.
void* AllocateFrame(std::size_t size_bytes);
void FreeFrame(void* frame, std::size_t size_bytes) noexcept;

struct PromiseBase {
  static void* operator new(std::size_t size_bytes) { return AllocateFrame(size_bytes); }
  static void operator delete(void* frame, std::size_t size_bytes) noexcept {
    FreeFrame(frame, size_bytes);
  }

  // The awaiter, resumed by symmetric transfer when the task finishes after its awaiter
  // suspended; null when nobody awaits the task.
  std::coroutine_handle<> continuation;

  // Handshake between the awaiter (Task::Awaiter::await_suspend) and the task's end
  // (FinalAwaiter): whichever of the two comes second decides who continues the awaiter.
  //   kRunning -> kFinished           task ended inside the starting call: the awaiter goes on
  //                                   without suspending (await_suspend returns false)
  //   kRunning -> kAwaiterSuspended   the task suspended; the awaiter is now suspended
  //            -> kFinished           the task ended later: it resumes the awaiter
  static constexpr std::uint8_t kRunning = 0;
  static constexpr std::uint8_t kAwaiterSuspended = 1;
  static constexpr std::uint8_t kFinished = 2;
  std::atomic<std::uint8_t> handoff{kRunning};

  std::suspend_always initial_suspend() noexcept { return {}; }

  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <typename P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) noexcept {
      PromiseBase& promise = self.promise();
      if (promise.handoff.exchange(kFinished, std::memory_order_acq_rel) == kAwaiterSuspended) {
        return promise.continuation;
      }
      return std::noop_coroutine();  // the awaiter is still in await_suspend: it goes on
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }

  [[noreturn]] void unhandled_exception() noexcept {
    ::cascadefs::detail::AssertFailed(__FILE__, __LINE__, "an exception escaped a Task");
  }
};

// Runs `child` until it finishes or first suspends, with `awaiter` as its continuation.
// Returns whether the awaiter must suspend (false: the child already finished).
template <typename Promise>
bool StartAwaited(std::coroutine_handle<Promise> child, std::coroutine_handle<> awaiter) {
  PromiseBase& promise = child.promise();
  CFS_ASSERT(promise.handoff.load(std::memory_order_relaxed) == PromiseBase::kRunning);
  promise.continuation = awaiter;
  child.resume();
  return promise.handoff.exchange(PromiseBase::kAwaiterSuspended, std::memory_order_acq_rel) !=
         PromiseBase::kFinished;
}

}  // namespace detail

template <typename T>
class [[nodiscard]] Task;

template <typename T>
class [[nodiscard]] Task {
 public:
  struct promise_type : detail::PromiseBase {
    std::optional<T> value;
    Task get_return_object() {
      return Task(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    template <typename U>
    void return_value(U&& result) {
      value.emplace(std::forward<U>(result));
    }
  };
  using Handle = std::coroutine_handle<promise_type>;

  Task() noexcept = default;
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      Reset();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { Reset(); }

  bool valid() const { return static_cast<bool>(handle_); }

  struct Awaiter {
    Handle handle;
    bool await_ready() const noexcept { return false; }
    // Starts the child on this thread; false (do not suspend) when it already finished.
    bool await_suspend(std::coroutine_handle<> awaiter) noexcept {
      return detail::StartAwaited(handle, awaiter);
    }
    T await_resume() {
      CFS_ASSERT(handle.done());
      CFS_ASSERT(handle.promise().value.has_value());
      return std::move(*handle.promise().value);
    }
  };
  // REQUIRES: valid() and not yet started.
  Awaiter operator co_await() && noexcept {
    CFS_ASSERT(valid());
    return Awaiter{handle_};
  }
  Awaiter operator co_await() & noexcept {
    CFS_ASSERT(valid());
    return Awaiter{handle_};
  }

 private:
  explicit Task(Handle handle) : handle_(handle) {}
  void Reset() {
    if (handle_) handle_.destroy();
    handle_ = {};
  }
  Handle handle_;
};

template <>
class [[nodiscard]] Task<void> {
 public:
  struct promise_type : detail::PromiseBase {
    Task get_return_object() {
      return Task(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    void return_void() noexcept {}
  };
  using Handle = std::coroutine_handle<promise_type>;

  Task() noexcept = default;
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      Reset();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { Reset(); }

  bool valid() const { return static_cast<bool>(handle_); }

  struct Awaiter {
    Handle handle;
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> awaiter) noexcept {
      return detail::StartAwaited(handle, awaiter);
    }
    void await_resume() noexcept { CFS_ASSERT(handle.done()); }
  };
  Awaiter operator co_await() && noexcept {
    CFS_ASSERT(valid());
    return Awaiter{handle_};
  }
  Awaiter operator co_await() & noexcept {
    CFS_ASSERT(valid());
    return Awaiter{handle_};
  }

 private:
  explicit Task(Handle handle) : handle_(handle) {}
  void Reset() {
    if (handle_) handle_.destroy();
    handle_ = {};
  }
  Handle handle_;
};

namespace detail {

// Fork/join bookkeeping shared by the children of one WhenAll. `remaining_count` starts at
// children + 1: the extra one belongs to the parent while it starts the children, so a child
// that finishes during start-up never resumes a parent that has not suspended yet.
struct JoinState {
  std::atomic<std::size_t> remaining_count{0};
  std::coroutine_handle<> parent;
};

// A child of WhenAll: awaits one Task, stores its value, and at its end resumes the parent if
// it was the last to finish. The frame is destroyed by WhenAll, after every child finished.
struct JoinChild {
  struct promise_type : PromiseBase {
    JoinState* state;
    template <typename... Args>
    explicit promise_type(JoinState* join_state, Args&&...) : state(join_state) {}
    JoinChild get_return_object() {
      return JoinChild{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    void return_void() noexcept {}
    struct LastOneResumesParent {
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> self) noexcept {
        JoinState* join = self.promise().state;
        if (join->remaining_count.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          return join->parent;
        }
        return std::noop_coroutine();
      }
      void await_resume() noexcept {}
    };
    LastOneResumesParent final_suspend() noexcept { return {}; }
  };
  std::coroutine_handle<promise_type> handle;
};

template <typename T>
JoinChild RunJoinChild(JoinState* /*join_state*/, Task<T> task, std::optional<T>* slot) {
  slot->emplace(co_await std::move(task));
}
inline JoinChild RunJoinChildVoid(JoinState* /*join_state*/, Task<void> task) {
  co_await std::move(task);
}

struct JoinAwaiter {
  std::vector<JoinChild>* children;
  JoinState* state;
  bool await_ready() const noexcept { return children->empty(); }
  bool await_suspend(std::coroutine_handle<> parent) noexcept {
    state->parent = parent;
    state->remaining_count.store(children->size() + 1, std::memory_order_relaxed);
    for (JoinChild& child : *children) child.handle.resume();
    // Suspend unless every child already finished.
    return state->remaining_count.fetch_sub(1, std::memory_order_acq_rel) != 1;
  }
  void await_resume() noexcept {}
};

inline void DestroyChildren(std::vector<JoinChild>& children) {
  for (JoinChild& child : children) {
    CFS_ASSERT(child.handle.done());
    child.handle.destroy();
  }
  children.clear();
}

}  // namespace detail

// Runs every task concurrently (each starts on the calling thread and runs until it first
// suspends) and completes when all have finished, returning their values in input order.
// The parent resumes on the thread where the last child finished; a child that moved to
// another IO thread should come back (RunOn does) if the parent cares where it resumes.
template <typename T>
Task<std::vector<T>> WhenAll(std::vector<Task<T>> tasks) {
  std::vector<std::optional<T>> slots(tasks.size());
  detail::JoinState state;
  std::vector<detail::JoinChild> children;
  children.reserve(tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    children.push_back(detail::RunJoinChild<T>(&state, std::move(tasks[i]), &slots[i]));
  }
  co_await detail::JoinAwaiter{&children, &state};
  detail::DestroyChildren(children);
  std::vector<T> values;
  values.reserve(slots.size());
  for (std::optional<T>& slot : slots) values.push_back(std::move(*slot));
  co_return values;
}

inline Task<void> WhenAll(std::vector<Task<void>> tasks) {
  detail::JoinState state;
  std::vector<detail::JoinChild> children;
  children.reserve(tasks.size());
  for (Task<void>& task : tasks) {
    children.push_back(detail::RunJoinChildVoid(&state, std::move(task)));
  }
  co_await detail::JoinAwaiter{&children, &state};
  detail::DestroyChildren(children);
}

}  // namespace cascadefs::io
