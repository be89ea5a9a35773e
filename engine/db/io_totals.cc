// io_totals.cc: the IOTOTALS file (io_totals.h).
//
// Layout (little-endian; docs/formats/manifest.md, "IOTOTALS"):
//   offset 0   8 bytes   magic "CFSIOTOT"
//   offset 8   4 bytes   u32 version, 1
//   offset 12  6 x 8     u64 opens, user, WAL, value log, flush, compaction bytes written
//   offset 60  4 bytes   u32 Checksum32 of bytes 0..59, seed kIoTotalsChecksumSeed
#include "db/io_totals.h"

#include <array>
#include <cstring>
#include <memory>

#include "util/checksum.h"
#include "util/coding.h"

namespace cascadefs::engine {
namespace {

constexpr std::string_view kMagic = "CFSIOTOT";
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kFields = 6;
constexpr std::size_t kEncodedBytes = 8 + 4 + 8 * kFields + 4;
constexpr std::uint64_t kIoTotalsChecksumSeed = 0x494f544f54414c53;  // "IOTOTALS"

}  // namespace

double IoTotals::write_amplification() const {
  if (user_bytes_written == 0) return 0;
  const std::uint64_t disk =
      wal_bytes_written + vlog_bytes_written + flush_bytes_written + compaction_bytes_written;
  return static_cast<double>(disk) / static_cast<double>(user_bytes_written);
}

std::string IoTotals::Encode() const {
  std::string out(kMagic);
  PutFixed32(&out, kVersion);
  for (std::uint64_t v : {opens, user_bytes_written, wal_bytes_written, vlog_bytes_written,
                          flush_bytes_written, compaction_bytes_written}) {
    PutFixed64(&out, v);
  }
  PutFixed32(&out, Checksum32(out.data(), out.size(), kIoTotalsChecksumSeed));
  return out;
}

Result<IoTotals> IoTotals::Decode(std::string_view bytes) {
  if (bytes.size() != kEncodedBytes || bytes.substr(0, kMagic.size()) != kMagic) {
    return Status::Corruption(std::string(kIoTotalsFileName) + ": not an IO totals file");
  }
  const std::uint32_t stored = DecodeFixed32(bytes.data() + kEncodedBytes - 4);
  if (stored != Checksum32(bytes.data(), kEncodedBytes - 4, kIoTotalsChecksumSeed)) {
    return Status::Corruption(std::string(kIoTotalsFileName) + ": checksum mismatch");
  }
  const std::uint32_t version = DecodeFixed32(bytes.data() + 8);
  if (version != kVersion) {
    return Status::NotSupported(std::string(kIoTotalsFileName) + ": version " +
                                std::to_string(version));
  }
  std::array<std::uint64_t, kFields> v{};
  for (std::size_t i = 0; i < kFields; ++i) v[i] = DecodeFixed64(bytes.data() + 12 + 8 * i);
  return IoTotals{.opens = v[0],
                  .user_bytes_written = v[1],
                  .wal_bytes_written = v[2],
                  .vlog_bytes_written = v[3],
                  .flush_bytes_written = v[4],
                  .compaction_bytes_written = v[5]};
}

io::Task<Result<std::optional<IoTotals>>> ReadIoTotals(Env* env, std::string dir) {
  const std::string path = dir + "/" + kIoTotalsFileName;
  auto opened = co_await env->NewRandomAccessFile(path);
  if (!opened.ok()) {
    if (opened.status().IsNotFound()) co_return std::optional<IoTotals>();
    co_return opened.status();
  }
  std::unique_ptr<RandomAccessFile> file = std::move(opened).value();
  if (file->size_bytes() != kEncodedBytes) {
    co_return Status::Corruption(path + ": " + std::to_string(file->size_bytes()) + " bytes, not " +
                                 std::to_string(kEncodedBytes));
  }
  std::string bytes(kEncodedBytes, '\0');
  auto read = co_await file->Read(0, kEncodedBytes, bytes.data());
  if (!read.ok()) co_return read.status();
  if (read.value() != kEncodedBytes) co_return Status::Corruption(path + ": short read");
  Result<IoTotals> decoded = IoTotals::Decode(bytes);
  if (!decoded.ok()) co_return decoded.status().WithContext(dir);
  co_return std::optional<IoTotals>(decoded.value());
}

io::Task<Status> WriteIoTotals(Env* env, std::string dir, IoTotals totals) {
  const std::string path = dir + "/" + kIoTotalsFileName;
  const std::string temp = path + ".tmp";
  const std::string contents = totals.Encode();
  auto opened = co_await env->NewWritableFile(temp, WriteMode::kCreateTruncate);
  if (!opened.ok()) co_return opened.status();
  std::unique_ptr<WritableFile> file = std::move(opened).value();
  Status status = co_await file->WriteAt(0, contents);
  if (status.ok()) status = co_await file->Sync();
  Status closed = co_await file->Close();
  if (status.ok()) status = closed;
  if (status.ok()) status = co_await env->RenameFile(temp, path);
  if (status.ok()) status = co_await env->SyncDir(dir);
  co_return status;
}

}  // namespace cascadefs::engine
