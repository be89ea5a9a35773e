// mount_fixture.h: a real cascadefs mount per test, always unmounted, for tests/mount/.
//
// Design: MountGuard owns one mount: a fresh temporary directory holding the store, the mount
// point and the daemon's log, and the daemon itself, run in the foreground
// (`cascadefs mount --store S -f M`) as a child process so its pid is known and a test can
// kill -9 it. Mount() returns once M is a mount point (its st_dev differs from its parent's),
// within kMountWaitMs, or fails naming the daemon's exit status and the tail of its log.
// Unmount() runs `cascadefs umount M`, waits for the daemon to exit (its exit status must be 0:
// a leak or a crash at shutdown under ASan fails the test), and falls back to SIGTERM,
// SIGKILL and `fusermount3 -uz` (then `umount -l`) so that no mount is ever left behind. The
// destructor does the same and deletes the temporary directory, but never while something is
// still mounted under it. The daemon is started with PR_SET_PDEATHSIG=SIGTERM, so a test
// process killed by ctest's timeout takes its daemon down with it (SIGTERM is a clean
// unmount for cascadefs).
//
// CFS_MOUNT_TARGET=native runs the same tests on a plain directory (root() is a directory in
// the temporary one): Remount() is then a no-op and KillDaemon() is not possible (tests that
// need it skip). This validates the tests themselves against the kernel's own filesystem.
// CFS_CASCADEFS_BIN names the binary (set by CMake); CFS_MOUNT_TMP the parent of the temporary
// directories (default /var/tmp: a real disk, unlike a tmpfs /tmp).
//
// CFS_MOUNT_TRANSPORT chooses how the daemon gets the kernel's requests: "dev-fuse" (the
// default) or "io-uring" (`cascadefs mount --transport ...`). For io-uring a global test
// environment turns the fuse module's enable_uring parameter on before the first test and puts
// it back after the last; where the kernel has no such parameter every test skips, saying so.
// CMake runs each suite under both (the io-uring runs never at once: they share the parameter).
//
// MountedFs is the GoogleTest fixture over one MountGuard: SetUp mounts, TearDown unmounts and
// checks the unmount was clean. Its helpers ASSERT, so callers wrap them in
// ASSERT_NO_FATAL_FAILURE when later steps depend on them.
//
// Thread safety: none. One test thread drives a MountGuard; forked children must not touch it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace cascadefs::mounttest {

// How long Mount() waits for the mount point to come up, and Unmount() for the daemon to exit.
// Generous: the daemon may be an ASan build on a loaded 2-core machine.
constexpr int kMountWaitMs = 60000;
constexpr int kDaemonExitWaitMs = 60000;

enum class Target { kCascadefs, kNative };

// The target chosen by CFS_MOUNT_TARGET: "native" or unset/"cascadefs".
Target TargetFromEnv();
// The transport chosen by CFS_MOUNT_TRANSPORT: "io-uring", or "dev-fuse" (unset or anything
// else).
std::string TransportFromEnv();
// Why this run's mounts cannot be made (the io_uring transport on a kernel without it), or "".
std::string MountSkipReason();

struct MountGuardOptions {
  // Where the store lives. Empty: `store` in the guard's own temporary directory. Used by the
  // ENOSPC test to put the store on a small loop-mounted filesystem. For the native target the
  // test directory (root()) is created inside it.
  std::string store_dir;
};

class MountGuard {
 public:
  // Creates the temporary directory and mounts. On failure returns null and sets *error.
  static std::unique_ptr<MountGuard> Create(Target target, const MountGuardOptions& options,
                                            std::string* error);
  // Unmounts (best effort, every fallback) and removes the temporary directory.
  ~MountGuard();
  MountGuard(const MountGuard&) = delete;
  MountGuard& operator=(const MountGuard&) = delete;

