// filesystem.cc: the namespace and file data over the engine. Contract and locking in
// filesystem.h; formats in docs/formats/namespace.md.
#include "fs/filesystem.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "engine/assert.h"
#include "fusefs/cached_chunk_store.h"

namespace cascadefs::fusefs {
namespace {

// POSIX ACLs are not supported (like ext4 mounted with noacl): storing
// system.posix_acl_access as a plain xattr would leave the mode bits and the ACL disagreeing
// (tools such as `cp -a` set the ACL instead of calling chmod when the filesystem takes it).
// EOPNOTSUPP makes them fall back to the mode bits.
bool IsPosixAclName(std::string_view name) { return name.starts_with("system.posix_acl_"); }

std::int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

// How often the store's free space is looked at (statvfs), in nanoseconds.
constexpr std::int64_t kSpaceCheckIntervalNs = 100'000'000;
// Directory depth IsAncestor walks before it gives up (ELOOP): a cycle would be damage.
constexpr int kDirectoryDepthMax = 65536;
// Reads of a file whose root was replaced (and its old chunks collected) while the read ran.
constexpr int kReadRetriesMax = 4;

}  // namespace

struct Filesystem::Inode {
  explicit Inode(std::uint64_t number) : ino(number) {}
  const std::uint64_t ino;
  // Serializes the data changes of this file (Write, flushes, truncates, fallocate).
  AsyncMutex data_mutex;
  // The rest is GUARDED_BY(state_mutex_). `dirty` changes only while data_mutex is held too,
  // so its holder may read it without state_mutex_.
  InodeRecord rec;  // newest state; rec.size includes dirty bytes
  DirtyBuffer dirty;
  std::uint64_t nlookup = 0;
  std::uint64_t pins = 0;
  std::uint32_t open_count = 0;
  bool deleted = false;  // its record is gone from the engine (last link and open gone)
};

// A pinned inode: stays in inodes_ while held.
class Filesystem::InodeRef {
 public:
  InodeRef() = default;
  InodeRef(const InodeRef&) = delete;
  InodeRef& operator=(const InodeRef&) = delete;
  InodeRef(InodeRef&& other) noexcept : fs_(other.fs_), inode_(std::move(other.inode_)) {}
  InodeRef& operator=(InodeRef&& other) noexcept {
    if (this != &other) {
      Reset();
      fs_ = other.fs_;
      inode_ = std::move(other.inode_);
    }
    return *this;
  }
  ~InodeRef() { Reset(); }
  void Reset() {
    if (inode_ != nullptr) fs_->Unpin(inode_.get());
    inode_.reset();
  }
  Inode* get() const { return inode_.get(); }
  Inode* operator->() const { return inode_.get(); }
  explicit operator bool() const { return inode_ != nullptr; }

 private:
  friend class Filesystem;
  Filesystem* fs_ = nullptr;
  std::shared_ptr<Inode> inode_;
};

namespace {

// The engine's chunk store behind the gc fence: a Put records its name (and waits while gc
// deletes it) before it looks for the chunk (gc_fence.h, point 2).
class FencedChunkStore final : public ChunkStore {
 public:
  FencedChunkStore(std::unique_ptr<ChunkStore> inner, ChunkGcFence* fence)
      : inner_(std::move(inner)), fence_(fence) {}

  io::Task<Result<std::string>> Get(const ChunkName& name) override { return inner_->Get(name); }
  io::Task<std::vector<Result<std::string>>> GetMany(std::vector<ChunkName> names) override {
    return inner_->GetMany(std::move(names));
  }
  io::Task<Result<PutOutcome>> Put(const ChunkName& name, std::string_view data) override {
    co_await fence_->Touch(name);
    Result<PutOutcome> outcome = co_await inner_->Put(name, data);
    if (outcome.ok() && outcome.value().added) {
      stats_.chunks_added.fetch_add(1, std::memory_order_relaxed);
      stats_.logical_bytes_added.fetch_add(data.size(), std::memory_order_relaxed);
      stats_.stored_bytes_added.fetch_add(outcome.value().stored_bytes, std::memory_order_relaxed);
    } else if (outcome.ok()) {
      stats_.chunks_deduplicated.fetch_add(1, std::memory_order_relaxed);
    }
    co_return outcome;
  }
  io::Task<Result<bool>> Contains(const ChunkName& name) override { return inner_->Contains(name); }

