// Smoke test while the suite is written.
#include "engine/io/scheduler.h"

#include <gtest/gtest.h>

namespace cascadefs::io {
namespace {

Task<int> Add(int a, int b) { co_return a + b; }

Task<Result<std::size_t>> ReadSomething() {
  int fd = *(co_await Openat(AT_FDCWD, "/etc/hostname", O_RDONLY));
  char buf[64];
  Result<std::size_t> n = co_await Read(fd, buf, sizeof(buf), 0);
  Status st = co_await Close(fd);
  (void)st;
  co_return n;
}

TEST(SchedulerSmoke, RunsTasks) {
  auto sched = Scheduler::Create({});
  ASSERT_TRUE(sched.ok()) << sched.status().ToString();
  EXPECT_EQ((*sched)->BlockOn(Add(2, 3)), 5);
  auto n = (*sched)->BlockOn(ReadSomething());
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_GT(*n, 0u);
}

}  // namespace
}  // namespace cascadefs::io
