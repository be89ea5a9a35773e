// cache_bench.cc: hit ratio and speed of the circular chunk cache (cache/chunk_cache.h)
// against its anchor, an LRU of the same byte capacity, on the same request streams.
//
// Systems:
//  - circular: the real ChunkCache on a real file in a fresh directory under TMPDIR (default
//    /var/tmp), default options except capacity (--capacity-mb), --admission (default
//    seen-twice, the cache's default; "all" measures the second chance alone), and an
//    insert queue of 1 GiB so that no insert is dropped because the writer is behind, and a
//    Flush() every --flush-every requests (default 1: an inserted chunk is visible to the
//    next request, as in the LRU; in production the writer lags a little, which a larger
//    value models; 64 cost the synthetic small trace 0.4 points of hit ratio). The row's
//    stats say how many inserts were dropped (0 expected) and how many refused by admission.
//  - lru: a plain in-memory LRU (hash map + list) whose capacity is the same number of
//    bytes, charging only value bytes (the circular cache also pays 64 bytes per segment,
//    32 + 17 per entry and the unfilled tail of each segment out of the same capacity).
//
// Each request looks its key up; a miss inserts the chunk (read-through, as the filesystem
// will). Chunk sizes are drawn per key from 4..64 KiB (uniform, deterministic). Workloads:
//  - zipf<s>: --requests requests over --keys keys, Zipf exponent s (rank r has probability
//    proportional to 1/r^s), ranks mapped to keys by a seeded permutation;
//  - zipf0.9+scan: zipf0.9, and every --scan-every requests a one-pass scan of --scan-keys
//    keys never requested before (a large file read once);
//  - trace (only with --trace FILE): the requests of a file, one "HEXKEY SIZE" per line.
// Capacity defaults to 64 MiB against a working set of ~680 MiB (20000 keys, mean 34 KiB).
//
// Lookup throughput: after zipf0.9, two threads look up keys the cache holds, for
// --lookup-ms each: workload "index_lookup_2threads" (Contains: index only) and
// "lookup_2threads" (Lookup: index, pread, checksum). Their hit_ratio is the fraction found.
//
// Rows: {system, workload, hit_ratio, ops_per_sec, requests, hits, seconds, capacity_bytes,
// keys, working_set_bytes, stats}; with --json one JSON object per line on stdout, else a
// table. Errors: one line "cache_bench: <what>: <cause>" on stderr, exit 1.
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <list>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "cache/chunk_cache.h"

namespace cascadefs::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  std::uint64_t keys = 20000;
  std::uint64_t requests = 400000;
  std::uint64_t capacity_mb = 64;
  std::uint64_t scan_every = 20000;
  std::uint64_t scan_keys = 2000;
  std::uint32_t flush_every = 1;
  std::uint32_t lookup_ms = 500;
  std::uint64_t seed = 42;
  std::string trace;
  std::string admission = "seen-twice";
  bool json = false;
};

[[noreturn]] void Fail(std::string_view what, std::string_view cause) {
  std::fprintf(stderr, "cache_bench: %.*s: %.*s\n", static_cast<int>(what.size()), what.data(),
               static_cast<int>(cause.size()), cause.data());
  std::exit(1);
}

struct Request {
  std::string key;  // 1..32 bytes
  std::uint32_t size_bytes = 0;
};

// A 17-byte key, as the filesystem's chunk names.
std::string KeyOf(std::uint64_t id) {
  std::string key(17, '\0');
  key[0] = 'c';
  std::uint64_t mixed = id * 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 8; ++i) key[1 + i] = static_cast<char>(id >> (8 * i));
  for (int i = 0; i < 8; ++i) key[9 + i] = static_cast<char>(mixed >> (8 * i));
  return key;
}

std::uint32_t SizeOf(std::uint64_t id, std::uint64_t seed) {
  std::uint64_t x = (id + 1) * 0xbf58476d1ce4e5b9ull ^ seed;
  x ^= x >> 31;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 29;
  return static_cast<std::uint32_t>(4096 + x % (60 * 1024 + 1));
}

