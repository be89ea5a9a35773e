// wire.cc: frames (header, zstd body) and the Encode/Decode of every sync message.
//
// Layouts are drawn in docs/formats/wire.md; keep the two in step. Decoders take the whole
// payload, check every bound of wire.h before allocating or using a field, and fail with
// InvalidArgument naming the message, the entry and the field. Encoders assume valid input and
// check it, in debug builds, by decoding what they wrote (the property seen from both sides).
//
// Thread safety: free functions over values.
#include "net/wire.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include <zstd.h>

#include "engine/assert.h"
#include "wire_coding.h"

namespace cascadefs::net {
namespace {

static_assert(kFrameHeaderBytes == 4 + 1 + 1, "u32 length, u8 type, u8 flags");
static_assert(kFrameBodyBytesMax <= UINT32_MAX, "the length field is a u32");
static_assert(kBatchBytesMax <= kMessageBytesMax, "a full batch must fit one message");
static_assert(kChunkBytesMax <= kBatchBytesMax, "one chunk must fit one batch");
static_assert(kBatchBytesMax + kNamesMax * (kChunkNameBytes + 1 + 4) + 16 <= kFrameBodyBytesMax,
              "a full batch must fit one frame body even when it does not compress");

constexpr std::uint8_t kFlagCompressed = 0x01;
constexpr std::uint8_t kFlagsKnown = kFlagCompressed;
// Compression is tried only from this payload size, and kept only when it saves at least
// 1/kCompressSavingDivisor of the payload: below that the receiver's decompression costs more
// than the bytes saved.
constexpr std::size_t kCompressPayloadBytesMin = 64;
constexpr std::size_t kCompressSavingDivisor = 16;
// The decompressor's window: 2^25 = 32 MiB covers any frame of kMessageBytesMax and refuses a
// frame asking for more, bounding the memory a peer can make us allocate.
constexpr int kZstdWindowLogMax = 25;
static_assert((std::size_t{1} << kZstdWindowLogMax) >= kMessageBytesMax);
// The fewest bytes an encoded ChangeEntry takes: path (length + 1 byte), kind, mode, mtime_ns,
// root and target lengths; a CommitEntry adds parent_jid, a JournalEntry jid, time_ns and
// origin's length. Counts are checked against them before vectors are sized.
constexpr std::size_t kChangeBytesMin = 2 + 1 + 1 + 8 + 1 + 1;
constexpr std::size_t kCommitEntryBytesMin = kChangeBytesMin + 1;
constexpr std::size_t kJournalEntryBytesMin = 1 + kChangeBytesMin + 8 + 1;
// Bytes a list of names may hold.
constexpr std::size_t kNameListBytesMax = kNamesMax * kChunkNameBytes;

void PutU32Le(std::uint32_t value, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

// `bytes` for an error message: quoted, non-printable bytes escaped, at most 64 bytes shown.
std::string Quote(std::string_view bytes) {
  constexpr std::size_t kShownBytesMax = 64;
  std::string out = "\"";
  for (std::size_t i = 0; i < bytes.size() && i < kShownBytesMax; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  if (bytes.size() > kShownBytesMax) out += "...";
  return out;
}

// Why `path` breaks the path rules of wire.h, or nullptr when it keeps them.
const char* PathError(std::string_view path) {
  if (path.empty()) return "empty";
  if (path.size() > kPathBytesMax) return "longer than 4096 bytes";
  if (path.front() == '/') return "leading '/'";
  if (path.back() == '/') return "trailing '/'";
  if (path.find('\0') != std::string_view::npos) return "NUL byte";
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view component = path.substr(start, end - start);
    if (component.empty()) return "empty component";
    if (component == "." || component == "..") return "\".\" or \"..\" component";
    if (component.size() > kPathComponentBytesMax) return "component longer than 255 bytes";
    start = end + 1;
  }
  return nullptr;
}

const char* NamespaceError(std::string_view name) {
  if (name.empty()) return "empty";
  if (name.size() > kNamespaceBytesMax) return "longer than 64 bytes";
  if (name == "." || name == "..") return "\".\" or \"..\"";
  for (const char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return "a byte outside [A-Za-z0-9._-]";
  }
  return nullptr;
}

const char* HostError(std::string_view host) {
  if (host.size() > kHostBytesMax) return "longer than 255 bytes";
  if (host.find('\0') != std::string_view::npos) return "NUL byte";
  if (host.find('/') != std::string_view::npos) return "'/' byte";
  return nullptr;
}

Status ReadPath(WireReader& reader, std::string_view field, std::string* path) {
  CFS_RETURN_IF_ERROR(reader.String(field, 1, kPathBytesMax, path));
  if (const char* error = PathError(*path)) {
    return WireReader::Error(std::string(field) + " " + Quote(*path), error);
  }
  return Status::OK();
}

Status ReadNamespace(WireReader& reader, std::string* ns) {
  CFS_RETURN_IF_ERROR(reader.String("ns", 1, kNamespaceBytesMax, ns));
  if (const char* error = NamespaceError(*ns)) {
    return WireReader::Error("ns " + Quote(*ns), error);
  }
  return Status::OK();
}

Status ReadHost(WireReader& reader, std::string_view field, std::string* host) {
  CFS_RETURN_IF_ERROR(reader.String(field, 0, kHostBytesMax, host));
  if (const char* error = HostError(*host)) {
    return WireReader::Error(std::string(field) + " " + Quote(*host), error);
  }
  return Status::OK();
}

// A list of names: one string of n x 17 bytes, min_names <= n <= kNamesMax.
Status ReadNameList(WireReader& reader, std::string_view field, std::size_t min_names,
                    std::string* names) {
  CFS_RETURN_IF_ERROR(reader.String(field, min_names * kChunkNameBytes, kNameListBytesMax, names));
  if (names->size() % kChunkNameBytes != 0) {
    return WireReader::Error(
        field, std::to_string(names->size()) + " bytes, not a multiple of 17 (one name)");
  }
  return Status::OK();
}

bool IsValidNameList(std::string_view names) {
  return names.size() % kChunkNameBytes == 0 && names.size() <= kNameListBytesMax;
}

// ChangeEntry: path, kind, mode, mtime_ns, root, target (docs/formats/wire.md).
void PutChange(WireWriter& writer, const ChangeEntry& change) {
  writer.PutString(change.path);
  writer.PutU8(static_cast<std::uint8_t>(change.kind));
  writer.PutVarint(change.mode);
  writer.PutFixed64(static_cast<std::uint64_t>(change.mtime_ns));
  writer.PutString(change.root);
  writer.PutString(change.target);
}

Status ReadChange(WireReader& reader, ChangeEntry* change) {
  CFS_RETURN_IF_ERROR(ReadPath(reader, "path", &change->path));
  std::uint8_t kind = 0;
  CFS_RETURN_IF_ERROR(reader.U8("kind", &kind));
  if (!IsKnownEntryKind(kind)) {
    return WireReader::Error("kind", "unknown kind " + std::to_string(kind));
  }
  change->kind = static_cast<EntryKind>(kind);
  CFS_RETURN_IF_ERROR(reader.Varint32("mode", 07777, &change->mode));
  std::uint64_t mtime_ns = 0;
  CFS_RETURN_IF_ERROR(reader.Fixed64("mtime_ns", &mtime_ns));
  change->mtime_ns = static_cast<std::int64_t>(mtime_ns);
  const bool is_file = change->kind == EntryKind::kFile;
  CFS_RETURN_IF_ERROR(
      reader.String("root", is_file ? 1 : 0, is_file ? kRootBytesMax : 0, &change->root));
  switch (change->kind) {
    case EntryKind::kSymlink:
      CFS_RETURN_IF_ERROR(reader.String("target", 1, kSymlinkBytesMax, &change->target));
      if (change->target.find('\0') != std::string::npos) {
        return WireReader::Error("target " + Quote(change->target), "NUL byte");
      }
      break;
    case EntryKind::kRename:
      CFS_RETURN_IF_ERROR(ReadPath(reader, "target", &change->target));
      break;
    case EntryKind::kFile:
    case EntryKind::kDirectory:
    case EntryKind::kDelete:
      CFS_RETURN_IF_ERROR(reader.String("target", 0, 0, &change->target));
      break;
  }
  return Status::OK();
}

std::string EntryContext(std::size_t index) { return "entry " + std::to_string(index); }

}  // namespace

// ---- Frames. ----

bool IsKnownMessageType(std::uint8_t type) {
  return type >= static_cast<std::uint8_t>(MessageType::kHello) &&
         type <= static_cast<std::uint8_t>(MessageType::kRetrieveReply);
}

const char* MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kHello:
      return "Hello";
    case MessageType::kHelloOk:
      return "HelloOk";
    case MessageType::kError:
      return "Error";
    case MessageType::kCommit:
      return "Commit";
    case MessageType::kCommitReply:
      return "CommitReply";
    case MessageType::kStoreBatch:
      return "StoreBatch";
    case MessageType::kStoreReply:
      return "StoreReply";
    case MessageType::kList:
      return "List";
    case MessageType::kListReply:
      return "ListReply";
    case MessageType::kRetrieve:
      return "Retrieve";
    case MessageType::kRetrieveReply:
      return "RetrieveReply";
  }
  return "unknown";
}

