// fuse_handler.h: our codec of the kernel's FUSE protocol (linux/fuse.h, protocol 7.38).
//
// A transport (the /dev/fuse session, or the kernel's io_uring queues: fuse_uring.h) hands
// each request's bytes to Handle, which decodes it, runs the Filesystem coroutine and returns
// the reply's bytes; the transport sends them. One set of handlers serves every transport. Every
// field the kernel sends is length-checked before use: a short or malformed request gets EIO.
//
// FUSE_INIT is answered here too, so we choose every flag, including the 64-bit ones in
// flags2 (FUSE_INIT_EXT), which libfuse 3.14 cannot.
#pragma once

#include <linux/fuse.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/io/task.h"
#include "fs/filesystem.h"

namespace cascadefs::fusefs {

struct FuseHandlerOptions {
  // Largest WRITE the kernel sends (and READ it asks for). A transport's request buffers are
  // this plus kRequestHeaderBytesMax. Multiple of 4096, 4 KiB..1 MiB. Default: 1 MiB.
  std::uint32_t max_write_bytes = 1 << 20;
  // How long the kernel may trust a name (entry) and attributes without asking again, and how
  // long it remembers that a name does not exist. cascadefs is the only writer of its store,
  // so these only bound staleness for later sync. Seconds. Default: 1.
  double entry_timeout_sec = 1.0;
  double attr_timeout_sec = 1.0;
  // The kernel buffers writes in its page cache and sends them in max_write pieces.
  // Default: true.
  bool writeback_cache = true;
  // Accept FUSE_OVER_IO_URING (kFuseOverIoUring, fuse_uring.h) when the kernel offers it: the
  // transport then registers ring entries after INIT. Default: false.
  bool offer_io_uring = false;
  std::function<void(std::string_view)> log;
};

// Bytes a request may carry beyond its data payload (header, fixed argument, two names).
inline constexpr std::size_t kRequestHeaderBytesMax = 4096 + 2 * 256;

struct FuseReply {
  bool none = false;  // FORGET, BATCH_FORGET, INTERRUPT: no reply is sent
  int error = 0;      // positive errno; fixed and data are ignored when set
  std::string fixed;  // the opcode's fixed reply structure(s)
  std::string data;   // variable payload: read data, directory entries, xattr bytes
};

// A request being handled now (for `cascadefs status`: what is a slow mount doing).
struct RequestInProgress {
  std::uint64_t unique = 0;
  std::uint32_t opcode = 0;
  std::uint64_t nodeid = 0;
  std::uint64_t age_ms = 0;
};

struct FuseHandlerStats {
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;  // error replies except normal answers (CountsAsError)
  std::uint64_t reads = 0;
  std::uint64_t writes = 0;
  std::uint64_t read_bytes = 0;
  std::uint64_t write_bytes = 0;
};

class FuseHandler {
 public:
  FuseHandler(Filesystem* fs, FuseHandlerOptions options);

  // Decodes one request (`request` holds the whole request as the kernel sent it) and computes
  // its reply; `unique` gets the request's id for the reply header.
  io::Task<void> Handle(std::string_view request, std::uint64_t* unique, FuseReply* reply);

  // True once FUSE_INIT was answered; WaitInitialized blocks a plain thread until then.
  bool initialized() const { return initialized_.load(std::memory_order_acquire); }
  bool WaitInitialized(int timeout_ms);
  std::uint32_t max_write_bytes() const { return options_.max_write_bytes; }
  // The flags negotiated with the kernel (flags | flags2 << 32).
  std::uint64_t negotiated_flags() const { return negotiated_.load(std::memory_order_relaxed); }

  FuseHandlerStats stats() const;
  // The requests being handled, oldest first; at most `max_count`.
  std::vector<RequestInProgress> InProgress(std::size_t max_count) const;

 private:
  io::Task<void> Dispatch(const fuse_in_header& header, std::string_view arg, FuseReply* reply);
  void Init(std::string_view arg, FuseReply* reply);

  Filesystem* const fs_;
  const FuseHandlerOptions options_;
  std::atomic<bool> initialized_{false};
  std::atomic<std::uint64_t> negotiated_{0};
  std::mutex init_mutex_;
  std::condition_variable init_done_;

  struct Active {
    std::uint32_t opcode;
    std::uint64_t nodeid;
    std::int64_t start_ns;
  };
  mutable std::mutex active_mutex_;
  // Bounded by the transport's requests in flight.
  std::unordered_map<std::uint64_t, Active> active_;  // GUARDED_BY(active_mutex_)

  // Per open directory handle (the fh we give OPENDIR): where its current listing ends
  // (Filesystem::ReadDir's listing_end). Bounded by the kernel's open directory handles.
  std::mutex listings_mutex_;
  std::uint64_t next_dir_handle_ = 1;                             // GUARDED_BY(listings_mutex_)
  std::unordered_map<std::uint64_t, std::uint64_t> listing_end_;  // GUARDED_BY(listings_mutex_)

  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> errors_{0};
  std::atomic<std::uint64_t> reads_{0};
  std::atomic<std::uint64_t> writes_{0};
  std::atomic<std::uint64_t> read_bytes_{0};
  std::atomic<std::uint64_t> write_bytes_{0};
};

}  // namespace cascadefs::fusefs
