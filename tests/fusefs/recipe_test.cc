// RecipeTree: build/read round trips, edits against a reference string (the edited tree must
// equal a fresh build of the edited bytes), edit cost, diff, and damaged nodes.
#include "fusefs/recipe.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/io/scheduler.h"
#include "fusefs/chunk_store.h"
#include "random_text.h"

namespace cascadefs::fusefs {
namespace {

std::string RandomText(std::size_t bytes, std::uint64_t seed) {
  return test_data::RandomLines(bytes, seed, 100, 'a', 26);
}

std::string RandomBytes(std::size_t bytes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string data(bytes, '\0');
  for (std::size_t i = 0; i + 8 <= bytes; i += 8) {
    const std::uint64_t word = rng();
    std::memcpy(&data[i], &word, 8);
  }
  return data;
}

// Real text: files under /usr/include concatenated, up to `bytes`.
std::string RealText(std::size_t bytes) {
  std::string out;
  std::vector<std::string> dirs{"/usr/include"};
  while (!dirs.empty() && out.size() < bytes) {
    const std::string dir = dirs.back();
    dirs.pop_back();
    DIR* handle = opendir(dir.c_str());
    if (handle == nullptr) continue;
    std::vector<std::string> names;
    while (dirent* entry = readdir(handle)) {
      if (entry->d_name[0] != '.') names.emplace_back(entry->d_name);
    }
    closedir(handle);
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      const std::string path = dir + "/" + name;
      struct stat st;
      if (lstat(path.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        dirs.push_back(path);
      } else if (S_ISREG(st.st_mode)) {
        std::ifstream file(path, std::ios::binary);
        std::ostringstream contents;
        contents << file.rdbuf();
        out += contents.str();
        if (out.size() >= bytes) break;
      }
    }
  }
  out.resize(std::min(out.size(), bytes));
  return out;
}

class RecipeTest : public ::testing::Test {
 public:
  template <typename T>
  T Run(io::Task<T> task) {
    return scheduler_->BlockOn(std::move(task));
  }

 protected:
  void SetUp() override {
    io::SchedulerOptions options;
    options.io_threads = 1;
    auto scheduler = io::Scheduler::Create(options);
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    store_ = NewMemoryChunkStore();
    tree_ = std::make_unique<RecipeTree>(store_.get(), options_);
  }

  FileRoot BuildOrDie(std::string_view data) {
    Result<FileRoot> root = Run(tree_->Build(data));
    EXPECT_TRUE(root.ok()) << root.status().ToString();
    return root.ok() ? root.value() : FileRoot();
  }

  std::string ReadAll(const FileRoot& root) {
    std::string out;
    Status status = Run(tree_->Read(root, 0, root.length, &out));
    EXPECT_TRUE(status.ok()) << status.ToString();
    return out;
  }

  ChunkerOptions options_;
  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<ChunkStore> store_;
  std::unique_ptr<RecipeTree> tree_;
};

TEST_F(RecipeTest, ReadOfBuildIsTheInputAtEverySize) {
  for (std::size_t size : {0ul, 1ul, 100ul, 4096ul, 70000ul, 1ul << 20, 9ul << 20}) {
    for (int kind = 0; kind < 2; ++kind) {
      const std::string data = kind == 0 ? RandomText(size, size) : RandomBytes(size, size);
      const FileRoot root = BuildOrDie(data);
      EXPECT_EQ(root.length, size);
      EXPECT_EQ(root.empty(), size == 0);
      if (size >= 1024) {
        EXPECT_EQ(root.kind, kind == 0 ? ChunkerKind::kText : ChunkerKind::kBinary);
      }
      EXPECT_EQ(ReadAll(root), data) << size;
      // Random ranges, including ones past the end.
      std::mt19937_64 rng(size);
      for (int i = 0; i < 20 && size > 0; ++i) {
        const std::uint64_t offset = rng() % (size + 10);
        const std::uint64_t length = rng() % 100000;
        std::string out;
        ASSERT_TRUE(Run(tree_->Read(root, offset, length, &out)).ok());
        EXPECT_EQ(out, offset < size ? data.substr(offset, length) : "");
      }
    }
  }
}

TEST_F(RecipeTest, RealTextRoundTripsAndHasAShallowTree) {
  const std::string text = RealText(16 << 20);
  ASSERT_GT(text.size(), 1u << 20) << "/usr/include should hold headers on these machines";
  const FileRoot root = BuildOrDie(text);
  EXPECT_EQ(root.kind, ChunkerKind::kText);
  EXPECT_LE(root.height, 4);
  EXPECT_EQ(ReadAll(root), text);
}

TEST_F(RecipeTest, AQuarterGibibyteRoundTrips) {
  const std::string data = RandomBytes(256 << 20, 42);
  const FileRoot root = BuildOrDie(data);
  ASSERT_EQ(root.length, data.size());
  for (std::uint64_t offset = 0; offset < data.size(); offset += 16 << 20) {
    std::string out;
    ASSERT_TRUE(Run(tree_->Read(root, offset, 16 << 20, &out)).ok());
    ASSERT_TRUE(out == std::string_view(data).substr(offset, 16 << 20)) << offset;
  }
}

TEST_F(RecipeTest, EqualBytesGiveEqualRootsAndEmptyDiffersFromAbsent) {
  const std::string data = RandomText(300000, 9);
  EXPECT_EQ(BuildOrDie(data), BuildOrDie(data));
  const FileRoot empty = BuildOrDie("");
  EXPECT_TRUE(empty.empty());
  auto decoded = FileRoot::Decode(empty.Encode());
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded.value(), empty);
  const FileRoot full = BuildOrDie(data);
  decoded = FileRoot::Decode(full.Encode());
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded.value(), full);
  EXPECT_TRUE(FileRoot::Decode("").status().IsCorruption());
}