 private:
  std::unique_ptr<ChunkStore> inner_;
  ChunkGcFence* const fence_;
};

// The engine's chunks, behind the chunk cache when there is one or reads are traced (`*cached`
// then points at it, for its stats).
std::unique_ptr<ChunkStore> EngineChunks(engine::DB* db, cache::ChunkCache* chunk_cache,
                                         const ChunkReadTrace& trace, CachedChunkStore** cached) {
  if (chunk_cache == nullptr && !trace) return NewEngineChunkStore(db);
  auto store = std::make_unique<CachedChunkStore>(NewEngineChunkStore(db), chunk_cache, trace);
  *cached = store.get();
  return store;
}

}  // namespace

Filesystem::Filesystem(engine::DB* db, FsOptions options)
    : db_(db),
      options_(std::move(options)),
      chunk_store_(std::make_unique<FencedChunkStore>(
          EngineChunks(db, options_.chunk_cache, options_.chunk_read_trace, &cached_chunks_),
          &gc_fence_)),
      tree_(std::make_unique<RecipeTree>(chunk_store_.get(), ChunkerOptions{})) {}

Filesystem::~Filesystem() = default;

io::Task<Result<std::unique_ptr<Filesystem>>> Filesystem::Open(engine::DB* db, FsOptions options) {
  std::unique_ptr<Filesystem> fs(new Filesystem(db, std::move(options)));
  Status status = co_await fs->Init();
  if (!status.ok()) co_return status;
  co_return std::move(fs);
}

io::Task<Status> Filesystem::Init() {
  std::string value;
  Status status = co_await db_->GetAsync({}, SuperblockKey(), &value);
  if (status.IsNotFound()) {
    // A new store: the superblock and the root directory, durably, in one batch.
    InodeRecord root;
    root.mode = S_IFDIR | 0755;
    root.uid = static_cast<std::uint32_t>(getuid());
    root.gid = static_cast<std::uint32_t>(getgid());
    root.nlink = 2;
    root.atime_ns = root.mtime_ns = root.ctime_ns = root.btime_ns = NowNs();
    root.parent = kRootIno;
    root.next_cookie = kFirstCookie;
    Superblock sb;
    engine::WriteBatch batch;
    batch.Put(SuperblockKey(), sb.Encode());
    batch.Put(InodeKey(kRootIno), root.Encode());
    engine::WriteOptions sync;
    sync.sync = true;
    CFS_CO_RETURN_IF_ERROR(co_await db_->WriteAsync(sync, batch));
    next_ino_ = sb.next_ino;
  } else if (!status.ok()) {
    co_return status;
  } else {
    Result<Superblock> sb = Superblock::Decode(value);
    if (!sb.ok()) co_return sb.status();
    next_ino_ = sb.value().next_ino;
  }
  // Orphans: files unlinked while open when the daemon stopped. Nothing can open them now.
  std::vector<std::uint64_t> orphans;
  {
    std::unique_ptr<engine::Iterator> it = db_->NewIterator({});
    co_await it->SeekAsync(kOrphanPrefix);
    while (it->Valid() && StartsWith(it->key(), kOrphanPrefix)) {
      if (it->key().size() == 9) orphans.push_back(OrphanKeyIno(it->key()));
      co_await it->NextAsync();
    }
    CFS_CO_RETURN_IF_ERROR(it->status());
  }
  for (std::uint64_t ino : orphans) {
    engine::WriteBatch batch;
    const int err = co_await AddDeleteInode(ino, &batch);
    if (err != 0) co_return Status::IOError("removing orphan inode " + std::to_string(ino));
    CFS_CO_RETURN_IF_ERROR(co_await db_->WriteAsync({}, batch));
    Log("removed orphan inode " + std::to_string(ino) + " (unlinked while open at a stop)");
  }
  // The root is never forgotten by the kernel: it holds one lookup for good.
  InodeRef root;
  const int err = co_await Pin(kRootIno, &root);
  if (err != 0) co_return Status::Corruption("the root directory's inode is missing");
  {
    std::lock_guard lock(state_mutex_);
    root->nlookup = 1;
  }
  co_return Status::OK();
}

void Filesystem::Log(std::string_view line) const {
  if (options_.log) options_.log(line);
}

int Filesystem::EngineErrno(const Status& status, std::string_view what) {
  if (status.IsNoSpace()) return ENOSPC;
  Log(std::string(what) + ": " + std::string(status.message()));
  return EIO;
}

io::Task<int> Filesystem::Commit(const engine::WriteBatch& batch, std::string_view what) {
  Status status = co_await db_->WriteAsync({}, batch);
  if (!status.ok()) co_return EngineErrno(status, what);
  if (options_.on_change) options_.on_change();
  co_return 0;
}

io::Task<int> Filesystem::Pin(std::uint64_t ino, InodeRef* out) {
  out->Reset();
  out->fs_ = this;
  for (int attempt = 0;; ++attempt) {
    std::uint64_t epoch = 0;
    {
      std::lock_guard lock(state_mutex_);
      auto it = inodes_.find(ino);
      if (it != inodes_.end()) {
        ++it->second->pins;
        out->inode_ = it->second;
        co_return 0;
      }
      epoch = record_epoch_;
    }
    // After a few lost races with writers, load under the namespace lock: no record write can
    // happen meanwhile.
    const bool under_namespace_lock = attempt >= 3;
    if (under_namespace_lock) co_await namespace_mutex_.Lock();
    std::string value;
    Status status = co_await db_->GetAsync({}, InodeKey(ino), &value);
    if (under_namespace_lock) namespace_mutex_.Unlock();
    Result<InodeRecord> rec = InodeRecord();
    if (status.ok()) rec = InodeRecord::Decode(value);
    std::lock_guard lock(state_mutex_);
    auto it = inodes_.find(ino);
    if (it != inodes_.end()) {
      ++it->second->pins;
      out->inode_ = it->second;
      co_return 0;
    }
    if (!under_namespace_lock && epoch != record_epoch_) continue;
    if (status.IsNotFound()) co_return ENOENT;
    if (!status.ok()) co_return EngineErrno(status, "reading inode " + std::to_string(ino));
    if (!rec.ok()) {
      Log("inode " + std::to_string(ino) + ": " + std::string(rec.status().message()));
      co_return EIO;
    }
    auto inode = std::make_shared<Inode>(ino);
    inode->rec = std::move(rec.value());
    inode->pins = 1;
    inodes_.emplace(ino, inode);
    out->inode_ = std::move(inode);
    co_return 0;
  }
}

void Filesystem::Unpin(Inode* inode) {
  std::lock_guard lock(state_mutex_);
  CFS_ASSERT(inode->pins > 0);
  if (--inode->pins == 0 && inode->nlookup == 0 && inode->open_count == 0 && inode->dirty.empty()) {
    inodes_.erase(inode->ino);
  }
}

void Filesystem::Forget(std::uint64_t ino, std::uint64_t count) {
  std::lock_guard lock(state_mutex_);
  auto it = inodes_.find(ino);
  if (it == inodes_.end()) return;
  Inode& inode = *it->second;
  inode.nlookup -= std::min(count, inode.nlookup);
  if (inode.nlookup == 0 && inode.pins == 0 && inode.open_count == 0 && inode.dirty.empty()) {
    inodes_.erase(it);
  }
}

io::Task<int> Filesystem::GetDirent(std::uint64_t parent, std::string_view name, DirentValue* out) {
  std::string value;
  Status status = co_await db_->GetAsync({}, DirentKey(parent, name), &value);
  if (status.IsNotFound()) co_return ENOENT;
  if (!status.ok()) co_return EngineErrno(status, "reading a directory entry");
  Result<DirentValue> dirent = DirentValue::Decode(value);
  if (!dirent.ok()) {
    Log("directory " + std::to_string(parent) + " entry '" + std::string(name) +
        "': " + std::string(dirent.status().message()));
    co_return EIO;
  }
  *out = dirent.value();
  co_return 0;
}

io::Task<int> Filesystem::Lookup(std::uint64_t parent, std::string_view name, EntryOut* out) {
  if (name.size() > kNameBytesMax) co_return ENAMETOOLONG;
  DirentValue dirent;
  int err = co_await GetDirent(parent, name, &dirent);
  if (err != 0) co_return err;
  InodeRef inode;
  err = co_await Pin(dirent.ino, &inode);
  if (err != 0) co_return err;
  std::lock_guard lock(state_mutex_);
  ++inode->nlookup;
  out->ino = dirent.ino;
  out->attr = inode->rec;
  co_return 0;
}

io::Task<int> Filesystem::GetAttr(std::uint64_t ino, InodeRecord* out) {
  InodeRef inode;
  const int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  std::lock_guard lock(state_mutex_);
  *out = inode->rec;
  co_return 0;
}

io::Task<int> Filesystem::SetAttr(std::uint64_t ino, const SetAttrIn& in, InodeRecord* out) {
  InodeRef inode;
  int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  if ((in.valid & SetAttrIn::kSize) != 0) {
    bool is_dir = false;
    bool is_reg = false;
    {
      std::lock_guard lock(state_mutex_);
      is_dir = S_ISDIR(inode->rec.mode);
      is_reg = S_ISREG(inode->rec.mode);
    }
    if (is_dir) co_return EISDIR;
    if (!is_reg) co_return EINVAL;
    co_await inode->data_mutex.Lock();
    AsyncMutexUnlocker unlock(inode->data_mutex);
    err = co_await TruncateLocked(inode.get(), in.size);
    if (err != 0) co_return err;
  }
  co_await namespace_mutex_.Lock();
  AsyncMutexUnlocker unlock(namespace_mutex_);
  engine::WriteBatch batch;
  {
    std::lock_guard lock(state_mutex_);
    InodeRecord& rec = inode->rec;
    const std::int64_t now = NowNs();
    if ((in.valid & SetAttrIn::kMode) != 0) rec.mode = (rec.mode & S_IFMT) | (in.mode & 07777);
    if ((in.valid & SetAttrIn::kUid) != 0) rec.uid = in.uid;
    if ((in.valid & SetAttrIn::kGid) != 0) rec.gid = in.gid;
    if ((in.valid & SetAttrIn::kAtime) != 0) rec.atime_ns = in.atime_ns;
    if ((in.valid & SetAttrIn::kAtimeNow) != 0) rec.atime_ns = now;
    if ((in.valid & SetAttrIn::kMtime) != 0) rec.mtime_ns = in.mtime_ns;
    if ((in.valid & SetAttrIn::kMtimeNow) != 0) rec.mtime_ns = now;
    rec.ctime_ns = (in.valid & SetAttrIn::kCtime) != 0 ? in.ctime_ns : now;
    *out = rec;
    if (!inode->deleted) batch.Put(InodeKey(ino), rec.Encode());
    ++record_epoch_;
  }
  if (batch.Count() > 0) err = co_await Commit(batch, "setattr");
  co_return err;
}

io::Task<int> Filesystem::ReadLink(std::uint64_t ino, std::string* out) {
  InodeRef inode;
  const int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  std::lock_guard lock(state_mutex_);
  if (!S_ISLNK(inode->rec.mode)) co_return EINVAL;
  *out = inode->rec.symlink_target;
  co_return 0;
}

io::Task<int> Filesystem::MakeNode(std::uint64_t parent, std::string_view name, std::uint32_t mode,
                                   std::uint32_t rdev, const Caller& caller, EntryOut* out) {
  InodeRecord rec;
  rec.mode = mode;
  rec.rdev = S_ISCHR(mode) || S_ISBLK(mode) ? rdev : 0;
  rec.uid = caller.uid;
  rec.gid = caller.gid;
  rec.nlink = S_ISDIR(mode) ? 2 : 1;
  if (S_ISDIR(mode)) rec.next_cookie = kFirstCookie;
  co_return co_await CreateNode(parent, name, std::move(rec), out);
}

io::Task<int> Filesystem::Symlink(std::uint64_t parent, std::string_view name,
                                  std::string_view target, const Caller& caller, EntryOut* out) {
  if (target.size() > kSymlinkBytesMax) co_return ENAMETOOLONG;
  if (target.empty()) co_return ENOENT;
  InodeRecord rec;
  rec.mode = S_IFLNK | 0777;
  rec.uid = caller.uid;
  rec.gid = caller.gid;
  rec.nlink = 1;
  rec.symlink_target.assign(target);
  rec.size = target.size();
  co_return co_await CreateNode(parent, name, std::move(rec), out);
}

io::Task<int> Filesystem::CreateNode(std::uint64_t parent, std::string_view name, InodeRecord rec,
                                     EntryOut* out) {
  if (name.size() > kNameBytesMax) co_return ENAMETOOLONG;
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos) {
    co_return EINVAL;
  }
  co_await namespace_mutex_.Lock();
  AsyncMutexUnlocker unlock(namespace_mutex_);
  InodeRef dir;
  int err = co_await Pin(parent, &dir);
  if (err != 0) co_return err;
  DirentValue existing;
  err = co_await GetDirent(parent, name, &existing);
  if (err == 0) co_return EEXIST;
  if (err != ENOENT) co_return err;
  if (S_ISREG(rec.mode) || S_ISDIR(rec.mode) || S_ISLNK(rec.mode)) {
    if (SpaceLow()) co_return ENOSPC;
  }
  const std::uint64_t ino = next_ino_;
  engine::WriteBatch batch;
  DirentValue dirent;
  {
    std::lock_guard lock(state_mutex_);
    InodeRecord& d = dir->rec;
    if (!S_ISDIR(d.mode)) co_return ENOTDIR;
    if (d.nlink == 0) co_return ENOENT;  // a removed directory still open somewhere
    const std::int64_t now = NowNs();
    rec.atime_ns = rec.mtime_ns = rec.ctime_ns = rec.btime_ns = now;
    if ((d.mode & S_ISGID) != 0) {
      rec.gid = d.gid;
      if (S_ISDIR(rec.mode)) rec.mode |= S_ISGID;
    }
    if (S_ISDIR(rec.mode)) {
      rec.parent = parent;
      ++d.nlink;
    }
    dirent.ino = ino;
    dirent.cookie = d.next_cookie++;
    dirent.mode = rec.mode & S_IFMT;
    ++d.entry_count;
    d.mtime_ns = d.ctime_ns = now;
    batch.Put(InodeKey(ino), rec.Encode());
    batch.Put(DirentKey(parent, name), dirent.Encode());
    batch.Put(ListingKey(parent, dirent.cookie),
              ListingValue{ino, dirent.mode, std::string(name)}.Encode());
    batch.Put(InodeKey(parent), d.Encode());
    ++record_epoch_;
  }
  Superblock sb;
  sb.next_ino = ino + 1;
  batch.Put(SuperblockKey(), sb.Encode());
  next_ino_ = ino + 1;
  err = co_await Commit(batch, "creating '" + std::string(name) + "'");
  if (err != 0) co_return err;
  std::lock_guard lock(state_mutex_);
  auto [it, inserted] = inodes_.try_emplace(ino, nullptr);
  if (inserted) {
    it->second = std::make_shared<Inode>(ino);
    it->second->rec = rec;
  }
  ++it->second->nlookup;
  out->ino = ino;
  out->attr = it->second->rec;
  co_return 0;
}

