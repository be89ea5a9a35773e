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
// Separated values (ValueType::kValuePointer): when the iterator lands on a visible entry
// whose value is a pointer, it reads the value through `resolver` before the move returns (only
// visible entries are read, never hidden versions); with `lazy_values`, only PrepareValue reads
// it and value() is empty until then (a key scan reads no value-log record).
//
// Thread safety: one caller at a time (Iterator's contract).
#pragma once

#include <functional>
#include <memory>

#include "db/dbformat.h"
#include "db/internal_iterator.h"
#include "engine/io/task.h"
#include "engine/iterator.h"
#include "engine/result.h"

namespace cascadefs::io {
class Scheduler;
}

namespace cascadefs::engine {

// Reads the value a pointer names for `user_key`.
using ValueResolver = std::function<io::Task<Result<std::string>>(std::string_view user_key,
                                                                  std::string_view pointer)>;

// `inner` is the merged stream; `keep_alive` is destroyed after it (it holds the memtables
// and the version the stream reads); blocking calls run on `scheduler`.
std::unique_ptr<Iterator> NewDBIterator(std::unique_ptr<InternalIterator> inner,
                                        SequenceNumber sequence, io::Scheduler* scheduler,
                                        std::shared_ptr<const void> keep_alive,
                                        ValueResolver resolver, bool lazy_values);

}  // namespace cascadefs::engine
