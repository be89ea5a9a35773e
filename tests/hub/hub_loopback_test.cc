// hub_loopback_test.cc: the hub over real TLS connections on loopback (hub/hub.h, net/).
//
// Goal: the protocol rules of docs/sync.md ("Hub") as a client sees them, and the hub's
// behaviour with bad peers, many connections and restarts. Method: a Hub on a fresh store in a
// temporary directory, listening on 127.0.0.1 port 0, and clients built from net::Connection
// that speak the messages of net/wire.h; files are real recipe trees built into an in-memory
// chunk store the "client" uploads from.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "engine/io/scheduler.h"
#include "fusefs/recipe.h"
#include "hub/hub.h"
#include "hub_impl.h"
#include "net/connection.h"
#include "net/delta.h"
#include "net/wire.h"
#include "testutil/temp_dir.h"

namespace cascadefs::hub {
namespace {

std::string RandomBytes(std::size_t bytes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string data(bytes, '\0');
  for (std::size_t i = 0; i + 8 <= bytes; i += 8) {
    const std::uint64_t word = rng();
    std::memcpy(&data[i], &word, 8);
  }
  return data;
}

net::PresharedKey MakeKey(std::uint8_t seed) {
  net::PresharedKey key;
  for (std::size_t i = 0; i < key.secret.size(); ++i) {
    key.secret[i] = static_cast<std::uint8_t>(seed * 31 + i);
  }
  return key;
}

// A client connection that has said Hello.
class Client {
 public:
  static std::unique_ptr<Client> Connect(std::uint16_t port, const net::PresharedKey& key,
                                         std::string host = "test-host") {
    auto conn = net::Connection::Connect({"127.0.0.1", port}, key);
    if (!conn.ok()) return nullptr;
    auto client = std::make_unique<Client>();
    client->conn_ = std::move(conn.value());
    net::Hello hello;
    hello.host = std::move(host);
    if (!client->conn_->Send(net::MessageType::kHello, hello.Encode()).ok()) return nullptr;
    auto frame = client->conn_->Receive(5000);
    if (!frame.ok() || frame.value().type != net::MessageType::kHelloOk) return nullptr;
    auto ok = net::HelloOk::Decode(frame.value().payload);
    if (!ok.ok()) return nullptr;
    client->hub_id_ = ok.value().hub_id;
    return client;
  }

  template <typename Reply, typename Request>
  Result<Reply> Call(net::MessageType type, const Request& request) {
    Status sent = conn_->Send(type, request.Encode());
    if (!sent.ok()) return sent;
    auto frame = conn_->Receive(20000);
    if (!frame.ok()) return frame.status();
    if (frame.value().type == net::MessageType::kError) {
      auto error = net::ErrorMessage::Decode(frame.value().payload);
      return Status::IOError("hub error: " + (error.ok() ? error.value().message : "?"));
    }
    return Reply::Decode(frame.value().payload);
  }

  Result<net::CommitReply> Commit(const net::Commit& c) {
    return Call<net::CommitReply>(net::MessageType::kCommit, c);
  }
  Result<net::StoreReply> Store(const net::StoreBatch& b) {
    return Call<net::StoreReply>(net::MessageType::kStoreBatch, b);
  }
  Result<net::ListReply> List(std::string ns, std::uint64_t cursor, std::uint32_t wait_ms = 0) {
    net::List list;
    list.ns = std::move(ns);
    list.cursor = cursor;
    list.wait_ms = wait_ms;
    list.max_entries = 1000;
    return Call<net::ListReply>(net::MessageType::kList, list);
  }
  Result<net::RetrieveReply> Retrieve(std::string names, std::string bases = "") {
    net::Retrieve r;
    r.names = std::move(names);
    r.bases = std::move(bases);
    return Call<net::RetrieveReply>(net::MessageType::kRetrieve, r);
  }

  net::Connection* conn() { return conn_.get(); }
  const std::string& hub_id() const { return hub_id_; }

