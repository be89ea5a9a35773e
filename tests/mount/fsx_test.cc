// fsx_test.cc: random file operations on the mount checked against a model, in the manner of
// fsx (xfstests' file system exerciser), written anew.
//
// Goal: no sequence of reads, writes, truncates, fallocates (default, punch hole, zero range)
// and mmap reads and writes makes the file differ from what a correct filesystem would hold.
// Method: one file in the mount and its model, a std::string in memory. Each op is applied to
// both; every read (pread or through a fresh mmap) is compared with the model, and the whole
// file is compared every kFullCheckEvery ops, after a close and reopen, across a remount in
// the middle of the run, and at the end. Offsets and lengths are random, many straddling page
// and chunk boundaries and the end of file. The seed comes from CFS_TEST_SEED (or is random) and
// is printed with the last ops on failure; CFS_FSX_OPS overrides the op count.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>

#include <gtest/gtest.h>

#include "mount/mount_fixture.h"

namespace cascadefs::mounttest {
namespace {

// Ops recalled in a failure message.
constexpr std::size_t kOpLogMax = 40;
// A whole-file comparison every this many ops.
constexpr int kFullCheckEvery = 250;

struct FsxParams {
  std::size_t file_bytes_max;  // the file never grows beyond this
  std::size_t op_bytes_max;    // longest read/write/fallocate range
  int ops;                     // ops in the run (CFS_FSX_OPS overrides)
  bool remount_midway;
};

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ULL | 1) {}
  std::uint64_t Next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1DULL;
  }
  // Uniform in [0, bound). REQUIRES: bound > 0.
  std::uint64_t Below(std::uint64_t bound) { return Next() % bound; }
  // Biased toward page and chunk edges a third of the time: k*4096 - 1, k*4096, k*4096 + 1.
  std::uint64_t Offset(std::uint64_t bound) {
    if (bound == 0) return 0;
    std::uint64_t value = Below(bound);
    if (Below(3) == 0) {
      value = (value / 4096) * 4096 + Below(3);
      if (value > 0) value -= 1;
    }
    return std::min(value, bound - 1);
  }

 private:
  std::uint64_t state_;
};

class FsxRun {
 public:
  FsxRun(std::string path, const FsxParams& params, std::uint64_t seed)
      : path_(std::move(path)), params_(params), rng_(seed), seed_(seed) {}
  ~FsxRun() {
    if (fd_ >= 0) close(fd_);
  }

  // Runs every op; returns "" or the first failure with the seed and the last ops.
  std::string Run(const std::function<std::string()>& remount) {
    if (!Open(O_CREAT | O_TRUNC)) return Failure("open: " + std::string(std::strerror(errno)));
    const int ops = OpsFromEnv(params_.ops);
    for (op_index_ = 0; op_index_ < ops; ++op_index_) {
      std::string error = OneOp();
      if (error.empty() && (op_index_ + 1) % kFullCheckEvery == 0)
        error = CheckWholeFile("periodic");
      if (error.empty() && params_.remount_midway && op_index_ == ops / 2) {
        Log("remount");
        close(fd_);
        fd_ = -1;
        error = remount();
        if (error.empty() && !Open(0))
          error = "reopen after remount: " + std::string(std::strerror(errno));
        if (error.empty()) error = CheckWholeFile("after remount");
      }
      if (!error.empty()) return Failure(error);
    }
    close(fd_);
    fd_ = -1;
    if (!Open(0)) return Failure("final open: " + std::string(std::strerror(errno)));
    const std::string error = CheckWholeFile("final");
    return error.empty() ? "" : Failure(error);
  }

 private:
  static int OpsFromEnv(int ops) {
    const char* value = std::getenv("CFS_FSX_OPS");
    return value != nullptr && std::atoi(value) > 0 ? std::atoi(value) : ops;
  }

  bool Open(int extra_flags) {
    fd_ = open(path_.c_str(), O_RDWR | O_CLOEXEC | extra_flags, 0644);
    return fd_ >= 0;
  }

  void Log(std::string op) {
    op_log_.push_back("#" + std::to_string(op_index_) + " " + op);
    if (op_log_.size() > kOpLogMax) op_log_.pop_front();
  }

  std::string Failure(const std::string& error) const {
    std::string message = "fsx failure: " + error +
                          "\nseed: CFS_TEST_SEED=" + std::to_string(seed_) + " (op " +
                          std::to_string(op_index_) + ", model size " +
                          std::to_string(model_.size()) + ")\nlast ops:\n";
    for (const std::string& op : op_log_) message += "  " + op + "\n";
    return message;
  }

