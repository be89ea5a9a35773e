// sync_agent.h: a synced mount's side of sync (docs/sync.md, "The synced mount").
//
// The agent keeps the mount's namespace and a hub's journal namespace in step over two TLS
// connections (net/connection.h):
// - push: after a local change (Filesystem's on_change cue) it waits for quiet (kQuietMs
//   after the last change, at most kDelayMaxMs after the first), walks the namespace, and
//   commits every path whose state differs from its base entry (sync_state.h): renames
//   first, then deletes, then creates and updates, uploading the chunks the hub lacks.
// - pull: it long-polls the journal from its cursor and applies each entry: a file's missing
//   chunks are fetched (nodes are stored only after their children, so a held node always
//   has its whole tree), then installed under a temporary name and renamed over the old one
//   in one step: a reader holding the old file open keeps reading the old version whole.
// A path changed on both sides is a conflict: the hub's version (journaled first) keeps the
// name, the local one is renamed "name (conflicted copy from HOST DATE).ext" and committed as
// a new file. Nothing is lost: a local change the hub has not journaled stays in the
// namespace, and a remote delete removes only what still equals its base.
//
// Offline: without the hub both loops retry with backoff (1 s doubling to 30 s); local
// changes wait in the namespace itself (their base entries say they are not committed) and
// are committed on reconnect. The cursor and base entries are in the store: a restarted
// mount resumes where it stopped.
//
// Threads: the push and pull threads, plain threads that run the filesystem's coroutines
// with Scheduler::BlockOn; one mutex (work_mutex_) makes a push round and a pull batch take
// turns, so each sees the namespace and the base consistent.
// Memory: the base entries (about 100 bytes per synced path) and one scan of the namespace
// while a push round runs; a fetch holds the tree nodes of one file until its leaves are in
// (about 1/500 of the file's size).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/db.h"
#include "engine/io/scheduler.h"
#include "engine/result.h"
#include "fs/filesystem.h"
#include "net/connection.h"
#include "sync/ignore.h"
#include "sync/sync_state.h"

namespace cascadefs::fusefs::sync {

// A local change is committed this long after the last change seen (a burst of writes is one
// commit), and at most kDelayMaxMs after the first.
inline constexpr int kQuietMs = 100;
inline constexpr int kDelayMaxMs = 1000;
// A push round also runs this often without a cue (a change the cue missed cannot wait long).
inline constexpr int kRescanMs = 30000;
// The long poll of the pull loop.
inline constexpr std::uint32_t kListWaitMs = 20000;
// Reconnect backoff.
inline constexpr int kBackoffMinMs = 1000;
inline constexpr int kBackoffMaxMs = 30000;
// Chunk bytes per StoreBatch (below net::kBatchBytesMax with room for names and framing).
inline constexpr std::size_t kUploadBatchBytes = 8 << 20;
// Names per Retrieve.
inline constexpr std::size_t kRetrieveNamesMax = 4096;
// The .cascadeignore file read: at most this many bytes.
inline constexpr std::size_t kIgnoreFileBytesMax = 1 << 20;
// Deltas (net/delta.h) are planned for files up to this size: planning maps the old tree's
// chunks by level and offset (about 40 bytes per chunk: 5 MiB for a 1 GiB file). Larger files
// send changed chunks whole.
inline constexpr std::uint64_t kDeltaFileBytesMax = std::uint64_t{1} << 30;
// zstd level of deltas (chunks are at most 256 KiB: about a millisecond each).
inline constexpr int kDeltaLevel = 19;

struct SyncAgentOptions {
  net::HostPort hub;
  net::PresharedKey key;
  std::string ns = "default";
  bool receive_only = false;    // apply remote changes, never commit local ones
  std::string host;             // this machine's name: commits' origin, conflict copies' names
  std::uint32_t owner_uid = 0;  // owner of what the agent creates (the mounting user)
  std::uint32_t owner_gid = 0;
  net::ConnectionOptions connection;
  // Drops the kernel's cached name `name` in directory `parent` (FUSE_NOTIFY_INVAL_ENTRY), so
  // a replaced or new entry is seen at once. Called from the agent's threads.
  std::function<void(std::uint64_t parent, std::string_view name)> invalidate_entry;
  std::function<void(std::string_view)> log;
};

struct SyncStats {
  std::string state;  // "connected", "connecting", "offline", "stopped"
  std::string last_error;
  std::uint64_t cursor = 0;     // last journal id applied
  std::uint64_t head = 0;       // the hub's newest journal id, as last seen
  std::uint64_t pending = 0;    // local paths differing from the hub at the last push round
  std::uint64_t commits = 0;    // entries the hub journaled from this mount
  std::uint64_t applied = 0;    // remote entries applied here
  std::uint64_t conflicts = 0;  // conflicted copies made here
  std::uint64_t uploaded_chunks = 0;
  std::uint64_t uploaded_bytes = 0;
  std::uint64_t fetched_chunks = 0;
  std::uint64_t fetched_bytes = 0;
  std::uint64_t wire_bytes_sent = 0;  // TLS bytes on the agent's connections
  std::uint64_t wire_bytes_received = 0;
};

class SyncAgent {
 public:
  // Loads the sync state from `db` and starts both loops (connecting in the background: an
  // unreachable hub is not an error here). `fs`, `db` and `scheduler` must outlive Stop.
  static Result<std::unique_ptr<SyncAgent>> Start(Filesystem* fs, engine::DB* db,
                                                  io::Scheduler* scheduler,
                                                  SyncAgentOptions options);
  ~SyncAgent();

