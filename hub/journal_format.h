// journal_format.h: the hub's engine keys and records (docs/formats/journal.md).
//
// Keys (integers big-endian, so the engine's byte order is numeric order and the entries of one
// namespace are one contiguous range, jid ascending):
//   "H"                          -> HubSuperblock
//   "N" name                     -> namespace record
//   "J" ns-id(8) jid(8)          -> journal entry
// The filesystem's tags are lowercase (fusefs/fs/inode_record.h); the hub's are uppercase, so
// neither can read the other's keys by mistake. Chunks use the filesystem's "c" keys.
//
// Every value starts with a format version byte and ends with the XXH3-64 (little-endian) of
// the bytes before it: a value is checked before it is parsed, on top of the engine's own block
// and record checksums, so fsck can name a damaged entry by namespace and jid.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engine/result.h"
#include "net/wire.h"

namespace cascadefs::hub {

inline constexpr std::uint8_t kJournalFormatVersion = 1;
inline constexpr std::string_view kSuperblockKey = "H";
inline constexpr char kNamespaceTag = 'N';
inline constexpr char kEntryTag = 'J';
inline constexpr std::size_t kEntryKeyBytes = 17;

struct HubSuperblock {
  std::string hub_id;            // kHubIdBytes random bytes
  std::uint64_t next_ns_id = 1;  // the id the next new namespace gets
  std::string Encode() const;
  static Result<HubSuperblock> Decode(std::string_view value);
};

std::string NamespaceKey(std::string_view name);
std::string EncodeNamespaceValue(std::uint64_t id);
Result<std::uint64_t> DecodeNamespaceValue(std::string_view value);

std::string EntryKey(std::uint64_t ns_id, std::uint64_t jid);
// The first key of namespace `ns_id` (its entries are [EntryPrefix(ns), EntryPrefix(ns + 1))).
std::string EntryPrefix(std::uint64_t ns_id);
// (ns_id, jid) of an entry key; false when `key` is not one.
bool ParseEntryKey(std::string_view key, std::uint64_t* ns_id, std::uint64_t* jid);

std::string EncodeEntry(const net::JournalEntry& entry);
// Checks the checksum, version and every field's shape (a known kind, lengths within the wire's
// bounds). Corruption naming what is wrong; NotSupported for a newer version.
Result<net::JournalEntry> DecodeEntry(std::string_view value);

}  // namespace cascadefs::hub
