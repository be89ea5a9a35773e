// ops_test.cc: the I/O awaitables of scheduler.h (Read, Write, ReadFixed, WriteFixed, Readv,
// Writev, Fsync, Fdatasync, Openat, Close, Statx, Fallocate, Renameat, Unlinkat, Accept,
// Connect, Recv, Send, Sleep) and the loops built on them (ReadFull, WriteAll, SendAll).
//
// Goal: each operation does what its system call does, on both backends, and each failure
// comes back as a Status with the right code, the errno (errno_value()), and a message naming
// the operation and the path it was applied to.
//
// Method: one fixture, parametrized over Backend::kIoUring and Backend::kThreadPool (as
// LevelDB's table_test.cc runs one harness over several implementations), so every case runs
// against both. Each case is a coroutine run with BlockOn on a scheduler with one IO thread,
// working in a fresh directory under /var/tmp (a disk file system, so O_DIRECT works; /tmp may
// be tmpfs). Results are checked against the plain system calls (pread, stat) made by the test
// thread. Errors are produced by real means, nothing is mocked: EBADF from a closed descriptor,
// ENOENT from missing paths, EISDIR from reading a directory, ECONNREFUSED from a closed port,
// EPIPE from a peer that closed, and EIO from reading /proc/self/mem at an unmapped address
// (the kernel's answer for an address with no mapping; checked on the build machine).
// Sockets are real TCP connections on 127.0.0.1 with an ephemeral port.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/io/scheduler.h"
#include "engine/result.h"
#include "engine/status.h"

