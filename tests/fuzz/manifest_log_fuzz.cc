// manifest_log_fuzz.cc: the manifest reader (ReadManifest, ManifestReader) over arbitrary
// file bytes.
//
// The input is a whole manifest file, read from memory (engine/manifest/string_file.h) with
// the reader run inline, so no scheduler is needed. Properties: no out-of-bounds read (ASan),
// no assertion; OK results satisfy valid_length <= file size, a torn tail exactly when the
// valid length falls short of the file size, at least one edit, and a format version in range;
// errors are Corruption or NotSupported. The record-level reader is checked too: records lie
// back to back from offset 0 up to the valid length.
// Seeds: tests/fuzz/corpus/manifest_log/, written by tests/engine/manifest/fuzz_corpus_test.cc.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/assert.h"
#include "engine/manifest/string_file.h"
#include "manifest/manifest_log.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cascadefs;          // NOLINT(google-build-using-namespace): a fuzz target
  using namespace cascadefs::engine;  // NOLINT(google-build-using-namespace)
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const std::string path = "fuzz/MANIFEST-000001";

  std::uint64_t edits_seen = 0;
  const Result<ManifestSummary> summary =
      testing::RunInline(ReadManifest(std::make_unique<testing::StringFile>(path, bytes),
                                      [&edits_seen](const VersionEdit&, std::uint64_t) {
                                        ++edits_seen;
                                        return Status::OK();
                                      }));
  if (summary.ok()) {
    CFS_ASSERT(summary->file_size_bytes == size);
    CFS_ASSERT(summary->valid_length_bytes <= size);
    CFS_ASSERT(summary->torn_tail() == (summary->valid_length_bytes < size));
    CFS_ASSERT(summary->edit_count >= 1);
    CFS_ASSERT(summary->edit_count == edits_seen);
    CFS_ASSERT(summary->format_version >= 1);
    CFS_ASSERT(summary->format_version <= kStoreFormatVersion);
  } else {
    CFS_ASSERT(summary.status().IsCorruption() || summary.status().IsNotSupported());
  }

  ManifestReader reader(std::make_unique<testing::StringFile>(path, bytes));
  std::string record;
  std::uint64_t expected_offset = 0;
  // Bounded: each record takes at least kManifestRecordHeaderBytes + 1 bytes.
  while (true) {
    const Result<bool> more = testing::RunInline(reader.ReadRecord(&record));
    if (!more.ok()) {
      CFS_ASSERT(more.status().IsCorruption());
      break;
    }
    if (!*more) {
      CFS_ASSERT(reader.valid_length_bytes() == expected_offset);
      CFS_ASSERT(reader.torn_tail() == (expected_offset < size));
      break;
    }
    CFS_ASSERT(reader.last_record_offset() == expected_offset);
    CFS_ASSERT(!record.empty());
    expected_offset += kManifestRecordHeaderBytes + record.size();
    CFS_ASSERT(expected_offset <= size);
  }
  return 0;
}
