// memtable_test.cc: MemTable lookups by sequence, deletions, ordering and iteration.
//
// Method: entries with several versions per key are added; Get at each sequence and the
// iterator's order (user key ascending, sequence descending) are checked against what the
// internal-key rules demand, including empty and 1 MiB keys and values.
#include "memtable/memtable.h"

#include <memory>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "engine/io/scheduler.h"

namespace cascadefs::engine {
namespace {

class MemTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 1});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    mem_ = new MemTable();
    mem_->Ref();
  }
  void TearDown() override { mem_->Unref(); }

  std::string GetAt(std::string_view key, SequenceNumber sequence) {
    std::string value;
    switch (mem_->Get(key, sequence, &value)) {
      case MemTable::GetResult::kFound:
        return value;
      case MemTable::GetResult::kFoundPointer:
        return "POINTER:" + value;
      case MemTable::GetResult::kDeleted:
        return "DELETED";
      case MemTable::GetResult::kNotPresent:
        return "ABSENT";
    }
    return "?";
  }

  std::unique_ptr<io::Scheduler> scheduler_;
  MemTable* mem_ = nullptr;
};

TEST_F(MemTableTest, GetHonoursSequenceAndDeletion) {
  mem_->Add(1, ValueType::kValue, "k", "v1");
  mem_->Add(5, ValueType::kValue, "k", "v5");
  mem_->Add(7, ValueType::kDeletion, "k", "");
  mem_->Add(9, ValueType::kValue, "k", "v9");
  mem_->Add(3, ValueType::kValue, "j", "j3");
  EXPECT_EQ(GetAt("k", 0), "ABSENT");
  EXPECT_EQ(GetAt("k", 1), "v1");
  EXPECT_EQ(GetAt("k", 4), "v1");
  EXPECT_EQ(GetAt("k", 5), "v5");
  EXPECT_EQ(GetAt("k", 8), "DELETED");
  EXPECT_EQ(GetAt("k", 100), "v9");
  EXPECT_EQ(GetAt("j", 100), "j3");
  EXPECT_EQ(GetAt("i", 100), "ABSENT");
  EXPECT_EQ(GetAt("kk", 100), "ABSENT");
  EXPECT_EQ(mem_->num_entries(), 5u);
  EXPECT_EQ(mem_->num_deletes(), 1u);
  EXPECT_GT(mem_->ApproximateMemoryUsage(), 0u);
}

TEST_F(MemTableTest, EmptyAndHugeKeysAndValues) {
  const std::string big_key(5000, 'K');
  const std::string big_value(1 << 20, 'V');
  mem_->Add(1, ValueType::kValue, "", "");
  mem_->Add(2, ValueType::kValue, big_key, big_value);
  EXPECT_EQ(GetAt("", 10), "");
  EXPECT_EQ(GetAt(big_key, 10), big_value);
  EXPECT_GE(mem_->ApproximateMemoryUsage(), big_value.size());
}

TEST_F(MemTableTest, IteratorOrdersUserKeyThenNewestFirst) {
  mem_->Add(2, ValueType::kValue, "b", "b2");
  mem_->Add(4, ValueType::kValue, "b", "b4");
  mem_->Add(3, ValueType::kDeletion, "a", "");
  mem_->Add(1, ValueType::kValue, "a", "a1");
  mem_->Add(5, ValueType::kValue, "c", "c5");
  auto body = [this]() -> io::Task<std::string> {
    std::unique_ptr<InternalIterator> it = mem_->NewIterator();
    std::string order;
    for (co_await it->SeekToFirst(); it->Valid(); co_await it->Next()) {
      ParsedInternalKey parsed;
      EXPECT_TRUE(ParseInternalKey(it->key(), &parsed));
      order += std::string(parsed.user_key) + std::to_string(parsed.sequence) + "=" +
               std::string(it->value()) + " ";
    }
    std::string backward;
    for (co_await it->SeekToLast(); it->Valid(); co_await it->Prev()) {
      backward += std::string(ExtractUserKey(it->key()));
    }
    co_await it->Seek(MakeInternalKey("b", 3, kValueTypeForSeek));
    EXPECT_TRUE(it->Valid());
    co_return order + "| " + backward + " | " + std::string(it->value());
  };
  EXPECT_EQ(scheduler_->BlockOn(body()), "a3= a1=a1 b4=b4 b2=b2 c5=c5 | cbbaa | b2");
}

TEST_F(MemTableTest, IteratorKeepsMemTableAlive) {
  mem_->Add(1, ValueType::kValue, "x", "y");
  std::unique_ptr<InternalIterator> it = mem_->NewIterator();
  mem_->Ref();
  mem_->Unref();
  scheduler_->BlockOn([&]() -> io::Task<void> { co_await it->SeekToFirst(); }());
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->value(), "y");
}

}  // namespace
}  // namespace cascadefs::engine
