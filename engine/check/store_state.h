// store_state.h: the store's state as its manifest records it, read without opening the store
// (fsck and inspect). Private to engine/check.
#pragma once

#include <cstdint>
#include <string>

#include "db/version_set.h"
#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/result.h"
#include "manifest/manifest_log.h"

namespace cascadefs::engine {

struct StoreState {
  std::uint64_t manifest_number = 0;   // the manifest CURRENT names
  ManifestSummary manifest;            // what reading it found (format version, torn tail)
  Version version;                     // every edit applied
  std::uint64_t log_number = 0;        // WAL segments at or above it are replayed at open
  SequenceNumber last_sequence = 0;    // as of the last edit (the WAL may hold later ones)
  std::uint64_t next_file_number = 0;  // as of the last edit
};

// Reads CURRENT and the manifest it names. Errors name the file that failed: "CURRENT: ..."
// or "MANIFEST-N: ..." (Corruption for damage, NotFound for a missing CURRENT).
io::Task<Result<StoreState>> ReadStoreState(Env* env, std::string dir);
// The same for manifest `manifest_number`, whatever CURRENT says (repair falls back to another
// manifest when the one CURRENT names does not read).
io::Task<Result<StoreState>> ReadStoreState(Env* env, std::string dir,
                                            std::uint64_t manifest_number);

}  // namespace cascadefs::engine
