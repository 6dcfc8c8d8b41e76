// Pooling: many clients on few servers, an exhausted pool, clients that vanish mid-transaction,
// and session state that must not leak from one client to the next.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "harness/harness.hpp"

namespace pgdog::it {
namespace {

using Clock = std::chrono::steady_clock;

// Backends in this database can only come from pgdog, so counting them counts pgdog's servers.
constexpr const char* kPoolDb = "pgdog_it_pool";

class PoolingTest : public IntegrationTest {};

// What many clients competing for a small pool saw, and what the primary saw meanwhile.
struct Crowd {
  int failures = 0;
  int finished = 0;
  std::string first_failure;
  std::set<std::string> backend_pids;  // as the clients' own queries reported them
  int max_backends = 0;                // sampled from pg_stat_activity of kPoolDb
  int samples = 0;
  Clock::duration took{};
};

// `clients` clients connect to kPoolDb through pgdog, then all at once run `transactions`
// transactions of their own (BEGIN, a SELECT of a value only this transaction knows, COMMIT).
Crowd run_crowd(const Pgdog& pgdog, int clients, int transactions) {
  Crowd out;
  std::atomic<int> finished{0};
  std::atomic<int> failures{0};
  std::mutex mutex;
  auto fail = [&](const std::string& what) {
    ++failures;
    std::lock_guard g(mutex);
    if (out.first_failure.empty()) out.first_failure = what;
  };

  // Everyone connects first, then all start at once so they really compete for servers.
  std::barrier start(clients + 1);
  std::vector<std::thread> threads;
  for (int id = 0; id < clients; ++id) {
    threads.emplace_back([&, id] {
      auto c = Conn::connect(pgdog.conninfo("pgdog", std::string("pgdog"), kPoolDb), 60s);
      start.arrive_and_wait();
      if (!c.ok()) return fail("client " + std::to_string(id) + ": " + c.connect_error().message);
      std::set<std::string> pids;
      for (int i = 0; i < transactions; ++i) {
        const std::string expect = std::to_string(id * 1000 + i);
        auto begin = c.exec("BEGIN");
        auto r = c.exec("SELECT " + expect + ", pg_backend_pid()");
        auto commit = c.exec("COMMIT");
        if (!begin.ok() || !r.ok() || !commit.ok() || r.at(0, 0) != expect) {
          return fail("client " + std::to_string(id) + " transaction " + std::to_string(i) + ": " +
                      begin.describe() + " / " + r.describe() + " / " + commit.describe());
        }
        pids.insert(r.at(0, 1));
      }
      ++finished;
      std::lock_guard g(mutex);
      out.backend_pids.insert(pids.begin(), pids.end());
    });
  }

  // Watches the primary while the clients run; the monitor itself is in another database.
  std::atomic<bool> done{false};
  std::atomic<int> max_backends{0};
  std::atomic<int> samples{0};
  std::thread monitor([&] {
    auto m = connect_primary("pgdog");
    while (!done) {
      auto r = m.exec("SELECT count(*) FROM pg_stat_activity WHERE datname = '" +
                      std::string(kPoolDb) + "'");
      if (r.ok()) {
        max_backends = std::max(max_backends.load(), std::stoi(r.at(0)));
        ++samples;
      }
      std::this_thread::sleep_for(20ms);
    }
  });

  start.arrive_and_wait();
  const auto began = Clock::now();
  for (auto& t : threads)
    t.join();
  out.took = Clock::now() - began;
  done = true;
  monitor.join();
  out.failures = failures.load();
  out.finished = finished.load();
  out.max_backends = max_backends.load();
  out.samples = samples.load();
  return out;
}

void expect_served_within(const Crowd& crowd, int clients, int pool_size) {
  EXPECT_EQ(crowd.failures, 0) << "first failure: " << crowd.first_failure;
  EXPECT_EQ(crowd.finished, clients);
  EXPECT_GT(crowd.samples, 0);
  EXPECT_GE(crowd.max_backends, 1);
  EXPECT_LE(crowd.max_backends, pool_size) << "more server connections than pool_size";
}

TEST_F(PoolingTest, TwoHundredClientsOnPoolOfTen) {
  constexpr int kClients = 200;
  constexpr int kTransactions = 20;
  constexpr int kPoolSize = 10;
  ASSERT_EQ(recreate_database(kPoolDb), "");
  Pgdog pgdog(PgdogConfig()
                  .set("checkout_timeout", "60000")
                  .with_databases(database_toml(kPoolDb, e().primary_port, "",
                                                "pool_size = " + std::to_string(kPoolSize)))
                  .with_users(user_toml("pgdog", kPoolDb, std::string("pgdog"))));
  ASSERT_TRUE(pgdog.started());
  const auto crowd = run_crowd(pgdog, kClients, kTransactions);
  expect_served_within(crowd, kClients, kPoolSize);
  EXPECT_LE(crowd.backend_pids.size(), static_cast<std::size_t>(kPoolSize));
  std::cout << kClients << " clients x " << kTransactions << " transactions in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(crowd.took).count() << " ms, "
            << crowd.backend_pids.size() << " distinct servers, at most " << crowd.max_backends
            << " backends seen\n";
}

// The cell of column `name` (an admin console result).
std::string cell(const Result& r, std::size_t row, const std::string& name) {
  const auto it = std::find(r.columns.begin(), r.columns.end(), name);
  return it == r.columns.end() ? "<no column " + name + ">"
                               : r.at(row, static_cast<std::size_t>(it - r.columns.begin()));
}

// CPU time (clock ticks) of each thread of `pid`, by thread name.
std::map<std::string, long> thread_ticks(pid_t pid) {
  std::map<std::string, long> out;
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& entry : std::filesystem::directory_iterator(task)) {
    std::ifstream comm(entry.path() / "comm");
    std::string name;
    std::getline(comm, name);
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    // After "(comm)": state is field 3, utime 14 and stime 15.
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::vector<std::string> f{std::istream_iterator<std::string>(fields), {}};
    if (f.size() > 12) out[name] += std::stol(f[11]) + std::stol(f[12]);
  }
  return out;
}

// workers = 2: one event loop per thread, each with its share of the pool. Clients land on both
// loops, the pool's size is still the total (the primary never sees more), every transaction is
// counted once in SHOW STATS (each loop's counters added up), and both threads did the work.
TEST_F(PoolingTest, TwoWorkersShareOnePoolAndItsCounters) {
  constexpr int kClients = 64;
  constexpr int kTransactions = 40;
  constexpr int kPoolSize = 6;
  ASSERT_EQ(recreate_database(kPoolDb), "");
  Pgdog pgdog(PgdogConfig()
                  .set("workers", "2")
                  .set("checkout_timeout", "60000")
                  .with_databases(database_toml(kPoolDb, e().primary_port, "",
                                                "pool_size = " + std::to_string(kPoolSize)))
                  .with_users(user_toml("pgdog", kPoolDb, std::string("pgdog"))));
  ASSERT_TRUE(pgdog.started());
  // The second loop's thread starts (and names itself) once the first loop runs, which is after
  // the port accepts: wait for it.
  ASSERT_TRUE(wait_until([&] { return thread_ticks(pgdog.pid()).count("pgdog-worker-1") == 1; },
                         10s))
      << "no thread named pgdog-worker-1";
  const auto before = thread_ticks(pgdog.pid());

  // Distinct servers may exceed the size: room a loop lends is a server closed there and
  // opened on the other loop. At once there are never more than pool_size.
  const auto crowd = run_crowd(pgdog, kClients, kTransactions);
  expect_served_within(crowd, kClients, kPoolSize);

  auto admin = pgdog.admin();
  ASSERT_TRUE(admin.ok()) << admin.connect_error().message;
  auto stats = admin.exec("SHOW STATS");
  ASSERT_TRUE(stats.ok()) << stats.describe();
  std::string counted;
  for (std::size_t row = 0; row < stats.rows.size(); ++row) {
    if (cell(stats, row, "database") == kPoolDb) counted = cell(stats, row, "total_xact_count");
  }
  EXPECT_EQ(counted, std::to_string(kClients * kTransactions)) << pgdog.admin_snapshot();
  auto pools = admin.exec("SHOW POOLS");
  ASSERT_TRUE(pools.ok()) << pools.describe();
  for (std::size_t row = 0; row < pools.rows.size(); ++row) {
    if (cell(pools, row, "database") != kPoolDb) continue;
    const int servers = std::stoi(cell(pools, row, "sv_active")) +
                        std::stoi(cell(pools, row, "sv_idle")) +
                        std::stoi(cell(pools, row, "sv_login"));
    EXPECT_LE(servers, kPoolSize) << pgdog.admin_snapshot();
    EXPECT_GE(servers, 1);
  }

  const auto after = thread_ticks(pgdog.pid());
  for (const std::string thread : {"pgdog", "pgdog-worker-1"}) {
    ASSERT_EQ(after.count(thread), 1u) << thread;
    EXPECT_GT(after.at(thread), before.count(thread) ? before.at(thread) : 0)
        << thread << " did none of the work";
  }
  std::cout << kClients << " clients x " << kTransactions << " transactions on 2 workers in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(crowd.took).count() << " ms, "
            << crowd.backend_pids.size() << " distinct servers, at most " << crowd.max_backends
            << " backends seen; CPU ticks pgdog " << after.at("pgdog") << ", pgdog-worker-1 "
            << after.at("pgdog-worker-1") << "\n";
}

TEST_F(PoolingTest, ExhaustedPoolWaitsCheckoutTimeoutThenErrors) {
  Pgdog pgdog(PgdogConfig().set("checkout_timeout", "500").with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto holder = pgdog.connect();
  auto waiter = pgdog.connect();
  ASSERT_TRUE(holder.ok()) << holder.connect_error().message;
  ASSERT_TRUE(waiter.ok()) << waiter.connect_error().message;

  ASSERT_TRUE(holder.exec("BEGIN").ok());
  ASSERT_TRUE(holder.exec("SELECT 1").ok());
  const auto start = Clock::now();
  auto r = waiter.exec("SELECT 'got a server'", 10s);
  const auto took = Clock::now() - start;
  ASSERT_FALSE(r.ok()) << "the second client got a server while the only one was in a transaction";
  EXPECT_NE(r.error->sqlstate, "TIMEOUT") << "no answer from pgdog: " << r.describe();
  EXPECT_NE(r.error->message.find("checkout"), std::string::npos) << r.describe();
  EXPECT_GE(took, 400ms);
  EXPECT_LT(took, 3s);

  // Once the holder is done, the waiting client's session works again.
  ASSERT_TRUE(holder.exec("COMMIT").ok());
  r = waiter.exec("SELECT 'got a server'");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0), "got a server");
}

