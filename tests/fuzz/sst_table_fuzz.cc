// sst_table_fuzz.cc: an SST file image of arbitrary bytes, opened and read.
//
// Table::Open parses the footer, properties, filter block and index partitions of the bytes;
// when it accepts them, the target iterates the whole table both ways and looks up a few
// keys, which decodes every data block. Every path must end in a Status, never a crash, an
// over-read or an unbounded allocation. The first bytes also go through Block::Parse as one
// block, so block decoding is fuzzed directly too.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "db/dbformat.h"
#include "engine/manifest/string_file.h"
#include "sst/block.h"
#include "sst/table.h"

namespace cascadefs::engine {
namespace {

io::Task<int> Walk(InternalIterator* it) {
  int steps = 0;
  for (co_await it->SeekToFirst(); it->Valid() && steps < 100000; co_await it->Next()) ++steps;
  for (co_await it->SeekToLast(); it->Valid() && steps < 200000; co_await it->Prev()) ++steps;
  co_await it->Seek(MakeInternalKey("m", kSequenceMax, kValueTypeForSeek));
  co_return steps;
}

io::Task<int> Probe(const Table& table) {
  TableGetResult result;
  for (const char* key : {"", "a", "m", "zzzz"}) {
    (void)co_await table.Get(MakeInternalKey(key, kSequenceMax, kValueTypeForSeek), &result);
  }
  co_return 0;
}

}  // namespace
}  // namespace cascadefs::engine

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cascadefs::engine;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto block = Block::Parse(bytes, "fuzz block");
  if (block.ok()) {
    auto it = Block::NewIterator(block.value());
    (void)testing::RunInline(Walk(it.get()));
  }
  auto table = testing::RunInline(
      Table::Open(TableOptions{}, std::make_unique<testing::StringFile>("fuzz.sst", bytes)));
  if (!table.ok()) return 0;
  auto it = table.value()->NewIterator();
  (void)testing::RunInline(Walk(it.get()));
  (void)testing::RunInline(Probe(*table.value()));
  return 0;
}
