// wal_reader.cc: WAL replay (wal_reader.h has the recovery rule).
#include "wal/wal_reader.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <utility>

#include "util/checksum.h"
#include "util/coding.h"

namespace cascadefs::engine {

std::string WalSegmentPath(const std::string& dir, std::uint64_t log_number) {
  char name[32];
  std::snprintf(name, sizeof(name), "%06llu.wal", static_cast<unsigned long long>(log_number));
  return dir + "/" + name;
}

namespace {

enum class ParseOutcome { kFragment, kBlockEnd, kInvalid };

// Why a position holds no valid fragment: the log's normal end (bytes never written in this
// lap: zeros, an earlier lap's data, the end of the file) or damaged bytes.
enum class InvalidKind { kEnd, kDamaged };

struct ParsedFragment {
  WalFragmentType type = WalFragmentType::kFull;
  std::string_view payload;
  std::size_t next_pos = 0;  // offset in the block after this fragment
};

// Parses the fragment at `pos` of `block`. kBlockEnd when fewer than a header's bytes are
// left (padding); kInvalid with *reason otherwise when the bytes are not a valid fragment of
// segment `log_number`.
ParseOutcome ParseFragment(std::string_view block, std::size_t pos, std::uint64_t log_number,
                           ParsedFragment* out, std::string* reason, InvalidKind* kind) {
  *kind = InvalidKind::kDamaged;
  if (block.size() - pos < kWalHeaderBytes) {
    if (block.size() == kWalBlockSizeBytes) return ParseOutcome::kBlockEnd;
    *reason = "the segment ends inside a fragment header";
    *kind = InvalidKind::kEnd;
    return ParseOutcome::kInvalid;
  }
  const char* header = block.data() + pos;
  const std::uint32_t checksum = DecodeFixed32(header);
  const std::uint16_t length = DecodeFixed16(header + 4);
  const auto type = static_cast<std::uint8_t>(header[6]);
  const std::uint32_t fragment_log = DecodeFixed32(header + 7);
  if (type == 0 && length == 0 && checksum == 0 && fragment_log == 0) {
    *reason = "zeros where a fragment header belongs";
    *kind = InvalidKind::kEnd;
    return ParseOutcome::kInvalid;
  }
  if (kWalHeaderBytes + length > block.size() - pos) {
    *reason = "fragment length " + std::to_string(length) + " runs past its block";
    return ParseOutcome::kInvalid;
  }
  if (Checksum32(header + 6, 5 + std::size_t{length}, kWalChecksumSeed) != checksum) {
    *reason = "fragment checksum mismatch";
    return ParseOutcome::kInvalid;
  }
  if (fragment_log != static_cast<std::uint32_t>(log_number)) {
    *reason = "fragment of log " + std::to_string(fragment_log) +
              " (a previous lap of this recycled segment)";
    *kind = InvalidKind::kEnd;
    return ParseOutcome::kInvalid;
  }
  if (type == 0 || type > kWalFragmentTypeMax) {
    *reason = "unknown fragment type " + std::to_string(type);
    return ParseOutcome::kInvalid;
  }
  out->type = static_cast<WalFragmentType>(type);
  out->payload = std::string_view(header + kWalHeaderBytes, length);
  out->next_pos = pos + kWalHeaderBytes + length;
  return ParseOutcome::kFragment;
}

// True when `data` holds, at or after `pos`, a valid sync mark of segment `log_number` whose
// durable position is beyond `damage`. Every byte offset is tried: after damage, fragment
// boundaries are unknown, and a sync mark is recognisable on its own (type, length, log
// number and checksum must all match).
bool BlockHasSyncMarkBeyond(std::string_view data, std::size_t pos, std::uint64_t log_number,
                            const WalPosition& damage) {
  constexpr std::size_t kMarkBytes = kWalHeaderBytes + kSyncMarkPayloadBytes;
  for (; pos + kMarkBytes <= data.size(); ++pos) {
    const char* header = data.data() + pos;
    if (static_cast<std::uint8_t>(header[6]) !=
            static_cast<std::uint8_t>(WalFragmentType::kSyncMark) ||
        DecodeFixed16(header + 4) != kSyncMarkPayloadBytes ||
        DecodeFixed32(header + 7) != static_cast<std::uint32_t>(log_number)) {
      continue;
    }
    if (Checksum32(header + 6, 5 + kSyncMarkPayloadBytes, kWalChecksumSeed) !=
        DecodeFixed32(header)) {
      continue;
    }
    const WalPosition durable{DecodeFixed64(header + kWalHeaderBytes),
                              DecodeFixed64(header + kWalHeaderBytes + 8)};
    if (durable > damage) return true;
  }
  return false;
}

// True when a valid sync mark after `damage` (at `damage_pos` of block `block_index` of
// segment `segment_index`, or in any later block or segment) says a position beyond it was
// durable.
io::Task<Result<bool>> DurableBeyond(WalBlockSource* source, std::size_t segment_index,
                                     std::uint64_t block_index, std::size_t damage_pos,
                                     const WalPosition& damage) {
  for (std::size_t segment = segment_index; segment < source->segment_count(); ++segment) {
    const std::uint64_t log_number = source->log_number(segment);
    for (std::uint64_t block = segment == segment_index ? block_index : 0;; ++block) {
      auto bytes = co_await source->ReadBlock(segment, block);
      if (!bytes.ok()) co_return bytes.status();
      const std::string_view data = bytes.value();
      if (data.empty()) break;
      const std::size_t start =
          segment == segment_index && block == block_index ? damage_pos + 1 : 0;
      if (BlockHasSyncMarkBeyond(data, start, log_number, damage)) co_return true;
    }
  }
  co_return false;
}

class FileBlockSource final : public WalBlockSource {
 public:
  FileBlockSource(Env* env, std::string dir, std::vector<std::uint64_t> log_numbers)
      : env_(env), dir_(std::move(dir)), log_numbers_(std::move(log_numbers)) {}

