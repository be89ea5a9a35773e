// programs_test.cc: real programs working in the mount, as users would run them.
//
// Goal: the tools people use on a local disk work unchanged: git (clone, fsck --strict,
// status, commit, gc), tar and diff over a real tree, sqlite3 (rollback journal and WAL, whose
// shared memory is an mmap of a file in the mount), and make with gcc (which relies on mtimes
// to decide what to rebuild). Method: each test runs the programs with RunProgram and checks
// their exit status and output; each ends with a remount and checks again. A missing program
// skips its test with the reason (scripts/install-deps.sh build installs them all).
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mount/mount_fixture.h"

namespace cascadefs::mounttest {
namespace {

constexpr int kProgramTimeoutS = 300;

class Programs : public MountedFs {
 protected:
  void SetUp() override {
    MountedFs::SetUp();
    // git and others read $HOME; point it at a scratch directory so no user config leaks in.
    if (guard_ != nullptr) {
      const std::string home = guard().temp_dir() + "/home";
      mkdir(home.c_str(), 0755);
      setenv("HOME", home.c_str(), 1);
      setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    }
  }

  // Runs argv in cwd; ASSERTs exit status 0, returns its output.
  std::string Run(const std::vector<std::string>& argv, const std::string& cwd = "") {
    std::string output;
    const int rc = RunProgram(argv, cwd, &output, kProgramTimeoutS);
    std::string command;
    for (const std::string& arg : argv) command += arg + " ";
    EXPECT_EQ(rc, 0) << command << "\n" << Tail(output, 20);
    return output;
  }