io::Task<int> Filesystem::Link(std::uint64_t ino, std::uint64_t new_parent,
                               std::string_view new_name, EntryOut* out) {
  if (new_name.size() > kNameBytesMax) co_return ENAMETOOLONG;
  co_await namespace_mutex_.Lock();
  AsyncMutexUnlocker unlock(namespace_mutex_);
  InodeRef node;
  int err = co_await Pin(ino, &node);
  if (err != 0) co_return err;
  InodeRef dir;
  err = co_await Pin(new_parent, &dir);
  if (err != 0) co_return err;
  DirentValue existing;
  err = co_await GetDirent(new_parent, new_name, &existing);
  if (err == 0) co_return EEXIST;
  if (err != ENOENT) co_return err;
  engine::WriteBatch batch;
  {
    std::lock_guard lock(state_mutex_);
    InodeRecord& rec = node->rec;
    InodeRecord& d = dir->rec;
    if (S_ISDIR(rec.mode)) co_return EPERM;
    if (!S_ISDIR(d.mode)) co_return ENOTDIR;
    if (d.nlink == 0) co_return ENOENT;
    if (rec.nlink == 0) co_return ENOENT;  // linking an unlinked open file (linkat AT_EMPTY_PATH)
    if (rec.nlink >= 65000) co_return EMLINK;
    const std::int64_t now = NowNs();
    ++rec.nlink;
    rec.ctime_ns = now;
    DirentValue dirent{ino, d.next_cookie++, rec.mode & S_IFMT};
    ++d.entry_count;
    d.mtime_ns = d.ctime_ns = now;
    batch.Put(InodeKey(ino), rec.Encode());
    batch.Put(DirentKey(new_parent, new_name), dirent.Encode());
    batch.Put(ListingKey(new_parent, dirent.cookie),
              ListingValue{ino, dirent.mode, std::string(new_name)}.Encode());
    batch.Put(InodeKey(new_parent), d.Encode());
    ++record_epoch_;
  }
  err = co_await Commit(batch, "linking '" + std::string(new_name) + "'");
  if (err != 0) co_return err;
  std::lock_guard lock(state_mutex_);
  ++node->nlookup;
  out->ino = ino;
  out->attr = node->rec;
  co_return 0;
}

io::Task<int> Filesystem::AddDeleteInode(std::uint64_t ino, engine::WriteBatch* batch) {
  batch->Delete(InodeKey(ino));
  batch->Delete(OrphanKey(ino));
  const std::string prefix = XattrPrefix(ino);
  std::unique_ptr<engine::Iterator> it = db_->NewIterator({});
  co_await it->SeekAsync(prefix);
  while (it->Valid() && StartsWith(it->key(), prefix)) {
    batch->Delete(it->key());
    co_await it->NextAsync();
  }
  if (!it->status().ok()) co_return EngineErrno(it->status(), "listing xattrs to delete");
  co_return 0;
}

io::Task<int> Filesystem::AddUnlinked(Inode* inode, engine::WriteBatch* batch) {
  bool remove = false;
  {
    std::lock_guard lock(state_mutex_);
    if (inode->rec.nlink > 0) {
      batch->Put(InodeKey(inode->ino), inode->rec.Encode());
      co_return 0;
    }
    if (inode->open_count > 0) {
      // Still open: the data stays readable until the last close (Release deletes it). The
      // orphan key lets the next mount delete it if the daemon stops first.
      batch->Put(InodeKey(inode->ino), inode->rec.Encode());
      batch->Put(OrphanKey(inode->ino), "");
      co_return 0;
    }
    remove = true;
  }
  CFS_ASSERT(remove);
  co_return co_await AddDeleteInode(inode->ino, batch);
}

