#include "mirror/mirror.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/strand.hpp>
#include <spdlog/spdlog.h>

#include "backend/session_params.hpp"
#include "mirror/compare.hpp"
#include "protocol/scanner.hpp"
#include "protocol/sql.hpp"

namespace pgdog::mirror {

namespace {

using stats::MirrorOutcome;

double uniform() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}


}  // namespace

Mirror::Mirror(Executor io, int threads, MirrorSettings settings,
               std::shared_ptr<stats::MirrorStats> stats, PoolLookup pools,
               backend::StatementRegistry& registry)
    : io_(std::move(io)),
      threads_(threads),
      settings_(std::move(settings)),
      stats_(std::move(stats)),
      pools_(std::move(pools)),
      registry_(registry),
      queue_(settings_.queue_length, settings_.queue_bytes) {}

Mirror::~Mirror() = default;

void Mirror::start() {
  // The stats outlive this mirror (they are per destination and survive reloads), so the lag
  // source holds a weak reference.
  std::weak_ptr<Mirror> weak = weak_from_this();
  stats_->set_lag_source([weak] {
    auto self = weak.lock();
    return self ? self->queue_.oldest_age() : 0.0;
  });
  const int workers = std::max(1, settings().workers);
  workers_wanted_ += workers;
  for (int i = 0; i < workers; ++i) spawn_worker();
  asio::co_spawn(io_, flush_logs(weak), log_errors("mirror log"));
}

void Mirror::spawn_worker() {
  ++workers_running_;
  Executor ex = threads_ > 1 ? Executor(asio::make_strand(io_)) : io_;
  asio::co_spawn(ex, worker(), log_errors("mirror worker"));
}

std::shared_ptr<Channel> Mirror::open_channel(bool pin) {
  auto channel = std::make_shared<Channel>(pin);
  if (pin) {
    ++workers_wanted_;
    if (workers_running_.load() < workers_wanted_.load() && !queue_.closed()) spawn_worker();
    // The worker goes once it has nothing left to do (see worker()).
    channel->on_close = [weak = weak_from_this()] {
      if (auto self = weak.lock()) --self->workers_wanted_;
    };
  }
  return channel;
}

Task<void> Mirror::flush_logs(std::weak_ptr<Mirror> weak) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (true) {
    timer.expires_after(std::chrono::seconds(1));
    if (auto [ec] = co_await timer.async_wait(use_nothrow); ec) co_return;
    auto self = weak.lock();
    if (!self || self->queue_.closed()) co_return;
    const std::string context = "mirror " + self->stats_->cluster();
    self->drop_log_.flush(context + ": transactions dropped");
    self->failure_log_.flush(context + ": transactions failed");
    self->divergence_log_.flush(context + ": divergences");
  }
}

void Mirror::stop() {
  const std::size_t abandoned = queue_.close();
  for (std::size_t i = 0; i < abandoned; ++i) stats_->record(MirrorOutcome::dropped);
  if (abandoned > 0) {
    spdlog::warn("mirror {}: {} queued transactions dropped: mirror stopped (reload or shutdown)",
                 stats_->cluster(), abandoned);
  }
}

void Mirror::update(MirrorSettings settings) {
  queue_.set_capacity(settings.queue_length, settings.queue_bytes);
  std::lock_guard g(mutex_);
  settings.workers = settings_.workers;  // the worker count is fixed once started
  settings_ = std::move(settings);
}

MirrorSettings Mirror::settings() const {
  std::lock_guard g(mutex_);
  return settings_;
}

bool Mirror::admit(Channel& channel, Traits traits) {
  double exposure;
  config::MirrorLevel level;
  {
    std::lock_guard g(mutex_);
    exposure = settings_.exposure;
    level = settings_.level;
  }
  if (level == config::MirrorLevel::dml && !traits.dml) return false;
  if (level == config::MirrorLevel::ddl && !traits.ddl) return false;
  // One decision per transaction: it goes whole or not at all.
  if (exposure < 1.0 && !(uniform() < exposure)) return false;
  stats_->handed();
  // The mirror is down and its pool backs off: a worker would fail this at checkout.
  if (const auto until = channel.down_until.load(std::memory_order_relaxed); until != 0) {
    const auto now = Clock::now().time_since_epoch();
    if (now.count() < until) {
      stats_->record(MirrorOutcome::connection);
      failure_log_.warn(
          "mirror {}: transaction failed (connection): the mirror is unreachable, pgdog retries "
          "it within {} ms",
          stats_->cluster(),
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::duration(until) - now)
              .count());
      return false;
    }
  }
  return true;
}

void Mirror::enqueue(const std::shared_ptr<Channel>& channel, const RequestPtr& request) {
  if (!queue_.try_push(channel, request)) {
    stats_->record(MirrorOutcome::dropped);
    drop_log_.warn("mirror {}: transaction dropped: queue full ({} requests, {} bytes queued or "
                   "in flight)",
                   stats_->cluster(), queue_.size(), queue_.bytes());
  }
}

