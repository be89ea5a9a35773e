// fuse_uring.h: the kernel's FUSE-over-io_uring ABI, declared here, and the two conversions
// between a ring entry and the FuseHandler's request and reply bytes.
//
// The structures follow the kernel's include/uapi/linux/fuse.h of protocol 7.42 (Linux 6.14,
// the first with the transport; unchanged through 6.18). Debian 12's <linux/fuse.h> (7.38)
// lacks them, so they are declared from that documented ABI, with their sizes asserted.
// docs/fuse-io-uring.md tells how the transport works.
#pragma once

#include <linux/fuse.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuse/fuse_handler.h"

namespace cascadefs::fusefs {

// FUSE_INIT flag bit 41 (bit 9 of flags2): the daemon serves requests over io_uring.
inline constexpr std::uint64_t kFuseOverIoUring = std::uint64_t{1} << 41;

// The commands (the SQE's cmd_op) of IORING_OP_URING_CMD on the /dev/fuse descriptor.
inline constexpr std::uint32_t kFuseUringCmdRegister = 1;
inline constexpr std::uint32_t kFuseUringCmdCommitAndFetch = 2;

// Sizes of the header areas of a ring entry (kernel: FUSE_URING_IN_OUT_HEADER_SZ, _OP_SZ).
inline constexpr std::size_t kFuseUringInOutHeaderBytes = 128;
inline constexpr std::size_t kFuseUringOpHeaderBytes = 128;

// Per-request data the kernel writes (fetch) and reads (commit): struct fuse_uring_ent_in_out.
struct FuseUringEntInOut {
  std::uint64_t flags;
  // The request's unique id on fetch; the commit command names it back.
  std::uint64_t commit_id;
  // Bytes of the payload buffer used: the request's variable arguments on fetch, the reply's
  // bytes after the out header on commit.
  std::uint32_t payload_sz;
  std::uint32_t padding;
  std::uint64_t reserved;
};
static_assert(sizeof(FuseUringEntInOut) == 32);

// The first iovec of every ring entry: struct fuse_uring_req_header.
struct FuseUringReqHeader {
  // fuse_in_header on fetch, fuse_out_header on commit.
  alignas(8) char in_out[kFuseUringInOutHeaderBytes];
  // The opcode's fixed argument (e.g. fuse_write_in), when it has one.
  alignas(8) char op_in[kFuseUringOpHeaderBytes];
  FuseUringEntInOut ring_ent_in_out;
};
static_assert(sizeof(FuseUringReqHeader) == 288);

// The SQE's command area: struct fuse_uring_cmd_req.
struct FuseUringCmdReq {
  std::uint64_t flags;
  std::uint64_t commit_id;  // 0 for REGISTER
  std::uint16_t qid;        // the queue: the index of a possible CPU
  std::uint8_t padding[6];
};
static_assert(sizeof(FuseUringCmdReq) == 24);

// Bytes before the payload buffer that AssembleRequest may use: an in header and the largest
// fixed argument.
inline constexpr std::size_t kFuseUringRequestPrefixBytes =
    sizeof(fuse_in_header) + kFuseUringOpHeaderBytes;

// Rebuilds the request as /dev/fuse would deliver it (in header, fixed argument, variable
// arguments) without copying the payload: the header and the fixed argument are copied into
// the kFuseUringRequestPrefixBytes just before `payload`, which the caller reserves.
// `payload_capacity` is the payload buffer's size. False when the kernel's sizes disagree
// (the in header's len against payload_sz, a fixed argument over 128 bytes): the request is
// then answered EIO, never parsed.
bool AssembleUringRequest(const FuseUringReqHeader& header, char* payload,
                          std::size_t payload_capacity, std::string_view* request);

// Writes `reply` for request `unique` into the entry: the out header into in_out, the reply's
// fixed and variable parts into the payload buffer, payload_sz. A reply larger than
// `payload_capacity` (never produced for requests within max_write) becomes EIO.
void PlaceUringReply(const FuseReply& reply, std::uint64_t unique, FuseUringReqHeader* header,
                     char* payload, std::size_t payload_capacity);

}  // namespace cascadefs::fusefs