  void RequirePrograms(const std::vector<std::string>& names) {
    for (const std::string& name : names) {
      if (!HaveProgram(name))
        GTEST_SKIP() << name << " is not installed (scripts/install-deps.sh build)";
    }
  }
};

TEST_F(Programs, GitCloneFsckStatus) {
  RequirePrograms({"git"});
  if (IsSkipped()) return;
  const std::string src = guard().temp_dir() + "/src-repo";
  const std::vector<std::string> git = {
      "git", "-c", "user.name=cfs", "-c", "user.email=cfs@test", "-c", "init.defaultBranch=main"};
  auto g = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = git;
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  };
  Run(g({"init", "-q", src}));
  for (int commit = 0; commit < 3; ++commit) {
    for (int f = 0; f < 20; ++f) {
      std::string text;
      for (int line = 0; line < 50 * (f + 1); ++line) {
        text += "commit " + std::to_string(commit) + " file " + std::to_string(f) + " line " +
                std::to_string(line) + "\n";
      }
      ASSERT_TRUE(WriteFile(src + "/file" + std::to_string(f) + ".txt", text));
    }
    ASSERT_TRUE(WriteFile(src + "/blob.bin", RandomBytes(commit, 300000)));
    Run(g({"-C", src, "add", "-A"}));
    Run(g({"-C", src, "commit", "-q", "-m", "commit " + std::to_string(commit)}));
  }
  const std::string clone = path("clone");
  Run(g({"clone", "-q", "--no-local", src, clone}));
  Run(g({"-C", clone, "fsck", "--strict", "--no-progress"}));
  EXPECT_EQ(Run(g({"-C", clone, "status", "--porcelain"})), "") << "a fresh clone is clean";
  EXPECT_EQ(Run(g({"-C", clone, "rev-list", "--count", "HEAD"})), "3\n");
  // Work in the clone: edit, commit, repack, check again.
  ASSERT_TRUE(WriteFile(clone + "/file3.txt", "rewritten in the mount\n"));
  EXPECT_EQ(Run(g({"-C", clone, "status", "--porcelain"})), " M file3.txt\n");
  Run(g({"-C", clone, "commit", "-q", "-am", "edit in the mount"}));
  Run(g({"-C", clone, "gc", "-q", "--aggressive"}));
  Run(g({"-C", clone, "fsck", "--strict", "--no-progress"}));
  ASSERT_NO_FATAL_FAILURE(Remount());
  Run(g({"-C", clone, "fsck", "--strict", "--no-progress"}));
  EXPECT_EQ(Run(g({"-C", clone, "status", "--porcelain"})), "") << "clean after a remount";
  EXPECT_EQ(Run(g({"-C", clone, "rev-list", "--count", "HEAD"})), "4\n");
}

// Dedup visible to users: a second copy of a tree writes (almost) no new chunks. The counters
// come from `cascadefs status --json` (chunks_written, chunks_reused), counted when files are
// flushed, which each file's close does.
TEST_F(Programs, SecondCopyOfATreeStoresNoNewChunks) {
  if (native()) GTEST_SKIP() << "dedup is a property of cascadefs";
  RequirePrograms({"cp"});
  if (IsSkipped()) return;
  const char* bin = std::getenv("CFS_CASCADEFS_BIN");
  ASSERT_NE(bin, nullptr);
  auto counter = [&](const std::string& status, const std::string& name) -> std::uint64_t {
    const std::string key = "\"" + name + "\":";
    const std::size_t at = status.find(key);
    EXPECT_NE(at, std::string::npos) << name << " missing in " << status;
    return at == std::string::npos ? 0 : std::stoull(status.substr(at + key.size()));
  };
  Run({"cp", "-a", "/usr/include/linux", path("first")});
  const std::string after_first = Run({bin, "status", "--json", guard().root()});
  Run({"cp", "-a", "/usr/include/linux", path("second")});
  const std::string after_second = Run({bin, "status", "--json", guard().root()});
  const std::uint64_t written_first = counter(after_first, "chunks_written");
  const std::uint64_t written_second = counter(after_second, "chunks_written") - written_first;
  const std::uint64_t reused_second =
      counter(after_second, "chunks_reused") - counter(after_first, "chunks_reused");
  std::printf("first copy: %llu chunks written; second copy: %llu written, %llu reused\n",
              static_cast<unsigned long long>(written_first),
              static_cast<unsigned long long>(written_second),
              static_cast<unsigned long long>(reused_second));
  ASSERT_GT(written_first, 500u) << "the tree is too small to show anything";
  EXPECT_LE(written_second * 100, written_first) << "the second copy stored new chunks";
  EXPECT_GE(reused_second * 10, written_first * 9) << "the second copy did not reuse chunks";
  Run({"diff", "-r", "--no-dereference", path("first"), path("second")});
}

TEST_F(Programs, UntarAndDiff) {
  RequirePrograms({"tar", "diff"});
  if (IsSkipped()) return;
  const std::string tarball = guard().temp_dir() + "/include.tar";
  Run({"tar", "-cf", tarball, "-C", "/usr", "include"});
  ASSERT_EQ(mkdir(path("x").c_str(), 0755), 0);
  Run({"tar", "-xf", tarball, "-C", path("x")});
  Run({"diff", "-r", "--no-dereference", "/usr/include", path("x/include")});
  ASSERT_NO_FATAL_FAILURE(Remount());
  Run({"diff", "-r", "--no-dereference", "/usr/include", path("x/include")});
}

TEST_F(Programs, SqliteTransactionsAndIntegrity) {
  RequirePrograms({"sqlite3"});
  if (IsSkipped()) return;
  std::string sql =
      "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB);\n"
      "CREATE INDEX tk ON t(k);\n";
  for (int tx = 0; tx < 300; ++tx) {
    sql += "BEGIN;\n";
    for (int row = 0; row < 10; ++row) {
      const int id = tx * 10 + row;
      sql += "INSERT INTO t(k, v) VALUES ('key" + std::to_string(id * 7919 % 3001) +
             "', randomblob(" + std::to_string(100 + id % 900) + "));\n";
    }
    if (tx % 10 == 9) sql += "DELETE FROM t WHERE id % 97 = " + std::to_string(tx % 97) + ";\n";
    sql += "COMMIT;\n";
  }
  const std::string script = guard().temp_dir() + "/script.sql";
  ASSERT_TRUE(WriteFile(script, sql));
  for (const std::string& mode : {std::string("delete"), std::string("wal")}) {
    SCOPED_TRACE("journal_mode=" + mode);
    const std::string db = path(mode + ".db");
    Run({"sqlite3", db, "PRAGMA journal_mode=" + mode + ";"});
    Run({"sqlite3", db, ".read " + script});
    EXPECT_EQ(Run({"sqlite3", db, "PRAGMA integrity_check;"}), "ok\n");
    const std::string count = Run({"sqlite3", db, "SELECT count(*) FROM t;"});
    EXPECT_GT(std::stoi(count), 2500);
    ASSERT_NO_FATAL_FAILURE(Remount());
    EXPECT_EQ(Run({"sqlite3", db, "PRAGMA integrity_check;"}), "ok\n");
    EXPECT_EQ(Run({"sqlite3", db, "SELECT count(*) FROM t;"}), count);
  }
}

TEST_F(Programs, BuildCProjectWithMake) {
  RequirePrograms({"make", "gcc"});
  if (IsSkipped()) return;
  const std::string dir = path("proj");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(dir + "/util.h", "int square(int x);\nint cube(int x);\n"));
  ASSERT_TRUE(
      WriteFile(dir + "/square.c", "#include \"util.h\"\nint square(int x) { return x * x; }\n"));
  ASSERT_TRUE(WriteFile(dir + "/cube.c",
                        "#include \"util.h\"\nint cube(int x) { return square(x) * x; }\n"));
  ASSERT_TRUE(
      WriteFile(dir + "/main.c",
                "#include <stdio.h>\n#include \"util.h\"\n"
                "int main(void) { printf(\"%d %d\\n\", square(7), cube(3)); return 0; }\n"));
  ASSERT_TRUE(WriteFile(dir + "/Makefile",
                        "app: main.o square.o cube.o\n\tgcc -o $@ $^\n"
                        "%.o: %.c util.h\n\tgcc -O1 -Wall -c -o $@ $<\n"
                        "clean:\n\trm -f app *.o\n"));
  Run({"make", "-s"}, dir);
  EXPECT_EQ(Run({dir + "/app"}), "49 27\n");
  // Up to date: make -q exits 0 only if every target is newer than its sources.
  EXPECT_EQ(RunProgram({"make", "-q"}, dir, nullptr, kProgramTimeoutS), 0)
      << "rebuild needed right after a build: mtimes wrong?";
  // Everything 100 s old, then one source rewritten: exactly its object and the app are stale.
  const timespec old[2] = {{time(nullptr) - 100, 0}, {time(nullptr) - 100, 0}};
  for (const char* name : {"util.h", "square.c", "cube.c", "main.c", "Makefile", "square.o",
                           "cube.o", "main.o", "app"}) {
    ASSERT_EQ(utimensat(AT_FDCWD, (dir + "/" + name).c_str(), old, 0), 0) << name;
  }
  EXPECT_EQ(RunProgram({"make", "-q"}, dir, nullptr, kProgramTimeoutS), 0);
  ASSERT_TRUE(WriteFile(dir + "/square.c",
                        "#include \"util.h\"\nint square(int x) { return x * x + 1; }\n"));
  EXPECT_EQ(RunProgram({"make", "-q"}, dir, nullptr, kProgramTimeoutS), 1);
  const std::string rebuilt = Run({"make"}, dir);
  EXPECT_NE(rebuilt.find("-o square.o"), std::string::npos) << rebuilt;
  EXPECT_EQ(rebuilt.find("-o cube.o"), std::string::npos)
      << "cube.o rebuilt needlessly: " << rebuilt;
  EXPECT_EQ(Run({dir + "/app"}), "50 30\n");
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(Run({dir + "/app"}), "50 30\n") << "the binary runs from the mount after a remount";
  Run({"make", "-s", "clean"}, dir);
  Run({"make", "-s"}, dir);
  EXPECT_EQ(Run({dir + "/app"}), "50 30\n");
}

}  // namespace
}  // namespace cascadefs::mounttest
