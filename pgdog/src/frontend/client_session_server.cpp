// The session's server: taking one from the pool, counting what it did, giving it back (what
// the client leaves on it is client_session_state.cpp's).

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
  hold(std::move(*lease));
  return true;
}

Task<std::optional<backend::Failure>> ClientSession::attach() {
  set_state(ClientState::waiting);
  co_return co_await take(co_await user_->pool->checkout());
}

Task<std::optional<backend::Failure>> ClientSession::take(backend::Result<backend::Lease> lease) {
  if (!lease) {
    set_state(ClientState::idle);
    co_return lease.error();
  }
  hold(std::move(*lease));
  if (server_->synced_hash() != exchange_.params().hash()) co_await sync_parameters();
  co_return std::nullopt;
}

void ClientSession::hold(backend::Lease lease) {
  server_ = std::move(lease);
  exchange_.attached();
  set_state(ClientState::active);
}

void ClientSession::release_server() {
  server_->buffer().shrink_if_larger();
  exchange_.detach(server_->state());
  server_.release();
  set_state(ClientState::idle);
}

}  // namespace pgdog::frontend
