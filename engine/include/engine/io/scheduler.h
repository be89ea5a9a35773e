// scheduler.h: the io_uring scheduler, the runtime every cascadefs module does its I/O on.
//
// Design (docs/io.md has the whole story):
// - A Scheduler owns N IO threads (SchedulerOptions::io_threads, default one per core). Each
//   thread owns one io_uring, a bounded MPSC queue through which other threads hand it work,
//   and two ready lists (foreground, background) of coroutines to resume.
// - Coroutine tasks (Task<T>, task.h) run only on IO threads. An I/O awaitable (Read, Write,
//   Fsync, Accept, ...) preps one SQE on the ring of the thread it runs on; the thread submits
//   every SQE prepared in a loop turn with one syscall, reaps completions in batches, and
//   resumes the awaiting coroutines from its ready list after the reap (never inside it).
// - The awaiter is the operation: it lives in the coroutine frame and its address is the SQE's
//   user_data, so submitting allocates nothing.
// - Work enters from outside through Spawn (fire and forget) or BlockOn (wait for the result).
//   New tasks go to the IO threads round robin; a task stays on the thread it runs on unless it
//   moves on purpose (SwitchTo, RunOn).
// - Where the kernel refuses io_uring (EPERM, ENOSYS) the same API is served by a pool of
//   threads doing plain blocking system calls (Backend::kThreadPool), with one log line.
//
// Thread safety: Spawn, SpawnOn and stats() may be called from any thread, IO threads
// included (a task may spawn another). BlockOn and Shutdown may be called from any thread that
// is not an IO thread of this scheduler (there they would deadlock, so they assert). The I/O
// awaitables, Yield, SwitchTo and RunOn may only be awaited by a task running on an IO thread
// (asserted).
#pragma once

#include <fcntl.h>
#include <linux/time_types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/io/task.h"
#include "engine/result.h"
#include "engine/status.h"

namespace cascadefs::io {

class Scheduler;

// Foreground work (user requests) runs before background work (flush, compaction, GC): a
// thread resumes background tasks only when no foreground task is ready, except one background
// resumption every kBackgroundStarveTurnsMax loop turns so that background work always moves.
enum class Priority : std::uint8_t { kForeground = 0, kBackground = 1 };

enum class Backend : std::uint8_t {
  kAuto = 0,        // io_uring if the kernel allows it, else the thread pool
  kIoUring = 1,     // io_uring or fail
  kThreadPool = 2,  // blocking system calls on a pool of threads
};

const char* BackendName(Backend backend);

struct SchedulerOptions {
  // Number of IO threads, each owning one ring. 0 means one per online CPU. Raise it only if
  // one core cannot keep up with a single ring's completions; lower it to leave cores to
  // others. Range: 0..kIoThreadsMax. Default: 0.
  std::uint32_t io_threads = 0;

  // Submission-queue entries per ring. More entries let one loop turn submit more SQEs with
  // one syscall. Power of two. Range: 8..4096.
  // Default: 256.
  std::uint32_t ring_entries = 256;

  // Operations one IO thread keeps in the kernel at once. An operation awaited beyond it waits
  // in the thread's pending list (intrusive, no allocation) until a completion frees a slot.
  // Bounds kernel-side memory; the completion queue is sized to it (plus the ring's own two
  // internal operations), so it never overflows. Long-lived operations (an accept, a recv
  // waiting for a peer) hold their slot the whole time: keep enough slots for them plus the
  // short ones. Range: 1..2*ring_entries. Default: 512.
  std::uint32_t in_flight_max = 512;

  // Entries of each IO thread's MPSC queue (new tasks, tasks switching threads, wake-ups of
  // tasks awaiting another thread). A submitter finding it full waits until the IO thread
  // drains it; nothing grows without bound. Power of two. Range: 16..65536. Default: 4096.
  std::uint32_t submit_queue_max = 4096;