io::Task<int> Filesystem::Unlink(std::uint64_t parent, std::string_view name) {
  if (name.size() > kNameBytesMax) co_return ENAMETOOLONG;
  co_await namespace_mutex_.Lock();
  AsyncMutexUnlocker unlock(namespace_mutex_);
  DirentValue dirent;
  int err = co_await GetDirent(parent, name, &dirent);
  if (err != 0) co_return err;
  if (S_ISDIR(dirent.mode)) co_return EISDIR;
  InodeRef dir;
  err = co_await Pin(parent, &dir);
  if (err != 0) co_return err;
  InodeRef node;
  err = co_await Pin(dirent.ino, &node);
  if (err != 0) co_return err;
  engine::WriteBatch batch;
  batch.Delete(DirentKey(parent, name));
  batch.Delete(ListingKey(parent, dirent.cookie));
  bool gone = false;
  {
    std::lock_guard lock(state_mutex_);
    const std::int64_t now = NowNs();
    InodeRecord& d = dir->rec;
    --d.entry_count;
    d.mtime_ns = d.ctime_ns = now;
    batch.Put(InodeKey(parent), d.Encode());
    if (node->rec.nlink > 0) --node->rec.nlink;
    node->rec.ctime_ns = now;
    gone = node->rec.nlink == 0 && node->open_count == 0;
    ++record_epoch_;
  }
  err = co_await AddUnlinked(node.get(), &batch);
  if (err != 0) co_return err;
  err = co_await Commit(batch, "unlinking '" + std::string(name) + "'");
  if (err != 0) co_return err;
  if (gone) {
    std::lock_guard lock(state_mutex_);
    node->deleted = true;
  }
  co_return 0;
}

io::Task<int> Filesystem::Rmdir(std::uint64_t parent, std::string_view name) {
  if (name.size() > kNameBytesMax) co_return ENAMETOOLONG;
  if (name == ".") co_return EINVAL;
  if (name == "..") co_return ENOTEMPTY;
  co_await namespace_mutex_.Lock();
  AsyncMutexUnlocker unlock(namespace_mutex_);
  DirentValue dirent;
  int err = co_await GetDirent(parent, name, &dirent);
  if (err != 0) co_return err;
  if (!S_ISDIR(dirent.mode)) co_return ENOTDIR;
  InodeRef dir;
  err = co_await Pin(parent, &dir);
  if (err != 0) co_return err;
  InodeRef node;
  err = co_await Pin(dirent.ino, &node);
  if (err != 0) co_return err;
  engine::WriteBatch batch;
  {
    std::lock_guard lock(state_mutex_);
    if (node->rec.entry_count > 0) co_return ENOTEMPTY;
    const std::int64_t now = NowNs();
    InodeRecord& d = dir->rec;
    --d.entry_count;
    --d.nlink;
    d.mtime_ns = d.ctime_ns = now;
    batch.Delete(DirentKey(parent, name));
    batch.Delete(ListingKey(parent, dirent.cookie));
    batch.Put(InodeKey(parent), d.Encode());
    node->rec.nlink = 0;
    node->rec.ctime_ns = now;
    ++record_epoch_;
  }
  err = co_await AddDeleteInode(dirent.ino, &batch);
  if (err != 0) co_return err;
  err = co_await Commit(batch, "removing directory '" + std::string(name) + "'");
  if (err != 0) co_return err;
  std::lock_guard lock(state_mutex_);
  node->deleted = true;
  co_return 0;
}

io::Task<int> Filesystem::IsAncestor(std::uint64_t ancestor, std::uint64_t dir, bool* out) {
  std::uint64_t current = dir;
  for (int depth = 0; depth < kDirectoryDepthMax; ++depth) {
    if (current == ancestor) {
      *out = true;
      co_return 0;
    }
    if (current == kRootIno) {
      *out = false;
      co_return 0;
    }
    InodeRef node;
    const int err = co_await Pin(current, &node);
    if (err != 0) co_return err;
    std::lock_guard lock(state_mutex_);
    current = node->rec.parent;
  }
  Log("directory " + std::to_string(dir) + ": no way up to the root (a cycle?)");
  co_return ELOOP;
}

io::Task<int> Filesystem::Rename(std::uint64_t parent, std::string_view name,
                                 std::uint64_t new_parent, std::string_view new_name,
                                 std::uint32_t flags) {
  if (name.size() > kNameBytesMax || new_name.size() > kNameBytesMax) co_return ENAMETOOLONG;
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0) co_return EINVAL;
  if ((flags & RENAME_NOREPLACE) != 0 && (flags & RENAME_EXCHANGE) != 0) co_return EINVAL;
  const bool exchange = (flags & RENAME_EXCHANGE) != 0;
  co_await namespace_mutex_.Lock();
  AsyncMutexUnlocker unlock(namespace_mutex_);
  DirentValue src;
  int err = co_await GetDirent(parent, name, &src);
  if (err != 0) co_return err;
  DirentValue dst;
  err = co_await GetDirent(new_parent, new_name, &dst);
  const bool dst_exists = err == 0;
  if (err != 0 && err != ENOENT) co_return err;
  if ((flags & RENAME_NOREPLACE) != 0 && dst_exists) co_return EEXIST;
  if (exchange && !dst_exists) co_return ENOENT;
  if (dst_exists && dst.ino == src.ino) co_return 0;  // two names of one file: nothing to do
  const bool src_is_dir = S_ISDIR(src.mode);
  const bool dst_is_dir = dst_exists && S_ISDIR(dst.mode);
  InodeRef old_dir;
  InodeRef new_dir;
  InodeRef src_node;
  InodeRef dst_node;
  err = co_await Pin(parent, &old_dir);
  if (err != 0) co_return err;
  err = co_await Pin(new_parent, &new_dir);
  if (err != 0) co_return err;
  err = co_await Pin(src.ino, &src_node);
  if (err != 0) co_return err;
  if (dst_exists) {
    err = co_await Pin(dst.ino, &dst_node);
    if (err != 0) co_return err;
  }
  if (!exchange && dst_exists) {
    if (src_is_dir && !dst_is_dir) co_return ENOTDIR;
    if (!src_is_dir && dst_is_dir) co_return EISDIR;
    if (dst_is_dir) {
      std::lock_guard lock(state_mutex_);
      if (dst_node->rec.entry_count > 0) co_return ENOTEMPTY;
    }
  }
  if (parent != new_parent) {
    // A directory may not move below itself.
    bool below = false;
    if (src_is_dir) {
      err = co_await IsAncestor(src.ino, new_parent, &below);
      if (err != 0) co_return err;
      if (below) co_return EINVAL;
    }
    if (exchange && dst_is_dir) {
      err = co_await IsAncestor(dst.ino, parent, &below);
      if (err != 0) co_return err;
      if (below) co_return EINVAL;
    }
  }
  engine::WriteBatch batch;
  bool dst_gone = false;
  {
    std::lock_guard lock(state_mutex_);
    const std::int64_t now = NowNs();
    InodeRecord& od = old_dir->rec;
    InodeRecord& nd = new_dir->rec;
    if (!S_ISDIR(nd.mode)) co_return ENOTDIR;
    if (nd.nlink == 0) co_return ENOENT;
    const bool cross = parent != new_parent;
    batch.Delete(ListingKey(parent, src.cookie));
    if (exchange) {
      batch.Delete(ListingKey(new_parent, dst.cookie));
      const DirentValue at_old{dst.ino, od.next_cookie++, dst.mode};
      const DirentValue at_new{src.ino, nd.next_cookie++, src.mode};
      batch.Put(DirentKey(parent, name), at_old.Encode());
      batch.Put(ListingKey(parent, at_old.cookie),
                ListingValue{dst.ino, dst.mode, std::string(name)}.Encode());
      batch.Put(DirentKey(new_parent, new_name), at_new.Encode());
      batch.Put(ListingKey(new_parent, at_new.cookie),
                ListingValue{src.ino, src.mode, std::string(new_name)}.Encode());
      if (cross && src_is_dir) {
        --od.nlink;
        ++nd.nlink;
        src_node->rec.parent = new_parent;
      }
      if (cross && dst_is_dir) {
        --nd.nlink;
        ++od.nlink;
        dst_node->rec.parent = parent;
      }
      dst_node->rec.ctime_ns = now;
      batch.Put(InodeKey(dst.ino), dst_node->rec.Encode());
    } else {
      batch.Delete(DirentKey(parent, name));
      --od.entry_count;
      if (dst_exists) {
        batch.Delete(ListingKey(new_parent, dst.cookie));
        --nd.entry_count;
        InodeRecord& victim = dst_node->rec;
        if (dst_is_dir) {
          victim.nlink = 0;
          --nd.nlink;
        } else if (victim.nlink > 0) {
          --victim.nlink;
        }
        victim.ctime_ns = now;
        dst_gone = victim.nlink == 0 && dst_node->open_count == 0;
      }
      const DirentValue moved{src.ino, nd.next_cookie++, src.mode};
      ++nd.entry_count;
      batch.Put(DirentKey(new_parent, new_name), moved.Encode());
      batch.Put(ListingKey(new_parent, moved.cookie),
                ListingValue{src.ino, src.mode, std::string(new_name)}.Encode());
      if (cross && src_is_dir) {
        --od.nlink;
        ++nd.nlink;
        src_node->rec.parent = new_parent;
      }
    }
    src_node->rec.ctime_ns = now;
    od.mtime_ns = od.ctime_ns = now;
    nd.mtime_ns = nd.ctime_ns = now;
    batch.Put(InodeKey(src.ino), src_node->rec.Encode());
    batch.Put(InodeKey(parent), od.Encode());
    if (cross) batch.Put(InodeKey(new_parent), nd.Encode());
    ++record_epoch_;
  }
  if (!exchange && dst_exists) {
    if (dst_is_dir) {
      err = co_await AddDeleteInode(dst.ino, &batch);
    } else {
      err = co_await AddUnlinked(dst_node.get(), &batch);
    }
    if (err != 0) co_return err;
  }
  err = co_await Commit(batch, "renaming '" + std::string(name) + "'");
  if (err != 0) co_return err;
  if (dst_gone || (dst_exists && dst_is_dir && !exchange)) {
    std::lock_guard lock(state_mutex_);
    dst_node->deleted = true;
  }
  co_return 0;
}

