#include "backend/pool.hpp"

#include <algorithm>
#include <iterator>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "net/workers.hpp"

namespace pgdog::backend {

namespace {

constexpr auto kIdleCheckAfter = std::chrono::milliseconds(100);
// Backoff between connect attempts to a server that refused: short, so that a server coming
// back is used again within a second or two.
constexpr std::chrono::milliseconds kMinBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{2'000};
// An idle server another worker may have closed for its waiting clients, beyond its share.
constexpr auto kLendAfter = std::chrono::milliseconds(1'000);

std::uint64_t micros_since(Clock::time_point t) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count());
}

// Shard i's part of min_pool_size: the remainder goes to the first ones.
int min_share(int min_size, std::size_t shards, std::size_t i) {
  const int n = static_cast<int>(shards);
  return min_size / n + (static_cast<int>(i) < min_size % n ? 1 : 0);
}

}  // namespace

void Lease::release() {
  if (server_ && pool_) pool_->checkin(std::move(server_));
  server_.reset();
  pool_.reset();
}

Pool::Shard::Shard(Executor ex, std::size_t i, PoolSettings s)
    : io(ex),
      strand(asio::make_strand(ex)),
      index(i),
      settings(std::move(s)),
      sweep_timer(std::make_shared<asio::steady_timer>(strand)) {}

Pool::Pool(Executor io, std::string user, std::string database, PoolSettings settings)
    : Pool(std::vector<Executor>{std::move(io)}, std::move(user), std::move(database),
           std::move(settings)) {}

Pool::Pool(std::vector<Executor> workers, std::string user, std::string database,
           PoolSettings settings)
    : user_(std::move(user)), database_(std::move(database)) {
  if (workers.empty()) throw std::invalid_argument("a pool needs at least one worker");
  for (std::size_t i = 0; i < workers.size(); ++i) {
    shards_.push_back(std::make_unique<Shard>(workers[i], i, settings));
    shards_.back()->min_size = min_share(settings.min_size, workers.size(), i);
  }
}

Pool::~Pool() {
  // No one else holds the pool: only the reactor may still touch the timers.
  for (auto& s : shards_)
    s->sweep_timer->cancel();
}

Pool::Shard& Pool::shard() const {
  const auto i = static_cast<std::size_t>(net::Workers::current());
  return *shards_[i < shards_.size() ? i : 0];
}

PoolSettings Pool::settings() const {
  std::lock_guard g(shards_[0]->mutex);
  return shards_[0]->settings;
}

config::PoolerMode Pool::mode() const {
  Shard& s = shard();
  std::lock_guard g(s.mutex);
  return s.settings.mode;
}

std::shared_ptr<const stats::PoolCounters> Pool::shared_counters() const {
  if (shards_.size() == 1) return shards_[0]->counters;
  auto sum = std::make_shared<stats::PoolCounters>();
  for (const auto& s : shards_)
    sum->merge(*s->counters);
  return sum;
}

void Pool::start() {
  {
    std::lock_guard g(common_);
    if (started_) return;
    started_ = true;
  }
  for (auto& s : shards_)
    asio::co_spawn(s->strand, maintain(*s), log_errors("pool maintenance"));
}

void Pool::update(PoolSettings settings) {
  std::vector<ServerPtr> close;
  bool moved = false;
  for (auto& s : shards_) {
    std::lock_guard g(s->mutex);
    moved = !(settings.address == s->settings.address);
    if (moved) ++s->address_epoch;
    s->settings = settings;
    s->min_size = min_share(settings.min_size, shards_.size(), s->index);
    // Idle connections to the old server go now; busy ones are closed at checkin.
    if (moved) std::move(s->idle.begin(), s->idle.end(), std::back_inserter(close));
    if (moved) s->idle.clear();
  }
  if (moved) {
    std::lock_guard g(common_);
    defaults_.reset();
  }
  // A smaller size: idle connections over it go, oldest first.
  int over = open_.load() - static_cast<int>(close.size()) - settings.size;
  for (auto& s : shards_) {
    std::lock_guard g(s->mutex);
    while (over > 0 && !s->idle.empty()) {
      close.push_back(std::move(s->idle.front()));
      s->idle.erase(s->idle.begin());
      --over;
    }
  }
  release(static_cast<int>(close.size()));
  for (auto& s : shards_) {
    std::lock_guard g(s->mutex);
    grow_locked(*s);
  }
}

void Pool::shutdown() {
  std::vector<ServerPtr> close;
  WakeList wake_list;
  for (auto& s : shards_) {
    std::lock_guard g(s->mutex);
    s->closed = true;
    std::move(s->idle.begin(), s->idle.end(), std::back_inserter(close));
    s->idle.clear();
    fail_waiters_locked(*s, Failure::from(Error::pool_shutdown, "pool is shutting down", "57P01"),
                        true, wake_list);
  }
  open_.fetch_sub(static_cast<int>(close.size()));
  wake(wake_list);
}

int Pool::total_locked(const Shard& s) const {
  return static_cast<int>(s.idle.size()) + s.active + s.connecting;
}

bool Pool::usable_locked(const Shard& s, ServerConnection& server, Clock::time_point now) const {
  if (server.broken() || server.status() != 'I') return false;
  if (server.address_epoch != s.address_epoch) return false;
  if (now - server.created_at() > s.settings.server_lifetime) return false;
  return true;
}

ServerPtr Pool::take_idle_locked(Shard& s, Clock::time_point now, std::vector<ServerPtr>& dead) {
  while (!s.paused && !s.idle.empty()) {
    ServerPtr server = std::move(s.idle.back());
    s.idle.pop_back();
    // A server terminated while idle has already sent FATAL and EOF. Peeking costs a syscall,
    // so only connections that sat idle long enough to have died are checked.
    if (!usable_locked(s, *server, now) ||
        (now - server->last_used() > kIdleCheckAfter && !server->alive())) {
      dead.push_back(std::move(server));
      continue;
    }
    lend_locked(s, *server, now);
    return server;
  }
  return nullptr;
}

void Pool::lend_locked(Shard& s, ServerConnection& server, Clock::time_point now) {
  ++s.active;
  s.in_use.push_back(&server);
  server.pool_slot = s.in_use.size() - 1;
  server.touch(now);
}

std::optional<Lease> Pool::try_checkout() {
  Shard& s = shard();
  std::vector<ServerPtr> dead;
  ServerPtr server;
  {
    std::lock_guard g(s.mutex);
    if (s.closed) return std::nullopt;
    server = take_idle_locked(s, Clock::now(), dead);
  }
  release(static_cast<int>(dead.size()));
  if (!server) return std::nullopt;
  return Lease(shared_from_this(), std::move(server));
}

Task<Result<Lease>> Pool::checkout() {
  auto self = shared_from_this();  // alive while this waits
  if (auto lease = try_checkout()) co_return std::move(*lease);
  Shard& s = shard();
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(Result<Lease>)>(
      [this, &s](auto resume) {
        using Handler = decltype(resume);
        auto box = std::make_shared<Handler>(std::move(resume));
        // Cancelled through the caller's slot (a mirror replay's watchdog, or `timer ||
        // checkout()`): it leaves the queue at once, as a waiter with a timer of its own did.
        if (auto slot = asio::get_associated_cancellation_slot(*box); slot.is_connected()) {
          slot.assign([this, &s, key = box.get()](asio::cancellation_type) { abandon(s, key); });
        }
        wait(s, {.served =
                     [](std::shared_ptr<void> waiter, std::size_t, Result<Lease> lease) {
                       auto& handler = *std::static_pointer_cast<Handler>(waiter);
                       const auto ex = asio::get_associated_executor(handler);
                       asio::post(
                           ex, [handler = std::move(handler), lease = std::move(lease)]() mutable {
                             asio::get_associated_cancellation_slot(handler).clear();
                             std::move(handler)(std::move(lease));
                           });
                     },
                 .waiter = std::move(box)});
      },
      asio::use_awaitable);
}

void Pool::abandon(Shard& s, const void* waiter) {
  std::optional<Waiting> gone;
  {
    std::lock_guard g(s.mutex);
    const auto it = std::find_if(s.waiters.begin(), s.waiters.end(),
                                 [&](const Waiting& w) { return w.who.waiter.get() == waiter; });
    if (it == s.waiters.end()) return;  // served already: the server is on its way
    gone = std::move(*it);
    s.waiters.erase(it);
    waiter_left_locked(s, gone->since);
  }
  wake(Wake{std::move(gone->who), nullptr,
            Failure::from(Error::checkout_cancelled,
                          "waiting for a server for " + user_ + "@" + database_ + " was cancelled",
                          "57014")});
}

void Pool::wait(PoolWaiter who) {
  wait(shard(), std::move(who));
}

void Pool::wait(Shard& s, PoolWaiter who) {
  std::optional<Wake> at_once;
  std::vector<ServerPtr> dead;
  {
    std::lock_guard g(s.mutex);
    const auto t = Clock::now();
    if (s.closed) {
      at_once = Wake{std::move(who), nullptr,
                     Failure::from(Error::pool_shutdown, "pool is shutting down", "57P01")};
    } else if (auto server = take_idle_locked(s, t, dead)) {
      at_once = Wake{std::move(who), std::move(server), std::nullopt};
    } else {
      std::optional<Failure> down;
      {
        std::lock_guard c(common_);
        down = down_failure_locked(t);
      }
      if (down) {
        at_once = Wake{std::move(who), nullptr, std::move(down)};
      } else {
        const auto deadline = s.paused ? Clock::time_point::max() : t + s.settings.checkout_timeout;
        push_waiter_locked(s, Waiting{std::move(who), t, deadline});
        grow_locked(s);
      }
    }
  }
  release(static_cast<int>(dead.size()));
  if (at_once) wake(std::move(*at_once));
}

void Pool::checkin(ServerPtr server) {
  Shard& s = *shards_[server->pool_shard < shards_.size() ? server->pool_shard : 0];
  std::optional<Wake> woken;
  std::vector<ServerPtr> close;
  {
    std::lock_guard g(s.mutex);
    --s.active;
    if (server->pool_slot < s.in_use.size() && s.in_use[server->pool_slot] == server.get()) {
      s.in_use[server->pool_slot] = s.in_use.back();
      s.in_use[server->pool_slot]->pool_slot = server->pool_slot;
      s.in_use.pop_back();
    }
    server->pool_slot = static_cast<std::size_t>(-1);
    const auto now = Clock::now();
    server->touch(now);
    if (s.closed || !usable_locked(s, *server, now)) {
      close.push_back(std::move(server));
    } else {
      woken = hand_over_locked(s, std::move(server), close);
    }
  }
  release(static_cast<int>(close.size()));
  if (woken) wake(std::move(*woken));
}

std::optional<Pool::Wake> Pool::hand_over_locked(Shard& s, ServerPtr server,
                                                 std::vector<ServerPtr>& close) {
  if (!s.paused && !s.waiters.empty()) {
    auto w = pop_waiter_locked(s);
    lend_locked(s, *server, Clock::now());
    return Wake{std::move(w.who), std::move(server), std::nullopt};
  }
  // Another worker below its share has clients waiting while nobody here does, and this worker
  // holds more than its share: this server makes room for them instead of sitting idle here.
  if (shards_.size() > 1 && !s.paused && starving_.load() > 0 &&
      total_locked(s) + 1 > fair_share(s)) {
    close.push_back(std::move(server));
    return std::nullopt;
  }
  s.idle.push_back(std::move(server));
  return std::nullopt;
}

void Pool::push_waiter_locked(Shard& s, Waiting w) {
  const bool sooner = w.deadline < s.sweep_at;
  if (sooner) s.sweep_at = w.deadline;
  s.waiters.push_back(std::move(w));
  s.waiting.fetch_add(1);
  waiting_.fetch_add(1);
  // Under load the sweep is already due sooner: a waiter costs no timer of its own.
  if (sooner) asio::post(s.strand, [self = shared_from_this(), &s] { self->arm_sweep(s); });
}

Pool::Waiting Pool::pop_waiter_locked(Shard& s) {
  auto w = std::move(s.waiters.front());
  s.waiters.pop_front();
  waiter_left_locked(s, w.since);
  return w;
}

void Pool::waiter_left_locked(Shard& s, Clock::time_point since) {
  s.counters->wait_time_us.fetch_add(micros_since(since), std::memory_order_relaxed);
  s.waiting.fetch_sub(1);
  waiting_.fetch_sub(1);
  if (static_cast<int>(s.waiters.size()) <= s.connecting) set_starving_locked(s, false);
}

void Pool::set_starving_locked(Shard& s, bool starving) {
  if (s.starving == starving) return;
  s.starving = starving;
  starving_.fetch_add(starving ? 1 : -1);
}

void Pool::fail_waiters_locked(Shard& s, const Failure& f, bool all, WakeList& wake_list) {
  while (!s.waiters.empty()) {
    wake_list.push_back(Wake{pop_waiter_locked(s).who, nullptr, f});
    if (!all) break;
  }
}

void Pool::arm_sweep(Shard& s) {
  Clock::time_point at;
  {
    std::lock_guard g(s.mutex);
    at = s.sweep_at;
  }
  if (at == s.armed_at || at == Clock::time_point::max()) return;
  // A wait set for later is cancelled; one already done runs sweep(), which re-arms.
  s.armed_at = at;
  s.sweep_timer->expires_at(at);
  s.sweep_timer->async_wait(
      [weak = weak_from_this(), timer = s.sweep_timer, &s](const error_code& ec) {
        // Weak: a sweep pending at shutdown must not keep the pool alive.
        if (auto self = weak.lock(); self && !ec) self->sweep(s);
      });
}

void Pool::sweep(Shard& s) {
  s.armed_at = Clock::time_point::max();
  WakeList late;
  {
    std::lock_guard g(s.mutex);
    const auto now = Clock::now();
    auto next = Clock::time_point::max();
    std::optional<Failure> timeout;
    for (auto it = s.waiters.begin(); it != s.waiters.end();) {
      if (it->deadline > now) {
        next = std::min(next, it->deadline);
        ++it;
        continue;
      }
      if (!timeout) timeout = timeout_failure_locked(s);
      const auto since = it->since;
      late.push_back(Wake{std::move(it->who), nullptr, timeout});
      it = s.waiters.erase(it);
      waiter_left_locked(s, since);
    }
    s.sweep_at = next;
  }
  arm_sweep(s);
  wake(late);
}

Failure Pool::timeout_failure_locked(const Shard& s) const {
  std::string message = "no server connection available for " + user_ + "@" + database_ +
                        " within checkout_timeout (" +
                        std::to_string(s.settings.checkout_timeout.count()) + " ms)";
  std::lock_guard c(common_);
  if (last_error_) message += "; last connection error: " + last_error_->to_string();
  return Failure::from(Error::checkout_timeout, message, "08006");
}

void Pool::wake(Wake w) {
  if (w.server) {
    w.who.served(std::move(w.who.waiter), w.who.token,
                 Lease(shared_from_this(), std::move(w.server)));
  } else {
    w.who.served(std::move(w.who.waiter), w.who.token, std::move(*w.failure));
  }
}

void Pool::wake(WakeList& waiters) {
  for (auto& w : waiters)
    wake(std::move(w));
}

bool Pool::reserve(int size) {
  int open = open_.load();
  while (open < size) {
    if (open_.compare_exchange_weak(open, open + 1)) return true;
  }
  return false;
}

void Pool::release(int n) {
  if (n <= 0) return;
  open_.fetch_sub(n);
  if (waiting_.load() == 0) return;
  // The room goes to whichever shard has clients waiting (its own included).
  for (auto& s : shards_) {
    if (s->waiting.load() == 0) continue;
    asio::post(s->strand, [self = shared_from_this(), shard = s.get()] {
      std::lock_guard g(shard->mutex);
      self->grow_locked(*shard);
    });
  }
}

void Pool::grow_locked(Shard& s) {
  if (s.closed || s.paused) return;
  const int want = static_cast<int>(s.waiters.size()) - s.connecting;
  int opened = 0;
  while (opened < want && reserve(s.settings.size)) {
    spawn_connect_locked(s);
    ++opened;
  }
  if (shards_.size() == 1) return;
  const bool short_of_room = opened < want;
  // Waiting while the pool is full is normal under load; a worker starves only below its share.
  set_starving_locked(s, short_of_room && total_locked(s) < fair_share(s));
  if (short_of_room && !s.finding_room) {
    s.finding_room = true;
    asio::post(s.strand, [self = shared_from_this(), i = s.index] { self->find_room(i); });
  }
}

int Pool::fair_share(const Shard& s) const {
  return std::max(1, s.settings.size / static_cast<int>(shards_.size()));
}

void Pool::find_room(std::size_t for_shard) {
  bool below_share = false;
  {
    Shard& s = *shards_[for_shard];
    std::lock_guard g(s.mutex);
    s.finding_room = false;
    if (s.closed || s.paused || static_cast<int>(s.waiters.size()) <= s.connecting) return;
    below_share = total_locked(s) < fair_share(s);
  }
  // Another worker closes an idle server for it: any idle one while it is below its share,
  // else only one unused for kLendAfter (a busy worker's idle moments are not room to lend:
  // closing them would only make it reconnect).
  const auto now = Clock::now();
  ServerPtr close;
  for (auto& s : shards_) {
    if (s->index == for_shard) continue;
    std::lock_guard g(s->mutex);
    if (s->idle.empty()) continue;
    if (!below_share && now - s->idle.front()->last_used() < kLendAfter) continue;
    close = std::move(s->idle.front());
    s->idle.erase(s->idle.begin());
    break;
  }
  if (close) {
    release(1);
    return;
  }
  // Nothing to lend yet: servers put back above their worker's share come its way (starving),
  // and idle ones are looked at again once they may have been unused long enough.
  Shard& s = *shards_[for_shard];
  std::lock_guard g(s.mutex);
  if (s.finding_room) return;
  s.finding_room = true;
  auto timer = std::make_shared<asio::steady_timer>(s.strand, kLendAfter);
  // Weak: a timer pending at shutdown must not keep the pool alive.
  timer->async_wait([weak = weak_from_this(), timer, for_shard](const error_code& ec) {
    if (auto self = weak.lock(); self && !ec) self->find_room(for_shard);
  });
}

void Pool::spawn_connect_locked(Shard& s) {
  ++s.connecting;
  // Posted, never run inline: the caller holds the mutex that connect_one() takes.
  asio::post(s.strand, [self = shared_from_this(), shard = &s] {
    asio::co_spawn(shard->strand, self->connect_one(*shard), log_errors("server connect"));
  });
}

Task<void> Pool::connect_one(Shard& s) {
  auto self = shared_from_this();
  PoolSettings settings;
  std::uint64_t epoch = 0;
  {
    std::lock_guard g(s.mutex);
    settings = s.settings;
    epoch = s.address_epoch;
  }
  auto result = co_await ServerConnection::connect(s.io, settings.address, settings.connect_timeout,
                                                   settings.max_message_size);
  if (result && settings.vet && !co_await settings.vet(**result)) {
    {
      std::lock_guard g(s.mutex);
      --s.connecting;  // the vetting paused the pool; its waiters wait for resume() or fail()
    }
    release(1);
    co_return;
  }
  WakeList wake_list;
  std::optional<Wake> woken;
  std::vector<ServerPtr> close;
  int freed = 0;  // room given back: a failed connect's, or closed connections'
  if (!result) {
    stats::PoolCounters::add(s.counters->server_connect_errors);
    {
      std::lock_guard c(common_);
      last_error_ = result.error();
      backoff_ = std::clamp(backoff_ * 2, kMinBackoff, kMaxBackoff);
      down_until_ = Clock::now() + backoff_;
    }
    std::lock_guard g(s.mutex);
    --s.connecting;
    // With nothing else able to come back, everyone waiting would hit the same wall.
    const bool none_alive = open_.load() == 1;
    fail_waiters_locked(s, result.error(), none_alive, wake_list);
    freed = 1;
  } else {
    stats::PoolCounters::add(s.counters->server_connects);
    auto& server = *result;
    {
      std::lock_guard c(common_);
      last_error_.reset();
      backoff_ = std::chrono::milliseconds{0};
      down_until_ = {};
      if (!defaults_) defaults_ = server->params();
    }
    server->prepared().set_limit(settings.prepared_statements_limit);
    server->pool_shard = s.index;
    server->address_epoch = epoch;
    std::lock_guard g(s.mutex);
    --s.connecting;
    if (s.closed || epoch != s.address_epoch) {
      close.push_back(std::move(server));
    } else {
      woken = hand_over_locked(s, std::move(server), close);
    }
    freed = static_cast<int>(close.size());
  }
  release(freed);
  {
    std::lock_guard g(s.mutex);
    grow_locked(s);
  }
  if (woken) wake(std::move(*woken));
  wake(wake_list);
  if (!result) {
    spdlog::warn("pool {}@{}: {}", user_, database_, result.error().to_string());
  }
}

Task<Result<protocol::Params>> Pool::server_defaults() {
  {
    std::lock_guard g(common_);
    if (defaults_) co_return *defaults_;
  }
  auto lease = co_await checkout();
  if (!lease) co_return lease.error();
  std::lock_guard g(common_);
  if (!defaults_) defaults_ = (*lease)->params();
  co_return *defaults_;
}

void Pool::pause() {
  for (auto& s : shards_) {
    std::lock_guard g(s->mutex);
    s->paused = true;
  }
}

void Pool::resume() {
  WakeList wake_list;
  std::vector<ServerPtr> close;
  for (auto& s : shards_) {
    std::lock_guard g(s->mutex);
    s->paused = false;
    while (!s->idle.empty() && !s->waiters.empty()) {
      auto server = std::move(s->idle.back());
      s->idle.pop_back();
      if (auto woken = hand_over_locked(*s, std::move(server), close)) {
        wake_list.push_back(std::move(*woken));
      }
    }
    grow_locked(*s);
  }
  release(static_cast<int>(close.size()));
  wake(wake_list);
}

void Pool::fail(const Failure& failure) {
  WakeList wake_list;
  for (auto& s : shards_) {
    std::lock_guard g(s->mutex);
    s->paused = false;
    fail_waiters_locked(*s, failure, true, wake_list);
  }
  wake(wake_list);
}

PoolState Pool::state() const {
  PoolState st;
  for (const auto& s : shards_) {
    std::lock_guard g(s->mutex);
    st.idle += static_cast<int>(s->idle.size());
    st.active += s->active;
    st.connecting += s->connecting;
    st.waiting += static_cast<int>(s->waiters.size());
    if (!s->waiters.empty()) {
      st.max_wait_us = std::max(st.max_wait_us, micros_since(s->waiters.front().since));
    }
    if (s->index == 0) {
      st.size = s->settings.size;
      st.min_size = s->settings.min_size;
      st.paused = s->paused;
      st.mode = s->settings.mode;
    }
  }
  return st;
}

std::vector<ServerSummary> Pool::servers() const {
  std::vector<ServerSummary> out;
  // Only fields fixed at connect time are read from servers in use by a session.
  auto summary = [](const ServerConnection& s, bool active) {
    return ServerSummary{
        s.id(), active, s.address().host, s.address().port, s.key().process_id, s.created_at()};
  };
  for (const auto& s : shards_) {
    std::lock_guard g(s->mutex);
    for (const auto* server : s->in_use)
      out.push_back(summary(*server, true));
    for (const auto& server : s->idle)
      out.push_back(summary(*server, false));
  }
  return out;
}

std::optional<Failure> Pool::last_error() const {
  std::lock_guard g(common_);
  return last_error_;
}

bool Pool::backing_off_locked(Clock::time_point now) const {
  return last_error_ && open_.load() == 0 && now < down_until_;
}

std::optional<Failure> Pool::down_failure_locked(Clock::time_point now) const {
  if (!backing_off_locked(now)) return std::nullopt;
  Failure f = *last_error_;
  f.message +=
      " (pgdog retries the server in " +
      std::to_string(
          std::chrono::duration_cast<std::chrono::milliseconds>(down_until_ - now).count()) +
      " ms)";
  return f;
}

Clock::time_point Pool::retry_at() const {
  std::lock_guard g(common_);
  return backing_off_locked(Clock::now()) ? down_until_ : Clock::time_point{};
}

Task<void> Pool::maintain(Shard& s) {
  auto self = shared_from_this();
  asio::steady_timer timer(s.strand);
  while (true) {
    timer.expires_after(std::chrono::seconds(1));
    co_await timer.async_wait(use_nothrow);
    const auto now = Clock::now();
    bool down = false;
    bool retry_due = false;
    {
      std::lock_guard c(common_);
      down = last_error_.has_value();
      retry_due = now >= down_until_;
    }
    std::vector<ServerPtr> close;
    {
      std::lock_guard g(s.mutex);
      if (s.closed) co_return;
      // Oldest idle connections are at the front.
      int total = total_locked(s);
      for (auto it = s.idle.begin(); it != s.idle.end();) {
        const bool expired = now - (*it)->created_at() > s.settings.server_lifetime;
        const bool idle_too_long =
            now - (*it)->last_used() > s.settings.idle_timeout && total > s.min_size;
        if (expired || idle_too_long || !(*it)->alive()) {
          close.push_back(std::move(*it));
          it = s.idle.erase(it);
          --total;
        } else {
          ++it;
        }
      }
      const int missing = std::min(s.min_size, s.settings.size) - total;
      // Keep min_pool_size warm, but do not hammer a server that is down.
      if (!s.paused && (!down || (s.connecting == 0 && retry_due))) {
        for (int i = 0; i < missing && reserve(s.settings.size); ++i)
          spawn_connect_locked(s);
      }
    }
    release(static_cast<int>(close.size()));
  }
}

}  // namespace pgdog::backend