 private:
  std::unique_ptr<net::Connection> conn_;
  std::string hub_id_;
};

net::CommitEntry FileEntry(std::string path, const fusefs::FileRoot& root, std::uint64_t parent) {
  net::CommitEntry e;
  e.change.kind = net::EntryKind::kFile;
  e.change.path = std::move(path);
  e.change.mode = 0644;
  e.change.mtime_ns = 1;
  e.change.root = root.Encode();
  e.parent_jid = parent;
  return e;
}

net::CommitEntry Entry(net::EntryKind kind, std::string path, std::uint64_t parent,
                       std::string target = "") {
  net::CommitEntry e;
  e.change.kind = kind;
  e.change.path = std::move(path);
  e.change.mode = 0755;
  e.change.target = std::move(target);
  e.parent_jid = parent;
  return e;
}

class HubLoopbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 1});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler.value());
    StartHub();
  }
  void TearDown() override {
    if (hub_ != nullptr) {
      EXPECT_TRUE(hub_->Close().ok());
    }
  }

  void StartHub(std::uint32_t connections_max = 64, std::uint64_t retention_sec = 3600) {
    HubOptions options;
    options.store_dir = dir_.path() + "/hub";
    options.cache_size_bytes = 4 << 20;
    options.connections_max = connections_max;
    options.retention_sec = retention_sec;
    options.log = [this](std::string_view line) {
      std::lock_guard lock(log_mutex_);
      log_.emplace_back(line);
    };
    auto hub = Hub::Open(options);
    ASSERT_TRUE(hub.ok()) << hub.status().message();
    hub_ = std::move(hub.value());
    ASSERT_TRUE(hub_->Listen({"127.0.0.1", 0}, key_).ok());
  }

  void RestartHub() {
    ASSERT_TRUE(hub_->Close().ok());
    hub_.reset();
    StartHub();
  }

  std::unique_ptr<Client> NewClient() { return Client::Connect(hub_->port(), key_); }

  fusefs::FileRoot BuildFile(std::size_t bytes, std::uint64_t seed) {
    fusefs::RecipeTree tree(source_.get(), fusefs::ChunkerOptions{});
    auto root =
        scheduler_->BlockOn(tree.Build(fusefs::ChunkerKind::kBinary, RandomBytes(bytes, seed)));
    EXPECT_TRUE(root.ok());
    return root.value();
  }

  // Commits `entry` as a client does: commit, upload what is missing, commit again.
  net::CommitResult CommitUploading(Client* client, const std::string& ns,
                                    const net::CommitEntry& entry, int* rounds = nullptr) {
    net::Commit commit;
    commit.ns = ns;
    commit.entries = {entry};
    for (int round = 0; round < 10; ++round) {
      auto reply = client->Commit(commit);
      EXPECT_TRUE(reply.ok()) << reply.status().message();
      if (!reply.ok()) return {};
      if (reply.value().results[0].status != net::CommitStatus::kMissing) {
        if (rounds != nullptr) *rounds = round;
        return reply.value().results[0];
      }
      EXPECT_FALSE(reply.value().missing.empty());
      net::StoreBatch batch;
      for (std::size_t i = 0; i < reply.value().missing.size(); i += 17) {
        auto name = fusefs::ChunkName::Decode(reply.value().missing.substr(i, 17));
        EXPECT_TRUE(name.ok());
        auto data = scheduler_->BlockOn(source_->Get(name.value()));
        EXPECT_TRUE(data.ok());
        batch.chunks.push_back({std::string(name.value().encoded()), data.value()});
      }
      auto stored = client->Store(batch);
      EXPECT_TRUE(stored.ok()) << stored.status().message();
      EXPECT_TRUE(stored.value().refused.empty());
    }
    ADD_FAILURE() << "commit never completed";
    return {};
  }

  bool LogMentions(std::string_view text) {
    std::lock_guard lock(log_mutex_);
    for (const auto& line : log_) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }

  testutil::TempDir dir_;
  net::PresharedKey key_ = MakeKey(1);
  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<fusefs::ChunkStore> source_ = fusefs::NewMemoryChunkStore();
  std::unique_ptr<Hub> hub_;
  std::mutex log_mutex_;
  std::vector<std::string> log_;
};

