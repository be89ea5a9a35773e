// fallback_test.cc: where the kernel refuses io_uring, Backend::kAuto falls back to the
// blocking thread pool with one log line, and Backend::kIoUring fails with a clear Status.
//
// Method: each case runs in a child process (a gtest death test) that first installs a seccomp
// filter making io_uring_setup(2) fail with EPERM (what a container's seccomp profile or
// kernel.io_uring_disabled=2 does), then creates a scheduler and does real I/O through it. The
// filter stays inside the child, so the rest of the suite keeps its io_uring.
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "engine/io/scheduler.h"

namespace cascadefs::io {
namespace {

// Makes io_uring_setup fail with EPERM in the calling process; everything else is allowed.
void RefuseIoUringSetup() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),  // another ABI: leave it alone
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    std::perror("seccomp");
    std::_Exit(3);
  }
}

Task<Result<std::string>> ReadFirstLine(const char* path) {
  Result<int> fd = co_await Openat(AT_FDCWD, path, O_RDONLY);
  if (!fd.ok()) co_return fd.status();
  char buf[256];
  Result<std::size_t> n = co_await Read(*fd, buf, sizeof(buf), 0);
  Status closed = co_await Close(*fd);
  if (!n.ok()) co_return n.status();
  if (!closed.ok()) co_return closed;
  co_return std::string(buf, *n);
}

// Runs in the death-test child: exits 0 when the fallback served real I/O.
void AutoFallsBackAndServesIo() {
  RefuseIoUringSetup();
  SchedulerOptions options;
  options.io_threads = 2;
  Result<std::unique_ptr<Scheduler>> scheduler = Scheduler::Create(options);
  if (!scheduler.ok()) {
    std::fprintf(stderr, "create: %s\n", scheduler.status().ToString().c_str());
    std::_Exit(4);
  }
  if ((*scheduler)->backend() != Backend::kThreadPool) std::_Exit(5);
  Result<std::string> line = (*scheduler)->BlockOn(ReadFirstLine("/proc/self/status"));
  if (!line.ok() || line->rfind("Name:", 0) != 0) std::_Exit(6);
  if (!(*scheduler)->Shutdown().ok()) std::_Exit(7);
  std::_Exit(0);
}

void ForcedIoUringFails() {
  RefuseIoUringSetup();
  SchedulerOptions options;
  options.backend = Backend::kIoUring;
  Result<std::unique_ptr<Scheduler>> scheduler = Scheduler::Create(options);
  if (scheduler.ok()) std::_Exit(4);
  std::fprintf(stderr, "%s\n", scheduler.status().ToString().c_str());
  std::_Exit(scheduler.status().errno_value() == EPERM ? 0 : 5);
}

TEST(FallbackDeathTest, AutoFallsBackToThreadPoolWithOneLogLine) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(AutoFallsBackAndServesIo(), testing::ExitedWithCode(0),
              "cascadefs: io_uring unavailable \\(io_uring_queue_init: Operation not "
              "permitted\\); serving I/O from a pool of 8 blocking threads instead");
}

TEST(FallbackDeathTest, ForcedIoUringReportsTheRefusal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(ForcedIoUringFails(), testing::ExitedWithCode(0),
              "io_uring backend: io_uring_queue_init: Operation not permitted");
}

}  // namespace
}  // namespace cascadefs::io
