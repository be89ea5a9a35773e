// check_namespace.cc: fsck's logical layer (fusefs/check.h, docs/fsck.md "Chunks, recipes,
// namespace"): one pass over every key, then the recipe trees, then the namespace as a whole,
// and with --repair the fixes, each one write batch.
#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "check/store_scan.h"
#include "engine/db.h"
#include "engine/iterator.h"
#include "engine/write_batch.h"
#include "fs/inode_record.h"
#include "fusefs/check.h"
#include "fusefs/chunk_store.h"

namespace cascadefs::fusefs {

std::uint64_t NamespaceCheckReport::errors() const {
  return static_cast<std::uint64_t>(std::count_if(
      findings.begin(), findings.end(),
      [](const NamespaceFinding& f) { return f.severity == engine::CheckSeverity::kError; }));
}

std::uint64_t NamespaceCheckReport::errors_left() const {
  return static_cast<std::uint64_t>(
      std::count_if(findings.begin(), findings.end(), [](const NamespaceFinding& f) {
        return f.severity == engine::CheckSeverity::kError && !f.repaired;
      }));
}

std::uint64_t NamespaceCheckReport::repaired() const {
  return static_cast<std::uint64_t>(
      std::count_if(findings.begin(), findings.end(), [](const NamespaceFinding& f) {
        return f.severity == engine::CheckSeverity::kError && f.repaired;
      }));
}

namespace {

constexpr std::uint32_t kLostFoundMode = S_IFDIR | 0700;
constexpr std::string_view kLostFoundName = "lost+found";
// Problems reported per damaged file; the rest are counted in one more line.
constexpr int kProblemsPerFileMax = 8;

bool IsDir(std::uint32_t mode) { return S_ISDIR(mode); }

std::string TypeName(std::uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return "directory";
    case S_IFREG:
      return "file";
    case S_IFLNK:
      return "symlink";
    default:
      return "special file";
  }
}

// One directory entry as the checker sees it, whichever of its two keys it was built from.
struct Entry {
  std::uint64_t parent = 0;
  std::string name;
  std::uint64_t cookie = 0;
  std::uint64_t ino = 0;
  std::uint32_t mode = 0;  // type bits as the entry records them
  bool removed = false;    // repair deletes it
};

// A pending write of the repair: keys to put (value) or delete (nullopt), applied atomically.
struct Fix {
  std::vector<std::pair<std::string, std::optional<std::string>>> ops;
  std::vector<std::string> delete_prefixes;  // every key under these too (an inode's xattrs)
  std::size_t finding = 0;                   // index of the finding it repairs
  std::vector<std::size_t> also_repairs;     // more findings it repairs (a lost chunk's files)
};

// One thing wrong with a file's data, found walking its tree.
struct DataProblem {
  std::string text;
  ChunkName chunk;
  bool known = false;  // the chunk is recorded lost: reported as a warning, nothing to repair
};

constexpr std::size_t kNoFinding = static_cast<std::size_t>(-1);

class Checker {
 public:
  Checker(engine::DB* db, const NamespaceCheckOptions& options, NamespaceCheckReport* report)
      : db_(db), options_(options), report_(report) {}

  Status Run() {
    CFS_RETURN_IF_ERROR(ScanStore(db_, &scan_, options_.progress));
    report_->inodes = scan_.inodes.size();
    report_->entries = scan_.dirents.size();
    report_->chunks = scan_.chunks.size();
    for (const auto& [name, chunk] : scan_.chunks) {
      report_->chunk_bytes += chunk.length;
      report_->chunk_stored_bytes += chunk.stored_bytes;
    }
    for (const std::string& key : scan_.malformed_keys) {
      const std::size_t f =
          Add(engine::CheckSeverity::kError, std::nullopt, "", "",
              "a key of tag '" + std::string(1, key[0]) + "' with " + std::to_string(key.size()) +
                  " bytes, which no record has: nothing reads it; removed by "
                  "repair");
      AddFix(f, Fix{.ops = {{key, std::nullopt}}});
    }
    for (const std::string& key : scan_.unknown_keys) {
      Add(engine::CheckSeverity::kNote, std::nullopt, "", "",
          "a key no part of cascadefs writes (tag 0x" + HexByte(key[0]) + ", " +
              std::to_string(key.size()) + " bytes): left alone");
    }
    CheckSuperblock();
    CheckRecords();
    PairEntries();
    CheckEntries();
    CheckDirectoryLinks();
    CheckReachability();
    CheckXattrsAndOrphans();
    CheckCounts();
    CFS_RETURN_IF_ERROR(CheckRecipes());
    CheckLostChunks();
    if (options_.repair) CFS_RETURN_IF_ERROR(ApplyFixes());
    if (options_.repair && unreferenced_.size() > 0 && recipes_complete_) {
      CFS_RETURN_IF_ERROR(DeleteUnreferencedChunks());
    }
    return Status::OK();
  }

 private:
  static std::string HexByte(char c) {
    static constexpr char kDigits[] = "0123456789abcdef";
    const auto b = static_cast<unsigned char>(c);
    return {kDigits[b >> 4], kDigits[b & 15]};
  }

  std::size_t Add(engine::CheckSeverity severity, std::optional<std::uint64_t> ino,
                  std::string path, std::string chunk, std::string problem) {
    report_->findings.push_back(NamespaceFinding{.severity = severity,
                                                 .ino = ino,
                                                 .path = std::move(path),
                                                 .chunk = std::move(chunk),
                                                 .problem = std::move(problem)});
    return report_->findings.size() - 1;
  }

  // An error on inode `ino`, named by a path when one is known.
  std::size_t AddInode(std::uint64_t ino, std::string problem,
                       engine::CheckSeverity severity = engine::CheckSeverity::kError) {
    return Add(severity, ino, PathOf(ino), "", std::move(problem));
  }