TEST_F(HubLoopbackTest, CommitMissingStoreCommitListRetrieve) {
  auto client = NewClient();
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->hub_id(), hub_->hub_id());
  const fusefs::FileRoot root = BuildFile(1 << 20, 1);
  ASSERT_GE(root.height, 1);
  int rounds = 0;
  net::CommitResult result =
      CommitUploading(client.get(), "ns1", FileEntry("a/f.bin", root, 0), &rounds);
  EXPECT_EQ(result.status, net::CommitStatus::kOk);
  EXPECT_EQ(result.jid, 1u);
  EXPECT_EQ(rounds, root.height + 1);  // the tree arrives one level per round
  // The same commit again is a conflict with jid 1; with parent 1 it is a new version.
  net::Commit again;
  again.ns = "ns1";
  again.entries = {FileEntry("a/f.bin", root, 0), FileEntry("a/f.bin", root, 1)};
  auto reply = client->Commit(again);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply.value().results[0].status, net::CommitStatus::kConflict);
  EXPECT_EQ(reply.value().results[0].jid, 1u);
  EXPECT_EQ(reply.value().results[1].status, net::CommitStatus::kOk);
  EXPECT_EQ(reply.value().results[1].jid, 2u);

  auto other = NewClient();
  ASSERT_NE(other, nullptr);
  auto listed = other->List("ns1", 0);
  ASSERT_TRUE(listed.ok()) << listed.status().message();
  EXPECT_EQ(listed.value().head_jid, 2u);
  ASSERT_EQ(listed.value().entries.size(), 2u);
  EXPECT_EQ(listed.value().entries[0].change.path, "a/f.bin");
  EXPECT_EQ(listed.value().entries[0].origin, "test-host");
  EXPECT_GT(listed.value().entries[0].time_ns, 0);
  // A cursor past the head: nothing, and the head.
  auto past = other->List("ns1", 99);
  ASSERT_TRUE(past.ok());
  EXPECT_TRUE(past.value().entries.empty());
  EXPECT_EQ(past.value().head_jid, 2u);
  // Another namespace is apart.
  auto empty = other->List("ns2", 0);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty.value().head_jid, 0u);

  // Retrieve every chunk of the tree, and an unknown one.
  fusefs::RecipeTree tree(source_.get(), fusefs::ChunkerOptions{});
  std::vector<fusefs::ChunkName> names;
  std::vector<int> levels;
  ASSERT_TRUE(scheduler_->BlockOn(tree.ListChunks(root, &names, &levels)).ok());
  std::string asked;
  for (const auto& name : names) asked.append(name.encoded());
  asked.append(fusefs::ChunkName::Of("never stored").encoded());
  for (int pass = 0; pass < 2; ++pass) {  // the second pass is served by the cache too
    auto got = other->Retrieve(asked);
    ASSERT_TRUE(got.ok()) << got.status().message();
    ASSERT_EQ(got.value().chunks.size(), names.size() + 1);
    for (std::size_t i = 0; i < names.size(); ++i) {
      EXPECT_TRUE(got.value().chunks[i].found);
      EXPECT_TRUE(names[i].Matches(got.value().chunks[i].data));
    }
    EXPECT_FALSE(got.value().chunks.back().found);
  }
}

