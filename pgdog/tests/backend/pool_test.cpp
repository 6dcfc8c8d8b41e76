// Pool against the scripted server on a loopback io_context: checkout and release, reuse,
// checkout_timeout, FIFO handover, waiting without a coroutine (Pool::wait) and a cancelled
// checkout, a refused server (waiters fail at once, then backoff), reconnect, broken
// connections, min_pool_size and idle_timeout.

#include "backend/pool.hpp"

#include <chrono>
#include <string>
#include <vector>

#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <gtest/gtest.h>

#include "support/run.hpp"
#include "support/scripted_server.hpp"

namespace pgdog::backend {
namespace {

using namespace std::chrono_literals;
using test::Message;
using test::Reply;
using test::ScriptedServer;

PoolSettings settings_for(const ScriptedServer& server, int size) {
  PoolSettings s;
  s.address = {"127.0.0.1", server.port(), "appdb", "bob", ""};
  s.size = size;
  s.min_size = 0;
  s.connect_timeout = 10s;
  s.checkout_timeout = 60s;  // longer than any deadline: a test that waits for it fails
  return s;
}

std::shared_ptr<Pool> make_pool(asio::io_context& io, PoolSettings settings) {
  return std::make_shared<Pool>(io.get_executor(), "bob", "appdb", std::move(settings));
}

Result<Lease> checkout(asio::io_context& io, Pool& pool) {
  return test::run(io, pool.checkout());
}

std::uint64_t connect_errors(Pool& pool) {
  return pool.counters().server_connect_errors.load();
}

TEST(Pool, CheckoutAndRelease) {
  asio::io_context io;
  ScriptedServer server(io);
  auto pool = make_pool(io, settings_for(server, 2));
  auto lease = checkout(io, *pool);
  ASSERT_TRUE(lease) << lease.error().to_string();
  EXPECT_EQ(server.logins(), 1u);
  EXPECT_EQ(pool->state().active, 1);
  EXPECT_EQ(pool->state().idle, 0);
  lease->release();
  EXPECT_EQ(pool->state().active, 0);
  EXPECT_EQ(pool->state().idle, 1);
  EXPECT_EQ(server.open_connections(), 1u);  // kept for the next client
}

TEST(Pool, ReusesTheSameConnection) {
  asio::io_context io;
  ScriptedServer server(io);
  auto pool = make_pool(io, settings_for(server, 2));
  auto first = checkout(io, *pool);
  ASSERT_TRUE(first) << first.error().to_string();
  const auto id = (*first)->id();
  EXPECT_EQ((*first)->key().process_id, ScriptedServer::key(0).process_id);
  first->release();
  auto second = checkout(io, *pool);
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_EQ((*second)->id(), id);
  EXPECT_EQ((*second)->key().process_id, ScriptedServer::key(0).process_id);
  EXPECT_EQ(server.connections(), 1u);
}

TEST(Pool, CheckoutTimeoutWhenEveryServerIsBusy) {
  asio::io_context io;
  ScriptedServer server(io);
  auto settings = settings_for(server, 1);
  settings.checkout_timeout = 300ms;
  auto pool = make_pool(io, settings);
  auto busy = checkout(io, *pool);
  ASSERT_TRUE(busy) << busy.error().to_string();
  const auto start = Clock::now();
  auto second = checkout(io, *pool);
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, make_error_code(Error::checkout_timeout))
      << second.error().to_string();
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 10s);
  EXPECT_EQ(server.connections(), 1u);  // pool_size is a limit
  EXPECT_EQ(pool->state().waiting, 0);
}

