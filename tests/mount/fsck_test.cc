// fsck_test.cc: `cascadefs fsck` and `cascadefs inspect` on stores made through a real mount.
// A healthy store checks clean; a mounted store is refused; a changed byte of a file's data on
// disk is found and named (exit 4), and the file then reads as EIO through the mount while
// other files read back unchanged; gc gives the space of deleted files back and keeps every
// byte of the rest; inspect shows a file's chunks and the files that refer to a chunk.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

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

TEST_F(Fsck, AChangedByteIsFoundTheFileReadsAsAnErrorAndRepairLeavesACleanStore) {
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
  // The store still mounts, and the damaged file reads as an error, before and after repair.
  ASSERT_NO_FATAL_FAILURE(Mount());
  std::string before;
  EXPECT_FALSE(ReadFile(path("victim.bin"), &before)) << "the damaged file read back";
  ASSERT_NO_FATAL_FAILURE(Unmount());
  // --repair salvages the engine's files (the damaged original kept in lost/), records the
  // chunk that held the changed byte as lost, and leaves a store that checks clean: the loss
  // stays visible as a warning naming the file.
  EXPECT_EQ(Cascadefs({"fsck", "--repair", guard().store_dir()}, &out), 1) << out;
  EXPECT_NE(out.find("repair:"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(fs::path(guard().store_dir()) / "lost" / damaged.filename())) << out;
  EXPECT_EQ(Cascadefs({"fsck", guard().store_dir()}, &out), 0) << out;
  EXPECT_NE(out.find("/victim.bin"), std::string::npos) << out;
  EXPECT_NE(out.find("warning: file data lost"), std::string::npos) << out;
  ASSERT_NO_FATAL_FAILURE(Mount());
  std::string read_back;
  EXPECT_FALSE(ReadFile(path("victim.bin"), &read_back)) << "the damaged file read back";
  EXPECT_EQ(errno, EIO) << std::strerror(errno);
  ASSERT_TRUE(ReadFile(path("other.bin"), &read_back)) << std::strerror(errno);
  EXPECT_TRUE(read_back == other) << "an undamaged file changed";
}

// The number after `"key":` in a JSON object printed on one line; -1 when absent.
long long JsonNumber(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const std::size_t at = json.find(needle);
  if (at == std::string::npos) return -1;
  return std::strtoll(json.c_str() + at + needle.size(), nullptr, 10);
}

TEST_F(Fsck, GcGivesTheSpaceOfDeletedFilesBackAndKeepsEveryOtherByte) {
  if (native()) GTEST_SKIP() << "gc collects cascadefs stores";
  const std::string kept = RandomBytes(21, 4 << 20);  // incompressible: stored raw
  ASSERT_TRUE(WriteFile(path("kept.bin"), kept));
  ASSERT_TRUE(WriteFile(path("copy.bin"), kept));  // the same chunks: dedup
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(WriteFile(path("gone" + std::to_string(i)), RandomBytes(30 + i, 8 << 20)));
  }
  for (int i = 0; i < 3; ++i) ASSERT_EQ(::unlink(path("gone" + std::to_string(i)).c_str()), 0);
  ASSERT_EQ(::unlink(path("copy.bin").c_str()), 0);  // its chunks are still kept.bin's
  ASSERT_NO_FATAL_FAILURE(Unmount());

  std::string out;
  ASSERT_EQ(Cascadefs({"fsck", "--json", guard().store_dir()}, &out), 0) << out;
  EXPECT_GT(JsonNumber(out, "unreferenced_chunks"), 0) << out;
  ASSERT_EQ(Cascadefs({"gc", "--dry-run", guard().store_dir()}, &out), 0) << out;
  EXPECT_NE(out.find("would delete"), std::string::npos) << out;
  ASSERT_EQ(Cascadefs({"gc", "--json", guard().store_dir()}, &out), 0) << out;
  const long long before = JsonNumber(out, "store_bytes_before");
  const long long after = JsonNumber(out, "store_bytes_after");
  EXPECT_GT(JsonNumber(out, "deleted_chunks"), 0) << out;
  EXPECT_GE(JsonNumber(out, "deleted_bytes"), 24LL << 20) << out;
  // The 24 MiB of deleted files' data is gone from the disk, not only from the index.
  EXPECT_LT(after, before - (16LL << 20)) << out;
  ASSERT_EQ(Cascadefs({"fsck", "--json", guard().store_dir()}, &out), 0) << out;
  EXPECT_EQ(JsonNumber(out, "unreferenced_chunks"), 0) << out;
  EXPECT_EQ(JsonNumber(out, "errors"), 0) << out;

  ASSERT_EQ(Cascadefs({"inspect", guard().store_dir(), "file", "/kept.bin", "--json"}, &out), 0)
      << out;
  EXPECT_GT(JsonNumber(out, "leaves"), 1) << out;
  EXPECT_EQ(JsonNumber(out, "size"), 4LL << 20) << out;
  const std::size_t root_at = out.find("\"root\":\"");
  ASSERT_NE(root_at, std::string::npos) << out;
  const std::string root = out.substr(root_at + 8, 34);
  ASSERT_EQ(Cascadefs({"inspect", guard().store_dir(), "chunk", root}, &out), 0) << out;
  EXPECT_NE(out.find("/kept.bin at offset 0"), std::string::npos) << out;
  ASSERT_EQ(Cascadefs({"inspect", guard().store_dir(), "chunks"}, &out), 0) << out;
  EXPECT_NE(out.find("dedup ratio"), std::string::npos) << out;
  EXPECT_NE(Cascadefs({"inspect", guard().store_dir(), "file", "/no/such"}, &out), 0) << out;
  EXPECT_NE(out.find("/no: no such file"), std::string::npos) << out;

  ASSERT_NO_FATAL_FAILURE(Mount());
  std::string read_back;
  ASSERT_TRUE(ReadFile(path("kept.bin"), &read_back)) << std::strerror(errno);
  EXPECT_TRUE(read_back == kept) << "gc changed a kept file";
  // On a mounted store the daemon runs the cycle: nothing left to delete now.
  EXPECT_EQ(Cascadefs({"gc", guard().store_dir(), "--json"}, &out), 0) << out;
  EXPECT_NE(out.find("\"mounted\":true"), std::string::npos) << out;
  EXPECT_EQ(JsonNumber(out, "deleted_chunks"), 0) << out;
}

