// Mirrors changed at runtime (issue 18) against the real clusters: a mirror added by RELOAD or
// SIGHUP reaches the clients already connected from their next transaction on (every one of
// them, counted exactly, its rows on the mirror); a transaction open across the change is not
// mirrored, is reported by /mirrors and keeps the verdict from ready until it ends. A mirror
// removed by RELOAD is handed nothing more and drops nothing (what it was handed replays to the
// end), and SHOW MIRRORS, /metrics and /mirrors keep the same final counts.
#include <functional>
#include <set>

#include "mirror_support.hpp"

namespace pgdog::it::mirror {
namespace {

const Json* criterion(const Json& verdict, const std::string& name) {
  for (const auto& c : verdict["criteria"].array()) {
    if (c["name"].string() == name) return &c;
  }
  return nullptr;
}

// The value of a verdict's criterion; NaN when absent.
double criterion_value(const Json& verdict, const std::string& name) {
  const Json* c = criterion(verdict, name);
  return c != nullptr ? (*c)["value"].number() : std::nan("");
}

// pgdog serving `db` on the primary, with /metrics; with_mirror adds the mirror cluster's
// database and the [[mirroring]] entry, as an operator does to start a migration. A generous
// latency factor (a small, busy test machine); the readiness window judges only the test's
// own traffic when short.
PgdogConfig runtime_config(const std::string& db, int metrics_port, bool with_mirror,
                           int window_ms = 10000) {
  const auto& e = *env();
  PgdogConfig c;
  c.set_string("openmetrics_host", "127.0.0.1")
      .set("openmetrics_port", std::to_string(metrics_port))
      .set("mirror_readiness_window", std::to_string(window_ms))
      .set("mirror_readiness_latency_factor", "100.0")
      .with_users(user_toml("pgdog", db, std::string("pgdog")));
  std::string databases = database_toml(db, e.primary_port);
  if (with_mirror) {
    databases += database_toml(kCluster, e.mirror_port, db);
    c.with_extra("\n[[mirroring]]\nsource_db = " + toml_string(db) +
                 "\ndestination_db = " + toml_string(kCluster) + "\nqueue_length = 100000\n");
  }
  c.with_databases(databases);
  return c;
}

// The rows of t on a cluster, "id:who" in id order.
std::vector<std::string> rows_of(Conn& c) {
  return column(c, "SELECT id || ':' || who FROM t ORDER BY id");
}

std::string insert(int id, const std::string& who) {
  return "INSERT INTO t VALUES (" + std::to_string(id) + ", '" + who + "')";
}

// SHOW MIRRORS' `state` of the cluster's row; "" when it has none.
std::string mirror_state(const Pgdog& pgdog) {
  auto admin = pgdog.admin();
  auto r = admin.exec("SHOW MIRRORS", 10s);
  if (!r.ok()) return r.describe();
  std::size_t cluster = r.columns.size(), state = r.columns.size();
  for (std::size_t i = 0; i < r.columns.size(); ++i) {
    if (r.columns[i] == "cluster") cluster = i;
    if (r.columns[i] == "state") state = i;
  }
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    if (r.at(i, cluster) == kCluster) return r.at(i, state);
  }
  return "";
}

using Trigger = std::function<void(Pgdog&)>;

void admin_reload(Pgdog& pgdog) {
  auto admin = pgdog.admin();
  ASSERT_TRUE(admin.ok()) << admin.connect_error().message;
  auto r = admin.exec("RELOAD");
  ASSERT_TRUE(r.ok()) << r.describe();
}

void sighup(Pgdog& pgdog) {
  pgdog.reload();
  // Applied once SHOW MIRRORS lists the mirror.
  auto admin = pgdog.admin();
  ASSERT_TRUE(
      wait_until([&] { return admin_rows(admin, "SHOW MIRRORS", "cluster", kCluster) == 1; }, 10s))
      << "the mirror added by SIGHUP is not listed:\n"
      << pgdog.log();
}

class RuntimeMirrorTest : public MirrorTest {
 protected:
  void added_mirror_reaches_connected_clients(const std::string& db, const Trigger& reload);
};

void RuntimeMirrorTest::added_mirror_reaches_connected_clients(const std::string& db,
                                                               const Trigger& reload) {
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  on_both(db, {"CREATE TABLE t (id int PRIMARY KEY, who text NOT NULL)"});
  const int metrics_port = free_port();
  Pgdog pgdog(runtime_config(db, metrics_port, false));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, metrics_port);
  ASSERT_TRUE(watch.wait_metrics());