TEST_F(HubLoopbackTest, DirectoriesSymlinksDeletesRenames) {
  auto client = NewClient();
  ASSERT_NE(client, nullptr);
  net::Commit commit;
  commit.ns = "n";
  net::CommitEntry link = Entry(net::EntryKind::kSymlink, "d/l", 0, "target");
  commit.entries = {
      Entry(net::EntryKind::kDirectory, "d", 0),   link,
      Entry(net::EntryKind::kRename, "d", 1, "e"), Entry(net::EntryKind::kRename, "e", 3, "e/x"),
      Entry(net::EntryKind::kDelete, "e", 3),      Entry(net::EntryKind::kDelete, "e", 4)};
  auto reply = client->Commit(commit);
  ASSERT_TRUE(reply.ok()) << reply.status().message();
  const auto& r = reply.value().results;
  ASSERT_EQ(r.size(), 6u);
  EXPECT_EQ(r[0].status, net::CommitStatus::kOk);
  EXPECT_EQ(r[1].status, net::CommitStatus::kOk);
  EXPECT_EQ(r[2].status, net::CommitStatus::kOk);
  EXPECT_EQ(r[2].jid, 3u);
  EXPECT_EQ(r[3].status, net::CommitStatus::kRejected);  // into itself
  EXPECT_EQ(r[4].status, net::CommitStatus::kOk);
  EXPECT_EQ(r[4].jid, 4u);
  EXPECT_EQ(r[5].status, net::CommitStatus::kOk);  // already a tombstone: nothing journaled
  EXPECT_EQ(r[5].jid, 4u);
  auto* impl = static_cast<HubImpl*>(hub_.get());
  const NamespaceIndex* ns = impl->snapshot()->Find("n");
  ASSERT_NE(ns, nullptr);
  EXPECT_EQ(ns->head_jid, 4u);
  EXPECT_TRUE(ns->Find("e/l")->tombstone());
  EXPECT_TRUE(ns->Find("d/l")->tombstone());
}

TEST_F(HubLoopbackTest, ListLongPollWakesOnACommitFromAnotherConnection) {
  auto waiter = NewClient();
  auto writer = NewClient();
  ASSERT_NE(waiter, nullptr);
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(waiter->List("poll", 0).ok());  // creates the namespace
  const auto start = std::chrono::steady_clock::now();
  std::thread commit_later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    net::Commit commit;
    commit.ns = "poll";
    commit.entries = {Entry(net::EntryKind::kDirectory, "x", 0)};
    auto reply = writer->Commit(commit);
    EXPECT_TRUE(reply.ok());
  });
  auto listed = waiter->List("poll", 0, 10000);
  const auto waited = std::chrono::steady_clock::now() - start;
  commit_later.join();
  ASSERT_TRUE(listed.ok()) << listed.status().message();
  ASSERT_EQ(listed.value().entries.size(), 1u);
  EXPECT_EQ(listed.value().entries[0].change.path, "x");
  EXPECT_GE(waited, std::chrono::milliseconds(150));
  EXPECT_LT(waited, std::chrono::milliseconds(5000));
  // Without a commit the poll times out with nothing.
  auto nothing = waiter->List("poll", 1, 100);
  ASSERT_TRUE(nothing.ok());
  EXPECT_TRUE(nothing.value().entries.empty());
  EXPECT_EQ(nothing.value().head_jid, 1u);
}

TEST_F(HubLoopbackTest, ChunkNotMatchingItsNameIsRefused) {
  auto client = NewClient();
  ASSERT_NE(client, nullptr);
  const auto name = fusefs::ChunkName::Of("the real bytes");
  net::StoreBatch batch;
  batch.chunks.push_back({std::string(name.encoded()), "other bytes"});
  batch.chunks.push_back(
      {std::string(fusefs::ChunkName::Of("good").encoded()), std::string("good")});
  auto stored = client->Store(batch);
  ASSERT_TRUE(stored.ok()) << stored.status().message();
  EXPECT_EQ(stored.value().stored, 1u);
  EXPECT_EQ(stored.value().refused, std::string(name.encoded()));
  auto got = client->Retrieve(std::string(name.encoded()));
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got.value().chunks.size(), 1u);
  EXPECT_FALSE(got.value().chunks[0].found);
}