// A sparse file as the reference: its bytes, and which of them are in holes ('h' in `mask`, '.'
// for data). Holes read as zeros; the tree built from the reference's runs is the one every
// edit must give.
struct SparseModel {
  std::string bytes;
  std::string mask;

  std::uint64_t size() const { return bytes.size(); }
  std::uint64_t hole_bytes() const { return std::count(mask.begin(), mask.end(), 'h'); }
  void Write(std::uint64_t offset, std::string_view data) {
    if (offset > size()) Resize(offset);
    const std::size_t overwrite = std::min<std::size_t>(data.size(), size() - offset);
    bytes.replace(offset, overwrite, data);
    mask.replace(offset, overwrite, std::string(data.size(), '.'));
  }
  void Insert(std::uint64_t offset, std::string_view data, bool hole) {
    bytes.insert(offset, hole ? std::string(data.size(), '\0') : std::string(data));
    mask.insert(offset, std::string(data.size(), hole ? 'h' : '.'));
  }
  void Erase(std::uint64_t offset, std::uint64_t length) {
    bytes.erase(offset, length);
    mask.erase(offset, length);
  }
  void Resize(std::uint64_t new_size) {  // growth is a hole
    bytes.resize(new_size, '\0');
    mask.resize(new_size, 'h');
  }
  void Punch(std::uint64_t offset, std::uint64_t length) {
    if (offset >= size()) return;
    const std::uint64_t end = std::min(size(), offset + length);
    std::fill(bytes.begin() + offset, bytes.begin() + end, '\0');
    std::fill(mask.begin() + offset, mask.begin() + end, 'h');
  }
  // The runs, as pieces for BuildPieces (they point into `bytes`).
  std::vector<RecipeTree::Piece> Pieces() const {
    std::vector<RecipeTree::Piece> pieces;
    for (std::size_t start = 0; start < size();) {
      std::size_t end = start;
      while (end < size() && mask[end] == mask[start]) ++end;
      RecipeTree::Piece piece;
      if (mask[start] == 'h') {
        piece.hole_bytes = end - start;
      } else {
        piece.data = std::string_view(bytes).substr(start, end - start);
      }
      pieces.push_back(piece);
      start = end;
    }
    return pieces;
  }
  // What SEEK_DATA / SEEK_HOLE must answer (the end of file is a hole).
  std::uint64_t NextData(std::uint64_t offset) const {
    const std::size_t at = mask.find('.', offset);
    return at == std::string::npos ? size() : at;
  }
  std::uint64_t NextHole(std::uint64_t offset) const {
    const std::size_t at = mask.find('h', offset);
    return at == std::string::npos ? size() : at;
  }
};

// Random edits against a reference. After every edit the root equals a fresh build of the
// reference: edits are canonical, so equal content always shares a root. (Growth by a write
// past the end or a truncate makes holes, which the reference tracks.)
void RandomEdits(RecipeTest* test, ChunkerKind kind, std::uint64_t seed, int steps,
                 const ChunkerOptions& options) {
  // CFS_TEST_SEED=N shifts every seed: run many to hunt rare cases (the failing seed is printed).
  if (const char* extra = std::getenv("CFS_TEST_SEED")) seed += std::strtoull(extra, nullptr, 10);
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto store = NewMemoryChunkStore();
  RecipeTree tree(store.get(), options);
  std::mt19937_64 rng(seed);
  SparseModel reference;
  reference.Write(
      0, kind == ChunkerKind::kText ? RandomText(200000, seed) : RandomBytes(300000, seed));
  Result<FileRoot> root = test->Run(tree.Build(kind, reference.bytes));
  ASSERT_TRUE(root.ok());
  for (int step = 0; step < steps; ++step) {
    const FileRoot before = root.value();
    const std::uint64_t size = reference.size();
    const int op = static_cast<int>(rng() % 6);
    const std::size_t length = rng() % 3 == 0 ? rng() % 70000 : rng() % 200;
    std::string bytes =
        kind == ChunkerKind::kText ? RandomText(length, rng()) : RandomBytes(length, rng());
    std::string what;
    if (op == 0) {  // overwrite, possibly past the end
      const std::uint64_t offset = rng() % (size + 1000);
      what = "write " + std::to_string(offset) + "+" + std::to_string(length);
      root = test->Run(tree.Write(before, offset, bytes));
      reference.Write(offset, bytes);
    } else if (op == 1 || op == 2) {  // insert
      const std::uint64_t offset = size == 0 ? 0 : rng() % (size + 1);
      what = "insert " + std::to_string(offset) + "+" + std::to_string(length);
      root = test->Run(tree.Splice(before, offset, 0, bytes));
      reference.Insert(offset, bytes, /*hole=*/false);
    } else if (op == 3) {  // delete
      const std::uint64_t offset = size == 0 ? 0 : rng() % size;
      const std::uint64_t remove = std::min<std::uint64_t>(length, size - offset);
      what = "delete " + std::to_string(offset) + "-" + std::to_string(remove);
      root = test->Run(tree.Splice(before, offset, remove, {}));
      reference.Erase(offset, remove);
    } else if (op == 4) {  // truncate shorter or longer
      const std::uint64_t new_size = rng() % (size + 5000);
      what = "truncate " + std::to_string(new_size);
      root = test->Run(tree.Truncate(before, new_size));
      if (new_size < size) reference.Erase(new_size, size - new_size);
      reference.Resize(new_size);
    } else {  // replace a range with a different-length one
      const std::uint64_t offset = size == 0 ? 0 : rng() % size;
      const std::uint64_t remove = std::min<std::uint64_t>(rng() % 5000, size - offset);
      what = "replace " + std::to_string(offset) + "-" + std::to_string(remove) + "+" +
             std::to_string(length);
      root = test->Run(tree.Splice(before, offset, remove, bytes));
      reference.Erase(offset, remove);
      reference.Insert(offset, bytes, /*hole=*/false);
    }
    ASSERT_TRUE(root.ok()) << what << ": " << root.status().ToString();
    ASSERT_EQ(root.value().length, reference.size()) << what;
    Result<FileRoot> fresh = test->Run(tree.BuildPieces(kind, reference.Pieces()));
    ASSERT_TRUE(fresh.ok());
    ASSERT_EQ(root.value(), fresh.value())
        << "step " << step << " " << what << " height " << int(root.value().height) << " vs "
        << int(fresh.value().height);
    if (step % 8 == 0) {
      std::string out;
      ASSERT_TRUE(test->Run(tree.Read(root.value(), 0, root.value().length, &out)).ok());
      ASSERT_TRUE(out == reference.bytes) << what;
    }
  }
}

