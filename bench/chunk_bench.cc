// chunk_bench.cc: files as chunks, measured: chunker throughput against a plain XXH3 pass and a
// fixed-size chunker, and what edits and versions cost in stored bytes on real data.
//
// Data, read once from this machine:
// - text: real source and text files (/usr/include, then Python sources and /usr/share/doc),
//   concatenated up to --text-mb (default 100) MiB; only files DetectChunkerKind calls text.
// - binary: shared libraries and programs (/usr/lib/x86_64-linux-gnu, /usr/bin) up to
//   --binary-mb (default 100) MiB.
//
// Workloads and rows ({system, workload, ...}, one JSON object per line with --json):
// - chunk: single-core throughput of cutting AND naming every chunk (XXH3-128 of each chunk,
//   which every store must compute), best of --passes passes, in mb_per_sec (MiB/s):
//   `text-cdc` (text chunker on text), `binary-cdc` (FastCDC on binary), `fixed` (16 KiB cuts on
//   binary), and `xxh3`: one plain XXH3-128 pass over the text in 1 MiB pieces, the limit.
//   Each row also has cut_mb_per_sec: finding the cuts alone.
// - lineedit (`cascadefs`): the text as one file in a chunk store, then one line in the middle
//   replaced by a line of the same length: new_bytes is the stored size (after compression) of
//   every chunk and node the edit added; also leaves_written, nodes_written, height.
// - versions20: 20 versions of the file, each from the one before with one line edited at a
//   random place: store_ratio = stored bytes of all distinct chunks and nodes after the 20th
//   over the same after the first.
// - dedup: /usr/include stored file by file twice, the second copy with one line appended to
//   every 20th file: dedup_ratio = logical bytes of both copies over the distinct chunk bytes
//   (before compression), and stored_bytes.
// Errors: one line "chunk_bench: <cause>" on stderr, exit 1.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "engine/io/scheduler.h"
#include "fusefs/chunk_store.h"
#include "fusefs/chunker.h"
#include "fusefs/recipe.h"

namespace {

using cascadefs::fusefs::Chunker;
using cascadefs::fusefs::ChunkerKind;
using cascadefs::fusefs::ChunkerOptions;
using cascadefs::fusefs::ChunkName;
using cascadefs::fusefs::FileRoot;
using cascadefs::fusefs::RecipeTree;
using cascadefs::fusefs::TreeWriteStats;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "chunk_bench: %s\n", message.c_str());
  std::exit(1);
}

bool json_output = false;

void Emit(const nlohmann::ordered_json& row) {
  if (json_output) {
    std::printf("%s\n", row.dump().c_str());
  } else {
    std::string line;
    for (const auto& [key, value] : row.items()) line += fmt::format("{}={} ", key, value.dump());
    std::printf("%s\n", line.c_str());
  }
  std::fflush(stdout);
}

