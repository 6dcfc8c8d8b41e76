#include "mirror/mirror.hpp"

#include <random>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <spdlog/spdlog.h>

#include "mirror/compare.hpp"
#include "protocol/sql.hpp"

namespace pgdog::mirror {

namespace {

using stats::MirrorOutcome;

double uniform() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

constexpr std::string_view kStopped = "mirror stopped at shutdown or removed by a reload";

// A pipeline's bounds. Its frames are written before any answer is read: kept well under what
// the kernel's socket buffers take on their own, so that the write never waits on a server
// that waits for its answers to be read. A request larger than that goes alone, as before.
constexpr std::size_t kPipelineRequests = 32;
constexpr std::size_t kPipelineBytes = 32 * 1024;

}  // namespace

Mirror::Mirror(std::vector<Executor> loops, MirrorSettings settings,
               std::shared_ptr<stats::MirrorStats> stats, PoolLookup pools,
               backend::StatementRegistry& registry)
    : loops_(std::move(loops)),
      settings_(std::move(settings)),
      stats_(std::move(stats)),
      pools_(std::move(pools)),
      registry_(registry),
      queue_(settings_.queue_length, settings_.queue_bytes),
      exposure_(settings_.exposure),
      level_(settings_.level) {}

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
  for (int i = 0; i < workers; ++i)
    spawn_worker();
  asio::co_spawn(loops_.front(), flush_logs(weak), log_task_errors(stats_->cluster(), "log"));
}

void Mirror::spawn_worker() {
  ++workers_running_;
  // Each loop has one thread: a worker's handlers never run at once, no strand needed.
  const auto& loop = loops_[next_loop_.fetch_add(1) % loops_.size()];
  // The signal outlives the coroutine's frame: its completion handler holds it too.
  auto stop = std::make_shared<asio::cancellation_signal>();
  asio::co_spawn(loop, worker(stop),
                 asio::bind_cancellation_slot(
                     stop->slot(), [stop, log = log_task_errors(stats_->cluster(), "worker")](
                                       std::exception_ptr e) { log(std::move(e)); }));
}

std::shared_ptr<Channel> Mirror::open_channel(bool pin) {
  auto channel = std::make_shared<Channel>(pin);
  channel->cluster = stats_->cluster();
  if (pin) want_worker();
  // A worker is kept for every channel that keeps a connection: the shared ones may all be
  // waiting for a connection that such channels hold. It goes once it has nothing left to do
  // (see worker()).
  channel->on_close = [weak = weak_from_this(), ch = channel.get()] {
    auto self = weak.lock();
    if (self && (ch->pinned || ch->keeps_worker.load(std::memory_order_relaxed))) {
      --self->workers_wanted_;
    }
  };
  return channel;
}

void Mirror::want_worker() {
  ++workers_wanted_;
  if (workers_running_.load() < workers_wanted_.load() && !queue_.closed()) spawn_worker();
}

void Mirror::keep_worker_for(Channel& channel) {
  // A transaction-mode client that is pinned keeps its mirror connection (Replay::keep_lease).
  if (channel.pinned) return;
  const bool keeps = static_cast<bool>(channel.lease);
  if (channel.keeps_worker.exchange(keeps, std::memory_order_relaxed) == keeps) return;
  if (keeps) {
    want_worker();
  } else {
    --workers_wanted_;
  }
}

Task<void> Mirror::flush_logs(std::weak_ptr<Mirror> weak) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (true) {
    timer.expires_after(std::chrono::seconds(1));
    if (auto [ec] = co_await timer.async_wait(use_nothrow); ec) co_return;
    auto self = weak.lock();
    if (!self) co_return;
    // Once stopped and its workers gone, nothing more is logged: report what was held back.
    const bool last = self->queue_.closed() && self->workers_running_.load() == 0;
    const std::string context = "mirror " + self->stats_->cluster();
    self->drop_log_.flush(context + ": transactions dropped", last);
    self->failure_log_.flush(context + ": transactions failed", last);
    self->divergence_log_.flush(context + ": divergences", last);
    if (last) co_return;
  }
}

void Mirror::stop() {
  if (const std::size_t abandoned = queue_.close(); abandoned > 0) {
    finish(MirrorOutcome::dropped, kStopped, abandoned);
  }
}

void Mirror::drain() {
  draining_.store(true, std::memory_order_relaxed);
  queue_.close_when_empty();
}

void Mirror::update(MirrorSettings settings) {
  queue_.set_capacity(settings.queue_length, settings.queue_bytes);
  exposure_.store(settings.exposure, std::memory_order_relaxed);
  level_.store(settings.level, std::memory_order_relaxed);
  std::lock_guard g(mutex_);
  settings.workers = settings_.workers;  // the worker count is fixed once started
  settings_ = std::move(settings);
}

MirrorSettings Mirror::settings() const {
  std::lock_guard g(mutex_);
  return settings_;
}

bool Mirror::admit(Channel& channel, Traits traits) {
  if (draining()) return false;
  const double exposure = exposure_.load(std::memory_order_relaxed);
  const auto level = level_.load(std::memory_order_relaxed);
  if (level == config::MirrorLevel::dml && !traits.dml) return false;
  if (level == config::MirrorLevel::ddl && !traits.ddl) return false;
  // One decision per transaction: it goes whole or not at all.
  if (exposure < 1.0 && !(uniform() < exposure)) return false;
  stats_->handed();
  // The mirror is down and its pool backs off: a worker would fail this at checkout.
  if (const auto until = channel.down_until.load(std::memory_order_relaxed); until != 0) {
    const auto now = Clock::now().time_since_epoch();
    if (now.count() < until) {
      const auto wait =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::duration(until) - now);
      finish(MirrorOutcome::connection,
             fmt::format("the mirror is unreachable, pgdog retries it within {} ms", wait.count()));
      return false;
    }
  }
  return true;
}