TEST_F(RecipeTest, RandomTextEditsMatchAFreshBuild) {
  RandomEdits(this, ChunkerKind::kText, 11, 150, options_);
}

TEST_F(RecipeTest, RandomBinaryEditsMatchAFreshBuild) {
  RandomEdits(this, ChunkerKind::kBinary, 12, 150, options_);
}

TEST_F(RecipeTest, RandomEditsWithSmallChunksMatchAFreshBuild) {
  // Small chunks give tall trees, so edits cross node boundaries and change the height.
  ChunkerOptions small;
  small.text_min_bytes = 0;
  small.text_target_bytes = 64;
  small.text_max_bytes = 256;
  small.binary_min_bytes = 64;
  small.binary_avg_bytes = 128;
  small.binary_max_bytes = 512;
  RandomEdits(this, ChunkerKind::kText, 13, 120, small);
  RandomEdits(this, ChunkerKind::kBinary, 14, 120, small);
}

// Reads keep decoded inner nodes (names are content hashes, so they never go stale): a second
// read of the same range reads no node from the store. The cache is bounded: with room for a
// few nodes only, reading a tall tree again reads nodes again.
TEST_F(RecipeTest, ReadsReuseDecodedNodesWithinTheirBound) {
  ChunkerOptions small;
  small.binary_min_bytes = 64;
  small.binary_avg_bytes = 128;
  small.binary_max_bytes = 512;
  const std::string data = RandomBytes(400000, 21);
  for (const std::size_t cache_bytes : {kNodeCacheBytesMax, std::size_t{8192}}) {
    RecipeTree tree(store_.get(), small, cache_bytes);
    Result<FileRoot> root = Run(tree.Build(ChunkerKind::kBinary, data));
    ASSERT_TRUE(root.ok());
    ASSERT_GE(root.value().height, 2);
    TreeWriteStats first;
    TreeWriteStats second;
    std::string out;
    ASSERT_TRUE(Run(tree.Read(root.value(), 0, data.size(), &out, &first)).ok());
    ASSERT_TRUE(out == data);
    out.clear();
    ASSERT_TRUE(Run(tree.Read(root.value(), 0, data.size(), &out, &second)).ok());
    ASSERT_TRUE(out == data);
    EXPECT_GT(first.nodes_read, 0u);
    if (cache_bytes == kNodeCacheBytesMax) {
      EXPECT_EQ(second.nodes_read, 0u) << "every node came from the cache";
    } else {
      EXPECT_GT(second.nodes_read, first.nodes_read / 2) << "a cache of 8 KiB holds few nodes";
    }
    EXPECT_EQ(second.leaves_read, first.leaves_read) << "leaves are never cached here";
  }
}

TEST_F(RecipeTest, InsertAtTheStartOfALargeTextFileRewritesTwoLeavesAndOnePath) {
  const std::string text = RandomText(32 << 20, 15);
  const FileRoot root = BuildOrDie(text);
  ASSERT_GE(root.height, 2);
  TreeWriteStats stats;
  Result<FileRoot> edited = Run(tree_->Splice(root, 0, 0, "a new first line\n", &stats));
  ASSERT_TRUE(edited.ok());
  EXPECT_LE(stats.leaves_written, 2u);
  EXPECT_LE(stats.nodes_written, 2u * root.height);
  EXPECT_LE(stats.nodes_read, 8u * root.height);
  EXPECT_LE(stats.stored_bytes, 64u << 10);
  std::string head;
  ASSERT_TRUE(Run(tree_->Read(edited.value(), 0, 100, &head)).ok());
  EXPECT_EQ(head, "a new first line\n" + text.substr(0, 83));
}

TEST_F(RecipeTest, OneLineEditInTheMiddleStoresLittle) {
  const std::string text = RandomText(32 << 20, 16);
  const FileRoot root = BuildOrDie(text);
  const std::size_t middle = text.find('\n', text.size() / 2) + 1;
  TreeWriteStats stats;
  Result<FileRoot> edited = Run(tree_->Splice(root, middle, 3, "XYZ", &stats));
  ASSERT_TRUE(edited.ok());
  EXPECT_LE(stats.leaves_written, 2u);
  EXPECT_LE(stats.nodes_written, 2u * root.height);
  EXPECT_LE(stats.stored_bytes, 64u << 10);
}

