// The admin console: database `admin` on the proxy port, credentials from [admin].
#include <algorithm>

#include "harness/harness.hpp"

namespace pgdog::it {
namespace {

class AdminTest : public IntegrationTest {};

// Index of a column, or -1.
int column(const Result& r, const std::string& name) {
  auto it = std::find(r.columns.begin(), r.columns.end(), name);
  return it == r.columns.end() ? -1 : static_cast<int>(it - r.columns.begin());
}

// The row whose `key` column equals value; nullptr when none.
const Row* find_row(const Result& r, const std::string& key, const std::string& value) {
  const int c = column(r, key);
  if (c < 0) return nullptr;
  for (const auto& row : r.rows) {
    if (row[static_cast<std::size_t>(c)] == value) return &row;
  }
  return nullptr;
}

std::string cell(const Result& r, const Row* row, const std::string& name) {
  const int c = column(r, name);
  if (row == nullptr || c < 0) return "<missing>";
  return row->at(static_cast<std::size_t>(c)).value_or("<NULL>");
}

TEST_F(AdminTest, ShowCommandsReturnRows) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto client = Conn::connect(pgdog.conninfo() + " application_name=it_admin_client");
  ASSERT_TRUE(client.ok()) << client.connect_error().message;
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(client.exec("SELECT " + std::to_string(i)).ok());
  ASSERT_TRUE(client.exec_all("BEGIN; SELECT 1; COMMIT").back().ok());

  auto admin = pgdog.admin();
  ASSERT_TRUE(admin.ok()) << admin.connect_error().message;

  auto pools = admin.exec("SHOW POOLS");
  ASSERT_TRUE(pools.ok()) << pools.describe();
  for (const char* col : {"database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle",
                          "pool_mode", "pool_size"}) {
    EXPECT_GE(column(pools, col), 0) << "SHOW POOLS has no column " << col;
  }
  const Row* pool = find_row(pools, "database", "pgdog");
  ASSERT_NE(pool, nullptr) << pools.describe();
  EXPECT_EQ(cell(pools, pool, "user"), "pgdog");
  EXPECT_EQ(cell(pools, pool, "pool_mode"), "transaction");
  EXPECT_EQ(cell(pools, pool, "pool_size"), "10");

  auto clients = admin.exec("SHOW CLIENTS");
  ASSERT_TRUE(clients.ok()) << clients.describe();
  const Row* me = find_row(clients, "application_name", "it_admin_client");
  ASSERT_NE(me, nullptr) << "our client is not in SHOW CLIENTS: " << clients.describe();
  EXPECT_EQ(cell(clients, me, "user"), "pgdog");
  EXPECT_EQ(cell(clients, me, "database"), "pgdog");
  EXPECT_GE(std::stoi(cell(clients, me, "queries")), 6);

  auto servers = admin.exec("SHOW SERVERS");
  ASSERT_TRUE(servers.ok()) << servers.describe();
  ASSERT_GE(servers.rows.size(), 1u);
  EXPECT_EQ(cell(servers, &servers.rows[0], "port"), std::to_string(e().primary_port));
  EXPECT_EQ(cell(servers, &servers.rows[0], "database"), "pgdog");

  auto stats = admin.exec("SHOW STATS");
  ASSERT_TRUE(stats.ok()) << stats.describe();
  const Row* st = find_row(stats, "database", "pgdog");
  ASSERT_NE(st, nullptr) << stats.describe();
  EXPECT_GE(std::stoll(cell(stats, st, "total_query_count")), 6);
  EXPECT_GE(std::stoll(cell(stats, st, "total_xact_count")), 6);
  EXPECT_GT(std::stoll(cell(stats, st, "total_received")), 0);
  EXPECT_GT(std::stoll(cell(stats, st, "total_sent")), 0);

  auto config = admin.exec("SHOW CONFIG");
  ASSERT_TRUE(config.ok()) << config.describe();
  EXPECT_EQ(cell(config, find_row(config, "key", "port"), "value"), std::to_string(pgdog.port()));
  EXPECT_EQ(cell(config, find_row(config, "key", "pooler_mode"), "value"), "transaction");
  EXPECT_EQ(cell(config, find_row(config, "key", "shutdown_timeout"), "value"), "2000");
  for (const auto& row : config.rows) {
    EXPECT_EQ(row[0].value_or("").find("password"), std::string::npos)
        << "SHOW CONFIG shows a password";
  }

  auto version = admin.exec("SHOW VERSION");
  ASSERT_TRUE(version.ok()) << version.describe();
  ASSERT_EQ(version.rows.size(), 1u);
  EXPECT_EQ(version.at(0).rfind("pgdog ", 0), 0u) << version.at(0);

  // Case and spacing do not matter, a trailing semicolon is fine.
  auto again = admin.exec("  show   pools ; ");
  EXPECT_TRUE(again.ok()) << again.describe();
  EXPECT_EQ(again.columns, pools.columns);
}

TEST_F(AdminTest, UnknownCommandIsAnErrorNotADisconnect) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto admin = pgdog.admin();
  ASSERT_TRUE(admin.ok()) << admin.connect_error().message;
  auto r = admin.exec("SHOW NONSENSE");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->severity, "ERROR");
  EXPECT_FALSE(r.error->sqlstate.empty());
  r = admin.exec("SELECT 1");
  EXPECT_FALSE(r.ok());
  // The extended protocol is refused, politely.
  r = admin.exec_params("SHOW POOLS", {});
  EXPECT_FALSE(r.ok());
  ASSERT_TRUE(admin.ok());
  r = admin.exec("SHOW VERSION");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.rows.size(), 1u);
}

TEST_F(AdminTest, WrongPasswordIs28P01) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto bad = Conn::connect(pgdog.admin_conninfo("not-the-admin-password"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.connect_error().sqlstate, "28P01") << bad.connect_error().message;
  // An application user's credentials do not open the console.
  auto app = pgdog.connect("pgdog", "pgdog", "admin");
  ASSERT_FALSE(app.ok());
  EXPECT_EQ(app.connect_error().sqlstate, "28P01") << app.connect_error().message;
}

TEST_F(AdminTest, ConsoleRefusesEveryoneWithoutAPassword) {
  Pgdog pgdog(PgdogConfig().without_admin_password());
  ASSERT_TRUE(pgdog.started());
  auto c = Conn::connect(pgdog.admin_conninfo("admin_secret"));
  EXPECT_FALSE(c.ok());
}

TEST_F(AdminTest, PsqlPrintsEveryShowCommand) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto client = pgdog.connect();
  ASSERT_TRUE(client.exec("SELECT 1").ok());
  const std::string psql = "PGPASSWORD=admin_secret psql -X -h 127.0.0.1 -p " +
                           std::to_string(pgdog.port()) + " -U admin -d admin -c ";
  for (const auto& [cmd, expect] :
       std::vector<std::pair<std::string, std::string>>{{"SHOW POOLS", "pool_mode"},
                                                        {"SHOW CLIENTS", "application_name"},
                                                        {"SHOW SERVERS", "remote_pid"},
                                                        {"SHOW STATS", "total_query_count"},
                                                        {"SHOW CONFIG", "checkout_timeout"},
                                                        {"SHOW VERSION", "pgdog"}}) {
    auto r = run_command(psql + shell_quote(cmd), 30s);
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.describe();
    EXPECT_NE(r.out.find(expect), std::string::npos) << cmd << ": " << r.describe();
  }
  auto r = run_command(psql + shell_quote("SHOW NONSENSE"), 30s);
  EXPECT_EQ(r.exit_code, 1) << r.describe();
}

}  // namespace
}  // namespace pgdog::it
