// engine_bench.cc: db_bench-style workloads on the cascade engine and its anchors, RocksDB
// and LevelDB, side by side in one run.
//
// Workloads (db_bench's meanings): fillseq writes keys 0..N-1 in order into a fresh store;
// fillrandom writes N uniformly random keys of [0, N) into a fresh store; overwrite writes N
// random keys into the current store; readrandom reads N random keys of [0, N); readseq
// iterates the whole store; readwhilewriting reads min(N, 1,000,000) random keys from one
// thread while another overwrites random keys as fast as it can (the row is the reads; the
// writer's rate is in its options). A read without a fill before it in the same run first fills the
// store with fillseq, untimed (stated on stderr). Keys are 16 bytes ("%016llu"); values are
// --value-size bytes of half-compressible data generated once (db_bench's RandomGenerator
// idea: each run of bytes is half random, half a repeat).
//
// Every engine gets the same settings, printed on stderr and in each row's "options":
// write buffer 64 MiB, WAL on without sync, --compression (LevelDB has no zstd: it runs
// without compression then, and says so), bloom filters of 10 bits per key, 4 KiB blocks,
// max_open_files 1000, a block cache of --cache-mb for every engine. Writes use each engine's
// blocking API from one thread.
// Reads of cascade run twice: `cascade` with --cascade-clients coroutines on the store's
// scheduler awaiting GetAsync (how code on our runtime reads), and `cascade-blocking` with
// the blocking API from one thread (one scheduler hop per read that reaches an SST).
//
// After a timed fill or overwrite, cascade's row carries "store": its write and space
// amplification, files per level and value-log figures (the engine's own accounting, taken
// when the workload ends; compactions may still be running).
// Rows: {system, workload, ops_per_sec, mb_per_sec, p50_us, p99_us, num, value_size, found,
// seconds, options}; with --json one per line on stdout, else a table.
// Errors: one line "engine_bench: <system>: <cause>" on stderr, exit 1.
#include <leveldb/cache.h>
#include <leveldb/db.h>
#include <leveldb/filter_policy.h>
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "engine/db.h"
#include "engine/io/scheduler.h"
#include "engine/io/task.h"

namespace cascadefs::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  std::vector<std::string> engines;
  std::vector<std::string> workloads;
  std::uint64_t num = 1000000;
  std::uint32_t value_size = 100;
  std::string compression = "none";
  std::uint32_t cache_mb = 8;
  std::uint32_t cascade_clients = 16;
  bool json = false;
};

[[noreturn]] void Fail(std::string_view system, std::string_view cause) {
  std::fprintf(stderr, "engine_bench: %.*s: %.*s\n", static_cast<int>(system.size()), system.data(),
               static_cast<int>(cause.size()), cause.data());
  std::exit(1);
}

std::string KeyOf(std::uint64_t n) {
  char key[32];
  std::snprintf(key, sizeof(key), "%016llu", static_cast<unsigned long long>(n));
  return std::string(key, 16);
}

// Half-compressible value bytes: each 20-byte run is 10 random bytes, then them again.
class ValueSource {
 public:
  explicit ValueSource(std::uint32_t value_size) : value_size_(value_size) {
    std::mt19937_64 rng(301);
    data_.resize(1 << 20);
    for (std::size_t i = 0; i + 20 <= data_.size(); i += 20) {
      for (int b = 0; b < 10; ++b) data_[i + b] = static_cast<char>(' ' + rng() % 95);
      std::copy_n(data_.begin() + i, 10, data_.begin() + i + 10);
    }
  }
  std::string_view Next() {
    if (position_ + value_size_ > data_.size()) position_ = 0;
    std::string_view value(data_.data() + position_, value_size_);
    position_ += value_size_;
    return value;
  }

 private:
  const std::uint32_t value_size_;
  std::string data_;
  std::size_t position_ = 0;
};

struct Row {
  std::string system;
  std::string workload;
  double ops_per_sec = 0;
  double mb_per_sec = 0;
  double p50_us = 0;
  double p99_us = 0;
  std::uint64_t num = 0;
  std::uint64_t found = 0;
  double seconds = 0;
  nlohmann::ordered_json options;
};

