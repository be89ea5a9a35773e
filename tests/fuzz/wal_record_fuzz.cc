// wal_record_fuzz.cc: arbitrary bytes replayed as WAL segments.
//
// The bytes are cut into one or two segments (the first byte chooses where) of log numbers 1
// and 2 and replayed by the WAL's replay state machine (ReplayBlocks, the code Open runs),
// which must end in OK (a clean end or torn tail) or Corruption, never a crash, an over-read
// or a record larger than kWalRecordSizeMax.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/assert.h"
#include "engine/manifest/string_file.h"
#include "wal/wal_reader.h"

namespace cascadefs::engine {
namespace {

class MemoryBlockSource final : public WalBlockSource {
 public:
  explicit MemoryBlockSource(std::vector<std::string> segments) : segments_(std::move(segments)) {}
  std::size_t segment_count() const override { return segments_.size(); }
  std::uint64_t log_number(std::size_t index) const override { return index + 1; }
  std::string segment_name(std::size_t index) const override {
    return "fuzz/" + std::to_string(index + 1) + ".wal";
  }
  io::Task<Result<std::string_view>> ReadBlock(std::size_t index, std::uint64_t block) override {
    const std::string& bytes = segments_[index];
    const std::uint64_t start = block * kWalBlockSizeBytes;
    if (start >= bytes.size()) co_return std::string_view();
    co_return std::string_view(bytes).substr(start, kWalBlockSizeBytes);
  }

 private:
  std::vector<std::string> segments_;
};

}  // namespace
}  // namespace cascadefs::engine

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cascadefs::engine;
  if (size == 0) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t cut = std::min<std::size_t>(bytes.size(), std::size_t{data[0]} * 512);
  std::vector<std::string> segments = {std::string(bytes.substr(0, cut))};
  if (cut < bytes.size()) segments.emplace_back(bytes.substr(cut));
  MemoryBlockSource source(std::move(segments));
  WalReplayResult result;
  const cascadefs::Status status = testing::RunInline(ReplayBlocks(
      &source,
      [](std::string_view record, const WalPosition&) {
        CFS_ASSERT(record.size() <= kWalRecordSizeMax);
        return cascadefs::Status::OK();
      },
      &result));
  CFS_ASSERT(status.ok() || status.IsCorruption());
  return 0;
}
