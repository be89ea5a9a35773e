// sync_agent.cc: the synced mount's push and pull loops (sync_agent.h, docs/sync.md).
#include "sync/sync_agent.h"

#include <linux/fs.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <random>
#include <unordered_map>

#include "engine/assert.h"
#include "net/delta.h"

namespace cascadefs::fusefs::sync {
namespace {

using Clock = std::chrono::steady_clock;

// Names the agent gives a file it is installing; never synced, and removed at start.
constexpr std::string_view kTempPrefix = ".cascadefs-sync-";
constexpr std::string_view kIgnoreFileName = ".cascadeignore";
constexpr std::uint32_t kListEntriesMax = 1024;
constexpr std::size_t kCommitEntriesPerMessage = 1024;
constexpr int kCommitRoundsMax = 64;

std::pair<std::string, std::string> SplitParent(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return {"", std::string(path)};
  return {std::string(path.substr(0, slash)), std::string(path.substr(slash + 1))};
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  return std::string(dir) + "/" + std::string(name);
}

bool IsUnder(std::string_view path, std::string_view dir) {
  return path.size() > dir.size() && path.substr(0, dir.size()) == dir && path[dir.size()] == '/';
}

BaseKind KindOfMode(std::uint32_t mode) {
  if (S_ISDIR(mode)) return BaseKind::kDirectory;
  if (S_ISLNK(mode)) return BaseKind::kSymlink;
  return BaseKind::kFile;
}

Status ErrnoStatus(int err, std::string_view what) {
  return Status::FromErrno(err, std::string(what));
}

// The name of the entry `name` in `parent`, without keeping a kernel lookup count.
io::Task<int> LookupQuiet(Filesystem* fs, std::uint64_t parent, std::string_view name,
                          EntryOut* out) {
  const int err = co_await fs->Lookup(parent, name, out);
  if (err == 0) fs->Forget(out->ino, 1);
  co_return err;
}

// The directory at `path` (root for ""), made with `mode` where missing when `create`.
io::Task<int> ResolveDir(Filesystem* fs, std::string_view path, bool create, const Caller& owner,
                         std::uint64_t* ino) {
  std::uint64_t at = kRootIno;
  std::size_t start = 0;
  while (start < path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view name = path.substr(start, end - start);
    start = end + 1;
    EntryOut entry;
    int err = co_await LookupQuiet(fs, at, name, &entry);
    if (err == ENOENT && create) {
      err = co_await fs->MakeNode(at, name, S_IFDIR | 0755, 0, owner, &entry);
      if (err == 0) fs->Forget(entry.ino, 1);
    }
    if (err != 0) co_return err;
    if (!S_ISDIR(entry.attr.mode)) co_return ENOTDIR;
    at = entry.ino;
  }
  *ino = at;
  co_return 0;
}

// A file's tree by level: every chunk's (offset, name), sorted by offset; level 0 holds leaves.
struct TreeMap {
  std::vector<std::vector<std::pair<std::uint64_t, ChunkName>>> levels;
  std::set<ChunkName> names;

  // The chunk at `level` whose bytes start at or before `offset`: the likely old version of a
  // changed chunk there. Null when none.
  ChunkName At(int level, std::uint64_t offset) const {
    if (level < 0 || static_cast<std::size_t>(level) >= levels.size()) return {};
    const auto& row = levels[static_cast<std::size_t>(level)];
    auto it = std::upper_bound(row.begin(), row.end(), offset,
                               [](std::uint64_t o, const auto& e) { return o < e.first; });
    if (it == row.begin()) return {};
    return std::prev(it)->second;
  }
};

// One chunk of a tree and where it sits.
struct Placed {
  ChunkName name;
  int level = 0;
  std::uint64_t offset = 0;
};

// The children of node `node` (at `level`, starting at `offset`), holes left out.
Status AddChildren(std::string_view node, int level, std::uint64_t offset,
                   std::vector<Placed>* out) {
  Result<DecodedNode> decoded = DecodeNode(node);
  if (!decoded.ok()) return decoded.status();
  std::uint64_t at = offset;
  for (const NodeEntry& child : decoded.value().entries) {
    if (!child.hole()) out->push_back({child.name, level - 1, at});
    at += child.length;
  }
  return Status::OK();
}

io::Task<Status> MapTree(ChunkStore* store, const FileRoot& root, TreeMap* map) {
  map->levels.assign(static_cast<std::size_t>(root.height) + 1, {});
  if (root.name.is_null()) co_return Status::OK();
  std::vector<Placed> frontier{{root.name, root.height, 0}};
  while (!frontier.empty()) {
    std::vector<Placed> next;
    for (const Placed& p : frontier) {
      map->levels[static_cast<std::size_t>(p.level)].emplace_back(p.offset, p.name);
      map->names.insert(p.name);
      if (p.level == 0) continue;
      Result<std::string> node = co_await store->Get(p.name);
      if (!node.ok()) co_return node.status();
      Status added = AddChildren(node.value(), p.level, p.offset, &next);
      if (!added.ok()) co_return added;
    }
    frontier = std::move(next);
  }
  for (auto& row : map->levels) std::sort(row.begin(), row.end());
  co_return Status::OK();
}

std::string RandomHex(int bytes) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < bytes; ++i) {
    const auto b = static_cast<std::uint8_t>(rng());
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

}  // namespace

// What the walk of the namespace found at one path.
struct SyncAgent::LocalEntry {
  BaseKind kind = BaseKind::kFile;
  std::uint32_t mode = 0;
  std::int64_t mtime_ns = 0;
  FileRoot root;
  std::string target;
  std::uint64_t ino = 0;
  // False for a file with writes not yet made chunks, and for kinds sync does not carry
  // (devices, FIFOs, sockets): such a path is neither committed nor taken as deleted.
  bool settled = true;
};

// One TLS connection to the hub, opened on demand and reopened after any failure.
class SyncAgent::Channel {
 public:
  Channel(SyncAgent* agent, std::string role) : agent_(agent), role_(std::move(role)) {}

  // Connected and greeted; IOError naming the hub when not.
  Status Ensure() {
    if (connection_ != nullptr) return Status::OK();
    Result<std::unique_ptr<net::Connection>> connected = net::Connection::Connect(
        agent_->options_.hub, agent_->options_.key, agent_->options_.connection);
    if (!connected.ok()) return connected.status();
    {
      std::lock_guard lock(mutex_);
      if (stopped_) return Status::Cancelled("sync stopped");
      connection_ = std::move(connected).value();
    }
    net::Hello hello;
    hello.host = agent_->options_.host;
    Result<std::string> reply =
        Call(net::MessageType::kHello, hello.Encode(), net::MessageType::kHelloOk, -1);
    if (!reply.ok()) return reply.status();
    Result<net::HelloOk> ok = net::HelloOk::Decode(reply.value());
    if (!ok.ok()) {
      Drop();
      return ok.status().WithContext("hub's hello");
    }
    hub_id_ = ok.value().hub_id;
    return Status::OK();
  }

