// check_cache_file.cc: CheckCacheFile, the read-only validation fsck runs on a cache file.
//
// It reads the file with O_RDONLY, segment by segment, and applies the same decoders the
// warm restart uses (cache_format.h), so "fsck finds it clean" and "a warm restart serves it"
// mean the same bytes. It takes no lock: run it on a cache nobody writes (fsck runs on an
// unmounted store), or accept that segments being written look torn.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "cache/chunk_cache.h"
#include "cache_file.h"
#include "cache_format.h"

namespace cascadefs::cache {

namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

void AddFinding(CacheCheckReport* report, std::uint32_t segment, std::uint64_t file_offset,
                std::string_view what) {
  CacheFinding finding;
  finding.segment_index = segment;
  finding.file_offset = file_offset;
  finding.message = "segment " + std::to_string(segment) + " at offset " +
                    std::to_string(file_offset) + ": " + std::string(what);
  report->findings.push_back(std::move(finding));
}

}  // namespace

Result<CacheCheckReport> CheckCacheFile(const std::string& path, std::uint32_t segment_size_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Status::FromErrno(errno, path + ": open");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, path + ": fstat");
  const std::uint64_t file_bytes = static_cast<std::uint64_t>(st.st_size);

  // The geometry comes from the first header that decodes; the argument is the fallback.
  char raw[kSegmentHeaderBytes];
  if (file_bytes >= kSegmentHeaderBytes) {
    CFS_RETURN_IF_ERROR(PreadFull(fd.get(), raw, sizeof(raw), 0).WithContext(path));
    Result<SegmentHeader> first = DecodeSegmentHeader(raw, sizeof(raw));
    if (first.ok()) segment_size_bytes = first->segment_size_bytes;
  }
  if (segment_size_bytes < kSegmentMinBytes || segment_size_bytes > kSegmentMaxBytes ||
      segment_size_bytes % 4096 != 0) {
    return Status::InvalidArgument(path + ": segment size " + std::to_string(segment_size_bytes));
  }
  CacheCheckReport report;
  report.segments = static_cast<std::uint32_t>(file_bytes / segment_size_bytes);
  if (file_bytes % segment_size_bytes != 0) {
    AddFinding(&report, report.segments, report.segments * std::uint64_t{segment_size_bytes},
               "file size " + std::to_string(file_bytes) +
                   " is not a whole number of segments (a warm restart reformats it)");
  }

  // Pass 1: headers. The file's identity is that of the newest valid header.
  std::vector<SegmentHeader> headers(report.segments);
  std::vector<bool> valid(report.segments, false);
  std::uint64_t identity = 0;
  std::uint64_t newest = 0;
  for (std::uint32_t s = 0; s < report.segments; ++s) {
    const std::uint64_t offset = std::uint64_t{s} * segment_size_bytes;
    CFS_RETURN_IF_ERROR(PreadFull(fd.get(), raw, sizeof(raw), offset).WithContext(path));
    Result<SegmentHeader> header = DecodeSegmentHeader(raw, sizeof(raw));
    if (!header.ok()) {
      if (header.status().IsNotFound()) {
        ++report.segments_empty;
      } else {
        AddFinding(&report, s, offset, "segment header: " + std::string(header.status().message()));
      }
      continue;
    }
    if (header->segment_size_bytes != segment_size_bytes || header->segment_index != s ||
        header->capacity_bytes != file_bytes) {
      AddFinding(&report, s, offset, "segment header: geometry differs from the file's");
      continue;
    }
    headers[s] = *header;
    valid[s] = true;
    if (header->sequence > newest) {
      newest = header->sequence;
      identity = header->file_identity;
    }
  }

  // Pass 2: entries of every segment of the file's identity.
  std::string image(segment_size_bytes, '\0');
  for (std::uint32_t s = 0; s < report.segments; ++s) {
    if (!valid[s]) continue;
    const std::uint64_t offset = std::uint64_t{s} * segment_size_bytes;
    if (headers[s].file_identity != identity) {
      AddFinding(&report, s, offset, "segment of another cache file identity (ignored at open)");
      continue;
    }
    ++report.segments_written;
    CFS_RETURN_IF_ERROR(PreadFull(fd.get(), image.data(), image.size(), offset).WithContext(path));
    WalkResult walk = WalkSegment(image.data(), image.size(), headers[s].sequence,
                                  [&](const WalkedEntry&) { ++report.entries_valid; });
    for (const auto& [entry_offset, damage] : walk.damaged) {
      AddFinding(&report, s, offset + entry_offset,
                 damage == EntryDamage::kBadChecksum
                     ? "entry checksum mismatch (dropped at open)"
                     : "entry header out of bounds (it and the rest of the segment are dropped)");
    }
  }
  std::sort(
      report.findings.begin(), report.findings.end(),
      [](const CacheFinding& a, const CacheFinding& b) { return a.file_offset < b.file_offset; });
  return report;
}

}  // namespace cascadefs::cache