  // A namespace change happened (Filesystem's on_change): cheap, never blocks.
  void NotifyChange();
  // Stops both loops, interrupting a connection wait; a push round in progress ends at its
  // next step. The state written so far stays.
  void Stop();
  SyncStats stats() const;

 private:
  struct LocalEntry;
  class Channel;
  using LocalTree = std::map<std::string, LocalEntry>;

  SyncAgent(Filesystem* fs, engine::DB* db, io::Scheduler* scheduler, SyncAgentOptions options);
  Status LoadState();
  void PushLoop();
  void PullLoop();
  bool WaitBackoff(int* backoff_ms);
  // Called under work_mutex_ when a connection learns the hub's id.
  Status CheckHub(const std::string& hub_id);

  Status PushRound();
  Status CommitEntries(std::vector<net::CommitEntry> entries, std::set<std::uint64_t>* no_rename);
  // Sends the chunks `names` (read from the local store), each as a delta against its entry in
  // `bases` when that is not null and the delta is smaller (bases empty: none).
  Status Upload(const std::vector<ChunkName>& names, const std::vector<ChunkName>& bases);
  // The chunks of `now`'s tree that `before`'s tree lacks, each with the chunk of `before` at
  // the same level and offset as its delta base. False when a tree is too large to map.
  bool PlanUpdate(const FileRoot& now, const FileRoot& before, std::vector<ChunkName>* names,
                  std::vector<ChunkName>* bases);
  Status PullBatch();
  Status ApplyEntry(const net::JournalEntry& entry);
  // Fetches what the local store lacks of `root`'s tree; `similar` (a version of the same
  // file held here, or an empty root) gives delta bases.
  Status FetchTree(const FileRoot& root, const FileRoot& similar);

  // Base bookkeeping (work_mutex_ held); every change is also queued in pending_writes_.
  void SetBase(const std::string& path, const BaseEntry& entry);
  void TombstoneTree(const std::string& path, std::uint64_t jid);
  void MoveBaseTree(const std::string& from, const std::string& to, std::uint64_t jid);
  Status WriteState();
  const BaseEntry* LiveBase(const std::string& path) const;

  io::Task<Status> ScanTree(LocalTree* out, IgnoreRules* rules);
  io::Task<Status> ReadIgnoreRules(IgnoreRules* rules);
  std::string Today() const;
  void RecordError(const Status& status);
  void Log(std::string_view line) const;

  Filesystem* const fs_;
  engine::DB* const db_;
  io::Scheduler* const scheduler_;
  const SyncAgentOptions options_;

  std::mutex work_mutex_;
  std::map<std::string, BaseEntry> base_;  // GUARDED_BY(work_mutex_)
  SyncCursor cursor_;                      // GUARDED_BY(work_mutex_)
  engine::WriteBatch pending_writes_;      // GUARDED_BY(work_mutex_)
  IgnoreRules ignore_;                     // GUARDED_BY(work_mutex_); refreshed by each scan
  std::uint64_t unresolved_ = 0;  // GUARDED_BY(work_mutex_): conflicts and refusals of a round

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;                               // GUARDED_BY(mutex_)
  bool stopped_ = false;                                // GUARDED_BY(mutex_): Stop ran
  bool round_running_ = false;                          // GUARDED_BY(mutex_)
  bool changed_ = true;                                 // GUARDED_BY(mutex_)
  std::chrono::steady_clock::time_point first_change_;  // GUARDED_BY(mutex_)
  std::chrono::steady_clock::time_point last_change_;   // GUARDED_BY(mutex_)
  std::string last_error_;                              // GUARDED_BY(mutex_)
  std::string state_ = "connecting";                    // GUARDED_BY(mutex_)

  std::unique_ptr<Channel> push_channel_;
  std::unique_ptr<Channel> pull_channel_;
  std::thread push_thread_;
  std::thread pull_thread_;

  std::atomic<std::uint64_t> head_{0};
  std::atomic<std::uint64_t> cursor_seen_{0};
  std::atomic<std::uint64_t> pending_{0};
  std::atomic<std::uint64_t> commits_{0};
  std::atomic<std::uint64_t> applied_{0};
  std::atomic<std::uint64_t> conflicts_{0};
  std::atomic<std::uint64_t> uploaded_chunks_{0};
  std::atomic<std::uint64_t> uploaded_bytes_{0};
  std::atomic<std::uint64_t> fetched_chunks_{0};
  std::atomic<std::uint64_t> fetched_bytes_{0};
};

}  // namespace cascadefs::fusefs::sync