// Per-operation latencies in nanoseconds; summarized into a row.
Row Summarize(std::string system, std::string workload, std::vector<std::uint32_t> latencies_ns,
              double seconds, std::uint64_t bytes_per_op, const nlohmann::ordered_json& options) {
  Row row;
  row.system = std::move(system);
  row.workload = std::move(workload);
  row.num = latencies_ns.size();
  row.seconds = seconds;
  row.ops_per_sec = seconds > 0 ? static_cast<double>(row.num) / seconds : 0;
  row.mb_per_sec = row.ops_per_sec * static_cast<double>(bytes_per_op) / 1048576.0;
  if (!latencies_ns.empty()) {
    auto at = [&](double q) {
      const std::size_t i =
          std::min(latencies_ns.size() - 1, static_cast<std::size_t>(q * latencies_ns.size()));
      std::nth_element(latencies_ns.begin(), latencies_ns.begin() + i, latencies_ns.end());
      return latencies_ns[i] / 1000.0;
    };
    row.p50_us = at(0.50);
    row.p99_us = at(0.99);
  }
  row.options = options;
  return row;
}

std::uint32_t NanosSince(Clock::time_point start) {
  return static_cast<std::uint32_t>(std::min<std::int64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count(),
      UINT32_MAX));
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One engine under test. Put/Get/ReadSeq are its blocking API from one thread.
class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string name() const = 0;
  virtual nlohmann::ordered_json options() const = 0;
  virtual void Open(const std::string& path) = 0;
  virtual void Close() = 0;
  virtual void Put(std::string_view key, std::string_view value) = 0;
  virtual bool Get(const std::string& key, std::string* value) = 0;
  // Visits every entry; returns the count and fills one latency per entry.
  virtual std::uint64_t ReadSeq(std::vector<std::uint32_t>* latencies_ns) = 0;
  // Extra read rows in other modes (cascade's coroutine reads).
  virtual std::vector<Row> ExtraReadRows(const std::string& /*workload*/,
                                         const std::vector<std::uint64_t>& /*keys*/,
                                         std::uint64_t /*bytes_per_op*/) {
    return {};
  }
  // The system name of the blocking-API read rows.
  virtual std::string blocking_read_name() const { return name(); }
  // The store's own figures after a write workload (empty when the engine offers none here).
  virtual nlohmann::ordered_json StoreReport() const { return nlohmann::ordered_json(); }
};

class RocksEngine final : public Engine {
 public:
  RocksEngine(const Config& config, bool blob) : config_(config), blob_(blob) {}
  std::string name() const override { return blob_ ? "rocksdb-blob" : "rocksdb"; }
  nlohmann::ordered_json options() const override {
    nlohmann::ordered_json o;
    o["write_buffer_size_mib"] = 64;
    o["wal"] = "on, sync=false";
    o["compression"] = config_.compression;
    o["bloom_bits_per_key"] = 10;
    o["block_size"] = 4096;
    o["block_cache_mib"] = config_.cache_mb;
    o["max_open_files"] = 1000;
    if (blob_) o["blob_files"] = "enable_blob_files=true, min_blob_size=512";
    return o;
  }
  void Open(const std::string& path) override {
    rocksdb::Options options;
    options.create_if_missing = true;
    options.write_buffer_size = 64 << 20;
    options.max_open_files = 1000;
    options.compression = config_.compression == "zstd" ? rocksdb::kZSTD : rocksdb::kNoCompression;
    rocksdb::BlockBasedTableOptions table;
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    table.block_size = 4096;
    table.block_cache = rocksdb::NewLRUCache(std::size_t{config_.cache_mb} << 20);
    options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    if (blob_) {
      options.enable_blob_files = true;
      options.min_blob_size = 512;
    }
    rocksdb::DB* db = nullptr;
    rocksdb::Status status = rocksdb::DB::Open(options, path, &db);
    if (!status.ok()) Fail(name(), status.ToString());
    db_.reset(db);
  }
  void Close() override {
    if (db_) {
      rocksdb::Status status = db_->Close();
      if (!status.ok()) Fail(name(), status.ToString());
    }
    db_.reset();
  }
  void Put(std::string_view key, std::string_view value) override {
    rocksdb::Status status =
        db_->Put(rocksdb::WriteOptions(), rocksdb::Slice(key.data(), key.size()),
                 rocksdb::Slice(value.data(), value.size()));
    if (!status.ok()) Fail(name(), status.ToString());
  }
  bool Get(const std::string& key, std::string* value) override {
    rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), key, value);
    if (status.IsNotFound()) return false;
    if (!status.ok()) Fail(name(), status.ToString());
    return true;
  }
  std::uint64_t ReadSeq(std::vector<std::uint32_t>* latencies_ns) override {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    std::uint64_t count = 0;
    auto start = Clock::now();
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      latencies_ns->push_back(NanosSince(start));
      start = Clock::now();
      ++count;
    }
    if (!it->status().ok()) Fail(name(), it->status().ToString());
    return count;
  }

 private:
  const Config& config_;
  const bool blob_;
  std::unique_ptr<rocksdb::DB> db_;
};

