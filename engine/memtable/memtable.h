// memtable.h: the in-memory write buffer of the engine, a skiplist of internal keys.
//
// Each entry lives in the memtable's Arena, encoded as:
//   varint32 internal_key_size | internal key (user key + 8-byte trailer, dbformat.h)
//   | varint32 value_size | value
// and the skiplist orders entries by CompareInternalKeys on their internal keys, so the
// newest version of a user key comes first.
//
// Thread safety: Add by one writer at a time (the DB mutex); Get, iterators, and the size
// accessors from any thread concurrently with it (skiplist.h has the rules). Ref/Unref from
// any thread; the memtable deletes itself when the count reaches zero.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "db/dbformat.h"
#include "db/internal_iterator.h"
#include "memtable/arena.h"
#include "memtable/skiplist.h"

namespace cascadefs::engine {

class MemTable {
 public:
  MemTable();
  MemTable(const MemTable&) = delete;
  MemTable& operator=(const MemTable&) = delete;

  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  // Deletes the memtable when the last reference goes.
  void Unref();

  // REQUIRES: one writer at a time; (user_key, sequence) not added before.
  void Add(SequenceNumber sequence, ValueType type, std::string_view user_key,
           std::string_view value);

  enum class GetResult { kNotPresent, kFound, kFoundPointer, kDeleted };
  // The newest entry of `user_key` with a sequence <= `sequence`: kFound (value copied to
  // *value), kFoundPointer (an encoded value pointer copied to *value), kDeleted, or
  // kNotPresent when the memtable has no such entry.
  GetResult Get(std::string_view user_key, SequenceNumber sequence, std::string* value) const;

  // An iterator over the internal keys; it holds a reference on the memtable while alive.
  // Its coroutines never suspend.
  std::unique_ptr<InternalIterator> NewIterator();

  // Bytes of entries and their skiplist nodes, any thread. The arena's block count would
  // overstate a small memtable by up to a block (64 KiB); this counts what was asked for.
  std::size_t ApproximateMemoryUsage() const { return data_bytes_.load(std::memory_order_relaxed); }
  // Bytes of arena blocks held (the real memory, including unused block tails).
  std::size_t ArenaBytes() const { return arena_.MemoryUsage(); }
  std::uint64_t num_entries() const { return num_entries_.load(std::memory_order_relaxed); }
  std::uint64_t num_deletes() const { return num_deletes_.load(std::memory_order_relaxed); }

 private:
  struct EntryComparator {
    int operator()(const char* a, const char* b) const;
  };
  using Table = SkipList<const char*, EntryComparator>;
  class Iterator;

  ~MemTable() = default;

  std::atomic<std::int64_t> refs_{0};
  Arena arena_;
  Table table_;
  std::atomic<std::uint64_t> num_entries_{0};
  std::atomic<std::uint64_t> num_deletes_{0};
  std::atomic<std::size_t> data_bytes_{0};  // written by the writer only
};

// Decodes the internal key of an entry as laid out above. REQUIRES: a well-formed entry
// (entries are built by Add and never come from disk).
std::string_view MemTableEntryKey(const char* entry);

}  // namespace cascadefs::engine
