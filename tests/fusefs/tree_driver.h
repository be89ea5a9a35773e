// tree_driver.h: drives a Filesystem (fs/filesystem.h) from a test, one blocking call per
// operation, and runs random namespace workloads against a model of every file's bytes. Shared
// by fsck's and gc's tests (check_test.cc) and the damage suite (damage_test.cc).
//
// Each helper expects success (EXPECT, so a failure names the operation and the test goes on
// to report more).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "engine/io/scheduler.h"
#include "fs/filesystem.h"
#include "fs/inode_record.h"

namespace cascadefs::fusefs::testing_tree {

// `size` random bytes: text (lowercase lines of 60 characters) or binary.
inline std::string Bytes(std::mt19937_64& rng, std::size_t size, bool text) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    out[i] = text ? (i % 61 == 60 ? '\n' : static_cast<char>('a' + rng() % 26))
                  : static_cast<char>(rng() & 0xff);
  }
  return out;
}

// What a random workload made: every regular file's bytes by inode, and the names of files.
struct TreeModel {
  std::map<std::uint64_t, std::string> contents;             // ino -> bytes
  std::vector<std::pair<std::uint64_t, std::string>> names;  // (dir, name) of files
};

class TreeDriver {
 public:
  TreeDriver(Filesystem* fs, io::Scheduler* scheduler) : fs_(fs), scheduler_(scheduler) {}

  template <typename T>
  T Run(io::Task<T> task) {
    return scheduler_->BlockOn(std::move(task));
  }

  std::uint64_t MkDir(std::uint64_t parent, const std::string& name) {
    EntryOut out;
    EXPECT_EQ(Run(fs_->MakeNode(parent, name, S_IFDIR | 0755, 0, {}, &out)), 0) << name;
    return out.ino;
  }
  std::uint64_t Create(std::uint64_t parent, const std::string& name, const std::string& data) {
    EntryOut out;
    EXPECT_EQ(Run(fs_->MakeNode(parent, name, S_IFREG | 0644, 0, {}, &out)), 0) << name;
    Write(out.ino, 0, data);
    return out.ino;
  }
  void Write(std::uint64_t ino, std::uint64_t offset, const std::string& data) {
    EXPECT_EQ(Run(fs_->Open(ino, false)), 0);
    if (!data.empty()) {
      EXPECT_EQ(Run(fs_->Write(ino, offset, data)), 0);
    }
    EXPECT_EQ(Run(fs_->Flush(ino)), 0);
    EXPECT_EQ(Run(fs_->Release(ino)), 0);
  }
  // The file's bytes, or the errno of the read (a damaged file reads EIO).
  int TryReadAll(std::uint64_t ino, std::string* out) {
    InodeRecord attr;
    if (const int err = Run(fs_->GetAttr(ino, &attr)); err != 0) return err;
    if (const int err = Run(fs_->Open(ino, false)); err != 0) return err;
    const int err = Run(fs_->Read(ino, 0, static_cast<std::uint32_t>(attr.size), out));
    EXPECT_EQ(Run(fs_->Release(ino)), 0);
    return err;
  }
  std::string ReadAll(std::uint64_t ino) {
    std::string out;
    EXPECT_EQ(TryReadAll(ino, &out), 0) << "inode " << ino;
    return out;
  }
  std::uint64_t Lookup(std::uint64_t parent, const std::string& name) {
    EntryOut out;
    const int err = Run(fs_->Lookup(parent, name, &out));
    return err == 0 ? out.ino : 0;
  }

  // `ops` random operations under directory `top`: mkdir, create, overwrite a range, truncate,
  // hard link, rename, unlink, symlink, setxattr; files up to 90 KB, text or binary.
  void RandomOps(std::mt19937_64& rng, std::uint64_t top, int ops, TreeModel* model) {
    std::vector<std::uint64_t> dirs = {top};
    auto& contents = model->contents;
    auto& names = model->names;
    for (int op = 0; op < ops; ++op) {
      const std::uint64_t dir = dirs[rng() % dirs.size()];
      const std::string name = "n" + std::to_string(rng() % 40);
      switch (rng() % 9) {
        case 0:
          if (Lookup(dir, name) == 0) dirs.push_back(MkDir(dir, name));
          break;
        case 1:
        case 2: {
          if (Lookup(dir, name) != 0) break;
          const std::string data = Bytes(rng, rng() % 90'000, rng() % 2 == 0);
          contents[Create(dir, name, data)] = data;
          names.emplace_back(dir, name);
          break;
        }
        case 3: {  // overwrite a range of a file
          if (names.empty()) break;
          const auto [d, n] = names[rng() % names.size()];
          const std::uint64_t ino = Lookup(d, n);
          if (ino == 0 || !contents.contains(ino)) break;
          std::string& bytes = contents[ino];
          const std::uint64_t offset = bytes.empty() ? 0 : rng() % bytes.size();
          const std::string data = Bytes(rng, 1 + rng() % 20'000, rng() % 2 == 0);
          Write(ino, offset, data);
          if (bytes.size() < offset + data.size()) bytes.resize(offset + data.size());
          bytes.replace(offset, data.size(), data);
          break;
        }
        case 4: {  // truncate
          if (names.empty()) break;
          const auto [d, n] = names[rng() % names.size()];
          const std::uint64_t ino = Lookup(d, n);
          if (ino == 0 || !contents.contains(ino)) break;
          SetAttrIn in;
          in.valid = SetAttrIn::kSize;
          in.size = contents[ino].size() / 2;
          InodeRecord out;
          EXPECT_EQ(Run(fs_->SetAttr(ino, in, &out)), 0);
          contents[ino].resize(in.size);
          break;
        }
        case 5: {  // hard link
          if (names.empty()) break;
          const auto [d, n] = names[rng() % names.size()];
          const std::uint64_t ino = Lookup(d, n);
          if (ino == 0 || Lookup(dir, name) != 0) break;
          EntryOut out;
          EXPECT_EQ(Run(fs_->Link(ino, dir, name, &out)), 0);
          names.emplace_back(dir, name);
          break;
        }
        case 6: {  // rename a file (over whatever is there, when it is a file)
          if (names.empty()) break;
          const std::size_t pick = rng() % names.size();
          const auto [d, n] = names[pick];
          const std::uint64_t target = Lookup(dir, name);
          if (Lookup(d, n) == 0 || (target != 0 && !contents.contains(target))) break;
          if (d == dir && n == name) break;
          EXPECT_EQ(Run(fs_->Rename(d, n, dir, name, 0)), 0);
          names[pick] = {dir, name};
          break;
        }
        case 7: {  // unlink
          if (names.empty()) break;
          const std::size_t pick = rng() % names.size();
          const auto [d, n] = names[pick];
          if (Lookup(d, n) != 0) {
            EXPECT_EQ(Run(fs_->Unlink(d, n)), 0);
          }
          names.erase(names.begin() + static_cast<std::ptrdiff_t>(pick));
          break;
        }
        case 8: {  // symlink or xattr
          if (Lookup(dir, name) == 0) {
            EntryOut out;
            EXPECT_EQ(Run(fs_->Symlink(dir, name, "target-" + name, {}, &out)), 0);
          } else {
            const std::uint64_t ino = Lookup(dir, name);
            EXPECT_EQ(Run(fs_->SetXattr(ino, "user.k" + std::to_string(rng() % 3), name, 0)), 0);
          }
          break;
        }
      }
    }
  }

 private:
  Filesystem* const fs_;
  io::Scheduler* const scheduler_;
};

}  // namespace cascadefs::fusefs::testing_tree