namespace cascadefs::io {

// Failure messages show the backend by name. (scheduler_test.cc has the same definition:
// gtest's printer for Backend is one template instantiation for the whole binary.)
inline void PrintTo(Backend backend, std::ostream* os) { *os << BackendName(backend); }

namespace {

using testing::HasSubstr;

// Deterministic file contents: each byte depends on its offset, so a read from the wrong
// place or a torn transfer shows.
std::uint8_t PatternByte(std::uint64_t offset) {
  return static_cast<std::uint8_t>((offset * 131) ^ (offset >> 9));
}
std::vector<std::uint8_t> Pattern(std::uint64_t offset, std::size_t len) {
  std::vector<std::uint8_t> bytes(len);
  for (std::size_t i = 0; i < len; ++i) bytes[i] = PatternByte(offset + i);
  return bytes;
}

// A fresh directory under /var/tmp, removed with its contents at the end.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/var/tmp/cascadefs-ops-test-XXXXXX";
    CFS_ASSERT(mkdtemp(pattern) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Writes `bytes` to `path` with plain system calls (test setup, not the code under test).
void WriteFileDirectly(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  const int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  CFS_ASSERT(fd >= 0);
  CFS_ASSERT(pwrite(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
  close(fd);
}
std::vector<std::uint8_t> ReadFileDirectly(const std::string& path) {
  std::vector<std::uint8_t> bytes;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return bytes;
  struct stat st {};
  CFS_ASSERT(fstat(fd, &st) == 0);
  bytes.resize(static_cast<std::size_t>(st.st_size));
  CFS_ASSERT(pread(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
  close(fd);
  return bytes;
}
bool Exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}
// A descriptor number that is certainly not open right now.
int ClosedFd() {
  const int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  CFS_ASSERT(fd >= 0);
  close(fd);
  CFS_ASSERT(fcntl(fd, F_GETFD) == -1);
  return fd;
}

// A TCP socket listening on 127.0.0.1 at an ephemeral port.
struct Listener {
  int fd = -1;
  sockaddr_in addr{};
  Listener() {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CFS_ASSERT(fd >= 0);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    CFS_ASSERT(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    CFS_ASSERT(listen(fd, 16) == 0);
    socklen_t len = sizeof(addr);
    CFS_ASSERT(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  }
  ~Listener() { close(fd); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
};

std::string BackendParamName(const testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kIoUring ? "IoUring" : "ThreadPool";
}

class OpsTest : public testing::TestWithParam<Backend> {
 protected:
  static constexpr std::uint32_t kFixedBufferCount = 4;
  static constexpr std::uint32_t kFixedBufferBytes = 64 * 1024;

  void SetUp() override {
    SchedulerOptions options;
    options.io_threads = 1;
    options.backend = GetParam();
    options.fixed_buffer_count = kFixedBufferCount;
    options.fixed_buffer_size_bytes = kFixedBufferBytes;
    options.log = [](std::string_view line) {
      ADD_FAILURE() << "unexpected scheduler log line: " << line;
    };
    Result<std::unique_ptr<Scheduler>> scheduler = Scheduler::Create(options);
    ASSERT_TRUE(scheduler.ok()) << scheduler.status().ToString();
    scheduler_ = std::move(scheduler).value();
    ASSERT_EQ(scheduler_->backend(), GetParam());
  }
  void TearDown() override {
    if (scheduler_ != nullptr) {
      Status status = scheduler_->Shutdown();
      EXPECT_TRUE(status.ok()) << status.ToString();
    }
  }

  template <typename T>
  T Run(Task<T> task) {
    return scheduler_->BlockOn(std::move(task));
  }

  TempDir dir_;
  std::unique_ptr<Scheduler> scheduler_;
};

INSTANTIATE_TEST_SUITE_P(Backends, OpsTest,
                         testing::Values(Backend::kIoUring, Backend::kThreadPool),
                         BackendParamName);

// ---- Files: data -------------------------------------------------------------------------

Task<Status> WriteThenRead(std::string path) {
  Result<int> fd = co_await Openat(AT_FDCWD, path.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0600);
  if (!fd.ok()) co_return fd.status();
  const std::vector<std::uint8_t> data = Pattern(1000, 3000);
  Result<std::size_t> written = co_await Write(*fd, data.data(), data.size(), 1000);
  if (!written.ok()) co_return written.status();
  EXPECT_EQ(*written, data.size());
  std::vector<std::uint8_t> back(3000);
  Result<std::size_t> read = co_await Read(*fd, back.data(), back.size(), 1000);
  if (!read.ok()) co_return read.status();
  EXPECT_EQ(*read, back.size());
  EXPECT_EQ(back, data);
  co_return co_await Close(*fd);
}

TEST_P(OpsTest, WriteThenReadAtAnOffset) {
  const std::string path = dir_.File("data");
  Status status = Run(WriteThenRead(path));
  ASSERT_TRUE(status.ok()) << status.ToString();
  // The file has a hole of 1000 zero bytes, then the data.
  std::vector<std::uint8_t> expected(1000, 0);
  const std::vector<std::uint8_t> data = Pattern(1000, 3000);
  expected.insert(expected.end(), data.begin(), data.end());
  EXPECT_EQ(ReadFileDirectly(path), expected);
}

struct ShortReads {
  Result<std::size_t> read_past_end = Status::IOError("not run");
  Result<std::size_t> read_at_end = Status::IOError("not run");
  Result<std::size_t> read_beyond_end = Status::IOError("not run");
  Result<std::size_t> full_past_end = Status::IOError("not run");
  Result<std::size_t> full_inside = Status::IOError("not run");
  std::vector<std::uint8_t> head;
};

Task<ShortReads> ReadAroundTheEnd(std::string path) {
  ShortReads out;
  Result<int> fd = co_await Openat(AT_FDCWD, path.c_str(), O_RDONLY);
  EXPECT_TRUE(fd.ok()) << fd.status().ToString();
  if (!fd.ok()) co_return out;
  std::vector<std::uint8_t> buf(4096);
  out.read_past_end = co_await Read(*fd, buf.data(), buf.size(), 0);
  out.head.assign(buf.begin(), buf.begin() + 100);
  out.read_at_end = co_await Read(*fd, buf.data(), buf.size(), 100);
  out.read_beyond_end = co_await Read(*fd, buf.data(), buf.size(), 1 << 20);
  out.full_past_end = co_await ReadFull(*fd, buf.data(), buf.size(), 40);
  out.full_inside = co_await ReadFull(*fd, buf.data(), 50, 10);
  EXPECT_TRUE((co_await Close(*fd)).ok());
  co_return out;
}

TEST_P(OpsTest, ShortReadAtEndOfFile) {
  const std::string path = dir_.File("short");
  WriteFileDirectly(path, Pattern(0, 100));
  ShortReads reads = Run(ReadAroundTheEnd(path));
  ASSERT_TRUE(reads.read_past_end.ok()) << reads.read_past_end.status().ToString();
  EXPECT_EQ(*reads.read_past_end, 100u);  // fewer bytes than asked: the end of the file
  EXPECT_EQ(reads.head, Pattern(0, 100));
  ASSERT_TRUE(reads.read_at_end.ok());
  EXPECT_EQ(*reads.read_at_end, 0u);
  ASSERT_TRUE(reads.read_beyond_end.ok());
  EXPECT_EQ(*reads.read_beyond_end, 0u);
  ASSERT_TRUE(reads.full_past_end.ok());
  EXPECT_EQ(*reads.full_past_end, 60u);  // ReadFull: the count up to the end of the file
  ASSERT_TRUE(reads.full_inside.ok());
  EXPECT_EQ(*reads.full_inside, 50u);
}

// 8 MiB in one WriteAll and one ReadFull.
Task<Status> LargeTransfer(std::string path, std::vector<std::uint8_t>* back) {
  const std::vector<std::uint8_t> data = Pattern(0, 8 << 20);
  Result<int> fd = co_await Openat(AT_FDCWD, path.c_str(), O_CREAT | O_RDWR | O_TRUNC);
  if (!fd.ok()) co_return fd.status();
  CFS_CO_RETURN_IF_ERROR(co_await WriteAll(*fd, data.data(), data.size(), 0));
  back->resize(data.size());
  Result<std::size_t> n = co_await ReadFull(*fd, back->data(), back->size(), 0);
  if (!n.ok()) co_return n.status();
  EXPECT_EQ(*n, data.size());
  co_return co_await Close(*fd);
}

TEST_P(OpsTest, WriteAllAndReadFullOfEightMebibytes) {
  const std::string path = dir_.File("large");
  std::vector<std::uint8_t> back;
  Status status = Run(LargeTransfer(path, &back));
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(back == Pattern(0, 8 << 20));
  EXPECT_TRUE(ReadFileDirectly(path) == Pattern(0, 8 << 20));
}

Task<Status> VectoredRoundTrip(std::string path) {
  Result<int> fd = co_await Openat(AT_FDCWD, path.c_str(), O_CREAT | O_RDWR | O_TRUNC);
  if (!fd.ok()) co_return fd.status();
  std::vector<std::uint8_t> a = Pattern(512, 100), b = Pattern(612, 1), c = Pattern(613, 4000);
  const iovec out[3] = {{a.data(), a.size()}, {b.data(), b.size()}, {c.data(), c.size()}};
  Result<std::size_t> written = co_await Writev(*fd, out, 3, 512);
  if (!written.ok()) co_return written.status();
  EXPECT_EQ(*written, 4101u);
  // Read back with different piece sizes.
  std::vector<std::uint8_t> x(2000), y(2101);
  const iovec in[2] = {{x.data(), x.size()}, {y.data(), y.size()}};
  Result<std::size_t> read = co_await Readv(*fd, in, 2, 512);
  if (!read.ok()) co_return read.status();
  EXPECT_EQ(*read, 4101u);
  x.insert(x.end(), y.begin(), y.end());
  EXPECT_EQ(x, Pattern(512, 4101));
  co_return co_await Close(*fd);
}

TEST_P(OpsTest, WritevAndReadv) {
  Status status = Run(VectoredRoundTrip(dir_.File("vectored")));
  ASSERT_TRUE(status.ok()) << status.ToString();
  std::vector<std::uint8_t> expected(512, 0);
  const std::vector<std::uint8_t> data = Pattern(512, 4101);
  expected.insert(expected.end(), data.begin(), data.end());
  EXPECT_EQ(ReadFileDirectly(dir_.File("vectored")), expected);
}

struct FixedResult {
  Status status;
  std::uint32_t acquired_count = 0;
  bool distinct_and_aligned = true;
  std::vector<std::uint8_t> back;
};

// Writes through one registered buffer and reads back through another; also takes every
// buffer to see the pool run dry, and gives them all back.
Task<FixedResult> FixedRoundTrip(std::string path, std::uint32_t buffer_bytes) {
  FixedResult out;
  std::vector<FixedBuffer> all;
  while (std::optional<FixedBuffer> buf = AcquireFixedBuffer()) {
    if (reinterpret_cast<std::uintptr_t>(buf->data) % 4096 != 0) out.distinct_and_aligned = false;
    if (buf->size_bytes != buffer_bytes) out.distinct_and_aligned = false;
    if (buf->thread_index != CurrentThreadIndex()) out.distinct_and_aligned = false;
    for (const FixedBuffer& other : all) {
      if (other.index == buf->index || other.data == buf->data) out.distinct_and_aligned = false;
    }
    all.push_back(*buf);
  }
  out.acquired_count = static_cast<std::uint32_t>(all.size());
  for (const FixedBuffer& buf : all) ReleaseFixedBuffer(buf);
  if (all.size() < 2) {
    out.status = Status::IOError("fewer than two fixed buffers");
    co_return out;
  }

  std::optional<FixedBuffer> src = AcquireFixedBuffer();
  std::optional<FixedBuffer> dst = AcquireFixedBuffer();
  Result<int> fd = co_await Openat(AT_FDCWD, path.c_str(), O_CREAT | O_RDWR | O_TRUNC);
  if (!fd.ok()) {
    out.status = fd.status();
    co_return out;
  }
  const std::vector<std::uint8_t> data = Pattern(4096, buffer_bytes);
  std::memcpy(src->data, data.data(), data.size());
  std::memset(dst->data, 0, dst->size_bytes);
  Result<std::size_t> written = co_await WriteFixed(*fd, *src, buffer_bytes, 4096);
  Result<std::size_t> read = co_await ReadFixed(*fd, *dst, buffer_bytes, 4096);
  if (!written.ok()) out.status = written.status();
  if (!read.ok()) out.status = read.status();
  if (out.status.ok()) {
    EXPECT_EQ(*written, buffer_bytes);
    EXPECT_EQ(*read, buffer_bytes);
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(dst->data);
    out.back.assign(bytes, bytes + *read);
  }
  ReleaseFixedBuffer(*src);
  ReleaseFixedBuffer(*dst);
  EXPECT_TRUE((co_await Close(*fd)).ok());
  co_return out;
}

TEST_P(OpsTest, WriteFixedAndReadFixed) {
  FixedResult result = Run(FixedRoundTrip(dir_.File("fixed"), kFixedBufferBytes));
  ASSERT_TRUE(result.status.ok()) << result.status.ToString();
  EXPECT_EQ(result.acquired_count, kFixedBufferCount);
  EXPECT_TRUE(result.distinct_and_aligned);
  EXPECT_TRUE(result.back == Pattern(4096, kFixedBufferBytes));
  std::vector<std::uint8_t> expected(4096, 0);
  const std::vector<std::uint8_t> data = Pattern(4096, kFixedBufferBytes);
  expected.insert(expected.end(), data.begin(), data.end());
  EXPECT_TRUE(ReadFileDirectly(dir_.File("fixed")) == expected);
}

// Fsync and Fdatasync succeed on a file with unsynced data; on a closed descriptor they fail
// with EBADF and name their operation.
Task<std::vector<Status>> Syncs(std::string path, int closed_fd) {
  std::vector<Status> out;
  Result<int> fd = co_await Openat(AT_FDCWD, path.c_str(), O_CREAT | O_RDWR | O_TRUNC);
  if (!fd.ok()) co_return std::vector<Status>{fd.status()};
  const std::vector<std::uint8_t> data = Pattern(0, 10000);
  out.push_back(co_await WriteAll(*fd, data.data(), data.size(), 0));
  out.push_back(co_await Fsync(*fd));
  out.push_back(co_await WriteAll(*fd, data.data(), data.size(), 10000));
  out.push_back(co_await Fdatasync(*fd));
  out.push_back(co_await Close(*fd));
  out.push_back(co_await Fsync(closed_fd));
  out.push_back(co_await Fdatasync(closed_fd));
  co_return out;
}

TEST_P(OpsTest, FsyncAndFdatasync) {
  std::vector<Status> statuses = Run(Syncs(dir_.File("synced"), ClosedFd()));
  ASSERT_EQ(statuses.size(), 7u) << statuses[0].ToString();
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(statuses[i].ok()) << i << ": " << statuses[i].ToString();
  EXPECT_EQ(statuses[5].errno_value(), EBADF);
  EXPECT_TRUE(statuses[5].IsIOError());
  EXPECT_THAT(std::string(statuses[5].message()), HasSubstr(": fsync: "));
  EXPECT_EQ(statuses[6].errno_value(), EBADF);
  EXPECT_THAT(std::string(statuses[6].message()), HasSubstr(": fdatasync: "));
  EXPECT_EQ(ReadFileDirectly(dir_.File("synced")).size(), 20000u);
}

// ---- Files: O_DIRECT ------------------------------------------------------------------------

struct DirectResult {
  Status status;
  bool unsupported = false;  // the file system refused O_DIRECT (EINVAL at open)
  std::vector<std::uint8_t> back;
};

Task<DirectResult> DirectRoundTrip(std::string path) {
  DirectResult out;
  constexpr std::size_t kBytes = 3 * 4096;
  Result<int> fd = co_await Openat(AT_FDCWD, path.c_str(), O_CREAT | O_RDWR | O_DIRECT);
  if (!fd.ok()) {
    out.unsupported = fd.status().errno_value() == EINVAL;
    out.status = fd.status();
    co_return out;
  }
  auto* raw = static_cast<std::uint8_t*>(std::aligned_alloc(4096, kBytes));
  std::unique_ptr<std::uint8_t, decltype(&std::free)> buf(raw, &std::free);
  const std::vector<std::uint8_t> data = Pattern(8192, kBytes);
  std::memcpy(buf.get(), data.data(), kBytes);
  out.status = co_await WriteAll(*fd, buf.get(), kBytes, 8192);
  if (out.status.ok()) {
    std::memset(buf.get(), 0, kBytes);
    Result<std::size_t> n = co_await ReadFull(*fd, buf.get(), kBytes, 8192);
    if (n.ok()) {
      out.back.assign(buf.get(), buf.get() + *n);
    } else {
      out.status = n.status();
    }
  }
  // An unaligned buffer is refused by the kernel (EINVAL) under O_DIRECT.
  if (out.status.ok()) {
    Result<std::size_t> unaligned = co_await Read(*fd, buf.get() + 1, 4096, 8192);
    EXPECT_FALSE(unaligned.ok());
    EXPECT_EQ(unaligned.status().errno_value(), EINVAL);
  }
  EXPECT_TRUE((co_await Close(*fd)).ok());
  co_return out;
}

TEST_P(OpsTest, OpenatWithODirectAndAnAlignedBuffer) {
  const std::string path = dir_.File("direct");
  DirectResult result = Run(DirectRoundTrip(path));
  // The test directory is under /var/tmp, which is on disk (not tmpfs) on our machines. A
  // filesystem there without O_DIRECT is a broken test environment: fail and say so, never
  // skip silently.
  ASSERT_FALSE(result.unsupported)
      << dir_.path() << " does not support O_DIRECT (put /var/tmp on a disk filesystem): "
      << result.status.ToString();
  ASSERT_TRUE(result.status.ok()) << result.status.ToString();
  EXPECT_TRUE(result.back == Pattern(8192, 3 * 4096));
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(fcntl(fd, F_GETFL) & O_DIRECT, 0);  // a plain open: the flag was per descriptor
  close(fd);
}

// ---- Files: metadata ----------------------------------------------------------------------

Task<Status> OpenatRelativeToADirectory(std::string dir, int* flags_out) {
  Result<int> dirfd = co_await Openat(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (!dirfd.ok()) co_return dirfd.status();
  Result<int> fd = co_await Openat(*dirfd, "relative", O_CREAT | O_WRONLY | O_EXCL, 0640);
  if (!fd.ok()) co_return fd.status();
  *flags_out = fcntl(*fd, F_GETFD);
  CFS_CO_RETURN_IF_ERROR(co_await Close(*fd));
  co_return co_await Close(*dirfd);
}

TEST_P(OpsTest, OpenatRelativeToADirectoryFd) {
  const mode_t umask_bits = umask(0);
  umask(umask_bits);
  int fd_flags = 0;
  Status status = Run(OpenatRelativeToADirectory(dir_.path(), &fd_flags));
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_NE(fd_flags & FD_CLOEXEC, 0);  // Openat always adds O_CLOEXEC
  struct stat st {};
  ASSERT_EQ(stat(dir_.File("relative").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u & ~umask_bits);
}

Task<Status> StatxOf(std::string path, struct statx* out) {
  co_return co_await Statx(AT_FDCWD, path.c_str(), 0, STATX_BASIC_STATS, out);
}

TEST_P(OpsTest, StatxReportsSizeAndMode) {
  const std::string path = dir_.File("stat");
  WriteFileDirectly(path, Pattern(0, 12345));
  ASSERT_EQ(chmod(path.c_str(), 0604), 0);
  struct statx stx {};
  Status status = Run(StatxOf(path, &stx));
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(stx.stx_size, 12345u);
  EXPECT_TRUE(S_ISREG(stx.stx_mode));
  EXPECT_EQ(stx.stx_mode & 0777, 0604);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(stx.stx_ino, st.st_ino);
}

Task<Status> FallocateThenStat(std::string path, struct statx* out) {
  Result<int> fd = co_await Openat(AT_FDCWD, path.c_str(), O_CREAT | O_RDWR | O_TRUNC);
  if (!fd.ok()) co_return fd.status();
  CFS_CO_RETURN_IF_ERROR(co_await Fallocate(*fd, 0, 0, 1 << 20));
  // KEEP_SIZE reserves blocks past the end without changing the size.
  CFS_CO_RETURN_IF_ERROR(co_await Fallocate(*fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20));
  CFS_CO_RETURN_IF_ERROR(co_await Statx(*fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, out));
  co_return co_await Close(*fd);
}

TEST_P(OpsTest, FallocateExtendsTheFile) {
  struct statx stx {};
  Status status = Run(FallocateThenStat(dir_.File("falloc"), &stx));
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(stx.stx_size, 1u << 20);
  EXPECT_GE(stx.stx_blocks * 512, 2u << 20);  // both ranges are allocated
  EXPECT_EQ(ReadFileDirectly(dir_.File("falloc")), std::vector<std::uint8_t>(1 << 20, 0));
}

Task<Status> RenameThenUnlink(std::string dir) {
  const std::string a = dir + "/a", b = dir + "/b", sub = dir + "/sub";
  CFS_CO_RETURN_IF_ERROR(co_await Renameat(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str()));
  EXPECT_FALSE(Exists(a));
  EXPECT_TRUE(Exists(b));
  // RENAME_NOREPLACE refuses to overwrite: EEXIST.
  WriteFileDirectly(a, Pattern(0, 1));
  Status no_replace = co_await Renameat(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_NOREPLACE);
  EXPECT_EQ(no_replace.errno_value(), EEXIST) << no_replace.ToString();
  CFS_CO_RETURN_IF_ERROR(co_await Unlinkat(AT_FDCWD, a.c_str()));
  CFS_CO_RETURN_IF_ERROR(co_await Unlinkat(AT_FDCWD, b.c_str()));
  EXPECT_EQ(mkdir(sub.c_str(), 0700), 0);
  CFS_CO_RETURN_IF_ERROR(co_await Unlinkat(AT_FDCWD, sub.c_str(), AT_REMOVEDIR));
  co_return Status::OK();
}

TEST_P(OpsTest, RenameatAndUnlinkat) {
  WriteFileDirectly(dir_.File("a"), Pattern(0, 77));
  Status status = Run(RenameThenUnlink(dir_.path()));
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_FALSE(Exists(dir_.File("a")));
  EXPECT_FALSE(Exists(dir_.File("b")));
  EXPECT_FALSE(Exists(dir_.File("sub")));
}

// ---- Pipes -----------------------------------------------------------------------------------

// A pipe has no file position. Read(fd, buf, len, 0) is how the examples in the design (and
// the brief of this suite) read a pipe; both backends must accept it.
Task<Result<std::size_t>> ReadPipe(int fd, std::uint64_t offset, std::vector<std::uint8_t>* out) {
  out->resize(64);
  Result<std::size_t> n = co_await Read(fd, out->data(), out->size(), offset);
  if (n.ok()) out->resize(*n);
  co_return n;
}

TEST_P(OpsTest, ReadFromAPipeWithOffsetZero) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  ASSERT_EQ(write(fds[1], "pipe data", 9), 9);
  std::vector<std::uint8_t> got;
  Result<std::size_t> n = Run(ReadPipe(fds[0], 0, &got));
  close(fds[0]);
  close(fds[1]);
  ASSERT_TRUE(n.ok()) << n.status().ToString()
                      << " (the thread-pool backend runs pread(2), which a pipe refuses with "
                         "ESPIPE; io_uring ignores the offset of a stream)";
  EXPECT_EQ(std::string(got.begin(), got.end()), "pipe data");
}

// With the documented "current position" offset (kCurrentPosition), a pipe read works on both.
TEST_P(OpsTest, ReadFromAPipeAtTheCurrentPosition) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  ASSERT_EQ(write(fds[1], "pipe data", 9), 9);
  std::vector<std::uint8_t> got;
  Result<std::size_t> n = Run(ReadPipe(fds[0], kCurrentPosition, &got));
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(got.begin(), got.end()), "pipe data");
  // The writer closes: the next read returns 0 bytes.
  close(fds[1]);
  n = Run(ReadPipe(fds[0], kCurrentPosition, &got));
  close(fds[0]);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 0u);
}

// ReadFull on a pipe fed in small pieces by another thread: the short reads are continued
// until the whole length arrived.
TEST_P(OpsTest, ReadFullFromAPipeContinuesShortReads) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  const std::vector<std::uint8_t> data = Pattern(0, 10000);
  std::thread writer([&] {
    for (std::size_t done = 0; done < data.size(); done += 100) {
      CFS_ASSERT(write(fds[1], data.data() + done, 100) == 100);
      std::this_thread::yield();
    }
  });
  std::vector<std::uint8_t> got(data.size());
  Result<std::size_t> n = Run(ReadFull(fds[0], got.data(), got.size(), 0));
  if (!n.ok()) {
    // Drain so the writer can finish, then fail.
    std::vector<std::uint8_t> sink(data.size());
    std::size_t drained = 0;
    while (drained < data.size()) {
      const ssize_t r = read(fds[0], sink.data(), sink.size());
      if (r <= 0) break;
      drained += static_cast<std::size_t>(r);
    }
  }
  writer.join();
  close(fds[0]);
  close(fds[1]);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, data.size());
  EXPECT_EQ(got, data);
}

// ---- Sockets ------------------------------------------------------------------------------

struct TcpResult {
  Status server_status;
  Status client_status;
  std::vector<std::uint8_t> received;
  bool peer_closed = false;  // the server's last Recv returned 0
  bool accepted_from_loopback = false;
};

Task<Status> Serve(int listen_fd, TcpResult* out) {
  sockaddr_in peer{};
  socklen_t peer_len = sizeof(peer);
  Result<int> conn = co_await Accept(listen_fd, reinterpret_cast<sockaddr*>(&peer), &peer_len);
  if (!conn.ok()) co_return conn.status();
  out->accepted_from_loopback = peer_len == sizeof(peer) && peer.sin_family == AF_INET &&
                                peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK);
  std::vector<std::uint8_t> buf(64 * 1024);
  for (;;) {
    Result<std::size_t> n = co_await Recv(*conn, buf.data(), buf.size());
    if (!n.ok()) co_return n.status();
    if (*n == 0) {
      out->peer_closed = true;
      break;
    }
    out->received.insert(out->received.end(), buf.begin(), buf.begin() + *n);
  }
  co_return co_await Close(*conn);
}

Task<Status> ConnectAndSend(sockaddr_in addr, std::size_t bytes) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) co_return Status::FromErrno(errno, "socket");
  Status connected = co_await Connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  if (!connected.ok()) {
    close(fd);
    co_return connected;
  }
  const std::vector<std::uint8_t> data = Pattern(0, bytes);
  // One plain Send of a small piece, then SendAll of the rest.
  Result<std::size_t> first = co_await Send(fd, data.data(), 10);
  if (!first.ok()) {
    close(fd);
    co_return first.status();
  }
  Status rest = co_await SendAll(fd, data.data() + *first, data.size() - *first);
  Status closed = co_await Close(fd);
  co_return rest.ok() ? std::move(closed) : std::move(rest);
}

Task<void> TcpExchange(int listen_fd, sockaddr_in addr, std::size_t bytes, TcpResult* out) {
  std::vector<Task<Status>> sides;
  sides.push_back(Serve(listen_fd, out));
  sides.push_back(ConnectAndSend(addr, bytes));
  std::vector<Status> statuses = co_await WhenAll(std::move(sides));
  out->server_status = std::move(statuses[0]);
  out->client_status = std::move(statuses[1]);
}

TEST_P(OpsTest, AcceptConnectSendRecvOverTcp) {
  Listener listener;
  constexpr std::size_t kBytes = 4 << 20;  // far more than a socket buffer: Send goes short
  TcpResult result;
  scheduler_->BlockOn(TcpExchange(listener.fd, listener.addr, kBytes, &result));
  ASSERT_TRUE(result.server_status.ok()) << result.server_status.ToString();
  ASSERT_TRUE(result.client_status.ok()) << result.client_status.ToString();
  EXPECT_TRUE(result.accepted_from_loopback);
  EXPECT_TRUE(result.peer_closed);
  EXPECT_TRUE(result.received == Pattern(0, kBytes));
}

Task<Status> ConnectTo(sockaddr_in addr) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) co_return Status::FromErrno(errno, "socket");
  Status status = co_await Connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  close(fd);
  co_return status;
}