  // "" if `got` equals the model over [offset, offset + got.size()), else where it differs.
  std::string Compare(const char* what, std::uint64_t offset, std::string_view got,
                      std::size_t expected_size) const {
    const std::string_view want = std::string_view(model_).substr(offset, expected_size);
    if (got.size() != want.size()) {
      return std::string(what) + " at " + std::to_string(offset) + ": got " +
             std::to_string(got.size()) + " bytes, expected " + std::to_string(want.size());
    }
    const auto diff = std::mismatch(got.begin(), got.end(), want.begin());
    if (diff.first == got.end()) return "";
    const std::size_t at = offset + static_cast<std::size_t>(diff.first - got.begin());
    return std::string(what) + " at " + std::to_string(offset) + " len " +
           std::to_string(got.size()) + ": first wrong byte at file offset " + std::to_string(at) +
           " (got " + std::to_string(static_cast<unsigned char>(*diff.first)) + ", expected " +
           std::to_string(static_cast<unsigned char>(*diff.second)) + ")";
  }

  std::string CheckWholeFile(const char* when) {
    struct stat st {};
    if (fstat(fd_, &st) != 0) return std::string(when) + " fstat: " + std::strerror(errno);
    if (static_cast<std::size_t>(st.st_size) != model_.size()) {
      return std::string(when) + ": size " + std::to_string(st.st_size) + ", expected " +
             std::to_string(model_.size());
    }
    std::string data(model_.size() + 1, '\0');
    const ssize_t n = pread(fd_, data.data(), data.size(), 0);
    if (n < 0) return std::string(when) + " pread: " + std::strerror(errno);
    data.resize(static_cast<std::size_t>(n));
    return Compare(when, 0, data, model_.size());
  }

  std::string OneOp() {
    const std::uint64_t pick = rng_.Below(100);
    if (pick < 22) return DoRead();
    if (pick < 44) return DoWrite();
    if (pick < 54) return DoMapRead();
    if (pick < 64) return DoMapWrite();
    if (pick < 72) return DoTruncate();
    if (pick < 79) return DoPunch();
    if (pick < 86) return DoZero();
    if (pick < 91) return DoAllocate();
    if (pick < 94) return DoSeek();
    if (pick < 97) {
      Log("fsync");
      return fsync(fd_) == 0 ? "" : std::string("fsync: ") + std::strerror(errno);
    }
    Log("close+reopen");
    close(fd_);
    fd_ = -1;
    return Open(0) ? "" : std::string("reopen: ") + std::strerror(errno);
  }

  std::uint64_t Length() { return 1 + rng_.Below(params_.op_bytes_max); }

  std::string DoRead() {
    const std::uint64_t offset = rng_.Offset(model_.size() + 1);
    const std::uint64_t len = Length();
    Log("read " + std::to_string(offset) + " " + std::to_string(len));
    std::string data(len, '\0');
    const ssize_t n = pread(fd_, data.data(), len, static_cast<off_t>(offset));
    if (n < 0) return std::string("pread: ") + std::strerror(errno);
    data.resize(static_cast<std::size_t>(n));
    const std::size_t expected =
        offset >= model_.size() ? 0 : std::min<std::size_t>(len, model_.size() - offset);
    return Compare("read", offset, data, expected);
  }

  std::string DoWrite() {
    const std::uint64_t offset = rng_.Offset(params_.file_bytes_max);
    const std::uint64_t len = std::min<std::uint64_t>(Length(), params_.file_bytes_max - offset);
    Log("write " + std::to_string(offset) + " " + std::to_string(len));
    const std::string data = RandomBytes(rng_.Next(), len);
    const ssize_t n = pwrite(fd_, data.data(), len, static_cast<off_t>(offset));
    if (n != static_cast<ssize_t>(len)) return std::string("pwrite: ") + std::strerror(errno);
    if (model_.size() < offset + len) model_.resize(offset + len, '\0');
    model_.replace(offset, len, data);
    return "";
  }