// Zipf over ranks 1..n: the CDF once, then a binary search per draw.
class Zipf {
 public:
  Zipf(std::uint64_t n, double exponent, std::uint64_t seed) : cdf_(n), permutation_(n) {
    double sum = 0;
    for (std::uint64_t r = 0; r < n; ++r) {
      sum += 1.0 / std::pow(static_cast<double>(r + 1), exponent);
      cdf_[r] = sum;
    }
    for (double& c : cdf_) c /= sum;
    for (std::uint64_t i = 0; i < n; ++i) permutation_[i] = i;
    std::mt19937_64 rng(seed);
    std::shuffle(permutation_.begin(), permutation_.end(), rng);
  }
  std::uint64_t Next(std::mt19937_64& rng) {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    const auto it = std::lower_bound(cdf_.begin(), cdf_.end(), u);
    const std::uint64_t rank = std::min<std::uint64_t>(it - cdf_.begin(), cdf_.size() - 1);
    return permutation_[rank];
  }

 private:
  std::vector<double> cdf_;
  std::vector<std::uint64_t> permutation_;
};

std::vector<Request> ZipfStream(const Config& config, double exponent, bool scans) {
  Zipf zipf(config.keys, exponent, config.seed);
  std::mt19937_64 rng(config.seed + 1);
  std::vector<Request> stream;
  stream.reserve(config.requests);
  std::uint64_t next_scan_id = config.keys;  // scan keys are never requested twice
  for (std::uint64_t i = 0; i < config.requests; ++i) {
    if (scans && i > 0 && i % config.scan_every == 0) {
      for (std::uint64_t s = 0; s < config.scan_keys; ++s, ++next_scan_id) {
        stream.push_back(Request{KeyOf(next_scan_id), SizeOf(next_scan_id, config.seed)});
      }
    }
    const std::uint64_t id = zipf.Next(rng);
    stream.push_back(Request{KeyOf(id), SizeOf(id, config.seed)});
  }
  return stream;
}

std::vector<Request> TraceStream(const std::string& path) {
  std::ifstream in(path);
  if (!in) Fail(path, "cannot open the trace");
  std::vector<Request> stream;
  std::string text;
  std::uint64_t line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
    std::istringstream fields(text);
    std::string hex;
    std::uint64_t size = 0;
    std::string rest;
    if (!(fields >> hex >> size) || (fields >> rest)) {
      Fail(path, fmt::format("line {}: want HEXKEY SIZE", line));
    }
    if (hex.size() % 2 != 0 || hex.empty() || hex.size() > 64 || size == 0 || size > (1 << 20)) {
      Fail(path, fmt::format("line {}: want HEXKEY (1..32 bytes) SIZE (1..1 MiB)", line));
    }
    auto nibble = [&](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      Fail(path, fmt::format("line {}: '{}' is not hex", line, hex));
    };
    std::string key(hex.size() / 2, '\0');
    for (std::size_t i = 0; i < key.size(); ++i) {
      key[i] = static_cast<char>(nibble(hex[2 * i]) * 16 + nibble(hex[2 * i + 1]));
    }
    stream.push_back(Request{std::move(key), static_cast<std::uint32_t>(size)});
  }
  if (stream.empty()) Fail(path, "no requests in the trace");
  return stream;
}

// The bytes of a chunk: a window of a random buffer (contents do not matter for hit ratio,
// but the circular cache checksums and copies them like real chunks).
class Bytes {
 public:
  Bytes() : data_(2 << 20, '\0') {
    std::mt19937_64 rng(7);
    for (char& c : data_) c = static_cast<char>(rng());
  }
  // REQUIRES: size <= 1 MiB (the trace parser's bound), half the buffer.
  std::string_view Chunk(std::size_t key_hash, std::uint32_t size) const {
    return std::string_view(data_.data() + key_hash % (data_.size() - size), size);
  }

 private:
  std::string data_;
};