TEST_P(OpsTest, ConnectToAClosedPortIsRefused) {
  sockaddr_in addr{};
  {
    Listener listener;  // take an ephemeral port, then close it
    addr = listener.addr;
  }
  Status status = Run(ConnectTo(addr));
  EXPECT_EQ(status.errno_value(), ECONNREFUSED) << status.ToString();
  EXPECT_TRUE(status.IsIOError());
  EXPECT_THAT(std::string(status.message()), HasSubstr("connect"));
}

Task<Status> SendAllTo(int fd, std::size_t bytes) {
  const std::vector<std::uint8_t> data(bytes, 0x5a);
  co_return co_await SendAll(fd, data.data(), data.size());
}

// SendAll to a peer that closed its end fails with EPIPE (and no SIGPIPE kills the process:
// Send passes MSG_NOSIGNAL).
TEST_P(OpsTest, SendAllToAClosedPeerFailsWithEpipe) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  close(fds[1]);
  Status status = Run(SendAllTo(fds[0], 1000));
  close(fds[0]);
  EXPECT_EQ(status.errno_value(), EPIPE) << status.ToString();
  EXPECT_TRUE(status.IsIOError());
  EXPECT_THAT(std::string(status.message()), HasSubstr("send"));
}

// ---- Sleep ----------------------------------------------------------------------------------

