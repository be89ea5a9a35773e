// fuse_uring_test.cc: a ring entry's bytes to a request and a reply back (fuse/fuse_uring.h).
// The transport itself runs in the mount suites (mount.*_uring).
#include "fuse/fuse_uring.h"

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace cascadefs::fusefs {
namespace {

constexpr std::size_t kPayloadCapacity = 8192;

// An entry's buffers as the transport lays them out: room for the prefix, then the payload.
struct Entry {
  FuseUringReqHeader header{};
  std::vector<char> buffer = std::vector<char>(kFuseUringRequestPrefixBytes + kPayloadCapacity);
  char* payload() { return buffer.data() + kFuseUringRequestPrefixBytes; }
};

// Fills `entry` as the kernel does for a request with `fixed` in op_in and `variable` in the
// payload; `len_adjust` corrupts the in header's len.
void Fetch(Entry* entry, std::uint32_t opcode, const std::string& fixed,
           const std::string& variable, std::int64_t len_adjust = 0) {
  fuse_in_header in{};
  in.opcode = opcode;
  in.unique = 42;
  in.nodeid = 7;
  in.len = static_cast<std::uint32_t>(
      static_cast<std::int64_t>(sizeof(in) + fixed.size() + variable.size()) + len_adjust);
  std::memcpy(entry->header.in_out, &in, sizeof(in));
  std::memcpy(entry->header.op_in, fixed.data(), fixed.size());
  std::memcpy(entry->payload(), variable.data(), variable.size());
  entry->header.ring_ent_in_out.commit_id = 42;
  entry->header.ring_ent_in_out.payload_sz = static_cast<std::uint32_t>(variable.size());
}

TEST(FuseUringTest, RequestIsHeaderFixedArgumentAndPayloadInOnePiece) {
  Entry entry;
  fuse_write_in write{};
  write.offset = 4096;
  write.size = 5;
  const std::string fixed(reinterpret_cast<const char*>(&write), sizeof(write));
  Fetch(&entry, FUSE_WRITE, fixed, "hello");
  std::string_view request;
  ASSERT_TRUE(AssembleUringRequest(entry.header, entry.payload(), kPayloadCapacity, &request));
  ASSERT_EQ(request.size(), sizeof(fuse_in_header) + sizeof(write) + 5);
  fuse_in_header in{};
  std::memcpy(&in, request.data(), sizeof(in));
  EXPECT_EQ(in.opcode, FUSE_WRITE);
  EXPECT_EQ(in.unique, 42u);
  EXPECT_EQ(request.substr(sizeof(in), sizeof(write)), fixed);
  EXPECT_EQ(request.substr(sizeof(in) + sizeof(write)), "hello");
  EXPECT_EQ(request.data() + sizeof(in) + sizeof(write), entry.payload())
      << "the payload is used where the kernel put it, not copied";
}

TEST(FuseUringTest, RequestWithoutFixedArgument) {
  Entry entry;
  Fetch(&entry, FUSE_LOOKUP, "", std::string("name\0", 5));
  std::string_view request;
  ASSERT_TRUE(AssembleUringRequest(entry.header, entry.payload(), kPayloadCapacity, &request));
  EXPECT_EQ(request.substr(sizeof(fuse_in_header)), std::string_view("name\0", 5));
}

TEST(FuseUringTest, SizesThatDisagreeAreRefused) {
  std::string_view request;
  {
    Entry entry;  // len shorter than the header and the payload
    Fetch(&entry, FUSE_LOOKUP, "", "abcdef", -10);
    EXPECT_FALSE(AssembleUringRequest(entry.header, entry.payload(), kPayloadCapacity, &request));
  }
  {
    Entry entry;  // a fixed argument longer than op_in
    Fetch(&entry, FUSE_WRITE, "", "", kFuseUringOpHeaderBytes + 1);
    EXPECT_FALSE(AssembleUringRequest(entry.header, entry.payload(), kPayloadCapacity, &request));
  }
  {
    Entry entry;  // payload_sz beyond the buffer
    Fetch(&entry, FUSE_WRITE, "", "x");
    entry.header.ring_ent_in_out.payload_sz = kPayloadCapacity + 1;
    EXPECT_FALSE(AssembleUringRequest(entry.header, entry.payload(), kPayloadCapacity, &request));
  }
}

fuse_out_header OutHeader(const Entry& entry) {
  fuse_out_header out{};
  std::memcpy(&out, entry.header.in_out, sizeof(out));
  return out;
}

TEST(FuseUringTest, ReplyPutsFixedThenDataInThePayload) {
  Entry entry;
  FuseReply reply;
  reply.fixed = "FIXED";
  reply.data = "data!";
  PlaceUringReply(reply, 42, &entry.header, entry.payload(), kPayloadCapacity);
  const fuse_out_header out = OutHeader(entry);
  EXPECT_EQ(out.unique, 42u);
  EXPECT_EQ(out.error, 0);
  EXPECT_EQ(out.len, sizeof(out) + 10);
  EXPECT_EQ(entry.header.ring_ent_in_out.payload_sz, 10u);
  EXPECT_EQ(std::string(entry.payload(), 10), "FIXEDdata!");
}

TEST(FuseUringTest, ErrorsAndImpossibleRepliesCarryNoPayload) {
  Entry entry;
  FuseReply error;
  error.error = ENOENT;
  error.fixed = "ignored";
  PlaceUringReply(error, 42, &entry.header, entry.payload(), kPayloadCapacity);
  EXPECT_EQ(OutHeader(entry).error, -ENOENT);
  EXPECT_EQ(entry.header.ring_ent_in_out.payload_sz, 0u);

  FuseReply none;  // a request the kernel must still get an answer to
  none.none = true;
  PlaceUringReply(none, 42, &entry.header, entry.payload(), kPayloadCapacity);
  EXPECT_EQ(OutHeader(entry).error, -EIO);

  FuseReply oversized;
  oversized.data.assign(kPayloadCapacity + 1, 'x');
  PlaceUringReply(oversized, 42, &entry.header, entry.payload(), kPayloadCapacity);
  EXPECT_EQ(OutHeader(entry).error, -EIO);
  EXPECT_EQ(entry.header.ring_ent_in_out.payload_sz, 0u);
}

}  // namespace
}  // namespace cascadefs::fusefs
