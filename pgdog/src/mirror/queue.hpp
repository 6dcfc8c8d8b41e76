#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "net/asio.hpp"
#include "backend/pool.hpp"
#include "backend/prepared.hpp"
#include "protocol/params.hpp"

namespace pgdog::mirror {

using Clock = std::chrono::steady_clock;

// What one statement of a transaction returned, to compare the mirror with the primary.
struct StatementResult {
  char type = 'C';              // 'C' CommandComplete, 'I' empty query, 's' suspended, 'E' error
  std::string tag;              // the CommandComplete tag, or the SQLSTATE of an error
  std::uint64_t rows_hash = 0;  // compare = results: hash of the rows it returned
  bool operator==(const StatementResult&) const = default;
};

// Hashes rows as they stream past, in pieces (FNV-1a: same bytes, same hash, in any pieces).
class RowHash {
 public:
  void update(std::string_view bytes) {
    for (unsigned char c : bytes) value_ = (value_ ^ c) * 1099511628211ULL;
  }
  std::uint64_t value() const { return value_; }
  void reset() { value_ = kOffset; }

 private:
  static constexpr std::uint64_t kOffset = 1469598103934665603ULL;
  std::uint64_t value_ = kOffset;
};

// One client transaction as the client sent it, for replay on the mirror.
struct Request {
  std::string frames;                               // the client's frames, in order
  std::shared_ptr<const protocol::Params> params;   // its session parameters at the time
  // Its named prepared statements at the time (transaction mode): a Bind in this transaction
  // may use a statement prepared in an earlier one.
  std::shared_ptr<const backend::ClientStatements> statements;
  std::string user;
  std::size_t syncs = 0;           // Query / Sync / FunctionCall frames: ReadyForQuery expected
  std::uint32_t primary_errors = 0;  // ErrorResponses the primary sent (recovered savepoints)
  // The primary's result for each statement, in order (empty with compare = off).
  std::vector<StatementResult> results;
  std::uint64_t primary_us = 0;  // time the primary spent on it, without the client's think time
  Clock::time_point created = Clock::now();
};
using RequestPtr = std::shared_ptr<const Request>;

// One client's requests to one mirror. The queue runs at most one of them at a time, which is
// what keeps each client's order on the mirror.
//
// A session-mode client's channel is pinned: its requests replay on one mirror server
// connection, kept between them, so session state (SET, PREPARE, temporary tables) carries
// over as it does on the primary. Only the worker running the channel's request touches the
// lease; when the client has left and its last request is done, the connection is reset with
// DISCARD ALL and goes back to the pool.
struct Channel {
  explicit Channel(bool pin = false) : pinned(pin) {}
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  ~Channel();

  std::deque<RequestPtr> pending;
  bool in_flight = false;
  bool listed = false;  // in the queue's ready list
  const bool pinned;
  backend::Lease lease;
  std::function<void()> on_close;  // run by the destructor
  // Set by a worker whose checkout failed while the mirror pool backs off (steady clock ticks):
  // until then the session's transactions fail as `connection` at submit, without being queued
  // and replayed only to fail the same way.
  std::atomic<Clock::rep> down_until{0};
};

// The bounded queue of one mirror cluster, shared by every client session that mirrors to it
// and drained by its workers. try_push never waits: a full queue is a drop.
class Queue {
 public:
  explicit Queue(std::size_t capacity,
                 std::size_t byte_capacity = std::numeric_limits<std::size_t>::max())
      : capacity_(capacity), byte_capacity_(byte_capacity) {}

  // False when the queue already holds `capacity` requests (queued or in flight), or the
  // request's frames would take it past `byte_capacity` bytes, or it is closed.
  bool try_push(const std::shared_ptr<Channel>& channel, RequestPtr request);

  struct Item {
    std::shared_ptr<Channel> channel;
    RequestPtr request;
  };
  // The next request whose channel has nothing in flight; empty when the queue is closed.
  Task<std::optional<Item>> pop();
  // The worker finished `item`: its channel may run its next request. After close(), the
  // channel's remaining requests are abandoned instead; returns how many.
  std::size_t done(const Item& item);

  void set_capacity(std::size_t capacity,
                    std::size_t byte_capacity = std::numeric_limits<std::size_t>::max());
  // Wakes idle workers with nothing; returns the requests still queued (not in flight), which
  // the caller accounts for.
  std::size_t close();
  bool closed() const;

  std::size_t size() const;
  std::size_t bytes() const;  // the frames of the requests queued or in flight
  // Seconds the oldest queued or in-flight request has waited since it was handed over.
  double oldest_age() const;

 private:
  struct Waiter {
    explicit Waiter(Executor ex) : timer(std::move(ex), Clock::time_point::max()) {}
    asio::steady_timer timer;
    std::optional<Item> item;
    bool done = false;
  };
  std::optional<Item> take_locked();

  mutable std::mutex mutex_;
  void forget_locked(const RequestPtr& r);

  std::size_t capacity_;
  std::size_t byte_capacity_;
  std::size_t size_ = 0;
  std::size_t bytes_ = 0;
  bool closed_ = false;
  std::deque<std::shared_ptr<Channel>> ready_;
  std::deque<std::shared_ptr<Waiter>> waiters_;
  std::multiset<Clock::time_point> ages_;
};

}  // namespace pgdog::mirror