  std::string DoMapRead() {
    if (model_.empty()) return "";
    const std::uint64_t offset = rng_.Offset(model_.size());
    const std::uint64_t len = std::min<std::uint64_t>(Length(), model_.size() - offset);
    Log("mapread " + std::to_string(offset) + " " + std::to_string(len));
    const std::uint64_t page_offset = offset & ~std::uint64_t{4095};
    const std::size_t map_len = offset - page_offset + len;
    void* map = mmap(nullptr, map_len, PROT_READ, MAP_SHARED, fd_, static_cast<off_t>(page_offset));
    if (map == MAP_FAILED) return std::string("mmap read: ") + std::strerror(errno);
    const std::string data(static_cast<const char*>(map) + (offset - page_offset), len);
    munmap(map, map_len);
    return Compare("mapread", offset, data, len);
  }

  std::string DoMapWrite() {
    const std::uint64_t offset = rng_.Offset(params_.file_bytes_max);
    const std::uint64_t len = std::min<std::uint64_t>(Length(), params_.file_bytes_max - offset);
    Log("mapwrite " + std::to_string(offset) + " " + std::to_string(len));
    // A map cannot extend a file: grow it first, as fsx does.
    if (offset + len > model_.size()) {
      if (ftruncate(fd_, static_cast<off_t>(offset + len)) != 0) {
        return std::string("ftruncate before mapwrite: ") + std::strerror(errno);
      }
      model_.resize(offset + len, '\0');
    }
    const std::uint64_t page_offset = offset & ~std::uint64_t{4095};
    const std::size_t map_len = offset - page_offset + len;
    void* map = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd_,
                     static_cast<off_t>(page_offset));
    if (map == MAP_FAILED) return std::string("mmap write: ") + std::strerror(errno);
    const std::string data = RandomBytes(rng_.Next(), len);
    std::memcpy(static_cast<char*>(map) + (offset - page_offset), data.data(), len);
    const int rc = msync(map, map_len, MS_SYNC);
    const int err = errno;
    munmap(map, map_len);
    if (rc != 0) return std::string("msync: ") + std::strerror(err);
    model_.replace(offset, len, data);
    return "";
  }

  std::string DoTruncate() {
    // Half the time small (under 1/8 of the maximum), so the file often shrinks and regrows.
    const std::uint64_t bound =
        rng_.Below(2) == 0 ? params_.file_bytes_max / 8 : params_.file_bytes_max;
    const std::uint64_t size = rng_.Offset(bound + 1);
    Log("truncate " + std::to_string(size));
    if (ftruncate(fd_, static_cast<off_t>(size)) != 0)
      return std::string("ftruncate: ") + std::strerror(errno);
    model_.resize(size, '\0');
    return "";
  }

  std::string DoPunch() {
    if (model_.empty()) return "";
    const std::uint64_t offset = rng_.Offset(model_.size());
    const std::uint64_t len = Length();
    Log("punch " + std::to_string(offset) + " " + std::to_string(len));
    if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(len)) != 0) {
      return std::string("fallocate punch: ") + std::strerror(errno);
    }
    const std::uint64_t end = std::min<std::uint64_t>(offset + len, model_.size());
    std::fill(model_.begin() + static_cast<std::ptrdiff_t>(offset),
              model_.begin() + static_cast<std::ptrdiff_t>(end), '\0');
    return "";
  }

  std::string DoZero() {
    const std::uint64_t offset = rng_.Offset(params_.file_bytes_max);
    const std::uint64_t len = std::min<std::uint64_t>(Length(), params_.file_bytes_max - offset);
    const bool keep_size = rng_.Below(2) == 0;
    Log(std::string("zero ") + std::to_string(offset) + " " + std::to_string(len) +
        (keep_size ? " keep_size" : ""));
    if (fallocate(fd_, FALLOC_FL_ZERO_RANGE | (keep_size ? FALLOC_FL_KEEP_SIZE : 0),
                  static_cast<off_t>(offset), static_cast<off_t>(len)) != 0) {
      return std::string("fallocate zero range: ") + std::strerror(errno);
    }
    if (!keep_size && offset + len > model_.size()) model_.resize(offset + len, '\0');
    const std::uint64_t end = std::min<std::uint64_t>(offset + len, model_.size());
    if (offset < end) {
      std::fill(model_.begin() + static_cast<std::ptrdiff_t>(offset),
                model_.begin() + static_cast<std::ptrdiff_t>(end), '\0');
    }
    return "";
  }

  // SEEK_DATA or SEEK_HOLE from a random offset, checked for what any filesystem must give
  // (holes are allowed anywhere zeros are, so the model knows only where they cannot be):
  // ENXIO at or past the end; SEEK_DATA skips only zeros; SEEK_HOLE lands on a zero or at
  // the end, never before the offset. An fsync first: the kernel does not write its cached
  // pages back before FUSE_LSEEK, so without one a seek may miss writes the daemon has not
  // received yet (a known limit, docs/fusefs.md).
  std::string DoSeek() {
    const bool data = rng_.Below(2) == 0;
    const std::uint64_t offset = rng_.Offset(model_.size() + 2);
    Log(std::string(data ? "fsync+seek_data " : "fsync+seek_hole ") + std::to_string(offset));
    if (fsync(fd_) != 0) return std::string("fsync before seek: ") + std::strerror(errno);
    errno = 0;
    const off_t got = lseek(fd_, static_cast<off_t>(offset), data ? SEEK_DATA : SEEK_HOLE);
    const std::string what = std::string(data ? "SEEK_DATA" : "SEEK_HOLE") + " from " +
                             std::to_string(offset) + " gave " + std::to_string(got);
    if (offset >= model_.size()) {
      return got == -1 && errno == ENXIO ? "" : what + ", expected ENXIO";
    }
    if (got == -1 && data && errno == ENXIO) {
      // No data after `offset`: everything from it to the end must be zeros.
      const bool zeros = std::all_of(model_.begin() + static_cast<std::ptrdiff_t>(offset),
                                     model_.end(), [](char c) { return c == '\0'; });
      return zeros ? "" : what + " (ENXIO) over nonzero bytes";
    }
    if (got < 0) return what + ": " + std::strerror(errno);
    const auto at = static_cast<std::uint64_t>(got);
    if (at < offset || at > model_.size()) return what + ": out of range";
    if (data) {
      if (at == model_.size()) return what + ": SEEK_DATA gives the end, not ENXIO";
      const bool zeros = std::all_of(model_.begin() + static_cast<std::ptrdiff_t>(offset),
                                     model_.begin() + static_cast<std::ptrdiff_t>(at),
                                     [](char c) { return c == '\0'; });
      return zeros ? "" : what + ": skipped nonzero bytes";
    }
    return at == model_.size() || model_[at] == '\0' ? "" : what + ": a hole on a nonzero byte";
  }

  std::string DoAllocate() {
    const std::uint64_t offset = rng_.Offset(params_.file_bytes_max);
    const std::uint64_t len = std::min<std::uint64_t>(Length(), params_.file_bytes_max - offset);
    Log("fallocate " + std::to_string(offset) + " " + std::to_string(len));
    if (fallocate(fd_, 0, static_cast<off_t>(offset), static_cast<off_t>(len)) != 0) {
      return std::string("fallocate: ") + std::strerror(errno);
    }
    if (offset + len > model_.size()) model_.resize(offset + len, '\0');
    return "";
  }

  std::string path_;
  FsxParams params_;
  Rng rng_;
  std::uint64_t seed_;
  int fd_ = -1;
  int op_index_ = 0;
  std::string model_;
  std::deque<std::string> op_log_;
};