TEST(Pool, WaitersGetTheServerInArrivalOrder) {
  asio::io_context io;
  ScriptedServer server(io);
  auto pool = make_pool(io, settings_for(server, 1));
  auto busy = checkout(io, *pool);
  ASSERT_TRUE(busy) << busy.error().to_string();

  std::vector<int> order;
  auto waiter = [&](int i) -> Task<void> {
    auto lease = co_await pool->checkout();
    if (lease) order.push_back(i);
    // The lease goes back here, to the next waiter.
  };
  for (int i = 1; i <= 3; ++i) {
    asio::co_spawn(io, waiter(i), asio::detached);
    ASSERT_TRUE(test::run_until(io, [&] { return pool->state().waiting == i; }));
  }
  busy->release();
  ASSERT_TRUE(test::run_until(io, [&] { return order.size() == 3; }));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(server.connections(), 1u);
}

// Pool::wait(), the checkout without a coroutine: what each waiter was told, in order.
struct Outcome {
  int id = 0;
  Result<Lease> lease;
  Clock::time_point at;
};

struct Recorder {
  explicit Recorder(std::vector<Outcome>* into) : outcomes(into) {}
  std::vector<Outcome>* outcomes;
};

PoolWaiter waiter_for(const std::shared_ptr<Recorder>& recorder, int id) {
  return {.served =
              [](std::shared_ptr<void> waiter, std::size_t token, Result<Lease> lease) {
                // Kept, not acted on: a session would post this to its own loop.
                auto& r = *std::static_pointer_cast<Recorder>(waiter);
                r.outcomes->push_back({static_cast<int>(token), std::move(lease), Clock::now()});
              },
          .waiter = recorder,
          .token = static_cast<std::size_t>(id)};
}

bool timed_out(const Outcome& o) {
  return !o.lease && o.lease.error().code == make_error_code(Error::checkout_timeout);
}

// A pool of one server, held: whoever asks now waits. What each waiter is told is recorded.
struct BusyPool : ::testing::Test {
  void hold(std::chrono::milliseconds checkout_timeout) {
    settings = settings_for(server, 1);
    settings.checkout_timeout = checkout_timeout;
    pool = make_pool(io, settings);
    busy = checkout(io, *pool);
    ASSERT_TRUE(busy) << busy.error().to_string();
  }
  void wait(int id) { pool->wait(waiter_for(recorder, id)); }

  asio::io_context io;
  ScriptedServer server{io};
  // Before the pool and the lease: a lease given back at the end may still tell a waiter.
  std::vector<Outcome> outcomes;
  std::shared_ptr<Recorder> recorder = std::make_shared<Recorder>(&outcomes);
  PoolSettings settings;
  std::shared_ptr<Pool> pool;
  Result<Lease> busy;
};

TEST_F(BusyPool, CallbackAndCoroutineWaitersShareOneQueueInArrivalOrder) {
  ASSERT_NO_FATAL_FAILURE(hold(60s));
  wait(1);
  bool second_served = false;
  asio::co_spawn(
      io,
      [&]() -> Task<void> {
        auto lease = co_await pool->checkout();
        second_served = lease.has_value();
        // The lease goes back here, to the third waiter.
      },
      asio::detached);
  ASSERT_TRUE(test::run_until(io, [&] { return pool->state().waiting == 2; }));
  wait(3);
  EXPECT_EQ(pool->state().waiting, 3);

  busy->release();
  ASSERT_EQ(outcomes.size(), 1u);  // told at once, by the checkin
  EXPECT_EQ(outcomes[0].id, 1);
  ASSERT_TRUE(outcomes[0].lease) << outcomes[0].lease.error().to_string();
  EXPECT_FALSE(second_served);
  outcomes[0].lease->release();
  ASSERT_TRUE(test::run_until(io, [&] { return outcomes.size() == 2; }));
  EXPECT_TRUE(second_served);
  EXPECT_EQ(outcomes[1].id, 3);
  ASSERT_TRUE(outcomes[1].lease) << outcomes[1].lease.error().to_string();
  EXPECT_EQ(server.connections(), 1u);
  EXPECT_EQ(pool->state().waiting, 0);
}

