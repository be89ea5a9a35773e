// repair_store.cc: RepairStoreFiles (engine/repair.h). docs/fsck.md, "Repairing the engine's
// files", explains the choices; LevelDB's RepairDB and RocksDB's Repairer are the models
// (rebuild the manifest from the tables found, convert logs to tables), with these
// differences: intact tables keep their levels when the manifest reads intact, damaged
// tables are salvaged block by block, a lost value-log record becomes a deletion marker (not
// a dropped entry that would uncover an older version), and nothing is ever deleted.
//
// Order of work (crash safety): read everything and decide; write every new file (salvaged
// and rebuilt tables, a value log of moved records), sync each and the directory; hard-link
// every file about to be replaced into DIR/lost/ and sync it; write the new manifest, sync
// it, switch CURRENT (write, sync, rename, sync the directory); only then unlink the
// replaced names from the store directory. A crash before the switch leaves the old store and
// unreferenced new files (the next open removes them); after it, the new store and the
// originals in lost/.
#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include <xxhash.h>

#include "check/store_state.h"
#include "db/dbformat.h"
#include "db/merging_iterator.h"
#include "db/version_set.h"
#include "db/write_batch_internal.h"
#include "engine/check.h"
#include "engine/repair.h"
#include "manifest/current_file.h"
#include "manifest/filename.h"
#include "manifest/manifest_log.h"
#include "memtable/memtable.h"
#include "sst/block.h"
#include "sst/format.h"
#include "sst/table.h"
#include "sst/table_builder.h"
#include "util/coding.h"
#include "vlog/vlog_file.h"
#include "vlog/vlog_format.h"
#include "wal/wal_reader.h"

