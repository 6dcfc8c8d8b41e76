#include "mirror/replay.hpp"

#include <algorithm>
#include <array>

#include <spdlog/spdlog.h>

#include "backend/session_params.hpp"
#include "mirror/rate_limited_log.hpp"

namespace pgdog::mirror {

using stats::MirrorOutcome;

bool pipelinable(const Channel& channel, const Request& request) {
  return !channel.pinned && !channel.lease && !request.keep_server;
}

bool same_connection(const Request& first, const Request& next) {
  if (first.user != next.user) return false;
  if (!first.params || !next.params) return first.params == next.params;
  return first.params->hash() == next.params->hash();
}

Replay::Replay(std::span<const Queue::Item> items, std::shared_ptr<backend::Pool> pool,
               backend::StatementRegistry& registry, config::Millis timeout,
               config::MirrorCompare compare, std::string_view cluster)
    : items_(items),
      pool_(std::move(pool)),
      timeout_(timeout),
      compare_(compare),
      cluster_(cluster),
      registry_(registry),
      // A pipeline's channels are never pinned (pipelinable).
      track_(!channel().pinned && std::any_of(items.begin(), items.end(),
                                              [](const Queue::Item& item) {
                                                return item.request->statements != nullptr;
                                              })),
      to_send_(first().frames),
      ends_(items.size()) {
  if (items.size() == 1 || track_) return;  // rewrite() joins a tracked pipeline
  std::size_t size = 0;
  for (const auto& item : items)
    size += item.request->frames.size();
  joined_.reserve(size);
  for (const auto& item : items)
    joined_.append(item.request->frames);
  to_send_ = joined_;
}

Watchdog::Watchdog(Executor executor, asio::cancellation_signal& stop)
    : timer_(std::move(executor)), stop_(stop) {}

void Watchdog::watch(Replay& replay, Clock::time_point deadline) {
  replay_ = &replay;
  deadline_ = deadline;
  // Armed for an earlier time, it moves on when it fires. Armed for a later one (a pause of the
  // replay before, or a timeout a reload shortened), it moves now.
  if (!armed_ || timer_.expiry() > deadline) arm(deadline);
}

void Watchdog::again(Clock::time_point deadline) {
  deadline_ = deadline;
  arm(deadline);
}

void Watchdog::close() {
  replay_ = nullptr;
  armed_ = false;
  timer_.cancel();
}

void Watchdog::arm(Clock::time_point at) {
  armed_ = true;
  timer_.expires_at(at);
  timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
    // Cancelled (moved, closed): the wait that replaced it, if any, is pending.
    if (ec) return;
    if (auto self = weak.lock()) self->fired();
  });
}

void Watchdog::fired() {
  armed_ = false;
  if (replay_ == nullptr) return;  // idle: armed again by the next watch()
  // A wait that completed just before it was moved also lands here: the deadline decides.
  if (Clock::now() < deadline_) {
    arm(deadline_);
    return;
  }
  replay_->on_watchdog();
}

Task<void> Replay::run(Watchdog& watchdog) {
  watchdog_ = &watchdog;
  watchdog.watch(*this, Clock::now() + timeout_);
  co_await exchange();
  watchdog.finish();
  if (timed_out_) {
    time_out();
    co_return;
  }
  keep_lease();
}

// Past mirror_timeout the requests not answered yet count as timeouts and the query running is
// cancelled, again and again until the server has answered every request written (in a
// pipeline, the next request starts when one is cancelled): a cancel that reaches the server
// before the query started does nothing, and a query left running (waiting for a lock, say)
// would apply on the mirror later, behind the client's next transactions. The exchange is
// stopped (its operation cancelled) at once when nothing was written yet, and after the last
// pause otherwise.
void Replay::on_watchdog() {
  static constexpr std::array<std::chrono::milliseconds, 4> kPauses{
      std::chrono::milliseconds(50), std::chrono::milliseconds(100), std::chrono::milliseconds(200),
      std::chrono::milliseconds(400)};
  if (!timed_out_) {
    timed_out_ = true;
    answered_in_time_ = answered_;
  }
  if (!sent_ || cancels_ == kPauses.size()) {
    if (sent_) {
      spdlog::warn(
          "mirror {}: a timed-out query did not end after {} cancel requests; its "
          "connection is closed",
          cluster_, kPauses.size());
    }
    watchdog_->stop().emit(asio::cancellation_type::terminal);
    return;
  }
  const auto& address = lease_->address();
  const auto io = watchdog_->executor();
  asio::co_spawn(io,
                 backend::ServerConnection::cancel(io, address.host, address.port, lease_->key()),
                 log_task_errors(cluster_, "cancel request"));
  watchdog_->again(Clock::now() + kPauses[cancels_++]);
}

