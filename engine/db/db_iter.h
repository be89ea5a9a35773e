// db_iter.h: the user-facing Iterator over a merged stream of internal keys.
//
// The merged stream holds every version of every key (newest first within a key) plus
// deletion markers. DBIter shows, for each user key, only the newest version at or below its
// sequence number, and hides keys whose newest such version is a deletion.
//
// Directions (the design of LevelDB's DBIter):
//  - kForward: the inner iterator sits on the entry that supplies key() and value().
//  - kReverse: the inner iterator sits just before every entry of key(); key() and value()
//    were copied into saved_key_ / saved_value_ while scanning backwards.
//
// Thread safety: one caller at a time (Iterator's contract).
#pragma once

#include <functional>
#include <memory>

#include "db/dbformat.h"
#include "db/internal_iterator.h"
#include "engine/iterator.h"

namespace cascadefs::io {
class Scheduler;
}

namespace cascadefs::engine {

// `inner` is the merged stream; `keep_alive` is destroyed after it (it holds the memtables
// and the version the stream reads); blocking calls run on `scheduler`.
std::unique_ptr<Iterator> NewDBIterator(std::unique_ptr<InternalIterator> inner,
                                        SequenceNumber sequence, io::Scheduler* scheduler,
                                        std::shared_ptr<const void> keep_alive);

}  // namespace cascadefs::engine
