// The engine-backed chunk store: dedup, compression, verification on read, persistence, and a
// recipe tree over a real store on disk.
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "engine/db.h"
#include "engine/io/scheduler.h"
#include "fusefs/chunk_store.h"
#include "fusefs/recipe.h"
#include "testutil/temp_dir.h"

namespace cascadefs::fusefs {
namespace {

class EngineChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    io::SchedulerOptions scheduler_options;
    scheduler_options.io_threads = 1;
    auto scheduler = io::Scheduler::Create(scheduler_options);
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    options_.scheduler = scheduler_.get();
    options_.write_buffer_size_bytes = 256 << 10;
    dir_ = temp_.path() + "/store";
    Open();
  }

  void Open() {
    store_.reset();
    db_.reset();
    auto db = engine::DB::Open(options_, dir_);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(db).value();
    store_ = NewEngineChunkStore(db_.get());
  }

  void TearDown() override {
    store_.reset();
    if (db_) {
      EXPECT_TRUE(db_->Close().ok());
    }
  }

  template <typename T>
  T Run(io::Task<T> task) {
    return scheduler_->BlockOn(std::move(task));
  }

  testutil::TempDir temp_;
  std::unique_ptr<io::Scheduler> scheduler_;
  engine::Options options_;
  std::string dir_;
  std::unique_ptr<engine::DB> db_;
  std::unique_ptr<ChunkStore> store_;
};

TEST_F(EngineChunkStoreTest, StoresOnceCompressesAndSurvivesReopen) {
  const std::string text(30000, 'x');
  const ChunkName name = ChunkName::Of(text);
  Result<PutOutcome> first = Run(store_->Put(name, text));
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first.value().added);
  EXPECT_LT(first.value().stored_bytes, 1000u);  // zstd
  Result<PutOutcome> second = Run(store_->Put(name, text));
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second.value().added);
  EXPECT_EQ(store_->stats().chunks_added.load(), 1u);
  EXPECT_EQ(store_->stats().chunks_deduplicated.load(), 1u);

  Result<bool> held = Run(store_->Contains(name));
  ASSERT_TRUE(held.ok());
  EXPECT_TRUE(held.value());
  ASSERT_TRUE(db_->Flush().ok());
  Open();
  Result<std::string> read = Run(store_->Get(name));
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read.value(), text);
  Result<std::string> absent = Run(store_->Get(ChunkName::Of("nothing")));
  EXPECT_TRUE(absent.status().IsNotFound());
}

TEST_F(EngineChunkStoreTest, ADamagedValueIsCorruptionNamingTheChunk) {
  const std::string data = "some chunk bytes\n";
  const ChunkName name = ChunkName::Of(data);
  ASSERT_TRUE(Run(store_->Put(name, data)).ok());
  // Damage the stored value behind the store's back.
  ASSERT_TRUE(db_->Put({}, ChunkKey(name), std::string("\0some chunk bytez\n", 18)).ok());
  Status status = Run(store_->Get(name)).status();
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.ToString().find(name.ToHex()), std::string::npos) << status.ToString();
}

TEST_F(EngineChunkStoreTest, ARecipeTreeOverTheEngineReadsBackAfterReopen) {
  std::mt19937_64 rng(1);
  std::string text;
  while (text.size() < (3 << 20)) text += "line " + std::to_string(rng() % 100000) + "\n";
  RecipeTree tree(store_.get(), ChunkerOptions());
  Result<FileRoot> root = Run(tree.Build(text));
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  Result<FileRoot> edited = Run(tree.Splice(root.value(), 1000, 10, "edited\n"));
  ASSERT_TRUE(edited.ok());
  text.replace(1000, 10, "edited\n");
  const std::string encoded = edited.value().Encode();
  Open();
  RecipeTree reopened(store_.get(), ChunkerOptions());
  Result<FileRoot> decoded = FileRoot::Decode(encoded);
  ASSERT_TRUE(decoded.ok());
  std::string out;
  Status status = Run(reopened.Read(decoded.value(), 0, decoded.value().length, &out));
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(out == text);
}

}  // namespace
}  // namespace cascadefs::fusefs
