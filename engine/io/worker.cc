// worker.cc: one IO thread of the scheduler and its loop.
//
// The loop (docs/io.md, "The loop"), one turn:
//   1. Take work: new tasks and cross-thread resumptions from the MPSC queue, and completions
//      from the ring, in alternating order: after a turn that submitted, completions first;
//      after a turn that reaped, the queue first. Completions are copied out in batches of
//      completion_batch_max before any coroutine runs.
//   2. Run ready coroutines: foreground first; background only when no foreground one is
//      ready, or one every kBackgroundStarveTurnsMax turns. At most kRunBatchMax per turn.
//   3. Move pending ops into the ring while fewer than in_flight_max are in flight, retry the
//      outbox, and submit everything prepared with one io_uring_enter. (During step 2, SQEs
//      are already submitted whenever submit_batch_max of them are prepared.)
//   4. If the turn did nothing: spin up to busy_poll_spins turns, then sleep in the kernel
//      until a completion or a wake-up (the eventfd read always posted on the ring).
//
// Invariants (checked where they can break):
//   I1. in_flight_ <= in_flight_max: an op is handed to the backend only below the limit.
//   I2. A ReadyNode is in at most one list (ready, pending, outbox) or in flight, never two.
//   I3. Only the owner thread touches the lists; other threads use queue_ and sleeping_.
//
// Thread safety: see scheduler_impl.h.
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <future>
#include <thread>

#include "io/scheduler_impl.h"

