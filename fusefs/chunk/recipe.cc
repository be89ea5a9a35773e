#include "fusefs/recipe.h"

#include <algorithm>
#include <deque>
#include <list>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "chunk/varint.h"
#include "engine/assert.h"

namespace cascadefs::fusefs {
namespace {

// docs/formats/recipe.md
constexpr std::uint8_t kNodeMagic = 0xC7;
constexpr std::uint8_t kNodeFormatVersion = 1;
constexpr std::uint8_t kRootFormatVersion = 1;

// Zero-filled growth goes in steps of this many bytes, so growing a file by gigabytes never
// holds more than this much in memory.
constexpr std::uint64_t kZeroFillStepBytes = 4 << 20;

Status NodeCorruption(const ChunkName& name, int level, const std::string& what) {
  return Status::Corruption("recipe node " + name.ToHex() + " (level " + std::to_string(level) +
                            "): " + what);
}

void AddWritten(TreeWriteStats* stats, bool leaf, const PutOutcome& outcome) {
  if (stats == nullptr) return;
  if (!outcome.added) {
    ++stats->chunks_reused;
    return;
  }
  ++(leaf ? stats->leaves_written : stats->nodes_written);
  stats->stored_bytes += outcome.stored_bytes;
}

}  // namespace

// ---- encodings --------------------------------------------------------------------------------

std::string FileRoot::Encode() const {
  std::string out;
  out.push_back(static_cast<char>(kRootFormatVersion));
  out.push_back(static_cast<char>(kind));
  out.push_back(static_cast<char>(height));
  AppendVarint64(&out, length);
  if (length > 0) out.append(name.encoded());
  return out;
}

Result<FileRoot> FileRoot::Decode(std::string_view encoded) {
  if (encoded.size() < 4) return Status::Corruption("file root: truncated");
  if (static_cast<std::uint8_t>(encoded[0]) != kRootFormatVersion) {
    return Status::Corruption("file root: unknown version " +
                              std::to_string(static_cast<std::uint8_t>(encoded[0])));
  }
  FileRoot root;
  const auto kind = static_cast<std::uint8_t>(encoded[1]);
  if (kind != static_cast<std::uint8_t>(ChunkerKind::kText) &&
      kind != static_cast<std::uint8_t>(ChunkerKind::kBinary)) {
    return Status::Corruption("file root: unknown chunker kind " + std::to_string(kind));
  }
  root.kind = static_cast<ChunkerKind>(kind);
  root.height = static_cast<std::uint8_t>(encoded[2]);
  if (root.height > kTreeHeightMax) {
    return Status::Corruption("file root: height " + std::to_string(root.height) +
                              " above the limit " + std::to_string(kTreeHeightMax));
  }
  std::string_view rest = encoded.substr(3);
  if (!ConsumeVarint64(&rest, &root.length)) return Status::Corruption("file root: bad length");
  if (root.length == 0) {
    if (root.height != 0 || !rest.empty()) {
      return Status::Corruption("file root: an empty file with a tree");
    }
    return root;
  }
  Result<ChunkName> name = ChunkName::Decode(rest);
  if (!name.ok()) return std::move(name).status().WithContext("file root");
  root.name = name.value();
  return root;
}

std::string EncodeNode(int level, const std::vector<NodeEntry>& entries) {
  CFS_ASSERT(level >= 1 && level <= kTreeHeightMax);
  CFS_ASSERT(!entries.empty() && entries.size() <= kNodeMaxEntries);
  std::string out;
  out.reserve(8 + entries.size() * (ChunkName::kEncodedSize + 4));
  out.push_back(static_cast<char>(kNodeMagic));
  out.push_back(static_cast<char>(kNodeFormatVersion));
  out.push_back(static_cast<char>(level));
  AppendVarint64(&out, entries.size());
  for (const NodeEntry& entry : entries) {
    out.append(entry.name.encoded());
    AppendVarint64(&out, entry.length);
  }
  return out;
}

Result<DecodedNode> DecodeNode(std::string_view bytes) {
  if (bytes.size() < 4) return Status::Corruption("truncated header");
  if (static_cast<std::uint8_t>(bytes[0]) != kNodeMagic) return Status::Corruption("bad magic");
  if (static_cast<std::uint8_t>(bytes[1]) != kNodeFormatVersion) {
    return Status::Corruption("unknown node version " +
                              std::to_string(static_cast<std::uint8_t>(bytes[1])));
  }
  DecodedNode node;
  node.level = static_cast<std::uint8_t>(bytes[2]);
  if (node.level < 1 || node.level > kTreeHeightMax) {
    return Status::Corruption("level " + std::to_string(node.level) + " out of range");
  }
  std::string_view rest = bytes.substr(3);
  std::uint64_t count = 0;
  if (!ConsumeVarint64(&rest, &count)) return Status::Corruption("bad entry count");
  if (count < 1 || count > kNodeMaxEntries) {
    return Status::Corruption("entry count " + std::to_string(count) + " out of range");
  }
  node.entries.reserve(count);
  for (std::uint64_t i = 0; i < count; ++i) {
    if (rest.size() < ChunkName::kEncodedSize) {
      return Status::Corruption("entry " + std::to_string(i) + " truncated");
    }
    Result<ChunkName> name = ChunkName::Decode(rest.substr(0, ChunkName::kEncodedSize));
    if (!name.ok()) {
      return std::move(name).status().WithContext("entry " + std::to_string(i));
    }
    rest.remove_prefix(ChunkName::kEncodedSize);
    NodeEntry entry{name.value(), 0};
    if (!ConsumeVarint64(&rest, &entry.length) || entry.length == 0) {
      return Status::Corruption("entry " + std::to_string(i) + ": bad length");
    }
    if (entry.length > UINT64_MAX - node.total_length) {
      return Status::Corruption("entry lengths overflow");
    }
    node.total_length += entry.length;
    node.entries.push_back(entry);
  }
  if (!rest.empty()) {
    return Status::Corruption(std::to_string(rest.size()) + " trailing bytes");
  }
  return node;
}

bool NodeCutAfter(const NodeEntry& entry, std::size_t count) {
  if (count < kNodeMinEntries) return false;
  if (count >= kNodeMaxEntries) return true;
  return entry.name.digest_prefix64() % kNodeTargetEntries == 0;
}

// ---- TreeBuilder ------------------------------------------------------------------------------

TreeBuilder::TreeBuilder(RecipeTree* tree, ChunkerKind kind, TreeWriteStats* stats)
    : tree_(tree), chunker_(kind, tree->options()), stats_(stats) {}

io::Task<Status> TreeBuilder::PushLeaf(std::string_view chunk) {
  Result<NodeEntry> leaf = co_await tree_->StoreLeaf(chunk, stats_);
  if (!leaf.ok()) co_return leaf.status();
  length_ += chunk.size();
  co_return co_await PushEntry(0, leaf.value());
}

io::Task<Status> TreeBuilder::PushEntry(int level, const NodeEntry& entry) {
  if (level >= kTreeHeightMax) co_return Status::InvalidArgument("file too large for a recipe");
  if (levels_.size() <= static_cast<std::size_t>(level)) levels_.resize(level + 1);
  Level& slot = levels_[level];
  slot.pending.push_back(entry);
  ++slot.pushed;
  if (NodeCutAfter(entry, slot.pending.size())) co_return co_await EmitNode(level);
  co_return Status::OK();
}

io::Task<Status> TreeBuilder::EmitNode(int level) {
  std::vector<NodeEntry> entries = std::move(levels_[level].pending);
  levels_[level].pending.clear();
  Result<NodeEntry> node = co_await tree_->StoreNode(level + 1, entries, stats_);
  if (!node.ok()) co_return node.status();
  co_return co_await PushEntry(level + 1, node.value());
}

io::Task<Status> TreeBuilder::Append(std::string_view data) {
  const std::size_t max = chunker_.max_chunk_bytes();
  while (!data.empty()) {
    if (pending_bytes_.empty() && data.size() >= max) {
      // Cut straight from the caller's bytes: a large append is never copied.
      const std::size_t cut = *chunker_.FindCut(data);
      CFS_CO_RETURN_IF_ERROR(co_await PushLeaf(data.substr(0, cut)));
      data.remove_prefix(cut);
      continue;
    }
    const std::size_t take = std::min(max - pending_bytes_.size(), data.size());
    pending_bytes_.append(data.substr(0, take));
    data.remove_prefix(take);
    if (pending_bytes_.size() < max) break;
    const std::size_t cut = *chunker_.FindCut(pending_bytes_);
    CFS_CO_RETURN_IF_ERROR(co_await PushLeaf(std::string_view(pending_bytes_).substr(0, cut)));
    pending_bytes_.erase(0, cut);
  }
  co_return Status::OK();
}

io::Task<Result<FileRoot>> TreeBuilder::Finish() {
  while (!pending_bytes_.empty()) {
    const std::optional<std::size_t> found = chunker_.FindCut(pending_bytes_);
    const std::size_t cut = found.has_value() ? *found : pending_bytes_.size();
    CFS_CO_RETURN_IF_ERROR(co_await PushLeaf(std::string_view(pending_bytes_).substr(0, cut)));
    pending_bytes_.erase(0, cut);
  }
  FileRoot root;
  root.kind = chunker_.kind();
  for (std::size_t level = 0; level < levels_.size(); ++level) {
    if (levels_[level].pushed == 0) continue;  // below the level a Splice started at
    if (levels_[level].pushed == 1) {
      const NodeEntry entry = levels_[level].pending.front();
      root.name = entry.name;
      root.length = entry.length;
      root.height = static_cast<std::uint8_t>(level);
      co_return root;
    }
    if (!levels_[level].pending.empty()) {
      CFS_CO_RETURN_IF_ERROR(co_await EmitNode(static_cast<int>(level)));
    }
  }
  CFS_ASSERT(length_ == 0);
  co_return root;  // empty file
}

// ---- RecipeTree: build and read ---------------------------------------------------------------

// An LRU map of decoded nodes by name, bounded in bytes. Thread-safe (one mutex, held only for
// the map and list operations).
class RecipeTree::NodeCache {
 public:
  explicit NodeCache(std::size_t bytes_max) : bytes_max_(bytes_max) {}

