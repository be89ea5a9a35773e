// stress_test.cc: several processes doing random namespace and data operations at once, in the
// manner of fsstress, written anew.
//
// Goal: concurrent creates, writes, appends, truncates, renames (within and between
// directories), hard links, symlinks, mkdirs, rmdirs and unlinks by several processes leave
// a tree in which every file holds exactly what its last writer wrote, every directory lists
// each entry once, and a remount changes nothing. Method: kProcesses forked children, each
// working in its own subtree p<N>/ and in a shared directory (names there carry the child's
// prefix, so children never race on one name, only on one directory). Each child keeps a model
// of what it made: path -> contents (hard links share one contents object), symlinks, empty
// or not directories. It checks a file's contents against the model now and then, and at the
// end writes its model as a manifest on the native disk. The parent then walks the mount and
// requires the union of the manifests exactly: same paths, types, sizes and contents, every
// name listed once, directory link counts right; then it remounts and requires the whole tree
// (modes, times, contents) unchanged. The seed: CFS_TEST_SEED; ops: CFS_STRESS_OPS.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mount/mount_fixture.h"

namespace cascadefs::mounttest {
namespace {

constexpr int kProcesses = 4;
constexpr int kOpsDefault = 1500;
constexpr std::size_t kFileBytesMax = 96 * 1024;
constexpr int kDepthMax = 3;
// How long the parent waits for all children.
constexpr int kChildWaitS = 400;

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ULL | 1) {}
  std::uint64_t Next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1DULL;
  }
  std::uint64_t Below(std::uint64_t bound) { return bound == 0 ? 0 : Next() % bound; }
  template <typename Map>
  auto Pick(Map& map) {
    auto it = map.begin();
    std::advance(it, static_cast<long>(Below(map.size())));
    return it;
  }

 private:
  std::uint64_t state_;
};

// One child's view of what it made. Paths are relative to the mount root.
class Worker {
 public:
  Worker(std::string root, int index, std::uint64_t seed)
      : root_(std::move(root)), index_(index), rng_(seed) {
    own_ = "p" + std::to_string(index);
    prefix_ = "shared/p" + std::to_string(index) + "_";
    dirs_.insert(own_);
  }

  // Runs `ops` operations; "" or the first unexpected result.
  std::string Run(int ops) {
    if (mkdir(Full(own_).c_str(), 0755) != 0) return Fail("mkdir " + own_);
    for (op_ = 0; op_ < ops; ++op_) {
      const std::string error = OneOp();
      if (!error.empty()) return error;
    }
    // Verify everything once more before reporting.
    for (const auto& [path, data] : files_) {
      const std::string error = Verify(path);
      if (!error.empty()) return error;
    }
    return "";
  }

  // The manifest: "F path size checksum", "L path target", "D path".
  std::string Manifest() const {
    std::ostringstream out;
    for (const auto& [path, data] : files_) {
      out << "F " << path << " " << data->size() << " " << Checksum(*data) << "\n";
    }
    for (const auto& [path, target] : links_) out << "L " << path << " " << target << "\n";
    for (const std::string& dir : dirs_) out << "D " << dir << "\n";
    return out.str();
  }

 private:
  std::string Full(const std::string& rel) const { return root_ + "/" + rel; }
  std::string Fail(const std::string& what) const {
    return "process " + std::to_string(index_) + " op " + std::to_string(op_) + ": " + what + ": " +
           std::strerror(errno);
  }
  std::string NewName(const std::string& kind) {
    // Half in the own tree (any own directory), half in the shared directory.
    if (rng_.Below(2) == 0) return prefix_ + kind + std::to_string(counter_++);
    auto dir = dirs_.begin();
    std::advance(dir, static_cast<long>(rng_.Below(dirs_.size())));
    return *dir + "/" + kind + std::to_string(counter_++);
  }
  static int Depth(const std::string& rel) {
    return static_cast<int>(std::count(rel.begin(), rel.end(), '/'));
  }
  bool DirEmpty(const std::string& dir) const {
    const std::string prefix = dir + "/";
    auto has = [&](const auto& map) {
      for (const auto& entry : map) {
        if (entry.first.compare(0, prefix.size(), prefix) == 0) return true;
      }
      return false;
    };
    if (has(files_) || has(links_)) return false;
    for (const std::string& other : dirs_) {
      if (other.compare(0, prefix.size(), prefix) == 0) return false;
    }
    return true;
  }
  // Every name of the contents object of `path` (its hard links).
  std::vector<std::string> NamesOf(const std::shared_ptr<std::string>& data) const {
    std::vector<std::string> names;
    for (const auto& [path, other] : files_) {
      if (other == data) names.push_back(path);
    }
    return names;
  }

