// write_batch.h: a group of Puts and Deletes applied atomically, in order.
//
// DB::Write applies a batch as a whole: after a crash either every update of it is present
// or none is, and readers never see part of it. Later updates in a batch override earlier
// ones of the same key. The encoding (docs/formats/wal.md, "batch payload") is also the WAL
// record payload.
//
// Thread safety: a WriteBatch is a plain value; share it only with external locking.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/status.h"

namespace cascadefs::engine {

class WriteBatch {
 public:
  WriteBatch();
  // Key and value bounds (kKeySizeMax, kValueSizeMax) are checked when the batch is written.
  void Put(std::string_view key, std::string_view value);
  void Delete(std::string_view key);
  // Removes every update.
  void Clear();
  // Number of updates.
  std::uint32_t Count() const;
  // Bytes of the encoding, the WAL space the batch takes.
  std::size_t ApproximateSize() const { return rep_.size(); }

  // Calls the handler for each update in order. Corruption when the encoding is damaged
  // (possible only for a batch decoded from disk).
  class Handler {
   public:
    virtual ~Handler() = default;
    virtual void Put(std::string_view key, std::string_view value) = 0;
    virtual void Delete(std::string_view key) = 0;
  };
  Status Iterate(Handler* handler) const;

 private:
  friend class WriteBatchInternal;
  std::string rep_;  // docs/formats/wal.md: sequence (8) | count (4) | updates
};

}  // namespace cascadefs::engine