TEST_F(RecipeTest, DiffListsOnlyWhatTheOtherSideLacks) {
  const std::string text = RandomText(8 << 20, 17);
  const FileRoot a = BuildOrDie(text);
  std::string edited = text;
  edited.replace(edited.size() / 3, 5, "HELLO");
  const FileRoot b = BuildOrDie(edited);

  std::vector<ChunkName> a_names;
  ASSERT_TRUE(Run(tree_->ListChunks(a, &a_names, nullptr)).ok());
  std::vector<ChunkName> b_names;
  ASSERT_TRUE(Run(tree_->ListChunks(b, &b_names, nullptr)).ok());
  const std::set<ChunkName> in_a(a_names.begin(), a_names.end());
  std::set<ChunkName> expected;
  for (const auto& name : b_names) {
    if (!in_a.contains(name)) expected.insert(name);
  }
  ASSERT_FALSE(expected.empty());

  std::vector<ChunkName> diff;
  ASSERT_TRUE(Run(tree_->Diff(b, a, &diff)).ok());
  EXPECT_EQ(std::set<ChunkName>(diff.begin(), diff.end()), expected);
  EXPECT_LE(diff.size(), 2u + 2u * b.height);

  std::vector<ChunkName> none;
  ASSERT_TRUE(Run(tree_->Diff(a, a, &none)).ok());
  EXPECT_TRUE(none.empty());
  std::vector<ChunkName> everything;
  ASSERT_TRUE(Run(tree_->Diff(a, FileRoot(), &everything)).ok());
  EXPECT_EQ(everything.size(), in_a.size());

  // Missing() against a predicate: what a store holding only `a` lacks of `b`.
  std::vector<ChunkName> missing;
  RecipeTree::HasChunk has = [&in_a](const ChunkName& name) -> io::Task<Result<bool>> {
    co_return in_a.contains(name);
  };
  ASSERT_TRUE(Run(tree_->Missing(b, has, &missing)).ok());
  EXPECT_EQ(std::set<ChunkName>(missing.begin(), missing.end()), expected);
}

TEST_F(RecipeTest, NodeEncodingRoundTripsAndRejectsDamage) {
  std::vector<NodeEntry> entries;
  for (int i = 0; i < 10; ++i) {
    entries.push_back(NodeEntry{ChunkName::Of(std::to_string(i)), 1000u + i});
  }
  const std::string bytes = EncodeNode(2, entries);
  auto node = DecodeNode(bytes);
  ASSERT_TRUE(node.ok());
  EXPECT_EQ(node.value().level, 2);
  EXPECT_EQ(node.value().entries, entries);
  EXPECT_EQ(node.value().total_length, 10045u);
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_TRUE(DecodeNode(bytes.substr(0, cut)).status().IsCorruption()) << cut;
  }
  EXPECT_TRUE(DecodeNode(bytes + "x").status().IsCorruption());
  std::string bad_level = bytes;
  bad_level[2] = 0;
  EXPECT_TRUE(DecodeNode(bad_level).status().IsCorruption());
}

TEST_F(RecipeTest, ADamagedOrMissingChunkIsAnErrorNeverWrongBytes) {
  // A store whose bytes we can damage: the engine-format values in memory, via a wrapper.
  class DamagingStore final : public ChunkStore {
   public:
    explicit DamagingStore(ChunkStore* inner) : inner_(inner) {}
    io::Task<Result<std::string>> Get(const ChunkName& name) override {
      if (name == damaged_) co_return Status::Corruption("chunk " + name.ToHex() + ": damaged");
      if (name == missing_) co_return Status::NotFound("chunk " + name.ToHex() + ": absent");
      co_return co_await inner_->Get(name);
    }
    io::Task<Result<PutOutcome>> Put(const ChunkName& name, std::string_view data) override {
      co_return co_await inner_->Put(name, data);
    }
    io::Task<Result<bool>> Contains(const ChunkName& name) override {
      co_return co_await inner_->Contains(name);
    }
    ChunkStore* inner_;
    ChunkName damaged_;
    ChunkName missing_;
  };
  DamagingStore store(store_.get());
  RecipeTree tree(&store, options_);
  const std::string text = RandomText(4 << 20, 18);
  Result<FileRoot> root = Run(tree.Build(text));
  ASSERT_TRUE(root.ok());
  std::vector<ChunkName> names;
  std::vector<int> levels;
  ASSERT_TRUE(Run(tree.ListChunks(root.value(), &names, &levels)).ok());
  ASSERT_GT(root.value().height, 0);
  store.damaged_ = names[1];  // the root's first child
  std::string out;
  Status status = Run(tree.Read(root.value(), 0, root.value().length, &out));
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.ToString().find(names[1].ToHex()), std::string::npos) << status.ToString();
  store.damaged_ = ChunkName();
  store.missing_ = names.back();
  out.clear();
  status = Run(tree.Read(root.value(), 0, root.value().length, &out));
  EXPECT_TRUE(status.IsNotFound()) << status.ToString();
}

// ---- holes ----------------------------------------------------------------------------------

