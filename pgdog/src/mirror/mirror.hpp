#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "backend/pool.hpp"
#include "backend/prepared.hpp"
#include "config/config.hpp"
#include "mirror/queue.hpp"
#include "mirror/rate_limited_log.hpp"
#include "mirror/replay.hpp"
#include "stats/mirror_stats.hpp"

namespace pgdog::mirror {

struct MirrorSettings {
  std::string source;
  std::string destination;
  std::size_t queue_length = 128;
  std::size_t queue_bytes = std::size_t{64} * 1024 * 1024;
  double exposure = 1.0;
  config::MirrorLevel level = config::MirrorLevel::all;
  config::Millis timeout{10'000};
  config::MirrorCompare compare = config::MirrorCompare::tags;
  int workers = 10;  // concurrent replays; the destination pool_size caps connections anyway
};

// The destination pool for a client user; null when there is none.
using PoolLookup = std::function<std::shared_ptr<backend::Pool>(const std::string& user)>;

// What a finished transaction carries besides its frames, for the filters.
struct Traits {
  bool dml = false;
  bool ddl = false;
};

// One [[mirroring]] entry: its queue, its workers, and the stats of its destination cluster.
class Mirror : public std::enable_shared_from_this<Mirror> {
 public:
  // `registry` interns the statements that replays prepare on mirror servers. Its workers are
  // spread over `loops` (one per pgdog worker thread; the first also runs its log flusher).
  Mirror(std::vector<Executor> loops, MirrorSettings settings,
         std::shared_ptr<stats::MirrorStats> stats, PoolLookup pools,
         backend::StatementRegistry& registry);
  ~Mirror();

  void start();
  // Stops taking requests; queued ones are counted as dropped. Workers finish what they run.
  void stop();
  // Removed by a reload: no transaction is handed to it any more (sessions that still hold it
  // until their next transaction are turned away by admit(), uncounted), and what was handed
  // replays to the end before the workers go.
  void drain();
  // drain() was called; and once what was queued then has ended.
  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  bool drained() const { return draining() && queue_.closed(); }
  void update(MirrorSettings settings);
  MirrorSettings settings() const;

  // `pin`: session mode, one mirror connection for the client's whole session. Each pinned
  // channel brings one more worker while it is open: a worker waiting for a mirror connection
  // for one session must never leave another session's queued requests (and the connection
  // it holds) without a worker.
  std::shared_ptr<Channel> open_channel(bool pin = false);

  // A committed transaction in two steps, so that its request is built only when some mirror
  // takes it. admit(): the level filter and exposure sampling; then, for a transaction that
  // goes, it is counted (handed) and, while the mirror is known down, failed at once as
  // `connection`; a draining mirror takes nothing. True when the caller must enqueue() the
  // request. Neither waits.
  bool admit(Channel& channel, Traits traits);
  // try_push, or a drop when the queue is full.
  void enqueue(const std::shared_ptr<Channel>& channel, const RequestPtr& request);

  // Every request handed to this mirror ends here, exactly once: `count` requests that ended
  // alike are counted under `outcome`; a failure or a drop is logged (rate-limited) with the
  // cluster and `reason`. (A success's durations are observed where it is concluded.)
  void finish(stats::MirrorOutcome outcome, std::string_view reason, std::size_t count = 1);

  stats::MirrorStats& stats() { return *stats_; }
  const Queue& queue() const { return queue_; }

 private:
  // `stop` is bound to the worker's coroutine: a replay's watchdog emits it to stop the
  // exchange it is waiting on (Replay::run).
  Task<void> worker(std::shared_ptr<asio::cancellation_signal> stop);
  void want_worker();
  void keep_worker_for(Channel& channel);
  void spawn_worker();
  static Task<void> flush_logs(std::weak_ptr<Mirror> weak);
  // The popped item and the queued requests that can follow it on its mirror connection, into
  // `items` (empty).
  void pipeline(Queue::Item first, std::vector<Queue::Item>& items);
  Task<void> replay(std::span<const Queue::Item> items, Watchdog& watchdog);
  // Records the divergences and a failure; true for a success, which the caller counts.
  bool conclude(const Request& request, const ReplayEnd& end, config::MirrorCompare compare);
  bool retire();
  void record_divergences(const Request& request, const StatementResults& results, bool rows);

  std::vector<Executor> loops_;
  std::atomic<std::size_t> next_loop_{0};
  mutable std::mutex mutex_;
  MirrorSettings settings_;
  std::shared_ptr<stats::MirrorStats> stats_;
  PoolLookup pools_;
  backend::StatementRegistry& registry_;
  Queue queue_;
  // settings_'s, read by admit() for every transaction without the lock.
  std::atomic<double> exposure_;
  std::atomic<config::MirrorLevel> level_;
  std::atomic<bool> draining_{false};
  std::atomic<int> workers_wanted_{0};
  std::atomic<int> workers_running_{0};
  RateLimitedLog drop_log_;
  RateLimitedLog failure_log_;
  RateLimitedLog divergence_log_;
};

}  // namespace pgdog::mirror
