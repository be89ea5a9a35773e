// ignore.h: the `.cascadeignore` file at a synced mount's root, in gitignore syntax.
//
// One pattern per line; blank lines and lines starting with '#' are skipped; a leading '!'
// re-includes what an earlier pattern excluded; a trailing '/' matches directories only; a
// pattern with a '/' elsewhere is anchored at the root, one without matches a name at any
// depth; '*' and '?' never match '/', '[...]' is a class, and a "**" component matches any
// number of components. The last pattern that matches decides. As in git, nothing under an
// ignored directory is looked at, so it cannot be re-included. Paths are relative to the root.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cascadefs::fusefs::sync {

class IgnoreRules {
 public:
  IgnoreRules() = default;
  // Parses the file's text. Lines that are not patterns are skipped; never fails.
  static IgnoreRules Parse(std::string_view text);

  // True when `path` (a '/'-separated relative path) is ignored by the rules themselves,
  // not counting its parents; Ignored() adds the parents.
  bool Matches(std::string_view path, bool is_directory) const;
  // True when `path` or one of its parent directories is ignored.
  bool Ignored(std::string_view path, bool is_directory) const;
  bool empty() const { return patterns_.empty(); }

 private:
  struct Pattern {
    std::vector<std::string> components;  // split on '/'; "**" components kept as is
    bool negated = false;
    bool directory_only = false;
    bool anchored = false;
  };
  std::vector<Pattern> patterns_;
};

// The name a losing version gets in a conflict: "name (conflicted copy from HOST DATE).ext"
// (the extension is what follows the last '.', unless the name starts with it). `date` is
// "YYYY-MM-DD". Shortened to at most 255 bytes by cutting the stem.
std::string ConflictedCopyName(std::string_view name, std::string_view host, std::string_view date);

}  // namespace cascadefs::fusefs::sync
