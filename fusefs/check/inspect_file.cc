// inspect_file.cc: `cascadefs inspect STORE file PATH | chunk HASH | chunks` (fusefs/check.h):
// what a file is made of, who refers to a chunk, and dedup and compression over the store.
#include <sys/stat.h>

#include <map>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "engine/db.h"
#include "engine/iterator.h"
#include "fs/inode_record.h"
#include "fusefs/check.h"
#include "fusefs/chunk_store.h"

namespace cascadefs::fusefs {

double ChunkSummary::dedup_ratio() const {
  return referenced_chunk_bytes == 0
             ? 1.0
             : static_cast<double>(file_bytes) / static_cast<double>(referenced_chunk_bytes);
}

double ChunkSummary::compression_ratio() const {
  return stored_bytes == 0 ? 1.0
                           : static_cast<double>(chunk_bytes) / static_cast<double>(stored_bytes);
}

namespace {

Result<InodeRecord> LoadInode(engine::DB* db, std::uint64_t ino) {
  std::string value;
  Status got = db->Get(engine::ReadOptions(), InodeKey(ino), &value);
  if (!got.ok()) return got.WithContext("inode " + std::to_string(ino));
  Result<InodeRecord> record = InodeRecord::Decode(value);
  if (!record.ok()) return record.status().WithContext("inode " + std::to_string(ino));
  return record;
}

// The chunk's stored value and decoded bytes; `present` false when missing, `problem` set
// when damaged.
struct LoadedChunk {
  bool present = false;
  std::string stored;
  std::string data;
  std::string problem;
};

Result<LoadedChunk> LoadChunk(engine::DB* db, const ChunkName& name) {
  LoadedChunk chunk;
  Status got = db->Get(engine::ReadOptions(), ChunkKey(name), &chunk.stored);
  if (got.IsNotFound()) return chunk;
  if (!got.ok()) {
    chunk.present = true;
    chunk.problem = std::string(got.message());
    return chunk;
  }
  chunk.present = true;
  Result<std::string> data = DecodeChunkValue(name, chunk.stored);
  if (data.ok()) {
    chunk.data = std::move(data).value();
  } else {
    chunk.problem = std::string(data.status().message());
  }
  return chunk;
}

// Appends the subtree of `entry` at `level` to `info`, parents first.
Status ListTree(engine::DB* db, const NodeEntry& entry, int level, std::uint64_t offset,
                std::unordered_set<ChunkName, ChunkNameHash>* seen, FileInfo* info) {
  TreeEntryInfo row{.level = level, .offset = offset, .length = entry.length};
  if (entry.hole()) {
    info->tree.push_back(row);
    return Status::OK();
  }
  row.chunk = entry.name.ToHex();
  Result<LoadedChunk> chunk = LoadChunk(db, entry.name);
  if (!chunk.ok()) return chunk.status();
  row.present = chunk.value().present && chunk.value().problem.empty();
  row.stored_bytes = chunk.value().stored.size();
  if (seen->insert(entry.name).second) info->stored_bytes += row.stored_bytes;
  info->tree.push_back(row);
  if (level == 0) {
    ++info->leaves;
    return Status::OK();
  }
  ++info->nodes;
  if (!row.present) return Status::OK();
  Result<DecodedNode> node = DecodeNode(chunk.value().data);
  if (!node.ok()) {
    info->tree.back().present = false;
    return Status::OK();
  }
  std::uint64_t child_offset = offset;
  for (const NodeEntry& child : node.value().entries) {
    CFS_RETURN_IF_ERROR(ListTree(db, child, level - 1, child_offset, seen, info));
    child_offset += child.length;
  }
  return Status::OK();
}

// Whether the subtree of `entry` names `target`, and at which file offsets (appended).
Status FindInTree(engine::DB* db, const NodeEntry& entry, int level, std::uint64_t offset,
                  const ChunkName& target, bool* target_is_node,
                  std::unordered_map<ChunkName, bool, ChunkNameHash>* contains,
                  std::vector<std::uint64_t>* offsets) {
  if (entry.hole()) return Status::OK();
  if (entry.name == target) {
    offsets->push_back(offset);
    if (level > 0) *target_is_node = true;
    return Status::OK();
  }
  if (level == 0) return Status::OK();
  if (auto known = contains->find(entry.name); known != contains->end() && !known->second) {
    return Status::OK();  // a subtree already searched without a hit
  }
  Result<LoadedChunk> chunk = LoadChunk(db, entry.name);
  if (!chunk.ok()) return chunk.status();
  if (!chunk.value().present || !chunk.value().problem.empty()) return Status::OK();
  Result<DecodedNode> node = DecodeNode(chunk.value().data);
  if (!node.ok()) return Status::OK();
  const std::size_t before = offsets->size();
  std::uint64_t child_offset = offset;
  for (const NodeEntry& child : node.value().entries) {
    CFS_RETURN_IF_ERROR(
        FindInTree(db, child, level - 1, child_offset, target, target_is_node, contains, offsets));
    child_offset += child.length;
  }
  (*contains)[entry.name] = offsets->size() > before;
  return Status::OK();
}

}  // namespace

Result<FileInfo> InspectFile(engine::DB* db, std::string_view path) {
  if (path.empty() || path.front() != '/') {
    return Status::InvalidArgument(std::string(path) + ": a path inside the store starts with /");
  }
  std::uint64_t ino = kRootIno;
  std::string walked;
  std::size_t at = 1;
  while (at < path.size()) {
    const std::size_t slash = path.find('/', at);
    const std::string_view name =
        path.substr(at, slash == std::string_view::npos ? std::string_view::npos : slash - at);
    at = slash == std::string_view::npos ? path.size() : slash + 1;
    if (name.empty() || name == ".") continue;
    walked.push_back('/');
    walked.append(name);
    std::string value;
    Status got = db->Get(engine::ReadOptions(), DirentKey(ino, name), &value);
    if (got.IsNotFound()) return Status::NotFound(walked + ": no such file or directory");
    if (!got.ok()) return got.WithContext(walked);
    Result<DirentValue> dirent = DirentValue::Decode(value);
    if (!dirent.ok()) return dirent.status().WithContext(walked);
    ino = dirent.value().ino;
  }
  Result<InodeRecord> record = LoadInode(db, ino);
  if (!record.ok()) return record.status();
  const InodeRecord& r = record.value();
  FileInfo info{.ino = ino,
                .mode = r.mode,
                .nlink = r.nlink,
                .uid = r.uid,
                .gid = r.gid,
                .size = r.size,
                .hole_bytes = r.root.hole_bytes,
                .mtime_ns = r.mtime_ns,
                .height = r.root.height,
                .chunker = r.root.kind == ChunkerKind::kText ? "text" : "binary",
                .symlink_target = r.symlink_target};
  if (!S_ISREG(r.mode) || r.root.empty()) return info;
  if (!r.root.all_hole()) info.root = r.root.name.ToHex();
  std::unordered_set<ChunkName, ChunkNameHash> seen;
  CFS_RETURN_IF_ERROR(ListTree(
      db, NodeEntry{.name = r.root.name, .length = r.root.length, .hole_bytes = r.root.hole_bytes},
      r.root.height, 0, &seen, &info));
  return info;
}

Result<ChunkInfo> InspectChunk(engine::DB* db, std::string_view hex) {
  Result<ChunkName> name = ChunkName::FromHex(hex);
  if (!name.ok()) return name.status();
  ChunkInfo info{.chunk = name.value().ToHex()};
  Result<LoadedChunk> chunk = LoadChunk(db, name.value());
  if (!chunk.ok()) return chunk.status();
  info.present = chunk.value().present;
  info.problem = chunk.value().problem;
  info.damaged = info.present && !info.problem.empty();
  info.stored_bytes = chunk.value().stored.size();
  info.length = chunk.value().data.size();
  // The stored value's first byte is its encoding: 0 raw, 1 zstd (docs/formats/chunks.md).
  info.compressed = info.present && !chunk.value().stored.empty() && chunk.value().stored[0] == 1;
  // Paths: the first entry naming each inode ("d" keys in key order).
  std::map<std::uint64_t, std::pair<std::uint64_t, std::string>> name_of;
  std::unique_ptr<engine::Iterator> it = db->NewIterator(engine::ReadOptions());
  for (it->Seek("d"); it->Valid() && it->key().starts_with("d"); it->Next()) {
    if (it->key().size() < 10) continue;
    Result<DirentValue> dirent = DirentValue::Decode(it->value());
    if (!dirent.ok()) continue;
    name_of.try_emplace(dirent.value().ino, DecodeBig64(it->key().substr(1)),
                        std::string(it->key().substr(9)));
  }
  if (!it->status().ok()) return it->status();
  auto path_of = [&name_of](std::uint64_t ino) {
    std::string path;
    for (std::size_t depth = 0; ino != kRootIno; ++depth) {
      auto found = name_of.find(ino);
      if (found == name_of.end() || depth > name_of.size()) return std::string();
      path = "/" + found->second.second + path;
      ino = found->second.first;
    }
    return path.empty() ? std::string("/") : path;
  };
  std::unordered_map<ChunkName, bool, ChunkNameHash> contains;
  it = db->NewIterator(engine::ReadOptions());
  for (it->Seek("i"); it->Valid() && it->key().starts_with("i"); it->Next()) {
    if (it->key().size() != 9) continue;
    Result<InodeRecord> record = InodeRecord::Decode(it->value());
    if (!record.ok() || !S_ISREG(record.value().mode)) continue;
    const FileRoot& root = record.value().root;
    if (root.empty() || root.all_hole()) continue;
    std::vector<std::uint64_t> offsets;
    CFS_RETURN_IF_ERROR(FindInTree(
        db, NodeEntry{.name = root.name, .length = root.length, .hole_bytes = root.hole_bytes},
        root.height, 0, name.value(), &info.node, &contains, &offsets));
    const std::uint64_t ino = DecodeBig64(it->key().substr(1));
    for (std::uint64_t offset : offsets) {
      info.references.push_back({.ino = ino, .path = path_of(ino), .offset = offset});
    }
  }
  if (!it->status().ok()) return it->status();
  return info;
}

Result<ChunkSummary> SummarizeChunks(engine::DB* db) {
  Result<NamespaceCheckReport> report = CheckNamespace(db, NamespaceCheckOptions{});
  if (!report.ok()) return report.status();
  const NamespaceCheckReport& r = report.value();
  return ChunkSummary{.files = r.files,
                      .file_bytes = r.file_data_bytes,
                      .chunks = r.chunks,
                      .chunk_bytes = r.chunk_bytes,
                      .stored_bytes = r.chunk_stored_bytes,
                      .referenced_chunk_bytes = r.referenced_chunk_bytes,
                      .unreferenced_chunks = r.unreferenced_chunks,
                      .unreferenced_bytes = r.unreferenced_bytes};
}

}  // namespace cascadefs::fusefs