  std::string Verify(const std::string& path) {
    std::string data;
    if (!ReadFile(Full(path), &data)) return Fail("read " + path);
    if (data != *files_[path]) {
      return "process " + std::to_string(index_) + " op " + std::to_string(op_) + ": " + path +
             " holds " + std::to_string(data.size()) + " bytes (checksum " +
             std::to_string(Checksum(data)) + "), expected " +
             std::to_string(files_[path]->size()) + " (checksum " +
             std::to_string(Checksum(*files_[path])) + ")";
    }
    return "";
  }

  std::string OneOp() {
    const std::uint64_t pick = rng_.Below(100);
    if (files_.empty() || pick < 18) {  // create
      const std::string path = NewName("f");
      auto data =
          std::make_shared<std::string>(RandomBytes(rng_.Next(), rng_.Below(kFileBytesMax)));
      if (!WriteFile(Full(path), *data)) return Fail("create " + path);
      files_[path] = data;
      return "";
    }
    auto file = rng_.Pick(files_);
    const std::string path = file->first;
    std::shared_ptr<std::string> data = file->second;
    if (pick < 28) {  // append
      const std::string more = RandomBytes(rng_.Next(), rng_.Below(8192) + 1);
      const int fd = open(Full(path).c_str(), O_WRONLY | O_APPEND);
      if (fd < 0 || write(fd, more.data(), more.size()) != static_cast<ssize_t>(more.size())) {
        return Fail("append " + path);
      }
      close(fd);
      *data += more;
      return "";
    }
    if (pick < 38) {  // overwrite a range, maybe past the end
      const std::size_t offset = rng_.Below(data->size() + 4096);
      const std::string bytes = RandomBytes(rng_.Next(), rng_.Below(16384) + 1);
      const int fd = open(Full(path).c_str(), O_WRONLY);
      if (fd < 0 || pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)) !=
                        static_cast<ssize_t>(bytes.size())) {
        return Fail("pwrite " + path);
      }
      if (rng_.Below(4) == 0 && fdatasync(fd) != 0) return Fail("fdatasync " + path);
      close(fd);
      if (data->size() < offset + bytes.size()) data->resize(offset + bytes.size(), '\0');
      data->replace(offset, bytes.size(), bytes);
      return "";
    }
    if (pick < 45) {  // truncate
      const std::size_t size = rng_.Below(data->size() + 8192);
      if (truncate(Full(path).c_str(), static_cast<off_t>(size)) != 0)
        return Fail("truncate " + path);
      data->resize(size, '\0');
      return "";
    }
    if (pick < 55) return Verify(path);
    if (pick < 62) {  // stat: the size is what the model says
      struct stat st {};
      if (stat(Full(path).c_str(), &st) != 0) return Fail("stat " + path);
      if (static_cast<std::size_t>(st.st_size) != data->size()) {
        return "process " + std::to_string(index_) + ": " + path + " has size " +
               std::to_string(st.st_size) + ", expected " + std::to_string(data->size());
      }
      if (st.st_nlink != NamesOf(data).size()) {
        return "process " + std::to_string(index_) + ": " + path + " nlink " +
               std::to_string(st.st_nlink) + ", expected " + std::to_string(NamesOf(data).size());
      }
      return "";
    }
    if (pick < 70) {  // unlink
      if (unlink(Full(path).c_str()) != 0) return Fail("unlink " + path);
      files_.erase(path);
      return "";
    }
    if (pick < 80) {  // rename, sometimes over another own file
      std::string target = NewName("r");
      if (rng_.Below(4) == 0 && files_.size() > 1) {
        target = rng_.Pick(files_)->first;
        if (target == path) return "";
        // Renaming over a hard link of itself is a no-op that keeps both names: avoid it.
        if (files_[target] == data) return "";
      }
      if (rename(Full(path).c_str(), Full(target).c_str()) != 0) {
        return Fail("rename " + path + " -> " + target);
      }
      files_.erase(path);
      files_[target] = data;
      return "";
    }
    if (pick < 85) {  // hard link
      const std::string target = NewName("h");
      if (link(Full(path).c_str(), Full(target).c_str()) != 0) return Fail("link " + target);
      files_[target] = data;
      return "";
    }
    if (pick < 89) {  // symlink; its target is checked by readlink, never followed
      const std::string name = NewName("s");
      if (symlink(path.c_str(), Full(name).c_str()) != 0) return Fail("symlink " + name);
      links_[name] = path;
      return "";
    }
    if (pick < 95) {  // mkdir in the own tree
      auto parent = dirs_.begin();
      std::advance(parent, static_cast<long>(rng_.Below(dirs_.size())));
      if (Depth(*parent) >= kDepthMax) return "";
      const std::string dir = *parent + "/d" + std::to_string(counter_++);
      if (mkdir(Full(dir).c_str(), 0755) != 0) return Fail("mkdir " + dir);
      dirs_.insert(dir);
      return "";
    }
    // rmdir an empty own directory (never the own root), or unlink a symlink.
    for (const std::string& dir : dirs_) {
      if (dir != own_ && DirEmpty(dir)) {
        if (rmdir(Full(dir).c_str()) != 0) return Fail("rmdir " + dir);
        dirs_.erase(dir);
        return "";
      }
    }
    if (!links_.empty()) {
      auto link_it = rng_.Pick(links_);
      if (unlink(Full(link_it->first).c_str()) != 0)
        return Fail("unlink symlink " + link_it->first);
      links_.erase(link_it);
    }
    return "";
  }

  std::string root_;
  int index_;
  Rng rng_;
  std::string own_;
  std::string prefix_;
  int op_ = 0;
  std::uint64_t counter_ = 0;
  std::map<std::string, std::shared_ptr<std::string>> files_;
  std::map<std::string, std::string> links_;
  std::set<std::string> dirs_;
};

