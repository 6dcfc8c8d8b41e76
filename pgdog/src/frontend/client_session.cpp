#include "frontend/client_session.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <spdlog/spdlog.h>

#include "frontend/admin.hpp"

namespace pgdog::frontend {

namespace {

using stats::PoolCounters;
using Next = backend::Exchange::Next;

}  // namespace

ClientSession::ClientSession(App& app, net::Socket socket, asio::io_context& loop)
    : app_(app), loop_(loop.get_executor()), client_(std::move(socket)) {}

ClientSession::~ClientSession() = default;

void ClientSession::set_state(ClientState s) { info_->state.store(s, std::memory_order_relaxed); }

Task<void> ClientSession::run() {
  auto self = shared_from_this();
  info_ = app_.clients().add(net::peer_address(client_.socket()), weak_from_this());
  auto login = co_await Login(app_, client_, in_, *info_, app_.config()).run();
  closing_ = login.kind == LoginResult::Kind::close;
  // An idle client keeps no read buffer.
  in_.release();
  if (login.kind == LoginResult::Kind::admin) {
    AdminSession admin(app_, client_, in_, *info_);
    co_await admin.run();
  } else if (login.kind == LoginResult::Kind::proceed) {
    start(std::move(login));
    set_state(ClientState::idle);
    // relay() ends the connection itself; this frame goes away as soon as the client is idle.
    // What the client sent after its startup packet is served first.
    co_await relay(std::move(self), take_batch(0), error_code{});
    co_return;
  }
  app_.clients().remove(*info_);
  client_.close();
}

void ClientSession::start(LoginResult login) {
  user_ = std::move(login.user);
  const auto config = app_.config();
  const auto mode = user_->pool->mode();
  exchange_.configure(mode, config->general.max_message_size, config->general.pool_pinning);
  exchange_.params() = std::move(login.params);
  if (!login.startup.empty()) {
    exchange_.set_startup(app_.startup_params().intern(std::move(login.startup)));
  }
  // In session mode the client keeps its server, and its statements with it.
  if (mode == config::PoolerMode::transaction &&
      config->general.prepared_statements == config::PreparedStatements::extended) {
    exchange_.rewrite_statements(app_.statement_registry());
  }
  // Every session has a tap, mirrors or not: one added by a reload reaches it at its next
  // transaction.
  tap_.emplace(mirror::TapRoute{app_.mirror_set(), &info_->mirror_version}, user_->user,
               exchange_.params(), exchange_.statements(), exchange_.rewriter(),
               &app_.statement_registry(), config->general.mirror_max_transaction_bytes,
               mode == config::PoolerMode::session);
  exchange_.set_tap(&*tap_);
}

void ClientSession::terminate(bool graceful) {
  asio::post(executor(), [self = shared_from_this(), graceful] {
    if (self->closing_) return;
    if (graceful && self->server_ && self->exchange_.busy()) {
      self->terminate_after_transaction_ = true;
      return;
    }
    // Written asynchronously, so that it reaches TLS clients as well, then closed.
    self->closing_ = true;
    asio::co_spawn(
        self->executor(),
        [self]() -> Task<void> {
          std::string out;
          protocol::write_error(out,
                                {.severity = "FATAL",
                                 .code = "57P01",
                                 .message = "terminating connection due to administrator command"});
          asio::steady_timer timer(self->executor(), std::chrono::seconds(1));
          using namespace asio::experimental::awaitable_operators;
          co_await (self->client_.write(out) || timer.async_wait(use_nothrow));
          self->client_.close();
        },
        log_errors("session termination"));
  });
}

void ClientSession::cancel_query() {
  // Asked on the target session's own executor, so nothing has to be published on every
  // transaction for the rare cancel.
  asio::post(executor(), [self = shared_from_this()] {
    if (!self->server_) return;  // nothing running: nothing to cancel
    const auto key = self->server_->cancel_key();
    if (!key) return;
    asio::co_spawn(self->app_.io_executor(),
                   backend::ServerConnection::cancel(self->app_.io_executor(), key->host,
                                                     key->port, key->key),
                   log_errors("cancel request"));
  });
}

Task<void> ClientSession::fatal(std::string_view code, std::string_view message) {
  closing_ = true;
  co_await send_fatal(client_, code, message);
}

Task<void> ClientSession::relay(std::shared_ptr<ClientSession> self,
                                std::optional<backend::ClientBatch> batch, error_code ec) {
  bool open = !ec;
  if (open && batch) {
    open = co_await send_batch(std::move(*batch));
    // Usually the batch waited for a server: the quick path takes the rest of the request.
    if (open && quick()) {
      go_on(std::move(self));
      co_return;
    }
  }
  while (open && !closing_) {
    if (terminate_after_transaction_ && !exchange_.busy()) {
      co_await fatal("57P01", "terminating connection due to administrator command");
      break;
    }
    const bool buffered = server_ && !server_->buffer().empty() &&
                          (!duplex_ || duplex_->server.idle());
    const Next next = exchange_.next(server_ ? &server_->state() : nullptr, buffered);
    switch (next) {
      case Next::client:
        if (duplex_ && !duplex_->client.idle()) {
          open = co_await read_client();
          break;
        }
        // The client is waited for without this coroutine, by the quick path.
        read_client_quickly(std::move(self));
        co_return;
      case Next::server:
        open = co_await on_server();
        break;
      case Next::either:
        open = co_await read_either();
        break;
      case Next::answer:
        open = co_await deliver(exchange_.answer_now(server_->state()));
        break;
      case Next::settle:
        open = co_await settle();
        break;
      case Next::release:
        // A read Next::either left on the server is settled first: it may bring bytes.
        if (duplex_ && duplex_->server.reading()) co_await settle_reads();
        if (!server_->buffer().empty()) break;
        // State that pinned the client is gone, but the server is reset before anyone else.
        if (exchange_.dirty()) co_await reset_server();
        release_server();
        break;
    }
  }
  co_await finish();
}

bool ClientSession::can_park() const {
  return !server_ && in_.empty() && (!duplex_ || duplex_->client.idle());
}

void ClientSession::read_client_quickly(std::shared_ptr<ClientSession> self) {
  std::span<char> into;
  if (can_park()) {
    in_.release();  // idle between transactions: back in idle_read_
    into = in_.prepare(1);
  } else {
    into = in_.prepare(client_want());
  }
  client_.async_read_some(into, [self = std::move(self)](error_code ec, std::size_t n) mutable {
    auto& session = *self;
    session.on_client_read(std::move(self), ec, n);
  });
}

void ClientSession::spawn(Task<void> task) {
  asio::co_spawn(executor(), std::move(task), log_errors("client session"));
}

void ClientSession::on_client_read(std::shared_ptr<ClientSession> self, error_code ec,
                                   std::size_t n) {
  std::optional<backend::ClientBatch> batch;
  if (!ec) {
    in_.commit(n);
    batch = take_batch(n);
    if (quick() && send_quickly(self, *batch)) return;
  }
  spawn(relay(std::move(self), std::move(batch), ec));
}

// The quick path: callbacks that do what relay() would, for as long as nothing but a read has
// to be waited for: a request of whole frames, a server idle in the pool with the client's
// settings, a batch and answers the sockets take at once, a server that goes back clean. That
// is most requests, and they then cost no coroutine frame; at any other step relay() (or a
// coroutine that ends in it) takes over from the state the step left.

bool ClientSession::quick() const {
  // Reads Next::either started are relay()'s to collect.
  return !closing_ && !terminate_after_transaction_ &&
         (!duplex_ || (duplex_->client.idle() && duplex_->server.idle()));
}

bool ClientSession::send_quickly(std::shared_ptr<ClientSession>& self,
                                 const backend::ClientBatch& batch) {
  // Nothing done when it returns false: send_batch() takes the batch as it was.
  const std::string_view frames = in_.readable().substr(0, batch.size);
  if (frames.empty() || !batch.violation.empty() || batch.terminate) return false;
  if (!server_) {
    if (exchange_.answers_alone(frames)) return false;
    if (!try_attach()) {
      wait_for_server(std::move(self), batch.size);
      return true;
    }
  }
  send_now(std::move(self), batch.size);
  return true;
}

void ClientSession::send_now(std::shared_ptr<ClientSession> self, std::size_t size) {
  const std::string_view to_send =
      exchange_.prepare(in_.readable().substr(0, size), server_->state());
  error_code ec;
  const std::size_t sent = server_->stream().write_now_some(to_send, ec);
  if (!ec && sent < to_send.size()) {
    // The rest (over TLS, all of it) when the socket takes it: still no coroutine.
    server_->stream().async_write(
        to_send.substr(sent),
        [self = std::move(self), size](error_code failed, std::size_t) mutable {
          auto& session = *self;
          session.batch_sent(failed);
          session.in_.consume(size);
          session.go_on(std::move(self));
        });
    return;
  }
  batch_sent(ec);
  in_.consume(size);
  go_on(std::move(self));
}

void ClientSession::wait_for_server(std::shared_ptr<ClientSession> self, std::size_t size) {
  // No coroutine and no timer: the pool keeps the session, and its batch's size, until a server
  // comes back or checkout_timeout passes.
  set_state(ClientState::waiting);
  auto& pool = *user_->pool;
  pool.wait({.served = &ClientSession::served, .waiter = std::move(self), .token = size});
}

void ClientSession::served(std::shared_ptr<void> waiter, std::size_t size,
                           backend::Result<backend::Lease> lease) {
  // On whichever thread gave the server back: the session goes on on its own loop.
  auto self = std::static_pointer_cast<ClientSession>(std::move(waiter));
  const auto loop = self->loop_;
  asio::post(loop, [self = std::move(self), size, lease = std::move(lease)]() mutable {
    auto& session = *self;
    if (lease && !session.closing_ &&
        (*lease)->synced_hash() == session.exchange_.params().hash()) {
      session.hold(std::move(*lease));
      session.send_now(std::move(self), size);
      return;
    }
    session.spawn(session.take_waited(std::move(self), size, std::move(lease)));
  });
}

Task<void> ClientSession::take_waited(std::shared_ptr<ClientSession> self, std::size_t size,
                                      backend::Result<backend::Lease> lease) {
  // What attach() and send_batch() would have done with this checkout: relay() goes on.
  if (const auto failure = co_await take(std::move(lease))) {
    co_await fail_batch(in_.readable().substr(0, size), *failure);
    in_.consume(size);
    co_await relay(std::move(self), std::nullopt, error_code{});
  } else if (closing_) {
    co_await relay(std::move(self), std::nullopt, error_code{});  // finish() gives it back
  } else {
    backend::ClientBatch batch;
    batch.size = size;
    co_await relay(std::move(self), std::move(batch), error_code{});
  }
}

void ClientSession::go_on(std::shared_ptr<ClientSession> self) {
  while (quick()) {
    const bool buffered = server_ && !server_->buffer().empty();
    const Next next = exchange_.next(server_ ? &server_->state() : nullptr, buffered);
    if (next == Next::client) {
      read_client_quickly(std::move(self));
      return;
    }
    if (next == Next::server) {
      if (!buffered) {
        read_server_quickly(std::move(self));
        return;
      }
      if (!answer_quickly(self)) return;
      continue;
    }
    if (next != Next::release || exchange_.dirty()) break;
    release_server();
  }
  spawn(relay(std::move(self), std::nullopt, error_code{}));
}

bool ClientSession::answer_quickly(std::shared_ptr<ClientSession>& self) {
  // on_server() for the bytes read so far; false when the session went on elsewhere.
  auto& server = *server_;
  const auto chunk = exchange_.read_server(server.buffer().readable(), server.state());
  if (!chunk.lost.empty()) {
    spawn(lose(std::move(self), chunk.lost));
    return false;
  }
  count(chunk.events);
  if (chunk.done == 0 && chunk.out.empty()) {  // an answer not all read yet
    read_server_quickly(std::move(self));
    return false;
  }
  std::size_t sent = 0;
  error_code ec;
  if (!deliver_now(chunk.out, sent, ec) && !ec) {
    client_.async_write(chunk.out.substr(sent), [self = std::move(self), done = chunk.done](
                                                    error_code failed, std::size_t) mutable {
      auto& session = *self;
      session.delivered(done, failed);
      session.go_on(std::move(self));
    });
    return false;
  }
  delivered(chunk.done, ec);
  return true;
}

void ClientSession::read_server_quickly(std::shared_ptr<ClientSession> self) {
  auto& server = *server_;
  auto on_read = [self = std::move(self)](error_code ec, std::size_t n) mutable {
    auto& session = *self;
    if (ec) {
      session.server_->mark_broken();
      session.spawn(session.lose(std::move(self), "server connection lost: " + ec.message()));
      return;
    }
    session.server_->buffer().commit(n);
    session.go_on(std::move(self));
  };
  const auto into = server.buffer().prepare(server_want());
  server.stream().async_read_some(into, std::move(on_read));
}

Task<void> ClientSession::lose([[maybe_unused]] std::shared_ptr<ClientSession> self,
                               std::string lost) {
  co_await report_lost(lost);
  co_await finish();
}

std::size_t ClientSession::client_want() const {
  std::size_t want = 512;
  if (auto h = protocol::peek_header(in_.readable(), SIZE_MAX)) {
    if (h->size > in_.size()) want = std::max(want, h->size - in_.size());
  }
  return want;
}

std::size_t ClientSession::server_want() {
  return std::max<std::size_t>(4096, exchange_.wanted(server_->buffer().readable()));
}

ClientSession::Duplex& ClientSession::duplex() {
  if (!duplex_) duplex_ = std::make_unique<Duplex>();
  return *duplex_;
}

Task<bool> ClientSession::read_client() {
  // The read Next::either started.
  while (!duplex_->client.ready()) co_await duplex_->wakeup.wait();
  const auto [ec, n] = duplex_->client.take();
  if (ec) co_return false;
  in_.commit(n);
  co_return co_await send_batch(take_batch(n));
}

Task<bool> ClientSession::read_server() {
  // The read Next::either started.
  auto& server = *server_;
  while (!duplex_->server.ready()) co_await duplex_->wakeup.wait();
  const auto [ec, n] = duplex_->server.take();
  if (ec) {
    server.mark_broken();
    co_await report_lost("server connection lost: " + ec.message());
    co_return false;
  }
  server.buffer().commit(n);
  co_return true;
}

Task<bool> ClientSession::read_either() {
  // Both reads stay outstanding until they complete; the one not handled now is collected
  // by the next read of its side (its buffer is not touched meanwhile).
  auto& d = duplex();
  if (d.client.idle()) {
    d.client.start(client_, in_.prepare(client_want()), executor(), d.wakeup, shared_from_this());
  }
  if (d.server.idle()) {
    d.server.start(server_->stream(), server_->buffer().prepare(server_want()), executor(),
                   d.wakeup, shared_from_this());
  }
  while (!d.client.ready() && !d.server.ready()) co_await d.wakeup.wait();
  if (d.server.ready()) co_return co_await read_server();
  co_return co_await read_client();
}

backend::ClientBatch ClientSession::take_batch(std::size_t received) {
  if (received > 0) PoolCounters::add(counters().bytes_received, received);
  auto batch = exchange_.read_client(in_.readable());
  if (batch.started) request_started_ = Clock::now();
  return batch;
}

Task<bool> ClientSession::send_batch(backend::ClientBatch batch) {
  std::string_view frames = in_.readable().substr(0, batch.size);
  if (!frames.empty() && !server_) {
    // A client that only prepares what servers already know does not wait for one.
    if (const auto answers = exchange_.answer_alone(frames)) {
      frames = {};
      if (!co_await deliver(*answers)) co_return false;
    }
  }
  // Not try_attach() first: the quick path tried it, or the client has reads outstanding.
  bool attached = !frames.empty() && server_;
  if (!frames.empty() && !attached) attached = co_await attach_or_fail(frames);
  // A client told to go while it waited (terminate()) has nothing sent for it.
  if (attached && !closing_) {
    // The tap and the answer bookkeeping see the batch before it is written.
    const std::string_view to_send = exchange_.prepare(frames, server_->state());
    error_code ec;
    const std::size_t sent = server_->stream().write_now_some(to_send, ec);
    if (!ec && sent < to_send.size()) ec = co_await server_->stream().write(to_send.substr(sent));
    batch_sent(ec);
  }
  in_.consume(batch.size);
  if (!batch.violation.empty()) {
    co_await fatal("08P01", batch.violation);
    co_return false;
  }
  co_return !batch.terminate && !closing_;
}

void ClientSession::batch_sent(error_code ec) {
  // Noticed when the answer is read: the client is told the server was lost.
  if (ec) server_->mark_broken();
  note_pins();
}

Task<bool> ClientSession::attach_or_fail(std::string_view batch) {
  const auto failure = co_await attach();
  if (!failure) co_return true;
  co_await fail_batch(batch, *failure);
  co_return false;
}

Task<void> ClientSession::fail_batch(std::string_view batch, const backend::Failure& failure) {
  // As PostgreSQL would answer the batch: each request fails with the reason.
  PoolCounters::add(counters().errors);
  const std::string message = failure.to_string();
  co_await deliver(exchange_.fail(batch, {.code = failure.sqlstate, .message = message}));
}

Task<bool> ClientSession::on_server() {
  auto& server = *server_;
  auto& buffer = server.buffer();
  // A read started while both sides could speak completes first: its bytes come after these.
  if (duplex_ && !duplex_->server.idle()) {
    const bool read = co_await read_server();
    if (!read) co_return false;
  }
  while (true) {
    const auto chunk = exchange_.read_server(buffer.readable(), server.state());
    if (!chunk.lost.empty()) {
      co_await report_lost(chunk.lost);
      co_return false;
    }
    count(chunk.events);
    if (chunk.done > 0 || !chunk.out.empty()) {
      std::size_t sent = 0;
      error_code ec;
      if (!deliver_now(chunk.out, sent, ec) && !ec) {
        ec = co_await client_.write(chunk.out.substr(sent));
      }
      delivered(chunk.done, ec);
      co_return !ec;
    }
    auto [ec, n] = co_await server.stream().read_some(buffer.prepare(server_want()));
    if (ec) {
      server.mark_broken();
      co_await report_lost("server connection lost: " + ec.message());
      co_return false;
    }
    buffer.commit(n);
  }
}

void ClientSession::delivered(std::size_t done, error_code ec) {
  server_->buffer().consume(done);
  closing_ = closing_ || ec.failed();
}

bool ClientSession::deliver_now(std::string_view out, std::size_t& sent, error_code& ec) {
  // Most answers fit in the socket buffer: written at once, without a coroutine.
  if (!out.empty()) PoolCounters::add(counters().bytes_sent, out.size());
  sent = client_.write_now_some(out, ec);
  return !ec && sent == out.size();
}

Task<bool> ClientSession::deliver(std::string_view out) {
  std::size_t sent = 0;
  error_code ec;
  if (!deliver_now(out, sent, ec) && !ec) ec = co_await client_.write(out.substr(sent));
  closing_ = closing_ || ec.failed();
  co_return !ec;
}

Task<void> ClientSession::settle_reads() {
  // Reads left outstanding by Next::either: cancelled, and what they brought kept.
  if (!duplex_) co_return;
  error_code ignored;
  if (duplex_->server.reading()) server_->stream().socket().cancel(ignored);
  if (closing_ && duplex_->client.reading()) client_.socket().cancel(ignored);
  while (duplex_->server.reading() || (closing_ && duplex_->client.reading())) {
    co_await duplex_->wakeup.wait();
  }
  if (duplex_->server.ready()) {
    auto [ec, n] = duplex_->server.take();
    if (ec && ec != asio::error::operation_aborted) server_->mark_broken();
    server_->buffer().commit(ec ? 0 : n);
  }
  if (closing_ && duplex_->client.ready()) duplex_->client.take();
}

Task<void> ClientSession::finish() {
  closing_ = true;
  co_await settle_reads();
  if (server_) {
    const bool clean = server_->buffer().empty() && exchange_.clean(server_->state());
    // The next client must not inherit this one's session state.
    if (!clean) {
      server_->mark_broken();
    } else if (exchange_.mode() == config::PoolerMode::session || exchange_.dirty()) {
      co_await reset_server();
    }
    exchange_.detach(server_->state());
    server_.release();
  }
  if (counted_pinned_) counters().pinned.fetch_sub(1, std::memory_order_relaxed);
  app_.clients().remove(*info_);
  client_.close();
}

Task<void> ClientSession::report_lost(const std::string& lost) {
  // The client's session on that server is gone; it cannot continue transparently.
  spdlog::warn("client {}: {}", info_->address, lost);
  exchange_.lose();
  co_await fatal("08006", lost);
}

}  // namespace pgdog::frontend
