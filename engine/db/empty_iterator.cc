#include <utility>

#include "db/internal_iterator.h"
#include "engine/assert.h"

namespace cascadefs::engine {
namespace {

class EmptyIterator final : public InternalIterator {
 public:
  explicit EmptyIterator(Status status) : status_(std::move(status)) {}
  bool Valid() const override { return false; }
  std::string_view key() const override {
    CFS_ASSERT(false);
    return {};
  }
  std::string_view value() const override {
    CFS_ASSERT(false);
    return {};
  }
  Status status() const override { return status_; }
  io::Task<void> SeekToFirst() override { co_return; }
  io::Task<void> SeekToLast() override { co_return; }
  io::Task<void> Seek(std::string_view) override { co_return; }
  io::Task<void> Next() override { co_return; }
  io::Task<void> Prev() override { co_return; }

 private:
  Status status_;
};

}  // namespace

std::unique_ptr<InternalIterator> NewEmptyIterator(Status status) {
  return std::make_unique<EmptyIterator>(std::move(status));
}

}  // namespace cascadefs::engine