// Random edits that make, fill, move and merge holes, against a SparseModel: after every edit
// the root equals a fresh build of the model's runs (holes keep the tree canonical), the root
// counts the model's hole bytes, and reads and seeks agree with the model.
void RandomSparseEdits(RecipeTest* test, ChunkerKind kind, std::uint64_t seed, int steps,
                       const ChunkerOptions& options) {
  if (const char* extra = std::getenv("CFS_TEST_SEED")) seed += std::strtoull(extra, nullptr, 10);
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto store = NewMemoryChunkStore();
  RecipeTree tree(store.get(), options);
  std::mt19937_64 rng(seed);
  SparseModel model;
  model.Write(0, kind == ChunkerKind::kText ? RandomText(150000, seed) : RandomBytes(200000, seed));
  model.Punch(50000, 30000);
  Result<FileRoot> root = test->Run(tree.BuildPieces(kind, model.Pieces()));
  ASSERT_TRUE(root.ok());
  for (int step = 0; step < steps; ++step) {
    const FileRoot before = root.value();
    const std::uint64_t size = model.size();
    const int op = static_cast<int>(rng() % 8);
    const std::size_t length = rng() % 3 == 0 ? rng() % 70000 : 1 + rng() % 200;
    const std::string bytes =
        kind == ChunkerKind::kText ? RandomText(length, rng()) : RandomBytes(length, rng());
    std::string what;
    if (op == 0) {  // write, possibly far past the end (the gap is a hole)
      const std::uint64_t offset = rng() % (size + 100000);
      what = "write " + std::to_string(offset) + "+" + std::to_string(bytes.size());
      root = test->Run(tree.Write(before, offset, bytes));
      model.Write(offset, bytes);
    } else if (op == 1) {  // punch, often past the end
      const std::uint64_t offset = size == 0 ? 0 : rng() % size;
      const std::uint64_t punch = 1 + rng() % 80000;
      what = "punch " + std::to_string(offset) + "+" + std::to_string(punch);
      root = test->Run(tree.PunchHole(before, offset, punch));
      model.Punch(offset, punch);
    } else if (op == 2) {  // truncate shorter or longer
      const std::uint64_t new_size = rng() % (size + 100000);
      what = "truncate " + std::to_string(new_size);
      root = test->Run(tree.Truncate(before, new_size));
      model.Resize(new_size);
      if (new_size < size) model.Erase(new_size, model.size() - new_size);
    } else if (op == 3) {  // insert a hole
      const std::uint64_t offset = size == 0 ? 0 : rng() % (size + 1);
      const std::uint64_t hole = 1 + rng() % 50000;
      what = "insert hole " + std::to_string(offset) + "+" + std::to_string(hole);
      std::vector<RecipeTree::Piece> pieces(1);
      pieces[0].hole_bytes = hole;
      root = test->Run(tree.SplicePieces(before, offset, 0, pieces));
      model.Insert(offset, std::string(hole, '\0'), /*hole=*/true);
    } else if (op == 4) {  // insert data
      const std::uint64_t offset = size == 0 ? 0 : rng() % (size + 1);
      what = "insert " + std::to_string(offset) + "+" + std::to_string(bytes.size());
      root = test->Run(tree.Splice(before, offset, 0, bytes));
      model.Insert(offset, bytes, /*hole=*/false);
    } else if (op == 5) {  // delete
      const std::uint64_t offset = size == 0 ? 0 : rng() % size;
      const std::uint64_t remove = std::min<std::uint64_t>(length, size - offset);
      what = "delete " + std::to_string(offset) + "-" + std::to_string(remove);
      root = test->Run(tree.Splice(before, offset, remove, {}));
      model.Erase(offset, remove);
    } else {  // replace a range with data, a hole and data
      const std::uint64_t offset = size == 0 ? 0 : rng() % size;
      const std::uint64_t remove = std::min<std::uint64_t>(rng() % 5000, size - offset);
      const std::uint64_t hole = 1 + rng() % 9000;
      what = "replace " + std::to_string(offset) + "-" + std::to_string(remove) + " with " +
             std::to_string(bytes.size()) + "+hole " + std::to_string(hole) + "+3";
      std::vector<RecipeTree::Piece> pieces(3);
      pieces[0].data = bytes;
      pieces[1].hole_bytes = hole;
      pieces[2].data = "xyz";
      root = test->Run(tree.SplicePieces(before, offset, remove, pieces));
      model.Erase(offset, remove);
      model.Insert(offset, "xyz", false);
      model.Insert(offset, std::string(hole, '\0'), true);
      model.Insert(offset, bytes, false);
    }
    ASSERT_TRUE(root.ok()) << what << ": " << root.status().ToString();
    ASSERT_EQ(root.value().length, model.size()) << what;
    ASSERT_EQ(root.value().hole_bytes, model.hole_bytes()) << what;
    Result<FileRoot> fresh = test->Run(tree.BuildPieces(kind, model.Pieces()));
    ASSERT_TRUE(fresh.ok());
    ASSERT_EQ(root.value(), fresh.value()) << "step " << step << " " << what;
    if (model.size() > 0) {
      for (int i = 0; i < 4; ++i) {
        const std::uint64_t at = rng() % model.size();
        Result<std::uint64_t> data = test->Run(tree.SeekData(root.value(), at));
        Result<std::uint64_t> hole = test->Run(tree.SeekHole(root.value(), at));
        ASSERT_TRUE(data.ok() && hole.ok()) << what;
        ASSERT_EQ(data.value(), model.NextData(at)) << what << " SeekData " << at;
        ASSERT_EQ(hole.value(), model.NextHole(at)) << what << " SeekHole " << at;
      }
    }
    if (step % 8 == 0) {
      std::string out;
      ASSERT_TRUE(test->Run(tree.Read(root.value(), 0, root.value().length, &out)).ok());
      ASSERT_TRUE(out == model.bytes) << what;
    }
  }
}

