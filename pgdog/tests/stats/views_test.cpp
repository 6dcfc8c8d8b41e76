// The views generated from the counter lists (PGDOG_POOL_COUNTERS, kMirrorFields): each list
// entry must appear in every view it names, and each view must still be the contract that
// dashboards, integration tests and admin scripts read (names, labels, columns, order).
#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "stats/helpers.hpp"
#include "stats/mirror_fields.hpp"
#include "stats/mirror_metrics.hpp"
#include "stats/proxy_metrics.hpp"
#include "stats/serializer.hpp"

namespace pgdog::stats {
namespace {

using test::Labels;
using test::value_of;

std::vector<prometheus::MetricFamily> collect(const OpenMetric& m) {
  std::vector<prometheus::MetricFamily> out;
  m.collect(out);
  return out;
}

std::vector<std::string> names(const std::vector<prometheus::MetricFamily>& families) {
  std::vector<std::string> out;
  for (const auto& f : families)
    out.push_back(f.name);
  return out;
}

// The "# TYPE name ..." lines of a Prometheus text body, in order.
std::vector<std::string> declared(const std::string& body) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while ((at = body.find("# TYPE ", at)) != std::string::npos) {
    at += 7;
    out.push_back(body.substr(at, body.find(' ', at) - at));
  }
  return out;
}

std::vector<prometheus::MetricFamily> pool_families(std::shared_ptr<PoolCounters> counters) {
  PoolSample s;
  s.database = "app";
  s.user = "alice";
  s.counters = std::move(counters);
  return collect(ProxyMetrics([s] { return std::vector{s}; }));
}

TEST(PoolCounterViews, FamiliesAreTheContractInOrder) {
  const auto families = pool_families(std::make_shared<PoolCounters>());
  const std::vector<std::string> contract = {"pgdog_clients",
                                             "pgdog_clients_waiting",
                                             "pgdog_client_max_wait_seconds",
                                             "pgdog_servers",
                                             "pgdog_transactions_total",
                                             "pgdog_queries_total",
                                             "pgdog_errors_total",
                                             "pgdog_server_connects_total",
                                             "pgdog_server_connect_errors_total",
                                             "pgdog_bytes_received_total",
                                             "pgdog_bytes_sent_total",
                                             "pgdog_transaction_time_seconds_total",
                                             "pgdog_query_time_seconds_total",
                                             "pgdog_wait_time_seconds_total",
                                             "pgdog_pinned_clients",
                                             "pgdog_pins_total",
                                             "pgdog_query_duration_seconds"};
  EXPECT_EQ(names(families), contract);
  EXPECT_EQ(declared(serialize(families, Format::prometheus_text)), contract);
}

// Each counter gets its own value (1000 + its index), so a view that showed one counter in
// another's place, or left one out, would not match.
std::shared_ptr<PoolCounters> distinct_counters() {
  auto c = std::make_shared<PoolCounters>();
  for (std::size_t i = 0; i < std::size(kPoolCounters); ++i) {
    PoolCounters::add((*c).*kPoolCounters[i].member, 1000 + i);
  }
  return c;
}

TEST(PoolCounterViews, EveryCounterIsASeriesOfItsFamily) {
  const auto families = pool_families(distinct_counters());
  const Labels pool{{"database", "app"}, {"user", "alice"}};
  for (std::size_t i = 0; i < std::size(kPoolCounters); ++i) {
    const auto& c = kPoolCounters[i];
    const double expected =
        static_cast<double>(1000 + i) / (c.unit == PoolUnit::micros ? 1e6 : 1.0);
    EXPECT_EQ(value_of(families, c.family, pool), expected) << c.family;
  }
}

TEST(PoolCounterViews, ShowStatsColumnsAreTheContract) {
  EXPECT_EQ(counter_columns(PoolCommand::stats),
            (std::vector<std::string>{"total_xact_count", "total_query_count", "total_received",
                                      "total_sent", "total_xact_time", "total_query_time",
                                      "total_wait_time", "total_errors"}));
  EXPECT_EQ(counter_columns(PoolCommand::pools), std::vector<std::string>{"errors"});
}

TEST(PoolCounterViews, EveryShownCounterHasItsCellUnderItsColumn) {
  auto counters = std::make_shared<PoolCounters>();
  PoolCounters::add(counters->transactions, 11);
  PoolCounters::add(counters->queries, 22);
  PoolCounters::add(counters->bytes_received, 33);
  PoolCounters::add(counters->bytes_sent, 44);
  PoolCounters::add(counters->transaction_time_us, 55);
  PoolCounters::add(counters->query_time_us, 66);
  PoolCounters::add(counters->wait_time_us, 77);
  PoolCounters::add(counters->errors, 88);
  PoolCounters::add(counters->server_connect_errors, 99);
  PoolCounters::add(counters->server_connects, 5);

  Cells stats_row;
  append_counter_cells(PoolCommand::stats, *counters, stats_row);
  EXPECT_EQ(stats_row, (Cells{"11", "22", "33", "44", "55", "66", "77", "88"}));
  Cells pools_row;
  append_counter_cells(PoolCommand::pools, *counters, pools_row);
  EXPECT_EQ(pools_row, Cells{"99"});

  // And the other way round: every list entry that names a command is one of its columns.
  for (const auto& c : kPoolCounters) {
    if (c.command == PoolCommand::none) continue;
    const auto columns = counter_columns(c.command);
    EXPECT_NE(std::find(columns.begin(), columns.end(), c.column), columns.end()) << c.column;
  }
}

std::shared_ptr<MirrorStats> busy_mirror(const std::string& cluster) {
  auto m = std::make_shared<MirrorStats>(cluster);
  m->set_lag_source([] { return 0.25; });
  for (int i = 0; i < 20; ++i)
    m->handed();
  for (int i = 0; i < 9; ++i)
    m->record(MirrorOutcome::success);
  m->record(MirrorOutcome::connection);
  for (int i = 0; i < 2; ++i)
    m->record(MirrorOutcome::timeout);
  for (int i = 0; i < 3; ++i)
    m->record(MirrorOutcome::query);
  m->record(MirrorOutcome::dropped);
  m->diverged(Divergence::row_count, "update t set a = ?");
  m->diverged(Divergence::error, "insert into t values (?)");
  m->diverged(Divergence::error, "insert into t values (?)");
  m->observe_durations(1000, 2000);
  return m;
}

TEST(MirrorViews, FamiliesAreTheContractInOrder) {
  auto m = busy_mirror("mirror");
  MirrorMetrics metrics([m] { return std::vector{m}; }, [] { return 0.05; },
                        [](const std::string&) { return ReadinessSettings{}; });
  const auto families = collect(metrics);
  const std::vector<std::string> contract = {"pgdog_mirror_requests_total",
                                             "pgdog_mirror_failures_total",
                                             "pgdog_mirror_success_rate",
                                             "pgdog_mirror_queue_depth",
                                             "pgdog_mirror_lag_seconds",
                                             "pgdog_mirror_last_success_timestamp",
                                             "pgdog_mirror_last_failure_timestamp",
                                             "pgdog_mirror_divergences_total",
                                             "pgdog_mirror_request_duration_seconds",
                                             "pgdog_mirror_ready",
                                             "pgdog_mirror_failure_threshold"};
  EXPECT_EQ(names(families), contract);
  EXPECT_EQ(declared(serialize(families, Format::prometheus_text)), contract);
}

TEST(MirrorViews, EveryFigureWithAFamilyIsASeriesWithItsLabel) {
  auto m = busy_mirror("mirror");
  const auto snapshot = m->snapshot();
  const auto families = collect(MirrorMetrics([m] { return std::vector{m}; }, {}));
  for (const auto& f : kMirrorFields) {
    if (f.family == nullptr) continue;
    Labels labels{{"cluster", "mirror"}};
    if (!f.family->label.empty()) labels[std::string(f.family->label)] = std::string(f.series);
    const auto value = value_of(families, f.family->name, labels);
    ASSERT_TRUE(value) << f.family->name << " has no series for " << f.name;
    if (!std::isnan(f.value(snapshot))) {
      EXPECT_EQ(*value, f.value(snapshot)) << f.name;
    }
  }
  // The values the test recorded, through the generated families.
  const Labels c{{"cluster", "mirror"}};
  auto with = [&](const char* label, const char* value) {
    Labels l = c;
    l[label] = value;
    return l;
  };
  EXPECT_EQ(value_of(families, "pgdog_mirror_requests_total", with("status", "success")), 9.0);
  EXPECT_EQ(value_of(families, "pgdog_mirror_requests_total", with("status", "failure")), 6.0);
  EXPECT_EQ(value_of(families, "pgdog_mirror_requests_total", with("status", "dropped")), 1.0);
  EXPECT_EQ(value_of(families, "pgdog_mirror_failures_total", with("error_type", "timeout")), 2.0);
  EXPECT_EQ(value_of(families, "pgdog_mirror_failures_total", with("error_type", "query")), 3.0);
  EXPECT_EQ(value_of(families, "pgdog_mirror_queue_depth", c), 4.0);  // 20 - 9 - 6 - 1
  EXPECT_EQ(value_of(families, "pgdog_mirror_lag_seconds", c), 0.25);
  EXPECT_EQ(value_of(families, "pgdog_mirror_divergences_total", with("kind", "error")), 2.0);
  EXPECT_EQ(value_of(families, "pgdog_mirror_divergences_total", with("kind", "result")), 0.0);
}

TEST(MirrorViews, DivergenceSeriesAreTheKindNames) {
  std::set<std::string> series;
  for (const auto& f : kMirrorFields) {
    if (f.family == &kMirrorDivergences) series.emplace(f.series);
  }
  std::set<std::string> kinds;
  for (int k = 0; k < kDivergenceKinds; ++k)
    kinds.emplace(to_string(static_cast<Divergence>(k)));
  EXPECT_EQ(series, kinds);
}

TEST(MirrorViews, ShowMirrorsColumnsAreTheContract) {
  EXPECT_EQ(mirror_columns(),
            (std::vector<std::string>{"handed", "success", "failure", "dropped", "connection",
                                      "timeout", "query", "queue_depth", "lag_seconds",
                                      "success_rate_60s", "last_success", "last_failure"}));
  const auto columns = mirror_columns();
  for (const auto& f : kMirrorFields) {
    if (f.cell == MirrorCell::none) continue;
    EXPECT_NE(std::find(columns.begin(), columns.end(), f.name), columns.end()) << f.name;
  }
}

TEST(MirrorViews, ShowMirrorsCells) {
  auto m = busy_mirror("mirror");
  Cells row;
  append_mirror_cells(m->snapshot(), row);
  ASSERT_EQ(row.size(), mirror_columns().size());
  const Cells counts(row.begin(), row.begin() + 10);
  EXPECT_EQ(counts, (Cells{"20", "9", "6", "1", "1", "2", "3", "4", "0.250", "0.600"}));
  ASSERT_TRUE(row[10] && row[11]);
  EXPECT_EQ(row[10]->size(), std::string("2024-05-01 12:34:56").size()) << *row[10];

  // Nothing happened yet: no success rate and no times, as SQL NULL.
  Cells idle;
  append_mirror_cells(MirrorStats("idle").snapshot(), idle);
  EXPECT_EQ(idle[9], std::nullopt);
  EXPECT_EQ(idle[10], std::nullopt);
  EXPECT_EQ(idle[11], std::nullopt);
}

TEST(MirrorViews, MirrorsJsonTotalsAreTheWindowedFigures) {
  auto m = busy_mirror("mirror");
  const auto json = to_json({evaluate(*m, ReadinessSettings{})});
  EXPECT_NE(json.find("\"totals\":{\"handed\":20,\"success\":9,\"failure\":6,\"dropped\":1,"
                      "\"divergences\":3}"),
            std::string::npos)
      << json;
  for (const auto& f : kMirrorFields) {
    if (f.windowed == nullptr) continue;
    EXPECT_NE(json.find("\"" + std::string(f.name) + "\":"), std::string::npos) << f.name;
  }
}

}  // namespace
}  // namespace pgdog::stats
