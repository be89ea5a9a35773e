// merging_iterator.h: one ordered stream over several internal iterators.
//
// The merge of the memtables' and every SST's iterators: each position is the smallest
// (forward) or largest (backward) current key among the children. Children are few (two
// memtables, the level-0 files and one per deeper level), so the smallest is found by a
// linear scan rather than a heap. Equal internal keys cannot occur (sequence numbers are
// unique), so the order is total.
//
// Thread safety: one task at a time, like every InternalIterator.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "db/internal_iterator.h"
#include "engine/result.h"

namespace cascadefs::engine {

std::unique_ptr<InternalIterator> NewMergingIterator(
    std::vector<std::unique_ptr<InternalIterator>> children);

// An iterator that creates its real iterator on first positioning, by awaiting `open` (an
// SST's iterator needs the table opened, which is I/O; creating a DB iterator does none).
using IteratorOpener = std::function<io::Task<Result<std::unique_ptr<InternalIterator>>>()>;
std::unique_ptr<InternalIterator> NewLazyIterator(IteratorOpener open);

}  // namespace cascadefs::engine