// Walks `dir` (relative `rel`), recording each entry's type and counting names listed twice.
// Checks each directory's link count (2 + subdirectories).
void Walk(const std::string& root, const std::string& rel, std::map<std::string, char>* found,
          std::vector<std::string>* problems) {
  const std::string full = rel.empty() ? root : root + "/" + rel;
  DIR* d = opendir(full.c_str());
  if (d == nullptr) {
    problems->push_back("opendir " + rel + ": " + std::strerror(errno));
    return;
  }
  std::set<std::string> names;
  std::vector<std::string> subdirs;
  while (dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (!names.insert(name).second) problems->push_back(rel + "/" + name + " listed twice");
    const std::string child = rel.empty() ? name : rel + "/" + name;
    struct stat st {};
    if (lstat((root + "/" + child).c_str(), &st) != 0) {
      problems->push_back("lstat " + child + ": " + std::strerror(errno));
      continue;
    }
    const char type = S_ISDIR(st.st_mode)   ? 'D'
                      : S_ISLNK(st.st_mode) ? 'L'
                      : S_ISREG(st.st_mode) ? 'F'
                                            : '?';
    (*found)[child] = type;
    if (type == 'D') subdirs.push_back(child);
  }
  closedir(d);
  struct stat st {};
  if (stat(full.c_str(), &st) == 0 && st.st_nlink != 2 + subdirs.size()) {
    problems->push_back(rel + ": nlink " + std::to_string(st.st_nlink) + " with " +
                        std::to_string(subdirs.size()) + " subdirectories");
  }
  for (const std::string& sub : subdirs) Walk(root, sub, found, problems);
}

class Stress : public MountedFs {};

