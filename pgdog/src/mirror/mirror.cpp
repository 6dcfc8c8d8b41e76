#include "mirror/mirror.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/strand.hpp>
#include <spdlog/spdlog.h>

#include "backend/session_params.hpp"
#include "protocol/scanner.hpp"

namespace pgdog::mirror {

namespace {

using stats::MirrorOutcome;

double uniform() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

void log_failure(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("mirror worker failed: {}", ex.what());
  }
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
      queue_(settings_.queue_length) {}

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
  for (int i = 0; i < workers; ++i) {
    Executor ex = threads_ > 1 ? Executor(asio::make_strand(io_)) : io_;
    asio::co_spawn(ex, worker(), log_failure);
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
  queue_.set_capacity(settings.queue_length);
  std::lock_guard g(mutex_);
  settings.workers = settings_.workers;  // the worker count is fixed once started
  settings_ = std::move(settings);
}

MirrorSettings Mirror::settings() const {
  std::lock_guard g(mutex_);
  return settings_;
}

void Mirror::submit(const std::shared_ptr<Channel>& channel, const RequestPtr& request,
                    Traits traits) {
  double exposure;
  config::MirrorLevel level;
  {
    std::lock_guard g(mutex_);
    exposure = settings_.exposure;
    level = settings_.level;
  }
  if (level == config::MirrorLevel::dml && !traits.dml) return;
  if (level == config::MirrorLevel::ddl && !traits.ddl) return;
  // One decision per transaction: it goes whole or not at all.
  if (exposure < 1.0 && !(uniform() < exposure)) return;
  stats_->handed();
  if (!queue_.try_push(channel, request)) {
    stats_->record(MirrorOutcome::dropped);
    drop_log_.warn("mirror {}: transaction dropped: queue full ({} requests queued or in flight)",
                   stats_->cluster(), queue_.size());
  }
}

Task<void> Mirror::worker() {
  auto self = shared_from_this();
  while (true) {
    auto item = co_await queue_.pop();
    if (!item) co_return;
    std::string reason;
    const auto outcome = co_await replay(*item->request, reason);
    stats_->record(outcome);
    if (outcome != MirrorOutcome::success) {
      failure_log_.warn("mirror {}: transaction failed ({}): {}", stats_->cluster(),
                        stats::to_string(outcome), reason);
    }
    const std::size_t abandoned = queue_.done(*item);
    for (std::size_t i = 0; i < abandoned; ++i) stats_->record(MirrorOutcome::dropped);
  }
}

Task<MirrorOutcome> Mirror::replay(const Request& request, std::string& reason) {
  using namespace asio::experimental::awaitable_operators;
  auto pool = pools_(request.user);
  if (!pool) {
    reason = "no pool for user \"" + request.user + "\" on the mirror";
    co_return MirrorOutcome::connection;
  }
  const auto timeout = settings().timeout;
  backend::Lease lease;
  MirrorOutcome outcome = MirrorOutcome::success;

  auto exchange = [&]() -> Task<void> {
    auto checked_out = co_await pool->checkout();
    if (!checked_out) {
      reason = checked_out.error().to_string();
      outcome = MirrorOutcome::connection;
      co_return;
    }
    lease = std::move(*checked_out);
    auto& server = *lease;
    if (server.synced_hash != request.params->hash()) {
      protocol::Params desired = *request.params;
      if (auto r = co_await backend::sync_parameters(server, desired); !r) {
        if (server.broken()) {
          reason = r.error().to_string();
          outcome = MirrorOutcome::connection;
          co_return;
        }
      }
    }
    // Named statements are prepared on this mirror server the way the primary path does it.
    std::string rewritten;
    std::string_view to_send = request.frames;
    std::size_t expected = request.syncs;
    bool rewrote = false;
    if (request.statements) {
      backend::ClientStatements overlay;
      backend::Rewriter rewriter(registry_, overlay, request.statements.get());
      backend::ResponseTracker tracker;
      for (auto rest = std::string_view(request.frames); !rest.empty();) {
        auto f = *protocol::next_frame(rest, request.frames.size());
        rest.remove_prefix(f.size());
        if (!rewriter.rewrite(f, server.prepared(), rewritten, tracker)) {
          rewritten.append(f.raw);
        } else {
          rewrote = true;
          if (f.type == protocol::fe::kQuery) --expected;  // answered without the server
        }
      }
      if (rewrote) to_send = rewritten;
    }
    if (auto ec = co_await server.stream().write(to_send)) {
      server.mark_broken();
      reason = "connection lost: " + ec.message();
      outcome = MirrorOutcome::connection;
      co_return;
    }
    // Read to the last ReadyForQuery, discarding results; rows stream through the scanner so
    // their size does not matter.
    protocol::StreamScanner scanner(server.max_message_size());
    auto& buffer = server.buffer();
    std::size_t ready = 0;
    std::uint32_t errors = 0;
    std::string first_error;
    bool fatal = false;
    while (ready < expected) {
      auto done = scanner.scan(buffer.readable(), [&](const protocol::Frame& f) {
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
                first_error = std::string(e->code) + " " + std::string(e->message);
              }
            }
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
      });
      if (!done) {
        server.mark_broken();
        reason = "mirror sent an invalid message";
        outcome = MirrorOutcome::connection;
        co_return;
      }
      buffer.consume(*done);
      if (fatal) {
        server.mark_broken();
        reason = first_error;
        outcome = MirrorOutcome::connection;
        co_return;
      }
      if (ready >= expected) break;
      const std::size_t want = std::max<std::size_t>(4096, scanner.wanted(buffer.readable()));
      auto [ec, n] = co_await server.stream().read_some(buffer.prepare(want));
      if (ec) {
        server.mark_broken();
        reason = "connection lost: " + ec.message();
        outcome = MirrorOutcome::connection;
        co_return;
      }
      buffer.commit(n);
    }
    // After an error, statements this replay prepared may not exist: the cache cannot be
    // trusted, so the connection is not reused.
    if (!buffer.empty() || server.status() != 'I' || (rewrote && errors > 0)) server.mark_broken();
    if (errors > request.primary_errors) {
      reason = first_error;
      outcome = MirrorOutcome::query;
    }
  };

  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto winner = co_await (exchange() || timer.async_wait(use_nothrow));
  if (winner.index() == 1) {
    reason = "no ReadyForQuery within mirror_timeout (" + std::to_string(timeout.count()) + " ms)";
    if (lease) {
      // The query may still be running: cancel it, and never reuse this connection.
      const auto& address = lease->address();
      asio::co_spawn(io_,
                     backend::ServerConnection::cancel(io_, address.host, address.port,
                                                       lease->key()),
                     log_failure);
      lease->mark_broken();
    }
    co_return MirrorOutcome::timeout;
  }
  co_return outcome;
}

}  // namespace pgdog::mirror