namespace cascadefs::io {

using detail::IoOp;
using detail::ReadyNode;

namespace {
// Coroutine resumptions per loop turn, so a flood of ready tasks cannot delay submitting the
// SQEs they prepared or reaping completions.
constexpr std::uint32_t kRunBatchMax = 1024;
// While shutting down, the cancel request is repeated this often until everything drained.
constexpr auto kCancelRepeatInterval = std::chrono::milliseconds(20);
}  // namespace

thread_local Worker* tls_worker = nullptr;
thread_local Priority tls_priority = Priority::kForeground;

Worker::Worker(Scheduler::Impl* impl, std::uint32_t index)
    : impl_(impl), index_(index), queue_(impl->options.submit_queue_max) {
  reap_batch_.resize(impl->options.completion_batch_max);
}

Worker::~Worker() {
  CFS_ASSERT(!thread_.joinable());
  backend_.reset();  // closes the ring (unregistering the buffers) before they are freed
  std::free(fixed_memory_);
}

Status Worker::Init(Backend backend, ThreadPool* pool) {
  // The ring is created on the IO thread itself, which will be its only submitter.
  std::promise<Status> ready;
  std::future<Status> ready_future = ready.get_future();
  thread_ = std::thread([this, backend, pool, ready = std::move(ready)]() mutable {
    Status status;
    Result<std::unique_ptr<OpBackend>> created =
        backend == Backend::kIoUring ? NewUringBackend(impl_->options) : NewPoolBackend(pool, this);
    if (created.ok()) {
      backend_ = std::move(created).value();
    } else {
      status = created.status();
    }
    if (status.ok()) status = InitFixedBuffers();
    const bool ok = status.ok();
    ready.set_value(std::move(status));
    if (ok) Run();
  });
  Status status = ready_future.get();
  if (!status.ok()) thread_.join();
  return status;
}

Status Worker::InitFixedBuffers() {
  const SchedulerOptions& options = impl_->options;
  if (options.fixed_buffer_count == 0) return Status::OK();
  const std::size_t total_bytes =
      std::size_t{options.fixed_buffer_count} * options.fixed_buffer_size_bytes;
  fixed_memory_ = static_cast<std::byte*>(std::aligned_alloc(4096, total_bytes));
  if (fixed_memory_ == nullptr) return Status::NoSpace("fixed buffers: out of memory");
  std::vector<iovec> iovecs(options.fixed_buffer_count);
  fixed_free_.reserve(options.fixed_buffer_count);
  for (std::uint32_t i = 0; i < options.fixed_buffer_count; ++i) {
    iovecs[i].iov_base = fixed_memory_ + std::size_t{i} * options.fixed_buffer_size_bytes;
    iovecs[i].iov_len = options.fixed_buffer_size_bytes;
    fixed_free_.push_back(static_cast<std::uint16_t>(options.fixed_buffer_count - 1 - i));
  }
  Status status = backend_->RegisterBuffers(iovecs);
  if (!status.ok()) {
    // Registration needs locked memory (RLIMIT_MEMLOCK); without it fixed ops are unusable,
    // so none are handed out. Everything else works.
    impl_->Log("IO thread " + std::to_string(index_) + ": " + std::string(status.message()) +
               "; fixed buffers disabled (raise RLIMIT_MEMLOCK to enable them)");
    fixed_free_.clear();
  }
  return Status::OK();
}

void Worker::Join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::WakeIfSleeping() {
  // The caller published its work with a seq_cst store (the queue) or under the completion
  // list's mutex; this seq_cst load pairs with the store in Sleep() (docs/io.md, "Waking").
  if (sleeping_.load(std::memory_order_seq_cst) &&
      sleeping_.exchange(false, std::memory_order_seq_cst)) {
    counters.wakeups_sent.fetch_add(1, std::memory_order_relaxed);
    backend_->Wake();
  }
}

void Worker::ForceWake() { backend_->Wake(); }

void Worker::PushRemote(ReadyNode* node) {
  if (tls_worker == this) {
    MakeReady(node);
    return;
  }
  if (tls_worker != nullptr && tls_worker->impl_ == impl_) {
    // Another IO thread of ours: never block (two IO threads could wait on each other's full
    // queues); the node waits in that thread's outbox and is retried every turn.
    if (queue_.TryPush(node)) {
      WakeIfSleeping();
    } else {
      counters.queue_full_waits.fetch_add(1, std::memory_order_relaxed);
      node->route = index_;
      tls_worker->outbox_.PushBack(node);
    }
    return;
  }
  // An outside thread: wait for space.
  for (;;) {
    const std::uint32_t epoch = queue_.space_epoch();
    if (queue_.TryPush(node)) {
      WakeIfSleeping();
      return;
    }
    if (exited_.load(std::memory_order_acquire)) return;  // shut down: the node is dropped
    counters.queue_full_waits.fetch_add(1, std::memory_order_relaxed);
    WakeIfSleeping();
    queue_.WaitForSpace(epoch);
  }
}

void Worker::MakeReady(ReadyNode* node) {
  CFS_DASSERT(tls_worker == this);
  if (node->priority == Priority::kForeground) {
    ready_foreground_.PushBack(node);
  } else {
    ready_background_.PushBack(node);
  }
}

void Worker::SubmitOp(IoOp* op) {
  CFS_ASSERT(tls_worker == this);
  op->priority = tls_priority;
  op->retry_count = 0;
  // After Shutdown began, new operations fail at once (Close still runs, so tasks can release
  // what they hold): nothing new may block the drain.
  if (impl_->stopping.load(std::memory_order_acquire) && op->code != detail::OpCode::kClose) {
    op->result = -ECANCELED;
    MakeReady(op);
    return;
  }
  if (in_flight_ >= impl_->options.in_flight_max || !pending_.empty()) {
    counters.ops_waited_pending.fetch_add(1, std::memory_order_relaxed);
    pending_.PushBack(op);
    return;
  }
  (void)Issue(op);  // on false the op waits at the head of pending_
}

bool Worker::Issue(IoOp* op) {
  CFS_ASSERT(in_flight_ < impl_->options.in_flight_max);  // I1
  if (!backend_->Prep(op)) {
    pending_.PushFront(op);
    return false;
  }
  in_flight_++;
  prepared_++;
  counters.in_flight.store(in_flight_, std::memory_order_relaxed);
  if (in_flight_ > counters.in_flight_peak.load(std::memory_order_relaxed)) {
    counters.in_flight_peak.store(in_flight_, std::memory_order_relaxed);
  }
  return true;
}

void Worker::CompleteFromPool(IoOp* op) {
  PushPoolCompletion(backend_.get(), op);
  WakeIfSleeping();
}

std::optional<FixedBuffer> Worker::AcquireFixedBuffer() {
  CFS_ASSERT(tls_worker == this);
  if (fixed_free_.empty()) return std::nullopt;
  const std::uint16_t index = fixed_free_.back();
  fixed_free_.pop_back();
  const std::uint32_t size_bytes = impl_->options.fixed_buffer_size_bytes;
  return FixedBuffer{fixed_memory_ + std::size_t{index} * size_bytes, size_bytes, index,
                     static_cast<std::uint16_t>(index_)};
}

void Worker::ReleaseFixedBuffer(const FixedBuffer& buf) {
  CFS_ASSERT(tls_worker == this);
  CFS_ASSERT(buf.thread_index == index_);
  CFS_ASSERT(buf.index < impl_->options.fixed_buffer_count);
  CFS_ASSERT(fixed_free_.size() < impl_->options.fixed_buffer_count);
  fixed_free_.push_back(buf.index);
}

bool Worker::DrainQueue() {
  bool any = false;
  for (std::uint32_t i = 0; i < queue_.capacity(); ++i) {
    ReadyNode* node = queue_.TryPop();
    if (node == nullptr) break;
    MakeReady(node);
    any = true;
  }
  return any;
}

bool Worker::ReapCompletions() {
  bool any = false;
  for (;;) {
    const std::uint32_t count =
        backend_->Reap(reap_batch_.data(), static_cast<std::uint32_t>(reap_batch_.size()));
    for (std::uint32_t i = 0; i < count; ++i) CompleteOp(reap_batch_[i]);
    any |= count > 0;
    if (count < reap_batch_.size()) break;
  }
  counters.in_flight.store(in_flight_, std::memory_order_relaxed);
  return any;
}

void Worker::CompleteOp(IoOp* op) {
  CFS_ASSERT(in_flight_ > 0);
  in_flight_--;
  if ((op->result == -EAGAIN || op->result == -EINTR) && op->retry_count < kRetryMax &&
      !impl_->stopping.load(std::memory_order_relaxed)) {
    op->retry_count++;
    counters.ops_retried.fetch_add(1, std::memory_order_relaxed);
    pending_.PushBack(op);
    return;
  }
  if (op->code == detail::OpCode::kSleep && op->result == -ETIME) op->result = 0;
  counters.ops_completed.fetch_add(1, std::memory_order_relaxed);
  MakeReady(op);
}

bool Worker::RunReady() {
  std::uint32_t budget = kRunBatchMax;
  bool ran = false;
  while (budget > 0 && !ready_foreground_.empty()) {
    ReadyNode* node = ready_foreground_.PopFront();
    tls_priority = Priority::kForeground;
    node->handle.resume();
    SubmitIfBatchFull();
    budget--;
    ran = true;
  }
  std::uint32_t background_budget = 0;
  if (ready_foreground_.empty()) {
    background_budget = budget;
  } else if (turn_ % kBackgroundStarveTurnsMax == 0) {
    background_budget = 1;
  }
  while (background_budget > 0 && !ready_background_.empty()) {
    ReadyNode* node = ready_background_.PopFront();
    tls_priority = Priority::kBackground;
    counters.background_resumes.fetch_add(1, std::memory_order_relaxed);
    node->handle.resume();
    SubmitIfBatchFull();
    background_budget--;
    ran = true;
  }
  tls_priority = Priority::kForeground;
  return ran;
}

void Worker::SubmitPrepared() {
  CFS_DASSERT(prepared_ > 0);
  backend_->Submit();
  counters.submit_calls.fetch_add(1, std::memory_order_relaxed);
  prepared_ = 0;
  submitted_this_turn_ = true;
}

void Worker::SubmitIfBatchFull() {
  if (prepared_ >= impl_->options.submit_batch_max) SubmitPrepared();
}

void Worker::FlushPending() {
  while (!pending_.empty() && in_flight_ < impl_->options.in_flight_max) {
    auto* op = static_cast<IoOp*>(pending_.PopFront());
    if (!Issue(op)) break;  // no SQE free even after a submit: try next turn
  }
}

bool Worker::FlushOutbox() {
  bool moved = false;
  for (std::uint64_t n = outbox_.size(); n > 0; --n) {
    ReadyNode* node = outbox_.PopFront();
    Worker* target = impl_->workers[node->route].get();
    if (target->queue_.TryPush(node)) {
      target->WakeIfSleeping();
      moved = true;
    } else {
      outbox_.PushBack(node);
    }
  }
  return moved;
}

bool Worker::Quiescent() const {
  return impl_->spawns_in_progress.load(std::memory_order_seq_cst) == 0 &&
         impl_->live_tasks.load(std::memory_order_seq_cst) == 0 && in_flight_ == 0 &&
         ready_foreground_.empty() && ready_background_.empty() && pending_.empty() &&
         outbox_.empty();
}

void Worker::Sleep() {
  sleeping_.store(true, std::memory_order_seq_cst);
  // Re-check after announcing the sleep: a producer that pushed before seeing sleeping_ set
  // did not wake us, so its item must be visible here.
  if (queue_.Empty() && !impl_->stopping.load(std::memory_order_seq_cst)) {
    counters.sleeps.fetch_add(1, std::memory_order_relaxed);
    backend_->Wait();
  }
  sleeping_.store(false, std::memory_order_relaxed);
}

void Worker::Run() {
  tls_worker = this;
  std::uint32_t idle_spins = 0;
  bool completions_first = false;
  std::chrono::steady_clock::time_point last_cancel{};
  for (;; ++turn_) {
    submitted_this_turn_ = false;
    bool busy = false;
    if (completions_first) {
      busy |= ReapCompletions();
      busy |= DrainQueue();
    } else {
      busy |= DrainQueue();
      busy |= ReapCompletions();
    }
    completions_first = false;
    busy |= RunReady();
    FlushPending();
    if (!outbox_.empty()) busy |= FlushOutbox();
    if (prepared_ > 0) SubmitPrepared();
    if (submitted_this_turn_) {
      completions_first = true;
      busy = true;
    }

    if (impl_->stopping.load(std::memory_order_seq_cst)) {
      const auto now = std::chrono::steady_clock::now();
      if (in_flight_ > 0 && now - last_cancel >= kCancelRepeatInterval) {
        backend_->CancelAll();
        last_cancel = now;
      }
      if (Quiescent() && queue_.Empty()) break;
      if (now >= impl_->deadline) break;  // Shutdown reports what is left
      if (!busy) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    if (busy || !outbox_.empty()) {
      idle_spins = 0;
      continue;
    }
    if (++idle_spins <= impl_->options.busy_poll_spins) continue;
    idle_spins = 0;
    Sleep();
  }
  counters.in_flight.store(in_flight_, std::memory_order_relaxed);
  exited_.store(true, std::memory_order_release);
  queue_.WakeWaiters();
  tls_worker = nullptr;
}

std::uint64_t Worker::LeftoverCount() const {
  return in_flight_ + ready_foreground_.size() + ready_background_.size() + pending_.size() +
         outbox_.size();
}

}  // namespace cascadefs::io
