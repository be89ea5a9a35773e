// cache_file.h: whole-buffer pread/pwrite on the cache file descriptor.
//
// Short transfers are continued and EINTR retried (bounded by kRetriesMax); anything else
// becomes a Status with the file offset as context. A read that reaches end of file early is
// Corruption (the file is shorter than its geometry says).
//
// Thread safety: plain system calls on a shared descriptor; positional, so concurrent calls on
// different ranges are safe.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/status.h"

namespace cascadefs::cache {

Status PreadFull(int fd, char* buffer, std::size_t size_bytes, std::uint64_t offset);
Status PwriteFull(int fd, const char* buffer, std::size_t size_bytes, std::uint64_t offset);

}  // namespace cascadefs::cache
