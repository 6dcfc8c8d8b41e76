#include "backend/pool.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace pgdog::backend {

namespace {

constexpr auto kIdleCheckAfter = std::chrono::milliseconds(100);
// Backoff between connect attempts to a server that refused: short, so that a server coming
// back is used again within a second or two.
constexpr std::chrono::milliseconds kMinBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{2'000};

std::uint64_t micros_since(Clock::time_point t) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count());
}


}  // namespace

void Lease::release() {
  if (server_ && pool_) pool_->checkin(std::move(server_));
  server_.reset();
  pool_.reset();
}

Pool::Pool(Executor io, std::string user, std::string database, PoolSettings settings)
    : io_(io),
      strand_(asio::make_strand(io)),
      user_(std::move(user)),
      database_(std::move(database)),
      settings_(std::move(settings)) {}

Pool::~Pool() = default;

PoolSettings Pool::settings() const {
  std::lock_guard g(mutex_);
  return settings_;
}

config::PoolerMode Pool::mode() const {
  std::lock_guard g(mutex_);
  return settings_.mode;
}

void Pool::start() {
  {
    std::lock_guard g(mutex_);
    if (started_) return;
    started_ = true;
  }
  asio::co_spawn(strand_, maintain(), log_errors("pool maintenance"));
}

void Pool::update(PoolSettings settings) {
  std::vector<ServerPtr> close;
  std::vector<std::shared_ptr<Waiter>> wake_list;
  {
    std::lock_guard g(mutex_);
    const bool moved = !(settings.address == settings_.address);
    settings_ = std::move(settings);
    if (moved) {
      // Idle connections point at the old server; busy ones are closed at checkin.
      close = std::move(idle_);
      idle_.clear();
      defaults_.reset();
    }
    while (static_cast<int>(idle_.size()) + active_ + connecting_ > settings_.size &&
           !idle_.empty()) {
      close.push_back(std::move(idle_.front()));
      idle_.erase(idle_.begin());
    }
    grow_locked();
  }
}

void Pool::shutdown() {
  std::vector<ServerPtr> close;
  std::vector<std::shared_ptr<Waiter>> wake_list;
  {
    std::lock_guard g(mutex_);
    closed_ = true;
    close = std::move(idle_);
    idle_.clear();
    fail_waiters_locked(Failure::from(Error::pool_shutdown, "pool is shutting down", "57P01"),
                        true, wake_list);
  }
  wake(wake_list);
}

bool Pool::usable_locked(ServerConnection& s, Clock::time_point now) const {
  if (s.broken() || s.status() != 'I') return false;
  if (!(s.address() == settings_.address)) return false;
  if (now - s.created_at() > settings_.server_lifetime) return false;
  return true;
}

std::optional<Lease> Pool::try_checkout() {
  std::vector<ServerPtr> dead;
  std::lock_guard g(mutex_);
  if (closed_) return std::nullopt;
  const auto now = Clock::now();
  while (!paused_ && !idle_.empty()) {
    ServerPtr s = std::move(idle_.back());
    idle_.pop_back();
    // A server terminated while idle has already sent FATAL and EOF. Peeking costs a syscall,
    // so only connections that sat idle long enough to have died are checked.
    if (!usable_locked(*s, now) || (now - s->last_used() > kIdleCheckAfter && !s->alive())) {
      dead.push_back(std::move(s));
      continue;
    }
    ++active_;
    mark_in_use_locked(*s);
    s->touch();
    return Lease(shared_from_this(), std::move(s));
  }
  return std::nullopt;
}

Task<Result<Lease>> Pool::checkout() {
  auto self = shared_from_this();
  {
    std::lock_guard g(mutex_);
    if (closed_) co_return Failure::from(Error::pool_shutdown, "pool is shutting down", "57P01");
  }
  if (auto lease = try_checkout()) co_return std::move(*lease);

  {
    std::lock_guard g(mutex_);
    const auto now = Clock::now();
    if (backing_off_locked(now)) {
      Failure f = *last_error_;
      f.message += " (pgdog retries the server in " +
                   std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      down_until_ - now)
                                      .count()) +
                   " ms)";
      co_return f;
    }
  }

  auto ex = co_await asio::this_coro::executor;
  auto waiter = std::make_shared<Waiter>(ex);
  {
    std::lock_guard g(mutex_);
    if (paused_) {
      waiter->timer.expires_at(Clock::time_point::max());
    } else {
      waiter->timer.expires_after(settings_.checkout_timeout);
    }
    waiters_.push_back(waiter);
    grow_locked();
  }
  co_await waiter->timer.async_wait(use_nothrow);

  std::lock_guard g(mutex_);
  counters_->wait_time_us.fetch_add(micros_since(waiter->since), std::memory_order_relaxed);
  if (waiter->done) {
    if (waiter->server) co_return Lease(self, std::move(waiter->server));
    co_return *waiter->failure;
  }
  waiters_.erase(std::remove(waiters_.begin(), waiters_.end(), waiter), waiters_.end());
  std::string message = "no server connection available for " + user_ + "@" + database_ +
                        " within checkout_timeout (" +
                        std::to_string(settings_.checkout_timeout.count()) + " ms)";
  if (last_error_) message += "; last connection error: " + last_error_->to_string();
  co_return Failure::from(Error::checkout_timeout, message, "08006");
}

