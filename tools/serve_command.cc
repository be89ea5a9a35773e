// serve_command.cc: `cascadefs serve` (the sync hub, in the foreground) and `cascadefs keygen`
// (docs/sync.md). serve runs until SIGTERM or SIGINT, then closes the hub cleanly: the
// listener stops, connections close, the writer drains and the store is closed.
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "commands.h"
#include "hub/hub.h"
#include "net/connection.h"

namespace cascadefs::tools {

int RunKeygen(const std::string& path) {
  Status written = net::WriteNewKeyFile(path);
  if (!written.ok()) {
    fmt::print(stderr, "cascadefs keygen: {}\n", written.message());
    return 1;
  }
  fmt::print("wrote a new key to {} (mode 0600): give it to the hub and every synced mount\n",
             path);
  return 0;
}

int RunServe(const ServeArgs& args) {
  Result<net::HostPort> address = net::ParseHostPort(args.listen);
  if (!address.ok()) {
    fmt::print(stderr, "cascadefs serve: --listen {}: {}\n", args.listen,
               address.status().message());
    return 2;
  }
  Result<net::PresharedKey> key = net::LoadKeyFile(args.key);
  if (!key.ok()) {
    fmt::print(stderr, "cascadefs serve: {}\n", key.status().message());
    return 1;
  }
  // Block the stop signals before any thread starts, so every thread inherits the mask and
  // sigwait below is the only one to take them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  hub::HubOptions options;
  options.store_dir = args.store;
  options.retention_sec = std::uint64_t{args.retention_days} * 24 * 3600;
  options.cache_size_bytes = std::uint64_t{args.cache_size_mb} << 20;
  options.log = [](std::string_view line) {
    fmt::print(stderr, "cascadefs serve: {}\n", line);
    std::fflush(stderr);
  };
  Result<std::unique_ptr<hub::Hub>> hub = hub::Hub::Open(options);
  if (!hub.ok()) {
    fmt::print(stderr, "cascadefs serve: {}\n", hub.status().message());
    return 1;
  }
  Status listening = hub.value()->Listen(address.value(), key.value());
  if (!listening.ok()) {
    fmt::print(stderr, "cascadefs serve: {}: {}\n", args.listen, listening.message());
    Status closed = hub.value()->Close();
    (void)closed;
    return 1;
  }
  fmt::print(stderr, "cascadefs serve: serving {} on {}:{}\n", args.store, address.value().host,
             hub.value()->port());
  std::fflush(stderr);
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  fmt::print(stderr, "cascadefs serve: stopping ({})\n", strsignal(signal_number));
  Status closed = hub.value()->Close();
  if (!closed.ok()) {
    fmt::print(stderr, "cascadefs serve: {}: {}\n", args.store, closed.message());
    return 1;
  }
  return 0;
}

}  // namespace cascadefs::tools