Task<std::vector<Status>> Sleeps() {
  std::vector<Status> out;
  out.push_back(co_await Sleep(std::chrono::milliseconds(20)));
  out.push_back(co_await Sleep(std::chrono::nanoseconds(0)));
  out.push_back(co_await Sleep(std::chrono::nanoseconds(-5)));  // treated as zero
  out.push_back(co_await Sleep(std::chrono::microseconds(1500)));
  co_return out;
}

TEST_P(OpsTest, SleepSuspendsForAtLeastItsDuration) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<Status> statuses = Run(Sleeps());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(statuses.size(), 4u);
  for (const Status& status : statuses) EXPECT_TRUE(status.ok()) << status.ToString();
  // A lower bound only: a timer never fires early; no upper bound on a shared machine.
  EXPECT_GE(elapsed, std::chrono::microseconds(21500));
}

// ---- Errors -----------------------------------------------------------------------------------

Task<Result<std::size_t>> ReadOne(int fd, std::uint64_t offset) {
  char buf[16];
  co_return co_await Read(fd, buf, sizeof(buf), offset);
}

// IORING_OP_URING_CMD reaches the driver behind the descriptor; a regular file has none.
// The thread pool has no rings at all. Both say EOPNOTSUPP, naming the operation.
Task<Result<std::size_t>> CommandTo(int fd, std::size_t command_len) {
  const std::uint8_t command[kUringCommandBytesMax] = {1, 2, 3};
  char byte = 0;
  const iovec iov = {&byte, 1};
  co_return co_await UringCommand(fd, 1, command, command_len, &iov, 1);
}