  std::shared_ptr<const DecodedNode> Find(const ChunkName& name) {
    std::lock_guard lock(mutex_);
    const auto it = index_.find(name);
    if (it == index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);  // most recently used first
    return it->second->node;
  }

  void Insert(const ChunkName& name, std::shared_ptr<const DecodedNode> node) {
    const std::size_t cost = CostOf(*node);
    if (cost > bytes_max_) return;
    std::lock_guard lock(mutex_);
    if (index_.contains(name)) return;
    lru_.push_front({name, std::move(node), cost});
    index_.emplace(name, lru_.begin());
    bytes_ += cost;
    while (bytes_ > bytes_max_) {
      bytes_ -= lru_.back().cost;
      index_.erase(lru_.back().name);
      lru_.pop_back();
    }
  }

 private:
  struct Entry {
    ChunkName name;
    std::shared_ptr<const DecodedNode> node;
    std::size_t cost;
  };
  // The entries, the map slot and the list node: what the node holds in memory.
  static std::size_t CostOf(const DecodedNode& node) {
    return node.entries.size() * sizeof(NodeEntry) + sizeof(DecodedNode) + sizeof(Entry) + 64;
  }

  const std::size_t bytes_max_;
  std::mutex mutex_;
  std::list<Entry> lru_;  // GUARDED_BY(mutex_)
  std::unordered_map<ChunkName, std::list<Entry>::iterator, ChunkNameHash> index_;  // ditto
  std::size_t bytes_ = 0;  // GUARDED_BY(mutex_)
};

RecipeTree::RecipeTree(ChunkStore* store, const ChunkerOptions& options,
                       std::size_t node_cache_bytes)
    : store_(store), options_(options), node_cache_(std::make_unique<NodeCache>(node_cache_bytes)) {
  CFS_ASSERT(options_.Validate().ok());
}

RecipeTree::~RecipeTree() = default;

io::Task<Result<FileRoot>> RecipeTree::Build(std::string_view data, TreeWriteStats* stats) {
  co_return co_await Build(DetectChunkerKind(data), data, stats);
}

io::Task<Result<FileRoot>> RecipeTree::Build(ChunkerKind kind, std::string_view data,
                                             TreeWriteStats* stats) {
  TreeBuilder builder(this, kind, stats);
  CFS_CO_RETURN_IF_ERROR(co_await builder.Append(data));
  co_return co_await builder.Finish();
}

io::Task<Result<DecodedNode>> RecipeTree::LoadNode(const ChunkName& name, int level,
                                                   std::uint64_t expected_length,
                                                   TreeWriteStats* stats) {
  Result<std::string> bytes = co_await store_->Get(name);
  if (!bytes.ok()) {
    co_return std::move(bytes).status().WithContext("recipe node (level " + std::to_string(level) +
                                                    ")");
  }
  if (stats != nullptr) ++stats->nodes_read;
  Result<DecodedNode> node = DecodeNode(bytes.value());
  if (!node.ok()) co_return NodeCorruption(name, level, std::string(node.status().message()));
  if (node.value().level != level) {
    co_return NodeCorruption(name, level, "holds level " + std::to_string(node.value().level));
  }
  if (node.value().total_length != expected_length) {
    co_return NodeCorruption(name, level,
                             "covers " + std::to_string(node.value().total_length) +
                                 " bytes, its parent says " + std::to_string(expected_length));
  }
  co_return node;
}

io::Task<Result<std::shared_ptr<const DecodedNode>>> RecipeTree::LoadCachedNode(
    const ChunkName& name, int level, std::uint64_t expected_length, TreeWriteStats* stats) {
  std::shared_ptr<const DecodedNode> node = node_cache_->Find(name);
  if (node == nullptr) {
    Result<DecodedNode> loaded = co_await LoadNode(name, level, expected_length, stats);
    if (!loaded.ok()) co_return loaded.status();
    node = std::make_shared<const DecodedNode>(std::move(loaded).value());
    node_cache_->Insert(name, node);
    co_return node;
  }
  // The same name is the same bytes, but a parent may still name it with another level or
  // length (a damaged parent): the checks LoadNode makes hold for cached nodes too.
  if (node->level != level) {
    co_return NodeCorruption(name, level, "holds level " + std::to_string(node->level));
  }
  if (node->total_length != expected_length) {
    co_return NodeCorruption(name, level,
                             "covers " + std::to_string(node->total_length) +
                                 " bytes, its parent says " + std::to_string(expected_length));
  }
  co_return node;
}

io::Task<Status> RecipeTree::ReadRange(const ChunkName& name, int level, std::uint64_t entry_length,
                                       std::uint64_t begin, std::uint64_t end, std::string* out,
                                       TreeWriteStats* stats) {
  if (level == 0) {
    Result<std::string> leaf = co_await store_->Get(name);
    if (!leaf.ok()) co_return leaf.status();
    if (stats != nullptr) ++stats->leaves_read;
    if (leaf.value().size() != entry_length) {
      co_return Status::Corruption("chunk " + name.ToHex() + ": holds " +
                                   std::to_string(leaf.value().size()) +
                                   " bytes, its recipe says " + std::to_string(entry_length));
    }
    out->append(std::string_view(leaf.value()).substr(begin, end - begin));
    co_return Status::OK();
  }
  Result<std::shared_ptr<const DecodedNode>> node =
      co_await LoadCachedNode(name, level, entry_length, stats);
  if (!node.ok()) co_return node.status();
  if (level == 1) {
    co_return co_await ReadLeaves(*node.value(), begin, end, out, stats);
  }
  std::uint64_t child_start = 0;
  for (const NodeEntry& child : node.value()->entries) {
    const std::uint64_t child_end = child_start + child.length;
    if (child_end > begin) {
      const std::uint64_t from = std::max(begin, child_start) - child_start;
      const std::uint64_t to = std::min(end, child_end) - child_start;
      CFS_CO_RETURN_IF_ERROR(
          co_await ReadRange(child.name, level - 1, child.length, from, to, out, stats));
    }
    child_start = child_end;
    if (child_start >= end) break;
  }
  co_return Status::OK();
}

io::Task<Status> RecipeTree::ReadLeaves(const DecodedNode& node, std::uint64_t begin,
                                        std::uint64_t end, std::string* out,
                                        TreeWriteStats* stats) {
  // The leaves overlapping [begin, end).
  struct Piece {
    ChunkName name;
    std::uint64_t length;
    std::uint64_t from;
    std::uint64_t to;
  };
  std::vector<Piece> pieces;
  std::uint64_t child_start = 0;
  for (const NodeEntry& child : node.entries) {
    const std::uint64_t child_end = child_start + child.length;
    if (child_end > begin) {
      pieces.push_back({child.name, child.length, std::max(begin, child_start) - child_start,
                        std::min(end, child_end) - child_start});
    }
    child_start = child_end;
    if (child_start >= end) break;
  }
  // Cold leaves are separate reads of the store: issued together, kLeafReadsInFlightMax at a
  // time, instead of one after another (a 1 MiB read of 16 KiB chunks is 64 reads).
  for (std::size_t first = 0; first < pieces.size(); first += kLeafReadsInFlightMax) {
    const std::size_t count = std::min(kLeafReadsInFlightMax, pieces.size() - first);
    std::vector<io::Task<Result<std::string>>> reads;
    reads.reserve(count);
    for (std::size_t i = first; i < first + count; ++i)
      reads.push_back(store_->Get(pieces[i].name));
    std::vector<Result<std::string>> leaves = co_await io::WhenAll(std::move(reads));
    for (std::size_t i = 0; i < count; ++i) {
      const Piece& piece = pieces[first + i];
      if (!leaves[i].ok()) co_return leaves[i].status();
      if (stats != nullptr) ++stats->leaves_read;
      const std::string& leaf = leaves[i].value();
      if (leaf.size() != piece.length) {
        co_return Status::Corruption("chunk " + piece.name.ToHex() + ": holds " +
                                     std::to_string(leaf.size()) + " bytes, its recipe says " +
                                     std::to_string(piece.length));
      }
      out->append(std::string_view(leaf).substr(piece.from, piece.to - piece.from));
    }
  }
  co_return Status::OK();
}

io::Task<Status> RecipeTree::Read(const FileRoot& root, std::uint64_t offset, std::uint64_t length,
                                  std::string* out, TreeWriteStats* stats) {
  if (offset >= root.length || length == 0) co_return Status::OK();
  const std::uint64_t end = offset + std::min(length, root.length - offset);
  co_return co_await ReadRange(root.name, root.height, root.length, offset, end, out, stats);
}

io::Task<Result<NodeEntry>> RecipeTree::StoreLeaf(std::string_view chunk, TreeWriteStats* stats) {
  const ChunkName name = ChunkName::Of(chunk);
  Result<PutOutcome> put = co_await store_->Put(name, chunk);
  if (!put.ok()) co_return put.status();
  AddWritten(stats, /*leaf=*/true, put.value());
  co_return NodeEntry{name, chunk.size()};
}

io::Task<Result<NodeEntry>> RecipeTree::StoreNode(int level, const std::vector<NodeEntry>& entries,
                                                  TreeWriteStats* stats) {
  const std::string bytes = EncodeNode(level, entries);
  const ChunkName name = ChunkName::Of(bytes);
  Result<PutOutcome> put = co_await store_->Put(name, bytes);
  if (!put.ok()) co_return put.status();
  AddWritten(stats, /*leaf=*/false, put.value());
  std::uint64_t total = 0;
  for (const NodeEntry& entry : entries) total += entry.length;
  co_return NodeEntry{name, total};
}

io::Task<Result<FileRoot>> RecipeTree::CanonicalRoot(FileRoot root, TreeWriteStats* stats) {
  // A full build stops at the lowest level holding one entry; an edit that shrank the tree may
  // leave nodes with a single child on top. Step down through them.
  while (root.height > 0) {
    Result<DecodedNode> node = co_await LoadNode(root.name, root.height, root.length, stats);
    if (!node.ok()) co_return node.status();
    if (node.value().entries.size() != 1) break;
    root.name = node.value().entries.front().name;
    --root.height;
  }
  co_return root;
}

// ---- LevelCursor: the entries of one level, in file order ---------------------------------------

// Nodes one Splice has read, by name: its cursors walk overlapping paths (the same upper nodes
// for every level), and each is read from the store once. Bounded by the nodes one edit touches,
// O(height) times the few nodes re-chunked per level.
using NodeCache = std::unordered_map<ChunkName, DecodedNode, ChunkNameHash>;

// Walks the entries of level `level` (0: leaves) of `root`'s tree, left to right, holding the
// nodes on the path from the root: O(height) nodes in memory.
class LevelCursor {
 public:
  LevelCursor(RecipeTree* tree, const FileRoot& root, int level, TreeWriteStats* stats,
              NodeCache* cache)
      : tree_(tree), root_(root), level_(level), stats_(stats), cache_(cache) {
    CFS_ASSERT(level >= 0 && level <= root.height && root.length > 0);
  }