Task<void> Mirror::worker() {
  auto self = shared_from_this();
  while (true) {
    auto item = co_await queue_.pop();
    if (!item) co_return;
    std::string reason;
    const auto outcome = co_await replay(*item->request, *item->channel, reason);
    stats_->record(outcome);
    if (outcome != MirrorOutcome::success) {
      failure_log_.warn("mirror {}: transaction failed ({}): {}", stats_->cluster(),
                        stats::to_string(outcome), reason);
    }
    const std::size_t abandoned = queue_.done(*item);
    for (std::size_t i = 0; i < abandoned; ++i) stats_->record(MirrorOutcome::dropped);
    item.reset();  // the channel may close here, and want one worker fewer
    // More workers than sessions need (their pinned channels closed): this one goes.
    int running = workers_running_.load();
    while (running > workers_wanted_.load()) {
      if (workers_running_.compare_exchange_weak(running, running - 1)) co_return;
    }
  }
}

Task<MirrorOutcome> Mirror::replay(const Request& request, Channel& channel,
                                   std::string& reason) {
  using namespace asio::experimental::awaitable_operators;
  auto pool = pools_(request.user);
  if (!pool) {
    reason = "no pool for user \"" + request.user + "\" on the mirror";
    co_return MirrorOutcome::connection;
  }
  const auto settings = this->settings();
  const bool compare_rows = settings.compare == config::MirrorCompare::results;
  const bool compare_tags = settings.compare != config::MirrorCompare::off;
  backend::Lease lease;
  MirrorOutcome outcome = MirrorOutcome::success;
  std::vector<StatementResult> results;
  std::uint64_t mirror_us = 0;

  auto fail = [&](backend::ServerConnection* server, std::string why) {
    if (server != nullptr) server->mark_broken();
    reason = std::move(why);
    outcome = MirrorOutcome::connection;
  };

  auto exchange = [&]() -> Task<void> {
    if (channel.lease && !channel.lease->broken() && channel.lease.pool() == pool.get()) {
      lease = std::move(channel.lease);  // the session's own mirror connection
    } else {
      channel.lease = backend::Lease{};
      auto checked_out = co_await pool->checkout();
      if (!checked_out) {
        channel.down_until.store(pool->retry_at().time_since_epoch().count(),
                                 std::memory_order_relaxed);
        fail(nullptr, checked_out.error().to_string());
        co_return;
      }
      lease = std::move(*checked_out);
    }
    auto& server = *lease;
    if (server.synced_hash() != request.params->hash()) {
      protocol::Params desired = *request.params;
      if (auto r = co_await backend::sync_parameters(server, desired); !r && server.broken()) {
        fail(&server, r.error().to_string());
        co_return;
      }
    }
    // Named statements are prepared on this mirror server the way the primary path does it, and
    // the server's answers are followed so its statement cache stays exact.
    std::string rewritten;
    std::string_view to_send = request.frames;
    std::size_t expected = request.syncs;
    backend::ClientStatements overlay;
    backend::Rewriter rewriter(registry_, overlay, request.statements.get());
    backend::ResponseTracker tracker;
    // A pinned session replays verbatim: its statements live on its own mirror connection
    // under the client's names, as on the primary.
    const bool track = request.statements != nullptr && !channel.pinned;
    if (track) {
      bool rewrote = false;
      for (auto rest = std::string_view(request.frames); !rest.empty();) {
        auto f = *protocol::next_frame(rest, request.frames.size());
        rest.remove_prefix(f.size());
        if (!rewriter.rewrite(f, server.prepared(), rewritten, tracker)) {
          rewritten.append(f.raw);
          tracker.push_plain(f);
        } else {
          rewrote = true;
          if (f.type == protocol::fe::kQuery) --expected;  // answered without the server
        }
      }
      if (rewrote) to_send = rewritten;
    }
    const auto started = Clock::now();
    if (auto ec = co_await server.stream().write(to_send)) {
      fail(&server, "connection lost: " + ec.message());
      co_return;
    }
    // Read to the last ReadyForQuery; rows stream through the scanner (hashed when comparing
    // results) so their size does not matter.
    protocol::StreamScanner scanner(server.max_message_size());
    auto& buffer = server.buffer();
    std::size_t ready = 0;
    std::uint32_t errors = 0;
    std::string first_error;
    bool fatal = false;
    RowHash hash;
    auto on_frame = [&](const protocol::Frame& f) {
      if (track) {
        bool forward = true;
        std::string ignored;
        tracker.on_frame(f, server.prepared(), server.status(), forward, ignored, ignored);
      }
      switch (f.type) {
        case protocol::be::kReadyForQuery:
          ++ready;
          if (f.body.size() == 1) server.set_status(f.body[0]);
          break;
        case protocol::be::kErrorResponse:
          if (auto e = protocol::decode_error(f.body)) {
            if (e->is_fatal()) fatal = true;
            ++errors;
            if (first_error.empty()) {
              // PostgreSQL builds many messages from the data ("Key (email)=(...) already
              // exists"): the warning says only the SQLSTATE, the message goes to debug.
              first_error = "SQLSTATE " + std::string(e->code);
              spdlog::debug("mirror {}: error {}: {}", stats_->cluster(), e->code, e->message);
            }
            if (compare_tags) results.push_back(StatementResult{'E', std::string(e->code), 0});
          }
          hash.reset();
          break;
        case protocol::be::kCommandComplete:
          // The mirror server's statements are gone: its cache must say so, or the next
          // request would Bind to a statement the server no longer has.
          if (backend::drops_all_statements(f.body)) server.prepared().clear();
          if (compare_tags) {
            auto tag = protocol::decode_command_complete(f.body);
            results.push_back(StatementResult{'C', tag ? std::string(*tag) : std::string(),
                                              compare_rows ? hash.value() : 0});
          }
          hash.reset();
          break;
        case protocol::be::kEmptyQueryResponse:
        case protocol::be::kPortalSuspended:
          if (compare_tags) {
            results.push_back(StatementResult{f.type, {}, compare_rows ? hash.value() : 0});
          }
          hash.reset();
          break;
        case protocol::be::kDataRow:
          if (compare_rows) hash.update(f.raw);
          break;
        case protocol::be::kParameterStatus:
          if (auto p = protocol::decode_parameter_status(f.body)) {
            server.params().set(p->name, p->value);
          }
          break;
        default:
          break;
      }
      return ready < expected;
    };
    auto on_piece = [&](char type, std::string_view piece) {
      if (compare_rows && type == protocol::be::kDataRow) hash.update(piece);
    };
    while (ready < expected) {
      auto done = scanner.scan(buffer.readable(), on_frame, on_piece);
      if (!done) {
        fail(&server, "mirror sent an invalid message");
        co_return;
      }
      buffer.consume(*done);
      if (fatal) {
        fail(&server, first_error);
        co_return;
      }
      if (ready >= expected) break;
      const std::size_t want = std::max<std::size_t>(4096, scanner.wanted(buffer.readable()));
      auto [ec, n] = co_await server.stream().read_some(buffer.prepare(want));
      if (ec) {
        fail(&server, "connection lost: " + ec.message());
        co_return;
      }
      buffer.commit(n);
    }
    mirror_us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count());
    if (!buffer.empty() || server.status() != 'I' || tracker.take_poisoned()) {
      server.mark_broken();
    }
    if (errors > request.primary_errors) {
      reason = first_error;
      outcome = MirrorOutcome::query;
    }
  };

  asio::steady_timer timer(co_await asio::this_coro::executor, settings.timeout);
  auto winner = co_await (exchange() || timer.async_wait(use_nothrow));
  if (winner.index() == 1) {
    reason = "no ReadyForQuery within mirror_timeout (" + std::to_string(settings.timeout.count()) +
             " ms)";
    if (lease) {
      // The query may still be running: cancel it, and never reuse this connection.
      const auto& address = lease->address();
      asio::co_spawn(io_,
                     backend::ServerConnection::cancel(io_, address.host, address.port,
                                                       lease->key()),
                     log_errors("mirror cancel request"));
      lease->mark_broken();
    }
    co_return MirrorOutcome::timeout;
  }
  // A session keeps its connection for its next request (a broken one goes: the session's
  // state on the mirror is lost with it, and what depends on it fails there, as it should).
  if (channel.pinned && lease && !lease->broken()) channel.lease = std::move(lease);
  if (compare_tags && (outcome == MirrorOutcome::success || outcome == MirrorOutcome::query)) {
    record_divergences(request, results, compare_rows);
  }
  if (outcome == MirrorOutcome::success) stats_->observe_durations(request.primary_us, mirror_us);
  co_return outcome;
}

void Mirror::record_divergences(const Request& request, const std::vector<StatementResult>& results,
                                bool rows) {
  const auto found = compare(request.results, results, rows);
  if (found.empty()) return;
  const auto texts = statement_texts(request.frames, request.statements.get());
  for (const auto& d : found) {
    const std::string fingerprint =
        d.statement < texts.size() ? protocol::sql::fingerprint(texts[d.statement]) : "?";
    stats_->diverged(d.kind, fingerprint);
    divergence_log_.warn("mirror {}: {} divergence in \"{}\"", stats_->cluster(),
                         stats::to_string(d.kind), fingerprint);
  }
}

}  // namespace pgdog::mirror