TEST_P(OpsTest, UringCommandToAFileWithoutADriverIsNotSupported) {
  const int fd = open(dir_.File("plain").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  Result<std::size_t> n = Run(CommandTo(fd, 16));
  close(fd);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().errno_value(), EOPNOTSUPP);
  EXPECT_NE(n.status().message().find("io_uring command"), std::string::npos)
      << n.status().ToString();
}

// 128-byte SQEs (SchedulerOptions::big_sqes) carry the long commands and change nothing for
// the other operations.
TEST(OpsBigSqeTest, LongCommandsAndOrdinaryIoOnRingsOf128ByteSqes) {
  SchedulerOptions options;
  options.backend = Backend::kIoUring;
  options.io_threads = 1;
  options.big_sqes = true;
  Result<std::unique_ptr<Scheduler>> scheduler = Scheduler::Create(options);
  ASSERT_TRUE(scheduler.ok()) << scheduler.status().ToString();
  TempDir dir;
  const std::string path = dir.File("data");
  EXPECT_TRUE((*scheduler)->BlockOn(WriteThenRead(path)).ok());
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  Result<std::size_t> n = (*scheduler)->BlockOn(CommandTo(fd, kUringCommandBytesMax));
  close(fd);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().errno_value(), EOPNOTSUPP);
  EXPECT_TRUE((*scheduler)->Shutdown().ok());
}