  // Sends `payload` and returns the reply's payload, which must be of type `expected`; an
  // Error message from the hub becomes an IOError with its text. Any failure drops the
  // connection.
  Result<std::string> Call(net::MessageType type, const std::string& payload,
                           net::MessageType expected, int idle_timeout_ms) {
    if (connection_ == nullptr) return Status::IOError("not connected");
    Status sent = connection_->Send(type, payload);
    if (!sent.ok()) {
      Drop();
      return sent;
    }
    Result<net::Frame> frame = connection_->Receive(idle_timeout_ms);
    if (!frame.ok()) {
      Drop();
      return frame.status();
    }
    if (frame.value().type == net::MessageType::kError) {
      Result<net::ErrorMessage> error = net::ErrorMessage::Decode(frame.value().payload);
      Drop();
      if (!error.ok()) return Status::IOError("the hub sent an undecodable error");
      return Status::IOError("the hub refused " + std::string(net::MessageTypeName(type)) + ": " +
                             error.value().message);
    }
    if (frame.value().type != expected) {
      Drop();
      return Status::IOError(std::string("the hub answered ") +
                             net::MessageTypeName(frame.value().type) + " to " +
                             net::MessageTypeName(type));
    }
    return std::move(frame.value().payload);
  }

  void Drop() {
    std::lock_guard lock(mutex_);
    if (connection_ == nullptr) return;
    closed_sent_ += connection_->bytes_sent();
    closed_received_ += connection_->bytes_received();
    connection_->Shutdown();
    connection_.reset();
  }

  // From any thread: interrupts a blocked call; later Ensure calls fail.
  void Stop() {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    if (connection_ != nullptr) connection_->Shutdown();
  }

  bool connected() const {
    std::lock_guard lock(mutex_);
    return connection_ != nullptr;
  }
  const std::string& hub_id() const { return hub_id_; }
  std::uint64_t sent() const {
    std::lock_guard lock(mutex_);
    return closed_sent_ + (connection_ != nullptr ? connection_->bytes_sent() : 0);
  }
  std::uint64_t received() const {
    std::lock_guard lock(mutex_);
    return closed_received_ + (connection_ != nullptr ? connection_->bytes_received() : 0);
  }

 private:
  SyncAgent* const agent_;
  const std::string role_;
  // connection_ is replaced only by the owning thread, under mutex_; the owner reads it
  // without the lock, others (Stop, stats) under it.
  mutable std::mutex mutex_;
  std::unique_ptr<net::Connection> connection_;
  bool stopped_ = false;               // GUARDED_BY(mutex_)
  std::uint64_t closed_sent_ = 0;      // GUARDED_BY(mutex_)
  std::uint64_t closed_received_ = 0;  // GUARDED_BY(mutex_)
  std::string hub_id_;
};

// ---- Start and stop ----

SyncAgent::SyncAgent(Filesystem* fs, engine::DB* db, io::Scheduler* scheduler,
                     SyncAgentOptions options)
    : fs_(fs), db_(db), scheduler_(scheduler), options_(std::move(options)) {
  push_channel_ = std::make_unique<Channel>(this, "push");
  pull_channel_ = std::make_unique<Channel>(this, "pull");
}

Result<std::unique_ptr<SyncAgent>> SyncAgent::Start(Filesystem* fs, engine::DB* db,
                                                    io::Scheduler* scheduler,
                                                    SyncAgentOptions options) {
  if (!net::IsValidNamespace(options.ns)) {
    return Status::InvalidArgument("namespace '" + options.ns +
                                   "': 1 to 64 of the characters A-Z a-z 0-9 . _ -");
  }
  std::unique_ptr<SyncAgent> agent(new SyncAgent(fs, db, scheduler, std::move(options)));
  CFS_RETURN_IF_ERROR(agent->LoadState());
  agent->first_change_ = agent->last_change_ = Clock::now() - std::chrono::seconds(1);
  if (!agent->options_.receive_only) {
    agent->push_thread_ = std::thread([a = agent.get()] { a->PushLoop(); });
  }
  agent->pull_thread_ = std::thread([a = agent.get()] { a->PullLoop(); });
  return agent;
}

SyncAgent::~SyncAgent() { Stop(); }

void SyncAgent::Stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
    state_ = "stopped";
  }
  wake_.notify_all();
  pull_channel_->Stop();
  if (push_thread_.joinable()) push_thread_.join();
  if (pull_thread_.joinable()) pull_thread_.join();
  // A last round for the changes made since the last one (the final flush of an unmount).
  if (!options_.receive_only && push_channel_->connected()) {
    Status last = PushRound();
    if (!last.ok()) Log("sync: the last push before stopping: " + last.ToString());
  }
  push_channel_->Stop();
  std::lock_guard work(work_mutex_);
  Status written = WriteState();
  if (!written.ok()) Log("saving the sync state: " + std::string(written.message()));
}

void SyncAgent::NotifyChange() {
  {
    std::lock_guard lock(mutex_);
    const Clock::time_point now = Clock::now();
    if (!changed_) first_change_ = now;
    changed_ = true;
    last_change_ = now;
  }
  wake_.notify_all();
}

Status SyncAgent::LoadState() {
  std::lock_guard work(work_mutex_);
  std::string value;
  Status got = db_->Get({}, CursorKey(), &value);
  if (got.ok()) {
    Result<SyncCursor> cursor = SyncCursor::Decode(value);
    if (!cursor.ok()) return cursor.status().WithContext("the sync cursor");
    cursor_ = cursor.value();
  } else if (!got.IsNotFound()) {
    return got.WithContext("the sync cursor");
  }
  if (!cursor_.ns.empty() && cursor_.ns != options_.ns) {
    // Another namespace than last time: nothing of the old base applies.
    Log("sync: namespace changed from '" + cursor_.ns + "' to '" + options_.ns +
        "': the whole tree is compared afresh");
    cursor_ = SyncCursor{};
  } else {
    std::unique_ptr<engine::Iterator> it = db_->NewIterator({});
    for (it->Seek(kBasePrefix); it->Valid() && it->key().starts_with(kBasePrefix); it->Next()) {
      Result<BaseEntry> entry = BaseEntry::Decode(it->value());
      if (!entry.ok()) return entry.status().WithContext(std::string(it->key()));
      base_.emplace(std::string(it->key().substr(kBasePrefix.size())), entry.value());
    }
    CFS_RETURN_IF_ERROR(it->status());
  }
  if (cursor_.ns.empty()) {
    // A fresh start (or another namespace): drop old base keys.
    std::unique_ptr<engine::Iterator> it = db_->NewIterator({});
    for (it->Seek(kBasePrefix); it->Valid() && it->key().starts_with(kBasePrefix); it->Next()) {
      pending_writes_.Delete(it->key());
    }
    base_.clear();
    cursor_.ns = options_.ns;
    pending_writes_.Put(CursorKey(), cursor_.Encode());
  }
  cursor_seen_.store(cursor_.cursor);
  // Temporary names of installs a crash interrupted: nothing refers to them.
  return WriteState();
}

Status SyncAgent::CheckHub(const std::string& hub_id) {
  if (cursor_.hub_id == hub_id) return Status::OK();
  if (!cursor_.hub_id.empty()) {
    // A recreated hub: its journal restarts, so every local path is offered again (and the
    // hub's own paths arrive as remote entries; equal files are adopted, not copied).
    Log("sync: the hub's store is not the one this mount followed; resynchronizing");
    for (auto& [path, entry] : base_) pending_writes_.Delete(BaseKey(path));
    base_.clear();
  }
  cursor_.hub_id = hub_id;
  cursor_.cursor = 0;
  cursor_seen_.store(0);
  pending_writes_.Put(CursorKey(), cursor_.Encode());
  return WriteState();
}