TEST_F(RecipeTest, RandomSparseEditsMatchAFreshBuild) {
  RandomSparseEdits(this, ChunkerKind::kText, 31, 120, options_);
  RandomSparseEdits(this, ChunkerKind::kBinary, 32, 120, options_);
}

TEST_F(RecipeTest, RandomSparseEditsWithSmallChunksMatchAFreshBuild) {
  // Small chunks give tall trees: holes meet node cuts, and hole bytes climb several levels.
  ChunkerOptions small;
  small.text_min_bytes = 0;
  small.text_target_bytes = 64;
  small.text_max_bytes = 256;
  small.binary_min_bytes = 64;
  small.binary_avg_bytes = 128;
  small.binary_max_bytes = 512;
  RandomSparseEdits(this, ChunkerKind::kText, 33, 100, small);
  RandomSparseEdits(this, ChunkerKind::kBinary, 34, 100, small);
}

// Growing an empty file to 1 TiB stores nothing: the tree is one hole entry; reads anywhere are
// zeros without a store read; a write in the middle stores only its own chunk, and the hole
// around it splits in two.
TEST_F(RecipeTest, ATebibyteTruncateIsOneHoleAndAWriteInsideStoresOnlyItsChunk) {
  constexpr std::uint64_t kTiB = std::uint64_t{1} << 40;
  TreeWriteStats grow;
  FileRoot empty;
  empty.kind = ChunkerKind::kBinary;
  Result<FileRoot> big = Run(tree_->Truncate(empty, kTiB, &grow));
  ASSERT_TRUE(big.ok());
  EXPECT_TRUE(big.value().all_hole());
  EXPECT_EQ(big.value().height, 0);
  EXPECT_EQ(big.value().data_bytes(), 0u);
  EXPECT_EQ(grow.leaves_written + grow.nodes_written + grow.chunks_reused, 0u);
  TreeWriteStats reads;
  std::mt19937_64 rng(35);
  for (int i = 0; i < 20; ++i) {
    std::string out;
    ASSERT_TRUE(Run(tree_->Read(big.value(), rng() % kTiB, 65536, &out, &reads)).ok());
    EXPECT_EQ(out, std::string(65536, '\0'));
  }
  EXPECT_EQ(reads.leaves_read + reads.nodes_read, 0u) << "holes read nothing";

  const std::uint64_t middle = kTiB / 2 + 12345;
  const std::string data = RandomBytes(40000, 36);
  TreeWriteStats write;
  Result<FileRoot> written = Run(tree_->Write(big.value(), middle, data, &write));
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(written.value().length, kTiB);
  EXPECT_EQ(written.value().data_bytes(), data.size());
  EXPECT_LE(write.leaves_written, 6u) << "~16 KiB binary chunks of the 40,000 bytes";
  EXPECT_LE(write.nodes_written, 1u);
  EXPECT_LE(write.stored_bytes, data.size() + 1024);
  std::string around;
  ASSERT_TRUE(Run(tree_->Read(written.value(), middle - 100, data.size() + 200, &around)).ok());
  EXPECT_TRUE(around == std::string(100, '\0') + data + std::string(100, '\0'));
  EXPECT_EQ(Run(tree_->SeekData(written.value(), 0)).value(), middle);
  EXPECT_EQ(Run(tree_->SeekHole(written.value(), 0)).value(), 0u);
  EXPECT_EQ(Run(tree_->SeekHole(written.value(), middle)).value(), middle + data.size());
  EXPECT_EQ(Run(tree_->SeekData(written.value(), middle + data.size())).value(), kTiB)
      << "only the hole up to the end is left";
  EXPECT_EQ(Run(tree_->SeekHole(written.value(), kTiB - 1)).value(), kTiB - 1);

  // Punching the data again gives back the all-hole root: canonical, holes merge.
  Result<FileRoot> punched = Run(tree_->PunchHole(written.value(), middle - 5, data.size() + 10));
  ASSERT_TRUE(punched.ok());
  EXPECT_EQ(punched.value(), big.value());
  // The encoded root survives a round trip (version 2).
  Result<FileRoot> decoded = FileRoot::Decode(written.value().Encode());
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded.value(), written.value());
  EXPECT_EQ(written.value().Encode()[0], 2);
}

