#pragma once

#include <memory>
#include <optional>
#include <string>

#include "frontend/app.hpp"
#include "frontend/clients.hpp"
#include "net/stream.hpp"
#include "protocol/buffer.hpp"
#include "protocol/messages.hpp"
#include "protocol/params.hpp"

namespace pgdog::frontend {

// How a client's login ended.
struct LoginResult {
  enum class Kind { proceed, admin, close };
  Kind kind = Kind::close;
  std::shared_ptr<UserEntry> user;  // proceed: the user and its pool
  protocol::Params params;          // proceed: the session parameters the client was told
  protocol::Params startup;         // proceed: those it sent itself (RESET returns to them)
};

// A client's way in: the startup packet (SSLRequest, GSSENCRequest and CancelRequest on the
// way), TLS, protocol version negotiation, authentication and the parameters it is told. On
// failure the client has been told why (FATAL) and the connection is closed.
//
// Lives only while the client logs in: an idle client keeps none of it.
class Login {
 public:
  Login(App& app, net::Stream& client, protocol::Buffer& in, ClientInfo& info,
        std::shared_ptr<const config::Config> config)
      : app_(app), client_(client), in_(in), info_(info), config_(std::move(config)) {}

  // Bounded by client_login_timeout; refuses clients while shutting down or over
  // max_client_conn.
  Task<LoginResult> run();

 private:
  Task<LoginResult> startup();
  Task<bool> negotiate(protocol::StartupPacket& packet);
  Task<bool> upgrade_tls(bool& negotiated_tls);
  Task<bool> read_startup_packet(protocol::StartupPacket& out);
  Task<LoginResult> admin_login(const std::string& user);
  Task<LoginResult> user_login(const protocol::StartupPacket& packet, const std::string& user,
                               const std::string& database);
  Task<bool> authenticate(const std::string& user, const std::optional<std::string>& password,
                          const auth::ScramSecret* scram, config::AuthType method);
  Task<bool> read_frame(protocol::Frame& frame);
  Task<bool> send_parameters(const protocol::StartupPacket& packet, UserEntry& user,
                             LoginResult& result);
  void cancel(const protocol::StartupPacket& packet);
  Task<void> fatal(std::string_view code, std::string_view message);

  App& app_;
  net::Stream& client_;
  protocol::Buffer& in_;
  ClientInfo& info_;
  std::shared_ptr<const config::Config> config_;
};

// Writes FATAL with `code` and `message` to the client and closes the connection.
Task<void> send_fatal(net::Stream& client, std::string_view code, std::string_view message);

}  // namespace pgdog::frontend
