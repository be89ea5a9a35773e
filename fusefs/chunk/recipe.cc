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

// docs/formats/recipe.md. Version 1 nodes and roots have no hole below them, version 2 ones
// do: a file without holes is encoded exactly as before holes existed.
constexpr std::uint8_t kNodeMagic = 0xC7;
constexpr std::uint8_t kNodeFormatVersion = 1;
constexpr std::uint8_t kNodeFormatVersionHoles = 2;
constexpr std::uint8_t kRootFormatVersion = 1;
constexpr std::uint8_t kRootFormatVersionHoles = 2;
// The tag byte of a hole entry in a version 2 level-1 node (the null name's tag).
constexpr std::uint8_t kHoleTag = 0;

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

// The splitmix64 finalizer: a hole's node-cut value (docs/formats/recipe.md, "Node cuts").
std::uint64_t MixLength(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

NodeEntry HoleEntry(std::uint64_t length) {
  CFS_ASSERT(length > 0);
  return NodeEntry{ChunkName(), length, length};
}

// ---- encodings --------------------------------------------------------------------------------

std::string FileRoot::Encode() const {
  CFS_ASSERT(hole_bytes <= length);
  CFS_ASSERT(!all_hole() || (height == 0 && name.is_null()));
  std::string out;
  out.push_back(static_cast<char>(hole_bytes > 0 ? kRootFormatVersionHoles : kRootFormatVersion));
  out.push_back(static_cast<char>(kind));
  out.push_back(static_cast<char>(height));
  AppendVarint64(&out, length);
  if (hole_bytes > 0) AppendVarint64(&out, hole_bytes);
  if (length > 0 && !all_hole()) out.append(name.encoded());
  return out;
}

Result<FileRoot> FileRoot::Decode(std::string_view encoded) {
  if (encoded.size() < 4) return Status::Corruption("file root: truncated");
  const auto version = static_cast<std::uint8_t>(encoded[0]);
  if (version != kRootFormatVersion && version != kRootFormatVersionHoles) {
    return Status::Corruption("file root: unknown version " + std::to_string(version));
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
  if (version == kRootFormatVersionHoles) {
    // Canonical form: a file without holes is version 1, so here 1 <= hole bytes <= length.
    if (!ConsumeVarint64(&rest, &root.hole_bytes) || root.hole_bytes == 0 ||
        root.hole_bytes > root.length) {
      return Status::Corruption("file root: bad hole bytes");
    }
    if (root.all_hole()) {
      if (root.height != 0 || !rest.empty()) {
        return Status::Corruption("file root: an all-hole file with a tree");
      }
      return root;
    }
  }
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
  bool holes = false;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const NodeEntry& entry = entries[i];
    CFS_ASSERT(entry.length > 0);
    CFS_ASSERT(entry.hole_bytes <= entry.length);
    CFS_ASSERT(!entry.hole() || level == 1);                          // holes are level-0 entries
    CFS_ASSERT(!entry.hole() || entry.hole_bytes == entry.length);    // a hole is all hole
    CFS_ASSERT(level != 1 || entry.hole() || entry.hole_bytes == 0);  // a leaf has no hole
    CFS_ASSERT(!entry.hole() || i == 0 || !entries[i - 1].hole());    // holes are maximal
    holes = holes || entry.hole_bytes > 0;
  }
  std::string out;
  out.reserve(8 + entries.size() * (ChunkName::kEncodedSize + 8));
  out.push_back(static_cast<char>(kNodeMagic));
  out.push_back(static_cast<char>(holes ? kNodeFormatVersionHoles : kNodeFormatVersion));
  out.push_back(static_cast<char>(level));
  AppendVarint64(&out, entries.size());
  for (const NodeEntry& entry : entries) {
    if (entry.hole()) {
      out.push_back(static_cast<char>(kHoleTag));
    } else {
      out.append(entry.name.encoded());
    }
    AppendVarint64(&out, entry.length);
    if (holes && level >= 2) AppendVarint64(&out, entry.hole_bytes);
  }
  return out;
}

Result<DecodedNode> DecodeNode(std::string_view bytes) {
  if (bytes.size() < 4) return Status::Corruption("truncated header");
  if (static_cast<std::uint8_t>(bytes[0]) != kNodeMagic) return Status::Corruption("bad magic");
  const auto version = static_cast<std::uint8_t>(bytes[1]);
  if (version != kNodeFormatVersion && version != kNodeFormatVersionHoles) {
    return Status::Corruption("unknown node version " + std::to_string(version));
  }
  const bool holes = version == kNodeFormatVersionHoles;
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
    NodeEntry entry;
    const std::string what = "entry " + std::to_string(i);
    if (holes && node.level == 1 && !rest.empty() &&
        static_cast<std::uint8_t>(rest[0]) == kHoleTag) {
      rest.remove_prefix(1);
      if (!node.entries.empty() && node.entries.back().hole()) {
        return Status::Corruption(what + ": a hole next to a hole");
      }
    } else {
      if (rest.size() < ChunkName::kEncodedSize) return Status::Corruption(what + " truncated");
      Result<ChunkName> name = ChunkName::Decode(rest.substr(0, ChunkName::kEncodedSize));
      if (!name.ok()) return std::move(name).status().WithContext(what);
      rest.remove_prefix(ChunkName::kEncodedSize);
      entry.name = name.value();
    }
    if (!ConsumeVarint64(&rest, &entry.length) || entry.length == 0) {
      return Status::Corruption(what + ": bad length");
    }
    if (entry.hole()) entry.hole_bytes = entry.length;
    if (holes && node.level >= 2 &&
        (!ConsumeVarint64(&rest, &entry.hole_bytes) || entry.hole_bytes > entry.length)) {
      return Status::Corruption(what + ": bad hole bytes");
    }
    if (entry.length > UINT64_MAX - node.total_length) {
      return Status::Corruption("entry lengths overflow");
    }
    node.total_length += entry.length;
    node.total_hole_bytes += entry.hole_bytes;
    node.entries.push_back(entry);
  }
  if (!rest.empty()) {
    return Status::Corruption(std::to_string(rest.size()) + " trailing bytes");
  }
  // Canonical form: version 2 exactly when some hole lies below the node.
  if (holes && node.total_hole_bytes == 0) return Status::Corruption("version 2 without holes");
  return node;
}