  // Prepared SQEs that trigger a submit while the IO thread is still resuming ready tasks;
  // whatever is prepared at the end of a loop turn is submitted anyway. 1 submits after each
  // resumed task that prepared an operation (a task that forks many operations at once still
  // submits them together): a read completed in a batch goes back to the device without
  // waiting for the rest of the batch to run, which on a virtio disk in its scaling range
  // (QD 8-32) was worth 15% IOPS at QD32 over one submit per turn. Raise it when CPU, not the
  // device, is the limit: fewer io_uring_enter calls per operation. Range: 1..4096. Default: 1.
  std::uint32_t submit_batch_max = 1;

  // Loop turns an idle IO thread spins looking for completions and queued work before it
  // sleeps in io_uring_enter. Spinning saves the wake-up latency (a syscall and a context
  // switch) when work arrives soon; it costs CPU when it does not. Range: 0..1000000.
  // Default: 64.
  std::uint32_t busy_poll_spins = 64;

  // Completions reaped per batch; each batch is copied out of the CQ ring before any coroutine
  // runs. Range: 1..1024. Default: 128.
  std::uint32_t completion_batch_max = 128;

  // Which backend to use. Default: kAuto.
  Backend backend = Backend::kAuto;

  // Receives the scheduler's few log lines (the fallback to the thread pool, a feature the
  // kernel lacks). Called from any thread. Default: print "cascadefs: <line>" to stderr.
  std::function<void(std::string_view line)> log;

  // Threads of the blocking fallback pool, shared by all IO threads. Each is busy for the whole
  // duration of one system call, so this bounds the fallback's concurrency. Range: 1..256.
  // Default: 8.
  std::uint32_t fallback_pool_threads = 8;

  // Registered (fixed) buffers per IO thread, each fixed_buffer_size_bytes, 4 KiB aligned (so
  // usable with O_DIRECT). ReadFixed/WriteFixed save the kernel from pinning pages per op.
  // 0 disables them. Range: 0..1024. Default: 32 (2 MiB per IO thread).
  std::uint32_t fixed_buffer_count = 32;
  // Size of each fixed buffer. Multiple of 4096. Range: 4096..16 MiB. Default: 64 KiB.
  std::uint32_t fixed_buffer_size_bytes = 64 * 1024;

