#pragma once

// Shared pieces of the mirroring integration tests: a pgdog mirroring one database of the
// primary cluster to the same database of the mirror cluster, the mirror counters read from the
// admin console and from /metrics (checked against the number of transactions the test
// committed), an HTTP client, a small JSON reader for /mirrors, and control of the mirror
// cluster.

#include <atomic>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "harness/harness.hpp"

namespace pgdog::it::mirror {

// The destination_db of every test's mirror: the `cluster` label.
inline constexpr const char* kCluster = "mirror";

// ---------------------------------------------------------------- HTTP

struct HttpResponse {
  int status = 0;  // 0: no answer (error says why)
  std::string content_type;
  std::string body;
  std::string error;
};

// GET with Connection: close, reading to EOF; bounded by timeout.
HttpResponse http_get(int port, const std::string& path, Millis timeout = 10s);

// ---------------------------------------------------------------- /metrics

// Samples of a Prometheus text body, keyed `name{k="v",...}` with the labels sorted by name.
using Samples = std::map<std::string, double>;
Samples parse_prometheus_text(const std::string& body);
std::string sample_key(const std::string& name, const std::map<std::string, std::string>& labels);

// ---------------------------------------------------------------- JSON (for /mirrors)

struct Json {
  using Array = std::vector<Json>;
  using Object = std::map<std::string, Json>;
  std::variant<std::nullptr_t, bool, double, std::string, Array, Object> v;

  bool is_null() const { return std::holds_alternative<std::nullptr_t>(v); }
  bool boolean() const;  // false unless a JSON true
  double number() const;  // NaN unless a number
  std::string string() const;  // "" unless a string
  const Array& array() const;  // empty unless an array
  // Member of an object; a null Json when absent.
  const Json& operator[](const std::string& key) const;
};

// Throws std::runtime_error naming the offset on malformed input.
Json parse_json(const std::string& text);

// ---------------------------------------------------------------- counters

struct MirrorCounts {
  long long handed = 0;  // -1 when read from /metrics, which does not expose it
  long long success = 0;
  long long failure = 0;
  long long dropped = 0;
  long long connection = 0;
  long long timeout = 0;
  long long query = 0;
  long long depth = 0;
  double lag = 0;
  std::string describe() const;
};

struct Divergences {
  long long row_count = 0;
  long long result = 0;
  long long error = 0;
  long long total() const { return row_count + result + error; }
};

struct DivergentStatement {
  std::string cluster, kind, fingerprint, last_seen;
  long long count = 0;
};

// ---------------------------------------------------------------- configuration

// pgdog serving `database` of the primary, mirrored to database `database` of the mirror
// cluster under the name kCluster, with /metrics on its own port. mirroring_extra: more lines
// of the [[mirroring]] table (queue_length = 2, timeout = 500, ...); the setters of the returned
// PgdogConfig add [general] keys.
struct MirrorSetup {
  MirrorSetup(std::string db, std::string mirroring, std::string more = "")
      : database(std::move(db)), mirroring_extra(std::move(mirroring)), more_toml(std::move(more)) {}
  std::string database;
  std::string mirroring_extra;
  // More [[databases]] and [[mirroring]] tables, appended as is.
  std::string more_toml;
  int metrics_port = 0;  // 0: a free port is picked
};
PgdogConfig mirror_config(MirrorSetup& setup);

// ---------------------------------------------------------------- the two clusters

Conn connect_mirror(const std::string& dbname);
// Drops (with FORCE) and creates the database on both clusters; "" or the error.
std::string recreate_on_both(const std::string& dbname);
void drop_on_both(const std::string& dbname);
// Runs the statements on a direct connection to one cluster; ADD_FAILURE on any error.
void exec_on(Conn& c, const std::vector<std::string>& statements);
// The first cell of a one-row query as a number; -1 (and a test failure) on error.
long long scalar(Conn& c, const std::string& sql);
// The first column of every row.
std::vector<std::string> column(Conn& c, const std::string& sql);

// Stops and starts the mirror cluster with scripts/pg-local; the destructor starts it again if
// the test stopped it, whatever happened.
class MirrorControl {
 public:
  ~MirrorControl();
  CommandResult stop();
  CommandResult start();
  // MIRROR_PORT as pg-local recorded it last.
  static int recorded_port();

 private:
  bool stopped_ = false;
};

// ---------------------------------------------------------------- watching a mirror

// Reads one mirror's counters from the admin console and /metrics of a running pgdog.
//
// pgdog derives queue_depth as handed minus ended, so "handed = success + failure + dropped +
// queue_depth" within one read proves little. What the tests check instead is the end state
// against what they know themselves: wait_drained(n) with n the transactions the test committed
// and expects mirrored, which must all have been handed and ended, on both the admin console and
// /metrics. Every read also checks what one source can contradict: failure = connection +
// timeout + query (two families on /metrics), no negative depth, and SHOW MIRRORS' columns.
class MirrorWatch {
 public:
  MirrorWatch(const Pgdog& pgdog, int metrics_port, std::string cluster = kCluster);

