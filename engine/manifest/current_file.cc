// current_file.cc: SetCurrentFile and ReadCurrentFile (current_file.h).
#include "manifest/current_file.h"

#include <cstdio>
#include <memory>
#include <string_view>
#include <utility>

#include "engine/assert.h"

namespace cascadefs::engine {
namespace {

static_assert(kCurrentFileSizeMax == sizeof("MANIFEST-18446744073709551615\n") - 1);

// Writes `contents` to a new file at `path` and syncs it.
io::Task<Status> WriteSyncedFile(Env* env, const std::string& path, std::string_view contents) {
  Result<std::unique_ptr<WritableFile>> opened =
      co_await env->NewWritableFile(path, WriteMode::kCreateTruncate);
  if (!opened.ok()) co_return std::move(opened).status();
  std::unique_ptr<WritableFile> file = std::move(opened).value();
  Status status = co_await file->WriteAt(0, contents);
  if (status.ok()) status = co_await file->Sync();
  Status closed = co_await file->Close();
  if (status.ok()) status = std::move(closed);
  co_return status;
}

// `bytes` for an error message: printable ASCII as is, anything else as \xNN, in quotes.
std::string Quoted(std::string_view bytes) {
  std::string out = "\"";
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && c != '"' && c != '\\') {
      out.push_back(c);
    } else {
      char buf[5];
      std::snprintf(buf, sizeof(buf), "\\x%02x", byte);
      out.append(buf);
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace

std::string CurrentFileContents(std::uint64_t manifest_number) {
  std::string contents = BaseFileName(FileType::kManifest, manifest_number);
  contents.push_back('\n');
  CFS_ASSERT(contents.size() <= kCurrentFileSizeMax);
  return contents;
}

io::Task<Status> SetCurrentFile(Env* env, std::string dir, std::uint64_t manifest_number) {
  CFS_ASSERT(env != nullptr);
  const std::string contents = CurrentFileContents(manifest_number);
  const std::string temp_path = TempFileName(dir, manifest_number);
  Status status = co_await WriteSyncedFile(env, temp_path, contents);
  if (status.ok()) status = co_await env->RenameFile(temp_path, CurrentFileName(dir));
  if (!status.ok()) {
    // CURRENT is unchanged; the temporary file is garbage either way, so a failed removal
    // only leaves it for the store's cleanup of *.dbtmp files.
    Status removed = co_await env->RemoveFile(temp_path);
    static_cast<void>(removed);
    co_return status;
  }
  co_return co_await env->SyncDir(dir);
}

io::Task<Result<std::uint64_t>> ReadCurrentFile(Env* env, std::string dir) {
  CFS_ASSERT(env != nullptr);
  const std::string path = CurrentFileName(dir);
  Result<std::unique_ptr<RandomAccessFile>> opened = co_await env->NewRandomAccessFile(path);
  if (!opened.ok()) co_return std::move(opened).status();
  std::unique_ptr<RandomAccessFile> file = std::move(opened).value();
  const std::uint64_t size_bytes = file->size_bytes();
  if (size_bytes > kCurrentFileSizeMax) {
    co_return Status::Corruption(path + ": " + std::to_string(size_bytes) +
                                 " bytes, longer than any manifest name (at most " +
                                 std::to_string(kCurrentFileSizeMax) + ")");
  }
  std::string contents(static_cast<std::size_t>(size_bytes), '\0');
  if (!contents.empty()) {
    Result<std::size_t> read = co_await file->Read(0, contents.size(), contents.data());
    if (!read.ok()) co_return std::move(read).status();
    contents.resize(*read);  // short only if the file shrank since it was opened
  }
  std::string_view name = contents;
  std::uint64_t number = 0;
  FileType type = FileType::kCurrent;
  if (!name.ends_with('\n') || !ParseFileName(name.substr(0, name.size() - 1), &number, &type) ||
      type != FileType::kManifest) {
    co_return Status::Corruption(path + ": contents " + Quoted(contents) +
                                 " are not a manifest name (expected \"MANIFEST-NNNNNN\\n\")");
  }
  co_return number;
}

}  // namespace cascadefs::engine
