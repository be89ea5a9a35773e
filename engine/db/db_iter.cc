// db_iter.cc: NewDBIterator (db_iter.h).
#include "db/db_iter.h"

#include <string>
#include <utility>

#include "engine/assert.h"
#include "engine/io/scheduler.h"

namespace cascadefs::engine {
namespace {

class DBIter final : public Iterator {
 public:
  DBIter(std::unique_ptr<InternalIterator> inner, SequenceNumber sequence, io::Scheduler* scheduler,
         std::shared_ptr<const void> keep_alive, ValueResolver resolver, bool lazy_values)
      : keep_alive_(std::move(keep_alive)),
        inner_(std::move(inner)),
        sequence_(sequence),
        scheduler_(scheduler),
        resolver_(std::move(resolver)),
        lazy_values_(lazy_values) {}

  ~DBIter() override {
    inner_.reset();  // before keep_alive_: the stream reads what it holds
  }

  bool Valid() const override { return valid_; }
  std::string_view key() const override {
    CFS_ASSERT(valid_);
    return direction_ == Direction::kForward ? ExtractUserKey(inner_->key())
                                             : std::string_view(saved_key_);
  }
  std::string_view value() const override {
    CFS_ASSERT(valid_);
    if (separated_) return resolved_value_;
    return direction_ == Direction::kForward ? inner_->value() : std::string_view(saved_value_);
  }
  Status status() const override {
    if (!status_.ok()) return status_;
    return inner_->status();
  }

  io::Task<void> SeekToFirstAsync() override {
    direction_ = Direction::kForward;
    ClearSaved();
    co_await inner_->SeekToFirst();
    co_await FindNextUserEntry(false);
  }

  io::Task<void> SeekToLastAsync() override {
    direction_ = Direction::kReverse;
    ClearSaved();
    co_await inner_->SeekToLast();
    co_await FindPrevUserEntry();
  }

  io::Task<void> SeekAsync(std::string_view target) override {
    direction_ = Direction::kForward;
    ClearSaved();
    const std::string seek_key = MakeInternalKey(target, sequence_, kValueTypeForSeek);
    co_await inner_->Seek(seek_key);
    co_await FindNextUserEntry(false);
  }

  io::Task<void> SeekForPrevAsync(std::string_view target) override {
    co_await SeekAsync(target);
    if (!status().ok()) co_return;
    if (valid_) {
      if (key() != target) co_await PrevAsync();
    } else {
      co_await SeekToLastAsync();
    }
  }

  io::Task<void> NextAsync() override {
    CFS_ASSERT(valid_);
    if (direction_ == Direction::kReverse) {
      // inner_ sits before every entry of saved_key_: step into them, then past them.
      direction_ = Direction::kForward;
      if (inner_->Valid()) {
        co_await inner_->Next();
      } else {
        co_await inner_->SeekToFirst();
      }
      if (!CheckInner()) co_return;
    } else {
      saved_key_.assign(ExtractUserKey(inner_->key()));
      co_await inner_->Next();
      if (!CheckInner()) co_return;
    }
    // saved_key_ is the key just left: skip its older versions.
    co_await FindNextUserEntry(true);
  }

  io::Task<void> PrevAsync() override {
    CFS_ASSERT(valid_);
    if (direction_ == Direction::kForward) {
      // Back up to just before every entry of the current key.
      saved_key_.assign(ExtractUserKey(inner_->key()));
      for (;;) {
        co_await inner_->Prev();
        if (!CheckInner()) co_return;
        if (!inner_->Valid()) {
          valid_ = false;
          ClearSaved();
          co_return;
        }
        if (CompareUserKeys(ExtractUserKey(inner_->key()), saved_key_) < 0) break;
      }
      direction_ = Direction::kReverse;
    }
    co_await FindPrevUserEntry();
  }

  void SeekToFirst() override { scheduler_->BlockOn(SeekToFirstAsync()); }
  void SeekToLast() override { scheduler_->BlockOn(SeekToLastAsync()); }
  void Seek(std::string_view target) override { scheduler_->BlockOn(SeekAsync(target)); }
  void SeekForPrev(std::string_view target) override {
    scheduler_->BlockOn(SeekForPrevAsync(target));
  }
  void Next() override { scheduler_->BlockOn(NextAsync()); }
  void Prev() override { scheduler_->BlockOn(PrevAsync()); }

  io::Task<bool> PrepareValueAsync() override {
    CFS_ASSERT(valid_);
    if (!separated_ || prepared_) co_return true;
    if (!resolver_) co_return false;
    Result<std::string> value = co_await resolver_(pending_key_, pending_pointer_);
    if (!value.ok()) {
      status_ = value.status();
      valid_ = false;
      co_return false;
    }
    resolved_value_ = std::move(value).value();
    prepared_ = true;
    co_return true;
  }
  bool PrepareValue() override { return scheduler_->BlockOn(PrepareValueAsync()); }

 private:
  enum class Direction { kForward, kReverse };

