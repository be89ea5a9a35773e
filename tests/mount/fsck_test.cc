// fsck_test.cc: `cascadefs fsck` and `cascadefs inspect` on stores made through a real mount.
// A healthy store checks clean; a mounted store is refused; a changed byte of a file's data on
// disk is found and named (exit 4), and the file then reads as EIO through the mount while
// other files read back unchanged.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "mount/mount_fixture.h"

namespace cascadefs::mounttest {
namespace {

namespace fs = std::filesystem;

class Fsck : public MountedFs {
 protected:
  // Runs the cascadefs binary; returns its exit status, output in *out.
  int Cascadefs(const std::vector<std::string>& args, std::string* out) {
    std::vector<std::string> argv = {std::getenv("CFS_CASCADEFS_BIN")};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv, "", out, 300);
  }
  void Unmount() { ASSERT_EQ(guard().Unmount(), "") << guard().LogTail(); }
  void Mount() { ASSERT_EQ(guard().Mount(), "") << guard().LogTail(); }
};

TEST_F(Fsck, HealthyStoreIsCleanAndAMountedOneIsRefused) {
  if (native()) GTEST_SKIP() << "fsck checks cascadefs stores";
  ASSERT_TRUE(WriteFile(path("data.bin"), RandomBytes(7, 3 << 20)));
  std::string text;
  for (int i = 0; i < 5000; ++i) text += "line " + std::to_string(i) + "\n";
  ASSERT_TRUE(WriteFile(path("text.txt"), text));
  std::string out;
  EXPECT_EQ(Cascadefs({"fsck", guard().store_dir()}, &out), 8) << out;
  EXPECT_NE(out.find("in use"), std::string::npos) << out;
  ASSERT_NO_FATAL_FAILURE(Unmount());
  EXPECT_EQ(Cascadefs({"fsck", guard().store_dir()}, &out), 0) << out;
  EXPECT_NE(out.find("0 errors"), std::string::npos) << out;
  EXPECT_EQ(Cascadefs({"fsck", "--json", guard().store_dir()}, &out), 0) << out;
  EXPECT_NE(out.find("\"errors\":0"), std::string::npos) << out;
  EXPECT_EQ(Cascadefs({"inspect", guard().store_dir(), "summary", "--json"}, &out), 0) << out;
  EXPECT_NE(out.find("\"sst_files\":"), std::string::npos) << out;
  EXPECT_EQ(Cascadefs({"inspect", guard().store_dir(), "levels"}, &out), 0) << out;
  EXPECT_EQ(Cascadefs({"fsck", guard().temp_dir() + "/no-store"}, &out), 8) << out;
  ASSERT_NO_FATAL_FAILURE(Mount());
}

TEST_F(Fsck, AChangedByteOfFileDataIsFoundAndTheFileReadsAsAnError) {
  if (native()) GTEST_SKIP() << "fsck checks cascadefs stores";
  const std::string victim = RandomBytes(11, 1 << 20);  // incompressible: stored raw
  const std::string other = RandomBytes(12, 1 << 20);
  ASSERT_TRUE(WriteFile(path("victim.bin"), victim));
  ASSERT_TRUE(WriteFile(path("other.bin"), other));
  ASSERT_NO_FATAL_FAILURE(Unmount());
  // Find 64 bytes of the victim's data in a live store file (an SST or value log; a WAL
  // segment may hold stale copies the store no longer reads) and change one.
  const std::string needle = victim.substr(300000, 64);
  fs::path damaged;
  std::uint64_t offset = 0;
  for (const auto& entry : fs::directory_iterator(guard().store_dir())) {
    const std::string ext = entry.path().extension();
    if (ext != ".sst" && ext != ".vlog") continue;
    std::string bytes;
    ASSERT_TRUE(ReadFile(entry.path(), &bytes));
    const std::size_t at = bytes.find(needle);
    if (at != std::string::npos) {
      damaged = entry.path();
      offset = at + 32;
      break;
    }
  }
  ASSERT_FALSE(damaged.empty()) << "the victim's bytes are in no SST or value log";
  {
    std::fstream file(damaged, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(static_cast<std::streamoff>(offset));
    char byte = 0;
    file.read(&byte, 1);
    byte = static_cast<char>(byte + 1);
    file.seekp(static_cast<std::streamoff>(offset));
    file.write(&byte, 1);
  }
  std::string out;
  EXPECT_EQ(Cascadefs({"fsck", guard().store_dir()}, &out), 4) << out;
  EXPECT_NE(out.find(damaged.filename().string()), std::string::npos) << out;
  ASSERT_NO_FATAL_FAILURE(Mount());
  std::string read_back;
  EXPECT_FALSE(ReadFile(path("victim.bin"), &read_back)) << "the damaged file read back";
  EXPECT_EQ(errno, EIO) << std::strerror(errno);
  ASSERT_TRUE(ReadFile(path("other.bin"), &read_back)) << std::strerror(errno);
  EXPECT_TRUE(read_back == other) << "an undamaged file changed";
}

}  // namespace
}  // namespace cascadefs::mounttest
