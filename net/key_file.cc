// key_file.cc: the sync key file, one line "cascadefs-psk-v1 <64 hex digits>\n", mode 0600.
//
// The 32-byte secret comes from OpenSSL's RAND_bytes. The file is created with O_EXCL, so a key
// is never overwritten, and a key readable by group or others is refused at load: whoever can
// read it can join the sync. Buffers that held the secret are cleansed (OPENSSL_cleanse).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "net/connection.h"

namespace cascadefs::net {
namespace {

constexpr std::string_view kKeyPrefix = "cascadefs-psk-v1 ";
constexpr std::size_t kSecretBytes = sizeof(PresharedKey::secret);
// The whole file: prefix, 2 hex digits a byte, newline.
constexpr std::size_t kKeyFileBytes = kKeyPrefix.size() + 2 * kSecretBytes + 1;
static_assert(kKeyFileBytes == 82);

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // uppercase is not the format: the writer emits lowercase only
}

}  // namespace

Result<PresharedKey> LoadKeyFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, path);
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int error = errno;
    close(fd);
    return Status::FromErrno(error, path);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return Status::InvalidArgument(path + ": not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    close(fd);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::InvalidArgument(path + ": mode " + mode +
                                   ": must not be readable by group or others (chmod 600)");
  }
  // One byte more than a key file holds tells a longer file from a key.
  char buffer[kKeyFileBytes + 1];
  std::size_t size = 0;
  while (size < sizeof(buffer)) {
    const ssize_t n = read(fd, buffer + size, sizeof(buffer) - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      close(fd);
      OPENSSL_cleanse(buffer, sizeof(buffer));
      return Status::FromErrno(error, path);
    }
    if (n == 0) break;
    size += static_cast<std::size_t>(n);
  }
  close(fd);
  const std::string_view text(buffer, size);
  PresharedKey key;
  bool valid = size == kKeyFileBytes && text.substr(0, kKeyPrefix.size()) == kKeyPrefix &&
               text.back() == '\n';
  for (std::size_t i = 0; valid && i < kSecretBytes; ++i) {
    const int high = HexValue(text[kKeyPrefix.size() + 2 * i]);
    const int low = HexValue(text[kKeyPrefix.size() + 2 * i + 1]);
    valid = high >= 0 && low >= 0;
    key.secret[i] = static_cast<std::uint8_t>(high << 4 | low);
  }
  OPENSSL_cleanse(buffer, sizeof(buffer));
  if (!valid) {
    OPENSSL_cleanse(key.secret.data(), key.secret.size());
    return Status::InvalidArgument(
        path +
        ": not a cascadefs key (expected one line \"cascadefs-psk-v1 <64 lowercase hex "
        "digits>\"; make one with cascadefs keygen)");
  }
  return key;
}

Status WriteNewKeyFile(const std::string& path) {
  PresharedKey key;
  if (RAND_bytes(key.secret.data(), static_cast<int>(key.secret.size())) != 1) {
    return Status::IOError(path + ": OpenSSL RAND_bytes failed: no key written");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  char text[kKeyFileBytes];
  kKeyPrefix.copy(text, kKeyPrefix.size());
  for (std::size_t i = 0; i < kSecretBytes; ++i) {
    text[kKeyPrefix.size() + 2 * i] = kHex[key.secret[i] >> 4];
    text[kKeyPrefix.size() + 2 * i + 1] = kHex[key.secret[i] & 0xf];
  }
  text[kKeyFileBytes - 1] = '\n';
  OPENSSL_cleanse(key.secret.data(), key.secret.size());

  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int error = errno;
    OPENSSL_cleanse(text, sizeof(text));
    if (error == EEXIST) {
      return Status::InvalidArgument(path + ": exists: a key file is never overwritten");
    }
    return Status::FromErrno(error, path);
  }
  std::size_t written = 0;
  int error = 0;
  while (written < sizeof(text) && error == 0) {
    const ssize_t n = write(fd, text + written, sizeof(text) - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = errno;
    } else {
      written += static_cast<std::size_t>(n);
    }
  }
  OPENSSL_cleanse(text, sizeof(text));
  if (error == 0 && fsync(fd) != 0) error = errno;
  if (close(fd) != 0 && error == 0) error = errno;
  if (error != 0) {
    unlink(path.c_str());  // a half-written key is no key
    return Status::FromErrno(error, path);
  }
  return Status::OK();
}

}  // namespace cascadefs::net