class LevelEngine final : public Engine {
 public:
  explicit LevelEngine(const Config& config) : config_(config) {}
  std::string name() const override { return "leveldb"; }
  nlohmann::ordered_json options() const override {
    nlohmann::ordered_json o;
    o["write_buffer_size_mib"] = 64;
    o["wal"] = "on, sync=false";
    o["compression"] =
        config_.compression == "zstd" ? "none (leveldb has no zstd; it runs uncompressed)" : "none";
    o["bloom_bits_per_key"] = 10;
    o["block_size"] = 4096;
    o["block_cache_mib"] = config_.cache_mb;
    o["max_open_files"] = 1000;
    return o;
  }
  void Open(const std::string& path) override {
    filter_.reset(leveldb::NewBloomFilterPolicy(10));
    cache_.reset(leveldb::NewLRUCache(std::size_t{config_.cache_mb} << 20));
    leveldb::Options options;
    options.create_if_missing = true;
    options.write_buffer_size = 64 << 20;
    options.max_open_files = 1000;
    options.block_size = 4096;
    options.compression = leveldb::kNoCompression;
    options.filter_policy = filter_.get();
    options.block_cache = cache_.get();
    leveldb::DB* db = nullptr;
    leveldb::Status status = leveldb::DB::Open(options, path, &db);
    if (!status.ok()) Fail(name(), status.ToString());
    db_.reset(db);
  }
  void Close() override { db_.reset(); }
  void Put(std::string_view key, std::string_view value) override {
    leveldb::Status status =
        db_->Put(leveldb::WriteOptions(), leveldb::Slice(key.data(), key.size()),
                 leveldb::Slice(value.data(), value.size()));
    if (!status.ok()) Fail(name(), status.ToString());
  }
  bool Get(const std::string& key, std::string* value) override {
    leveldb::Status status = db_->Get(leveldb::ReadOptions(), key, value);
    if (status.IsNotFound()) return false;
    if (!status.ok()) Fail(name(), status.ToString());
    return true;
  }
  std::uint64_t ReadSeq(std::vector<std::uint32_t>* latencies_ns) override {
    std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
    std::uint64_t count = 0;
    auto start = Clock::now();
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      latencies_ns->push_back(NanosSince(start));
      start = Clock::now();
      ++count;
    }
    if (!it->status().ok()) Fail(name(), it->status().ToString());
    return count;
  }

 private:
  const Config& config_;
  std::unique_ptr<const leveldb::FilterPolicy> filter_;
  std::unique_ptr<leveldb::Cache> cache_;
  std::unique_ptr<leveldb::DB> db_;
};