  // SHOW MIRRORS' row for the cluster.
  MirrorCounts admin();
  // GET /metrics, parsed (a failure is recorded when it does not answer 200).
  Samples metrics();
  // The counters in a /metrics body; /metrics has no handed count (handed is -1).
  MirrorCounts counts(const Samples& s);
  Divergences divergences(const Samples& s);
  // pgdog_mirror_ready; NaN when absent.
  double ready(const Samples& s);
  // GET /mirrors, parsed; the entry of this cluster (null Json when absent).
  Json verdict();
  std::vector<DivergentStatement> show_divergences();
  // Polls /mirrors until the cluster's verdict is `ready` (lag and the window move with time);
  // returns the last verdict.
  Json wait_verdict(bool ready, Millis timeout = 5s);

  // `expected`: the transactions the test committed through pgdog and expects mirrored (failed
  // and rolled-back ones are not). Waits until that many were handed and the queue is empty,
  // then checks that exactly `expected` were handed and ended (success + failure + dropped) on
  // the admin console, the same on /metrics with depth 0, and the per-status counts agree.
  // Returns the admin counts; on timeout records a failure and returns the last counts.
  MirrorCounts wait_drained(long long expected, Millis timeout = 30s);
  // For a sampled share (exposure < 1) of `committed` transactions whose clients have all had
  // their commits answered. pgdog hands a transaction to the mirror before the client sees its
  // commit, so the handed count is final then: waits for the queue to empty and checks that at
  // most `committed` were handed and every one of them ended (the caller checks the share).
  MirrorCounts wait_settled(long long committed, Millis timeout = 30s);
  // Waits until /metrics is served.
  bool wait_metrics(Millis timeout = 10s);

  int metrics_port() const { return metrics_port_; }

 private:
  void check(const MirrorCounts& c, const std::string& where);
  // Polls SHOW MIRRORS until at least `at_least` were handed and the queue is empty.
  MirrorCounts wait_empty(long long at_least, Millis timeout);
  // Every one of `handed` requests ended, on the admin console (c) and on /metrics.
  void expect_all_ended(const MirrorCounts& c, long long handed);
  const Pgdog& pgdog_;
  int metrics_port_;
  std::string cluster_;
  std::unique_ptr<Conn> admin_;
};

// Reads the counters in a loop on its own thread while traffic flows: no counter ever goes
// backwards, and what /metrics says was handed (success + failure + dropped + queue_depth) lies
// between the handed counts SHOW MIRRORS gave just before and just after the scrape.
class BackgroundScraper {
 public:
  BackgroundScraper(const Pgdog& pgdog, int metrics_port);
  ~BackgroundScraper();  // stops and joins
  BackgroundScraper(const BackgroundScraper&) = delete;
  BackgroundScraper& operator=(const BackgroundScraper&) = delete;
  // Stops and joins; returns how many scrapes were made.
  int finish();

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> scrapes_{0};
  std::thread thread_;
};

// A verdict of /mirrors, one criterion a line, for failure messages.
std::string describe_verdict(const Json& verdict);

// ---------------------------------------------------------------- tools

// pgbench against a port (the proxy or a cluster) as pgdog/pgdog; args before the database.
CommandResult pgbench(int port, const std::string& args, const std::string& dbname,
                      Millis timeout = 120s);
// "number of transactions actually processed: N" (-1 when absent).
long long pgbench_processed(const std::string& out);
long long pgbench_failed(const std::string& out);
// Resident set size of a process in KiB, from /proc/PID/status (-1 when unreadable).
long long rss_kib(pid_t pid);
// Lines of the text containing needle.
int count_lines(const std::string& text, const std::string& needle);

// ---------------------------------------------------------------- fixture

class MirrorTest : public IntegrationTest {
 protected:
  void TearDown() override {
    for (const auto& d : databases_) drop_on_both(d);
  }
  // A fresh database on both clusters, dropped after the test.
  void use_database(const std::string& name) {
    databases_.push_back(name);
    ASSERT_EQ(recreate_on_both(name), "");
  }
  // Runs the statements directly on both clusters.
  static void on_both(const std::string& db, const std::vector<std::string>& statements) {
    auto p = connect_primary(db);
    exec_on(p, statements);
    auto m = connect_mirror(db);
    exec_on(m, statements);
  }
  // A client of pgdog on the database.
  static Conn client(const Pgdog& pgdog, const std::string& db) {
    auto c = pgdog.connect("pgdog", std::string("pgdog"), db);
    EXPECT_TRUE(c.ok()) << c.connect_error().message;
    return c;
  }
  static void must(Conn& c, const std::string& sql) {
    auto r = c.exec(sql);
    ASSERT_TRUE(r.ok()) << sql << ": " << r.describe();
  }

  std::vector<std::string> databases_;
};

// The pgbench tables of a cluster, for comparison: balance sums, history, and a digest of every
// account's and teller's balance.
struct BenchState {
  std::string abalance, bbalance, tbalance, history, history_delta, accounts_md5, tellers_md5;
  bool operator==(const BenchState&) const = default;
  std::string describe() const;
};
BenchState bench_state(Conn& c);

}  // namespace pgdog::it::mirror
