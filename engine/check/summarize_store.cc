// summarize_store.cc: SummarizeStore (engine/inspect.h).
#include "check/store_state.h"
#include "db/io_totals.h"
#include "engine/inspect.h"
#include "manifest/filename.h"

namespace cascadefs::engine {

double VlogFileSummary::garbage_ratio() const {
  return value_bytes == 0 ? 0.0
                          : static_cast<double>(garbage_bytes) / static_cast<double>(value_bytes);
}

io::Task<Result<StoreSummary>> SummarizeStore(Env* env, std::string dir) {
  Result<StoreState> state = co_await ReadStoreState(env, dir);
  if (!state.ok()) co_return state.status();
  StoreSummary out;
  out.format_version = state.value().manifest.format_version;
  out.manifest_number = state.value().manifest_number;
  out.manifest_bytes = state.value().manifest.file_size_bytes;
  out.last_sequence = state.value().last_sequence;
  const Version& version = state.value().version;
  for (int level = 0; level < kNumLevels; ++level) {
    LevelSummary summary;
    summary.level = level;
    for (const auto& file : version.files[level]) {
      ++summary.files;
      summary.bytes += file->file_size_bytes;
      summary.entries += file->num_entries;
    }
    out.levels.push_back(summary);
  }
  for (const auto& [number, meta] : version.vlogs) {
    out.vlogs.push_back({number, meta.size_bytes, meta.records, meta.value_bytes,
                         meta.garbage_records, meta.garbage_bytes});
  }
  Result<std::vector<std::string>> names = env->ListDir(dir);
  if (!names.ok()) co_return names.status();
  for (const std::string& name : names.value()) {
    Result<std::uint64_t> size = co_await env->FileSize(dir + "/" + name);
    if (!size.ok()) continue;  // removed meanwhile, or not a file
    std::uint64_t number = 0;
    FileType type{};
    const bool ours = ParseFileName(name, &number, &type);
    if (ours && type == FileType::kSst) {
      out.sst_bytes += size.value();
    } else if (ours && type == FileType::kVlog) {
      out.vlog_bytes += size.value();
    } else if (ours && type == FileType::kWal) {
      out.wal_bytes += size.value();
    } else {
      out.other_bytes += size.value();
    }
  }
  // Statistics: an unreadable file leaves them unknown (fsck names a damaged one).
  auto totals = co_await ReadIoTotals(env, dir);
  if (totals.ok() && totals.value()) {
    const IoTotals& t = *totals.value();
    out.io_totals_known = true;
    out.opens = t.opens;
    out.user_bytes_written = t.user_bytes_written;
    out.disk_bytes_written = t.wal_bytes_written + t.vlog_bytes_written + t.flush_bytes_written +
                             t.compaction_bytes_written;
    out.write_amplification = t.write_amplification();
  }
  co_return out;
}

}  // namespace cascadefs::engine