  void AddFix(std::size_t finding, Fix fix) {
    fix.finding = finding;
    fixes_.push_back(std::move(fix));
  }

  const ScannedInode* Inode(std::uint64_t ino) const {
    auto it = scan_.inodes.find(ino);
    return it == scan_.inodes.end() ? nullptr : &it->second;
  }
  bool IsDecodedDir(std::uint64_t ino) const {
    const ScannedInode* inode = Inode(ino);
    return inode != nullptr && inode->decoded && IsDir(inode->record.mode);
  }

  // A path to `ino` through the entries as found (first entry naming it), or "" when none
  // reaches the root. Bounded by the number of directories (a cycle ends the walk).
  std::string PathOf(std::uint64_t ino) {
    if (ino == kRootIno) return "/";
    if (auto it = paths_.find(ino); it != paths_.end()) return it->second;
    std::vector<const Entry*> chain;
    std::set<std::uint64_t> seen;
    std::uint64_t at = ino;
    while (at != kRootIno) {
      auto it = first_entry_.find(at);
      if (it == first_entry_.end() || !seen.insert(at).second) return paths_[ino] = "";
      chain.push_back(&entries_[it->second]);
      at = entries_[it->second].parent;
    }
    std::string path;
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) path += "/" + (*it)->name;
    return paths_[ino] = path;
  }

  void CheckSuperblock() {
    max_ino_ = scan_.inodes.empty() ? kRootIno : scan_.inodes.rbegin()->first;
    next_ino_ = max_ino_ + 1;
    // The superblock is rewritten (first, ApplyFixes) with the final next inode number, so
    // an inode the repair creates is counted too.
    if (!scan_.superblock) {
      superblock_finding_ =
          Add(engine::CheckSeverity::kError, std::nullopt, "", "", "the superblock is missing");
      return;
    }
    Result<Superblock> decoded = Superblock::Decode(*scan_.superblock);
    if (!decoded.ok()) {
      const std::size_t f = Add(engine::CheckSeverity::kError, std::nullopt, "", "",
                                "the superblock: " + std::string(decoded.status().message()));
      // A newer format's superblock is not damage to repair: this cascadefs cannot read it.
      if (!decoded.status().IsNotSupported()) superblock_finding_ = f;
      return;
    }
    if (decoded.value().next_ino <= max_ino_) {
      superblock_finding_ =
          Add(engine::CheckSeverity::kError, std::nullopt, "", "",
              "the superblock's next inode number " + std::to_string(decoded.value().next_ino) +
                  " is not above inode " + std::to_string(max_ino_));
    } else {
      next_ino_ = decoded.value().next_ino;
    }
  }

  void CheckRecords() {
    for (auto& [ino, inode] : scan_.inodes) {
      if (!inode.decoded) {
        // The record's bytes are all we have: rebuilding it would be a guess.
        Add(engine::CheckSeverity::kError, ino, "", "",
            "inode record does not decode: " + inode.problem);
        recipes_complete_ = false;  // it may name chunks: none is known unreferenced
        continue;
      }
      const std::uint32_t mode = inode.record.mode;
      if (IsDir(mode)) {
        ++report_->directories;
      } else if (S_ISREG(mode)) {
        ++report_->files;
        report_->file_bytes += inode.record.size;
        report_->file_data_bytes += inode.record.root.data_bytes();
      } else if (S_ISLNK(mode)) {
        ++report_->symlinks;
      }
    }
    const ScannedInode* root = Inode(kRootIno);
    if (root == nullptr) {
      // Without it the store cannot mount, and every entry of "/" would look dangling. The
      // root is always a directory; its mode and owner are the ones mkfs gives it.
      const std::size_t f =
          Add(engine::CheckSeverity::kError, kRootIno, "/", "",
              "the root directory's inode is missing: repair writes a new one (mode 0755, "
              "owner root)");
      AddDirectoryInode(kRootIno, S_IFDIR | 0755);
      created_[kRootIno] = Created{.finding = f};
    } else if (root->decoded && !IsDir(root->record.mode)) {
      Add(engine::CheckSeverity::kError, kRootIno, "/", "", "the root inode is not a directory");
    }
  }