io::Task<int> Filesystem::Open(std::uint64_t ino, bool truncate) {
  InodeRef inode;
  int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  {
    std::lock_guard lock(state_mutex_);
    ++inode->open_count;
  }
  if (truncate) {
    co_await inode->data_mutex.Lock();
    AsyncMutexUnlocker unlock(inode->data_mutex);
    err = co_await TruncateLocked(inode.get(), 0);
    if (err != 0) {
      std::lock_guard lock(state_mutex_);
      --inode->open_count;
      co_return err;
    }
  }
  co_return 0;
}

io::Task<int> Filesystem::Release(std::uint64_t ino) {
  InodeRef inode;
  int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  co_await inode->data_mutex.Lock();
  AsyncMutexUnlocker unlock(inode->data_mutex);
  bool remove = false;
  {
    std::lock_guard lock(state_mutex_);
    CFS_ASSERT(inode->open_count > 0);
    --inode->open_count;
    remove = inode->open_count == 0 && inode->rec.nlink == 0 && !inode->deleted;
  }
  if (!remove) co_return co_await FlushLocked(inode.get());
  // The last close of an unlinked file: its data goes with it, unflushed bytes included.
  {
    std::lock_guard lock(state_mutex_);
    dirty_bytes_ -= inode->dirty.bytes();
    inode->dirty.Clear();
  }
  co_await namespace_mutex_.Lock();
  AsyncMutexUnlocker unlock_namespace(namespace_mutex_);
  engine::WriteBatch batch;
  err = co_await AddDeleteInode(ino, &batch);
  if (err != 0) co_return err;
  err = co_await Commit(batch, "deleting an unlinked file");
  if (err != 0) co_return err;
  std::lock_guard lock(state_mutex_);
  inode->deleted = true;
  co_return 0;
}

io::Task<int> Filesystem::Read(std::uint64_t ino, std::uint64_t offset, std::uint32_t size,
                               std::string* out) {
  InodeRef inode;
  int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  // A read takes the file's root and reads its chunks without a lock, so an overwrite may
  // commit a new root meanwhile and gc may then delete chunks only the old root named. Such a
  // read finds a chunk missing and is read again from the current root, which gc keeps
  // (gc_fence.h); a chunk missing from the current root is damage (EIO).
  for (int attempt = 0;; ++attempt) {
    FileRoot root;
    std::uint64_t length = 0;
    DirtyBuffer dirty_part;  // the dirty bytes of the range, as they were when the read began
    {
      std::lock_guard lock(state_mutex_);
      if (S_ISDIR(inode->rec.mode)) co_return EISDIR;
      const std::uint64_t file_size = inode->rec.size;
      out->clear();
      if (offset >= file_size) co_return 0;
      length = std::min<std::uint64_t>(size, file_size - offset);
      root = inode->rec.root;
      for (const auto& [start, data] : inode->dirty.pieces()) {
        const std::uint64_t end = start + data.size();
        if (end <= offset || start >= offset + length) continue;
        const std::uint64_t from = std::max(offset, start);
        const std::uint64_t to = std::min(offset + length, end);
        dirty_part.Insert(from, std::string_view(data).substr(from - start, to - from));
      }
    }
    if (offset < root.length) {
      const std::uint64_t tree_bytes = std::min(length, root.length - offset);
      Status status = co_await tree_->Read(root, offset, tree_bytes, out);
      if (status.IsNotFound() && attempt < kReadRetriesMax) {
        bool replaced = false;
        {
          std::lock_guard lock(state_mutex_);
          replaced = !(inode->rec.root == root);
        }
        if (replaced) {
          std::lock_guard lock(stats_mutex_);
          ++stats_.read_retries;
          continue;
        }
      }
      if (!status.ok()) {
        co_return EngineErrno(status, "reading inode " + std::to_string(ino));
      }
      if (out->size() != tree_bytes) {
        Log("inode " + std::to_string(ino) + ": its chunks hold fewer bytes than its size");
        co_return EIO;
      }
    }
    out->resize(length, '\0');  // past the chunks: bytes only the dirty buffer holds, or zeros
    if (!dirty_part.empty()) dirty_part.Overlay(offset, length, out->data());
    co_return 0;
  }
}

io::Task<int> Filesystem::Write(std::uint64_t ino, std::uint64_t offset, std::string_view data,
                                WriteTimes times) {
  if (SpaceLow()) co_return ENOSPC;
  InodeRef inode;
  int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  bool over_budget = false;
  {
    co_await inode->data_mutex.Lock();
    AsyncMutexUnlocker unlock(inode->data_mutex);
    bool flush_file = false;
    {
      std::lock_guard lock(state_mutex_);
      if (!S_ISREG(inode->rec.mode)) co_return EINVAL;
      const std::uint64_t before = inode->dirty.bytes();
      inode->dirty.Insert(offset, data);
      dirty_bytes_ += inode->dirty.bytes() - before;
      inode->rec.size = std::max<std::uint64_t>(inode->rec.size, offset + data.size());
      if (times == WriteTimes::kStampNow) inode->rec.mtime_ns = inode->rec.ctime_ns = NowNs();
      flush_file = inode->dirty.bytes() >= options_.dirty_bytes_per_file_max;
      over_budget = dirty_bytes_ > options_.dirty_bytes_max;
    }
    if (flush_file || over_budget) {
      err = co_await FlushLocked(inode.get());
      if (err != 0) co_return err;
    }
  }
  if (over_budget) {
    err = co_await FlushOthersOverBudget(inode.get());
    if (err != 0) co_return err;
  }
  co_return 0;
}

