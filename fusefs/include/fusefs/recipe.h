// recipe.h: a file as a Merkle tree of chunks (docs/formats/recipe.md).
//
// Leaves are the file's data chunks, and holes: a hole is one level-0 entry with the null name
// ("N bytes of zeros"), stores nothing and reads as zeros. An inner node at level k >= 1 lists
// (child name, child byte length, hole bytes under the child) for children at level k-1; nodes
// are chunks too, named by their hash and stored in the same ChunkStore. Each level's entry list is
// cut into nodes content-defined: a node ends after an entry whose name's digest picks it (about 1
// in kNodeTargetEntries), never before kNodeMinEntries entries and always at kNodeMaxEntries. So
// equal runs of chunks give equal nodes, and node cuts are as stable under edits as chunk cuts.
//
// The tree is canonical: it is a function of the file's bytes, where its holes are, and its
// chunker. Holes are maximal (never two adjacent) and each data run is chunked from its first
// byte. Levels are built until one holds a single entry, which is the root; an edit (Splice)
// gives the same root as building the edited content afresh, so two files with equal bytes and
// equal holes have equal roots.
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
// null name; a file that is all hole has hole_bytes == length, height 0 and a null name; a
// deleted file has no FileRoot at all (the namespace holds std::optional).
struct FileRoot {
  ChunkName name;  // the root chunk: a leaf when height == 0, else a node; null: empty or hole
  std::uint64_t length = 0;
  std::uint64_t hole_bytes = 0;  // bytes of the file in holes, 0..length
  std::uint8_t height = 0;       // 0: the file is one leaf chunk (or one hole)
  ChunkerKind kind = ChunkerKind::kText;

  bool empty() const { return length == 0; }
  // True when the file has bytes and all of them are a hole: its tree is one hole entry.
  bool all_hole() const { return length > 0 && hole_bytes == length; }
  // Bytes the file stores as data (st_blocks): holes cost nothing.
  std::uint64_t data_bytes() const { return length - hole_bytes; }

  // Encoded form (docs/formats/recipe.md, "File roots"): version (1 without holes, 2 with),
  // kind, height, varint length, varint hole bytes (version 2), and the name unless the file is
  // empty or all hole.
  std::string Encode() const;
  static Result<FileRoot> Decode(std::string_view encoded);

  friend bool operator==(const FileRoot&, const FileRoot&) = default;
};

// One entry of an inner node. A hole is a level-0 entry with the null name: it names no chunk,
// and its hole_bytes equal its length.
struct NodeEntry {
  ChunkName name;
  std::uint64_t length = 0;      // bytes of the file under this child, > 0
  std::uint64_t hole_bytes = 0;  // bytes of holes under this child, 0..length
  bool hole() const { return name.is_null(); }
  friend bool operator==(const NodeEntry&, const NodeEntry&) = default;
};

// The level-0 entry of a hole of `length` bytes. REQUIRES: length > 0.
NodeEntry HoleEntry(std::uint64_t length);

// An inner node's bytes <-> its entries. Version 1 when no entry has hole bytes, else version 2.
// Decode validates everything (magic, version, level range, counts, lengths > 0 and summing
// without overflow, hole bytes, canonical form, no trailing bytes) and names what is wrong.
// EncodeNode REQUIRES: holes only at level 1, never two adjacent; hole_bytes <= length.
std::string EncodeNode(int level, const std::vector<NodeEntry>& entries);
struct DecodedNode {
  int level = 0;
  std::vector<NodeEntry> entries;
  std::uint64_t total_length = 0;
  std::uint64_t total_hole_bytes = 0;
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

  // A tree of content that may hold holes: `pieces` in file order, each data bytes or a hole.
  struct Piece {
    std::string_view data;         // used when hole_bytes == 0
    std::uint64_t hole_bytes = 0;  // > 0: a hole of this many bytes
  };
  io::Task<Result<FileRoot>> BuildPieces(ChunkerKind kind, const std::vector<Piece>& pieces,
                                         TreeWriteStats* stats = nullptr);

  // Appends to `out` the bytes [offset, offset + length) of the file, clipped at its end. Holes
  // append zeros and read nothing from the store.
  io::Task<Status> Read(const FileRoot& root, std::uint64_t offset, std::uint64_t length,
                        std::string* out, TreeWriteStats* stats = nullptr);

  // Replaces `remove_length` bytes at `offset` (offset <= root.length, offset + remove_length
  // <= root.length) with `insert`, returning the new root. The chunker kind stays the file's.
  io::Task<Result<FileRoot>> Splice(const FileRoot& root, std::uint64_t offset,
                                    std::uint64_t remove_length, std::string_view insert,
                                    TreeWriteStats* stats = nullptr);

  // Like Splice, inserting `pieces` (data and holes) instead of bytes.
  io::Task<Result<FileRoot>> SplicePieces(const FileRoot& root, std::uint64_t offset,
                                          std::uint64_t remove_length,
                                          const std::vector<Piece>& pieces,
                                          TreeWriteStats* stats = nullptr);