bool SyncAgent::WaitBackoff(int* backoff_ms) {
  std::unique_lock lock(mutex_);
  state_ = "offline";
  wake_.wait_for(lock, std::chrono::milliseconds(*backoff_ms), [&] { return stopping_; });
  *backoff_ms = std::min(*backoff_ms * 2, kBackoffMaxMs);
  return !stopping_;
}

void SyncAgent::RecordError(const Status& status) {
  std::lock_guard lock(mutex_);
  if (stopping_) return;
  const std::string line = status.ToString();
  if (line != last_error_) Log("sync: " + line);
  last_error_ = line;
}

void SyncAgent::Log(std::string_view line) const {
  if (options_.log) options_.log(line);
}

std::string SyncAgent::Today() const {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[16];
  std::strftime(text, sizeof(text), "%Y-%m-%d", &local);
  return text;
}

// ---- Base bookkeeping ----

void SyncAgent::SetBase(const std::string& path, const BaseEntry& entry) {
  base_[path] = entry;
  pending_writes_.Put(BaseKey(path), entry.Encode());
}

const BaseEntry* SyncAgent::LiveBase(const std::string& path) const {
  auto it = base_.find(path);
  if (it == base_.end() || it->second.kind == BaseKind::kDeleted) return nullptr;
  return &it->second;
}

void SyncAgent::TombstoneTree(const std::string& path, std::uint64_t jid) {
  BaseEntry tomb;
  tomb.kind = BaseKind::kDeleted;
  tomb.jid = jid;
  std::vector<std::string> under;
  // The paths under `path` sort together from path + "/" ("a.b" sorts between "a" and "a/").
  const std::string prefix = path + "/";
  for (auto it = base_.lower_bound(prefix); it != base_.end() && it->first.starts_with(prefix);
       ++it) {
    under.push_back(it->first);
  }
  SetBase(path, tomb);
  for (const std::string& p : under) SetBase(p, tomb);
}

void SyncAgent::MoveBaseTree(const std::string& from, const std::string& to, std::uint64_t jid) {
  std::vector<std::pair<std::string, BaseEntry>> moved;
  auto it = base_.find(from);
  if (it != base_.end() && it->second.kind != BaseKind::kDeleted) {
    moved.emplace_back("", it->second);
  }
  const std::string prefix = from + "/";
  for (it = base_.lower_bound(prefix); it != base_.end() && it->first.starts_with(prefix); ++it) {
    if (it->second.kind != BaseKind::kDeleted) {
      moved.emplace_back(it->first.substr(from.size()), it->second);
    }
  }
  TombstoneTree(from, jid);
  for (auto& [suffix, entry] : moved) {
    entry.jid = jid;
    SetBase(to + suffix, entry);
  }
}

Status SyncAgent::WriteState() {
  if (pending_writes_.Count() == 0) return Status::OK();
  Status written = db_->Write({}, pending_writes_);
  pending_writes_.Clear();
  return written;
}

// ---- The walk of the local namespace ----

io::Task<Status> SyncAgent::ReadIgnoreRules(IgnoreRules* rules) {
  *rules = IgnoreRules();
  EntryOut entry;
  const int err = co_await LookupQuiet(fs_, kRootIno, kIgnoreFileName, &entry);
  if (err == ENOENT) co_return Status::OK();
  if (err != 0) co_return ErrnoStatus(err, kIgnoreFileName);
  if (!S_ISREG(entry.attr.mode)) co_return Status::OK();
  const auto size =
      static_cast<std::uint32_t>(std::min<std::uint64_t>(entry.attr.size, kIgnoreFileBytesMax));
  std::string text;
  const int read = co_await fs_->Read(entry.ino, 0, size, &text);
  if (read != 0) co_return ErrnoStatus(read, kIgnoreFileName);
  *rules = IgnoreRules::Parse(text);
  co_return Status::OK();
}

io::Task<Status> SyncAgent::ScanTree(LocalTree* out, IgnoreRules* rules) {
  out->clear();
  Status read = co_await ReadIgnoreRules(rules);
  if (!read.ok()) co_return read;
  struct Dir {
    std::uint64_t ino;
    std::string path;
  };
  std::vector<Dir> stack{{kRootIno, ""}};
  while (!stack.empty()) {
    const Dir dir = std::move(stack.back());
    stack.pop_back();
    std::vector<std::pair<std::string, std::uint64_t>> children;
    std::uint64_t listing_end = 0;
    const int err = co_await fs_->ReadDir(
        dir.ino, 0, false,
        [&](std::string_view name, std::uint64_t ino, std::uint32_t, std::uint64_t,
            const InodeRecord*) {
          if (name != "." && name != "..") children.emplace_back(std::string(name), ino);
          return true;
        },
        &listing_end);
    if (err == ENOENT) continue;  // removed meanwhile
    if (err != 0) co_return ErrnoStatus(err, "/" + dir.path);
    for (auto& [name, ino] : children) {
      if (std::string_view(name).starts_with(kTempPrefix)) {
        // An install a crash interrupted (installs run under work_mutex_, as this walk does):
        // nothing refers to it.
        const int removed = co_await fs_->Unlink(dir.ino, name);
        if (removed != 0 && removed != ENOENT) co_return ErrnoStatus(removed, "/" + name);
        continue;
      }
      std::string path = JoinPath(dir.path, name);
      InodeRecord attr;
      const int got = co_await fs_->GetAttr(ino, &attr);
      if (got == ENOENT) continue;
      if (got != 0) co_return ErrnoStatus(got, "/" + path);
      const bool is_dir = S_ISDIR(attr.mode);
      if (rules->Ignored(path, is_dir)) continue;
      LocalEntry entry;
      entry.kind = KindOfMode(attr.mode);
      entry.mode = attr.mode & 07777;
      entry.mtime_ns = attr.mtime_ns;
      entry.ino = ino;
      if (S_ISREG(attr.mode)) {
        entry.root = attr.root;
        entry.settled = attr.size == attr.root.length;
      } else if (S_ISLNK(attr.mode)) {
        entry.target = attr.symlink_target;
      } else if (!is_dir) {
        entry.settled = false;
      }
      if (is_dir) stack.push_back({ino, path});
      out->emplace(std::move(path), std::move(entry));
    }
  }
  co_return Status::OK();
}

// ---- Push ----

void SyncAgent::PushLoop() {
  int backoff_ms = kBackoffMinMs;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait_for(lock, std::chrono::milliseconds(kRescanMs),
                     [&] { return stopping_ || changed_; });
      if (stopping_) return;
      // Quiet: kQuietMs after the last change, at most kDelayMaxMs after the first.
      while (!stopping_) {
        const Clock::time_point now = Clock::now();
        const Clock::time_point due =
            std::min(last_change_ + std::chrono::milliseconds(kQuietMs),
                     first_change_ + std::chrono::milliseconds(kDelayMaxMs));
        if (now >= due) break;
        wake_.wait_until(lock, due);
      }
      if (stopping_) return;
      changed_ = false;
      round_running_ = true;
    }
    Status pushed = PushRound();
    {
      std::lock_guard lock(mutex_);
      round_running_ = false;
    }
    if (pushed.ok()) {
      backoff_ms = kBackoffMinMs;
      continue;
    }
    if (pushed.IsCancelled()) return;
    RecordError(pushed);
    {
      std::lock_guard lock(mutex_);
      changed_ = true;  // try again after the backoff
      first_change_ = last_change_ = Clock::now();
    }
    if (!WaitBackoff(&backoff_ms)) return;
  }
}