Result<FrameHeader> DecodeFrameHeader(std::string_view header) {
  CFS_ASSERT(header.size() == kFrameHeaderBytes);
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(header.data());
  FrameHeader out;
  out.body_length =
      static_cast<std::uint32_t>(bytes[0]) | static_cast<std::uint32_t>(bytes[1]) << 8 |
      static_cast<std::uint32_t>(bytes[2]) << 16 | static_cast<std::uint32_t>(bytes[3]) << 24;
  if (out.body_length > kFrameBodyBytesMax) {
    return Status::InvalidArgument("frame header: body length " + std::to_string(out.body_length) +
                                   " over the limit " + std::to_string(kFrameBodyBytesMax));
  }
  if (!IsKnownMessageType(bytes[4])) {
    return Status::InvalidArgument("frame header: unknown message type " +
                                   std::to_string(bytes[4]));
  }
  out.type = static_cast<MessageType>(bytes[4]);
  if ((bytes[5] & ~kFlagsKnown) != 0) {
    return Status::InvalidArgument("frame header: reserved flag bits set in flags " +
                                   std::to_string(bytes[5]));
  }
  out.compressed = (bytes[5] & kFlagCompressed) != 0;
  return out;
}

std::string EncodeFrame(MessageType type, std::string_view payload, int zstd_level) {
  CFS_ASSERT(payload.size() <= kMessageBytesMax);
  CFS_ASSERT(zstd_level >= 1 && zstd_level <= 19);
  std::string frame(kFrameHeaderBytes, '\0');
  bool compressed = false;
  if (payload.size() >= kCompressPayloadBytesMin) {
    const std::size_t bound = ZSTD_compressBound(payload.size());
    frame.resize(kFrameHeaderBytes + bound);
    const std::size_t size = ZSTD_compress(frame.data() + kFrameHeaderBytes, bound, payload.data(),
                                           payload.size(), zstd_level);
    // A compression failure (only an allocation failure here) falls back to a raw body.
    if (!ZSTD_isError(size) && size <= payload.size() - payload.size() / kCompressSavingDivisor) {
      frame.resize(kFrameHeaderBytes + size);
      compressed = true;
    }
  }
  if (!compressed) {
    frame.resize(kFrameHeaderBytes);
    frame.append(payload);
  }
  const std::size_t body_bytes = frame.size() - kFrameHeaderBytes;
  CFS_ASSERT(body_bytes <= kFrameBodyBytesMax);
  PutU32Le(static_cast<std::uint32_t>(body_bytes), frame.data());
  frame[4] = static_cast<char>(type);
  frame[5] = static_cast<char>(compressed ? kFlagCompressed : 0);
  return frame;
}

