// manifest_edit_fuzz.cc: VersionEdit::DecodeFrom on arbitrary bytes.
//
// Properties checked on every input: decoding never reads out of bounds (ASan) and never
// asserts; a failure is Corruption or NotSupported and leaves the edit empty; a success
// re-encodes to bytes that decode to the same edit, and the re-encoding is a fixed point.
// Seeds: tests/fuzz/corpus/manifest_edit/, written by tests/engine/manifest/fuzz_corpus_test.cc.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/assert.h"
#include "manifest/version_edit.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using cascadefs::Status;
  using cascadefs::engine::VersionEdit;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  VersionEdit edit;
  const Status status = edit.DecodeFrom(input);
  if (!status.ok()) {
    CFS_ASSERT(status.IsCorruption() || status.IsNotSupported());
    CFS_ASSERT(edit == VersionEdit());
    return 0;
  }
  std::string encoded;
  edit.EncodeTo(&encoded);
  VersionEdit again;
  CFS_ASSERT(again.DecodeFrom(encoded).ok());
  CFS_ASSERT(again == edit);
  std::string reencoded;
  again.EncodeTo(&reencoded);
  CFS_ASSERT(reencoded == encoded);
  CFS_ASSERT(!edit.DebugString().empty());
  return 0;
}