  bool valid() const { return valid_; }
  const NodeEntry& entry() const { return entry_; }
  std::uint64_t entry_start() const { return entry_start_; }
  std::uint64_t entry_end() const { return entry_start_ + entry_.length; }

  // Positions at the entry holding byte `offset` (< root length).
  io::Task<Status> Seek(std::uint64_t offset) {
    CFS_ASSERT(offset < root_.length);
    stack_.clear();
    valid_ = true;
    if (level_ == root_.height) {
      entry_ = NodeEntry{root_.name, root_.length};
      entry_start_ = 0;
      co_return Status::OK();
    }
    NodeEntry node_entry{root_.name, root_.length};
    std::uint64_t node_start = 0;
    for (int level = root_.height; level > level_; --level) {
      Result<DecodedNode> node = co_await Load(node_entry, level);
      if (!node.ok()) co_return node.status();
      std::size_t index = 0;
      std::uint64_t child_start = node_start;
      while (offset >= child_start + node.value().entries[index].length) {
        child_start += node.value().entries[index].length;
        ++index;
      }
      node_entry = node.value().entries[index];
      stack_.push_back(Frame{std::move(node).value(), index});
      node_start = child_start;
    }
    entry_ = node_entry;
    entry_start_ = node_start;
    co_return Status::OK();
  }

