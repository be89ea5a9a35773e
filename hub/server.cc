// server.cc: the hub's network side (hub_impl.h): a listener thread, one handler thread per
// connection, each turning frames into the requests of hub_impl.cc.
//
// A connection's life: TLS handshake (net), then Hello within the handshake timeout (HelloOk
// or Error kBadVersion), then requests answered one at a time until the peer closes, stays idle
// past idle_timeout_ms, or sends something invalid. Anything invalid gets one Error frame with
// a one-line reason, one log line naming the peer, and the close of that connection only.
#include <string>

#include "hub_impl.h"

namespace cascadefs::hub {
namespace {

void SendError(net::Connection* connection, net::ErrorCode code, std::string message) {
  if (message.size() > net::kErrorMessageBytesMax) message.resize(net::kErrorMessageBytesMax);
  net::ErrorMessage error;
  error.code = code;
  error.message = std::move(message);
  Status sent = connection->Send(net::MessageType::kError, error.Encode());
  static_cast<void>(sent);  // the connection closes either way
}

net::ErrorCode ErrorCodeFor(const Status& status) {
  if (status.IsInvalidArgument()) return net::ErrorCode::kBadMessage;
  if (status.IsCancelled()) return net::ErrorCode::kShuttingDown;
  return net::ErrorCode::kInternal;
}

}  // namespace

Status HubImpl::Listen(const net::HostPort& address, const net::PresharedKey& key,
                       const net::ConnectionOptions& connection_options) {
  if (listener_ != nullptr) return Status::InvalidArgument("the hub is already listening");
  connection_options_ = connection_options;
  Result<std::unique_ptr<net::Listener>> listener =
      net::Listener::Listen(address, key, connection_options);
  if (!listener.ok()) return listener.status();
  listener_ = std::move(listener.value());
  port_.store(listener_->port());
  listener_thread_ = std::thread([this] { ListenLoop(); });
  return Status::OK();
}

void HubImpl::ListenLoop() {
  for (;;) {
    Result<std::unique_ptr<net::Connection>> accepted = listener_->Accept();
    if (!accepted.ok()) {
      if (accepted.status().IsCancelled() || closing_.load()) return;
      Log("accept: " + std::string(accepted.status().message()));
      continue;
    }
    std::unique_ptr<net::Connection> connection = std::move(accepted.value());
    {
      std::lock_guard lock(connections_mutex_);
      // Reap the handlers that finished (each set `finished` last, under this mutex).
      for (auto it = handlers_.begin(); it != handlers_.end();) {
        if (it->finished.load()) {
          it->thread.join();
          it = handlers_.erase(it);
        } else {
          ++it;
        }
      }
      if (closing_.load()) return;
      if (handlers_.size() < options_.connections_max) {
        Handler& handler = handlers_.emplace_back();
        handler.connection = std::move(connection);
        handler.thread = std::thread([this, &handler] {
          ServeConnection(handler.connection.get());
          // Close the socket now (not at the next reap): the peer sees the end at once.
          std::lock_guard done_lock(connections_mutex_);
          handler.connection.reset();
          handler.finished.store(true);
        });
        continue;
      }
    }
    // The bound: this one is told and closed. Its handshake runs here, within the handshake
    // timeout, so a full hub accepts more slowly instead of holding more threads.
    const std::string peer = connection->peer();
    if (connection->Handshake().ok()) {
      SendError(connection.get(), net::ErrorCode::kInternal, "hub busy");
    }
    Log(peer + ": refused: hub busy (" + std::to_string(options_.connections_max) +
        " connections)");
  }
}

void HubImpl::StopServer() {
  if (listener_ == nullptr) return;
  listener_->Close();
  if (listener_thread_.joinable()) listener_thread_.join();
  std::list<Handler> handlers;
  {
    std::lock_guard lock(connections_mutex_);
    for (Handler& handler : handlers_) {
      if (handler.connection != nullptr) handler.connection->Shutdown();
    }
    handlers.splice(handlers.end(), handlers_);  // nodes keep their addresses
  }
  for (Handler& handler : handlers) handler.thread.join();
}

void HubImpl::ServeConnection(net::Connection* connection) {
  const std::string peer = connection->peer();
  Status handshake = connection->Handshake();
  if (!handshake.ok()) {
    Log(peer + ": handshake failed: " + std::string(handshake.message()));
    return;
  }
  auto bad_peer = [&](net::ErrorCode code, const std::string& reason) {
    SendError(connection, code, reason);
    Log(peer + ": " + reason + "; connection closed");
  };
  Result<net::Frame> first = connection->Receive(connection_options_.handshake_timeout_ms);
  if (!first.ok()) {
    if (first.status().IsInvalidArgument()) {
      bad_peer(net::ErrorCode::kBadMessage, std::string(first.status().message()));
    } else if (!first.status().IsCancelled()) {
      Log(peer + ": no Hello: " + std::string(first.status().message()));
    }
    return;
  }
  if (first.value().type != net::MessageType::kHello) {
    bad_peer(net::ErrorCode::kBadMessage,
             std::string("expected Hello, got ") + net::MessageTypeName(first.value().type));
    return;
  }
  Result<net::Hello> hello = net::Hello::Decode(first.value().payload);
  if (!hello.ok()) {
    bad_peer(net::ErrorCode::kBadMessage, "Hello: " + std::string(hello.status().message()));
    return;
  }
  const std::uint32_t version = std::min(hello.value().version_max, net::kProtocolVersionMax);
  if (version < std::max(hello.value().version_min, net::kProtocolVersionMin)) {
    bad_peer(net::ErrorCode::kBadVersion, "no common protocol version (hub speaks " +
                                              std::to_string(net::kProtocolVersionMin) + ".." +
                                              std::to_string(net::kProtocolVersionMax) + ")");
    return;
  }
  const std::string origin = hello.value().host;
  net::HelloOk ok;
  ok.version = version;
  ok.hub_id = hub_id();
  if (!connection->Send(net::MessageType::kHelloOk, ok.Encode()).ok()) return;

  for (;;) {
    Result<net::Frame> frame = connection->Receive(options_.idle_timeout_ms);
    if (!frame.ok()) {
      if (frame.status().IsInvalidArgument()) {
        bad_peer(net::ErrorCode::kBadMessage, std::string(frame.status().message()));
      }
      return;  // closed by the peer, idle, or the hub is closing
    }
    const std::string& payload = frame.value().payload;
    net::MessageType reply_type = net::MessageType::kError;
    Result<std::string> reply = Status::InvalidArgument("");
    std::string_view what = net::MessageTypeName(frame.value().type);
    switch (frame.value().type) {
      case net::MessageType::kCommit: {
        Result<net::Commit> m = net::Commit::Decode(payload);
        if (!m.ok()) {
          reply = m.status();
          break;
        }
        if (!net::IsValidNamespace(m.value().ns)) {
          bad_peer(net::ErrorCode::kBadNamespace, "Commit: not a valid namespace name");
          return;
        }
        Result<net::CommitReply> r = Commit(m.value(), origin);
        reply_type = net::MessageType::kCommitReply;
        reply = r.ok() ? Result<std::string>(r.value().Encode()) : Result<std::string>(r.status());
        break;
      }
      case net::MessageType::kStoreBatch: {
        Result<net::StoreBatch> m = net::StoreBatch::Decode(payload);
        if (!m.ok()) {
          reply = m.status();
          break;
        }
        Result<net::StoreReply> r = StoreBatch(m.value());
        reply_type = net::MessageType::kStoreReply;
        reply = r.ok() ? Result<std::string>(r.value().Encode()) : Result<std::string>(r.status());
        break;
      }
      case net::MessageType::kList: {
        Result<net::List> m = net::List::Decode(payload);
        if (!m.ok()) {
          reply = m.status();
          break;
        }
        if (!net::IsValidNamespace(m.value().ns)) {
          bad_peer(net::ErrorCode::kBadNamespace, "List: not a valid namespace name");
          return;
        }
        Result<net::ListReply> r = List(m.value());
        reply_type = net::MessageType::kListReply;
        reply = r.ok() ? Result<std::string>(r.value().Encode()) : Result<std::string>(r.status());
        break;
      }
      case net::MessageType::kRetrieve: {
        Result<net::Retrieve> m = net::Retrieve::Decode(payload);
        if (!m.ok()) {
          reply = m.status();
          break;
        }
        Result<net::RetrieveReply> r = Retrieve(m.value());
        reply_type = net::MessageType::kRetrieveReply;
        reply = r.ok() ? Result<std::string>(r.value().Encode()) : Result<std::string>(r.status());
        break;
      }
      default:
        bad_peer(net::ErrorCode::kBadMessage, "unexpected message type " + std::string(what));
        return;
    }
    if (!reply.ok()) {
      const net::ErrorCode code = ErrorCodeFor(reply.status());
      const std::string reason = std::string(what) + ": " + std::string(reply.status().message());
      if (code == net::ErrorCode::kBadMessage) {
        bad_peer(code, reason);
      } else {
        SendError(connection, code, reason);
        if (code == net::ErrorCode::kInternal) Log(peer + ": " + reason);
      }
      return;
    }
    if (!connection->Send(reply_type, reply.value()).ok()) return;
  }
}

}  // namespace cascadefs::hub
