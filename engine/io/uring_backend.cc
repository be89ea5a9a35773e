// uring_backend.cc: the io_uring backend of one IO thread.
//
// One ring per IO thread, created on that thread. The SQ has SchedulerOptions::ring_entries
// slots and the CQ in_flight_max + kInternalOpsMax (rounded up); the worker keeps at most
// in_flight_max ops in the kernel, so the CQ cannot overflow. A read of the worker's eventfd is
// always posted on the ring: it is how another thread wakes the worker while it sleeps in
// io_uring_enter, however long the other operations in flight (a /dev/fuse read, an accept) stay
// there. Its completion is consumed here and the read is posted again; the worker never sees it.
//
// Thread safety: everything but Wake() runs on the owning IO thread.
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "io/scheduler_impl.h"

namespace cascadefs::io {
namespace {

using detail::IoOp;
using detail::OpCode;

// The operations every scheduler needs (ProbeIoUring). kUringCmd is not among them: only the
// FUSE io_uring transport uses it, and a refusal there is that transport's fallback.
constexpr OpCode kAllOpCodes[] = {
    OpCode::kRead,    OpCode::kWrite,     OpCode::kReadFixed, OpCode::kWriteFixed, OpCode::kReadv,
    OpCode::kWritev,  OpCode::kFsync,     OpCode::kFdatasync, OpCode::kOpenat,     OpCode::kClose,
    OpCode::kStatx,   OpCode::kFallocate, OpCode::kRenameat,  OpCode::kUnlinkat,   OpCode::kAccept,
    OpCode::kConnect, OpCode::kRecv,      OpCode::kSend,      OpCode::kSleep,
};

int UringOpcode(OpCode code) {
  switch (code) {
    case OpCode::kRead:
      return IORING_OP_READ;
    case OpCode::kWrite:
      return IORING_OP_WRITE;
    case OpCode::kReadFixed:
      return IORING_OP_READ_FIXED;
    case OpCode::kWriteFixed:
      return IORING_OP_WRITE_FIXED;
    case OpCode::kReadv:
      return IORING_OP_READV;
    case OpCode::kWritev:
      return IORING_OP_WRITEV;
    case OpCode::kFsync:
    case OpCode::kFdatasync:
      return IORING_OP_FSYNC;
    case OpCode::kOpenat:
      return IORING_OP_OPENAT;
    case OpCode::kClose:
      return IORING_OP_CLOSE;
    case OpCode::kStatx:
      return IORING_OP_STATX;
    case OpCode::kFallocate:
      return IORING_OP_FALLOCATE;
    case OpCode::kRenameat:
      return IORING_OP_RENAMEAT;
    case OpCode::kUnlinkat:
      return IORING_OP_UNLINKAT;
    case OpCode::kLinkat:
      return IORING_OP_LINKAT;
    case OpCode::kMkdirat:
      return IORING_OP_MKDIRAT;
    case OpCode::kAccept:
      return IORING_OP_ACCEPT;
    case OpCode::kConnect:
      return IORING_OP_CONNECT;
    case OpCode::kRecv:
      return IORING_OP_RECV;
    case OpCode::kSend:
      return IORING_OP_SEND;
    case OpCode::kSleep:
      return IORING_OP_TIMEOUT;
    case OpCode::kUringCmd:
      return IORING_OP_URING_CMD;
  }
  return -1;
}

// The backend's own operations that can be in the ring at once: the eventfd read and one
// cancel request.
constexpr unsigned kInternalOpsMax = 2;

// Markers for the backend's own SQEs: their addresses are the user_data, never an IoOp's.
char wake_marker;
char cancel_marker;

class UringBackend final : public OpBackend {
 public:
  explicit UringBackend(const SchedulerOptions& options)
      : big_sqes_(options.big_sqes), cqes_(options.completion_batch_max) {}

  ~UringBackend() override {
    if (ring_ready_) io_uring_queue_exit(&ring_);
    if (event_fd_ >= 0) close(event_fd_);
  }

