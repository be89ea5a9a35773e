// sync_state.h: what a synced mount remembers about the hub (docs/formats/namespace.md,
// "Sync state"), in its own store beside the namespace.
//
// Keys:
//   "sc"        -> SyncCursor: the hub it follows, the namespace, the last journal id applied
//   "sb" path   -> BaseEntry: the version of `path` this mount and the hub last agreed on
// The base is what turns "the filesystem now" into changes: a path whose local state differs
// from its base entry has a local change to commit (the durable queue of offline edits), and
// a remote entry for a path whose local state still equals the base may be applied without
// losing anything.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engine/result.h"
#include "fusefs/recipe.h"

namespace cascadefs::fusefs::sync {

inline constexpr std::uint8_t kSyncStateFormatVersion = 1;
inline constexpr std::string_view kSyncStatePrefix = "s";
inline constexpr std::string_view kBasePrefix = "sb";
std::string CursorKey();  // "sc"
std::string BaseKey(std::string_view path);

struct SyncCursor {
  std::string hub_id;  // 16 bytes once connected; empty before
  std::string ns;
  std::uint64_t cursor = 0;  // journal entries up to this id are applied
  std::string Encode() const;
  static Result<SyncCursor> Decode(std::string_view bytes);
};

enum class BaseKind : std::uint8_t { kFile = 1, kDirectory = 2, kSymlink = 3, kDeleted = 4 };

struct BaseEntry {
  std::uint64_t jid = 0;  // the hub's journal id of this version
  BaseKind kind = BaseKind::kFile;
  std::uint32_t mode = 0;  // permission bits
  std::int64_t mtime_ns = 0;
  FileRoot root;          // kFile
  std::string target;     // kSymlink
  std::uint64_t ino = 0;  // the local inode that held it (rename detection); 0: unknown
  std::string Encode() const;
  static Result<BaseEntry> Decode(std::string_view bytes);
};

}  // namespace cascadefs::fusefs::sync
