// The session's server: taking one from the pool, setting it up for the client, counting what
// it did, reading back and resetting what the client changed on it, giving it back.
#include <spdlog/spdlog.h>

#include "backend/session_params.hpp"
#include "frontend/client_session.hpp"

namespace pgdog::frontend {

namespace {

using stats::PoolCounters;

std::uint64_t micros(std::chrono::steady_clock::duration d) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(d).count());
}

}  // namespace

void ClientSession::count(const backend::ServerEvents& e) {
  if (e.queries == 0 && e.errors == 0) return;
  auto& c = counters();
  const auto now = Clock::now();
  PoolCounters::add(c.errors, e.errors);
  PoolCounters::add(c.queries, e.queries);
  info_->queries.fetch_add(e.queries, std::memory_order_relaxed);
  if (e.request_done) {
    const auto us = micros(now - request_started_);
    PoolCounters::add(c.query_time_us, us);
    c.query_duration.observe_us(us);
  }
  if (e.transactions > 0) {
    PoolCounters::add(c.transactions, e.transactions);
    info_->transactions.fetch_add(e.transactions, std::memory_order_relaxed);
  }
  // A block that began in this pass started with the request; if one also ended, the one that
  // is open now began after it.
  const bool began_last = e.began && e.ended && exchange_.busy();
  if (e.began && !began_last) transaction_started_ = request_started_;
  if (e.ended) PoolCounters::add(c.transaction_time_us, micros(now - transaction_started_));
  if (began_last) transaction_started_ = request_started_;
}

bool ClientSession::try_attach() {
  // The common case: an idle server already set up for this client's parameters.
  auto lease = user_->pool->try_checkout();
  if (!lease) return false;
  if ((*lease)->synced_hash() != exchange_.params().hash()) return false;  // attach() syncs
  server_ = std::move(*lease);
  exchange_.attached();
  set_state(ClientState::active);
  return true;
}

Task<std::optional<backend::Failure>> ClientSession::attach() {
  set_state(ClientState::waiting);
  auto lease = co_await user_->pool->checkout();
  if (!lease) {
    set_state(ClientState::idle);
    co_return std::move(lease.error());
  }
  server_ = std::move(*lease);
  exchange_.attached();
  set_state(ClientState::active);
  if (server_->synced_hash() != exchange_.params().hash()) co_await sync_parameters();
  co_return std::nullopt;
}

Task<bool> ClientSession::settle() {
  auto& server = *server_;
  const std::string sql = exchange_.settle_query(server.state());
  backend::ServerConnection::Row row;
  if (!sql.empty()) {
    auto read = co_await server.execute(sql, &row);
    if (!read) {
      if (server.broken()) {
        co_await report_lost("server connection lost: " + read.error().to_string());
        co_return false;
      }
      spdlog::warn("client {}: could not read back its settings: {}", info_->address,
                   read.error().to_string());
      exchange_.settle_failed();
      co_return true;
    }
  }
  if (!exchange_.settled(row, server.state())) co_return true;
  // A RESET returned a parameter to the server's default: the client's own comes back, and the
  // client hears of it as it would from PostgreSQL.
  const protocol::Params before = server.params();
  co_await sync_parameters();
  std::string out;
  for (const auto& [name, value] : server.params().items()) {
    if (protocol::is_reported_parameter(name) && before.get(name) != value) {
      protocol::write_parameter_status(out, name, value);
    }
  }
  co_return co_await deliver(out);
}

Task<void> ClientSession::reset_server() {
  const bool reset = co_await server_->reset_session();
  if (!reset) server_->mark_broken();
  exchange_.cleaned();
}

void ClientSession::note_pins() {
  auto& c = counters();
  if (const auto bits = exchange_.take_pins(); bits != 0) {
    for (std::size_t k = 0; k < c.pins.size(); ++k) {
      if ((bits & (1U << k)) != 0) PoolCounters::add(c.pins[k]);
    }
  }
  const bool pinned = exchange_.pinned();
  if (pinned != counted_pinned_) {
    c.pinned.fetch_add(pinned ? 1 : -1, std::memory_order_relaxed);
    counted_pinned_ = pinned;
  }
}

Task<void> ClientSession::sync_parameters() {
  auto r = co_await backend::sync_parameters(*server_, exchange_.params());
  if (!r) {
    spdlog::warn("client {}: could not apply session parameters on server: {}", info_->address,
                 r.error().to_string());
    // Do not retry the same failing SET on every transaction.
    server_->state().synced_hash = exchange_.params().hash();
  }
}

void ClientSession::release_server() {
  server_->buffer().shrink_if_larger();
  exchange_.detach(server_->state());
  server_.release();
  set_state(ClientState::idle);
}

}  // namespace pgdog::frontend
