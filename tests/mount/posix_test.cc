// posix_test.cc: POSIX conformance of a mounted cascadefs, in the manner of pjdfstest.
//
// Goal: each operation users rely on behaves as on a local filesystem: its success behaviour
// (what it changes, as seen by stat, read and readdir right after) and the errno of each error
// case. Method: one test per operation or property on a fresh mount (MountedFs), plain system
// calls, each result checked; tests that need another user fork a child that drops to uid and
// gid 65534 (nobody) and reports the first unexpected result through a pipe. Everything here
// also passes on the kernel's own filesystem (CFS_MOUNT_TARGET=native), which is how the tests
// themselves were checked. PosixSlow holds the directory of 100,000 entries.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/falloc.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mount/mount_fixture.h"

namespace cascadefs::mounttest {
namespace {

// The uid and gid of the unprivileged user of the permission tests (nobody on Debian).
constexpr uid_t kOtherUid = 65534;
constexpr gid_t kOtherGid = 65534;
// Long enough for the kernel's coarse clock (one jiffy, <= 10 ms) to move on, so that a
// timestamp taken after it differs from one taken before.
constexpr auto kClockTick = std::chrono::milliseconds(30);

// Expects `expr` to fail with -1 and errno `err`.
#define EXPECT_ERRNO(expr, err)                                                                 \
  do {                                                                                          \
    errno = 0;                                                                                  \
    const long cfs_result = static_cast<long>(expr);                                            \
    const int cfs_errno = errno;                                                                \
    EXPECT_EQ(cfs_result, -1) << #expr;                                                         \
    EXPECT_EQ(cfs_errno, err) << #expr << ": got " << std::strerror(cfs_errno) << ", expected " \
                              << std::strerror(err);                                            \
  } while (0)

// Expects `expr` to succeed (not -1), naming errno if it did not.
#define EXPECT_OK(expr)                                                     \
  do {                                                                      \
    errno = 0;                                                              \
    const long cfs_result = static_cast<long>(expr);                        \
    const int cfs_errno = errno;                                            \
    EXPECT_NE(cfs_result, -1) << #expr << ": " << std::strerror(cfs_errno); \
  } while (0)
#define ASSERT_OK(expr)                                                     \
  do {                                                                      \
    errno = 0;                                                              \
    const long cfs_result = static_cast<long>(expr);                        \
    const int cfs_errno = errno;                                            \
    ASSERT_NE(cfs_result, -1) << #expr << ": " << std::strerror(cfs_errno); \
  } while (0)

// An owned file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&& other) noexcept {
    Reset();
    fd_ = other.fd_;
    other.fd_ = -1;
    return *this;
  }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

struct stat Stat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

std::int64_t Nanos(const timespec& ts) {
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string ReadAt(int fd, std::size_t size, off_t offset) {
  std::string data(size, '\0');
  const ssize_t n = pread(fd, data.data(), size, offset);
  if (n < 0) return "<pread failed: " + std::string(std::strerror(errno)) + ">";
  data.resize(static_cast<std::size_t>(n));
  return data;
}

bool WriteAt(int fd, std::string_view data, off_t offset) {
  return pwrite(fd, data.data(), data.size(), offset) == static_cast<ssize_t>(data.size());
}

bool AllZero(std::string_view data) {
  return data.find_first_not_of('\0') == std::string_view::npos;
}

std::string Content(const std::string& path) {
  std::string data;
  if (!ReadFile(path, &data)) return "<read failed: " + std::string(std::strerror(errno)) + ">";
  return data;
}

// Every name in `dir` (not . and ..) with the number of times readdir returned it.
std::map<std::string, int> ListCounts(const std::string& dir) {
  std::map<std::string, int> counts;
  DIR* d = opendir(dir.c_str());
  EXPECT_NE(d, nullptr) << dir << ": " << std::strerror(errno);
  if (d == nullptr) return counts;
  errno = 0;
  while (dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") counts[name]++;
  }
  EXPECT_EQ(errno, 0) << "readdir " << dir;
  closedir(d);
  return counts;
}

// Runs `body` in a forked child as uid/gid 65534 with no supplementary groups. `body` returns
// "" when every check held, else the first unexpected result. Returns the child's message.
template <typename Body>
std::string AsOtherUser(Body body) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    std::string message;
    if (setgroups(0, nullptr) != 0 || setgid(kOtherGid) != 0 || setuid(kOtherUid) != 0) {
      message = std::string("dropping to uid 65534: ") + std::strerror(errno);
    } else {
      message = body();
    }
    (void)!write(fds[1], message.data(), message.size());
    _exit(message.empty() ? 0 : 1);
  }
  close(fds[1]);
  std::string message;
  char buffer[512];
  ssize_t n;
  while ((n = read(fds[0], buffer, sizeof(buffer))) > 0) message.append(buffer, n);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (message.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    message = "child ended with status " + std::to_string(status);
  }
  return message;
}

// Inside AsOtherUser: "" if `result` is -1 with errno `err`, else a description.
std::string ExpectFail(const char* what, long result, int err) {
  const int got = errno;
  if (result == -1 && got == err) return "";
  return std::string(what) + ": got " + (result == -1 ? std::strerror(got) : "success") +
         ", expected " + std::strerror(err);
}
std::string ExpectSuccess(const char* what, long result) {
  if (result != -1) return "";
  return std::string(what) + ": " + std::strerror(errno);
}

class Posix : public MountedFs {};
class PosixSlow : public MountedFs {};

// ---- open / creat --------------------------------------------------------------------------

