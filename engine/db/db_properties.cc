// db_properties.cc: DB::GetProperty, the named statistics (db.h), and the derived ratios.
#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "db/db_impl.h"

namespace cascadefs::engine {
namespace {

// printf into a std::string; `format` is a literal of ours.
template <typename... Args>
void AppendFormat(std::string* out, const char* format, Args... args) {
  char line[256];
  const int n = std::snprintf(line, sizeof(line), format, args...);
  if (n > 0) out->append(line, static_cast<std::size_t>(std::min<int>(n, sizeof(line) - 1)));
}

std::string Number(double value) {
  std::string out;
  AppendFormat(&out, "%.3f", value);
  return out;
}

double MiB(std::uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

}  // namespace

double WriteAmplification(const DbStats& stats) {
  if (stats.user_bytes_written == 0) return 0;
  const std::uint64_t disk = stats.wal_bytes_written + stats.vlog_bytes_written +
                             stats.flush_bytes_written + stats.compaction_bytes_written;
  return static_cast<double>(disk) / static_cast<double>(stats.user_bytes_written);
}

double SpaceAmplification(const std::vector<LevelStats>& levels, std::uint64_t vlog_bytes,
                          std::uint64_t vlog_garbage_bytes) {
  std::uint64_t total = vlog_bytes;
  std::uint64_t live = vlog_bytes - std::min(vlog_bytes, vlog_garbage_bytes);
  std::uint64_t last = 0;
  for (const LevelStats& level : levels) {
    total += level.bytes;
    if (level.bytes > 0) last = level.bytes;
  }
  live += last;
  if (live == 0) return 1;
  return static_cast<double>(total) / static_cast<double>(live);
}

double BlockCacheHitRatio(const DbStats& stats) {
  const std::uint64_t reads = stats.block_cache_hits + stats.block_cache_misses;
  if (reads == 0) return 0;
  return static_cast<double>(stats.block_cache_hits) / static_cast<double>(reads);
}

bool DBImpl::GetProperty(std::string_view name, std::string* value) const {
  if (name == "cascade.write-amplification") {
    *value = Number(WriteAmplification(stats()));
    return true;
  }
  if (name == "cascade.space-amplification") {
    const DbStats s = stats();
    *value = Number(SpaceAmplification(GetLevelStats(), s.vlog_bytes, s.vlog_garbage_bytes));
    return true;
  }
  if (name == "cascade.vlog") {
    // One line per live value-log file, as the manifest records it.
    std::string out;
    AppendFormat(&out, "%-10s %12s %10s %12s %12s %8s\n", "file", "MiB", "records", "garbage MiB",
                 "garbage recs", "garbage");
    const std::shared_ptr<const Version> version = versions_->current();
    for (const auto& [number, file] : version->vlogs) {
      const double ratio = file.size_bytes == 0 ? 0
                                                : static_cast<double>(file.garbage_bytes) /
                                                      static_cast<double>(file.size_bytes);
      AppendFormat(&out, "%-10llu %12.1f %10llu %12.1f %12llu %7.1f%%\n",
                   static_cast<unsigned long long>(number), MiB(file.size_bytes),
                   static_cast<unsigned long long>(file.records), MiB(file.garbage_bytes),
                   static_cast<unsigned long long>(file.garbage_records), 100 * ratio);
    }
    *value = std::move(out);
    return true;
  }
  if (name == "cascade.block-cache-hit-ratio") {
    *value = Number(BlockCacheHitRatio(stats()));
    return true;
  }
  const bool levels_only = name == "cascade.levels";
  if (!levels_only && name != "cascade.stats") return false;

  const std::vector<LevelStats> levels = GetLevelStats();
  std::string out;
  AppendFormat(&out, "%-5s %8s %12s %12s %7s\n", "level", "files", "MiB", "entries", "score");
  for (std::size_t level = 0; level < levels.size(); ++level) {
    const LevelStats& l = levels[level];
    AppendFormat(&out, "L%-4zu %8llu %12.1f %12llu %7.2f\n", level,
                 static_cast<unsigned long long>(l.files), MiB(l.bytes),
                 static_cast<unsigned long long>(l.entries), l.score);
  }
  if (!levels_only) {
    const DbStats s = stats();
    AppendFormat(&out, "written by users: %.1f MiB in %llu writes\n", MiB(s.user_bytes_written),
                 static_cast<unsigned long long>(s.writes));
    AppendFormat(&out,
                 "written to disk: WAL %.1f MiB, value log %.1f MiB, flushes %.1f MiB, "
                 "compactions %.1f MiB\n",
                 MiB(s.wal_bytes_written), MiB(s.vlog_bytes_written), MiB(s.flush_bytes_written),
                 MiB(s.compaction_bytes_written));
    AppendFormat(&out, "write amplification: %.3f\n", WriteAmplification(s));
    AppendFormat(&out, "space amplification: %.3f\n",
                 SpaceAmplification(levels, s.vlog_bytes, s.vlog_garbage_bytes));
    AppendFormat(&out,
                 "value log: %llu files, %.1f MiB, %.1f MiB garbage; %llu values written "
                 "(%.1f MiB), %llu read\n",
                 static_cast<unsigned long long>(s.vlog_files), MiB(s.vlog_bytes),
                 MiB(s.vlog_garbage_bytes), static_cast<unsigned long long>(s.vlog_records_written),
                 MiB(s.vlog_bytes_written), static_cast<unsigned long long>(s.vlog_reads));
    AppendFormat(&out, "block cache: %.1f MiB, %llu hits, %llu misses, hit ratio %.3f\n",
                 MiB(s.block_cache_bytes), static_cast<unsigned long long>(s.block_cache_hits),
                 static_cast<unsigned long long>(s.block_cache_misses), BlockCacheHitRatio(s));
    AppendFormat(&out, "stalls: %llu writes waited %.3f s, %llu slowed down\n",
                 static_cast<unsigned long long>(s.write_stalls),
                 static_cast<double>(s.write_stall_micros) / 1e6,
                 static_cast<unsigned long long>(s.write_slowdowns));
    AppendFormat(&out,
                 "compactions: %llu (%llu trivial moves; %llu manual range compactions), "
                 "read %.1f MiB, wrote %.1f MiB, %llu out of space; flushes out of space %llu\n",
                 static_cast<unsigned long long>(s.compactions),
                 static_cast<unsigned long long>(s.trivial_moves),
                 static_cast<unsigned long long>(s.manual_compactions),
                 MiB(s.compaction_bytes_read), MiB(s.compaction_bytes_written),
                 static_cast<unsigned long long>(s.compactions_failed_no_space),
                 static_cast<unsigned long long>(s.flushes_failed_no_space));
  }
  *value = std::move(out);
  return true;
}

}  // namespace cascadefs::engine
