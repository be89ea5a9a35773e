// iterator.h: an ordered, consistent view over a store's keys.
//
// An Iterator sees the store as of the moment it was created (or as of its ReadOptions'
// snapshot): later writes are invisible to it. It holds the memtables and SST files of that
// moment alive until it is destroyed, so keep iterators short-lived.
//
// Two forms of every positioning call over one implementation: the *Async coroutines, for
// code running on the store's scheduler (they never block an IO thread), and the blocking
// ones for other threads (they run the coroutine on the scheduler and wait). An error (a
// corrupt block, an I/O failure) makes the iterator invalid and is reported by status().
//
// Thread safety: not safe for concurrent use; one thread or task at a time.
#pragma once

#include <string_view>

#include "engine/io/task.h"
#include "engine/status.h"

namespace cascadefs::engine {

class Iterator {
 public:
  virtual ~Iterator() = default;

  // True when positioned at an entry.
  virtual bool Valid() const = 0;
  // The current entry. REQUIRES: Valid(). The views stay valid until the next positioning
  // call or the iterator's destruction.
  virtual std::string_view key() const = 0;
  virtual std::string_view value() const = 0;
  // OK, or the first error met; an error also makes Valid() false.
  virtual Status status() const = 0;

  // Coroutine forms. REQUIRES: awaited on an IO thread of the store's scheduler.
  virtual io::Task<void> SeekToFirstAsync() = 0;
  virtual io::Task<void> SeekToLastAsync() = 0;
  // Positions at the first key >= target.
  virtual io::Task<void> SeekAsync(std::string_view target) = 0;
  // Positions at the last key <= target.
  virtual io::Task<void> SeekForPrevAsync(std::string_view target) = 0;
  // REQUIRES: Valid().
  virtual io::Task<void> NextAsync() = 0;
  virtual io::Task<void> PrevAsync() = 0;

  // Blocking forms. REQUIRES: not on an IO thread of the store's scheduler.
  virtual void SeekToFirst() = 0;
  virtual void SeekToLast() = 0;
  virtual void Seek(std::string_view target) = 0;
  virtual void SeekForPrev(std::string_view target) = 0;
  virtual void Next() = 0;
  virtual void Prev() = 0;

  // Lazy values (ReadOptions::iterator_values false): a value kept in the value log is read
  // only here; until then value() is empty. True when value() holds the entry's value (always,
  // for values kept in the LSM and for iterators that read values as they move); false on an
  // error, which also makes the iterator invalid (status()). REQUIRES: Valid().
  virtual io::Task<bool> PrepareValueAsync() = 0;
  // Blocking form. REQUIRES: not on an IO thread of the store's scheduler.
  virtual bool PrepareValue() = 0;
};

}  // namespace cascadefs::engine