class CascadeEngine final : public Engine {
 public:
  explicit CascadeEngine(const Config& config) : config_(config) {}
  std::string name() const override { return "cascade"; }
  std::string blocking_read_name() const override { return "cascade-blocking"; }
  nlohmann::ordered_json options() const override {
    nlohmann::ordered_json o;
    o["write_buffer_size_mib"] = 64;
    o["wal"] = "on, sync=false (64 KiB WAL buffer)";
    o["compression"] = config_.compression;
    o["bloom_bits_per_key"] = 10;
    o["block_size"] = 4096;
    o["block_cache_mib"] = config_.cache_mb;
    o["max_open_files"] = 1000;
    o["reads"] = fmt::format("{} coroutine clients on the store's scheduler (GetAsync)",
                             config_.cascade_clients);
    return o;
  }
  nlohmann::ordered_json blocking_options() const {
    nlohmann::ordered_json o = options();
    o["reads"] = "blocking API from one thread";
    return o;
  }
  void Open(const std::string& path) override {
    engine::Options options;
    options.write_buffer_size_bytes = 64 << 20;
    options.bloom_bits_per_key = 10;
    options.block_size_bytes = 4096;
    options.max_open_files = 1000;
    options.block_cache_size_bytes = std::uint64_t{config_.cache_mb} << 20;
    options.compression =
        config_.compression == "zstd" ? engine::Compression::kZstd : engine::Compression::kNone;
    auto db = engine::DB::Open(options, path);
    if (!db.ok()) Fail(name(), db.status().ToString());
    db_ = std::move(db).value();
  }
  void Close() override {
    if (db_) {
      Status status = db_->Close();
      if (!status.ok()) Fail(name(), status.ToString());
    }
    db_.reset();
  }
  void Put(std::string_view key, std::string_view value) override {
    Status status = db_->Put(engine::WriteOptions{}, key, value);
    if (!status.ok()) Fail(name(), status.ToString());
  }
  nlohmann::ordered_json StoreReport() const override {
    const engine::DbStats stats = db_->stats();
    const std::vector<engine::LevelStats> levels = db_->GetLevelStats();
    nlohmann::ordered_json o;
    o["write_amplification"] = std::round(engine::WriteAmplification(stats) * 1000) / 1000;
    o["space_amplification"] =
        std::round(engine::SpaceAmplification(levels, stats.vlog_bytes, stats.vlog_garbage_bytes) *
                   1000) /
        1000;
    nlohmann::ordered_json files = nlohmann::ordered_json::array();
    for (const engine::LevelStats& level : levels) files.push_back(level.files);
    o["files_per_level"] = files;
    o["compactions"] = stats.compactions;
    o["write_stalls"] = stats.write_stalls;
    o["vlog_files"] = stats.vlog_files;
    o["vlog_mib"] = std::round(static_cast<double>(stats.vlog_bytes) / 1048576.0 * 10) / 10;
    return o;
  }
  bool Get(const std::string& key, std::string* value) override {
    Status status = db_->Get(engine::ReadOptions{}, key, value);
    if (status.IsNotFound()) return false;
    if (!status.ok()) Fail(name(), status.ToString());
    return true;
  }
  std::uint64_t ReadSeq(std::vector<std::uint32_t>* latencies_ns) override {
    std::unique_ptr<engine::Iterator> it = db_->NewIterator(engine::ReadOptions{});
    std::uint64_t count = 0;
    auto start = Clock::now();
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      latencies_ns->push_back(NanosSince(start));
      start = Clock::now();
      ++count;
    }
    if (!it->status().ok()) Fail(name(), it->status().ToString());
    return count;
  }

  std::vector<Row> ExtraReadRows(const std::string& workload,
                                 const std::vector<std::uint64_t>& keys,
                                 std::uint64_t bytes_per_op) override {
    io::Scheduler* scheduler = db_->scheduler();
    if (workload == "readrandom") {
      const std::uint32_t clients = std::max<std::uint32_t>(1, config_.cascade_clients);
      std::vector<std::vector<std::uint32_t>> latencies(clients);
      std::atomic<std::uint64_t> found{0};
      std::atomic<bool> failed{false};
      engine::DB* db = db_.get();
      auto client = [&](std::uint32_t index) -> io::Task<void> {
        std::string value;
        std::vector<std::uint32_t>& mine = latencies[index];
        mine.reserve(keys.size() / clients + 1);
        std::uint64_t hits = 0;
        for (std::size_t i = index; i < keys.size(); i += clients) {
          const std::string key = KeyOf(keys[i]);
          const auto start = Clock::now();
          Status status = co_await db->GetAsync(engine::ReadOptions{}, key, &value);
          mine.push_back(NanosSince(start));
          if (status.ok()) {
            ++hits;
          } else if (!status.IsNotFound()) {
            failed.store(true);
          }
        }
        found.fetch_add(hits);
      };
      std::vector<io::Task<void>> tasks;
      for (std::uint32_t c = 0; c < clients; ++c) tasks.push_back(client(c));
      // Spread the clients over the IO threads: each awaits on the thread it starts on.
      auto all = [&]() -> io::Task<void> {
        std::vector<io::Task<void>> spread;
        for (std::uint32_t c = 0; c < clients; ++c) {
          spread.push_back(io::RunOn(*scheduler, c % scheduler->io_threads(), std::move(tasks[c])));
        }
        co_await io::WhenAll(std::move(spread));
      };
      const auto start = Clock::now();
      scheduler->BlockOn(all());
      const double seconds = SecondsSince(start);
      if (failed.load()) Fail(name(), "a coroutine read failed");
      std::vector<std::uint32_t> merged;
      for (auto& part : latencies) merged.insert(merged.end(), part.begin(), part.end());
      Row row = Summarize(name(), workload, std::move(merged), seconds, bytes_per_op, options());
      row.found = found.load();
      return {row};
    }
    if (workload == "readseq") {
      engine::DB* db = db_.get();
      std::vector<std::uint32_t> latencies;
      std::uint64_t count = 0;
      bool failed = false;
      auto body = [&]() -> io::Task<void> {
        std::unique_ptr<engine::Iterator> it = db->NewIterator(engine::ReadOptions{});
        auto step_start = Clock::now();
        co_await it->SeekToFirstAsync();
        while (it->Valid()) {
          latencies.push_back(NanosSince(step_start));
          ++count;
          step_start = Clock::now();
          co_await it->NextAsync();
        }
        failed = !it->status().ok();
      };
      const auto start = Clock::now();
      scheduler->BlockOn(body());
      const double seconds = SecondsSince(start);
      if (failed) Fail(name(), "the coroutine iterator failed");
      Row row = Summarize(name(), workload, std::move(latencies), seconds, bytes_per_op, options());
      row.found = count;
      return {row};
    }
    return {};
  }

 private:
  const Config& config_;
  std::unique_ptr<engine::DB> db_;
};

