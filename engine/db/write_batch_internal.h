// write_batch_internal.h: the engine's view of a WriteBatch's encoding.
//
// Encoding (docs/formats/wal.md, "batch payload"), also the payload of a WAL record:
//   sequence fixed64 | count fixed32 | count x update
//   update = kValue u8 | key (varint32 length + bytes) | value (varint32 length + bytes)
//          | kDeletion u8 | key (varint32 length + bytes)
//          | kValuePointer u8 | key | pointer (varint32 length + bytes): only in WAL records and
//            memtables (the DB replaces large values by pointers, docs/formats/vlog.md); a
//            user's batch never holds one

// The sequence is that of the first update; update i gets sequence + i.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "db/dbformat.h"
#include "engine/status.h"
#include "engine/write_batch.h"

namespace cascadefs::engine {

inline constexpr std::size_t kWriteBatchHeaderBytes = 12;

class MemTable;

// A handler that also accepts value pointers (WAL records, memtable inserts).
class InternalBatchHandler : public WriteBatch::Handler {
 public:
  virtual void PutValuePointer(std::string_view key, std::string_view pointer) = 0;
};

class WriteBatchInternal {
 public:
  static std::uint32_t Count(const WriteBatch& batch);
  static SequenceNumber Sequence(const WriteBatch& batch);
  static void SetSequence(WriteBatch* batch, SequenceNumber sequence);
  static std::string_view Contents(const WriteBatch& batch) { return batch.rep_; }
  // Replaces the batch's encoding with `contents` (a WAL record). Corruption when it is shorter
  // than the header; the updates are checked by Iterate.
  static Status SetContents(WriteBatch* batch, std::string_view contents);
  // Checks every key and value against kKeySizeMax / kValueSizeMax and the whole batch against
  // kWriteBatchSizeMax. InvalidArgument naming the bound otherwise.
  static Status Validate(const WriteBatch& batch);
  // Inserts every update of the encoding `contents` into `memtable`, update i with the
  // encoding's sequence + i. Corruption for a
  // damaged encoding (the updates before the damage are inserted: callers reject the batch
  // before inserting by calling Iterate with a counting handler when it came from disk).
  static Status InsertInto(std::string_view contents, MemTable* memtable);
  // WriteBatch::Iterate over an encoding held elsewhere (a WAL record being framed). A value
  // pointer is Corruption (a user batch never holds one).
  static Status IterateContents(std::string_view contents, WriteBatch::Handler* handler);
  // The same, passing value pointers to handler->PutValuePointer.
  static Status IterateInternal(std::string_view contents, InternalBatchHandler* handler);
  // Validate for a WAL record: the same bounds, and value pointers allowed.
  static Status ValidateRecord(std::string_view contents);
};

}  // namespace cascadefs::engine
