// filename.cc: making and parsing store file names (filename.h).
#include "manifest/filename.h"

#include <cstdio>
#include <limits>

#include "engine/assert.h"

namespace cascadefs::engine {
namespace {

constexpr std::string_view kSstSuffix = ".sst";
constexpr std::string_view kWalSuffix = ".wal";
constexpr std::string_view kVlogSuffix = ".vlog";
constexpr std::string_view kTempSuffix = ".dbtmp";
constexpr std::string_view kManifestPrefix = "MANIFEST-";
constexpr std::string_view kCurrentName = "CURRENT";
constexpr std::string_view kLockName = "LOCK";

std::string FormatNumber(std::uint64_t number) {
  char buf[kFileNumberDigitsMax + 1];
  const int length = std::snprintf(buf, sizeof(buf), "%0*llu", kFileNumberDigitsMin,
                                   static_cast<unsigned long long>(number));
  CFS_ASSERT(length >= kFileNumberDigitsMin);
  CFS_ASSERT(length <= kFileNumberDigitsMax);
  return std::string(buf, static_cast<std::size_t>(length));
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  CFS_ASSERT(!dir.empty());
  std::string path;
  path.reserve(dir.size() + 1 + name.size());
  path.append(dir);
  path.push_back('/');
  path.append(name);
  return path;
}

}  // namespace

std::string BaseFileName(FileType type, std::uint64_t number) {
  switch (type) {
    case FileType::kSst:
      return FormatNumber(number).append(kSstSuffix);
    case FileType::kWal:
      return FormatNumber(number).append(kWalSuffix);
    case FileType::kVlog:
      return FormatNumber(number).append(kVlogSuffix);
    case FileType::kTemp:
      return FormatNumber(number).append(kTempSuffix);
    case FileType::kManifest:
      return std::string(kManifestPrefix).append(FormatNumber(number));
    case FileType::kCurrent:
      return std::string(kCurrentName);
    case FileType::kLock:
      return std::string(kLockName);
  }
  CFS_ASSERT(false && "unknown FileType");
  return {};
}

std::string SstFileName(std::string_view dir, std::uint64_t number) {
  return JoinPath(dir, BaseFileName(FileType::kSst, number));
}
std::string WalFileName(std::string_view dir, std::uint64_t number) {
  return JoinPath(dir, BaseFileName(FileType::kWal, number));
}
std::string VlogFileName(std::string_view dir, std::uint64_t number) {
  return JoinPath(dir, BaseFileName(FileType::kVlog, number));
}
std::string TempFileName(std::string_view dir, std::uint64_t number) {
  return JoinPath(dir, BaseFileName(FileType::kTemp, number));
}
std::string ManifestFileName(std::string_view dir, std::uint64_t number) {
  return JoinPath(dir, BaseFileName(FileType::kManifest, number));
}
std::string CurrentFileName(std::string_view dir) { return JoinPath(dir, kCurrentName); }
std::string LockFileName(std::string_view dir) { return JoinPath(dir, kLockName); }

bool ParseFileNumber(std::string_view digits, std::uint64_t* number) {
  if (digits.size() < static_cast<std::size_t>(kFileNumberDigitsMin)) return false;
  if (digits.size() > static_cast<std::size_t>(kFileNumberDigitsMax)) return false;
  // Padding zeros only up to the minimum width: a wider number has no leading zero.
  if (digits.size() > static_cast<std::size_t>(kFileNumberDigitsMin) && digits[0] == '0') {
    return false;
  }
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t value = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (kMax - digit) / 10) return false;  // value * 10 + digit would overflow
    value = value * 10 + digit;
  }
  *number = value;
  return true;
}

bool ParseFileName(std::string_view name, std::uint64_t* number, FileType* type) {
  if (name == kCurrentName) {
    *number = 0;
    *type = FileType::kCurrent;
    return true;
  }
  if (name == kLockName) {
    *number = 0;
    *type = FileType::kLock;
    return true;
  }
  std::uint64_t value = 0;
  if (name.starts_with(kManifestPrefix)) {
    if (!ParseFileNumber(name.substr(kManifestPrefix.size()), &value)) return false;
    *number = value;
    *type = FileType::kManifest;
    return true;
  }
  struct Suffix {
    std::string_view text;
    FileType type;
  };
  constexpr Suffix kSuffixes[] = {
      {kSstSuffix, FileType::kSst},
      {kWalSuffix, FileType::kWal},
      {kVlogSuffix, FileType::kVlog},
      {kTempSuffix, FileType::kTemp},
  };
  for (const Suffix& suffix : kSuffixes) {
    if (!name.ends_with(suffix.text)) continue;
    if (!ParseFileNumber(name.substr(0, name.size() - suffix.text.size()), &value)) return false;
    *number = value;
    *type = suffix.type;
    return true;
  }
  return false;
}

}  // namespace cascadefs::engine