Result<std::string> DecodeFrameBody(const FrameHeader& header, std::string_view body) {
  CFS_ASSERT(body.size() == header.body_length);
  CFS_ASSERT(body.size() <= kFrameBodyBytesMax);
  if (!header.compressed) return std::string(body);

  const std::string_view context = "frame body (zstd)";
  // Exactly one zstd frame: the magic number first (no skippable frame), then a frame that
  // ends exactly where the body ends.
  if (body.size() < 4 ||
      (static_cast<std::uint32_t>(static_cast<std::uint8_t>(body[0])) |
       static_cast<std::uint32_t>(static_cast<std::uint8_t>(body[1])) << 8 |
       static_cast<std::uint32_t>(static_cast<std::uint8_t>(body[2])) << 16 |
       static_cast<std::uint32_t>(static_cast<std::uint8_t>(body[3])) << 24) != ZSTD_MAGICNUMBER) {
    return WireReader::Error(context, "not a zstd frame");
  }
  const unsigned long long content_bytes = ZSTD_getFrameContentSize(body.data(), body.size());
  if (content_bytes == ZSTD_CONTENTSIZE_ERROR) {
    return WireReader::Error(context, "bad frame header");
  }
  if (content_bytes != ZSTD_CONTENTSIZE_UNKNOWN && content_bytes > kMessageBytesMax) {
    return WireReader::Error(context, "content size " + std::to_string(content_bytes) +
                                          " over the limit " + std::to_string(kMessageBytesMax));
  }
  const std::size_t frame_bytes = ZSTD_findFrameCompressedSize(body.data(), body.size());
  if (ZSTD_isError(frame_bytes)) {
    return WireReader::Error(context,
                             std::string("truncated frame: ") + ZSTD_getErrorName(frame_bytes));
  }
  if (frame_bytes != body.size()) {
    return WireReader::Error(
        context, std::to_string(body.size() - frame_bytes) + " trailing bytes after the frame");
  }

  // Streaming decompression into a buffer that never grows past kMessageBytesMax + 1: one byte
  // more than the limit proves the content too large, whatever the header claimed.
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  CFS_ASSERT(dctx != nullptr);
  const std::size_t set =
      ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, kZstdWindowLogMax);
  CFS_ASSERT(!ZSTD_isError(set));
  constexpr std::size_t kOutputBytesCap = kMessageBytesMax + 1;
  std::size_t capacity = content_bytes != ZSTD_CONTENTSIZE_UNKNOWN
                             ? static_cast<std::size_t>(content_bytes) + 1
                             : ZSTD_DStreamOutSize();
  std::string out(std::min(capacity, kOutputBytesCap), '\0');
  ZSTD_inBuffer input{body.data(), body.size(), 0};
  ZSTD_outBuffer output{out.data(), out.size(), 0};
  // Each pass either consumes input, produces output, or ends the frame; the loop is bounded
  // by the body and the output cap.
  for (;;) {
    const std::size_t ret = ZSTD_decompressStream(dctx.get(), &output, &input);
    if (ZSTD_isError(ret)) {
      return WireReader::Error(context, std::string("corrupt: ") + ZSTD_getErrorName(ret));
    }
    if (output.pos > kMessageBytesMax) {
      return WireReader::Error(
          context, "decompresses to more than " + std::to_string(kMessageBytesMax) + " bytes");
    }
    if (ret == 0) break;  // the frame is complete
    if (output.pos == output.size) {
      CFS_ASSERT(out.size() < kOutputBytesCap);  // else output.pos > kMessageBytesMax above
      out.resize(std::min(out.size() * 2, kOutputBytesCap));
      output.dst = out.data();
      output.size = out.size();
    } else if (input.pos == input.size) {
      return WireReader::Error(context, "truncated frame");
    }
  }
  if (input.pos != input.size) {
    return WireReader::Error(context, "trailing bytes after the frame");
  }
  if (content_bytes != ZSTD_CONTENTSIZE_UNKNOWN && output.pos != content_bytes) {
    return WireReader::Error(context, "content size does not match the header");
  }
  out.resize(output.pos);
  return out;
}

