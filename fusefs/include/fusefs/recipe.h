// recipe.h: a file as a Merkle tree of chunks (docs/formats/recipe.md).
//
// Leaves are the file's data chunks. An inner node at level k >= 1 lists (child name, child byte
// length) for children at level k-1; nodes are chunks too, named by their hash and stored in the
// same ChunkStore. Each level's entry list is cut into nodes content-defined: a node ends after
// an entry whose name's digest picks it (about 1 in kNodeTargetEntries), never before
// kNodeMinEntries entries and always at kNodeMaxEntries. So equal runs of chunks give equal
// nodes, and node cuts are as stable under edits as chunk cuts.
//
// The tree is canonical: it is a function of the file's bytes and its chunker. Levels are built
// until one holds a single entry, which is the root; an edit (Splice) gives the same root as
// building the edited bytes afresh, so two files with equal bytes have equal roots.
//
// Splice re-chunks from the last old cut before the edit and stops at the first new cut that
// lands on an old cut after it, then does the same one level up with the changed entries: it
// reads and writes O(log n) nodes and only the chunks near the edit.
//
// Thread safety: RecipeTree holds no mutable state besides its store; calls may run
// concurrently. A FileRoot is a value.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/io/task.h"
#include "engine/result.h"
#include "engine/status.h"
#include "fusefs/chunk_name.h"
#include "fusefs/chunk_store.h"
#include "fusefs/chunker.h"

namespace cascadefs::fusefs {

inline constexpr std::size_t kNodeMinEntries = 4;
inline constexpr std::size_t kNodeTargetEntries = 64;  // ~1.3 KiB nodes at ~20 B per entry
inline constexpr std::size_t kNodeMaxEntries = 256;
inline constexpr int kTreeHeightMax = 12;  // 256^12 leaves: beyond any file
// Decoded inner nodes a RecipeTree keeps for reads, counted by their entries' bytes. A random
// 4 KiB read of a 1 GiB file walks 3 nodes for 1 leaf: without the cache, 3 of its 4 store
// reads and every decode. Names are content hashes, so a cached node never goes stale.
inline constexpr std::size_t kNodeCacheBytesMax = 16 << 20;
// Leaf reads one Read keeps in flight at once; so it holds at most this many leaves
// (kLeafReadsInFlightMax x kChunkSizeMax bytes, 8 MiB) besides its output.
inline constexpr std::size_t kLeafReadsInFlightMax = 32;

// What a file's inode records about its bytes. An empty file has a FileRoot of length 0 and a
// null name; a deleted file has no FileRoot at all (the namespace holds std::optional).
struct FileRoot {
  ChunkName name;  // the root chunk: a leaf when height == 0, else a node
  std::uint64_t length = 0;
  std::uint8_t height = 0;  // 0: the file is one leaf chunk
  ChunkerKind kind = ChunkerKind::kText;

  bool empty() const { return length == 0; }

  // Encoded form (docs/formats/recipe.md, "File roots"): version, kind, height, varint length,
  // and the name when length > 0.
  std::string Encode() const;
  static Result<FileRoot> Decode(std::string_view encoded);

  friend bool operator==(const FileRoot&, const FileRoot&) = default;
};

// One entry of an inner node.
struct NodeEntry {
  ChunkName name;
  std::uint64_t length = 0;  // bytes of the file under this child, > 0
  friend bool operator==(const NodeEntry&, const NodeEntry&) = default;
};

// An inner node's bytes <-> its entries. Decode validates everything (magic, level range, counts,
// lengths > 0 and summing without overflow, no trailing bytes) and names what is wrong.
std::string EncodeNode(int level, const std::vector<NodeEntry>& entries);
struct DecodedNode {
  int level = 0;
  std::vector<NodeEntry> entries;
  std::uint64_t total_length = 0;
};
Result<DecodedNode> DecodeNode(std::string_view bytes);

// Counts of what a build or an edit wrote, for stats and the benchmark.
struct TreeWriteStats {
  std::uint64_t leaves_written = 0;  // chunks new to the store
  std::uint64_t nodes_written = 0;
  std::uint64_t chunks_reused = 0;  // Puts of chunks the store already held
  std::uint64_t stored_bytes = 0;   // encoded bytes of everything new
  std::uint64_t nodes_read = 0;
  std::uint64_t leaves_read = 0;
};

class RecipeTree {
 public:
  // `store` is not owned and must outlive the tree. `options` must be valid.
  // `node_cache_bytes` bounds the decoded-node cache of reads (tests make it small).
  RecipeTree(ChunkStore* store, const ChunkerOptions& options,
             std::size_t node_cache_bytes = kNodeCacheBytesMax);
  ~RecipeTree();
  RecipeTree(const RecipeTree&) = delete;
  RecipeTree& operator=(const RecipeTree&) = delete;

  const ChunkerOptions& options() const { return options_; }

  // A tree of `data`, with the chunker DetectChunkerKind picks (or `kind`).
  io::Task<Result<FileRoot>> Build(std::string_view data, TreeWriteStats* stats = nullptr);
  io::Task<Result<FileRoot>> Build(ChunkerKind kind, std::string_view data,
                                   TreeWriteStats* stats = nullptr);

  // Appends to `out` the bytes [offset, offset + length) of the file, clipped at its end.
  io::Task<Status> Read(const FileRoot& root, std::uint64_t offset, std::uint64_t length,
                        std::string* out, TreeWriteStats* stats = nullptr);