io::Task<int> Filesystem::FlushOthersOverBudget(Inode* self) {
  std::vector<InodeRef> candidates;
  {
    std::lock_guard lock(state_mutex_);
    if (dirty_bytes_ <= options_.dirty_bytes_max) co_return 0;
    for (auto& [ino, inode] : inodes_) {
      if (inode.get() == self || inode->dirty.empty()) continue;
      InodeRef& ref = candidates.emplace_back();
      ref.fs_ = this;
      ref.inode_ = inode;
      ++inode->pins;
    }
  }
  std::sort(candidates.begin(), candidates.end(), [](const InodeRef& a, const InodeRef& b) {
    return a->dirty.bytes() > b->dirty.bytes();  // racy sizes are fine: an ordering hint
  });
  for (InodeRef& ref : candidates) {
    {
      std::lock_guard lock(state_mutex_);
      if (dirty_bytes_ <= options_.dirty_bytes_max) break;
    }
    if (!ref->data_mutex.TryLock()) continue;  // its owner is flushing or writing it already
    AsyncMutexUnlocker unlock(ref->data_mutex);
    const int err = co_await FlushLocked(ref.get());
    if (err != 0) co_return err;
  }
  co_return 0;
}

io::Task<int> Filesystem::FlushLocked(Inode* inode) {
  // From the first chunk written until the root naming them is committed (gc_fence.h).
  const ChunkGcFence::Token gc_token = gc_fence_.Enter();
  FileRoot root;
  std::uint64_t flushed = 0;
  {
    std::lock_guard lock(state_mutex_);
    if (inode->dirty.empty() || inode->deleted) co_return 0;
    root = inode->rec.root;
    flushed = inode->dirty.bytes();
  }
  // data_mutex is held: nobody changes `dirty` meanwhile, so it is read without state_mutex_.
  const auto& pieces = inode->dirty.pieces();
  if (root.length == 0 || root.all_hole()) {
    // Nothing stored yet (an empty file, or one only grown by truncate or fallocate): the
    // first data decides the chunker, as for a new file. The hole keeps its shape either way.
    root.kind = ChunkerKind::kBinary;
    if (pieces.begin()->first == 0) {
      std::string prefix;
      for (const auto& [offset, data] : pieces) {
        if (offset != prefix.size() || prefix.size() >= kDetectPrefixBytes) break;
        prefix.append(data, 0, kDetectPrefixBytes - prefix.size());
      }
      root.kind = DetectChunkerKind(prefix);
    }
  }
  // Each run of abutting pieces is one write of the tree: one splice, chunked as if the run
  // were one buffer.
  TreeWriteStats tree_stats;
  std::vector<std::string_view> run;
  for (auto it = pieces.begin(); it != pieces.end();) {
    const std::uint64_t run_offset = it->first;
    std::uint64_t run_end = run_offset;
    run.clear();
    for (; it != pieces.end() && it->first == run_end; ++it) {
      run.push_back(it->second);
      run_end += it->second.size();
    }
    Result<FileRoot> written = co_await tree_->WriteRun(root, run_offset, run, &tree_stats);
    if (!written.ok()) {
      co_return EngineErrno(written.status(), "writing inode " + std::to_string(inode->ino));
    }
    root = written.value();
  }
  co_await namespace_mutex_.Lock();
  AsyncMutexUnlocker unlock(namespace_mutex_);
  engine::WriteBatch batch;
  {
    std::lock_guard lock(state_mutex_);
    CFS_ASSERT(root.length == inode->rec.size);  // truncates flush first; writes wait for us
    inode->rec.root = root;
    dirty_bytes_ -= inode->dirty.bytes();
    inode->dirty.Clear();
    if (!inode->deleted) batch.Put(InodeKey(inode->ino), inode->rec.Encode());
    ++record_epoch_;
  }
  {
    std::lock_guard lock(stats_mutex_);
    ++stats_.data_flushes;
    stats_.flushed_bytes += flushed;
    stats_.chunks_written += tree_stats.leaves_written + tree_stats.nodes_written;
    stats_.chunks_reused += tree_stats.chunks_reused;
  }
  if (batch.Count() == 0) co_return 0;
  co_return co_await Commit(batch, "committing inode " + std::to_string(inode->ino));
}

io::Task<int> Filesystem::SetFileRoot(std::uint64_t ino, const FileRoot& root,
                                      std::int64_t mtime_ns) {
  InodeRef ref;
  int err = co_await Pin(ino, &ref);
  if (err != 0) co_return err;
  Inode* inode = ref.get();
  co_await inode->data_mutex.Lock();
  AsyncMutexUnlocker unlock_data(inode->data_mutex);
  co_await namespace_mutex_.Lock();
  AsyncMutexUnlocker unlock(namespace_mutex_);
  engine::WriteBatch batch;
  {
    std::lock_guard lock(state_mutex_);
    if (!S_ISREG(inode->rec.mode)) co_return EINVAL;
    if (inode->dirty.bytes() > 0) co_return EBUSY;
    inode->rec.root = root;
    inode->rec.size = root.length;
    inode->rec.mtime_ns = mtime_ns;
    inode->rec.ctime_ns = NowNs();
    if (inode->deleted) co_return 0;
    batch.Put(InodeKey(inode->ino), inode->rec.Encode());
    ++record_epoch_;
  }
  co_return co_await Commit(batch, "installing inode " + std::to_string(inode->ino));
}

io::Task<int> Filesystem::TruncateLocked(Inode* inode, std::uint64_t size) {
  const ChunkGcFence::Token gc_token = gc_fence_.Enter();  // gc_fence.h, point 1
  int err = co_await FlushLocked(inode);
  if (err != 0) co_return err;
  FileRoot root;
  {
    std::lock_guard lock(state_mutex_);
    root = inode->rec.root;
  }
  if (size > root.length && SpaceLow()) co_return ENOSPC;
  if (size != root.length) {
    Result<FileRoot> truncated = co_await tree_->Truncate(root, size);
    if (!truncated.ok()) {
      co_return EngineErrno(truncated.status(), "truncating inode " + std::to_string(inode->ino));
    }
    root = truncated.value();
  }
  co_await namespace_mutex_.Lock();
  AsyncMutexUnlocker unlock(namespace_mutex_);
  engine::WriteBatch batch;
  {
    std::lock_guard lock(state_mutex_);
    const std::int64_t now = NowNs();
    inode->rec.root = root;
    inode->rec.size = size;
    inode->rec.mtime_ns = inode->rec.ctime_ns = now;
    if (!inode->deleted) batch.Put(InodeKey(inode->ino), inode->rec.Encode());
    ++record_epoch_;
  }
  if (batch.Count() == 0) co_return 0;
  co_return co_await Commit(batch, "truncating inode " + std::to_string(inode->ino));
}

io::Task<int> Filesystem::ZeroRangeLocked(Inode* inode, std::uint64_t offset,
                                          std::uint64_t length) {
  const ChunkGcFence::Token gc_token = gc_fence_.Enter();  // gc_fence.h, point 1
  int err = co_await FlushLocked(inode);
  if (err != 0) co_return err;
  FileRoot root;
  {
    std::lock_guard lock(state_mutex_);
    root = inode->rec.root;
  }
  // The range becomes a hole: the part inside the file by a punch, the part past its end by
  // growing it (also a hole). Both cost O(height), whatever the length.
  Result<FileRoot> punched = co_await tree_->PunchHole(root, offset, length);
  if (punched.ok() && offset + length > punched.value().length) {
    punched = co_await tree_->Truncate(punched.value(), offset + length);
  }
  if (!punched.ok()) {
    co_return EngineErrno(punched.status(), "zeroing inode " + std::to_string(inode->ino));
  }
  root = punched.value();
  co_await namespace_mutex_.Lock();
  AsyncMutexUnlocker unlock(namespace_mutex_);
  engine::WriteBatch batch;
  {
    std::lock_guard lock(state_mutex_);
    const std::int64_t now = NowNs();
    inode->rec.root = root;
    inode->rec.size = root.length;
    inode->rec.mtime_ns = inode->rec.ctime_ns = now;
    if (!inode->deleted) batch.Put(InodeKey(inode->ino), inode->rec.Encode());
    ++record_epoch_;
  }
  if (batch.Count() == 0) co_return 0;
  co_return co_await Commit(batch, "zeroing inode " + std::to_string(inode->ino));
}