Status SyncAgent::PushRound() {
  CFS_RETURN_IF_ERROR(push_channel_->Ensure());
  std::lock_guard work(work_mutex_);
  CFS_RETURN_IF_ERROR(CheckHub(push_channel_->hub_id()));
  {
    std::lock_guard lock(mutex_);
    state_ = "connected";
  }
  std::set<std::uint64_t> no_rename;
  for (int phase = 0; phase < 4; ++phase) {
    LocalTree local;
    IgnoreRules rules;
    CFS_RETURN_IF_ERROR(scheduler_->BlockOn(ScanTree(&local, &rules)));
    ignore_ = rules;

    // Renames first (phase 0 and after a refused one): a local inode now at another path than
    // its base entry, its old path gone and its new path new to the hub.
    std::vector<net::CommitEntry> renames;
    std::unordered_map<std::uint64_t, std::string> base_path_of_ino;
    for (const auto& [path, entry] : base_) {
      if (entry.kind != BaseKind::kDeleted && entry.ino != 0) base_path_of_ino[entry.ino] = path;
    }
    std::vector<std::pair<std::string, std::string>> moved;  // (from, to) emitted
    for (const auto& [path, entry] : local) {
      if (phase > 0 || !entry.settled || no_rename.contains(entry.ino)) continue;
      auto found = base_path_of_ino.find(entry.ino);
      if (found == base_path_of_ino.end() || found->second == path) continue;
      const std::string& from = found->second;
      const BaseEntry& old = base_.at(from);
      if (old.kind != entry.kind || local.contains(from) || LiveBase(path) != nullptr) continue;
      bool implied = false;
      for (const auto& [f, t] : moved) {
        if (IsUnder(from, f) && IsUnder(path, t) &&
            from.substr(f.size()) == path.substr(t.size())) {
          implied = true;
          break;
        }
      }
      if (implied || IsUnder(path, from)) continue;
      net::CommitEntry rename;
      rename.change.path = from;
      rename.change.kind = net::EntryKind::kRename;
      rename.change.target = path;
      rename.parent_jid = old.jid;
      renames.push_back(std::move(rename));
      moved.emplace_back(from, path);
    }
    if (!renames.empty()) {
      CFS_RETURN_IF_ERROR(CommitEntries(std::move(renames), &no_rename));
      continue;  // the base moved: compare again
    }

    std::vector<net::CommitEntry> deletes;
    std::vector<net::CommitEntry> puts;
    for (const auto& [path, entry] : base_) {
      if (entry.kind == BaseKind::kDeleted || local.contains(path)) continue;
      if (rules.Ignored(path, entry.kind == BaseKind::kDirectory)) continue;
      // Only the top of a deleted subtree: the hub deletes what is under it.
      const auto [parent, name] = SplitParent(path);
      bool parent_gone = false;
      for (std::string p = parent; !p.empty(); p = SplitParent(p).first) {
        if (LiveBase(p) != nullptr && !local.contains(p)) {
          parent_gone = true;
          break;
        }
      }
      if (parent_gone) continue;
      net::CommitEntry del;
      del.change.path = path;
      del.change.kind = net::EntryKind::kDelete;
      del.parent_jid = entry.jid;
      deletes.push_back(std::move(del));
    }
    for (const auto& [path, entry] : local) {
      if (!entry.settled || !net::IsValidPath(path)) continue;
      auto it = base_.find(path);
      const BaseEntry* base = it == base_.end() ? nullptr : &it->second;
      if (base != nullptr && base->kind == entry.kind) {
        bool same = base->mode == entry.mode;
        if (entry.kind == BaseKind::kFile) {
          same = same && base->root == entry.root && base->mtime_ns == entry.mtime_ns;
        } else if (entry.kind == BaseKind::kSymlink) {
          same = same && base->target == entry.target;
        }
        if (same) {
          if (base->ino != entry.ino) {
            BaseEntry updated = *base;
            updated.ino = entry.ino;
            SetBase(path, updated);
          }
          continue;
        }
      }
      net::CommitEntry put;
      put.change.path = path;
      put.change.mode = entry.mode;
      put.change.mtime_ns = entry.mtime_ns;
      switch (entry.kind) {
        case BaseKind::kFile:
          put.change.kind = net::EntryKind::kFile;
          put.change.root = entry.root.Encode();
          break;
        case BaseKind::kDirectory:
          put.change.kind = net::EntryKind::kDirectory;
          put.change.mtime_ns = 0;
          break;
        case BaseKind::kSymlink:
          put.change.kind = net::EntryKind::kSymlink;
          put.change.target = entry.target;
          break;
        case BaseKind::kDeleted:
          break;
      }
      put.parent_jid = base != nullptr ? base->jid : 0;
      puts.push_back(std::move(put));
    }
    std::reverse(deletes.begin(), deletes.end());  // children before parents
    pending_.store(deletes.size() + puts.size());
    std::vector<net::CommitEntry> all = std::move(deletes);
    for (net::CommitEntry& put : puts) all.push_back(std::move(put));
    if (all.empty()) return WriteState();
    // An update of a file the hub has: the chunks of the new tree that the hub's version
    // lacks are known here (RecipeTree::Diff walks only the subtrees that differ), so they go
    // up before the commit, and the commit is journaled in one round trip instead of one per
    // tree level.
    std::vector<ChunkName> upload;
    std::vector<ChunkName> upload_bases;
    for (const net::CommitEntry& put : all) {
      if (put.change.kind != net::EntryKind::kFile) continue;
      const BaseEntry* base = LiveBase(put.change.path);
      if (base == nullptr || base->kind != BaseKind::kFile) continue;
      if (!PlanUpdate(local.at(put.change.path).root, base->root, &upload, &upload_bases)) continue;
      if (upload.size() >= net::kNamesMax / 2) break;
    }
    if (!upload.empty()) CFS_RETURN_IF_ERROR(Upload(upload, upload_bases));
    unresolved_ = 0;
    Status committed = CommitEntries(std::move(all), &no_rename);
    if (committed.ok()) pending_.store(unresolved_);
    CFS_RETURN_IF_ERROR(WriteState());
    return committed;
  }
  return WriteState();
}

