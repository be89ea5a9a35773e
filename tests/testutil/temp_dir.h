// temp_dir.h: a fresh directory on disk for one test, removed with everything in it.
//
// Lives under $TMPDIR or /var/tmp (a real disk here: /tmp may be tmpfs, which lacks
// O_DIRECT and behaves differently on sync).
#pragma once

#include <string>

namespace cascadefs::testutil {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace cascadefs::testutil
