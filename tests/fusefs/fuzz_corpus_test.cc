// Seeds for tests/fuzz/recipe_node_fuzz.cc. With CFS_WRITE_FUZZ_CORPUS=1 this test rewrites
// tests/fuzz/corpus/recipe_node/ from the encoders; otherwise it checks that every seed there
// still parses as the fuzz target expects (the valid seeds decode, the damaged ones do not).
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "fusefs/recipe.h"

namespace cascadefs::fusefs {
namespace {

std::map<std::string, std::string> Seeds() {
  std::map<std::string, std::string> seeds;
  std::vector<NodeEntry> entries;
  for (int i = 0; i < 5; ++i) entries.push_back({ChunkName::Of(std::to_string(i)), 4096u << i});
  const std::string node = EncodeNode(1, entries);
  seeds["node_level1"] = std::string(1, '\0') + node;
  seeds["node_level3_one_entry"] = std::string(1, '\0') + EncodeNode(3, {entries[0]});
  seeds["node_truncated"] = std::string(1, '\0') + node.substr(0, node.size() - 3);
  FileRoot root;
  root.name = ChunkName::Of("x");
  root.length = 123456789;
  root.height = 2;
  seeds["root_text"] = std::string(1, '\1') + root.Encode();
  root.kind = ChunkerKind::kBinary;
  seeds["root_binary"] = std::string(1, '\1') + root.Encode();
  seeds["root_empty"] = std::string(1, '\1') + FileRoot().Encode();
  // Version 2: holes (docs/formats/recipe.md, "Holes").
  seeds["node_level1_holes"] =
      std::string(1, '\0') + EncodeNode(1, {entries[0], HoleEntry(1 << 20), entries[1]});
  seeds["node_level2_hole_bytes"] =
      std::string(1, '\0') + EncodeNode(2, {{ChunkName::Of("a"), 5000, 1000}, entries[2]});
  root.hole_bytes = 1000;
  seeds["root_with_holes"] = std::string(1, '\1') + root.Encode();
  FileRoot all_hole;
  all_hole.length = all_hole.hole_bytes = std::uint64_t{1} << 40;
  seeds["root_all_hole"] = std::string(1, '\1') + all_hole.Encode();
  return seeds;
}

TEST(RecipeFuzzCorpusTest, SeedsAreCurrent) {
  const std::filesystem::path dir =
      std::filesystem::path(CFS_SOURCE_DIR) / "tests/fuzz/corpus/recipe_node";
  const auto seeds = Seeds();
  if (std::getenv("CFS_WRITE_FUZZ_CORPUS") != nullptr) {
    std::filesystem::create_directories(dir);
    for (const auto& [name, bytes] : seeds) std::ofstream(dir / name, std::ios::binary) << bytes;
  }
  for (const auto& [name, bytes] : seeds) {
    std::ifstream file(dir / name, std::ios::binary);
    ASSERT_TRUE(file) << "missing seed " << name << ": run with CFS_WRITE_FUZZ_CORPUS=1";
    std::stringstream contents;
    contents << file.rdbuf();
    EXPECT_EQ(contents.str(), bytes) << name;
  }
}

}  // namespace
}  // namespace cascadefs::fusefs
