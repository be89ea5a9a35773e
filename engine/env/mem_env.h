// mem_env.h: an Env whose files live in memory, for fast tests.
//
// Same contract and errors as the scheduler Env (env.h), without a disk: files are byte
// strings in a map keyed by path; directories are a set of paths. Every operation completes
// without suspending. Durability is not modelled (everything is "durable" at once); FaultEnv
// (tests/testutil/fault_env.h) wraps any Env to simulate power cuts.
//
// Thread safety: all methods may be called from any thread; one mutex guards the maps, and a
// file's bytes are shared by every handle open on it (as with a real inode).
#pragma once

#include <memory>

#include "engine/env.h"

namespace cascadefs::engine {

std::unique_ptr<Env> NewMemEnv(io::Scheduler* scheduler);

}  // namespace cascadefs::engine
