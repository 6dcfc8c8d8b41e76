// A pool with one shard per worker loop (net::Workers): the size is the total over the shards,
// a worker whose clients wait while the pool is full gets room from the others (an idle server
// of theirs closed, or the next one they would have kept idle), pause holds every shard, and
// the counters of every worker are added up when read. The deterministic tests put both shards
// on one io_context and say which worker calls with Workers::set_current; the last one runs two
// loops on two threads for real.

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <gtest/gtest.h>

#include "backend/pool.hpp"
#include "net/workers.hpp"
#include "support/run.hpp"
#include "support/scripted_server.hpp"

namespace pgdog::backend {
namespace {

using namespace std::chrono_literals;
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

// Two shards on one io_context: which one a call uses is the worker the test says it is.
std::shared_ptr<Pool> two_shards(asio::io_context& io, PoolSettings settings) {
  return std::make_shared<Pool>(std::vector<Executor>{io.get_executor(), io.get_executor()}, "bob",
                                "appdb", std::move(settings));
}

// Checks out as worker `worker`.
Result<Lease> checkout_as(asio::io_context& io, Pool& pool, int worker) {
  net::Workers::set_current(worker);
  auto lease = test::run(io, pool.checkout());
  net::Workers::set_current(0);
  return lease;
}

class PoolShards : public ::testing::Test {
 protected:
  ~PoolShards() override { net::Workers::set_current(0); }
  // Worker 1 asks `pool` for a server and waits; `served` is set once it got one (the lease
  // goes back at once). True once it is waiting.
  bool wait_as_worker_1(const std::shared_ptr<Pool>& pool, bool& served) {
    net::Workers::set_current(1);
    asio::co_spawn(
        io_,
        [pool, &served]() -> Task<void> {
          auto lease = co_await pool->checkout();
          served = static_cast<bool>(lease);
        },
        asio::detached);
    const bool waiting = test::run_until(io_, [&] { return pool->state().waiting == 1; });
    net::Workers::set_current(0);
    return waiting;
  }