  // Connected before the mirror exists, as an application's pool is: `early` idle between
  // transactions, `spanning` inside one across the reload.
  auto early = client(pgdog, db);
  auto spanning = client(pgdog, db);
  for (int id = 1; id <= 3; ++id)
    ASSERT_NO_FATAL_FAILURE(must(early, insert(id, "before")));
  ASSERT_NO_FATAL_FAILURE(must(spanning, "BEGIN"));
  ASSERT_NO_FATAL_FAILURE(must(spanning, insert(100, "spanning")));

  pgdog.rewrite(runtime_config(db, metrics_port, true));
  ASSERT_NO_FATAL_FAILURE(reload(pgdog));
  auto verdict = watch.verdict();
  EXPECT_EQ(criterion_value(verdict, "every_session"), 1.0) << describe_verdict(verdict);
  EXPECT_FALSE(verdict["ready"].boolean()) << describe_verdict(verdict);

  // Every later transaction of the client connected before the reload, whatever its shape:
  // autocommit, a block, the extended protocol.
  long long mirrored = 0;
  for (int id = 11; id <= 15; ++id, ++mirrored) {
    ASSERT_NO_FATAL_FAILURE(must(early, insert(id, "early")));
  }
  ASSERT_NO_FATAL_FAILURE(must(early, "BEGIN"));
  ASSERT_NO_FATAL_FAILURE(must(early, insert(16, "early")));
  ASSERT_NO_FATAL_FAILURE(must(early, insert(17, "early")));
  ASSERT_NO_FATAL_FAILURE(must(early, "COMMIT"));
  ++mirrored;
  auto r = early.exec_params("INSERT INTO t VALUES ($1, 'early')", {std::string("18")});
  ASSERT_TRUE(r.ok()) << r.describe();
  ++mirrored;
  auto counts = watch.wait_drained(mirrored);
  EXPECT_EQ(counts.success, mirrored) << counts.describe();

  // Everything else passes now; the open transaction alone keeps the verdict from ready.
  verdict = watch.verdict();
  EXPECT_FALSE(verdict["ready"].boolean()) << describe_verdict(verdict);
  for (const auto& c : verdict["criteria"].array()) {
    EXPECT_EQ(c["ok"].boolean(), c["name"].string() != "every_session")
        << describe_verdict(verdict);
  }
  EXPECT_EQ(watch.ready(watch.metrics()), 0.0);

  // It ends unmirrored (it began before the mirror); the session's next ones are mirrored.
  ASSERT_NO_FATAL_FAILURE(must(spanning, "COMMIT"));
  ASSERT_NO_FATAL_FAILURE(must(spanning, insert(101, "spanning")));
  ASSERT_NO_FATAL_FAILURE(must(spanning, insert(102, "spanning")));
  mirrored += 2;
  counts = watch.wait_drained(mirrored);
  EXPECT_EQ(counts.success, mirrored) << counts.describe();
  EXPECT_EQ(counts.dropped, 0) << counts.describe();
  verdict = watch.wait_verdict(true);
  EXPECT_TRUE(verdict["ready"].boolean()) << describe_verdict(verdict);
  EXPECT_EQ(criterion_value(verdict, "every_session"), 0.0) << describe_verdict(verdict);
  EXPECT_EQ(watch.ready(watch.metrics()), 1.0);

  auto m = connect_mirror(db);
  EXPECT_EQ(rows_of(m), (std::vector<std::string>{"11:early", "12:early", "13:early", "14:early",
                                                  "15:early", "16:early", "17:early", "18:early",
                                                  "101:spanning", "102:spanning"}));
  auto p = connect_primary(db);
  EXPECT_EQ(rows_of(p).size(), 14U);
  EXPECT_NE(pgdog.log().find("mirror " + std::string(kCluster) + ": added (source " + db + ")"),
            std::string::npos)
      << pgdog.log();
}

TEST_F(RuntimeMirrorTest, MirrorAddedByReloadReachesConnectedClients) {
  added_mirror_reaches_connected_clients("mirror_it_add_reload", admin_reload);
}

TEST_F(RuntimeMirrorTest, MirrorAddedBySighupReachesConnectedClients) {
  added_mirror_reaches_connected_clients("mirror_it_add_sighup", sighup);
}

