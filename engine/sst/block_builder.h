// block_builder.h: builds one block of sorted key/value entries.
//
// Layout (docs/formats/sst.md, "Block"):
//   entry*  where entry = varint32 shared | varint32 non_shared | varint32 value_size
//                          | key bytes after the shared prefix | value
//   restart[num_restarts] (each an offset of an entry whose shared is 0; width bytes each)
//   num_restarts u32 | width u8 (2, or 4 when the entries exceed 64 KiB)
// Every restart_interval-th entry is a restart point storing its key whole, so a reader
// binary-searches the restarts and scans at most one interval.
//
// Thread safety: none needed (one builder per table being written).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cascadefs::engine {

class BlockBuilder {
 public:
  explicit BlockBuilder(std::uint32_t restart_interval);
  // REQUIRES: key sorts after every key added since the last Reset; Finish not called.
  void Add(std::string_view key, std::string_view value);
  // The block's contents; valid until Reset.
  std::string_view Finish();
  void Reset();
  // Bytes Finish would produce now.
  std::size_t CurrentSizeEstimate() const;
  // Bytes an entry of these sizes adds at most (prefix sharing only makes it smaller).
  static std::size_t EntrySizeMax(std::size_t key_bytes, std::size_t value_bytes);
  bool empty() const { return entries_ == 0; }
  std::string_view last_key() const { return last_key_; }

 private:
  const std::uint32_t restart_interval_;
  std::string buffer_;
  std::vector<std::uint32_t> restarts_;
  std::uint32_t since_restart_ = 0;
  std::uint32_t entries_ = 0;
  std::string last_key_;
  bool finished_ = false;
};

}  // namespace cascadefs::engine