TEST_F(Stress, ProcessesRandomOpsThenRemount) {
  const std::uint64_t seed = TestSeed();
  SCOPED_TRACE("CFS_TEST_SEED=" + std::to_string(seed));
  const char* ops_env = std::getenv("CFS_STRESS_OPS");
  const int ops = ops_env != nullptr && std::atoi(ops_env) > 0 ? std::atoi(ops_env) : kOpsDefault;
  ASSERT_EQ(mkdir(path("shared").c_str(), 0755), 0);
  const std::string root = guard().root();
  std::vector<pid_t> children;
  for (int i = 0; i < kProcesses; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      Worker worker(root, i, seed + static_cast<std::uint64_t>(i) * 7919);
      std::string error = worker.Run(ops);
      const std::string manifest = guard().temp_dir() + "/manifest" + std::to_string(i);
      if (!WriteFile(manifest, error.empty() ? worker.Manifest() : "E " + error + "\n")) _exit(2);
      _exit(error.empty() ? 0 : 1);
    }
    children.push_back(pid);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kChildWaitS);
  for (const pid_t pid : children) {
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ADD_FAILURE() << "process " << pid << " still running after " << kChildWaitS << " s";
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  // The union of the manifests is exactly what the tree must hold.
  std::map<std::string, std::string> expected;  // path -> "F size checksum" / "L target" / "D"
  expected["shared"] = "D";
  for (int i = 0; i < kProcesses; ++i) {
    std::string manifest;
    ASSERT_TRUE(ReadFile(guard().temp_dir() + "/manifest" + std::to_string(i), &manifest))
        << "process " << i << " left no manifest";
    std::istringstream lines(manifest);
    std::string line;
    while (std::getline(lines, line)) {
      ASSERT_NE(line.rfind("E ", 0), 0u) << line;
      std::istringstream fields(line);
      std::string kind, rel, rest;
      fields >> kind >> rel;
      std::getline(fields, rest);
      expected[rel] = kind + rest;
    }
  }
  std::map<std::string, char> found;
  std::vector<std::string> problems;
  Walk(root, "", &found, &problems);
  for (const auto& [rel, want] : expected) {
    const auto it = found.find(rel);
    if (it == found.end()) {
      problems.push_back("missing: " + rel + " (" + want + ")");
      continue;
    }
    if (it->second != want[0]) {
      problems.push_back(rel + ": type " + std::string(1, it->second) + ", expected " + want);
      continue;
    }
    if (want[0] == 'F') {
      std::string data;
      if (!ReadFile(root + "/" + rel, &data)) {
        problems.push_back("read " + rel + ": " + std::strerror(errno));
      } else if (" " + std::to_string(data.size()) + " " + std::to_string(Checksum(data)) !=
                 want.substr(1)) {
        problems.push_back(rel + ": holds " + std::to_string(data.size()) + " bytes, expected" +
                           want.substr(1) + " (size checksum)");
      }
    } else if (want[0] == 'L') {
      char target[4096];
      const ssize_t n = readlink((root + "/" + rel).c_str(), target, sizeof(target));
      if (n < 0 || " " + std::string(target, n) != want.substr(1)) {
        problems.push_back(rel + ": symlink target wrong");
      }
    }
  }
  for (const auto& [rel, type] : found) {
    if (expected.find(rel) == expected.end()) problems.push_back("unexpected: " + rel);
  }
  for (std::size_t i = 0; i < problems.size() && i < 30; ++i) ADD_FAILURE() << problems[i];
  EXPECT_EQ(problems.size(), 0u);
  EXPECT_GT(found.size(), static_cast<std::size_t>(kProcesses * 10)) << "the run made little";

  std::map<std::string, std::string> before, after;
  std::string error;
  ASSERT_TRUE(SnapshotTree(root, &before, &error)) << error;
  ASSERT_NO_FATAL_FAILURE(Remount());
  ASSERT_TRUE(SnapshotTree(root, &after, &error)) << error;
  EXPECT_EQ(DiffSnapshots(before, after, 20), "") << "the remount changed the tree";
}

}  // namespace
}  // namespace cascadefs::mounttest
