// merging_iterator.cc: NewMergingIterator and NewLazyIterator (merging_iterator.h).
#include "db/merging_iterator.h"

#include <utility>

#include "db/dbformat.h"
#include "engine/assert.h"
#include "engine/result.h"

namespace cascadefs::engine {
namespace {

class MergingIterator final : public InternalIterator {
 public:
  explicit MergingIterator(std::vector<std::unique_ptr<InternalIterator>> children)
      : children_(std::move(children)) {}

  bool Valid() const override { return current_ != nullptr && status_.ok(); }
  std::string_view key() const override {
    CFS_ASSERT(Valid());
    return current_->key();
  }
  std::string_view value() const override {
    CFS_ASSERT(Valid());
    return current_->value();
  }
  Status status() const override {
    if (!status_.ok()) return status_;
    for (const auto& child : children_) {
      Status child_status = child->status();
      if (!child_status.ok()) return child_status;
    }
    return Status::OK();
  }

  io::Task<void> SeekToFirst() override {
    for (auto& child : children_) co_await child->SeekToFirst();
    direction_ = Direction::kForward;
    FindSmallest();
  }

  io::Task<void> SeekToLast() override {
    for (auto& child : children_) co_await child->SeekToLast();
    direction_ = Direction::kReverse;
    FindLargest();
  }

  io::Task<void> Seek(std::string_view target) override {
    for (auto& child : children_) co_await child->Seek(target);
    direction_ = Direction::kForward;
    FindSmallest();
  }

  io::Task<void> Next() override {
    CFS_ASSERT(Valid());
    if (direction_ != Direction::kForward) {
      // Every other child sits before key(): move each to the first entry after it.
      const std::string current_key(key());
      for (auto& child : children_) {
        if (child.get() == current_) continue;
        co_await child->Seek(current_key);
        if (child->Valid() && CompareInternalKeys(child->key(), current_key) == 0) {
          co_await child->Next();
        }
      }
      direction_ = Direction::kForward;
    }
    co_await current_->Next();
    FindSmallest();
  }

  io::Task<void> Prev() override {
    CFS_ASSERT(Valid());
    if (direction_ != Direction::kReverse) {
      // Every other child sits after key(): move each to the last entry before it.
      const std::string current_key(key());
      for (auto& child : children_) {
        if (child.get() == current_) continue;
        co_await child->Seek(current_key);
        if (child->Valid()) {
          co_await child->Prev();
        } else {
          co_await child->SeekToLast();
        }
      }
      direction_ = Direction::kReverse;
    }
    co_await current_->Prev();
    FindLargest();
  }

 private:
  enum class Direction { kForward, kReverse };

  void FindSmallest() {
    current_ = nullptr;
    for (auto& child : children_) {
      if (!child->Valid()) continue;
      if (current_ == nullptr || CompareInternalKeys(child->key(), current_->key()) < 0) {
        current_ = child.get();
      }
    }
  }

  void FindLargest() {
    current_ = nullptr;
    for (auto& child : children_) {
      if (!child->Valid()) continue;
      if (current_ == nullptr || CompareInternalKeys(child->key(), current_->key()) > 0) {
        current_ = child.get();
      }
    }
  }

  std::vector<std::unique_ptr<InternalIterator>> children_;
  InternalIterator* current_ = nullptr;
  Direction direction_ = Direction::kForward;
  Status status_;
};

class LazyIterator final : public InternalIterator {
 public:
  explicit LazyIterator(IteratorOpener open) : open_(std::move(open)) {}

  bool Valid() const override { return inner_ != nullptr && inner_->Valid(); }
  std::string_view key() const override { return inner_->key(); }
  std::string_view value() const override { return inner_->value(); }
  Status status() const override {
    if (!status_.ok()) return status_;
    return inner_ != nullptr ? inner_->status() : Status::OK();
  }

  io::Task<void> SeekToFirst() override {
    const bool ready = co_await Ready();
    if (ready) co_await inner_->SeekToFirst();
  }
  io::Task<void> SeekToLast() override {
    const bool ready = co_await Ready();
    if (ready) co_await inner_->SeekToLast();
  }
  io::Task<void> Seek(std::string_view target) override {
    const bool ready = co_await Ready();
    if (ready) co_await inner_->Seek(target);
  }
  io::Task<void> Next() override { co_await inner_->Next(); }
  io::Task<void> Prev() override { co_await inner_->Prev(); }

 private:
  io::Task<bool> Ready() {
    if (inner_ != nullptr) co_return true;
    if (!status_.ok()) co_return false;
    auto opened = co_await open_();
    if (!opened.ok()) {
      status_ = opened.status();
      co_return false;
    }
    inner_ = std::move(opened).value();
    co_return true;
  }

  IteratorOpener open_;
  std::unique_ptr<InternalIterator> inner_;
  Status status_;
};

}  // namespace

std::unique_ptr<InternalIterator> NewMergingIterator(
    std::vector<std::unique_ptr<InternalIterator>> children) {
  return std::make_unique<MergingIterator>(std::move(children));
}

std::unique_ptr<InternalIterator> NewLazyIterator(IteratorOpener open) {
  return std::make_unique<LazyIterator>(std::move(open));
}

}  // namespace cascadefs::engine