// Waiters have no timers of their own: one per pool shard fails each at its own deadline.
TEST_F(BusyPool, EachWaiterTimesOutAtItsOwnCheckoutTimeout) {
  ASSERT_NO_FATAL_FAILURE(hold(400ms));
  const auto first_came = Clock::now();
  wait(1);
  test::run_for(io, 200ms);
  ASSERT_TRUE(outcomes.empty());
  const auto second_came = Clock::now();
  wait(2);
  ASSERT_TRUE(test::run_until(io, [&] { return outcomes.size() == 2; }));
  EXPECT_EQ(outcomes[0].id, 1);
  EXPECT_EQ(outcomes[1].id, 2);
  for (const auto& o : outcomes)
    EXPECT_TRUE(timed_out(o)) << (o.lease ? "served" : o.lease.error().to_string());
  EXPECT_GE(outcomes[0].at - first_came, 400ms);
  EXPECT_GE(outcomes[1].at - second_came, 400ms);
  EXPECT_EQ(pool->state().waiting, 0);
  EXPECT_EQ(server.connections(), 1u);
}

// A waiter served before its deadline is not failed when the deadline comes: the one behind it
// times out, so the sweep ran past the first one's deadline.
TEST_F(BusyPool, AServedWaiterIsNotFailedAtItsDeadline) {
  ASSERT_NO_FATAL_FAILURE(hold(300ms));
  wait(1);
  wait(2);
  busy->release();
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_TRUE(outcomes[0].lease) << outcomes[0].lease.error().to_string();
  ASSERT_TRUE(test::run_until(io, [&] { return outcomes.size() == 2; }));
  EXPECT_EQ(outcomes[1].id, 2);
  EXPECT_TRUE(timed_out(outcomes[1]));
  EXPECT_TRUE(outcomes[0].lease);  // still holding its server
  EXPECT_EQ(pool->state().active, 1);
}

// The sweep is set for the earliest deadline: a waiter under a shorter checkout_timeout (a
// reload) is not held to the one set for the waiters before it.
TEST_F(BusyPool, AShorterCheckoutTimeoutAppliesToTheNextWaiter) {
  ASSERT_NO_FATAL_FAILURE(hold(60s));
  wait(1);
  test::run_for(io, 50ms);  // the sweep is set, 60 s away
  settings.checkout_timeout = 300ms;
  pool->update(settings);
  wait(2);
  ASSERT_TRUE(test::run_until(io, [&] { return outcomes.size() == 1; }));
  EXPECT_EQ(outcomes[0].id, 2);
  EXPECT_TRUE(timed_out(outcomes[0]));
  EXPECT_EQ(pool->state().waiting, 1);

  busy->release();
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(outcomes[1].id, 1);
  EXPECT_TRUE(outcomes[1].lease);
}

// A checkout under a timeout of the caller's (`checkout() || timer`, as a mirror replay's
// watchdog) leaves the queue when the timer wins: the caller does not wait for
// checkout_timeout (60 s here, past the test's deadline), and nobody takes the next server.
TEST_F(BusyPool, ACancelledCheckoutLeavesTheQueueAtOnce) {
  ASSERT_NO_FATAL_FAILURE(hold(60s));
  const bool timer_won = test::run(io, [&]() -> Task<bool> {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer timer(co_await asio::this_coro::executor, 100ms);
    const auto first = co_await (pool->checkout() || timer.async_wait(use_nothrow));
    co_return first.index() == 1;
  }());
  EXPECT_TRUE(timer_won);
  EXPECT_EQ(pool->state().waiting, 0);
  busy->release();
  EXPECT_EQ(pool->state().idle, 1);
  EXPECT_EQ(pool->state().active, 0);
}

