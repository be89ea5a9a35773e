// completeness.h: does the hub hold every chunk of a committed file's tree? (docs/sync.md,
// "Hub: completeness").
//
// A commit of a file is journaled only when every node and leaf of its tree is in the chunk
// store. The walk starts at the root and descends only through nodes the store holds (a missing
// node's children are unknown until it is uploaded: the client learns the tree level by level).
// Nodes found complete (every descendant present) go into VerifiedNodes, so later commits of
// similar trees skip those subtrees and walk only what changed. Chunks are only ever removed by
// gc, which clears the set.
//
// Thread safety: VerifiedNodes is safe for concurrent use. A CompletenessWalk belongs to one
// handler thread (its coroutines may run on several IO threads; its state has a mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "engine/io/task.h"
#include "engine/result.h"
#include "fusefs/chunk_name.h"
#include "fusefs/chunk_store.h"
#include "fusefs/recipe.h"

namespace cascadefs::hub {

// Names remembered as complete. At the bound the set is cleared (the next walks redo the work
// once); 1M names are ~40 MiB of hash set.
inline constexpr std::size_t kVerifiedNodesMax = 1 << 20;

class VerifiedNodes {
 public:
  explicit VerifiedNodes(std::size_t max_names = kVerifiedNodesMax) : max_names_(max_names) {}
  bool Contains(const fusefs::ChunkName& name) const;
  // Adds `name`; clears the set first when it is full.
  void Add(const fusefs::ChunkName& name);
  void Clear();
  std::size_t size() const;

 private:
  const std::size_t max_names_;
  mutable std::mutex mutex_;
  std::unordered_set<fusefs::ChunkName, fusefs::ChunkNameHash> names_;  // GUARDED_BY(mutex_)
};

// The verdict on one file root.
enum class FileVerdict : std::uint8_t {
  kComplete = 0,
  kMissing = 1,   // some chunks are absent: they were added to the walk's missing list
  kRejected = 2,  // the root or a node does not decode, or a node's level is not its place's
};

class CompletenessWalk {
 public:
  // `store` and `verified` are not owned. `names_max`: the bound of missing(); names past it
  // are not listed (the verdict is still kMissing).
  CompletenessWalk(fusefs::ChunkStore* store, VerifiedNodes* verified, std::size_t names_max);

  // The verdict on the encoded FileRoot `root`. An error is the store's (not the client's).
  io::Task<Result<FileVerdict>> Check(std::string_view root);

  // Names found missing by every Check so far, each once, parents before their children's
  // level, at most names_max.
  const std::vector<fusefs::ChunkName>& missing() const { return missing_; }
  std::uint64_t chunks_checked() const { return chunks_checked_; }

 private:
  // Whether the subtree of `name` (a chunk at `level`: 0 leaf) is complete.
  io::Task<Result<FileVerdict>> Walk(fusefs::ChunkName name, int level);
  void AddMissing(const fusefs::ChunkName& name);

  fusefs::ChunkStore* const store_;
  VerifiedNodes* const verified_;
  const std::size_t names_max_;
  std::mutex mutex_;
  std::vector<fusefs::ChunkName> missing_;  // GUARDED_BY(mutex_) while a Check runs
  std::unordered_set<fusefs::ChunkName, fusefs::ChunkNameHash> missing_set_;
  std::uint64_t chunks_checked_ = 0;
};

}  // namespace cascadefs::hub