  // Moves to the next entry of the level; valid() turns false after the last.
  io::Task<Status> Next() {
    CFS_ASSERT(valid_);
    const std::uint64_t next_start = entry_end();
    if (stack_.empty()) {
      valid_ = false;
      co_return Status::OK();
    }
    // Climb to the lowest frame with an entry to its right.
    std::size_t depth = stack_.size();
    while (depth > 0 && stack_[depth - 1].index + 1 >= stack_[depth - 1].node.entries.size()) {
      --depth;
    }
    if (depth == 0) {
      valid_ = false;
      co_return Status::OK();
    }
    stack_.resize(depth);
    Frame* frame = &stack_.back();
    ++frame->index;
    // Descend along the leftmost children back to level_ + 1.
    int level = root_.height - static_cast<int>(depth) + 1;  // level of frame's node
    while (level - 1 > level_) {
      const NodeEntry child = frame->node.entries[frame->index];
      Result<DecodedNode> node = co_await Load(child, level - 1);
      if (!node.ok()) co_return node.status();
      stack_.push_back(Frame{std::move(node).value(), 0});
      frame = &stack_.back();
      --level;
    }
    entry_ = frame->node.entries[frame->index];
    entry_start_ = next_start;
    co_return Status::OK();
  }

 private:
  struct Frame {
    DecodedNode node;
    std::size_t index;  // the child on the path
  };

