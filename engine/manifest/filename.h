// filename.h: the names of the files in a cascade store directory, made and parsed.
//
// A store directory holds (docs/formats/manifest.md, "File names"):
//   NNNNNN.sst        an SST (engine/sst)
//   NNNNNN.wal        a WAL segment (engine/wal)
//   NNNNNN.vlog       a value log file (the compaction issue; named here already)
//   NNNNNN.dbtmp      a temporary file, renamed over its target once synced (CURRENT)
//   MANIFEST-NNNNNN   a manifest: the log of VersionEdits (manifest_log.h)
//   CURRENT           the name of the manifest in use (current_file.h)
//   LOCK              locked while a process has the store open (Env::LockFile)
// NNNNNN is a file number in decimal, zero-padded to 6 digits and wider when it needs more
// (1 -> "000001", 1234567 -> "1234567"). All numbered files share one counter (the manifest's
// next file number), so a number names at most one file of the store.
//
// Parsing accepts exactly the names this file makes: a number written any other way
// ("12.sst", "0001234567.sst", "+12.sst") is not ours, and ParseFileName returns false for it.
// So every file has one name, and a store's garbage collection never mistakes a foreign file
// for one of its own.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cascadefs::engine {

enum class FileType : std::uint8_t {
  kSst = 0,
  kWal = 1,
  kVlog = 2,
  kTemp = 3,
  kManifest = 4,
  kCurrent = 5,
  kLock = 6,
};

// Digits a file number is padded to. Numbers of more digits are written in full.
inline constexpr int kFileNumberDigitsMin = 6;
// Digits of the largest file number (2^64 - 1).
inline constexpr int kFileNumberDigitsMax = 20;

// The name (no directory) of the file of `type` and `number`, such as "000012.sst" or
// "MANIFEST-000003". For kCurrent and kLock the number is ignored.
std::string BaseFileName(FileType type, std::uint64_t number);

// Paths in directory `dir`: "<dir>/<name>". REQUIRES: dir is not empty.
std::string SstFileName(std::string_view dir, std::uint64_t number);
std::string WalFileName(std::string_view dir, std::uint64_t number);
std::string VlogFileName(std::string_view dir, std::uint64_t number);
std::string TempFileName(std::string_view dir, std::uint64_t number);
std::string ManifestFileName(std::string_view dir, std::uint64_t number);
std::string CurrentFileName(std::string_view dir);
std::string LockFileName(std::string_view dir);

// Parses a name (no directory) made by BaseFileName. True, with *number and *type set, when
// `name` is one; *number is 0 for CURRENT and LOCK. False, leaving both unchanged, for any
// other name (a foreign file, a number not written as BaseFileName writes it, a number that
// overflows 64 bits).
bool ParseFileName(std::string_view name, std::uint64_t* number, FileType* type);

// Parses a canonical file number ("000012", "1234567"): the digits part of a name. False for
// anything else, including numbers above 2^64 - 1.
bool ParseFileNumber(std::string_view digits, std::uint64_t* number);

}  // namespace cascadefs::engine