// A pool that goes away lets go of what waits in it, without telling it anything.
TEST(Pool, ADroppedPoolLetsItsWaitersGo) {
  asio::io_context io;
  ScriptedServer server(io);
  auto pool = make_pool(io, settings_for(server, 1));
  pool->pause();
  std::vector<Outcome> outcomes;
  auto recorder = std::make_shared<Recorder>(&outcomes);
  std::weak_ptr<Recorder> kept = recorder;
  pool->wait(waiter_for(recorder, 1));
  recorder.reset();
  EXPECT_FALSE(kept.expired());
  EXPECT_EQ(pool->state().waiting, 1);
  pool.reset();
  EXPECT_TRUE(kept.expired());
  EXPECT_TRUE(outcomes.empty());
}

// One refused connect fails every waiter with its cause, at once: nobody waits for
// checkout_timeout (60 s, beyond the test's deadline), and the server is tried once.
TEST(Pool, RefusedConnectFailsEveryWaiterAtOnce) {
  asio::io_context io;
  ScriptedServer server(io);
  server.refuse();
  auto pool = make_pool(io, settings_for(server, 1));

  std::vector<Result<Lease>> results;
  auto waiter = [&]() -> Task<void> { results.push_back(co_await pool->checkout()); };
  // All three queue before the connect even starts: the io_context runs handlers in order.
  for (int i = 0; i < 3; ++i)
    asio::co_spawn(io, waiter(), asio::detached);
  ASSERT_TRUE(test::run_until(io, [&] { return results.size() == 3; }));
  for (const auto& r : results) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, make_error_code(Error::connect_failed)) << r.error().to_string();
  }
  EXPECT_EQ(connect_errors(*pool), 1u);
  EXPECT_EQ(pool->state().waiting, 0);
}

TEST(Pool, BacksOffAfterARefusedConnectThenReconnects) {
  asio::io_context io;
  ScriptedServer server(io);
  server.refuse();
  auto pool = make_pool(io, settings_for(server, 1));
  auto first = checkout(io, *pool);
  ASSERT_FALSE(first);
  EXPECT_EQ(first.error().code, make_error_code(Error::connect_failed));
  EXPECT_EQ(connect_errors(*pool), 1u);

  // A checkout that returns before the backoff ends cannot have tried the server. The
  // backoff starts at 100 ms and doubles: on a loaded machine an attempt may miss the window,
  // then it connects (and fails) again and the next window is longer.
  bool seen_fast_failure = false;
  for (int attempt = 0; attempt < 6 && !seen_fast_failure; ++attempt) {
    const auto retry_at = pool->retry_at();
    ASSERT_GT(retry_at, Clock::time_point{}) << "not backing off";
    const auto errors = connect_errors(*pool);
    auto r = checkout(io, *pool);
    ASSERT_FALSE(r);
    if (Clock::now() < retry_at) {
      EXPECT_EQ(connect_errors(*pool), errors);
      EXPECT_NE(r.error().message.find("retries the server in"), std::string::npos)
          << r.error().message;
      seen_fast_failure = true;
    }
  }
  EXPECT_TRUE(seen_fast_failure);
  EXPECT_EQ(server.connections(), 0u);

  server.listen();
  ASSERT_TRUE(test::run_until(io, [&] { return Clock::now() >= pool->retry_at(); }));
  auto lease = checkout(io, *pool);
  ASSERT_TRUE(lease) << lease.error().to_string();
  EXPECT_EQ(server.logins(), 1u);
  EXPECT_FALSE(pool->last_error());
  EXPECT_EQ(pool->retry_at(), Clock::time_point{});
}

TEST(Pool, BrokenConnectionIsNotReused) {
  asio::io_context io;
  ScriptedServer server(io);
  server.set_script([](const Message& m) {
    // The first connection dies mid-query; later ones answer.
    if (m.type == 'Q' && m.connection == 0) return Reply::reset();
    return test::answer_ok(m);
  });
  auto pool = make_pool(io, settings_for(server, 1));
  auto first = checkout(io, *pool);
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_FALSE(test::run(io, (*first)->execute("SELECT 1")));
  EXPECT_TRUE((*first)->broken());
  first->release();
  EXPECT_EQ(pool->state().idle, 0);

  auto second = checkout(io, *pool);
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_EQ((*second)->key().process_id, ScriptedServer::key(1).process_id);
  EXPECT_TRUE(test::run(io, (*second)->execute("SELECT 1")));
  EXPECT_EQ(server.connections(), 2u);
}