// ---- Validation helpers. ----

bool IsKnownEntryKind(std::uint8_t kind) {
  return kind >= static_cast<std::uint8_t>(EntryKind::kFile) &&
         kind <= static_cast<std::uint8_t>(EntryKind::kRename);
}

bool IsValidPath(std::string_view path) { return PathError(path) == nullptr; }

bool IsValidNamespace(std::string_view name) { return NamespaceError(name) == nullptr; }

// ---- Hello. ----

std::string Hello::Encode() const {
  WireWriter writer;
  writer.PutVarint(version_min);
  writer.PutVarint(version_max);
  writer.PutString(host);
  std::string payload = std::move(writer).Finish();
  CFS_DASSERT(Hello::Decode(payload).ok());
  return payload;
}

Result<Hello> Hello::Decode(std::string_view payload) {
  WireReader reader(payload);
  Hello hello;
  Status s = [&]() -> Status {
    CFS_RETURN_IF_ERROR(reader.Varint32("version_min", UINT32_MAX, &hello.version_min));
    CFS_RETURN_IF_ERROR(reader.Varint32("version_max", UINT32_MAX, &hello.version_max));
    if (hello.version_min == 0 || hello.version_min > hello.version_max) {
      return WireReader::Error("versions", std::to_string(hello.version_min) + ".." +
                                               std::to_string(hello.version_max) +
                                               " is not a range of versions >= 1");
    }
    CFS_RETURN_IF_ERROR(ReadHost(reader, "host", &hello.host));
    return reader.Finish();
  }();
  if (!s.ok()) return std::move(s).WithContext("hello");
  return hello;
}