Status SyncAgent::CommitEntries(std::vector<net::CommitEntry> entries,
                                std::set<std::uint64_t>* no_rename) {
  for (int round = 0; !entries.empty(); ++round) {
    if (round >= kCommitRoundsMax) {
      return Status::IOError("the hub still lacks chunks after " + std::to_string(round) +
                             " uploads");
    }
    std::vector<net::CommitEntry> again;
    std::string missing;
    for (std::size_t start = 0; start < entries.size(); start += kCommitEntriesPerMessage) {
      net::Commit commit;
      commit.ns = options_.ns;
      const std::size_t end = std::min(entries.size(), start + kCommitEntriesPerMessage);
      commit.entries.assign(entries.begin() + static_cast<std::ptrdiff_t>(start),
                            entries.begin() + static_cast<std::ptrdiff_t>(end));
      Result<std::string> reply = push_channel_->Call(net::MessageType::kCommit, commit.Encode(),
                                                      net::MessageType::kCommitReply, -1);
      if (!reply.ok()) return reply.status();
      Result<net::CommitReply> decoded = net::CommitReply::Decode(reply.value());
      if (!decoded.ok()) return decoded.status().WithContext("the hub's commit reply");
      if (decoded.value().results.size() != commit.entries.size()) {
        return Status::IOError("the hub answered " +
                               std::to_string(decoded.value().results.size()) + " of " +
                               std::to_string(commit.entries.size()) + " commit entries");
      }
      missing += decoded.value().missing;
      for (std::size_t i = 0; i < commit.entries.size(); ++i) {
        const net::CommitEntry& entry = commit.entries[i];
        const net::CommitResult& result = decoded.value().results[i];
        const std::string& path = entry.change.path;
        switch (result.status) {
          case net::CommitStatus::kOk: {
            commits_.fetch_add(1);
            if (entry.change.kind == net::EntryKind::kDelete) {
              TombstoneTree(path, result.jid);
            } else if (entry.change.kind == net::EntryKind::kRename) {
              MoveBaseTree(path, entry.change.target, result.jid);
            } else {
              BaseEntry base;
              base.jid = result.jid;
              base.mode = entry.change.mode;
              base.mtime_ns = entry.change.mtime_ns;
              if (entry.change.kind == net::EntryKind::kFile) {
                base.kind = BaseKind::kFile;
                Result<FileRoot> root = FileRoot::Decode(entry.change.root);
                CFS_ASSERT(root.ok());
                base.root = root.value();
              } else if (entry.change.kind == net::EntryKind::kDirectory) {
                base.kind = BaseKind::kDirectory;
              } else {
                base.kind = BaseKind::kSymlink;
                base.target = entry.change.target;
              }
              auto old = base_.find(path);
              if (old != base_.end()) base.ino = old->second.ino;
              SetBase(path, base);
            }
            break;
          }
          case net::CommitStatus::kConflict:
            // The hub has a newer version: the pull loop brings it, and a local version that
            // differs becomes a conflicted copy then.
            ++unresolved_;
            break;
          case net::CommitStatus::kMissing:
            again.push_back(entry);
            break;
          case net::CommitStatus::kRejected: {
            ++unresolved_;
            Log("sync: the hub refused " + path +
                (entry.change.kind == net::EntryKind::kRename ? " -> " + entry.change.target
                                                              : std::string()));
            if (entry.change.kind == net::EntryKind::kRename) {
              auto old = base_.find(path);
              if (old != base_.end()) no_rename->insert(old->second.ino);
            }
            break;
          }
        }
      }
    }
    CFS_RETURN_IF_ERROR(WriteState());
    if (!again.empty()) {
      if (missing.empty()) {
        return Status::IOError("the hub lacks chunks of " + again.front().change.path +
                               " but named none");
      }
      std::vector<ChunkName> names;
      for (std::size_t at = 0; at + net::kChunkNameBytes <= missing.size();
           at += net::kChunkNameBytes) {
        Result<ChunkName> name = ChunkName::Decode(missing.substr(at, net::kChunkNameBytes));
        if (!name.ok()) return name.status().WithContext("a chunk name from the hub");
        names.push_back(name.value());
      }
      CFS_RETURN_IF_ERROR(Upload(names, {}));
    }
    entries = std::move(again);
  }
  return Status::OK();
}

bool SyncAgent::PlanUpdate(const FileRoot& now, const FileRoot& before,
                           std::vector<ChunkName>* names, std::vector<ChunkName>* bases) {
  if (now.length > kDeltaFileBytesMax || before.length > kDeltaFileBytesMax) return false;
  if (now.name.is_null()) return true;
  ChunkStore* store = fs_->chunk_store();
  TreeMap old_tree;
  if (!scheduler_->BlockOn(MapTree(store, before, &old_tree)).ok()) return false;
  // Walk the new tree from its root; a chunk the old tree holds is at the hub with its whole
  // subtree, so only the changed paths are walked.
  std::vector<Placed> frontier{{now.name, now.height, 0}};
  std::set<ChunkName> seen;
  while (!frontier.empty()) {
    std::vector<Placed> next;
    for (const Placed& p : frontier) {
      if (old_tree.names.contains(p.name) || !seen.insert(p.name).second) continue;
      names->push_back(p.name);
      bases->push_back(old_tree.At(p.level, p.offset));
      if (p.level == 0) continue;
      Result<std::string> node = scheduler_->BlockOn(store->Get(p.name));
      if (!node.ok() || !AddChildren(node.value(), p.level, p.offset, &next).ok()) return false;
    }
    frontier = std::move(next);
  }
  return true;
}

Status SyncAgent::Upload(const std::vector<ChunkName>& names, const std::vector<ChunkName>& bases) {
  ChunkStore* store = fs_->chunk_store();
  std::size_t next = 0;
  while (next < names.size()) {
    // Read a batch's worth: the chunks average ~8 KiB, so 512 names at a time.
    const std::size_t end = std::min(names.size(), next + 512);
    std::vector<ChunkName> part(names.begin() + static_cast<std::ptrdiff_t>(next),
                                names.begin() + static_cast<std::ptrdiff_t>(end));
    std::vector<Result<std::string>> read = scheduler_->BlockOn(store->GetMany(part));
    net::StoreBatch batch;
    std::size_t bytes = 0;
    std::size_t raw_bytes = 0;
    for (std::size_t i = 0; i < part.size(); ++i) {
      if (!read[i].ok()) return read[i].status().WithContext("uploading " + part[i].ToHex());
      net::ChunkBytes chunk;
      chunk.name = std::string(part[i].encoded());
      chunk.data = std::move(read[i]).value();
      raw_bytes += chunk.data.size();
      const ChunkName base = bases.empty() ? ChunkName() : bases[next + i];
      if (!base.is_null()) {
        Result<std::string> base_bytes = scheduler_->BlockOn(store->Get(base));
        if (base_bytes.ok()) {
          std::string delta = net::EncodeDelta(base_bytes.value(), chunk.data, kDeltaLevel);
          if (delta.size() < chunk.data.size()) {
            chunk.delta_base = std::string(base.encoded());
            chunk.data = std::move(delta);
          }
        }
      }
      bytes += chunk.data.size();
      batch.chunks.push_back(std::move(chunk));
      if (bytes >= kUploadBatchBytes || i + 1 == part.size()) {
        Result<std::string> reply = push_channel_->Call(
            net::MessageType::kStoreBatch, batch.Encode(), net::MessageType::kStoreReply, -1);
        if (!reply.ok()) return reply.status();
        Result<net::StoreReply> stored = net::StoreReply::Decode(reply.value());
        if (!stored.ok()) return stored.status().WithContext("the hub's store reply");
        // A refused delta (the hub lacks its base) is sent whole when the commit asks for it;
        // a refused whole chunk means the bytes read here do not match the name.
        for (std::size_t at = 0; at + net::kChunkNameBytes <= stored.value().refused.size();
             at += net::kChunkNameBytes) {
          const std::string_view refused =
              std::string_view(stored.value().refused).substr(at, net::kChunkNameBytes);
          for (const net::ChunkBytes& sent : batch.chunks) {
            if (sent.name == refused && sent.delta_base.empty()) {
              Result<ChunkName> name = ChunkName::Decode(refused);
              return Status::Corruption("the hub refused chunk " +
                                        (name.ok() ? name.value().ToHex() : std::string("?")) +
                                        " as not matching its name");
            }
          }
        }
        uploaded_chunks_.fetch_add(batch.chunks.size());
        uploaded_bytes_.fetch_add(raw_bytes);
        batch.chunks.clear();
        bytes = 0;
        raw_bytes = 0;
      }
    }
    next = end;
  }
  return Status::OK();
}