TEST_P(OpsTest, ReadOfAClosedFdIsEbadfNamingTheOp) {
  const int fd = ClosedFd();
  Result<std::size_t> n = Run(ReadOne(fd, 4096));
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().errno_value(), EBADF);
  EXPECT_TRUE(n.status().IsIOError());
  EXPECT_EQ(n.status().message(),
            "fd " + std::to_string(fd) + ": read at offset 4096: Bad file descriptor");
}

Task<std::vector<Status>> WritesToAReadOnlyFile(std::string path) {
  std::vector<Status> out;
  Result<int> fd = co_await Openat(AT_FDCWD, path.c_str(), O_RDONLY);
  if (!fd.ok()) co_return std::vector<Status>{fd.status()};
  const char data[4] = {1, 2, 3, 4};
  Result<std::size_t> n = co_await Write(*fd, data, sizeof(data), 0);
  out.push_back(n.ok() ? Status::OK() : n.status());
  out.push_back(co_await WriteAll(*fd, data, sizeof(data), 8));
  const iovec iov = {const_cast<char*>(data), sizeof(data)};
  Result<std::size_t> v = co_await Writev(*fd, &iov, 1, 16);
  out.push_back(v.ok() ? Status::OK() : v.status());
  out.push_back(co_await Close(*fd));
  co_return out;
}

