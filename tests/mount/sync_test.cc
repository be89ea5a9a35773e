// sync_test.cc: synced mounts and a hub, as users run them: `cascadefs serve` and two
// `cascadefs mount --sync` daemons, real TLS over loopback TCP.
//
// Proved here: two mounts converge after a tree copy, edits, renames, deletes, a symlink, a
// chmod and an empty directory; .cascadeignore keeps paths home; a change made on both sides
// while the hub is down keeps both versions (the later one as a conflicted copy); edits made
// offline are committed on reconnect; the hub's journal survives a restart and a kill -9
// during an upload; two namespaces stay apart; a mount with the wrong key gets nothing.
//
// Each Daemon is a child process run in the foreground (`-f`, or serve's own foreground), with
// PR_SET_PDEATHSIG so a test killed by ctest takes its daemons with it. Every mount is
// unmounted at the end of each test, even when it fails (the fixture's TearDown).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mount/mount_fixture.h"

namespace cascadefs::mounttest {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// How long a change may take to reach the other mount before a test fails. Generous: ASan
// daemons on a loaded 2-core machine.
constexpr int kConvergeWaitSec = 120;

std::string Bin() {
  const char* bin = std::getenv("CFS_CASCADEFS_BIN");
  return bin == nullptr ? "" : bin;
}

// A child process: `cascadefs ARGS...`, output appended to `log`.
class Daemon {
 public:
  Daemon(std::vector<std::string> args, std::string log) : args_(std::move(args)), log_(log) {}
  ~Daemon() { Kill(); }

  void Start() {
    ASSERT_LT(pid_, 0);
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      const int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      std::vector<char*> argv;
      static std::string bin;
      bin = Bin();
      argv.push_back(bin.data());
      for (std::string& a : args_) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  // SIGTERM and wait; returns the exit status (-1 when it had to be killed).
  int Stop() {
    if (pid_ < 0) return 0;
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 600; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    Kill();
    return -1;
  }
  void Kill() {
    if (pid_ < 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  bool running() const { return pid_ > 0; }

 private:
  std::vector<std::string> args_;
  std::string log_;
  pid_t pid_ = -1;
};

std::string LogTail(const std::string& path) {
  std::string text;
  ReadFile(path, &text);
  return mounttest::Tail(text, 15);
}

// What must agree between synced mounts, per path: type, permission bits, contents (files),
// target (symlinks). Not owners (the receiving side's are the mounting user's), not times of
// directories.
bool Describe(const std::string& root, std::map<std::string, std::string>* out,
              std::string* error) {
  out->clear();
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    const std::string path = it->path().string();
    const std::string rel = path.substr(root.size() + 1);
    if (rel == "lost+found") {
      it.disable_recursion_pending();
      continue;
    }
    struct stat st {};
    if (lstat(path.c_str(), &st) != 0) continue;  // gone meanwhile
    std::string d = std::to_string(st.st_mode & 07777) + " ";
    if (S_ISDIR(st.st_mode)) {
      d += "dir";
    } else if (S_ISLNK(st.st_mode)) {
      d += "link " + fs::read_symlink(path, ec).string();
    } else {
      std::string data;
      if (!ReadFile(path, &data)) continue;
      d += "file " + std::to_string(data.size()) + " " + std::to_string(Checksum(data));
    }
    (*out)[rel] = d;
  }
  if (ec) {
    *error = root + ": " + ec.message();
    return false;
  }
  return true;
}

class Sync : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Bin().empty()) GTEST_SKIP() << "CFS_CASCADEFS_BIN is not set: run through ctest";
    if (TargetFromEnv() == Target::kNative) GTEST_SKIP() << "sync is cascadefs's";
    if (geteuid() != 0) GTEST_SKIP() << "mounts need root here";
    char tmpl[] = "/var/tmp/cfs-sync-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    key_ = dir_ + "/key";
    std::string out;
    ASSERT_EQ(RunProgram({Bin(), "keygen", key_}, "", &out, 60), 0) << out;
    port_ = 20000 + static_cast<int>(getpid() % 20000);
  }

  void TearDown() override {
    for (auto& [name, m] : mounts_) UnmountOne(name);
    if (hub_ != nullptr) hub_->Stop();
    if (!dir_.empty() && !HasMounts()) fs::remove_all(dir_);
  }