void Pool::checkin(ServerPtr server) {
  std::vector<std::shared_ptr<Waiter>> wake_list;
  ServerPtr close;
  {
    std::lock_guard g(mutex_);
    --active_;
    unmark_in_use_locked(*server);
    server->touch();
    if (closed_ || !usable_locked(*server, Clock::now())) {
      close = std::move(server);
      grow_locked();
    } else {
      hand_over_locked(std::move(server), wake_list);
    }
  }
  wake(wake_list);
}

void Pool::hand_over_locked(ServerPtr server, std::vector<std::shared_ptr<Waiter>>& wake_list) {
  if (!paused_ && !waiters_.empty()) {
    auto w = std::move(waiters_.front());
    waiters_.pop_front();
    ++active_;
    mark_in_use_locked(*server);
    server->touch();
    w->server = std::move(server);
    w->done = true;
    wake_list.push_back(std::move(w));
    return;
  }
  idle_.push_back(std::move(server));
}

void Pool::mark_in_use_locked(ServerConnection& s) {
  s.pool_slot = in_use_.size();
  in_use_.push_back(&s);
}

void Pool::unmark_in_use_locked(ServerConnection& s) {
  if (s.pool_slot >= in_use_.size() || in_use_[s.pool_slot] != &s) return;
  in_use_[s.pool_slot] = in_use_.back();
  in_use_[s.pool_slot]->pool_slot = s.pool_slot;
  in_use_.pop_back();
  s.pool_slot = static_cast<std::size_t>(-1);
}

void Pool::fail_waiters_locked(const Failure& f, bool all,
                               std::vector<std::shared_ptr<Waiter>>& wake_list) {
  while (!waiters_.empty()) {
    auto w = std::move(waiters_.front());
    waiters_.pop_front();
    w->failure = f;
    w->done = true;
    wake_list.push_back(std::move(w));
    if (!all) break;
  }
}

void Pool::wake(std::vector<std::shared_ptr<Waiter>>& waiters) {
  // Timers belong to the waiters' executors: cancel them there, never from this thread.
  for (auto& w : waiters) {
    auto ex = w->timer.get_executor();
    asio::post(ex, [w = std::move(w)] { w->timer.cancel(); });
  }
}

void Pool::grow_locked() {
  if (closed_ || paused_) return;
  const int total = static_cast<int>(idle_.size()) + active_ + connecting_;
  int want = static_cast<int>(waiters_.size()) - connecting_;
  want = std::min(want, settings_.size - total);
  for (int i = 0; i < want; ++i) spawn_connect_locked();
}

void Pool::spawn_connect_locked() {
  ++connecting_;
  // Posted, never run inline: the caller holds the mutex that connect_one() takes.
  asio::post(strand_, [self = shared_from_this()] {
    asio::co_spawn(self->strand_, self->connect_one(), log_errors("server connect"));
  });
}

Task<void> Pool::connect_one() {
  auto self = shared_from_this();
  PoolSettings s = settings();
  auto result =
      co_await ServerConnection::connect(io_, s.address, s.connect_timeout, s.max_message_size);
  if (result && s.vet && !co_await s.vet(**result)) {
    std::lock_guard g(mutex_);
    --connecting_;  // the vetting paused the pool; its waiters wait for resume() or fail()
    co_return;
  }
  std::vector<std::shared_ptr<Waiter>> wake_list;
  ServerPtr close;
  {
    std::lock_guard g(mutex_);
    --connecting_;
    if (!result) {
      stats::PoolCounters::add(counters_->server_connect_errors);
      last_error_ = result.error();
      backoff_ = std::clamp(backoff_ * 2, kMinBackoff, kMaxBackoff);
      down_until_ = Clock::now() + backoff_;
      // With nothing else able to come back, everyone waiting would hit the same wall.
      const bool none_alive = active_ == 0 && idle_.empty() && connecting_ == 0;
      fail_waiters_locked(result.error(), none_alive, wake_list);
    } else {
      stats::PoolCounters::add(counters_->server_connects);
      last_error_.reset();
      backoff_ = std::chrono::milliseconds{0};
      down_until_ = {};
      auto& server = *result;
      server->prepared().set_limit(settings_.prepared_statements_limit);
      if (!defaults_) defaults_ = server->params();
      if (closed_ || !(server->address() == settings_.address)) {
        close = std::move(server);
      } else {
        hand_over_locked(std::move(server), wake_list);
      }
    }
    grow_locked();
  }
  wake(wake_list);
  if (!result) {
    spdlog::warn("pool {}@{}: {}", user_, database_, result.error().to_string());
  }
}

