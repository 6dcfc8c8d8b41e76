// Transaction mode keeps a session's meaning: settings follow their client from server to
// server and never reach another client; state only a server holds pins its client to that
// server until it is gone, and the server is cleaned before anyone else gets it.
#include "harness/harness.hpp"

namespace pgdog::it {
namespace {

class SessionStateTest : public IntegrationTest {};

Conn must_connect(const Pgdog& pgdog, const std::string& extra = "") {
  auto c = Conn::connect(pgdog.conninfo() + " " + extra);
  EXPECT_TRUE(c.ok()) << c.connect_error().message;
  return c;
}

// The value of `column` in SHOW POOLS for database and user pgdog; "<missing>" without one.
std::string pool_value(const Pgdog& pgdog, const std::string& column) {
  auto admin = pgdog.admin();
  auto r = admin.exec("SHOW POOLS");
  for (std::size_t col = 0; col < r.columns.size(); ++col) {
    if (r.columns[col] != column) continue;
    for (std::size_t row = 0; row < r.rows.size(); ++row) {
      if (r.at(row, 0) == "pgdog" && r.at(row, 1) == "pgdog") return r.at(row, col);
    }
  }
  return "<missing>";
}

bool wait_pinned(const Pgdog& pgdog, const std::string& count) {
  return wait_until([&] { return pool_value(pgdog, "cl_pinned") == count; }, 10s);
}

std::string run_ok(Conn& c, const std::string& sql) {
  auto r = c.exec(sql);
  EXPECT_TRUE(r.ok()) << sql << ": " << r.describe();
  return r.at(0);
}

// With a pool of two, runs `sql` for `client` once on each server, in a known order: two
// holders take both servers in transactions and give back one at a time. `sql` returns
// pg_backend_pid() in its first column; the rows of both runs come back.
std::vector<Result> on_each_server(Conn& client, Conn& h1, Conn& h2, const std::string& sql) {
  std::vector<Result> out;
  run_ok(h1, "BEGIN");
  const std::string p1 = run_ok(h1, "SELECT pg_backend_pid()");
  run_ok(h2, "BEGIN");
  const std::string p2 = run_ok(h2, "SELECT pg_backend_pid()");
  EXPECT_NE(p1, p2);
  run_ok(h1, "COMMIT");
  out.push_back(client.exec(sql));
  EXPECT_EQ(out.back().at(0), p1) << out.back().describe();
  run_ok(h1, "BEGIN");
  EXPECT_EQ(run_ok(h1, "SELECT pg_backend_pid()"), p1);
  run_ok(h2, "COMMIT");
  out.push_back(client.exec(sql));
  EXPECT_EQ(out.back().at(0), p2) << out.back().describe();
  run_ok(h1, "COMMIT");
  return out;
}

// What a fresh session of the primary has, asked of the primary itself.
std::string server_default(const std::string& setting) {
  auto c = connect_primary();
  return c.exec("SELECT current_setting('" + setting + "')").at(0);
}

constexpr const char* kSettings =
    "SELECT pg_backend_pid(), current_setting('work_mem'), current_setting('search_path'), "
    "current_setting('statement_timeout')";

TEST_F(SessionStateTest, ASetIsNeverSeenByAnotherClient) {
  Pgdog pgdog(PgdogConfig().with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  const std::string work_mem = server_default("work_mem");
  const std::string search_path = server_default("search_path");
  ASSERT_NE(work_mem, "7MB");
  auto a = must_connect(pgdog);
  auto b = must_connect(pgdog);
  run_ok(a, "SET work_mem = '7MB'");
  run_ok(a, "SET search_path = it_nowhere, public");
  run_ok(b, "SET statement_timeout = '4s'");
  for (int i = 0; i < 5; ++i) {
    auto ra = a.exec(kSettings);
    auto rb = b.exec(kSettings);
    ASSERT_TRUE(ra.ok() && rb.ok()) << ra.describe() << rb.describe();
    EXPECT_EQ(ra.at(0, 0), rb.at(0, 0)) << "pool_size 1: one server for both";
    EXPECT_EQ(ra.at(0, 1), "7MB");
    EXPECT_EQ(ra.at(0, 2), "it_nowhere, public");
    EXPECT_EQ(ra.at(0, 3), "0");
    EXPECT_EQ(rb.at(0, 1), work_mem);
    EXPECT_EQ(rb.at(0, 2), search_path);
    EXPECT_EQ(rb.at(0, 3), "4s");
  }
  // Both set the same parameter, each to its own value, on the one server they share.
  run_ok(b, "SET work_mem = '5MB'");
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(run_ok(a, "SHOW work_mem"), "7MB") << i;
    EXPECT_EQ(run_ok(b, "SHOW work_mem"), "5MB") << i;
    EXPECT_EQ(run_ok(a, "SHOW work_mem"), "7MB") << i;
  }
  // A client that comes later gets the server as a new session would.
  a.close();
  b.close();
  auto c = must_connect(pgdog);
  auto rc = c.exec(kSettings);
  EXPECT_EQ(rc.at(0, 1), work_mem);
  EXPECT_EQ(rc.at(0, 2), search_path);
  EXPECT_EQ(rc.at(0, 3), "0");
}

TEST_F(SessionStateTest, ASetFollowsItsClientToEveryServer) {
  Pgdog pgdog(PgdogConfig().with_pool_size(2));
  ASSERT_TRUE(pgdog.started());
  const std::string work_mem = server_default("work_mem");
  auto a = must_connect(pgdog);
  auto h1 = must_connect(pgdog);
  auto h2 = must_connect(pgdog);
  auto other = must_connect(pgdog);
  run_ok(a, "SET work_mem = '7MB'");
  run_ok(a, "SET statement_timeout = 6000");
  for (const auto& r : on_each_server(a, h1, h2, kSettings)) {
    EXPECT_EQ(r.at(0, 1), "7MB") << "on server " << r.at(0, 0);
    EXPECT_EQ(r.at(0, 3), "6s") << "on server " << r.at(0, 0);
  }
  for (const auto& r : on_each_server(other, h1, h2, kSettings)) {
    EXPECT_EQ(r.at(0, 1), work_mem) << "on server " << r.at(0, 0);
    EXPECT_EQ(r.at(0, 3), "0") << "on server " << r.at(0, 0);
  }
  // The extended protocol sees the same.
  auto r = a.exec_params("SELECT current_setting('work_mem')", {});
  EXPECT_EQ(r.at(0), "7MB") << r.describe();
}

TEST_F(SessionStateTest, ASetInsideADoBlockIsTheClientsToo) {
  // A DO block's SET lasts for the session as a plain one does (PostgreSQL's regression suite:
  // brin_bloom's planner settings reached brin_multi, which shares its group of the schedule).
  Pgdog pgdog(PgdogConfig().with_pool_size(2));
  ASSERT_TRUE(pgdog.started());
  const std::string work_mem = server_default("work_mem");
  ASSERT_NE(work_mem, "9MB");
  auto a = must_connect(pgdog);
  auto h1 = must_connect(pgdog);
  auto h2 = must_connect(pgdog);
  auto other = must_connect(pgdog);
  run_ok(a, "DO $$ BEGIN SET work_mem = '9MB'; SET enable_bitmapscan = off; END $$");
  for (const auto& r : on_each_server(a, h1, h2, kSettings)) {
    EXPECT_EQ(r.at(0, 1), "9MB") << "on server " << r.at(0, 0);
  }
  for (const auto& r : on_each_server(other, h1, h2, kSettings)) {
    EXPECT_EQ(r.at(0, 1), work_mem) << "on server " << r.at(0, 0);
  }
  EXPECT_EQ(run_ok(other, "SHOW enable_bitmapscan"), "on");
  EXPECT_EQ(run_ok(a, "SHOW enable_bitmapscan"), "off");
  run_ok(a, "RESET ALL");
  EXPECT_EQ(run_ok(a, "SHOW work_mem"), work_mem);
}

TEST_F(SessionStateTest, TransactionsDecideWhatASetLeaves) {
  Pgdog pgdog(PgdogConfig().with_pool_size(2));
  ASSERT_TRUE(pgdog.started());
  auto a = must_connect(pgdog);
  auto h1 = must_connect(pgdog);
  auto h2 = must_connect(pgdog);
  const std::string query = "SELECT pg_backend_pid(), current_setting('work_mem')";
  auto expect_everywhere = [&](const std::string& value, const std::string& after) {
    for (const auto& r : on_each_server(a, h1, h2, query)) {
      EXPECT_EQ(r.at(0, 1), value) << after << ", on server " << r.at(0, 0);
    }
  };
  run_ok(a, "SET work_mem = '5MB'");
  expect_everywhere("5MB", "SET outside a transaction");
  ASSERT_EQ(a.exec_all("BEGIN; SET work_mem = '9MB'; ROLLBACK").size(), 3U);
  expect_everywhere("5MB", "SET rolled back");
  auto local = a.exec_all("BEGIN; SET LOCAL work_mem = '11MB'; SHOW work_mem; COMMIT");
  ASSERT_EQ(local.size(), 4U);
  EXPECT_EQ(local[2].at(0), "11MB") << "SET LOCAL holds inside its transaction";
  expect_everywhere("5MB", "SET LOCAL committed");
  ASSERT_EQ(a.exec_all("BEGIN; SET work_mem = '13MB'; COMMIT").size(), 3U);
  expect_everywhere("13MB", "SET committed in a block");
  // The rest of a query string is skipped after an error: COMMIT comes on its own.
  ASSERT_EQ(a.exec_all("BEGIN; SET work_mem = '15MB'; SELECT 1/0").size(), 3U);
  EXPECT_EQ(a.exec("COMMIT").tag, "ROLLBACK");
  expect_everywhere("13MB", "SET in a failed block");
  run_ok(a, "RESET work_mem");
  expect_everywhere(server_default("work_mem"), "RESET");
}

TEST_F(SessionStateTest, ResetReturnsToTheStartupValueInBothModes) {
  for (const std::string mode : {"transaction", "session"}) {
    SCOPED_TRACE(mode);
    Pgdog pgdog(PgdogConfig().set_string("pooler_mode", mode).with_pool_size(2));
    ASSERT_TRUE(pgdog.started());
    auto a = must_connect(pgdog, "options='-c DateStyle=SQL,DMY -c work_mem=3MB'");
    ASSERT_EQ(run_ok(a, "SHOW DateStyle"), "SQL, DMY");
    for (const std::string reset :
         {"RESET DateStyle", "SET DateStyle TO DEFAULT", "RESET ALL", "DISCARD ALL"}) {
      run_ok(a, "SET DateStyle = 'German'");
      run_ok(a, "SET work_mem = '9MB'");
      ASSERT_EQ(a.parameter("DateStyle"), "German, DMY");
      run_ok(a, reset);
      EXPECT_EQ(run_ok(a, "SHOW DateStyle"), "SQL, DMY") << reset;
      EXPECT_EQ(a.parameter("DateStyle"), "SQL, DMY") << reset;
      if (reset != "RESET DateStyle" && reset != "SET DateStyle TO DEFAULT") {
        EXPECT_EQ(run_ok(a, "SHOW work_mem"), "3MB") << reset;
      }
      // Another client with no startup DateStyle sees the server's default.
      auto b = must_connect(pgdog);
      EXPECT_EQ(run_ok(b, "SHOW DateStyle"), server_default("DateStyle")) << reset;
    }
  }
}

// pgdog keeps one copy of each distinct set of startup parameters for all the clients that sent
// it: each still changes and resets its own settings, and a client that sent other ones gets
// its own values back.
TEST_F(SessionStateTest, ClientsThatSentTheSameStartupParametersResetAlone) {
  Pgdog pgdog(PgdogConfig().with_pool_size(2));
  ASSERT_TRUE(pgdog.started());
  auto c = must_connect(pgdog, "options='-c DateStyle=Postgres,MDY'");
  {
    auto a = must_connect(pgdog, "options='-c DateStyle=SQL,DMY'");
    auto b = must_connect(pgdog, "options='-c DateStyle=SQL,DMY'");
    run_ok(a, "SET DateStyle = 'German'");
    EXPECT_EQ(run_ok(b, "SHOW DateStyle"), "SQL, DMY");
    run_ok(b, "SET DateStyle = 'ISO, YMD'");
    run_ok(c, "SET DateStyle = 'ISO, YMD'");
    run_ok(a, "RESET DateStyle");
    EXPECT_EQ(run_ok(a, "SHOW DateStyle"), "SQL, DMY");
    EXPECT_EQ(run_ok(b, "SHOW DateStyle"), "ISO, YMD");
    run_ok(b, "RESET ALL");
    EXPECT_EQ(run_ok(b, "SHOW DateStyle"), "SQL, DMY");
  }
  run_ok(c, "RESET DateStyle");
  EXPECT_EQ(run_ok(c, "SHOW DateStyle"), "Postgres, MDY");
  EXPECT_EQ(c.parameter("DateStyle"), "Postgres, MDY");
  // After the first two left, a new client with their startup parameters gets them back too.
  auto d = must_connect(pgdog, "options='-c DateStyle=SQL,DMY'");
  run_ok(d, "SET DateStyle = 'German'");
  run_ok(d, "RESET DateStyle");
  EXPECT_EQ(run_ok(d, "SHOW DateStyle"), "SQL, DMY");
}

TEST_F(SessionStateTest, PinnedClientKeepsItsStateWhileOthersPool) {
  Pgdog pgdog(PgdogConfig().with_pool_size(2));
  ASSERT_TRUE(pgdog.started());
  auto a = must_connect(pgdog);
  ASSERT_EQ(pool_value(pgdog, "cl_pinned"), "0");
  run_ok(a, "CREATE TEMP TABLE it_pinned (x int)");
  EXPECT_TRUE(wait_pinned(pgdog, "1")) << pgdog.admin_snapshot();
  const std::string pid = run_ok(a, "SELECT pg_backend_pid()");
  run_ok(a, "SELECT pg_advisory_lock(4242)");
  run_ok(a, "LISTEN it_pinned_channel");

  // The rest of the pool keeps serving everybody else, one transaction after another.
  auto b = must_connect(pgdog);
  auto c = must_connect(pgdog);
  for (int i = 0; i < 20; ++i) {
    EXPECT_NE(run_ok(b, "SELECT pg_backend_pid()"), pid);
    EXPECT_NE(run_ok(c, "SELECT pg_backend_pid()"), pid);
    ASSERT_EQ(run_ok(a, "INSERT INTO it_pinned VALUES (" + std::to_string(i) + ") RETURNING " +
                            "pg_backend_pid()"),
              pid);
  }
  EXPECT_EQ(run_ok(a, "SELECT count(*) FROM it_pinned"), "20");
  EXPECT_EQ(run_ok(b, "SELECT pg_try_advisory_lock(4242)"), "f") << "the pinned client holds it";
  run_ok(b, "NOTIFY it_pinned_channel, 'hello'");
  run_ok(a, "SELECT 1");
  auto n = a.wait_notification(5s);
  ASSERT_TRUE(n.has_value()) << "LISTEN did not stay with its client";
  EXPECT_EQ(n->payload, "hello");
  const std::string pins = pool_value(pgdog, "pins");
  EXPECT_NE(pins.find("temp_table=1"), std::string::npos) << pins;
  EXPECT_NE(pins.find("advisory_lock=1"), std::string::npos) << pins;
  EXPECT_NE(pins.find("listen=1"), std::string::npos) << pins;

  // Leaving without cleaning up: nothing of it reaches the next client of that server.
  a.close();
  EXPECT_TRUE(wait_pinned(pgdog, "0")) << pgdog.admin_snapshot();
  auto h = must_connect(pgdog);
  const std::string query =
      "SELECT pg_backend_pid(), to_regclass('pg_temp.it_pinned') IS NULL, "
      "(SELECT count(*) FROM pg_listening_channels()), "
      "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242)";
  for (const auto& r : on_each_server(b, c, h, query)) {
    EXPECT_EQ(r.at(0, 1), "t") << "temp table left on server " << r.at(0, 0);
    EXPECT_EQ(r.at(0, 2), "0") << "listener left on server " << r.at(0, 0);
    EXPECT_EQ(r.at(0, 3), "0") << "advisory lock left behind";
  }
}

TEST_F(SessionStateTest, StateGoneMeansUnpinned) {
  Pgdog pgdog(PgdogConfig().with_pool_size(2));
  ASSERT_TRUE(pgdog.started());
  auto a = must_connect(pgdog);
  auto h1 = must_connect(pgdog);
  auto h2 = must_connect(pgdog);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"CREATE TEMP TABLE it_gone (x int)", "DROP TABLE it_gone"},
      {"SELECT pg_advisory_lock(77)", "SELECT pg_advisory_unlock(77)"},
      {"LISTEN it_gone_channel", "UNLISTEN *"},
      {"PREPARE it_gone_plan AS SELECT 1", "DEALLOCATE it_gone_plan"},
  };
  for (const auto& [create, drop] : cases) {
    run_ok(a, create);
    EXPECT_TRUE(wait_pinned(pgdog, "1")) << create << pgdog.admin_snapshot();
    run_ok(a, drop);
    EXPECT_TRUE(wait_pinned(pgdog, "0")) << drop << pgdog.admin_snapshot();
    // Unpinned: the client's transactions run wherever a server is free.
    on_each_server(a, h1, h2, "SELECT pg_backend_pid()");
  }
  // A temporary table dropped at commit pins nothing.
  ASSERT_EQ(a.exec_all("BEGIN; CREATE TEMP TABLE it_commit (x int) ON COMMIT DROP; COMMIT").size(),
            3U);
  EXPECT_EQ(pool_value(pgdog, "cl_pinned"), "0");
  on_each_server(a, h1, h2, "SELECT pg_backend_pid()");
}

TEST_F(SessionStateTest, PoolPinningOffPinsNothing) {
  Pgdog pgdog(PgdogConfig().set_string("pool_pinning", "off").with_pool_size(2));
  ASSERT_TRUE(pgdog.started());
  auto a = must_connect(pgdog);
  auto h1 = must_connect(pgdog);
  auto h2 = must_connect(pgdog);
  run_ok(a, "CREATE TEMP TABLE it_off (x int)");
  // As in PgBouncer: the table stays where it was made, and the client moves on without it.
  auto rows = on_each_server(a, h1, h2,
                             "SELECT pg_backend_pid(), to_regclass('pg_temp.it_off') IS NULL");
  ASSERT_EQ(rows.size(), 2U);
  EXPECT_NE(rows[0].at(0, 1), rows[1].at(0, 1)) << "one server has the table, one does not";
  EXPECT_EQ(pool_value(pgdog, "cl_pinned"), "0");
  EXPECT_EQ(pool_value(pgdog, "pins"), "");
}

}  // namespace
}  // namespace pgdog::it
