// write_batch.cc: WriteBatch and its encoding (write_batch_internal.h has the layout).
#include "db/write_batch_internal.h"
#include "engine/options.h"
#include "memtable/memtable.h"
#include "util/coding.h"
#include "vlog/vlog_format.h"

namespace cascadefs::engine {

WriteBatch::WriteBatch() { Clear(); }

void WriteBatch::Clear() {
  rep_.clear();
  rep_.resize(kWriteBatchHeaderBytes);
}

std::uint32_t WriteBatch::Count() const { return WriteBatchInternal::Count(*this); }

void WriteBatch::Put(std::string_view key, std::string_view value) {
  EncodeFixed32(rep_.data() + 8, Count() + 1);
  rep_.push_back(static_cast<char>(ValueType::kValue));
  PutLengthPrefixed(&rep_, key);
  PutLengthPrefixed(&rep_, value);
}

void WriteBatch::Delete(std::string_view key) {
  EncodeFixed32(rep_.data() + 8, Count() + 1);
  rep_.push_back(static_cast<char>(ValueType::kDeletion));
  PutLengthPrefixed(&rep_, key);
}

Status WriteBatch::Iterate(Handler* handler) const {
  return WriteBatchInternal::IterateContents(rep_, handler);
}

namespace {

// Walks the updates of `contents`; `internal` (when not null) receives value pointers.
Status Iterate(std::string_view contents, WriteBatch::Handler* handler,
               InternalBatchHandler* internal) {
  std::string_view input(contents);
  if (input.size() < kWriteBatchHeaderBytes) {
    return Status::Corruption("write batch shorter than its 12-byte header");
  }
  input.remove_prefix(kWriteBatchHeaderBytes);
  std::uint32_t found = 0;
  while (!input.empty()) {
    const auto type = static_cast<std::uint8_t>(input[0]);
    input.remove_prefix(1);
    std::string_view key;
    std::string_view value;
    if (type == static_cast<std::uint8_t>(ValueType::kValue)) {
      if (!GetLengthPrefixed(&input, &key) || !GetLengthPrefixed(&input, &value)) {
        return Status::Corruption("write batch: truncated put");
      }
      handler->Put(key, value);
    } else if (type == static_cast<std::uint8_t>(ValueType::kDeletion)) {
      if (!GetLengthPrefixed(&input, &key)) {
        return Status::Corruption("write batch: truncated delete");
      }
      handler->Delete(key);
    } else if (type == static_cast<std::uint8_t>(ValueType::kValuePointer) && internal != nullptr) {
      if (!GetLengthPrefixed(&input, &key) || !GetLengthPrefixed(&input, &value)) {
        return Status::Corruption("write batch: truncated value pointer");
      }
      internal->PutValuePointer(key, value);
    } else {
      return Status::Corruption("write batch: unknown update type " + std::to_string(type));
    }
    ++found;
  }
  const std::uint32_t count = DecodeFixed32(contents.data() + 8);
  if (found != count) {
    return Status::Corruption("write batch: header counts " + std::to_string(count) +
                              " updates, found " + std::to_string(found));
  }
  return Status::OK();
}

}  // namespace

Status WriteBatchInternal::IterateContents(std::string_view contents,
                                           WriteBatch::Handler* handler) {
  return Iterate(contents, handler, nullptr);
}

Status WriteBatchInternal::IterateInternal(std::string_view contents,
                                           InternalBatchHandler* handler) {
  return Iterate(contents, handler, handler);
}

std::uint32_t WriteBatchInternal::Count(const WriteBatch& batch) {
  return DecodeFixed32(batch.rep_.data() + 8);
}

SequenceNumber WriteBatchInternal::Sequence(const WriteBatch& batch) {
  return DecodeFixed64(batch.rep_.data());
}

void WriteBatchInternal::SetSequence(WriteBatch* batch, SequenceNumber sequence) {
  EncodeFixed64(batch->rep_.data(), sequence);
}

Status WriteBatchInternal::SetContents(WriteBatch* batch, std::string_view contents) {
  if (contents.size() < kWriteBatchHeaderBytes) {
    return Status::Corruption("write batch shorter than its 12-byte header");
  }
  batch->rep_.assign(contents);
  return Status::OK();
}

namespace {

class ValidateHandler : public InternalBatchHandler {
 public:
  void PutValuePointer(std::string_view key, std::string_view pointer) override {
    CheckKey(key);
    if (status.ok() && !DecodeValuePointer(pointer).ok()) {
      status = Status::Corruption("write batch: a malformed value pointer");
    }
  }
  void Put(std::string_view key, std::string_view value) override {
    CheckKey(key);
    if (status.ok() && value.size() > kValueSizeMax) {
      status =
          Status::InvalidArgument("value of " + std::to_string(value.size()) +
                                  " bytes exceeds the maximum of " + std::to_string(kValueSizeMax));
    }
  }
  void Delete(std::string_view key) override { CheckKey(key); }
  Status status;

 private:
  void CheckKey(std::string_view key) {
    if (status.ok() && key.size() > kKeySizeMax) {
      status =
          Status::InvalidArgument("key of " + std::to_string(key.size()) +
                                  " bytes exceeds the maximum of " + std::to_string(kKeySizeMax));
    }
  }
};

class MemTableInserter : public InternalBatchHandler {
 public:
  MemTableInserter(MemTable* memtable, SequenceNumber sequence)
      : memtable_(memtable), sequence_(sequence) {}
  void Put(std::string_view key, std::string_view value) override {
    memtable_->Add(sequence_++, ValueType::kValue, key, value);
  }
  void Delete(std::string_view key) override {
    memtable_->Add(sequence_++, ValueType::kDeletion, key, {});
  }
  void PutValuePointer(std::string_view key, std::string_view pointer) override {
    memtable_->Add(sequence_++, ValueType::kValuePointer, key, pointer);
  }

 private:
  MemTable* memtable_;
  SequenceNumber sequence_;
};

}  // namespace

Status WriteBatchInternal::Validate(const WriteBatch& batch) {
  if (batch.rep_.size() > kWriteBatchSizeMax) {
    return Status::InvalidArgument("write batch of " + std::to_string(batch.rep_.size()) +
                                   " bytes exceeds the maximum of " +
                                   std::to_string(kWriteBatchSizeMax));
  }
  ValidateHandler handler;
  CFS_RETURN_IF_ERROR(batch.Iterate(&handler));
  return handler.status;
}

Status WriteBatchInternal::InsertInto(std::string_view contents, MemTable* memtable) {
  if (contents.size() < kWriteBatchHeaderBytes) {
    return Status::Corruption("write batch shorter than its 12-byte header");
  }
  MemTableInserter inserter(memtable, DecodeFixed64(contents.data()));
  return IterateInternal(contents, &inserter);
}

Status WriteBatchInternal::ValidateRecord(std::string_view contents) {
  ValidateHandler handler;
  CFS_RETURN_IF_ERROR(IterateInternal(contents, &handler));
  return handler.status;
}

}  // namespace cascadefs::engine