io::Task<int> Filesystem::Flush(std::uint64_t ino) {
  InodeRef inode;
  int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  co_await inode->data_mutex.Lock();
  AsyncMutexUnlocker unlock(inode->data_mutex);
  co_return co_await FlushLocked(inode.get());
}

io::Task<int> Filesystem::Fsync(std::uint64_t ino) {
  const int err = co_await Flush(ino);
  if (err != 0) co_return err;
  co_return co_await SyncAll();
}

io::Task<int> Filesystem::SyncAll() {
  engine::WriteOptions sync;
  sync.sync = true;
  Status status = co_await db_->WriteAsync(sync, engine::WriteBatch());
  if (!status.ok()) co_return EngineErrno(status, "syncing the store's log");
  std::lock_guard lock(stats_mutex_);
  ++stats_.wal_syncs;
  co_return 0;
}

io::Task<int> Filesystem::Fallocate(std::uint64_t ino, std::uint32_t mode, std::uint64_t offset,
                                    std::uint64_t length) {
  constexpr std::uint32_t kSupported =
      FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
  if ((mode & ~kSupported) != 0) co_return EOPNOTSUPP;
  if ((mode & FALLOC_FL_PUNCH_HOLE) != 0 && (mode & FALLOC_FL_KEEP_SIZE) == 0) co_return EINVAL;
  if (length == 0) co_return EINVAL;
  InodeRef inode;
  int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  co_await inode->data_mutex.Lock();
  AsyncMutexUnlocker unlock(inode->data_mutex);
  std::uint64_t size = 0;
  {
    std::lock_guard lock(state_mutex_);
    if (S_ISDIR(inode->rec.mode)) co_return EISDIR;
    if (!S_ISREG(inode->rec.mode)) co_return ENODEV;
    size = inode->rec.size;
  }
  const std::uint64_t end = offset + length;
  const bool keep_size = (mode & FALLOC_FL_KEEP_SIZE) != 0;
  if ((mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) != 0) {
    // Both make the range a hole (docs/formats/recipe.md, "Holes"): zeros that store nothing.
    const std::uint64_t zero_end = keep_size ? std::min(end, size) : end;
    if (zero_end > offset) {
      err = co_await ZeroRangeLocked(inode.get(), offset, zero_end - offset);
      if (err != 0) co_return err;
    }
    co_return 0;
  }
  // Default mode: the range must read as zeros where it is past the end; cascadefs stores no
  // preallocation, so growing the size (by a hole) is all there is to do.
  if (SpaceLow()) co_return ENOSPC;
  if (!keep_size && end > size) co_return co_await TruncateLocked(inode.get(), end);
  co_return 0;
}

io::Task<int> Filesystem::Lseek(std::uint64_t ino, std::uint64_t offset, int whence,
                                std::uint64_t* out) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) co_return EINVAL;
  InodeRef inode;
  int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  co_await inode->data_mutex.Lock();
  AsyncMutexUnlocker unlock(inode->data_mutex);
  {
    std::lock_guard lock(state_mutex_);
    if (offset >= inode->rec.size) co_return ENXIO;
  }
  // Holes are where the recipe has hole entries. Unflushed writes may fill some: flush first,
  // so that the tree alone answers (a no-op when nothing is dirty).
  err = co_await FlushLocked(inode.get());
  if (err != 0) co_return err;
  FileRoot root;
  {
    std::lock_guard lock(state_mutex_);
    root = inode->rec.root;
  }
  if (offset >= root.length) co_return ENXIO;  // a deleted inode is not flushed
  Result<std::uint64_t> found = whence == SEEK_DATA ? co_await tree_->SeekData(root, offset)
                                                    : co_await tree_->SeekHole(root, offset);
  if (!found.ok()) co_return EngineErrno(found.status(), "seeking in inode " + std::to_string(ino));
  // SEEK_DATA past the last data: no data at or after `offset` (the rest is the hole at EOF).
  if (found.value() >= root.length && whence == SEEK_DATA) co_return ENXIO;
  *out = found.value();
  co_return 0;
}

io::Task<int> Filesystem::ReadDir(std::uint64_t ino, std::uint64_t cookie, bool plus,
                                  const DirEmitter& emit, std::uint64_t* listing_end) {
  InodeRef dir;
  int err = co_await Pin(ino, &dir);
  if (err != 0) co_return err;
  InodeRecord self;
  {
    std::lock_guard lock(state_mutex_);
    if (!S_ISDIR(dir->rec.mode)) co_return ENOTDIR;
    self = dir->rec;
  }
  if (cookie == 0) *listing_end = self.next_cookie;
  const std::uint64_t end = *listing_end == 0 ? ~std::uint64_t{0} : *listing_end;
  if (cookie < 1 && !emit(".", ino, S_IFDIR, 1, plus ? &self : nullptr)) co_return 0;
  if (cookie < 2 && !emit("..", self.parent, S_IFDIR, 2, nullptr)) co_return 0;
  if (self.nlink == 0) co_return 0;  // removed while open: nothing more to list
  const std::string prefix = ListingPrefix(ino);
  std::unique_ptr<engine::Iterator> it = db_->NewIterator({});
  co_await it->SeekAsync(ListingKey(ino, std::max(cookie + 1, kFirstCookie)));
  while (it->Valid() && StartsWith(it->key(), prefix)) {
    if (it->key().size() != prefix.size() + 8) {
      Log("directory " + std::to_string(ino) + ": a listing key of the wrong size");
      co_return EIO;
    }
    const std::uint64_t entry_cookie = DecodeBig64(it->key().substr(prefix.size()));
    if (entry_cookie >= end) break;  // created after this listing began
    Result<ListingValue> entry = ListingValue::Decode(it->value());
    if (!entry.ok()) {
      Log("directory " + std::to_string(ino) + ": " + std::string(entry.status().message()));
      co_return EIO;
    }
    const ListingValue& e = entry.value();
    if (plus) {
      InodeRef child;
      err = co_await Pin(e.ino, &child);
      if (err == ENOENT) {  // removed since the iterator's snapshot: skip it
        co_await it->NextAsync();
        continue;
      }
      if (err != 0) co_return err;
      InodeRecord attr;
      {
        std::lock_guard lock(state_mutex_);
        attr = child->rec;
      }
      if (!emit(e.name, e.ino, e.mode, entry_cookie, &attr)) co_return 0;
      std::lock_guard lock(state_mutex_);
      ++child->nlookup;
    } else if (!emit(e.name, e.ino, e.mode, entry_cookie, nullptr)) {
      co_return 0;
    }
    co_await it->NextAsync();
  }
  if (!it->status().ok()) co_return EngineErrno(it->status(), "listing a directory");
  co_return 0;
}

bool Filesystem::SpaceLow() {
  if (options_.space_reserve_bytes == 0 || options_.store_dir.empty()) return false;
  const std::int64_t now = NowNs();
  std::int64_t checked = space_checked_ns_.load(std::memory_order_relaxed);
  if (now - checked > kSpaceCheckIntervalNs &&
      space_checked_ns_.compare_exchange_strong(checked, now)) {
    struct statvfs vfs {};
    if (statvfs(options_.store_dir.c_str(), &vfs) == 0) {
      const std::uint64_t available = std::uint64_t{vfs.f_bavail} * vfs.f_frsize;
      space_low_.store(available < options_.space_reserve_bytes, std::memory_order_relaxed);
    }
  }
  return space_low_.load(std::memory_order_relaxed);
}