  void ClearSaved() {
    saved_key_.clear();
    saved_value_.clear();
    separated_ = false;
    prepared_ = false;
    resolved_value_.clear();
  }

  // The entry just landed on is visible and holds a pointer: read its value now, or (lazy)
  // keep the pointer for PrepareValue and show an empty value. On error the iterator becomes
  // invalid with the status.
  io::Task<void> ResolveSeparated(std::string_view user_key, std::string_view pointer) {
    separated_ = true;
    prepared_ = false;
    resolved_value_.clear();
    pending_key_.assign(user_key);
    pending_pointer_.assign(pointer);
    if (lazy_values_) co_return;
    (void)co_await PrepareValueAsync();
  }

  // False (and invalid) when the inner stream failed.
  bool CheckInner() {
    Status inner_status = inner_->status();
    if (inner_status.ok()) return true;
    valid_ = false;
    ClearSaved();
    return false;
  }

  // Parses the inner key; on damage, records Corruption and returns false.
  bool Parse(ParsedInternalKey* parsed) {
    if (ParseInternalKey(inner_->key(), parsed)) return true;
    status_ = Status::Corruption("iterator: malformed internal key");
    valid_ = false;
    return false;
  }

  // Forward: from inner_'s position, the first visible entry. With `skipping`, entries whose
  // user key is <= saved_key_ are passed over (older versions of the key just left).
  io::Task<void> FindNextUserEntry(bool skipping) {
    CFS_ASSERT(direction_ == Direction::kForward);
    while (inner_->Valid()) {
      ParsedInternalKey parsed;
      if (!Parse(&parsed)) co_return;
      if (parsed.sequence <= sequence_) {
        if (parsed.type == ValueType::kDeletion) {
          // Hide every older version of this key.
          saved_key_.assign(parsed.user_key);
          skipping = true;
        } else if (skipping && CompareUserKeys(parsed.user_key, saved_key_) <= 0) {
          // An older version of a key already shown or deleted.
        } else {
          valid_ = true;
          saved_key_.clear();
          separated_ = false;
          if (parsed.type == ValueType::kValuePointer) {
            co_await ResolveSeparated(parsed.user_key, inner_->value());
          }
          co_return;
        }
      }
      co_await inner_->Next();
      if (!CheckInner()) co_return;
    }
    valid_ = false;
    saved_key_.clear();
  }

  // Backward: scans all versions of the previous user key (oldest first, since the stream
  // runs newest first), keeping the newest visible one in saved_key_/saved_value_, and stops
  // when inner_ reaches an entry of an even earlier key.
  io::Task<void> FindPrevUserEntry() {
    CFS_ASSERT(direction_ == Direction::kReverse);
    ValueType value_type = ValueType::kDeletion;
    separated_ = false;
    while (inner_->Valid()) {
      ParsedInternalKey parsed;
      if (!Parse(&parsed)) co_return;
      if (parsed.sequence <= sequence_) {
        if (value_type != ValueType::kDeletion &&
            CompareUserKeys(parsed.user_key, saved_key_) < 0) {
          break;  // an entry of an earlier key: saved_key_ is complete
        }
        value_type = parsed.type;
        if (value_type == ValueType::kDeletion) {
          ClearSaved();
        } else {
          saved_key_.assign(parsed.user_key);
          saved_value_.assign(inner_->value());
        }
      }
      co_await inner_->Prev();
      if (!CheckInner()) co_return;
    }
    if (value_type == ValueType::kDeletion) {
      // Reached the start with nothing visible.
      valid_ = false;
      ClearSaved();
      direction_ = Direction::kForward;
    } else {
      valid_ = true;
      if (value_type == ValueType::kValuePointer) {
        co_await ResolveSeparated(saved_key_, saved_value_);
      }
    }
  }

  std::shared_ptr<const void> keep_alive_;
  std::unique_ptr<InternalIterator> inner_;
  const SequenceNumber sequence_;
  io::Scheduler* const scheduler_;
  const ValueResolver resolver_;
  const bool lazy_values_;
  Direction direction_ = Direction::kForward;
  bool separated_ = false;       // value() is resolved_value_ (the entry held a pointer)
  bool prepared_ = false;        // resolved_value_ holds the value
  std::string pending_key_;      // the separated entry's user key and pointer, for
  std::string pending_pointer_;  // PrepareValue
  std::string resolved_value_;
  bool valid_ = false;
  std::string saved_key_;
  std::string saved_value_;
  Status status_;
};

}  // namespace

std::unique_ptr<Iterator> NewDBIterator(std::unique_ptr<InternalIterator> inner,
                                        SequenceNumber sequence, io::Scheduler* scheduler,
                                        std::shared_ptr<const void> keep_alive,
                                        ValueResolver resolver, bool lazy_values) {
  return std::make_unique<DBIter>(std::move(inner), sequence, scheduler, std::move(keep_alive),
                                  std::move(resolver), lazy_values);
}

}  // namespace cascadefs::engine
