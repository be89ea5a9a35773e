// wire.h: the sync protocol's frames and messages (docs/formats/wire.md).
//
// A connection carries frames. A frame is a 6-byte header, then its body:
//   u32 body_length (little-endian) | u8 message type | u8 flags (bit 0: body is one zstd frame)
// body_length <= kFrameBodyBytesMax; a compressed body decompresses to <= kMessageBytesMax,
// checked before and while decompressing. Everything else is refused before use: an unknown
// type, unknown flag bits, a length over the bound, a body that does not decode exactly.
//
// A message's payload is a sequence of fields: varints (LEB128, at most 10 bytes, canonical),
// fixed little-endian integers, and strings (varint length, then bytes). Every list is preceded
// by its count and bounded (the k*Max constants below). A payload is decoded completely: bytes
// left over are an error. Chunk names travel as their 17-byte encoded form
// (fusefs/chunk_name.h), lists of names as one string of n x 17 bytes: no per-name overhead.
//
// This module knows bytes only: it checks shapes and bounds, and the receiver checks meaning
// (a FileRoot decodes, a chunk hashes to its name, a path is one the namespace can hold).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/result.h"
#include "engine/status.h"

namespace cascadefs::net {

// Versions this build speaks; Hello negotiates the highest both sides speak.
inline constexpr std::uint32_t kProtocolVersionMin = 1;
inline constexpr std::uint32_t kProtocolVersionMax = 1;

inline constexpr std::size_t kFrameHeaderBytes = 6;
// A frame's body as sent (compressed or not). 16 MiB.
inline constexpr std::size_t kFrameBodyBytesMax = 16 << 20;
// A message's payload after decompression. 24 MiB: a store batch of kBatchBytesMax chunk
// bytes plus its names and lengths fits with room to spare.
inline constexpr std::size_t kMessageBytesMax = 24 << 20;
// Chunk bytes in one StoreBatch or RetrieveReply. 12 MiB: with the most names a batch may
// carry (65,536 x ~24 bytes of name, flag and length) it still fits one frame body uncompressed
// (chunks are often incompressible).
inline constexpr std::size_t kBatchBytesMax = 12 << 20;
// Entries of one Commit, CommitReply or ListReply.
inline constexpr std::size_t kEntriesMax = 4096;
// Names in one Retrieve, CommitReply's missing list, StoreReply's refused list, or chunks in
// one StoreBatch / RetrieveReply.
inline constexpr std::size_t kNamesMax = 65536;
inline constexpr std::size_t kChunkNameBytes = 17;
// A chunk's bytes (fusefs kChunkSizeMax is 256 KiB; recipe nodes are smaller).
inline constexpr std::size_t kChunkBytesMax = 1 << 20;
// A path: '/'-separated components relative to the namespace root, no leading or trailing
// '/', no empty, "." or ".." component, no NUL; each component <= 255 bytes.
inline constexpr std::size_t kPathBytesMax = 4096;
inline constexpr std::size_t kPathComponentBytesMax = 255;
// Namespace names: 1..64 bytes of [A-Za-z0-9._-].
inline constexpr std::size_t kNamespaceBytesMax = 64;
// A host name (Hello, a journal entry's origin): 0..255 bytes, no NUL, no '/'.
inline constexpr std::size_t kHostBytesMax = 255;
// An encoded FileRoot (fusefs/recipe.h): opaque here, at most this long.
inline constexpr std::size_t kRootBytesMax = 64;
// Symlink targets (PATH_MAX).
inline constexpr std::size_t kSymlinkBytesMax = 4095;
// Error messages.
inline constexpr std::size_t kErrorMessageBytesMax = 1024;
// The longest long-poll a List may ask for.
inline constexpr std::uint32_t kListWaitMsMax = 60000;

enum class MessageType : std::uint8_t {
  kHello = 1,           // client -> hub, first frame
  kHelloOk = 2,         // hub -> client
  kError = 3,           // either way; the sender then closes the connection
  kCommit = 4,          // client -> hub
  kCommitReply = 5,     // hub -> client
  kStoreBatch = 6,      // client -> hub
  kStoreReply = 7,      // hub -> client
  kList = 8,            // client -> hub
  kListReply = 9,       // hub -> client
  kRetrieve = 10,       // client -> hub
  kRetrieveReply = 11,  // hub -> client
};
bool IsKnownMessageType(std::uint8_t type);
const char* MessageTypeName(MessageType type);

struct FrameHeader {
  std::uint32_t body_length = 0;
  MessageType type = MessageType::kError;
  bool compressed = false;
};

// The 6 header bytes: InvalidArgument naming the field when the length is over
// kFrameBodyBytesMax, the type unknown or a reserved flag bit set.
// REQUIRES: header.size() == kFrameHeaderBytes.
Result<FrameHeader> DecodeFrameHeader(std::string_view header);
// A whole frame for `payload`: compressed with zstd at `zstd_level` (1..19) when that saves at
// least 1/16 and the payload is at least 64 bytes. REQUIRES: payload.size() <= kMessageBytesMax
// and the compressed or raw body fits kFrameBodyBytesMax.
std::string EncodeFrame(MessageType type, std::string_view payload, int zstd_level);
// The payload of a frame whose header is `header` and body `body` (body.size() ==
// header.body_length): decompressed when flagged, bounded by kMessageBytesMax.
Result<std::string> DecodeFrameBody(const FrameHeader& header, std::string_view body);

// ---- Messages. Each Encode gives a payload; each Decode validates every bound above. ----

struct Hello {
  std::uint32_t version_min = kProtocolVersionMin;
  std::uint32_t version_max = kProtocolVersionMax;
  std::string host;  // the client's host name: the origin of its commits
  std::string Encode() const;
  static Result<Hello> Decode(std::string_view payload);
};

struct HelloOk {
  std::uint32_t version = kProtocolVersionMax;
  std::string hub_id;  // 16 bytes: the hub store's identity (a recreated hub has a new one)
  std::string Encode() const;
  static Result<HelloOk> Decode(std::string_view payload);
};

enum class ErrorCode : std::uint32_t {
  kBadMessage = 1,    // a frame or message failed validation
  kBadVersion = 2,    // no common protocol version
  kBadNamespace = 3,  // a namespace name that is not valid
  kInternal = 4,      // the hub failed (its store); the client retries later
  kShuttingDown = 5,
};
struct ErrorMessage {
  ErrorCode code = ErrorCode::kBadMessage;
  std::string message;  // <= kErrorMessageBytesMax
  std::string Encode() const;
  static Result<ErrorMessage> Decode(std::string_view payload);
};

enum class EntryKind : std::uint8_t {
  kFile = 1,       // root: an encoded FileRoot
  kDirectory = 2,  // an (empty or not) directory
  kSymlink = 3,    // target: the link's target
  kDelete = 4,     // the path and everything under it are gone
  kRename = 5,     // the path and everything under it moved to target (a path)
};
bool IsKnownEntryKind(std::uint8_t kind);

// One path's new state, as a client commits it and as the journal lists it.
struct ChangeEntry {
  std::string path;
  EntryKind kind = EntryKind::kFile;
  std::uint32_t mode = 0;     // permission bits, 0..07777 (files, directories, symlinks)
  std::int64_t mtime_ns = 0;  // files and symlinks
  std::string root;           // kFile: encoded FileRoot, 1..kRootBytesMax bytes; else empty
  std::string target;         // kSymlink: 1..kSymlinkBytesMax bytes; kRename: a path; else empty
};
// True when `path` satisfies the path rules above.
bool IsValidPath(std::string_view path);
bool IsValidNamespace(std::string_view name);

struct CommitEntry {
  ChangeEntry change;
  // The journal id of the version of `change.path` this change was made from; 0 when the
  // client never saw the path. For kRename the source path's; the target must be absent.
  std::uint64_t parent_jid = 0;
};

struct Commit {
  std::string ns;
  std::vector<CommitEntry> entries;  // 1..kEntriesMax
  std::string Encode() const;
  static Result<Commit> Decode(std::string_view payload);
};

enum class CommitStatus : std::uint8_t {
  kOk = 0,        // journaled: jid is the new entry's id
  kConflict = 1,  // parent_jid is stale: jid is the path's current id
  kMissing = 2,   // the hub lacks chunks of the root: they are in CommitReply::missing
  kRejected = 3,  // invalid (a root that does not decode, a rename onto an existing path)
};
struct CommitResult {
  CommitStatus status = CommitStatus::kOk;
  std::uint64_t jid = 0;
};
struct CommitReply {
  std::vector<CommitResult> results;  // one per Commit entry, in order
  std::string missing;                // n x 17 bytes, n <= kNamesMax
  std::string Encode() const;
  static Result<CommitReply> Decode(std::string_view payload);
};

struct ChunkBytes {
  std::string name;  // 17 bytes
  std::string data;  // 0..kChunkBytesMax bytes: the chunk, or its delta (below)
  // Empty: `data` is the chunk's bytes. Else the 17-byte name of a chunk the receiver holds,
  // and `data` is the chunk as a delta against it (net/delta.h): the version of a changed
  // chunk costs its difference, not its size.
  std::string delta_base;
};

struct StoreBatch {
  std::vector<ChunkBytes> chunks;  // 1..kNamesMax, data bytes together <= kBatchBytesMax
  std::string Encode() const;
  static Result<StoreBatch> Decode(std::string_view payload);
};

struct StoreReply {
  std::uint32_t stored = 0;  // chunks accepted (new or already held)
  std::string refused;       // n x 17 bytes: chunks whose bytes do not hash to their name
  std::string Encode() const;
  static Result<StoreReply> Decode(std::string_view payload);
};

struct List {
  std::string ns;
  std::uint64_t cursor = 0;       // entries with jid > cursor
  std::uint32_t wait_ms = 0;      // long poll: 0..kListWaitMsMax
  std::uint32_t max_entries = 0;  // 1..kEntriesMax
  std::string Encode() const;
  static Result<List> Decode(std::string_view payload);
};

struct JournalEntry {
  std::uint64_t jid = 0;
  ChangeEntry change;
  std::int64_t time_ns = 0;  // when the hub journaled it
  std::string origin;        // the committing client's host
};

struct ListReply {
  std::uint64_t head_jid = 0;         // the namespace's newest jid
  std::vector<JournalEntry> entries;  // jid ascending, 0..kEntriesMax
  std::string Encode() const;
  static Result<ListReply> Decode(std::string_view payload);
};

struct Retrieve {
  std::string names;  // n x 17 bytes, 1 <= n <= kNamesMax
  // Empty, or n x 17 bytes: for each name a chunk the client holds that is likely similar
  // (the old version at the same place in the file), which the hub may send a delta against;
  // 17 zero bytes for none.
  std::string bases;
  std::string Encode() const;
  static Result<Retrieve> Decode(std::string_view payload);
};

struct RetrievedChunk {
  std::string name;  // 17 bytes
  bool found = false;
  std::string data;        // when found: the chunk, or its delta against delta_base
  std::string delta_base;  // empty, or the base the client offered: `data` is a delta
};
struct RetrieveReply {
  // A prefix of the asked names, in order: the hub stops before kBatchBytesMax; the client asks
  // again for the rest.
  std::vector<RetrievedChunk> chunks;
  std::string Encode() const;
  static Result<RetrieveReply> Decode(std::string_view payload);
};

}  // namespace cascadefs::net