// A punch in the middle of a large file drops the chunks the range covers wholly (they are not
// in the new tree), keeps the bytes around it, and re-cuts only the chunks at its edges.
TEST_F(RecipeTest, PunchHoleDropsWholeChunksAndKeepsTheEdges) {
  const std::string data = RandomBytes(8 << 20, 37);
  const FileRoot root = BuildOrDie(data);
  ASSERT_EQ(root.Encode()[0], 1) << "a file without holes stays version 1";
  const std::uint64_t offset = 3000001;
  const std::uint64_t length = 2000003;
  TreeWriteStats stats;
  Result<FileRoot> punched = Run(tree_->PunchHole(root, offset, length, &stats));
  ASSERT_TRUE(punched.ok());
  EXPECT_EQ(punched.value().length, data.size());
  EXPECT_EQ(punched.value().hole_bytes, length);
  EXPECT_LE(stats.leaves_written, 4u) << "only the edge chunks are re-cut";
  EXPECT_LE(stats.nodes_written, 3u * root.height + 2);
  std::string expected = data;
  std::fill(expected.begin() + offset, expected.begin() + offset + length, '\0');
  EXPECT_TRUE(ReadAll(punched.value()) == expected);
  EXPECT_EQ(Run(tree_->SeekHole(punched.value(), 0)).value(), offset);
  EXPECT_EQ(Run(tree_->SeekData(punched.value(), offset)).value(), offset + length);
  EXPECT_EQ(Run(tree_->SeekData(punched.value(), 10)).value(), 10u);

  // No chunk of the new tree lies inside the hole: every leaf's bytes are outside it.
  std::vector<ChunkName> before_names;
  ASSERT_TRUE(Run(tree_->ListChunks(root, &before_names, nullptr)).ok());
  std::vector<ChunkName> names;
  std::vector<int> levels;
  ASSERT_TRUE(Run(tree_->ListChunks(punched.value(), &names, &levels)).ok());
  std::uint64_t leaf_bytes = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    EXPECT_FALSE(names[i].is_null()) << "holes are never listed";
    if (levels[i] != 0) continue;
    Result<std::string> leaf = Run(store_->Get(names[i]));
    ASSERT_TRUE(leaf.ok());
    leaf_bytes += leaf.value().size();
  }
  EXPECT_EQ(leaf_bytes, data.size() - length) << "stored data is exactly what is not a hole";
  EXPECT_LT(names.size(), before_names.size());

  // Writing the same bytes back where the hole is restores the original root.
  Result<FileRoot> refilled =
      Run(tree_->Write(punched.value(), offset, std::string_view(data).substr(offset, length)));
  ASSERT_TRUE(refilled.ok());
  EXPECT_EQ(refilled.value(), root);
}

// Names identify content including holes: equal bytes and equal holes give equal roots;
// the same bytes with the zeros stored give another; Diff lists no hole and, between two
// files that differ only in a hole's length, no leaf at all.
TEST_F(RecipeTest, HoleNamesAndDiff) {
  const std::string head = RandomText(300000, 38);
  const std::string tail = RandomText(300000, 39);
  auto sparse = [&](std::uint64_t hole) {
    std::vector<RecipeTree::Piece> pieces(3);
    pieces[0].data = head;
    pieces[1].hole_bytes = hole;
    pieces[2].data = tail;
    Result<FileRoot> root = Run(tree_->BuildPieces(ChunkerKind::kText, pieces));
    EXPECT_TRUE(root.ok());
    return root.value();
  };
  const FileRoot a = sparse(std::uint64_t{1} << 30);
  EXPECT_EQ(sparse(std::uint64_t{1} << 30), a);
  const FileRoot b = sparse(std::uint64_t{2} << 30);
  EXPECT_NE(b.name, a.name);
  const FileRoot small = sparse(100000);
  const FileRoot dense = BuildOrDie(head + std::string(100000, '\0') + tail);
  EXPECT_NE(dense.name, small.name) << "stored zeros are not a hole";
  EXPECT_TRUE(ReadAll(dense) == ReadAll(small));

  std::vector<ChunkName> a_names;
  std::vector<int> a_levels;
  ASSERT_TRUE(Run(tree_->ListChunks(a, &a_names, &a_levels)).ok());
  std::vector<ChunkName> diff;
  ASSERT_TRUE(Run(tree_->Diff(b, a, &diff)).ok());
  ASSERT_FALSE(diff.empty());
  std::vector<ChunkName> b_names;
  std::vector<int> b_levels;
  ASSERT_TRUE(Run(tree_->ListChunks(b, &b_names, &b_levels)).ok());
  for (const ChunkName& name : diff) {
    EXPECT_FALSE(name.is_null());
    const auto at = std::find(b_names.begin(), b_names.end(), name) - b_names.begin();
    ASSERT_LT(static_cast<std::size_t>(at), b_names.size());
    EXPECT_GT(b_levels[at], 0) << "a longer hole needs no leaf transfer, only nodes";
  }
  std::vector<ChunkName> everything;
  ASSERT_TRUE(Run(tree_->Diff(a, FileRoot(), &everything)).ok());
  EXPECT_EQ(everything.size(), a_names.size());
  std::vector<ChunkName> none;
  ASSERT_TRUE(Run(tree_->Diff(FileRoot(), a, &none)).ok());
  EXPECT_TRUE(none.empty());
  // An all-hole file names no chunk at all.
  Result<FileRoot> holes = Run(tree_->Truncate(FileRoot(), 12345));
  ASSERT_TRUE(holes.ok());
  std::vector<ChunkName> listed;
  ASSERT_TRUE(Run(tree_->ListChunks(holes.value(), &listed, nullptr)).ok());
  EXPECT_TRUE(listed.empty());
  ASSERT_TRUE(Run(tree_->Diff(holes.value(), FileRoot(), &listed)).ok());
  EXPECT_TRUE(listed.empty());
}