class LruCache {
 public:
  explicit LruCache(std::uint64_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}
  bool Lookup(const std::string& key, std::string* value) {
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    order_.splice(order_.begin(), order_, it->second);
    *value = it->second->second;
    return true;
  }
  void Insert(const std::string& key, std::string_view value) {
    if (value.size() > capacity_bytes_ || map_.contains(key)) return;
    while (used_bytes_ + value.size() > capacity_bytes_) {
      used_bytes_ -= order_.back().second.size();
      map_.erase(order_.back().first);
      order_.pop_back();
    }
    order_.emplace_front(key, std::string(value));
    map_.emplace(key, order_.begin());
    used_bytes_ += value.size();
  }

 private:
  const std::uint64_t capacity_bytes_;
  std::uint64_t used_bytes_ = 0;
  std::list<std::pair<std::string, std::string>> order_;  // most recent first
  std::unordered_map<std::string, std::list<std::pair<std::string, std::string>>::iterator> map_;
};

struct Row {
  std::string system;
  std::string workload;
  double hit_ratio = 0;
  double ops_per_sec = 0;
  std::uint64_t requests = 0;
  std::uint64_t hits = 0;
  double seconds = 0;
  nlohmann::ordered_json extra;
};

std::uint64_t WorkingSet(const std::vector<Request>& stream) {
  std::unordered_map<std::string, std::uint32_t> sizes;
  for (const Request& r : stream) sizes.emplace(r.key, r.size_bytes);
  std::uint64_t total = 0;
  for (const auto& [key, size] : sizes) total += size;
  return total;
}

Row RunLru(const Config& config, const std::string& workload, const std::vector<Request>& stream,
           const Bytes& bytes) {
  LruCache lru(config.capacity_mb << 20);
  std::string value;
  Row row{"lru", workload};
  const auto start = Clock::now();
  for (const Request& r : stream) {
    if (lru.Lookup(r.key, &value)) {
      ++row.hits;
    } else {
      lru.Insert(r.key, bytes.Chunk(std::hash<std::string>()(r.key), r.size_bytes));
    }
  }
  row.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  row.requests = stream.size();
  return row;
}

std::unique_ptr<cache::ChunkCache> OpenCircular(const Config& config, const std::string& path) {
  cache::ChunkCacheOptions options;
  options.capacity_bytes = config.capacity_mb << 20;
  options.insert_queue_bytes = 1ull << 30;  // never drop because the writer is behind
  options.admission =
      config.admission == "all" ? cache::Admission::kAll : cache::Admission::kSeenTwice;
  std::filesystem::remove(path);
  Result<std::unique_ptr<cache::ChunkCache>> cache = cache::ChunkCache::Open(path, options);
  if (!cache.ok()) Fail(path, cache.status().ToString());
  return std::move(cache).value();
}

nlohmann::ordered_json StatsJson(const cache::ChunkCacheStats& s) {
  nlohmann::ordered_json o;
  o["entries"] = s.entries;
  o["bytes_cached"] = s.bytes_cached;
  o["inserts_written"] = s.inserts_written;
  o["inserts_dropped_queue_full"] = s.inserts_dropped_queue_full;
  o["inserts_not_admitted"] = s.inserts_not_admitted;
  o["segments_reclaimed"] = s.segments_reclaimed;
  o["reinsertions"] = s.reinsertions;
  o["evictions"] = s.evictions;
  o["damaged_entries_dropped"] = s.damaged_entries_dropped;
  o["insert_queue_bytes_peak"] = s.insert_queue_bytes_peak;
  o["hits_counted_by_cache"] = s.hits;
  return o;
}