TEST_F(HubLoopbackTest, ChangedChunksTravelAsDeltasAgainstBasesBothEndsHold) {
  auto client = NewClient();
  ASSERT_NE(client, nullptr);
  std::string old_text;
  for (int i = 0; i < 1000; ++i) old_text += "line " + std::to_string(i) + " of a text chunk\n";
  std::string new_text = old_text;
  new_text.replace(new_text.size() / 2, 4, "LINE");
  const auto old_name = fusefs::ChunkName::Of(old_text);
  const auto new_name = fusefs::ChunkName::Of(new_text);
  const auto other_name = fusefs::ChunkName::Of("never stored");

  // A delta against a base the hub lacks is refused; against one it holds, stored.
  net::StoreBatch orphan;
  orphan.chunks.push_back({std::string(new_name.encoded()),
                           net::EncodeDelta("never stored", new_text, 19),
                           std::string(other_name.encoded())});
  auto refused = client->Store(orphan);
  ASSERT_TRUE(refused.ok()) << refused.status().message();
  EXPECT_EQ(refused.value().refused, std::string(new_name.encoded()));
  net::StoreBatch base;
  base.chunks.push_back({std::string(old_name.encoded()), old_text});
  ASSERT_TRUE(client->Store(base).ok());
  net::StoreBatch delta;
  delta.chunks.push_back({std::string(new_name.encoded()), net::EncodeDelta(old_text, new_text, 19),
                          std::string(old_name.encoded())});
  EXPECT_LT(delta.chunks[0].data.size(), 200u);
  auto stored = client->Store(delta);
  ASSERT_TRUE(stored.ok()) << stored.status().message();
  EXPECT_EQ(stored.value().stored, 1u);
  EXPECT_TRUE(stored.value().refused.empty());
  // A delta that decodes to other bytes than its name is refused like any wrong chunk.
  net::StoreBatch lying;
  lying.chunks.push_back({std::string(other_name.encoded()),
                          net::EncodeDelta(old_text, new_text, 19),
                          std::string(old_name.encoded())});
  auto lied = client->Store(lying);
  ASSERT_TRUE(lied.ok());
  EXPECT_EQ(lied.value().refused, std::string(other_name.encoded()));

  // Retrieved with the old chunk as base: a delta that decodes to the new bytes.
  auto got = client->Retrieve(std::string(new_name.encoded()), std::string(old_name.encoded()));
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_EQ(got.value().chunks.size(), 1u);
  const net::RetrievedChunk& chunk = got.value().chunks[0];
  ASSERT_TRUE(chunk.found);
  EXPECT_EQ(chunk.delta_base, std::string(old_name.encoded()));
  auto decoded = net::DecodeDelta(old_text, chunk.data, 1 << 20);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded.value(), new_text);
  // Without a base, whole.
  got = client->Retrieve(std::string(new_name.encoded()));
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got.value().chunks[0].delta_base.empty());
  EXPECT_EQ(got.value().chunks[0].data, new_text);
}

TEST_F(HubLoopbackTest, WrongKeyGetsNothing) {
  auto wrong = net::Connection::Connect({"127.0.0.1", hub_->port()}, MakeKey(2));
  if (wrong.ok()) {
    // Should the handshake complete client-side first, the hub still never answers.
    net::Hello hello;
    (void)wrong.value()->Send(net::MessageType::kHello, hello.Encode());
    EXPECT_FALSE(wrong.value()->Receive(2000).ok());
  }
  auto good = NewClient();
  ASSERT_NE(good, nullptr);
  EXPECT_TRUE(good->List("k", 0).ok());
}