TEST_P(OpsTest, WritesToAReadOnlyDescriptorNameThePathAndOffset) {
  const std::string path = dir_.File("read-only");
  WriteFileDirectly(path, Pattern(0, 10));
  std::vector<Status> statuses = Run(WritesToAReadOnlyFile(path));
  ASSERT_EQ(statuses.size(), 4u) << statuses[0].ToString();
  EXPECT_EQ(statuses[0].errno_value(), EBADF);
  EXPECT_EQ(statuses[0].message(), path + ": write at offset 0: Bad file descriptor");
  EXPECT_EQ(statuses[1].errno_value(), EBADF);  // WriteAll passes the Write's Status up
  EXPECT_EQ(statuses[1].message(), path + ": write at offset 8: Bad file descriptor");
  EXPECT_EQ(statuses[2].errno_value(), EBADF);
  EXPECT_EQ(statuses[2].message(), path + ": writev at offset 16: Bad file descriptor");
  EXPECT_TRUE(statuses[3].ok());
}

Task<Status> CloseTwice(std::string path) {
  Result<int> fd = co_await Openat(AT_FDCWD, path.c_str(), O_CREAT | O_RDWR);
  if (!fd.ok()) co_return fd.status();
  CFS_CO_RETURN_IF_ERROR(co_await Close(*fd));
  co_return co_await Close(*fd);
}

TEST_P(OpsTest, CloseOfAClosedFdIsEbadf) {
  Status status = Run(CloseTwice(dir_.File("twice")));
  EXPECT_EQ(status.errno_value(), EBADF) << status.ToString();
  EXPECT_THAT(std::string(status.message()), HasSubstr(": close: Bad file descriptor"));
}

Task<Result<int>> OpenPath(std::string path, int flags) {
  co_return co_await Openat(AT_FDCWD, path.c_str(), flags);
}

TEST_P(OpsTest, OpenatOfAMissingPathIsNotFoundNamingThePath) {
  const std::string path = dir_.File("missing/file");
  Result<int> fd = Run(OpenPath(path, O_RDONLY));
  ASSERT_FALSE(fd.ok());
  EXPECT_TRUE(fd.status().IsNotFound());
  EXPECT_EQ(fd.status().errno_value(), ENOENT);
  EXPECT_EQ(fd.status().message(), path + ": open: No such file or directory");
}

TEST_P(OpsTest, OpenatWithOExclOfAnExistingFileIsEexist) {
  const std::string path = dir_.File("exists");
  WriteFileDirectly(path, Pattern(0, 1));
  Result<int> fd = Run(OpenPath(path, O_CREAT | O_EXCL | O_WRONLY));
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().errno_value(), EEXIST);
  EXPECT_TRUE(fd.status().IsIOError());
  EXPECT_THAT(std::string(fd.status().message()), HasSubstr(path + ": open: "));
}

Task<std::vector<Status>> MetadataOfMissingPaths(std::string dir) {
  std::vector<Status> out;
  const std::string missing = dir + "/missing", other = dir + "/other";
  out.push_back(co_await Unlinkat(AT_FDCWD, missing.c_str()));
  struct statx stx {};
  out.push_back(co_await Statx(AT_FDCWD, missing.c_str(), 0, STATX_BASIC_STATS, &stx));
  out.push_back(co_await Renameat(AT_FDCWD, missing.c_str(), AT_FDCWD, other.c_str()));
  co_return out;
}

TEST_P(OpsTest, MetadataOpsOnAMissingPathAreNotFoundNamingThePath) {
  std::vector<Status> statuses = Run(MetadataOfMissingPaths(dir_.path()));
  ASSERT_EQ(statuses.size(), 3u);
  const std::string missing = dir_.File("missing");
  for (const Status& status : statuses) {
    EXPECT_TRUE(status.IsNotFound()) << status.ToString();
    EXPECT_EQ(status.errno_value(), ENOENT);
  }
  EXPECT_EQ(statuses[0].message(), missing + ": unlink: No such file or directory");
  EXPECT_EQ(statuses[1].message(), missing + ": statx: No such file or directory");
  EXPECT_EQ(statuses[2].message(),
            missing + " -> " + dir_.File("other") + ": rename: No such file or directory");
}

