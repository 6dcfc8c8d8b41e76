// The mirroring engine against the real primary and mirror clusters (issue 4): a healthy mirror
// under pgbench, a stopped mirror, a stalled mirror, a table missing on the mirror, a tiny queue,
// a mirror restarted mid-run, exposure sampling and what the primary did not commit. Every test
// counts the transactions it commits and ends by checking that exactly those were handed to the
// mirror and ended (success + failure + dropped, queue empty), on the admin console and on
// /metrics (MirrorWatch::wait_drained), with the outcome of each. Each runs in its own
// database, created on both clusters and dropped at the end.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "mirror_support.hpp"

namespace pgdog::it::mirror {
namespace {

using Clock = std::chrono::steady_clock;

long long ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<Millis>(Clock::now() - t).count();
}

// 1. Healthy mirror, exposure 1.0: TPC-B through pgdog; once the queue drained the mirror holds
// exactly the primary's pgbench data, and every committed transaction succeeded on the mirror.
TEST_F(MirrorTest, HealthyMirrorTpcbTablesMatch) {
  const std::string db = "mirror_it_healthy";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  for (int port : {e().primary_port, e().mirror_port}) {
    auto r = pgbench(port, "-i -q -s 1", db);
    ASSERT_EQ(r.exit_code, 0) << r.describe();
  }
  // level dml: pgbench's own housekeeping reads (scale and partition lookups on its main
  // connection) are not mirrored, so every mirrored request is one TPC-B transaction.
  MirrorSetup setup{db, "queue_length = 100000\nlevel = \"dml\"\n"};
  // A readiness window shorter than the run, and a latency factor generous enough for a busy
  // test machine.
  Pgdog pgdog(mirror_config(setup)
                  .set("mirror_readiness_window", "10000")
                  .set("mirror_readiness_latency_factor", "100.0"));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, setup.metrics_port);
  ASSERT_TRUE(watch.wait_metrics());

  const auto began = Clock::now();
  BackgroundScraper scraper(pgdog, setup.metrics_port);
  auto r = pgbench(pgdog.port(), "-n -c 8 -j 2 -T 20", db, 120s);
  EXPECT_GT(scraper.finish(), 10) << "the counters were not read during the run";
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const long long processed = pgbench_processed(r.out);
  ASSERT_GT(processed, 0) << r.describe();
  EXPECT_EQ(pgbench_failed(r.out), 0) << r.describe();
  const auto bench_ms = ms_since(began);

  const auto c = watch.wait_drained(processed, 120s);
  std::cout << "TPC-B: " << processed << " transactions in " << bench_ms << " ms; drained "
            << ms_since(began) - bench_ms << " ms later; " << c.describe() << "\n";
  EXPECT_EQ(c.handed, processed) << c.describe();
  EXPECT_EQ(c.success, processed) << c.describe();
  EXPECT_EQ(c.failure, 0) << c.describe();
  EXPECT_EQ(c.dropped, 0) << c.describe();
  const auto d = watch.divergences(watch.metrics());
  EXPECT_EQ(d.total(), 0) << "row_count " << d.row_count << ", result " << d.result << ", error "
                          << d.error;
  // The built-in TPC-B under compare = "tags" (the default) is a clean run: a ready verdict.
  const auto verdict = watch.wait_verdict(true);
  EXPECT_TRUE(verdict["ready"].boolean()) << describe_verdict(verdict);
  EXPECT_EQ(watch.ready(watch.metrics()), 1.0);

  auto p = connect_primary(db);
  auto m = connect_mirror(db);
  const auto primary = bench_state(p);
  const auto mirror = bench_state(m);
  EXPECT_EQ(primary.history, std::to_string(processed)) << primary.describe();
  EXPECT_EQ(mirror, primary) << "mirror:  " << mirror.describe()
                             << "\nprimary: " << primary.describe();
}