Row RunCircular(const Config& config, const std::string& workload,
                const std::vector<Request>& stream, const Bytes& bytes, const std::string& path,
                std::unique_ptr<cache::ChunkCache>* keep_open) {
  std::unique_ptr<cache::ChunkCache> cache = OpenCircular(config, path);
  std::string value;
  Row row{"circular", workload};
  const auto start = Clock::now();
  std::uint64_t since_flush = 0;
  std::uint64_t refused_too_large = 0;
  for (const Request& r : stream) {
    Status status = cache->Lookup(r.key, &value);
    if (status.ok()) {
      if (value.size() != r.size_bytes) Fail(workload, "circular served a chunk of a wrong size");
      ++row.hits;
    } else if (status.IsNotFound()) {
      status = cache->Insert(r.key, bytes.Chunk(std::hash<std::string>()(r.key), r.size_bytes));
      if (status.IsInvalidArgument()) {
        ++refused_too_large;  // a trace chunk larger than a segment holds
      } else if (!status.ok()) {
        Fail(workload, status.ToString());
      }
    } else {
      Fail(workload, status.ToString());
    }
    if (++since_flush == config.flush_every) {
      cache->Flush();
      since_flush = 0;
    }
  }
  cache->Flush();
  row.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  row.requests = stream.size();
  row.extra["stats"] = StatsJson(cache->stats());
  row.extra["stats"]["inserts_refused_too_large"] = refused_too_large;
  if (keep_open != nullptr) {
    *keep_open = std::move(cache);
  } else {
    Status closed = cache->Close();
    if (!closed.ok()) Fail(path, closed.ToString());
  }
  return row;
}

// Two threads looking up keys the cache holds, for config.lookup_ms.
Row RunLookupThroughput(const Config& config, cache::ChunkCache& cache,
                        const std::vector<Request>& stream, bool index_only) {
  std::vector<std::string> present;
  for (const Request& r : stream) {
    if (present.size() >= 4096) break;
    if (cache.Contains(r.key)) present.push_back(r.key);
  }
  if (present.empty()) Fail("lookup", "the cache holds nothing");
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> ops{0}, found{0};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::string value;
      std::uint64_t local_ops = 0, local_found = 0;
      std::size_t i = static_cast<std::size_t>(t) * 997;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int batch = 0; batch < 256; ++batch, ++i) {
          const std::string& key = present[i % present.size()];
          const bool hit = index_only ? cache.Contains(key) : cache.Lookup(key, &value).ok();
          local_found += hit ? 1 : 0;
          ++local_ops;
        }
      }
      ops.fetch_add(local_ops);
      found.fetch_add(local_found);
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(config.lookup_ms));
  stop.store(true);
  for (std::thread& thread : threads) thread.join();
  Row row{"circular", index_only ? "index_lookup_2threads" : "lookup_2threads"};
  row.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  row.requests = ops.load();
  row.hits = found.load();
  row.extra["threads"] = 2;
  row.extra["distinct_keys"] = present.size();
  return row;
}

void Print(const Config& config, Row row, std::uint64_t keys, std::uint64_t working_set) {
  row.hit_ratio =
      row.requests ? static_cast<double>(row.hits) / static_cast<double>(row.requests) : 0;
  row.ops_per_sec = row.seconds > 0 ? static_cast<double>(row.requests) / row.seconds : 0;
  if (config.json) {
    nlohmann::ordered_json o;
    o["system"] = row.system;
    o["workload"] = row.workload;
    o["hit_ratio"] = row.hit_ratio;
    o["ops_per_sec"] = row.ops_per_sec;
    o["requests"] = row.requests;
    o["hits"] = row.hits;
    o["seconds"] = row.seconds;
    o["capacity_bytes"] = config.capacity_mb << 20;
    o["keys"] = keys;
    o["working_set_bytes"] = working_set;
    for (auto& [k, v] : row.extra.items()) o[k] = v;
    std::printf("%s\n", o.dump().c_str());
  } else {
    std::printf("%-9s %-22s hit_ratio %.4f  %12.0f ops/s  %9llu requests  %.2f s\n",
                row.system.c_str(), row.workload.c_str(), row.hit_ratio, row.ops_per_sec,
                static_cast<unsigned long long>(row.requests), row.seconds);
  }
  std::fflush(stdout);
}

}  // namespace
}  // namespace cascadefs::bench