// ---- HelloOk. ----

std::string HelloOk::Encode() const {
  WireWriter writer;
  writer.PutVarint(version);
  writer.PutString(hub_id);
  std::string payload = std::move(writer).Finish();
  CFS_DASSERT(HelloOk::Decode(payload).ok());
  return payload;
}

Result<HelloOk> HelloOk::Decode(std::string_view payload) {
  constexpr std::size_t kHubIdBytes = 16;
  WireReader reader(payload);
  HelloOk ok;
  Status s = [&]() -> Status {
    CFS_RETURN_IF_ERROR(reader.Varint32("version", UINT32_MAX, &ok.version));
    if (ok.version == 0) return WireReader::Error("version", "0 is not a version");
    CFS_RETURN_IF_ERROR(reader.String("hub_id", kHubIdBytes, kHubIdBytes, &ok.hub_id));
    return reader.Finish();
  }();
  if (!s.ok()) return std::move(s).WithContext("hello_ok");
  return ok;
}

// ---- ErrorMessage. ----

std::string ErrorMessage::Encode() const {
  WireWriter writer;
  writer.PutVarint(static_cast<std::uint32_t>(code));
  writer.PutString(message);
  std::string payload = std::move(writer).Finish();
  CFS_DASSERT(ErrorMessage::Decode(payload).ok());
  return payload;
}

Result<ErrorMessage> ErrorMessage::Decode(std::string_view payload) {
  WireReader reader(payload);
  ErrorMessage error;
  Status s = [&]() -> Status {
    std::uint32_t code = 0;
    CFS_RETURN_IF_ERROR(
        reader.Varint32("code", static_cast<std::uint32_t>(ErrorCode::kShuttingDown), &code));
    if (code == 0) return WireReader::Error("code", "0 is not an error code");
    error.code = static_cast<ErrorCode>(code);
    CFS_RETURN_IF_ERROR(reader.String("message", 0, kErrorMessageBytesMax, &error.message));
    return reader.Finish();
  }();
  if (!s.ok()) return std::move(s).WithContext("error");
  return error;
}

// ---- Commit. ----

std::string Commit::Encode() const {
  WireWriter writer;
  writer.PutString(ns);
  writer.PutVarint(entries.size());
  for (const CommitEntry& entry : entries) {
    PutChange(writer, entry.change);
    writer.PutVarint(entry.parent_jid);
  }
  std::string payload = std::move(writer).Finish();
  CFS_DASSERT(Commit::Decode(payload).ok());
  return payload;
}

Result<Commit> Commit::Decode(std::string_view payload) {
  WireReader reader(payload);
  Commit commit;
  Status s = [&]() -> Status {
    CFS_RETURN_IF_ERROR(ReadNamespace(reader, &commit.ns));
    std::uint64_t count = 0;
    CFS_RETURN_IF_ERROR(reader.Varint("entry count", kEntriesMax, &count));
    if (count == 0) return WireReader::Error("entry count", "0: a commit holds entries");
    CFS_RETURN_IF_ERROR(reader.CountFits("entry count", count, kCommitEntryBytesMin));
    commit.entries.resize(static_cast<std::size_t>(count));
    for (std::size_t i = 0; i < commit.entries.size(); ++i) {
      CommitEntry& entry = commit.entries[i];
      Status entry_status = ReadChange(reader, &entry.change);
      if (entry_status.ok()) {
        entry_status = reader.Varint("parent_jid", UINT64_MAX, &entry.parent_jid);
      }
      if (!entry_status.ok()) return std::move(entry_status).WithContext(EntryContext(i));
    }
    return reader.Finish();
  }();
  if (!s.ok()) return std::move(s).WithContext("commit");
  return commit;
}

// ---- CommitReply. ----