  Status Init(const SchedulerOptions& options) {
    event_fd_ = eventfd(0, EFD_CLOEXEC);
    if (event_fd_ < 0) return Status::FromErrno(errno, "eventfd for the IO thread's wake-ups");
    // The ring is created on the thread that will be its only submitter, so the kernel may
    // run completion work only when that thread enters it (DEFER_TASKRUN, Linux 6.1) instead
    // of interrupting it; TASKRUN_FLAG makes pending work visible to io_uring_peek_batch_cqe.
    // Older kernels refuse those flags with EINVAL: fall back step by step.
    const unsigned base_flags = IORING_SETUP_CQSIZE | (big_sqes_ ? IORING_SETUP_SQE128 : 0u);
    constexpr unsigned kFlagChoices[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
            IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        0,
    };
    int rc = -EINVAL;
    for (unsigned flags : kFlagChoices) {
      io_uring_params params{};
      params.flags = base_flags | flags;
      // Room for every op the worker may have in flight plus the wake read and a cancel
      // request, and never fewer than the SQ (the kernel refuses that); the kernel rounds it
      // up to a power of two.
      params.cq_entries = std::max(options.ring_entries, options.in_flight_max + kInternalOpsMax);
      rc = io_uring_queue_init_params(options.ring_entries, &ring_, &params);
      if (rc != -EINVAL) break;
    }
    if (rc < 0) return Status::FromErrno(-rc, "io_uring_queue_init");
    ring_ready_ = true;
    PostWakeRead();
    io_uring_submit(&ring_);
    return Status::OK();
  }

  bool Prep(IoOp* op) override {
    io_uring_sqe* sqe = GetSqe();
    if (sqe == nullptr) return false;
    switch (op->code) {
      case OpCode::kRead:
        io_uring_prep_read(sqe, op->fd, op->buf, static_cast<unsigned>(op->len), op->offset);
        break;
      case OpCode::kWrite:
        io_uring_prep_write(sqe, op->fd, op->buf, static_cast<unsigned>(op->len), op->offset);
        break;
      case OpCode::kReadFixed:
        io_uring_prep_read_fixed(sqe, op->fd, op->buf, static_cast<unsigned>(op->len), op->offset,
                                 op->buf_index);
        break;
      case OpCode::kWriteFixed:
        io_uring_prep_write_fixed(sqe, op->fd, op->buf, static_cast<unsigned>(op->len), op->offset,
                                  op->buf_index);
        break;
      case OpCode::kReadv:
        io_uring_prep_readv(sqe, op->fd, static_cast<const iovec*>(op->buf),
                            static_cast<unsigned>(op->len), op->offset);
        break;
      case OpCode::kWritev:
        io_uring_prep_writev(sqe, op->fd, static_cast<const iovec*>(op->buf),
                             static_cast<unsigned>(op->len), op->offset);
        break;
      case OpCode::kFsync:
        io_uring_prep_fsync(sqe, op->fd, 0);
        break;
      case OpCode::kFdatasync:
        io_uring_prep_fsync(sqe, op->fd, IORING_FSYNC_DATASYNC);
        break;
      case OpCode::kOpenat:
        io_uring_prep_openat(sqe, op->fd, op->path, static_cast<int>(op->flags), op->mode);
        break;
      case OpCode::kClose:
        io_uring_prep_close(sqe, op->fd);
        break;
      case OpCode::kStatx:
        io_uring_prep_statx(sqe, op->fd, op->path, static_cast<int>(op->flags), op->mode,
                            static_cast<struct statx*>(op->buf));
        break;
      case OpCode::kFallocate:
        io_uring_prep_fallocate(sqe, op->fd, static_cast<int>(op->mode),
                                static_cast<off_t>(op->offset), static_cast<off_t>(op->len));
        break;
      case OpCode::kRenameat:
        io_uring_prep_renameat(sqe, op->fd, op->path, op->dirfd2, op->path2, op->flags);
        break;
      case OpCode::kUnlinkat:
        io_uring_prep_unlinkat(sqe, op->fd, op->path, static_cast<int>(op->flags));
        break;
      case OpCode::kLinkat:
        io_uring_prep_linkat(sqe, op->fd, op->path, op->dirfd2, op->path2,
                             static_cast<int>(op->flags));
        break;
      case OpCode::kMkdirat:
        io_uring_prep_mkdirat(sqe, op->fd, op->path, static_cast<mode_t>(op->mode));
        break;
      case OpCode::kAccept:
        io_uring_prep_accept(sqe, op->fd, static_cast<sockaddr*>(op->buf), op->addr_len,
                             static_cast<int>(op->flags));
        break;
      case OpCode::kConnect:
        io_uring_prep_connect(sqe, op->fd, static_cast<const sockaddr*>(op->buf),
                              op->connect_addr_len);
        break;
      case OpCode::kRecv:
        io_uring_prep_recv(sqe, op->fd, op->buf, op->len, static_cast<int>(op->flags));
        break;
      case OpCode::kSend:
        io_uring_prep_send(sqe, op->fd, op->buf, op->len, static_cast<int>(op->flags));
        break;
      case OpCode::kSleep:
        io_uring_prep_timeout(sqe, &op->timeout, 0, 0);
        break;
      case OpCode::kUringCmd: {
        // The SQE's command area is 16 bytes, or 80 on a ring of 128-byte SQEs; the driver
        // reads all of it, so it is zeroed first (liburing 2.3 has no prep helper for this).
        const std::size_t area = big_sqes_ ? 80 : 16;
        CFS_ASSERT(op->command_len <= area);
        std::memset(static_cast<void*>(sqe), 0, sizeof(io_uring_sqe) + (big_sqes_ ? 64 : 0));
        sqe->opcode = IORING_OP_URING_CMD;
        sqe->fd = op->fd;
        sqe->cmd_op = op->flags;
        sqe->addr = reinterpret_cast<std::uint64_t>(op->buf);
        sqe->len = static_cast<std::uint32_t>(op->len);
        std::memcpy(sqe->cmd, op->command, op->command_len);
        break;
      }
    }
    if (op->always_async) sqe->flags |= IOSQE_ASYNC;
    io_uring_sqe_set_data(sqe, op);
    return true;
  }

