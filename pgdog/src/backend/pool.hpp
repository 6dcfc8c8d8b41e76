#pragma once

#include <deque>
#include <functional>
#include <unordered_set>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

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
// order. A connection that fails makes every waiting client fail at once with its cause, so an
// unreachable primary costs each client at most connect_timeout, not checkout_timeout.
class Pool : public std::enable_shared_from_this<Pool> {
 public:
  Pool(Executor io, std::string user, std::string database, PoolSettings settings);
  ~Pool();

  const std::string& user() const { return user_; }
  const std::string& database() const { return database_; }
  PoolSettings settings() const;
  config::PoolerMode mode() const;
  stats::PoolCounters& counters() { return *counters_; }
  std::shared_ptr<const stats::PoolCounters> shared_counters() const { return counters_; }

  // Starts the maintenance loop (min_pool_size, idle_timeout, server_lifetime).
  void start();
  // Applies new settings: connections to a changed address are replaced as they come back.
  void update(PoolSettings settings);
  // Closes idle connections and refuses new checkouts; used ones close when released.
  void shutdown();

  Task<Result<Lease>> checkout();
  // An idle server right now, or nothing (then checkout() waits): no coroutine on the common
  // path.
  std::optional<Lease> try_checkout();
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
  struct Waiter {
    explicit Waiter(Executor ex) : timer(std::move(ex)) {}
    asio::steady_timer timer;
    ServerPtr server;
    std::optional<Failure> failure;
    bool done = false;
    Clock::time_point since = Clock::now();
  };

  bool usable_locked(ServerConnection& s, Clock::time_point now) const;
  // The server is known down: the last connect failed, nothing is connected or connecting, and
  // the backoff has not run out.
  bool backing_off_locked(Clock::time_point now) const;
  void grow_locked();
  void mark_in_use_locked(ServerConnection& s);
  void unmark_in_use_locked(ServerConnection& s);
  void spawn_connect_locked();
  void hand_over_locked(ServerPtr server, std::vector<std::shared_ptr<Waiter>>& wake);
  void fail_waiters_locked(const Failure& f, bool all, std::vector<std::shared_ptr<Waiter>>& wake);
  static void wake(std::vector<std::shared_ptr<Waiter>>& waiters);
  Task<void> connect_one();
  Task<void> maintain();

  Executor io_;
  asio::strand<Executor> strand_;
  const std::string user_;
  const std::string database_;
  std::shared_ptr<stats::PoolCounters> counters_ = std::make_shared<stats::PoolCounters>();

  mutable std::mutex mutex_;
  PoolSettings settings_;
  std::vector<ServerPtr> idle_;   // most recently used at the back
  std::vector<ServerConnection*> in_use_;  // each knows its index: O(1) without allocation
  std::deque<std::shared_ptr<Waiter>> waiters_;
  int active_ = 0;
  int connecting_ = 0;
  bool paused_ = false;
  bool closed_ = false;
  bool started_ = false;
  std::optional<protocol::Params> defaults_;
  std::optional<Failure> last_error_;
  // After a failed connect, checkouts fail at once with its cause until down_until_ instead of
  // each trying again: a dead server costs one attempt per backoff, not one per request.
  Clock::time_point down_until_{};
  std::chrono::milliseconds backoff_{0};
};

}  // namespace pgdog::backend