void Mirror::enqueue(const std::shared_ptr<Channel>& channel, const RequestPtr& request) {
  if (queue_.try_push(channel, request)) return;
  // Closed between admit() and here (shutdown, or a removed mirror that ran dry meanwhile).
  if (queue_.closed()) {
    finish(MirrorOutcome::dropped, kStopped);
    return;
  }
  finish(MirrorOutcome::dropped,
         fmt::format("queue full ({} requests, {} bytes queued or in flight)", queue_.size(),
                     queue_.bytes()));
}

void Mirror::finish(MirrorOutcome outcome, std::string_view reason, std::size_t count) {
  stats_->record(outcome, count);
  switch (outcome) {
    case MirrorOutcome::success:
      break;
    case MirrorOutcome::dropped:
      if (count == 1) {
        drop_log_.warn("mirror {}: transaction dropped: {}", stats_->cluster(), reason);
      } else {
        drop_log_.warn("mirror {}: {} transactions dropped: {}", stats_->cluster(), count, reason);
      }
      break;
    default:
      failure_log_.warn("mirror {}: transaction failed ({}): {}", stats_->cluster(),
                        stats::to_string(outcome), reason);
      break;
  }
}

Task<void> Mirror::worker(std::shared_ptr<asio::cancellation_signal> stop) {
  auto self = shared_from_this();
  // A replay stopped by its watchdog sees its operation end with operation_aborted, as any
  // failed read; the worker goes on with a fresh cancellation state.
  co_await asio::this_coro::throw_if_cancelled(false);
  const auto executor = co_await asio::this_coro::executor;
  // Made once: each pipeline reuses them.
  const auto waiter = Queue::make_waiter(executor);
  const auto watchdog = std::make_shared<Watchdog>(executor, *stop);
  std::vector<Queue::Item> items;
  items.reserve(kPipelineRequests);
  while (true) {
    auto item = co_await queue_.pop(waiter);
    if (!item) break;
    pipeline(std::move(*item), items);
    co_await replay(items, *watchdog);
    if ((co_await asio::this_coro::cancellation_state).cancelled() !=
        asio::cancellation_type::none) {
      co_await asio::this_coro::reset_cancellation_state();
    }
    if (const std::size_t abandoned = queue_.done(items); abandoned > 0) {
      finish(MirrorOutcome::dropped, kStopped, abandoned);
    }
    items.clear();  // a channel may close here, and want one worker fewer
    if (retire()) {
      watchdog->close();
      co_return;
    }
  }
  watchdog->close();
  --workers_running_;  // stopped
}

bool Mirror::retire() {
  // More workers than sessions need (their pinned channels closed): this one goes.
  int running = workers_running_.load();
  while (running > workers_wanted_.load()) {
    if (workers_running_.compare_exchange_weak(running, running - 1)) return true;
  }
  return false;
}

void Mirror::pipeline(Queue::Item first, std::vector<Queue::Item>& items) {
  const RequestPtr lead = first.request;
  std::size_t bytes = lead->frames.size();
  const bool alone = !pipelinable(*first.channel, *lead) || bytes >= kPipelineBytes;
  items.push_back(std::move(first));
  // Called even when it goes alone: take_more hands what is left to another worker.
  queue_.take_more(
      [&](const Channel& channel, const Request& request) {
        if (!pipelinable(channel, request) || !same_connection(*lead, request)) return false;
        if (bytes + request.frames.size() > kPipelineBytes) return false;
        bytes += request.frames.size();
        return true;
      },
      alone ? 0 : kPipelineRequests - 1, items);
}

Task<void> Mirror::replay(std::span<const Queue::Item> items, Watchdog& watchdog) {
  const auto& user = items.front().request->user;
  auto pool = pools_(user);
  if (!pool) {
    finish(MirrorOutcome::connection, "no pool for user \"" + user + "\" on the mirror",
           items.size());
    co_return;
  }
  config::Millis timeout;
  config::MirrorCompare compare;
  {
    std::lock_guard g(mutex_);
    timeout = settings_.timeout;
    compare = settings_.compare;
  }
  Replay replay(items, std::move(pool), registry_, timeout, compare, stats_->cluster());
  co_await replay.run(watchdog);
  std::size_t successes = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    keep_worker_for(*items[i].channel);
    successes += conclude(*items[i].request, replay.ends()[i], compare) ? 1 : 0;
  }
  // A pipeline's successes are counted together.
  finish(MirrorOutcome::success, {}, successes);
}

bool Mirror::conclude(const Request& request, const ReplayEnd& end, config::MirrorCompare compare) {
  if (compare != config::MirrorCompare::off &&
      (end.outcome == MirrorOutcome::success || end.outcome == MirrorOutcome::query)) {
    record_divergences(request, end.results, compare == config::MirrorCompare::results);
  }
  if (end.outcome == MirrorOutcome::success) {
    stats_->observe_durations(request.primary_us, end.mirror_us);
    return true;
  }
  finish(end.outcome, end.reason);
  return false;
}

void Mirror::record_divergences(const Request& request, const StatementResults& results,
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
