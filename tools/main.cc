// main.cc: the `cascadefs` command line.
//
// Subcommands (mount, umount, serve, keygen, fsck, inspect, gc, status) join this binary as
// their issues land; this file parses the command line with CLI11 and turns every failure into
// the one-line error and exit code of STYLE.md ("cascadefs <command>: <path or key>: <cause>").
// It is the only place that catches an exception: CLI11 reports parse errors by throwing.
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

namespace {

constexpr const char* kVersion = "0.1.0";

int Run(int argc, char** argv) {
  CLI::App app{"cascadefs: a FUSE filesystem of content-addressed chunks in an LSM engine"};
  app.set_version_flag("--version", std::string("cascadefs ") + kVersion);
  app.require_subcommand(0, 1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "cascadefs: {}\n", e.what());
    return 2;
  }
  if (argc == 1) {
    fmt::print(stderr, "{}", app.help());
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // CLI11 and fmt report failures by throwing; nothing else in the binary does. Whatever
  // escapes becomes the one-line error, never a stack trace.
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cascadefs: %s\n", e.what());
    return 8;
  }
}