io::Task<int> Filesystem::StatFs(struct statvfs* out) {
  struct statvfs vfs {};
  if (statvfs(options_.store_dir.empty() ? "/" : options_.store_dir.c_str(), &vfs) != 0) {
    co_return errno;
  }
  const std::uint64_t block = 4096;
  const std::uint64_t total = std::uint64_t{vfs.f_blocks} * vfs.f_frsize;
  const std::uint64_t free_bytes = std::uint64_t{vfs.f_bfree} * vfs.f_frsize;
  const std::uint64_t avail = std::uint64_t{vfs.f_bavail} * vfs.f_frsize;
  const std::uint64_t reserve = options_.space_reserve_bytes;
  *out = {};
  out->f_bsize = block;
  out->f_frsize = block;
  out->f_blocks = total / block;
  out->f_bfree = free_bytes / block;
  out->f_bavail = avail > reserve ? (avail - reserve) / block : 0;
  // Inode numbers are 64-bit and never run out; report a large, fixed supply.
  constexpr std::uint64_t kInodeSupply = std::uint64_t{1} << 32;
  std::uint64_t used = 0;
  {
    std::lock_guard lock(state_mutex_);
    used = inodes_.size();
  }
  out->f_files = kInodeSupply;
  out->f_ffree = kInodeSupply - used;
  out->f_favail = out->f_ffree;
  out->f_namemax = kNameBytesMax;
  co_return 0;
}

io::Task<int> Filesystem::SetXattr(std::uint64_t ino, std::string_view name, std::string_view value,
                                   std::uint32_t flags) {
  if (name.empty()) co_return EINVAL;
  if (IsPosixAclName(name)) co_return EOPNOTSUPP;
  if (name.size() > kXattrNameBytesMax) co_return ERANGE;
  if (value.size() > kXattrValueBytesMax) co_return E2BIG;
  co_await namespace_mutex_.Lock();
  AsyncMutexUnlocker unlock(namespace_mutex_);
  InodeRef inode;
  int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  std::string old;
  Status status = co_await db_->GetAsync({}, XattrKey(ino, name), &old);
  if (!status.ok() && !status.IsNotFound()) co_return EngineErrno(status, "reading an xattr");
  const bool exists = status.ok();
  if ((flags & XATTR_CREATE) != 0 && exists) co_return EEXIST;
  if ((flags & XATTR_REPLACE) != 0 && !exists) co_return ENODATA;
  engine::WriteBatch batch;
  batch.Put(XattrKey(ino, name), value);
  {
    std::lock_guard lock(state_mutex_);
    if (inode->deleted) co_return ENOENT;
    if (!exists) ++inode->rec.xattr_count;
    inode->rec.ctime_ns = NowNs();
    batch.Put(InodeKey(ino), inode->rec.Encode());
    ++record_epoch_;
  }
  co_return co_await Commit(batch, "setting an xattr");
}

io::Task<int> Filesystem::GetXattr(std::uint64_t ino, std::string_view name, std::string* value) {
  if (IsPosixAclName(name)) co_return EOPNOTSUPP;
  InodeRef inode;
  const int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  {
    std::lock_guard lock(state_mutex_);
    if (inode->rec.xattr_count == 0) co_return ENODATA;  // most files: no engine read
  }
  if (name.size() > kXattrNameBytesMax) co_return ERANGE;
  Status status = co_await db_->GetAsync({}, XattrKey(ino, name), value);
  if (status.IsNotFound()) co_return ENODATA;
  if (!status.ok()) co_return EngineErrno(status, "reading an xattr");
  co_return 0;
}

io::Task<int> Filesystem::ListXattr(std::uint64_t ino, std::string* names) {
  InodeRef inode;
  const int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  names->clear();
  {
    std::lock_guard lock(state_mutex_);
    if (inode->rec.xattr_count == 0) co_return 0;
  }
  const std::string prefix = XattrPrefix(ino);
  std::unique_ptr<engine::Iterator> it = db_->NewIterator({});
  co_await it->SeekAsync(prefix);
  while (it->Valid() && StartsWith(it->key(), prefix)) {
    names->append(it->key().substr(prefix.size()));
    names->push_back('\0');
    co_await it->NextAsync();
  }
  if (!it->status().ok()) co_return EngineErrno(it->status(), "listing xattrs");
  co_return 0;
}

io::Task<int> Filesystem::RemoveXattr(std::uint64_t ino, std::string_view name) {
  co_await namespace_mutex_.Lock();
  AsyncMutexUnlocker unlock(namespace_mutex_);
  InodeRef inode;
  int err = co_await Pin(ino, &inode);
  if (err != 0) co_return err;
  std::string old;
  Status status = co_await db_->GetAsync({}, XattrKey(ino, name), &old);
  if (status.IsNotFound()) co_return ENODATA;
  if (!status.ok()) co_return EngineErrno(status, "reading an xattr");
  engine::WriteBatch batch;
  batch.Delete(XattrKey(ino, name));
  {
    std::lock_guard lock(state_mutex_);
    if (inode->rec.xattr_count > 0) --inode->rec.xattr_count;
    inode->rec.ctime_ns = NowNs();
    if (!inode->deleted) batch.Put(InodeKey(ino), inode->rec.Encode());
    ++record_epoch_;
  }
  co_return co_await Commit(batch, "removing an xattr");
}

io::Task<Result<GcReport>> Filesystem::CollectGarbage(GcOptions options) {
  co_await gc_mutex_.Lock();
  AsyncMutexUnlocker unlock(gc_mutex_);
  Result<GcReport> report = co_await CollectGarbageAsync(db_, &gc_fence_, std::move(options));
  if (report.ok()) {
    std::lock_guard lock(stats_mutex_);
    ++stats_.gc_cycles;
    stats_.gc_deleted_chunks += report.value().deleted_chunks;
    stats_.gc_deleted_bytes += report.value().deleted_bytes;
  } else {
    Log("gc: " + report.status().ToString());
  }
  co_return report;
}

io::Task<Status> Filesystem::FlushAll() {
  std::vector<InodeRef> dirty;
  {
    std::lock_guard lock(state_mutex_);
    for (auto& [ino, inode] : inodes_) {
      if (inode->dirty.empty()) continue;
      InodeRef& ref = dirty.emplace_back();
      ref.fs_ = this;
      ref.inode_ = inode;
      ++inode->pins;
    }
  }
  int first_error = 0;
  for (InodeRef& ref : dirty) {
    co_await ref->data_mutex.Lock();
    AsyncMutexUnlocker unlock(ref->data_mutex);
    const int err = co_await FlushLocked(ref.get());
    if (err != 0 && first_error == 0) first_error = err;
  }
  const int err = co_await SyncAll();
  if (first_error == 0) first_error = err;
  if (first_error != 0) co_return Status::FromErrno(first_error, "flushing files at unmount");
  co_return Status::OK();
}

FsStats Filesystem::stats() const {
  FsStats out;
  {
    std::lock_guard lock(stats_mutex_);
    out = stats_;
  }
  if (cached_chunks_ != nullptr) {
    const CachedChunkStoreStats& c = cached_chunks_->cache_stats();
    out.cache_hits = c.hits.load(std::memory_order_relaxed);
    out.cache_misses = c.misses.load(std::memory_order_relaxed);
    out.cache_bad_entries = c.bad_entries.load(std::memory_order_relaxed);
    out.cache_promised_reads = c.promised_reads.load(std::memory_order_relaxed);
  }
  std::lock_guard lock(state_mutex_);
  out.dirty_bytes = dirty_bytes_;
  out.inodes_cached = inodes_.size();
  return out;
}

}  // namespace cascadefs::fusefs
