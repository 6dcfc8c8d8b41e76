#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "backend/server_connection.hpp"
#include "stats/pool_stats.hpp"

namespace pgdog::backend {

// Run on each new connection before it serves anyone; false: it must not (its cluster was
// retired by a cutover made elsewhere), and the pool closes it. A vetting that says false has
// paused the pool first, and resumes or fails it later.
using Vet = std::function<Task<bool>(ServerConnection&)>;

struct PoolSettings {
  ServerAddress address;
  Vet vet;
  int size = 10;
  int min_size = 1;
  config::PoolerMode mode = config::PoolerMode::transaction;
  config::Millis connect_timeout{5'000};
  config::Millis checkout_timeout{5'000};
  config::Millis idle_timeout{60'000};
  config::Millis server_lifetime{86'400'000};
  std::size_t max_message_size = 64 * 1024 * 1024;
  std::size_t prepared_statements_limit = 1'000;  // per server connection
};

class Pool;

// A server checked out of a pool; goes back when released or destroyed.
class Lease {
 public:
  Lease() = default;
  Lease(std::shared_ptr<Pool> pool, ServerPtr server)
      : pool_(std::move(pool)), server_(std::move(server)) {}
  Lease(Lease&&) noexcept = default;
  Lease& operator=(Lease&& other) noexcept {
    release();
    pool_ = std::move(other.pool_);
    server_ = std::move(other.server_);
    return *this;
  }
  ~Lease() { release(); }

  ServerConnection* operator->() const { return server_.get(); }
  ServerConnection& operator*() const { return *server_; }
  ServerConnection* get() const { return server_.get(); }
  explicit operator bool() const { return server_ != nullptr; }
  Pool* pool() const { return pool_.get(); }

  void release();

 private:
  std::shared_ptr<Pool> pool_;
  ServerPtr server_;
};

// A checkout that waits without a coroutine (Pool::wait). `served` runs once, with a server or
// the reason there is none, on the thread that found it and outside the pool's locks, so it
// must post what it does to the waiter's own executor. The pool keeps `waiter` alive until then
// and hands `token` back with it.
struct PoolWaiter {
  using Served = void (*)(std::shared_ptr<void> waiter, std::size_t token, Result<Lease> lease);
  Served served = nullptr;
  std::shared_ptr<void> waiter;
  std::size_t token = 0;
};

struct PoolState {
  int idle = 0;
  int active = 0;
  int connecting = 0;
  int waiting = 0;  // clients waiting for a server
  int size = 0;
  int min_size = 0;
  bool paused = false;
  config::PoolerMode mode = config::PoolerMode::transaction;
  std::uint64_t max_wait_us = 0;  // the longest current wait
};

struct ServerSummary {
  std::uint64_t id = 0;
  bool active = false;
  std::string host;
  std::uint16_t port = 0;
  std::int32_t remote_pid = 0;
  Clock::time_point created_at;
};

// Server connections for one user × database. Thread-safe; waiting clients are served in FIFO
// order (per worker, below). A waiter has no timer of its own: each shard keeps one, due at its
// first waiter's checkout_timeout, and fails the waiters whose time ran out when it fires. A
// connection that fails makes every waiting client fail at once with its cause, so an
// unreachable primary costs each client at most connect_timeout, not checkout_timeout.
//
// With several workers (net::Workers) the pool has one shard per worker: its own idle and busy
// servers (sockets of that worker's loop), waiters, lock and counters, so a checkout and a
// checkin touch only the calling worker's shard. `size` stays the total over the shards: a shard
// opens a connection only when the pool as a whole is under size (one atomic count), and no
// share is fixed in advance. A worker whose clients wait while the pool is full borrows room,
// not servers (a socket belongs to one loop). Below its fair share (size / workers) it gets room
// from a worker above its own: that one closes an idle server, or the next server it would have
// kept idle, and the waiting worker opens its own. At or above its share it gets only servers
// another worker left unused for a second. So under load each worker settles at its share and
// nothing is closed; an idle worker's servers go to a busy one. min_pool_size is split among the
// shards.
class Pool : public std::enable_shared_from_this<Pool> {
 public:
  Pool(Executor io, std::string user, std::string database, PoolSettings settings);
  // One shard per worker loop; checkouts use the calling worker's (net::Workers::current()).
  Pool(std::vector<Executor> workers, std::string user, std::string database,
       PoolSettings settings);
  ~Pool();

  const std::string& user() const { return user_; }
  const std::string& database() const { return database_; }
  PoolSettings settings() const;
  config::PoolerMode mode() const;
  // The calling worker's counters, for the sessions that report into them.
  stats::PoolCounters& counters() { return *shard().counters; }
  // Every worker's counters added up, for whatever shows them.
  std::shared_ptr<const stats::PoolCounters> shared_counters() const;

  // Starts the maintenance loops (min_pool_size, idle_timeout, server_lifetime).
  void start();
  // Applies new settings: connections to a changed address are replaced as they come back.
  void update(PoolSettings settings);
  // Closes idle connections and refuses new checkouts; used ones close when released.
  void shutdown();

  Task<Result<Lease>> checkout();
  // An idle server right now, or nothing (then checkout() waits): no coroutine on the common
  // path.
  std::optional<Lease> try_checkout();
  // checkout() for a caller without a coroutine: `waiter.served` gets the result, maybe before
  // wait() returns.
  void wait(PoolWaiter waiter);
  void checkin(ServerPtr server);

  // Holds checkouts until resume(); running transactions finish normally.
  void pause();
  void resume();
  // Resumes and fails every waiting checkout with `failure` (a vetting that could not be
  // resolved).
  void fail(const Failure& failure);

  // Parameters of a fresh server connection (what a new client should be told at login);
  // connects once if none was made yet.
  Task<Result<protocol::Params>> server_defaults();

  PoolState state() const;
  std::vector<ServerSummary> servers() const;
  // The last connection failure, for the admin console and logs.
  std::optional<Failure> last_error() const;
  // While the server is known to be down (the last connect failed, nothing is connected and the
  // backoff has not run out), when the next attempt may be made; otherwise a default
  // time_point. checkout() fails at once until then.
  Clock::time_point retry_at() const;

 private:
  struct Waiting {
    PoolWaiter who;
    Clock::time_point since;
    Clock::time_point deadline;  // never, for one that came while the pool was paused
  };
  // A waiter to tell, once the locks are let go: its server, or why there is none.
  struct Wake {
    PoolWaiter who;
    ServerPtr server;
    std::optional<Failure> failure;
  };
  using WakeList = std::vector<Wake>;

  // One worker's part of the pool; everything but the atomics is guarded by its mutex.
  struct Shard {
    Shard(Executor ex, std::size_t index, PoolSettings s);
    Executor io;
    asio::strand<Executor> strand;
    const std::size_t index;
    std::shared_ptr<stats::PoolCounters> counters = std::make_shared<stats::PoolCounters>();
    mutable std::mutex mutex;
    PoolSettings settings;        // each shard's copy, so that its hot path takes its lock only
    // Bumped when settings.address changes: a connection knows the epoch it was opened under,
    // so checkin and checkout compare a number, not five strings.
    std::uint64_t address_epoch = 0;
    std::vector<ServerPtr> idle;  // most recently used at the back
    std::vector<ServerConnection*> in_use;  // each knows its index: O(1) without allocation
    std::deque<Waiting> waiters;
    // The earliest deadline among the waiters (never: none) and the timer that fails them when
    // it passes. The timer and armed_at are the strand's.
    Clock::time_point sweep_at = Clock::time_point::max();
    Clock::time_point armed_at = Clock::time_point::max();
    std::shared_ptr<asio::steady_timer> sweep_timer;
    int active = 0;
    int connecting = 0;
    int min_size = 0;  // this shard's part of min_pool_size
    bool paused = false;
    bool closed = false;
    bool starving = false;        // below its share, with clients no connection on its way serves
    bool finding_room = false;    // a find_room() for it is posted
    std::atomic<int> waiting{0};  // waiters.size(), read without the lock
  };

  Shard& shard() const;
  void wait(Shard& s, PoolWaiter waiter);
  // A waiter that stopped waiting (checkout() cancelled) leaves the queue, told so.
  void abandon(Shard& s, const void* waiter);
  int total_locked(const Shard& s) const;
  // size / workers, at least 1: what a worker may keep however busy the others are.
  int fair_share(const Shard& s) const;
  bool usable_locked(const Shard& s, ServerConnection& server, Clock::time_point now) const;
  // Opens as many connections as the shard's waiters need and the pool's size allows; asks the
  // other shards for room when that is not enough.
  void grow_locked(Shard& s);
  bool reserve(int size);
  // Connections closed or never made: their room goes to whichever shard waits.
  void release(int n);
  void find_room(std::size_t for_shard);
  void spawn_connect_locked(Shard& s);
  // An idle server made ready for a client, or nothing; unusable ones found go to `dead`.
  ServerPtr take_idle_locked(Shard& s, Clock::time_point now, std::vector<ServerPtr>& dead);
  void lend_locked(Shard& s, ServerConnection& server, Clock::time_point now);
  // To the first waiter, if any (returned: whom to tell), else idle or closed.
  std::optional<Wake> hand_over_locked(Shard& s, ServerPtr server, std::vector<ServerPtr>& close);
  void push_waiter_locked(Shard& s, Waiting w);
  Waiting pop_waiter_locked(Shard& s);
  // One waiter left the queue (served, timed out, failed or cancelled): its wait is counted.
  void waiter_left_locked(Shard& s, Clock::time_point since);
  void set_starving_locked(Shard& s, bool starving);
  void fail_waiters_locked(Shard& s, const Failure& f, bool all, WakeList& wake);
  // On the shard's strand: the timer set for sweep_at, and what it does when that comes.
  void arm_sweep(Shard& s);
  void sweep(Shard& s);
  Failure timeout_failure_locked(const Shard& s) const;
  void wake(Wake w);
  void wake(WakeList& waiters);
  // The server is known down: the last connect failed, nothing is open, and the backoff has not
  // run out. Needs common_.
  bool backing_off_locked(Clock::time_point now) const;
  // The failure a checkout gets at once while backing off, or nothing. Needs common_.
  std::optional<Failure> down_failure_locked(Clock::time_point now) const;
  Task<void> connect_one(Shard& s);
  Task<void> maintain(Shard& s);

  const std::string user_;
  const std::string database_;
  std::vector<std::unique_ptr<Shard>> shards_;
  // Connections open, opening or idle over every shard: never above settings.size.
  std::atomic<int> open_{0};
  std::atomic<int> waiting_{0};   // waiters over every shard
  std::atomic<int> starving_{0};  // shards whose waiters need room the pool has not got

  mutable std::mutex common_;  // what follows
  bool started_ = false;
  std::optional<protocol::Params> defaults_;
  std::optional<Failure> last_error_;
  // After a failed connect, checkouts fail at once with its cause until down_until_ instead of
  // each trying again: a dead server costs one attempt per backoff, not one per request.
  Clock::time_point down_until_{};
  std::chrono::milliseconds backoff_{0};
};

}  // namespace pgdog::backend
