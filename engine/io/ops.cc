// ops.cc: the I/O operations' awaitables, their error messages, the full-transfer loops, and
// the blocking execution used by the thread-pool backend.
//
// Each factory only fills an IoOp in the awaitable it returns; nothing happens until the
// awaitable is co_awaited on an IO thread (detail::SubmitOp).
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>
#include <string>

#include "io/scheduler_impl.h"

namespace cascadefs::io {

using detail::IoOp;
using detail::OpCode;

namespace {

IoOp MakeFdOp(OpCode code, int fd) {
  IoOp op;
  op.code = code;
  op.fd = fd;
  return op;
}

IoOp MakeDataOp(OpCode code, int fd, const void* buf, std::size_t len, std::uint64_t offset) {
  IoOp op = MakeFdOp(code, fd);
  op.buf = const_cast<void*>(buf);  // the kernel only reads it for writes
  // One transfer moves at most INT_MAX bytes (the CQE's result is an int32); callers asking for
  // more get a short transfer, which the *Full/*All loops continue.
  op.len = std::min<std::uint64_t>(len, INT_MAX & ~std::uint64_t{4095});
  op.offset = offset;
  return op;
}

// The path an fd refers to, for error messages only (this is the error path: one readlink).
std::string PathOfFd(int fd) {
  char link[64];
  std::snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  char target[PATH_MAX];
  const ssize_t n = readlink(link, target, sizeof(target) - 1);
  if (n <= 0) return "fd " + std::to_string(fd);
  return std::string(target, static_cast<std::size_t>(n));
}

}  // namespace

const char* OpName(OpCode code) {
  switch (code) {
    case OpCode::kRead:
      return "read";
    case OpCode::kWrite:
      return "write";
    case OpCode::kReadFixed:
      return "read (fixed buffer)";
    case OpCode::kWriteFixed:
      return "write (fixed buffer)";
    case OpCode::kReadv:
      return "readv";
    case OpCode::kWritev:
      return "writev";
    case OpCode::kFsync:
      return "fsync";
    case OpCode::kFdatasync:
      return "fdatasync";
    case OpCode::kOpenat:
      return "open";
    case OpCode::kClose:
      return "close";
    case OpCode::kStatx:
      return "statx";
    case OpCode::kFallocate:
      return "fallocate";
    case OpCode::kRenameat:
      return "rename";
    case OpCode::kUnlinkat:
      return "unlink";
    case OpCode::kLinkat:
      return "link";
    case OpCode::kMkdirat:
      return "mkdir";
    case OpCode::kAccept:
      return "accept";
    case OpCode::kConnect:
      return "connect";
    case OpCode::kRecv:
      return "recv";
    case OpCode::kSend:
      return "send";
    case OpCode::kSleep:
      return "sleep";
    case OpCode::kUringCmd:
      return "io_uring command";
  }
  return "unknown op";
}

namespace detail {

void SubmitOp(IoOp* op) {
  CFS_ASSERT(tls_worker != nullptr);  // I/O is awaited only by tasks on an IO thread
  tls_worker->SubmitOp(op);
}

Status OpError(const IoOp& op) {
  CFS_ASSERT(op.result < 0);
  std::string context;
  switch (op.code) {
    case OpCode::kOpenat:
    case OpCode::kStatx:
    case OpCode::kUnlinkat:
    case OpCode::kMkdirat:
      context = std::string(op.path) + ": " + OpName(op.code);
      break;
    case OpCode::kRenameat:
      context = std::string(op.path) + " -> " + op.path2 + ": rename";
      break;
    case OpCode::kLinkat:
      context = std::string(op.path) + " -> " + op.path2 + ": link";
      break;
    case OpCode::kRead:
    case OpCode::kWrite:
    case OpCode::kReadFixed:
    case OpCode::kWriteFixed:
    case OpCode::kReadv:
    case OpCode::kWritev:
      context = PathOfFd(op.fd) + ": " + OpName(op.code);
      if (op.offset != kCurrentPosition) context += " at offset " + std::to_string(op.offset);
      break;
    case OpCode::kSleep:
      context = "sleep";
      break;
    default:
      context = PathOfFd(op.fd) + ": " + OpName(op.code);
      break;
  }
  return Status::FromErrno(-op.result, context);
}

}  // namespace detail

SizeOp Read(int fd, void* buf, std::size_t len, std::uint64_t offset) {
  return SizeOp(MakeDataOp(OpCode::kRead, fd, buf, len, offset));
}
SizeOp ReadBlockingDevice(int fd, void* buf, std::size_t len) {
  IoOp op = MakeDataOp(OpCode::kRead, fd, buf, len, kCurrentPosition);
  op.always_async = true;
  return SizeOp(op);
}
SizeOp UringCommand(int fd, std::uint32_t cmd_op, const void* command, std::size_t command_len,
                    const iovec* iov, int iov_count) {
  CFS_ASSERT(command_len <= kUringCommandBytesMax);
  IoOp op;
  op.code = OpCode::kUringCmd;
  op.fd = fd;
  op.flags = cmd_op;
  op.command = command;
  op.command_len = static_cast<std::uint32_t>(command_len);
  op.buf = const_cast<iovec*>(iov);
  op.len = static_cast<std::uint64_t>(iov_count);
  return SizeOp(op);
}
SizeOp Write(int fd, const void* buf, std::size_t len, std::uint64_t offset) {
  return SizeOp(MakeDataOp(OpCode::kWrite, fd, buf, len, offset));
}
SizeOp ReadFixed(int fd, const FixedBuffer& buf, std::size_t len, std::uint64_t offset) {
  CFS_ASSERT(len <= buf.size_bytes);
  CFS_ASSERT(static_cast<int>(buf.thread_index) == CurrentThreadIndex());
  IoOp op = MakeDataOp(OpCode::kReadFixed, fd, buf.data, len, offset);
  op.buf_index = buf.index;
  return SizeOp(op);
}
SizeOp WriteFixed(int fd, const FixedBuffer& buf, std::size_t len, std::uint64_t offset) {
  CFS_ASSERT(len <= buf.size_bytes);
  CFS_ASSERT(static_cast<int>(buf.thread_index) == CurrentThreadIndex());
  IoOp op = MakeDataOp(OpCode::kWriteFixed, fd, buf.data, len, offset);
  op.buf_index = buf.index;
  return SizeOp(op);
}
SizeOp Readv(int fd, const iovec* iov, int iov_count, std::uint64_t offset) {
  CFS_ASSERT(iov_count > 0 && iov_count <= IOV_MAX);
  IoOp op = MakeFdOp(OpCode::kReadv, fd);
  op.buf = const_cast<iovec*>(iov);
  op.len = static_cast<std::uint64_t>(iov_count);
  op.offset = offset;
  return SizeOp(op);
}
SizeOp Writev(int fd, const iovec* iov, int iov_count, std::uint64_t offset) {
  CFS_ASSERT(iov_count > 0 && iov_count <= IOV_MAX);
  IoOp op = MakeFdOp(OpCode::kWritev, fd);
  op.buf = const_cast<iovec*>(iov);
  op.len = static_cast<std::uint64_t>(iov_count);
  op.offset = offset;
  return SizeOp(op);
}
StatusOp Fsync(int fd) { return StatusOp(MakeFdOp(OpCode::kFsync, fd)); }
StatusOp Fdatasync(int fd) { return StatusOp(MakeFdOp(OpCode::kFdatasync, fd)); }
FdOp Openat(int dirfd, const char* path, int flags, mode_t mode) {
  CFS_ASSERT(path != nullptr);
  IoOp op = MakeFdOp(OpCode::kOpenat, dirfd);
  op.path = path;
  op.flags = static_cast<std::uint32_t>(flags | O_CLOEXEC);
  op.mode = mode;
  return FdOp(op);
}
StatusOp Close(int fd) { return StatusOp(MakeFdOp(OpCode::kClose, fd)); }
StatusOp Statx(int dirfd, const char* path, int flags, unsigned mask, struct statx* out) {
  CFS_ASSERT(path != nullptr && out != nullptr);
  IoOp op = MakeFdOp(OpCode::kStatx, dirfd);
  op.path = path;
  op.flags = static_cast<std::uint32_t>(flags);
  op.mode = mask;
  op.buf = out;
  return StatusOp(op);
}
StatusOp Fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t len) {
  IoOp op = MakeFdOp(OpCode::kFallocate, fd);
  op.mode = static_cast<std::uint32_t>(mode);
  op.offset = offset;
  op.len = len;
  return StatusOp(op);
}
StatusOp Renameat(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                  unsigned flags) {
  CFS_ASSERT(old_path != nullptr && new_path != nullptr);
  IoOp op = MakeFdOp(OpCode::kRenameat, old_dirfd);
  op.path = old_path;
  op.dirfd2 = new_dirfd;
  op.path2 = new_path;
  op.flags = flags;
  return StatusOp(op);
}
StatusOp Unlinkat(int dirfd, const char* path, int flags) {
  CFS_ASSERT(path != nullptr);
  IoOp op = MakeFdOp(OpCode::kUnlinkat, dirfd);
  op.path = path;
  op.flags = static_cast<std::uint32_t>(flags);
  return StatusOp(op);
}
StatusOp Linkat(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                int flags) {
  CFS_ASSERT(old_path != nullptr && new_path != nullptr);
  IoOp op = MakeFdOp(OpCode::kLinkat, old_dirfd);
  op.path = old_path;
  op.dirfd2 = new_dirfd;
  op.path2 = new_path;
  op.flags = static_cast<std::uint32_t>(flags);
  return StatusOp(op);
}
StatusOp Mkdirat(int dirfd, const char* path, mode_t mode) {
  CFS_ASSERT(path != nullptr);
  IoOp op = MakeFdOp(OpCode::kMkdirat, dirfd);
  op.path = path;
  op.mode = static_cast<std::uint32_t>(mode);
  return StatusOp(op);
}
FdOp Accept(int fd, sockaddr* addr, socklen_t* addr_len, int flags) {
  IoOp op = MakeFdOp(OpCode::kAccept, fd);
  op.buf = addr;
  op.addr_len = addr_len;
  op.flags = static_cast<std::uint32_t>(flags);
  return FdOp(op);
}
StatusOp Connect(int fd, const sockaddr* addr, socklen_t addr_len) {
  CFS_ASSERT(addr != nullptr);
  IoOp op = MakeFdOp(OpCode::kConnect, fd);
  op.buf = const_cast<sockaddr*>(addr);
  op.connect_addr_len = addr_len;
  return StatusOp(op);
}
SizeOp Recv(int fd, void* buf, std::size_t len, int flags) {
  IoOp op = MakeDataOp(OpCode::kRecv, fd, buf, len, 0);
  op.flags = static_cast<std::uint32_t>(flags);
  return SizeOp(op);
}
SizeOp Send(int fd, const void* buf, std::size_t len, int flags) {
  IoOp op = MakeDataOp(OpCode::kSend, fd, buf, len, 0);
  op.flags = static_cast<std::uint32_t>(flags);
  return SizeOp(op);
}
StatusOp Sleep(std::chrono::nanoseconds duration) {
  IoOp op;
  op.code = OpCode::kSleep;
  const std::int64_t ns = std::max<std::int64_t>(duration.count(), 0);
  op.timeout.tv_sec = ns / 1000000000;
  op.timeout.tv_nsec = ns % 1000000000;
  return StatusOp(op);
}