std::string RowJson(const Row& row, const Config& config) {
  nlohmann::ordered_json j;
  j["system"] = row.system;
  j["workload"] = row.workload;
  j["ops_per_sec"] = std::round(row.ops_per_sec);
  j["mb_per_sec"] = std::round(row.mb_per_sec * 100) / 100;
  j["p50_us"] = std::round(row.p50_us * 100) / 100;
  j["p99_us"] = std::round(row.p99_us * 100) / 100;
  j["num"] = row.num;
  j["value_size"] = config.value_size;
  j["found"] = row.found;
  j["seconds"] = std::round(row.seconds * 1000) / 1000;
  j["options"] = row.options;
  return j.dump();
}

void Emit(const Row& row, const Config& config) {
  if (config.json) {
    std::printf("%s\n", RowJson(row, config).c_str());
  } else {
    std::printf("%-17s %-11s %12.0f ops/s %8.2f MB/s  p50 %8.2f us  p99 %9.2f us  found %llu\n",
                row.system.c_str(), row.workload.c_str(), row.ops_per_sec, row.mb_per_sec,
                row.p50_us, row.p99_us, static_cast<unsigned long long>(row.found));
  }
  std::fflush(stdout);
  std::fprintf(stderr, "engine_bench: %s %s: %.0f ops/s (p50 %.2f us, p99 %.2f us)\n",
               row.system.c_str(), row.workload.c_str(), row.ops_per_sec, row.p50_us, row.p99_us);
}