// A server that went away while the connection sat idle has closed it; the pool notices at
// checkout instead of handing it to a client.
TEST(Pool, ConnectionClosedWhileIdleIsNotHandedOut) {
  asio::io_context io;
  ScriptedServer server(io);
  auto pool = make_pool(io, settings_for(server, 1));
  auto first = checkout(io, *pool);
  ASSERT_TRUE(first) << first.error().to_string();
  first->release();
  const auto released = Clock::now();
  server.reset_all();
  ASSERT_TRUE(test::run_until(io, [&] { return server.open_connections() == 0; }));
  // Connections idle for less than 100 ms are handed out unchecked (a syscall saved).
  ASSERT_TRUE(test::run_until(io, [&] { return Clock::now() - released > 150ms; }));

  auto second = checkout(io, *pool);
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_EQ((*second)->key().process_id, ScriptedServer::key(1).process_id);
  EXPECT_TRUE(test::run(io, (*second)->execute("SELECT 1")));
}

// A reload that moves the pool's server: its idle connections to the old one close at once, a
// busy one closes at checkin instead of going back, and the next checkout opens one to the new
// server. A settings change that keeps the address keeps the connections.
TEST(Pool, ConnectionsToTheOldServerAreNotUsedAfterTheAddressMoves) {
  asio::io_context io;
  ScriptedServer old_server(io);
  ScriptedServer new_server(io);
  auto settings = settings_for(old_server, 2);
  auto pool = make_pool(io, settings);
  auto busy = checkout(io, *pool);
  auto idle = checkout(io, *pool);
  ASSERT_TRUE(busy && idle);
  idle->release();
  ASSERT_EQ(old_server.open_connections(), 2u);

  settings.checkout_timeout = 30s;  // not the address: nothing closes
  pool->update(settings);
  test::run_for(io, 20ms);
  EXPECT_EQ(old_server.open_connections(), 2u);

  settings.address.port = new_server.port();
  pool->update(settings);
  ASSERT_TRUE(test::run_until(io, [&] { return old_server.open_connections() == 1; }));
  busy->release();
  ASSERT_TRUE(test::run_until(io, [&] { return old_server.open_connections() == 0; }));
  EXPECT_EQ(pool->state().idle, 0);
  auto next = checkout(io, *pool);
  ASSERT_TRUE(next) << next.error().to_string();
  EXPECT_EQ(new_server.logins(), 1u);
  EXPECT_EQ(old_server.connections(), 2u);
}

TEST(Pool, MinPoolSizeIsKeptWarm) {
  asio::io_context io;
  ScriptedServer server(io);
  auto settings = settings_for(server, 4);
  settings.min_size = 2;
  auto pool = make_pool(io, settings);
  pool->start();
  ASSERT_TRUE(test::run_until(io, [&] {
    const auto st = pool->state();
    return st.idle == 2 && st.connecting == 0;
  }));
  EXPECT_EQ(server.logins(), 2u);
}

TEST(Pool, IdleTimeoutClosesIdleConnections) {
  asio::io_context io;
  ScriptedServer server(io);
  auto settings = settings_for(server, 2);
  settings.idle_timeout = 200ms;
  auto pool = make_pool(io, settings);
  pool->start();
  auto lease = checkout(io, *pool);
  ASSERT_TRUE(lease) << lease.error().to_string();
  lease->release();
  const auto released = Clock::now();
  ASSERT_TRUE(test::run_until(io, [&] { return server.closed_by_client(0); }));
  EXPECT_GE(Clock::now() - released, 200ms);
  EXPECT_EQ(pool->state().idle, 0);
}

}  // namespace
}  // namespace pgdog::backend