std::string CommitReply::Encode() const {
  WireWriter writer;
  writer.PutVarint(results.size());
  for (const CommitResult& result : results) {
    writer.PutU8(static_cast<std::uint8_t>(result.status));
    writer.PutVarint(result.jid);
  }
  CFS_DASSERT(IsValidNameList(missing));
  writer.PutString(missing);
  std::string payload = std::move(writer).Finish();
  CFS_DASSERT(CommitReply::Decode(payload).ok());
  return payload;
}

Result<CommitReply> CommitReply::Decode(std::string_view payload) {
  WireReader reader(payload);
  CommitReply reply;
  Status s = [&]() -> Status {
    std::uint64_t count = 0;
    CFS_RETURN_IF_ERROR(reader.Varint("result count", kEntriesMax, &count));
    CFS_RETURN_IF_ERROR(reader.CountFits("result count", count, 2));
    reply.results.resize(static_cast<std::size_t>(count));
    for (std::size_t i = 0; i < reply.results.size(); ++i) {
      CommitResult& result = reply.results[i];
      std::uint8_t status = 0;
      Status entry_status = reader.U8("status", &status);
      if (entry_status.ok() && status > static_cast<std::uint8_t>(CommitStatus::kRejected)) {
        entry_status = WireReader::Error("status", "unknown status " + std::to_string(status));
      }
      result.status = static_cast<CommitStatus>(status);
      if (entry_status.ok()) entry_status = reader.Varint("jid", UINT64_MAX, &result.jid);
      if (!entry_status.ok()) return std::move(entry_status).WithContext(EntryContext(i));
    }
    CFS_RETURN_IF_ERROR(ReadNameList(reader, "missing", 0, &reply.missing));
    return reader.Finish();
  }();
  if (!s.ok()) return std::move(s).WithContext("commit_reply");
  return reply;
}

// ---- StoreBatch. ----

std::string StoreBatch::Encode() const {
  WireWriter writer;
  writer.PutVarint(chunks.size());
  for (const ChunkBytes& chunk : chunks) {
    CFS_ASSERT(chunk.name.size() == kChunkNameBytes);
    CFS_ASSERT(chunk.delta_base.empty() || chunk.delta_base.size() == kChunkNameBytes);
    writer.PutBytes(chunk.name);
    writer.PutU8(chunk.delta_base.empty() ? 0 : 1);
    writer.PutBytes(chunk.delta_base);
    writer.PutString(chunk.data);
  }
  std::string payload = std::move(writer).Finish();
  CFS_DASSERT(StoreBatch::Decode(payload).ok());
  return payload;
}

Result<StoreBatch> StoreBatch::Decode(std::string_view payload) {
  WireReader reader(payload);
  StoreBatch batch;
  Status s = [&]() -> Status {
    std::uint64_t count = 0;
    CFS_RETURN_IF_ERROR(reader.Varint("chunk count", kNamesMax, &count));
    if (count == 0) return WireReader::Error("chunk count", "0: a batch holds chunks");
    CFS_RETURN_IF_ERROR(reader.CountFits("chunk count", count, kChunkNameBytes + 2));
    batch.chunks.resize(static_cast<std::size_t>(count));
    std::size_t data_bytes = 0;
    for (std::size_t i = 0; i < batch.chunks.size(); ++i) {
      ChunkBytes& chunk = batch.chunks[i];
      Status chunk_status = [&]() -> Status {
        CFS_RETURN_IF_ERROR(reader.Bytes("name", kChunkNameBytes, &chunk.name));
        std::uint8_t form = 0;
        CFS_RETURN_IF_ERROR(reader.U8("form", &form));
        if (form > 1) return WireReader::Error("form", std::to_string(form) + " is not 0 or 1");
        if (form == 1) {
          CFS_RETURN_IF_ERROR(reader.Bytes("delta base", kChunkNameBytes, &chunk.delta_base));
        }
        return reader.String("data", 0, kChunkBytesMax, &chunk.data);
      }();
      if (chunk_status.ok()) {
        data_bytes += chunk.data.size();
        if (data_bytes > kBatchBytesMax) {
          chunk_status = WireReader::Error(
              "data", "the batch's chunk bytes exceed " + std::to_string(kBatchBytesMax));
        }
      }
      if (!chunk_status.ok()) {
        return std::move(chunk_status).WithContext("chunk " + std::to_string(i));
      }
    }
    return reader.Finish();
  }();
  if (!s.ok()) return std::move(s).WithContext("store_batch");
  return batch;
}

