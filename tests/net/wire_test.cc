// wire_test.cc: frames and messages of the sync protocol (net/wire.h).
//
// Goal: every message survives Encode then Decode unchanged, every bound of wire.h is refused
// by Decode with an InvalidArgument naming the field, and frames refuse oversized lengths,
// unknown types, reserved flags, lying or oversized zstd bodies and trailing bytes.
// Method: hand-built values and hand-edited encodings; zstd bodies made with libzstd.
#include "net/wire.h"

#include <random>
#include <string>

#include <gtest/gtest.h>
#include <zstd.h>

#include "net/delta.h"
#include "wire_coding.h"

namespace cascadefs::net {
namespace {

std::string Name(char fill) { return std::string(kChunkNameBytes, fill); }

ChangeEntry FileChange(std::string path) {
  ChangeEntry change;
  change.path = std::move(path);
  change.kind = EntryKind::kFile;
  change.mode = 0644;
  change.mtime_ns = -5;  // before 1970: signed survives
  change.root = std::string(40, 'r');
  return change;
}

void ExpectSameChange(const ChangeEntry& a, const ChangeEntry& b) {
  EXPECT_EQ(a.path, b.path);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.mode, b.mode);
  EXPECT_EQ(a.mtime_ns, b.mtime_ns);
  EXPECT_EQ(a.root, b.root);
  EXPECT_EQ(a.target, b.target);
}

// Expects `result` to fail with InvalidArgument whose message contains `needle`.
template <typename T>
void ExpectInvalid(const Result<T>& result, std::string_view needle) {
  ASSERT_FALSE(result.ok()) << "expected an error containing: " << needle;
  EXPECT_TRUE(result.status().IsInvalidArgument()) << result.status().ToString();
  EXPECT_NE(result.status().message().find(needle), std::string_view::npos)
      << result.status().ToString() << " lacks: " << needle;
}

// Encodes a Commit of one entry by hand (bypassing Encode's debug check), so invalid fields
// can reach Decode.
std::string RawCommit(std::string_view ns, std::string_view path, std::uint8_t kind,
                      std::uint64_t mode, std::string_view root, std::string_view target) {
  WireWriter w;
  w.PutString(ns);
  w.PutVarint(1);
  w.PutString(path);
  w.PutU8(kind);
  w.PutVarint(mode);
  w.PutFixed64(0);
  w.PutString(root);
  w.PutString(target);
  w.PutVarint(0);
  return std::move(w).Finish();
}

// ---- Round trips. ----

TEST(WireMessage, HelloRoundTrip) {
  Hello hello{1, 7, "laptop.example"};
  auto decoded = Hello::Decode(hello.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->version_min, 1u);
  EXPECT_EQ(decoded->version_max, 7u);
  EXPECT_EQ(decoded->host, "laptop.example");
}

TEST(WireMessage, HelloOkRoundTrip) {
  HelloOk ok{1, std::string(16, '\xab')};
  auto decoded = HelloOk::Decode(ok.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->version, 1u);
  EXPECT_EQ(decoded->hub_id, ok.hub_id);
}

TEST(WireMessage, ErrorRoundTrip) {
  ErrorMessage error{ErrorCode::kBadNamespace, "ns \"a b\": bad"};
  auto decoded = ErrorMessage::Decode(error.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->code, ErrorCode::kBadNamespace);
  EXPECT_EQ(decoded->message, error.message);
}

TEST(WireMessage, CommitRoundTripEveryKind) {
  Commit commit;
  commit.ns = "A-z_0.9";
  commit.entries.push_back({FileChange("dir/file.txt"), 42});
  ChangeEntry dir;
  dir.path = "dir";
  dir.kind = EntryKind::kDirectory;
  dir.mode = 07777;
  commit.entries.push_back({dir, 0});
  ChangeEntry link;
  link.path = "dir/link";
  link.kind = EntryKind::kSymlink;
  link.mode = 0777;
  link.mtime_ns = INT64_MAX;
  link.target = "../../anywhere//even/./odd";
  commit.entries.push_back({link, UINT64_MAX});
  ChangeEntry gone;
  gone.path = "old";
  gone.kind = EntryKind::kDelete;
  commit.entries.push_back({gone, 7});
  ChangeEntry moved;
  moved.path = "a";
  moved.kind = EntryKind::kRename;
  moved.target = "b/c";
  commit.entries.push_back({moved, 9});

  auto decoded = Commit::Decode(commit.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->ns, commit.ns);
  ASSERT_EQ(decoded->entries.size(), commit.entries.size());
  for (std::size_t i = 0; i < commit.entries.size(); ++i) {
    ExpectSameChange(decoded->entries[i].change, commit.entries[i].change);
    EXPECT_EQ(decoded->entries[i].parent_jid, commit.entries[i].parent_jid);
  }
}

TEST(WireMessage, CommitReplyRoundTrip) {
  CommitReply reply;
  reply.results = {{CommitStatus::kOk, 1},
                   {CommitStatus::kConflict, 99},
                   {CommitStatus::kMissing, 0},
                   {CommitStatus::kRejected, 3}};
  reply.missing = Name('a') + Name('b');
  auto decoded = CommitReply::Decode(reply.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ASSERT_EQ(decoded->results.size(), 4u);
  EXPECT_EQ(decoded->results[1].status, CommitStatus::kConflict);
  EXPECT_EQ(decoded->results[1].jid, 99u);
  EXPECT_EQ(decoded->missing, reply.missing);
}

TEST(WireMessage, StoreBatchRoundTrip) {
  StoreBatch batch;
  batch.chunks.push_back({Name('x'), "hello"});
  batch.chunks.push_back({Name('y'), ""});
  batch.chunks.push_back({Name('z'), std::string(kChunkBytesMax, 'q')});
  auto decoded = StoreBatch::Decode(batch.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ASSERT_EQ(decoded->chunks.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(decoded->chunks[i].name, batch.chunks[i].name);
    EXPECT_EQ(decoded->chunks[i].data, batch.chunks[i].data);
  }
}

TEST(WireMessage, StoreReplyRoundTrip) {
  StoreReply reply{12, Name('r')};
  auto decoded = StoreReply::Decode(reply.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->stored, 12u);
  EXPECT_EQ(decoded->refused, reply.refused);
}

TEST(WireMessage, ListRoundTrip) {
  List list{"ns", UINT64_MAX, kListWaitMsMax, kEntriesMax};
  auto decoded = List::Decode(list.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->ns, "ns");
  EXPECT_EQ(decoded->cursor, UINT64_MAX);
  EXPECT_EQ(decoded->wait_ms, kListWaitMsMax);
  EXPECT_EQ(decoded->max_entries, kEntriesMax);
}

TEST(WireMessage, ListReplyRoundTrip) {
  ListReply reply;
  reply.head_jid = 10;
  reply.entries.push_back({3, FileChange("f"), 123456789, "host-a"});
  reply.entries.push_back({10, FileChange("g/h"), -1, ""});
  auto decoded = ListReply::Decode(reply.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->head_jid, 10u);
  ASSERT_EQ(decoded->entries.size(), 2u);
  EXPECT_EQ(decoded->entries[0].jid, 3u);
  EXPECT_EQ(decoded->entries[0].time_ns, 123456789);
  EXPECT_EQ(decoded->entries[0].origin, "host-a");
  ExpectSameChange(decoded->entries[1].change, reply.entries[1].change);
  EXPECT_EQ(decoded->entries[1].time_ns, -1);

  ListReply empty;
  auto decoded_empty = ListReply::Decode(empty.Encode());
  ASSERT_TRUE(decoded_empty.ok()) << decoded_empty.status().ToString();
  EXPECT_TRUE(decoded_empty->entries.empty());
}

TEST(WireMessage, RetrieveRoundTrip) {
  Retrieve retrieve{Name('1') + Name('2') + Name('3')};
  auto decoded = Retrieve::Decode(retrieve.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->names, retrieve.names);
}

TEST(WireMessage, RetrieveReplyRoundTrip) {
  RetrieveReply reply;
  reply.chunks.push_back({Name('f'), true, "bytes"});
  reply.chunks.push_back({Name('n'), false, ""});
  reply.chunks.push_back({Name('e'), true, ""});
  auto decoded = RetrieveReply::Decode(reply.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ASSERT_EQ(decoded->chunks.size(), 3u);
  EXPECT_TRUE(decoded->chunks[0].found);
  EXPECT_EQ(decoded->chunks[0].data, "bytes");
  EXPECT_FALSE(decoded->chunks[1].found);
  EXPECT_TRUE(decoded->chunks[2].found);
  EXPECT_EQ(decoded->chunks[2].name, Name('e'));
}

// ---- Field coding. ----

TEST(WireCoding, VarintBounds) {
  for (std::uint64_t value : {0ull, 1ull, 127ull, 128ull, 16383ull, 16384ull, ~0ull}) {
    WireWriter w;
    w.PutVarint(value);
    const std::string bytes = std::move(w).Finish();
    WireReader r(bytes);
    std::uint64_t out = 1;
    ASSERT_TRUE(r.Varint("v", UINT64_MAX, &out).ok());
    EXPECT_EQ(out, value);
    EXPECT_TRUE(r.Finish().ok());
  }
  std::uint64_t out = 0;
  // Overlong: 0 as two bytes.
  EXPECT_NE(WireReader(std::string("\x80\x00", 2))
                .Varint("v", UINT64_MAX, &out)
                .message()
                .find("not canonical"),
            std::string_view::npos);
  // Truncated.
  EXPECT_NE(WireReader("\x80").Varint("v", UINT64_MAX, &out).message().find("truncated"),
            std::string_view::npos);
  // Over 64 bits: the tenth byte holds more than bit 63.
  EXPECT_NE(WireReader("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02")
                .Varint("v", UINT64_MAX, &out)
                .message()
                .find("over 64 bits"),
            std::string_view::npos);
  // Eleven bytes.
  EXPECT_FALSE(WireReader("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x81\x00")
                   .Varint("v", UINT64_MAX, &out)
                   .ok());
  // Over the field's limit.
  EXPECT_NE(WireReader("\x0b").Varint("v", 10, &out).message().find("over the limit"),
            std::string_view::npos);
}

// ---- Validation failures, one per class. ----

TEST(WireValidation, Paths) {
  EXPECT_TRUE(IsValidPath("a"));
  EXPECT_TRUE(IsValidPath("a/b.c/...d"));
  EXPECT_TRUE(IsValidPath(std::string(255, 'x') + "/" + std::string(255, 'y')));
  EXPECT_FALSE(IsValidPath(""));
  EXPECT_FALSE(IsValidPath("/a"));
  EXPECT_FALSE(IsValidPath("a/"));
  EXPECT_FALSE(IsValidPath("a//b"));
  EXPECT_FALSE(IsValidPath("a/./b"));
  EXPECT_FALSE(IsValidPath(".."));
  EXPECT_FALSE(IsValidPath(std::string("a\0b", 3)));
  EXPECT_FALSE(IsValidPath(std::string(256, 'x')));
  std::string long_path;
  while (long_path.size() <= kPathBytesMax) long_path += "abcdefgh/";
  long_path += "z";
  EXPECT_FALSE(IsValidPath(long_path));
}

TEST(WireValidation, Namespaces) {
  EXPECT_TRUE(IsValidNamespace("home-2024_v1.0"));
  EXPECT_FALSE(IsValidNamespace(""));
  EXPECT_FALSE(IsValidNamespace("a b"));
  EXPECT_FALSE(IsValidNamespace("a/b"));
  EXPECT_FALSE(IsValidNamespace(".."));
  EXPECT_FALSE(IsValidNamespace(std::string(65, 'n')));
  EXPECT_TRUE(IsValidNamespace(std::string(64, 'n')));
}

TEST(WireValidation, CommitFieldErrorsNameTheField) {
  const std::string root(8, 'r');
  ExpectInvalid(Commit::Decode(RawCommit("home", "a//b", 1, 0644, root, "")),
                "entry 0: path \"a//b\": empty component");
  ExpectInvalid(Commit::Decode(RawCommit("bad ns", "a", 1, 0644, root, "")), "ns \"bad ns\"");
  ExpectInvalid(Commit::Decode(RawCommit("home", "a", 9, 0644, root, "")), "unknown kind 9");
  ExpectInvalid(Commit::Decode(RawCommit("home", "a", 1, 010000, root, "")), "mode");
  ExpectInvalid(Commit::Decode(RawCommit("home", "a", 1, 0644, "", "")), "root");
  ExpectInvalid(Commit::Decode(RawCommit("home", "a", 1, 0644, std::string(65, 'r'), "")), "root");
  ExpectInvalid(Commit::Decode(RawCommit("home", "a", 2, 0755, "x", "")), "root");
  ExpectInvalid(Commit::Decode(RawCommit("home", "a", 1, 0644, root, "t")), "target");
  ExpectInvalid(Commit::Decode(RawCommit("home", "a", 3, 0777, "", "")), "target");
  ExpectInvalid(Commit::Decode(RawCommit("home", "a", 3, 0777, "", std::string(4096, 't'))),
                "target");
  ExpectInvalid(Commit::Decode(RawCommit("home", "a", 3, 0777, "", std::string("x\0y", 3))), "NUL");
  ExpectInvalid(Commit::Decode(RawCommit("home", "a", 5, 0, "", "/abs")),
                "target \"/abs\": leading '/'");
  ExpectInvalid(Commit::Decode(RawCommit("home", "a", 4, 0, "", "t")), "target");
  // Trailing bytes after a valid message.
  ExpectInvalid(Commit::Decode(RawCommit("home", "a", 4, 0, "", "") + "x"), "1 trailing bytes");
  // Entry counts: zero, over the bound, more than the payload holds.
  WireWriter w;
  w.PutString("home");
  w.PutVarint(0);
  ExpectInvalid(Commit::Decode(std::move(w).Finish()), "entry count");
  WireWriter w2;
  w2.PutString("home");
  w2.PutVarint(kEntriesMax + 1);
  ExpectInvalid(Commit::Decode(std::move(w2).Finish()), "over the limit");
  WireWriter w3;
  w3.PutString("home");
  w3.PutVarint(kEntriesMax);
  ExpectInvalid(Commit::Decode(std::move(w3).Finish()), "do not fit");
  // The message name leads the error.
  ExpectInvalid(Commit::Decode(""), "commit: ns: varint truncated");
}

TEST(WireValidation, HelloErrors) {
  WireWriter w;
  w.PutVarint(2);
  w.PutVarint(1);
  w.PutString("");
  ExpectInvalid(Hello::Decode(std::move(w).Finish()), "versions");
  WireWriter w2;
  w2.PutVarint(1);
  w2.PutVarint(1);
  w2.PutString("a/b");
  ExpectInvalid(Hello::Decode(std::move(w2).Finish()), "host \"a/b\"");
  WireWriter w3;
  w3.PutVarint(1);
  w3.PutVarint(1ull << 32);
  w3.PutString("");
  ExpectInvalid(Hello::Decode(std::move(w3).Finish()), "version_max");
  WireWriter w4;
  w4.PutVarint(1);
  w4.PutVarint(1);
  w4.PutString(std::string(256, 'h'));
  ExpectInvalid(Hello::Decode(std::move(w4).Finish()), "host");
}

TEST(WireValidation, HelloOkAndErrorErrors) {
  WireWriter w;
  w.PutVarint(1);
  w.PutString(std::string(15, 'i'));
  ExpectInvalid(HelloOk::Decode(std::move(w).Finish()), "hub_id");
  WireWriter w2;
  w2.PutVarint(6);
  w2.PutString("x");
  ExpectInvalid(ErrorMessage::Decode(std::move(w2).Finish()), "code");
  WireWriter w3;
  w3.PutVarint(1);
  w3.PutString(std::string(kErrorMessageBytesMax + 1, 'm'));
  ExpectInvalid(ErrorMessage::Decode(std::move(w3).Finish()), "message");
}

TEST(WireValidation, NameListsAndBatches) {
  WireWriter w;
  w.PutString(std::string(18, 'n'));
  ExpectInvalid(Retrieve::Decode(std::move(w).Finish()), "not a multiple of 17");
  WireWriter w2;
  w2.PutString("");
  ExpectInvalid(Retrieve::Decode(std::move(w2).Finish()), "names");
  WireWriter w3;
  w3.PutVarint(0);
  w3.PutString(std::string((kNamesMax + 1) * kChunkNameBytes, 'n'));
  ExpectInvalid(CommitReply::Decode(std::move(w3).Finish()), "missing");
  WireWriter w4;
  w4.PutVarint(1);
  w4.PutString(std::string(16, 'n'));
  ExpectInvalid(StoreReply::Decode(std::move(w4).Finish()), "refused");
  WireWriter w5;
  w5.PutVarint(1);
  w5.PutU8(4);  // unknown commit status
  w5.PutVarint(0);
  w5.PutString("");
  ExpectInvalid(CommitReply::Decode(std::move(w5).Finish()), "entry 0: status");

  // A chunk over kChunkBytesMax, and a batch over kBatchBytesMax in total.
  WireWriter w6;
  w6.PutVarint(1);
  w6.PutBytes(Name('c'));
  w6.PutU8(0);  // whole
  w6.PutString(std::string(kChunkBytesMax + 1, 'd'));
  ExpectInvalid(StoreBatch::Decode(std::move(w6).Finish()), "chunk 0: data");
  WireWriter w7;
  const std::size_t chunks = kBatchBytesMax / kChunkBytesMax + 1;
  w7.PutVarint(chunks);
  for (std::size_t i = 0; i < chunks; ++i) {
    w7.PutBytes(Name('c'));
    w7.PutU8(0);
    w7.PutString(std::string(kChunkBytesMax, 'd'));
  }
  ExpectInvalid(StoreBatch::Decode(std::move(w7).Finish()), "exceed");
  WireWriter w8;
  w8.PutVarint(0);
  ExpectInvalid(StoreBatch::Decode(std::move(w8).Finish()), "chunk count");
  // RetrieveReply: found must be 0, 1 or 2; a missing chunk carries no data.
  WireWriter w9;
  w9.PutVarint(1);
  w9.PutBytes(Name('c'));
  w9.PutU8(3);
  ExpectInvalid(RetrieveReply::Decode(std::move(w9).Finish()), "found");
  WireWriter w10;
  w10.PutVarint(1);
  w10.PutBytes(Name('c'));
  w10.PutU8(0);
  w10.PutString("x");
  ExpectInvalid(RetrieveReply::Decode(std::move(w10).Finish()), "trailing");
}

TEST(WireValidation, ListErrors) {
  const auto raw = [](std::string ns, std::uint64_t wait_ms, std::uint64_t max_entries) {
    WireWriter w;
    w.PutString(ns);
    w.PutVarint(0);
    w.PutVarint(wait_ms);
    w.PutVarint(max_entries);
    return std::move(w).Finish();
  };
  ExpectInvalid(List::Decode(raw("ns", kListWaitMsMax + 1, 1)), "wait_ms");
  ExpectInvalid(List::Decode(raw("ns", 0, 0)), "max_entries");
  ExpectInvalid(List::Decode(raw("ns", 0, kEntriesMax + 1)), "max_entries");
  ExpectInvalid(List::Decode(raw("", 0, 1)), "ns");

  // ListReply: jids ascend and stay <= head_jid.
  ListReply reply;
  reply.head_jid = 5;
  reply.entries.push_back({5, FileChange("a"), 0, ""});
  std::string bytes = reply.Encode();
  bytes[0] = 4;  // head_jid 4 < the entry's 5
  ExpectInvalid(ListReply::Decode(bytes), "entry 0: jid");
}

// ---- Frames. ----

std::string Header(std::uint32_t length, std::uint8_t type, std::uint8_t flags) {
  std::string h(kFrameHeaderBytes, '\0');
  for (int i = 0; i < 4; ++i) h[i] = static_cast<char>(length >> (8 * i));
  h[4] = static_cast<char>(type);
  h[5] = static_cast<char>(flags);
  return h;
}

Result<std::string> DecodeWholeFrame(const std::string& frame) {
  auto header = DecodeFrameHeader(std::string_view(frame).substr(0, kFrameHeaderBytes));
  if (!header.ok()) return header.status();
  return DecodeFrameBody(*header, std::string_view(frame).substr(kFrameHeaderBytes));
}

TEST(WireFrame, RoundTripRawAndCompressed) {
  std::mt19937_64 random(7);
  std::string noise(5000, '\0');
  for (char& c : noise) c = static_cast<char>(random());
  for (const std::string& payload : {std::string(), std::string("x"), std::string(63, 'a'),
                                     std::string(64, 'a'), std::string(100000, 'z'), noise}) {
    const std::string frame = EncodeFrame(MessageType::kStoreBatch, payload, 3);
    auto header = DecodeFrameHeader(std::string_view(frame).substr(0, kFrameHeaderBytes));
    ASSERT_TRUE(header.ok());
    EXPECT_EQ(header->type, MessageType::kStoreBatch);
    EXPECT_EQ(header->body_length, frame.size() - kFrameHeaderBytes);
    // Compressed exactly when it pays: 64+ bytes and 1/16 saved.
    EXPECT_EQ(header->compressed, payload.size() >= 64 && payload != noise) << payload.size();
    auto decoded = DecodeWholeFrame(frame);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(*decoded, payload);
  }
}

TEST(WireFrame, HeaderBounds) {
  ExpectInvalid(DecodeFrameHeader(Header(kFrameBodyBytesMax + 1, 1, 0)), "body length");
  EXPECT_TRUE(DecodeFrameHeader(Header(kFrameBodyBytesMax, 1, 0)).ok());
  ExpectInvalid(DecodeFrameHeader(Header(0, 0, 0)), "unknown message type 0");
  ExpectInvalid(DecodeFrameHeader(Header(0, 12, 0)), "unknown message type 12");
  ExpectInvalid(DecodeFrameHeader(Header(0, 1, 2)), "reserved flag");
  ExpectInvalid(DecodeFrameHeader(Header(0, 1, 0x80)), "reserved flag");
}

// A zstd frame of `content`, with or without its content size in the header.
std::string Zstd(const std::string& content, bool with_size) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, with_size ? 1 : 0);
  std::string out(ZSTD_compressBound(content.size()), '\0');
  const std::size_t size =
      ZSTD_compress2(cctx, out.data(), out.size(), content.data(), content.size());
  ZSTD_freeCCtx(cctx);
  EXPECT_FALSE(ZSTD_isError(size));
  out.resize(size);
  return out;
}

std::string CompressedFrame(const std::string& body) {
  return Header(static_cast<std::uint32_t>(body.size()), 1, 1) + body;
}

TEST(WireFrame, CompressedBodyBounds) {
  const std::string content(1000, 'c');
  // Without a content size: still decoded, streaming.
  auto unsized = DecodeWholeFrame(CompressedFrame(Zstd(content, false)));
  ASSERT_TRUE(unsized.ok()) << unsized.status().ToString();
  EXPECT_EQ(*unsized, content);

  // A lying content size: the frame holds 1000 bytes, its header claims 500, then 2000. For
  // 1000 bytes zstd writes a single-segment header: magic (4), descriptor (1), then a 2-byte
  // content size holding size - 256.
  for (const std::uint32_t claim : {500u, 2000u}) {
    std::string body = Zstd(content, true);
    const auto descriptor = static_cast<std::uint8_t>(body[4]);
    ASSERT_EQ(descriptor >> 6, 1) << "a 2-byte content size field";
    ASSERT_NE(descriptor & 0x20, 0) << "single segment";
    body[5] = static_cast<char>((claim - 256) & 0xff);
    body[6] = static_cast<char>((claim - 256) >> 8);
    ASSERT_EQ(ZSTD_getFrameContentSize(body.data(), body.size()), claim);
    ExpectInvalid(DecodeWholeFrame(CompressedFrame(body)), "frame body (zstd)");
  }

  // A bomb over kMessageBytesMax, with its size declared and without.
  const std::string bomb_content(kMessageBytesMax + 1, '\0');
  ExpectInvalid(DecodeWholeFrame(CompressedFrame(Zstd(bomb_content, true))), "over the limit");
  ExpectInvalid(DecodeWholeFrame(CompressedFrame(Zstd(bomb_content, false))),
                "decompresses to more than");
  // Exactly kMessageBytesMax without a declared size is fine.
  auto at_bound =
      DecodeWholeFrame(CompressedFrame(Zstd(std::string(kMessageBytesMax, 'b'), false)));
  ASSERT_TRUE(at_bound.ok()) << at_bound.status().ToString();
  EXPECT_EQ(at_bound->size(), kMessageBytesMax);

  // Trailing bytes after the frame, two frames, a truncated frame, garbage.
  ExpectInvalid(DecodeWholeFrame(CompressedFrame(Zstd(content, true) + "x")), "trailing");
  ExpectInvalid(DecodeWholeFrame(CompressedFrame(Zstd(content, true) + Zstd(content, true))),
                "trailing");
  const std::string whole = Zstd(content, true);
  ExpectInvalid(DecodeWholeFrame(CompressedFrame(whole.substr(0, whole.size() - 1))), "frame body");
  ExpectInvalid(DecodeWholeFrame(CompressedFrame("not zstd at all")), "not a zstd frame");
  ExpectInvalid(DecodeWholeFrame(CompressedFrame("")), "not a zstd frame");
}

}  // namespace
}  // namespace cascadefs::net

