// The bodies checked by the real consumers: promtool (Prometheus text) and the Python
// prometheus_client OpenMetrics parser. Skipped only when the tool is not installed.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "stats/mirror_metrics.hpp"
#include "stats/proxy_metrics.hpp"
#include "stats/registry.hpp"

namespace pgdog::stats {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPromtool = "/usr/bin/promtool";
constexpr const char* kPython = "/usr/bin/python3";
// Label values that need every escape.
const std::string kOddDatabase = "app \"prod\" \\ east\nwing";
const std::string kOddCluster = "mirror\\\"2\"\n";

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "pgdog-stats-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& content) const {
    const auto file = (path_ / name).string();
    std::ofstream(file, std::ios::binary) << content;
    return file;
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

struct Run {
  int status = -1;
  std::string output;
};

Run run(const std::string& command, const TempDir& dir) {
  const auto out = dir.path("output.txt");
  const int rc = std::system((command + " > '" + out + "' 2>&1").c_str());
  Run r;
  r.status = rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  return r;
}

bool python_has(const std::string& module) {
  if (::access(kPython, X_OK) != 0) return false;
  const std::string cmd = std::string(kPython) + " -c 'import " + module + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// Every family pgdog writes, with values that exercise NaN, escapes and the histogram.
std::shared_ptr<Registry> full_registry() {
  auto a = std::make_shared<MirrorStats>("mirror");
  auto b = std::make_shared<MirrorStats>(kOddCluster);
  a->set_lag_source([] { return 0.125; });
  for (int i = 0; i < 10; ++i)
    a->handed();
  for (int i = 0; i < 6; ++i)
    a->record(MirrorOutcome::success);
  a->record(MirrorOutcome::query);
  a->record(MirrorOutcome::timeout);
  a->record(MirrorOutcome::dropped);
  auto reg = std::make_shared<Registry>();
  reg->add(std::make_shared<MirrorMetrics>(
      [a, b] {
        return std::vector{a, b};
      },
      [] { return std::optional<double>(0.05); }));
  auto counters = std::make_shared<PoolCounters>();
  PoolCounters::add(counters->queries, 12);
  PoolCounters::add(counters->query_time_us, 123'456);
  for (std::uint64_t us : {10, 200, 900, 3'000, 70'000, 2'000'000}) {
    counters->query_duration.observe_us(us);
  }
  PoolSample odd;
  odd.database = kOddDatabase;
  odd.user = "alice";
  odd.clients_active = 2;
  odd.counters = counters;
  PoolSample plain;
  plain.database = "app";
  plain.user = "bob";
  plain.counters = std::make_shared<PoolCounters>();
  PoolSample admin;
  admin.database = "admin";
  admin.user = "admin";
  admin.clients_idle = 1;
  reg->add(std::make_shared<ProxyMetrics>([odd, plain, admin] {
    return std::vector{odd, plain, admin};
  }));
  return reg;
}

TEST(Tools, PromtoolAcceptsThePrometheusTextBody) {
  if (::access(kPromtool, X_OK) != 0) GTEST_SKIP() << kPromtool << " not installed";
  TempDir dir;
  const auto body = full_registry()->render(Format::prometheus_text);
  const auto file = dir.write("metrics.txt", body);
  const auto r = run(std::string(kPromtool) + " check metrics < '" + file + "'", dir);
  EXPECT_EQ(r.status, 0) << r.output << "\n" << body;
  EXPECT_EQ(r.output, "") << body;
}

constexpr const char* kOpenMetricsCheck = R"(
import math, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
body = open(sys.argv[1], encoding='utf-8').read()
odd_db = open(sys.argv[2], encoding='utf-8').read()
odd_cluster = open(sys.argv[3], encoding='utf-8').read()
families = {f.name: f for f in text_string_to_metric_families(body)}
def value(family, sample, **labels):
    for s in families[family].samples:
        if s.name == sample and s.labels == labels:
            return s.value
    raise SystemExit('missing %s %r' % (sample, labels))
assert families['pgdog_mirror_requests'].type == 'counter', families['pgdog_mirror_requests'].type
assert families['pgdog_mirror_failures'].type == 'counter'
assert families['pgdog_query_duration_seconds'].type == 'histogram'
assert value('pgdog_mirror_requests', 'pgdog_mirror_requests_total', cluster='mirror', status='success') == 6
assert value('pgdog_mirror_requests', 'pgdog_mirror_requests_total', cluster='mirror', status='failure') == 2
assert value('pgdog_mirror_requests', 'pgdog_mirror_requests_total', cluster=odd_cluster, status='dropped') == 0
assert value('pgdog_mirror_queue_depth', 'pgdog_mirror_queue_depth', cluster='mirror') == 1
assert math.isnan(value('pgdog_mirror_success_rate', 'pgdog_mirror_success_rate', cluster=odd_cluster))
assert value('pgdog_mirror_failure_threshold', 'pgdog_mirror_failure_threshold', cluster='mirror') == 0.05
assert value('pgdog_queries', 'pgdog_queries_total', database=odd_db, user='alice') == 12
h = 'pgdog_query_duration_seconds'
assert value(h, h + '_bucket', database=odd_db, user='alice', le='+Inf') == 6
assert value(h, h + '_bucket', database=odd_db, user='alice', le='1.0') == 5
assert value(h, h + '_count', database=odd_db, user='alice') == 6
print(len(families), 'families')
)";

TEST(Tools, PythonOpenMetricsParserAcceptsTheNegotiatedBody) {
  if (!python_has("prometheus_client.openmetrics.parser")) {
    GTEST_SKIP() << kPython << " with prometheus_client not installed";
  }
  TempDir dir;
  const auto body = full_registry()->render(Format::openmetrics);
  const auto file = dir.write("metrics.om", body);
  const auto script = dir.write("check.py", kOpenMetricsCheck);
  const auto db = dir.write("db.txt", kOddDatabase);
  const auto cluster = dir.write("cluster.txt", kOddCluster);
  const auto r =
      run(std::string(kPython) + " '" + script + "' '" + file + "' '" + db + "' '" + cluster + "'",
          dir);
  EXPECT_EQ(r.status, 0) << r.output << "\n" << body;
}

constexpr const char* kTextCheck = R"(
import sys
from prometheus_client.parser import text_string_to_metric_families
body = open(sys.argv[1], encoding='utf-8').read()
odd_db = open(sys.argv[2], encoding='utf-8').read()
families = {f.name: f for f in text_string_to_metric_families(body)}
samples = [s for f in families.values() for s in f.samples]
assert any(s.labels.get('database') == odd_db for s in samples), 'label value did not round-trip'
assert families['pgdog_mirror_requests'].type == 'counter'
)";

TEST(Tools, PythonPrometheusTextParserReadsTheEscapedLabelsBack) {
  if (!python_has("prometheus_client.parser")) GTEST_SKIP() << "prometheus_client not installed";
  TempDir dir;
  const auto body = full_registry()->render(Format::prometheus_text);
  const auto file = dir.write("metrics.txt", body);
  const auto script = dir.write("check.py", kTextCheck);
  const auto db = dir.write("db.txt", kOddDatabase);
  const auto r = run(std::string(kPython) + " '" + script + "' '" + file + "' '" + db + "'", dir);
  EXPECT_EQ(r.status, 0) << r.output << "\n" << body;
}

}  // namespace
}  // namespace pgdog::stats
