#include "frontend/client_session.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <spdlog/spdlog.h>

#include "auth/auth.hpp"
#include "backend/session_params.hpp"
#include "frontend/admin.hpp"
#include "protocol/scanner.hpp"

namespace pgdog::frontend {

namespace {

using Clock = std::chrono::steady_clock;
using stats::PoolCounters;

std::uint64_t micros(Clock::duration d) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
}

std::string peer_address(const tcp::socket& s) {
  error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) return "unknown";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}


bool is_frontend_type(char t) {
  switch (t) {
    case protocol::fe::kQuery:
    case protocol::fe::kParse:
    case protocol::fe::kBind:
    case protocol::fe::kDescribe:
    case protocol::fe::kExecute:
    case protocol::fe::kClose:
    case protocol::fe::kSync:
    case protocol::fe::kFlush:
    case protocol::fe::kCopyData:
    case protocol::fe::kCopyDone:
    case protocol::fe::kCopyFail:
    case protocol::fe::kFunctionCall:
      return true;
    default:
      return false;
  }
}

}  // namespace

ClientSession::ClientSession(App& app, tcp::socket socket)
    : app_(app), client_(std::move(socket)) {}

ClientSession::~ClientSession() = default;

void ClientSession::set_state(ClientState s) { info_->state.store(s, std::memory_order_relaxed); }

Task<void> ClientSession::run() {
  auto self = shared_from_this();
  executor_ = co_await asio::this_coro::executor;
  config_ = app_.config();
  max_message_size_ = config_->general.max_message_size;
  info_ = app_.clients().add(peer_address(client_.socket()));
  info_->set_session(weak_from_this());

  // This frame stays alive for the whole connection: the login machinery lives in its own
  // coroutine so an idle client does not keep it.
  const Login login = co_await login_phase();
  if (login == Login::admin) {
    AdminSession admin(app_, client_, in_, *info_);
    co_await admin.run();
  } else if (login == Login::proceed) {
    set_state(ClientState::idle);
    // serve() ends the connection itself; this frame goes away as soon as the client is idle.
    co_await serve(std::move(self), error_code{}, 0);
    co_return;
  }
  app_.clients().remove(*info_);
  client_.close();
}

Task<ClientSession::Login> ClientSession::login_phase() {
  using namespace asio::experimental::awaitable_operators;
  if (app_.shutting_down()) {
    co_await fatal("57P01", "pgdog is shutting down");
    co_return Login::close;
  }
  if (app_.clients().size() > config_->general.max_client_conn) {
    co_await fatal("53300", "too many client connections (max_client_conn = " +
                                std::to_string(config_->general.max_client_conn) + ")");
    co_return Login::close;
  }
  asio::steady_timer timer(executor_, config_->general.client_login_timeout);
  auto login = co_await (startup() || timer.async_wait(use_nothrow));
  if (login.index() == 1) {
    co_await fatal("08P01", "client did not finish logging in within client_login_timeout");
    co_return Login::close;
  }
  // An idle client keeps no read buffer.
  in_.release();
  co_return std::get<0>(login);
}

void ClientSession::terminate(bool graceful) {
  asio::post(executor_, [self = shared_from_this(), graceful] {
    if (self->closing_) return;
    if (graceful && self->server_ && (self->in_transaction_ || self->pending_ > 0)) {
      self->terminate_after_transaction_ = true;
      return;
    }
    // Written asynchronously, so that it reaches TLS clients as well, then closed.
    self->closing_ = true;
    asio::co_spawn(
        self->executor_,
        [self]() -> Task<void> {
          std::string out;
          protocol::write_error(out,
                                {.severity = "FATAL",
                                 .code = "57P01",
                                 .message = "terminating connection due to administrator command"});
          asio::steady_timer timer(self->executor_, std::chrono::seconds(1));
          using namespace asio::experimental::awaitable_operators;
          co_await (self->client_.write(out) || timer.async_wait(use_nothrow));
          self->client_.close();
        },
        log_errors("session termination"));
  });
}

Task<void> ClientSession::fatal(std::string_view code, std::string_view message) {
  std::string out;
  protocol::write_error(out, {.severity = "FATAL", .code = code, .message = message});
  co_await client_.write(out);
  closing_ = true;
  client_.close();
}

