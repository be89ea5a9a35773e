#include "testutil/temp_dir.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "engine/assert.h"

namespace cascadefs::testutil {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base != nullptr && *base ? base : "/var/tmp") + "/cascadefs-test-XXXXXX";
  char* made = mkdtemp(pattern.data());
  CFS_ASSERT(made != nullptr);
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace cascadefs::testutil
