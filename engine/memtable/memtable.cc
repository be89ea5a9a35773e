// memtable.cc: MemTable (memtable.h has the entry layout and thread-safety rules).
#include "memtable/memtable.h"

#include <cstring>

#include "engine/assert.h"
#include "util/coding.h"

namespace cascadefs::engine {

namespace {

// Lookup keys up to this size are encoded on the stack; longer ones on the heap.
constexpr std::size_t kStackLookupBytes = 256;

// The value that follows an entry's internal key.
std::string_view EntryValue(std::string_view internal_key) {
  const char* p = internal_key.data() + internal_key.size();
  std::uint32_t value_size = 0;
  p = GetVarint32Ptr(p, p + kVarint32LengthMax, &value_size);
  CFS_DASSERT(p != nullptr);
  return {p, value_size};
}

}  // namespace

std::string_view MemTableEntryKey(const char* entry) {
  std::uint32_t key_size = 0;
  const char* p = GetVarint32Ptr(entry, entry + kVarint32LengthMax, &key_size);
  CFS_DASSERT(p != nullptr);
  return {p, key_size};
}

int MemTable::EntryComparator::operator()(const char* a, const char* b) const {
  return CompareInternalKeys(MemTableEntryKey(a), MemTableEntryKey(b));
}

MemTable::MemTable() : table_(EntryComparator{}, &arena_) {}

void MemTable::Unref() {
  const std::int64_t before = refs_.fetch_sub(1, std::memory_order_acq_rel);
  CFS_ASSERT(before >= 1);
  if (before == 1) delete this;
}

void MemTable::Add(SequenceNumber sequence, ValueType type, std::string_view user_key,
                   std::string_view value) {
  CFS_ASSERT(sequence <= kSequenceMax);
  const std::size_t internal_key_size = user_key.size() + kInternalKeyTrailerBytes;
  const std::size_t encoded_size =
      static_cast<std::size_t>(VarintLength(internal_key_size)) + internal_key_size +
      static_cast<std::size_t>(VarintLength(value.size())) + value.size();
  char* entry = arena_.Allocate(encoded_size);
  char* p = EncodeVarint32(entry, static_cast<std::uint32_t>(internal_key_size));
  if (!user_key.empty()) std::memcpy(p, user_key.data(), user_key.size());
  p += user_key.size();
  EncodeFixed64(p, PackSequenceAndType(sequence, type));
  p += kInternalKeyTrailerBytes;
  p = EncodeVarint32(p, static_cast<std::uint32_t>(value.size()));
  if (!value.empty()) std::memcpy(p, value.data(), value.size());
  CFS_DASSERT(p + value.size() == entry + encoded_size);
  table_.Insert(entry);
  // One writer: a load and a store, not a read-modify-write. Node: key pointer + ~1.33 links.
  constexpr std::size_t kNodeBytesEstimate = 8 + 12;
  data_bytes_.store(data_bytes_.load(std::memory_order_relaxed) + encoded_size + kNodeBytesEstimate,
                    std::memory_order_relaxed);
  num_entries_.fetch_add(1, std::memory_order_relaxed);
  if (type == ValueType::kDeletion) num_deletes_.fetch_add(1, std::memory_order_relaxed);
}

MemTable::GetResult MemTable::Get(std::string_view user_key, SequenceNumber sequence,
                                  std::string* value) const {
  // The lookup key is an entry prefix: varint32 size | user key | trailer. It sorts before
  // every entry of user_key with a sequence <= `sequence` (kValueTypeForSeek).
  const std::size_t internal_key_size = user_key.size() + kInternalKeyTrailerBytes;
  const std::size_t encoded_size = kVarint32LengthMax + internal_key_size;
  char stack_buffer[kStackLookupBytes];
  std::unique_ptr<char[]> heap_buffer;
  char* lookup = stack_buffer;
  if (encoded_size > kStackLookupBytes) {
    heap_buffer.reset(new char[encoded_size]);
    lookup = heap_buffer.get();
  }
  char* p = EncodeVarint32(lookup, static_cast<std::uint32_t>(internal_key_size));
  if (!user_key.empty()) std::memcpy(p, user_key.data(), user_key.size());
  EncodeFixed64(p + user_key.size(), PackSequenceAndType(sequence, kValueTypeForSeek));

  Table::Iterator it(&table_);
  it.Seek(lookup);
  if (!it.Valid()) return GetResult::kNotPresent;
  const std::string_view found_key = MemTableEntryKey(it.key());
  if (CompareUserKeys(ExtractUserKey(found_key), user_key) != 0) return GetResult::kNotPresent;
  const std::uint64_t trailer = ExtractTrailer(found_key);
  const auto type = static_cast<ValueType>(trailer & 0xff);
  if (type == ValueType::kDeletion) return GetResult::kDeleted;
  const std::string_view found_value = EntryValue(found_key);
  value->assign(found_value.data(), found_value.size());
  return type == ValueType::kValuePointer ? GetResult::kFoundPointer : GetResult::kFound;
}

class MemTable::Iterator final : public InternalIterator {
 public:
  explicit Iterator(MemTable* memtable) : memtable_(memtable), it_(&memtable->table_) {
    memtable_->Ref();
  }
  ~Iterator() override { memtable_->Unref(); }

  bool Valid() const override { return it_.Valid(); }
  std::string_view key() const override { return MemTableEntryKey(it_.key()); }
  std::string_view value() const override { return EntryValue(key()); }
  Status status() const override { return Status::OK(); }

  io::Task<void> SeekToFirst() override {
    it_.SeekToFirst();
    co_return;
  }
  io::Task<void> SeekToLast() override {
    it_.SeekToLast();
    co_return;
  }
  io::Task<void> Seek(std::string_view target) override {
    // The skiplist compares encoded entries: encode the target the same way.
    scratch_.clear();
    PutVarint32(&scratch_, static_cast<std::uint32_t>(target.size()));
    scratch_.append(target);
    it_.Seek(scratch_.data());
    co_return;
  }
  io::Task<void> Next() override {
    it_.Next();
    co_return;
  }
  io::Task<void> Prev() override {
    it_.Prev();
    co_return;
  }

 private:
  MemTable* const memtable_;
  Table::Iterator it_;
  std::string scratch_;
};

std::unique_ptr<InternalIterator> MemTable::NewIterator() {
  return std::make_unique<Iterator>(this);
}

}  // namespace cascadefs::engine