namespace cascadefs::engine {

namespace {

// Actions naming single lost value-log records, per value-log file; the rest are counted in
// one summary line (a missing file can hold millions of records).
constexpr std::uint64_t kRecordActionsPerFileMax = 32;
// A table repair reads into memory to salvage by framing: larger ones are not salvaged (the
// engine writes tables of target_file_size_bytes, 64 MiB by default).
constexpr std::uint64_t kFramingScanBytesMax = std::uint64_t{1} << 30;

// What a value-log file holds, as a scan from its header found it.
struct VlogScan {
  bool present = false;
  bool listed = false;          // in the manifest repair started from
  bool damaged = false;         // records a reader needs do not decode: retired by the repair
  std::uint64_t size = 0;       // the file's size
  std::uint64_t valid_end = 0;  // just past the last record the scan decoded
  std::uint64_t records = 0;
  std::uint64_t value_bytes = 0;
  bool referenced = false;  // a surviving pointer names it (it must stay listed)
  std::uint64_t lost = 0;   // pointers into it that became deletions
};

// One SST repair reads: a live one of the manifest, or (manifest lost) any in the directory.
struct Source {
  std::uint64_t number = 0;
  int level = 0;
  bool listed = false;
  FileMetaData listed_meta;
  FileMetaData meta;                 // as read: the real key range, sequences and count
  std::unique_ptr<Table> table;      // the original, or its salvage when damaged
  std::uint64_t salvage_number = 0;  // nonzero: `table` is a salvaged copy
  bool damaged = false;
  bool needs_rewrite = false;  // damaged, or a pointer to fix
};

std::string Escaped(std::string_view key) {
  std::string out;
  for (const char c : key.substr(0, 40)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  if (key.size() > 40) out += "...";
  return out;
}

class Repairer {
 public:
  Repairer(Env* env, std::string dir, RepairOptions options)
      : env_(env), dir_(std::move(dir)), options_(options) {}

  io::Task<Result<RepairReport>> Run() {
    auto check = co_await CheckStoreFiles(env_, dir_, {});
    if (!check.ok()) co_return check.status();
    report_.errors_found = check.value().errors();
    // A store without errors is left exactly as it is.
    if (report_.errors_found == 0) co_return std::move(report_);

    CFS_CO_RETURN_IF_ERROR(Inventory());
    co_await ReadManifestState();
    CFS_CO_RETURN_IF_ERROR(co_await ScanVlogs());
    CFS_CO_RETURN_IF_ERROR(co_await ReadTables());
    CFS_CO_RETURN_IF_ERROR(co_await ReplayWal());
    Status status = co_await Rebuild();
    if (status.ok()) status = co_await Switch();
    if (!status.ok()) {
      // Nothing refers to the new files yet: remove them (best effort; the next open would).
      for (const std::string& path : written_) (void)co_await env_->RemoveFile(path);
      co_return status;
    }
    auto after = co_await CheckStoreFiles(env_, dir_, {});
    if (!after.ok()) co_return after.status();
    report_.errors_left = after.value().errors();
    for (const CheckFinding& f : after.value().findings) {
      if (f.severity == CheckSeverity::kError) {
        Act(f.file, f.offset, "still damaged after the repair: " + f.problem);
      }
    }
    co_return std::move(report_);
  }

 private:
  void Act(const std::string& file, std::optional<std::uint64_t> offset, std::string what) {
    report_.actions.push_back({file, offset, std::move(what)});
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  std::uint64_t NewNumber() { return next_number_++; }

  // Which store files the directory holds, and numbers above all of them.
  Status Inventory() {
    Result<std::vector<std::string>> names = env_->ListDir(dir_);
    if (!names.ok()) return names.status();
    for (const std::string& name : names.value()) {
      std::uint64_t number = 0;
      FileType type{};
      if (!ParseFileName(name, &number, &type)) continue;
      present_[type].insert(number);
      next_number_ = std::max(next_number_, number + 1);
    }
    return Status::OK();
  }

  // The manifest CURRENT names; when that fails to read, the newest other manifest that reads
  // intact (a manifest's first edit holds the whole state, so any complete one is a state the
  // store was in; the newest is the latest). manifest_ok_ false: levels are unknown.
  io::Task<void> ReadManifestState() {
    Result<StoreState> state = co_await ReadStoreState(env_, dir_);
    if (state.ok()) {
      AdoptState(std::move(state).value());
      co_return;
    }
    std::string problem(state.status().message());
    Result<std::uint64_t> named = co_await ReadCurrentFile(env_, dir_);
    const std::string failed =
        named.ok() ? BaseFileName(FileType::kManifest, named.value()) : "CURRENT";
    if (problem.starts_with(Path(failed) + ": ")) problem.erase(0, Path(failed).size() + 2);
    Act(failed, std::nullopt, "does not read (" + problem + ")");
    std::vector<std::uint64_t> manifests(present_[FileType::kManifest].begin(),
                                         present_[FileType::kManifest].end());
    for (auto it = manifests.rbegin(); it != manifests.rend(); ++it) {
      if (named.ok() && *it == named.value()) continue;
      Result<StoreState> other = co_await ReadStoreState(env_, dir_, *it);
      if (other.ok()) {
        Act(BaseFileName(FileType::kManifest, *it), std::nullopt,
            "reads intact: the store's files and levels are taken from it");
        AdoptState(std::move(other).value());
        co_return;
      }
    }
    Act(failed, std::nullopt,
        "no intact manifest: every table in the directory is read and their levels rebuilt");
  }

  void AdoptState(StoreState state) {
    manifest_ok_ = true;
    log_number_ = state.log_number;
    last_sequence_ = state.last_sequence;
    // Numbers the store handed out before may still be named (a shadowed pointer into a value
    // log GC deleted): new files never reuse one.
    next_number_ = std::max(next_number_, state.next_file_number);
    version_ = std::move(state.version);
  }

  // Scans every value-log file of the directory from its header: which records a pointer can
  // trust without reading them (those before valid_end of an undamaged file).
  io::Task<Status> ScanVlogs() {
    for (const std::uint64_t number : present_[FileType::kVlog]) {
      VlogScan& scan = vlogs_[number];
      scan.present = true;
      const std::string name = BaseFileName(FileType::kVlog, number);
      auto file = co_await env_->NewRandomAccessFile(Path(name));
      if (!file.ok()) co_return file.status();
      scan.size = file.value()->size_bytes();
      Status status = co_await ScanVlogRecords(
          *file.value(), number,
          [&](const ValuePointer&, const VlogRecord& record) {
            ++scan.records;
            scan.value_bytes += record.value.size();
            return Status::OK();
          },
          &scan.valid_end);
      if (!status.ok()) {
        scan.damaged = true;
        scan.valid_end = 0;
        Act(name, 0, "its header does not decode (" + std::string(status.message()) + ")");
        continue;
      }
      // A finished file ends in its footer right after the last record; an unfinished one
      // (a crash) may end in a torn tail, which only a recorded size can call damage.
      bool finished = false;
      if (scan.size >= kVlogFileHeaderBytes + kVlogFooterBytes) {
        std::string footer(kVlogFooterBytes, '\0');
        auto got =
            co_await file.value()->Read(scan.size - kVlogFooterBytes, footer.size(), footer.data());
        if (!got.ok()) co_return got.status();
        finished = got.value() == footer.size() && DecodeVlogFooter(footer).ok();
      }
      if (finished && scan.valid_end + kVlogFooterBytes != scan.size) {
        scan.damaged = true;
        Act(name, scan.valid_end,
            "the record here does not decode, before the file's footer: the intact records "
            "named by pointers are moved to a new value log and this file retired");
      }
    }
    for (const auto& [number, meta] : version_.vlogs) {
      VlogScan& scan = vlogs_[number];
      scan.listed = true;
      const std::string name = BaseFileName(FileType::kVlog, number);
      if (!scan.present) {
        ++report_.files_missing;
        Act(name, std::nullopt,
            "missing: the manifest lists it; every key whose value it held is lost (its "
            "pointers become deletions)");
      } else if (!scan.damaged && scan.valid_end < meta.size_bytes) {
        scan.damaged = true;
        Act(name, scan.valid_end,
            "the record here does not decode, before the recorded end at " +
                std::to_string(meta.size_bytes) +
                ": the intact records named by pointers are moved to a new value log and this "
                "file retired");
      }
    }
    co_return Status::OK();
  }

  // A pointer the rebuilt tables can keep as it is: into an undamaged file, before the end of
  // the records its scan decoded.
  bool Trusted(const ValuePointer& pointer) const {
    auto it = vlogs_.find(pointer.file_number);
    return it != vlogs_.end() && it->second.present && !it->second.damaged &&
           pointer.offset >= kVlogFileHeaderBytes &&
           pointer.offset + pointer.size <= it->second.valid_end;
  }

  // Whether the entry's value pointer must be fixed (Fix). A trusted one marks its file as
  // referenced: a table kept as it is may be the only one naming a file the manifest lacks.
  bool NeedsFix(std::string_view key, std::string_view value) {
    ParsedInternalKey parsed;
    if (!ParseInternalKey(key, &parsed) || parsed.type != ValueType::kValuePointer) return false;
    Result<ValuePointer> pointer = DecodeValuePointer(value);
    if (!pointer.ok()) return true;
    // Without a manifest, the numbers pointers name are the only record of deleted value logs.
    next_number_ = std::max(next_number_, pointer.value().file_number + 1);
    if (!Trusted(pointer.value())) return true;
    vlogs_[pointer.value().file_number].referenced = true;
    return false;
  }

  // Reads every table: its real metadata, damaged blocks, pointers that need fixing. A damaged
  // table's intact blocks are written to a salvaged table, which stands in for it.
  io::Task<Status> ReadTables() {
    if (manifest_ok_) {
      for (int level = 0; level < kNumLevels; ++level) {
        for (const auto& file : version_.files[static_cast<std::size_t>(level)]) {
          const std::string name = BaseFileName(FileType::kSst, file->number);
          if (!present_[FileType::kSst].contains(file->number)) {
            ++report_.files_missing;
            Act(name, std::nullopt,
                "missing: the manifest lists it at level " + std::to_string(level) + "; its " +
                    std::to_string(file->num_entries) +
                    " entries are lost (older versions of their keys may show again)");
            continue;
          }
          auto source = std::make_unique<Source>();
          source->number = file->number;
          source->level = level;
          source->listed = true;
          source->listed_meta = *file;
          sources_.push_back(std::move(source));
        }
      }
    } else {
      for (const std::uint64_t number : present_[FileType::kSst]) {
        auto source = std::make_unique<Source>();
        source->number = number;
        source->level = kNumLevels - 1;
        sources_.push_back(std::move(source));
      }
    }
    for (auto& source : sources_) CFS_CO_RETURN_IF_ERROR(co_await ReadTable(source.get()));
    co_return Status::OK();
  }

  io::Task<Status> ReadTable(Source* source) {
    const std::string name = BaseFileName(FileType::kSst, source->number);
    auto file = co_await env_->NewRandomAccessFile(Path(name));
    if (!file.ok()) co_return file.status();
    const std::uint64_t size = file.value()->size_bytes();
    if (source->listed && size != source->listed_meta.file_size_bytes) {
      source->damaged = true;
      Act(name, std::nullopt,
          "size " + std::to_string(size) + " bytes, the manifest says " +
              std::to_string(source->listed_meta.file_size_bytes) + " (truncated or overwritten)");
    }
    auto table = co_await Table::Open(TableOptions{}, std::move(file).value());
    std::uint64_t read_entries = 0;
    if (table.ok() && !source->damaged) {
      // One pass: metadata, damage, pointers. Entries go nowhere yet.
      bool damaged = false;
      bool fix = false;
      std::string previous;
      co_await table.value()->CheckBlocks(
          [&](std::uint64_t, const Status&) { damaged = true; },
          [&](std::string_view key, std::string_view value) {
            // Blocks whose checksums hold but whose entries are malformed or out of order
            // (written so): the table is salvaged, which keeps the entries in order.
            ParsedInternalKey parsed;
            if (!ParseInternalKey(key, &parsed) ||
                (read_entries > 0 && CompareInternalKeys(previous, key) >= 0)) {
              damaged = true;
            }
            previous.assign(key);
            fix = fix || NeedsFix(key, value);
            Note(&source->meta, key);
            ++read_entries;
          });
      if (!damaged) {
        source->meta.number = source->number;
        source->meta.file_size_bytes = size;
        source->table = std::move(table).value();
        source->needs_rewrite = fix;
        if (source->listed && read_entries != source->listed_meta.num_entries) {
          // Intact blocks but another count: the manifest's record is rewritten.
          Act(name, std::nullopt,
              "holds " + std::to_string(read_entries) + " entries, the manifest says " +
                  std::to_string(source->listed_meta.num_entries) + ": recorded anew");
        }
        co_return Status::OK();
      }
      source->damaged = true;
    }
    source->damaged = true;
    source->meta = FileMetaData{};
    // Locals, not ?: temporaries, in the awaited call (GCC 12 destroys those twice).
    const Table* opened = nullptr;
    Status open_status;
    if (table.ok()) {
      opened = table.value().get();
    } else {
      open_status = table.status();
    }
    Status salvaged = co_await Salvage(source, opened, open_status);
    co_return salvaged;
  }

  static void Note(FileMetaData* meta, std::string_view key) {
    ParsedInternalKey parsed;
    if (!ParseInternalKey(key, &parsed)) return;
    if (meta->num_entries == 0) {
      meta->smallest.assign(key);
      meta->smallest_sequence = parsed.sequence;
      meta->largest_sequence = parsed.sequence;
    }
    meta->largest.assign(key);
    meta->smallest_sequence = std::min(meta->smallest_sequence, parsed.sequence);
    meta->largest_sequence = std::max(meta->largest_sequence, parsed.sequence);
    ++meta->num_entries;
  }

  // Writes the intact entries of a damaged table to a new table, and opens that in its place.
  // `table`: the original when it opens (its index finds the blocks), else null (the blocks
  // are found by their own framing; open_status says why the index could not be used).
  io::Task<Status> Salvage(Source* source, const Table* table, const Status& open_status) {
    const std::string name = BaseFileName(FileType::kSst, source->number);
    const std::uint64_t number = NewNumber();
    const std::string path = SstFileName(dir_, number);
    auto out = co_await env_->NewWritableFile(path, WriteMode::kCreateExclusive);
    if (!out.ok()) co_return out.status();
    written_.push_back(path);
    TableBuilder builder(TableOptions{}, out.value().get());
    std::string last_key;
    std::uint64_t kept = 0;
    // Keeps an entry when it is a well-formed internal key after the previous one: a block
    // whose checksum holds can still be one that is not data (found by framing: the filter
    // or an index partition), and those never continue the data's key order.
    auto keep = [&](std::string_view key, std::string_view value) {
      ParsedInternalKey parsed;
      if (!ParseInternalKey(key, &parsed)) return false;
      if (kept > 0 && CompareInternalKeys(last_key, key) >= 0) return false;
      if (parsed.type == ValueType::kValuePointer) {
        Result<ValuePointer> pointer = DecodeValuePointer(value);
        if (!pointer.ok()) return false;
        next_number_ = std::max(next_number_, pointer.value().file_number + 1);
      }
      builder.Add(key, value);
      Note(&source->meta, key);
      last_key.assign(key);
      ++kept;
      return true;
    };
    if (table != nullptr) {
      std::uint64_t blocks_dropped = 0;
      co_await table->CheckBlocks(
          [&](std::uint64_t offset, const Status& status) {
            ++blocks_dropped;
            Act(name, offset,
                "data block dropped: " +
                    std::string(status.message())
                        .substr(std::min(status.message().size(), Path(name).size() + 2)));
          },
          [&](std::string_view key, std::string_view value) { (void)keep(key, value); });
      report_.sst_blocks_dropped += blocks_dropped;
    } else {
      std::string why(open_status.message());
      if (why.starts_with(Path(name) + ": ")) why.erase(0, Path(name).size() + 2);
      Act(name, std::nullopt,
          "footer or index does not read (" + why +
              "): data blocks are found by their own framing");
      CFS_CO_RETURN_IF_ERROR(co_await ScanFraming(name, keep));
    }
    Status status = co_await builder.Finish();
    if (status.ok()) status = co_await out.value()->Sync();
    Status closed = co_await out.value()->Close();
    if (status.ok()) status = closed;
    if (!status.ok()) co_return status;
    const std::uint64_t expected =
        source->listed ? source->listed_meta.num_entries : std::uint64_t{0};
    std::string summary = std::to_string(kept) + " intact entries salvaged";
    if (source->listed && expected >= kept) {
      report_.sst_entries_dropped += expected - kept;
      summary += ", " + std::to_string(expected - kept) + " of the " + std::to_string(expected) +
                 " the manifest counts are lost (older versions of their keys may show again)";
    }
    Act(name, std::nullopt, summary + "; the original goes to lost/");
    source->salvage_number = number;
    source->needs_rewrite = true;
    if (kept == 0) co_return Status::OK();  // nothing to read back
    auto file = co_await env_->NewRandomAccessFile(path);
    if (!file.ok()) co_return file.status();
    auto salvaged = co_await Table::Open(TableOptions{}, std::move(file).value());
    if (!salvaged.ok()) co_return salvaged.status();
    source->table = std::move(salvaged).value();
    co_return Status::OK();
  }

  // Finds data blocks by their framing (contents, compression byte, checksum of both): from
  // offset 0, each block's end is the first position whose trailer checksum matches. After a
  // region with no valid block, the next block start is searched for (a first entry with no
  // shared prefix and a well-formed internal key, or a page boundary of an aligned table).
  // Every candidate is checked by its checksum (a false match is a 2^-32 chance) and then by
  // parsing, and its entries by `keep`. Reads the whole file: bounded by kFramingScanBytesMax.
  template <typename Keep>
  io::Task<Status> ScanFraming(const std::string& name, Keep& keep) {
    auto file = co_await env_->NewRandomAccessFile(Path(name));
    if (!file.ok()) co_return file.status();
    const std::uint64_t size = file.value()->size_bytes();
    if (size > kFramingScanBytesMax) {
      Act(name, std::nullopt, "too large to scan by framing: not salvaged");
      co_return Status::OK();
    }
    std::string bytes(size, '\0');
    auto got = co_await file.value()->Read(0, bytes.size(), bytes.data());
    if (!got.ok()) co_return got.status();
    bytes.resize(got.value());
    std::uint64_t end = bytes.size();
    // An intact footer says where the data blocks end (the filter block follows them).
    if (end >= kFooterBytes) {
      Footer footer;
      if (footer.DecodeFrom(std::string_view(bytes).substr(end - kFooterBytes), Path(name)).ok() &&
          footer.filter.offset <= end) {
        end = footer.filter.offset;
      }
    }
    std::uint64_t pos = 0;
    std::uint64_t largest_block = 64 << 10;
    while (pos < end) {
      std::uint64_t block_end = 0;
      bool good = FirstEntryPlausible(bytes, pos, end) &&
                  FindBlockEnd(bytes, pos, std::min(end, pos + kBlockSizeMax), &block_end);
      bool ordered = true;
      if (good) good = AddBlock(name, bytes, pos, block_end, keep, &ordered);
      if (!ordered) break;  // past the data: an index partition repeats earlier keys
      if (good) {
        largest_block = std::max(largest_block, block_end - pos);
        pos = block_end + kBlockTrailerBytes;
        continue;
      }
      // Zero padding up to the next page (aligned tables) is no damage.
      const std::uint64_t page = (pos / kBlockAlignBytes + 1) * kBlockAlignBytes;
      if (page < end && std::all_of(bytes.begin() + static_cast<std::ptrdiff_t>(pos),
                                    bytes.begin() + static_cast<std::ptrdiff_t>(page),
                                    [](char c) { return c == 0; })) {
        pos = page;
        continue;
      }
      // Damage: search for the next block.
      std::uint64_t next = pos + 1;
      bool found = false;
      for (; next < end; ++next) {
        std::uint64_t candidate_end = 0;
        if (!FirstEntryPlausible(bytes, next, end)) continue;
        if (!FindBlockEnd(bytes, next, std::min(end, next + 2 * largest_block), &candidate_end)) {
          continue;
        }
        found = true;
        break;
      }
      ++report_.sst_blocks_dropped;
      Act(name, pos,
          found ? "no intact data block from here to offset " + std::to_string(next) + ": dropped"
                : "no intact data block from here to the end of the data (" + std::to_string(end) +
                      "): dropped");
      pos = next;
    }
    co_return Status::OK();
  }

  // A block's first entry: shared 0, a key of an internal key's size, a value that fits.
  static bool FirstEntryPlausible(const std::string& bytes, std::uint64_t pos, std::uint64_t end) {
    std::string_view in(bytes.data() + pos, end - pos);
    std::uint32_t shared = 0;
    std::uint32_t non_shared = 0;
    std::uint32_t value_size = 0;
    if (!GetVarint32(&in, &shared) || shared != 0 || !GetVarint32(&in, &non_shared) ||
        !GetVarint32(&in, &value_size)) {
      return false;
    }
    if (non_shared < kInternalKeyTrailerBytes || non_shared > kInternalKeySizeMax ||
        non_shared > in.size() || value_size > kBlockSizeMax) {
      return false;
    }
    ParsedInternalKey parsed;
    return ParseInternalKey(in.substr(0, non_shared), &parsed);
  }

  // The first `e` in (pos, limit - trailer] such that bytes [pos, e) are contents whose
  // trailer at e checks. Streams the checksum so each candidate costs O(1) beyond the scan.
  static bool FindBlockEnd(const std::string& bytes, std::uint64_t pos, std::uint64_t limit,
                           std::uint64_t* block_end) {
    if (limit < pos + kBlockTrailerBytes) return false;
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(),
                                                                   &XXH3_freeState);
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> probe(XXH3_createState(),
                                                                   &XXH3_freeState);
    if (state == nullptr || probe == nullptr) return false;
    XXH3_64bits_reset_withSeed(state.get(), kBlockChecksumSeed);
    std::uint64_t fed = pos;
    for (std::uint64_t e = pos + 1; e + kBlockTrailerBytes <= limit; ++e) {
      const auto compression = static_cast<std::uint8_t>(bytes[e]);
      if (compression > static_cast<std::uint8_t>(BlockCompression::kZstd)) continue;
      XXH3_64bits_update(state.get(), bytes.data() + fed, e - fed);
      fed = e;
      XXH3_copyState(probe.get(), state.get());
      XXH3_64bits_update(probe.get(), bytes.data() + e, 1);
      const auto checksum = static_cast<std::uint32_t>(XXH3_64bits_digest(probe.get()));
      if (checksum == DecodeFixed32(bytes.data() + e + 1)) {
        *block_end = e;
        return true;
      }
    }
    return false;
  }

  // Decodes the block [pos, block_end) + trailer and keeps its entries. False when it does
  // not parse as a data block; *ordered false when its first entry does not follow the
  // entries kept so far (the index partitions after the data).
  template <typename Keep>
  bool AddBlock(const std::string& name, const std::string& bytes, std::uint64_t pos,
                std::uint64_t block_end, Keep& keep, bool* ordered) {
    auto contents = DecodeBlock(
        std::string_view(bytes).substr(pos, block_end - pos + kBlockTrailerBytes), name, pos);
    if (!contents.ok()) return false;
    auto block = Block::Parse(std::move(contents).value(), name);
    if (!block.ok()) return false;
    std::vector<std::pair<std::string, std::string>> entries;
    Status parsed = block.value()->ForEach([&](std::string_view key, std::string_view value) {
      entries.emplace_back(key, value);
      return Status::OK();
    });
    if (!parsed.ok() || entries.empty()) return false;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (!keep(entries[i].first, entries[i].second)) {
        if (i == 0) *ordered = false;
        return i > 0;
      }
    }
    return true;
  }

  // The WAL segments still to replay (all of them when the manifest is lost: records the
  // tables already hold are recognised by their sequence numbers), in salvage mode.
  io::Task<Status> ReplayWal() {
    std::vector<std::uint64_t> segments;
    for (const std::uint64_t number : present_[FileType::kWal]) {
      if (!manifest_ok_ || number >= log_number_) segments.push_back(number);
    }
    SequenceNumber flushed = 0;  // manifest lost: records at or below it are in tables
    if (!manifest_ok_) {
      for (const auto& source : sources_) {
        flushed = std::max(flushed, source->meta.largest_sequence);
      }
    }
    mem_ = new MemTable();
    mem_->Ref();
    if (segments.empty()) co_return Status::OK();
    WalSalvage salvage;
    WriteBatch batch;
    auto on_record = [&](std::string_view record, const WalPosition& at) -> Status {
      Status valid = WriteBatchInternal::SetContents(&batch, record);
      if (valid.ok()) valid = WriteBatchInternal::ValidateRecord(record);
      const std::string name = BaseFileName(FileType::kWal, at.log_number);
      if (!valid.ok()) {
        ++report_.wal_records_dropped;
        damaged_wal_.insert(at.log_number);
        Act(name, at.offset,
            "record dropped: its batch does not decode (" + std::string(valid.message()) + ")");
        return Status::OK();
      }
      const std::uint32_t count = WriteBatchInternal::Count(batch);
      const SequenceNumber first = WriteBatchInternal::Sequence(batch);
      if (count == 0 || first + count - 1 <= flushed) return Status::OK();
      if (first <= flushed) {
        // Cannot happen (a batch is flushed whole); keep the tables' copy.
        return Status::OK();
      }
      CFS_RETURN_IF_ERROR(WriteBatchInternal::InsertInto(record, mem_));
      wal_last_sequence_ = std::max(wal_last_sequence_, first + count - 1);
      ++report_.wal_records_kept;
      return Status::OK();
    };
    // With a manifest, the segments to replay are one log. Without one, they include
    // segments kept for reuse, each of which ends where it was last written (no end marker):
    // the log is read as a chain of logs, each from the segment after the one where the
    // previous read ended, so every segment is read up to its own end.
    for (std::size_t start = 0; start < segments.size();) {
      const std::vector<std::uint64_t> chain(segments.begin() + static_cast<std::ptrdiff_t>(start),
                                             segments.end());
      WalReplayResult result;
      Status status = co_await engine::ReplayWal(env_, dir_, chain, on_record, &result, &salvage);
      if (!status.ok()) co_return status;
      if (manifest_ok_ || result.torn_tail_reason.empty()) break;
      // The reason names the segment the read ended in: "<dir>/NNNNNN.wal: ...".
      std::size_t ended = chain.size() - 1;
      for (std::size_t i = 0; i < chain.size(); ++i) {
        if (result.torn_tail_reason.starts_with(WalFileName(dir_, chain[i]) + ":")) ended = i;
      }
      start += ended + 1;
    }
    for (const WalSkippedRecord& skipped : salvage.skipped) {
      ++report_.wal_records_dropped;
      damaged_wal_.insert(skipped.at.log_number);
      const std::string name = BaseFileName(FileType::kWal, skipped.at.log_number);
      std::string reason = skipped.reason;
      if (const std::size_t at = reason.find(": "); at != std::string::npos) {
        reason.erase(0, at + 2);
      }
      Act(name, skipped.at.offset,
          "damaged synced record dropped (" + reason +
              "); later intact records kept (the writes it held are lost: older versions of "
              "their keys may show again)");
    }
    co_return Status::OK();
  }

  // Decides what to rewrite and writes it.
  io::Task<Status> Rebuild() {
    // The value log for moved records gets a number above every one a pointer names (the
    // tables' were seen as they were read; the WAL's are looked at here).
    {
      std::unique_ptr<InternalIterator> it = mem_->NewIterator();
      for (co_await it->SeekToFirst(); it->Valid(); co_await it->Next()) {
        ParsedInternalKey parsed;
        if (!ParseInternalKey(it->key(), &parsed) || parsed.type != ValueType::kValuePointer) {
          continue;
        }
        Result<ValuePointer> pointer = DecodeValuePointer(it->value());
        if (pointer.ok()) next_number_ = std::max(next_number_, pointer.value().file_number + 1);
      }
    }
    relocation_number_ = NewNumber();
    // Level 0 files overlap and are read newest (highest number) first: a rewritten one would
    // get a new number and jump ahead of newer ones, so if any level-0 file is rewritten they
    // all are, merged into one sorted run (all versions kept) that overlaps nothing of itself.
    if (manifest_ok_) {
      const bool level0 = std::any_of(sources_.begin(), sources_.end(), [](const auto& s) {
        return s->level == 0 && s->needs_rewrite;
      });
      for (auto& source : sources_) {
        if (source->level == 0 && level0) source->needs_rewrite = true;
      }
      // A deeper level's files must not overlap (a read looks in one file per level): ones
      // that do (ranges the manifest recorded wrongly) are merged, keeping every version.
      for (int level = 1; level < kNumLevels; ++level) GroupOverlapping(level);
    } else {
      // Levels unknown: tables whose user-key ranges overlap are merged (their order cannot
      // be known from numbers: a compaction's output may be numbered above a newer flush);
      // the rest keep their files. All go to the bottom level, where they overlap nothing.
      GroupOverlapping(-1);
    }
    // Rewrites, one output run per group: level-0 group; each rewritten table of a deeper level
    // alone (its range can only shrink, so it overlaps nothing new); manifest lost: the groups.
    std::map<std::pair<int, std::uint64_t>, std::vector<Source*>> groups;
    for (auto& source : sources_) {
      if (!source->needs_rewrite) continue;
      const std::uint64_t group =
          manifest_ok_ && source->level == 0 ? 0 : group_of_[source->number];
      groups[{source->level, group}].push_back(source.get());
    }
    for (auto& [key, members] : groups) {
      std::vector<std::unique_ptr<InternalIterator>> children;
      for (Source* source : members) {
        if (source->table != nullptr) children.push_back(source->table->NewIterator(false));
      }
      CFS_CO_RETURN_IF_ERROR(co_await WriteRun(key.first, std::move(children)));
      for (Source* source : members) replaced_.push_back(source);
    }
    // The WAL's records: newer than every table entry, so a level-0 run numbered above all.
    if (mem_->num_entries() > 0) {
      std::vector<std::unique_ptr<InternalIterator>> children;
      children.push_back(mem_->NewIterator());
      CFS_CO_RETURN_IF_ERROR(co_await WriteRun(0, std::move(children)));
    }
    if (relocated_ != nullptr) {
      const std::uint64_t records_end = relocated_->size_bytes();
      CFS_CO_RETURN_IF_ERROR(co_await relocated_->Finish());
      new_vlog_ = VlogFileMeta{.number = relocated_->number(),
                               .size_bytes = records_end,
                               .records = relocated_->records(),
                               .value_bytes = relocated_->value_bytes()};
    }
    for (const auto& [number, scan] : vlogs_) {
      if (scan.lost == 0) continue;
      const std::string name = BaseFileName(FileType::kVlog, number);
      Act(name, std::nullopt,
          std::to_string(scan.lost) +
              " keys lost in all: their records are damaged or missing, and their pointers "
              "became deletions");
    }
    co_return co_await env_->SyncDir(dir_);
  }

  // Groups the tables of `level` (every table when -1) whose user-key ranges overlap,
  // transitively; a group of more than one is rewritten as one merged run. Group 0 is level
  // 0's (Rebuild).
  void GroupOverlapping(int level) {
    std::vector<Source*> order;
    for (auto& source : sources_) {
      if (level >= 0 && source->level != level) continue;
      if (source->meta.num_entries > 0) order.push_back(source.get());
      if (source->meta.num_entries == 0) source->needs_rewrite = true;  // nothing to keep
    }
    std::sort(order.begin(), order.end(), [](const Source* a, const Source* b) {
      return CompareUserKeys(ExtractUserKey(a->meta.smallest), ExtractUserKey(b->meta.smallest)) <
             0;
    });
    std::vector<std::vector<Source*>> groups;
    std::string group_largest;
    for (Source* source : order) {
      if (groups.empty() ||
          CompareUserKeys(ExtractUserKey(source->meta.smallest), group_largest) > 0) {
        groups.emplace_back();
        group_largest.clear();
      }
      groups.back().push_back(source);
      if (group_largest.empty() ||
          CompareUserKeys(ExtractUserKey(source->meta.largest), group_largest) > 0) {
        group_largest.assign(ExtractUserKey(source->meta.largest));
      }
    }
    for (const std::vector<Source*>& group : groups) {
      const std::uint64_t id = next_group_++;
      for (Source* source : group) {
        group_of_[source->number] = id;
        if (group.size() > 1) source->needs_rewrite = true;
      }
      if (group.size() > 1 && level > 0) {
        Act(BaseFileName(FileType::kSst, group.front()->number), std::nullopt,
            "overlaps " + std::to_string(group.size() - 1) + " other table(s) of level " +
                std::to_string(level) + ": merged into one run");
      }
    }
  }

  // Merges `children` (sorted internal-key streams) into new tables of `level`, cut between
  // user keys at the target size, with every value pointer fixed (Fix).
  io::Task<Status> WriteRun(int level, std::vector<std::unique_ptr<InternalIterator>> children) {
    std::unique_ptr<InternalIterator> it = NewMergingIterator(std::move(children));
    std::unique_ptr<WritableFile> file;
    std::unique_ptr<TableBuilder> builder;
    FileMetaData meta;
    std::string last_key;
    std::string last_user_key;
    std::string fixed_key;
    std::string fixed_value;
    auto finish = [&]() -> io::Task<Status> {
      Status status = co_await builder->Finish();
      if (status.ok()) status = co_await file->Sync();
      Status closed = co_await file->Close();
      if (status.ok()) status = closed;
      if (!status.ok()) co_return status;
      meta.file_size_bytes = builder->file_size_bytes();
      outputs_.emplace_back(level, meta);
      builder.reset();
      file.reset();
      co_return Status::OK();
    };
    for (co_await it->SeekToFirst(); it->Valid(); co_await it->Next()) {
      // The same entry twice (manifest lost: an obsolete input beside the compaction output
      // that copied it) is written once.
      if (!last_key.empty() && it->key() == last_key) continue;
      ParsedInternalKey parsed;
      if (!ParseInternalKey(it->key(), &parsed)) continue;
      // Every input is in order (ReadTables salvages any that is not); a table needs it.
      if (!last_key.empty() && CompareInternalKeys(last_key, it->key()) > 0) continue;
      if (builder != nullptr && builder->file_size_bytes() >= options_.target_file_size_bytes &&
          parsed.user_key != last_user_key) {
        CFS_CO_RETURN_IF_ERROR(co_await finish());
      }
      if (builder == nullptr) {
        meta = FileMetaData{};
        meta.number = NewNumber();
        const std::string path = SstFileName(dir_, meta.number);
        auto opened = co_await env_->NewWritableFile(path, WriteMode::kCreateExclusive);
        if (!opened.ok()) co_return opened.status();
        written_.push_back(path);
        file = std::move(opened).value();
        builder = std::make_unique<TableBuilder>(TableOptions{}, file.get());
      }
      // The first version of its user key in this run: any later one is hidden by it (Fix
      // asks the other tables about the first).
      const bool newest = last_key.empty() || parsed.user_key != last_user_key;
      last_key.assign(it->key());
      last_user_key.assign(parsed.user_key);
      fixed_key.assign(it->key());
      fixed_value.assign(it->value());
      if (parsed.type == ValueType::kValuePointer) {
        CFS_CO_RETURN_IF_ERROR(co_await Fix(parsed, newest, &fixed_key, &fixed_value));
      }
      builder->Add(fixed_key, fixed_value);
      Note(&meta, fixed_key);
      ++report_.sst_entries_kept;
      if (builder->NeedsWrite()) CFS_CO_RETURN_IF_ERROR(co_await builder->WritePending());
    }
    CFS_CO_RETURN_IF_ERROR(it->status());
    if (builder != nullptr) CFS_CO_RETURN_IF_ERROR(co_await finish());
    co_return Status::OK();
  }

  // A value pointer as the rebuilt tables hold it: kept when trusted; moved to the new value
  // log when its record reads intact (key and checksum as the pointer says); else the entry
  // becomes a deletion at the same sequence, so the key reads as missing rather than as an
  // older version.
  //
  // A hidden version (`newest` false) pointing into a file the store no longer has and the
  // manifest does not list is left as it is: value-log GC deletes a file once no reader can
  // see a pointer into it, and such shadowed pointers stay in tables until compaction drops
  // them (docs/formats/vlog.md, "GC"). Any other hidden version whose record is gone becomes
  // a deletion silently (no reader sees it either way).
  io::Task<Status> Fix(const ParsedInternalKey& parsed, bool newest, std::string* key,
                       std::string* value) {
    Result<ValuePointer> pointer = DecodeValuePointer(*value);
    if (pointer.ok() && Trusted(pointer.value())) {
      vlogs_[pointer.value().file_number].referenced = true;
      co_return Status::OK();
    }
    if (newest) {
      const bool hidden = co_await HiddenByNewer(parsed.user_key, parsed.sequence);
      newest = !hidden;
    }
    if (pointer.ok() && !newest) {
      auto it = vlogs_.find(pointer.value().file_number);
      if (it == vlogs_.end() || (!it->second.present && !it->second.listed)) co_return Status::OK();
    }
    if (pointer.ok()) {
      const ValuePointer& p = pointer.value();
      auto moved = moved_.find({p.file_number, p.offset});
      if (moved != moved_.end()) {
        *value = EncodeValuePointer(moved->second);
        co_return Status::OK();
      }
      VlogScan& scan = vlogs_[p.file_number];
      const std::string name = BaseFileName(FileType::kVlog, p.file_number);
      Result<std::string> record = Status::NotFound(name + ": missing");
      if (scan.present) record = co_await ReadRecord(p, parsed.user_key);
      if (record.ok()) {
        if (relocated_ == nullptr) {
          auto writer = co_await VlogWriter::Create(env_, VlogFileName(dir_, relocation_number_),
                                                    relocation_number_, VlogWriterOptions{});
          if (!writer.ok()) co_return writer.status();
          written_.push_back(VlogFileName(dir_, relocation_number_));
          relocated_ = std::move(writer).value();
        }
        auto added = co_await relocated_->Add(parsed.user_key, record.value());
        if (!added.ok()) co_return added.status();
        moved_[{p.file_number, p.offset}] = added.value();
        ++report_.vlog_records_moved;
        *value = EncodeValuePointer(added.value());
        co_return Status::OK();
      }
      if (!newest) {
        ++report_.hidden_pointers_dropped;
      } else {
        ++scan.lost;
        ++report_.pointers_lost;
      }
      if (newest && scan.lost <= kRecordActionsPerFileMax) {
        Act(name, p.offset,
            "the record of key \"" + Escaped(parsed.user_key) + "\" (sequence " +
                std::to_string(parsed.sequence) + ") " +
                (scan.present ? "is damaged or past the file's valid records"
                              : "is in a missing file") +
                ": the key is lost (its pointer became a deletion)");
      }
    } else if (!newest) {
      ++report_.hidden_pointers_dropped;
    } else {
      ++report_.pointers_lost;
      Act("", std::nullopt,
          "a value pointer of key \"" + Escaped(parsed.user_key) +
              "\" does not decode: the key is lost (the entry became a deletion)");
    }
    *key = MakeInternalKey(parsed.user_key, parsed.sequence, ValueType::kDeletion);
    value->clear();
    co_return Status::OK();
  }

  // True when some table or the WAL holds a version of `user_key` newer than `sequence`: the
  // version at `sequence` is then hidden from every reader. Each table's bloom filter answers
  // first (Get), so a table without the key costs no read.
  io::Task<bool> HiddenByNewer(std::string_view user_key, SequenceNumber sequence) {
    const std::string lookup = MakeInternalKey(user_key, kSequenceMax, kValueTypeForSeek);
    std::vector<std::unique_ptr<InternalIterator>> candidates;
    for (const auto& source : sources_) {
      if (source->table == nullptr || source->meta.largest_sequence <= sequence) continue;
      TableGetResult found;
      Status status = co_await source->table->Get(lookup, &found);
      if (status.ok() && found.found) candidates.push_back(source->table->NewIterator(false));
    }
    if (mem_ != nullptr && wal_last_sequence_ > sequence) candidates.push_back(mem_->NewIterator());
    for (auto& it : candidates) {
      co_await it->Seek(lookup);
      ParsedInternalKey parsed;
      if (it->Valid() && ParseInternalKey(it->key(), &parsed) && parsed.user_key == user_key &&
          parsed.sequence > sequence) {
        co_return true;
      }
    }
    co_return false;
  }

  io::Task<Result<std::string>> ReadRecord(const ValuePointer& pointer, std::string_view key) {
    const std::string path = VlogFileName(dir_, pointer.file_number);
    auto file = co_await env_->NewRandomAccessFile(path);
    if (!file.ok()) co_return file.status();
    std::string bytes(pointer.size, '\0');
    auto got = co_await file.value()->Read(pointer.offset, bytes.size(), bytes.data());
    if (!got.ok()) co_return got.status();
    if (got.value() != bytes.size()) co_return Status::Corruption(path + ": record cut short");
    co_return DecodeVlogValue(bytes, pointer, key, path);
  }

  // Makes the rebuilt state current and moves what it replaced into lost/.
  io::Task<Status> Switch() {
    // What goes to lost/: replaced tables (and salvaged stand-ins, which are ours and simply
    // removed), the old manifests, retired value logs, WAL segments with skipped damage, a
    // damaged CURRENT.
    std::vector<std::string> to_lost;
    std::vector<std::string> to_remove;
    for (Source* source : replaced_) {
      to_lost.push_back(BaseFileName(FileType::kSst, source->number));
      if (source->salvage_number != 0) {
        to_remove.push_back(BaseFileName(FileType::kSst, source->salvage_number));
      }
    }
    for (const std::uint64_t number : present_[FileType::kManifest]) {
      to_lost.push_back(BaseFileName(FileType::kManifest, number));
    }
    for (const auto& [number, scan] : vlogs_) {
      if (scan.present && scan.damaged) to_lost.push_back(BaseFileName(FileType::kVlog, number));
    }
    for (const std::uint64_t number : damaged_wal_) {
      if (present_[FileType::kWal].contains(number)) {
        to_lost.push_back(BaseFileName(FileType::kWal, number));
      }
    }
    if (present_[FileType::kCurrent].size() > 0) to_lost.push_back("CURRENT");

    // 1. Evidence first: a second name in lost/ for each, durable before anything changes.
    const std::string lost = Path(kLostDirName);
    Status made = co_await env_->CreateDir(lost);
    if (!made.ok() && !made.IsBusy()) co_return made;
    std::vector<std::pair<std::string, std::string>> linked;    // (name, name in lost/)
    std::vector<std::pair<std::string, std::string>> unlinked;  // could not link: renamed later
    for (const std::string& name : to_lost) {
      std::string target = lost + "/" + name;
      for (int i = 1; (co_await env_->FileSize(target)).ok(); ++i) {
        target = lost + "/" + name + "." + std::to_string(i);
      }
      Status status = co_await env_->LinkFile(Path(name), target);
      if (status.ok()) {
        linked.emplace_back(name, target);
      } else if (status.IsNotSupported()) {
        unlinked.emplace_back(name, target);
      } else {
        co_return status;
      }
    }
    CFS_CO_RETURN_IF_ERROR(co_await env_->SyncDir(lost));
    CFS_CO_RETURN_IF_ERROR(co_await env_->SyncDir(dir_));

    // 2. The new manifest: one edit holding the whole state.
    VersionEdit edit;
    edit.SetFormatVersion(kStoreFormatVersion);
    SequenceNumber last = std::max(last_sequence_, wal_last_sequence_);
    std::set<std::uint64_t> replaced;
    for (Source* source : replaced_) replaced.insert(source->number);
    for (const auto& source : sources_) {
      if (replaced.contains(source->number)) continue;
      edit.AddFile(source->level, source->meta);
      last = std::max(last, source->meta.largest_sequence);
    }
    for (const auto& [level, meta] : outputs_) {
      edit.AddFile(level, meta);
      last = std::max(last, meta.largest_sequence);
    }
    for (const auto& [number, scan] : vlogs_) {
      if (!scan.present || scan.damaged) continue;
      auto listed = version_.vlogs.find(number);
      if (listed == version_.vlogs.end() && !scan.referenced) continue;  // the next open removes it
      VlogFileMeta meta{.number = number,
                        .size_bytes = scan.valid_end,
                        .records = scan.records,
                        .value_bytes = scan.value_bytes};
      if (listed != version_.vlogs.end()) {
        // Garbage stays as counted; records past the recorded end (a file being written at a
        // crash, its WAL records now in a table) are counted in.
        meta.size_bytes = std::max(listed->second.size_bytes, scan.valid_end);
        meta.records = std::max(listed->second.records, scan.records);
        meta.value_bytes = std::max(listed->second.value_bytes, scan.value_bytes);
        meta.garbage_records = std::min(listed->second.garbage_records, meta.records);
        meta.garbage_bytes = std::min(listed->second.garbage_bytes, meta.size_bytes);
      } else {
        Act(BaseFileName(FileType::kVlog, number), std::nullopt,
            "not in the manifest, but the rebuilt tables point into it: listed");
      }
      edit.AddVlog(meta);
      if (meta.garbage_records > 0 || meta.garbage_bytes > 0) {
        edit.AddVlogGarbage(number, meta.garbage_records, meta.garbage_bytes);
      }
    }
    if (new_vlog_.has_value()) {
      edit.AddVlog(*new_vlog_);
      Act(BaseFileName(FileType::kVlog, new_vlog_->number), std::nullopt,
          "new value log: " + std::to_string(new_vlog_->records) +
              " intact records moved out of damaged value logs");
    }
    const std::uint64_t manifest_number = NewNumber();
    const std::uint64_t log_number = NewNumber();  // above every segment: the WAL starts empty
    edit.SetLogNumber(log_number);
    edit.SetNextFileNumber(next_number_);
    edit.SetLastSequence(last);
    std::string record;
    edit.EncodeTo(&record);
    const std::string manifest_path = ManifestFileName(dir_, manifest_number);
    auto file = co_await env_->NewWritableFile(manifest_path, WriteMode::kCreateExclusive);
    if (!file.ok()) co_return file.status();
    written_.push_back(manifest_path);
    ManifestWriter writer(std::move(file).value());
    Status status = co_await writer.AddRecord(record);
    if (status.ok()) status = co_await writer.Sync();
    Status closed = co_await writer.Close();
    if (status.ok()) status = closed;
    if (status.ok()) status = co_await SetCurrentFile(env_, dir_, manifest_number);
    if (!status.ok()) co_return status;
    written_.clear();  // referenced now: never removed on error
    report_.manifest_rebuilt = true;
    Act(BaseFileName(FileType::kManifest, manifest_number), std::nullopt,
        "new manifest made current: " + std::to_string(edit.added_files().size()) + " tables (" +
            std::to_string(outputs_.size()) + " written by the repair), " +
            std::to_string(edit.added_vlogs().size()) + " value logs, last sequence " +
            std::to_string(last));

    // 3. The replaced names leave the store directory.
    for (const auto& [name, target] : linked) {
      // CURRENT was replaced by the switch; lost/ keeps the old one.
      if (name != "CURRENT") CFS_CO_RETURN_IF_ERROR(co_await env_->RemoveFile(Path(name)));
    }
    for (const auto& [name, target] : unlinked) {
      if (name == "CURRENT") continue;  // replaced by the switch: no copy could be kept
      CFS_CO_RETURN_IF_ERROR(co_await env_->RenameFile(Path(name), target));
    }
    for (const std::string& name : to_remove) (void)co_await env_->RemoveFile(Path(name));
    for (const auto& [name, target] : linked) {
      ++report_.files_moved_to_lost;
      Act(name, std::nullopt, "moved to " + target.substr(dir_.size() + 1));
    }
    for (const auto& [name, target] : unlinked) {
      if (name == "CURRENT") continue;
      ++report_.files_moved_to_lost;
      Act(name, std::nullopt, "moved to " + target.substr(dir_.size() + 1));
    }
    CFS_CO_RETURN_IF_ERROR(co_await env_->SyncDir(dir_));
    co_return co_await env_->SyncDir(lost);
  }

  Env* const env_;
  const std::string dir_;
  const RepairOptions options_;
  RepairReport report_;
  std::map<FileType, std::set<std::uint64_t>> present_;
  std::uint64_t next_number_ = 1;
  bool manifest_ok_ = false;
  std::uint64_t log_number_ = 0;
  SequenceNumber last_sequence_ = 0;
  SequenceNumber wal_last_sequence_ = 0;
  Version version_;
  std::map<std::uint64_t, VlogScan> vlogs_;
  std::vector<std::unique_ptr<Source>> sources_;
  std::map<std::uint64_t, std::uint64_t> group_of_;  // table -> overlap group (GroupOverlapping)
  std::uint64_t next_group_ = 1;                     // 0 is level 0's group
  std::vector<Source*> replaced_;
  std::vector<std::pair<int, FileMetaData>> outputs_;
  std::set<std::uint64_t> damaged_wal_;
  std::unique_ptr<VlogWriter> relocated_;  // created at the first record moved
  std::uint64_t relocation_number_ = 0;
  std::optional<VlogFileMeta> new_vlog_;
  std::map<std::pair<std::uint64_t, std::uint64_t>, ValuePointer> moved_;
  std::vector<std::string> written_;  // new files not yet referenced (removed on error)

 public:
  ~Repairer() {
    if (mem_ != nullptr) mem_->Unref();
  }

 private:
  MemTable* mem_ = nullptr;
};

}  // namespace

io::Task<Result<RepairReport>> RepairStoreFiles(Env* env, std::string dir, RepairOptions options) {
  Repairer repairer(env, std::move(dir), options);
  co_return co_await repairer.Run();
}

}  // namespace cascadefs::engine
