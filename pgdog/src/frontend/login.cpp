#include "frontend/login.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <spdlog/spdlog.h>

#include "auth/auth.hpp"
#include "auth/server_handshake.hpp"

namespace pgdog::frontend {

Task<void> send_fatal(net::Stream& client, std::string_view code, std::string_view message) {
  std::string out;
  protocol::write_error(out, {.severity = "FATAL", .code = code, .message = message});
  co_await client.write(out);
  client.close();
}

Task<void> Login::fatal(std::string_view code, std::string_view message) {
  co_await send_fatal(client_, code, message);
}

Task<LoginResult> Login::run() {
  using namespace asio::experimental::awaitable_operators;
  if (app_.shutting_down()) {
    co_await fatal("57P01", "pgdog is shutting down");
    co_return LoginResult{};
  }
  if (app_.clients().size() > config_->general.max_client_conn) {
    co_await fatal("53300", "too many client connections (max_client_conn = " +
                                std::to_string(config_->general.max_client_conn) + ")");
    co_return LoginResult{};
  }
  asio::steady_timer timer(co_await asio::this_coro::executor,
                           config_->general.client_login_timeout);
  auto login = co_await (startup() || timer.async_wait(use_nothrow));
  if (login.index() == 1) {
    co_await fatal("08P01", "client did not finish logging in within client_login_timeout");
    co_return LoginResult{};
  }
  co_return std::move(std::get<0>(login));
}

Task<bool> Login::read_startup_packet(protocol::StartupPacket& packet) {
  while (true) {
    auto len = protocol::peek_startup_length(in_.readable());
    if (len && in_.size() >= *len) {
      auto decoded = protocol::decode_startup(in_.readable().substr(0, *len));
      in_.consume(*len);
      if (!decoded) {
        if (decoded.error() == protocol::Error::bad_startup_code) {
          co_await fatal("0A000", "unsupported frontend protocol: pgdog speaks protocol 3.0");
        } else {
          co_await fatal("08P01", "invalid startup packet: " + decoded.error().message());
        }
        co_return false;
      }
      packet = std::move(*decoded);
      co_return true;
    }
    if (!len && len.error() != protocol::Error::need_more) {
      co_await fatal("08P01", "invalid startup packet length");
      co_return false;
    }
    auto [ec, n] = co_await client_.read_some(in_.prepare(512));
    if (ec) co_return false;
    in_.commit(n);
  }
}

void Login::cancel(const protocol::StartupPacket& packet) {
  auto client = app_.clients().find(packet.process_id, packet.secret_key);
  if (!client) return;  // a wrong key cancels nothing, silently, as PostgreSQL does
  if (auto session = client->session()) session->cancel_query();
}

Task<bool> Login::upgrade_tls(bool& negotiated_tls) {
  if (negotiated_tls || client_.is_tls()) {
    co_await fatal("08P01", "SSLRequest received twice");
    co_return false;
  }
  negotiated_tls = true;
  if (app_.client_tls() == nullptr) co_return !co_await client_.write("N");
  // Bytes sent before the handshake would be plaintext pretending to be inside TLS.
  if (!in_.empty()) {
    co_await fatal("08P01", "received unencrypted data after SSL request");
    co_return false;
  }
  if (co_await client_.write("S")) co_return false;
  if (auto ec = co_await client_.tls_accept(*app_.client_tls())) {
    spdlog::info("client {}: TLS handshake failed: {}", info_.address, ec.message());
    co_return false;
  }
  co_return true;
}

// Reads packets until the StartupMessage, answering SSLRequest and GSSENCRequest on the way.
// False when the connection is done (a CancelRequest, or an error already reported).
Task<bool> Login::negotiate(protocol::StartupPacket& packet) {
  bool negotiated_tls = false;
  bool answered_gss = false;
  while (true) {
    if (!co_await read_startup_packet(packet)) co_return false;
    switch (packet.kind) {
      case protocol::StartupKind::startup:
        co_return true;
      case protocol::StartupKind::cancel_request:
        cancel(packet);
        co_return false;
      case protocol::StartupKind::gssenc_request:
        if (answered_gss || negotiated_tls) {
          co_await fatal("08P01", "unexpected GSSENCRequest");
          co_return false;
        }
        answered_gss = true;
        if (co_await client_.write("N")) co_return false;
        break;
      default:  // SSLRequest
        if (!co_await upgrade_tls(negotiated_tls)) co_return false;
    }
  }
}

Task<LoginResult> Login::startup() {
  protocol::StartupPacket packet;
  if (!co_await negotiate(packet)) co_return LoginResult{};
  // A newer 3.x minor version or protocol options: negotiated down to 3.0, as PostgreSQL does.
  if (std::string v; protocol::negotiate_protocol_version(packet, v), !v.empty()) {
    if (co_await client_.write(v)) co_return LoginResult{};
  }
  if (config_->general.tls_client_required && !client_.is_tls()) {
    co_await fatal("28000", "TLS is required: connect with sslmode=require or stronger");
    co_return LoginResult{};
  }
  const std::string* user = packet.param("user");
  if (user == nullptr || user->empty()) {
    co_await fatal("28000", "no PostgreSQL user name specified in startup packet");
    co_return LoginResult{};
  }
  const std::string* db_param = packet.param("database");
  const std::string database = (db_param && !db_param->empty()) ? *db_param : *user;
  const std::string* app_name = packet.param("application_name");
  info_.set_identity(*user, database, app_name ? *app_name : "");
  if (database == config_->admin.name) co_return co_await admin_login(*user);
  co_return co_await user_login(packet, *user, database);
}

Task<LoginResult> Login::admin_login(const std::string& user) {
  // The admin console never accepts trust: without its password nobody gets in.
  const bool known = user == config_->admin.user && config_->admin.password.has_value();
  const auto method = config_->general.auth_type == config::AuthType::md5
                          ? config::AuthType::md5
                          : config::AuthType::scram;
  // Derived once per configuration (PBKDF2 is slow on purpose), so a login attempt costs no
  // more than one for an unknown user.
  auth::ScramSecret secret;
  if (known) secret = app_.admin_scram();
  const std::optional<std::string> password =
      known ? config_->admin.password : std::optional<std::string>{};
  LoginResult result;
  if (co_await authenticate(user, password, known ? &secret : nullptr, method)) {
    result.kind = LoginResult::Kind::admin;
  }
  co_return result;
}

Task<LoginResult> Login::user_login(const protocol::StartupPacket& packet, const std::string& user,
                                    const std::string& database) {
  LoginResult result;
  if (!app_.has_database(database)) {
    co_await fatal("3D000", "database \"" + database + "\" does not exist");
    co_return result;
  }
  auto entry = app_.find_user(user, database);
  const std::optional<std::string> password =
      entry ? entry->user.password : std::optional<std::string>{};
  if (!co_await authenticate(user, password, entry ? &entry->scram : nullptr,
                             config_->general.auth_type)) {
    co_return result;
  }
  if (!entry) {
    // Only reachable with trust: there is no password to check, only a missing user.
    co_await fatal("28000", "no such user \"" + user + "\" for database \"" + database + "\"");
    co_return result;
  }
  if (!co_await send_parameters(packet, *entry, result)) co_return result;
  result.kind = LoginResult::Kind::proceed;
  result.user = std::move(entry);
  co_return result;
}

// The next whole message from the client; false (the client told why) when it breaks the protocol.
Task<bool> Login::read_frame(protocol::Frame& frame) {
  while (true) {
    auto f = protocol::next_frame(in_.readable(), 64 * 1024);
    if (f) {
      frame = *f;
      co_return true;
    }
    if (f.error() != protocol::Error::need_more) {
      co_await fatal("08P01", "invalid message during authentication");
      co_return false;
    }
    auto [ec, n] = co_await client_.read_some(in_.prepare(1024));
    if (ec) co_return false;
    in_.commit(n);
  }
}

Task<bool> Login::authenticate(const std::string& user, const std::optional<std::string>& password,
                               const auth::ScramSecret* scram, config::AuthType method) {
  using Status = auth::ServerHandshake::Status;
  const auto m = method == config::AuthType::trust ? auth::Method::trust
                 : method == config::AuthType::md5 ? auth::Method::md5
                                                   : auth::Method::scram;
  auth::ServerHandshake handshake(m, user, password, scram);
  auto step = handshake.start();
  while (step.status == Status::reply) {
    const error_code ec = co_await client_.write(step.out);
    if (ec) co_return false;
    protocol::Frame frame;
    const bool read = co_await read_frame(frame);
    if (!read) co_return false;
    step = handshake.feed(frame);  // copies what it keeps
    in_.consume(frame.size());
  }
  if (step.status == Status::failed) {
    co_await fatal(step.sqlstate, step.message);
    co_return false;
  }
  const error_code ec = co_await client_.write(step.out);
  co_return !ec;
}

Task<bool> Login::send_parameters(const protocol::StartupPacket& packet, UserEntry& user,
                                  LoginResult& result) {
  protocol::Params& params = result.params;
  auto defaults = co_await user.pool->server_defaults();
  if (!defaults) {
    const auto& f = defaults.error();
    co_await fatal(f.sqlstate, f.to_string());
    co_return false;
  }
  for (const auto& [name, value] : defaults->items()) {
    if (protocol::is_session_parameter(name)) params.set(name, value);
  }
  for (const auto& [name, value] : packet.params) {
    if (protocol::is_session_parameter(name)) result.startup.set(name, value);
  }
  // "options" carries command-line style settings (-c name=value, --name=value), which the
  // server would apply at login: they become session parameters like the others.
  if (const std::string* options = packet.param("options")) {
    auto parsed = protocol::parse_options(*options);
    if (!parsed) {
      co_await fatal("08P01", "unsupported startup option in \"options\": only -c name=value "
                              "and --name=value are supported (got \"" + *options + "\")");
      co_return false;
    }
    for (const auto& [name, value] : *parsed) result.startup.set(name, value);
  }
  for (const auto& [name, value] : result.startup.items()) params.set(name, value);
  std::string out;
  for (const auto& [name, value] : defaults->items()) {
    const auto mine = params.get(name);
    protocol::write_parameter_status(out, name, mine ? *mine : value);
  }
  params.compact();
  protocol::write_backend_key_data(out, info_.process_id, info_.secret_key);
  protocol::write_ready_for_query(out, 'I');
  co_return !co_await client_.write(out);
}

}  // namespace pgdog::frontend
