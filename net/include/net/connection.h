// connection.h: TLS 1.3 connections keyed by a pre-shared key, carrying wire.h frames.
//
// Both ends hold the same key file (`cascadefs keygen FILE`). The handshake is TLS 1.3 with an
// external PSK (OpenSSL's psk_use_session / psk_find_session callbacks, cipher
// TLS_AES_256_GCM_SHA384, psk_dhe_ke for forward secrecy): a peer without the key fails the
// handshake and never gets a frame. No certificates.
//
// Blocking sockets: one thread uses a Connection at a time, except Shutdown, which any thread
// may call to make a blocked Send or Receive return Cancelled. Every wait has a deadline.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "engine/result.h"
#include "engine/status.h"
#include "net/wire.h"

namespace cascadefs::net {

// The key file: one line "cascadefs-psk-v1 <64 hex digits>\n", mode 0600.
struct PresharedKey {
  std::array<std::uint8_t, 32> secret{};
};
// NotFound / InvalidArgument naming `path` (a file that is not a key, or readable by others:
// then "mode 0644: must not be readable by group or others").
Result<PresharedKey> LoadKeyFile(const std::string& path);
// Writes a new random key (OpenSSL RAND_bytes) to `path`, created 0600 (O_EXCL);
// InvalidArgument when the file exists (never overwrites a key).
Status WriteNewKeyFile(const std::string& path);

// "HOST:PORT", "[v6]:PORT"; InvalidArgument naming the text otherwise.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
Result<HostPort> ParseHostPort(std::string_view text);

struct Frame {
  MessageType type = MessageType::kError;
  std::string payload;  // decompressed, <= kMessageBytesMax
};

// Frames of at most this many payload bytes are compressed at zstd level 19 whatever
// ConnectionOptions::zstd_level says (a small edit's bytes are worth a millisecond).
inline constexpr std::size_t kSmallFrameBytes = 64 << 10;

struct ConnectionOptions {
  // For frames sent over kSmallFrameBytes; 1..19. 9 compresses text about 15% smaller than 3
  // at ~90 MB/s per core here: the wire, not the CPU, is what sync economizes.
  int zstd_level = 9;
  int handshake_timeout_ms = 10000;
  int io_timeout_ms = 120000;  // a Send, or a Receive once a frame started, that stalls
};

class Connection {
 public:
  // Connects and completes the TLS handshake. IOError naming host:port when the hub is
  // unreachable; IOError ("TLS handshake failed: the hub refused the key") when the
  // keys differ.
  static Result<std::unique_ptr<Connection>> Connect(const HostPort& address,
                                                     const PresharedKey& key,
                                                     const ConnectionOptions& options = {});
  virtual ~Connection() = default;

  // Server side: completes the handshake of an accepted connection (Listener::Accept).
  virtual Status Handshake() = 0;

  // Sends one frame (compressed per options).
  virtual Status Send(MessageType type, std::string_view payload) = 0;
  // Receives one validated frame. `idle_timeout_ms` bounds the wait for its first byte
  // (-1: options' io_timeout_ms); the rest of the frame must follow within io_timeout_ms.
  // Cancelled after Shutdown, IOError at EOF ("closed by peer") or a timeout, InvalidArgument
  // for a frame that fails validation (the connection is then unusable: close it).
  virtual Result<Frame> Receive(int idle_timeout_ms = -1) = 0;
  // Unblocks Send/Receive from another thread; the connection is then closed.
  virtual void Shutdown() = 0;

  // Bytes on the TCP socket, both directions, TLS records and handshake included.
  virtual std::uint64_t bytes_sent() const = 0;
  virtual std::uint64_t bytes_received() const = 0;
  virtual std::string peer() const = 0;  // "host:port" of the other end
};

class Listener {
 public:
  // Binds and listens (SO_REUSEADDR). Port 0 picks a free port (see port()).
  static Result<std::unique_ptr<Listener>> Listen(const HostPort& address, const PresharedKey& key,
                                                  const ConnectionOptions& options = {});
  virtual ~Listener() = default;
  // The next connection, before its handshake (call Handshake on the handling thread).
  // Cancelled after Close.
  virtual Result<std::unique_ptr<Connection>> Accept() = 0;
  // Unblocks Accept from another thread; stops listening.
  virtual void Close() = 0;
  virtual std::uint16_t port() const = 0;
};

}  // namespace cascadefs::net