  // pwrite semantics: overwrites [offset, offset + data.size()), growing the file; a gap past the
  // old end becomes a hole (reads as zeros). Writing into a hole stores only the written bytes.
  io::Task<Result<FileRoot>> Write(const FileRoot& root, std::uint64_t offset,
                                   std::string_view data, TreeWriteStats* stats = nullptr);
  // Write of the bytes of `run` joined, without joining them (the pieces of a dirty buffer).
  io::Task<Result<FileRoot>> WriteRun(const FileRoot& root, std::uint64_t offset,
                                      const std::vector<std::string_view>& run,
                                      TreeWriteStats* stats = nullptr);
  // Shrinks, or grows with a hole: O(height) whatever the growth.
  io::Task<Result<FileRoot>> Truncate(const FileRoot& root, std::uint64_t new_length,
                                      TreeWriteStats* stats = nullptr);
  // Makes [offset, offset + length) a hole, clipped at the end of the file (which it never
  // moves). Bytes on either side stay as they were; chunks inside the range are dropped.
  io::Task<Result<FileRoot>> PunchHole(const FileRoot& root, std::uint64_t offset,
                                       std::uint64_t length, TreeWriteStats* stats = nullptr);

  // The first byte at or after `offset` that is data (SeekData) or in a hole (SeekHole); the end
  // of the file counts as a hole, so SeekHole returns root.length when no hole follows, and
  // SeekData returns root.length when only holes follow. REQUIRES: offset < root.length.
  // O(height) node reads: subtrees whose hole bytes rule them out are skipped unread.
  io::Task<Result<std::uint64_t>> SeekData(const FileRoot& root, std::uint64_t offset);
  io::Task<Result<std::uint64_t>> SeekHole(const FileRoot& root, std::uint64_t offset);

  // Every chunk (nodes and leaves) of `root`'s tree that `other`'s tree does not hold, walking
  // only subtrees whose names differ: subtrees with equal names on both sides are skipped whole.
  // Holes name no chunk and are never listed (they need no transfer).
  // Names are appended to `missing` parents first, each once. A chunk that `other` holds only
  // inside a subtree matched as a whole elsewhere may still be listed (a superset, never less).
  io::Task<Status> Diff(const FileRoot& root, const FileRoot& other,
                        std::vector<ChunkName>* missing);

  // Every chunk of `root`'s tree for which `has` answers false, skipping the subtree of every
  // node `has` answers true for (a store holds a node only after its children).
  using HasChunk = std::function<io::Task<Result<bool>>(const ChunkName&)>;
  io::Task<Status> Missing(const FileRoot& root, const HasChunk& has,
                           std::vector<ChunkName>* missing);

  // Every node and leaf name of the tree, parents first (fsck, inspect, gc roots); no holes.
  io::Task<Status> ListChunks(const FileRoot& root, std::vector<ChunkName>* names,
                              std::vector<int>* levels);

 private:
  friend class TreeBuilder;
  friend class SpliceOp;
  friend class LevelCursor;
  // The node `entry` names at `level`, checked against what `entry` says it covers (length and
  // hole bytes).
  io::Task<Result<DecodedNode>> LoadNode(const NodeEntry& entry, int level, TreeWriteStats* stats);
  // LoadNode through the node cache (kNodeCacheBytesMax), without copying the entries.
  io::Task<Result<std::shared_ptr<const DecodedNode>>> LoadCachedNode(const NodeEntry& entry,
                                                                      int level,
                                                                      TreeWriteStats* stats);
  io::Task<Status> ReadRange(const NodeEntry& entry, int level, std::uint64_t begin,
                             std::uint64_t end, std::string* out, TreeWriteStats* stats);
  // SeekData (want_hole false) or SeekHole (true) within the subtree of `entry` at `level`,
  // which starts at file offset `start`: the first matching offset >= `offset`, or nullopt.
  io::Task<Result<std::optional<std::uint64_t>>> SeekIn(const NodeEntry& entry, int level,
                                                        std::uint64_t start, std::uint64_t offset,
                                                        bool want_hole);
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
  // A hole of `length` bytes (> 0): ends the pending data run; merges with an adjacent hole.
  io::Task<Status> AppendHole(std::uint64_t length);
  // Ends the stream and returns the root. The builder is spent afterwards.
  io::Task<Result<FileRoot>> Finish();

  // For Splice: continues a level above leaves. Entries pushed here join level `level`.
  io::Task<Status> PushEntry(int level, const NodeEntry& entry);
  io::Task<Status> PushLeaf(std::string_view chunk);

 private:
  io::Task<Status> EmitNode(int level);
  // Cuts all of pending_bytes_ into leaves: the data run ends here.
  io::Task<Status> EndDataRun();

  RecipeTree* tree_;
  Chunker chunker_;
  TreeWriteStats* stats_;
  std::string pending_bytes_;
  std::uint64_t pending_hole_bytes_ = 0;  // a hole not yet pushed (it may still grow)
  std::size_t pending_begin_ = 0;         // consumed prefix of pending_bytes_
  struct Level {
    std::vector<NodeEntry> pending;
    std::uint64_t pushed = 0;  // entries pushed to this level in total
  };
  std::vector<Level> levels_;  // levels_[k]: entries of level k waiting for a node at k+1
  std::uint64_t length_ = 0;
};

// Whether the node chunker cuts after `entry`, the `count`-th entry (1-based) of a node. A hole's
// cut value is a mix of its length (it has no digest).
bool NodeCutAfter(const NodeEntry& entry, std::size_t count);

}  // namespace cascadefs::fusefs
