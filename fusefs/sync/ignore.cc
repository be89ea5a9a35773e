// ignore.cc: gitignore-style matching for .cascadeignore (ignore.h).
#include "sync/ignore.h"

#include <fnmatch.h>

#include <algorithm>

namespace cascadefs::fusefs::sync {
namespace {

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t slash = path.find('/', start);
    const std::size_t end = slash == std::string_view::npos ? path.size() : slash;
    if (end > start) out.emplace_back(path.substr(start, end - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

bool ComponentMatches(const std::string& pattern, const std::string& name) {
  return fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

// Whether pattern components [pi..] match path components [ni..] exactly.
bool MatchFrom(const std::vector<std::string>& pattern, std::size_t pi,
               const std::vector<std::string>& names, std::size_t ni) {
  if (pi == pattern.size()) return ni == names.size();
  if (pattern[pi] == "**") {
    for (std::size_t skip = ni; skip <= names.size(); ++skip) {
      if (MatchFrom(pattern, pi + 1, names, skip)) return true;
    }
    return false;
  }
  if (ni == names.size()) return false;
  return ComponentMatches(pattern[pi], names[ni]) && MatchFrom(pattern, pi + 1, names, ni + 1);
}

}  // namespace

IgnoreRules IgnoreRules::Parse(std::string_view text) {
  IgnoreRules rules;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string line(text.substr(start, end - start));
    start = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    // Trailing spaces are dropped unless escaped ("\ ").
    while (!line.empty() && line.back() == ' ' &&
           !(line.size() >= 2 && line[line.size() - 2] == '\\')) {
      line.pop_back();
    }
    if (line.empty() || line[0] == '#') continue;
    Pattern pattern;
    if (line[0] == '!') {
      pattern.negated = true;
      line.erase(0, 1);
    } else if (line[0] == '\\' && line.size() > 1 && (line[1] == '#' || line[1] == '!')) {
      line.erase(0, 1);
    }
    if (!line.empty() && line.back() == '/') {
      pattern.directory_only = true;
      line.pop_back();
    }
    if (line.empty()) continue;
    pattern.anchored = line.find('/') != std::string::npos;
    pattern.components = SplitPath(line);
    if (pattern.components.empty()) continue;
    rules.patterns_.push_back(std::move(pattern));
  }
  return rules;
}

bool IgnoreRules::Matches(std::string_view path, bool is_directory) const {
  if (patterns_.empty()) return false;
  const std::vector<std::string> names = SplitPath(path);
  if (names.empty()) return false;
  bool ignored = false;
  for (const Pattern& pattern : patterns_) {
    if (pattern.directory_only && !is_directory) continue;
    bool match = false;
    if (pattern.anchored) {
      match = MatchFrom(pattern.components, 0, names, 0);
    } else {
      match = ComponentMatches(pattern.components[0], names.back());
    }
    if (match) ignored = !pattern.negated;
  }
  return ignored;
}

bool IgnoreRules::Ignored(std::string_view path, bool is_directory) const {
  if (patterns_.empty()) return false;
  for (std::size_t slash = path.find('/'); slash != std::string_view::npos;
       slash = path.find('/', slash + 1)) {
    if (Matches(path.substr(0, slash), true)) return true;
  }
  return Matches(path, is_directory);
}

std::string ConflictedCopyName(std::string_view name, std::string_view host,
                               std::string_view date) {
  std::size_t dot = name.rfind('.');
  if (dot == 0 || dot == std::string_view::npos) dot = name.size();
  std::string stem(name.substr(0, dot));
  const std::string ext(name.substr(dot));
  const std::string mark =
      " (conflicted copy from " + std::string(host) + " " + std::string(date) + ")";
  constexpr std::size_t kNameMax = 255;
  const std::size_t room =
      kNameMax > mark.size() + ext.size() ? kNameMax - mark.size() - ext.size() : 1;
  if (stem.size() > room) stem.resize(room);
  std::string out = stem + mark + ext;
  if (out.size() > kNameMax) out.resize(kNameMax);
  return out;
}

}  // namespace cascadefs::fusefs::sync