  // Builds entries_ from the "d" and "e" keys: each pair of twins is one entry; a missing or
  // undecodable twin is rebuilt from the other (everything it holds is in its twin), and an
  // "e" key whose "d" twin names another cookie is stale.
  void PairEntries() {
    std::map<std::pair<std::uint64_t, std::uint64_t>, const ScannedListing*> listings;
    for (const ScannedListing& listing : scan_.listings) {
      listings[{listing.parent, listing.cookie}] = &listing;
    }
    std::set<std::pair<std::uint64_t, std::uint64_t>> paired;
    for (const ScannedDirent& dirent : scan_.dirents) {
      Entry entry{.parent = dirent.parent, .name = dirent.name};
      if (!dirent.decoded) {
        // The name is in the key; ino, mode and cookie only in the value or an "e" twin.
        const ScannedListing* twin = nullptr;
        for (const ScannedListing& listing : scan_.listings) {
          if (listing.parent == dirent.parent && listing.decoded && listing.name == dirent.name) {
            twin = &listing;
            break;
          }
        }
        if (twin == nullptr) {
          const std::size_t f =
              Add(engine::CheckSeverity::kError, dirent.parent, "", "",
                  "directory entry '" + dirent.name + "' does not decode (" + dirent.problem +
                      ") and has no listing twin: removed by repair");
          AddFix(f, Fix{.ops = {{DirentKey(dirent.parent, dirent.name), std::nullopt}}});
          continue;
        }
        entry.cookie = twin->cookie;
        entry.ino = twin->ino;
        entry.mode = twin->mode;
        paired.insert({twin->parent, twin->cookie});
        entries_.push_back(entry);
        const std::size_t f =
            Add(engine::CheckSeverity::kError, dirent.parent, "", "",
                "directory entry '" + dirent.name + "' does not decode: " + dirent.problem);
        AddFix(f, Fix{.ops = {{DirentKey(entry.parent, entry.name), DirentOf(entry)}}});
        continue;
      }
      entry.cookie = dirent.value.cookie;
      entry.ino = dirent.value.ino;
      entry.mode = dirent.value.mode & S_IFMT;
      entries_.push_back(entry);
      auto twin = listings.find({dirent.parent, dirent.value.cookie});
      if (twin == listings.end()) {
        const std::size_t f =
            Add(engine::CheckSeverity::kError, dirent.parent, "", "",
                "directory entry '" + dirent.name + "' has no listing twin (cookie " +
                    std::to_string(entry.cookie) + "): readdir misses it");
        AddFix(f, Fix{.ops = {{ListingKey(entry.parent, entry.cookie), ListingOf(entry)}}});
        continue;
      }
      paired.insert(twin->first);
      const ScannedListing& listing = *twin->second;
      if (!listing.decoded || listing.ino != entry.ino || listing.name != entry.name ||
          (listing.mode & S_IFMT) != entry.mode) {
        const std::size_t f =
            Add(engine::CheckSeverity::kError, dirent.parent, "", "",
                "directory entry '" + dirent.name + "': its listing twin (cookie " +
                    std::to_string(entry.cookie) + ") " +
                    (listing.decoded ? "differs" : "does not decode: " + listing.problem));
        AddFix(f, Fix{.ops = {{ListingKey(entry.parent, entry.cookie), ListingOf(entry)}}});
      }
    }
    std::map<std::pair<std::uint64_t, std::string>, std::uint64_t> cookie_of;
    for (const Entry& entry : entries_) cookie_of[{entry.parent, entry.name}] = entry.cookie;
    for (const ScannedListing& listing : scan_.listings) {
      if (paired.contains({listing.parent, listing.cookie})) continue;
      if (!listing.decoded) {
        const std::size_t f = Add(engine::CheckSeverity::kError, listing.parent, "", "",
                                  "listing key (cookie " + std::to_string(listing.cookie) +
                                      ") does not decode and no entry names it: removed by repair");
        AddFix(f, Fix{.ops = {{ListingKey(listing.parent, listing.cookie), std::nullopt}}});
        continue;
      }
      if (cookie_of.contains({listing.parent, listing.name})) {
        const std::size_t f = Add(engine::CheckSeverity::kError, listing.parent, "", "",
                                  "stale listing key for '" + listing.name + "' (cookie " +
                                      std::to_string(listing.cookie) + "): readdir shows it twice");
        AddFix(f, Fix{.ops = {{ListingKey(listing.parent, listing.cookie), std::nullopt}}});
        continue;
      }
      Entry entry{.parent = listing.parent,
                  .name = listing.name,
                  .cookie = listing.cookie,
                  .ino = listing.ino,
                  .mode = listing.mode & S_IFMT};
      entries_.push_back(entry);
      const std::size_t f =
          Add(engine::CheckSeverity::kError, listing.parent, "", "",
              "listing key for '" + listing.name + "' has no directory entry: lookup misses it");
      AddFix(f, Fix{.ops = {{DirentKey(entry.parent, entry.name), DirentOf(entry)}}});
    }
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      first_entry_.try_emplace(entries_[i].ino, i);
    }
  }

  static std::string DirentOf(const Entry& entry) {
    return DirentValue{.ino = entry.ino, .cookie = entry.cookie, .mode = entry.mode}.Encode();
  }
  static std::string ListingOf(const Entry& entry) {
    return ListingValue{.ino = entry.ino, .mode = entry.mode, .name = entry.name}.Encode();
  }
  static Fix RemoveEntry(const Entry& entry) {
    return Fix{.ops = {{DirentKey(entry.parent, entry.name), std::nullopt},
                       {ListingKey(entry.parent, entry.cookie), std::nullopt}}};
  }

  // Entries in a missing or non-directory parent, entries naming no inode (dangling), and
  // entries whose recorded type differs from the inode's.
  void CheckEntries() {
    for (Entry& entry : entries_) {
      const ScannedInode* parent = Inode(entry.parent);
      const std::string where =
          "entry '" + entry.name + "' of directory " + std::to_string(entry.parent);
      if (parent == nullptr || (parent->decoded && !IsDir(parent->record.mode))) {
        entry.removed = true;
        const std::size_t f = Add(engine::CheckSeverity::kError, entry.ino, "", "",
                                  where + (parent == nullptr ? ": the directory does not exist"
                                                             : ": that inode is not a directory"));
        AddFix(f, RemoveEntry(entry));
        continue;
      }
      const ScannedInode* target = Inode(entry.ino);
      if (target == nullptr) {
        entry.removed = true;
        const std::size_t f =
            Add(engine::CheckSeverity::kError, entry.ino, JoinPath(entry.parent, entry.name), "",
                "dangling entry: inode " + std::to_string(entry.ino) + " does not exist");
        AddFix(f, RemoveEntry(entry));
        continue;
      }
      if (entry.ino == kRootIno) {
        entry.removed = true;
        const std::size_t f =
            Add(engine::CheckSeverity::kError, entry.ino, JoinPath(entry.parent, entry.name), "",
                "an entry names the root directory");
        AddFix(f, RemoveEntry(entry));
        continue;
      }
      if (target->decoded && (target->record.mode & S_IFMT) != entry.mode) {
        const std::uint32_t type = target->record.mode & S_IFMT;
        const std::size_t f =
            Add(engine::CheckSeverity::kError, entry.ino, JoinPath(entry.parent, entry.name), "",
                "the entry says " + TypeName(entry.mode) + ", the inode is a " + TypeName(type));
        entry.mode = type;
        AddFix(f, Fix{.ops = {{DirentKey(entry.parent, entry.name), DirentOf(entry)},
                              {ListingKey(entry.parent, entry.cookie), ListingOf(entry)}}});
      }
    }
  }

  std::string JoinPath(std::uint64_t parent, const std::string& name) {
    const std::string dir = PathOf(parent);
    if (dir.empty()) return "";
    return (dir == "/" ? "" : dir) + "/" + name;
  }

  // A directory has exactly one name. When several entries name one, the one in the
  // directory its record names as parent is kept and the others are removed; with none
  // such, nothing tells which is right and they are left (reported).
  void CheckDirectoryLinks() {
    std::map<std::uint64_t, std::vector<Entry*>> names_of_dir;
    for (Entry& entry : entries_) {
      if (!entry.removed && IsDecodedDir(entry.ino)) names_of_dir[entry.ino].push_back(&entry);
    }
    for (auto& [ino, names] : names_of_dir) {
      if (names.size() < 2) continue;
      const std::uint64_t recorded_parent = Inode(ino)->record.parent;
      const auto keep = std::count_if(names.begin(), names.end(),
                                      [&](const Entry* e) { return e->parent == recorded_parent; });
      for (Entry* entry : names) {
        const std::string path = JoinPath(entry->parent, entry->name);
        if (keep == 1 && entry->parent != recorded_parent) {
          entry->removed = true;
          const std::size_t f =
              Add(engine::CheckSeverity::kError, ino, path, "",
                  "a second name of directory " + std::to_string(ino) + " (its parent is " +
                      std::to_string(recorded_parent) + "): removed by repair");
          AddFix(f, RemoveEntry(*entry));
        } else if (keep != 1) {
          Add(engine::CheckSeverity::kError, ino, path, "",
              "directory " + std::to_string(ino) +
                  " has several names and its parent field picks none of them");
        }
      }
    }
  }

  // What the root reaches through live entries. Directories that a cycle keeps from the root
  // and inodes with links but no entry go to /lost+found (created if missing).
  void CheckReachability() {
    std::map<std::uint64_t, std::vector<const Entry*>> children;
    for (const Entry& entry : entries_) {
      if (!entry.removed) children[entry.parent].push_back(&entry);
    }
    std::set<std::uint64_t> reached;
    std::deque<std::uint64_t> queue;
    if (Inode(kRootIno) != nullptr) {
      reached.insert(kRootIno);
      queue.push_back(kRootIno);
    }
    while (!queue.empty()) {
      const std::uint64_t dir = queue.front();
      queue.pop_front();
      for (const Entry* entry : children[dir]) {
        if (reached.insert(entry->ino).second && IsDecodedDir(entry->ino)) {
          queue.push_back(entry->ino);
        }
      }
    }
    // Inodes to relink: the tops of what the root does not reach.
    std::map<std::uint64_t, const Entry*> live_name;  // a live entry naming each inode
    for (const Entry& entry : entries_) {
      if (!entry.removed) live_name.try_emplace(entry.ino, &entry);
    }
    std::vector<std::uint64_t> tops;
    std::set<std::uint64_t> covered;  // unreached inodes below a chosen top
    for (const auto& [ino, inode] : scan_.inodes) {
      if (reached.contains(ino) || covered.contains(ino) || !inode.decoded) continue;
      if (!IsDir(inode.record.mode)) {
        if (live_name.contains(ino)) continue;  // its directory is relinked (or a top below)
        if (inode.record.nlink == 0) continue;  // an orphan: CheckXattrsAndOrphans
        tops.push_back(ino);
        continue;
      }
      // A directory: walk up its names until an inode with no name (the top) or a cycle
      // (the smallest directory in it becomes the top, its entry removed).
      std::vector<std::uint64_t> chain;
      std::set<std::uint64_t> on_chain;
      std::uint64_t at = ino;
      bool cycle = false;
      while (true) {
        if (covered.contains(at) || reached.contains(at)) break;
        if (!on_chain.insert(at).second) {
          cycle = true;
          break;
        }
        chain.push_back(at);
        auto name = live_name.find(at);
        if (name == live_name.end()) break;
        at = name->second->parent;
      }
      if (covered.contains(at) || reached.contains(at)) {
        // Joins what is already handled; the first loop visit covers it.
        for (std::uint64_t c : chain) covered.insert(c);
        continue;
      }
      std::uint64_t top = chain.back();
      if (cycle) {
        const auto begin = std::find(chain.begin(), chain.end(), at);
        top = *std::min_element(begin, chain.end());
        Entry* entry = const_cast<Entry*>(live_name[top]);
        entry->removed = true;
        const std::size_t f =
            Add(engine::CheckSeverity::kError, top, "", "",
                "directory " + std::to_string(top) +
                    " is in a cycle the root does not reach (entry '" + entry->name +
                    "' of directory " + std::to_string(entry->parent) + "): removed by repair");
        AddFix(f, RemoveEntry(*entry));
      }
      for (std::uint64_t c : chain) covered.insert(c);
      // A top whose record does not decode is reported already; linking it would write an
      // entry of a type nobody knows, so it and what hangs below it stay where they are.
      if (Inode(top)->decoded) tops.push_back(top);
    }
    if (tops.empty()) return;
    const std::uint64_t lost_found = LostFound();
    for (std::uint64_t ino : tops) {
      const ScannedInode& inode = *Inode(ino);
      Entry entry{.parent = lost_found,
                  .name = "#" + std::to_string(ino),
                  .cookie = NextCookie(lost_found),
                  .ino = ino,
                  .mode = inode.record.mode & S_IFMT};
      const std::size_t f = Add(engine::CheckSeverity::kError, ino, "", "",
                                TypeName(inode.record.mode) +
                                    " that no directory reaches: relinked by repair as "
                                    "/lost+found/" +
                                    entry.name);
      AddFix(f, Fix{.ops = {{DirentKey(entry.parent, entry.name), DirentOf(entry)},
                            {ListingKey(entry.parent, entry.cookie), ListingOf(entry)}}});
      entries_.push_back(entry);
      repair_added_.insert(entries_.size() - 1);
    }
  }

  // /lost+found's inode, created (in memory, and by a fix) when missing.
  std::uint64_t LostFound() {
    for (const Entry& entry : entries_) {
      if (!entry.removed && entry.parent == kRootIno && entry.name == kLostFoundName &&
          IsDecodedDir(entry.ino)) {
        return entry.ino;
      }
    }
    const std::uint64_t ino = next_ino_++;
    AddDirectoryInode(ino, kLostFoundMode);
    Entry entry{.parent = kRootIno,
                .name = std::string(kLostFoundName),
                .cookie = NextCookie(kRootIno),
                .ino = ino,
                .mode = S_IFDIR};
    entries_.push_back(entry);
    repair_added_.insert(entries_.size() - 1);
    // The record itself is written with the counts (CheckCounts): it is new, so it differs.
    created_[ino] = Created{.ops = {{DirentKey(entry.parent, entry.name), DirentOf(entry)},
                                    {ListingKey(entry.parent, entry.cookie), ListingOf(entry)}}};
    superblock_dirty_ = true;
    return ino;
  }

  // An empty directory in the root, made now, as repair creates one (in memory; CheckCounts
  // writes its record with the counts the entries give it).
  void AddDirectoryInode(std::uint64_t ino, std::uint32_t mode) {
    InodeRecord record;
    record.mode = mode;
    record.nlink = 2;
    record.parent = kRootIno;
    record.next_cookie = kFirstCookie;
    const std::int64_t now = NowNs();
    record.atime_ns = record.mtime_ns = record.ctime_ns = record.btime_ns = now;
    ScannedInode& inode = scan_.inodes[ino];
    inode.decoded = true;
    inode.record = record;
  }

  static std::int64_t NowNs() {
    struct timespec ts {};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  }

  std::uint64_t NextCookie(std::uint64_t dir) {
    auto [it, added] = next_cookie_.try_emplace(dir, 0);
    if (added) {
      std::uint64_t next = kFirstCookie;
      if (const ScannedInode* inode = Inode(dir); inode != nullptr && inode->decoded) {
        next = std::max(next, inode->record.next_cookie);
      }
      for (const Entry& entry : entries_) {
        if (entry.parent == dir) next = std::max(next, entry.cookie + 1);
      }
      it->second = next;
    }
    return it->second++;
  }

  // Link counts, entry counts, parents and next cookies against the entries (after the
  // structural repairs above); each inode's record is rewritten once with every correction.
  void CheckCounts() {
    struct Seen {
      std::uint32_t links = 0;
      std::uint64_t subdirs = 0;
      std::uint64_t entries = 0;
      std::uint64_t parent = 0;
      std::uint64_t max_cookie = 0;
    };
    // `before`: the entries as found (minus those that name nothing); `after`: what repair
    // leaves. A record differing from `before` is a finding; from `after` only, a
    // consequence of a repair, fixed silently.
    std::map<std::uint64_t, Seen> before;
    std::map<std::uint64_t, Seen> after;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const Entry& entry = entries_[i];
      const bool exists = Inode(entry.ino) != nullptr && Inode(entry.parent) != nullptr;
      const bool original = !repair_added_.contains(i);
      for (int pass = 0; pass < 2; ++pass) {
        if (pass == 0 && (!original || !exists)) continue;
        if (pass == 1 && entry.removed) continue;
        Seen& target = (pass == 0 ? before : after)[entry.ino];
        Seen& parent = (pass == 0 ? before : after)[entry.parent];
        ++target.links;
        if (target.parent == 0) target.parent = entry.parent;
        ++parent.entries;
        parent.max_cookie = std::max(parent.max_cookie, entry.cookie);
        if (IsDecodedDir(entry.ino)) ++parent.subdirs;
      }
    }
    for (auto& [ino, inode] : scan_.inodes) {
      if (!inode.decoded || deleting_.contains(ino)) continue;
      const InodeRecord& record = inode.record;
      InodeRecord fixed = record;
      const Seen b = before[ino];
      const Seen a = after[ino];
      std::vector<std::string> problems;
      if (IsDir(record.mode)) {
        const std::uint32_t nlink_b = static_cast<std::uint32_t>(2 + b.subdirs);
        fixed.nlink = static_cast<std::uint32_t>(2 + a.subdirs);
        if (record.nlink != nlink_b) {
          problems.push_back("link count " + std::to_string(record.nlink) + ", should be " +
                             std::to_string(nlink_b) + " (2 + subdirectories)");
        }
        fixed.entry_count = a.entries;
        if (record.entry_count != b.entries) {
          problems.push_back("entry count " + std::to_string(record.entry_count) + ", " +
                             std::to_string(b.entries) + " entries found");
        }
        const std::uint64_t parent_b = ino == kRootIno ? kRootIno : b.parent;
        const std::uint64_t parent_a = ino == kRootIno ? kRootIno : a.parent;
        if (parent_a != 0) fixed.parent = parent_a;
        if (parent_b != 0 && record.parent != parent_b) {
          problems.push_back("parent " + std::to_string(record.parent) + ", its entry is in " +
                             std::to_string(parent_b));
        }
        fixed.next_cookie = std::max(record.next_cookie, a.max_cookie + 1);
        if (next_cookie_.contains(ino)) {
          fixed.next_cookie = std::max(fixed.next_cookie, next_cookie_[ino]);
        }
        fixed.next_cookie = std::max<std::uint64_t>(fixed.next_cookie, kFirstCookie);
        if (b.max_cookie != 0 && record.next_cookie <= b.max_cookie) {
          problems.push_back("next cookie " + std::to_string(record.next_cookie) +
                             " is not above entry cookie " + std::to_string(b.max_cookie));
        }
      } else if (b.links > 0 || a.links > 0) {
        fixed.nlink = a.links;
        if (b.links > 0 && record.nlink != b.links) {
          problems.push_back("link count " + std::to_string(record.nlink) + ", " +
                             std::to_string(b.links) + " names link here");
        }
      }
      fixed.xattr_count = static_cast<std::uint32_t>(scan_.xattr_counts[ino]);
      if (record.xattr_count != fixed.xattr_count) {
        problems.push_back("xattr count " + std::to_string(record.xattr_count) + ", " +
                           std::to_string(fixed.xattr_count) + " attributes found");
      }
      if (auto created = created_.find(ino); created != created_.end()) {
        Fix fix{.ops = created->second.ops};
        fix.ops.emplace_back(InodeKey(ino), fixed.Encode());
        // A created directory (the root, /lost+found) comes first so it exists when the fixes
        // that link into it are applied.
        fix.finding = created->second.finding;
        fixes_.insert(fixes_.begin(), std::move(fix));
        continue;
      }
      const bool differs = fixed.nlink != record.nlink || fixed.entry_count != record.entry_count ||
                           fixed.parent != record.parent ||
                           fixed.next_cookie != record.next_cookie ||
                           fixed.xattr_count != record.xattr_count;
      if (!differs) continue;
      std::size_t f = kNoFinding;
      if (!problems.empty()) {
        std::string text = TypeName(record.mode) + ": ";
        for (std::size_t i = 0; i < problems.size(); ++i) text += (i ? "; " : "") + problems[i];
        f = AddInode(ino, text);
      }
      Fix fix{.ops = {{InodeKey(ino), fixed.Encode()}}};
      fix.finding = f;
      fixes_.push_back(std::move(fix));
    }
  }

  // xattr keys of missing inodes; orphan keys; inodes with no link and no orphan key.
  void CheckXattrsAndOrphans() {
    for (const auto& [ino, count] : scan_.xattr_counts) {
      if (Inode(ino) != nullptr) continue;
      const std::size_t f = Add(engine::CheckSeverity::kError, ino, "", "",
                                std::to_string(count) + " xattr keys of a missing inode");
      AddFix(f, Fix{.delete_prefixes = {XattrPrefix(ino)}});
    }
    std::set<std::uint64_t> linked;
    for (const Entry& entry : entries_) {
      if (!entry.removed) linked.insert(entry.ino);
    }
    for (std::uint64_t ino : scan_.orphans) {
      const ScannedInode* inode = Inode(ino);
      if (inode == nullptr) {
        const std::size_t f =
            Add(engine::CheckSeverity::kError, ino, "", "", "an orphan key of a missing inode");
        AddFix(f, Fix{.ops = {{OrphanKey(ino), std::nullopt}}});
      } else if (linked.contains(ino) || (inode->decoded && inode->record.nlink > 0)) {
        const std::size_t f = AddInode(ino, "an orphan key on an inode with links");
        AddFix(f, Fix{.ops = {{OrphanKey(ino), std::nullopt}}});
      } else {
        Add(engine::CheckSeverity::kNote, ino, "", "",
            "open-unlinked file (orphan): the next mount deletes it");
      }
    }
    for (const auto& [ino, inode] : scan_.inodes) {
      if (!inode.decoded || ino == kRootIno || IsDir(inode.record.mode)) continue;
      if (inode.record.nlink != 0 || linked.contains(ino) || scan_.orphans.contains(ino)) continue;
      const std::size_t f = Add(engine::CheckSeverity::kError, ino, "", "",
                                TypeName(inode.record.mode) +
                                    " with no links and no orphan key (leaked): deleted by repair");
      deleting_.insert(ino);
      AddFix(f, Fix{.ops = {{InodeKey(ino), std::nullopt}}, .delete_prefixes = {XattrPrefix(ino)}});
    }
  }

  // Every regular file's tree: nodes decode and cover what their parents say, leaves are
  // present, intact and of the recorded length. A subtree verified once is not walked again
  // (files share subtrees through dedup).
  Status CheckRecipes() {
    std::uint64_t done = 0;
    const std::uint64_t total = report_->files;
    for (const auto& [ino, inode] : scan_.inodes) {
      if (!inode.decoded || !S_ISREG(inode.record.mode)) continue;
      if (options_.progress && (++done % 4096) == 0) {
        options_.progress({.phase = "recipes", .done = done, .total = total});
      }
      const FileRoot& root = inode.record.root;
      if (root.empty() || root.all_hole()) continue;
      std::vector<DataProblem> problems;
      CFS_RETURN_IF_ERROR(WalkTree(
          NodeEntry{.name = root.name, .length = root.length, .hole_bytes = root.hole_bytes},
          root.height, 0, &problems));
      if (problems.empty()) continue;
      ReportDataProblems(ino, problems);
    }
    // Chunks no tree names: garbage until gc (never an error).
    for (const auto& [name, chunk] : scan_.chunks) {
      if (referenced_.contains(name)) {
        report_->referenced_chunk_bytes += chunk.length;
        continue;
      }
      unreferenced_.push_back(name);
      report_->unreferenced_bytes += chunk.stored_bytes;
    }
    report_->referenced_chunks = report_->chunks - unreferenced_.size();
    report_->unreferenced_chunks = unreferenced_.size();
    if (!unreferenced_.empty()) {
      Add(engine::CheckSeverity::kNote, std::nullopt, "", "",
          std::to_string(unreferenced_.size()) + " chunks (" +
              std::to_string(report_->unreferenced_bytes) +
              " stored bytes) no file refers to: cascadefs gc reclaims them");
    }
    return Status::OK();
  }

  // One file's data problems: errors for new damage (repair records each missing or damaged
  // chunk as lost), one warning for what earlier repairs recorded lost.
  void ReportDataProblems(std::uint64_t ino, const std::vector<DataProblem>& problems) {
    const std::string path = PathOf(ino);
    std::vector<const DataProblem*> known;
    std::vector<const DataProblem*> fresh;
    for (const DataProblem& problem : problems) (problem.known ? known : fresh).push_back(&problem);
    if (!known.empty()) {
      ++report_->files_with_lost_data;
      std::string text = "file data lost: " + known.front()->text;
      if (known.size() > 1) text += " and " + std::to_string(known.size() - 1) + " more ranges";
      AddInode(ino,
               text +
                   " recorded lost by fsck --repair (reads of it fail with EIO; storing the "
                   "same bytes again heals it)",
               engine::CheckSeverity::kWarning);
    }
    if (fresh.empty()) return;
    ++report_->files_damaged;
    const std::size_t shown = std::min<std::size_t>(fresh.size(), kProblemsPerFileMax);
    std::vector<std::size_t> findings;
    for (std::size_t i = 0; i < shown; ++i) {
      const std::size_t f =
          Add(engine::CheckSeverity::kError, ino, path, "",
              "file data damaged: " + fresh[i]->text +
                  " (reads of it fail with EIO; repair records the chunk as lost)");
      lost_findings_[fresh[i]->chunk].push_back(f);
    }
    if (fresh.size() > shown) {
      const std::size_t f =
          Add(engine::CheckSeverity::kError, ino, path, "",
              "file data damaged: " + std::to_string(fresh.size() - shown) + " more problems");
      for (std::size_t i = shown; i < fresh.size(); ++i) {
        lost_findings_[fresh[i]->chunk].push_back(f);
      }
    }
  }

  // Walks the subtree of `entry` at `level` covering file bytes from `offset`, appending what
  // is wrong. An error Status only when the store cannot be read.
  Status WalkTree(const NodeEntry& entry, int level, std::uint64_t offset,
                  std::vector<DataProblem>* problems) {
    if (entry.hole()) return Status::OK();
    const std::string at =
        "bytes " + std::to_string(offset) + ".." + std::to_string(offset + entry.length);
    const std::string what =
        std::string(level == 0 ? "chunk " : "recipe node ") + entry.name.ToHex() + " (" + at + ")";
    referenced_.insert(entry.name);
    auto chunk = scan_.chunks.find(entry.name);
    if (chunk == scan_.chunks.end()) {
      if (scan_.lost_chunks.contains(entry.name)) {
        // Recorded lost by an earlier repair: gc, too, walks past it.
        problems->push_back({.text = what, .chunk = entry.name, .known = true});
        return Status::OK();
      }
      problems->push_back({.text = what + " is missing", .chunk = entry.name});
      newly_lost_.try_emplace(entry.name, LostCause::kMissing);
      recipes_complete_ = recipes_complete_ && level == 0;
      return Status::OK();
    }
    if (chunk->second.damaged) {
      problems->push_back({.text = what + " is damaged", .chunk = entry.name});
      recipes_complete_ = recipes_complete_ && level == 0;
      return Status::OK();
    }
    if (level == 0) {
      if (chunk->second.length != entry.length) {
        // The bytes hash to their name, so the recipe's length is what is wrong: a recipe
        // node's entry cannot be rewritten without changing every node above it. Reported.
        problems->push_back(
            {.text = what + " holds " + std::to_string(chunk->second.length) + " bytes",
             .chunk = entry.name});
      }
      return Status::OK();
    }
    if (verified_nodes_.contains(entry.name)) {
      // Verified through another file; its children are marked referenced already.
      return Status::OK();
    }
    std::string value;
    Status got = db_->Get(engine::ReadOptions(), ChunkKey(entry.name), &value);
    if (!got.ok()) return got.WithContext("reading recipe node " + entry.name.ToHex());
    Result<std::string> bytes = DecodeChunkValue(entry.name, value);
    Result<DecodedNode> node =
        bytes.ok() ? DecodeNode(bytes.value()) : Result<DecodedNode>(bytes.status());
    if (!node.ok()) {
      problems->push_back(
          {.text = what + " does not decode: " + std::string(node.status().message()),
           .chunk = entry.name});
      recipes_complete_ = false;
      return Status::OK();
    }
    if (node.value().level != level || node.value().total_length != entry.length ||
        node.value().total_hole_bytes != entry.hole_bytes) {
      problems->push_back(
          {.text = what + " covers other bytes than its parent says", .chunk = entry.name});
      recipes_complete_ = false;
      return Status::OK();
    }
    const std::size_t before = problems->size();
    std::uint64_t child_offset = offset;
    for (const NodeEntry& child : node.value().entries) {
      CFS_RETURN_IF_ERROR(WalkTree(child, level - 1, child_offset, problems));
      child_offset += child.length;
    }
    if (problems->size() == before) verified_nodes_.insert(entry.name);
    return Status::OK();
  }

  // Damaged chunks, chunks newly found missing, and the lost-chunk records ("l" keys). Repair
  // deletes a damaged chunk's bytes (they can never be served) and records every missing or
  // damaged chunk a file names as lost, so the files' damage is reported once and a later
  // write of the same bytes heals them. A record whose chunk is stored again, or that no file
  // names any more, is removed.
  void CheckLostChunks() {
    for (const auto& [name, chunk] : scan_.chunks) {
      if (!chunk.damaged) continue;
      const bool named = referenced_.contains(name);
      const std::size_t f = Add(engine::CheckSeverity::kError, std::nullopt, "", name.ToHex(),
                                "chunk damaged: " + chunk.problem +
                                    (named ? ": repair deletes it and records it as lost"
                                           : ": no file names it; repair deletes it"));
      Fix fix{.ops = {{ChunkKey(name), std::nullopt}}};
      if (named) {
        fix.ops.emplace_back(LostChunkKey(name), LostRecord(LostCause::kDamaged));
        fix.also_repairs = lost_findings_[name];
      }
      AddFix(f, std::move(fix));
    }
    for (const auto& [name, cause] : newly_lost_) {
      Fix fix{.ops = {{LostChunkKey(name), LostRecord(cause)}}};
      fix.also_repairs = lost_findings_[name];
      AddFix(kNoFinding, std::move(fix));
    }
    for (const auto& [name, lost] : scan_.lost_chunks) {
      auto chunk = scan_.chunks.find(name);
      const bool stored = chunk != scan_.chunks.end() && !chunk->second.damaged;
      if (!lost.decoded) {
        const std::size_t f =
            Add(engine::CheckSeverity::kError, std::nullopt, "", name.ToHex(),
                "lost chunk record does not decode (" + lost.problem + "): repair rewrites it");
        AddFix(f, Fix{.ops = {{LostChunkKey(name), LostRecord(LostCause::kMissing)}}});
        continue;
      }
      if (stored || !referenced_.contains(name)) {
        const std::size_t f =
            Add(engine::CheckSeverity::kNote, std::nullopt, "", name.ToHex(),
                stored ? "a chunk recorded lost is stored again (the files naming it read "
                         "again): repair removes the record"
                       : "a chunk recorded lost is named by no file: repair removes the record");
        AddFix(f, Fix{.ops = {{LostChunkKey(name), std::nullopt}}});
      }
    }
  }

  static std::string LostRecord(LostCause cause) {
    return LostChunkRecord{.cause = cause, .recorded_ns = NowNs()}.Encode();
  }

  Status ApplyFixes() {
    if (options_.progress) {
      options_.progress({.phase = "repair", .done = 0, .total = fixes_.size()});
    }
    if (superblock_finding_ != kNoFinding || superblock_dirty_) {
      CFS_RETURN_IF_ERROR(db_->Put(engine::WriteOptions(), SuperblockKey(),
                                   Superblock{.next_ino = next_ino_}.Encode()));
      if (superblock_finding_ != kNoFinding) report_->findings[superblock_finding_].repaired = true;
    }
    for (const Fix& fix : fixes_) {
      engine::WriteBatch batch;
      for (const std::string& prefix : fix.delete_prefixes) {
        CFS_RETURN_IF_ERROR(DeleteWithPrefix(db_, prefix, &batch));
      }
      for (const auto& [key, value] : fix.ops) {
        if (value) {
          batch.Put(key, *value);
        } else {
          batch.Delete(key);
        }
      }
      CFS_RETURN_IF_ERROR(db_->Write(engine::WriteOptions(), batch));
      if (fix.finding != kNoFinding) report_->findings[fix.finding].repaired = true;
      for (std::size_t f : fix.also_repairs) report_->findings[f].repaired = true;
    }
    // Durable before fsck reports success: the memtable goes to an SST.
    return db_->Flush();
  }

  Status DeleteUnreferencedChunks() {
    // gc's own pass (one path deletes chunks): it marks again from the repaired namespace.
    GcOptions gc;
    gc.progress = options_.progress;
    Result<GcReport> collected = CollectGarbage(db_, gc);
    if (!collected.ok()) return collected.status().WithContext("deleting unreferenced chunks");
    report_->garbage_chunks_deleted = collected.value().deleted_chunks;
    return Status::OK();
  }

  engine::DB* const db_;
  const NamespaceCheckOptions& options_;
  NamespaceCheckReport* const report_;
  StoreScan scan_;
  std::vector<Entry> entries_;
  std::set<std::size_t> repair_added_;  // indexes of entries the repair adds
  std::map<std::uint64_t, std::size_t> first_entry_;
  std::map<std::uint64_t, std::string> paths_;
  std::map<std::uint64_t, std::uint64_t> next_cookie_;  // directories repair adds entries to
  struct Created {
    std::vector<std::pair<std::string, std::optional<std::string>>> ops;  // its entry, if any
    std::size_t finding = kNoFinding;
  };
  std::map<std::uint64_t, Created> created_;  // inodes repair creates (the root, lost+found)
  std::set<std::uint64_t> deleting_;          // inodes repair deletes (leaked)
  std::size_t superblock_finding_ = kNoFinding;
  bool superblock_dirty_ = false;  // repair created an inode: next_ino moved
  std::vector<Fix> fixes_;
  std::uint64_t max_ino_ = kRootIno;
  std::uint64_t next_ino_ = kRootIno + 1;
  std::unordered_set<ChunkName, ChunkNameHash> referenced_;
  std::unordered_set<ChunkName, ChunkNameHash> verified_nodes_;
  std::vector<ChunkName> unreferenced_;
  // Chunks files name that are missing and not recorded lost: repair records them.
  std::map<ChunkName, LostCause> newly_lost_;
  // The findings each missing or damaged chunk causes in files (repaired with its record).
  std::map<ChunkName, std::vector<std::size_t>> lost_findings_;
  // False once a node could not be read: the chunks below it are unknown, so nothing may be
  // called unreferenced (repair then deletes no chunk).
  bool recipes_complete_ = true;
};

}  // namespace

Result<NamespaceCheckReport> CheckNamespace(engine::DB* db, const NamespaceCheckOptions& options) {
  NamespaceCheckReport report;
  Checker checker(db, options, &report);
  CFS_RETURN_IF_ERROR(checker.Run());
  return report;
}

}  // namespace cascadefs::fusefs