  // Rings with 128-byte SQEs (IORING_SETUP_SQE128), needed by UringCommand with a command of
  // more than 16 bytes (the kernel's FUSE-over-io_uring commands take 24). Doubles the SQ's
  // memory; nothing else changes. Default: false.
  bool big_sqes = false;
  // How long Shutdown waits for cancelled operations and running tasks to finish before it
  // gives up and reports Busy. Range: 1..600000. Default: 5000.
  std::uint32_t shutdown_timeout_ms = 5000;
};

inline constexpr std::uint32_t kIoThreadsMax = 64;
inline constexpr std::uint32_t kBackgroundStarveTurnsMax = 8;
// -EAGAIN and -EINTR results are resubmitted at most this many times, then become a Status.
// Resubmission is immediate (the op goes to the back of the pending list): io_uring already
// waits for readiness itself on blocking files, so these are rare transient results.
inline constexpr std::uint32_t kRetryMax = 16;

// Counters summed over the IO threads (in_flight_peak: the largest of any one thread). Read with
// relaxed atomics: a snapshot, not a barrier.
struct SchedulerStats {
  std::uint64_t ops_completed = 0;       // I/O operations finished (with any result)
  std::uint64_t ops_retried = 0;         // resubmissions after -EAGAIN/-EINTR
  std::uint64_t ops_waited_pending = 0;  // ops that waited because in_flight_max was reached
  std::uint64_t submit_calls = 0;        // io_uring_enter calls that submitted SQEs
  std::uint64_t sleeps = 0;              // times an IO thread slept in the kernel
  std::uint64_t wakeups_sent = 0;        // eventfd writes by submitters to a sleeping thread
  std::uint64_t queue_full_waits = 0;    // submitters that waited on a full MPSC queue
  std::uint64_t tasks_spawned = 0;       // Spawn/SpawnOn/BlockOn
  std::uint64_t background_resumes = 0;  // resumptions of background-priority coroutines
  std::uint64_t in_flight = 0;           // operations in the kernel now
  std::uint64_t in_flight_peak = 0;      // the most that were ever in the kernel at once
};

// A registered buffer of the current IO thread (AcquireFixedBuffer). Belongs to that thread.
struct FixedBuffer {
  std::byte* data = nullptr;
  std::uint32_t size_bytes = 0;
  std::uint16_t index = 0;
  std::uint16_t thread_index = 0;
};

namespace detail {

// Something a worker resumes: it lives inside a coroutine frame (an awaiter or a promise) and
// is linked into the worker's ready lists, so resuming allocates nothing.
struct ReadyNode {
  ReadyNode* next_ready = nullptr;
  std::coroutine_handle<> handle;
  Priority priority = Priority::kForeground;
  std::uint32_t route = 0;  // the IO thread this node is bound for, while parked in an outbox
};

enum class OpCode : std::uint8_t {
  kRead,
  kWrite,
  kReadFixed,
  kWriteFixed,
  kReadv,
  kWritev,
  kFsync,
  kFdatasync,
  kOpenat,
  kClose,
  kStatx,
  kFallocate,
  kRenameat,
  kUnlinkat,
  kLinkat,
  kMkdirat,
  kAccept,
  kConnect,
  kRecv,
  kSend,
  kSleep,
  kUringCmd,
};

// One I/O operation: the arguments of the system call, its result, and the coroutine to resume.
// Lives in the awaiting coroutine's frame; its address is the SQE's user_data.
struct IoOp : ReadyNode {
  OpCode code = OpCode::kRead;
  std::uint8_t retry_count = 0;  // resubmissions so far; bounded by kRetryMax
  std::uint16_t buf_index = 0;   // fixed buffer index (kReadFixed, kWriteFixed)
  bool always_async = false;     // run on io_uring's worker threads, never inline (IOSQE_ASYNC)
  int fd = -1;
  int dirfd2 = -1;                // kRenameat, kLinkat: the new path's directory
  std::int32_t result = 0;        // the kernel's result: >= 0 success, -errno failure
  std::uint32_t flags = 0;        // open flags, statx flags, rename/unlink flags, msg flags
  std::uint32_t mode = 0;         // open mode, statx mask, fallocate mode
  std::uint64_t len = 0;          // bytes, or iovec count for kReadv/kWritev
  std::uint64_t offset = 0;       // file offset, or kCurrentPosition
  void* buf = nullptr;            // data, iovec*, statx*, sockaddr*
  const char* path = nullptr;     // path argument (not owned; lives in the caller's frame)
  const char* path2 = nullptr;    // kRenameat, kLinkat: the new path
  socklen_t* addr_len = nullptr;  // kAccept
  socklen_t connect_addr_len = 0;
  __kernel_timespec timeout{};  // kSleep
  // kUringCmd: the command bytes copied into the SQE's command area (at most
  // kUringCommandBytesMax); `flags` holds the command's cmd_op, `buf`/`len` its iovecs.
  const void* command = nullptr;
  std::uint32_t command_len = 0;
};

// Queues `op` on the current IO thread's ring (or its pending list when in_flight_max is
// reached). REQUIRES: called on an IO thread. The coroutine in op->handle resumes later.
void SubmitOp(IoOp* op);
// The Status for a failed op: names the operation, the path (from the op or, for a file
// descriptor, from /proc/self/fd), the offset and the errno. REQUIRES: op.result < 0.
Status OpError(const IoOp& op);

class OpAwaiterBase {
 public:
  explicit OpAwaiterBase(const IoOp& op) : op_(op) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle) {
    op_.handle = handle;
    SubmitOp(&op_);
  }

 protected:
  IoOp op_;
};

}  // namespace detail