  // The node `entry` names, at `level`: from the cache when it holds it with the level and length
  // this parent expects, else from the store (which checks them).
  io::Task<Result<DecodedNode>> Load(const NodeEntry& entry, int level) {
    auto cached = cache_->find(entry.name);
    if (cached != cache_->end() && cached->second.level == level &&
        cached->second.total_length == entry.length) {
      co_return cached->second;
    }
    Result<DecodedNode> node = co_await tree_->LoadNode(entry.name, level, entry.length, stats_);
    if (node.ok()) cache_->insert_or_assign(entry.name, node.value());
    co_return node;
  }

  RecipeTree* tree_;
  FileRoot root_;
  int level_;
  TreeWriteStats* stats_;
  NodeCache* cache_;
  std::vector<Frame> stack_;
  bool valid_ = false;
  NodeEntry entry_;
  std::uint64_t entry_start_ = 0;
};

// ---- Splice -----------------------------------------------------------------------------------

// One edit, level by level. At each level the old entries in [replaced_begin, replaced_end)
// (file offsets, old coordinates) give way to `replacement`, which covers
// [replaced_begin, replaced_end + delta) in new coordinates. Going up a level re-chunks the
// nodes from the one holding replaced_begin until a new node ends where an old one ended at or
// after replaced_end.
class SpliceOp {
 public:
  SpliceOp(RecipeTree* tree, const FileRoot& root, TreeWriteStats* stats)
      : tree_(tree), root_(root), stats_(stats) {}

