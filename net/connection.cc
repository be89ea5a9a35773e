// connection.cc: TCP + TLS 1.3 (external PSK) connections carrying wire.h frames.
//
// Design. Each connection owns a non-blocking TCP socket and an OpenSSL SSL object whose one
// BIO is ours (SocketBio below): it calls send(MSG_NOSIGNAL) and recv on the socket, so a
// closed peer is EPIPE and never SIGPIPE, and it counts every byte that crosses the socket
// (handshake, records, alerts). Each blocking call drives an SSL_* function and, on WANT_READ
// or WANT_WRITE, polls the socket until the call's deadline. Shutdown sets a flag and shuts
// the socket down (shutdown(2)), which wakes any poll; the waiter sees the flag and returns
// Cancelled.
//
// TLS: TLS 1.3 only, the one cipher suite TLS_AES_256_GCM_SHA384, an external PSK (the key
// file's 32 bytes as the session's master key, identity kPskIdentity) offered by the client's
// psk_use_session callback and found by the server's psk_find_session callback. OpenSSL's
// default PSK key exchange mode is psk_dhe_ke (ECDHE on top of the PSK: forward secrecy). No
// certificates, no session tickets, no resumption, no early data.
//
// Thread safety: one thread uses a Connection (or a Listener) at a time; Shutdown (Close) may
// be called from any thread meanwhile. Members written by Shutdown are atomic; the socket fd
// is fixed from construction to destruction.
#include "net/connection.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "engine/assert.h"

namespace cascadefs::net {
namespace {

using Clock = std::chrono::steady_clock;

// The PSK identity both ends use: names the key format, so a future key kind gets a new one.
constexpr char kPskIdentity[] = "cascadefs-psk-v1";
constexpr char kCipherSuite[] = "TLS_AES_256_GCM_SHA384";
// The IANA code of TLS_AES_256_GCM_SHA384, as SSL_CIPHER_find takes it.
constexpr unsigned char kCipherId[2] = {0x13, 0x02};
// Pending connections the kernel queues for Accept; more are refused by the kernel.
constexpr int kListenBacklog = 128;

// ---- The socket BIO: our send/recv with byte counts. ----

// What the BIO shares with its connection. The counters are read by any thread.
struct SocketState {
  int fd = -1;
  std::atomic<std::uint64_t> bytes_sent{0};
  std::atomic<std::uint64_t> bytes_received{0};
  bool eof = false;     // recv returned 0: the peer closed its side
  int error_errno = 0;  // the last send/recv error other than EAGAIN/EINTR
};

int SocketBioWrite(BIO* bio, const char* data, std::size_t size, std::size_t* written) {
  auto* state = static_cast<SocketState*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  const ssize_t n = send(state->fd, data, size, MSG_NOSIGNAL);
  if (n >= 0) {
    *written = static_cast<std::size_t>(n);
    state->bytes_sent.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    return 1;
  }
  // EINTR is retried by the caller's poll loop, within its deadline.
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    BIO_set_retry_write(bio);
  } else {
    state->error_errno = errno;
  }
  return 0;
}

int SocketBioRead(BIO* bio, char* data, std::size_t size, std::size_t* read_bytes) {
  auto* state = static_cast<SocketState*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  const ssize_t n = recv(state->fd, data, size, 0);
  if (n > 0) {
    *read_bytes = static_cast<std::size_t>(n);
    state->bytes_received.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    return 1;
  }
  if (n == 0) {
    state->eof = true;
  } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    BIO_set_retry_read(bio);
  } else {
    state->error_errno = errno;
  }
  return 0;
}

long SocketBioCtrl(BIO* /*bio*/, int cmd, long /*num*/, void* /*ptr*/) {
  // send() has no user-space buffer to flush; every other control is unsupported (0).
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int SocketBioCreate(BIO* /*bio*/) { return 1; }
int SocketBioDestroy(BIO* /*bio*/) { return 1; }  // the SocketState belongs to the connection

// The method, made once per process and never freed (OpenSSL keeps a pointer in each BIO).
const BIO_METHOD* SocketBioMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cascadefs socket");
    CFS_ASSERT(m != nullptr);
    CFS_ASSERT(BIO_meth_set_write_ex(m, SocketBioWrite) == 1);
    CFS_ASSERT(BIO_meth_set_read_ex(m, SocketBioRead) == 1);
    CFS_ASSERT(BIO_meth_set_ctrl(m, SocketBioCtrl) == 1);
    CFS_ASSERT(BIO_meth_set_create(m, SocketBioCreate) == 1);
    CFS_ASSERT(BIO_meth_set_destroy(m, SocketBioDestroy) == 1);
    return m;
  }();
  return method;
}