// Removed while the mirror is held up by a lock: what it was handed waits, then replays to the
// end (no drop); later transactions, of a session inside one across the reload too, are not
// handed at all; the removed mirror's final counts are the same in the three views.
TEST_F(RuntimeMirrorTest, RemovedMirrorDropsNothingAndTheThreeViewsAgree) {
  const std::string db = "mirror_it_remove";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  on_both(db, {"CREATE TABLE t (id int PRIMARY KEY, who text NOT NULL)"});
  const int metrics_port = free_port();
  // A window longer than the test: /mirrors' totals then cover all of it.
  Pgdog pgdog(runtime_config(db, metrics_port, true, 300000));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, metrics_port);
  ASSERT_TRUE(watch.wait_metrics());

  auto c = client(pgdog, db);
  for (int id = 1; id <= 5; ++id)
    ASSERT_NO_FATAL_FAILURE(must(c, insert(id, "mirrored")));
  watch.wait_drained(5);
  auto lock = connect_mirror(db);
  ASSERT_NO_FATAL_FAILURE(exec_on(lock, {"BEGIN", "LOCK TABLE t IN ACCESS EXCLUSIVE MODE"}));
  for (int id = 6; id <= 8; ++id)
    ASSERT_NO_FATAL_FAILURE(must(c, insert(id, "held")));
  auto held = watch.admin();
  ASSERT_EQ(held.handed, 8) << held.describe();
  ASSERT_EQ(held.depth, 3) << held.describe();
  auto spanning = client(pgdog, db);
  ASSERT_NO_FATAL_FAILURE(must(spanning, "BEGIN"));
  ASSERT_NO_FATAL_FAILURE(must(spanning, insert(100, "spanning")));

  pgdog.rewrite(runtime_config(db, metrics_port, false, 300000));
  ASSERT_NO_FATAL_FAILURE(admin_reload(pgdog));
  EXPECT_EQ(mirror_state(pgdog), "draining");
  ASSERT_NO_FATAL_FAILURE(must(spanning, "COMMIT"));
  ASSERT_NO_FATAL_FAILURE(must(spanning, insert(101, "after")));
  ASSERT_NO_FATAL_FAILURE(must(c, insert(9, "after")));
  auto late = client(pgdog, db);
  ASSERT_NO_FATAL_FAILURE(must(late, insert(10, "after")));
  held = watch.admin();
  EXPECT_EQ(held.handed, 8) << "handed after the removal: " << held.describe();
  EXPECT_EQ(held.depth, 3) << held.describe();

  ASSERT_NO_FATAL_FAILURE(exec_on(lock, {"COMMIT"}));
  const auto counts = watch.wait_drained(8);
  EXPECT_EQ(counts.success, 8) << counts.describe();
  EXPECT_EQ(counts.dropped, 0) << counts.describe();
  EXPECT_TRUE(wait_until([&] { return mirror_state(pgdog) == "removed"; }, 10s))
      << mirror_state(pgdog);
  const auto metrics = watch.counts(watch.metrics());
  EXPECT_EQ(metrics.success, 8) << metrics.describe();
  EXPECT_EQ(metrics.dropped, 0) << metrics.describe();
  const auto verdict = watch.verdict();
  EXPECT_EQ(verdict["totals"]["handed"].number(), 8.0) << describe_verdict(verdict);
  EXPECT_EQ(verdict["totals"]["success"].number(), 8.0) << describe_verdict(verdict);
  EXPECT_EQ(verdict["totals"]["dropped"].number(), 0.0) << describe_verdict(verdict);
  EXPECT_FALSE(verdict["ready"].boolean()) << describe_verdict(verdict);
  EXPECT_EQ(criterion_value(verdict, "configured"), 0.0) << describe_verdict(verdict);
  EXPECT_EQ(watch.ready(watch.metrics()), 0.0);

  auto m = connect_mirror(db);
  EXPECT_EQ(rows_of(m),
            (std::vector<std::string>{"1:mirrored", "2:mirrored", "3:mirrored", "4:mirrored",
                                      "5:mirrored", "6:held", "7:held", "8:held"}));
  const auto log = pgdog.log();
  EXPECT_EQ(log.find("dropped"), std::string::npos) << log;
  EXPECT_NE(log.find("mirror " + std::string(kCluster) + ": removed (source " + db +
                     "); the 3 transactions handed to it still replay"),
            std::string::npos)
      << log;
}

}  // namespace
}  // namespace pgdog::it::mirror
