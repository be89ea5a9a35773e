// internal_iterator.h: the iterator every engine component exposes over internal keys
// (dbformat.h): memtables, SST data blocks, SST files, the merge of them all.
//
// Positioning calls are coroutines because a table iterator may read a block from disk when
// it moves; in-memory iterators (a memtable, one block) complete without suspending. After a
// positioning call, Valid() tells whether the iterator sits on an entry; an error (a corrupt
// block, an I/O failure) makes it invalid and status() returns it. key() is an internal key.
//
// Thread safety: one task at a time. REQUIRES: positioning calls are awaited on an IO thread.
#pragma once

#include <memory>
#include <string_view>

#include "engine/io/task.h"
#include "engine/status.h"

namespace cascadefs::engine {

class InternalIterator {
 public:
  virtual ~InternalIterator() = default;
  virtual bool Valid() const = 0;
  // REQUIRES: Valid(). Views stay valid until the next positioning call or destruction.
  virtual std::string_view key() const = 0;
  virtual std::string_view value() const = 0;
  virtual Status status() const = 0;

  virtual io::Task<void> SeekToFirst() = 0;
  virtual io::Task<void> SeekToLast() = 0;
  // The first entry whose internal key is >= target (CompareInternalKeys).
  virtual io::Task<void> Seek(std::string_view target) = 0;
  // REQUIRES: Valid().
  virtual io::Task<void> Next() = 0;
  virtual io::Task<void> Prev() = 0;
};

// An iterator with no entries and the given status (OK or an error).
std::unique_ptr<InternalIterator> NewEmptyIterator(Status status = Status::OK());

}  // namespace cascadefs::engine