// Regular files under `roots`, depth first in name order, each passed to `take` until it returns
// false.
template <typename Take>
void WalkFiles(const std::vector<std::string>& roots, Take take) {
  std::vector<std::string> stack(roots.rbegin(), roots.rend());
  while (!stack.empty()) {
    const std::string path = stack.back();
    stack.pop_back();
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    if (S_ISREG(st.st_mode)) {
      if (!take(path)) return;
      continue;
    }
    if (!S_ISDIR(st.st_mode)) continue;
    DIR* dir = opendir(path.c_str());
    if (dir == nullptr) continue;
    std::vector<std::string> names;
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') names.emplace_back(entry->d_name);
    }
    closedir(dir);
    std::sort(names.rbegin(), names.rend());
    for (const auto& name : names) stack.push_back(path + "/" + name);
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

std::string Collect(const std::vector<std::string>& roots, std::size_t bytes, bool text) {
  std::string out;
  out.reserve(bytes);
  WalkFiles(roots, [&](const std::string& path) {
    std::string contents = ReadFile(path);
    const bool is_text = cascadefs::fusefs::DetectChunkerKind(contents) == ChunkerKind::kText;
    if (is_text == text && !contents.empty()) out += contents;
    return out.size() < bytes;
  });
  if (out.size() < bytes / 2) {
    Die(fmt::format("found only {} bytes of {} data on this machine", out.size(),
                    text ? "text" : "binary"));
  }
  out.resize(std::min(out.size(), bytes));
  return out;
}

struct Throughput {
  double mb_per_sec = 0;      // cut + name
  double cut_mb_per_sec = 0;  // cut only
  std::uint64_t chunks = 0;
};

double MiBPerSec(std::size_t bytes, Clock::duration elapsed) {
  return static_cast<double>(bytes) / 1048576.0 / std::chrono::duration<double>(elapsed).count();
}

template <typename NextCut>
Throughput Measure(std::string_view data, int passes, NextCut next_cut) {
  Throughput best;
  for (int pass = 0; pass < passes; ++pass) {
    std::uint64_t chunks = 0;
    std::uint64_t sink = 0;
    auto start = Clock::now();
    for (std::string_view rest = data; !rest.empty();) {
      const std::size_t cut = next_cut(rest);
      sink += cut;
      rest.remove_prefix(cut);
      ++chunks;
    }
    const double cut_only = MiBPerSec(data.size(), Clock::now() - start);
    start = Clock::now();
    for (std::string_view rest = data; !rest.empty();) {
      const std::size_t cut = next_cut(rest);
      sink += ChunkName::Of(rest.substr(0, cut)).digest_prefix64();
      rest.remove_prefix(cut);
    }
    const double named = MiBPerSec(data.size(), Clock::now() - start);
    if (sink == 42) std::fprintf(stderr, " ");  // keeps the work observable
    best.mb_per_sec = std::max(best.mb_per_sec, named);
    best.cut_mb_per_sec = std::max(best.cut_mb_per_sec, cut_only);
    best.chunks = chunks;
  }
  return best;
}

void EmitChunkRow(const std::string& system, std::size_t bytes, const Throughput& t) {
  nlohmann::ordered_json row;
  row["system"] = system;
  row["workload"] = "chunk";
  row["mb_per_sec"] = t.mb_per_sec;
  row["cut_mb_per_sec"] = t.cut_mb_per_sec;
  row["bytes"] = bytes;
  row["chunks"] = t.chunks;
  row["avg_chunk_bytes"] = t.chunks ? static_cast<double>(bytes) / t.chunks : 0;
  Emit(row);
}

template <typename T>
T Run(cascadefs::io::Scheduler& scheduler, cascadefs::io::Task<T> task, const char* what) {
  T result = scheduler.BlockOn(std::move(task));
  if (!result.ok()) Die(std::string(what) + ": " + result.status().ToString());
  return result;
}

// The byte range of the line holding `offset`.
std::pair<std::size_t, std::size_t> LineAt(const std::string& text, std::size_t offset) {
  std::size_t begin = offset == 0 ? std::string::npos : text.rfind('\n', offset - 1);
  begin = begin == std::string::npos ? 0 : begin + 1;
  std::size_t end = text.find('\n', offset);
  end = end == std::string::npos ? text.size() : end;
  return {begin, end};
}

// A different line of the same length as text[begin, end).
std::string EditedLine(const std::string& text, std::size_t begin, std::size_t end, int version) {
  std::string line = text.substr(begin, end - begin);
  const std::string mark = fmt::format("v{}", version);
  if (line.size() < mark.size()) return std::string(line.size(), 'x');
  line.replace(0, mark.size(), mark);
  return line;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"chunk_bench: chunking throughput and the stored cost of edits and versions"};
  std::size_t text_mb = 100;
  std::size_t binary_mb = 100;
  int passes = 3;
  app.add_flag("--json", json_output, "one JSON object per row on stdout");
  app.add_option("--text-mb", text_mb, "MiB of real text to collect")->check(CLI::Range(1, 4096));
  app.add_option("--binary-mb", binary_mb, "MiB of binaries to collect")
      ->check(CLI::Range(1, 4096));
  app.add_option("--passes", passes, "timed passes per chunker (best counts)")
      ->check(CLI::Range(1, 100));
  CLI11_PARSE(app, argc, argv);

  const std::string text =
      Collect({"/usr/include", "/usr/lib/python3", "/usr/share/doc"}, text_mb << 20, /*text=*/true);
  const std::string binary =
      Collect({"/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/lib"}, binary_mb << 20,
              /*text=*/false);
  std::fprintf(stderr, "chunk_bench: %zu MiB of text, %zu MiB of binaries\n", text.size() >> 20,
               binary.size() >> 20);

  const ChunkerOptions options;
  const Chunker text_chunker(ChunkerKind::kText, options);
  const Chunker binary_chunker(ChunkerKind::kBinary, options);
  auto cdc = [](const Chunker& chunker) {
    return [&chunker](std::string_view rest) {
      const std::optional<std::size_t> cut = chunker.FindCut(rest);
      return cut.has_value() ? *cut : rest.size();
    };
  };
  EmitChunkRow("text-cdc", text.size(), Measure(text, passes, cdc(text_chunker)));
  EmitChunkRow("binary-cdc", binary.size(), Measure(binary, passes, cdc(binary_chunker)));
  const std::size_t fixed_bytes = options.binary_avg_bytes;
  EmitChunkRow("fixed", binary.size(), Measure(binary, passes, [&](std::string_view rest) {
                 return std::min(rest.size(), fixed_bytes);
               }));
  {
    Throughput plain;
    for (int pass = 0; pass < passes; ++pass) {
      std::uint64_t sink = 0;
      const auto start = Clock::now();
      for (std::size_t offset = 0; offset < text.size(); offset += 1 << 20) {
        const std::size_t size = std::min<std::size_t>(1 << 20, text.size() - offset);
        sink += XXH3_128bits(text.data() + offset, size).low64;
      }
      plain.mb_per_sec = std::max(plain.mb_per_sec, MiBPerSec(text.size(), Clock::now() - start));
      if (sink == 42) std::fprintf(stderr, " ");
    }
    plain.cut_mb_per_sec = plain.mb_per_sec;
    plain.chunks = (text.size() + (1 << 20) - 1) >> 20;
    EmitChunkRow("xxh3", text.size(), plain);
  }

  cascadefs::io::SchedulerOptions scheduler_options;
  scheduler_options.io_threads = 1;
  auto scheduler_or = cascadefs::io::Scheduler::Create(scheduler_options);
  if (!scheduler_or.ok()) Die("scheduler: " + scheduler_or.status().ToString());
  auto& scheduler = *scheduler_or.value();

  // lineedit and versions20, on the text as one file.
  {
    auto store = cascadefs::fusefs::NewMemoryChunkStore();
    RecipeTree tree(store.get(), options);
    TreeWriteStats first;
    auto start = Clock::now();
    FileRoot root = Run(scheduler, tree.Build(ChunkerKind::kText, text, &first), "build").value();
    const double build_mb_per_sec = MiBPerSec(text.size(), Clock::now() - start);
    const std::uint64_t one_version = store->stats().stored_bytes_added.load();

    auto [begin, end] = LineAt(text, text.size() / 2);
    std::string current = text;
    TreeWriteStats edit;
    start = Clock::now();
    root = Run(scheduler,
               tree.Splice(root, begin, end - begin, EditedLine(current, begin, end, 1), &edit),
               "line edit")
               .value();
    const double edit_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    current.replace(begin, end - begin, EditedLine(current, begin, end, 1));
    nlohmann::ordered_json row;
    row["system"] = "cascadefs";
    row["workload"] = "lineedit";
    row["new_bytes"] = edit.stored_bytes;
    row["leaves_written"] = edit.leaves_written;
    row["nodes_written"] = edit.nodes_written;
    row["nodes_read"] = edit.nodes_read;
    row["height"] = root.height;
    row["edit_ms"] = edit_ms;
    row["file_bytes"] = text.size();
    row["build_mb_per_sec"] = build_mb_per_sec;
    row["stored_bytes_one_version"] = one_version;
    Emit(row);

    // Versions 3..20 (the line edit above made version 2).
    std::mt19937_64 rng(20);
    for (int version = 3; version <= 20; ++version) {
      auto [b, e] = LineAt(current, rng() % current.size());
      const std::string line = EditedLine(current, b, e, version);
      root = Run(scheduler, tree.Splice(root, b, e - b, line), "version edit").value();
      current.replace(b, e - b, line);
    }
    std::string check;
    cascadefs::Status status = scheduler.BlockOn(tree.Read(root, 0, root.length, &check));
    if (!status.ok() || check != current)
      Die("version 20 does not read back: " + status.ToString());
    const std::uint64_t twenty = store->stats().stored_bytes_added.load();
    row = nlohmann::ordered_json();
    row["system"] = "cascadefs";
    row["workload"] = "versions20";
    row["store_ratio"] = static_cast<double>(twenty) / static_cast<double>(one_version);
    row["stored_bytes_one_version"] = one_version;
    row["stored_bytes_twenty_versions"] = twenty;
    Emit(row);
  }

  // dedup: /usr/include twice, file by file.
  {
    auto store = cascadefs::fusefs::NewMemoryChunkStore();
    RecipeTree tree(store.get(), options);
    std::uint64_t logical = 0;
    std::uint64_t files = 0;
    for (int copy = 0; copy < 2; ++copy) {
      std::uint64_t index = 0;
      WalkFiles({"/usr/include"}, [&](const std::string& path) {
        std::string contents = ReadFile(path);
        if (copy == 1 && ++index % 20 == 0) contents += "// a local change\n";
        logical += contents.size();
        files += copy == 0;
        (void)Run(scheduler, tree.Build(contents), "dedup build");
        return true;
      });
    }
    nlohmann::ordered_json row;
    row["system"] = "cascadefs";
    row["workload"] = "dedup";
    row["files_per_copy"] = files;
    row["logical_bytes"] = logical;
    row["distinct_chunk_bytes"] = store->stats().logical_bytes_added.load();
    row["stored_bytes"] = store->stats().stored_bytes_added.load();
    row["dedup_ratio"] =
        static_cast<double>(logical) / static_cast<double>(store->stats().logical_bytes_added);
    row["space_ratio"] =
        static_cast<double>(logical) / static_cast<double>(store->stats().stored_bytes_added);
    Emit(row);
  }
  return 0;
}