Task<std::vector<Result<std::size_t>>> ReadADirectory(std::string path) {
  std::vector<Result<std::size_t>> out;
  Result<int> fd = co_await Openat(AT_FDCWD, path.c_str(), O_RDONLY | O_DIRECTORY);
  if (!fd.ok()) co_return std::vector<Result<std::size_t>>{fd.status()};
  char buf[64];
  out.push_back(co_await Read(*fd, buf, sizeof(buf), 0));
  out.push_back(co_await ReadFull(*fd, buf, sizeof(buf), 0));
  EXPECT_TRUE((co_await Close(*fd)).ok());
  co_return out;
}

TEST_P(OpsTest, ReadOfADirectoryIsEisdir) {
  std::vector<Result<std::size_t>> reads = Run(ReadADirectory(dir_.path()));
  ASSERT_EQ(reads.size(), 2u) << reads[0].status().ToString();
  for (const Result<std::size_t>& read : reads) {
    ASSERT_FALSE(read.ok());
    EXPECT_EQ(read.status().errno_value(), EISDIR);
    EXPECT_TRUE(read.status().IsIOError());
    EXPECT_EQ(read.status().message(), dir_.path() + ": read at offset 0: Is a directory");
  }
}

// EIO for real: /proc/self/mem at an address with no mapping (page 0 is never mapped).
Task<std::vector<Result<std::size_t>>> ReadUnmappedMemory() {
  std::vector<Result<std::size_t>> out;
  Result<int> fd = co_await Openat(AT_FDCWD, "/proc/self/mem", O_RDONLY);
  if (!fd.ok()) co_return std::vector<Result<std::size_t>>{fd.status()};
  char buf[64];
  out.push_back(co_await Read(*fd, buf, sizeof(buf), 0));
  out.push_back(co_await ReadFull(*fd, buf, sizeof(buf), 4096));
  EXPECT_TRUE((co_await Close(*fd)).ok());
  co_return out;
}

TEST_P(OpsTest, EioFromTheKernelIsAnIOErrorNamingThePath) {
  std::vector<Result<std::size_t>> reads = Run(ReadUnmappedMemory());
  ASSERT_EQ(reads.size(), 2u) << reads[0].status().ToString();
  const std::string mem_path = "/proc/" + std::to_string(getpid()) + "/mem";
  ASSERT_FALSE(reads[0].ok());
  EXPECT_TRUE(reads[0].status().IsIOError());
  EXPECT_EQ(reads[0].status().errno_value(), EIO);
  EXPECT_EQ(reads[0].status().message(), mem_path + ": read at offset 0: Input/output error");
  ASSERT_FALSE(reads[1].ok());
  EXPECT_EQ(reads[1].status().errno_value(), EIO);
  EXPECT_EQ(reads[1].status().message(), mem_path + ": read at offset 4096: Input/output error");
}

Task<Status> AcceptOnANonListeningSocket(int fd) {
  sockaddr_in peer{};
  socklen_t len = sizeof(peer);
  Result<int> conn = co_await Accept(fd, reinterpret_cast<sockaddr*>(&peer), &len);
  if (conn.ok()) {
    close(*conn);
    co_return Status::OK();
  }
  co_return conn.status();
}

TEST_P(OpsTest, AcceptOnANonListeningSocketIsEinval) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  Status status = Run(AcceptOnANonListeningSocket(fd));
  close(fd);
  EXPECT_EQ(status.errno_value(), EINVAL) << status.ToString();
  EXPECT_TRUE(status.IsInvalidArgument());
  EXPECT_THAT(std::string(status.message()), HasSubstr(": accept: "));
}

// -EAGAIN is resubmitted kRetryMax times, then reported. A Recv with MSG_DONTWAIT on an empty
// socket answers EAGAIN on both backends. (A read of an O_NONBLOCK pipe would not do: io_uring
// waits for data on a pollable file whatever its O_NONBLOCK flag, while the thread pool's
// read(2) returns EAGAIN.)
Task<Result<std::size_t>> RecvDontWait(int fd) {
  char buf[16];
  co_return co_await Recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
}

TEST_P(OpsTest, EagainIsRetriedUpToKRetryMaxTimesThenReported) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  const std::uint64_t retried_before = scheduler_->stats().ops_retried;
  Result<std::size_t> n = Run(RecvDontWait(fds[0]));
  const std::uint64_t retried = scheduler_->stats().ops_retried - retried_before;
  close(fds[0]);
  close(fds[1]);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().errno_value(), EAGAIN);
  EXPECT_TRUE(n.status().IsIOError());
  EXPECT_THAT(std::string(n.status().message()),
              testing::MatchesRegex("socket:\\[[0-9]+\\]: recv: .*"));
  EXPECT_EQ(retried, kRetryMax);
}

// One transfer moves less than 2 GiB (the kernel's result is an int32); a larger length is
// cut to one transfer instead of wrapping around in the 32-bit length of an SQE.
Task<Result<std::size_t>> ReadWithHugeLength(int fd, char* buf) {
  co_return co_await Read(fd, buf, (std::size_t{1} << 32) + 10, 0);
}

TEST_P(OpsTest, LengthAbove4GiBIsCutToOneTransfer) {
  const std::string path = dir_.File("small");
  WriteFileDirectly(path, Pattern(0, 100));
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  // The file has 100 bytes, so the kernel writes only those into the buffer.
  std::vector<char> buf(4096);
  Result<std::size_t> n = Run(ReadWithHugeLength(fd, buf.data()));
  close(fd);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 100u);  // not 10, the length modulo 2^32
}

}  // namespace
}  // namespace cascadefs::io
