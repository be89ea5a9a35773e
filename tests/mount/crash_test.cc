// crash_test.cc: kill -9 of the daemon in the middle of a write storm; every fsync'd file must
// come back intact.
//
// Goal: the durability contract (docs/fusefs.md): after fsync, fdatasync, or a rename followed
// by fsync of the directory returns, a kill -9 of the daemon loses nothing of it, and the store
// mounts again. Method: kWriters forked processes write new files of random sizes as fast as
// they can, each made durable one of three ways (fsync; fdatasync; write to a temporary name,
// fsync, rename, fsync the directory) or not at all (a quarter of them). After the durable
// call returns, the writer appends "name size checksum" to its log on the native disk (which
// the daemon's death cannot touch). Once the logs hold kRecordsBeforeKill records, the daemon
// gets SIGKILL while the writers are still writing; the writers are killed next, the dead mount
// is lazily unmounted and the store mounted again. Every logged file must then be at its name
// with its size and contents; a clean remount afterwards must keep them too. Skipped on the
// native target (there is no daemon to kill). The seed: CFS_TEST_SEED.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mount/mount_fixture.h"

namespace cascadefs::mounttest {
namespace {

constexpr int kWriters = 2;
constexpr int kRecordsBeforeKill = 40;
constexpr int kStormWaitS = 120;  // bound on waiting for those records
constexpr std::size_t kFileBytesMax = 768 * 1024;

bool WriteAll(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n =
        write(fd, data.data() + done, std::min<std::size_t>(data.size() - done, 128 * 1024));
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// The writer loop of one process; returns only on an error (the mount died).
void Writer(const std::string& dir, const std::string& log_path, std::uint64_t seed) {
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (log_fd < 0) _exit(3);
  std::uint64_t state = seed * 0x9E3779B97F4A7C15ULL | 1;
  auto next = [&] {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1DULL;
  };
  const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd < 0) _exit(4);
  for (std::uint64_t i = 0;; ++i) {
    const std::string name = "f" + std::to_string(i);
    const std::string data = RandomBytes(next(), 1 + next() % kFileBytesMax);
    const int how = static_cast<int>(next() % 4);  // 0 fsync, 1 fdatasync, 2 rename, 3 none
    const std::string write_name = how == 2 ? name + ".tmp" : name;
    const int fd = open((dir + "/" + write_name).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || !WriteAll(fd, data)) _exit(5);
    bool durable = false;
    if (how == 0) durable = fsync(fd) == 0;
    if (how == 1) durable = fdatasync(fd) == 0;
    if (how == 2) {
      durable = fsync(fd) == 0 &&
                rename((dir + "/" + write_name).c_str(), (dir + "/" + name).c_str()) == 0 &&
                fsync(dir_fd) == 0;
    }
    if (close(fd) != 0 && how != 3) _exit(6);
    if (how != 3 && !durable) _exit(7);
    if (durable) {
      const std::string line =
          name + " " + std::to_string(data.size()) + " " + std::to_string(Checksum(data)) + "\n";
      if (write(log_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(8);
    }
  }
}

int CountLines(const std::string& path) {
  std::ifstream in(path);
  int lines = 0;
  std::string line;
  while (std::getline(in, line)) lines++;
  return lines;
}

class Crash : public MountedFs {};

TEST_F(Crash, KillDuringWriteStormKeepsFsyncedFiles) {
  if (native()) GTEST_SKIP() << "kill -9 of the daemon: no daemon on the native target";
  const std::uint64_t seed = TestSeed();
  SCOPED_TRACE("CFS_TEST_SEED=" + std::to_string(seed));
  std::vector<pid_t> writers;
  std::vector<std::string> logs;
  for (int w = 0; w < kWriters; ++w) {
    const std::string dir = path("w" + std::to_string(w));
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    logs.push_back(guard().temp_dir() + "/durable" + std::to_string(w) + ".log");
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      Writer(dir, logs.back(), seed + static_cast<std::uint64_t>(w));
      _exit(0);
    }
    writers.push_back(pid);
  }
  auto kill_writers = [&] {
    for (const pid_t pid : writers) kill(pid, SIGKILL);
    for (const pid_t pid : writers) waitpid(pid, nullptr, 0);
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kStormWaitS);
  int records = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    records = 0;
    for (const std::string& log : logs) records += CountLines(log);
    if (records >= kRecordsBeforeKill) break;
    int status = 0;
    for (const pid_t pid : writers) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        kill_writers();
        FAIL() << "a writer died before the kill (" << status << "): the mount failed it";
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (records < kRecordsBeforeKill) {
    kill_writers();
    FAIL() << "only " << records << " durable files in " << kStormWaitS << " s";
  }
  // Let the storm run on a little past the threshold, so the kill lands at a random point.
  std::this_thread::sleep_for(std::chrono::milliseconds(seed % 300));
  ASSERT_NO_FATAL_FAILURE(KillDaemon(kill_writers));

  auto check = [&](const char* when) {
    int checked = 0;
    for (int w = 0; w < kWriters; ++w) {
      std::ifstream log(logs[w]);
      std::string line;
      while (std::getline(log, line)) {
        std::istringstream fields(line);
        std::string name;
        std::size_t size = 0;
        std::uint64_t checksum = 0;
        if (!(fields >> name >> size >> checksum)) continue;  // a torn last line
        const std::string file = path("w" + std::to_string(w) + "/" + name);
        std::string data;
        if (!ReadFile(file, &data)) {
          ADD_FAILURE() << when << ": fsync'd file " << file
                        << " unreadable: " << std::strerror(errno);
        } else if (data.size() != size || Checksum(data) != checksum) {
          ADD_FAILURE() << when << ": fsync'd file " << file << " holds " << data.size()
                        << " bytes, expected " << size
                        << (data.size() == size ? " (contents differ)" : "");
        }
        checked++;
      }
    }
    return checked;
  };
  const int checked = check("after kill -9 and remount");
  EXPECT_GE(checked, kRecordsBeforeKill);
  // Everything left in the tree (durable or not) must at least be readable.
  std::map<std::string, std::string> snapshot;
  std::string error;
  EXPECT_TRUE(SnapshotTree(guard().root(), &snapshot, &error)) << error;
  ASSERT_NO_FATAL_FAILURE(Remount());
  check("after a clean remount");
}

// An unmount by someone else (umount -l) while processes keep the daemon busy with lookups,
// reads, creates and unlinks: every process ends (none hangs on a request the daemon never
// answers), the daemon exits cleanly, and the store mounts again with what was fsync'd.
TEST_F(Crash, UnmountWhileRequestsAreInFlight) {
  if (native()) GTEST_SKIP() << "no daemon on the native target";
  const std::string kept = RandomBytes(77, 300000);
  {
    const int fd = open(path("kept").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(WriteAll(fd, kept));
    ASSERT_EQ(fsync(fd), 0);
    ASSERT_EQ(close(fd), 0);
  }
  constexpr int kBusyProcesses = 4;
  std::vector<pid_t> busy;
  for (int p = 0; p < kBusyProcesses; ++p) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Until the mount is gone: the first failure ends the loop.
      const std::string mine = path("busy" + std::to_string(p));
      std::string buffer(65536, '\0');
      for (;;) {
        struct stat st {};
        if (stat(path("kept").c_str(), &st) != 0) _exit(0);
        const int fd = open(mine.c_str(), O_RDWR | O_CREAT, 0644);
        if (fd < 0) _exit(0);
        if (pwrite(fd, buffer.data(), buffer.size(), 0) < 0 ||
            pread(fd, buffer.data(), buffer.size(), 0) < 0) {
          close(fd);
          _exit(0);
        }
        close(fd);
        if (unlink(mine.c_str()) != 0) _exit(0);
      }
    }
    busy.push_back(pid);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(umount2(guard().root().c_str(), MNT_DETACH), 0) << std::strerror(errno);
  // Every busy process ends on its own; one that is stuck after the wait is a hang.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::vector<pid_t> stuck;
  for (const pid_t pid : busy) {
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        stuck.push_back(pid);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  EXPECT_TRUE(stuck.empty()) << stuck.size() << " processes hung after the unmount";
  EXPECT_EQ(guard().WaitDaemonAfterExternalUnmount(), "");
  ASSERT_EQ(guard().Mount(), "");
  std::string back;
  ASSERT_TRUE(ReadFile(path("kept"), &back));
  EXPECT_TRUE(back == kept) << "the fsync'd file changed across the unmount";
}

}  // namespace
}  // namespace cascadefs::mounttest