  // Each returns "" on success, else one line saying what failed. After a failed Unmount()
  // the mount is gone anyway (the fallbacks ran) and the daemon reaped.
  std::string Mount();
  std::string Unmount();
  std::string Remount();  // Unmount() then Mount(); native: nothing
  // SIGKILL to the daemon, reap it, run `after_kill` (if given: e.g. kill the writers that
  // were using the mount), lazy unmount of the dead mount point, Mount() again.
  // REQUIRES: target() == kCascadefs.
  std::string KillDaemon(const std::function<void()>& after_kill = {});
  // After an unmount made by someone else (umount -l): waits for the daemon to exit and
  // checks it exited cleanly (status 0).
  std::string WaitDaemonAfterExternalUnmount();

  Target target() const { return target_; }
  bool native() const { return target_ == Target::kNative; }
  bool mounted() const { return daemon_pid_ > 0; }
  pid_t daemon_pid() const { return daemon_pid_; }
  // The directory the tests work in: the mount point, or the native directory.
  const std::string& root() const { return root_; }
  const std::string& temp_dir() const { return temp_dir_; }
  const std::string& store_dir() const { return store_dir_; }
  // The last lines of the daemon's log (stdout and stderr of every daemon run), for messages.
  std::string LogTail() const;

 private:
  MountGuard(Target target, std::string temp_dir, std::string store_dir);
  // Waits up to `wait_ms` for the daemon to exit; true with *status set if it did.
  bool WaitDaemon(int wait_ms, int* status);
  // The fallbacks: lazy unmount by fusermount3, then umount -l. True if root_ is no mount.
  bool ForceUnmount();

  Target target_;
  std::string temp_dir_;
  std::string store_dir_;
  std::string root_;
  std::string log_path_;
  pid_t daemon_pid_ = -1;
};

// The GoogleTest fixture: one fresh mount per test.
class MountedFs : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Overridden by fixtures that need their own store placement (the ENOSPC test).
  virtual MountGuardOptions Options() { return {}; }

  // ASSERTs that the remount (or kill and remount) worked.
  void Remount();
  void KillDaemon(const std::function<void()>& after_kill = {});
  std::string path(std::string_view rel) const;
  bool native() const { return guard_ != nullptr && guard_->native(); }
  MountGuard& guard() { return *guard_; }

  std::unique_ptr<MountGuard> guard_;
};

// ---- Helpers shared by the suites ---------------------------------------------------------

// Runs argv (argv[0] looked up in PATH) in `cwd` (empty: inherit) with stdout and stderr
// captured into *output (may be null), killed after timeout_s. Returns the exit status (0..255),
// 128+signal if it died of one, -1 if it could not run or timed out (*output then says why).
int RunProgram(const std::vector<std::string>& argv, const std::string& cwd, std::string* output,
               int timeout_s);
// True if `name` is an executable in PATH.
bool HaveProgram(const std::string& name);
// The last `lines` lines of `text`.
std::string Tail(const std::string& text, int lines);

// Whole-file helpers over POSIX calls; each returns false (with errno) on failure.
bool WriteFile(const std::string& path, std::string_view data);
bool ReadFile(const std::string& path, std::string* data);
// Deterministic pseudo-random bytes (incompressible, unique per seed).
std::string RandomBytes(std::uint64_t seed, std::size_t size);
// 64-bit FNV-1a over bytes: cheap content check for recorded manifests.
std::uint64_t Checksum(std::string_view data);
// The seed: CFS_TEST_SEED if set, else random. Tests print it on failure (SCOPED_TRACE).
std::uint64_t TestSeed();

// Everything a remount must keep, per path relative to `root` (not atime, not inode numbers):
// type, mode, uid, gid, size, nlink, mtime and ctime in ns, a checksum of the contents (files),
// the target (symlinks), the xattrs. Returns false with *error naming the path on a failed call.
bool SnapshotTree(const std::string& root, std::map<std::string, std::string>* snapshot,
                  std::string* error);
// The differences between two snapshots, one line each (at most `lines_max`), "" if equal.
std::string DiffSnapshots(const std::map<std::string, std::string>& before,
                          const std::map<std::string, std::string>& after, int lines_max);

}  // namespace cascadefs::mounttest
