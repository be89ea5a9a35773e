// hub_impl.h: the Hub (hub.h): the writer thread, the requests, and the network server
// (server.cc).
//
// Threads and what each may touch:
//  - the writer thread (WriterLoop) is the only one that builds an Index, appends to or prunes
//    the journal, and stores snapshot_; it takes commit groups from queue_;
//  - handler threads (one per connection, server.cc) and in-process callers run the requests:
//    they load snapshot_ (lock-free), read the chunk store and the journal, and hand commits to
//    the writer through queue_, waiting on their CommitWork for the answer;
//  - the listener thread (server.cc) accepts, and reaps finished handlers.
// Lock order: queue_mutex_, then publish_mutex_; connections_mutex_ alone. No lock is held
// while calling the engine, the cache or the network, except gc_mutex_ (see below).
//
// gc_mutex_: StoreBatch holds it shared while it stores, CollectGarbage exclusively (and runs
// on the writer thread, so no commit is applied meanwhile).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "cache/chunk_cache.h"
#include "completeness.h"
#include "engine/db.h"
#include "engine/io/scheduler.h"
#include "fusefs/chunk_store.h"
#include "hub/hub.h"
#include "hub/journal_store.h"
#include "index.h"

namespace cascadefs::hub {

// Commits queued for the writer at most; a handler beyond it waits for room.
inline constexpr std::size_t kCommitQueueMax = 256;
// Commits the writer applies in one group (one journal append, one publish).
inline constexpr std::size_t kCommitGroupMax = 64;
// Names one Retrieve reads from the store at once (bounds its memory with kChunkBytesMax).
inline constexpr std::size_t kRetrieveReadNamesMax = 64;

class HubImpl final : public Hub {
 public:
  explicit HubImpl(const HubOptions& options);
  ~HubImpl() override;

  Status Start();

  const std::string& hub_id() const override { return hub_id_; }
  Status Listen(const net::HostPort& address, const net::PresharedKey& key,
                const net::ConnectionOptions& connection_options) override;
  std::uint16_t port() const override { return port_.load(); }
  Result<net::CommitReply> Commit(const net::Commit& commit, std::string_view origin) override;
  Result<net::StoreReply> StoreBatch(const net::StoreBatch& batch) override;
  Result<net::ListReply> List(const net::List& list) override;
  Result<net::RetrieveReply> Retrieve(const net::Retrieve& retrieve) override;
  Status PruneJournal(std::uint64_t* pruned) override;
  Result<HubGcReport> CollectGarbage() override;
  Status Close() override;

  // The published index (tests).
  std::shared_ptr<const Index> snapshot() const { return snapshot_.load(); }

 private:
  // A unit of work for the writer. The submitter waits for `done`.
  struct Work {
    enum class Kind { kCommit, kPrune, kGc } kind = Kind::kCommit;
    // kCommit: namespace (created when new), entries and their file verdicts, origin.
    std::string ns;
    const std::vector<net::CommitEntry>* entries = nullptr;
    std::vector<FileVerdict> verdicts;  // per entry; kComplete for non-file entries
    std::string origin;
    // Answer.
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;                       // GUARDED_BY(mutex)
    Status status;                           // GUARDED_BY(mutex)
    std::vector<net::CommitResult> results;  // GUARDED_BY(mutex)
    std::uint64_t count = 0;                 // kPrune: entries pruned
    HubGcReport gc;                          // kGc
  };

  void Log(std::string_view line) const;
  // Queues `work` and waits for the writer's answer. Cancelled when the hub is closing.
  Status Submit(Work* work);
  void Finish(Work* work, Status status);
  void WriterLoop();
  void ApplyCommits(std::vector<Work*>& group);
  Status DoPrune(std::uint64_t* pruned);
  Result<HubGcReport> DoGc();
  Status RebuildIndex();
  // The namespace record, creating it through the writer when new.
  Result<std::shared_ptr<const Index>> SnapshotWithNamespace(const std::string& ns);
  Status SyncChunks();

  // Server (server.cc).
  void ListenLoop();
  void ServeConnection(net::Connection* connection);
  void StopServer();

  const HubOptions options_;
  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<engine::DB> db_;
  std::unique_ptr<cache::ChunkCache> cache_;
  std::unique_ptr<JournalStore> journal_;
  std::string hub_id_;                           // journal_->hub_id(), kept past Close
  fusefs::ChunkStore* engine_chunks_ = nullptr;  // owned by chunks_
  std::unique_ptr<fusefs::ChunkStore> chunks_;   // the cache in front of the engine's chunks
  VerifiedNodes verified_;
  std::shared_mutex gc_mutex_;

  std::atomic<std::shared_ptr<const Index>> snapshot_;

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;  // work queued, or room in the queue, or stopping
  std::deque<Work*> queue_;           // GUARDED_BY(queue_mutex_); <= kCommitQueueMax
  bool stopping_ = false;             // GUARDED_BY(queue_mutex_)
  std::thread writer_;

  // List long-polls wait here for a publish or Close.
  std::mutex publish_mutex_;
  std::condition_variable published_cv_;
  std::atomic<bool> closing_{false};

  // Server state (server.cc).
  net::ConnectionOptions connection_options_;
  std::unique_ptr<net::Listener> listener_;
  std::thread listener_thread_;
  std::atomic<std::uint16_t> port_{0};
  struct Handler {
    std::unique_ptr<net::Connection> connection;
    std::thread thread;
    std::atomic<bool> finished{false};
  };
  std::mutex connections_mutex_;
  std::list<Handler> handlers_;  // GUARDED_BY(connections_mutex_)

  std::mutex close_mutex_;
  bool closed_ = false;  // GUARDED_BY(close_mutex_)
};

}  // namespace cascadefs::hub