  io::Task<Result<FileRoot>> Run(std::uint64_t offset, std::uint64_t remove_length,
                                 std::string_view insert) {
    delta_ = static_cast<std::int64_t>(insert.size()) - static_cast<std::int64_t>(remove_length);
    CFS_CO_RETURN_IF_ERROR(co_await SpliceLeaves(offset, remove_length, insert));
    for (int level = 0; level < root_.height; ++level) {
      CFS_CO_RETURN_IF_ERROR(co_await SpliceNodes(level));
    }
    // Level root_.height held one entry, the old root. Either its whole range was re-chunked,
    // or (an insert at offset 0 whose new cuts met the old ones at once) the replaced range is
    // empty at 0 and the old root follows the new entries.
    std::vector<NodeEntry> top = std::move(replacement_);
    if (replaced_end_ < root_.length) {
      CFS_ASSERT(replaced_begin_ == 0 && replaced_end_ == 0);
      top.push_back(NodeEntry{root_.name, root_.length});
    }
    TreeBuilder builder(tree_, root_.kind, stats_);
    for (const NodeEntry& entry : top) {
      CFS_CO_RETURN_IF_ERROR(co_await builder.PushEntry(root_.height, entry));
    }
    Result<FileRoot> root = co_await builder.Finish();
    if (!root.ok()) co_return root.status();
    root.value().kind = root_.kind;
    co_return co_await tree_->CanonicalRoot(root.value(), stats_);
  }

 private:
  std::uint64_t ToOld(std::uint64_t new_offset) const {
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(new_offset) - delta_);
  }

  // Level 0: re-chunk bytes.
  io::Task<Status> SpliceLeaves(std::uint64_t offset, std::uint64_t remove_length,
                                std::string_view insert) {
    const std::uint64_t edit_end = offset + remove_length;
    const Chunker chunker(root_.kind, tree_->options());
    // Where the cut at the end of a chunk falls may depend on up to max_chunk_bytes after the
    // chunk's start (the text chunker, finding no line to cut after, falls back to the last
    // newline before the maximum). So the cuts that are sure to survive the edit are those that
    // end chunks starting at least max_chunk_bytes before it: start at the leaf holding
    // offset - max_chunk_bytes, whose start ends such a chunk.
    const std::uint64_t lookback = chunker.max_chunk_bytes();
    const std::uint64_t anchor = offset > lookback ? offset - lookback : 0;
    LevelCursor head(tree_, root_, 0, stats_, &nodes_);
    CFS_CO_RETURN_IF_ERROR(co_await head.Seek(std::min(anchor, root_.length - 1)));
    replaced_begin_ = head.entry_start();

    // New bytes from new offset `cursor` on, not yet cut, are buffer[buffer_begin..). Cut
    // chunks only advance buffer_begin: erasing each from the front would move the rest of a
    // large insert once per chunk (quadratic). The cut prefix is dropped only before more old
    // bytes are appended, when less than a chunk is left after it.
    std::string buffer;
    std::size_t buffer_begin = 0;
    CFS_CO_RETURN_IF_ERROR(
        co_await tree_->Read(root_, replaced_begin_, offset - replaced_begin_, &buffer, stats_));
    buffer.append(insert);

    // Old bytes after the edit, and the old cuts at or after edit_end, in order.
    LevelCursor tail(tree_, root_, 0, stats_, &nodes_);
    std::deque<std::uint64_t> old_cuts;
    if (edit_end < root_.length) {
      CFS_CO_RETURN_IF_ERROR(co_await tail.Seek(edit_end));
      if (tail.entry_start() == edit_end) old_cuts.push_back(edit_end);
    }

    std::uint64_t cursor = replaced_begin_;  // new coordinates
    const std::uint64_t new_length = ToNewLength();
    replacement_.clear();
    while (cursor < new_length) {
      while (buffer.size() - buffer_begin < chunker.max_chunk_bytes() && tail.valid()) {
        if (buffer_begin > 0) {
          buffer.erase(0, buffer_begin);
          buffer_begin = 0;
        }
        const std::uint64_t from = std::max(tail.entry_start(), edit_end) - tail.entry_start();
        CFS_CO_RETURN_IF_ERROR(co_await tree_->ReadRange(
            tail.entry().name, 0, tail.entry().length, from, tail.entry().length, &buffer, stats_));
        old_cuts.push_back(tail.entry_end());
        CFS_CO_RETURN_IF_ERROR(co_await tail.Next());
      }
      const std::string_view pending = std::string_view(buffer).substr(buffer_begin);
      const std::optional<std::size_t> found = chunker.FindCut(pending);
      const std::size_t cut = found.has_value() ? *found : pending.size();
      CFS_ASSERT(cut > 0);
      Result<NodeEntry> leaf = co_await tree_->StoreLeaf(pending.substr(0, cut), stats_);
      if (!leaf.ok()) co_return leaf.status();
      replacement_.push_back(leaf.value());
      buffer_begin += cut;
      cursor += cut;
      if (Resynced(cursor, edit_end, &old_cuts)) co_return Status::OK();
    }
    replaced_end_ = root_.length;
    co_return Status::OK();
  }