  // Replaces `remove_length` bytes at `offset` (offset <= root.length, offset + remove_length
  // <= root.length) with `insert`, returning the new root. The chunker kind stays the file's.
  io::Task<Result<FileRoot>> Splice(const FileRoot& root, std::uint64_t offset,
                                    std::uint64_t remove_length, std::string_view insert,
                                    TreeWriteStats* stats = nullptr);

  // pwrite semantics: overwrites [offset, offset + data.size()), growing the file; a gap past the
  // old end reads as zeros.
  io::Task<Result<FileRoot>> Write(const FileRoot& root, std::uint64_t offset,
                                   std::string_view data, TreeWriteStats* stats = nullptr);
  // Shrinks, or grows with zeros.
  io::Task<Result<FileRoot>> Truncate(const FileRoot& root, std::uint64_t new_length,
                                      TreeWriteStats* stats = nullptr);

  // Every chunk (nodes and leaves) of `root`'s tree that `other`'s tree does not hold, walking
  // only subtrees whose names differ: subtrees with equal names on both sides are skipped whole.
  // Names are appended to `missing` parents first, each once. A chunk that `other` holds only
  // inside a subtree matched as a whole elsewhere may still be listed (a superset, never less).
  io::Task<Status> Diff(const FileRoot& root, const FileRoot& other,
                        std::vector<ChunkName>* missing);

  // Every chunk of `root`'s tree for which `has` answers false, skipping the subtree of every
  // node `has` answers true for (a store holds a node only after its children).
  using HasChunk = std::function<io::Task<Result<bool>>(const ChunkName&)>;
  io::Task<Status> Missing(const FileRoot& root, const HasChunk& has,
                           std::vector<ChunkName>* missing);

  // Every node and leaf name of the tree, parents first (fsck, inspect, gc roots).
  io::Task<Status> ListChunks(const FileRoot& root, std::vector<ChunkName>* names,
                              std::vector<int>* levels);

 private:
  friend class TreeBuilder;
  friend class SpliceOp;
  friend class LevelCursor;
  io::Task<Result<DecodedNode>> LoadNode(const ChunkName& name, int level,
                                         std::uint64_t expected_length, TreeWriteStats* stats);
  // LoadNode through the node cache (kNodeCacheBytesMax), without copying the entries.
  io::Task<Result<std::shared_ptr<const DecodedNode>>> LoadCachedNode(const ChunkName& name,
                                                                      int level,
                                                                      std::uint64_t expected_length,
                                                                      TreeWriteStats* stats);
  io::Task<Status> ReadRange(const ChunkName& name, int level, std::uint64_t entry_length,
                             std::uint64_t begin, std::uint64_t end, std::string* out,
                             TreeWriteStats* stats);
  // The part [begin, end) of a level-1 node's leaves, read concurrently.
  io::Task<Status> ReadLeaves(const DecodedNode& node, std::uint64_t begin, std::uint64_t end,
                              std::string* out, TreeWriteStats* stats);
  io::Task<Result<FileRoot>> CanonicalRoot(FileRoot root, TreeWriteStats* stats);
  // Stores a leaf / an inner node at `level` over `entries`; returns its parent entry.
  io::Task<Result<NodeEntry>> StoreLeaf(std::string_view chunk, TreeWriteStats* stats);
  io::Task<Result<NodeEntry>> StoreNode(int level, const std::vector<NodeEntry>& entries,
                                        TreeWriteStats* stats);
  // Parents first, each chunk once; skips the subtree of every chunk `has` (if given) holds.
  io::Task<Status> WalkTopDown(const FileRoot& root, const HasChunk* has,
                               std::vector<ChunkName>* names, std::vector<int>* levels);

  ChunkStore* store_;
  ChunkerOptions options_;
  class NodeCache;
  std::unique_ptr<NodeCache> node_cache_;
};

// Builds a tree from a stream of appends with bounded memory: one chunk's worth of bytes
// (max chunk size) plus up to kNodeMaxEntries pending entries per level.
class TreeBuilder {
 public:
  TreeBuilder(RecipeTree* tree, ChunkerKind kind, TreeWriteStats* stats = nullptr);

  io::Task<Status> Append(std::string_view data);
  // Ends the stream and returns the root. The builder is spent afterwards.
  io::Task<Result<FileRoot>> Finish();

  // For Splice: continues a level above leaves. Entries pushed here join level `level`.
  io::Task<Status> PushEntry(int level, const NodeEntry& entry);
  io::Task<Status> PushLeaf(std::string_view chunk);

 private:
  io::Task<Status> CutLeaves(bool at_end);
  io::Task<Status> EmitNode(int level);

  RecipeTree* tree_;
  Chunker chunker_;
  TreeWriteStats* stats_;
  std::string pending_bytes_;
  std::size_t pending_begin_ = 0;  // consumed prefix of pending_bytes_
  struct Level {
    std::vector<NodeEntry> pending;
    std::uint64_t pushed = 0;  // entries pushed to this level in total
  };
  std::vector<Level> levels_;  // levels_[k]: entries of level k waiting for a node at k+1
  std::uint64_t length_ = 0;
};

// Whether the node chunker cuts after `entry`, the `count`-th entry (1-based) of a node.
bool NodeCutAfter(const NodeEntry& entry, std::size_t count);

}  // namespace cascadefs::fusefs
