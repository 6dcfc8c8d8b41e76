#include "mirror/replay.hpp"

#include <array>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <spdlog/spdlog.h>

#include "backend/session_params.hpp"
#include "mirror/rate_limited_log.hpp"

namespace pgdog::mirror {

using stats::MirrorOutcome;

Replay::Replay(const Request& request, Channel& channel, std::shared_ptr<backend::Pool> pool,
               backend::StatementRegistry& registry, config::Millis timeout,
               config::MirrorCompare compare, std::string_view cluster)
    : request_(request),
      channel_(channel),
      pool_(std::move(pool)),
      timeout_(timeout),
      compare_(compare),
      cluster_(cluster),
      track_(request.statements != nullptr && !channel.pinned),
      rewriter_(registry, overlay_, request.statements.get()),
      to_send_(request.frames),
      ready_(request.syncs) {}

Task<void> Replay::run(Executor io) {
  using namespace asio::experimental::awaitable_operators;
  co_await (exchange() || watchdog(std::move(io)));
  if (timed_out_) {
    time_out();
    co_return;
  }
  keep_lease();
}

// Past mirror_timeout the request counts as a timeout and its query is cancelled, again and
// again until the server has answered it: a cancel that reaches the server before the query
// started does nothing, and a query left running (waiting for a lock, say) would apply on the
// mirror later, behind the client's next transactions.
Task<void> Replay::watchdog(Executor io) {
  static constexpr std::array<std::chrono::milliseconds, 4> kPauses{
      std::chrono::milliseconds(50), std::chrono::milliseconds(100),
      std::chrono::milliseconds(200), std::chrono::milliseconds(400)};
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout_);
  if (auto [ec] = co_await timer.async_wait(use_nothrow); ec) co_return;
  timed_out_ = true;
  if (!sent_) co_return;  // nothing runs on the mirror yet: the exchange stops here
  for (const auto pause : kPauses) {
    const auto& address = lease_->address();
    asio::co_spawn(io,
                   backend::ServerConnection::cancel(io, address.host, address.port, lease_->key()),
                   log_task_errors(cluster_, "cancel request"));
    timer.expires_after(pause);
    if (auto [ec] = co_await timer.async_wait(use_nothrow); ec) co_return;
  }
  spdlog::warn("mirror {}: a timed-out query did not end after {} cancel requests; its "
               "connection is closed",
               cluster_, kPauses.size());
}

Task<void> Replay::exchange() {
  const bool leased = co_await lease();
  if (!leased) co_return;
  const bool prepared = co_await prepare();
  if (!prepared || timed_out_) co_return;
  auto& server = *lease_;
  const auto started = Clock::now();
  sent_ = true;
  if (auto ec = co_await server.stream().write(to_send_)) {
    fail(&server, "connection lost: " + ec.message());
    co_return;
  }
  const bool tags = compare_ != config::MirrorCompare::off;
  ReplayReader reader(
      ReplayReader::Settings{ready_, request_.primary_errors, tags,
                             compare_ == config::MirrorCompare::results, server.max_message_size()},
      server.prepared(), server.params(), server.status(), track_ ? &tracker_ : nullptr);
  const bool answered = co_await read(reader);
  if (!answered) co_return;
  end_.mirror_us = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count());
  conclude(reader);
}

Task<bool> Replay::lease() {
  if (channel_.lease && !channel_.lease->broken() && channel_.lease.pool() == pool_.get()) {
    lease_ = std::move(channel_.lease);  // the session's own mirror connection
    reused_ = true;
    co_return true;
  }
  channel_.lease = backend::Lease{};
  auto checked_out = co_await pool_->checkout();
  if (!checked_out) {
    // The session's next transactions fail at once while the pool backs off (Mirror::admit).
    channel_.down_until.store(pool_->retry_at().time_since_epoch().count(),
                              std::memory_order_relaxed);
    fail(nullptr, checked_out.error().to_string());
    co_return false;
  }
  lease_ = std::move(*checked_out);
  co_return true;
}

Task<bool> Replay::prepare() {
  // Awaited into a local, not inside the if: GCC 12.2 miscompiles a coroutine with no local
  // variable whose if condition awaits (the callee ran with a wrong `this`).
  const bool synced = co_await sync_parameters();
  if (!synced) co_return false;
  if (track_) rewrite();
  co_return true;
}

Task<bool> Replay::sync_parameters() {
  auto& server = *lease_;
  if (!request_.params || server.synced_hash() == request_.params->hash()) co_return true;
  protocol::Params desired = *request_.params;
  // A parameter the mirror refuses is not the replay's failure; a broken connection is.
  if (auto r = co_await backend::sync_parameters(server, desired); !r && server.broken()) {
    fail(&server, r.error().to_string());
    co_return false;
  }
  co_return true;
}

void Replay::rewrite() {
  auto& server = *lease_;
  bool rewrote = false;
  for (auto rest = std::string_view(request_.frames); !rest.empty();) {
    auto f = *protocol::next_frame(rest, request_.frames.size());
    rest.remove_prefix(f.size());
    if (!rewriter_.rewrite(f, server.prepared(), rewritten_, tracker_)) {
      rewritten_.append(f.raw);
      tracker_.push_plain(f);
    } else {
      rewrote = true;
      if (f.type == protocol::fe::kQuery) --ready_;  // answered without the server
    }
  }
  if (rewrote) to_send_ = rewritten_;
}

Task<bool> Replay::read(ReplayReader& reader) {
  auto& server = *lease_;
  auto& buffer = server.buffer();
  while (true) {
    buffer.consume(reader.feed(buffer.readable()));
    if (reader.outcome()) co_return true;
    const std::size_t want = std::max<std::size_t>(4096, reader.wanted(buffer.readable()));
    auto [ec, n] = co_await server.stream().read_some(buffer.prepare(want));
    if (ec) {
      fail(&server, "connection lost: " + ec.message());
      co_return false;
    }
    buffer.commit(n);
  }
}

void Replay::conclude(ReplayReader& reader) {
  auto& server = *lease_;
  server.set_status(reader.status());
  if (!reader.first_error().empty()) {
    spdlog::debug("mirror {}: error {}: {}", cluster_, reader.first_error(),
                  reader.first_error_message());
  }
  end_.outcome = *reader.outcome();
  end_.reason = reader.reason();
  end_.results = std::move(reader.results());
  if (!reader.reusable(server.buffer().empty())) server.mark_broken();
}

void Replay::time_out() {
  end_.outcome = MirrorOutcome::timeout;
  end_.reason =
      "no ReadyForQuery within mirror_timeout (" + std::to_string(timeout_.count()) + " ms)";
  // Never reused: it may have been stopped in the middle of anything.
  if (lease_) lease_->mark_broken();
}

void Replay::keep_lease() {
  // A session keeps its connection for its next request (a broken one goes: the session's
  // state on the mirror is lost with it, and what depends on it fails there, as it should).
  if (!lease_ || lease_->broken()) return;
  if (channel_.pinned || request_.keep_server) {
    channel_.lease = std::move(lease_);
  } else if (reused_) {
    // A transaction-mode client that was pinned is no longer: its connection is reset before
    // the pool shares it, as on the primary.
    reset_and_release(std::move(lease_), cluster_);
  }
}

void Replay::fail(backend::ServerConnection* server, std::string why) {
  if (server != nullptr) server->mark_broken();
  end_.outcome = MirrorOutcome::connection;
  end_.reason = std::move(why);
}

}  // namespace pgdog::mirror
