// The proxy's life: reload (SIGHUP and admin RELOAD) without dropping clients, PAUSE / RESUME,
// graceful shutdown (admin SHUTDOWN, SIGTERM), SIGINT, and server connection health (a server
// that died while idle, server_lifetime).
#include <algorithm>
#include <fstream>
#include <functional>
#include <future>
#include <poll.h>
#include <regex>
#include <signal.h>
#include <thread>

#include "harness/harness.hpp"

namespace pgdog::it {
namespace {

using Clock = std::chrono::steady_clock;

long long ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

int column(const Result& r, const std::string& name) {
  auto it = std::find(r.columns.begin(), r.columns.end(), name);
  return it == r.columns.end() ? -1 : static_cast<int>(it - r.columns.begin());
}

// A cell of the SHOW POOLS row for `database`, or "<none>".
std::string pool_cell(Conn& admin, const std::string& database, const std::string& name) {
  auto r = admin.exec("SHOW POOLS", 5s);
  const int db = column(r, "database");
  const int c = column(r, name);
  if (!r.ok() || db < 0 || c < 0) return "<none>";
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    if (r.at(i, static_cast<std::size_t>(db)) == database) return r.at(i, static_cast<std::size_t>(c));
  }
  return "<none>";
}

std::string show_config(Conn& admin) {
  auto r = admin.exec("SHOW CONFIG", 5s);
  if (!r.ok()) return r.describe();
  std::string out;
  for (std::size_t i = 0; i < r.rows.size(); ++i) out += r.at(i, 0) + "=" + r.at(i, 1) + "\n";
  return out;
}

// 1-based line of the first line of `file` containing `needle`; 0 when none.
int line_of(const std::string& file, const std::string& needle) {
  std::ifstream in(file);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find(needle) != std::string::npos) return n;
  }
  return 0;
}

class LifecycleTest : public IntegrationTest {};

// --- reload ------------------------------------------------------------------------------------

// The users every reload test starts with: it_user logs in with its own password and reaches
// the server as pgdog.
std::string server_as_pgdog() {
  return "server_user = \"pgdog\"\nserver_password = \"pgdog\"";
}

PgdogConfig reload_before() {
  const int port = env()->primary_port;
  return PgdogConfig()
      .set("checkout_timeout", "5000")
      .with_databases(database_toml("pgdog", port, "", "pool_size = 3") +
                      database_toml("it_old", port, "pgdog"))
      .with_users(user_toml("pgdog", "pgdog", std::string("pgdog")) +
                  user_toml("pgdog", "it_old", std::string("pgdog")) +
                  user_toml("it_user", "pgdog", std::string("old_pw"), server_as_pgdog()));
}

PgdogConfig reload_after() {
  const int port = env()->primary_port;
  return PgdogConfig()
      .set("checkout_timeout", "5000")
      .with_databases(database_toml("pgdog", port, "", "pool_size = 6") +
                      database_toml("it_new", port, "pgdog"))
      .with_users(user_toml("pgdog", "pgdog", std::string("pgdog")) +
                  user_toml("pgdog", "it_new", std::string("pgdog")) +
                  user_toml("it_user", "pgdog", std::string("new_pw"), server_as_pgdog()) +
                  user_toml("it_added", "pgdog", std::string("added_pw"), server_as_pgdog()));
}

// How a reload is triggered; returns an error text when the trigger itself failed.
using Trigger = std::function<std::string(Pgdog&)>;