// ---- StoreReply. ----

std::string StoreReply::Encode() const {
  WireWriter writer;
  writer.PutVarint(stored);
  CFS_DASSERT(IsValidNameList(refused));
  writer.PutString(refused);
  std::string payload = std::move(writer).Finish();
  CFS_DASSERT(StoreReply::Decode(payload).ok());
  return payload;
}

Result<StoreReply> StoreReply::Decode(std::string_view payload) {
  WireReader reader(payload);
  StoreReply reply;
  Status s = [&]() -> Status {
    CFS_RETURN_IF_ERROR(reader.Varint32("stored", kNamesMax, &reply.stored));
    CFS_RETURN_IF_ERROR(ReadNameList(reader, "refused", 0, &reply.refused));
    return reader.Finish();
  }();
  if (!s.ok()) return std::move(s).WithContext("store_reply");
  return reply;
}

// ---- List. ----

std::string List::Encode() const {
  WireWriter writer;
  writer.PutString(ns);
  writer.PutVarint(cursor);
  writer.PutVarint(wait_ms);
  writer.PutVarint(max_entries);
  std::string payload = std::move(writer).Finish();
  CFS_DASSERT(List::Decode(payload).ok());
  return payload;
}

Result<List> List::Decode(std::string_view payload) {
  WireReader reader(payload);
  List list;
  Status s = [&]() -> Status {
    CFS_RETURN_IF_ERROR(ReadNamespace(reader, &list.ns));
    CFS_RETURN_IF_ERROR(reader.Varint("cursor", UINT64_MAX, &list.cursor));
    CFS_RETURN_IF_ERROR(reader.Varint32("wait_ms", kListWaitMsMax, &list.wait_ms));
    CFS_RETURN_IF_ERROR(reader.Varint32("max_entries", kEntriesMax, &list.max_entries));
    if (list.max_entries == 0) return WireReader::Error("max_entries", "0: must be 1..4096");
    return reader.Finish();
  }();
  if (!s.ok()) return std::move(s).WithContext("list");
  return list;
}

// ---- ListReply. ----

std::string ListReply::Encode() const {
  WireWriter writer;
  writer.PutVarint(head_jid);
  writer.PutVarint(entries.size());
  for (const JournalEntry& entry : entries) {
    writer.PutVarint(entry.jid);
    PutChange(writer, entry.change);
    writer.PutFixed64(static_cast<std::uint64_t>(entry.time_ns));
    writer.PutString(entry.origin);
  }
  std::string payload = std::move(writer).Finish();
  CFS_DASSERT(ListReply::Decode(payload).ok());
  return payload;
}

Result<ListReply> ListReply::Decode(std::string_view payload) {
  WireReader reader(payload);
  ListReply reply;
  Status s = [&]() -> Status {
    CFS_RETURN_IF_ERROR(reader.Varint("head_jid", UINT64_MAX, &reply.head_jid));
    std::uint64_t count = 0;
    CFS_RETURN_IF_ERROR(reader.Varint("entry count", kEntriesMax, &count));
    CFS_RETURN_IF_ERROR(reader.CountFits("entry count", count, kJournalEntryBytesMin));
    reply.entries.resize(static_cast<std::size_t>(count));
    std::uint64_t previous_jid = 0;
    for (std::size_t i = 0; i < reply.entries.size(); ++i) {
      JournalEntry& entry = reply.entries[i];
      Status entry_status = [&]() -> Status {
        CFS_RETURN_IF_ERROR(reader.Varint("jid", UINT64_MAX, &entry.jid));
        // Journal ids start at 1, ascend, and none is newer than the head.
        if (entry.jid <= previous_jid || entry.jid > reply.head_jid) {
          return WireReader::Error("jid", std::to_string(entry.jid) + " not in " +
                                              std::to_string(previous_jid + 1) + ".." +
                                              std::to_string(reply.head_jid));
        }
        previous_jid = entry.jid;
        CFS_RETURN_IF_ERROR(ReadChange(reader, &entry.change));
        std::uint64_t time_ns = 0;
        CFS_RETURN_IF_ERROR(reader.Fixed64("time_ns", &time_ns));
        entry.time_ns = static_cast<std::int64_t>(time_ns);
        return ReadHost(reader, "origin", &entry.origin);
      }();
      if (!entry_status.ok()) return std::move(entry_status).WithContext(EntryContext(i));
    }
    return reader.Finish();
  }();
  if (!s.ok()) return std::move(s).WithContext("list_reply");
  return reply;
}