// Awaitable yielding Result<size_t>: bytes transferred (may be short: fewer than asked).
class [[nodiscard]] SizeOp : public detail::OpAwaiterBase {
 public:
  using OpAwaiterBase::OpAwaiterBase;
  Result<std::size_t> await_resume() const {
    if (op_.result < 0) return detail::OpError(op_);
    return static_cast<std::size_t>(op_.result);
  }
};
// Awaitable yielding Result<int>: a new file descriptor.
class [[nodiscard]] FdOp : public detail::OpAwaiterBase {
 public:
  using OpAwaiterBase::OpAwaiterBase;
  Result<int> await_resume() const {
    if (op_.result < 0) return detail::OpError(op_);
    return static_cast<int>(op_.result);
  }
};
// Awaitable yielding Status.
class [[nodiscard]] StatusOp : public detail::OpAwaiterBase {
 public:
  using OpAwaiterBase::OpAwaiterBase;
  Status await_resume() const {
    if (op_.result < 0) return detail::OpError(op_);
    return Status::OK();
  }
};

// Offset meaning "the file's current position": for pipes, sockets and character devices,
// which have none (io_uring ignores the offset there; the thread pool then uses read/write).
inline constexpr std::uint64_t kCurrentPosition = ~std::uint64_t{0};

// The I/O operations. Each returns an awaitable; `co_await` it on an IO thread. Pointers
// (buffers, paths, iovecs, sockaddrs, statx) must stay valid until the await returns, which
// they do when they live in the awaiting coroutine's frame. Errors are Status values naming the
// operation, the path and the errno (Status::errno_value()); -EAGAIN and -EINTR are retried
// up to kRetryMax times first. An operation still in flight at Shutdown is cancelled and
// yields Status::Cancelled.

// pread: up to `len` bytes at `offset`. 0 bytes means end of file.
SizeOp Read(int fd, void* buf, std::size_t len, std::uint64_t offset);
// read(2) of a character device that can block even after polling readable and ignores
// IOCB_NOWAIT, such as /dev/fuse: when several readers share the device, another one can take
// the pending request between io_uring's readiness check and its inline attempt, which would
// then sleep in the kernel on the IO thread itself and stall every task of that thread. This
// read always runs on io_uring's worker threads (IOSQE_ASYNC), never inline.
SizeOp ReadBlockingDevice(int fd, void* buf, std::size_t len);
// pwrite: up to `len` bytes at `offset`.
SizeOp Write(int fd, const void* buf, std::size_t len, std::uint64_t offset);
// Reads/writes through a registered buffer of the current IO thread (AcquireFixedBuffer).
// REQUIRES: `buf` belongs to the current IO thread; len <= buf.size_bytes.
SizeOp ReadFixed(int fd, const FixedBuffer& buf, std::size_t len, std::uint64_t offset);
SizeOp WriteFixed(int fd, const FixedBuffer& buf, std::size_t len, std::uint64_t offset);
SizeOp Readv(int fd, const iovec* iov, int iov_count, std::uint64_t offset);
SizeOp Writev(int fd, const iovec* iov, int iov_count, std::uint64_t offset);
StatusOp Fsync(int fd);
StatusOp Fdatasync(int fd);
// openat(2); O_DIRECT and every other flag are passed through.
FdOp Openat(int dirfd, const char* path, int flags, mode_t mode = 0644);
StatusOp Close(int fd);
StatusOp Statx(int dirfd, const char* path, int flags, unsigned mask, struct statx* out);
StatusOp Fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t len);
StatusOp Renameat(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                  unsigned flags = 0);
StatusOp Unlinkat(int dirfd, const char* path, int flags = 0);
// linkat(2): a new name `new_path` for the file `old_path` (a hard link). Needs Linux 5.15 on
// the io_uring backend (not probed at start: an older kernel fails this op with EINVAL, which
// callers treat like a file system without hard links).
StatusOp Linkat(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                int flags = 0);
// mkdirat(2). Needs Linux 5.15 on the io_uring backend, as Linkat.
StatusOp Mkdirat(int dirfd, const char* path, mode_t mode = 0755);
FdOp Accept(int fd, sockaddr* addr, socklen_t* addr_len, int flags = SOCK_CLOEXEC);
StatusOp Connect(int fd, const sockaddr* addr, socklen_t addr_len);
// recv: 0 bytes means the peer closed the connection.
SizeOp Recv(int fd, void* buf, std::size_t len, int flags = 0);
SizeOp Send(int fd, const void* buf, std::size_t len, int flags = MSG_NOSIGNAL);
// IORING_OP_URING_CMD: a command to the driver behind `fd` (the kernel's FUSE-over-io_uring
// queues), `cmd_op` and `command` (copied into the SQE; at most 16 bytes, or
// kUringCommandBytesMax with SchedulerOptions::big_sqes) plus `iov_count` iovecs in addr/len.
// The result is the driver's. NotSupported on the thread-pool backend (EOPNOTSUPP).
inline constexpr std::size_t kUringCommandBytesMax = 80;
SizeOp UringCommand(int fd, std::uint32_t cmd_op, const void* command, std::size_t command_len,
                    const iovec* iov, int iov_count);