  void Submit() override { io_uring_submit(&ring_); }

  std::uint32_t Reap(IoOp** out, std::uint32_t max) override {
    CFS_ASSERT(max <= cqes_.size());
    const unsigned count = io_uring_peek_batch_cqe(&ring_, cqes_.data(), max);
    std::uint32_t ops = 0;
    for (unsigned i = 0; i < count; ++i) {
      void* data = io_uring_cqe_get_data(cqes_[i]);
      if (data == &wake_marker) {
        wake_read_posted_ = false;
      } else if (data == &cancel_marker) {
        // The cancel request itself: its result is how many ops it cancelled.
      } else {
        auto* op = static_cast<IoOp*>(data);
        op->result = cqes_[i]->res;
        out[ops++] = op;
      }
    }
    io_uring_cq_advance(&ring_, count);
    if (!wake_read_posted_) PostWakeRead();
    return ops;
  }

  void Wait() override {
    if (!wake_read_posted_) PostWakeRead();
    io_uring_submit_and_wait(&ring_, 1);  // -EINTR: a signal; the loop simply turns again
  }

  void Wake() override {
    const std::uint64_t one = 1;
    // The eventfd counter cannot overflow in practice (2^64 - 2 writes).
    [[maybe_unused]] ssize_t n = write(event_fd_, &one, sizeof(one));
  }

  void CancelAll() override {
    io_uring_sqe* sqe = GetSqe();
    if (sqe == nullptr) return;  // the worker retries while it drains
    io_uring_prep_cancel(sqe, nullptr, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data(sqe, &cancel_marker);
    io_uring_submit(&ring_);
  }

  Status RegisterBuffers(const std::vector<iovec>& buffers) override {
    if (buffers.empty()) return Status::OK();
    const int rc =
        io_uring_register_buffers(&ring_, buffers.data(), static_cast<unsigned>(buffers.size()));
    if (rc < 0) return Status::FromErrno(-rc, "io_uring_register_buffers");
    return Status::OK();
  }

 private:
  io_uring_sqe* GetSqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      io_uring_submit(&ring_);  // the SQ is full: hand it to the kernel, then take a slot
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  void PostWakeRead() {
    io_uring_sqe* sqe = GetSqe();
    if (sqe == nullptr) return;  // posted again on the next Reap or Wait
    io_uring_prep_read(sqe, event_fd_, &event_value_, sizeof(event_value_), 0);
    io_uring_sqe_set_data(sqe, &wake_marker);
    wake_read_posted_ = true;
  }

  const bool big_sqes_;
  io_uring ring_{};
  bool ring_ready_ = false;
  int event_fd_ = -1;
  std::uint64_t event_value_ = 0;  // the wake read's buffer; its value is not used
  bool wake_read_posted_ = false;
  std::vector<io_uring_cqe*> cqes_;  // completion_batch_max entries, allocated once
};

}  // namespace

Result<std::unique_ptr<OpBackend>> NewUringBackend(const SchedulerOptions& options) {
  auto backend = std::make_unique<UringBackend>(options);
  Status status = backend->Init(options);
  if (!status.ok()) return status;
  return std::unique_ptr<OpBackend>(std::move(backend));
}

Status ProbeIoUring() {
  io_uring ring;
  const int rc = io_uring_queue_init(8, &ring, 0);
  if (rc < 0) return Status::FromErrno(-rc, "io_uring_queue_init");
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  Status status;
  if (probe == nullptr) {
    status = Status::NotSupported("io_uring opcode probe failed (needs Linux >= 5.6)");
  } else {
    for (OpCode code : kAllOpCodes) {
      if (!io_uring_opcode_supported(probe, UringOpcode(code))) {
        status = Status::NotSupported(std::string("this kernel's io_uring lacks ") + OpName(code) +
                                      " (needs Linux >= 5.19)");
        break;
      }
    }
    io_uring_free_probe(probe);
  }
  io_uring_queue_exit(&ring);
  return status;
}

}  // namespace cascadefs::io