void RunEngine(Engine& engine, const Config& config, const std::string& base_dir) {
  const std::string path = base_dir + "/" + engine.name();
  const std::uint64_t bytes_per_op = 16 + config.value_size;
  std::mt19937_64 rng(1234);
  bool filled = false;
  bool open = false;
  auto fresh = [&] {
    if (open) engine.Close();
    std::filesystem::remove_all(path);
    engine.Open(path);
    open = true;
  };
  auto attach_store_report = [&](Row* row) {
    const nlohmann::ordered_json store = engine.StoreReport();
    if (!store.is_null()) row->options["store"] = store;
  };
  auto fill = [&](const std::string& workload, bool sequential, bool timed) {
    ValueSource values(config.value_size);
    std::vector<std::uint32_t> latencies;
    latencies.reserve(config.num);
    const auto start = Clock::now();
    for (std::uint64_t i = 0; i < config.num; ++i) {
      const std::uint64_t n = sequential ? i : rng() % config.num;
      const std::string key = KeyOf(n);
      const auto op_start = Clock::now();
      engine.Put(key, values.Next());
      latencies.push_back(NanosSince(op_start));
    }
    const double seconds = SecondsSince(start);
    if (timed) {
      Row row = Summarize(engine.name(), workload, std::move(latencies), seconds, bytes_per_op,
                          engine.options());
      attach_store_report(&row);
      Emit(row, config);
    }
    filled = true;
  };
  // Reads `keys` with the engine's blocking API from this thread: one row.
  auto blocking_reads = [&](const std::string& workload, const std::vector<std::uint64_t>& keys) {
    std::vector<std::uint32_t> latencies;
    latencies.reserve(keys.size());
    std::uint64_t found = 0;
    std::string value;
    const auto start = Clock::now();
    for (std::uint64_t n : keys) {
      const std::string key = KeyOf(n);
      const auto op_start = Clock::now();
      found += engine.Get(key, &value) ? 1 : 0;
      latencies.push_back(NanosSince(op_start));
    }
    const double seconds = SecondsSince(start);
    Row row = Summarize(engine.blocking_read_name(), workload, std::move(latencies), seconds,
                        bytes_per_op, engine.options());
    if (auto* cascade = dynamic_cast<CascadeEngine*>(&engine)) {
      row.options = cascade->blocking_options();
    }
    row.found = found;
    return row;
  };
  for (const std::string& workload : config.workloads) {
    if (workload == "fillseq" || workload == "fillrandom") {
      fresh();
      fill(workload, workload == "fillseq", true);
      continue;
    }
    if (!open) fresh();
    if (!filled) {
      std::fprintf(stderr,
                   "engine_bench: %s: %s runs on a store filled first by an untimed "
                   "fillseq\n",
                   engine.name().c_str(), workload.c_str());
      fill("fillseq", true, false);
    }
    if (workload == "overwrite") {
      fill(workload, false, true);
    } else if (workload == "readwhilewriting") {
      constexpr std::uint64_t kReadsMax = 1'000'000;
      std::vector<std::uint64_t> keys(std::min(config.num, kReadsMax));
      for (auto& key : keys) key = rng() % config.num;
      std::atomic<bool> stop{false};
      std::atomic<std::uint64_t> writes{0};
      std::thread writer([&] {
        ValueSource values(config.value_size);
        std::mt19937_64 writer_rng(99);
        while (!stop.load(std::memory_order_relaxed)) {
          engine.Put(KeyOf(writer_rng() % config.num), values.Next());
          writes.fetch_add(1, std::memory_order_relaxed);
        }
      });
      Row row = blocking_reads(workload, keys);
      stop.store(true);
      writer.join();
      row.options["writer"] = "one thread overwriting random keys during the reads";
      row.options["writer_ops_per_sec"] =
          std::round(static_cast<double>(writes.load()) / row.seconds);
      attach_store_report(&row);
      Emit(row, config);
    } else if (workload == "readrandom") {
      std::vector<std::uint64_t> keys(config.num);
      for (auto& key : keys) key = rng() % config.num;
      for (const Row& row : engine.ExtraReadRows(workload, keys, bytes_per_op)) Emit(row, config);
      Emit(blocking_reads(workload, keys), config);
    } else if (workload == "readseq") {
      std::vector<std::uint64_t> none;
      for (const Row& row : engine.ExtraReadRows(workload, none, bytes_per_op)) Emit(row, config);
      std::vector<std::uint32_t> latencies;
      const auto start = Clock::now();
      const std::uint64_t count = engine.ReadSeq(&latencies);
      const double seconds = SecondsSince(start);
      Row row = Summarize(engine.blocking_read_name(), workload, std::move(latencies), seconds,
                          bytes_per_op, engine.options());
      if (auto* cascade = dynamic_cast<CascadeEngine*>(&engine)) {
        row.options = cascade->blocking_options();
      }
      row.found = count;
      Emit(row, config);
    } else {
      Fail(engine.name(), "unknown workload " + workload);
    }
  }
  if (open) engine.Close();
  std::filesystem::remove_all(path);
}

}  // namespace
}  // namespace cascadefs::bench

