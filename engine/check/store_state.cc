// store_state.cc: ReadStoreState (store_state.h).
#include "check/store_state.h"

#include <utility>

#include "manifest/current_file.h"
#include "manifest/filename.h"

namespace cascadefs::engine {

io::Task<Result<StoreState>> ReadStoreState(Env* env, std::string dir) {
  Result<std::uint64_t> manifest = co_await ReadCurrentFile(env, dir);
  if (!manifest.ok()) co_return manifest.status();
  co_return co_await ReadStoreState(env, std::move(dir), manifest.value());
}

io::Task<Result<StoreState>> ReadStoreState(Env* env, std::string dir,
                                            std::uint64_t manifest_number) {
  StoreState state;
  state.manifest_number = manifest_number;
  Version version;
  Result<ManifestSummary> summary = co_await ReadManifest(
      env, ManifestFileName(dir, state.manifest_number),
      [&](const VersionEdit& edit, std::uint64_t offset) -> Status {
        Version next;
        Status applied = VersionSet::Apply(version, edit, &next);
        if (!applied.ok()) {
          return Status::Corruption("edit at offset " + std::to_string(offset) + ": " +
                                    std::string(applied.message()));
        }
        version = std::move(next);
        if (edit.has_log_number()) state.log_number = edit.log_number();
        if (edit.has_last_sequence()) state.last_sequence = edit.last_sequence();
        if (edit.has_next_file_number()) state.next_file_number = edit.next_file_number();
        return Status::OK();
      });
  if (!summary.ok()) co_return summary.status();
  state.manifest = summary.value();
  state.version = std::move(version);
  co_return state;
}

}  // namespace cascadefs::engine
