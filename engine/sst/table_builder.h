// table_builder.h: writes one SST file front to back (layout in format.h and
// docs/formats/sst.md).
//
// Add is synchronous and buffers output in memory; when more than kPendingWriteBytesMax is
// buffered the caller awaits WritePending (so a flush writes in bounded steps and yields
// between them). Finish writes the filter block, the index partitions, the top-level index,
// the properties and the footer. The caller syncs and closes the file.
//
// Thread safety: one task at a time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/status.h"
#include "sst/block_builder.h"
#include "sst/format.h"

namespace cascadefs::engine {

inline constexpr std::size_t kPendingWriteBytesMax = 1 << 20;

class TableBuilder {
 public:
  TableBuilder(const TableOptions& options, WritableFile* file);
  // REQUIRES: internal_key sorts after every key added before; Finish not called.
  void Add(std::string_view internal_key, std::string_view value);
  bool NeedsWrite() const { return pending_.size() >= kPendingWriteBytesMax; }
  io::Task<Status> WritePending();
  io::Task<Status> Finish();

  std::uint64_t num_entries() const { return num_entries_; }
  std::uint64_t file_size_bytes() const { return offset_; }

 private:
  struct IndexEntry {
    std::string last_key;
    BlockHandle handle;
    std::uint32_t block_number = 0;
  };

  void FinishDataBlock();
  // Appends raw bytes at the end of the file image.
  void Append(std::string_view bytes) {
    pending_.append(bytes);
    offset_ += bytes.size();
  }

  const TableOptions options_;
  WritableFile* const file_;
  const bool aligned_;  // uncompressed tables of >= 4 KiB blocks align data blocks to pages
  BlockBuilder data_block_;
  std::vector<std::uint64_t> block_hashes_;  // user-key hashes of the current block
  std::string filters_;                      // filters of finished blocks, concatenated
  std::vector<std::uint32_t> filter_offsets_;
  std::vector<IndexEntry> index_;
  std::string pending_;               // file bytes not yet written
  std::uint64_t pending_offset_ = 0;  // where pending_ starts in the file
  std::uint64_t offset_ = 0;          // bytes of the file image so far
  std::uint64_t num_entries_ = 0;
  std::uint64_t raw_key_bytes_ = 0;
  std::uint64_t raw_value_bytes_ = 0;
  std::string smallest_key_;
  std::string last_key_;
  std::string last_user_key_;
  bool finished_ = false;
  Status status_;
};

}  // namespace cascadefs::engine
