// hub.h: the sync hub (`cascadefs serve`): journal + chunk store behind the sync protocol
// (docs/sync.md, "Hub"; messages in net/wire.h).
//
// A Hub owns a store directory: an engine DB holding the journal (hub/journal_store.h) and the
// chunks (fusefs/chunk_store.h, "c" keys), and a circular chunk cache file STORE/cache in front
// of the chunks for Retrieve. At Open it rebuilds the journal index by scanning the journal and
// prunes the journal per the retention; then one writer thread applies commits, in groups: it
// appends a group's entries durably (one synced engine write) and then publishes a new
// immutable snapshot of the index, which every other thread reads without a lock.
//
// Listen adds the network: a listener thread and one handler thread per connection (at most
// connections_max), each speaking the protocol of net/wire.h over a net::Connection. The
// request calls below (Commit, StoreBatch, List, Retrieve) are what those handlers run; they
// are public so tests and tools can drive a hub in-process.
//
// Thread safety: every method may be called from any thread, except Close (the last call).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "engine/result.h"
#include "engine/status.h"
#include "net/connection.h"
#include "net/wire.h"

namespace cascadefs::hub {

struct HubOptions {
  // The store directory, created on first use. Required.
  std::string store_dir;

  // Superseded file versions younger than this are kept in the journal (file history); older
  // ones are pruned at Open and every prune_interval_sec, and their chunks become garbage for
  // CollectGarbage. The latest entry of every path and every delete and rename are kept
  // whatever their age. Range: 0..2^40. Default: 30 days.
  std::uint64_t retention_sec = 30ull * 24 * 3600;
  // How often the writer prunes the journal. Default: 3600 (an hour).
  std::uint32_t prune_interval_sec = 3600;

  // Size of the chunk cache file STORE/cache that serves Retrieve (a multiple of 1 MiB, at
  // least 4 MiB); 0: no cache, every Retrieve reads the engine. Default: 1 GiB.
  std::uint64_t cache_size_bytes = 1ull << 30;

  // Connections served at once; one more gets Error kInternal "hub busy" and is closed.
  // Range: 1..4096. Default: 64.
  std::uint32_t connections_max = 64;
  // A connection that sends nothing for this long is closed (clients reconnect). The longest
  // List long-poll (net::kListWaitMsMax) is well below it. Default: 10 minutes.
  int idle_timeout_ms = 10 * 60 * 1000;

  // IO threads of the hub's scheduler (engine I/O and the completeness walks). Default: 2.
  std::uint32_t io_threads = 2;

  // One line per event (start, stop, a bad peer); default: stderr.
  std::function<void(std::string_view line)> log;
};

struct HubGcReport {
  std::uint64_t chunks = 0;             // chunks in the store before
  std::uint64_t referenced_chunks = 0;  // reachable from a retained journal entry
  std::uint64_t deleted_chunks = 0;
};

class Hub {
 public:
  // Opens (creating when missing) the store, rebuilds the index, prunes, starts the writer.
  // Errors name the store directory: Busy when another process has it open; InvalidArgument
  // for a filesystem's store; Corruption for a journal that does not decode.
  static Result<std::unique_ptr<Hub>> Open(const HubOptions& options);
  virtual ~Hub() = default;

  // The store's identity: 16 random bytes made with the store.
  virtual const std::string& hub_id() const = 0;

  // Starts the listener thread on `address` (port 0: any free port, see port()). Connections
  // must present `key`. InvalidArgument when already listening; the listener's error.
  virtual Status Listen(const net::HostPort& address, const net::PresharedKey& key,
                        const net::ConnectionOptions& connection_options = {}) = 0;
  virtual std::uint16_t port() const = 0;

  // ---- The protocol's requests (docs/sync.md, "Hub: rules"). Errors: InvalidArgument for a
  // request that is invalid at the hub (a namespace name or a path); Cancelled when the hub is
  // closing; the store's error otherwise. ----

  // Applies the entries in order; replies once the journaled ones are durable.
  virtual Result<net::CommitReply> Commit(const net::Commit& commit, std::string_view origin) = 0;
  // Verifies and stores the chunks, durably.
  virtual Result<net::StoreReply> StoreBatch(const net::StoreBatch& batch) = 0;
  // Entries with jid > cursor; long-polls up to wait_ms when there are none.
  virtual Result<net::ListReply> List(const net::List& list) = 0;
  // The chunks' bytes, a prefix of the names within net::kBatchBytesMax.
  virtual Result<net::RetrieveReply> Retrieve(const net::Retrieve& retrieve) = 0;

  // Prunes superseded file entries older than the retention now (the writer also does it every
  // prune_interval_sec). Returns the number of entries removed through *pruned when not null.
  virtual Status PruneJournal(std::uint64_t* pruned = nullptr) = 0;
  // Deletes every chunk that no retained journal entry's tree reaches. Commits wait meanwhile.
  // Chunks uploaded and not yet committed are deleted too: their commit answers kMissing and
  // the client uploads them again.
  virtual Result<HubGcReport> CollectGarbage() = 0;

  // Stops listening, shuts every connection down (a waiting List returns), drains the writer,
  // and closes the cache and the engine. Returns the first error. Idempotent.
  virtual Status Close() = 0;
};

}  // namespace cascadefs::hub