// ---- Pull ----

void SyncAgent::PullLoop() {
  int backoff_ms = kBackoffMinMs;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    Status pulled = PullBatch();
    if (pulled.ok()) {
      backoff_ms = kBackoffMinMs;
      continue;
    }
    if (pulled.IsCancelled()) return;
    RecordError(pulled);
    if (!WaitBackoff(&backoff_ms)) return;
  }
}

Status SyncAgent::PullBatch() {
  const bool was_connected = pull_channel_->connected();
  CFS_RETURN_IF_ERROR(pull_channel_->Ensure());
  std::uint64_t cursor = 0;
  {
    std::lock_guard work(work_mutex_);
    CFS_RETURN_IF_ERROR(CheckHub(pull_channel_->hub_id()));
    cursor = cursor_.cursor;
  }
  if (!was_connected) {
    std::lock_guard lock(mutex_);
    state_ = "connected";
    last_error_.clear();
  }
  net::List list;
  list.ns = options_.ns;
  list.cursor = cursor;
  list.wait_ms = cursor >= head_.load() ? kListWaitMs : 0;
  list.max_entries = kListEntriesMax;
  Result<std::string> reply =
      pull_channel_->Call(net::MessageType::kList, list.Encode(), net::MessageType::kListReply,
                          static_cast<int>(list.wait_ms) + 30000);
  if (!reply.ok()) return reply.status();
  Result<net::ListReply> listed = net::ListReply::Decode(reply.value());
  if (!listed.ok()) return listed.status().WithContext("the hub's list reply");
  head_.store(listed.value().head_jid);
  if (listed.value().entries.empty()) return Status::OK();

  std::lock_guard work(work_mutex_);
  if (cursor_.cursor != cursor) return Status::OK();  // the hub changed meanwhile: list again
  CFS_RETURN_IF_ERROR(scheduler_->BlockOn(ReadIgnoreRules(&ignore_)));
  for (const net::JournalEntry& entry : listed.value().entries) {
    if (entry.jid <= cursor_.cursor) continue;
    Status applied = ApplyEntry(entry);
    if (!applied.ok()) {
      CFS_RETURN_IF_ERROR(WriteState());
      return applied.WithContext("applying journal entry " + std::to_string(entry.jid) + " (" +
                                 entry.change.path + ")");
    }
    cursor_.cursor = entry.jid;
    cursor_seen_.store(entry.jid);
    pending_writes_.Put(CursorKey(), cursor_.Encode());
  }
  return WriteState();
}

Status SyncAgent::FetchTree(const FileRoot& root, const FileRoot& similar) {
  if (root.empty() || root.all_hole() || root.name.is_null()) return Status::OK();
  ChunkStore* store = fs_->chunk_store();
  // The version held here maps the likely delta bases: the old chunk at the same level and
  // offset as each new one.
  TreeMap old_tree;
  if (!similar.name.is_null() && similar.length <= kDeltaFileBytesMax &&
      root.length <= kDeltaFileBytesMax) {
    if (!scheduler_->BlockOn(MapTree(store, similar, &old_tree)).ok()) old_tree = TreeMap();
  }
  std::vector<Placed> frontier{{root.name, root.height, 0}};
  std::vector<std::pair<int, std::pair<ChunkName, std::string>>> nodes;  // stored last
  std::set<ChunkName> seen{root.name};
  while (!frontier.empty()) {
    // Which of the frontier this store holds: a held chunk's tree is whole (nodes are stored
    // after their children), so the walk stops there.
    std::vector<io::Task<Result<bool>>> checks;
    for (const Placed& p : frontier) checks.push_back(store->Contains(p.name));
    std::vector<Result<bool>> held = scheduler_->BlockOn(io::WhenAll(std::move(checks)));
    std::vector<Placed> need;
    for (std::size_t i = 0; i < frontier.size(); ++i) {
      if (!held[i].ok()) return held[i].status();
      if (!held[i].value()) need.push_back(frontier[i]);
    }
    std::vector<Placed> next;
    std::size_t at = 0;
    while (at < need.size()) {
      net::Retrieve retrieve;
      const std::size_t end = std::min(need.size(), at + kRetrieveNamesMax);
      bool any_base = false;
      for (std::size_t i = at; i < end; ++i) {
        retrieve.names.append(need[i].name.encoded());
        const ChunkName base = old_tree.At(need[i].level, need[i].offset);
        retrieve.bases.append(base.encoded());
        any_base = any_base || !base.is_null();
      }
      if (!any_base) retrieve.bases.clear();
      Result<std::string> reply = pull_channel_->Call(
          net::MessageType::kRetrieve, retrieve.Encode(), net::MessageType::kRetrieveReply, -1);
      if (!reply.ok()) return reply.status();
      Result<net::RetrieveReply> got = net::RetrieveReply::Decode(reply.value());
      if (!got.ok()) return got.status().WithContext("the hub's retrieve reply");
      if (got.value().chunks.empty()) return Status::IOError("the hub retrieved no chunk");
      std::vector<io::Task<Result<PutOutcome>>> puts;
      std::vector<std::string> leaf_bytes;
      leaf_bytes.reserve(got.value().chunks.size());
      for (net::RetrievedChunk& chunk : got.value().chunks) {
        if (at >= end) return Status::IOError("the hub retrieved chunks not asked for");
        const Placed& wanted = need[at++];
        if (chunk.name != wanted.name.encoded()) {
          return Status::IOError("the hub retrieved chunks out of order");
        }
        if (!chunk.found) {
          return Status::NotFound("chunk " + wanted.name.ToHex() + " is missing at the hub");
        }
        if (!chunk.delta_base.empty()) {
          Result<ChunkName> base_name = ChunkName::Decode(chunk.delta_base);
          if (!base_name.ok() || base_name.value() != old_tree.At(wanted.level, wanted.offset)) {
            return Status::IOError("the hub sent a delta against a base not offered");
          }
          Result<std::string> base = scheduler_->BlockOn(store->Get(base_name.value()));
          if (!base.ok()) return base.status().WithContext("the base of a delta");
          Result<std::string> data = net::DecodeDelta(base.value(), chunk.data, kChunkSizeMax);
          if (!data.ok()) return data.status().WithContext("chunk " + wanted.name.ToHex());
          fetched_bytes_.fetch_add(chunk.data.size());
          chunk.data = std::move(data).value();
        } else {
          fetched_bytes_.fetch_add(chunk.data.size());
        }
        if (!wanted.name.Matches(chunk.data)) {
          return Status::Corruption("chunk " + wanted.name.ToHex() +
                                    " from the hub does not match its name");
        }
        fetched_chunks_.fetch_add(1);
        if (wanted.level == 0) {
          leaf_bytes.push_back(std::move(chunk.data));
          puts.push_back(store->Put(wanted.name, leaf_bytes.back()));
          continue;
        }
        std::vector<Placed> children;
        Status added = AddChildren(chunk.data, wanted.level, wanted.offset, &children);
        if (!added.ok()) return added.WithContext("node " + wanted.name.ToHex());
        for (const Placed& child : children) {
          if (seen.insert(child.name).second) next.push_back(child);
        }
        nodes.push_back({wanted.level, {wanted.name, std::move(chunk.data)}});
      }
      std::vector<Result<PutOutcome>> put = scheduler_->BlockOn(io::WhenAll(std::move(puts)));
      for (const Result<PutOutcome>& p : put) {
        if (!p.ok()) return p.status().WithContext("storing a fetched chunk");
      }
    }
    frontier = std::move(next);
  }
  // Nodes after their children: lowest level first.
  std::stable_sort(nodes.begin(), nodes.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [level, node] : nodes) {
    Result<PutOutcome> put = scheduler_->BlockOn(store->Put(node.first, node.second));
    if (!put.ok()) return put.status().WithContext("storing a fetched node");
  }
  return Status::OK();
}