TEST_F(Posix, OpenCreateErrors) {
  const std::string file = path("f");
  Fd fd(open(file.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644));
  ASSERT_TRUE(fd.ok()) << std::strerror(errno);
  EXPECT_TRUE(S_ISREG(Stat(file).st_mode));
  EXPECT_EQ(Stat(file).st_mode & 07777, 0644u);
  EXPECT_EQ(Stat(file).st_size, 0);
  EXPECT_ERRNO(open(file.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
  EXPECT_ERRNO(open(path("missing").c_str(), O_RDONLY), ENOENT);
  EXPECT_ERRNO(open(path("missing/x").c_str(), O_CREAT | O_WRONLY, 0644), ENOENT);
  EXPECT_ERRNO(open(path("f/x").c_str(), O_RDONLY), ENOTDIR);
  EXPECT_ERRNO(open(path("f/x").c_str(), O_CREAT | O_WRONLY, 0644), ENOTDIR);
  ASSERT_OK(mkdir(path("d").c_str(), 0755));
  EXPECT_ERRNO(open(path("d").c_str(), O_WRONLY), EISDIR);
  EXPECT_ERRNO(open(path("d").c_str(), O_RDWR), EISDIR);
  EXPECT_ERRNO(open(path("f").c_str(), O_RDONLY | O_DIRECTORY), ENOTDIR);
  Fd dir(open(path("d").c_str(), O_RDONLY | O_DIRECTORY));
  EXPECT_TRUE(dir.ok()) << std::strerror(errno);
  // creat() truncates an existing file.
  ASSERT_TRUE(WriteFile(file, "hello"));
  Fd again(creat(file.c_str(), 0600));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(Stat(file).st_size, 0);
  EXPECT_EQ(Stat(file).st_mode & 07777, 0644u) << "creat of an existing file keeps its mode";
}

TEST_F(Posix, NameTooLong) {
  const std::string longest(255, 'n');
  const std::string too_long(256, 'n');
  Fd fd(open(path(longest).c_str(), O_CREAT | O_WRONLY, 0644));
  EXPECT_TRUE(fd.ok()) << "a 255-byte name: " << std::strerror(errno);
  EXPECT_ERRNO(open(path(too_long).c_str(), O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
  EXPECT_ERRNO(mkdir(path(too_long).c_str(), 0755), ENAMETOOLONG);
  EXPECT_ERRNO(symlink("x", path(too_long).c_str()), ENAMETOOLONG);
  EXPECT_ERRNO(rename(path(longest).c_str(), path(too_long).c_str()), ENAMETOOLONG);
  EXPECT_ERRNO(link(path(longest).c_str(), path(too_long).c_str()), ENAMETOOLONG);
  EXPECT_EQ(ListCounts(guard().root()), (std::map<std::string, int>{{longest, 1}}));
}

// ---- read / write --------------------------------------------------------------------------

TEST_F(Posix, ReadWritePreadPwrite) {
  const std::string file = path("rw");
  Fd fd(open(file.c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  const std::string data = RandomBytes(1, 200000);
  ASSERT_EQ(write(fd.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(lseek(fd.get(), 0, SEEK_CUR), static_cast<off_t>(data.size()));
  EXPECT_EQ(lseek(fd.get(), 0, SEEK_SET), 0);
  std::string back(data.size(), '\0');
  ASSERT_EQ(read(fd.get(), back.data(), back.size()), static_cast<ssize_t>(data.size()));
  EXPECT_TRUE(back == data);
  char byte;
  EXPECT_EQ(read(fd.get(), &byte, 1), 0) << "read at EOF returns 0";
  // pwrite in the middle does not move the offset; pread sees it.
  const std::string patch = "PATCHED-BYTES";
  ASSERT_TRUE(WriteAt(fd.get(), patch, 4093));  // across a 4 KiB page boundary
  EXPECT_EQ(lseek(fd.get(), 0, SEEK_CUR), static_cast<off_t>(data.size()));
  EXPECT_EQ(ReadAt(fd.get(), patch.size(), 4093), patch);
  EXPECT_EQ(ReadAt(fd.get(), 10, 4083), data.substr(4083, 10));
  // A short read at the end of the file.
  EXPECT_EQ(ReadAt(fd.get(), 100, static_cast<off_t>(data.size()) - 7),
            data.substr(data.size() - 7));
  EXPECT_EQ(ReadAt(fd.get(), 100, static_cast<off_t>(data.size()) + 100), "");
  // Another descriptor sees the same bytes.
  std::string expected = data;
  expected.replace(4093, patch.size(), patch);
  EXPECT_TRUE(Content(file) == expected);
  EXPECT_EQ(Stat(file).st_size, static_cast<off_t>(data.size()));
  EXPECT_GE(Stat(file).st_blocks * 512, 1) << "a written file occupies blocks";
  // Writing to a read-only descriptor fails with EBADF; reading a write-only one too.
  Fd ro(open(file.c_str(), O_RDONLY));
  EXPECT_ERRNO(write(ro.get(), "x", 1), EBADF);
  Fd wo(open(file.c_str(), O_WRONLY));
  EXPECT_ERRNO(read(wo.get(), &byte, 1), EBADF);
  // O_TRUNC empties it.
  Fd trunc(open(file.c_str(), O_WRONLY | O_TRUNC));
  EXPECT_EQ(Stat(file).st_size, 0);
}

TEST_F(Posix, AppendMode) {
  const std::string file = path("log");
  ASSERT_TRUE(WriteFile(file, "first\n"));
  Fd fd(open(file.c_str(), O_WRONLY | O_APPEND));
  ASSERT_TRUE(fd.ok());
  ASSERT_EQ(lseek(fd.get(), 0, SEEK_SET), 0);
  ASSERT_EQ(write(fd.get(), "second\n", 7), 7);
  // Another writer extends the file; the O_APPEND descriptor still writes at the new end.
  Fd other(open(file.c_str(), O_WRONLY));
  ASSERT_TRUE(WriteAt(other.get(), "third\n", 13));
  ASSERT_EQ(write(fd.get(), "fourth\n", 7), 7);
  EXPECT_EQ(lseek(fd.get(), 0, SEEK_CUR), 26);
  EXPECT_EQ(Content(file), "first\nsecond\nthird\nfourth\n");
}

// ---- truncate ------------------------------------------------------------------------------

TEST_F(Posix, TruncateGrowAndShrink) {
  const std::string file = path("t");
  const std::string data = RandomBytes(2, 100000);
  ASSERT_TRUE(WriteFile(file, data));
  ASSERT_OK(truncate(file.c_str(), 1000));
  EXPECT_EQ(Stat(file).st_size, 1000);
  EXPECT_TRUE(Content(file) == data.substr(0, 1000));
  // Growing again must read zeros, not the old bytes beyond the cut.
  ASSERT_OK(truncate(file.c_str(), 100000));
  const std::string grown = Content(file);
  ASSERT_EQ(grown.size(), 100000u);
  EXPECT_TRUE(grown.substr(0, 1000) == data.substr(0, 1000));
  EXPECT_TRUE(AllZero(std::string_view(grown).substr(1000))) << "stale bytes after a shrink+grow";
  Fd fd(open(file.c_str(), O_RDWR));
  ASSERT_OK(ftruncate(fd.get(), 3));
  EXPECT_EQ(Stat(file).st_size, 3);
  ASSERT_OK(ftruncate(fd.get(), 5000000));
  EXPECT_EQ(Stat(file).st_size, 5000000);
  EXPECT_TRUE(AllZero(ReadAt(fd.get(), 4999997, 3)));
  EXPECT_EQ(ReadAt(fd.get(), 3, 0), data.substr(0, 3));
  ASSERT_OK(ftruncate(fd.get(), 0));
  EXPECT_EQ(Content(file), "");
  EXPECT_ERRNO(truncate(path("missing").c_str(), 0), ENOENT);
  EXPECT_ERRNO(ftruncate(fd.get(), -1), EINVAL);
  ASSERT_OK(mkdir(path("d").c_str(), 0755));
  EXPECT_ERRNO(truncate(path("d").c_str(), 0), EISDIR);
  Fd ro(open(file.c_str(), O_RDONLY));
  EXPECT_ERRNO(ftruncate(ro.get(), 0), EINVAL);  // not open for writing
}

// ---- unlink --------------------------------------------------------------------------------

TEST_F(Posix, Unlink) {
  ASSERT_TRUE(WriteFile(path("f"), "x"));
  ASSERT_OK(unlink(path("f").c_str()));
  EXPECT_ERRNO(access(path("f").c_str(), F_OK), ENOENT);
  EXPECT_ERRNO(unlink(path("f").c_str()), ENOENT);
  ASSERT_OK(mkdir(path("d").c_str(), 0755));
  errno = 0;
  EXPECT_EQ(unlink(path("d").c_str()), -1);
  EXPECT_TRUE(errno == EISDIR || errno == EPERM) << std::strerror(errno);
  EXPECT_ERRNO(unlink(path("d/missing").c_str()), ENOENT);
  ASSERT_TRUE(WriteFile(path("g"), "x"));
  EXPECT_ERRNO(unlink(path("g/x").c_str()), ENOTDIR);
  EXPECT_EQ(ListCounts(guard().root()), (std::map<std::string, int>{{"d", 1}, {"g", 1}}));
}

// ---- rename --------------------------------------------------------------------------------

TEST_F(Posix, RenameOverFileIsAtomic) {
  const std::string target = path("current");
  ASSERT_TRUE(WriteFile(target, "version 0"));
  // A reader keeps opening the name while it is replaced 300 times: it must always find a
  // complete version, never ENOENT and never a mix.
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::string first_failure;
  std::thread reader([&] {
    while (!stop.load()) {
      std::string data;
      if (!ReadFile(target, &data) || data.rfind("version ", 0) != 0) {
        if (failures.fetch_add(1) == 0) {
          first_failure = data.empty() ? std::strerror(errno) : data;
        }
      }
    }
  });
  for (int i = 1; i <= 300; ++i) {
    const std::string temp = path("tmp" + std::to_string(i));
    ASSERT_TRUE(WriteFile(temp, "version " + std::to_string(i)));
    ASSERT_OK(rename(temp.c_str(), target.c_str()));
  }
  stop = true;
  reader.join();
  EXPECT_EQ(failures.load(), 0) << "first: " << first_failure;
  EXPECT_EQ(Content(target), "version 300");
  EXPECT_EQ(ListCounts(guard().root()), (std::map<std::string, int>{{"current", 1}}));
  // An open descriptor of the replaced file still reads the old contents.
  Fd old(open(target.c_str(), O_RDONLY));
  ASSERT_TRUE(WriteFile(path("new"), "replacement"));
  ASSERT_OK(rename(path("new").c_str(), target.c_str()));
  EXPECT_EQ(ReadAt(old.get(), 100, 0), "version 300");
  EXPECT_EQ(Content(target), "replacement");
  // Renaming a name onto itself (or a hard link onto its twin) changes nothing.
  ASSERT_OK(rename(target.c_str(), target.c_str()));
  EXPECT_EQ(Content(target), "replacement");
  ASSERT_OK(link(target.c_str(), path("twin").c_str()));
  ASSERT_OK(rename(target.c_str(), path("twin").c_str()));
  EXPECT_EQ(Content(target), "replacement");
  EXPECT_EQ(Stat(target).st_nlink, 2u);
}

TEST_F(Posix, RenameDirectories) {
  ASSERT_OK(mkdir(path("a").c_str(), 0755));
  ASSERT_TRUE(WriteFile(path("a/file"), "in a"));
  ASSERT_OK(mkdir(path("empty").c_str(), 0755));
  ASSERT_OK(mkdir(path("full").c_str(), 0755));
  ASSERT_TRUE(WriteFile(path("full/x"), "x"));
  // A directory over an empty directory replaces it.
  ASSERT_OK(rename(path("a").c_str(), path("empty").c_str()));
  EXPECT_EQ(Content(path("empty/file")), "in a");
  EXPECT_ERRNO(access(path("a").c_str(), F_OK), ENOENT);
  // Over a non-empty one: ENOTEMPTY (or EEXIST, which POSIX allows).
  errno = 0;
  EXPECT_EQ(rename(path("empty").c_str(), path("full").c_str()), -1);
  EXPECT_TRUE(errno == ENOTEMPTY || errno == EEXIST) << std::strerror(errno);
  // Into itself or its own subdirectory: EINVAL.
  ASSERT_OK(mkdir(path("empty/sub").c_str(), 0755));
  EXPECT_ERRNO(rename(path("empty").c_str(), path("empty/sub/moved").c_str()), EINVAL);
  EXPECT_ERRNO(rename(path("empty").c_str(), path("empty/moved").c_str()), EINVAL);
  // A file over a directory: EISDIR; a directory over a file: ENOTDIR.
  ASSERT_TRUE(WriteFile(path("plain"), "p"));
  EXPECT_ERRNO(rename(path("plain").c_str(), path("full").c_str()), EISDIR);
  EXPECT_ERRNO(rename(path("full").c_str(), path("plain").c_str()), ENOTDIR);
  EXPECT_ERRNO(rename(path("missing").c_str(), path("x").c_str()), ENOENT);
  EXPECT_ERRNO(rename(path("plain").c_str(), path("missing/x").c_str()), ENOENT);
  // Moving a directory between parents moves its contents and fixes both parents' link counts
  // (each subdirectory's ".." is a link to its parent).
  const nlink_t root_links = Stat(guard().root()).st_nlink;
  const nlink_t full_links = Stat(path("full")).st_nlink;
  ASSERT_OK(rename(path("empty").c_str(), path("full/moved").c_str()));
  EXPECT_EQ(Content(path("full/moved/file")), "in a");
  EXPECT_EQ(Stat(guard().root()).st_nlink, root_links - 1);
  EXPECT_EQ(Stat(path("full")).st_nlink, full_links + 1);
  struct stat dotdot {
  }, parent{};
  ASSERT_OK(stat(path("full/moved/..").c_str(), &dotdot));
  ASSERT_OK(stat(path("full").c_str(), &parent));
  EXPECT_EQ(dotdot.st_ino, parent.st_ino) << ".. of a moved directory is its new parent";
}

TEST_F(Posix, RenameNoreplaceAndExchange) {
  ASSERT_TRUE(WriteFile(path("a"), "A"));
  ASSERT_TRUE(WriteFile(path("b"), "B"));
  EXPECT_ERRNO(
      renameat2(AT_FDCWD, path("a").c_str(), AT_FDCWD, path("b").c_str(), RENAME_NOREPLACE),
      EEXIST);
  EXPECT_EQ(Content(path("a")), "A");
  EXPECT_EQ(Content(path("b")), "B");
  ASSERT_OK(renameat2(AT_FDCWD, path("a").c_str(), AT_FDCWD, path("c").c_str(), RENAME_NOREPLACE));
  EXPECT_EQ(Content(path("c")), "A");
  EXPECT_ERRNO(access(path("a").c_str(), F_OK), ENOENT);
  // Exchange swaps two files atomically, and a file with a directory.
  const ino_t b_ino = Stat(path("b")).st_ino;
  ASSERT_OK(renameat2(AT_FDCWD, path("b").c_str(), AT_FDCWD, path("c").c_str(), RENAME_EXCHANGE));
  EXPECT_EQ(Content(path("b")), "A");
  EXPECT_EQ(Content(path("c")), "B");
  EXPECT_EQ(Stat(path("c")).st_ino, b_ino);
  ASSERT_OK(mkdir(path("d").c_str(), 0755));
  ASSERT_TRUE(WriteFile(path("d/inner"), "I"));
  ASSERT_OK(renameat2(AT_FDCWD, path("b").c_str(), AT_FDCWD, path("d").c_str(), RENAME_EXCHANGE));
  EXPECT_TRUE(S_ISDIR(Stat(path("b")).st_mode));
  EXPECT_EQ(Content(path("b/inner")), "I");
  EXPECT_EQ(Content(path("d")), "A");
  EXPECT_ERRNO(
      renameat2(AT_FDCWD, path("b").c_str(), AT_FDCWD, path("none").c_str(), RENAME_EXCHANGE),
      ENOENT);
  EXPECT_ERRNO(renameat2(AT_FDCWD, path("b").c_str(), AT_FDCWD, path("c").c_str(),
                         RENAME_EXCHANGE | RENAME_NOREPLACE),
               EINVAL);
  EXPECT_EQ(ListCounts(guard().root()), (std::map<std::string, int>{{"b", 1}, {"c", 1}, {"d", 1}}));
}

// ---- link / symlink ------------------------------------------------------------------------

TEST_F(Posix, HardLinks) {
  ASSERT_TRUE(WriteFile(path("a"), "shared"));
  ASSERT_OK(mkdir(path("sub").c_str(), 0755));
  ASSERT_OK(link(path("a").c_str(), path("sub/b").c_str()));
  EXPECT_EQ(Stat(path("a")).st_nlink, 2u);
  EXPECT_EQ(Stat(path("sub/b")).st_nlink, 2u);
  EXPECT_EQ(Stat(path("a")).st_ino, Stat(path("sub/b")).st_ino);
  ASSERT_TRUE(WriteFile(path("sub/b"), "changed through b"));
  EXPECT_EQ(Content(path("a")), "changed through b");
  ASSERT_OK(link(path("a").c_str(), path("c").c_str()));
  EXPECT_EQ(Stat(path("sub/b")).st_nlink, 3u);
  ASSERT_OK(unlink(path("a").c_str()));
  EXPECT_EQ(Stat(path("c")).st_nlink, 2u);
  EXPECT_EQ(Content(path("c")), "changed through b");
  EXPECT_ERRNO(link(path("c").c_str(), path("sub/b").c_str()), EEXIST);
  EXPECT_ERRNO(link(path("missing").c_str(), path("x").c_str()), ENOENT);
  EXPECT_ERRNO(link(path("sub").c_str(), path("sublink").c_str()), EPERM);
  ASSERT_OK(unlink(path("sub/b").c_str()));
  EXPECT_EQ(Stat(path("c")).st_nlink, 1u);
}

TEST_F(Posix, Symlinks) {
  ASSERT_TRUE(WriteFile(path("target"), "pointed at"));
  ASSERT_OK(symlink("target", path("rel").c_str()));
  ASSERT_OK(symlink((guard().root() + "/target").c_str(), path("abs").c_str()));
  ASSERT_OK(symlink("nowhere/at/all", path("dangling").c_str()));
  const struct stat st = Stat(path("rel"));
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_size, 6);
  char buffer[PATH_MAX];
  ssize_t n = readlink(path("rel").c_str(), buffer, sizeof(buffer));
  ASSERT_EQ(n, 6);
  EXPECT_EQ(std::string(buffer, n), "target");
  n = readlink(path("dangling").c_str(), buffer, sizeof(buffer));
  EXPECT_EQ(std::string(buffer, n > 0 ? n : 0), "nowhere/at/all");
  // readlink into a short buffer truncates silently.
  EXPECT_EQ(readlink(path("rel").c_str(), buffer, 3), 3);
  EXPECT_EQ(Content(path("rel")), "pointed at");
  EXPECT_EQ(Content(path("abs")), "pointed at");
  EXPECT_ERRNO(open(path("dangling").c_str(), O_RDONLY), ENOENT);
  EXPECT_ERRNO(readlink(path("target").c_str(), buffer, sizeof(buffer)), EINVAL);
  EXPECT_ERRNO(symlink("x", path("rel").c_str()), EEXIST);
  EXPECT_ERRNO(open(path("rel").c_str(), O_RDONLY | O_NOFOLLOW), ELOOP);
  // A long target (1000 bytes) round-trips.
  const std::string long_target(1000, 'L');
  ASSERT_OK(symlink(long_target.c_str(), path("long").c_str()));
  n = readlink(path("long").c_str(), buffer, sizeof(buffer));
  EXPECT_EQ(std::string(buffer, n > 0 ? n : 0), long_target);
  // Unlinking a symlink leaves its target.
  ASSERT_OK(unlink(path("rel").c_str()));
  EXPECT_EQ(Content(path("target")), "pointed at");
  // A symlink to a directory is followed by path lookup.
  ASSERT_OK(mkdir(path("dir").c_str(), 0755));
  ASSERT_OK(symlink("dir", path("dirlink").c_str()));
  ASSERT_TRUE(WriteFile(path("dirlink/inside"), "through the link"));
  EXPECT_EQ(Content(path("dir/inside")), "through the link");
}

// ---- mkdir / rmdir -------------------------------------------------------------------------

TEST_F(Posix, MkdirRmdirAndLinkCounts) {
  const nlink_t root_links = Stat(guard().root()).st_nlink;
  ASSERT_OK(mkdir(path("d").c_str(), 0750));
  EXPECT_TRUE(S_ISDIR(Stat(path("d")).st_mode));
  EXPECT_EQ(Stat(path("d")).st_mode & 07777, 0750u);
  EXPECT_EQ(Stat(path("d")).st_nlink, 2u);
  EXPECT_EQ(Stat(guard().root()).st_nlink, root_links + 1);
  EXPECT_ERRNO(mkdir(path("d").c_str(), 0755), EEXIST);
  ASSERT_TRUE(WriteFile(path("f"), ""));
  EXPECT_ERRNO(mkdir(path("f").c_str(), 0755), EEXIST);
  EXPECT_ERRNO(mkdir(path("missing/d").c_str(), 0755), ENOENT);
  EXPECT_ERRNO(mkdir(path("f/d").c_str(), 0755), ENOTDIR);
  for (int i = 0; i < 5; ++i) ASSERT_OK(mkdir(path("d/s" + std::to_string(i)).c_str(), 0755));
  EXPECT_EQ(Stat(path("d")).st_nlink, 7u);
  ASSERT_TRUE(WriteFile(path("d/file"), "x"));
  EXPECT_EQ(Stat(path("d")).st_nlink, 7u) << "files do not add to a directory's link count";
  EXPECT_ERRNO(rmdir(path("d").c_str()), ENOTEMPTY);
  EXPECT_ERRNO(rmdir(path("f").c_str()), ENOTDIR);
  EXPECT_ERRNO(rmdir(path("missing").c_str()), ENOENT);
  EXPECT_ERRNO(rmdir(path("d/s0/.").c_str()), EINVAL);
  ASSERT_OK(rmdir(path("d/s0").c_str()));
  EXPECT_EQ(Stat(path("d")).st_nlink, 6u);
  for (int i = 1; i < 5; ++i) ASSERT_OK(rmdir(path("d/s" + std::to_string(i)).c_str()));
  ASSERT_OK(unlink(path("d/file").c_str()));
  ASSERT_OK(rmdir(path("d").c_str()));
  EXPECT_EQ(Stat(guard().root()).st_nlink, root_links);
  EXPECT_ERRNO(access(path("d").c_str(), F_OK), ENOENT);
  // A removed directory that is still open lists nothing and accepts no new entries.
  ASSERT_OK(mkdir(path("gone").c_str(), 0755));
  Fd gone(open(path("gone").c_str(), O_RDONLY | O_DIRECTORY));
  ASSERT_OK(rmdir(path("gone").c_str()));
  EXPECT_ERRNO(openat(gone.get(), "new", O_CREAT | O_WRONLY, 0644), ENOENT);
}

// ---- readdir -------------------------------------------------------------------------------

TEST_F(Posix, ReaddirListsEveryEntryOnce) {
  ASSERT_OK(mkdir(path("d").c_str(), 0755));
  std::map<std::string, int> expected;
  for (int i = 0; i < 1000; ++i) {
    const std::string name = "entry-" + std::to_string(i) + std::string(i % 40, 'x');
    ASSERT_TRUE(WriteFile(path("d/" + name), ""));
    expected[name] = 1;
  }
  ASSERT_OK(mkdir(path("d/subdir").c_str(), 0755));
  ASSERT_OK(symlink("x", path("d/link").c_str()));
  expected["subdir"] = 1;
  expected["link"] = 1;
  EXPECT_EQ(ListCounts(path("d")), expected);
  // d_type is right when it is given, and . and .. are listed.
  DIR* d = opendir(path("d").c_str());
  ASSERT_NE(d, nullptr);
  int dots = 0;
  while (dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") {
      dots++;
      continue;
    }
    if (entry->d_type == DT_UNKNOWN) continue;
    const unsigned char want = name == "subdir" ? DT_DIR : name == "link" ? DT_LNK : DT_REG;
    EXPECT_EQ(entry->d_type, want) << name;
  }
  // rewinddir starts over and sees the same entries.
  rewinddir(d);
  int again = 0;
  while (dirent* entry = readdir(d)) {
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) again++;
  }
  closedir(d);
  EXPECT_EQ(dots, 2);
  EXPECT_EQ(again, static_cast<int>(expected.size()));
}

// Entries not changed during a listing are seen exactly once, while others are created and
// removed between the getdents64 calls (a small buffer makes many calls).
TEST_F(Posix, ReaddirStableWhileOthersChange) {
  ASSERT_OK(mkdir(path("d").c_str(), 0755));
  constexpr int kStable = 2000;
  for (int i = 0; i < kStable; ++i) {
    ASSERT_TRUE(WriteFile(path("d/stable-" + std::to_string(i)), ""));
  }
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(WriteFile(path("d/churn-" + std::to_string(i)), ""));
  Fd dir(open(path("d").c_str(), O_RDONLY | O_DIRECTORY));
  ASSERT_TRUE(dir.ok());
  std::map<std::string, int> seen;
  std::vector<char> buffer(1024);  // about 30 entries per call
  int calls = 0;
  int next_churn = 200;
  int next_removed = 0;
  while (true) {
    const long n = syscall(SYS_getdents64, dir.get(), buffer.data(), buffer.size());
    ASSERT_GE(n, 0) << std::strerror(errno);
    if (n == 0) break;
    ASSERT_LT(++calls, 100000) << "the listing never ends";
    for (long pos = 0; pos < n;) {
      struct Dirent64 {
        ino64_t d_ino;
        off64_t d_off;
        unsigned short d_reclen;
        unsigned char d_type;
        char d_name[];
      };
      const auto* entry = reinterpret_cast<const Dirent64*>(buffer.data() + pos);
      seen[entry->d_name]++;
      pos += entry->d_reclen;
    }
    // Change other entries between calls: create 5, remove 5.
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(WriteFile(path("d/churn-" + std::to_string(next_churn++)), ""));
      ASSERT_OK(unlink(path("d/churn-" + std::to_string(next_removed++)).c_str()));
    }
  }
  EXPECT_GT(calls, 10) << "the test needs many getdents64 calls";
  int stable_seen = 0;
  for (const auto& [name, count] : seen) {
    EXPECT_EQ(count, 1) << name << " listed " << count << " times";
    if (name.rfind("stable-", 0) == 0) stable_seen++;
  }
  EXPECT_EQ(stable_seen, kStable) << "every unchanged entry is listed";
  EXPECT_EQ(seen.count("."), 1u);
  EXPECT_EQ(seen.count(".."), 1u);
}

TEST_F(PosixSlow, HundredThousandEntries) {
  ASSERT_OK(mkdir(path("big").c_str(), 0755));
  Fd dir(open(path("big").c_str(), O_RDONLY | O_DIRECTORY));
  ASSERT_TRUE(dir.ok());
  constexpr int kEntries = 100000;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kEntries; ++i) {
    const std::string name = "f" + std::to_string(i);
    ASSERT_OK(mknodat(dir.get(), name.c_str(), S_IFREG | 0644, 0));
  }
  const double create_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("created %d entries in %.1f s\n", kEntries, create_s);
  std::map<std::string, int> counts = ListCounts(path("big"));
  EXPECT_EQ(counts.size(), static_cast<std::size_t>(kEntries));
  int wrong = 0;
  for (int i = 0; i < kEntries; ++i) {
    const auto found = counts.find("f" + std::to_string(i));
    if (found == counts.end() || found->second != 1) {
      if (wrong++ < 10)
        ADD_FAILURE() << "f" << i << " listed " << (found == counts.end() ? 0 : found->second)
                      << " times";
    }
  }
  EXPECT_EQ(wrong, 0);
  // Lookups in the big directory: hits, a miss, and a removal.
  struct stat st {};
  for (int i = 0; i < kEntries; i += 9973) {
    EXPECT_EQ(fstatat(dir.get(), ("f" + std::to_string(i)).c_str(), &st, 0), 0) << i;
  }
  EXPECT_ERRNO(fstatat(dir.get(), "f100000", &st, 0), ENOENT);
  EXPECT_ERRNO(rmdir(path("big").c_str()), ENOTEMPTY);
  for (int i = 0; i < kEntries; i += 2) {
    ASSERT_OK(unlinkat(dir.get(), ("f" + std::to_string(i)).c_str(), 0));
  }
  counts = ListCounts(path("big"));
  EXPECT_EQ(counts.size(), static_cast<std::size_t>(kEntries / 2));
  EXPECT_EQ(counts.count("f0"), 0u);
  EXPECT_EQ(counts.count("f99999"), 1u);
}

// ---- chmod / chown / utimens ---------------------------------------------------------------

TEST_F(Posix, ChmodChownUtimens) {
  const std::string file = path("f");
  ASSERT_TRUE(WriteFile(file, "data"));
  struct stat before = Stat(file);
  std::this_thread::sleep_for(kClockTick);
  ASSERT_OK(chmod(file.c_str(), 04751));
  struct stat after = Stat(file);
  EXPECT_EQ(after.st_mode & 07777, 04751u);
  EXPECT_GT(Nanos(after.st_ctim), Nanos(before.st_ctim)) << "chmod changes ctime";
  EXPECT_EQ(Nanos(after.st_mtim), Nanos(before.st_mtim)) << "chmod leaves mtime";
  Fd fd(open(file.c_str(), O_RDONLY));
  ASSERT_OK(fchmod(fd.get(), 0600));
  EXPECT_EQ(Stat(file).st_mode & 07777, 0600u);

  before = Stat(file);
  std::this_thread::sleep_for(kClockTick);
  ASSERT_OK(chown(file.c_str(), 1234, 5678));
  after = Stat(file);
  EXPECT_EQ(after.st_uid, 1234u);
  EXPECT_EQ(after.st_gid, 5678u);
  EXPECT_GT(Nanos(after.st_ctim), Nanos(before.st_ctim)) << "chown changes ctime";
  ASSERT_OK(chown(file.c_str(), static_cast<uid_t>(-1), 42));  // -1 leaves the owner
  EXPECT_EQ(Stat(file).st_uid, 1234u);
  EXPECT_EQ(Stat(file).st_gid, 42u);
  ASSERT_OK(symlink("f", path("l").c_str()));
  ASSERT_OK(lchown(path("l").c_str(), 77, 88));
  EXPECT_EQ(Stat(path("l")).st_uid, 77u);
  EXPECT_EQ(Stat(file).st_uid, 1234u) << "lchown changes the link, not its target";

  // Explicit times with nanoseconds, then UTIME_OMIT and UTIME_NOW.
  const timespec exact[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
  ASSERT_OK(utimensat(AT_FDCWD, file.c_str(), exact, 0));
  after = Stat(file);
  EXPECT_EQ(after.st_atim.tv_sec, 1000000000);
  EXPECT_EQ(after.st_atim.tv_nsec, 123456789);
  EXPECT_EQ(after.st_mtim.tv_sec, 1200000000);
  EXPECT_EQ(after.st_mtim.tv_nsec, 987654321);
  const timespec omit_atime[2] = {{0, UTIME_OMIT}, {1300000000, 5}};
  ASSERT_OK(utimensat(AT_FDCWD, file.c_str(), omit_atime, 0));
  after = Stat(file);
  EXPECT_EQ(after.st_atim.tv_sec, 1000000000) << "UTIME_OMIT leaves atime";
  EXPECT_EQ(after.st_mtim.tv_sec, 1300000000);
  EXPECT_EQ(after.st_mtim.tv_nsec, 5);
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  const timespec now_mtime[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  ASSERT_OK(futimens(fd.get(), now_mtime));
  after = Stat(file);
  EXPECT_EQ(after.st_atim.tv_sec, 1000000000);
  EXPECT_NEAR(static_cast<double>(after.st_mtim.tv_sec), static_cast<double>(now.tv_sec), 5.0)
      << "UTIME_NOW sets the current time";
  EXPECT_GE(Nanos(after.st_ctim), Nanos(after.st_mtim) - 20000000) << "ctime moves with it";
  // A write moves mtime and ctime; a read-only open does not move mtime.
  const timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
  ASSERT_OK(utimensat(AT_FDCWD, file.c_str(), old, 0));
  ASSERT_OK(chmod(file.c_str(), 0644));
  Fd writer(open(file.c_str(), O_WRONLY));
  ASSERT_EQ(write(writer.get(), "x", 1), 1);
  writer.Reset();
  after = Stat(file);
  EXPECT_NEAR(static_cast<double>(after.st_mtim.tv_sec), static_cast<double>(now.tv_sec), 5.0)
      << "write sets mtime";
  EXPECT_ERRNO(chmod(path("missing").c_str(), 0644), ENOENT);
  EXPECT_ERRNO(chown(path("missing").c_str(), 0, 0), ENOENT);
  EXPECT_ERRNO(utimensat(AT_FDCWD, path("missing").c_str(), nullptr, 0), ENOENT);
  // Directory modes and times.
  ASSERT_OK(mkdir(path("d").c_str(), 0755));
  ASSERT_OK(chmod(path("d").c_str(), 01777));
  EXPECT_EQ(Stat(path("d")).st_mode & 07777, 01777u);
  before = Stat(path("d"));
  std::this_thread::sleep_for(kClockTick);
  ASSERT_TRUE(WriteFile(path("d/new"), ""));
  after = Stat(path("d"));
  EXPECT_GT(Nanos(after.st_mtim), Nanos(before.st_mtim)) << "creating an entry changes mtime";
  EXPECT_GT(Nanos(after.st_ctim), Nanos(before.st_ctim)) << "creating an entry changes ctime";
}

TEST_F(Posix, PermissionsAsAnotherUser) {
  ASSERT_OK(chmod(guard().root().c_str(), 0755));
  ASSERT_TRUE(WriteFile(path("secret"), "root only"));
  ASSERT_OK(chmod(path("secret").c_str(), 0600));
  ASSERT_TRUE(WriteFile(path("public"), "everyone reads"));
  ASSERT_OK(chmod(path("public").c_str(), 0644));
  ASSERT_OK(mkdir(path("rootdir").c_str(), 0755));
  ASSERT_OK(mkdir(path("shared").c_str(), 0777));
  ASSERT_OK(chmod(path("shared").c_str(), 0777));  // whatever the umask
  ASSERT_OK(mkdir(path("sticky").c_str(), 01777));
  ASSERT_OK(chmod(path("sticky").c_str(), 01777));
  ASSERT_TRUE(WriteFile(path("sticky/roots"), "x"));
  ASSERT_OK(chmod(path("sticky/roots").c_str(), 0666));
  ASSERT_TRUE(WriteFile(path("theirs"), "x"));
  ASSERT_OK(chown(path("theirs").c_str(), kOtherUid, kOtherGid));
  ASSERT_OK(chmod(path("theirs").c_str(), 0600));
  const std::string root = guard().root();
  const std::string message = AsOtherUser([&]() -> std::string {
    std::string r;
    auto p = [&](const char* rel) { return root + "/" + rel; };
    if (!(r = ExpectFail("open 0600 file of root", open(p("secret").c_str(), O_RDONLY), EACCES))
             .empty())
      return r;
    if (!(r = ExpectFail("open 0644 file of root for writing", open(p("public").c_str(), O_WRONLY),
                         EACCES))
             .empty())
      return r;
    const int fd = open(p("public").c_str(), O_RDONLY);
    if (!(r = ExpectSuccess("open 0644 file of root for reading", fd)).empty()) return r;
    close(fd);
    if (!(r = ExpectFail("chown by a non-owner", chown(p("public").c_str(), kOtherUid, kOtherGid),
                         EPERM))
             .empty())
      return r;
    if (!(r = ExpectFail("chmod by a non-owner", chmod(p("public").c_str(), 0666), EPERM)).empty())
      return r;
    if (!(r = ExpectFail("chown own file to root", chown(p("theirs").c_str(), 0, 0), EPERM))
             .empty())
      return r;
    if (!(r = ExpectFail("create in a 0755 dir of root",
                         open(p("rootdir/x").c_str(), O_CREAT | O_WRONLY, 0644), EACCES))
             .empty())
      return r;
    if (!(r = ExpectFail("mkdir in a 0755 dir of root", mkdir(p("rootdir/x").c_str(), 0755),
                         EACCES))
             .empty())
      return r;
    if (!(r = ExpectFail("unlink in a 0755 dir of root", unlink(p("public").c_str()), EACCES))
             .empty())
      return r;
    if (!(r = ExpectFail("rename in a 0755 dir of root",
                         rename(p("public").c_str(), p("moved").c_str()), EACCES))
             .empty())
      return r;
    const timespec times[2] = {{1, 0}, {1, 0}};
    if (!(r = ExpectFail("explicit utimensat by a non-owner",
                         utimensat(AT_FDCWD, p("public").c_str(), times, 0), EPERM))
             .empty())
      return r;
    if (!(r = ExpectFail("UTIME_NOW on an unwritable file of root",
                         utimensat(AT_FDCWD, p("public").c_str(), nullptr, 0), EACCES))
             .empty())
      return r;
    if (!(r = ExpectFail("unlink a file of root in a sticky dir", unlink(p("sticky/roots").c_str()),
                         EPERM))
             .empty())
      return r;
    // What the owner may do.
    const int own = open(p("theirs").c_str(), O_RDWR);
    if (!(r = ExpectSuccess("open own 0600 file", own)).empty()) return r;
    close(own);
    if (!(r = ExpectSuccess("chmod own file", chmod(p("theirs").c_str(), 0640))).empty()) return r;
    const int created = open(p("shared/mine").c_str(), O_CREAT | O_WRONLY, 0644);
    if (!(r = ExpectSuccess("create in a 0777 dir", created)).empty()) return r;
    close(created);
    struct stat st {};
    if (stat(p("shared/mine").c_str(), &st) != 0 || st.st_uid != kOtherUid ||
        st.st_gid != kOtherGid) {
      return "a new file is owned by its creator: uid " + std::to_string(st.st_uid);
    }
    return "";
  });
  EXPECT_EQ(message, "");
  EXPECT_EQ(Content(path("public")), "everyone reads");
  EXPECT_EQ(Stat(path("public")).st_mode & 07777, 0644u);
  EXPECT_EQ(Stat(path("theirs")).st_mode & 07777, 0640u);
}

// ---- statfs --------------------------------------------------------------------------------

TEST_F(Posix, Statfs) {
  struct statfs st {};
  ASSERT_OK(statfs(guard().root().c_str(), &st));
  EXPECT_GT(st.f_bsize, 0);
  EXPECT_GT(st.f_blocks, 0u);
  EXPECT_GT(st.f_bavail, 0u);
  EXPECT_LE(st.f_bavail, st.f_blocks);
  EXPECT_GE(st.f_namelen, 255);
  struct statvfs vfs {};
  ASSERT_OK(statvfs(path("").c_str(), &vfs));
  EXPECT_GT(vfs.f_bavail, 0u);
}

// ---- fallocate / SEEK_HOLE / SEEK_DATA ------------------------------------------------------

TEST_F(Posix, Fallocate) {
  const std::string file = path("fa");
  Fd fd(open(file.c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  // Default mode: grows the size, reads zeros.
  ASSERT_OK(fallocate(fd.get(), 0, 0, 1 << 20));
  EXPECT_EQ(Stat(file).st_size, 1 << 20);
  EXPECT_TRUE(AllZero(ReadAt(fd.get(), 1 << 20, 0)));
  // KEEP_SIZE beyond EOF leaves the size.
  ASSERT_OK(fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20));
  EXPECT_EQ(Stat(file).st_size, 1 << 20);
  const std::string data = RandomBytes(3, 1 << 20);
  ASSERT_TRUE(WriteAt(fd.get(), data, 0));
  // Punch a hole: zeros there, the rest intact, the size kept.
  ASSERT_OK(fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100000, 300000));
  EXPECT_EQ(Stat(file).st_size, 1 << 20);
  std::string expected = data;
  std::fill(expected.begin() + 100000, expected.begin() + 400000, '\0');
  EXPECT_TRUE(ReadAt(fd.get(), 1 << 20, 0) == expected) << "punch hole";
  // Zero a range, partly past EOF without KEEP_SIZE: the size grows to its end.
  ASSERT_OK(fallocate(fd.get(), FALLOC_FL_ZERO_RANGE, 900000, 300000));
  EXPECT_EQ(Stat(file).st_size, 1200000);
  expected.resize(1200000, '\0');
  std::fill(expected.begin() + 900000, expected.end(), '\0');
  EXPECT_TRUE(ReadAt(fd.get(), 1200000, 0) == expected) << "zero range";
  // The punched and zeroed ranges accept new data.
  ASSERT_TRUE(WriteAt(fd.get(), "refill", 200000));
  EXPECT_EQ(ReadAt(fd.get(), 6, 200000), "refill");
  // Another descriptor (through the page cache or not) sees the same.
  expected.replace(200000, 6, "refill");
  EXPECT_TRUE(Content(file) == expected);
  EXPECT_ERRNO(fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE, 0, 4096), EOPNOTSUPP);  // needs KEEP_SIZE
  EXPECT_ERRNO(fallocate(fd.get(), 0, 0, 0), EINVAL);
}

// A file with data at [0, 64 KiB) and [kSecond, kSecond + 64 KiB), nothing written between,
// fsynced; the SEEK_DATA/SEEK_HOLE tests start from it.
constexpr off_t kSecond = 4 << 20;
void WriteTwoDataRanges(const std::string& file, Fd* fd) {
  *fd = Fd(open(file.c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd->ok());
  ASSERT_TRUE(WriteAt(fd->get(), RandomBytes(4, 65536), 0));
  ASSERT_TRUE(WriteAt(fd->get(), RandomBytes(5, 65536), kSecond));
  ASSERT_OK(fsync(fd->get()));
}

// The part of SEEK_DATA/SEEK_HOLE every filesystem gives: data from 0, the hole at the end,
// ENXIO past it, and whatever lies between reads as zeros.
TEST_F(Posix, SeekDataAndTheHoleAtTheEnd) {
  Fd fd;
  ASSERT_NO_FATAL_FAILURE(WriteTwoDataRanges(path("sparse"), &fd));
  const off_t size = kSecond + 65536;
  EXPECT_EQ(lseek(fd.get(), 0, SEEK_DATA), 0);
  const off_t hole = lseek(fd.get(), 0, SEEK_HOLE);
  EXPECT_GE(hole, 65536) << "no hole inside the first data";
  EXPECT_LE(hole, size);
  EXPECT_EQ(lseek(fd.get(), kSecond + 100, SEEK_HOLE), size) << "the end of file is a hole";
  EXPECT_ERRNO(lseek(fd.get(), size, SEEK_DATA), ENXIO);
  EXPECT_ERRNO(lseek(fd.get(), size + 1, SEEK_HOLE), ENXIO);
  EXPECT_TRUE(AllZero(ReadAt(fd.get(), kSecond - 65536, 65536)));
}

TEST_F(Posix, SeekHoleAndData) {
  Fd fd;
  ASSERT_NO_FATAL_FAILURE(WriteTwoDataRanges(path("sparse"), &fd));
  const off_t size = kSecond + 65536;
  EXPECT_EQ(lseek(fd.get(), 0, SEEK_DATA), 0);
  const off_t hole = lseek(fd.get(), 0, SEEK_HOLE);
  EXPECT_GE(hole, 65536) << "no hole inside the first data";
  EXPECT_LE(hole, kSecond) << "the hole between the two data ranges is reported";
  const off_t data = lseek(fd.get(), hole, SEEK_DATA);
  EXPECT_GT(data, hole);
  EXPECT_LE(data, kSecond);
  EXPECT_EQ(lseek(fd.get(), kSecond + 100, SEEK_HOLE), size) << "the end of file is a hole";
  EXPECT_ERRNO(lseek(fd.get(), size, SEEK_DATA), ENXIO);
  EXPECT_ERRNO(lseek(fd.get(), size + 1, SEEK_HOLE), ENXIO);
  // Whatever SEEK_HOLE says, the hole reads as zeros.
  EXPECT_TRUE(AllZero(ReadAt(fd.get(), static_cast<std::size_t>(data - hole), hole)));
}

// ---- xattrs --------------------------------------------------------------------------------

TEST_F(Posix, ExtendedAttributes) {
  const std::string file = path("x");
  ASSERT_TRUE(WriteFile(file, "with attributes"));
  const char* f = file.c_str();
  ASSERT_OK(setxattr(f, "user.color", "blue", 4, 0));
  const std::string big = RandomBytes(6, 4000);
  ASSERT_OK(setxattr(f, "user.big", big.data(), big.size(), 0));
  char value[8192];
  EXPECT_EQ(getxattr(f, "user.color", nullptr, 0), 4) << "size query";
  ASSERT_EQ(getxattr(f, "user.color", value, sizeof(value)), 4);
  EXPECT_EQ(std::string(value, 4), "blue");
  ASSERT_EQ(getxattr(f, "user.big", value, sizeof(value)), static_cast<ssize_t>(big.size()));
  EXPECT_TRUE(std::string(value, big.size()) == big);
  EXPECT_ERRNO(getxattr(f, "user.color", value, 2), ERANGE);
  EXPECT_ERRNO(getxattr(f, "user.none", value, sizeof(value)), ENODATA);
  EXPECT_ERRNO(setxattr(f, "user.color", "red", 3, XATTR_CREATE), EEXIST);
  EXPECT_ERRNO(setxattr(f, "user.none", "red", 3, XATTR_REPLACE), ENODATA);
  ASSERT_OK(setxattr(f, "user.color", "red", 3, XATTR_REPLACE));
  ASSERT_EQ(getxattr(f, "user.color", value, sizeof(value)), 3);
  EXPECT_EQ(std::string(value, 3), "red");
  ASSERT_OK(setxattr(f, "user.empty", "", 0, XATTR_CREATE));
  EXPECT_EQ(getxattr(f, "user.empty", value, sizeof(value)), 0);
  char names[4096];
  const ssize_t list_size = listxattr(f, names, sizeof(names));
  ASSERT_GT(list_size, 0);
  std::set<std::string> listed;
  for (ssize_t i = 0; i < list_size; i += static_cast<ssize_t>(std::strlen(names + i)) + 1) {
    listed.insert(names + i);
  }
  EXPECT_EQ(listed.count("user.color"), 1u);
  EXPECT_EQ(listed.count("user.big"), 1u);
  EXPECT_EQ(listed.count("user.empty"), 1u);
  EXPECT_EQ(listxattr(f, nullptr, 0), list_size) << "size query of the list";
  ASSERT_OK(removexattr(f, "user.color"));
  EXPECT_ERRNO(getxattr(f, "user.color", value, sizeof(value)), ENODATA);
  EXPECT_ERRNO(removexattr(f, "user.color"), ENODATA);
  // Attributes on a directory, and through a descriptor.
  ASSERT_OK(mkdir(path("d").c_str(), 0755));
  ASSERT_OK(setxattr(path("d").c_str(), "user.dir", "yes", 3, 0));
  Fd fd(open(file.c_str(), O_RDONLY));
  ASSERT_EQ(fgetxattr(fd.get(), "user.big", value, sizeof(value)),
            static_cast<ssize_t>(big.size()));
  EXPECT_EQ(getxattr(path("d").c_str(), "user.dir", value, sizeof(value)), 3);
  // Setting attributes leaves the contents alone.
  EXPECT_EQ(Content(file), "with attributes");
}

// ---- open-unlinked, large files, holes, mmap -----------------------------------------------

TEST_F(Posix, OpenUnlinkedFileStaysUsable) {
  const std::string file = path("doomed");
  Fd fd(open(file.c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  const std::string first = RandomBytes(7, 300000);
  ASSERT_TRUE(WriteAt(fd.get(), first, 0));
  Fd reader(open(file.c_str(), O_RDONLY));
  ASSERT_OK(unlink(file.c_str()));
  EXPECT_ERRNO(access(file.c_str(), F_OK), ENOENT);
  EXPECT_EQ(ListCounts(guard().root()).size(), 0u);
  struct stat st {};
  ASSERT_OK(fstat(fd.get(), &st));
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_size, 300000);
  // Still readable and writable, through both descriptors.
  const std::string second = RandomBytes(8, 200000);
  ASSERT_TRUE(WriteAt(fd.get(), second, 250000));
  std::string expected = first.substr(0, 250000) + second;
  EXPECT_TRUE(ReadAt(reader.get(), expected.size() + 10, 0) == expected);
  ASSERT_OK(ftruncate(fd.get(), 1000));
  EXPECT_EQ(ReadAt(reader.get(), 2000, 0), expected.substr(0, 1000));
  ASSERT_OK(fsync(fd.get()));
  // A new file of the same name is a different file.
  ASSERT_TRUE(WriteFile(file, "new file"));
  EXPECT_EQ(ReadAt(reader.get(), 2000, 0), expected.substr(0, 1000));
  EXPECT_EQ(Content(file), "new file");
  fd.Reset();
  EXPECT_EQ(ReadAt(reader.get(), 10, 0), expected.substr(0, 10));
}

TEST_F(Posix, FileLargerThan4GiB) {
  const std::string file = path("huge");
  Fd fd(open(file.c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  constexpr off_t kFar = off_t{5} << 30;
  const std::string data = RandomBytes(9, 100000);
  ASSERT_TRUE(WriteAt(fd.get(), data, kFar));
  ASSERT_TRUE(WriteAt(fd.get(), "edge", (off_t{4} << 30) - 2));  // across the 4 GiB line
  EXPECT_EQ(Stat(file).st_size, kFar + 100000);
  EXPECT_TRUE(ReadAt(fd.get(), data.size(), kFar) == data);
  EXPECT_EQ(ReadAt(fd.get(), 4, (off_t{4} << 30) - 2), "edge");
  EXPECT_TRUE(AllZero(ReadAt(fd.get(), 65536, off_t{1} << 30)));
  EXPECT_TRUE(AllZero(ReadAt(fd.get(), 65536, kFar - 65536)));
  EXPECT_EQ(lseek(fd.get(), 0, SEEK_END), kFar + 100000);
  fd.Reset();
  ASSERT_NO_FATAL_FAILURE(Remount());
  Fd again(open(file.c_str(), O_RDONLY));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(Stat(file).st_size, kFar + 100000);
  EXPECT_TRUE(ReadAt(again.get(), data.size(), kFar) == data);
  EXPECT_EQ(ReadAt(again.get(), 4, (off_t{4} << 30) - 2), "edge");
}

TEST_F(Posix, SparseFileStaysSparse) {
  const std::string file = path("huge");
  Fd fd(open(file.c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  constexpr off_t kFar = off_t{5} << 30;
  ASSERT_TRUE(WriteAt(fd.get(), RandomBytes(9, 100000), kFar));
  fd.Reset();
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(Stat(file).st_size, kFar + 100000);
  EXPECT_LT(Stat(file).st_blocks * 512, off_t{1} << 30) << "a sparse file stays sparse";
}

TEST_F(Posix, HolesReadAsZeros) {
  const std::string file = path("holes");
  Fd fd(open(file.c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(WriteAt(fd.get(), "end", 3 << 20));
  ASSERT_TRUE(WriteAt(fd.get(), "mid", 1000001));
  const std::string all = ReadAt(fd.get(), (3 << 20) + 100, 0);
  ASSERT_EQ(all.size(), static_cast<std::size_t>((3 << 20) + 3));
  EXPECT_TRUE(AllZero(std::string_view(all).substr(0, 1000001)));
  EXPECT_EQ(all.substr(1000001, 3), "mid");
  EXPECT_TRUE(AllZero(std::string_view(all).substr(1000004, (3 << 20) - 1000004)));
  EXPECT_EQ(all.substr(3 << 20), "end");
  fd.Reset();
  ASSERT_NO_FATAL_FAILURE(Remount());
  const std::string back = Content(file);
  EXPECT_TRUE(back == all) << "holes survive a remount";
}

// The stored size of a file, from st_blocks.
off_t StoredBytes(const std::string& file) { return Stat(file).st_blocks * 512; }

// Growing a file to 1 TiB stores nothing: it is quick, `du` sees (almost) nothing, reads
// anywhere give zeros, and SEEK_DATA finds no data; after a remount too.
TEST_F(Posix, TebibyteTruncateIsAHole) {
  constexpr off_t kTiB = off_t{1} << 40;
  const std::string file = path("tib");
  Fd fd(open(file.c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  const auto start = std::chrono::steady_clock::now();
  ASSERT_OK(ftruncate(fd.get(), kTiB));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::seconds(5)) << "growth costs metadata, not data";
  EXPECT_EQ(Stat(file).st_size, kTiB);
  EXPECT_LT(StoredBytes(file), 64 << 10) << "a hole stores nothing";
  for (int i = 0; i < 16; ++i) {
    const off_t at = (kTiB / 16) * i + 4096 * (i * 7919 % 1000);
    EXPECT_TRUE(AllZero(ReadAt(fd.get(), 65536, at))) << at;
  }
  EXPECT_ERRNO(lseek(fd.get(), 0, SEEK_DATA), ENXIO);
  EXPECT_EQ(lseek(fd.get(), 12345, SEEK_HOLE), 12345);
  // truncate(2) by path grows it further, still as a hole.
  ASSERT_OK(truncate(file.c_str(), 2 * kTiB));
  EXPECT_EQ(Stat(file).st_size, 2 * kTiB);
  fd.Reset();
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(Stat(file).st_size, 2 * kTiB);
  EXPECT_LT(StoredBytes(file), 64 << 10);
  Fd again(open(file.c_str(), O_RDONLY));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(AllZero(ReadAt(again.get(), 1 << 20, kTiB + 123456789)));
}

// Writes in the middle of a big hole store only themselves, split the hole, and read back;
// SEEK_DATA and SEEK_HOLE report where they are; all of it survives a remount.
TEST_F(Posix, WriteInTheMiddleOfAHole) {
  constexpr off_t kSize = off_t{64} << 30;
  constexpr off_t kAt = off_t{40} << 30;
  const std::string file = path("middle");
  Fd fd(open(file.c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  ASSERT_OK(ftruncate(fd.get(), kSize));
  const std::string data = RandomBytes(50, 256 << 10);
  ASSERT_TRUE(WriteAt(fd.get(), data, kAt));
  // Seen before and after the flush.
  EXPECT_TRUE(ReadAt(fd.get(), data.size(), kAt) == data);
  ASSERT_OK(fsync(fd.get()));
  auto check = [&](int descriptor) {
    EXPECT_EQ(Stat(file).st_size, kSize);
    EXPECT_TRUE(ReadAt(descriptor, data.size(), kAt) == data);
    EXPECT_TRUE(AllZero(ReadAt(descriptor, 65536, kAt - 65536)));
    EXPECT_TRUE(AllZero(ReadAt(descriptor, 65536, kAt + static_cast<off_t>(data.size()))));
    EXPECT_GE(StoredBytes(file), static_cast<off_t>(data.size()));
    EXPECT_LT(StoredBytes(file), static_cast<off_t>(data.size()) + (1 << 20));
    EXPECT_EQ(lseek(descriptor, 0, SEEK_DATA), kAt);
    EXPECT_EQ(lseek(descriptor, 0, SEEK_HOLE), 0);
    EXPECT_EQ(lseek(descriptor, kAt, SEEK_HOLE), kAt + static_cast<off_t>(data.size()));
    EXPECT_ERRNO(lseek(descriptor, kAt + static_cast<off_t>(data.size()), SEEK_DATA), ENXIO);
  };
  check(fd.get());
  fd.Reset();
  ASSERT_NO_FATAL_FAILURE(Remount());
  Fd again(open(file.c_str(), O_RDONLY));
  ASSERT_TRUE(again.ok());
  check(again.get());
}

// Punching a hole in the middle of data: SEEK_HOLE and SEEK_DATA find its edges, the data
// around it is intact, `du` drops by its size, and zero range does the same; after a remount
// too.
TEST_F(Posix, PunchHoleThenSeek) {
  constexpr off_t kMiB = 1 << 20;
  const std::string file = path("punched");
  const std::string data = RandomBytes(51, 8 << 20);
  ASSERT_TRUE(WriteFile(file, data));
  Fd fd(open(file.c_str(), O_RDWR));
  ASSERT_TRUE(fd.ok());
  const off_t dense = StoredBytes(file);
  EXPECT_GE(dense, static_cast<off_t>(data.size()));
  ASSERT_OK(fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * kMiB, 2 * kMiB));
  ASSERT_OK(fallocate(fd.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 6 * kMiB, kMiB));
  std::string expected = data;
  std::fill(expected.begin() + 2 * kMiB, expected.begin() + 4 * kMiB, '\0');
  std::fill(expected.begin() + 6 * kMiB, expected.begin() + 7 * kMiB, '\0');
  auto check = [&](int descriptor) {
    EXPECT_EQ(Stat(file).st_size, static_cast<off_t>(data.size()));
    EXPECT_TRUE(ReadAt(descriptor, data.size(), 0) == expected);
    EXPECT_EQ(lseek(descriptor, 0, SEEK_DATA), 0);
    EXPECT_EQ(lseek(descriptor, 0, SEEK_HOLE), 2 * kMiB);
    EXPECT_EQ(lseek(descriptor, 2 * kMiB, SEEK_DATA), 4 * kMiB);
    EXPECT_EQ(lseek(descriptor, 3 * kMiB, SEEK_DATA), 4 * kMiB);
    EXPECT_EQ(lseek(descriptor, 4 * kMiB, SEEK_HOLE), 6 * kMiB);
    EXPECT_EQ(lseek(descriptor, 6 * kMiB, SEEK_DATA), 7 * kMiB);
    EXPECT_EQ(lseek(descriptor, 7 * kMiB, SEEK_HOLE), 8 * kMiB) << "the hole at the end";
    const off_t stored = StoredBytes(file);
    EXPECT_LE(stored, dense - 3 * kMiB + 256 * 1024) << "the holes store nothing";
    EXPECT_GE(stored, 5 * kMiB);
  };
  check(fd.get());
  fd.Reset();
  ASSERT_NO_FATAL_FAILURE(Remount());
  Fd again(open(file.c_str(), O_RDONLY));
  ASSERT_TRUE(again.ok());
  check(again.get());
}

// `cp --sparse=always` writes runs of zeros as holes (lseek past them, or punch) and copies a
// sparse file by SEEK_DATA/SEEK_HOLE: the copy is as sparse as the original and reads the same.
TEST_F(Posix, SparseCopyWithCp) {
  const std::string source = path("source");
  const std::string copy = path("copy");
  const std::string zeros_copy = path("zeros_copy");
  constexpr off_t kData = off_t{3} << 30;
  const std::string data = RandomBytes(52, 1 << 20);
  Fd fd(open(source.c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  ASSERT_OK(ftruncate(fd.get(), off_t{8} << 30));
  ASSERT_TRUE(WriteAt(fd.get(), data, kData));
  fd.Reset();
  const std::string dense = path("dense");
  std::string with_zeros = RandomBytes(53, 1 << 20) + std::string(32 << 20, '\0');
  ASSERT_TRUE(WriteFile(dense, with_zeros + RandomBytes(54, 1 << 20)));
  for (const auto& [from, to] : {std::pair{source, copy}, std::pair{dense, zeros_copy}}) {
    const std::string command = "cp --sparse=always '" + from + "' '" + to + "'";
    const auto start = std::chrono::steady_clock::now();
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30))
        << command << ": cp skips holes by SEEK_DATA instead of reading 8 GiB of zeros";
    EXPECT_EQ(Stat(to).st_size, Stat(from).st_size);
  }
  // The 8 GiB copy: its data where it was, zeros around it (reading all of it would take
  // minutes: holes are zeros sent through FUSE).
  Fd copied_sparse(open(copy.c_str(), O_RDONLY));
  ASSERT_TRUE(copied_sparse.ok());
  EXPECT_TRUE(ReadAt(copied_sparse.get(), data.size(), kData) == data);
  EXPECT_TRUE(AllZero(ReadAt(copied_sparse.get(), 1 << 20, kData - (1 << 20))));
  EXPECT_TRUE(AllZero(ReadAt(copied_sparse.get(), 1 << 20, kData + (1 << 20))));
  EXPECT_EQ(lseek(copied_sparse.get(), 0, SEEK_DATA), kData);
  EXPECT_TRUE(Content(zeros_copy) == Content(dense));
  EXPECT_LT(StoredBytes(copy), 4 << 20) << "8 GiB with 1 MiB of data";
  EXPECT_LT(StoredBytes(zeros_copy), 8 << 20) << "the 32 MiB of zeros became a hole";
  Fd copied(open(zeros_copy.c_str(), O_RDONLY));
  ASSERT_TRUE(copied.ok());
  const off_t hole = lseek(copied.get(), 0, SEEK_HOLE);
  EXPECT_GE(hole, 1 << 20);
  EXPECT_LT(hole, 2 << 20);
}

TEST_F(Posix, MmapSharedReadWrite) {
  const std::string file = path("mapped");
  constexpr std::size_t kSize = 256 * 1024 + 100;  // not a page multiple
  const std::string initial = RandomBytes(10, kSize);
  ASSERT_TRUE(WriteFile(file, initial));
  Fd fd(open(file.c_str(), O_RDWR));
  ASSERT_TRUE(fd.ok());
  void* map = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(map, MAP_FAILED) << std::strerror(errno);
  char* bytes = static_cast<char*>(map);
  EXPECT_TRUE(std::string(bytes, kSize) == initial) << "mmap read";
  // Writes through the map reach read() after msync, and writes through write() reach the map.
  const std::string stamp = RandomBytes(11, 50000);
  std::memcpy(bytes + 70000, stamp.data(), stamp.size());
  std::memcpy(bytes + kSize - 50, "tail-of-the-file", 16);
  ASSERT_OK(msync(map, kSize, MS_SYNC));
  std::string expected = initial;
  expected.replace(70000, stamp.size(), stamp);
  expected.replace(kSize - 50, 16, "tail-of-the-file");
  EXPECT_TRUE(ReadAt(fd.get(), kSize, 0) == expected) << "read after msync";
  ASSERT_TRUE(WriteAt(fd.get(), "via-pwrite", 10));
  EXPECT_EQ(std::string(bytes + 10, 10), "via-pwrite") << "the map sees a write";
  expected.replace(10, 10, "via-pwrite");
  // The bytes of the last page past EOF read as zero in the map.
  EXPECT_EQ(Stat(file).st_size, static_cast<off_t>(kSize));
  ASSERT_OK(munmap(map, kSize));
  fd.Reset();
  EXPECT_TRUE(Content(file) == expected);
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_TRUE(Content(file) == expected) << "mmap writes survive a remount";
  // A private map never writes back.
  Fd fd2(open(file.c_str(), O_RDONLY));
  void* priv = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd2.get(), 0);
  ASSERT_NE(priv, MAP_FAILED);
  std::memset(priv, 'P', 4096);
  ASSERT_OK(munmap(priv, kSize));
  EXPECT_TRUE(Content(file) == expected);
}

// ---- caches never stale --------------------------------------------------------------------

// Changes through one name are seen at once through a hard link, even right after the other
// name's attributes were read (and so cached by the kernel).
TEST_F(Posix, AttributesFreshThroughAnotherName) {
  const std::string a = path("a");
  const std::string b = path("sub/b");
  ASSERT_OK(mkdir(path("sub").c_str(), 0755));
  ASSERT_TRUE(WriteFile(a, "12345"));
  ASSERT_OK(link(a.c_str(), b.c_str()));
  EXPECT_EQ(Stat(b).st_size, 5);
  Fd fd(open(a.c_str(), O_WRONLY | O_APPEND));
  ASSERT_EQ(write(fd.get(), "6789", 4), 4);
  EXPECT_EQ(Stat(b).st_size, 9) << "size through the other name";
  EXPECT_EQ(Content(b), "123456789") << "data through the other name";
  (void)Stat(b);
  ASSERT_OK(chmod(a.c_str(), 0606));
  EXPECT_EQ(Stat(b).st_mode & 07777, 0606u) << "mode";
  (void)Stat(b);
  ASSERT_OK(chown(a.c_str(), 4321, 8765));
  EXPECT_EQ(Stat(b).st_uid, 4321u) << "owner";
  EXPECT_EQ(Stat(b).st_gid, 8765u) << "group";
  (void)Stat(b);
  const timespec times[2] = {{1111111111, 1}, {1222222222, 2}};
  ASSERT_OK(utimensat(AT_FDCWD, a.c_str(), times, 0));
  EXPECT_EQ(Stat(b).st_mtim.tv_sec, 1222222222) << "mtime";
  EXPECT_EQ(Stat(b).st_mtim.tv_nsec, 2);
  EXPECT_EQ(Stat(b).st_atim.tv_sec, 1111111111) << "atime";
  (void)Stat(b);
  const struct stat before_link = Stat(b);
  std::this_thread::sleep_for(kClockTick);
  ASSERT_OK(link(a.c_str(), path("c").c_str()));
  EXPECT_EQ(Stat(b).st_nlink, 3u) << "nlink after link";
  EXPECT_GT(Nanos(Stat(b).st_ctim), Nanos(before_link.st_ctim)) << "ctime after link";
  ASSERT_OK(unlink(path("c").c_str()));
  EXPECT_EQ(Stat(b).st_nlink, 2u) << "nlink after unlink";
  ASSERT_OK(unlink(a.c_str()));
  EXPECT_EQ(Stat(b).st_nlink, 1u) << "nlink after unlinking the first name";
  ASSERT_OK(fd.get() >= 0 ? ftruncate(fd.get(), 2) : -1);
  EXPECT_EQ(Stat(b).st_size, 2) << "size after ftruncate through an unlinked name's fd";
  Fd fd_b(open(b.c_str(), O_RDWR));
  ASSERT_TRUE(WriteAt(fd_b.get(), "xyz", 10));
  struct stat through_fd {};
  ASSERT_OK(fstat(fd.get(), &through_fd));
  EXPECT_EQ(through_fd.st_size, 13) << "fstat of the other descriptor";
  // And through a rename of a directory: the entry cache follows.
  ASSERT_OK(rename(path("sub").c_str(), path("moved").c_str()));
  EXPECT_ERRNO(access(b.c_str(), F_OK), ENOENT);
  EXPECT_EQ(Stat(path("moved/b")).st_size, 13);
}

// The mount serves over the transport the run asked for, and `cascadefs status --json` says
// which (CFS_MOUNT_TRANSPORT; the io-uring runs never fall back silently).
TEST_F(Posix, StatusReportsTheTransport) {
  if (native()) GTEST_SKIP() << "no daemon on the native target";
  std::string output;
  const int rc = RunProgram({std::getenv("CFS_CASCADEFS_BIN"), "status", guard().root(), "--json"},
                            "", &output, 60);
  ASSERT_EQ(rc, 0) << output;
  EXPECT_NE(output.find("\"transport\":\"" + TransportFromEnv() + "\""), std::string::npos)
      << output;
}

// As root the daemon raises the mount's read-ahead to 1 MiB (docs/fusefs.md, "Read-ahead"):
// `cascadefs status` says so, and so does the kernel's bdi for the mount's device.
TEST_F(Posix, MountRaisesTheKernelsReadAhead) {
  if (native()) GTEST_SKIP() << "no daemon on the native target";
  if (geteuid() != 0) GTEST_SKIP() << "only root may set a bdi's read-ahead";
  // The mount answers before the daemon has finished starting (the fixture waits only for the
  // mount); the control socket opens once it has, read-ahead set.
  std::string output;
  int rc = -1;
  for (int attempt = 0; attempt < 100; ++attempt) {
    rc = RunProgram({std::getenv("CFS_CASCADEFS_BIN"), "status", guard().root(), "--json"}, "",
                    &output, 60);
    if (rc == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(rc, 0) << output;
  EXPECT_NE(output.find("\"read_ahead_kb\":1024"), std::string::npos) << output;
  const struct stat mounted = Stat(guard().root());
  const std::string bdi = "/sys/class/bdi/" + std::to_string(major(mounted.st_dev)) + ":" +
                          std::to_string(minor(mounted.st_dev)) + "/read_ahead_kb";
  std::string value;
  ASSERT_TRUE(ReadFile(bdi, &value)) << bdi << ": " << std::strerror(errno);
  EXPECT_EQ(value, "1024\n") << bdi << "\n" << guard().LogTail();
}

// ---- persistence ---------------------------------------------------------------------------

// A tree of every kind of object keeps everything across a remount (native: no remount).
TEST_F(Posix, RemountKeepsEverything) {
  ASSERT_OK(mkdir(path("dir").c_str(), 0750));
  ASSERT_OK(mkdir(path("dir/nested").c_str(), 0700));
  const std::vector<std::size_t> sizes = {0, 1, 4095, 4096, 4097, 65536, 1000003, 3 << 20};
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_TRUE(WriteFile(path("dir/f" + std::to_string(i)), RandomBytes(20 + i, sizes[i])));
  }
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "line " + std::to_string(i) + " of a text file\n";
  ASSERT_TRUE(WriteFile(path("dir/nested/text.txt"), text));
  Fd sparse(open(path("sparse").c_str(), O_CREAT | O_WRONLY, 0644));
  ASSERT_TRUE(WriteAt(sparse.get(), "far", 10 << 20));
  sparse.Reset();
  ASSERT_OK(symlink("dir/f1", path("link").c_str()));
  ASSERT_OK(link(path("dir/f2").c_str(), path("hard").c_str()));
  ASSERT_OK(setxattr(path("dir/f3").c_str(), "user.k", "v", 1, 0));
  ASSERT_OK(chmod(path("dir/f4").c_str(), 0604));
  ASSERT_OK(chown(path("dir/f5").c_str(), 1000, 2000));
  const timespec times[2] = {{1500000000, 1}, {1600000000, 2}};
  ASSERT_OK(utimensat(AT_FDCWD, path("dir/f6").c_str(), times, 0));
  std::map<std::string, std::string> before, after;
  std::string error;
  ASSERT_TRUE(SnapshotTree(guard().root(), &before, &error)) << error;
  ASSERT_EQ(before.size(), 14u);
  ASSERT_NO_FATAL_FAILURE(Remount());
  ASSERT_TRUE(SnapshotTree(guard().root(), &after, &error)) << error;
  EXPECT_EQ(DiffSnapshots(before, after, 20), "");
  EXPECT_TRUE(Content(path("dir/nested/text.txt")) == text);
}

// With the writeback cache the kernel owns a file's mtime and ctime: background writeback
// (here syncfs's first pass) sends the cached data and then the times without waiting, so a
// WRITE flagged FUSE_WRITE_CACHE can reach the daemon after the SETATTR that carries the times,
// and must not move them. What stat shows before a remount is what it shows after.
TEST_F(Posix, TimesOfCachedWritesSurviveRemount) {
  constexpr int kFiles = 16;
  std::vector<Fd> files;
  for (int i = 0; i < kFiles; ++i) {
    files.emplace_back(open(path("f" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644));
    ASSERT_GE(files.back().get(), 0);
    ASSERT_TRUE(WriteAt(files.back().get(), RandomBytes(40 + i, 300000), 0));
  }
  std::this_thread::sleep_for(kClockTick);
  ASSERT_OK(syncfs(files.front().get()));
  std::vector<struct stat> before;
  for (int i = 0; i < kFiles; ++i) before.push_back(Stat(path("f" + std::to_string(i))));
  files.clear();
  ASSERT_NO_FATAL_FAILURE(Remount());
  for (int i = 0; i < kFiles; ++i) {
    const struct stat after = Stat(path("f" + std::to_string(i)));
    EXPECT_EQ(Nanos(after.st_mtim), Nanos(before[i].st_mtim)) << "mtime of file " << i;
    EXPECT_EQ(after.st_size, 300000) << "file " << i;
  }
}

}  // namespace
}  // namespace cascadefs::mounttest