void reload_scenario(const Trigger& reload, bool via_admin) {
  Pgdog pgdog(reload_before());
  ASSERT_TRUE(pgdog.started());
  auto admin = pgdog.admin();
  ASSERT_TRUE(admin.ok()) << admin.connect_error().message;
  ASSERT_EQ(pool_cell(admin, "pgdog", "pool_size"), "3");

  // Clients connected before the reload, one of them inside a transaction throughout.
  auto in_tx = pgdog.connect();
  auto it_user = pgdog.connect("it_user", std::string("old_pw"));
  auto on_old = pgdog.connect("pgdog", std::string("pgdog"), "it_old");
  ASSERT_TRUE(in_tx.ok()) << in_tx.connect_error().message;
  ASSERT_TRUE(it_user.ok()) << it_user.connect_error().message;
  ASSERT_TRUE(on_old.ok()) << on_old.connect_error().message;
  ASSERT_TRUE(in_tx.exec("BEGIN").ok());
  ASSERT_TRUE(in_tx.exec("SELECT 1").ok());
  ASSERT_EQ(it_user.exec("SELECT current_user").at(0), "pgdog");

  // What the new configuration adds is not there yet.
  auto c = pgdog.connect("pgdog", std::string("pgdog"), "it_new");
  EXPECT_EQ(c.connect_error().sqlstate, "3D000") << c.connect_error().message;
  c = pgdog.connect("it_added", std::string("added_pw"));
  EXPECT_EQ(c.connect_error().sqlstate, "28P01") << c.connect_error().message;

  pgdog.rewrite(reload_after());
  ASSERT_EQ(reload(pgdog), "");
  std::string size;
  for (int i = 0; i < 100 && (size = pool_cell(admin, "pgdog", "pool_size")) != "6"; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(size, "6") << "pool size change not visible in SHOW POOLS\n" << pgdog.log();

  // Nobody connected was dropped; the open transaction carries on.
  auto r = in_tx.exec("SELECT 'still in tx'");
  EXPECT_EQ(r.at(0), "still in tx") << r.describe();
  EXPECT_TRUE(in_tx.exec("COMMIT").ok());
  r = it_user.exec("SELECT 'old password, still connected'");
  EXPECT_TRUE(r.ok()) << "an already connected client of a user whose password changed: "
                      << r.describe();

  // A new user logs in; the changed password applies to new logins.
  c = pgdog.connect("it_added", std::string("added_pw"));
  ASSERT_TRUE(c.ok()) << "added user: " << c.connect_error().message;
  EXPECT_EQ(c.exec("SELECT 'added'").at(0), "added");
  c = pgdog.connect("it_user", std::string("old_pw"));
  EXPECT_FALSE(c.ok()) << "the old password still works";
  EXPECT_EQ(c.connect_error().sqlstate, "28P01") << c.connect_error().message;
  c = pgdog.connect("it_user", std::string("new_pw"));
  ASSERT_TRUE(c.ok()) << "new password: " << c.connect_error().message;
  EXPECT_EQ(c.exec("SELECT 'new pw'").at(0), "new pw");

  // The added database works, the removed one refuses new logins.
  c = pgdog.connect("pgdog", std::string("pgdog"), "it_new");
  ASSERT_TRUE(c.ok()) << "added database: " << c.connect_error().message;
  EXPECT_EQ(c.exec("SELECT current_database()").at(0), "pgdog");
  c = pgdog.connect("pgdog", std::string("pgdog"), "it_old");
  EXPECT_FALSE(c.ok()) << "a removed database still accepts logins";
  EXPECT_EQ(c.connect_error().sqlstate, "3D000") << c.connect_error().message;
  r = on_old.exec("SELECT 1", 5s);
  std::cout << "client of the removed database, after the reload: " << r.describe() << "\n";
  EXPECT_NE(r.error ? r.error->sqlstate : "", "TIMEOUT") << "client of a removed database hangs";

  // An invalid configuration is refused, with the file, the line and the key; nothing of it
  // applies (the valid pool size change in the same file included).
  const std::string config_before = show_config(admin);
  auto bad = reload_after();
  bad.set("checkout_timeout", "7777");
  bad.with_databases(database_toml("pgdog", env()->primary_port, "", "pool_size = 9") +
                     database_toml("it_new", env()->primary_port, "pgdog"));
  std::string file, key;
  if (via_admin) {
    // users.toml: a user of a database that does not exist.
    bad.with_users(bad.users + user_toml("it_ghost", "no_such_db", std::string("x")));
    file = "users.toml";
    key = "database";
  } else {
    bad.set("it_bogus_key", "1");
    file = "pgdog.toml";
    key = "general.it_bogus_key";
  }
  pgdog.rewrite(bad);
  const int line = via_admin ? line_of(pgdog.users_path(), "no_such_db")
                             : line_of(pgdog.config_path(), "it_bogus_key");
  ASSERT_GT(line, 0);
  const std::string error = reload(pgdog);
  if (via_admin) {
    EXPECT_NE(error.find(file + ":" + std::to_string(line) + ": "), std::string::npos)
        << "RELOAD error does not name file:line: " << error;
    EXPECT_NE(error.find(key), std::string::npos) << error;
  }
  std::string log;
  const std::regex wanted(file + ":" + std::to_string(line) + ": [^\\n]*" + key);
  for (int i = 0; i < 100; ++i) {
    log = pgdog.log();
    if (std::regex_search(log, wanted)) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(std::regex_search(log, wanted))
      << "no log line naming " << file << ":" << line << ": " << key << "\n" << log;
  // The rejection is logged once the reload was decided: nothing of it applies after that.
  EXPECT_EQ(pool_cell(admin, "pgdog", "pool_size"), "6");
  EXPECT_EQ(show_config(admin), config_before);
  c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  EXPECT_EQ(c.exec("SELECT 'old config in force'").at(0), "old config in force");
  EXPECT_EQ(it_user.exec("SELECT 1").at(0), "1");
  c = pgdog.connect("pgdog", std::string("pgdog"), "it_new");
  EXPECT_TRUE(c.ok()) << c.connect_error().message;
}

TEST_F(LifecycleTest, SighupReloadAppliesWithoutDroppingClients) {
  reload_scenario(
      [](Pgdog& p) {
        p.reload();
        return std::string();
      },
      false);
}

TEST_F(LifecycleTest, AdminReloadAppliesWithoutDroppingClients) {
  reload_scenario(
      [](Pgdog& p) -> std::string {
        auto admin = p.admin();
        if (!admin.ok()) return "admin: " + admin.connect_error().message;
        auto r = admin.exec("RELOAD");
        if (r.ok()) return "";
        return r.describe();
      },
      true);
}

// --- PAUSE / RESUME ----------------------------------------------------------------------------

TEST_F(LifecycleTest, PauseWaitsForTransactionsAndHoldsNewQueries) {
  // checkout_timeout far below the pause: held clients must not time out.
  Pgdog pgdog(PgdogConfig().set("checkout_timeout", "500").with_pool_size(4));
  ASSERT_TRUE(pgdog.started());
  auto in_tx = pgdog.connect();
  auto later = pgdog.connect();
  auto admin = pgdog.admin();
  auto watcher = pgdog.admin();
  ASSERT_TRUE(in_tx.ok() && later.ok() && admin.ok() && watcher.ok());
  ASSERT_TRUE(later.exec("SELECT 1").ok());
  ASSERT_TRUE(in_tx.exec("BEGIN").ok());
  ASSERT_TRUE(in_tx.exec("SELECT 1").ok());

  Clock::time_point paused_at;
  auto pause = std::async(std::launch::async, [&] {
    auto r = admin.exec("PAUSE", 15s);
    paused_at = Clock::now();
    return r;
  });
  // PAUSE marks the pools paused at once, then waits for the open transaction.
  ASSERT_TRUE(wait_until([&] { return pool_cell(watcher, "pgdog", "paused") == "yes"; }, 10s))
      << "PAUSE never reached pgdog";
  EXPECT_EQ(pause.wait_for(0s), std::future_status::timeout)
      << "PAUSE returned while a transaction was open";
  // The open transaction may go on and finish.
  EXPECT_EQ(in_tx.exec("SELECT 'inside'", 5s).at(0), "inside");
  const auto committed_at = Clock::now();
  auto r = in_tx.exec("COMMIT", 5s);
  ASSERT_TRUE(r.ok()) << r.describe();
  r = pause.get();
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_GE(paused_at, committed_at) << "PAUSE returned before COMMIT";
  EXPECT_LT(paused_at - committed_at, 2s);

  auto admin2 = pgdog.admin();
  EXPECT_EQ(pool_cell(admin2, "pgdog", "paused"), "yes");
  // New queries wait, past checkout_timeout, without failing; a client logging in now too.
  const auto held_since = Clock::now();
  auto held = std::async(std::launch::async, [&] { return later.exec("SELECT 'after resume'", 15s); });
  auto newcomer = std::async(std::launch::async, [&] {
    auto c = pgdog.connect();
    if (!c.ok()) {
      Result e;
      e.error = c.connect_error();
      return e;
    }
    return c.exec("SELECT 'newcomer'", 15s);
  });
  // Both wait for a server; then longer than checkout_timeout passes (the point of the test).
  std::string waiting;
  EXPECT_TRUE(
      wait_until([&] { return (waiting = pool_cell(admin2, "pgdog", "cl_waiting")) == "2"; }, 10s))
      << "clients waiting during PAUSE: " << waiting;
  std::this_thread::sleep_for(1200ms);
  EXPECT_EQ(held.wait_for(0s), std::future_status::timeout) << "a query ran during PAUSE";
  EXPECT_EQ(newcomer.wait_for(0s), std::future_status::timeout)
      << "a new client's query ran during PAUSE";
  r = admin2.exec("RESUME");
  ASSERT_TRUE(r.ok()) << r.describe();
  const auto resumed_at = Clock::now();
  r = held.get();
  EXPECT_EQ(r.at(0), "after resume") << r.describe();
  EXPECT_LT(Clock::now() - resumed_at, 2s);
  EXPECT_GE(Clock::now() - held_since, 1200ms);
  r = newcomer.get();
  EXPECT_EQ(r.at(0), "newcomer") << r.describe();
  EXPECT_EQ(pool_cell(admin2, "pgdog", "paused"), "no");
}

// --- shutdown -----------------------------------------------------------------------------------

constexpr const char* kShutdownTable = "it_lifecycle_shutdown";

// An empty table for what the shutdown tests commit (or must not).
bool fresh_shutdown_table(Conn& primary) {
  return primary
      .exec(std::string("DROP TABLE IF EXISTS ") + kShutdownTable + "; CREATE TABLE " +
            kShutdownTable + " (id int)")
      .ok();
}

void graceful_shutdown_scenario(const std::function<void(Pgdog&)>& initiate) {
  auto p = connect_primary();
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(fresh_shutdown_table(p));
  Pgdog pgdog(PgdogConfig().set("shutdown_timeout", "10000"));
  ASSERT_TRUE(pgdog.started());
  auto busy = pgdog.connect();
  auto idle1 = pgdog.connect();
  auto idle2 = pgdog.connect();
  ASSERT_TRUE(busy.ok() && idle1.ok() && idle2.ok());
  ASSERT_TRUE(idle2.exec("SELECT 1").ok());
  ASSERT_TRUE(busy.exec("BEGIN").ok());
  ASSERT_TRUE(busy.exec(std::string("INSERT INTO ") + kShutdownTable + " VALUES (1)").ok());

  initiate(pgdog);
  // No new connections.
  bool closed = false;
  for (int i = 0; i < 50 && !closed; ++i) {
    closed = !port_open(pgdog.port());
    if (!closed) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(closed) << "pgdog still accepts connections after the shutdown began";
  auto late = pgdog.connect();
  EXPECT_FALSE(late.ok()) << "a new client got in during shutdown";
  // Idle clients are told why they go.
  EXPECT_EQ(error_sent_to_idle(idle1, 3s), "57P01");
  EXPECT_EQ(error_sent_to_idle(idle2, 3s), "57P01");
  // The running transaction finishes and commits.
  EXPECT_EQ(pgdog.wait_exit(300ms), std::nullopt) << "pgdog exited with a transaction open";
  auto r = busy.exec(std::string("INSERT INTO ") + kShutdownTable + " VALUES (2)", 5s);
  EXPECT_TRUE(r.ok()) << r.describe();
  r = busy.exec("COMMIT", 5s);
  EXPECT_TRUE(r.ok()) << r.describe();
  const auto committed = Clock::now();
  auto status = pgdog.wait_exit(5s);
  ASSERT_TRUE(status.has_value()) << "pgdog did not exit after the last transaction";
  EXPECT_EQ(*status, 0);
  std::cout << "exited " << ms_since(committed) << " ms after the last COMMIT\n";
  r = p.exec(std::string("SELECT string_agg(id::text, ',' ORDER BY id) FROM ") + kShutdownTable);
  EXPECT_EQ(r.at(0), "1,2") << "the transaction did not commit";
  p.exec(std::string("DROP TABLE IF EXISTS ") + kShutdownTable);
}

TEST_F(LifecycleTest, AdminShutdownIsGraceful) {
  graceful_shutdown_scenario([](Pgdog& pgdog) {
    auto admin = pgdog.admin();
    ASSERT_TRUE(admin.ok()) << admin.connect_error().message;
    auto r = admin.exec("SHUTDOWN", 5s);
    // The console itself is an idle client: it may see 57P01 instead of the answer.
    EXPECT_TRUE(r.ok() || (r.error && r.error->sqlstate == "57P01") ||
                (r.error && r.error->sqlstate.empty() && r.error->severity == "CLIENT" &&
                 r.error->message.find("closed") != std::string::npos))
        << r.describe();
  });
}

TEST_F(LifecycleTest, SigtermIsGraceful) {
  graceful_shutdown_scenario([](Pgdog& pgdog) { pgdog.signal(SIGTERM); });
}

TEST_F(LifecycleTest, ShutdownTimeoutEndsALingeringTransaction) {
  auto p = connect_primary();
  ASSERT_TRUE(fresh_shutdown_table(p));
  Pgdog pgdog(PgdogConfig().set("shutdown_timeout", "1000"));
  ASSERT_TRUE(pgdog.started());
  auto busy = pgdog.connect();
  ASSERT_TRUE(busy.exec("BEGIN").ok());
  ASSERT_TRUE(busy.exec(std::string("INSERT INTO ") + kShutdownTable + " VALUES (1)").ok());
  const auto start = Clock::now();
  pgdog.signal(SIGTERM);
  auto status = pgdog.wait_exit(5s);
  const long long took = ms_since(start);
  ASSERT_TRUE(status.has_value()) << "pgdog waited past shutdown_timeout";
  EXPECT_EQ(*status, 0);
  EXPECT_GE(took, 900);
  EXPECT_LT(took, 3000);
  // The transaction never committed.
  std::string rows;
  for (int i = 0; i < 50; ++i) {
    rows = p.exec(std::string("SELECT count(*) FROM ") + kShutdownTable).at(0);
    if (rows == "0") break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(rows, "0");
  p.exec(std::string("DROP TABLE IF EXISTS ") + kShutdownTable);
}

// A client waiting for a server when the shutdown begins is told 57P01 at once, and what it
// sent never runs, although the server it waited for comes free before pgdog exits.
TEST_F(LifecycleTest, ClientWaitingForAServerAtShutdownIsToldAndItsStatementNeverRuns) {
  auto p = connect_primary();
  ASSERT_TRUE(fresh_shutdown_table(p));
  Pgdog pgdog(PgdogConfig().set("shutdown_timeout", "10000").with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto busy = pgdog.connect();
  auto waiter = pgdog.connect();
  auto admin = pgdog.admin();
  ASSERT_TRUE(busy.ok() && waiter.ok() && admin.ok());
  ASSERT_TRUE(busy.exec("BEGIN").ok());
  ASSERT_TRUE(busy.exec(std::string("INSERT INTO ") + kShutdownTable + " VALUES (1)").ok());
  auto waited = std::async(std::launch::async, [&] {
    return waiter.exec(std::string("INSERT INTO ") + kShutdownTable + " VALUES (2)", 10s);
  });
  ASSERT_TRUE(
      wait_until([&] { return admin_rows(admin, "SHOW CLIENTS", "state", "waiting") == 1; }, 10s))
      << "the second client never waited for the server";

  pgdog.signal(SIGTERM);
  auto r = waited.get();
  ASSERT_FALSE(r.ok()) << "the waiting client's statement ran during shutdown";
  EXPECT_EQ(r.error->sqlstate, "57P01") << r.describe();
  // Its server comes free now, and goes to the session that was told to go.
  r = busy.exec(std::string("INSERT INTO ") + kShutdownTable + " VALUES (3)", 5s);
  EXPECT_TRUE(r.ok()) << r.describe();
  r = busy.exec("COMMIT", 5s);
  EXPECT_TRUE(r.ok()) << r.describe();
  auto status = pgdog.wait_exit(5s);
  ASSERT_TRUE(status.has_value()) << "pgdog did not exit after the last transaction";
  EXPECT_EQ(*status, 0);
  r = p.exec(std::string("SELECT string_agg(id::text, ',' ORDER BY id) FROM ") + kShutdownTable);
  EXPECT_EQ(r.at(0), "1,3");
  p.exec(std::string("DROP TABLE IF EXISTS ") + kShutdownTable);
}

TEST_F(LifecycleTest, SigintExitsPromptlyWithClientsConnected) {
  Pgdog pgdog(PgdogConfig().set("shutdown_timeout", "30000"));
  ASSERT_TRUE(pgdog.started());
  auto idle = pgdog.connect();
  auto in_tx = pgdog.connect();
  auto sleeping = pgdog.connect();
  ASSERT_TRUE(idle.ok() && in_tx.ok() && sleeping.ok());
  ASSERT_TRUE(idle.exec("SELECT 1").ok());
  ASSERT_TRUE(in_tx.exec("BEGIN").ok());
  ASSERT_TRUE(in_tx.exec("SELECT 1").ok());
  const std::string query = "SELECT pg_sleep(20), 'running at SIGINT'";
  auto sleep = std::async(std::launch::async, [&] { return sleeping.exec(query, 25s); });
  ASSERT_TRUE(wait_running_on_primary(query)) << "the query never ran on the primary";
  const auto start = Clock::now();
  pgdog.signal(SIGINT);
  auto status = pgdog.wait_exit(2s);
  const long long took = ms_since(start);
  ASSERT_TRUE(status.has_value()) << "pgdog still running 2 s after SIGINT";
  std::cout << "SIGINT: exited with " << *status << " after " << took << " ms\n";
  EXPECT_LT(took, 2000);
  EXPECT_EQ(*status, 0);
  auto r = sleep.get();
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error->sqlstate, "TIMEOUT") << "the sleeping client was left hanging";
}

// --- server health ------------------------------------------------------------------------------

void killed_while_idle_scenario(PgdogConfig config, const std::string& want_ssl) {
  Pgdog pgdog(config.with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok());
  auto p = connect_primary();
  ASSERT_TRUE(p.ok());
  // Whether pgdog's server connection is TLS (the primary has ssl = on).
  auto ssl = c.exec("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  ASSERT_EQ(ssl.at(0), want_ssl) << ssl.describe();
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto r = c.exec("SELECT pg_backend_pid()::text");
    ASSERT_TRUE(r.ok()) << r.describe();
    const std::string pid = r.at(0);
    r = p.exec("SELECT pg_terminate_backend(" + pid + ")");
    ASSERT_EQ(r.at(0), "t") << r.describe();
    std::string gone;
    for (int i = 0; i < 100; ++i) {
      gone = p.exec("SELECT count(*) FROM pg_stat_activity WHERE pid = " + pid).at(0);
      if (gone == "0") break;
      std::this_thread::sleep_for(20ms);
    }
    ASSERT_EQ(gone, "0");
    // pgdog only peeks at connections idle for more than 100 ms: that much time must pass.
    std::this_thread::sleep_for(200ms);
    r = c.exec("SELECT pg_backend_pid()::text, 'served'");
    ASSERT_TRUE(r.ok()) << "the client saw the dead server: " << r.describe() << "\n"
                        << pgdog.log();
    EXPECT_EQ(r.at(0, 1), "served");
    EXPECT_NE(r.at(0, 0), pid);
  }
  // A client logging in afterwards is fine too.
  auto d = pgdog.connect();
  ASSERT_TRUE(d.ok()) << d.connect_error().message;
  EXPECT_EQ(d.exec("SELECT 1").at(0), "1");
}

TEST_F(LifecycleTest, ServerKilledWhileIdleIsReplacedTransparently) {
  // The default tls_verify = "prefer": pgdog's server connections are TLS.
  killed_while_idle_scenario(PgdogConfig(), "true");
}

TEST_F(LifecycleTest, ServerKilledWhileIdleIsReplacedTransparentlyWithoutTls) {
  killed_while_idle_scenario(PgdogConfig().set_string("tls_verify", "disabled"), "false");
}

TEST_F(LifecycleTest, ServerLifetimeReplacesOldServers) {
  Pgdog pgdog(PgdogConfig().set("server_lifetime", "500").with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok());
  auto pid = [&] { return c.exec("SELECT pg_backend_pid()::text").at(0); };
  const std::string first = pid();
  std::this_thread::sleep_for(1s);
  const std::string second = pid();
  EXPECT_NE(second, first) << "server kept past server_lifetime";
  // A transaction longer than the lifetime keeps its server to the end.
  ASSERT_TRUE(c.exec("BEGIN").ok());
  const std::string in_tx = pid();
  std::this_thread::sleep_for(800ms);
  EXPECT_EQ(pid(), in_tx) << "server replaced in the middle of a transaction";
  ASSERT_TRUE(c.exec("COMMIT").ok());
  EXPECT_NE(pid(), in_tx) << "expired server reused after its transaction";
  // The old backends are gone from the primary.
  auto p = connect_primary();
  std::string left;
  for (int i = 0; i < 50; ++i) {
    left = p.exec("SELECT count(*) FROM pg_stat_activity WHERE pid IN (" + first + ", " + in_tx +
                  ")")
               .at(0);
    if (left == "0") break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(left, "0") << "expired server connections were not closed";
}

}  // namespace
}  // namespace pgdog::it