Task<Result<protocol::Params>> Pool::server_defaults() {
  {
    std::lock_guard g(mutex_);
    if (defaults_) co_return *defaults_;
  }
  auto lease = co_await checkout();
  if (!lease) co_return lease.error();
  std::lock_guard g(mutex_);
  if (!defaults_) defaults_ = (*lease)->params();
  co_return *defaults_;
}

void Pool::pause() {
  std::lock_guard g(mutex_);
  paused_ = true;
}

void Pool::resume() {
  std::vector<std::shared_ptr<Waiter>> wake_list;
  {
    std::lock_guard g(mutex_);
    paused_ = false;
    while (!idle_.empty() && !waiters_.empty()) {
      auto s = std::move(idle_.back());
      idle_.pop_back();
      hand_over_locked(std::move(s), wake_list);
    }
    grow_locked();
  }
  wake(wake_list);
}

void Pool::fail(const Failure& failure) {
  std::vector<std::shared_ptr<Waiter>> wake_list;
  {
    std::lock_guard g(mutex_);
    paused_ = false;
    fail_waiters_locked(failure, true, wake_list);
  }
  wake(wake_list);
}

PoolState Pool::state() const {
  std::lock_guard g(mutex_);
  PoolState st;
  st.idle = static_cast<int>(idle_.size());
  st.active = active_;
  st.connecting = connecting_;
  st.waiting = static_cast<int>(waiters_.size());
  st.size = settings_.size;
  st.min_size = settings_.min_size;
  st.paused = paused_;
  st.mode = settings_.mode;
  if (!waiters_.empty()) st.max_wait_us = micros_since(waiters_.front()->since);
  return st;
}

std::vector<ServerSummary> Pool::servers() const {
  std::lock_guard g(mutex_);
  std::vector<ServerSummary> out;
  // Only fields fixed at connect time are read from servers in use by a session.
  auto summary = [](const ServerConnection& s, bool active) {
    return ServerSummary{s.id(), active, s.address().host, s.address().port,
                         s.key().process_id, s.created_at()};
  };
  for (const auto* s : in_use_) out.push_back(summary(*s, true));
  for (const auto& s : idle_) out.push_back(summary(*s, false));
  return out;
}

std::optional<Failure> Pool::last_error() const {
  std::lock_guard g(mutex_);
  return last_error_;
}

bool Pool::backing_off_locked(Clock::time_point now) const {
  return last_error_ && active_ == 0 && connecting_ == 0 && idle_.empty() && now < down_until_;
}

Clock::time_point Pool::retry_at() const {
  std::lock_guard g(mutex_);
  return backing_off_locked(Clock::now()) ? down_until_ : Clock::time_point{};
}

Task<void> Pool::maintain() {
  auto self = shared_from_this();
  asio::steady_timer timer(strand_);
  while (true) {
    timer.expires_after(std::chrono::seconds(1));
    co_await timer.async_wait(use_nothrow);
    std::vector<ServerPtr> close;
    {
      std::lock_guard g(mutex_);
      if (closed_) co_return;
      const auto now = Clock::now();
      // Oldest idle connections are at the front.
      int total = static_cast<int>(idle_.size()) + active_ + connecting_;
      for (auto it = idle_.begin(); it != idle_.end();) {
        const bool expired = now - (*it)->created_at() > settings_.server_lifetime;
        const bool idle_too_long =
            now - (*it)->last_used() > settings_.idle_timeout && total > settings_.min_size;
        if (expired || idle_too_long || !(*it)->alive()) {
          close.push_back(std::move(*it));
          it = idle_.erase(it);
          --total;
        } else {
          ++it;
        }
      }
      const int missing = std::min(settings_.min_size, settings_.size) - total;
      // Keep min_pool_size warm, but do not hammer a server that is down.
      if (!paused_ && (!last_error_ || (connecting_ == 0 && Clock::now() >= down_until_))) {
        for (int i = 0; i < missing; ++i) spawn_connect_locked();
      }
    }
  }
}

}  // namespace pgdog::backend
