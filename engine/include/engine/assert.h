// assert.h: CFS_ASSERT and CFS_DASSERT, the project's assertions (header-only).
//
// CFS_ASSERT(cond) is compiled into every build: a false condition is a programmer error, so it
// prints file:line and the condition to stderr and aborts. CFS_DASSERT(cond) is for O(n) checks
// and is compiled only when NDEBUG is not defined (debug and test builds).
//
// Never assert on bytes read from disk or received from a peer: verify and return
// Status::Corruption instead (STYLE.md, "Assertions").
#pragma once

#include <cstdio>
#include <cstdlib>

namespace cascadefs::detail {

[[noreturn]] inline void AssertFailed(const char* file, int line, const char* condition) {
  std::fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, condition);
  std::fflush(stderr);
  std::abort();
}

}  // namespace cascadefs::detail

#define CFS_ASSERT(cond)                                            \
  do {                                                              \
    if (__builtin_expect(!(cond), 0)) {                             \
      ::cascadefs::detail::AssertFailed(__FILE__, __LINE__, #cond); \
    }                                                               \
  } while (0)

#ifdef NDEBUG
#define CFS_DASSERT(cond) \
  do {                    \
  } while (0 && (cond))
#else
#define CFS_DASSERT(cond) CFS_ASSERT(cond)
#endif