// ---- TLS contexts and the PSK callbacks. ----

// OpenSSL's error queue of this thread as one line (and emptied), or `fallback`.
std::string TakeSslErrors(std::string_view fallback) {
  std::string out;
  unsigned long code = 0;
  while ((code = ERR_get_error()) != 0) {
    char text[256];
    ERR_error_string_n(code, text, sizeof(text));
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out.empty() ? std::string(fallback) : out;
}

// A new session holding the PSK, as both callbacks hand it to OpenSSL (which then owns it).
SSL_SESSION* NewPskSession(SSL* ssl, const PresharedKey& key) {
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kCipherId);
  if (cipher == nullptr) return nullptr;
  SSL_SESSION* session = SSL_SESSION_new();
  if (session == nullptr) return nullptr;
  if (SSL_SESSION_set1_master_key(session, key.secret.data(), key.secret.size()) != 1 ||
      SSL_SESSION_set_cipher(session, cipher) != 1 ||
      SSL_SESSION_set_protocol_version(session, TLS1_3_VERSION) != 1) {
    SSL_SESSION_free(session);
    return nullptr;
  }
  return session;
}

const PresharedKey& KeyOf(SSL* ssl) {
  const auto* key = static_cast<const PresharedKey*>(SSL_get_app_data(ssl));
  CFS_ASSERT(key != nullptr);
  return *key;
}

// Client: offers the PSK. `md` is null on the first ClientHello; after a HelloRetryRequest it
// is the chosen suite's hash, which must be the PSK's (it is: one suite is configured).
int UsePskSession(SSL* ssl, const EVP_MD* md, const unsigned char** id, std::size_t* id_len,
                  SSL_SESSION** session) {
  SSL_SESSION* psk = NewPskSession(ssl, KeyOf(ssl));
  if (psk == nullptr) return 0;  // fails the handshake
  const EVP_MD* psk_md = SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(psk));
  if (md != nullptr && (psk_md == nullptr || EVP_MD_get_type(md) != EVP_MD_get_type(psk_md))) {
    SSL_SESSION_free(psk);
    *id = nullptr;
    *id_len = 0;
    *session = nullptr;  // no PSK for this hash: the handshake then fails (no certificates)
    return 1;
  }
  *id = reinterpret_cast<const unsigned char*>(kPskIdentity);
  *id_len = sizeof(kPskIdentity) - 1;
  *session = psk;
  return 1;
}

// Server: the PSK for the client's identity. An unknown identity gets none (the handshake then
// fails: there is no certificate to fall back on); a wrong key fails OpenSSL's binder check.
int FindPskSession(SSL* ssl, const unsigned char* identity, std::size_t identity_len,
                   SSL_SESSION** session) {
  *session = nullptr;
  if (identity_len != sizeof(kPskIdentity) - 1 ||
      std::memcmp(identity, kPskIdentity, identity_len) != 0) {
    return 1;
  }
  *session = NewPskSession(ssl, KeyOf(ssl));
  return *session != nullptr ? 1 : 0;
}

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

Result<SslCtxPtr> NewContext(bool server) {
  SslCtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  if (ctx == nullptr) return Status::IOError("SSL_CTX_new: " + TakeSslErrors("failed"));
  bool ok = SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) == 1 &&
            SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION) == 1 &&
            SSL_CTX_set_ciphersuites(ctx.get(), kCipherSuite) == 1 &&
            SSL_CTX_set_num_tickets(ctx.get(), 0) == 1;
  if (!ok) return Status::IOError("TLS setup: " + TakeSslErrors("failed"));
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  // Never allow a PSK-only key exchange: psk_dhe_ke gives forward secrecy.
  SSL_CTX_clear_options(ctx.get(), SSL_OP_ALLOW_NO_DHE_KEX);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  // Send loops over partial writes, so a retry never has to repeat the same buffer.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE);
  if (server) {
    SSL_CTX_set_psk_find_session_callback(ctx.get(), FindPskSession);
  } else {
    SSL_CTX_set_psk_use_session_callback(ctx.get(), UsePskSession);
  }
  return ctx;
}