// `cascadefs gc STORE` on a mounted store, again and again while writers replace, patch and
// delete files through the mount: every file then reads back as last written, after a
// remount too (cold, from the store), and the store checks clean.
TEST_F(Fsck, GcOfAMountedStoreDuringAWriteStormLosesNothing) {
  if (native()) GTEST_SKIP() << "gc collects cascadefs stores";
  constexpr int kWriters = 2;
  constexpr int kFilesPerWriter = 12;
  constexpr int kRounds = 40;
  std::vector<std::map<std::string, std::string>> models(kWriters);
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  auto writer = [&](int w) {
    std::map<std::string, std::string>& model = models[static_cast<std::size_t>(w)];
    for (int round = 0; round < kRounds && failures.load() == 0; ++round) {
      const int file = (round * 7 + w) % kFilesPerWriter;
      const std::string name = path("w" + std::to_string(w) + "-" + std::to_string(file));
      const std::uint64_t seed = static_cast<std::uint64_t>(w * 100000 + round);
      if (round % 9 == 8 && model.contains(name)) {
        if (::unlink(name.c_str()) != 0) ++failures;
        model.erase(name);
        continue;
      }
      // Half of the writes repeat content written before (seed % 4): their chunks may be
      // garbage at that moment, and the write deduplicates against them.
      const std::string data = RandomBytes(round % 2 == 0 ? seed % 4 : seed, 256 << 10);
      if (!WriteFile(name, data)) ++failures;
      model[name] = data;
    }
  };
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) writers.emplace_back(writer, w);
  std::thread finisher([&] {
    for (std::thread& t : writers) t.join();
    done.store(true);
  });
  int cycles = 0;
  std::string out;
  while (!done.load()) {
    const int code = Cascadefs({"gc", guard().store_dir(), "--json"}, &out);
    // Busy (too many writes during one cycle) is an allowed answer; anything else is not.
    if (code != 0 && out.find("Busy") == std::string::npos) {
      ADD_FAILURE() << out;
      break;
    }
    if (code == 0) ++cycles;
  }
  finisher.join();
  ASSERT_EQ(failures.load(), 0);
  EXPECT_GT(cycles, 0);
  auto verify = [&](const char* when) {
    for (const auto& model : models) {
      for (const auto& [name, data] : model) {
        std::string read_back;
        ASSERT_TRUE(ReadFile(name, &read_back))
            << when << " " << name << ": " << std::strerror(errno);
        ASSERT_TRUE(read_back == data) << when << " " << name << " differs";
      }
    }
  };
  verify("mounted");
  ASSERT_EQ(Cascadefs({"gc", guard().store_dir()}, &out), 0) << out;
  ASSERT_NO_FATAL_FAILURE(Unmount());
  EXPECT_EQ(Cascadefs({"fsck", guard().store_dir()}, &out), 0) << out;
  ASSERT_NO_FATAL_FAILURE(Mount());
  verify("after a remount");
}

}  // namespace
}  // namespace cascadefs::mounttest