bool NodeCutAfter(const NodeEntry& entry, std::size_t count) {
  if (count < kNodeMinEntries) return false;
  if (count >= kNodeMaxEntries) return true;
  const std::uint64_t value = entry.hole() ? MixLength(entry.length) : entry.name.digest_prefix64();
  return value % kNodeTargetEntries == 0;
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
  if (data.empty()) co_return Status::OK();
  if (pending_hole_bytes_ > 0) {
    // Data after a hole: the hole is maximal now.
    const NodeEntry hole = HoleEntry(pending_hole_bytes_);
    pending_hole_bytes_ = 0;
    length_ += hole.length;
    CFS_CO_RETURN_IF_ERROR(co_await PushEntry(0, hole));
  }
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

io::Task<Status> TreeBuilder::EndDataRun() {
  while (!pending_bytes_.empty()) {
    const std::optional<std::size_t> found = chunker_.FindCut(pending_bytes_);
    const std::size_t cut = found.has_value() ? *found : pending_bytes_.size();
    CFS_CO_RETURN_IF_ERROR(co_await PushLeaf(std::string_view(pending_bytes_).substr(0, cut)));
    pending_bytes_.erase(0, cut);
  }
  co_return Status::OK();
}

io::Task<Status> TreeBuilder::AppendHole(std::uint64_t length) {
  CFS_ASSERT(length > 0);
  CFS_CO_RETURN_IF_ERROR(co_await EndDataRun());
  if (length > UINT64_MAX - length_ - pending_hole_bytes_) {
    co_return Status::InvalidArgument("file too large for a recipe");
  }
  pending_hole_bytes_ += length;
  co_return Status::OK();
}

io::Task<Result<FileRoot>> TreeBuilder::Finish() {
  CFS_CO_RETURN_IF_ERROR(co_await EndDataRun());
  if (pending_hole_bytes_ > 0) {
    const NodeEntry hole = HoleEntry(pending_hole_bytes_);
    pending_hole_bytes_ = 0;
    length_ += hole.length;
    CFS_CO_RETURN_IF_ERROR(co_await PushEntry(0, hole));
  }
  FileRoot root;
  root.kind = chunker_.kind();
  for (std::size_t level = 0; level < levels_.size(); ++level) {
    if (levels_[level].pushed == 0) continue;  // below the level a Splice started at
    if (levels_[level].pushed == 1) {
      const NodeEntry entry = levels_[level].pending.front();
      root.name = entry.name;
      root.length = entry.length;
      root.hole_bytes = entry.hole_bytes;
      root.height = static_cast<std::uint8_t>(level);
      co_return root;  // a Splice's top may still be single-child nodes: CanonicalRoot
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

io::Task<Result<FileRoot>> RecipeTree::BuildPieces(ChunkerKind kind,
                                                   const std::vector<Piece>& pieces,
                                                   TreeWriteStats* stats) {
  TreeBuilder builder(this, kind, stats);
  for (const Piece& piece : pieces) {
    if (piece.hole_bytes > 0) {
      CFS_CO_RETURN_IF_ERROR(co_await builder.AppendHole(piece.hole_bytes));
    } else {
      CFS_CO_RETURN_IF_ERROR(co_await builder.Append(piece.data));
    }
  }
  co_return co_await builder.Finish();
}

namespace {

// Checks a decoded node against the parent entry naming it (docs/formats/recipe.md).
Status CheckAgainstParent(const DecodedNode& node, const NodeEntry& entry, int level) {
  if (node.level != level) {
    return NodeCorruption(entry.name, level, "holds level " + std::to_string(node.level));
  }
  if (node.total_length != entry.length) {
    return NodeCorruption(entry.name, level,
                          "covers " + std::to_string(node.total_length) +
                              " bytes, its parent says " + std::to_string(entry.length));
  }
  if (node.total_hole_bytes != entry.hole_bytes) {
    return NodeCorruption(entry.name, level,
                          "holds " + std::to_string(node.total_hole_bytes) +
                              " hole bytes, its parent says " + std::to_string(entry.hole_bytes));
  }
  return Status::OK();
}

NodeEntry RootEntry(const FileRoot& root) {
  return NodeEntry{root.name, root.length, root.hole_bytes};
}

}  // namespace

io::Task<Result<DecodedNode>> RecipeTree::LoadNode(const NodeEntry& entry, int level,
                                                   TreeWriteStats* stats) {
  CFS_ASSERT(level >= 1 && !entry.hole());
  Result<std::string> bytes = co_await store_->Get(entry.name);
  if (!bytes.ok()) {
    co_return std::move(bytes).status().WithContext("recipe node (level " + std::to_string(level) +
                                                    ")");
  }
  if (stats != nullptr) ++stats->nodes_read;
  Result<DecodedNode> node = DecodeNode(bytes.value());
  if (!node.ok()) co_return NodeCorruption(entry.name, level, std::string(node.status().message()));
  CFS_CO_RETURN_IF_ERROR(CheckAgainstParent(node.value(), entry, level));
  co_return node;
}

io::Task<Result<std::shared_ptr<const DecodedNode>>> RecipeTree::LoadCachedNode(
    const NodeEntry& entry, int level, TreeWriteStats* stats) {
  std::shared_ptr<const DecodedNode> node = node_cache_->Find(entry.name);
  if (node == nullptr) {
    Result<DecodedNode> loaded = co_await LoadNode(entry, level, stats);
    if (!loaded.ok()) co_return loaded.status();
    node = std::make_shared<const DecodedNode>(std::move(loaded).value());
    node_cache_->Insert(entry.name, node);
    co_return node;
  }
  // The same name is the same bytes, but a parent may still name it with another level or
  // length (a damaged parent): the checks LoadNode makes hold for cached nodes too.
  CFS_CO_RETURN_IF_ERROR(CheckAgainstParent(*node, entry, level));
  co_return node;
}

io::Task<Status> RecipeTree::ReadRange(const NodeEntry& entry, int level, std::uint64_t begin,
                                       std::uint64_t end, std::string* out, TreeWriteStats* stats) {
  CFS_ASSERT(begin <= end && end <= entry.length);
  if (entry.hole_bytes == entry.length) {
    // A hole, or a subtree that is all hole: zeros, nothing read.
    out->append(end - begin, '\0');
    co_return Status::OK();
  }
  if (level == 0) {
    Result<std::string> leaf = co_await store_->Get(entry.name);
    if (!leaf.ok()) co_return leaf.status();
    if (stats != nullptr) ++stats->leaves_read;
    if (leaf.value().size() != entry.length) {
      co_return Status::Corruption("chunk " + entry.name.ToHex() + ": holds " +
                                   std::to_string(leaf.value().size()) +
                                   " bytes, its recipe says " + std::to_string(entry.length));
    }
    out->append(std::string_view(leaf.value()).substr(begin, end - begin));
    co_return Status::OK();
  }
  Result<std::shared_ptr<const DecodedNode>> node = co_await LoadCachedNode(entry, level, stats);
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
      CFS_CO_RETURN_IF_ERROR(co_await ReadRange(child, level - 1, from, to, out, stats));
    }
    child_start = child_end;
    if (child_start >= end) break;
  }
  co_return Status::OK();
}

io::Task<Status> RecipeTree::ReadLeaves(const DecodedNode& node, std::uint64_t begin,
                                        std::uint64_t end, std::string* out,
                                        TreeWriteStats* stats) {
  // The entries overlapping [begin, end).
  struct Piece {
    const NodeEntry* entry;
    std::uint64_t from;
    std::uint64_t to;
  };
  std::vector<Piece> pieces;
  std::uint64_t child_start = 0;
  for (const NodeEntry& child : node.entries) {
    const std::uint64_t child_end = child_start + child.length;
    if (child_end > begin) {
      pieces.push_back({&child, std::max(begin, child_start) - child_start,
                        std::min(end, child_end) - child_start});
    }
    child_start = child_end;
    if (child_start >= end) break;
  }
  // Cold leaves are separate reads of the store: issued together, kLeafReadsInFlightMax at a
  // time, instead of one after another (a 1 MiB read of 16 KiB chunks is 64 reads). Holes are
  // zeros and read nothing.
  for (std::size_t first = 0; first < pieces.size(); first += kLeafReadsInFlightMax) {
    const std::size_t count = std::min(kLeafReadsInFlightMax, pieces.size() - first);
    std::vector<ChunkName> names;
    names.reserve(count);
    for (std::size_t i = first; i < first + count; ++i) {
      if (!pieces[i].entry->hole()) names.push_back(pieces[i].entry->name);
    }
    std::vector<Result<std::string>> leaves = co_await store_->GetMany(std::move(names));
    std::size_t next_leaf = 0;
    for (std::size_t i = first; i < first + count; ++i) {
      const Piece& piece = pieces[i];
      if (piece.entry->hole()) {
        out->append(piece.to - piece.from, '\0');
        continue;
      }
      const Result<std::string>& leaf = leaves[next_leaf++];
      if (!leaf.ok()) co_return leaf.status();
      if (stats != nullptr) ++stats->leaves_read;
      if (leaf.value().size() != piece.entry->length) {
        co_return Status::Corruption("chunk " + piece.entry->name.ToHex() + ": holds " +
                                     std::to_string(leaf.value().size()) +
                                     " bytes, its recipe says " +
                                     std::to_string(piece.entry->length));
      }
      out->append(std::string_view(leaf.value()).substr(piece.from, piece.to - piece.from));
    }
    CFS_ASSERT(next_leaf == leaves.size());
  }
  co_return Status::OK();
}

io::Task<Status> RecipeTree::Read(const FileRoot& root, std::uint64_t offset, std::uint64_t length,
                                  std::string* out, TreeWriteStats* stats) {
  if (offset >= root.length || length == 0) co_return Status::OK();
  const std::uint64_t end = offset + std::min(length, root.length - offset);
  co_return co_await ReadRange(RootEntry(root), root.height, offset, end, out, stats);
}

io::Task<Result<std::optional<std::uint64_t>>> RecipeTree::SeekIn(const NodeEntry& entry, int level,
                                                                  std::uint64_t start,
                                                                  std::uint64_t offset,
                                                                  bool want_hole) {
  // A subtree with no hole (no data) below it cannot hold what is sought: skip it unread.
  if (want_hole ? entry.hole_bytes == 0 : entry.hole_bytes == entry.length) {
    co_return std::optional<std::uint64_t>();
  }
  if (level == 0 || entry.hole_bytes == 0 || entry.hole_bytes == entry.length) {
    // All of it matches (a leaf, a hole, or a subtree wholly one or the other).
    co_return std::optional<std::uint64_t>(std::max(start, offset));
  }
  Result<std::shared_ptr<const DecodedNode>> node = co_await LoadCachedNode(entry, level, nullptr);
  if (!node.ok()) co_return node.status();
  std::uint64_t child_start = start;
  for (const NodeEntry& child : node.value()->entries) {
    const std::uint64_t child_end = child_start + child.length;
    if (child_end > offset) {
      Result<std::optional<std::uint64_t>> found =
          co_await SeekIn(child, level - 1, child_start, offset, want_hole);
      if (!found.ok() || found.value().has_value()) co_return found;
    }
    child_start = child_end;
  }
  co_return std::optional<std::uint64_t>();
}

io::Task<Result<std::uint64_t>> RecipeTree::SeekData(const FileRoot& root, std::uint64_t offset) {
  CFS_ASSERT(offset < root.length);
  Result<std::optional<std::uint64_t>> found =
      co_await SeekIn(RootEntry(root), root.height, 0, offset, /*want_hole=*/false);
  if (!found.ok()) co_return found.status();
  co_return found.value().value_or(root.length);
}

io::Task<Result<std::uint64_t>> RecipeTree::SeekHole(const FileRoot& root, std::uint64_t offset) {
  CFS_ASSERT(offset < root.length);
  Result<std::optional<std::uint64_t>> found =
      co_await SeekIn(RootEntry(root), root.height, 0, offset, /*want_hole=*/true);
  if (!found.ok()) co_return found.status();
  co_return found.value().value_or(root.length);  // the implicit hole at the end of file
}

io::Task<Result<NodeEntry>> RecipeTree::StoreLeaf(std::string_view chunk, TreeWriteStats* stats) {
  const ChunkName name = ChunkName::Of(chunk);
  Result<PutOutcome> put = co_await store_->Put(name, chunk);
  if (!put.ok()) co_return put.status();
  AddWritten(stats, /*leaf=*/true, put.value());
  co_return NodeEntry{name, chunk.size(), 0};
}

io::Task<Result<NodeEntry>> RecipeTree::StoreNode(int level, const std::vector<NodeEntry>& entries,
                                                  TreeWriteStats* stats) {
  const std::string bytes = EncodeNode(level, entries);
  const ChunkName name = ChunkName::Of(bytes);
  Result<PutOutcome> put = co_await store_->Put(name, bytes);
  if (!put.ok()) co_return put.status();
  AddWritten(stats, /*leaf=*/false, put.value());
  NodeEntry parent{name, 0, 0};
  for (const NodeEntry& entry : entries) {
    parent.length += entry.length;
    parent.hole_bytes += entry.hole_bytes;
  }
  co_return parent;
}

io::Task<Result<FileRoot>> RecipeTree::CanonicalRoot(FileRoot root, TreeWriteStats* stats) {
  // A full build stops at the lowest level holding one entry; an edit that shrank the tree may
  // leave nodes with a single child on top. Step down through them.
  while (root.height > 0) {
    Result<DecodedNode> node = co_await LoadNode(RootEntry(root), root.height, stats);
    if (!node.ok()) co_return node.status();
    if (node.value().entries.size() != 1) break;
    const NodeEntry& child = node.value().entries.front();
    root.name = child.name;
    root.hole_bytes = child.hole_bytes;
    --root.height;
  }
  // Holes are maximal, so a level of two or more entries holds data: an all-hole file is one
  // hole entry.
  CFS_ASSERT(!root.all_hole() || (root.height == 0 && root.name.is_null()));
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
      entry_ = RootEntry(root_);
      entry_start_ = 0;
      co_return Status::OK();
    }
    NodeEntry node_entry = RootEntry(root_);
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
    if (cached != cache_->end() && CheckAgainstParent(cached->second, entry, level).ok()) {
      co_return cached->second;
    }
    Result<DecodedNode> node = co_await tree_->LoadNode(entry, level, stats_);
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
  using Piece = RecipeTree::Piece;

  SpliceOp(RecipeTree* tree, const FileRoot& root, TreeWriteStats* stats)
      : tree_(tree), root_(root), stats_(stats), chunker_(root.kind, tree->options()) {}

  // REQUIRES: `insert` holds no empty piece; the new length fits in int64_t.
  io::Task<Result<FileRoot>> Run(std::uint64_t offset, std::uint64_t remove_length,
                                 const std::vector<Piece>& insert, std::uint64_t insert_length) {
    delta_ = static_cast<std::int64_t>(insert_length) - static_cast<std::int64_t>(remove_length);
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
      top.push_back(RootEntry(root_));
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
  // Level 0: re-cut the content (data bytes and holes) around the edit into entries.
  //
  // The old content from the start entry to the edit, the inserted pieces, then the old
  // content after the removed range stream through a cutter that emits the canonical entries
  // (docs/formats/recipe.md, "Holes"): data goes through the chunker; a hole ends the pending
  // data run (its rest becomes the run's last chunks) and is held until data or the end of
  // the file shows it is maximal. After each emitted entry, the cutter state restarts in both
  // the old and the new tree; so once an entry ends on an old entry's end at or after the
  // removed range, the rest of the new level equals the old one (Resynced).
  io::Task<Status> SpliceLeaves(std::uint64_t offset, std::uint64_t remove_length,
                                const std::vector<Piece>& insert) {
    const std::uint64_t edit_end = offset + remove_length;
    // Where the cut at the end of a chunk falls may depend on up to max_chunk_bytes after the
    // chunk's start (the text chunker, finding no line to cut after, falls back to the last
    // newline before the maximum), or on where its data run ends. So the cuts that are sure to
    // survive the edit are those that end entries starting at least max_chunk_bytes before it:
    // start at the entry holding offset - max_chunk_bytes, whose start ends such an entry. (A
    // hole before it ends where data begins, which the edit does not touch either.)
    const std::uint64_t lookback = chunker_.max_chunk_bytes();
    const std::uint64_t anchor = offset > lookback ? offset - lookback : 0;
    LevelCursor head(tree_, root_, 0, stats_, &nodes_);
    CFS_CO_RETURN_IF_ERROR(co_await head.Seek(std::min(anchor, root_.length - 1)));
    replaced_begin_ = head.entry_start();
    cursor_ = replaced_begin_;
    edit_end_ = edit_end;
    replacement_.clear();

    // Old entries after the edit, and the old entry ends at or after edit_end, in order.
    LevelCursor tail(tree_, root_, 0, stats_, &nodes_);
    if (edit_end < root_.length) {
      CFS_CO_RETURN_IF_ERROR(co_await tail.Seek(edit_end));
      if (tail.entry_start() == edit_end) old_cuts_.push_back(edit_end);
    }

    std::string scratch;  // one old leaf's bytes
    // 1. The old content [replaced_begin_, offset).
    while (!done_ && head.valid() && head.entry_start() < offset) {
      const std::uint64_t to = std::min(head.entry_end(), offset) - head.entry_start();
      if (head.entry().hole()) {
        CFS_CO_RETURN_IF_ERROR(co_await AddHole(to));
      } else {
        scratch.clear();
        CFS_CO_RETURN_IF_ERROR(co_await tree_->ReadRange(head.entry(), 0, 0, to, &scratch, stats_));
        CFS_CO_RETURN_IF_ERROR(co_await AddData(scratch));
      }
      CFS_CO_RETURN_IF_ERROR(co_await head.Next());
    }
    // 2. The inserted pieces.
    for (std::size_t i = 0; !done_ && i < insert.size(); ++i) {
      if (insert[i].hole_bytes > 0) {
        CFS_CO_RETURN_IF_ERROR(co_await AddHole(insert[i].hole_bytes));
      } else {
        CFS_CO_RETURN_IF_ERROR(co_await AddData(insert[i].data));
      }
    }
    // 3. The old content from edit_end on, until the new entries meet the old ones.
    while (!done_ && tail.valid()) {
      const std::uint64_t from = std::max(tail.entry_start(), edit_end) - tail.entry_start();
      old_cuts_.push_back(tail.entry_end());  // known before any entry can end there
      if (tail.entry().hole()) {
        CFS_CO_RETURN_IF_ERROR(co_await AddHole(tail.entry().length - from));
      } else {
        scratch.clear();
        CFS_CO_RETURN_IF_ERROR(co_await tree_->ReadRange(tail.entry(), 0, from, tail.entry().length,
                                                         &scratch, stats_));
        CFS_CO_RETURN_IF_ERROR(co_await AddData(scratch));
      }
      CFS_CO_RETURN_IF_ERROR(co_await tail.Next());
    }
    if (done_) co_return Status::OK();
    // The end of the file: the last data run ends (a cut inside it may still meet an old one),
    // and a last hole is maximal.
    CFS_CO_RETURN_IF_ERROR(co_await EndDataRun());
    if (done_) co_return Status::OK();
    if (pending_hole_bytes_ > 0) {
      Emit(HoleEntry(pending_hole_bytes_));
      pending_hole_bytes_ = 0;
    }
    CFS_ASSERT(!done_);  // Resynced never matches the old end of file
    CFS_ASSERT(cursor_ == ToNewLength());
    replaced_end_ = root_.length;
    co_return Status::OK();
  }

  // Data bytes for the cutter: a held hole is emitted first (data shows it is maximal); then
  // whole chunks are cut while at least a maximal chunk's bytes are pending.
  io::Task<Status> AddData(std::string_view data) {
    CFS_ASSERT(!done_);
    if (pending_hole_bytes_ > 0) {
      Emit(HoleEntry(pending_hole_bytes_));
      pending_hole_bytes_ = 0;
      if (done_) co_return Status::OK();
    }
    // The bytes go in slices that keep at most two maximal chunks pending, so buffer_ stays
    // that small and its memory is reused whatever the size of the insert (a large insert
    // copied whole would fault in fresh pages for every byte). Cut chunks only advance
    // buffer_begin_; the cut prefix is dropped before the next slice, when less than a
    // maximal chunk is left after it.
    const std::size_t max_chunk = chunker_.max_chunk_bytes();
    while (!done_ && !data.empty()) {
      if (buffer_begin_ > 0) {
        buffer_.erase(0, buffer_begin_);
        buffer_begin_ = 0;
      }
      const std::size_t slice = std::min(data.size(), 2 * max_chunk - buffer_.size());
      buffer_.append(data.substr(0, slice));
      data.remove_prefix(slice);
      while (!done_ && buffer_.size() - buffer_begin_ >= max_chunk) {
        const std::string_view pending = std::string_view(buffer_).substr(buffer_begin_);
        CFS_CO_RETURN_IF_ERROR(co_await CutLeaf(*chunker_.FindCut(pending)));
      }
    }
    co_return Status::OK();
  }

  // A hole for the cutter: the pending data run ends, and the hole joins any held one.
  io::Task<Status> AddHole(std::uint64_t length) {
    CFS_ASSERT(!done_ && length > 0);
    CFS_CO_RETURN_IF_ERROR(co_await EndDataRun());
    if (!done_) pending_hole_bytes_ += length;
    co_return Status::OK();
  }

  // Cuts every pending data byte into leaves; the last one ends with the run.
  io::Task<Status> EndDataRun() {
    while (!done_ && buffer_begin_ < buffer_.size()) {
      const std::string_view pending = std::string_view(buffer_).substr(buffer_begin_);
      const std::optional<std::size_t> found = chunker_.FindCut(pending);
      CFS_CO_RETURN_IF_ERROR(co_await CutLeaf(found.has_value() ? *found : pending.size()));
    }
    co_return Status::OK();
  }

  io::Task<Status> CutLeaf(std::size_t cut) {
    CFS_ASSERT(cut > 0 && buffer_begin_ + cut <= buffer_.size());
    Result<NodeEntry> leaf =
        co_await tree_->StoreLeaf(std::string_view(buffer_).substr(buffer_begin_, cut), stats_);
    if (!leaf.ok()) co_return leaf.status();
    buffer_begin_ += cut;
    Emit(leaf.value());
    co_return Status::OK();
  }

  void Emit(const NodeEntry& entry) {
    CFS_ASSERT(!done_);
    replacement_.push_back(entry);
    cursor_ += entry.length;
    done_ = Resynced(cursor_, edit_end_, &old_cuts_);
  }

  std::uint64_t ToNewLength() const {
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(root_.length) + delta_);
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
  const Chunker chunker_;
  std::int64_t delta_ = 0;
  std::uint64_t replaced_begin_ = 0;
  std::uint64_t replaced_end_ = 0;
  std::vector<NodeEntry> replacement_;
  NodeCache nodes_;
  // The level-0 cutter (SpliceLeaves). New content from new offset cursor_ on that is not yet
  // in an entry: the data bytes buffer_[buffer_begin_..), or a held hole (never both: a hole
  // arrives only after the pending data run was cut whole).
  std::uint64_t cursor_ = 0;
  std::uint64_t edit_end_ = 0;  // old coordinates
  std::string buffer_;
  std::size_t buffer_begin_ = 0;
  std::uint64_t pending_hole_bytes_ = 0;
  std::deque<std::uint64_t> old_cuts_;  // old entry ends at or after edit_end_, not yet passed
  bool done_ = false;                   // resynced: the rest of level 0 is the old one
};

// ---- RecipeTree: edits ------------------------------------------------------------------------

io::Task<Result<FileRoot>> RecipeTree::Splice(const FileRoot& root, std::uint64_t offset,
                                              std::uint64_t remove_length, std::string_view insert,
                                              TreeWriteStats* stats) {
  std::vector<Piece> pieces;
  if (!insert.empty()) pieces.push_back(Piece{insert, 0});
  co_return co_await SplicePieces(root, offset, remove_length, pieces, stats);
}

io::Task<Result<FileRoot>> RecipeTree::SplicePieces(const FileRoot& root, std::uint64_t offset,
                                                    std::uint64_t remove_length,
                                                    const std::vector<Piece>& pieces,
                                                    TreeWriteStats* stats) {
  if (offset > root.length || remove_length > root.length - offset) {
    co_return Status::InvalidArgument("splice of [" + std::to_string(offset) + ", +" +
                                      std::to_string(remove_length) + ") past the end of a " +
                                      std::to_string(root.length) + "-byte file");
  }
  // File offsets are signed (off_t), and SpliceOp counts the change in length as an int64_t.
  constexpr std::uint64_t kLengthMax = static_cast<std::uint64_t>(INT64_MAX);
  std::vector<Piece> insert;
  std::uint64_t insert_length = 0;
  for (const Piece& piece : pieces) {
    const std::uint64_t length = piece.hole_bytes > 0 ? piece.hole_bytes : piece.data.size();
    if (length == 0) continue;
    if (length > kLengthMax - insert_length) co_return Status::InvalidArgument("file too large");
    insert_length += length;
    insert.push_back(piece);
  }
  if (root.length - remove_length > kLengthMax - insert_length) {
    co_return Status::InvalidArgument("file too large");
  }
  if (remove_length == 0 && insert.empty()) co_return root;
  if (remove_length == root.length) {
    // Nothing old survives: build the new content afresh.
    co_return co_await BuildPieces(root.kind, insert, stats);
  }
  SpliceOp op(this, root, stats);
  co_return co_await op.Run(offset, remove_length, insert, insert_length);
}

io::Task<Result<FileRoot>> RecipeTree::Truncate(const FileRoot& root, std::uint64_t new_length,
                                                TreeWriteStats* stats) {
  if (new_length <= root.length) {
    co_return co_await Splice(root, new_length, root.length - new_length, {}, stats);
  }
  // Growth is one hole at the end (merged with a hole already there): O(height). (Named
  // vectors here and below: GCC 12 rejects an initializer list as a coroutine call argument.)
  std::vector<Piece> hole(1);
  hole[0].hole_bytes = new_length - root.length;
  co_return co_await SplicePieces(root, root.length, 0, hole, stats);
}

io::Task<Result<FileRoot>> RecipeTree::Write(const FileRoot& root, std::uint64_t offset,
                                             std::string_view data, TreeWriteStats* stats) {
  std::vector<std::string_view> run;
  if (!data.empty()) run.push_back(data);
  co_return co_await WriteRun(root, offset, run, stats);
}

io::Task<Result<FileRoot>> RecipeTree::WriteRun(const FileRoot& root, std::uint64_t offset,
                                                const std::vector<std::string_view>& run,
                                                TreeWriteStats* stats) {
  std::vector<Piece> pieces;
  pieces.reserve(run.size() + 1);
  std::uint64_t length = 0;
  if (offset > root.length) {
    // The gap is a hole, then the data: one splice at the end.
    pieces.push_back(Piece{{}, offset - root.length});
  }
  for (std::string_view data : run) {
    if (data.empty()) continue;
    pieces.push_back(Piece{data, 0});
    length += data.size();
  }
  if (offset > root.length) co_return co_await SplicePieces(root, root.length, 0, pieces, stats);
  const std::uint64_t overwrite = std::min<std::uint64_t>(length, root.length - offset);
  co_return co_await SplicePieces(root, offset, overwrite, pieces, stats);
}

io::Task<Result<FileRoot>> RecipeTree::PunchHole(const FileRoot& root, std::uint64_t offset,
                                                 std::uint64_t length, TreeWriteStats* stats) {
  if (offset >= root.length || length == 0) co_return root;
  const std::uint64_t end = root.length - offset < length ? root.length : offset + length;
  std::vector<Piece> hole(1);
  hole[0].hole_bytes = end - offset;
  co_return co_await SplicePieces(root, offset, end - offset, hole, stats);
}

// ---- RecipeTree: walks ------------------------------------------------------------------------

io::Task<Status> RecipeTree::Diff(const FileRoot& root, const FileRoot& other,
                                  std::vector<ChunkName>* missing) {
  // Frontiers of (level, name, length), expanded highest level first on both sides, so a
  // subtree present on both sides meets itself at its own level and is dropped whole.
  // Holes name no chunk: they never enter a frontier (nothing to transfer, nothing to read).
  using Item = std::tuple<int, ChunkName, std::uint64_t, std::uint64_t>;
  std::set<Item> mine;
  std::set<Item> theirs;
  if (!root.empty() && !root.all_hole()) {
    mine.emplace(root.height, root.name, root.length, root.hole_bytes);
  }
  if (!other.empty() && !other.all_hole()) {
    theirs.emplace(other.height, other.name, other.length, other.hole_bytes);
  }
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
      for (auto it = side->lower_bound(Item{level, ChunkName(), 0, 0}); it != side->end();) {
        expand.push_back(*it);
        it = side->erase(it);
      }
      for (const Item& item : expand) {
        const auto& [item_level, name, length, hole_bytes] = item;
        if (side == &mine && listed.insert(name).second) missing->push_back(name);
        Result<DecodedNode> node =
            co_await LoadNode(NodeEntry{name, length, hole_bytes}, item_level, nullptr);
        if (!node.ok()) co_return node.status();
        for (const NodeEntry& child : node.value().entries) {
          if (child.hole()) continue;
          side->emplace(item_level - 1, child.name, child.length, child.hole_bytes);
        }
      }
    }
  }
  co_return Status::OK();
}

io::Task<Status> RecipeTree::WalkTopDown(const FileRoot& root, const HasChunk* has,
                                         std::vector<ChunkName>* names, std::vector<int>* levels) {
  if (root.empty() || root.all_hole()) co_return Status::OK();  // holes name no chunk
  struct Pending {
    NodeEntry entry;
    int level;
  };
  std::vector<Pending> stack{{RootEntry(root), root.height}};
  std::unordered_set<ChunkName, ChunkNameHash> seen{root.name};
  while (!stack.empty()) {
    const Pending item = stack.back();
    stack.pop_back();
    if (has != nullptr) {
      Result<bool> held = co_await (*has)(item.entry.name);
      if (!held.ok()) co_return held.status();
      if (held.value()) continue;
    }
    names->push_back(item.entry.name);
    if (levels != nullptr) levels->push_back(item.level);
    if (item.level == 0) continue;
    Result<DecodedNode> node = co_await LoadNode(item.entry, item.level, nullptr);
    if (!node.ok()) co_return node.status();
    const auto& entries = node.value().entries;
    for (auto child = entries.rbegin(); child != entries.rend(); ++child) {
      if (!child->hole() && seen.insert(child->name).second) {
        stack.push_back(Pending{*child, item.level - 1});
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
