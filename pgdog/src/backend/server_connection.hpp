#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "backend/error.hpp"
#include "backend/prepared.hpp"
#include "backend/server_state.hpp"
#include "config/config.hpp"
#include "net/stream.hpp"
#include "protocol/buffer.hpp"
#include "protocol/messages.hpp"
#include "protocol/params.hpp"

namespace pgdog::backend {

using Clock = std::chrono::steady_clock;

// Where and as whom to connect.
struct ServerAddress {
  std::string host;  // a name, an IP address, or a directory holding the server's Unix socket
  std::uint16_t port = 5432;
  std::string database;
  std::string user;
  std::string password;
  config::TlsVerify tls_verify = config::TlsVerify::prefer;
  asio::ssl::context* tls_context = nullptr;  // required unless tls_verify is disabled

  // "user@host:port/database" (or "user@/dir/.s.PGSQL.port/database"), no password
  std::string to_string() const;
  bool operator==(const ServerAddress&) const = default;
};

// Where a CancelRequest for this connection's running query goes. Built once per connection
// so that publishing it for a client is a pointer copy, not a string copy per transaction.
struct CancelKey {
  std::string host;
  std::uint16_t port = 0;
  protocol::BackendKeyData key;
};

// One authenticated connection to a PostgreSQL server. Used by one session (or mirror worker)
// at a time; the pool hands it over.
class ServerConnection {
 public:
  static Task<Result<std::unique_ptr<ServerConnection>>> connect(Executor ex, ServerAddress address,
                                                                 config::Millis timeout,
                                                                 std::size_t max_message_size);
  ~ServerConnection();
  ServerConnection(const ServerConnection&) = delete;
  ServerConnection& operator=(const ServerConnection&) = delete;

  net::Stream& stream() { return stream_; }
  protocol::Buffer& buffer() { return buffer_; }
  std::size_t max_message_size() const { return max_message_size_; }

  // Everything known of its session apart from the socket (what the exchange keeps in step).
  ServerState& state() { return state_; }
  // The server's session parameters as it reported them, plus the ones we SET.
  protocol::Params& params() { return state_.params; }
  // Index among the pool's servers in use (the pool's bookkeeping, not the connection's).
  std::size_t pool_slot = static_cast<std::size_t>(-1);
  std::size_t pool_shard = 0;  // the pool shard (worker) whose loop its socket belongs to
  // The pool's address epoch it was opened under: a reload that moves the pool's address bumps
  // it, and the connections to the old address are not used again.
  std::uint64_t address_epoch = 0;

  // Parameters SET by the proxy for some client; a client without them gets them RESET.
  protocol::Params& applied() { return state_.applied; }
  // Hash of the client parameters this server was last synchronized with.
  std::uint64_t synced_hash() const { return state_.synced_hash; }

  const protocol::BackendKeyData& key() const { return key_; }
  std::shared_ptr<const CancelKey> cancel_key() const { return cancel_key_; }
  char status() const { return state_.status; }
  void set_status(char s) { state_.status = s; }
  std::uint64_t id() const { return id_; }
  Clock::time_point created_at() const { return created_at_; }
  Clock::time_point last_used() const { return last_used_; }
  void touch(Clock::time_point now = Clock::now()) { last_used_ = now; }
  const ServerAddress& address() const { return address_; }

  // The connection can no longer be trusted (I/O error, FATAL, protocol violation, timeout).
  bool broken() const { return state_.broken; }
  void mark_broken() { state_.broken = true; }

  PreparedCache& prepared() { return state_.prepared; }

  // Whether the socket is still open at the other end, without reading anything: a server that
  // was terminated while idle has sent FATAL and EOF.
  bool alive();

  // Reads until one whole frame is at the front of buffer(). The caller consumes it.
  Task<Result<protocol::Frame>> read_frame();

  // Runs `sql` with the simple protocol and reads to ReadyForQuery. ParameterStatus updates
  // params(); the first ErrorResponse becomes the failure; the first row, if asked for, is
  // kept in `first_row` (each column's text, nothing for NULL).
  using Row = std::vector<std::optional<std::string>>;
  Task<Result<void>> execute(std::string_view sql, Row* first_row = nullptr);

  // Session mode, when a client leaves: DISCARD ALL, and forgets what the cache knew of the
  // session (prepared statements, parameters), so the next client inherits nothing. False when
  // the connection must not be reused.
  Task<bool> reset_session();

  // Sends a CancelRequest for this connection's current query over a new connection.
  static Task<void> cancel(Executor ex, std::string host, std::uint16_t port,
                           protocol::BackendKeyData key);


 private:
  static void keep_row(std::string_view body, Row& row);
  static Task<void> send_cancel(Executor ex, std::string host, std::uint16_t port,
                                protocol::BackendKeyData key);
  ServerConnection(net::Socket socket, ServerAddress address, std::size_t max_message_size);
  Task<Result<void>> startup();
  Task<Result<void>> negotiate_tls();

  net::Stream stream_;
  protocol::Buffer buffer_;
  ServerAddress address_;
  std::size_t max_message_size_;
  ServerState state_;
  protocol::BackendKeyData key_;
  std::shared_ptr<const CancelKey> cancel_key_;
  std::uint64_t id_;
  Clock::time_point created_at_;
  Clock::time_point last_used_;
};

using ServerPtr = std::unique_ptr<ServerConnection>;

}  // namespace pgdog::backend