// ---- Retrieve. ----

std::string Retrieve::Encode() const {
  CFS_DASSERT(IsValidNameList(names) && !names.empty());
  CFS_DASSERT(bases.empty() || bases.size() == names.size());
  WireWriter writer;
  writer.PutString(names);
  writer.PutString(bases);
  std::string payload = std::move(writer).Finish();
  CFS_DASSERT(Retrieve::Decode(payload).ok());
  return payload;
}

Result<Retrieve> Retrieve::Decode(std::string_view payload) {
  WireReader reader(payload);
  Retrieve retrieve;
  Status s = [&]() -> Status {
    CFS_RETURN_IF_ERROR(ReadNameList(reader, "names", 1, &retrieve.names));
    CFS_RETURN_IF_ERROR(ReadNameList(reader, "bases", 0, &retrieve.bases));
    if (!retrieve.bases.empty() && retrieve.bases.size() != retrieve.names.size()) {
      return WireReader::Error("bases", "not one per name");
    }
    return reader.Finish();
  }();
  if (!s.ok()) return std::move(s).WithContext("retrieve");
  return retrieve;
}

// ---- RetrieveReply. ----

std::string RetrieveReply::Encode() const {
  WireWriter writer;
  writer.PutVarint(chunks.size());
  for (const RetrievedChunk& chunk : chunks) {
    CFS_ASSERT(chunk.name.size() == kChunkNameBytes);
    CFS_DASSERT(chunk.found || (chunk.data.empty() && chunk.delta_base.empty()));
    CFS_ASSERT(chunk.delta_base.empty() || chunk.delta_base.size() == kChunkNameBytes);
    writer.PutBytes(chunk.name);
    writer.PutU8(!chunk.found ? 0 : chunk.delta_base.empty() ? 1 : 2);
    writer.PutBytes(chunk.delta_base);
    if (chunk.found) writer.PutString(chunk.data);
  }
  std::string payload = std::move(writer).Finish();
  CFS_DASSERT(RetrieveReply::Decode(payload).ok());
  return payload;
}

Result<RetrieveReply> RetrieveReply::Decode(std::string_view payload) {
  WireReader reader(payload);
  RetrieveReply reply;
  Status s = [&]() -> Status {
    std::uint64_t count = 0;
    CFS_RETURN_IF_ERROR(reader.Varint("chunk count", kNamesMax, &count));
    CFS_RETURN_IF_ERROR(reader.CountFits("chunk count", count, kChunkNameBytes + 1));
    reply.chunks.resize(static_cast<std::size_t>(count));
    std::size_t data_bytes = 0;
    for (std::size_t i = 0; i < reply.chunks.size(); ++i) {
      RetrievedChunk& chunk = reply.chunks[i];
      Status chunk_status = [&]() -> Status {
        CFS_RETURN_IF_ERROR(reader.Bytes("name", kChunkNameBytes, &chunk.name));
        std::uint8_t found = 0;
        CFS_RETURN_IF_ERROR(reader.U8("found", &found));
        if (found > 2) {
          return WireReader::Error("found", std::to_string(found) + " is not 0, 1 or 2");
        }
        chunk.found = found != 0;
        if (!chunk.found) return Status::OK();
        if (found == 2) {
          CFS_RETURN_IF_ERROR(reader.Bytes("delta base", kChunkNameBytes, &chunk.delta_base));
        }
        CFS_RETURN_IF_ERROR(reader.String("data", 0, kChunkBytesMax, &chunk.data));
        data_bytes += chunk.data.size();
        if (data_bytes > kBatchBytesMax) {
          return WireReader::Error(
              "data", "the reply's chunk bytes exceed " + std::to_string(kBatchBytesMax));
        }
        return Status::OK();
      }();
      if (!chunk_status.ok()) {
        return std::move(chunk_status).WithContext("chunk " + std::to_string(i));
      }
    }
    return reader.Finish();
  }();
  if (!s.ok()) return std::move(s).WithContext("retrieve_reply");
  return reply;
}

}  // namespace cascadefs::net