// "host:port" of a socket address, numeric; IPv6 in brackets.
std::string AddressText(const sockaddr* address, socklen_t length) {
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  if (getnameinfo(address, length, host, sizeof(host), port, sizeof(port),
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  // Appends, not operator+ chains: GCC 12 at -O2 warns falsely (-Wrestrict) on those.
  std::string text;
  const bool v6 = address->sa_family == AF_INET6;
  if (v6) text.push_back('[');
  text.append(host);
  if (v6) text.push_back(']');
  text.push_back(':');
  text.append(port);
  return text;
}

std::string HostPortText(const HostPort& address) {
  if (address.host.find(':') != std::string::npos) {
    return "[" + address.host + "]:" + std::to_string(address.port);
  }
  return address.host + ":" + std::to_string(address.port);
}

struct AddrInfoFree {
  void operator()(addrinfo* info) const { freeaddrinfo(info); }
};

Result<std::unique_ptr<addrinfo, AddrInfoFree>> Resolve(const HostPort& address, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* list = nullptr;
  const std::string port = std::to_string(address.port);
  const int error = getaddrinfo(address.host.c_str(), port.c_str(), &hints, &list);
  if (error != 0) {
    return Status::IOError(HostPortText(address) + ": cannot resolve: " + gai_strerror(error));
  }
  return std::unique_ptr<addrinfo, AddrInfoFree>(list);
}

void SetNoDelay(int fd) {
  const int one = 1;
  // Frames are whole messages: sending each at once beats Nagle's coalescing. A failure only
  // costs latency, so it is not an error.
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int RemainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > INT32_MAX ? INT32_MAX : static_cast<int>(left);
}

// ---- The connection. ----

class ConnectionImpl final : public Connection {
 public:
  // Takes `fd` (connected, non-blocking) and a reference to `ctx`.
  ConnectionImpl(int fd, SSL_CTX* ctx, const PresharedKey& key, const ConnectionOptions& options,
                 std::string peer, bool server)
      : key_(key), options_(options), peer_(std::move(peer)), server_(server) {
    CFS_ASSERT(fd >= 0);
    CFS_ASSERT(options.zstd_level >= 1 && options.zstd_level <= 19);
    CFS_ASSERT(options.handshake_timeout_ms > 0 && options.io_timeout_ms > 0);
    state_.fd = fd;
    ssl_ = SSL_new(ctx);
    CFS_ASSERT(ssl_ != nullptr);
    BIO* bio = BIO_new(SocketBioMethod());
    CFS_ASSERT(bio != nullptr);
    BIO_set_data(bio, &state_);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl_, bio, bio);  // one BIO both ways: SSL takes the one reference
    SSL_set_app_data(ssl_, &key_);
    if (server) {
      SSL_set_accept_state(ssl_);
    } else {
      SSL_set_connect_state(ssl_);
    }
  }

  ~ConnectionImpl() override {
    // A clean end tells the peer "closed by peer" rather than a truncation. Best effort: one
    // non-blocking attempt, never waited for.
    if (handshake_done_ && !broken_ && !shutdown_.load()) {
      ERR_clear_error();
      (void)SSL_shutdown(ssl_);
      ERR_clear_error();
    }
    SSL_free(ssl_);
    close(state_.fd);
    OPENSSL_cleanse(key_.secret.data(), key_.secret.size());
  }

  Status Handshake() override {
    CFS_ASSERT(!handshake_done_);
    const auto deadline = Clock::now() + std::chrono::milliseconds(options_.handshake_timeout_ms);
    Status s = Drive([this] { return SSL_do_handshake(ssl_); }, deadline, "TLS handshake");
    if (!s.ok()) {
      broken_ = true;
      return s;
    }
    // The PSK was used (no certificate exists to do without it) and TLS 1.3 was negotiated.
    CFS_ASSERT(SSL_session_reused(ssl_) == 1);
    CFS_ASSERT(SSL_version(ssl_) == TLS1_3_VERSION);
    handshake_done_ = true;
    return Status::OK();
  }

  Status Send(MessageType type, std::string_view payload) override {
    CFS_RETURN_IF_ERROR(CheckUsable());
    // Small frames (a commit, a few changed chunks) get zstd's strongest level: it costs
    // about a millisecond at these sizes, and their bytes are what an edit costs on the wire.
    const int level = payload.size() <= kSmallFrameBytes ? 19 : options_.zstd_level;
    const std::string frame = EncodeFrame(type, payload, level);
    const auto deadline = Clock::now() + std::chrono::milliseconds(options_.io_timeout_ms);
    std::size_t sent = 0;
    // Bounded: each pass sends at least one byte or waits until the deadline.
    while (sent < frame.size()) {
      std::size_t written = 0;
      Status s = Drive(
          [&] { return SSL_write_ex(ssl_, frame.data() + sent, frame.size() - sent, &written); },
          deadline, "send");
      if (!s.ok()) {
        broken_ = true;
        return s;
      }
      sent += written;
    }
    return Status::OK();
  }

  Result<Frame> Receive(int idle_timeout_ms) override {
    CFS_ASSERT(idle_timeout_ms >= -1);
    CFS_RETURN_IF_ERROR(CheckUsable());
    Result<Frame> frame = ReceiveFrame(idle_timeout_ms);
    if (!frame.ok()) broken_ = true;
    return frame;
  }

  void Shutdown() override {
    shutdown_.store(true);
    // Wakes a poll in the thread using the connection; the fd stays open until destruction,
    // so it cannot be reused under that thread.
    (void)::shutdown(state_.fd, SHUT_RDWR);
  }

  std::uint64_t bytes_sent() const override {
    return state_.bytes_sent.load(std::memory_order_relaxed);
  }
  std::uint64_t bytes_received() const override {
    return state_.bytes_received.load(std::memory_order_relaxed);
  }
  std::string peer() const override { return peer_; }

 private:
  Status CheckUsable() const {
    CFS_ASSERT(handshake_done_);  // Connect did it, or the server called Handshake
    if (shutdown_.load()) return Status::Cancelled(peer_ + ": connection shut down");
    if (broken_) return Status::IOError(peer_ + ": connection unusable after an earlier error");
    return Status::OK();
  }

  Result<Frame> ReceiveFrame(int idle_timeout_ms) {
    const int idle_ms = idle_timeout_ms < 0 ? options_.io_timeout_ms : idle_timeout_ms;
    char header_bytes[kFrameHeaderBytes];
    // The first byte may be long in coming (an idle connection); the rest of the frame must
    // follow within io_timeout_ms.
    CFS_RETURN_IF_ERROR(
        ReadExact(header_bytes, 1, Clock::now() + std::chrono::milliseconds(idle_ms)));
    const auto deadline = Clock::now() + std::chrono::milliseconds(options_.io_timeout_ms);
    CFS_RETURN_IF_ERROR(ReadExact(header_bytes + 1, kFrameHeaderBytes - 1, deadline));
    Result<FrameHeader> header =
        DecodeFrameHeader(std::string_view(header_bytes, kFrameHeaderBytes));
    if (!header.ok()) return header.status().WithContext(peer_);
    // Bounded by kFrameBodyBytesMax (DecodeFrameHeader).
    std::string body(header->body_length, '\0');
    CFS_RETURN_IF_ERROR(ReadExact(body.data(), body.size(), deadline));
    Result<std::string> payload = DecodeFrameBody(*header, body);
    if (!payload.ok()) return payload.status().WithContext(peer_);
    return Frame{header->type, std::move(payload).value()};
  }

  Status ReadExact(char* out, std::size_t size, Clock::time_point deadline) {
    std::size_t got = 0;
    // Bounded: each pass reads at least one byte or waits until the deadline.
    while (got < size) {
      std::size_t read_bytes = 0;
      CFS_RETURN_IF_ERROR(
          Drive([&] { return SSL_read_ex(ssl_, out + got, size - got, &read_bytes); }, deadline,
                "receive"));
      got += read_bytes;
    }
    return Status::OK();
  }

  // Calls `op` (an SSL_* call returning 1 on success) until it succeeds, polling the socket
  // for what it waits on. Fails at the deadline, on Shutdown, at EOF or on a TLS error.
  template <typename Op>
  Status Drive(Op op, Clock::time_point deadline, std::string_view what) {
    for (;;) {
      if (shutdown_.load()) return Status::Cancelled(peer_ + ": connection shut down");
      ERR_clear_error();
      const int ret = op();
      if (ret == 1) return Status::OK();
      const int error = SSL_get_error(ssl_, ret);
      if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
        return Failure(error, what);
      }
      const int wait_ms = RemainingMs(deadline);
      if (wait_ms == 0) return Status::IOError(peer_ + ": " + std::string(what) + ": timed out");
      pollfd poll_fd{state_.fd, static_cast<short>(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT),
                     0};
      const int ready = poll(&poll_fd, 1, wait_ms);
      if (ready < 0 && errno != EINTR) return Status::FromErrno(errno, peer_ + ": poll");
      // Ready, interrupted or timed out: the next pass retries or sees the deadline.
    }
  }

  Status Failure(int ssl_error, std::string_view what) {
    if (shutdown_.load()) return Status::Cancelled(peer_ + ": connection shut down");
    const bool handshake = !handshake_done_;
    const std::string prefix = peer_ + ": " + std::string(what) + ": ";
    if (ssl_error == SSL_ERROR_ZERO_RETURN) return Status::IOError(prefix + "closed by peer");
    const unsigned long code = ERR_peek_error();
    if (handshake && ERR_GET_LIB(code) == ERR_LIB_SSL) {
      const int reason = ERR_GET_REASON(code);
      // OpenSSL answers a PSK binder that does not verify (another key) with an
      // illegal_parameter alert; decrypt_error is the alert RFC 8446 names for it.
      if (!server_ && (reason == SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER ||
                       reason == SSL_R_TLSV1_ALERT_DECRYPT_ERROR)) {
        ERR_clear_error();
        return Status::IOError(peer_ + ": TLS handshake failed: the hub refused the key");
      }
      if (server_ && reason == SSL_R_BINDER_DOES_NOT_VERIFY) {
        ERR_clear_error();
        return Status::IOError(peer_ + ": TLS handshake failed: the client holds another key");
      }
    }
    if (state_.error_errno != 0) {
      ERR_clear_error();
      char text[128];
      return Status::IOError(prefix + strerror_r(state_.error_errno, text, sizeof(text)));
    }
    if (state_.eof) {
      ERR_clear_error();
      return Status::IOError(prefix + "closed by peer");
    }
    return Status::IOError(prefix + (handshake ? "failed: " : "") + TakeSslErrors("TLS error"));
  }

  PresharedKey key_;  // the PSK callbacks read it through SSL_get_app_data
  const ConnectionOptions options_;
  const std::string peer_;
  const bool server_;
  SocketState state_;
  SSL* ssl_ = nullptr;
  bool handshake_done_ = false;        // written by the using thread only
  bool broken_ = false;                // an error left the stream in an unknown state
  std::atomic<bool> shutdown_{false};  // set by Shutdown from any thread
};