int main(int argc, char** argv) {
  using namespace cascadefs::bench;
  Config config;
  CLI::App app{"cache_bench: the circular chunk cache against an LRU of the same size"};
  app.add_option("--keys", config.keys, "distinct keys of the Zipf streams")
      ->check(CLI::Range(100, 10000000));
  app.add_option("--requests", config.requests, "requests per Zipf stream")
      ->check(CLI::Range(1000, 100000000));
  app.add_option("--capacity-mb", config.capacity_mb, "cache capacity of both systems, MiB")
      ->check(CLI::Range(4, 65536));
  app.add_option("--scan-every", config.scan_every, "requests between scans (zipf0.9+scan)")
      ->check(CLI::Range(100, 100000000));
  app.add_option("--scan-keys", config.scan_keys, "keys per one-pass scan")
      ->check(CLI::Range(1, 10000000));
  app.add_option("--flush-every", config.flush_every, "circular: requests between Flush calls")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--lookup-ms", config.lookup_ms, "duration of each lookup-throughput row")
      ->check(CLI::Range(10, 600000));
  app.add_option("--seed", config.seed, "seed of every stream");
  app.add_option("--admission", config.admission, "circular: seen-twice (default) or all")
      ->check(CLI::IsMember({"seen-twice", "all"}));
  // The trace recorded on a mount (bench/traces/README.md) runs by default; "" skips it.
  config.trace = CFS_DEFAULT_TRACE;
  app.add_option("--trace", config.trace,
                 "file of recorded requests: HEXKEY SIZE per line (default: the recorded build "
                 "trace; \"\" for none)");
  app.add_flag("--json", config.json, "one JSON object per row on stdout");
  CLI11_PARSE(app, argc, argv);

  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp != nullptr && *tmp ? tmp : "/var/tmp") + "/cache_bench-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) Fail("setup", "cannot create a directory under TMPDIR");
  const std::string path = dir + "/cache";
  std::fprintf(stderr,
               "cache_bench: capacity %llu MiB, %llu keys of 4..64 KiB, %llu requests per stream, "
               "seed %llu, files in %s\n",
               static_cast<unsigned long long>(config.capacity_mb),
               static_cast<unsigned long long>(config.keys),
               static_cast<unsigned long long>(config.requests),
               static_cast<unsigned long long>(config.seed), dir.c_str());
  const Bytes bytes;
  struct Stream {
    std::string name;
    double exponent;
    bool scans;
  };
  const std::vector<Stream> streams = {{"zipf0.7", 0.7, false},
                                       {"zipf0.9", 0.9, false},
                                       {"zipf1.1", 1.1, false},
                                       {"zipf0.9+scan", 0.9, true}};
  for (const Stream& s : streams) {
    const std::vector<Request> stream = ZipfStream(config, s.exponent, s.scans);
    const std::uint64_t working_set = WorkingSet(stream);
    Print(config, RunLru(config, s.name, stream, bytes), config.keys, working_set);
    std::unique_ptr<cascadefs::cache::ChunkCache> open;
    const bool throughput = s.name == "zipf0.9";
    Print(config, RunCircular(config, s.name, stream, bytes, path, throughput ? &open : nullptr),
          config.keys, working_set);
    if (throughput) {
      Print(config, RunLookupThroughput(config, *open, stream, /*index_only=*/true), config.keys,
            working_set);
      Print(config, RunLookupThroughput(config, *open, stream, /*index_only=*/false), config.keys,
            working_set);
      cascadefs::Status closed = open->Close();
      if (!closed.ok()) Fail(path, closed.ToString());
    }
  }
  if (!config.trace.empty()) {
    const std::vector<Request> stream = TraceStream(config.trace);
    const std::uint64_t working_set = WorkingSet(stream);
    Print(config, RunLru(config, "trace", stream, bytes), 0, working_set);
    Print(config, RunCircular(config, "trace", stream, bytes, path, nullptr), 0, working_set);
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return 0;
}
