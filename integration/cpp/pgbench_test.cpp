// pgbench through pgdog: initialisation (COPY, DDL, VACUUM), then each query protocol with
// several clients; zero failed transactions.
#include <regex>

#include "harness/harness.hpp"

namespace pgdog::it {
namespace {

// pgbench's tables live in their own database so no other test sees them.
constexpr const char* kBenchDb = "pgdog_it_bench";

std::string pgbench(int port, const std::string& args) {
  return "PGPASSWORD=pgdog pgbench -h 127.0.0.1 -p " + std::to_string(port) + " -U pgdog " + args +
         " " + kBenchDb;
}

// pool_size 0: the default.
PgdogConfig bench_config(const std::string& mode, int pool_size = 0) {
  const std::string pool = pool_size > 0 ? "pool_size = " + std::to_string(pool_size) : "";
  return PgdogConfig()
      .set_string("pooler_mode", mode)
      .with_databases(database_toml("pgdog", env()->primary_port) +
                      database_toml(kBenchDb, env()->primary_port, "", pool))
      .with_users(user_toml("pgdog", "pgdog", std::string("pgdog")) +
                  user_toml("pgdog", kBenchDb, std::string("pgdog")));
}

long long match_number(const std::string& text, const std::string& pattern) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex(pattern))) return -1;
  return std::stoll(m[1]);
}

class PgbenchTest : public IntegrationTest {
 protected:
  // The run tests do not depend on InitThroughPgdog having run first: without the tables they
  // initialise straight on the primary.
  void ensure_initialized() {
    auto c = connect_primary(kBenchDb);
    if (c.ok() && c.exec("SELECT count(*) FROM pgbench_accounts").at(0) == "100000") return;
    ASSERT_EQ(recreate_database(kBenchDb), "");
    auto r = run_command(pgbench(e().primary_port, "-i -q -s 1"), 120s);
    ASSERT_EQ(r.exit_code, 0) << r.describe();
  }

  void run_bench(const std::string& mode, const std::string& protocol,
                 const std::string& clients = "-c 8 -j 2", int pool_size = 0) {
    ensure_initialized();
    if (HasFatalFailure()) return;
    const long long before = history_rows();
    Pgdog pgdog(bench_config(mode, pool_size));
    ASSERT_TRUE(pgdog.started());
    auto r = run_command(
        pgbench(pgdog.port(), "-n --protocol=" + protocol + " " + clients + " -T 5"), 90s);
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    const long long processed =
        match_number(r.out, R"(number of transactions actually processed: (\d+))");
    const long long failed = match_number(r.out, R"(number of failed transactions: (\d+))");
    EXPECT_GT(processed, 0) << r.describe();
    EXPECT_EQ(failed, 0) << r.describe();
    EXPECT_NE(r.out.find("query mode: " + protocol), std::string::npos) << r.describe();
    EXPECT_EQ(r.err.find("error"), std::string::npos) << r.describe();
    std::cout << "pgbench --protocol=" << protocol << " (" << mode << " mode): " << processed
              << " transactions\n";

    // Each TPC-B transaction inserts one history row: the primary saw exactly what pgbench
    // counted (-T ends between transactions).
    EXPECT_EQ(history_rows() - before, processed);
  }

  static long long history_rows() {
    auto c = connect_primary(kBenchDb);
    auto r = c.exec("SELECT count(*) FROM pgbench_history");
    return r.ok() ? std::stoll(r.at(0)) : -1;
  }
};

TEST_F(PgbenchTest, InitThroughPgdog) {
  ASSERT_EQ(recreate_database(kBenchDb), "");
  Pgdog pgdog(bench_config("transaction"));
  ASSERT_TRUE(pgdog.started());
  auto r = run_command(pgbench(pgdog.port(), "-i -s 1"), 120s);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("done in"), std::string::npos) << r.describe();

  auto c = connect_primary(kBenchDb);
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  auto counts = c.exec(
      "SELECT (SELECT count(*) FROM pgbench_branches), (SELECT count(*) FROM pgbench_tellers), "
      "(SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history), "
      "(SELECT sum(aid) FROM pgbench_accounts)");
  ASSERT_TRUE(counts.ok()) << counts.describe();
  EXPECT_EQ(counts.at(0, 0), "1");
  EXPECT_EQ(counts.at(0, 1), "10");
  EXPECT_EQ(counts.at(0, 2), "100000");
  EXPECT_EQ(counts.at(0, 3), "0");
  EXPECT_EQ(counts.at(0, 4), "5000050000");
}

TEST_F(PgbenchTest, SimpleProtocolTransactionMode) {
  run_bench("transaction", "simple");
}

TEST_F(PgbenchTest, ExtendedProtocolTransactionMode) {
  run_bench("transaction", "extended");
}

TEST_F(PgbenchTest, PreparedProtocolSessionMode) {
  run_bench("session", "prepared");
}

// pgbench 15 prepares each statement with a blocking PQprepare while the other clients of its
// thread hold every server inside their transactions: the prepare must not need a server.
TEST_F(PgbenchTest, PreparedProtocolTransactionModeMoreClientsThanServers) {
  run_bench("transaction", "prepared", "-c 16 -j 2", 4);
}

}  // namespace
}  // namespace pgdog::it