Task<bool> ClientSession::read_startup_packet(protocol::StartupPacket& packet) {
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

void ClientSession::handle_cancel(const protocol::StartupPacket& packet) {
  auto client = app_.clients().find(packet.process_id, packet.secret_key);
  if (!client) return;  // a wrong key cancels nothing, silently, as PostgreSQL does
  if (auto session = client->session()) session->cancel_query();
}

void ClientSession::cancel_query() {
  // Asked on the target session's own executor, so nothing has to be published on every
  // transaction for the rare cancel.
  asio::post(executor_, [self = shared_from_this()] {
    if (!self->server_) return;  // nothing running: nothing to cancel
    const auto key = self->server_->cancel_key();
    if (!key) return;
    asio::co_spawn(self->app_.io_executor(),
                   backend::ServerConnection::cancel(self->app_.io_executor(), key->host,
                                                     key->port, key->key),
                   log_errors("cancel request"));
  });
}

Task<ClientSession::Login> ClientSession::startup() {
  protocol::StartupPacket packet;
  bool negotiated_tls = false;
  bool answered_gss = false;
  while (true) {
    if (!co_await read_startup_packet(packet)) co_return Login::close;
    if (packet.kind == protocol::StartupKind::startup) break;
    if (packet.kind == protocol::StartupKind::cancel_request) {
      handle_cancel(packet);
      co_return Login::close;
    }
    if (packet.kind == protocol::StartupKind::gssenc_request) {
      if (answered_gss || negotiated_tls) {
        co_await fatal("08P01", "unexpected GSSENCRequest");
        co_return Login::close;
      }
      answered_gss = true;
      if (co_await client_.write("N")) co_return Login::close;
      continue;
    }
    // SSLRequest.
    if (negotiated_tls || client_.is_tls()) {
      co_await fatal("08P01", "SSLRequest received twice");
      co_return Login::close;
    }
    negotiated_tls = true;
    if (app_.client_tls() == nullptr) {
      if (co_await client_.write("N")) co_return Login::close;
      continue;
    }
    // Bytes sent before the handshake would be plaintext pretending to be inside TLS.
    if (!in_.empty()) {
      co_await fatal("08P01", "received unencrypted data after SSL request");
      co_return Login::close;
    }
    if (co_await client_.write("S")) co_return Login::close;
    if (auto ec = co_await client_.tls_accept(*app_.client_tls())) {
      spdlog::info("client {}: TLS handshake failed: {}", info_->address, ec.message());
      co_return Login::close;
    }
  }

  // A newer 3.x minor version or protocol options: negotiated down to 3.0, as PostgreSQL does.
  if (std::string v; protocol::negotiate_protocol_version(packet, v), !v.empty()) {
    if (co_await client_.write(v)) co_return Login::close;
  }

  const auto& general = config_->general;
  if (general.tls_client_required && !client_.is_tls()) {
    co_await fatal("28000", "TLS is required: connect with sslmode=require or stronger");
    co_return Login::close;
  }
  const std::string* user = packet.param("user");
  if (user == nullptr || user->empty()) {
    co_await fatal("28000", "no PostgreSQL user name specified in startup packet");
    co_return Login::close;
  }
  const std::string* db_param = packet.param("database");
  const std::string database = (db_param && !db_param->empty()) ? *db_param : *user;
  const std::string* app_name = packet.param("application_name");
  info_->set_identity(*user, database, app_name ? *app_name : "");

  if (database == config_->admin.name) {
    // The admin console never accepts trust: without its password nobody gets in.
    const bool known = *user == config_->admin.user && config_->admin.password.has_value();
    auto method = general.auth_type == config::AuthType::md5 ? config::AuthType::md5
                                                             : config::AuthType::scram;
    // Derived once per configuration (PBKDF2 is slow on purpose), so a login attempt costs no
    // more than one for an unknown user.
    auth::ScramSecret secret;
    if (known) secret = app_.admin_scram();
    const std::optional<std::string> password =
        known ? config_->admin.password : std::optional<std::string>{};
    if (!co_await authenticate(*user, password, known ? &secret : nullptr, method)) {
      co_return Login::close;
    }
    co_return Login::admin;
  }

  if (!app_.has_database(database)) {
    co_await fatal("3D000", "database \"" + database + "\" does not exist");
    co_return Login::close;
  }
  auto entry = app_.find_user(*user, database);
  const std::optional<std::string> password =
      entry ? entry->user.password : std::optional<std::string>{};
  if (!co_await authenticate(*user, password, entry ? &entry->scram : nullptr, general.auth_type)) {
    co_return Login::close;
  }
  if (!entry) {
    // Only reachable with trust: there is no password to check, only a missing user.
    co_await fatal("28000", "no such user \"" + *user + "\" for database \"" + database + "\"");
    co_return Login::close;
  }
  user_ = std::move(entry);
  mode_ = user_->pool->mode();
  if (!co_await send_login_parameters(packet)) co_return Login::close;
  // In session mode the client keeps its server, and its statements with it.
  if (mode_ == config::PoolerMode::transaction &&
      config_->general.prepared_statements == config::PreparedStatements::extended) {
    rewriter_ = std::make_unique<backend::Rewriter>(app_.statement_registry(), statements_);
    tracker_.set_statements(&statements_);
  }
  if (auto mirrors = app_.mirrors_for(database); !mirrors.empty()) {
    tap_ = std::make_unique<mirror::Tap>(std::move(mirrors), *user, params_, statements_,
                                         rewriter_.get(), &app_.statement_registry(),
                                         config_->general.mirror_max_transaction_bytes,
                                         mode_ == config::PoolerMode::session);
  }
  co_return Login::proceed;
}

Task<bool> ClientSession::authenticate(const std::string& user,
                                       const std::optional<std::string>& password,
                                       const auth::ScramSecret* scram, config::AuthType method) {
  std::string out;
  const std::string failed = "password authentication failed for user \"" + user + "\"";

  // Reads the client's next password-type message; false when it sent something else.
  auto read_password_frame = [&](std::string& body) -> Task<bool> {
    while (true) {
      auto f = protocol::next_frame(in_.readable(), 64 * 1024);
      if (f) {
        const bool ok = f->type == protocol::fe::kPassword;
        body.assign(f->body);
        in_.consume(f->size());
        if (!ok) co_await fatal("08P01", "expected a password message during authentication");
        co_return ok;
      }
      if (f.error() != protocol::Error::need_more) {
        co_await fatal("08P01", "invalid message during authentication");
        co_return false;
      }
      auto [ec, n] = co_await client_.read_some(in_.prepare(1024));
      if (ec) co_return false;
      in_.commit(n);
    }
  };

  if (method == config::AuthType::trust) {
    protocol::write_auth(out, protocol::auth_code::kOk);
    co_return !co_await client_.write(out);
  }

  if (method == config::AuthType::md5) {
    std::array<std::uint8_t, 4> salt;
    auth::random_bytes(salt);
    protocol::write_auth(out, protocol::auth_code::kMd5,
                         std::string_view(reinterpret_cast<const char*>(salt.data()), 4));
    if (co_await client_.write(out)) co_return false;
    out.clear();
    std::string body;
    if (!co_await read_password_frame(body)) co_return false;
    auto response = protocol::decode_password(body);
    if (!response || !password || !auth::md5_verify(user, *password, salt, *response)) {
      co_await fatal("28P01", failed);
      co_return false;
    }
  } else {
    protocol::write_auth_sasl(out, auth::kScramMechanism);
    if (co_await client_.write(out)) co_return false;
    std::string body;
    if (!co_await read_password_frame(body)) co_return false;
    auto initial = protocol::decode_sasl_initial_response(body);
    if (!initial) {
      co_await fatal("08P01", "malformed SASLInitialResponse");
      co_return false;
    }
    if (initial->mechanism != auth::kScramMechanism) {
      co_await fatal("28000", "unsupported SASL mechanism \"" + std::string(initial->mechanism) + "\"");
      co_return false;
    }
    // An unknown user runs the same exchange against a throwaway secret, so the answer does
    // not tell whether the user exists.
    auth::ScramSecret dummy;
    if (scram == nullptr || !password) dummy = auth::mock_scram_secret(user);
    auth::ScramServer server(scram != nullptr && password ? *scram : dummy);
    auto first = server.client_first(initial->data);
    if (!first) {
      co_await fatal("08P01", "malformed SCRAM client-first-message");
      co_return false;
    }
    out.clear();
    protocol::write_auth(out, protocol::auth_code::kSaslContinue, *first);
    if (co_await client_.write(out)) co_return false;
    if (!co_await read_password_frame(body)) co_return false;
    auto final_message = server.client_final(body);
    if (!final_message) {
      if (final_message.error() == auth::Error::wrong_password) {
        co_await fatal("28P01", failed);
      } else {
        co_await fatal("08P01", "malformed SCRAM client-final-message");
      }
      co_return false;
    }
    out.clear();
    protocol::write_auth(out, protocol::auth_code::kSaslFinal, *final_message);
  }
  protocol::write_auth(out, protocol::auth_code::kOk);
  co_return !co_await client_.write(out);
}

Task<bool> ClientSession::send_login_parameters(const protocol::StartupPacket& packet) {
  auto defaults = co_await user_->pool->server_defaults();
  if (!defaults) {
    const auto& f = defaults.error();
    co_await fatal(f.sqlstate, f.to_string());
    co_return false;
  }
  for (const auto& [name, value] : defaults->items()) {
    if (protocol::is_session_parameter(name)) params_.set(name, value);
  }
  for (const auto& [name, value] : packet.params) {
    if (protocol::is_session_parameter(name)) params_.set(name, value);
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
    for (const auto& [name, value] : *parsed) params_.set(name, value);
  }
  std::string out;
  for (const auto& [name, value] : defaults->items()) {
    const auto mine = params_.get(name);
    protocol::write_parameter_status(out, name, mine ? *mine : value);
  }
  params_.compact();
  protocol::write_backend_key_data(out, info_->process_id, info_->secret_key);
  protocol::write_ready_for_query(out, 'I');
  co_return !co_await client_.write(out);
}

bool ClientSession::can_release() const {
  return mode_ == config::PoolerMode::transaction && pending_ == 0 && !unsynced_ && !copy_in_ &&
         !writing_ && tracker_.idle() && server_ && server_->status() == 'I' &&
         !server_->broken();
}

Task<backend::Result<void>> ClientSession::attach() {
  set_state(ClientState::waiting);
  auto lease = co_await user_->pool->checkout();
  if (!lease) {
    set_state(ClientState::idle);
    co_return lease.error();
  }
  server_ = std::move(*lease);
  scanner_ = protocol::StreamScanner(max_message_size_);
  set_state(ClientState::active);
  if (server_->synced_hash != params_.hash()) co_await sync_parameters();
  co_return backend::Result<void>{};
}

bool ClientSession::try_attach() {
  // The common case: an idle server already set up for this client's parameters.
  auto lease = user_->pool->try_checkout();
  if (!lease) return false;
  server_ = std::move(*lease);
  if (server_->synced_hash != params_.hash()) {
    server_.release();  // attach() sets the parameters; it waits, so it is a coroutine
    return false;
  }
  scanner_ = protocol::StreamScanner(max_message_size_);
  set_state(ClientState::active);
  return true;
}

void ClientSession::release_server() {
  server_->buffer().shrink_if_larger();
  if (tracker_.take_poisoned()) server_->mark_broken();
  server_.release();
  set_state(ClientState::idle);
}

void ClientSession::start_pump() {
  pump_running_ = true;
  if (!pump_done_) pump_done_ = std::make_unique<net::Event>(executor_);
  pump_done_->reset();
  asio::co_spawn(executor_, pump(shared_from_this()), log_errors("session pump"));
}

Task<void> ClientSession::sync_parameters() {
  auto r = co_await backend::sync_parameters(*server_, params_);
  if (!r) {
    spdlog::warn("client {}: could not apply session parameters on server: {}", info_->address,
                 r.error().to_string());
    // Do not retry the same failing SET on every transaction.
    server_->synced_hash = params_.hash();
  }
}

Task<void> ClientSession::fail_batch(std::string_view frames, const backend::Failure& failure) {
  std::string out;
  auto error = [&] {
    protocol::write_error(out, {.severity = "ERROR",
                                .code = failure.sqlstate,
                                .message = failure.to_string()});
  };
  bool errored = false;
  while (!frames.empty()) {
    auto f = protocol::next_frame(frames, max_message_size_);
    if (!f) break;
    frames.remove_prefix(f->size());
    switch (f->type) {
      case protocol::fe::kQuery:
      case protocol::fe::kFunctionCall:
        error();
        protocol::write_ready_for_query(out, 'I');
        errored = false;
        break;
      case protocol::fe::kSync:
        protocol::write_ready_for_query(out, 'I');
        errored = false;
        break;
      case protocol::fe::kCopyData:
      case protocol::fe::kCopyDone:
      case protocol::fe::kCopyFail:
        break;
      default:
        if (!errored) error();
        errored = true;
    }
  }
  PoolCounters::add(user_->pool->counters().errors);
  co_await client_.write(out);
}

std::string_view ClientSession::prepare_batch(std::string_view batch) {
  auto each_frame = [&](auto&& fn) {
    for (auto rest = batch; !rest.empty();) {
      auto f = *protocol::next_frame(rest, max_message_size_);
      rest.remove_prefix(f.size());
      fn(f);
    }
  };
  if (!rewriter_) {
    if (tap_) each_frame([&](const protocol::Frame& f) { tap_->client_frame(f); });
    return batch;
  }
  bool rewrite = false;
  each_frame([&](const protocol::Frame& f) { rewrite = rewrite || rewriter_->needs_rewrite(f); });
  if (!rewrite) {
    each_frame([&](const protocol::Frame& f) {
      tracker_.push_plain(f);
      if (tap_) tap_->client_frame(f);
    });
    return batch;
  }
  out_.clear();
  each_frame([&](const protocol::Frame& f) {
    bool answered_here = false;
    if (!rewriter_->rewrite(f, server_->prepared(), out_, tracker_)) {
      out_.append(f.raw);
      tracker_.push_plain(f);
    } else if (rewriter_->answered_alone()) {
      answered_here = true;  // a DEALLOCATE through the unnamed statement: nothing to mirror
    } else if (f.type == protocol::fe::kQuery) {
      // DEALLOCATE of one of the client's statements: answered by the proxy, so no
      // ReadyForQuery will come from the server for it.
      answered_here = true;
      --pending_;
    }
    if (tap_ && !answered_here) tap_->client_frame(f);
  });
  return out_;
}

void ClientSession::request_flush() {
  // Answers the proxy gives itself with nothing ahead of them: the pump is waiting for the
  // server, which will not speak; wake it.
  flush_requested_ = true;
  error_code ec;
  if (server_) server_->stream().socket().cancel(ec);
}

bool ClientSession::scan_server(ServerChunk& chunk, std::string& lost) {
  auto& server = *server_;
  auto& buffer = server.buffer();
  auto& counters = user_->pool->counters();
  // When answers must change (synthetic ones added, the proxy's own swallowed), the chunk is
  // assembled; otherwise it is forwarded straight from the server's buffer.
  assembled_.clear();
  bool assembling = false;
  std::size_t copied = 0;
  bool release = false;
  if (rewriter_) {
    tracker_.flush_head(assembled_, server.status());
    assembling = !assembled_.empty();
    flush_requested_ = false;
  }

  auto on_frame = [&](const protocol::Frame& f) {
    if (rewriter_) {
      bool forward = true;
      std::string before;
      std::string after;
      tracker_.on_frame(f, server.prepared(), server.status(), forward, before, after);
      if (!forward || !before.empty() || !after.empty() || assembling) {
        const auto readable = buffer.readable();
        const auto at = static_cast<std::size_t>(f.raw.data() - readable.data());
        assembled_.append(readable.substr(copied, at - copied));
        assembled_ += before;
        if (forward) assembled_.append(f.raw);
        assembled_ += after;
        copied = at + f.raw.size();
        assembling = true;
      }
    }
    if (tap_ && tap_->wants_server_frame(f.type)) tap_->server_frame(f);
    switch (f.type) {
      case protocol::be::kReadyForQuery: {
        const char status = f.body.size() == 1 ? f.body[0] : 'I';
        server.set_status(status);
        if (pending_ > 0) --pending_;
        copy_in_ = false;
        const auto now = Clock::now();
        PoolCounters::add(counters.queries);
        info_->queries.fetch_add(1, std::memory_order_relaxed);
        if (pending_ == 0) {
          const auto us = micros(now - request_started_);
          PoolCounters::add(counters.query_time_us, us);
          counters.query_duration.observe_us(us);
        }
        if (status == 'I') {
          PoolCounters::add(counters.transactions);
          info_->transactions.fetch_add(1, std::memory_order_relaxed);
          if (in_transaction_) {
            PoolCounters::add(counters.transaction_time_us, micros(now - transaction_started_));
          }
          in_transaction_ = false;
        } else if (!in_transaction_) {
          in_transaction_ = true;
          transaction_started_ = request_started_;
        }
        if (can_release()) {
          release = true;
          return false;
        }
        return true;
      }
      case protocol::be::kErrorResponse:
        PoolCounters::add(counters.errors);
        if (auto e = protocol::decode_error(f.body); e && e->is_fatal()) server.mark_broken();
        return true;
      case protocol::be::kCommandComplete:
        // The server's statements are gone; the client's names with them.
        if (backend::drops_all_statements(f.body)) {
          server.prepared().clear();
          statements_.clear();
        }
        return true;
      case protocol::be::kParameterStatus:
        if (auto p = protocol::decode_parameter_status(f.body)) {
          server.params().set(p->name, p->value);
          if (protocol::is_session_parameter(p->name)) params_.set(p->name, p->value);
          server.synced_hash = params_.hash();
        }
        return true;
      case protocol::be::kCopyInResponse:
        copy_in_ = true;
        return true;
      default:
        return true;
    }
  };

  auto done = tap_ && tap_->wants_pieces()
                  ? scanner_.scan(buffer.readable(), on_frame,
                                  [&](char type, std::string_view piece) {
                                    tap_->server_piece(type, piece);
                                  })
                  : scanner_.scan(buffer.readable(), on_frame);
  if (!done) {
    server.mark_broken();
    lost = "server sent an invalid message: " + done.error().message();
    return false;
  }
  const auto bytes = buffer.readable().substr(0, *done);
  if (assembling) assembled_.append(bytes.substr(copied));
  chunk.done = *done;
  chunk.out = assembling ? std::string_view(assembled_) : bytes;
  chunk.release = release;
  return true;
}

bool ClientSession::deliver_now(const ServerChunk& chunk, std::size_t& sent, error_code& ec) {
  sent = client_.write_now_some(chunk.out, ec);
  if (ec || sent < chunk.out.size()) return false;
  PoolCounters::add(user_->pool->counters().bytes_sent, chunk.out.size());
  server_->buffer().consume(chunk.done);
  return true;
}

Task<bool> ClientSession::deliver_rest(const ServerChunk& chunk, std::size_t sent,
                                        error_code ec) {
  bool ok = !ec;
  if (ok) ok = !co_await client_.write(chunk.out.substr(sent));
  PoolCounters::add(user_->pool->counters().bytes_sent, chunk.out.size());
  server_->buffer().consume(chunk.done);
  co_return ok;
}

Task<bool> ClientSession::deliver(const ServerChunk& chunk) {
  // Most answers fit in the socket buffer: written at once, no coroutine frame.
  std::size_t sent = 0;
  error_code ec;
  if (deliver_now(chunk, sent, ec)) co_return true;
  co_return co_await deliver_rest(chunk, sent, ec);
}

Task<void> ClientSession::report_lost(const std::string& lost) {
  // The client's session on that server is gone; it cannot continue transparently. The reader
  // releases the server when it sees the client closed.
  spdlog::warn("client {}: {}", info_->address, lost);
  tracker_.clear();
  std::string out;
  protocol::write_error(out, {.severity = "FATAL", .code = "08006", .message = lost});
  co_await client_.write(out);
  closing_ = true;
  client_.close();
}

Task<void> ClientSession::relay_inline() {
  std::string lost;
  while (true) {
    ServerChunk chunk;
    if (!scan_server(chunk, lost)) break;
    std::size_t sent = 0;
    error_code write_ec;
    if (!deliver_now(chunk, sent, write_ec) && !co_await deliver_rest(chunk, sent, write_ec)) {
      closing_ = true;
      co_return;
    }
    auto& server = *server_;
    // Checked again: the client may have sent more while the delivery waited.
    if (chunk.release && can_release() && server.buffer().empty()) {
      release_server();
      co_return;
    }
    // The server waits for COPY data, or has answered everything: the client speaks next.
    if (copy_in_) co_return;
    if (pending_ == 0) {
      if (rewriter_ && !tracker_.idle() && tracker_.only_synthetic()) continue;
      // Everything was answered by the proxy itself (a DEALLOCATE): no ReadyForQuery from the
      // server will come to release it.
      if (can_release() && server.buffer().empty()) release_server();
      co_return;
    }
    const std::size_t want = std::max<std::size_t>(4096, scanner_.wanted(server.buffer().readable()));
    auto [ec, n] = co_await server.stream().read_some(server.buffer().prepare(want));
    if (ec) {
      server.mark_broken();
      lost = "server connection lost: " + ec.message();
      break;
    }
    server.buffer().commit(n);
  }
  co_await report_lost(lost);
}

void ClientSession::park() {
  // in_ is empty and back in idle_read_.
  client_.async_read_some(in_.prepare(1), [self = shared_from_this()](error_code ec, std::size_t n) {
    auto& session = *self;
    asio::co_spawn(session.executor_, session.serve(std::move(self), ec, n),
                   log_errors("client session"));
  });
}

Task<void> ClientSession::serve([[maybe_unused]] std::shared_ptr<ClientSession> self, error_code ec,
                                std::size_t parked) {
  // Kept small on purpose: the work for each batch of frames happens in on_client_data(),
  // whose frame exists only while it runs.
  std::size_t received = parked;
  if (!ec) in_.commit(parked);
  while (!ec && !closing_) {
    if (!co_await on_client_data(received)) break;
    if (terminate_after_transaction_ && !server_) {
      co_await fatal("57P01", "terminating connection due to administrator command");
      break;
    }
    if (!server_ && !pump_running_ && in_.empty()) {
      // Idle between transactions: wait without this coroutine.
      in_.release();
      park();
      co_return;
    }
    std::size_t want = 512;
    if (auto h = protocol::peek_header(in_.readable(), max_message_size_)) {
      if (h->size > in_.size()) want = std::max(want, h->size - in_.size());
    }
    std::tie(ec, received) = co_await client_.read_some(in_.prepare(want));
    if (!ec) in_.commit(received);
  }
  closing_ = true;
  co_await stop_pump();
  co_await finish_server();
  app_.clients().remove(*info_);
  client_.close();
}

Task<bool> ClientSession::on_client_data(std::size_t received) {
  auto& counters = user_->pool->counters();
  PoolCounters::add(counters.bytes_received, received);
  const std::string_view data = in_.readable();
  std::size_t forward = 0;
  bool terminate = false;
  std::string violation;
  while (true) {
    auto f = protocol::next_frame(data.substr(forward), max_message_size_);
    if (!f) {
      if (f.error() != protocol::Error::need_more) {
        violation = "invalid message: " + f.error().message();
      }
      break;
    }
    const char type = f->type;
    if (type == protocol::fe::kTerminate) {
      terminate = true;
      break;
    }
    if (!is_frontend_type(type)) {
      violation = std::string("invalid frontend message type '") +
                  (std::isprint(static_cast<unsigned char>(type)) ? std::string(1, type)
                                                                   : std::to_string(type)) +
                  "'";
      break;
    }
    switch (type) {
      case protocol::fe::kQuery:
      case protocol::fe::kSync:
      case protocol::fe::kFunctionCall:
        if (pending_ == 0) request_started_ = Clock::now();
        ++pending_;
        unsynced_ = false;
        break;
      case protocol::fe::kCopyData:
        break;
      case protocol::fe::kCopyDone:
      case protocol::fe::kCopyFail:
        // The client has sent its part: the server answers next.
        copy_in_ = false;
        break;
      default:
        unsynced_ = true;
    }
    forward += f->size();
  }

  if (forward > 0) {
    if (!server_ && !try_attach()) {
      auto attached = co_await attach();
      if (!attached) {
        co_await fail_batch(data.substr(0, forward), attached.error());
        in_.consume(forward);
        pending_ = 0;
        unsynced_ = false;
        co_return violation.empty() && !terminate;
      }
    }
    // Rewriting, the tap and the answer bookkeeping all happen before the write: with the
    // pump running, the answer may be read before this coroutine resumes.
    const std::string_view to_send = prepare_batch(data.substr(0, forward));
    if (!to_send.empty()) {
      error_code wec;
      const std::size_t sent = server_->stream().write_now_some(to_send, wec);
      if (!wec && sent < to_send.size()) {
        writing_ = true;
        wec = co_await server_->stream().write(to_send.substr(sent));
        writing_ = false;
      }
      if (wec && server_) server_->mark_broken();
    }
    in_.consume(forward);
    if (pump_running_) {
      if (rewriter_ && tracker_.only_synthetic()) request_flush();
    } else if (mode_ == config::PoolerMode::session || unsynced_) {
      // Session mode keeps a pump for asynchronous messages (LISTEN/NOTIFY); a batch without
      // Sync may be answered piecemeal while the client sends more. Both need both directions
      // at once.
      start_pump();
    } else if (!copy_in_) {
      co_await relay_inline();
    }
  }
  if (!violation.empty()) {
    co_await stop_pump();
    co_await fatal("08P01", violation);
    co_return false;
  }
  co_return !terminate;
}

Task<void> ClientSession::stop_pump() {
  if (!pump_running_) co_return;
  error_code ec;
  if (server_) server_->stream().socket().cancel(ec);
  client_.socket().cancel(ec);
  co_await pump_done_->wait();
}

Task<void> ClientSession::finish_server() {
  if (!server_) co_return;
  bool clean = !server_->broken() && server_->status() == 'I' && pending_ == 0 && !unsynced_ &&
               !copy_in_ && server_->buffer().empty() && tracker_.idle();
  if (clean && mode_ == config::PoolerMode::session) {
    // The next client must not inherit this one's session state.
    clean = co_await server_->reset_session();
  }
  if (!clean || tracker_.take_poisoned()) server_->mark_broken();
  tracker_.clear();
  server_.release();
}

Task<void> ClientSession::pump([[maybe_unused]] std::shared_ptr<ClientSession> self) {
  std::string lost;
  bool release = false;
  while (true) {
    ServerChunk chunk;
    if (!scan_server(chunk, lost)) break;
    if (!co_await deliver(chunk)) {
      closing_ = true;
      break;
    }
    auto& server = *server_;
    // Checked again: while the delivery waited on a slow client, the client may have sent
    // the next query to this server.
    if (chunk.release && can_release() && server.buffer().empty()) {
      release = true;
      break;
    }
    if (closing_) break;
    if (rewriter_ && (flush_requested_ || tracker_.only_synthetic())) continue;
    if (can_release() && server.buffer().empty()) {
      release = true;  // answered by the proxy itself: nothing will come from the server
      break;
    }
    const std::size_t want = std::max<std::size_t>(4096, scanner_.wanted(server.buffer().readable()));
    auto [ec, n] = co_await server.stream().read_some(server.buffer().prepare(want));
    if (ec) {
      if (ec == asio::error::operation_aborted && flush_requested_ && !closing_) continue;
      if (!closing_) {
        server.mark_broken();
        lost = "server connection lost: " + ec.message();
      }
      break;
    }
    server.buffer().commit(n);
  }
  if (!lost.empty()) {
    co_await report_lost(lost);
  } else if (release && !closing_ && can_release()) {
    release_server();
  }
  pump_running_ = false;
  pump_done_->set();
}

}  // namespace pgdog::frontend
