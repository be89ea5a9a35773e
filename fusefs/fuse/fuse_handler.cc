// fuse_handler.cc: decoding requests, running them, encoding replies. See fuse_handler.h.
#include "fuse/fuse_handler.h"

#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

#include "fuse/fuse_uring.h"

namespace cascadefs::fusefs {
namespace {

// Whether a reply is worth counting in MountStats::errors: answers that are part of normal
// operation are not (a lookup of a name that is not there, an absent xattr or one larger
// than the caller's probe buffer, a feature we do not offer, which the kernel or the tool
// then stops asking for).
bool CountsAsError(std::uint32_t opcode, int error) {
  if (error == 0) return false;
  if (error == ENOENT && opcode == FUSE_LOOKUP) return false;
  if (error == ENODATA || error == ERANGE) {
    return opcode != FUSE_GETXATTR && opcode != FUSE_LISTXATTR && opcode != FUSE_REMOVEXATTR;
  }
  return error != ENOSYS && error != EOPNOTSUPP;
}

// The protocol version we speak: linux/fuse.h of Debian 12 (7.38). A newer kernel speaks ours.
constexpr std::uint32_t kProtocolMajor = FUSE_KERNEL_VERSION;
constexpr std::uint32_t kProtocolMinor = FUSE_KERNEL_MINOR_VERSION;
// Background requests (readahead, writeback) the kernel keeps in flight at once.
constexpr std::uint16_t kMaxBackground = 64;
constexpr std::uint16_t kCongestionThreshold = 48;

template <typename T>
bool TakeArg(std::string_view* arg, T* out) {
  if (arg->size() < sizeof(T)) return false;
  std::memcpy(out, arg->data(), sizeof(T));
  arg->remove_prefix(sizeof(T));
  return true;
}

// A NUL-terminated name from the front of *arg.
bool TakeName(std::string_view* arg, std::string_view* name) {
  const std::size_t nul = arg->find('\0');
  if (nul == std::string_view::npos) return false;
  *name = arg->substr(0, nul);
  arg->remove_prefix(nul + 1);
  return true;
}

template <typename T>
void Append(std::string* out, const T& value) {
  out->append(reinterpret_cast<const char*>(&value), sizeof(T));
}

void SplitTimeout(double seconds, std::uint64_t* sec, std::uint32_t* nsec) {
  const double whole = std::floor(seconds);
  *sec = static_cast<std::uint64_t>(whole);
  *nsec = static_cast<std::uint32_t>((seconds - whole) * 1e9);
}

void SplitNs(std::int64_t ns, std::uint64_t* sec, std::uint32_t* nsec) {
  std::int64_t s = ns / 1'000'000'000;
  std::int64_t rem = ns % 1'000'000'000;
  if (rem < 0) {
    rem += 1'000'000'000;
    --s;
  }
  *sec = static_cast<std::uint64_t>(s);
  *nsec = static_cast<std::uint32_t>(rem);
}

std::int64_t JoinNs(std::uint64_t sec, std::uint32_t nsec) {
  return static_cast<std::int64_t>(sec) * 1'000'000'000 + nsec;
}

void FillAttr(std::uint64_t ino, const InodeRecord& rec, fuse_attr* attr) {
  *attr = {};
  attr->ino = ino;
  attr->size = S_ISDIR(rec.mode) ? 4096 : rec.size;
  // st_blocks counts what a regular file stores, in 512-byte units: its committed data, holes
  // excluded (as `du` expects on ext4), plus unflushed growth past the committed end, counted
  // as data until the next flush shows which of it is (close, fsync or lseek flush it).
  std::uint64_t stored_bytes = attr->size;
  if (S_ISREG(rec.mode)) {
    stored_bytes = rec.root.data_bytes();
    if (rec.size > rec.root.length) stored_bytes += rec.size - rec.root.length;
  }
  attr->blocks = (stored_bytes + 511) / 512;
  SplitNs(rec.atime_ns, &attr->atime, &attr->atimensec);
  SplitNs(rec.mtime_ns, &attr->mtime, &attr->mtimensec);
  SplitNs(rec.ctime_ns, &attr->ctime, &attr->ctimensec);
  attr->mode = rec.mode;
  attr->nlink = rec.nlink;
  attr->uid = rec.uid;
  attr->gid = rec.gid;
  attr->rdev = rec.rdev;
  attr->blksize = 4096;
}

std::int64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

FuseHandler::FuseHandler(Filesystem* fs, FuseHandlerOptions options)
    : fs_(fs), options_(std::move(options)) {}

bool FuseHandler::WaitInitialized(int timeout_ms) {
  std::unique_lock lock(init_mutex_);
  return init_done_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                             [&] { return initialized(); });
}

std::vector<RequestInProgress> FuseHandler::InProgress(std::size_t max_count) const {
  std::vector<RequestInProgress> out;
  const std::int64_t now = MonotonicNs();
  {
    std::lock_guard lock(active_mutex_);
    for (const auto& [unique, active] : active_) {
      out.push_back({unique, active.opcode, active.nodeid,
                     static_cast<std::uint64_t>((now - active.start_ns) / 1'000'000)});
    }
  }
  std::sort(out.begin(), out.end(), [](const RequestInProgress& a, const RequestInProgress& b) {
    return a.age_ms > b.age_ms;
  });
  if (out.size() > max_count) out.resize(max_count);
  return out;
}

FuseHandlerStats FuseHandler::stats() const {
  FuseHandlerStats out;
  out.requests = requests_.load(std::memory_order_relaxed);
  out.errors = errors_.load(std::memory_order_relaxed);
  out.reads = reads_.load(std::memory_order_relaxed);
  out.writes = writes_.load(std::memory_order_relaxed);
  out.read_bytes = read_bytes_.load(std::memory_order_relaxed);
  out.write_bytes = write_bytes_.load(std::memory_order_relaxed);
  return out;
}

io::Task<void> FuseHandler::Handle(std::string_view request, std::uint64_t* unique,
                                   FuseReply* reply) {
  *reply = FuseReply{};
  fuse_in_header header{};
  std::string_view arg = request;
  if (!TakeArg(&arg, &header) || header.len != request.size()) {
    // Without a trustworthy header there is no request to answer; the kernel never sends one.
    if (options_.log) options_.log("a FUSE request shorter than its header: ignored");
    reply->none = true;
    co_return;
  }
  *unique = header.unique;
  requests_.fetch_add(1, std::memory_order_relaxed);
  const bool tracked = header.opcode != FUSE_FORGET && header.opcode != FUSE_BATCH_FORGET &&
                       header.opcode != FUSE_INTERRUPT;
  if (tracked) {
    std::lock_guard lock(active_mutex_);
    active_[header.unique] = Active{header.opcode, header.nodeid, MonotonicNs()};
  }
  co_await Dispatch(header, arg, reply);
  if (tracked) {
    std::lock_guard lock(active_mutex_);
    active_.erase(header.unique);
  }
  if (CountsAsError(header.opcode, reply->error)) errors_.fetch_add(1, std::memory_order_relaxed);
}

void FuseHandler::Init(std::string_view arg, FuseReply* reply) {
  fuse_init_in in{};
  // Kernels before 7.36 send the short form (no flags2); take what is there.
  const std::size_t take = std::min(arg.size(), sizeof(in));
  if (take < offsetof(fuse_init_in, flags2)) {
    reply->error = EIO;
    return;
  }
  std::memcpy(&in, arg.data(), take);
  fuse_init_out out{};
  out.major = kProtocolMajor;
  out.minor = kProtocolMinor;
  if (in.major != kProtocolMajor) {
    // The kernel speaks another major version: answer ours; it retries or gives up.
    reply->fixed.assign(reinterpret_cast<const char*>(&out), sizeof(out));
    return;
  }
  std::uint64_t offered = in.flags;
  if ((in.flags & FUSE_INIT_EXT) != 0) offered |= std::uint64_t{in.flags2} << 32;
  std::uint64_t wanted = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_ASYNC_DIO | FUSE_PARALLEL_DIROPS |
                         FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO | FUSE_MAX_PAGES |
                         FUSE_CACHE_SYMLINKS | FUSE_INIT_EXT;
  if (options_.writeback_cache) wanted |= FUSE_WRITEBACK_CACHE;
  if (options_.offer_io_uring) wanted |= kFuseOverIoUring;
  const std::uint64_t flags = offered & wanted;
  out.flags = static_cast<std::uint32_t>(flags);
  out.flags2 = static_cast<std::uint32_t>(flags >> 32);
  out.max_readahead = in.max_readahead;
  out.max_background = kMaxBackground;
  out.congestion_threshold = kCongestionThreshold;
  out.max_write = options_.max_write_bytes;
  out.time_gran = 1;
  out.max_pages = static_cast<std::uint16_t>(options_.max_write_bytes / 4096);
  // Before 7.23 the reply was 24 bytes long; the kernel checks the length it expects.
  const std::size_t size = in.minor < 23 ? 24 : sizeof(out);
  reply->fixed.assign(reinterpret_cast<const char*>(&out), size);
  negotiated_.store(flags, std::memory_order_relaxed);
  {
    std::lock_guard lock(init_mutex_);
    initialized_.store(true, std::memory_order_release);
  }
  init_done_.notify_all();
}

io::Task<void> FuseHandler::Dispatch(const fuse_in_header& header, std::string_view arg,
                                     FuseReply* reply) {
  const std::uint64_t ino = header.nodeid;
  std::uint64_t entry_sec = 0;
  std::uint32_t entry_nsec = 0;
  std::uint64_t attr_sec = 0;
  std::uint32_t attr_nsec = 0;
  SplitTimeout(options_.entry_timeout_sec, &entry_sec, &entry_nsec);
  SplitTimeout(options_.attr_timeout_sec, &attr_sec, &attr_nsec);
  auto entry_reply = [&](const EntryOut& entry) {
    fuse_entry_out out{};
    out.nodeid = entry.ino;
    out.entry_valid = entry_sec;
    out.entry_valid_nsec = entry_nsec;
    out.attr_valid = attr_sec;
    out.attr_valid_nsec = attr_nsec;
    FillAttr(entry.ino, entry.attr, &out.attr);
    Append(&reply->fixed, out);
  };
  auto attr_reply = [&](const InodeRecord& rec) {
    fuse_attr_out out{};
    out.attr_valid = attr_sec;
    out.attr_valid_nsec = attr_nsec;
    FillAttr(ino, rec, &out.attr);
    Append(&reply->fixed, out);
  };
  const Caller caller{header.uid, header.gid};
  int err = 0;
  switch (header.opcode) {
    case FUSE_INIT:
      Init(arg, reply);
      co_return;
    case FUSE_DESTROY:
      co_return;
    case FUSE_INTERRUPT:
      // Requests finish quickly or not at all; an interrupt changes nothing.
      reply->none = true;
      co_return;
    case FUSE_FORGET: {
      reply->none = true;
      fuse_forget_in in{};
      if (TakeArg(&arg, &in)) fs_->Forget(ino, in.nlookup);
      co_return;
    }
    case FUSE_BATCH_FORGET: {
      reply->none = true;
      fuse_batch_forget_in in{};
      if (!TakeArg(&arg, &in)) co_return;
      for (std::uint32_t i = 0; i < in.count; ++i) {
        fuse_forget_one one{};
        if (!TakeArg(&arg, &one)) break;
        fs_->Forget(one.nodeid, one.nlookup);
      }
      co_return;
    }
    case FUSE_LOOKUP: {
      std::string_view name;
      if (!TakeName(&arg, &name)) break;
      EntryOut entry;
      err = co_await fs_->Lookup(ino, name, &entry);
      if (err == ENOENT && options_.entry_timeout_sec > 0) {
        // A negative entry: the kernel remembers the name is absent for the entry timeout.
        fuse_entry_out out{};
        out.entry_valid = entry_sec;
        out.entry_valid_nsec = entry_nsec;
        Append(&reply->fixed, out);
        co_return;
      }
      if (err == 0) entry_reply(entry);
      reply->error = err;
      co_return;
    }
    case FUSE_GETATTR: {
      InodeRecord rec;
      err = co_await fs_->GetAttr(ino, &rec);
      if (err == 0) attr_reply(rec);
      reply->error = err;
      co_return;
    }
    case FUSE_SETATTR: {
      fuse_setattr_in in{};
      if (!TakeArg(&arg, &in)) break;
      SetAttrIn set;
      if ((in.valid & FATTR_MODE) != 0) {
        set.valid |= SetAttrIn::kMode;
        set.mode = in.mode;
      }
      if ((in.valid & FATTR_UID) != 0) {
        set.valid |= SetAttrIn::kUid;
        set.uid = in.uid;
      }
      if ((in.valid & FATTR_GID) != 0) {
        set.valid |= SetAttrIn::kGid;
        set.gid = in.gid;
      }
      if ((in.valid & FATTR_SIZE) != 0) {
        set.valid |= SetAttrIn::kSize;
        set.size = in.size;
      }
      if ((in.valid & FATTR_ATIME_NOW) != 0) {
        set.valid |= SetAttrIn::kAtimeNow;
      } else if ((in.valid & FATTR_ATIME) != 0) {
        set.valid |= SetAttrIn::kAtime;
        set.atime_ns = JoinNs(in.atime, in.atimensec);
      }
      if ((in.valid & FATTR_MTIME_NOW) != 0) {
        set.valid |= SetAttrIn::kMtimeNow;
      } else if ((in.valid & FATTR_MTIME) != 0) {
        set.valid |= SetAttrIn::kMtime;
        set.mtime_ns = JoinNs(in.mtime, in.mtimensec);
      }
      if ((in.valid & FATTR_CTIME) != 0) {
        set.valid |= SetAttrIn::kCtime;
        set.ctime_ns = JoinNs(in.ctime, in.ctimensec);
      }
      InodeRecord rec;
      err = co_await fs_->SetAttr(ino, set, &rec);
      if (err == 0) attr_reply(rec);
      reply->error = err;
      co_return;
    }
    case FUSE_READLINK: {
      err = co_await fs_->ReadLink(ino, &reply->data);
      reply->error = err;
      co_return;
    }
    case FUSE_SYMLINK: {
      std::string_view name;
      std::string_view target;
      if (!TakeName(&arg, &name) || !TakeName(&arg, &target)) break;
      EntryOut entry;
      err = co_await fs_->Symlink(ino, name, target, caller, &entry);
      if (err == 0) entry_reply(entry);
      reply->error = err;
      co_return;
    }
    case FUSE_MKNOD: {
      fuse_mknod_in in{};
      std::string_view name;
      if (!TakeArg(&arg, &in) || !TakeName(&arg, &name)) break;
      EntryOut entry;
      err = co_await fs_->MakeNode(ino, name, in.mode, in.rdev, caller, &entry);
      if (err == 0) entry_reply(entry);
      reply->error = err;
      co_return;
    }
    case FUSE_MKDIR: {
      fuse_mkdir_in in{};
      std::string_view name;
      if (!TakeArg(&arg, &in) || !TakeName(&arg, &name)) break;
      EntryOut entry;
      err = co_await fs_->MakeNode(ino, name, S_IFDIR | (in.mode & 07777), 0, caller, &entry);
      if (err == 0) entry_reply(entry);
      reply->error = err;
      co_return;
    }
    case FUSE_UNLINK:
    case FUSE_RMDIR: {
      std::string_view name;
      if (!TakeName(&arg, &name)) break;
      if (header.opcode == FUSE_UNLINK) {
        err = co_await fs_->Unlink(ino, name);
      } else {
        err = co_await fs_->Rmdir(ino, name);
      }
      reply->error = err;
      co_return;
    }
    case FUSE_RENAME:
    case FUSE_RENAME2: {
      std::uint64_t new_dir = 0;
      std::uint32_t flags = 0;
      if (header.opcode == FUSE_RENAME) {
        fuse_rename_in in{};
        if (!TakeArg(&arg, &in)) break;
        new_dir = in.newdir;
      } else {
        fuse_rename2_in in{};
        if (!TakeArg(&arg, &in)) break;
        new_dir = in.newdir;
        flags = in.flags;
      }
      std::string_view name;
      std::string_view new_name;
      if (!TakeName(&arg, &name) || !TakeName(&arg, &new_name)) break;
      err = co_await fs_->Rename(ino, name, new_dir, new_name, flags);
      reply->error = err;
      co_return;
    }
    case FUSE_LINK: {
      fuse_link_in in{};
      std::string_view name;
      if (!TakeArg(&arg, &in) || !TakeName(&arg, &name)) break;
      EntryOut entry;
      err = co_await fs_->Link(in.oldnodeid, ino, name, &entry);
      if (err == 0) entry_reply(entry);
      reply->error = err;
      co_return;
    }
    case FUSE_OPEN:
    case FUSE_CREATE: {
      EntryOut entry;
      if (header.opcode == FUSE_CREATE) {
        fuse_create_in in{};
        std::string_view name;
        if (!TakeArg(&arg, &in) || !TakeName(&arg, &name)) break;
        err = co_await fs_->MakeNode(ino, name, S_IFREG | (in.mode & 07777), 0, caller, &entry);
        if (err == 0) err = co_await fs_->Open(entry.ino, false);
        if (err != 0) {
          if (entry.ino != 0) fs_->Forget(entry.ino, 1);
          reply->error = err;
          co_return;
        }
        entry_reply(entry);
      } else {
        fuse_open_in in{};
        if (!TakeArg(&arg, &in)) break;
        err = co_await fs_->Open(ino, false);
        if (err != 0) {
          reply->error = err;
          co_return;
        }
      }
      fuse_open_out out{};
      // The page cache survives a reopen: nothing but this daemon changes the files.
      out.open_flags = FOPEN_KEEP_CACHE;
      Append(&reply->fixed, out);
      co_return;
    }
    case FUSE_READ: {
      fuse_read_in in{};
      if (!TakeArg(&arg, &in)) break;
      err = co_await fs_->Read(ino, in.offset, std::min(in.size, options_.max_write_bytes),
                               &reply->data);
      reads_.fetch_add(1, std::memory_order_relaxed);
      read_bytes_.fetch_add(reply->data.size(), std::memory_order_relaxed);
      reply->error = err;
      co_return;
    }
    case FUSE_WRITE: {
      fuse_write_in in{};
      if (!TakeArg(&arg, &in) || arg.size() < in.size) break;
      const Filesystem::WriteTimes times = (in.write_flags & FUSE_WRITE_CACHE) != 0
                                               ? Filesystem::WriteTimes::kKernelOwns
                                               : Filesystem::WriteTimes::kStampNow;
      err = co_await fs_->Write(ino, in.offset, arg.substr(0, in.size), times);
      writes_.fetch_add(1, std::memory_order_relaxed);
      if (err == 0) {
        write_bytes_.fetch_add(in.size, std::memory_order_relaxed);
        fuse_write_out out{};
        out.size = in.size;
        Append(&reply->fixed, out);
      }
      reply->error = err;
      co_return;
    }
    case FUSE_STATFS: {
      struct statvfs vfs {};
      err = co_await fs_->StatFs(&vfs);
      if (err == 0) {
        fuse_statfs_out out{};
        out.st.blocks = vfs.f_blocks;
        out.st.bfree = vfs.f_bfree;
        out.st.bavail = vfs.f_bavail;
        out.st.files = vfs.f_files;
        out.st.ffree = vfs.f_ffree;
        out.st.bsize = static_cast<std::uint32_t>(vfs.f_bsize);
        out.st.namelen = static_cast<std::uint32_t>(vfs.f_namemax);
        out.st.frsize = static_cast<std::uint32_t>(vfs.f_frsize);
        Append(&reply->fixed, out);
      }
      reply->error = err;
      co_return;
    }
    case FUSE_RELEASE: {
      err = co_await fs_->Release(ino);
      reply->error = err;
      co_return;
    }
    case FUSE_FLUSH: {
      err = co_await fs_->Flush(ino);
      reply->error = err;
      co_return;
    }
    case FUSE_FSYNC: {
      err = co_await fs_->Fsync(ino);
      reply->error = err;
      co_return;
    }
    case FUSE_FSYNCDIR:
    case FUSE_SYNCFS: {
      err = co_await fs_->SyncAll();
      reply->error = err;
      co_return;
    }
    case FUSE_OPENDIR: {
      fuse_open_out out{};
      {
        std::lock_guard lock(listings_mutex_);
        out.fh = next_dir_handle_++;
        listing_end_[out.fh] = 0;
      }
      Append(&reply->fixed, out);
      co_return;
    }
    case FUSE_RELEASEDIR: {
      fuse_release_in in{};
      if (!TakeArg(&arg, &in)) break;
      std::lock_guard lock(listings_mutex_);
      listing_end_.erase(in.fh);
      co_return;
    }
    case FUSE_READDIR:
    case FUSE_READDIRPLUS: {
      fuse_read_in in{};
      if (!TakeArg(&arg, &in)) break;
      const bool plus = header.opcode == FUSE_READDIRPLUS;
      const std::size_t limit = std::min(in.size, options_.max_write_bytes);
      std::string& buf = reply->data;
      auto emit = [&](std::string_view name, std::uint64_t child, std::uint32_t mode,
                      std::uint64_t next_cookie, const InodeRecord* attr) {
        const std::size_t name_offset = plus ? FUSE_NAME_OFFSET_DIRENTPLUS : FUSE_NAME_OFFSET;
        const std::size_t entry_size = FUSE_DIRENT_ALIGN(name_offset + name.size());
        if (buf.size() + entry_size > limit) return false;
        const std::size_t at = buf.size();
        buf.resize(at + entry_size, '\0');
        fuse_dirent dirent{};
        dirent.ino = child;
        dirent.off = next_cookie;
        dirent.namelen = static_cast<std::uint32_t>(name.size());
        dirent.type = (mode & S_IFMT) >> 12;
        char* p = buf.data() + at;
        if (plus) {
          fuse_entry_out entry{};
          if (attr != nullptr && name != "." && name != "..") {
            entry.nodeid = child;
            entry.entry_valid = entry_sec;
            entry.entry_valid_nsec = entry_nsec;
            entry.attr_valid = attr_sec;
            entry.attr_valid_nsec = attr_nsec;
            FillAttr(child, *attr, &entry.attr);
          }
          std::memcpy(p, &entry, sizeof(entry));
          p += sizeof(entry);
        }
        std::memcpy(p, &dirent, FUSE_NAME_OFFSET);
        std::memcpy(p + FUSE_NAME_OFFSET, name.data(), name.size());
        return true;
      };
      std::uint64_t listing_end = 0;
      {
        std::lock_guard lock(listings_mutex_);
        if (auto found = listing_end_.find(in.fh); found != listing_end_.end()) {
          listing_end = found->second;
        }
      }
      err = co_await fs_->ReadDir(ino, in.offset, plus, emit, &listing_end);
      if (in.offset == 0) {
        std::lock_guard lock(listings_mutex_);
        if (auto found = listing_end_.find(in.fh); found != listing_end_.end()) {
          found->second = listing_end;
        }
      }
      reply->error = err;
      co_return;
    }
    case FUSE_SETXATTR: {
      // Without FUSE_SETXATTR_EXT negotiated, the argument is the 8-byte compat form.
      std::uint32_t size = 0;
      std::uint32_t flags = 0;
      std::string_view name;
      if (!TakeArg(&arg, &size) || !TakeArg(&arg, &flags) || !TakeName(&arg, &name) ||
          arg.size() < size) {
        break;
      }
      err = co_await fs_->SetXattr(ino, name, arg.substr(0, size), flags);
      reply->error = err;
      co_return;
    }
    case FUSE_GETXATTR:
    case FUSE_LISTXATTR: {
      fuse_getxattr_in in{};
      if (!TakeArg(&arg, &in)) break;
      std::string value;
      if (header.opcode == FUSE_GETXATTR) {
        std::string_view name;
        if (!TakeName(&arg, &name)) break;
        err = co_await fs_->GetXattr(ino, name, &value);
      } else {
        err = co_await fs_->ListXattr(ino, &value);
      }
      if (err == 0) {
        if (in.size == 0) {
          fuse_getxattr_out out{};
          out.size = static_cast<std::uint32_t>(value.size());
          Append(&reply->fixed, out);
        } else if (value.size() > in.size) {
          err = ERANGE;
        } else {
          reply->data = std::move(value);
        }
      }
      reply->error = err;
      co_return;
    }
    case FUSE_REMOVEXATTR: {
      std::string_view name;
      if (!TakeName(&arg, &name)) break;
      err = co_await fs_->RemoveXattr(ino, name);
      reply->error = err;
      co_return;
    }
    case FUSE_FALLOCATE: {
      fuse_fallocate_in in{};
      if (!TakeArg(&arg, &in)) break;
      err = co_await fs_->Fallocate(ino, in.mode, in.offset, in.length);
      reply->error = err;
      co_return;
    }
    case FUSE_LSEEK: {
      fuse_lseek_in in{};
      if (!TakeArg(&arg, &in)) break;
      std::uint64_t offset = 0;
      err = co_await fs_->Lseek(ino, in.offset, static_cast<int>(in.whence), &offset);
      if (err == 0) {
        fuse_lseek_out out{};
        out.offset = offset;
        Append(&reply->fixed, out);
      }
      reply->error = err;
      co_return;
    }
    default:
      // ACCESS (default_permissions checks in the kernel), locks (the kernel keeps them
      // locally), ioctl, poll, bmap, copy_file_range, tmpfile: the kernel stops asking.
      reply->error = ENOSYS;
      co_return;
  }
  // A `break` above: the request was shorter than its opcode's arguments.
  if (options_.log) {
    options_.log("malformed FUSE request (opcode " + std::to_string(header.opcode) + ")");
  }
  reply->error = EIO;
}

}  // namespace cascadefs::fusefs