class Fsx : public MountedFs {
 protected:
  void RunFsx(const FsxParams& params) {
    const std::uint64_t seed = TestSeed();
    SCOPED_TRACE("CFS_TEST_SEED=" + std::to_string(seed));
    FsxRun run(path("fsx.dat"), params, seed);
    const std::string error = run.Run([this] { return guard().Remount(); });
    EXPECT_EQ(error, "");
  }
};

// The default shape: a file up to 256 KiB, ops up to 64 KiB, a remount in the middle.
TEST_F(Fsx, RandomOpsWithRemount) {
  RunFsx({.file_bytes_max = 256 * 1024,
          .op_bytes_max = 64 * 1024,
          .ops = 5000,
          .remount_midway = true});
}

// Small ops on a small file: every op lands near a page or chunk edge and the end of file.
TEST_F(Fsx, SmallFileEdges) {
  RunFsx({.file_bytes_max = 20000, .op_bytes_max = 5000, .ops = 3000, .remount_midway = true});
}

// A sparse file up to 64 MiB with ops up to 1 MiB: long holes, big punches, large writes.
TEST_F(Fsx, LargeSparseFile) {
  RunFsx(
      {.file_bytes_max = 64u << 20, .op_bytes_max = 1u << 20, .ops = 600, .remount_midway = true});
}

}  // namespace
}  // namespace cascadefs::mounttest