namespace cascadefs::net {
namespace {

std::string DeltaName(char c) { return std::string(kChunkNameBytes, c); }

TEST(WireDelta, DeltaFieldsRoundTripAndAreValidated) {
  StoreBatch batch;
  batch.chunks.push_back({DeltaName('a'), "whole"});
  batch.chunks.push_back({DeltaName('b'), "delta bytes", DeltaName('c')});
  auto decoded = StoreBatch::Decode(batch.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_TRUE(decoded->chunks[0].delta_base.empty());
  EXPECT_EQ(decoded->chunks[1].delta_base, DeltaName('c'));
  EXPECT_EQ(decoded->chunks[1].data, "delta bytes");

  Retrieve retrieve{DeltaName('1') + DeltaName('2'), DeltaName('\0') + DeltaName('9')};
  auto retrieved = Retrieve::Decode(retrieve.Encode());
  ASSERT_TRUE(retrieved.ok()) << retrieved.status().ToString();
  EXPECT_EQ(retrieved->bases, retrieve.bases);
  // One base per name, or none.
  std::string payload = retrieve.Encode();
  Retrieve short_bases{DeltaName('1') + DeltaName('2'), DeltaName('9')};
  std::string bad;
  bad.push_back(static_cast<char>(2 * kChunkNameBytes));
  bad += short_bases.names;
  bad.push_back(static_cast<char>(kChunkNameBytes));
  bad += short_bases.bases;
  EXPECT_FALSE(Retrieve::Decode(bad).ok());

  RetrieveReply reply;
  reply.chunks.push_back({DeltaName('f'), true, "d", DeltaName('g')});
  reply.chunks.push_back({DeltaName('h'), true, "whole"});
  auto replied = RetrieveReply::Decode(reply.Encode());
  ASSERT_TRUE(replied.ok()) << replied.status().ToString();
  EXPECT_EQ(replied->chunks[0].delta_base, DeltaName('g'));
  EXPECT_TRUE(replied->chunks[1].delta_base.empty());
  // A form byte other than 0 or 1 is refused.
  std::string store = batch.Encode();
  store[1 + kChunkNameBytes] = 7;
  EXPECT_FALSE(StoreBatch::Decode(store).ok());
}

TEST(WireDelta, ADeltaDecodesOnlyAgainstItsBaseAndWithinItsBound) {
  std::string base;
  for (int i = 0; i < 2000; ++i) base += "line " + std::to_string(i) + " of the old version\n";
  std::string changed = base;
  changed.replace(changed.size() / 2, 4, "LINE");
  const std::string delta = EncodeDelta(base, changed, 19);
  EXPECT_LT(delta.size(), 200u) << "a one-word change should cost tens of bytes";
  auto back = DecodeDelta(base, delta, 1 << 20);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back.value(), changed);
  // Against another base it does not give the chunk back (or fails): the name check catches it.
  auto wrong = DecodeDelta(std::string(base.size(), 'x'), delta, 1 << 20);
  EXPECT_TRUE(!wrong.ok() || wrong.value() != changed);
  EXPECT_FALSE(DecodeDelta(base, delta, changed.size() - 1).ok());  // over the bound
  EXPECT_FALSE(DecodeDelta(base, delta + "x", 1 << 20).ok());       // trailing bytes
  EXPECT_FALSE(DecodeDelta(base, "not zstd", 1 << 20).ok());
  EXPECT_FALSE(DecodeDelta(base, delta.substr(0, delta.size() / 2), 1 << 20).ok());
}

}  // namespace
}  // namespace cascadefs::net
