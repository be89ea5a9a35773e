// current_file.h: CURRENT, the file naming the manifest a store uses.
//
// CURRENT holds exactly "MANIFEST-NNNNNN\n": the base name of the manifest (filename.h) and a
// newline. Opening a store reads it first; switching to a new manifest (at Open, or when the
// manifest grows too large) rewrites it. The switch is atomic across a power cut:
//   1. write the contents to NNNNNN.dbtmp (NNNNNN = the new manifest's number) and Sync it;
//   2. rename NNNNNN.dbtmp over CURRENT (atomic: a reader sees the old or the new file whole);
//   3. SyncDir the store directory, which makes the rename durable (env.h, durability rule 2).
// After a crash CURRENT names the old manifest or the new one, and both are complete: the
// caller makes the new manifest's first edit durable before calling SetCurrentFile, and
// removes the old manifest only after SetCurrentFile returned OK. A leftover *.dbtmp is
// garbage (filename.h, FileType::kTemp). docs/formats/manifest.md, "CURRENT", has the details.
//
// Thread safety: one SetCurrentFile per store at a time (the caller holds the store's lock and
// serializes manifest switches); ReadCurrentFile may run at any time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/result.h"
#include "engine/status.h"
#include "manifest/filename.h"

namespace cascadefs::engine {

// "MANIFEST-" + the widest number + "\n": a longer CURRENT is damaged, and ReadCurrentFile
// refuses it before allocating.
inline constexpr std::size_t kCurrentFileSizeMax = 9 + kFileNumberDigitsMax + 1;

// The contents of CURRENT naming manifest `manifest_number`: "MANIFEST-NNNNNN\n".
std::string CurrentFileContents(std::uint64_t manifest_number);

// Points `dir`/CURRENT at MANIFEST-`manifest_number` (steps 1 to 3 of the file comment). OK
// means the switch is durable. On an error before the rename, CURRENT is unchanged and the
// temporary file is removed (best effort). On an error of the directory sync the rename took
// place but may not survive a power cut: CURRENT may name either manifest, so the caller must
// keep both until a later SetCurrentFile succeeds. Parameters are copied into the coroutine
// frame. REQUIRES: the manifest exists and its first edit is synced.
io::Task<Status> SetCurrentFile(Env* env, std::string dir, std::uint64_t manifest_number);

// Reads `dir`/CURRENT and returns the number of the manifest it names. Errors: NotFound when
// CURRENT does not exist (no store in `dir`, or one that crashed before its first manifest was
// made current); Corruption "<dir>/CURRENT: ..." when its contents are anything but
// "MANIFEST-NNNNNN\n" (quoting them, escaped); read errors as the Env reports them.
io::Task<Result<std::uint64_t>> ReadCurrentFile(Env* env, std::string dir);

}  // namespace cascadefs::engine
