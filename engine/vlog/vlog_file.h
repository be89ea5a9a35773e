// vlog_file.h: writing and reading value-log files (docs/formats/vlog.md) through the Env.
//
// VlogWriter appends records to one new file and hands back their pointers; VlogFileReader
// reads the value a pointer names, checking it end to end; ScanVlogRecords walks a file's
// records in order (recovery of an unfinished file, GC, fsck). The engine does not use them
// yet (issue 7): they are the value log's I/O layer, tested on their own.
//
// Thread safety: a VlogWriter belongs to one task at a time (the write group's leader);
// VlogFileReader and ScanVlogRecords may run from many tasks at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/result.h"
#include "engine/status.h"
#include "vlog/vlog_format.h"

namespace cascadefs::engine {

struct VlogWriterOptions {
  // Values are stored zstd-compressed (this level) when that saves at least 1/8; 0 stores
  // every value as given (cascadefs's chunk values arrive compressed already).
  // Range: 0..22. Default: 0.
  int zstd_level = 0;
  // Bytes appended but not yet written to the file; reaching it writes them. Bounds the
  // writer's memory besides one record. Default: 1 MiB.
  std::size_t buffer_bytes = 1 << 20;
};

class VlogWriter {
 public:
  // Creates `path` (which must not exist) for file `number` and writes its header (not
  // synced: the first Sync makes it durable with the first records).
  static io::Task<Result<std::unique_ptr<VlogWriter>>> Create(Env* env, std::string path,
                                                              std::uint64_t number,
                                                              VlogWriterOptions options);
  ~VlogWriter();
  VlogWriter(const VlogWriter&) = delete;
  VlogWriter& operator=(const VlogWriter&) = delete;

  // Appends a record of `key` and `value`; the pointer names it. The bytes may wait in the
  // buffer: only after Sync (or Finish) are they durable, and only after the buffer is written
  // (Flush, Sync, Finish or a full buffer) can a reader see them.
  io::Task<Result<ValuePointer>> Add(std::string_view key, std::string_view value);
  // Writes the buffered bytes to the file (readers can see them; not durable).
  io::Task<Status> Flush();
  // Flush, then fdatasync: every record added before the call is durable.
  io::Task<Status> Sync();
  // Writes the footer, syncs and closes: the file is complete. No Add after it.
  io::Task<Status> Finish();

  std::uint64_t number() const { return number_; }
  const std::string& path() const { return path_; }
  std::uint64_t size_bytes() const { return written_ + buffer_.size(); }
  std::uint64_t records() const { return records_; }
  std::uint64_t value_bytes() const { return value_bytes_; }

 private:
  VlogWriter(std::unique_ptr<WritableFile> file, std::string path, std::uint64_t number,
             VlogWriterOptions options);

  std::unique_ptr<WritableFile> file_;
  const std::string path_;
  const std::uint64_t number_;
  const VlogWriterOptions options_;
  std::string buffer_;         // bytes after written_, not yet in the file
  std::uint64_t written_ = 0;  // bytes already written to the file
  std::uint64_t records_ = 0;
  std::uint64_t value_bytes_ = 0;  // stored value bytes
  bool finished_ = false;
};

// Reads values out of one value-log file.
class VlogFileReader {
 public:
  explicit VlogFileReader(std::unique_ptr<RandomAccessFile> file) : file_(std::move(file)) {}

  // The value `pointer` names, decompressed. Corruption (naming the file and offset) when the
  // record is damaged, is not the one the pointer names, holds another key than `key`, or lies
  // past the end of the file.
  io::Task<Result<std::string>> ReadValue(const ValuePointer& pointer, std::string_view key) const;

  const std::string& path() const { return file_->path(); }

 private:
  std::unique_ptr<RandomAccessFile> file_;
};

// The value of the record `bytes` (exactly the pointer's size, read from `path`), checked
// against the pointer's checksum and `key`, decompressed. Corruption naming path and offset.
Result<std::string> DecodeVlogValue(std::string_view bytes, const ValuePointer& pointer,
                                    std::string_view key, const std::string& path);

// Calls `on_record(pointer, record)` for each record of `file` in order, from just after the
// header (or from `start`, a record boundary past the header, such as an earlier scan's
// *valid_end), and stops at the first record that does not decode (a torn tail, the footer,
// or damage), or once the records visited span `max_bytes` (at least one is visited).
// `*valid_end` gets the offset just past the last good record: where a writer recovering the
// file cuts it, or where the next bounded scan starts. Corruption only for a damaged header
// (checked when starting at the header); a callback's error ends the scan and is returned.
// The record's views are valid during the call only.
using VlogRecordVisitor = std::function<Status(const ValuePointer&, const VlogRecord&)>;
io::Task<Status> ScanVlogRecords(const RandomAccessFile& file, std::uint64_t number,
                                 const VlogRecordVisitor& on_record, std::uint64_t* valid_end,
                                 std::uint64_t start = 0,
                                 std::uint64_t max_bytes = ~std::uint64_t{0});

}  // namespace cascadefs::engine
