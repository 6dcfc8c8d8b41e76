#include "support/scripted_server.hpp"

#include <mutex>

#include <boost/asio/write.hpp>

#include "auth/server_handshake.hpp"
#include "net/asio.hpp"

namespace pgdog::test {

namespace {

using Then = Reply::Then;

struct Connection {
  std::vector<Message> received;
  std::shared_ptr<tcp::socket> socket;
  bool logged_in = false;
  bool closed_by_client = false;
  bool open = true;
};

auth::Method method_of(ScriptedServer::Auth a) {
  switch (a) {
    case ScriptedServer::Auth::md5:
      return auth::Method::md5;
    case ScriptedServer::Auth::scram:
      return auth::Method::scram;
    case ScriptedServer::Auth::trust:
      break;
  }
  return auth::Method::trust;
}

// A startup-phase packet again, from its body.
std::string with_length(std::string_view body) {
  std::string out(4, '\0');
  protocol::write_u32(out.data(), static_cast<std::uint32_t>(body.size() + 4));
  return out.append(body);
}

// A frame again, for code that takes a protocol::Frame.
std::string frame_bytes(const Message& m) {
  return std::string(1, m.type) + with_length(m.body);
}

void reset(tcp::socket& socket) {
  error_code ec;
  socket.set_option(asio::socket_base::linger(true, 0), ec);
  socket.close(ec);
}

}  // namespace

Reply Reply::fatal(std::string_view sqlstate, std::string_view message) {
  return {pg::error(sqlstate, message, "FATAL"), {}, Then::close};
}

namespace pg {

std::string ready(char status) {
  std::string out;
  protocol::write_ready_for_query(out, status);
  return out;
}

std::string command_complete(std::string_view tag) {
  std::string out;
  protocol::write_command_complete(out, tag);
  return out;
}

std::string error(std::string_view sqlstate, std::string_view message, std::string_view severity) {
  std::string out;
  protocol::write_error(out, {.severity = severity, .code = sqlstate, .message = message});
  return out;
}

std::string parameter_status(std::string_view name, std::string_view value) {
  std::string out;
  protocol::write_parameter_status(out, name, value);
  return out;
}

std::string row_description(const std::vector<std::string>& columns) {
  std::string out;
  protocol::write_row_description(out, columns);
  return out;
}

std::string data_row(const std::vector<std::optional<std::string>>& values) {
  std::string out;
  protocol::write_data_row(out, values);
  return out;
}

std::string auth_ok() {
  std::string out;
  protocol::write_auth(out, protocol::auth_code::kOk);
  return out;
}

}  // namespace pg

Reply answer_ok(const Message& m) {
  switch (m.type) {
    case protocol::fe::kQuery:
      return Reply::send(pg::command_complete("SELECT 1") + pg::ready('I'));
    case protocol::fe::kSync:
      return Reply::send(pg::ready('I'));
    case protocol::fe::kTerminate:
      return {{}, {}, Then::close};
    default:
      return Reply::none();
  }
}

namespace {

// One accepted connection, as its coroutine sees it.
struct Link {
  std::shared_ptr<tcp::socket> socket;
  std::string in;  // received, not yet parsed
  std::size_t index = 0;
};

}  // namespace

// Shared with the connections' coroutines, which may outlive the ScriptedServer object until
// the io_context runs them to their end (or is destroyed).
struct ScriptedServer::State : std::enable_shared_from_this<State> {
  State(asio::io_context& context, Options o) : io(context), options(std::move(o)) {
    if (options.auth == Auth::scram) secret = auth::make_scram_secret(options.password);
  }

  Task<void> accept_loop(std::shared_ptr<tcp::acceptor> acceptor);
  Task<void> session(std::shared_ptr<tcp::socket> socket);
  // The next startup-phase packet (type 0) or typed frame; nothing at EOF or error.
  static Task<std::optional<Message>> read(Link& link, bool startup);
  // The next typed frame, recorded.
  Task<std::optional<Message>> receive(Link& link);
  // Each returns false when the connection is over.
  Task<bool> login(Link& link, const protocol::StartupPacket& startup);
  Task<bool> play(Link& link, const Reply& reply);
  void closed(std::size_t index, bool by_client);
  Script script() {
    std::lock_guard g(mutex);
    return options.script;
  }

  asio::io_context& io;
  Options options;  // only the script changes after construction
  auth::ScramSecret secret;
  std::uint16_t port = 0;
  std::shared_ptr<tcp::acceptor> acceptor;