  // True when new offset `cursor` lands on an old cut at or after `edit_end`; then sets
  // replaced_end_. Drops old cuts already passed.
  bool Resynced(std::uint64_t cursor, std::uint64_t edit_end, std::deque<std::uint64_t>* cuts) {
    const std::int64_t old_signed = static_cast<std::int64_t>(cursor) - delta_;
    if (old_signed < static_cast<std::int64_t>(edit_end)) return false;
    const auto old = static_cast<std::uint64_t>(old_signed);
    while (!cuts->empty() && cuts->front() < old) cuts->pop_front();
    if (cuts->empty() || cuts->front() != old || old == root_.length) return false;
    replaced_end_ = old;
    return true;
  }

  std::uint64_t ToNewLength() const {
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(root_.length) + delta_);
  }

  // Level `level` + 1: re-chunk the nodes over the level's new entries.
  io::Task<Status> SpliceNodes(int level) {
    const std::uint64_t old_begin = replaced_begin_;
    const std::uint64_t old_end = replaced_end_;
    std::vector<NodeEntry> changed = std::move(replacement_);
    replacement_.clear();

    // The node (level + 1) holding old_begin, and its entries before old_begin.
    LevelCursor head(tree_, root_, level + 1, stats_, &nodes_);
    CFS_CO_RETURN_IF_ERROR(co_await head.Seek(std::min(old_begin, root_.length - 1)));
    replaced_begin_ = head.entry_start();
    std::vector<NodeEntry> stream;  // level entries from replaced_begin_ on, not yet in a node
    {
      LevelCursor children(tree_, root_, level, stats_, &nodes_);
      if (replaced_begin_ < old_begin) {
        CFS_CO_RETURN_IF_ERROR(co_await children.Seek(replaced_begin_));
        while (children.valid() && children.entry_start() < old_begin) {
          stream.push_back(children.entry());
          CFS_CO_RETURN_IF_ERROR(co_await children.Next());
        }
      }
    }
    stream.insert(stream.end(), changed.begin(), changed.end());

    // Old entries of this level from old_end on, and the old node cuts at or after old_end.
    LevelCursor tail(tree_, root_, level, stats_, &nodes_);
    LevelCursor tail_nodes(tree_, root_, level + 1, stats_, &nodes_);
    std::deque<std::uint64_t> old_cuts;
    if (old_end < root_.length) {
      CFS_CO_RETURN_IF_ERROR(co_await tail.Seek(old_end));
      CFS_CO_RETURN_IF_ERROR(co_await tail_nodes.Seek(old_end));
      if (tail_nodes.entry_start() == old_end) old_cuts.push_back(old_end);
    }

    std::uint64_t cursor = replaced_begin_;  // new coordinates
    std::size_t consumed = 0;                // entries of `stream` already in nodes
    std::vector<NodeEntry> node;
    while (true) {
      if (consumed == stream.size()) {
        if (!tail.valid()) break;
        stream.clear();
        consumed = 0;
        stream.push_back(tail.entry());
        CFS_CO_RETURN_IF_ERROR(co_await tail.Next());
      }
      const NodeEntry entry = stream[consumed++];
      node.push_back(entry);
      const bool at_end = consumed == stream.size() && !tail.valid();
      if (!NodeCutAfter(entry, node.size()) && !at_end) continue;
      Result<NodeEntry> stored = co_await tree_->StoreNode(level + 1, node, stats_);
      if (!stored.ok()) co_return stored.status();
      replacement_.push_back(stored.value());
      node.clear();
      cursor += stored.value().length;
      // Learn the old node cuts up to where this node ends (in old coordinates).
      const std::int64_t old_signed = static_cast<std::int64_t>(cursor) - delta_;
      while (tail_nodes.valid() &&
             static_cast<std::int64_t>(tail_nodes.entry_start()) <= old_signed) {
        old_cuts.push_back(tail_nodes.entry_end());
        CFS_CO_RETURN_IF_ERROR(co_await tail_nodes.Next());
      }
      if (Resynced(cursor, old_end, &old_cuts)) co_return Status::OK();
    }
    CFS_ASSERT(node.empty());
    replaced_end_ = root_.length;
    co_return Status::OK();
  }

  RecipeTree* tree_;
  FileRoot root_;
  TreeWriteStats* stats_;
  std::int64_t delta_ = 0;
  std::uint64_t replaced_begin_ = 0;
  std::uint64_t replaced_end_ = 0;
  std::vector<NodeEntry> replacement_;
  NodeCache nodes_;
};

// ---- RecipeTree: edits ------------------------------------------------------------------------

io::Task<Result<FileRoot>> RecipeTree::Splice(const FileRoot& root, std::uint64_t offset,
                                              std::uint64_t remove_length, std::string_view insert,
                                              TreeWriteStats* stats) {
  if (offset > root.length || remove_length > root.length - offset) {
    co_return Status::InvalidArgument("splice of [" + std::to_string(offset) + ", +" +
                                      std::to_string(remove_length) + ") past the end of a " +
                                      std::to_string(root.length) + "-byte file");
  }
  if (remove_length == 0 && insert.empty()) co_return root;
  if (remove_length == root.length && insert.empty()) {
    FileRoot empty;
    empty.kind = root.kind;
    co_return empty;
  }
  if (root.length == 0) co_return co_await Build(root.kind, insert, stats);
  SpliceOp op(this, root, stats);
  co_return co_await op.Run(offset, remove_length, insert);
}