int main(int argc, char** argv) {
  using namespace cascadefs::bench;
  Config config;
  std::string engines = "cascade,rocksdb,leveldb";
  std::string workloads = "fillseq,fillrandom,readrandom,readseq,overwrite";
  CLI::App app{"engine_bench: db_bench-style workloads on cascade, RocksDB and LevelDB"};
  app.add_option("--engines", engines, "cascade,rocksdb,rocksdb-blob,leveldb");
  app.add_option("--workloads", workloads,
                 "fillseq,fillrandom,readrandom,readseq,overwrite,readwhilewriting");
  app.add_option("--num", config.num, "operations per workload")->check(CLI::Range(1, 1 << 30));
  app.add_option("--value-size", config.value_size, "bytes per value")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--compression", config.compression, "none|zstd")
      ->check(CLI::IsMember({"none", "zstd"}));
  app.add_option("--cache-mb", config.cache_mb, "block cache of every engine, MiB");
  app.add_option("--cascade-clients", config.cascade_clients,
                 "concurrent coroutine readers for cascade")
      ->check(CLI::Range(1, 4096));
  app.add_flag("--json", config.json, "one JSON object per row on stdout");
  CLI11_PARSE(app, argc, argv);
  auto split = [](const std::string& list) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= list.size()) {
      const std::size_t comma = list.find(',', start);
      const std::string item =
          list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!item.empty()) out.push_back(item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return out;
  };
  config.engines = split(engines);
  config.workloads = split(workloads);
  const char* tmp = std::getenv("TMPDIR");
  std::string base =
      std::string(tmp != nullptr && *tmp ? tmp : "/var/tmp") + "/engine_bench-XXXXXX";
  if (mkdtemp(base.data()) == nullptr) Fail("setup", "cannot create a directory under TMPDIR");
  std::fprintf(stderr,
               "engine_bench: num %llu, value %u B, key 16 B, compression %s, write buffer 64 MiB, "
               "WAL on without sync, bloom 10 bits/key, 4 KiB blocks, block cache %u MiB, "
               "max_open_files 1000; stores under %s\n",
               static_cast<unsigned long long>(config.num), config.value_size,
               config.compression.c_str(), config.cache_mb, base.c_str());
  for (const std::string& name : config.engines) {
    std::unique_ptr<Engine> engine;
    if (name == "cascade") {
      engine = std::make_unique<CascadeEngine>(config);
    } else if (name == "rocksdb") {
      engine = std::make_unique<RocksEngine>(config, false);
    } else if (name == "rocksdb-blob") {
      engine = std::make_unique<RocksEngine>(config, true);
    } else if (name == "leveldb") {
      engine = std::make_unique<LevelEngine>(config);
    } else {
      Fail(name, "unknown engine (cascade, rocksdb, rocksdb-blob, leveldb)");
    }
    RunEngine(*engine, config, base);
  }
  std::filesystem::remove_all(base);
  return 0;
}
