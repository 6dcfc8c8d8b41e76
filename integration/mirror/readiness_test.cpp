// Migration readiness against the real clusters (issue 9): controlled divergences detected
// exactly (kind, fingerprint, count) and flipping the verdict; a clean TPC-B run under
// compare = "results" keeping zero divergences and a ready verdict; the status page rendered by
// headless Chromium showing what /mirrors says.
#include <algorithm>
#include <cctype>
#include <regex>
#include <unistd.h>

#include "mirror_support.hpp"

namespace pgdog::it::mirror {
namespace {

const std::vector<std::string> kCriteria = {"traffic_mirrored", "success_ratio", "no_drops",
                                            "no_divergences",   "lag",           "latency_p99"};

// Short readiness window so a test sees its own traffic only; a generous latency factor since
// the clusters share a small, busy machine.
PgdogConfig readiness_config(MirrorSetup& setup) {
  return mirror_config(setup)
      .set("mirror_readiness_window", "10000")
      .set("mirror_readiness_latency_factor", "100.0");
}

const Json* criterion(const Json& verdict, const std::string& name) {
  for (const auto& c : verdict["criteria"].array()) {
    if (c["name"].string() == name) return &c;
  }
  return nullptr;
}

// Every criterion present, each with a reason.
void expect_all_criteria(const Json& verdict) {
  for (const auto& name : kCriteria) {
    const Json* c = criterion(verdict, name);
    ASSERT_NE(c, nullptr) << "criterion " << name << " missing: " << describe_verdict(verdict);
    EXPECT_FALSE((*c)["reason"].string().empty()) << name;
  }
}

// 9a. Rows only on the mirror make an UPDATE's count differ (row_count, twice with other
// literals: one fingerprint, count 2); a SELECT with the same tag returns another value under
// compare = "results" (result); an INSERT fails only on the mirror (error). Each is counted with
// its kind, listed by SHOW MIRROR_DIVERGENCES as a literal-free fingerprint, and the verdict,
// ready after clean traffic, turns to not ready.
TEST_F(MirrorTest, DivergencesDetectedExactlyAndFlipTheVerdict) {
  const std::string db = "mirror_it_diverge";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  on_both(db, {"CREATE TABLE rc (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL)",
               "INSERT INTO rc SELECT g, 1, 0 FROM generate_series(1, 3) g",
               "CREATE TABLE res (id int PRIMARY KEY, secret text NOT NULL)",
               "CREATE TABLE clean (id int PRIMARY KEY)"});
  auto p = connect_primary(db);
  exec_on(p, {"INSERT INTO res VALUES (1, 'alpha'), (2, 'primary-secret-value')",
              "CREATE TABLE err (id int PRIMARY KEY, v int NOT NULL)"});
  auto m = connect_mirror(db);
  exec_on(m, {"INSERT INTO rc VALUES (4, 1, 0), (5, 1, 0)",  // rows present only on the mirror
              "INSERT INTO res VALUES (1, 'alpha'), (2, 'mirror-secret-value')",
              "CREATE TABLE err (id int PRIMARY KEY, v int NOT NULL CHECK (v < 100))"});

  MirrorSetup setup{db, "queue_length = 100000\ncompare = \"results\"\n"};
  Pgdog pgdog(readiness_config(setup));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, setup.metrics_port);
  ASSERT_TRUE(watch.wait_metrics());