  std::size_t segment_count() const override { return log_numbers_.size(); }
  std::uint64_t log_number(std::size_t segment_index) const override {
    return log_numbers_[segment_index];
  }
  std::string segment_name(std::size_t segment_index) const override {
    return WalSegmentPath(dir_, log_numbers_[segment_index]);
  }

  io::Task<Result<std::string_view>> ReadBlock(std::size_t segment_index,
                                               std::uint64_t block_index) override {
    if (segment_index != open_segment_ || file_ == nullptr) {
      auto file = co_await env_->NewRandomAccessFile(segment_name(segment_index));
      if (!file.ok()) co_return file.status();
      file_ = std::move(file).value();
      open_segment_ = segment_index;
      chunk_loaded_ = false;
    }
    constexpr std::uint64_t kBlocksPerChunk = kWalReadChunkBytes / kWalBlockSizeBytes;
    if (!chunk_loaded_ || block_index < chunk_first_block_ ||
        block_index >= chunk_first_block_ + kBlocksPerChunk) {
      chunk_first_block_ = block_index - block_index % kBlocksPerChunk;
      chunk_.resize(kWalReadChunkBytes);
      auto got = co_await file_->Read(chunk_first_block_ * kWalBlockSizeBytes, chunk_.size(),
                                      chunk_.data());
      if (!got.ok()) co_return got.status();
      chunk_.resize(got.value());
      chunk_loaded_ = true;
    }
    const std::uint64_t start = (block_index - chunk_first_block_) * kWalBlockSizeBytes;
    if (start >= chunk_.size()) co_return std::string_view();
    const std::size_t size =
        std::min<std::size_t>(kWalBlockSizeBytes, chunk_.size() - static_cast<std::size_t>(start));
    co_return std::string_view(chunk_.data() + start, size);
  }

