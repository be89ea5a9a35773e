#include "cache_file.h"

#include <unistd.h>

#include <cerrno>
#include <string>

namespace cascadefs::cache {

namespace {
constexpr int kRetriesMax = 64;  // EINTR or zero-progress retries before giving up
}

Status PreadFull(int fd, char* buffer, std::size_t size_bytes, std::uint64_t offset) {
  std::size_t done = 0;
  int retries = 0;
  while (done < size_bytes) {
    const ssize_t n =
        ::pread(fd, buffer + done, size_bytes - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR && ++retries < kRetriesMax) continue;
      return Status::FromErrno(errno, "pread at offset " + std::to_string(offset + done));
    }
    if (n == 0) {
      return Status::Corruption("end of file at offset " + std::to_string(offset + done));
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::OK();
}

Status PwriteFull(int fd, const char* buffer, std::size_t size_bytes, std::uint64_t offset) {
  std::size_t done = 0;
  int retries = 0;
  while (done < size_bytes) {
    const ssize_t n =
        ::pwrite(fd, buffer + done, size_bytes - done, static_cast<off_t>(offset + done));
    if (n < 0 || (n == 0 && ++retries >= kRetriesMax)) {
      if (n < 0 && errno == EINTR && ++retries < kRetriesMax) continue;
      return Status::FromErrno(n < 0 ? errno : EIO,
                               "pwrite at offset " + std::to_string(offset + done));
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::OK();
}

}  // namespace cascadefs::cache
