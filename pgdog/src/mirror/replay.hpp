#pragma once

// The replay of one request, or of a pipeline of requests, on a mirror server, in parts: getting
// a lease, preparing the requests for that server, the exchange (write them all in one write,
// read the answers of each in turn through its own ReplayReader), all under the mirror's
// timeout. Each request's outcome is left in ends() for the mirror to record.
//
// How a pipeline's answers are attributed: each request expects a known number of
// ReadyForQuery messages, so the answers are cut between requests by counting them, in the
// order the requests were written. A request whose answers were read whole keeps the outcome
// they give (success, or query for an ERROR), whatever happens after it. Those not answered
// whole when something goes wrong are never successes: past the timeout they are timeouts; on
// a lost connection or a FATAL they are connection failures; and when a request leaves the
// connection unusable (inside a transaction, as only a failure there does), the connection is
// closed and the requests written after it are connection failures: they were not confirmed.

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/pool.hpp"
#include "backend/prepared.hpp"
#include "config/config.hpp"
#include "mirror/channel.hpp"
#include "mirror/queue.hpp"
#include "mirror/replay_reader.hpp"
#include "mirror/request.hpp"
#include "stats/mirror_stats.hpp"

namespace pgdog::mirror {

struct ReplayEnd {
  // Until the request's answers are read, it is not a success.
  stats::MirrorOutcome outcome = stats::MirrorOutcome::connection;
  std::string reason = "no answer read";  // why it failed
  StatementResults results;               // the mirror's, to compare (compare != off)
  std::uint64_t mirror_us = 0;            // the exchange's time on the mirror server
};

// Whether a request may share a mirror connection with other channels' requests in one
// pipeline: not one whose channel keeps a connection of its own (session mode, a pinned client).
// Requests that use named prepared statements may: they are rewritten for the server that
// replays the pipeline, in order.
bool pipelinable(const Channel& channel, const Request& request);
// Whether `next` may follow `first` on the connection leased for `first`: the same pool (user)
// and the same session parameters, which are set once for the whole pipeline.
bool same_connection(const Request& first, const Request& next);

class Replay;

// A worker's watchdog, shared by its replays one after another: one timer, armed for the
// deadline of the replay it watches and moved only when it fires (deadlines only grow from one
// replay to the next), so that a replay that ends in time costs no timer operation. Owned by a
// shared_ptr: its timer's handler holds a weak one.
class Watchdog : public std::enable_shared_from_this<Watchdog> {
 public:
  // `stop` is the worker coroutine's cancellation signal (bound to it when spawned): emitted to
  // stop the exchange it is waiting on. It outlives the watchdog.
  Watchdog(Executor executor, asio::cancellation_signal& stop);

  // Calls replay.on_watchdog() once `deadline` passes, unless finish() came first.
  void watch(Replay& replay, Clock::time_point deadline);
  // The replay watched asks to be called again at `deadline` (a pause between cancels).
  void again(Clock::time_point deadline);
  void finish() { replay_ = nullptr; }
  // The worker is gone: no more calls, and the timer's wait ends now.
  void close();
  asio::cancellation_signal& stop() { return stop_; }
  Executor executor() { return timer_.get_executor(); }

 private:
  void arm(Clock::time_point at);
  void fired();

  asio::steady_timer timer_;
  asio::cancellation_signal& stop_;
  Replay* replay_ = nullptr;
  Clock::time_point deadline_{};
  bool armed_ = false;  // a wait is pending (at timer_.expiry())
};

class Replay {
 public:
  // `items`: one request, or several that are each pipelinable() and share the first's
  // connection, in the order to write them. They outlive the replay.
  Replay(std::span<const Queue::Item> items, std::shared_ptr<backend::Pool> pool,
         backend::StatementRegistry& registry, config::Millis timeout,
         config::MirrorCompare compare, std::string_view cluster);

  // Replays the requests under `watchdog`, the calling worker's.
  Task<void> run(Watchdog& watchdog);
  // One per item, in order.
  std::vector<ReplayEnd>& ends() { return ends_; }
  // Past the deadline: see Replay::on_watchdog in replay.cpp.
  void on_watchdog();

 private:
  const Request& first() const { return *items_.front().request; }
  Channel& channel() const { return *items_.front().channel; }
  Task<void> exchange();
  // Reads the answers to request `i`; false when nothing more can be read.
  Task<bool> read_answers(std::size_t i);
  // The session's own connection or an idle one of the pool, without waiting; false when
  // lease() must wait for one.
  bool lease_now();
  Task<bool> lease();
  // The parts after the lease work on the leased server.
  bool synced() const;  // at the requests' parameters already
  Task<bool> sync_parameters();
  // Rewrites the requests from `first` on for the leased server, into to_send_, up to and
  // including the first one that prepares a statement there; returns the index after the last.
  std::size_t rewrite(std::size_t first);
  // False when the connection cannot serve the requests after `i`.
  bool conclude(ReplayReader& reader, std::size_t i);
  void time_out();
  void keep_lease();
  // The requests not answered yet are connection failures.
  void fail(backend::ServerConnection* server, std::string why);

  std::span<const Queue::Item> items_;
  std::shared_ptr<backend::Pool> pool_;
  config::Millis timeout_;
  config::MirrorCompare compare_;
  std::string_view cluster_;
  // ReadyForQuery messages the server will send for request `i`.
  std::size_t expected_ready(std::size_t i) const;

  backend::StatementRegistry& registry_;
  // A pinned session replays verbatim: its statements live on its own mirror connection under
  // the client's names, as on the primary. Otherwise requests that use named statements are
  // rewritten for the mirror server the way the primary path does it, one after the other
  // against the server's statement cache (a pipeline's second request finds prepared what the
  // first prepared), and the server's answers are followed by one tracker, in the order they
  // come, so that the cache stays exact.
  const bool track_;
  backend::ResponseTracker tracker_;
  std::string rewritten_;
  std::string joined_;  // a pipeline's frames, one request after the other
  std::string_view to_send_;
  // With track_: ReadyForQuery messages the server will send for each request (a Query the
  // rewriter answered alone, a DEALLOCATE, has none).
  std::vector<std::size_t> ready_;
  backend::Lease lease_;
  std::vector<ReplayEnd> ends_;
  std::size_t answered_ = 0;          // requests whose answers were read whole
  std::size_t answered_in_time_ = 0;  // ... before the timeout
  Clock::time_point written_;         // when the requests went to the server
  bool sent_ = false;                 // the request went to the mirror server
  bool reused_ = false;               // the lease is the one the channel kept
  bool timed_out_ = false;            // mirror_timeout passed first
  Watchdog* watchdog_ = nullptr;      // while run() runs
  std::size_t cancels_ = 0;           // cancel requests sent since the timeout
};

}  // namespace pgdog::mirror