TEST_F(RecipeTest, HoleEncodingsRoundTripAndRejectNonCanonicalForms) {
  const NodeEntry leaf{ChunkName::Of("leaf"), 4096, 0};
  const std::vector<NodeEntry> level1{leaf, HoleEntry(1 << 20), leaf, HoleEntry(7)};
  const std::string bytes = EncodeNode(1, level1);
  EXPECT_EQ(bytes[1], 2) << "a node with holes is version 2";
  Result<DecodedNode> node = DecodeNode(bytes);
  ASSERT_TRUE(node.ok()) << node.status().ToString();
  EXPECT_EQ(node.value().entries, level1);
  EXPECT_EQ(node.value().total_hole_bytes, (1u << 20) + 7);
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_TRUE(DecodeNode(bytes.substr(0, cut)).status().IsCorruption()) << cut;
  }
  const std::vector<NodeEntry> level2{{ChunkName::Of("a"), 5000, 1000},
                                      {ChunkName::Of("b"), 10, 0}};
  const std::string upper = EncodeNode(2, level2);
  Result<DecodedNode> upper_node = DecodeNode(upper);
  ASSERT_TRUE(upper_node.ok());
  EXPECT_EQ(upper_node.value().entries, level2);
  EXPECT_EQ(EncodeNode(2, {{ChunkName::Of("a"), 5000, 0}})[1], 1) << "no holes: version 1";

  // Non-canonical or damaged forms.
  std::string adjacent = EncodeNode(1, {leaf, HoleEntry(5)});
  adjacent[3] = 3;  // three entries: the last one another hole
  adjacent += std::string(1, '\0') + std::string(1, '\x09');
  EXPECT_TRUE(DecodeNode(adjacent).status().IsCorruption()) << "two holes side by side";
  std::string no_holes = EncodeNode(1, {leaf});
  no_holes[1] = 2;
  EXPECT_TRUE(DecodeNode(no_holes).status().IsCorruption()) << "version 2 without holes";
  std::string v1_hole = bytes;
  v1_hole[1] = 1;
  EXPECT_TRUE(DecodeNode(v1_hole).status().IsCorruption()) << "a hole in a version 1 node";
  std::string too_many = EncodeNode(2, {{ChunkName::Of("a"), 5000, 1000}});
  too_many.back() = 0x7f;  // the hole bytes' varint ends the node: 1000 becomes 16360 > 5000
  EXPECT_TRUE(DecodeNode(too_many).status().IsCorruption()) << "more hole bytes than length";
  std::string hole_up = EncodeNode(2, {{ChunkName::Of("a"), 5000, 1000}});
  hole_up[4] = 0;  // the child's name tag: a hole above level 1
  EXPECT_TRUE(DecodeNode(hole_up).status().IsCorruption());

  FileRoot all_hole;
  all_hole.length = all_hole.hole_bytes = 1 << 30;
  for (const FileRoot& root : {all_hole}) {
    Result<FileRoot> decoded = FileRoot::Decode(root.Encode());
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(decoded.value(), root);
  }
  EXPECT_TRUE(FileRoot::Decode(all_hole.Encode() + "x").status().IsCorruption());
  std::string zero_holes = all_hole.Encode();
  zero_holes.back() = 0;  // hole bytes 0 in a version 2 root
  EXPECT_TRUE(FileRoot::Decode(zero_holes).status().IsCorruption());
  std::string tall = all_hole.Encode();
  tall[2] = 1;  // an all-hole file with a height
  EXPECT_TRUE(FileRoot::Decode(tall).status().IsCorruption());
}

TEST(ChunkValueTest, CompressesWhenItSavesAndVerifiesAgainstTheName) {
  const std::string text(20000, 'a');
  const ChunkName name = ChunkName::Of(text);
  const std::string value = EncodeChunkValue(text, 1);
  EXPECT_EQ(value[0], 1);  // zstd
  EXPECT_LT(value.size(), text.size() / 10);
  auto decoded = DecodeChunkValue(name, value);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded.value(), text);

  const std::string noise = RandomBytes(20000, 19);
  const std::string raw = EncodeChunkValue(noise, 1);
  EXPECT_EQ(raw[0], 0);  // incompressible: stored raw
  EXPECT_EQ(raw.size(), noise.size() + 1);

  std::string flipped = raw;
  flipped[100] ^= 1;
  Status status = DecodeChunkValue(ChunkName::Of(noise), flipped).status();
  EXPECT_TRUE(status.IsCorruption());
  EXPECT_NE(status.ToString().find(ChunkName::Of(noise).ToHex()), std::string::npos);
  EXPECT_TRUE(DecodeChunkValue(name, value.substr(0, value.size() / 2)).status().IsCorruption());
  EXPECT_TRUE(DecodeChunkValue(name, "").status().IsCorruption());
  EXPECT_TRUE(DecodeChunkValue(name, std::string("\x07xyz")).status().IsCorruption());
}

}  // namespace
// The guess that skips zstd: random bytes look incompressible; text, a byte repeated, sparse
// binary (mostly zeros) and data under the sample size do not, so they are still compressed.
TEST(ChunkValueTest, EntropyGuessSkipsOnlyEvenlySpreadBytes) {
  EXPECT_TRUE(LooksIncompressible(RandomBytes(16384, 1)));
  EXPECT_TRUE(LooksIncompressible(RandomBytes(65536, 2)));
  std::string text;
  while (text.size() < 16384) text += "the quick brown fox jumps over the lazy dog 12345\n";
  EXPECT_FALSE(LooksIncompressible(text));
  EXPECT_FALSE(LooksIncompressible(std::string(16384, 'x')));
  std::string sparse(16384, '\0');
  const std::string noise = RandomBytes(2000, 3);
  sparse.replace(5000, noise.size(), noise);
  EXPECT_FALSE(LooksIncompressible(sparse));
  EXPECT_FALSE(LooksIncompressible(RandomBytes(1000, 4))) << "under the sample: zstd decides";
  const std::string text_value = EncodeChunkValue(text, 1);
  EXPECT_EQ(text_value[0], 1) << "text is still compressed";
}

}  // namespace cascadefs::fusefs