Task<void> Replay::exchange() {
  // The common case awaits nothing but the write and the reads: an idle connection already at
  // the requests' parameters. Each result is awaited into a local, not inside the if: GCC 12.2
  // miscompiles a coroutine with no local variable whose if condition awaits (the callee ran
  // with a wrong `this`).
  if (!lease_now()) {
    const bool leased = co_await lease();
    if (!leased) co_return;
  }
  if (!synced()) {
    const bool done = co_await sync_parameters();
    if (!done) co_return;
  }
  // Written in one part, or with tracking in parts (see rewrite()); each part's answers are read
  // before the next part is written.
  for (std::size_t next = 0; next < items_.size();) {
    const std::size_t end = track_ ? rewrite(next) : items_.size();
    if (timed_out_) co_return;
    auto& server = *lease_;
    written_ = Clock::now();
    sent_ = true;
    // Most pipelines fit in the socket's buffer: written without a coroutine's round.
    error_code ec;
    const std::size_t now = server.stream().write_now_some(to_send_, ec);
    if (!ec && now < to_send_.size()) ec = co_await server.stream().write(to_send_.substr(now));
    if (ec) {
      fail(&server, "connection lost: " + ec.message());
      co_return;
    }
    for (; next < end; ++next) {
      const bool more = co_await read_answers(next);
      if (!more) co_return;
    }
  }
}

Task<bool> Replay::read_answers(std::size_t i) {
  auto& server = *lease_;
  auto& buffer = server.buffer();
  const auto& request = *items_[i].request;
  const bool tags = compare_ != config::MirrorCompare::off;
  ReplayReader reader(
      ReplayReader::Settings{expected_ready(i), request.primary_errors, tags,
                             compare_ == config::MirrorCompare::results, server.max_message_size()},
      server.prepared(), server.params(), server.status(), track_ ? &tracker_ : nullptr);
  while (true) {
    buffer.consume(reader.feed(buffer.readable()));
    if (reader.outcome()) break;
    const std::size_t want = std::max<std::size_t>(4096, reader.wanted(buffer.readable()));
    const auto [ec, n] = co_await server.stream().read_some(buffer.prepare(want));
    if (ec) {
      fail(&server, "connection lost: " + ec.message());
      co_return false;
    }
    buffer.commit(n);
  }
  ends_[i].mirror_us = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - written_).count());
  co_return conclude(reader, i);
}

bool Replay::lease_now() {
  auto& channel = this->channel();
  if (channel.lease && !channel.lease->broken() && channel.lease.pool() == pool_.get()) {
    lease_ = std::move(channel.lease);  // the session's own mirror connection
    reused_ = true;
    return true;
  }
  channel.lease = backend::Lease{};
  if (auto idle = pool_->try_checkout()) {
    lease_ = std::move(*idle);
    return true;
  }
  return false;
}

Task<bool> Replay::lease() {
  auto checked_out = co_await pool_->checkout();
  if (!checked_out) {
    // The session's next transactions fail at once while the pool backs off (Mirror::admit).
    for (const auto& item : items_) {
      item.channel->down_until.store(pool_->retry_at().time_since_epoch().count(),
                                     std::memory_order_relaxed);
    }
    fail(nullptr, checked_out.error().to_string());
    co_return false;
  }
  lease_ = std::move(*checked_out);
  co_return true;
}

bool Replay::synced() const {
  // A pipeline's requests all have the first one's parameters (same_connection).
  const auto& params = first().params;
  return !params || lease_->synced_hash() == params->hash();
}

Task<bool> Replay::sync_parameters() {
  auto& server = *lease_;
  protocol::Params desired = *first().params;
  // A parameter the mirror refuses is not the replay's failure; a broken connection is.
  if (auto r = co_await backend::sync_parameters(server, desired); !r && server.broken()) {
    fail(&server, r.error().to_string());
    co_return false;
  }
  co_return true;
}

std::size_t Replay::expected_ready(std::size_t i) const {
  return track_ ? ready_[i] : items_[i].request->syncs;
}

