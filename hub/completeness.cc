// completeness.cc: the walk of a committed tree (completeness.h).
#include "completeness.h"

#include <utility>

namespace cascadefs::hub {

bool VerifiedNodes::Contains(const fusefs::ChunkName& name) const {
  std::lock_guard lock(mutex_);
  return names_.contains(name);
}

void VerifiedNodes::Add(const fusefs::ChunkName& name) {
  std::lock_guard lock(mutex_);
  if (names_.size() >= max_names_) names_.clear();  // the bound: forget, walk again later
  names_.insert(name);
}

void VerifiedNodes::Clear() {
  std::lock_guard lock(mutex_);
  names_.clear();
}

std::size_t VerifiedNodes::size() const {
  std::lock_guard lock(mutex_);
  return names_.size();
}

CompletenessWalk::CompletenessWalk(fusefs::ChunkStore* store, VerifiedNodes* verified,
                                   std::size_t names_max)
    : store_(store), verified_(verified), names_max_(names_max) {}

void CompletenessWalk::AddMissing(const fusefs::ChunkName& name) {
  std::lock_guard lock(mutex_);
  if (missing_.size() >= names_max_) return;
  if (missing_set_.insert(name).second) missing_.push_back(name);
}

io::Task<Result<FileVerdict>> CompletenessWalk::Check(std::string_view root_bytes) {
  Result<fusefs::FileRoot> root = fusefs::FileRoot::Decode(root_bytes);
  if (!root.ok()) co_return FileVerdict::kRejected;
  if (root.value().name.is_null()) co_return FileVerdict::kComplete;  // empty or all hole
  co_return co_await Walk(root.value().name, root.value().height);
}

io::Task<Result<FileVerdict>> CompletenessWalk::Walk(fusefs::ChunkName name, int level) {
  if (name.is_null()) co_return FileVerdict::kComplete;  // a hole names no chunk
  {
    std::lock_guard lock(mutex_);
    ++chunks_checked_;
  }
  if (level == 0) {
    Result<bool> has = co_await store_->Contains(name);
    if (!has.ok()) co_return has.status();
    if (!has.value()) {
      AddMissing(name);
      co_return FileVerdict::kMissing;
    }
    co_return FileVerdict::kComplete;
  }
  if (verified_->Contains(name)) co_return FileVerdict::kComplete;
  Result<std::string> bytes = co_await store_->Get(name);
  if (!bytes.ok()) {
    if (!bytes.status().IsNotFound()) co_return bytes.status();
    AddMissing(name);
    co_return FileVerdict::kMissing;
  }
  Result<fusefs::DecodedNode> node = fusefs::DecodeNode(bytes.value());
  if (!node.ok() || node.value().level != level) co_return FileVerdict::kRejected;
  std::vector<io::Task<Result<FileVerdict>>> children;
  children.reserve(node.value().entries.size());
  for (const fusefs::NodeEntry& entry : node.value().entries) {
    children.push_back(Walk(entry.name, level - 1));
  }
  std::vector<Result<FileVerdict>> verdicts = co_await io::WhenAll(std::move(children));
  FileVerdict out = FileVerdict::kComplete;
  for (Result<FileVerdict>& v : verdicts) {
    if (!v.ok()) co_return v.status();
    if (v.value() == FileVerdict::kRejected) co_return FileVerdict::kRejected;
    if (v.value() == FileVerdict::kMissing) out = FileVerdict::kMissing;
  }
  if (out == FileVerdict::kComplete) verified_->Add(name);
  co_return out;
}

}  // namespace cascadefs::hub