TEST_F(PoolingTest, WaitingClientGetsTheServerWhenReleased) {
  Pgdog pgdog(PgdogConfig().set("checkout_timeout", "5000").with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto holder = pgdog.connect();
  auto waiter = pgdog.connect();
  ASSERT_TRUE(holder.ok() && waiter.ok());
  auto admin = pgdog.admin();
  ASSERT_TRUE(admin.ok()) << admin.connect_error().message;
  ASSERT_TRUE(holder.exec("BEGIN").ok());
  // The holder commits only once the waiter waits for the server (SHOW CLIENTS says so).
  bool waited = false;
  std::thread release([&] {
    waited =
        wait_until([&] { return admin_rows(admin, "SHOW CLIENTS", "state", "waiting") == 1; }, 10s);
    holder.exec("COMMIT");
  });
  auto r = waiter.exec("SELECT 'waited'", 10s);
  release.join();
  EXPECT_TRUE(waited) << "the second client never waited for the server";
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0), "waited");
}

TEST_F(PoolingTest, ClientVanishingMidTransactionLeavesNoTrace) {
  {
    auto p = connect_primary();
    ASSERT_TRUE(p.exec("DROP TABLE IF EXISTS it_vanish; CREATE TABLE it_vanish (id int)").ok());
  }
  Pgdog pgdog(PgdogConfig().with_pool_size(1));
  ASSERT_TRUE(pgdog.started());

  for (const bool abrupt : {false, true}) {
    SCOPED_TRACE(abrupt ? "socket closed without Terminate" : "Terminate sent");
    std::string pid;
    {
      auto a = pgdog.connect();
      ASSERT_TRUE(a.ok()) << a.connect_error().message;
      ASSERT_TRUE(a.exec("BEGIN").ok());
      ASSERT_TRUE(a.exec("INSERT INTO it_vanish VALUES (1)").ok());
      pid = a.exec("SELECT pg_backend_pid()").at(0);
      if (abrupt) {
        a.close_abruptly();
      } else {
        a.close();
      }
    }

    auto b = pgdog.connect();
    ASSERT_TRUE(b.ok()) << b.connect_error().message;
    auto r = b.exec("SELECT count(*), now() = statement_timestamp() FROM it_vanish", 10s);
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.at(0, 0), "0") << "the next client saw the vanished client's uncommitted row";
    EXPECT_EQ(r.at(0, 1), "t") << "the next client is inside an older transaction";
    b.take_notices();
    ASSERT_TRUE(b.exec("BEGIN").ok());
    for (const auto& n : b.take_notices()) {
      EXPECT_NE(n.sqlstate, "25001") << "BEGIN warned: " << n.message;
    }
    ASSERT_TRUE(b.exec("INSERT INTO it_vanish VALUES (2)").ok());
    ASSERT_TRUE(b.exec("COMMIT").ok());

    // The vanished client's backend ends its transaction: rolled back or closed.
    auto p = connect_primary();
    std::string state;
    for (int i = 0; i < 100; ++i) {
      state = p.exec("SELECT coalesce(max(state), 'gone') FROM pg_stat_activity WHERE pid = " + pid)
                  .at(0);
      if (state.find("in transaction") == std::string::npos) break;
      std::this_thread::sleep_for(50ms);
    }
    EXPECT_EQ(state.find("in transaction"), std::string::npos)
        << "backend " << pid << ": " << state;
    r = p.exec("SELECT array_agg(id ORDER BY id)::text FROM it_vanish");
    EXPECT_EQ(r.at(0), "{2}");
    ASSERT_TRUE(p.exec("TRUNCATE it_vanish").ok());
  }
  connect_primary().exec("DROP TABLE IF EXISTS it_vanish");
}