std::size_t Replay::rewrite(std::size_t first) {
  auto& server = *lease_;
  auto& cache = server.prepared();
  ready_.resize(items_.size());
  rewritten_.clear();
  bool rewrote = false;
  std::size_t i = first;
  while (i < items_.size()) {
    // Each request against its own client's statements, as that client had them when it
    // committed; what it prepares itself is its own (the overlay), the server's cache is shared.
    const auto& request = *items_[i].request;
    backend::ClientStatements overlay;
    backend::Rewriter rewriter(registry_, overlay, request.statements.get());
    const std::uint64_t inserts = cache.inserts();
    std::size_t ready = request.syncs;
    for (auto rest = std::string_view(request.frames); !rest.empty();) {
      auto f = *protocol::next_frame(rest, request.frames.size());
      rest.remove_prefix(f.size());
      if (!rewriter.rewrite(f, cache, rewritten_, tracker_)) {
        rewritten_.append(f.raw);
        tracker_.push_plain(f);
      } else {
        rewrote = true;
        if (f.type == protocol::fe::kQuery) --ready;  // answered without the server
      }
    }
    ready_[i++] = ready;
    // It prepares a statement on the server: the requests after it are rewritten once its
    // answers are read. Written behind it they would count on the statement even if an error
    // before its Parse made the server skip it, and fail for that alone.
    if (cache.inserts() != inserts) break;
  }
  to_send_ = rewrote || i - first > 1 ? std::string_view(rewritten_)
                                      : std::string_view(items_[first].request->frames);
  return i;
}

bool Replay::conclude(ReplayReader& reader, std::size_t i) {
  auto& server = *lease_;
  server.set_status(reader.status());
  if (!reader.first_error().empty()) {
    spdlog::debug("mirror {}: error {}: {}", cluster_, reader.first_error(),
                  reader.first_error_message());
  }
  auto& end = ends_[i];
  end.outcome = *reader.outcome();
  end.reason = reader.reason();
  end.results = std::move(reader.results());
  answered_ = i + 1;
  // In a pipeline the answers to the next requests may already be buffered after this one's.
  const bool last = answered_ == items_.size();
  if (reader.reusable(!last || server.buffer().empty())) return true;
  server.mark_broken();
  if (last) return false;
  if (end.outcome == MirrorOutcome::connection) {
    fail(&server, "connection lost during an earlier transaction of its pipeline: " + end.reason);
  } else if (reader.status() == 'I') {
    // A statement the rewriter prepared for it failed: what the connection holds is unknown.
    fail(&server,
         "an earlier transaction of its pipeline left the mirror connection's prepared "
         "statements unknown; the connection was closed, this one unconfirmed");
  } else {
    fail(&server, std::string("an earlier transaction of its pipeline left the mirror connection "
                              "in transaction status '") +
                      reader.status() + "'; the connection was closed, this one unconfirmed");
  }
  return false;
}

void Replay::time_out() {
  const std::string reason =
      "no ReadyForQuery within mirror_timeout (" + std::to_string(timeout_.count()) + " ms)";
  // Answered whole before the deadline: their outcome stands. The rest were not confirmed in
  // time, even those answered while the cancels went out.
  for (std::size_t i = answered_in_time_; i < ends_.size(); ++i) {
    ends_[i].outcome = MirrorOutcome::timeout;
    ends_[i].reason = reason;
    ends_[i].results.clear();
  }
  // Never reused: it may have been stopped in the middle of anything.
  if (lease_) lease_->mark_broken();
}

void Replay::keep_lease() {
  // A session keeps its connection for its next request (a broken one goes: the session's
  // state on the mirror is lost with it, and what depends on it fails there, as it should).
  if (!lease_ || lease_->broken()) return;
  // A pipeline's requests keep nothing (pipelinable).
  if (channel().pinned || first().keep_server) {
    channel().lease = std::move(lease_);
  } else if (reused_) {
    // A transaction-mode client that was pinned is no longer: its connection is reset before
    // the pool shares it, as on the primary.
    reset_and_release(std::move(lease_), cluster_);
  }
}

void Replay::fail(backend::ServerConnection* server, std::string why) {
  if (server != nullptr) server->mark_broken();
  for (std::size_t i = answered_; i < ends_.size(); ++i) {
    ends_[i].outcome = MirrorOutcome::connection;
    ends_[i].reason = why;
  }
}

}  // namespace pgdog::mirror