namespace cascadefs::mounttest {
namespace {

void DropPageCache() {
  sync();
  std::ofstream("/proc/sys/vm/drop_caches") << "3\n";
}

TEST_F(Fsck, TheChunkCacheServesRereadsStaysWarmAndNeverServesADamagedEntry) {
  if (native()) GTEST_SKIP() << "the chunk cache is cascadefs'";
  if (geteuid() != 0) GTEST_SKIP() << "dropping the page cache needs root";
  const std::string data = RandomBytes(41, 8 << 20);  // incompressible: findable in the cache
  ASSERT_TRUE(WriteFile(path("data.bin"), data));
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ASSERT_NO_FATAL_FAILURE(Mount());
  std::string read_back;
  for (int pass = 0; pass < 2; ++pass) {
    DropPageCache();  // so the reads reach the daemon
    ASSERT_TRUE(ReadFile(path("data.bin"), &read_back));
    ASSERT_TRUE(read_back == data) << "pass " << pass;
  }
  std::string out;
  ASSERT_EQ(Cascadefs({"status", "--json", guard().root()}, &out), 0) << out;
  EXPECT_GT(JsonNumber(out, "cache_hits"), 256) << out;  // the second pass: 8 MiB of chunks
  ASSERT_NO_FATAL_FAILURE(Unmount());
  // Closed warm: the file holds the chunks, and inspect says so.
  ASSERT_EQ(Cascadefs({"inspect", guard().store_dir(), "cache", "--json"}, &out), 0) << out;
  EXPECT_GT(JsonNumber(out, "entries_valid"), 256) << out;

  // A changed byte inside a cached chunk: fsck reports it (a note: the cache never serves
  // it), --repair removes the cache file, and reads are right throughout.
  const fs::path cache_file = fs::path(guard().store_dir()) / "cache";
  std::string bytes;
  ASSERT_TRUE(ReadFile(cache_file, &bytes));
  const std::size_t at = bytes.find(data.substr(5 << 20, 64));
  ASSERT_NE(at, std::string::npos) << "the file's bytes are not in the cache file";
  {
    std::fstream file(cache_file, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(at + 32));
    file.put(static_cast<char>(bytes[at + 32] ^ 0x20));
  }
  EXPECT_EQ(Cascadefs({"fsck", guard().store_dir()}, &out), 0) << out;
  EXPECT_NE(out.find("/cache: offset"), std::string::npos) << out;
  ASSERT_NO_FATAL_FAILURE(Mount());
  DropPageCache();
  ASSERT_TRUE(ReadFile(path("data.bin"), &read_back));
  EXPECT_TRUE(read_back == data) << "a damaged cache entry changed what a read returns";
  ASSERT_EQ(Cascadefs({"status", "--json", guard().root()}, &out), 0) << out;
  EXPECT_GE(JsonNumber(out, "cache_damaged_entries"), 1) << out;
  ASSERT_NO_FATAL_FAILURE(Unmount());
  EXPECT_EQ(Cascadefs({"fsck", "--repair", guard().store_dir()}, &out), 0) << out;
  EXPECT_FALSE(fs::exists(cache_file)) << out;
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_TRUE(ReadFile(path("data.bin"), &read_back));
  EXPECT_TRUE(read_back == data);
}

}  // namespace
}  // namespace cascadefs::mounttest