TEST_F(HubLoopbackTest, BadPeersCloseOnlyTheirConnection) {
  auto good = NewClient();
  ASSERT_NE(good, nullptr);
  // Raw garbage on the TCP port: the TLS handshake fails.
  {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(hub_->port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    const char garbage[] = "\xff\xff\xff\xff garbage garbage garbage";
    ASSERT_GT(write(fd, garbage, sizeof(garbage)), 0);
    char buf[64];
    EXPECT_LE(read(fd, buf, sizeof(buf)), 64);  // an alert or EOF, never a frame
    close(fd);
  }
  // A message that does not decode.
  {
    auto bad = NewClient();
    ASSERT_NE(bad, nullptr);
    ASSERT_TRUE(bad->conn()->Send(net::MessageType::kCommit, "\x05garbage").ok());
    auto frame = bad->conn()->Receive(5000);
    ASSERT_TRUE(frame.ok());
    EXPECT_EQ(frame.value().type, net::MessageType::kError);
    auto error = net::ErrorMessage::Decode(frame.value().payload);
    ASSERT_TRUE(error.ok());
    EXPECT_EQ(error.value().code, net::ErrorCode::kBadMessage);
    EXPECT_FALSE(bad->conn()->Receive(5000).ok());  // closed
  }
  // An unexpected message type.
  {
    auto bad = NewClient();
    ASSERT_NE(bad, nullptr);
    net::HelloOk ok;
    ok.hub_id = std::string(16, 'x');
    ASSERT_TRUE(bad->conn()->Send(net::MessageType::kHelloOk, ok.Encode()).ok());
    auto frame = bad->conn()->Receive(5000);
    ASSERT_TRUE(frame.ok());
    EXPECT_EQ(frame.value().type, net::MessageType::kError);
  }
  // A bad namespace name.
  {
    auto bad = NewClient();
    ASSERT_NE(bad, nullptr);
    net::List list;
    list.ns = "q";
    list.max_entries = 1;
    std::string payload = list.Encode();  // Encode asserts validity: break it afterwards
    const std::size_t at = payload.find("\x01q");
    ASSERT_NE(at, std::string::npos);
    payload[at + 1] = '/';
    ASSERT_TRUE(bad->conn()->Send(net::MessageType::kList, payload).ok());
    auto frame = bad->conn()->Receive(5000);
    ASSERT_TRUE(frame.ok());
    ASSERT_EQ(frame.value().type, net::MessageType::kError);
    auto error = net::ErrorMessage::Decode(frame.value().payload);
    ASSERT_TRUE(error.ok());
    EXPECT_TRUE(error.value().code == net::ErrorCode::kBadNamespace ||
                error.value().code == net::ErrorCode::kBadMessage);
  }
  // No Hello first.
  {
    auto conn = net::Connection::Connect({"127.0.0.1", hub_->port()}, key_);
    ASSERT_TRUE(conn.ok());
    net::List list;
    list.ns = "a";
    list.max_entries = 1;
    ASSERT_TRUE(conn.value()->Send(net::MessageType::kList, list.Encode()).ok());
    auto frame = conn.value()->Receive(5000);
    ASSERT_TRUE(frame.ok());
    EXPECT_EQ(frame.value().type, net::MessageType::kError);
  }
  // The good client never noticed.
  auto listed = good->List("still", 0);
  EXPECT_TRUE(listed.ok()) << listed.status().message();
  EXPECT_TRUE(LogMentions("connection closed"));
}

TEST_F(HubLoopbackTest, BusyHubRefusesBeyondConnectionsMax) {
  ASSERT_TRUE(hub_->Close().ok());
  hub_.reset();
  StartHub(/*connections_max=*/1);
  auto first = NewClient();
  ASSERT_NE(first, nullptr);
  auto conn = net::Connection::Connect({"127.0.0.1", hub_->port()}, key_);
  ASSERT_TRUE(conn.ok());
  auto frame = conn.value()->Receive(5000);
  ASSERT_TRUE(frame.ok()) << frame.status().message();
  ASSERT_EQ(frame.value().type, net::MessageType::kError);
  auto error = net::ErrorMessage::Decode(frame.value().payload);
  ASSERT_TRUE(error.ok());
  EXPECT_EQ(error.value().message, "hub busy");
  EXPECT_TRUE(first->List("a", 0).ok());
}

TEST_F(HubLoopbackTest, RestartKeepsJournalHeadAndHubId) {
  const std::string hub_id = hub_->hub_id();
  {
    auto client = NewClient();
    ASSERT_NE(client, nullptr);
    const fusefs::FileRoot root = BuildFile(300000, 3);
    EXPECT_EQ(CommitUploading(client.get(), "keep", FileEntry("f", root, 0)).jid, 1u);
    net::Commit commit;
    commit.ns = "keep";
    commit.entries = {Entry(net::EntryKind::kDirectory, "d", 0),
                      Entry(net::EntryKind::kRename, "f", 1, "d/f")};
    ASSERT_TRUE(client->Commit(commit).ok());
  }
  RestartHub();
  EXPECT_EQ(hub_->hub_id(), hub_id);
  auto client = NewClient();
  ASSERT_NE(client, nullptr);
  auto listed = client->List("keep", 0);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed.value().head_jid, 3u);
  ASSERT_EQ(listed.value().entries.size(), 3u);
  // The rebuilt index answers as before: d/f holds the file at jid 3.
  net::Commit commit;
  commit.ns = "keep";
  commit.entries = {Entry(net::EntryKind::kDelete, "d/f", 3)};
  auto reply = client->Commit(commit);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply.value().results[0].status, net::CommitStatus::kOk);
  EXPECT_EQ(reply.value().results[0].jid, 4u);
}