// Suspends the task for `duration` without blocking the thread (an io_uring timeout).
StatusOp Sleep(std::chrono::nanoseconds duration);

// Loops over Read until `len` bytes are read or end of file: the result is less than `len`
// only at end of file. Short transfers are resubmitted for the remainder.
Task<Result<std::size_t>> ReadFull(int fd, void* buf, std::size_t len, std::uint64_t offset);
// Loops over Write until all `len` bytes are written.
Task<Status> WriteAll(int fd, const void* buf, std::size_t len, std::uint64_t offset);
// Loops over Send until all bytes are sent.
Task<Status> SendAll(int fd, const void* buf, std::size_t len);

// A registered buffer of the current IO thread, or nullopt when all are in use (or disabled).
// REQUIRES: on an IO thread. Release it on the same thread.
std::optional<FixedBuffer> AcquireFixedBuffer();
void ReleaseFixedBuffer(const FixedBuffer& buf);

// The scheduler and IO-thread index of the calling thread, or null / -1 off the runtime.
Scheduler* CurrentScheduler();
int CurrentThreadIndex();

// Awaitable: puts the task at the back of its priority's ready list, letting other ready
// tasks (and, for a background task, every foreground one) run first. Long background work
// awaits this between bounded steps.
class [[nodiscard]] YieldAwaiter {
 public:
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle);
  void await_resume() const noexcept {}

 private:
  detail::ReadyNode node_;
};
inline YieldAwaiter Yield() { return {}; }

// Awaitable: continues the task on IO thread `thread_index` of `scheduler`, keeping its
// priority. Goes through that thread's MPSC queue (waiting if it is full).
// REQUIRES: on an IO thread of `scheduler`; thread_index < scheduler.io_threads().
class [[nodiscard]] SwitchToAwaiter {
 public:
  SwitchToAwaiter(Scheduler& scheduler, std::uint32_t thread_index)
      : scheduler_(scheduler), thread_index_(thread_index) {}
  bool await_ready() const noexcept;
  void await_suspend(std::coroutine_handle<> handle);
  void await_resume() const noexcept {}

 private:
  Scheduler& scheduler_;
  std::uint32_t thread_index_;
  detail::ReadyNode node_;
};
inline SwitchToAwaiter SwitchTo(Scheduler& scheduler, std::uint32_t thread_index) {
  return SwitchToAwaiter(scheduler, thread_index);
}

// Runs `task` on IO thread `thread_index` and returns its value on the calling task's own
// thread. REQUIRES: on an IO thread of `scheduler`.
template <typename T>
Task<T> RunOn(Scheduler& scheduler, std::uint32_t thread_index, Task<T> task) {
  const int home = CurrentThreadIndex();
  CFS_ASSERT(home >= 0);
  co_await SwitchTo(scheduler, thread_index);
  T value = co_await std::move(task);
  co_await SwitchTo(scheduler, static_cast<std::uint32_t>(home));
  co_return value;
}
inline Task<void> RunOn(Scheduler& scheduler, std::uint32_t thread_index, Task<void> task) {
  const int home = CurrentThreadIndex();
  CFS_ASSERT(home >= 0);
  co_await SwitchTo(scheduler, thread_index);
  co_await std::move(task);
  co_await SwitchTo(scheduler, static_cast<std::uint32_t>(home));
}

class Scheduler {
 public:
  // Starts the IO threads. On kAuto, an io_uring refused by the kernel (EPERM, ENOSYS) falls
  // back to the thread pool with one warning line on stderr. Errors: InvalidArgument for
  // options out of range; the io_uring or thread error otherwise (nothing left running).
  static Result<std::unique_ptr<Scheduler>> Create(const SchedulerOptions& options);