TEST_F(PoolingTest, SessionModeResetsStateBetweenClients) {
  Pgdog pgdog(PgdogConfig().set_string("pooler_mode", "session").with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  std::string default_work_mem;
  {
    auto a = pgdog.connect();
    ASSERT_TRUE(a.ok()) << a.connect_error().message;
    default_work_mem = a.exec("SHOW work_mem").at(0);
    auto r = a.exec_all(
        "SET work_mem = '7MB'; CREATE TEMP TABLE it_tmp (x int); PREPARE it_p AS SELECT 1; "
        "LISTEN it_session_channel");
    for (const auto& x : r)
      ASSERT_TRUE(x.ok()) << x.describe();
  }
  auto b = pgdog.connect();
  ASSERT_TRUE(b.ok()) << b.connect_error().message;
  auto r = b.exec(
      "SELECT current_setting('work_mem'), to_regclass('pg_temp.it_tmp') IS NULL, "
      "(SELECT count(*) FROM pg_prepared_statements), "
      "(SELECT count(*) FROM pg_listening_channels())");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0, 0), default_work_mem);
  EXPECT_EQ(r.at(0, 1), "t") << "temp table survived into the next session";
  EXPECT_EQ(r.at(0, 2), "0") << "prepared statement survived into the next session";
  EXPECT_EQ(r.at(0, 3), "0") << "LISTEN survived into the next session";
}

}  // namespace
}  // namespace pgdog::it