namespace {

// The local entry at `path`, if any.
struct Found {
  bool exists = false;
  std::uint64_t parent = 0;
  std::string name;
  EntryOut entry;
};

io::Task<int> FindPath(Filesystem* fs, const std::string& path, Found* out) {
  const auto [dir, name] = SplitParent(path);
  out->exists = false;
  out->name = name;
  int err = co_await ResolveDir(fs, dir, false, Caller{}, &out->parent);
  if (err == ENOENT || err == ENOTDIR) co_return 0;
  if (err != 0) co_return err;
  err = co_await LookupQuiet(fs, out->parent, name, &out->entry);
  if (err == ENOENT) co_return 0;
  if (err != 0) co_return err;
  out->exists = true;
  co_return 0;
}

bool SameAsBase(const EntryOut& local, const BaseEntry* base) {
  if (base == nullptr) return false;
  if (KindOfMode(local.attr.mode) != base->kind) return false;
  if (base->kind == BaseKind::kFile)
    return local.attr.root == base->root && local.attr.size == local.attr.root.length;
  if (base->kind == BaseKind::kSymlink) return local.attr.symlink_target == base->target;
  return true;
}

// Removes `path` and what is under it, except what differs from its base entry (a local
// change the hub has not seen): that stays, and the next push commits it again.
io::Task<int> RemoveTree(Filesystem* fs, const std::map<std::string, BaseEntry>& base,
                         const std::string& path, std::uint64_t parent, const std::string& name,
                         const EntryOut& entry,
                         const std::function<void(std::uint64_t, std::string_view)>& invalidate) {
  auto it = base.find(path);
  const BaseEntry* b =
      it == base.end() || it->second.kind == BaseKind::kDeleted ? nullptr : &it->second;
  if (!S_ISDIR(entry.attr.mode)) {
    if (!SameAsBase(entry, b)) co_return 0;
    const int err = co_await fs->Unlink(parent, name);
    if (err == 0 && invalidate) invalidate(parent, name);
    co_return err == ENOENT ? 0 : err;
  }
  std::vector<std::pair<std::string, std::uint64_t>> children;
  std::uint64_t listing_end = 0;
  int err = co_await fs->ReadDir(
      entry.ino, 0, false,
      [&](std::string_view child, std::uint64_t ino, std::uint32_t, std::uint64_t,
          const InodeRecord*) {
        if (child != "." && child != "..") children.emplace_back(std::string(child), ino);
        return true;
      },
      &listing_end);
  if (err != 0) co_return err == ENOENT ? 0 : err;
  for (const auto& [child, ino] : children) {
    EntryOut child_entry;
    err = co_await LookupQuiet(fs, entry.ino, child, &child_entry);
    if (err == ENOENT) continue;
    if (err != 0) co_return err;
    err = co_await RemoveTree(fs, base, JoinPath(path, child), entry.ino, child, child_entry,
                              invalidate);
    if (err != 0) co_return err;
  }
  err = co_await fs->Rmdir(parent, name);
  if (err == 0 && invalidate) invalidate(parent, name);
  co_return err == ENOTEMPTY || err == ENOENT ? 0 : err;
}

}  // namespace

