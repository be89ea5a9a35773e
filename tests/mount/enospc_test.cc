// enospc_test.cc: a full store gives ENOSPC, loses nothing already written, and lets the user
// delete files to make room.
//
// Goal: the full-disk contract of the daemon. Method: the store lives on a small ext4 image
// (kImageBytes) loop-mounted for the test (root only; a refused loop mount skips with the
// reason). Files of kFileBytes incompressible, distinct bytes (neither compression nor dedup
// can shrink them) are written and fsync'd one after another until a write, fsync or close
// fails; that error must be ENOSPC, and it must come before twice the image's size was
// written. Then the partial file and two complete ones are deleted, and a new file must be
// written and fsync'd (retrying for kRoomWaitS: the daemon may reclaim space in the
// background). Every complete file must read back byte for byte, before and after a remount.
// On the native target the test directory itself sits on the image.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mount/mount_fixture.h"

namespace cascadefs::mounttest {
namespace {

constexpr std::uint64_t kImageBytes = 128u << 20;
constexpr std::size_t kFileBytes = 4u << 20;
constexpr std::size_t kWriteBytes = 1u << 20;
constexpr int kRoomWaitS = 30;

class Enospc : public MountedFs {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the loop-mounted store needs root";
    char pattern[] = "/var/tmp/cfs-enospc-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr) << std::strerror(errno);
    loop_dir_ = pattern;
    chmod(loop_dir_.c_str(), 0755);
    const std::string image = loop_dir_ + "/store.img";
    store_ = loop_dir_ + "/store";
    ASSERT_EQ(mkdir(store_.c_str(), 0755), 0);
    std::string output;
    if (RunProgram({"truncate", "-s", std::to_string(kImageBytes), image}, "", &output, 60) != 0 ||
        RunProgram({"mkfs.ext4", "-q", "-F", image}, "", &output, 120) != 0) {
      GTEST_SKIP() << "cannot make an ext4 image: " << Tail(output, 2);
    }
    if (RunProgram({"mount", "-o", "loop", image, store_}, "", &output, 60) != 0) {
      GTEST_SKIP() << "loop mount refused here: " << Tail(output, 2);
    }
    loop_mounted_ = true;
    MountedFs::SetUp();
  }
  void TearDown() override {
    MountedFs::TearDown();
    if (loop_mounted_) {
      std::string output;
      EXPECT_EQ(RunProgram({"umount", store_}, "", &output, 60), 0) << output;
    }
    if (!loop_dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(loop_dir_, ec);
    }
  }
  MountGuardOptions Options() override { return {.store_dir = store_}; }

  std::string loop_dir_;
  std::string store_;
  bool loop_mounted_ = false;
};

// Writes `data` to a new file and fsyncs it; returns 0 or the errno of the first failure.
int WriteDurably(const std::string& path, const std::string& data) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return errno;
  int err = 0;
  for (std::size_t done = 0; done < data.size() && err == 0;) {
    const ssize_t n = write(fd, data.data() + done, std::min(kWriteBytes, data.size() - done));
    if (n < 0) err = errno;
    if (n == 0) err = EIO;
    if (n > 0) done += static_cast<std::size_t>(n);
  }
  if (err == 0 && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && err == 0) err = errno;
  return err;
}

TEST_F(Enospc, FullStoreThenDeleteMakesRoom) {
  std::vector<std::string> complete;
  int err = 0;
  std::uint64_t written = 0;
  int index = 0;
  for (; written < 2 * kImageBytes; ++index) {
    const std::string name = "f" + std::to_string(index);
    err = WriteDurably(path(name), RandomBytes(1000 + index, kFileBytes));
    if (err != 0) break;
    complete.push_back(name);
    written += kFileBytes;
  }
  ASSERT_NE(err, 0) << "no error after writing " << written << " bytes into a " << kImageBytes
                    << "-byte store";
  EXPECT_EQ(err, ENOSPC) << "a full store fails the writer with " << std::strerror(err);
  ASSERT_GE(complete.size(), 3u) << "the store filled before three files fit";
  std::printf("ENOSPC after %zu complete files (%llu MiB)\n", complete.size(),
              static_cast<unsigned long long>(written >> 20));
  // Make room: the partial file (there is none when its create was refused) and two
  // complete ones.
  if (unlink(path("f" + std::to_string(index)).c_str()) != 0) {
    EXPECT_EQ(errno, ENOENT) << std::strerror(errno);
  }
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(unlink(path(complete.back()).c_str()), 0) << std::strerror(errno);
    complete.pop_back();
  }
  const int dir_fd = open(guard().root().c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dir_fd, 0);
  EXPECT_EQ(syncfs(dir_fd), 0) << std::strerror(errno);
  close(dir_fd);
  const std::string fresh = RandomBytes(99, kWriteBytes);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kRoomWaitS);
  int retry_err = 0;
  while ((retry_err = WriteDurably(path("after"), fresh)) != 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  EXPECT_EQ(retry_err, 0) << "no room after deleting files: " << std::strerror(retry_err);
  auto verify = [&](const char* when) {
    for (const std::string& name : complete) {
      std::string data;
      ASSERT_TRUE(ReadFile(path(name), &data))
          << when << ": " << name << ": " << std::strerror(errno);
      const int i = std::stoi(name.substr(1));
      EXPECT_TRUE(data == RandomBytes(1000 + i, kFileBytes)) << when << ": " << name << " differs";
    }
    std::string data;
    if (retry_err == 0) {
      ASSERT_TRUE(ReadFile(path("after"), &data));
      EXPECT_TRUE(data == fresh) << when << ": the file written after making room differs";
    }
  };
  verify("before remount");
  ASSERT_NO_FATAL_FAILURE(Remount());
  verify("after remount");
}

}  // namespace
}  // namespace cascadefs::mounttest