  // Clean traffic first, reads included: no divergence, a ready verdict.
  auto c = client(pgdog, db);
  for (int i = 1; i <= 20; ++i) {
    ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO clean VALUES (" + std::to_string(i) + ")"));
  }
  for (int i = 0; i < 5; ++i) {
    ASSERT_NO_FATAL_FAILURE(must(c, "SELECT secret FROM res WHERE id = 1"));
  }
  ASSERT_NO_FATAL_FAILURE(must(c, "UPDATE rc SET v = v WHERE id = 1"));
  const long long clean = 26;
  auto counts = watch.wait_drained(clean);
  EXPECT_EQ(counts.success, clean) << counts.describe();
  auto samples = watch.metrics();
  auto d = watch.divergences(samples);
  EXPECT_EQ(d.total(), 0) << "divergences on clean traffic: row_count " << d.row_count
                          << ", result " << d.result << ", error " << d.error;
  EXPECT_TRUE(watch.show_divergences().empty());
  auto verdict = watch.wait_verdict(true);
  EXPECT_TRUE(verdict["ready"].boolean()) << describe_verdict(verdict);
  ASSERT_NO_FATAL_FAILURE(expect_all_criteria(verdict));
  for (const auto& cr : verdict["criteria"].array()) {
    EXPECT_TRUE(cr["ok"].boolean()) << describe_verdict(verdict);
  }
  EXPECT_EQ(watch.ready(watch.metrics()), 1.0);

  // The controlled divergences.
  auto r = c.exec("UPDATE rc SET v = v + 1 WHERE grp = 1");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.tag, "UPDATE 3");  // 5 on the mirror
  r = c.exec("UPDATE rc SET v = v + 2 WHERE grp = 1");
  ASSERT_TRUE(r.ok()) << r.describe();
  r = c.exec("SELECT secret FROM res WHERE id = 2 AND secret <> 'hunter2'");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0), "primary-secret-value");  // the same tag, SELECT 1, on the mirror
  r = c.exec("INSERT INTO err VALUES (1, 500)");  // violates the mirror's CHECK
  ASSERT_TRUE(r.ok()) << r.describe();

  counts = watch.wait_drained(clean + 4);
  EXPECT_EQ(counts.handed, clean + 4) << counts.describe();
  EXPECT_EQ(counts.success, clean + 3) << counts.describe();
  EXPECT_EQ(counts.query, 1) << counts.describe();
  EXPECT_EQ(counts.failure, 1) << counts.describe();
  EXPECT_EQ(counts.dropped, 0) << counts.describe();
  samples = watch.metrics();
  d = watch.divergences(samples);
  EXPECT_EQ(d.row_count, 2);
  EXPECT_EQ(d.result, 1);
  EXPECT_EQ(d.error, 1);
  // Latency parity is measured over the same requests on both sides: every success.
  for (const char* side : {"primary", "mirror"}) {
    const auto key = sample_key("pgdog_mirror_request_duration_seconds_count",
                                {{"cluster", kCluster}, {"side", side}});
    ASSERT_TRUE(samples.count(key)) << key << " missing";
    EXPECT_EQ(samples[key], static_cast<double>(counts.success)) << key;
  }

  const auto listed = watch.show_divergences();
  EXPECT_EQ(listed.size(), 3u);
  std::map<std::string, DivergentStatement> by_kind;
  for (const auto& s : listed) by_kind[s.kind] = s;
  EXPECT_EQ(by_kind["row_count"].fingerprint, "update rc set v = v + ? where grp = ?");
  EXPECT_EQ(by_kind["row_count"].count, 2);
  EXPECT_EQ(by_kind["result"].fingerprint, "select secret from res where id = ? and secret <> ?");
  EXPECT_EQ(by_kind["result"].count, 1);
  EXPECT_EQ(by_kind["error"].fingerprint, "insert into err values (?, ?)");
  EXPECT_EQ(by_kind["error"].count, 1);
  for (const auto& s : listed) {
    EXPECT_FALSE(s.last_seen.empty()) << s.fingerprint;
    // No data: no literal, no value either cluster returned.
    EXPECT_TRUE(std::none_of(s.fingerprint.begin(), s.fingerprint.end(),
                             [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)); }))
        << s.fingerprint;
    EXPECT_EQ(s.fingerprint.find("hunter2"), std::string::npos) << s.fingerprint;
    EXPECT_EQ(s.fingerprint.find("secret-value"), std::string::npos) << s.fingerprint;
  }

  verdict = watch.wait_verdict(false);
  EXPECT_FALSE(verdict["ready"].boolean()) << describe_verdict(verdict);
  ASSERT_NO_FATAL_FAILURE(expect_all_criteria(verdict));
  const Json* nd = criterion(verdict, "no_divergences");
  EXPECT_FALSE((*nd)["ok"].boolean()) << describe_verdict(verdict);
  EXPECT_EQ((*nd)["value"].number(), 4.0) << describe_verdict(verdict);
  EXPECT_NE((*nd)["reason"].string().find("SHOW MIRROR_DIVERGENCES"), std::string::npos);
  const Json* sr = criterion(verdict, "success_ratio");
  EXPECT_FALSE((*sr)["ok"].boolean()) << "a query failure must fail the success ratio: "
                                      << describe_verdict(verdict);
  EXPECT_TRUE((*criterion(verdict, "traffic_mirrored"))["ok"].boolean()) << describe_verdict(verdict);
  EXPECT_TRUE((*criterion(verdict, "no_drops"))["ok"].boolean()) << describe_verdict(verdict);
  EXPECT_EQ(verdict["totals"]["divergences"].number(), 4.0) << describe_verdict(verdict);
  EXPECT_EQ(verdict["totals"]["failure"].number(), 1.0) << describe_verdict(verdict);
  EXPECT_EQ(watch.ready(watch.metrics()), 0.0);

  // Neither the metrics nor the verdict carry data.
  for (const char* path : {"/metrics", "/mirrors"}) {
    const auto body = http_get(setup.metrics_port, path).body;
    EXPECT_EQ(body.find("hunter2"), std::string::npos) << path;
    EXPECT_EQ(body.find("secret-value"), std::string::npos) << path;
  }
}