  mutable std::mutex mutex;
  std::vector<Connection> connections;
  std::vector<protocol::BackendKeyData> cancels;
};

Task<void> ScriptedServer::State::accept_loop(std::shared_ptr<tcp::acceptor> a) {
  auto self = shared_from_this();
  while (a->is_open()) {
    auto socket = std::make_shared<tcp::socket>(io);
    auto [ec] = co_await a->async_accept(*socket, use_nothrow);
    if (ec) co_return;  // refuse() or the server's end closed the acceptor
    // As PostgreSQL does: an answer written in several parts is not held back by Nagle.
    socket->set_option(tcp::no_delay(true), ec);
    asio::co_spawn(io, session(std::move(socket)), log_errors("scripted server session"));
  }
}

Task<std::optional<Message>> ScriptedServer::State::read(Link& link, bool startup) {
  while (true) {
    if (startup) {
      if (auto len = protocol::peek_startup_length(link.in); len && link.in.size() >= *len) {
        Message m{0, link.in.substr(4, *len - 4), link.index};
        link.in.erase(0, *len);
        co_return m;
      }
    } else if (auto f = protocol::next_frame(link.in, 1 << 30)) {
      Message m{f->type, std::string(f->body), link.index};
      link.in.erase(0, f->size());
      co_return m;
    }
    char chunk[4096];
    auto [ec, n] = co_await link.socket->async_read_some(asio::buffer(chunk), use_nothrow);
    if (ec) co_return std::nullopt;
    link.in.append(chunk, n);
  }
}

Task<std::optional<Message>> ScriptedServer::State::receive(Link& link) {
  auto m = co_await read(link, false);
  if (m) {
    std::lock_guard g(mutex);
    auto& c = connections[link.index];
    c.received.push_back(*m);
    c.closed_by_client = c.closed_by_client || m->type == protocol::fe::kTerminate;
  }
  co_return m;
}

void ScriptedServer::State::closed(std::size_t index, bool by_client) {
  std::lock_guard g(mutex);
  auto& c = connections[index];
  c.closed_by_client = c.closed_by_client || by_client;
  c.open = false;
  c.socket.reset();
}

Task<void> ScriptedServer::State::session(std::shared_ptr<tcp::socket> socket) {
  auto self = shared_from_this();
  Link link{socket, {}, 0};
  std::optional<Message> m;
  // SSLRequest is refused ('N') and the client goes on in plaintext.
  while ((m = co_await read(link, true)) && m->body.starts_with("\x04\xd2\x16\x2f")) {
    co_await asio::async_write(*socket, asio::buffer("N", 1), use_nothrow);
  }
  if (!m) co_return;
  const auto startup = protocol::decode_startup(with_length(m->body));
  if (startup && startup->kind == protocol::StartupKind::cancel_request) {
    std::lock_guard g(mutex);
    cancels.push_back({startup->process_id, startup->secret_key});
    co_return;  // PostgreSQL closes without an answer
  }
  {
    std::lock_guard g(mutex);
    link.index = m->connection = connections.size();
    connections.push_back({{*m}, socket});
  }
  bool open = startup.has_value();
  if (open && options.on_startup) {
    open = co_await play(link, *options.on_startup);
  } else if (open) {
    open = co_await login(link, *startup);
  }
  // Not `while (open && co_await ...)`: GCC 12 runs that co_await even when `open` is false.
  while (open) {
    m = co_await receive(link);
    if (!m) break;
    open = co_await play(link, script()(*m));
  }
  // Still open on our side: the client went away, not us.
  closed(link.index, socket->is_open());
}

Task<bool> ScriptedServer::State::login(Link& link, const protocol::StartupPacket& startup) {
  const std::string* user = startup.param("user");
  auth::ServerHandshake handshake(method_of(options.auth), user ? *user : "", options.password,
                                  &secret);
  auto step = handshake.start();
  while (step.status == auth::ServerHandshake::Status::reply) {
    co_await asio::async_write(*link.socket, asio::buffer(step.out), use_nothrow);
    auto m = co_await receive(link);
    if (!m) co_return false;
    const std::string frame = frame_bytes(*m);
    step = handshake.feed(*protocol::next_frame(frame, frame.size()));
  }
  if (step.status == auth::ServerHandshake::Status::failed) {
    co_return co_await play(link, Reply::fatal(step.sqlstate, step.message));
  }
  for (const auto& [name, value] : options.parameters) {
    step.out += pg::parameter_status(name, value);
  }
  protocol::write_backend_key_data(step.out, key(link.index).process_id,
                                   key(link.index).secret_key);
  step.out += pg::ready('I');
  auto [ec, n] = co_await asio::async_write(*link.socket, asio::buffer(step.out), use_nothrow);
  std::lock_guard g(mutex);
  connections[link.index].logged_in = !ec;
  co_return !ec;
}

Task<bool> ScriptedServer::State::play(Link& link, const Reply& reply) {
  if (reply.delay.count() > 0) {
    asio::steady_timer timer(io, reply.delay);
    co_await timer.async_wait(use_nothrow);
  }
  if (!reply.bytes.empty()) {
    auto [ec, n] = co_await asio::async_write(*link.socket, asio::buffer(reply.bytes), use_nothrow);
    if (ec) co_return false;
  }
  if (reply.then == Then::read) co_return true;
  if (reply.then == Then::stall) {
    // Keep reading (and recording) until the client goes away; answer nothing.
    while (co_await receive(link)) {
    }
  } else if (reply.then == Then::reset) {
    reset(*link.socket);
  } else {
    error_code ec;
    link.socket->shutdown(tcp::socket::shutdown_both, ec);
    link.socket->close(ec);
  }
  co_return false;
}

ScriptedServer::ScriptedServer(asio::io_context& io) : ScriptedServer(io, Options{}) {}

ScriptedServer::ScriptedServer(asio::io_context& io, Options options)
    : state_(std::make_shared<State>(io, std::move(options))) {
  listen();
}

ScriptedServer::~ScriptedServer() {
  refuse();
  std::lock_guard g(state_->mutex);
  for (auto& c : state_->connections) {
    error_code ec;
    if (c.socket) c.socket->close(ec);
  }
}

std::uint16_t ScriptedServer::port() const {
  return state_->port;
}

void ScriptedServer::set_script(Script script) {
  std::lock_guard g(state_->mutex);
  state_->options.script = std::move(script);
}

void ScriptedServer::refuse() {
  if (!state_->acceptor) return;
  error_code ec;
  state_->acceptor->close(ec);
  state_->acceptor.reset();
}

void ScriptedServer::listen() {
  if (state_->acceptor) return;
  auto acceptor = std::make_shared<tcp::acceptor>(state_->io);
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), state_->port);
  acceptor->open(endpoint.protocol());
  acceptor->set_option(tcp::acceptor::reuse_address(true));
  acceptor->bind(endpoint);
  acceptor->listen();
  state_->port = acceptor->local_endpoint().port();
  state_->acceptor = acceptor;
  asio::co_spawn(state_->io, state_->accept_loop(acceptor), log_errors("scripted server accept"));
}