Task<Result<std::size_t>> ReadFull(int fd, void* buf, std::size_t len, std::uint64_t offset) {
  std::size_t done = 0;
  auto* bytes = static_cast<std::byte*>(buf);
  while (done < len) {
    const std::uint64_t at = offset == kCurrentPosition ? offset : offset + done;
    Result<std::size_t> n = co_await Read(fd, bytes + done, len - done, at);
    if (!n.ok()) co_return std::move(n).status();
    if (*n == 0) break;  // end of file
    done += *n;
  }
  co_return done;
}

Task<Status> WriteAll(int fd, const void* buf, std::size_t len, std::uint64_t offset) {
  std::size_t done = 0;
  const auto* bytes = static_cast<const std::byte*>(buf);
  while (done < len) {
    const std::uint64_t at = offset == kCurrentPosition ? offset : offset + done;
    Result<std::size_t> n = co_await Write(fd, bytes + done, len - done, at);
    if (!n.ok()) co_return std::move(n).status();
    if (*n == 0) co_return Status::IOError(PathOfFd(fd) + ": write made no progress");
    done += *n;
  }
  co_return Status::OK();
}

Task<Status> SendAll(int fd, const void* buf, std::size_t len) {
  std::size_t done = 0;
  const auto* bytes = static_cast<const std::byte*>(buf);
  while (done < len) {
    Result<std::size_t> n = co_await Send(fd, bytes + done, len - done);
    if (!n.ok()) co_return std::move(n).status();
    if (*n == 0) co_return Status::IOError(PathOfFd(fd) + ": send made no progress");
    done += *n;
  }
  co_return Status::OK();
}