// 2. Mirror stopped: every request fails fast as `connection`; the clients see nothing.
TEST_F(MirrorTest, MirrorStoppedEveryRequestFailsAsConnection) {
  ASSERT_EQ(MirrorControl::recorded_port(), e().mirror_port) << "ports.env disagrees with MIRROR_PORT";
  const std::string db = "mirror_it_stopped";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  on_both(db, {"CREATE TABLE t (id bigserial PRIMARY KEY, client int)"});
  MirrorSetup setup{db, "queue_length = 100000\n"};
  Pgdog pgdog(mirror_config(setup));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, setup.metrics_port);
  ASSERT_TRUE(watch.wait_metrics());

  // The mirror path works before the stop.
  {
    auto c = client(pgdog, db);
    ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO t (client) VALUES (-1)"));
  }
  auto before = watch.wait_drained(1);
  ASSERT_EQ(before.success, 1) << before.describe();

  MirrorControl mirror;
  auto stopped = mirror.stop();
  ASSERT_EQ(stopped.exit_code, 0) << stopped.describe();
  ASSERT_FALSE(port_open(e().mirror_port)) << "the mirror still listens after the stop";

  TempDir tmp;
  const auto script = tmp.write("insert.sql", "INSERT INTO t (client) VALUES (:client_id);\n");
  const auto began = Clock::now();
  BackgroundScraper scraper(pgdog, setup.metrics_port);
  auto r = pgbench(pgdog.port(), "-n -f " + script + " -c 4 -j 2 -t 100", db, 120s);
  scraper.finish();
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(pgbench_processed(r.out), 400) << r.describe();
  EXPECT_EQ(pgbench_failed(r.out), 0) << r.describe();
  EXPECT_EQ(r.err.find("error"), std::string::npos) << r.describe();

  const auto c = watch.wait_drained(401, 60s);
  const auto took = ms_since(began);
  std::cout << "400 transactions with the mirror down, drained in " << took << " ms: "
            << c.describe() << "\n";
  EXPECT_EQ(c.handed, 401) << c.describe();
  EXPECT_EQ(c.success, 1) << c.describe();
  EXPECT_EQ(c.connection, 400) << c.describe();
  EXPECT_EQ(c.timeout, 0) << c.describe();
  EXPECT_EQ(c.query, 0) << c.describe();
  EXPECT_EQ(c.dropped, 0) << c.describe();
  auto p = connect_primary(db);
  EXPECT_EQ(scalar(p, "SELECT count(*) FROM t"), 401);

  // Failures are logged with the cluster and the reason, at most once a second.
  const auto log = pgdog.log();
  const int lines = count_lines(log, "transaction failed");
  EXPECT_GE(lines, 1) << log;
  EXPECT_LE(lines, took / 1000 + 2) << "the failure log is not rate-limited:\n" << log;
  EXPECT_GE(count_lines(log, "mirror " + std::string(kCluster) + ": transaction failed (connection)"),
            1)
      << log;

  auto started = mirror.start();
  ASSERT_EQ(started.exit_code, 0) << started.describe();
  ASSERT_EQ(MirrorControl::recorded_port(), e().mirror_port);
  auto m = connect_mirror(db);
  EXPECT_EQ(scalar(m, "SELECT count(*) FROM t"), 1);
}

