// fuse_uring.cc: ring entry <-> request and reply bytes. See fuse_uring.h.
#include "fuse/fuse_uring.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace cascadefs::fusefs {

bool AssembleUringRequest(const FuseUringReqHeader& header, char* payload,
                          std::size_t payload_capacity, std::string_view* request) {
  fuse_in_header in{};
  std::memcpy(&in, header.in_out, sizeof(in));
  const std::uint64_t payload_bytes = header.ring_ent_in_out.payload_sz;
  // len counts the in header, the fixed argument (in op_in) and the payload.
  if (payload_bytes > payload_capacity) return false;
  if (in.len < sizeof(in) + payload_bytes) return false;
  const std::uint64_t fixed_bytes = in.len - sizeof(in) - payload_bytes;
  if (fixed_bytes > kFuseUringOpHeaderBytes) return false;
  char* start = payload - fixed_bytes - sizeof(in);
  std::memcpy(start, &in, sizeof(in));
  std::memcpy(start + sizeof(in), header.op_in, fixed_bytes);
  *request = std::string_view(start, in.len);
  return true;
}

void PlaceUringReply(const FuseReply& reply, std::uint64_t unique, FuseUringReqHeader* header,
                     char* payload, std::size_t payload_capacity) {
  fuse_out_header out{};
  out.unique = unique;
  std::size_t payload_bytes = 0;
  int error = reply.error;
  if (error == 0 && reply.none) error = EIO;  // every ring request needs an answer
  if (error == 0) {
    payload_bytes = reply.fixed.size() + reply.data.size();
    if (payload_bytes > payload_capacity) {
      error = EIO;
      payload_bytes = 0;
    } else {
      char* end = std::copy(reply.fixed.begin(), reply.fixed.end(), payload);
      std::copy(reply.data.begin(), reply.data.end(), end);
    }
  }
  out.error = -error;
  out.len = static_cast<std::uint32_t>(sizeof(out) + payload_bytes);
  std::memset(header->in_out, 0, sizeof(header->in_out));
  std::memcpy(header->in_out, &out, sizeof(out));
  header->ring_ent_in_out.payload_sz = static_cast<std::uint32_t>(payload_bytes);
}

}  // namespace cascadefs::fusefs