  // Shuts down (see Shutdown) if that has not happened yet, logging a non-OK result.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Runs `task` detached on an IO thread chosen round robin (SpawnOn: on `thread_index`).
  // Waits if that thread's queue is full. After Shutdown began, the task is destroyed unrun.
  void Spawn(Task<void> task, Priority priority = Priority::kForeground);
  void SpawnOn(std::uint32_t thread_index, Task<void> task,
               Priority priority = Priority::kForeground);

  // Runs `task` on an IO thread and blocks the calling thread until it finishes.
  // REQUIRES: not on an IO thread of this scheduler; Shutdown has not begun.
  template <typename T>
  T BlockOn(Task<T> task, Priority priority = Priority::kForeground);
  void BlockOn(Task<void> task, Priority priority = Priority::kForeground);

  // Stops the scheduler: no new tasks are accepted, every operation in flight is cancelled
  // (its awaiter sees Status::Cancelled), and each IO thread keeps running until its ready
  // tasks have finished and nothing is in flight, or shutdown_timeout_ms passed. Then the
  // threads exit and the rings close. OK when everything drained; Busy naming the counts when
  // the timeout passed (tasks still suspended are then leaked, never resumed). Idempotent.
  // REQUIRES: not on an IO thread of this scheduler.
  Status Shutdown();

  // Pins IO thread i to the i-th CPU this process may run on (sched_getaffinity), for work
  // that is per CPU by nature: the kernel's FUSE-over-io_uring queues hand a request to the
  // queue of the caller's CPU, and an IO thread on that CPU then serves it without a
  // cross-CPU wake-up (measured here: 2x the random-read rate of unpinned threads). Returns
  // each IO thread's CPU; threads beyond the allowed CPUs stay unpinned (-1). Idempotent.
  // REQUIRES: not on an IO thread of this scheduler; Shutdown has not begun.
  Result<std::vector<int>> PinIoThreadsToCpus();

  Backend backend() const;
  std::uint32_t io_threads() const;
  SchedulerStats stats() const;

  class Impl;  // private: engine/io/scheduler_impl.h
  Impl* impl() { return impl_.get(); }

 private:
  explicit Scheduler(std::unique_ptr<Impl> impl);

  // Completion handshake of BlockOn: shared between the blocked thread and the task, so
  // neither side touches freed memory whichever finishes last.
  struct BlockOnLatch;
  static std::shared_ptr<BlockOnLatch> NewLatch();
  static void LatchWait(BlockOnLatch& latch);
  static void LatchRelease(BlockOnLatch& latch);
  void AssertNotOnIoThread() const;
  // Spawn for BlockOn: false when Shutdown has begun (the task was destroyed unrun).
  bool SpawnForBlockOn(Task<void> task, Priority priority);

  // The task's frame (and so its parameters) is destroyed before the latch is released:
  // nothing of the task outlives BlockOn's return.
  template <typename T>
  static Task<void> BlockOnBody(Task<T> task, std::shared_ptr<BlockOnLatch> latch,
                                std::optional<T>* out) {
    {
      Task<T> owned = std::move(task);
      out->emplace(co_await std::move(owned));
    }
    LatchRelease(*latch);
  }
  static Task<void> BlockOnBodyVoid(Task<void> task, std::shared_ptr<BlockOnLatch> latch);

  std::unique_ptr<Impl> impl_;
};

template <typename T>
T Scheduler::BlockOn(Task<T> task, Priority priority) {
  AssertNotOnIoThread();
  std::shared_ptr<BlockOnLatch> latch = NewLatch();
  std::optional<T> out;
  const bool spawned = SpawnForBlockOn(BlockOnBody<T>(std::move(task), latch, &out), priority);
  CFS_ASSERT(spawned);  // REQUIRES: Shutdown has not begun
  LatchWait(*latch);
  CFS_ASSERT(out.has_value());
  return std::move(*out);
}

}  // namespace cascadefs::io