// 9b. A clean TPC-B run under compare = "results" (each client updates and reads its own
// accounts, so concurrent replays cannot legitimately reorder a read): zero divergences, every
// transaction a success, identical tables, and a ready verdict.
TEST_F(MirrorTest, CleanTpcbRunKeepsZeroDivergencesAndReady) {
  const std::string db = "mirror_it_clean";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  for (int port : {e().primary_port, e().mirror_port}) {
    auto r = pgbench(port, "-i -q -s 1", db);
    ASSERT_EQ(r.exit_code, 0) << r.describe();
  }
  TempDir tmp;
  // pgbench's built-in tpcb-like script with the account chosen in the client's own eighth.
  const auto script = tmp.write("tpcb.sql", R"(\set aid random(1, 12500) + (:client_id % 8) * 12500
\set bid 1
\set tid random(1, 10)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
)");
  MirrorSetup setup{db, "queue_length = 100000\ncompare = \"results\"\n"};
  Pgdog pgdog(readiness_config(setup));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, setup.metrics_port);
  ASSERT_TRUE(watch.wait_metrics());

  auto r = pgbench(pgdog.port(), "-n -f " + script + " -c 8 -j 2 -T 5", db, 60s);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const long long processed = pgbench_processed(r.out);
  ASSERT_GT(processed, 0) << r.describe();
  EXPECT_EQ(pgbench_failed(r.out), 0) << r.describe();

  const auto counts = watch.wait_drained(processed, 60s);
  std::cout << "TPC-B under compare = results: " << processed << " transactions; "
            << counts.describe() << "\n";
  EXPECT_EQ(counts.handed, processed) << counts.describe();
  EXPECT_EQ(counts.success, processed) << counts.describe();
  EXPECT_EQ(counts.failure, 0) << counts.describe();
  EXPECT_EQ(counts.dropped, 0) << counts.describe();
  const auto d = watch.divergences(watch.metrics());
  EXPECT_EQ(d.row_count, 0);
  EXPECT_EQ(d.result, 0);
  EXPECT_EQ(d.error, 0);
  const auto listed = watch.show_divergences();
  EXPECT_TRUE(listed.empty()) << listed.size() << " divergent statements, first: "
                              << (listed.empty() ? "" : listed[0].kind + " " + listed[0].fingerprint);

  const auto verdict = watch.wait_verdict(true);
  EXPECT_TRUE(verdict["ready"].boolean()) << describe_verdict(verdict);
  ASSERT_NO_FATAL_FAILURE(expect_all_criteria(verdict));
  for (const auto& cr : verdict["criteria"].array()) {
    EXPECT_TRUE(cr["ok"].boolean()) << describe_verdict(verdict);
  }
  EXPECT_GT((*criterion(verdict, "traffic_mirrored"))["value"].number(), 0.0);
  EXPECT_EQ(verdict["totals"]["divergences"].number(), 0.0);
  EXPECT_EQ(watch.ready(watch.metrics()), 1.0);

  auto p = connect_primary(db);
  auto m = connect_mirror(db);
  const auto primary = bench_state(p);
  const auto mirror = bench_state(m);
  EXPECT_EQ(primary.history, std::to_string(processed));
  EXPECT_EQ(mirror, primary) << "mirror:  " << mirror.describe()
                             << "\nprimary: " << primary.describe();
}