  bool HasMounts() {
    for (auto& [name, m] : mounts_) {
      if (m.daemon != nullptr && m.daemon->running()) return true;
    }
    return false;
  }

  void StartHub() {
    hub_ = std::make_unique<Daemon>(
        std::vector<std::string>{"serve", "--store", dir_ + "/hub", "--listen",
                                 "127.0.0.1:" + std::to_string(port_), "--key", key_},
        dir_ + "/hub.log");
    ASSERT_NO_FATAL_FAILURE(hub_->Start());
    // Listening once a TCP connect succeeds.
    for (int i = 0; i < 300; ++i) {
      std::string out;
      if (RunProgram({"bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(port_)}, "",
                     &out, 10) == 0) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL() << "the hub never listened: " << LogTail(dir_ + "/hub.log");
  }

  struct MountState {
    std::string store;
    std::string point;
    std::string log;
    std::vector<std::string> extra;
    std::unique_ptr<Daemon> daemon;
  };

  std::string Point(const std::string& name) { return mounts_.at(name).point; }

  void MountOne(const std::string& name, std::vector<std::string> extra = {},
                std::string key = "") {
    MountState& m = mounts_[name];
    m.store = dir_ + "/store-" + name;
    m.point = dir_ + "/mnt-" + name;
    m.log = dir_ + "/mount-" + name + ".log";
    if (!extra.empty()) m.extra = extra;
    fs::create_directories(m.point);
    std::vector<std::string> args = {"mount",       "-f",
                                     "--transport", TransportFromEnv(),
                                     "--store",     m.store,
                                     "--sync",      "127.0.0.1:" + std::to_string(port_),
                                     "--key",       key.empty() ? key_ : key};
    args.insert(args.end(), m.extra.begin(), m.extra.end());
    args.push_back(m.point);
    m.daemon = std::make_unique<Daemon>(args, m.log);
    ASSERT_NO_FATAL_FAILURE(m.daemon->Start());
    struct stat parent {};
    ASSERT_EQ(stat(dir_.c_str(), &parent), 0);
    for (int i = 0; i < 600; ++i) {
      struct stat st {};
      if (stat(m.point.c_str(), &st) == 0 && st.st_dev != parent.st_dev) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL() << "mount " << name << " never came up: " << LogTail(m.log);
  }

  void UnmountOne(const std::string& name) {
    MountState& m = mounts_.at(name);
    if (m.daemon == nullptr || !m.daemon->running()) return;
    std::string out;
    RunProgram({Bin(), "umount", m.point}, "", &out, 120);
    const int status = m.daemon->Stop();
    EXPECT_EQ(status, 0) << "mount " << name << " exited uncleanly: " << LogTail(m.log);
    RunProgram({"fusermount3", "-uz", m.point}, "", &out, 30);
  }

  // Waits until the trees of mounts `a` and `b` agree (and, when `expect` is given, equal it).
  void Converge(const std::string& a, const std::string& b,
                const std::map<std::string, std::string>* expect = nullptr) {
    std::map<std::string, std::string> da;
    std::map<std::string, std::string> db;
    std::string error;
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(kConvergeWaitSec);
    while (Clock::now() < deadline) {
      if (Describe(Point(a), &da, &error) && Describe(Point(b), &db, &error) && da == db &&
          (expect == nullptr || da == *expect)) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    std::string diff;
    for (const auto& [path, d] : da) {
      auto it = db.find(path);
      if (it == db.end()) {
        diff += "  only in " + a + ": " + path + "\n";
      } else if (it->second != d) {
        diff += "  differs: " + path + ": " + d + " vs " + it->second + "\n";
      }
      if (diff.size() > 2000) break;
    }
    for (const auto& [path, d] : db) {
      if (!da.contains(path) && diff.size() < 2000) diff += "  only in " + b + ": " + path + "\n";
    }
    FAIL() << "mounts " << a << " and " << b << " did not converge in " << kConvergeWaitSec
           << " s:\n"
           << diff << "log " << a << ":\n"
           << LogTail(mounts_.at(a).log) << "\nlog " << b << ":\n"
           << LogTail(mounts_.at(b).log) << "\nhub:\n"
           << LogTail(dir_ + "/hub.log");
  }

  std::string StatusJson(const std::string& name) {
    std::string out;
    RunProgram({Bin(), "status", "--json", Point(name)}, "", &out, 60);
    return out;
  }

  // Waits until mount `name` has committed everything it has (sync_pending 0 and connected).
  void WaitPushed(const std::string& name) {
    for (int i = 0; i < kConvergeWaitSec * 5; ++i) {
      const std::string s = StatusJson(name);
      if (s.find("\"sync_pending\":0") != std::string::npos &&
          s.find("\"sync_state\":\"connected\"") != std::string::npos) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    FAIL() << "mount " << name << " never finished pushing: " << StatusJson(name);
  }

  std::string dir_;
  std::string key_;
  int port_ = 0;
  std::unique_ptr<Daemon> hub_;
  std::map<std::string, MountState> mounts_;
};

std::string Text(int lines, int seed) {
  std::string out;
  for (int i = 0; i < lines; ++i) {
    out +=
        "line " + std::to_string(i) + " of a text written with seed " + std::to_string(seed) + "\n";
  }
  return out;
}

TEST_F(Sync, TwoMountsConvergeOnATreeCopyEditsRenamesAndDeletes) {
  ASSERT_NO_FATAL_FAILURE(StartHub());
  ASSERT_NO_FATAL_FAILURE(MountOne("a"));
  ASSERT_NO_FATAL_FAILURE(MountOne("b"));
  const std::string a = Point("a");
  const std::string b = Point("b");
  std::string out;
  ASSERT_EQ(RunProgram({"cp", "-a", "/usr/include/linux", a + "/linux"}, "", &out, 600), 0) << out;
  ASSERT_TRUE(WriteFile(a + "/notes.txt", Text(20000, 1)));
  ASSERT_TRUE(WriteFile(a + "/data.bin", RandomBytes(7, 3 << 20)));
  ASSERT_EQ(mkdir((a + "/empty").c_str(), 0750), 0);
  ASSERT_EQ(symlink("notes.txt", (a + "/link").c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(Converge("a", "b"));

  // Edits from the other side, a chmod, a rename of a directory, deletes.
  std::string notes;
  ASSERT_TRUE(ReadFile(b + "/notes.txt", &notes));
  notes.replace(notes.size() / 2, 4, "LINE");
  ASSERT_TRUE(WriteFile(b + "/notes.txt", notes));
  ASSERT_EQ(chmod((b + "/data.bin").c_str(), 0600), 0);
  ASSERT_EQ(rename((b + "/linux/netfilter").c_str(), (b + "/netfilter-moved").c_str()), 0);
  ASSERT_EQ(unlink((b + "/linux/types.h").c_str()), 0);
  ASSERT_EQ(RunProgram({"rm", "-rf", b + "/linux/can"}, "", &out, 60), 0) << out;
  ASSERT_NO_FATAL_FAILURE(Converge("a", "b"));
  std::string got;
  ASSERT_TRUE(ReadFile(a + "/notes.txt", &got));
  EXPECT_EQ(got, notes);
  EXPECT_FALSE(fs::exists(a + "/linux/netfilter"));
  EXPECT_TRUE(fs::exists(a + "/netfilter-moved/nf_tables.h"));
  EXPECT_FALSE(fs::exists(a + "/linux/can"));

  // .cascadeignore keeps matching paths on their machine.
  ASSERT_TRUE(WriteFile(a + "/.cascadeignore", "*.tmp\nbuild/\n"));
  ASSERT_TRUE(WriteFile(a + "/scratch.tmp", "local only"));
  ASSERT_EQ(mkdir((a + "/build").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(a + "/build/out.o", "local only"));
  ASSERT_TRUE(WriteFile(a + "/kept.txt", "synced"));
  for (int i = 0; i < kConvergeWaitSec * 5 && !fs::exists(b + "/kept.txt"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(fs::exists(b + "/kept.txt")) << LogTail(mounts_.at("b").log);
  ASSERT_NO_FATAL_FAILURE(WaitPushed("a"));
  EXPECT_TRUE(fs::exists(b + "/.cascadeignore"));
  EXPECT_FALSE(fs::exists(b + "/scratch.tmp"));
  EXPECT_FALSE(fs::exists(b + "/build"));
  const std::string status = StatusJson("b");
  EXPECT_NE(status.find("\"sync\":true"), std::string::npos) << status;
  EXPECT_NE(status.find("\"sync_state\":\"connected\""), std::string::npos) << status;
}

TEST_F(Sync, AConflictKeepsBothVersionsAndOfflineEditsAreCommittedOnReconnect) {
  ASSERT_NO_FATAL_FAILURE(StartHub());
  ASSERT_NO_FATAL_FAILURE(MountOne("a"));
  ASSERT_NO_FATAL_FAILURE(MountOne("b"));
  const std::string a = Point("a");
  const std::string b = Point("b");
  ASSERT_TRUE(WriteFile(a + "/report.txt", Text(1000, 1)));
  ASSERT_NO_FATAL_FAILURE(Converge("a", "b"));

  // The hub goes away; both sides edit the same file, and each makes a file of its own.
  ASSERT_EQ(hub_->Stop(), 0) << LogTail(dir_ + "/hub.log");
  ASSERT_TRUE(WriteFile(a + "/report.txt", Text(1000, 2)));
  ASSERT_TRUE(WriteFile(a + "/from-a.txt", "written offline on a"));
  ASSERT_TRUE(WriteFile(b + "/report.txt", Text(1000, 3)));
  ASSERT_TRUE(WriteFile(b + "/from-b.txt", "written offline on b"));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_NE(StatusJson("a").find("\"sync_state\":\"offline\""), std::string::npos)
      << StatusJson("a");

  // a reconnects first and wins; b's edit becomes its conflicted copy.
  ASSERT_NO_FATAL_FAILURE(UnmountOne("b"));
  ASSERT_NO_FATAL_FAILURE(StartHub());
  ASSERT_NO_FATAL_FAILURE(WaitPushed("a"));
  ASSERT_NO_FATAL_FAILURE(MountOne("b"));
  ASSERT_NO_FATAL_FAILURE(Converge("a", "b"));
  std::string got;
  ASSERT_TRUE(ReadFile(b + "/report.txt", &got));
  EXPECT_EQ(got, Text(1000, 2));
  std::string copy_name;
  for (const auto& entry : fs::directory_iterator(b)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("report (conflicted copy from ")) copy_name = name;
  }
  ASSERT_FALSE(copy_name.empty()) << "no conflicted copy; log: " << LogTail(mounts_.at("b").log);
  EXPECT_TRUE(copy_name.ends_with(").txt")) << copy_name;
  ASSERT_TRUE(ReadFile(a + "/" + copy_name, &got));
  EXPECT_EQ(got, Text(1000, 3));
  ASSERT_TRUE(ReadFile(a + "/from-b.txt", &got));
  EXPECT_EQ(got, "written offline on b");
  ASSERT_TRUE(ReadFile(b + "/from-a.txt", &got));
  EXPECT_EQ(got, "written offline on a");
}

TEST_F(Sync, TheJournalSurvivesAHubKilledDuringAnUploadAndNamespacesStayApart) {
  ASSERT_NO_FATAL_FAILURE(StartHub());
  ASSERT_NO_FATAL_FAILURE(MountOne("a"));
  ASSERT_NO_FATAL_FAILURE(MountOne("b"));
  ASSERT_NO_FATAL_FAILURE(MountOne("other", {"--namespace", "other"}));
  const std::string a = Point("a");
  ASSERT_TRUE(WriteFile(a + "/first.txt", Text(5000, 4)));
  ASSERT_NO_FATAL_FAILURE(Converge("a", "b"));

  // A big upload, and the hub killed while it runs; then restarted on the same store.
  const std::string big = RandomBytes(TestSeed() + 1, 48 << 20);
  ASSERT_TRUE(WriteFile(a + "/big.bin", big));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  hub_->Kill();
  ASSERT_NO_FATAL_FAILURE(StartHub());
  ASSERT_NO_FATAL_FAILURE(Converge("a", "b"));
  std::string got;
  ASSERT_TRUE(ReadFile(Point("b") + "/big.bin", &got));
  EXPECT_EQ(got.size(), big.size());
  EXPECT_EQ(Checksum(got), Checksum(big));  // not EXPECT_EQ of 48 MiB strings: its diff is huge

  // The other namespace saw none of it, and its own file stays in it.
  ASSERT_TRUE(WriteFile(Point("other") + "/elsewhere.txt", "other namespace"));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_FALSE(fs::exists(Point("other") + "/first.txt"));
  EXPECT_FALSE(fs::exists(a + "/elsewhere.txt"));

  // A restarted mount resumes from its cursor and catches up on what it missed.
  ASSERT_NO_FATAL_FAILURE(UnmountOne("b"));
  ASSERT_TRUE(WriteFile(a + "/while-b-was-away.txt", "caught up"));
  ASSERT_NO_FATAL_FAILURE(WaitPushed("a"));
  ASSERT_NO_FATAL_FAILURE(MountOne("b"));
  ASSERT_NO_FATAL_FAILURE(Converge("a", "b"));
}

TEST_F(Sync, AReaderHoldingAFileOpenKeepsItsVersionWhole) {
  ASSERT_NO_FATAL_FAILURE(StartHub());
  ASSERT_NO_FATAL_FAILURE(MountOne("a"));
  ASSERT_NO_FATAL_FAILURE(MountOne("b"));
  const std::string before = Text(20000, 5);
  const std::string after = Text(20000, 6);
  ASSERT_TRUE(WriteFile(Point("a") + "/doc.txt", before));
  ASSERT_NO_FATAL_FAILURE(Converge("a", "b"));

  // b reads the first half, the new version arrives, b reads on: the old version, whole.
  const int fd = open((Point("b") + "/doc.txt").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::string seen(before.size(), '\0');
  const std::size_t half = before.size() / 2;
  ASSERT_EQ(pread(fd, seen.data(), half, 0), static_cast<ssize_t>(half));
  ASSERT_TRUE(WriteFile(Point("a") + "/doc.txt", after));
  std::string now;
  for (int i = 0; i < kConvergeWaitSec * 5; ++i) {
    if (ReadFile(Point("b") + "/doc.txt", &now) && now == after) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(now.size(), after.size());
  EXPECT_TRUE(now == after) << "the new version never arrived";
  const ssize_t rest = pread(fd, seen.data() + half, before.size() - half, half);
  close(fd);
  ASSERT_EQ(rest, static_cast<ssize_t>(before.size() - half));
  EXPECT_TRUE(seen == before) << "the open file mixed two versions";
}

TEST_F(Sync, AMountWithTheWrongKeyGetsNothing) {
  ASSERT_NO_FATAL_FAILURE(StartHub());
  ASSERT_NO_FATAL_FAILURE(MountOne("a"));
  ASSERT_TRUE(WriteFile(Point("a") + "/secret.txt", "for key holders"));
  ASSERT_NO_FATAL_FAILURE(WaitPushed("a"));
  std::string out;
  const std::string wrong = dir_ + "/wrong-key";
  ASSERT_EQ(RunProgram({Bin(), "keygen", wrong}, "", &out, 60), 0) << out;
  ASSERT_NO_FATAL_FAILURE(MountOne("intruder", {}, wrong));
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_FALSE(fs::exists(Point("intruder") + "/secret.txt"));
  const std::string status = StatusJson("intruder");
  EXPECT_EQ(status.find("\"sync_state\":\"connected\""), std::string::npos) << status;
  EXPECT_NE(status.find("handshake"), std::string::npos) << status;
  // The hub keeps serving the others.
  ASSERT_TRUE(WriteFile(Point("a") + "/after.txt", "still served"));
  ASSERT_NO_FATAL_FAILURE(WaitPushed("a"));

  // A receive-only mount gets everything and sends nothing.
  ASSERT_NO_FATAL_FAILURE(MountOne("reader", {"--receive-only"}));
  for (int i = 0; i < kConvergeWaitSec * 5 && !fs::exists(Point("reader") + "/after.txt"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::string got;
  ASSERT_TRUE(ReadFile(Point("reader") + "/secret.txt", &got)) << LogTail(mounts_.at("reader").log);
  EXPECT_EQ(got, "for key holders");
  ASSERT_TRUE(WriteFile(Point("reader") + "/local-only.txt", "never sent"));
  ASSERT_TRUE(WriteFile(Point("a") + "/later.txt", "still arrives"));
  for (int i = 0; i < kConvergeWaitSec * 5 && !fs::exists(Point("reader") + "/later.txt"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(fs::exists(Point("reader") + "/later.txt"));
  EXPECT_FALSE(fs::exists(Point("a") + "/local-only.txt"));
}

}  // namespace
}  // namespace cascadefs::mounttest