void ScriptedServer::reset_all() {
  std::lock_guard g(state_->mutex);
  for (auto& c : state_->connections) {
    if (c.socket) reset(*c.socket);
  }
}

void ScriptedServer::send(std::size_t i, std::string bytes) {
  std::shared_ptr<tcp::socket> socket;
  {
    std::lock_guard g(state_->mutex);
    if (i < state_->connections.size()) socket = state_->connections[i].socket;
  }
  if (!socket) return;
  auto data = std::make_shared<std::string>(std::move(bytes));
  asio::async_write(*socket, asio::buffer(*data), [socket, data](error_code, std::size_t) {});
}

std::size_t ScriptedServer::connections() const {
  std::lock_guard g(state_->mutex);
  return state_->connections.size();
}

std::size_t ScriptedServer::logins() const {
  std::lock_guard g(state_->mutex);
  std::size_t n = 0;
  for (const auto& c : state_->connections)
    n += c.logged_in ? 1 : 0;
  return n;
}

std::size_t ScriptedServer::open_connections() const {
  std::lock_guard g(state_->mutex);
  std::size_t n = 0;
  for (const auto& c : state_->connections)
    n += c.open ? 1 : 0;
  return n;
}

std::vector<Message> ScriptedServer::received(std::size_t i) const {
  std::lock_guard g(state_->mutex);
  return i < state_->connections.size() ? state_->connections[i].received : std::vector<Message>{};
}

bool ScriptedServer::closed_by_client(std::size_t i) const {
  std::lock_guard g(state_->mutex);
  return i < state_->connections.size() && state_->connections[i].closed_by_client;
}

protocol::BackendKeyData ScriptedServer::key(std::size_t i) {
  return {static_cast<std::int32_t>(1000 + i), static_cast<std::int32_t>(7000 + i)};
}

std::vector<protocol::BackendKeyData> ScriptedServer::cancels() const {
  std::lock_guard g(state_->mutex);
  return state_->cancels;
}

}  // namespace pgdog::test