Status SyncAgent::ApplyEntry(const net::JournalEntry& journal) {
  const net::ChangeEntry& change = journal.change;
  const std::string& path = change.path;
  auto known = base_.find(path);
  if (known != base_.end() && known->second.jid >= journal.jid) return Status::OK();  // ours
  const bool is_dir = change.kind == net::EntryKind::kDirectory;
  if (ignore_.Ignored(path, is_dir) ||
      std::string_view(SplitParent(path).second).starts_with(kTempPrefix)) {
    return Status::OK();
  }
  if (change.kind == net::EntryKind::kRename && ignore_.Ignored(change.target, false)) {
    return Status::OK();
  }
  applied_.fetch_add(1);
  const Caller owner{options_.owner_uid, options_.owner_gid};
  const auto& invalidate = options_.invalidate_entry;
  Filesystem* fs = fs_;

  if (change.kind == net::EntryKind::kDelete) {
    Found found;
    int err = scheduler_->BlockOn(FindPath(fs, path, &found));
    if (err != 0) return ErrnoStatus(err, "/" + path);
    if (found.exists) {
      err = scheduler_->BlockOn(
          RemoveTree(fs, base_, path, found.parent, found.name, found.entry, invalidate));
      if (err != 0) return ErrnoStatus(err, "/" + path);
    }
    TombstoneTree(path, journal.jid);
    return Status::OK();
  }

  if (change.kind == net::EntryKind::kRename) {
    const std::string& target = change.target;
    Found from;
    Found to;
    int err = scheduler_->BlockOn(FindPath(fs, path, &from));
    if (err == 0) err = scheduler_->BlockOn(FindPath(fs, target, &to));
    if (err != 0) return ErrnoStatus(err, "/" + path);
    if (from.exists) {
      if (to.exists) {
        // Something local already has the new name: it loses it, as in any conflict.
        const std::string copy = ConflictedCopyName(to.name, options_.host, Today());
        err = scheduler_->BlockOn(fs->Rename(to.parent, to.name, to.parent, copy, 0));
        if (err != 0) return ErrnoStatus(err, "/" + target);
        if (invalidate) invalidate(to.parent, to.name);
        conflicts_.fetch_add(1);
      }
      std::uint64_t target_dir = 0;
      err =
          scheduler_->BlockOn(ResolveDir(fs, SplitParent(target).first, true, owner, &target_dir));
      if (err == 0) {
        err = scheduler_->BlockOn(
            fs->Rename(from.parent, from.name, target_dir, SplitParent(target).second, 0));
      }
      if (err != 0) return ErrnoStatus(err, "/" + path + " -> /" + target);
      if (invalidate) {
        invalidate(from.parent, from.name);
        invalidate(target_dir, SplitParent(target).second);
      }
    }
    MoveBaseTree(path, target, journal.jid);
    return Status::OK();
  }

  // A file, directory or symlink: its new state.
  BaseEntry incoming;
  incoming.jid = journal.jid;
  incoming.mode = change.mode & 07777;
  incoming.mtime_ns = change.mtime_ns;
  if (change.kind == net::EntryKind::kFile) {
    incoming.kind = BaseKind::kFile;
    Result<FileRoot> root = FileRoot::Decode(change.root);
    if (!root.ok()) return root.status().WithContext("the root of " + path);
    incoming.root = root.value();
  } else if (is_dir) {
    incoming.kind = BaseKind::kDirectory;
  } else {
    incoming.kind = BaseKind::kSymlink;
    incoming.target = change.target;
  }

  // The chunks first, outside any namespace change; a gc cycle must not take them before
  // the root that names them is in.
  ChunkGcFence::Token gc_token = fs->HoldGcFence();
  if (incoming.kind == BaseKind::kFile) {
    // The version held here gives delta bases: the chunks it shares with the new version are
    // not fetched at all, and the changed ones arrive as differences from their old versions.
    FileRoot similar;
    Found here;
    if (scheduler_->BlockOn(FindPath(fs, path, &here)) == 0 && here.exists &&
        S_ISREG(here.entry.attr.mode)) {
      similar = here.entry.attr.root;
    }
    CFS_RETURN_IF_ERROR(FetchTree(incoming.root, similar));
  }

  const auto [dir, name] = SplitParent(path);
  std::uint64_t parent = 0;
  int err = scheduler_->BlockOn(ResolveDir(fs, dir, true, owner, &parent));
  if (err != 0) return ErrnoStatus(err, "/" + dir);
  EntryOut local;
  err = scheduler_->BlockOn(LookupQuiet(fs, parent, name, &local));
  if (err != 0 && err != ENOENT) return ErrnoStatus(err, "/" + path);
  bool exists = err == 0;
  const BaseEntry* base = LiveBase(path);
  if (exists && !SameAsBase(local, base)) {
    // Changed here too. Equal to the incoming version: nothing to do but agree on it.
    const BaseKind local_kind = KindOfMode(local.attr.mode);
    const bool equal =
        local_kind == incoming.kind &&
        (incoming.kind == BaseKind::kDirectory ||
         (incoming.kind == BaseKind::kFile && local.attr.root == incoming.root &&
          local.attr.size == local.attr.root.length) ||
         (incoming.kind == BaseKind::kSymlink && local.attr.symlink_target == incoming.target));
    if (equal) {
      if (incoming.kind == BaseKind::kDirectory && (local.attr.mode & 07777) != incoming.mode) {
        SetAttrIn set;
        set.valid = SetAttrIn::kMode;
        set.mode = incoming.mode;
        InodeRecord ignored;
        scheduler_->BlockOn(fs->SetAttr(local.ino, set, &ignored));
      }
      incoming.ino = local.ino;
      if (incoming.kind == BaseKind::kFile) incoming.mtime_ns = local.attr.mtime_ns;
      SetBase(path, incoming);
      return Status::OK();
    }
    // A conflict: the hub's version keeps the name; the local one becomes a conflicted copy,
    // which the next push commits as a new file.
    const std::string copy = ConflictedCopyName(name, options_.host, Today());
    err = scheduler_->BlockOn(fs->Rename(parent, name, parent, copy, RENAME_NOREPLACE));
    if (err != 0) return ErrnoStatus(err, "/" + path + ": making its conflicted copy");
    if (invalidate) invalidate(parent, name);
    conflicts_.fetch_add(1);
    Log("sync: conflict at /" + path + ": the local version is now " + copy);
    exists = false;
  }
  if (exists && S_ISDIR(local.attr.mode) && incoming.kind != BaseKind::kDirectory) {
    // A directory replaced by a file or symlink: remove what is unchanged, keep the rest as a
    // conflicted copy.
    err = scheduler_->BlockOn(RemoveTree(fs, base_, path, parent, name, local, invalidate));
    if (err != 0) return ErrnoStatus(err, "/" + path);
    EntryOut left;
    if (scheduler_->BlockOn(LookupQuiet(fs, parent, name, &left)) == 0) {
      const std::string copy = ConflictedCopyName(name, options_.host, Today());
      err = scheduler_->BlockOn(fs->Rename(parent, name, parent, copy, RENAME_NOREPLACE));
      if (err != 0) return ErrnoStatus(err, "/" + path);
      conflicts_.fetch_add(1);
    }
    exists = false;
  }

  if (incoming.kind == BaseKind::kDirectory) {
    if (exists && S_ISDIR(local.attr.mode)) {
      if ((local.attr.mode & 07777) != incoming.mode) {
        SetAttrIn set;
        set.valid = SetAttrIn::kMode;
        set.mode = incoming.mode;
        InodeRecord ignored;
        err = scheduler_->BlockOn(fs->SetAttr(local.ino, set, &ignored));
        if (err != 0) return ErrnoStatus(err, "/" + path);
      }
      incoming.ino = local.ino;
    } else {
      if (exists) {
        err = scheduler_->BlockOn(fs->Unlink(parent, name));
        if (err != 0 && err != ENOENT) return ErrnoStatus(err, "/" + path);
      }
      EntryOut made;
      err =
          scheduler_->BlockOn(fs->MakeNode(parent, name, S_IFDIR | incoming.mode, 0, owner, &made));
      if (err != 0) return ErrnoStatus(err, "/" + path);
      fs->Forget(made.ino, 1);
      incoming.ino = made.ino;
      if (invalidate) invalidate(parent, name);
    }
    SetBase(path, incoming);
    return Status::OK();
  }

  // A file or symlink: made under a temporary name, then renamed over the old one in one
  // step, so an open file is never torn and a reader sees the old or the new version whole.
  const std::string temp = std::string(kTempPrefix) + RandomHex(8);
  EntryOut made;
  if (incoming.kind == BaseKind::kFile) {
    err = scheduler_->BlockOn(fs->MakeNode(parent, temp, S_IFREG | incoming.mode, 0, owner, &made));
    if (err == 0) {
      fs->Forget(made.ino, 1);
      err = scheduler_->BlockOn(fs->SetFileRoot(made.ino, incoming.root, incoming.mtime_ns));
    }
  } else {
    err = scheduler_->BlockOn(fs->Symlink(parent, temp, incoming.target, owner, &made));
    if (err == 0) fs->Forget(made.ino, 1);
  }
  if (err == 0) err = scheduler_->BlockOn(fs->Rename(parent, temp, parent, name, 0));
  if (err != 0) {
    scheduler_->BlockOn(fs->Unlink(parent, temp));
    return ErrnoStatus(err, "/" + path);
  }
  if (invalidate) invalidate(parent, name);
  incoming.ino = made.ino;
  SetBase(path, incoming);
  return Status::OK();
}

SyncStats SyncAgent::stats() const {
  SyncStats out;
  {
    std::lock_guard lock(mutex_);
    out.state = state_;
    out.last_error = last_error_;
  }
  out.cursor = cursor_seen_.load();
  out.head = head_.load();
  out.pending = pending_.load();
  {
    std::lock_guard lock(mutex_);
    if (changed_ || round_running_) ++out.pending;  // a change not looked at yet
  }
  out.commits = commits_.load();
  out.applied = applied_.load();
  out.conflicts = conflicts_.load();
  out.uploaded_chunks = uploaded_chunks_.load();
  out.uploaded_bytes = uploaded_bytes_.load();
  out.fetched_chunks = fetched_chunks_.load();
  out.fetched_bytes = fetched_bytes_.load();
  out.wire_bytes_sent = push_channel_->sent() + pull_channel_->sent();
  out.wire_bytes_received = push_channel_->received() + pull_channel_->received();
  return out;
}

}  // namespace cascadefs::fusefs::sync