// ---- The listener. ----

class ListenerImpl final : public Listener {
 public:
  ListenerImpl(int fd, int wake_fd, SslCtxPtr ctx, const PresharedKey& key,
               const ConnectionOptions& options, std::uint16_t port)
      : fd_(fd),
        wake_fd_(wake_fd),
        ctx_(std::move(ctx)),
        key_(key),
        options_(options),
        port_(port) {}
  ~ListenerImpl() override {
    close(fd_);
    close(wake_fd_);
    OPENSSL_cleanse(key_.secret.data(), key_.secret.size());
  }

  Result<std::unique_ptr<Connection>> Accept() override {
    // The accept loop: it waits for a connection or Close, for as long as it takes.
    for (;;) {
      if (closed_.load()) return Status::Cancelled("listener closed");
      pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      const int ready = poll(fds, 2, -1);
      if (ready < 0 && errno != EINTR) return Status::FromErrno(errno, "accept: poll");
      if (closed_.load()) return Status::Cancelled("listener closed");
      if (ready <= 0 || (fds[0].revents & POLLIN) == 0) continue;
      sockaddr_storage address{};
      socklen_t length = sizeof(address);
      const int fd = accept4(fd_, reinterpret_cast<sockaddr*>(&address), &length,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        // Another waiter took it, the client gave up, or a signal: wait again.
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED || errno == EINTR) {
          continue;
        }
        // Out of descriptors or memory: the caller decides whether to back off and retry.
        return Status::FromErrno(errno, "accept");
      }
      SetNoDelay(fd);
      return std::unique_ptr<Connection>(
          new ConnectionImpl(fd, ctx_.get(), key_, options_,
                             AddressText(reinterpret_cast<sockaddr*>(&address), length), true));
    }
  }

  void Close() override {
    closed_.store(true);
    const std::uint64_t one = 1;
    // An eventfd write cannot block here (the counter is far from its maximum).
    (void)!write(wake_fd_, &one, sizeof(one));
  }

  std::uint16_t port() const override { return port_; }

 private:
  const int fd_;       // the listening socket, non-blocking
  const int wake_fd_;  // an eventfd Close writes to wake Accept's poll
  SslCtxPtr ctx_;      // shared by accepted connections (SSL_new takes a reference)
  PresharedKey key_;
  const ConnectionOptions options_;
  const std::uint16_t port_;
  std::atomic<bool> closed_{false};
};

}  // namespace