 private:
  Env* const env_;
  const std::string dir_;
  const std::vector<std::uint64_t> log_numbers_;
  std::unique_ptr<RandomAccessFile> file_;
  std::size_t open_segment_ = ~std::size_t{0};
  std::string chunk_;  // up to kWalReadChunkBytes of the open segment
  std::uint64_t chunk_first_block_ = 0;
  bool chunk_loaded_ = false;
};

}  // namespace

io::Task<Status> ReplayBlocks(WalBlockSource* source, const WalRecordCallback& on_record,
                              WalReplayResult* result, WalSalvage* salvage) {
  std::string record;        // the record being assembled
  bool in_record = false;    // a kFirst was seen and no kLast yet
  WalPosition record_start;  // where the record being assembled began
  // Salvage only: a damaged record was skipped, so fragments continuing it are skipped too
  // until a kFull or kFirst starts the next record.
  bool resyncing = false;
  for (std::size_t segment = 0; segment < source->segment_count(); ++segment) {
    const std::uint64_t log_number = source->log_number(segment);
    bool segment_ended = false;
    for (std::uint64_t block = 0; !segment_ended; ++block) {
      auto bytes = co_await source->ReadBlock(segment, block);
      if (!bytes.ok()) co_return bytes.status();
      const std::string_view data = bytes.value();
      std::size_t pos = 0;
      for (;;) {
        const WalPosition here{log_number, block * kWalBlockSizeBytes + pos};
        ParsedFragment fragment;
        std::string reason;
        InvalidKind kind = InvalidKind::kEnd;
        ParseOutcome outcome = ParseOutcome::kInvalid;
        if (data.empty()) {
          reason = "the segment ends without an end marker";
        } else {
          outcome = ParseFragment(data, pos, log_number, &fragment, &reason, &kind);
        }
        if (outcome == ParseOutcome::kBlockEnd) break;
        if (outcome == ParseOutcome::kFragment) {
          switch (fragment.type) {
            case WalFragmentType::kFull:
            case WalFragmentType::kFirst:
              resyncing = false;
              if (in_record && salvage != nullptr) {
                // The unfinished record lost its last fragments: skip it, keep this one.
                salvage->skipped.push_back(
                    {record_start, source->segment_name(segment) + ": WAL record at offset " +
                                       std::to_string(record_start.offset) +
                                       ": the record is cut (a later record starts inside it)"});
                in_record = false;
              }
              if (in_record) {
                reason = "a new record starts inside an unfinished one";
                kind = InvalidKind::kDamaged;
                outcome = ParseOutcome::kInvalid;
                break;
              }
              record.assign(fragment.payload);
              record_start = here;
              in_record = fragment.type == WalFragmentType::kFirst;
              break;
            case WalFragmentType::kMiddle:
            case WalFragmentType::kLast:
              if (!in_record && resyncing) break;  // the rest of a skipped record
              if (!in_record) {
                reason = "a record continues that never began";
                kind = InvalidKind::kDamaged;
                outcome = ParseOutcome::kInvalid;
                break;
              }
              if (record.size() + fragment.payload.size() > kWalRecordSizeMax) {
                reason = "a record grows beyond " + std::to_string(kWalRecordSizeMax) + " bytes";
                kind = InvalidKind::kDamaged;
                outcome = ParseOutcome::kInvalid;
                break;
              }
              record.append(fragment.payload);
              in_record = fragment.type == WalFragmentType::kMiddle;
              break;
            case WalFragmentType::kSyncMark:
              if (fragment.payload.size() == kSyncMarkPayloadBytes) {
                const WalPosition durable{DecodeFixed64(fragment.payload.data()),
                                          DecodeFixed64(fragment.payload.data() + 8)};
                result->synced_end = std::max(result->synced_end, durable);
              }
              break;
            case WalFragmentType::kPadding:
              break;
            case WalFragmentType::kSegmentEnd:
              segment_ended = true;
              break;
          }
        }
        if (outcome == ParseOutcome::kInvalid) {
          auto durable = co_await DurableBeyond(source, segment, block, pos, here);
          if (!durable.ok()) co_return durable.status();
          const std::string where = source->segment_name(segment) + ": WAL record at offset " +
                                    std::to_string(here.offset) + ": " + reason;
          if (durable.value() && salvage != nullptr) {
            // Synced damage: skip the record, resynchronize at the next block (a fragment
            // never crosses one). A block shorter than 32 KiB is the segment's last.
            salvage->skipped.push_back({in_record ? record_start : here, where});
            in_record = false;
            resyncing = true;
            if (data.size() < kWalBlockSizeBytes) segment_ended = true;
            break;
          }
          if (durable.value()) co_return Status::Corruption(where);
          // Unsynced: the end of the log. Only damaged bytes (not the plain end of what was
          // written) are worth reporting as a torn tail.
          result->torn_tail = kind == InvalidKind::kDamaged || in_record;
          result->torn_tail_reason = where;
          co_return Status::OK();
        }
        if ((fragment.type == WalFragmentType::kFull || fragment.type == WalFragmentType::kLast) &&
            !in_record && !resyncing) {
          CFS_CO_RETURN_IF_ERROR(on_record(record, record_start));
          ++result->records;
          result->end = WalPosition{log_number, block * kWalBlockSizeBytes + fragment.next_pos};
        }
        if (segment_ended) break;
        pos = fragment.next_pos;
      }
    }
  }
  co_return Status::OK();
}

io::Task<Status> ReplayWal(Env* env, const std::string& dir,
                           const std::vector<std::uint64_t>& log_numbers,
                           const WalRecordCallback& on_record, WalReplayResult* result,
                           WalSalvage* salvage) {
  FileBlockSource source(env, dir, log_numbers);
  co_return co_await ReplayBlocks(&source, on_record, result, salvage);
}

}  // namespace cascadefs::engine