TEST_F(HubLoopbackTest, RetentionPrunesSupersededFilesAndGcDeletesTheirChunks) {
  ASSERT_TRUE(hub_->Close().ok());
  hub_.reset();
  StartHub(64, /*retention_sec=*/0);
  auto client = NewClient();
  ASSERT_NE(client, nullptr);
  const fusefs::FileRoot v1 = BuildFile(300000, 10);
  const fusefs::FileRoot v2 = BuildFile(300000, 11);
  const fusefs::FileRoot other = BuildFile(300000, 12);
  EXPECT_EQ(CommitUploading(client.get(), "r", FileEntry("f", v1, 0)).jid, 1u);
  EXPECT_EQ(CommitUploading(client.get(), "r", FileEntry("g", other, 0)).jid, 2u);
  net::Commit rename;
  rename.ns = "r";
  rename.entries = {Entry(net::EntryKind::kRename, "g", 2, "h")};
  ASSERT_TRUE(client->Commit(rename).ok());  // jid 3: g's content (jid 2) lives on at h
  EXPECT_EQ(CommitUploading(client.get(), "r", FileEntry("f", v2, 1)).jid, 4u);
  std::uint64_t pruned = 0;
  ASSERT_TRUE(hub_->PruneJournal(&pruned).ok());
  EXPECT_EQ(pruned, 1u);  // only jid 1: superseded, past the (zero) retention
  auto listed = client->List("r", 0);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed.value().entries.size(), 3u);
  EXPECT_EQ(listed.value().entries[0].jid, 2u);
  auto gc = hub_->CollectGarbage();
  ASSERT_TRUE(gc.ok()) << gc.status().message();
  EXPECT_GT(gc.value().deleted_chunks, 0u);
  EXPECT_EQ(gc.value().chunks, gc.value().referenced_chunks + gc.value().deleted_chunks);
  // v1's root is gone, v2 and h's are whole: a commit of v1 again asks for it.
  net::Commit again;
  again.ns = "r";
  again.entries = {FileEntry("f", v1, 4)};
  auto reply = client->Commit(again);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply.value().results[0].status, net::CommitStatus::kMissing);
  // Restart: the index rebuilds from the pruned journal.
  RestartHub();
  auto after = NewClient();
  ASSERT_NE(after, nullptr);
  auto relisted = after->List("r", 0);
  ASSERT_TRUE(relisted.ok());
  EXPECT_EQ(relisted.value().head_jid, 4u);
  auto* impl = static_cast<HubImpl*>(hub_.get());
  const NamespaceIndex* ns = impl->snapshot()->Find("r");
  ASSERT_NE(ns, nullptr);
  EXPECT_EQ(ns->Find("h")->root, other.Encode());
  EXPECT_EQ(ns->Find("f")->jid, 4u);
}

}  // namespace
}  // namespace cascadefs::hub
