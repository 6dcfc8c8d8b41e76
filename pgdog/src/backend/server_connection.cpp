#include "backend/server_connection.hpp"

#include <atomic>
#include <sys/socket.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "auth/client_handshake.hpp"
#include "net/unix_socket.hpp"

namespace pgdog::backend {

namespace {

std::atomic<std::uint64_t> next_id{1};

Failure io_failure(const error_code& ec, const ServerAddress& address) {
  return Failure::from(Error::connection_closed,
                       "server " + net::describe_server(address.host, address.port) +
                           " connection lost: " + ec.message());
}

Failure server_failure(const protocol::ErrorFields& e) {
  Failure f;
  f.code = Error::server_error;
  f.sqlstate = std::string(e.code);
  f.message = std::string(e.message);
  f.detail = std::string(e.detail);
  return f;
}

Failure login_failure(const auth::LoginFailure& login) {
  using Kind = auth::LoginFailure::Kind;
  Failure f;
  switch (login.kind) {
    case Kind::server_error:
      f.code = Error::server_error;
      break;
    case Kind::auth_failed:
      f.code = Error::auth_failed;
      break;
    case Kind::unsupported:
      f.code = Error::unsupported_auth;
      break;
    case Kind::protocol:
      f.code = Error::protocol_violation;
      break;
  }
  f.sqlstate = login.sqlstate;
  f.message = login.message;
  f.detail = login.detail;
  return f;
}

}  // namespace

std::string ServerAddress::to_string() const {
  return user + "@" + net::describe_server(host, port) + "/" + database;
}

ServerConnection::ServerConnection(net::Socket socket, ServerAddress address,
                                   std::size_t max_message_size)
    : stream_(std::move(socket)),
      address_(std::move(address)),
      max_message_size_(max_message_size),
      id_(next_id.fetch_add(1, std::memory_order_relaxed)),
      created_at_(Clock::now()),
      last_used_(created_at_) {}

ServerConnection::~ServerConnection() {
  if (!state_.broken) {
    std::string terminate;
    protocol::write_terminate(terminate);
    stream_.write_now(terminate);
  }
  stream_.close();
}

Task<Result<std::unique_ptr<ServerConnection>>> ServerConnection::connect(
    Executor ex, ServerAddress address, config::Millis timeout, std::size_t max_message_size) {
  using namespace asio::experimental::awaitable_operators;

  auto attempt = [&]() -> Task<Result<std::unique_ptr<ServerConnection>>> {
    net::Socket socket(ex);
    if (auto failed = co_await net::connect(socket, address.host, address.port)) {
      co_return Failure::from(Error::connect_failed, *failed);
    }
    std::unique_ptr<ServerConnection> conn(
        new ServerConnection(std::move(socket), address, max_message_size));
    if (auto r = co_await conn->negotiate_tls(); !r) co_return r.error();
    if (auto r = co_await conn->startup(); !r) co_return r.error();
    co_return conn;
  };

  asio::steady_timer timer(ex, timeout);
  auto winner = co_await (attempt() || timer.async_wait(use_nothrow));
  if (winner.index() == 1) {
    co_return Failure::from(Error::connect_timeout,
                            "timed out after " + std::to_string(timeout.count()) +
                                " ms connecting to server " +
                                net::describe_server(address.host, address.port));
  }
  co_return std::move(std::get<0>(winner));
}

Task<Result<void>> ServerConnection::negotiate_tls() {
  using config::TlsVerify;
  // PostgreSQL offers no TLS on its Unix socket; the kernel is the transport's protection there.
  if (address_.tls_verify == TlsVerify::disabled || address_.tls_context == nullptr ||
      stream_.is_local()) {
    co_return Result<void>{};
  }
  std::string request;
  protocol::write_ssl_request(request);
  if (auto ec = co_await stream_.write(request)) co_return io_failure(ec, address_);
  char answer = 0;
  auto [ec, n] = co_await asio::async_read(stream_.socket(), asio::buffer(&answer, 1), use_nothrow);
  if (ec) co_return io_failure(ec, address_);
  if (answer != 'S') {
    if (address_.tls_verify == TlsVerify::prefer) co_return Result<void>{};
    co_return Failure::from(Error::tls_failed,
                            "server " + address_.host + ":" + std::to_string(address_.port) +
                                " does not accept TLS and tls_verify requires it");
  }
  const bool verify_host = address_.tls_verify == TlsVerify::verify_full;
  if (auto hec = co_await stream_.tls_connect(*address_.tls_context, address_.host, verify_host)) {
    co_return Failure::from(Error::tls_failed, "TLS handshake with server " + address_.host + ":" +
                                                   std::to_string(address_.port) +
                                                   " failed: " + hec.message());
  }
  co_return Result<void>{};
}

Task<Result<void>> ServerConnection::startup() {
  std::string out;
  protocol::write_startup(
      out,
      {{"user", address_.user}, {"database", address_.database}, {"application_name", "pgdog"}});
  auth::ClientHandshake handshake(address_.user, address_.password);
  while (true) {
    if (!out.empty()) {
      if (auto ec = co_await stream_.write(out)) co_return io_failure(ec, address_);
    }
    auto frame = co_await read_frame();
    if (!frame) co_return frame.error();
    auto step = handshake.feed(*frame);
    buffer_.consume(frame->size());
    if (step.status == auth::ClientHandshake::Status::failed) {
      co_return login_failure(handshake.failure());
    }
    if (step.status == auth::ClientHandshake::Status::done) break;
    out = std::move(step.out);
  }
  state_.params = std::move(handshake.params());
  key_ = handshake.key();
  state_.status = handshake.transaction_status();
  cancel_key_ = std::make_shared<const CancelKey>(CancelKey{address_.host, address_.port, key_});
  co_return Result<void>{};
}

Task<Result<protocol::Frame>> ServerConnection::read_frame() {
  while (true) {
    auto frame = protocol::next_frame(buffer_.readable(), max_message_size_);
    if (frame) co_return *frame;
    if (frame.error() != protocol::Error::need_more) {
      state_.broken = true;
      co_return Failure::from(Error::protocol_violation,
                              "invalid message from server: " + frame.error().message());
    }
    std::size_t want = 4096;
    if (auto h = protocol::peek_header(buffer_.readable(), max_message_size_)) {
      want = std::max(want, h->size - buffer_.size());
    }
    auto space = buffer_.prepare(want);
    auto [ec, n] = co_await stream_.read_some(space);
    if (ec) {
      state_.broken = true;
      co_return io_failure(ec, address_);
    }
    buffer_.commit(n);
  }
}

Task<Result<void>> ServerConnection::execute(std::string_view sql, Row* first_row) {
  state_.prepared.set_unnamed(0);  // a simple Query drops the unnamed statement
  std::string out;
  protocol::write_query(out, sql);
  if (auto ec = co_await stream_.write(out)) {
    state_.broken = true;
    co_return io_failure(ec, address_);
  }
  std::optional<Failure> failure;
  while (true) {
    auto frame = co_await read_frame();
    // After a FATAL the server closes: its reason says more than the EOF.
    if (!frame) co_return failure ? *failure : frame.error();
    switch (frame->type) {
      case protocol::be::kErrorResponse:
        if (auto e = protocol::decode_error(frame->body); e && !failure) {
          failure = server_failure(*e);
          if (e->is_fatal()) state_.broken = true;
        }
        break;
      case protocol::be::kParameterStatus:
        if (auto p = protocol::decode_parameter_status(frame->body)) state_.params.set(p->name, p->value);
        break;
      case protocol::be::kDataRow:
        if (first_row != nullptr && first_row->empty()) keep_row(frame->body, *first_row);
        break;
      case protocol::be::kReadyForQuery:
        if (auto s = protocol::decode_ready_for_query(frame->body)) state_.status = *s;
        buffer_.consume(frame->size());
        if (failure) co_return *failure;
        co_return Result<void>{};
      default:
        break;
    }
    buffer_.consume(frame->size());
  }
}

void ServerConnection::keep_row(std::string_view body, Row& row) {
  auto values = protocol::decode_data_row(body);
  if (!values) return;
  for (const auto& v : *values) {
    row.push_back(v ? std::optional<std::string>(std::string(*v)) : std::nullopt);
  }
}

bool ServerConnection::alive() {
  if (state_.broken || !stream_.is_open()) return false;
  if (!buffer_.empty()) return false;  // an idle server has nothing to say
  char byte;
  const auto n = ::recv(stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return false;
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
  // An idle server has nothing to say, in plaintext or TLS (session tickets were read during
  // startup): bytes waiting here are a FATAL before the close.
  return false;
}

Task<void> ServerConnection::cancel(Executor ex, std::string host, std::uint16_t port,
                                    protocol::BackendKeyData key) {
  using namespace asio::experimental::awaitable_operators;
  // Bounded: a server that accepts and never closes (or never accepts) must not keep one
  // coroutine and one socket per cancel forever.
  asio::steady_timer timer(ex, std::chrono::seconds(5));
  co_await (send_cancel(ex, std::move(host), port, key) || timer.async_wait(use_nothrow));
}

Task<void> ServerConnection::send_cancel(Executor ex, std::string host, std::uint16_t port,
                                         protocol::BackendKeyData key) {
  net::Socket socket(ex);
  if (auto failed = co_await net::connect(socket, host, port)) {
    spdlog::warn("cancel request failed: {}", *failed);
    co_return;
  }
  std::string out;
  protocol::write_cancel_request(out, key.process_id, key.secret_key);
  co_await asio::async_write(socket, asio::buffer(out), use_nothrow);
  // The server closes the connection without answering.
  char byte;
  co_await socket.async_read_some(asio::buffer(&byte, 1), use_nothrow);
}

}  // namespace pgdog::backend

namespace pgdog::backend {

Task<bool> ServerConnection::reset_session() {
  if (broken() || status() != 'I' || !buffer().empty()) co_return false;
  if (!co_await execute("DISCARD ALL")) co_return false;
  prepared().clear();
  for (const auto& [name, value] : applied().items())
    params().erase(name);
  applied() = protocol::Params{};
  state_.synced_hash = 0;
  co_return true;
}

}  // namespace pgdog::backend
