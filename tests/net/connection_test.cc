// connection_test.cc: TLS-PSK connections over loopback, key files and addresses
// (net/connection.h).
//
// Goal: frames of every size cross a real TLS 1.3 connection intact; a peer without the key,
// or one that does not speak TLS, fails the handshake on both ends; Shutdown and Close unblock
// a waiting thread; timeouts and a closed peer are reported; byte counts agree between the two
// ends; key files are made and checked as documented.
// Method: a Listener on 127.0.0.1 port 0, the server side on a std::thread, the client on the
// test thread. Labelled tsan: the Shutdown and Close paths cross threads.
#include "net/connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace cascadefs::net {
namespace {

PresharedKey KeyOf(std::uint8_t fill) {
  PresharedKey key;
  key.secret.fill(fill);
  return key;
}

HostPort Loopback(std::uint16_t port) { return HostPort{"127.0.0.1", port}; }

std::unique_ptr<Listener> MustListen(const PresharedKey& key,
                                     const ConnectionOptions& options = {}) {
  auto listener = Listener::Listen(Loopback(0), key, options);
  EXPECT_TRUE(listener.ok()) << listener.status().ToString();
  EXPECT_NE((*listener)->port(), 0);
  return std::move(listener).value();
}

std::string RandomBytes(std::size_t size, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(random());
  return out;
}

// ---- Round trips. ----

TEST(Connection, FramesOfManySizesRoundTripAndByteCountsAgree) {
  const PresharedKey key = KeyOf(0x5a);
  auto listener = MustListen(key);
  std::vector<std::string> payloads;
  for (const std::size_t size :
       {0ul, 1ul, 63ul, 64ul, 1000ul, 16384ul, 16385ul, 65536ul, 1ul << 20, kFrameBodyBytesMax}) {
    payloads.push_back(RandomBytes(size, size));
  }
  payloads.push_back(std::string(kMessageBytesMax, 'z'));  // compresses: a body well under 16 MiB

  std::unique_ptr<Connection> server;
  std::thread server_thread([&] {
    auto accepted = listener->Accept();
    ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
    server = std::move(accepted).value();
    ASSERT_TRUE(server->Handshake().ok());
    // Echo each frame back with the next message type.
    for (std::size_t i = 0; i < payloads.size(); ++i) {
      auto frame = server->Receive();
      ASSERT_TRUE(frame.ok()) << frame.status().ToString();
      ASSERT_EQ(frame->type, MessageType::kStoreBatch);
      ASSERT_EQ(frame->payload.size(), payloads[i].size());
      ASSERT_TRUE(frame->payload == payloads[i]);
      ASSERT_TRUE(server->Send(MessageType::kStoreReply, frame->payload).ok());
    }
  });

  auto client = Connection::Connect(Loopback(listener->port()), key);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  std::uint64_t payload_bytes = 0;
  for (const std::string& payload : payloads) {
    ASSERT_TRUE((*client)->Send(MessageType::kStoreBatch, payload).ok());
    auto echo = (*client)->Receive();
    ASSERT_TRUE(echo.ok()) << echo.status().ToString();
    EXPECT_EQ(echo->type, MessageType::kStoreReply);
    EXPECT_TRUE(echo->payload == payload) << payload.size();
    payload_bytes += payload.size();
  }
  server_thread.join();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ((*client)->peer(), "127.0.0.1:" + std::to_string(listener->port()));
  EXPECT_EQ(server->peer().rfind("127.0.0.1:", 0), 0u);

  // The counts cover TLS records and the handshake; what one end sent the other received.
  EXPECT_GT((*client)->bytes_sent(), kFrameBodyBytesMax);
  EXPECT_GT((*client)->bytes_received(), kFrameBodyBytesMax);
  EXPECT_LT((*client)->bytes_sent(), payload_bytes);  // the 24 MiB payload went compressed
  EXPECT_EQ((*client)->bytes_sent(), server->bytes_received());
  EXPECT_EQ((*client)->bytes_received(), server->bytes_sent());
}

TEST(Connection, SmallFramesCountMoreThanTheirPayload) {
  const PresharedKey key = KeyOf(1);
  auto listener = MustListen(key);
  std::unique_ptr<Connection> server;
  std::thread server_thread([&] {
    auto accepted = listener->Accept();
    ASSERT_TRUE(accepted.ok());
    server = std::move(accepted).value();
    ASSERT_TRUE(server->Handshake().ok());
    auto frame = server->Receive();
    ASSERT_TRUE(frame.ok()) << frame.status().ToString();
    EXPECT_EQ(frame->payload, "hi");
  });
  auto client = Connection::Connect(Loopback(listener->port()), key);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const std::uint64_t after_handshake = (*client)->bytes_sent();
  EXPECT_GT(after_handshake, 0u);
  ASSERT_TRUE((*client)->Send(MessageType::kHello, "hi").ok());
  server_thread.join();
  // 6 header bytes + 2 payload bytes, plus the TLS record's header, type byte and tag.
  EXPECT_GT((*client)->bytes_sent() - after_handshake, 8u);
  EXPECT_EQ((*client)->bytes_sent(), server->bytes_received());
  EXPECT_EQ((*client)->bytes_received(), server->bytes_sent());
}

// ---- Peers that must not get in. ----

TEST(Connection, WrongKeyFailsBothHandshakes) {
  auto listener = MustListen(KeyOf(0x11));
  Status server_status;
  std::thread server_thread([&] {
    auto accepted = listener->Accept();
    ASSERT_TRUE(accepted.ok());
    server_status = (*accepted)->Handshake();
  });
  auto client = Connection::Connect(Loopback(listener->port()), KeyOf(0x22));
  server_thread.join();
  ASSERT_FALSE(client.ok());
  EXPECT_TRUE(client.status().IsIOError()) << client.status().ToString();
  EXPECT_NE(client.status().message().find("TLS handshake failed: the hub refused the key"),
            std::string_view::npos)
      << client.status().ToString();
  ASSERT_FALSE(server_status.ok());
  EXPECT_TRUE(server_status.IsIOError()) << server_status.ToString();
  EXPECT_NE(server_status.message().find("TLS handshake failed: the client holds another key"),
            std::string_view::npos)
      << server_status.ToString();
}

// A raw TCP connection to the listener's port; -1 on failure.
int RawConnect(std::uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

TEST(Connection, PlaintextClientFailsServerHandshake) {
  auto listener = MustListen(KeyOf(3));
  for (const std::string& junk :
       {std::string("GET / HTTP/1.0\r\n\r\n"), RandomBytes(4096, 9), std::string()}) {
    const int fd = RawConnect(listener->port());
    ASSERT_GE(fd, 0);
    auto accepted = listener->Accept();
    ASSERT_TRUE(accepted.ok());
    if (!junk.empty()) {
      ASSERT_EQ(send(fd, junk.data(), junk.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(junk.size()));
    }
    shutdown(fd, SHUT_WR);  // the empty case: EOF before any byte
    const Status status = (*accepted)->Handshake();
    EXPECT_TRUE(status.IsIOError()) << status.ToString();
    close(fd);
  }
}

TEST(Connection, SilentClientTimesOutTheHandshake) {
  ConnectionOptions options;
  options.handshake_timeout_ms = 100;
  auto listener = MustListen(KeyOf(3), options);
  const int fd = RawConnect(listener->port());
  ASSERT_GE(fd, 0);
  auto accepted = listener->Accept();
  ASSERT_TRUE(accepted.ok());
  const Status status = (*accepted)->Handshake();
  EXPECT_TRUE(status.IsIOError());
  EXPECT_NE(status.message().find("timed out"), std::string_view::npos) << status.ToString();
  close(fd);
}

TEST(Connection, UnreachableHubIsAnIOErrorNamingIt) {
  auto listener = MustListen(KeyOf(3));
  const std::uint16_t port = listener->port();
  listener.reset();  // nothing listens there now
  auto client = Connection::Connect(Loopback(port), KeyOf(3));
  ASSERT_FALSE(client.ok());
  EXPECT_TRUE(client.status().IsIOError());
  EXPECT_NE(client.status().message().find("127.0.0.1:" + std::to_string(port)),
            std::string_view::npos)
      << client.status().ToString();
}

// ---- Blocking, timeouts, shutdown. ----

// A connected pair: client on this thread, server handshaken.
struct Pair {
  std::unique_ptr<Listener> listener;
  std::unique_ptr<Connection> client;
  std::unique_ptr<Connection> server;
};

Pair MakePair(const ConnectionOptions& options = {}) {
  Pair pair;
  const PresharedKey key = KeyOf(7);
  pair.listener = MustListen(key, options);
  std::thread server_thread([&] {
    auto accepted = pair.listener->Accept();
    ASSERT_TRUE(accepted.ok());
    pair.server = std::move(accepted).value();
    ASSERT_TRUE(pair.server->Handshake().ok());
  });
  auto client = Connection::Connect(Loopback(pair.listener->port()), key, options);
  server_thread.join();
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  if (client.ok()) pair.client = std::move(client).value();
  return pair;
}

TEST(Connection, ShutdownUnblocksAReceiveOnAnotherThread) {
  Pair pair = MakePair();
  ASSERT_NE(pair.server, nullptr);
  ASSERT_NE(pair.client, nullptr);
  Status received;
  const auto start = std::chrono::steady_clock::now();
  std::thread receiver([&] { received = pair.server->Receive(60000).status(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  pair.server->Shutdown();
  receiver.join();
  EXPECT_TRUE(received.IsCancelled()) << received.ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  // Afterwards every call is Cancelled; the client sees the end.
  EXPECT_TRUE(pair.server->Send(MessageType::kHello, "x").IsCancelled());
  auto at_client = pair.client->Receive(5000);
  ASSERT_FALSE(at_client.ok());
  EXPECT_TRUE(at_client.status().IsIOError()) << at_client.status().ToString();
}

TEST(Connection, IdleTimeoutAndClosedPeerAreIOErrors) {
  Pair pair = MakePair();
  ASSERT_NE(pair.server, nullptr);
  ASSERT_NE(pair.client, nullptr);
  auto idle = pair.server->Receive(50);
  ASSERT_FALSE(idle.ok());
  EXPECT_TRUE(idle.status().IsIOError());
  EXPECT_NE(idle.status().message().find("timed out"), std::string_view::npos);
  // A failed Receive leaves the connection unusable.
  EXPECT_TRUE(pair.server->Receive(50).status().IsIOError());

  pair.client.reset();  // sends close_notify, closes the socket
  Pair second = MakePair();
  ASSERT_NE(second.server, nullptr);
  second.client.reset();
  auto closed = second.server->Receive(5000);
  ASSERT_FALSE(closed.ok());
  EXPECT_TRUE(closed.status().IsIOError());
  EXPECT_NE(closed.status().message().find("closed by peer"), std::string_view::npos)
      << closed.status().ToString();
}

TEST(Connection, CloseUnblocksAccept) {
  auto listener = MustListen(KeyOf(1));
  Status accepted;
  std::thread acceptor([&] { accepted = listener->Accept().status(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  listener->Close();
  acceptor.join();
  EXPECT_TRUE(accepted.IsCancelled()) << accepted.ToString();
  EXPECT_TRUE(listener->Accept().status().IsCancelled());
}

// ---- Key files. ----

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/cfs_net_key_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { (void)std::system(("rm -rf " + dir_).c_str()); }
  void Write(const std::string& path, const std::string& text, mode_t mode) {
    std::ofstream(path) << text;
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
  }
  std::string dir_;
};

TEST_F(KeyFileTest, CreateLoadAndNeverOverwrite) {
  const std::string path = dir_ + "/sync.key";
  ASSERT_TRUE(WriteNewKeyFile(path).ok());
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 82);
  auto key = LoadKeyFile(path);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_NE(key->secret, PresharedKey{}.secret);

  const Status again = WriteNewKeyFile(path);
  EXPECT_TRUE(again.IsInvalidArgument()) << again.ToString();
  auto same = LoadKeyFile(path);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->secret, key->secret);

  // Two new keys differ.
  ASSERT_TRUE(WriteNewKeyFile(dir_ + "/other.key").ok());
  EXPECT_NE(LoadKeyFile(dir_ + "/other.key")->secret, key->secret);
}

TEST_F(KeyFileTest, ExactFormat) {
  const std::string hex(64, 'a');
  const std::string path = dir_ + "/k";
  Write(path, "cascadefs-psk-v1 " + hex + "\n", 0600);
  auto key = LoadKeyFile(path);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->secret[0], 0xaa);
  EXPECT_EQ(key->secret[31], 0xaa);
}

TEST_F(KeyFileTest, RefusesReadableByOthers) {
  const std::string path = dir_ + "/k";
  Write(path, "cascadefs-psk-v1 " + std::string(64, '0') + "\n", 0644);
  auto key = LoadKeyFile(path);
  ASSERT_FALSE(key.ok());
  EXPECT_TRUE(key.status().IsInvalidArgument());
  EXPECT_NE(key.status().message().find("mode 0644: must not be readable by group or others"),
            std::string_view::npos)
      << key.status().ToString();
  ASSERT_EQ(chmod(path.c_str(), 0640), 0);
  EXPECT_FALSE(LoadKeyFile(path).ok());
}

TEST_F(KeyFileTest, RefusesGarbageAndMissing) {
  const std::string path = dir_ + "/k";
  for (const std::string& text : {std::string("garbage\n"), std::string(""),
                                  "cascadefs-psk-v1 " + std::string(64, 'g') + "\n",
                                  "cascadefs-psk-v1 " + std::string(63, 'a') + "\n",
                                  "cascadefs-psk-v1 " + std::string(64, 'a'),  // no newline
                                  "cascadefs-psk-v1 " + std::string(64, 'a') + "\n\n",  // two lines
                                  "cascadefs-psk-v2 " + std::string(64, 'a') + "\n",
                                  "cascadefs-psk-v1 " + std::string(64, 'A') + "\n"}) {
    unlink(path.c_str());
    Write(path, text, 0600);
    auto key = LoadKeyFile(path);
    ASSERT_FALSE(key.ok()) << text;
    EXPECT_TRUE(key.status().IsInvalidArgument()) << key.status().ToString();
    EXPECT_NE(key.status().message().find(path), std::string_view::npos);
  }
  auto missing = LoadKeyFile(dir_ + "/none");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();
}

// ---- Addresses. ----

TEST(HostPortTest, Parses) {
  auto v4 = ParseHostPort("hub.example:7000");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->host, "hub.example");
  EXPECT_EQ(v4->port, 7000);
  auto v6 = ParseHostPort("[::1]:0");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 0);
  for (const char* bad : {"", "host", "host:", ":80", "host:65536", "host:-1", "host:80x", "::1:80",
                          "[::1]", "[::1]80", "[host]:80", "[]:80"}) {
    auto parsed = ParseHostPort(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_TRUE(parsed.status().IsInvalidArgument());
    EXPECT_NE(parsed.status().message().find(std::string("\"") + bad + "\""),
              std::string_view::npos);
  }
}

TEST(HostPortTest, ListensAndConnectsOverIPv6WhenAvailable) {
  const PresharedKey key = KeyOf(9);
  auto listener = Listener::Listen(HostPort{"::1", 0}, key);
  if (!listener.ok()) GTEST_SKIP() << "no IPv6 loopback: " << listener.status().ToString();
  std::thread server_thread([&] {
    auto accepted = (*listener)->Accept();
    ASSERT_TRUE(accepted.ok());
    EXPECT_TRUE((*accepted)->Handshake().ok());
  });
  auto client = Connection::Connect(HostPort{"::1", (*listener)->port()}, key);
  server_thread.join();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_EQ((*client)->peer(), "[::1]:" + std::to_string((*listener)->port()));
}

}  // namespace
}  // namespace cascadefs::net