// Backends of the mirror waiting for a lock in the current database.
long long lock_waiters(Conn& mirror_monitor) {
  return scalar(mirror_monitor,
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE NOT l.granted AND a.datname = current_database()");
}

// 3. Mirror stalled by a lock: each replay fails as `timeout` after mirror_timeout, is
// cancelled (nothing it did reaches the mirror), and later requests succeed once the lock is gone.
TEST_F(MirrorTest, MirrorStalledRequestsTimeOut) {
  const std::string db = "mirror_it_stalled";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  on_both(db, {"CREATE TABLE t (id int PRIMARY KEY)"});
  MirrorSetup setup{db, "queue_length = 100000\n"};
  Pgdog pgdog(mirror_config(setup).set("mirror_timeout", "500"));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, setup.metrics_port);
  ASSERT_TRUE(watch.wait_metrics());

  auto locker = connect_mirror(db);
  ASSERT_NO_FATAL_FAILURE(must(locker, "BEGIN"));
  ASSERT_NO_FATAL_FAILURE(must(locker, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE"));
  auto monitor = connect_mirror(db);

  constexpr int kStalled = 4;
  auto c = client(pgdog, db);
  const auto began = Clock::now();
  for (int id = 1; id <= kStalled; ++id) {
    const auto t = Clock::now();
    ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO t VALUES (" + std::to_string(id) + ")"));
    // The client never waits on the mirror.
    EXPECT_LT(ms_since(t), 450) << "a client write waited on the stalled mirror";
  }
  const auto stalled = watch.wait_drained(kStalled, 20s);
  const auto took = ms_since(began);
  std::cout << kStalled << " stalled requests ended in " << took << " ms: " << stalled.describe()
            << "\n";
  EXPECT_EQ(stalled.timeout, kStalled) << stalled.describe();
  EXPECT_EQ(stalled.success, 0) << stalled.describe();
  EXPECT_EQ(stalled.connection, 0) << stalled.describe();
  EXPECT_EQ(stalled.query, 0) << stalled.describe();
  EXPECT_EQ(stalled.dropped, 0) << stalled.describe();
  // One client's requests replay one after another, each given mirror_timeout.
  EXPECT_GE(took, kStalled * 500 - 100);

  // The timed-out replays were cancelled: nobody on the mirror waits for the lock any more.
  long long waiting = -1;
  for (auto deadline = Clock::now() + 5s; Clock::now() < deadline;) {
    waiting = lock_waiters(monitor);
    if (waiting == 0) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(waiting, 0) << "timed-out replays are still waiting on the mirror (not cancelled)";
  // No replay waits for the lock any more (above), so none can apply after its release; the
  // rows after the next three requests show it.
  ASSERT_NO_FATAL_FAILURE(must(locker, "COMMIT"));

  for (int id = 101; id <= 103; ++id) {
    ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO t VALUES (" + std::to_string(id) + ")"));
  }
  const auto after = watch.wait_drained(kStalled + 3, 20s);
  EXPECT_EQ(after.success, 3) << after.describe();
  EXPECT_EQ(after.timeout, kStalled) << after.describe();
  EXPECT_EQ(after.failure, kStalled) << after.describe();
  EXPECT_EQ(after.dropped, 0) << after.describe();
  EXPECT_EQ(column(monitor, "SELECT id FROM t ORDER BY id"),
            (std::vector<std::string>{"101", "102", "103"}))
      << "a timed-out replay was applied on the mirror after the lock was released";
  const auto log = pgdog.log();
  EXPECT_GE(count_lines(log, "transaction failed (timeout)"), 1) << log;
}

// 4. A table missing on the mirror: exactly the requests touching it fail, as `query`, each one
// an `error` divergence; the others succeed, and the failed transaction leaves nothing behind.
TEST_F(MirrorTest, TableMissingOnMirrorFailsExactlyItsStatements) {
  const std::string db = "mirror_it_missing";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  on_both(db, {"CREATE TABLE present (id int PRIMARY KEY)"});
  auto p = connect_primary(db);
  exec_on(p, {"CREATE TABLE primary_only (id int PRIMARY KEY)"});
  MirrorSetup setup{db, "queue_length = 100000\n"};
  Pgdog pgdog(mirror_config(setup));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, setup.metrics_port);
  ASSERT_TRUE(watch.wait_metrics());

  auto c = client(pgdog, db);
  long long ok = 0;
  long long touching = 0;
  for (int i = 1; i <= 10; ++i) {
    ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO present VALUES (" + std::to_string(i) + ")"));
    ++ok;
    if (i % 3 == 0) {
      ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO primary_only VALUES (" + std::to_string(i) + ")"));
      ++touching;
    }
  }
  // A transaction touching both tables fails whole on the mirror.
  ASSERT_NO_FATAL_FAILURE(must(c, "BEGIN"));
  ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO present VALUES (100)"));
  ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO primary_only VALUES (100)"));
  ASSERT_NO_FATAL_FAILURE(must(c, "COMMIT"));
  ++touching;
  // The extended protocol, and reads.
  auto r = c.exec_params("INSERT INTO primary_only VALUES ($1)", {std::string("200")});
  ASSERT_TRUE(r.ok()) << r.describe();
  ++touching;
  r = c.exec_params("INSERT INTO present VALUES ($1)", {std::string("201")});
  ASSERT_TRUE(r.ok()) << r.describe();
  ++ok;
  ASSERT_NO_FATAL_FAILURE(must(c, "SELECT count(*) FROM primary_only"));
  ++touching;
  ASSERT_NO_FATAL_FAILURE(must(c, "SELECT count(*) FROM present"));
  ++ok;

  const auto counts = watch.wait_drained(ok + touching);
  EXPECT_EQ(counts.handed, ok + touching) << counts.describe();
  EXPECT_EQ(counts.query, touching) << counts.describe();
  EXPECT_EQ(counts.failure, touching) << counts.describe();
  EXPECT_EQ(counts.success, ok) << counts.describe();
  EXPECT_EQ(counts.dropped, 0) << counts.describe();
  const auto d = watch.divergences(watch.metrics());
  EXPECT_EQ(d.error, touching);
  EXPECT_EQ(d.row_count, 0);
  EXPECT_EQ(d.result, 0);

  auto m = connect_mirror(db);
  EXPECT_EQ(column(m, "SELECT id FROM present ORDER BY id"),
            (std::vector<std::string>{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "201"}))
      << "only the requests that succeeded may have reached the mirror";
  EXPECT_EQ(scalar(p, "SELECT count(*) FROM present"), 12);
  const auto log = pgdog.log();
  EXPECT_GE(count_lines(log, "transaction failed (query)"), 1) << log;
  EXPECT_NE(log.find("42P01"), std::string::npos) << "the reason is not logged:\n" << log;
}

// 5. A queue of 2 in front of a stalled mirror: while the lock is held every request is
// either dropped or times out, counted exactly; pgdog's memory stays flat while 2,000
// transactions of 16 kB each go through; once the lock is gone the mirror takes requests again.
TEST_F(MirrorTest, TinyQueueStalledMirrorDropsCountedMemoryBounded) {
  const std::string db = "mirror_it_tiny";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  on_both(db, {"CREATE TABLE t (id int PRIMARY KEY, payload text)"});
  constexpr int kTimeoutMs = 500;
  MirrorSetup setup{db, "queue_length = 2\ntimeout = " + std::to_string(kTimeoutMs) + "\n"};
  Pgdog pgdog(mirror_config(setup));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, setup.metrics_port);
  ASSERT_TRUE(watch.wait_metrics());

  auto locker = connect_mirror(db);
  ASSERT_NO_FATAL_FAILURE(must(locker, "BEGIN"));
  ASSERT_NO_FATAL_FAILURE(must(locker, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE"));

  const std::string payload(16 * 1024, 'x');
  auto c = client(pgdog, db);
  auto insert = [&](int id) {
    auto r = c.exec("INSERT INTO t VALUES (" + std::to_string(id) + ", '" + payload + "')");
    ASSERT_TRUE(r.ok()) << r.describe();
  };
  // Warm-up: buffers and pools reach their working size.
  constexpr int kWarmup = 100;
  constexpr int kTransactions = 2000;
  for (int id = 1; id <= kWarmup; ++id) ASSERT_NO_FATAL_FAILURE(insert(id));
  const long long rss_before = rss_kib(pgdog.pid());
  ASSERT_GT(rss_before, 0);
  long long rss_max = rss_before;
  const auto began = Clock::now();
  for (int id = kWarmup + 1; id <= kWarmup + kTransactions; ++id) {
    ASSERT_NO_FATAL_FAILURE(insert(id));
    if (id % 100 == 0) {
      rss_max = std::max(rss_max, rss_kib(pgdog.pid()));
      const auto mid = watch.admin();  // the identity holds mid-run too
      EXPECT_LE(mid.depth, 2) << mid.describe();
    }
  }
  const auto push_ms = ms_since(began);
  rss_max = std::max(rss_max, rss_kib(pgdog.pid()));

  // Still stalled: the requests left in the queue time out too.
  const long long total = kWarmup + kTransactions;
  const auto stalled = watch.wait_drained(total, 30s);
  std::cout << total << " transactions pushed in " << push_ms << " ms; RSS " << rss_before
            << " kB after warm-up, at most " << rss_max << " kB; " << stalled.describe() << "\n";
  EXPECT_EQ(stalled.handed, total) << stalled.describe();
  EXPECT_EQ(stalled.success, 0) << stalled.describe();
  EXPECT_EQ(stalled.failure, stalled.timeout) << stalled.describe();
  EXPECT_EQ(stalled.dropped, total - stalled.timeout) << stalled.describe();
  // Not dropped: the request in flight when the push began, one more per mirror_timeout during
  // it, and the two left queued at its end (with slack for a slow machine).
  EXPECT_GE(stalled.timeout, 2) << stalled.describe();
  EXPECT_LE(stalled.timeout, push_ms / kTimeoutMs + 3 + 2) << stalled.describe();

  ASSERT_NO_FATAL_FAILURE(must(locker, "COMMIT"));
  ASSERT_NO_FATAL_FAILURE(insert(total + 1));
  const auto after = watch.wait_drained(total + 1, 10s);
  EXPECT_EQ(after.success, 1) << after.describe();
  EXPECT_EQ(after.failure, stalled.failure) << after.describe();
  EXPECT_EQ(after.dropped, stalled.dropped) << after.describe();
  auto m = connect_mirror(db);
  EXPECT_EQ(column(m, "SELECT id FROM t"), std::vector<std::string>{std::to_string(total + 1)})
      << "only the request made after the lock was released may be on the mirror";

  // 2,000 x 16 kB would be 32 MB if the queue were not bounded.
  // Under a sanitizer the memory is the sanitizer's (shadow, quarantine): not checked.
  if (std::getenv("PGDOG_SANITIZER") == nullptr) {
    EXPECT_LE(rss_max - rss_before, 8 * 1024) << "pgdog grew from " << rss_before << " kB to "
                                               << rss_max << " kB";
  }
  const auto log = pgdog.log();
  const int drop_lines = count_lines(log, "transaction dropped");
  EXPECT_GE(drop_lines, 1) << log;
  EXPECT_LE(drop_lines, push_ms / 1000 + 3) << "the drop log is not rate-limited:\n" << log;
}

// 6. The mirror stopped and started again while pgdog runs: failures while it is down,
// successes again after, without restarting pgdog.
TEST_F(MirrorTest, MirrorRestartedMidRunRecovers) {
  ASSERT_EQ(MirrorControl::recorded_port(), e().mirror_port) << "ports.env disagrees with MIRROR_PORT";
  const std::string db = "mirror_it_restart";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  on_both(db, {"CREATE TABLE t (id int PRIMARY KEY)"});
  MirrorSetup setup{db, "queue_length = 100000\ntimeout = 5000\n"};
  Pgdog pgdog(mirror_config(setup));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, setup.metrics_port);
  ASSERT_TRUE(watch.wait_metrics());
  auto c = client(pgdog, db);
  auto insert = [&](int id) { must(c, "INSERT INTO t VALUES (" + std::to_string(id) + ")"); };

  for (int id = 1; id <= 20; ++id) ASSERT_NO_FATAL_FAILURE(insert(id));
  auto up = watch.wait_drained(20);
  ASSERT_EQ(up.success, 20) << up.describe();

  MirrorControl mirror;
  auto stopped = mirror.stop();
  ASSERT_EQ(stopped.exit_code, 0) << stopped.describe();
  for (int id = 101; id <= 120; ++id) ASSERT_NO_FATAL_FAILURE(insert(id));
  auto down = watch.wait_drained(40);
  EXPECT_EQ(down.success, 20) << down.describe();
  EXPECT_EQ(down.connection, 20) << down.describe();
  EXPECT_EQ(down.failure, 20) << down.describe();

  auto started = mirror.start();
  ASSERT_EQ(started.exit_code, 0) << started.describe();
  ASSERT_EQ(MirrorControl::recorded_port(), e().mirror_port);
  const auto restarted = Clock::now();
  // Until pgdog reconnects (its backoff is at most 2 s), requests may still fail as connection.
  long long handed = 40;
  long long recovering_failures = 0;
  int first_ok = -1;
  for (int id = 201; id < 400 && first_ok < 0 && ms_since(restarted) < 30'000; ++id) {
    ASSERT_NO_FATAL_FAILURE(insert(id));
    const auto now = watch.wait_drained(++handed);
    if (now.success == 21) {
      first_ok = id;
    } else {
      ++recovering_failures;
      EXPECT_EQ(now.connection, 20 + recovering_failures) << now.describe();
      std::this_thread::sleep_for(100ms);
    }
  }
  ASSERT_GT(first_ok, 0) << "no mirrored request succeeded within 30 s of the mirror's restart";
  std::cout << "first success " << ms_since(restarted) << " ms after the restart, "
            << recovering_failures << " connection failures meanwhile\n";
  for (int id = 401; id <= 420; ++id) ASSERT_NO_FATAL_FAILURE(insert(id));
  const auto end = watch.wait_drained(handed + 20);
  EXPECT_EQ(end.handed, 40 + recovering_failures + 1 + 20) << end.describe();
  EXPECT_EQ(end.success, 20 + 1 + 20) << end.describe();
  EXPECT_EQ(end.connection, 20 + recovering_failures) << end.describe();
  EXPECT_EQ(end.timeout, 0) << end.describe();
  EXPECT_EQ(end.query, 0) << end.describe();
  EXPECT_EQ(end.dropped, 0) << end.describe();
  EXPECT_FALSE(pgdog.wait_exit(0ms).has_value()) << "pgdog exited";

  auto m = connect_mirror(db);
  std::vector<std::string> expected;
  for (int id = 1; id <= 20; ++id) expected.push_back(std::to_string(id));
  expected.push_back(std::to_string(first_ok));
  for (int id = 401; id <= 420; ++id) expected.push_back(std::to_string(id));
  EXPECT_EQ(column(m, "SELECT id FROM t ORDER BY id"), expected);
}

// 7. exposure = 0.5 over 2,000 transactions of 3 rows each from 4 clients (two on the simple,
// two on the extended protocol): the mirrored share is within 5 standard deviations of half,
// and every transaction reaches the mirror whole or not at all.
TEST_F(MirrorTest, ExposureHalfMirrorsWholeTransactions) {
  const std::string db = "mirror_it_exposure";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  on_both(db, {"CREATE TABLE t (txn int NOT NULL, part int NOT NULL, PRIMARY KEY (txn, part))"});
  MirrorSetup setup{db, "queue_length = 100000\nexposure = 0.5\n"};
  Pgdog pgdog(mirror_config(setup));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, setup.metrics_port);
  ASSERT_TRUE(watch.wait_metrics());

  constexpr int kClients = 4;
  constexpr int kPerClient = 500;
  std::atomic<int> errors{0};
  std::mutex mutex;
  std::string first_error;
  std::vector<std::thread> threads;
  BackgroundScraper scraper(pgdog, setup.metrics_port);
  for (int k = 0; k < kClients; ++k) {
    threads.emplace_back([&, k] {
      auto c = pgdog.connect("pgdog", std::string("pgdog"), db);
      auto fail = [&](const std::string& what) {
        ++errors;
        std::lock_guard g(mutex);
        if (first_error.empty()) first_error = what;
      };
      if (!c.ok()) return fail(c.connect_error().message);
      const bool extended = k >= 2;
      for (int i = 0; i < kPerClient; ++i) {
        const std::string txn = std::to_string(k * kPerClient + i + 1);
        std::vector<Result> rs;
        rs.push_back(c.exec("BEGIN"));
        for (int part = 1; part <= 3; ++part) {
          if (extended) {
            rs.push_back(c.exec_params("INSERT INTO t VALUES ($1, $2)",
                                       {txn, std::to_string(part)}));
          } else {
            rs.push_back(c.exec("INSERT INTO t VALUES (" + txn + ", " + std::to_string(part) + ")"));
          }
        }
        rs.push_back(c.exec("COMMIT"));
        for (const auto& r : rs)
          if (!r.ok()) return fail("txn " + txn + ": " + r.describe());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GT(scraper.finish(), 0) << "the counters were not read during the run";
  ASSERT_EQ(errors.load(), 0) << first_error;

  const auto counts = watch.wait_settled(kClients * kPerClient, 60s);
  constexpr double n = kClients * kPerClient;
  const double sd = std::sqrt(n * 0.25);
  std::cout << counts.handed << " of " << n << " transactions mirrored (expected " << n / 2
            << " +- " << 5 * sd << ")\n";
  EXPECT_EQ(counts.success, counts.handed) << counts.describe();
  EXPECT_EQ(counts.failure, 0) << counts.describe();
  EXPECT_EQ(counts.dropped, 0) << counts.describe();
  EXPECT_GE(counts.handed, n / 2 - 5 * sd) << counts.describe();
  EXPECT_LE(counts.handed, n / 2 + 5 * sd) << counts.describe();

  auto p = connect_primary(db);
  EXPECT_EQ(scalar(p, "SELECT count(*) FROM t"), 3 * kClients * kPerClient);
  auto m = connect_mirror(db);
  EXPECT_EQ(scalar(m, "SELECT count(DISTINCT txn) FROM t"), counts.handed);
  EXPECT_EQ(scalar(m, "SELECT count(*) FROM t"), 3 * counts.handed);
  EXPECT_EQ(scalar(m, "SELECT count(*) FROM (SELECT txn FROM t GROUP BY txn "
                      "HAVING count(*) <> 3 OR min(part) <> 1 OR max(part) <> 3) partial"),
            0)
      << "a partial transaction reached the mirror";
  EXPECT_EQ(scalar(m, "SELECT count(*) FROM t WHERE txn < 1 OR txn > " +
                          std::to_string(kClients * kPerClient)),
            0);
  // Each client's share is within bounds too (one decision per transaction, for every client).
  const double client_sd = std::sqrt(kPerClient * 0.25);
  for (int k = 0; k < kClients; ++k) {
    const long long share =
        scalar(m, "SELECT count(DISTINCT txn) FROM t WHERE txn BETWEEN " +
                      std::to_string(k * kPerClient + 1) + " AND " +
                      std::to_string((k + 1) * kPerClient));
    EXPECT_NEAR(static_cast<double>(share), kPerClient / 2.0, 5 * client_sd) << "client " << k;
  }
}

// 8. What the primary did not commit is never mirrored: ROLLBACK, an error in a block then
// COMMIT, failed autocommit statements (simple, multi-statement and extended), a client gone
// mid-transaction. A block that recovered with ROLLBACK TO SAVEPOINT and committed is mirrored
// and succeeds (the mirror has the same error).
// Session mode: a client's session state (SQL PREPARE, temporary tables, SET) carries over to
// the mirror because its requests replay on one mirror connection; the next client on that
// connection inherits nothing (DISCARD ALL), exactly as on the primary. One mirror connection
// for both clients, so the second one gets the first one's connection.
TEST_F(MirrorTest, SessionModeKeepsSessionStateOnTheMirror) {
  const std::string db = "mirror_it_session";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  on_both(db, {"CREATE TABLE t (id int PRIMARY KEY, note text)"});
  MirrorSetup setup{db, "queue_length = 100000\n"};
  Pgdog pgdog(mirror_config(setup)
                  .set_string("pooler_mode", "session")
                  .set("default_pool_size", "1"));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, setup.metrics_port);
  ASSERT_TRUE(watch.wait_metrics());

  long long mirrored = 0;
  auto ok = [&](Conn& c, const std::string& sql) {
    ASSERT_NO_FATAL_FAILURE(must(c, sql));
    ++mirrored;
  };
  {
    auto a = client(pgdog, db);
    ASSERT_NO_FATAL_FAILURE(ok(a, "SET application_name = 'session_a'"));
    ASSERT_NO_FATAL_FAILURE(ok(a, "PREPARE ins(int) AS INSERT INTO t VALUES ($1, current_setting('application_name'))"));
    ASSERT_NO_FATAL_FAILURE(ok(a, "EXECUTE ins(1)"));
    ASSERT_NO_FATAL_FAILURE(ok(a, "BEGIN"));
    ASSERT_NO_FATAL_FAILURE(must(a, "EXECUTE ins(2)"));
    ASSERT_NO_FATAL_FAILURE(must(a, "COMMIT"));
    ASSERT_NO_FATAL_FAILURE(ok(a, "CREATE TEMP TABLE tmp AS SELECT 3 AS id"));
    ASSERT_NO_FATAL_FAILURE(ok(a, "INSERT INTO t SELECT id, 'from tmp' FROM tmp"));
  }
  {
    // The same connections on both sides: nothing of the first session is left.
    auto b = client(pgdog, db);
    auto r = b.exec("EXECUTE ins(4)");
    EXPECT_FALSE(r.ok()) << "the previous session's statement survived on the primary";
    ASSERT_NO_FATAL_FAILURE(ok(b, "PREPARE ins(int) AS INSERT INTO t VALUES ($1, current_setting('application_name'))"));
    ASSERT_NO_FATAL_FAILURE(ok(b, "EXECUTE ins(5)"));
    ASSERT_NO_FATAL_FAILURE(ok(b, "CREATE TEMP TABLE tmp AS SELECT 6 AS id"));
    ASSERT_NO_FATAL_FAILURE(ok(b, "INSERT INTO t SELECT id, 'from tmp' FROM tmp"));
  }
  const auto counts = watch.wait_drained(mirrored);
  EXPECT_EQ(counts.success, mirrored) << counts.describe();
  EXPECT_EQ(counts.failure, 0) << counts.describe();
  EXPECT_EQ(counts.dropped, 0) << counts.describe();
  auto p = connect_primary(db);
  auto m = connect_mirror(db);
  const std::string rows = "SELECT id || ':' || coalesce(note, '') FROM t ORDER BY id";
  const auto primary = column(p, rows);
  EXPECT_EQ(primary.size(), 5U);
  EXPECT_EQ(column(m, rows), primary);
}

TEST_F(MirrorTest, PinnedTransactionModeClientKeepsItsStateOnTheMirror) {
  const std::string db = "mirror_it_pinned";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  on_both(db, {"CREATE TABLE t (id int PRIMARY KEY, note text)"});
  MirrorSetup setup{db, "queue_length = 100000\n"};
  // Every connection that goes back to a pool is replaced: state survives only on a connection
  // its client keeps, on the primary and on the mirror.
  Pgdog pgdog(mirror_config(setup).set("default_pool_size", "3").set("server_lifetime", "1"));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, setup.metrics_port);
  ASSERT_TRUE(watch.wait_metrics());

  long long mirrored = 0;
  auto ok = [&](Conn& c, const std::string& sql) {
    ASSERT_NO_FATAL_FAILURE(must(c, sql));
    ++mirrored;
  };
  std::vector<Conn> others;
  for (int i = 0; i < 2; ++i) others.push_back(client(pgdog, db));
  int next_id = 100;
  auto interleave = [&] {
    for (auto& o : others) {
      ASSERT_NO_FATAL_FAILURE(ok(o, "INSERT INTO t VALUES (" + std::to_string(next_id++) + ", 'other')"));
    }
  };
  auto a = client(pgdog, db);
  ASSERT_NO_FATAL_FAILURE(ok(a, "SET application_name = 'pinned_a'"));
  ASSERT_NO_FATAL_FAILURE(ok(a, "CREATE TEMP TABLE tmp (id int)"));
  ASSERT_NO_FATAL_FAILURE(interleave());
  ASSERT_NO_FATAL_FAILURE(ok(a, "INSERT INTO tmp VALUES (1), (2)"));
  ASSERT_NO_FATAL_FAILURE(interleave());
  ASSERT_NO_FATAL_FAILURE(ok(a, "PREPARE ins(int) AS INSERT INTO t VALUES ($1, current_setting('application_name'))"));
  ASSERT_NO_FATAL_FAILURE(interleave());
  ASSERT_NO_FATAL_FAILURE(ok(a, "INSERT INTO t SELECT id, 'from tmp' FROM tmp"));
  ASSERT_NO_FATAL_FAILURE(interleave());
  ASSERT_NO_FATAL_FAILURE(ok(a, "EXECUTE ins(3)"));
  ASSERT_NO_FATAL_FAILURE(ok(a, "DEALLOCATE ins"));
  ASSERT_NO_FATAL_FAILURE(ok(a, "DROP TABLE tmp"));
  ASSERT_NO_FATAL_FAILURE(interleave());
  // Unpinned now: the client's settings still follow it on the mirror.
  ASSERT_NO_FATAL_FAILURE(ok(a, "INSERT INTO t VALUES (4, current_setting('application_name'))"));
  ASSERT_NO_FATAL_FAILURE(interleave());

  const auto counts = watch.wait_drained(mirrored);
  EXPECT_EQ(counts.success, mirrored) << counts.describe();
  EXPECT_EQ(counts.failure, 0) << counts.describe();
  EXPECT_EQ(counts.dropped, 0) << counts.describe();
  auto p = connect_primary(db);
  auto m = connect_mirror(db);
  const std::string rows = "SELECT id || ':' || coalesce(note, '') FROM t ORDER BY id";
  const auto primary = column(p, rows);
  EXPECT_EQ(primary.size(), static_cast<std::size_t>(4 + next_id - 100));
  EXPECT_EQ(column(m, rows), primary);
  // Nothing of the client is left on a mirror connection that others share.
  auto leftovers = m.exec(
      "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
      "WHERE n.nspname LIKE 'pg_temp%' AND c.relname = 'tmp'");
  EXPECT_EQ(leftovers.at(0), "0") << leftovers.describe();
}

TEST_F(MirrorTest, FailedOrRolledBackTransactionsAreNotMirrored) {
  const std::string db = "mirror_it_rollback";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  on_both(db, {"CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1000)"});
  MirrorSetup setup{db, "queue_length = 100000\n"};
  Pgdog pgdog(mirror_config(setup));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, setup.metrics_port);
  ASSERT_TRUE(watch.wait_metrics());

  auto c = client(pgdog, db);
  auto fails = [&](const std::string& sql) {
    auto r = c.exec(sql);
    EXPECT_FALSE(r.ok()) << sql << " succeeded on the primary";
  };
  // Committed: mirrored.
  ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO t VALUES (10)"));
  ASSERT_NO_FATAL_FAILURE(must(c, "BEGIN"));
  ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO t VALUES (11)"));
  ASSERT_NO_FATAL_FAILURE(must(c, "COMMIT"));
  // ROLLBACK.
  ASSERT_NO_FATAL_FAILURE(must(c, "BEGIN"));
  ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO t VALUES (20)"));
  ASSERT_NO_FATAL_FAILURE(must(c, "ROLLBACK"));
  // An error in the block, then COMMIT (answered ROLLBACK).
  ASSERT_NO_FATAL_FAILURE(must(c, "BEGIN"));
  ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO t VALUES (21)"));
  fails("SELECT 1/0");
  auto commit = c.exec("COMMIT");
  ASSERT_TRUE(commit.ok()) << commit.describe();
  EXPECT_EQ(commit.tag, "ROLLBACK");
  // A duplicate key in a block, then ROLLBACK.
  ASSERT_NO_FATAL_FAILURE(must(c, "BEGIN"));
  ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO t VALUES (22)"));
  fails("INSERT INTO t VALUES (1000)");
  ASSERT_NO_FATAL_FAILURE(must(c, "ROLLBACK"));
  // Failed autocommit statements.
  fails("INSERT INTO t VALUES (1000)");
  fails("INSERT INTO no_such_table VALUES (1)");
  fails("INSERT INTO t VALUES (23); SELECT 1/0");
  auto ext = c.exec_params("INSERT INTO t VALUES ($1)", {std::string("1000")});
  EXPECT_FALSE(ext.ok());
  // A client gone mid-transaction.
  {
    auto gone = client(pgdog, db);
    ASSERT_NO_FATAL_FAILURE(must(gone, "BEGIN"));
    ASSERT_NO_FATAL_FAILURE(must(gone, "INSERT INTO t VALUES (24)"));
    gone.close_abruptly();
  }
  // pgdog is done with the vanished client (and would have handed its transaction by now) once
  // SHOW CLIENTS no longer lists it: c is the only client of the database left.
  {
    auto admin = pgdog.admin();
    ASSERT_TRUE(admin.ok()) << admin.connect_error().message;
    int left = -1;
    wait_until([&] { return (left = admin_rows(admin, "SHOW CLIENTS", "database", db)) == 1; },
               10s);
    ASSERT_EQ(left, 1) << "the vanished client is still listed by SHOW CLIENTS";
  }
  // Recovered with a savepoint and committed: mirrored, and a success.
  ASSERT_NO_FATAL_FAILURE(must(c, "BEGIN"));
  ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO t VALUES (30)"));
  ASSERT_NO_FATAL_FAILURE(must(c, "SAVEPOINT s"));
  fails("INSERT INTO t VALUES (1000)");
  ASSERT_NO_FATAL_FAILURE(must(c, "ROLLBACK TO SAVEPOINT s"));
  ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO t VALUES (31)"));
  ASSERT_NO_FATAL_FAILURE(must(c, "COMMIT"));
  ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO t VALUES (12)"));

  // Committed and mirrored: 10, 11, 30-31, 12.
  const auto counts = watch.wait_drained(4);
  EXPECT_EQ(counts.handed, 4) << counts.describe();
  EXPECT_EQ(counts.success, 4) << counts.describe();
  EXPECT_EQ(counts.failure, 0) << counts.describe();
  EXPECT_EQ(counts.dropped, 0) << counts.describe();
  const auto d = watch.divergences(watch.metrics());
  EXPECT_EQ(d.total(), 0) << "row_count " << d.row_count << ", result " << d.result << ", error "
                          << d.error;

  const std::vector<std::string> committed = {"10", "11", "12", "30", "31", "1000"};
  auto p = connect_primary(db);
  EXPECT_EQ(column(p, "SELECT id FROM t ORDER BY id"), committed);
  auto m = connect_mirror(db);
  EXPECT_EQ(column(m, "SELECT id FROM t ORDER BY id"), committed);
}

}  // namespace
}  // namespace pgdog::it::mirror