Result<std::unique_ptr<Connection>> Connection::Connect(const HostPort& address,
                                                        const PresharedKey& key,
                                                        const ConnectionOptions& options) {
  const std::string name = HostPortText(address);
  Result<SslCtxPtr> ctx = NewContext(/*server=*/false);
  if (!ctx.ok()) return ctx.status().WithContext(name);
  Result<std::unique_ptr<addrinfo, AddrInfoFree>> list = Resolve(address, /*passive=*/false);
  if (!list.ok()) return list.status();
  // One deadline covers the TCP connect of every address and the TLS handshake.
  const auto deadline = Clock::now() + std::chrono::milliseconds(options.handshake_timeout_ms);
  std::string last_error = "no address";
  for (const addrinfo* ai = list->get(); ai != nullptr; ai = ai->ai_next) {
    const int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    int error = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      error = errno;
      if (error == EINPROGRESS) {
        pollfd poll_fd{fd, POLLOUT, 0};
        int ready = 0;
        // Bounded by the deadline; EINTR polls again.
        do {
          ready = poll(&poll_fd, 1, RemainingMs(deadline));
        } while (ready < 0 && errno == EINTR && RemainingMs(deadline) > 0);
        if (ready == 1) {
          socklen_t length = sizeof(error);
          if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
        } else {
          error = ready == 0 ? ETIMEDOUT : errno;
        }
      }
    }
    if (error != 0) {
      last_error = std::strerror(error);
      close(fd);
      continue;
    }
    SetNoDelay(fd);
    auto connection = std::make_unique<ConnectionImpl>(
        fd, ctx->get(), key, options, AddressText(ai->ai_addr, ai->ai_addrlen), false);
    CFS_RETURN_IF_ERROR(connection->Handshake());
    return std::unique_ptr<Connection>(std::move(connection));
  }
  return Status::IOError(name + ": cannot connect: " + last_error);
}

Result<std::unique_ptr<Listener>> Listener::Listen(const HostPort& address, const PresharedKey& key,
                                                   const ConnectionOptions& options) {
  const std::string name = HostPortText(address);
  Result<SslCtxPtr> ctx = NewContext(/*server=*/true);
  if (!ctx.ok()) return ctx.status().WithContext(name);
  Result<std::unique_ptr<addrinfo, AddrInfoFree>> list = Resolve(address, /*passive=*/true);
  if (!list.ok()) return list.status();
  std::string last_error = "no address";
  for (const addrinfo* ai = list->get(); ai != nullptr; ai = ai->ai_next) {
    const int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    const int one = 1;
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, kListenBacklog) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
      last_error = std::strerror(errno);
      close(fd);
      continue;
    }
    const std::uint16_t port =
        ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    const int wake_fd = eventfd(0, EFD_CLOEXEC);
    if (wake_fd < 0) {
      const int error = errno;
      close(fd);
      return Status::FromErrno(error, name + ": eventfd");
    }
    return std::unique_ptr<Listener>(
        new ListenerImpl(fd, wake_fd, std::move(ctx).value(), key, options, port));
  }
  return Status::IOError(name + ": cannot listen: " + last_error);
}

}  // namespace cascadefs::net
