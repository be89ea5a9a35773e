// wire_message_fuzz.cc: every sync message's Decode on arbitrary bytes.
//
// The first byte picks the message type (modulo the 11 types); the rest is its payload.
// Properties: no read out of bounds (ASan), no assertion, failures are InvalidArgument, and a
// decoded message re-encodes to bytes that decode again to the same encoding (Encode(Decode(x))
// is a fixed point). The encodings are canonical, so the re-encoding also equals the input.
// Seeds: tests/fuzz/corpus/wire_message/.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/assert.h"
#include "net/wire.h"

namespace {

template <typename Message>
void Check(std::string_view payload) {
  auto decoded = Message::Decode(payload);
  if (!decoded.ok()) {
    CFS_ASSERT(decoded.status().IsInvalidArgument());
    return;
  }
  const std::string encoded = decoded.value().Encode();
  auto again = Message::Decode(encoded);
  CFS_ASSERT(again.ok());
  CFS_ASSERT(again.value().Encode() == encoded);
  CFS_ASSERT(encoded == payload);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cascadefs::net;
  if (size == 0) return 0;
  const std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (static_cast<MessageType>(data[0] % 11 + 1)) {
    case MessageType::kHello:
      Check<Hello>(payload);
      break;
    case MessageType::kHelloOk:
      Check<HelloOk>(payload);
      break;
    case MessageType::kError:
      Check<ErrorMessage>(payload);
      break;
    case MessageType::kCommit:
      Check<Commit>(payload);
      break;
    case MessageType::kCommitReply:
      Check<CommitReply>(payload);
      break;
    case MessageType::kStoreBatch:
      Check<StoreBatch>(payload);
      break;
    case MessageType::kStoreReply:
      Check<StoreReply>(payload);
      break;
    case MessageType::kList:
      Check<List>(payload);
      break;
    case MessageType::kListReply:
      Check<ListReply>(payload);
      break;
    case MessageType::kRetrieve:
      Check<Retrieve>(payload);
      break;
    case MessageType::kRetrieveReply:
      Check<RetrieveReply>(payload);
      break;
  }
  return 0;
}