std::int32_t ExecuteBlocking(IoOp* op) {
  // io_uring ignores the offset of a file that has no position (a pipe, a socket); so does
  // this: a positioned call failing with ESPIPE is retried as a plain one.
  const bool at_position = op->offset == kCurrentPosition;
  const auto offset = static_cast<off_t>(op->offset);
  const auto* iov = static_cast<const iovec*>(op->buf);
  const int iov_count = static_cast<int>(op->len);
  long rc = -1;
  switch (op->code) {
    case OpCode::kRead:
    case OpCode::kReadFixed:
      rc = at_position ? -1 : pread(op->fd, op->buf, op->len, offset);
      if (at_position || (rc < 0 && errno == ESPIPE)) rc = read(op->fd, op->buf, op->len);
      break;
    case OpCode::kWrite:
    case OpCode::kWriteFixed:
      rc = at_position ? -1 : pwrite(op->fd, op->buf, op->len, offset);
      if (at_position || (rc < 0 && errno == ESPIPE)) rc = write(op->fd, op->buf, op->len);
      break;
    case OpCode::kReadv:
      rc = at_position ? -1 : preadv(op->fd, iov, iov_count, offset);
      if (at_position || (rc < 0 && errno == ESPIPE)) rc = readv(op->fd, iov, iov_count);
      break;
    case OpCode::kWritev:
      rc = at_position ? -1 : pwritev(op->fd, iov, iov_count, offset);
      if (at_position || (rc < 0 && errno == ESPIPE)) rc = writev(op->fd, iov, iov_count);
      break;
    case OpCode::kFsync:
      rc = fsync(op->fd);
      break;
    case OpCode::kFdatasync:
      rc = fdatasync(op->fd);
      break;
    case OpCode::kOpenat:
      rc = openat(op->fd, op->path, static_cast<int>(op->flags), static_cast<mode_t>(op->mode));
      break;
    case OpCode::kClose:
      rc = close(op->fd);
      break;
    case OpCode::kStatx:
      rc = statx(op->fd, op->path, static_cast<int>(op->flags), op->mode,
                 static_cast<struct statx*>(op->buf));
      break;
    case OpCode::kFallocate:
      rc = fallocate(op->fd, static_cast<int>(op->mode), offset, static_cast<off_t>(op->len));
      break;
    case OpCode::kRenameat:
      rc = renameat2(op->fd, op->path, op->dirfd2, op->path2, op->flags);
      break;
    case OpCode::kUnlinkat:
      rc = unlinkat(op->fd, op->path, static_cast<int>(op->flags));
      break;
    case OpCode::kLinkat:
      rc = linkat(op->fd, op->path, op->dirfd2, op->path2, static_cast<int>(op->flags));
      break;
    case OpCode::kMkdirat:
      rc = mkdirat(op->fd, op->path, static_cast<mode_t>(op->mode));
      break;
    case OpCode::kAccept:
      rc = accept4(op->fd, static_cast<sockaddr*>(op->buf), op->addr_len,
                   static_cast<int>(op->flags));
      break;
    case OpCode::kConnect:
      rc = connect(op->fd, static_cast<const sockaddr*>(op->buf), op->connect_addr_len);
      break;
    case OpCode::kRecv:
      rc = recv(op->fd, op->buf, op->len, static_cast<int>(op->flags));
      break;
    case OpCode::kSend:
      rc = send(op->fd, op->buf, op->len, static_cast<int>(op->flags));
      break;
    case OpCode::kSleep:
      CFS_ASSERT(false);  // the pool's timer thread serves sleeps; no pool thread blocks on one
      break;
    case OpCode::kUringCmd:
      return -EOPNOTSUPP;  // a driver command exists only on a ring
  }
  if (rc < 0) return -errno;
  return static_cast<std::int32_t>(rc);
}

}  // namespace cascadefs::io