io::Task<Result<FileRoot>> RecipeTree::Truncate(const FileRoot& root, std::uint64_t new_length,
                                                TreeWriteStats* stats) {
  if (new_length <= root.length) {
    co_return co_await Splice(root, new_length, root.length - new_length, {}, stats);
  }
  FileRoot current = root;
  const std::string zeros(std::min(new_length - root.length, kZeroFillStepBytes), '\0');
  while (current.length < new_length) {
    const std::uint64_t step = std::min<std::uint64_t>(new_length - current.length, zeros.size());
    Result<FileRoot> next =
        co_await Splice(current, current.length, 0, std::string_view(zeros).substr(0, step), stats);
    if (!next.ok()) co_return next.status();
    current = next.value();
  }
  co_return current;
}

io::Task<Result<FileRoot>> RecipeTree::Write(const FileRoot& root, std::uint64_t offset,
                                             std::string_view data, TreeWriteStats* stats) {
  FileRoot current = root;
  if (offset > current.length) {
    Result<FileRoot> grown = co_await Truncate(current, offset, stats);
    if (!grown.ok()) co_return grown.status();
    current = grown.value();
  }
  const std::uint64_t overwrite = std::min<std::uint64_t>(data.size(), current.length - offset);
  co_return co_await Splice(current, offset, overwrite, data, stats);
}

// ---- RecipeTree: walks ------------------------------------------------------------------------

io::Task<Status> RecipeTree::Diff(const FileRoot& root, const FileRoot& other,
                                  std::vector<ChunkName>* missing) {
  // Frontiers of (level, name, length), expanded highest level first on both sides, so a
  // subtree present on both sides meets itself at its own level and is dropped whole.
  using Item = std::tuple<int, ChunkName, std::uint64_t>;
  std::set<Item> mine;
  std::set<Item> theirs;
  if (!root.empty()) mine.emplace(root.height, root.name, root.length);
  if (!other.empty()) theirs.emplace(other.height, other.name, other.length);
  std::unordered_set<ChunkName, ChunkNameHash> listed;
  while (!mine.empty()) {
    for (auto it = mine.begin(); it != mine.end();) {
      if (theirs.erase(*it) > 0) {
        it = mine.erase(it);
      } else {
        ++it;
      }
    }
    if (mine.empty()) break;
    int level = std::get<0>(*mine.rbegin());
    if (!theirs.empty()) level = std::max(level, std::get<0>(*theirs.rbegin()));
    if (level == 0) {
      for (const Item& item : mine) {
        if (listed.insert(std::get<1>(item)).second) missing->push_back(std::get<1>(item));
      }
      break;
    }
    for (std::set<Item>* side : {&mine, &theirs}) {
      std::vector<Item> expand;
      for (auto it = side->lower_bound(Item{level, ChunkName(), 0}); it != side->end();) {
        expand.push_back(*it);
        it = side->erase(it);
      }
      for (const Item& item : expand) {
        const auto& [item_level, name, length] = item;
        if (side == &mine && listed.insert(name).second) missing->push_back(name);
        Result<DecodedNode> node = co_await LoadNode(name, item_level, length, nullptr);
        if (!node.ok()) co_return node.status();
        for (const NodeEntry& child : node.value().entries) {
          side->emplace(item_level - 1, child.name, child.length);
        }
      }
    }
  }
  co_return Status::OK();
}

io::Task<Status> RecipeTree::WalkTopDown(const FileRoot& root, const HasChunk* has,
                                         std::vector<ChunkName>* names, std::vector<int>* levels) {
  if (root.empty()) co_return Status::OK();
  struct Pending {
    ChunkName name;
    int level;
    std::uint64_t length;
  };
  std::vector<Pending> stack{{root.name, root.height, root.length}};
  std::unordered_set<ChunkName, ChunkNameHash> seen{root.name};
  while (!stack.empty()) {
    const Pending item = stack.back();
    stack.pop_back();
    if (has != nullptr) {
      Result<bool> held = co_await (*has)(item.name);
      if (!held.ok()) co_return held.status();
      if (held.value()) continue;
    }
    names->push_back(item.name);
    if (levels != nullptr) levels->push_back(item.level);
    if (item.level == 0) continue;
    Result<DecodedNode> node = co_await LoadNode(item.name, item.level, item.length, nullptr);
    if (!node.ok()) co_return node.status();
    const auto& entries = node.value().entries;
    for (auto child = entries.rbegin(); child != entries.rend(); ++child) {
      if (seen.insert(child->name).second) {
        stack.push_back(Pending{child->name, item.level - 1, child->length});
      }
    }
  }
  co_return Status::OK();
}

io::Task<Status> RecipeTree::Missing(const FileRoot& root, const HasChunk& has,
                                     std::vector<ChunkName>* missing) {
  co_return co_await WalkTopDown(root, &has, missing, nullptr);
}

io::Task<Status> RecipeTree::ListChunks(const FileRoot& root, std::vector<ChunkName>* names,
                                        std::vector<int>* levels) {
  co_return co_await WalkTopDown(root, nullptr, names, levels);
}

}  // namespace cascadefs::fusefs