  asio::io_context io_;
  ScriptedServer server_{io_};
};

TEST_F(PoolShards, SizeIsTheTotalOverEveryWorker) {
  auto pool = two_shards(io_, settings_for(server_, 2));
  auto a = checkout_as(io_, *pool, 0);
  auto b = checkout_as(io_, *pool, 0);
  ASSERT_TRUE(a && b);
  // Worker 1 finds the pool full: it waits, and no third connection is made.
  bool served = false;
  ASSERT_TRUE(wait_as_worker_1(pool, served));
  test::run_for(io_, 50ms);
  EXPECT_EQ(server_.connections(), 2u);
  EXPECT_FALSE(served);

  // The server worker 0 puts back is closed for worker 1, which opens its own.
  a->release();
  ASSERT_TRUE(test::run_until(io_, [&] { return served; }));
  ASSERT_TRUE(test::run_until(io_, [&] { return server_.open_connections() == 2; }));
  EXPECT_EQ(server_.connections(), 3u);
  EXPECT_TRUE(server_.closed_by_client(0));
  const auto st = pool->state();
  EXPECT_EQ(st.active, 1);  // b; worker 1's lease went back when its coroutine ended
  EXPECT_EQ(st.idle + st.active + st.connecting, 2);
}

TEST_F(PoolShards, AnIdleServerOfAnotherWorkerMakesRoom) {
  auto pool = two_shards(io_, settings_for(server_, 2));
  {
    auto a = checkout_as(io_, *pool, 0);
    auto b = checkout_as(io_, *pool, 0);
    ASSERT_TRUE(a && b);
  }
  ASSERT_EQ(pool->state().idle, 2);
  // Worker 1 has nothing idle and the pool is full: worker 0 closes its oldest idle server.
  auto c = checkout_as(io_, *pool, 1);
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(server_.connections(), 3u);
  ASSERT_TRUE(test::run_until(io_, [&] { return server_.open_connections() == 2; }));
  const auto st = pool->state();
  EXPECT_EQ(st.active, 1);
  EXPECT_EQ(st.idle, 1);
  // Worker 0 still reuses the one it kept, worker 1 the one it opened.
  c->release();
  auto again = checkout_as(io_, *pool, 1);
  ASSERT_TRUE(again);
  EXPECT_EQ(server_.connections(), 3u);
}

// At its share, a worker gets another's idle server only once it has been unused for a second
// (a busy worker's idle moment is not room to lend), and then without anyone asking again.
TEST_F(PoolShards, AtItsShareAWorkerGetsOnlyAServerLeftUnused) {
  auto pool = two_shards(io_, settings_for(server_, 2));
  { ASSERT_TRUE(checkout_as(io_, *pool, 0)); }  // worker 0: one idle, just used
  auto mine = checkout_as(io_, *pool, 1);       // worker 1: its share, opened for it
  ASSERT_TRUE(mine);
  ASSERT_EQ(server_.connections(), 2u);
  const auto asked = Clock::now();
  auto second = checkout_as(io_, *pool, 1);
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_GE(Clock::now() - asked, 900ms);
  EXPECT_EQ(server_.connections(), 3u);
  EXPECT_TRUE(server_.closed_by_client(0));
}

TEST_F(PoolShards, EachWorkerReusesItsOwnServers) {
  auto pool = two_shards(io_, settings_for(server_, 4));
  std::uint64_t id0 = 0;
  std::uint64_t id1 = 0;
  {
    auto a = checkout_as(io_, *pool, 0);
    auto b = checkout_as(io_, *pool, 1);
    ASSERT_TRUE(a && b);
    id0 = (*a)->id();
    id1 = (*b)->id();
  }
  for (int i = 0; i < 3; ++i) {
    auto a = checkout_as(io_, *pool, 0);
    ASSERT_TRUE(a);
    EXPECT_EQ((*a)->id(), id0);
    EXPECT_EQ((*a)->pool_shard, 0u);
    auto b = checkout_as(io_, *pool, 1);
    ASSERT_TRUE(b);
    EXPECT_EQ((*b)->id(), id1);
    EXPECT_EQ((*b)->pool_shard, 1u);
  }
  EXPECT_EQ(server_.connections(), 2u);
}

TEST_F(PoolShards, PauseHoldsEveryWorker) {
  auto pool = two_shards(io_, settings_for(server_, 2));
  { ASSERT_TRUE(checkout_as(io_, *pool, 0)); }
  pool->pause();
  bool served = false;
  ASSERT_TRUE(wait_as_worker_1(pool, served));
  test::run_for(io_, 50ms);
  EXPECT_FALSE(served);
  EXPECT_EQ(server_.connections(), 1u);
  EXPECT_TRUE(pool->state().paused);
  pool->resume();
  ASSERT_TRUE(test::run_until(io_, [&] { return served; }));
}

TEST_F(PoolShards, CountersOfEveryWorkerAreAddedUp) {
  auto pool = two_shards(io_, settings_for(server_, 2));
  net::Workers::set_current(0);
  stats::PoolCounters::add(pool->counters().transactions, 3);
  pool->counters().query_duration.observe_us(100);
  net::Workers::set_current(1);
  stats::PoolCounters::add(pool->counters().transactions, 4);
  pool->counters().query_duration.observe_us(2'000'000);
  pool->counters().pinned.fetch_add(1);
  net::Workers::set_current(0);
  const auto sum = pool->shared_counters();
  EXPECT_EQ(sum->transactions.load(), 7u);
  EXPECT_EQ(sum->query_duration.count(), 2u);
  EXPECT_EQ(sum->query_duration.sum_us(), 2'000'100u);
  EXPECT_EQ(sum->pinned.load(), 1);
  EXPECT_EQ(pool->counters().transactions.load(), 3u);  // worker 0's own
}

TEST_F(PoolShards, MinPoolSizeIsSplitAmongWorkers) {
  auto settings = settings_for(server_, 4);
  settings.min_size = 3;
  auto pool = two_shards(io_, settings);
  pool->start();
  ASSERT_TRUE(test::run_until(io_, [&] {
    const auto st = pool->state();
    return st.idle == 3 && st.connecting == 0;
  }));
  test::run_for(io_, 1'200ms);  // another maintenance round opens nothing more
  EXPECT_EQ(server_.logins(), 3u);
  // Two on worker 0, one on worker 1: each checks out its own without connecting.
  auto a = checkout_as(io_, *pool, 0);
  auto b = checkout_as(io_, *pool, 0);
  auto c = checkout_as(io_, *pool, 1);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(server_.logins(), 3u);
}

// Two loops on two threads, clients on both checking out and in concurrently, pool of 3: every
// client is served, and once all is quiet no more than 3 connections are open at the server.
TEST(PoolShardsThreads, TwoLoopsShareOnePoolOfThree) {
  asio::io_context server_io;
  ScriptedServer server(server_io);
  auto server_guard = asio::make_work_guard(server_io);
  std::thread server_thread([&] { server_io.run(); });

  net::Workers workers(2);
  auto pool = std::make_shared<Pool>(
      std::vector<Executor>{workers.context(0).get_executor(), workers.context(1).get_executor()},
      "bob", "appdb", settings_for(server, 3));
  constexpr int kClients = 8;  // per worker
  constexpr int kRounds = 50;
  std::atomic<int> served{0};
  std::atomic<int> failed{0};
  std::atomic<int> finished{0};
  for (int w = 0; w < 2; ++w) {
    for (int c = 0; c < kClients; ++c) {
      asio::co_spawn(
          workers.context(w),
          [&]() -> Task<void> {
            for (int r = 0; r < kRounds; ++r) {
              auto lease = co_await pool->checkout();
              if (!lease) {
                ++failed;
                continue;
              }
              ++served;
              asio::steady_timer t(co_await asio::this_coro::executor, 200us);
              co_await t.async_wait(use_nothrow);
            }
            if (++finished == 2 * kClients) workers.stop();
          },
          asio::detached);
    }
  }
  std::thread deadline([&] {
    for (int i = 0; i < 600 && finished.load() < 2 * kClients; ++i)
      std::this_thread::sleep_for(100ms);
    workers.stop();
  });
  workers.run();
  deadline.join();
  EXPECT_EQ(served.load(), 2 * kClients * kRounds);
  EXPECT_EQ(failed.load(), 0);
  const auto st = pool->state();
  EXPECT_LE(st.idle + st.active + st.connecting, 3);
  pool->shutdown();
  for (int i = 0; i < 200 && server.open_connections() > 3; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_LE(server.open_connections(), 3u);
  server_guard.reset();
  server_io.stop();
  server_thread.join();
}

}  // namespace
}  // namespace pgdog::backend