// The page's visible text: scripts and styles removed, tags dropped, entities decoded,
// whitespace collapsed.
std::string visible_text(std::string html) {
  html = std::regex_replace(html, std::regex(R"(<script[\s\S]*?</script>)"), " ");
  html = std::regex_replace(html, std::regex(R"(<style[\s\S]*?</style>)"), " ");
  html = std::regex_replace(html, std::regex(R"(<[^>]*>)"), " ");
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&nbsp;", " "}, {"&amp;", "&"}}) {
    for (auto at = html.find(from); at != std::string::npos; at = html.find(from, at)) {
      html.replace(at, from.size(), to);
      at += to.size();
    }
  }
  std::string out;
  for (char ch : html) {
    if (std::isspace(static_cast<unsigned char>(ch))) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += ch;
    }
  }
  return out;
}

std::string find_chromium() {
  for (const char* path : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return "";
}

// 10. GET / in headless Chromium: two mirrors of one source, one healthy (READY), one whose
// cluster is unreachable (NOT READY); the rendered page names both with the verdict /mirrors
// gives, every criterion, which ones fail, and the live counts.
TEST_F(MirrorTest, StatusPageInChromiumShowsTheVerdicts) {
  const std::string chromium = find_chromium();
  if (chromium.empty()) {
    GTEST_SKIP() << "Chromium is not installed (Debian package chromium; scripts/install-deps "
                    "should install it): the status page is not checked";
  }
  const std::string db = "mirror_it_page";
  ASSERT_NO_FATAL_FAILURE(use_database(db));
  on_both(db, {"CREATE TABLE t (id int PRIMARY KEY)"});
  const int closed_port = free_port();  // nothing listens there
  MirrorSetup setup{db, "queue_length = 100000\n",
                    database_toml("mirror_down", closed_port, db) +
                        "\n[[mirroring]]\nsource_db = " + toml_string(db) +
                        "\ndestination_db = \"mirror_down\"\nqueue_length = 100000\n"};
  Pgdog pgdog(readiness_config(setup));
  ASSERT_TRUE(pgdog.started());
  MirrorWatch watch(pgdog, setup.metrics_port);
  MirrorWatch down(pgdog, setup.metrics_port, "mirror_down");
  ASSERT_TRUE(watch.wait_metrics());

  auto c = client(pgdog, db);
  for (int i = 1; i <= 10; ++i) {
    ASSERT_NO_FATAL_FAILURE(must(c, "INSERT INTO t VALUES (" + std::to_string(i) + ")"));
  }
  const auto healthy = watch.wait_drained(10);
  EXPECT_EQ(healthy.success, 10) << healthy.describe();
  const auto broken = down.wait_drained(10);
  EXPECT_EQ(broken.connection, 10) << broken.describe();

  const auto ok_verdict = watch.wait_verdict(true);
  ASSERT_TRUE(ok_verdict["ready"].boolean()) << describe_verdict(ok_verdict);
  const auto bad_verdict = down.wait_verdict(false);
  ASSERT_FALSE(bad_verdict["ready"].boolean()) << describe_verdict(bad_verdict);

  // The page itself: HTML, self-contained.
  const auto page = http_get(setup.metrics_port, "/");
  ASSERT_EQ(page.status, 200) << page.error;
  EXPECT_EQ(page.content_type.rfind("text/html", 0), 0u) << page.content_type;
  EXPECT_EQ(page.body.find("http://"), std::string::npos) << "the page refers to another site";
  EXPECT_EQ(page.body.find("https://"), std::string::npos) << "the page refers to another site";
  EXPECT_FALSE(std::regex_search(page.body, std::regex(R"(<(script|img|iframe)[^>]*\ssrc=)")))
      << "the page loads external assets";
  EXPECT_FALSE(std::regex_search(page.body, std::regex(R"(<link[^>]*stylesheet)")))
      << "the page loads an external stylesheet";

  TempDir profile;
  const std::string url = "http://127.0.0.1:" + std::to_string(setup.metrics_port) + "/";
  const auto r = run_command(
      "HOME=" + shell_quote(profile.path()) + " " + shell_quote(chromium) +
          " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
          " --disable-background-networking --disable-component-update --disable-sync"
          " --disable-dev-shm-usage --no-proxy-server --user-data-dir=" +
          shell_quote(profile.path() + "/profile") +
          " --virtual-time-budget=5000 --dump-dom " + shell_quote(url),
      90s);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const std::string text = visible_text(r.out);
  std::cout << "Chromium shows: " << text << "\n";

  EXPECT_EQ(text.find("Loading"), std::string::npos) << "the page never rendered /mirrors: " << text;
  EXPECT_EQ(text.find("Cannot reach"), std::string::npos) << text;
  const std::string ok_heading = std::string(kCluster) + " READY";
  const std::string bad_heading = "mirror_down NOT READY";
  const auto ok_at = text.find(ok_heading);
  const auto bad_at = text.find(bad_heading);
  ASSERT_NE(ok_at, std::string::npos) << "no '" << ok_heading << "' in: " << text;
  ASSERT_NE(bad_at, std::string::npos) << "no '" << bad_heading << "' in: " << text;
  EXPECT_EQ(text.find(std::string(kCluster) + " NOT READY"), std::string::npos) << text;
  EXPECT_EQ(text.find("mirror_down READY"), std::string::npos) << text;

  // Each mirror's part of the page runs from its heading to the next one.
  const std::string ok_part =
      text.substr(ok_at, ok_at < bad_at ? bad_at - ok_at : std::string::npos);
  const std::string bad_part =
      text.substr(bad_at, bad_at < ok_at ? ok_at - bad_at : std::string::npos);
  for (const auto& [part, verdict] :
       {std::pair{ok_part, &ok_verdict}, std::pair{bad_part, &bad_verdict}}) {
    for (const auto& cr : (*verdict)["criteria"].array()) {
      const std::string shown = (cr["ok"].boolean() ? "pass " : "FAIL ") + cr["name"].string();
      EXPECT_NE(part.find(shown), std::string::npos)
          << "'" << shown << "' not shown in: " << part;
    }
  }
  for (const auto& name : kCriteria) {
    EXPECT_NE(ok_part.find(name), std::string::npos) << name << " not shown in: " << ok_part;
    EXPECT_NE(bad_part.find(name), std::string::npos) << name << " not shown in: " << bad_part;
  }
  EXPECT_NE(bad_part.find("FAIL success_ratio"), std::string::npos) << bad_part;
  EXPECT_EQ(ok_part.find("FAIL"), std::string::npos) << ok_part;
  EXPECT_NE(ok_part.find("mirrored 10"), std::string::npos) << ok_part;
  EXPECT_NE(ok_part.find("success 10"), std::string::npos) << ok_part;
  EXPECT_NE(bad_part.find("failed 10"), std::string::npos) << bad_part;
}

}  // namespace
}  // namespace pgdog::it::mirror
