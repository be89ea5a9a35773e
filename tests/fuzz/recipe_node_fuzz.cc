// recipe_node_fuzz.cc: DecodeNode and FileRoot::Decode on arbitrary bytes.
//
// The first byte picks the parser (even: an inner node, odd: a file root); the rest is its input.
// Properties: decoding never reads out of bounds (ASan) and never asserts; a failure is
// Corruption; a success re-encodes to exactly the input (both encodings are canonical: one byte
// string per value).
// Seeds: tests/fuzz/corpus/recipe_node/, written by tests/fusefs/fuzz_corpus_test.cc.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/assert.h"
#include "fusefs/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cascadefs::fusefs;
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto node = DecodeNode(input);
    if (!node.ok()) {
      CFS_ASSERT(node.status().IsCorruption());
      return 0;
    }
    CFS_ASSERT(EncodeNode(node.value().level, node.value().entries) == input);
  } else {
    auto root = FileRoot::Decode(input);
    if (!root.ok()) {
      CFS_ASSERT(root.status().IsCorruption());
      return 0;
    }
    CFS_ASSERT(root.value().Encode() == input);
  }
  return 0;
}
