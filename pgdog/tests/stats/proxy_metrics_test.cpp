#include <set>

#include <gtest/gtest.h>

#include "stats/helpers.hpp"
#include "stats/mirror_metrics.hpp"
#include "stats/proxy_metrics.hpp"
#include "stats/registry.hpp"

namespace pgdog::stats {
namespace {

using test::Labels;
using test::value_of;

std::vector<prometheus::MetricFamily> collect(const OpenMetric& m) {
  std::vector<prometheus::MetricFamily> out;
  m.collect(out);
  return out;
}

PoolSample sample(std::string database, std::string user,
                  std::shared_ptr<PoolCounters> counters = nullptr) {
  PoolSample s;
  s.database = std::move(database);
  s.user = std::move(user);
  s.counters = std::move(counters);
  return s;
}

TEST(ProxyMetrics, GaugesByState) {
  auto s = sample("app", "alice", std::make_shared<PoolCounters>());
  s.clients_active = 3;
  s.clients_idle = 7;
  s.clients_waiting = 2;
  s.servers_active = 3;
  s.servers_idle = 1;
  s.servers_login = 1;
  s.max_wait_seconds = 0.25;
  const auto f = collect(ProxyMetrics([s] { return std::vector{s}; }));
  const Labels k{{"database", "app"}, {"user", "alice"}};
  auto with = [&](const char* state) {
    Labels l = k;
    l["state"] = state;
    return l;
  };
  EXPECT_EQ(value_of(f, "pgdog_clients", with("active")), 3.0);
  EXPECT_EQ(value_of(f, "pgdog_clients", with("idle")), 7.0);
  EXPECT_EQ(value_of(f, "pgdog_clients", with("waiting")), 2.0);
  EXPECT_EQ(value_of(f, "pgdog_clients_waiting", k), 2.0);
  EXPECT_EQ(value_of(f, "pgdog_servers", with("active")), 3.0);
  EXPECT_EQ(value_of(f, "pgdog_servers", with("idle")), 1.0);
  EXPECT_EQ(value_of(f, "pgdog_servers", with("login")), 1.0);
  EXPECT_EQ(value_of(f, "pgdog_client_max_wait_seconds", k), 0.25);
}

TEST(ProxyMetrics, CountersInBaseUnits) {
  auto c = std::make_shared<PoolCounters>();
  PoolCounters::add(c->transactions, 10);
  PoolCounters::add(c->queries, 25);
  PoolCounters::add(c->errors, 2);
  PoolCounters::add(c->bytes_received, 1000);
  PoolCounters::add(c->bytes_sent, 5000);
  PoolCounters::add(c->transaction_time_us, 1'500'000);
  PoolCounters::add(c->query_time_us, 250'000);
  PoolCounters::add(c->wait_time_us, 3);
  PoolCounters::add(c->server_connects, 4);
  PoolCounters::add(c->server_connect_errors, 1);
  const auto s = sample("app", "alice", c);
  const auto f = collect(ProxyMetrics([s] { return std::vector{s}; }));
  const Labels k{{"database", "app"}, {"user", "alice"}};
  EXPECT_EQ(value_of(f, "pgdog_transactions_total", k), 10.0);
  EXPECT_EQ(value_of(f, "pgdog_queries_total", k), 25.0);
  EXPECT_EQ(value_of(f, "pgdog_errors_total", k), 2.0);
  EXPECT_EQ(value_of(f, "pgdog_bytes_received_total", k), 1000.0);
  EXPECT_EQ(value_of(f, "pgdog_bytes_sent_total", k), 5000.0);
  EXPECT_EQ(value_of(f, "pgdog_transaction_time_seconds_total", k), 1.5);
  EXPECT_EQ(value_of(f, "pgdog_query_time_seconds_total", k), 0.25);
  EXPECT_DOUBLE_EQ(*value_of(f, "pgdog_wait_time_seconds_total", k), 3e-6);
  EXPECT_EQ(value_of(f, "pgdog_server_connects_total", k), 4.0);
  EXPECT_EQ(value_of(f, "pgdog_server_connect_errors_total", k), 1.0);
  for (const auto& family : f) {
    if (family.type == prometheus::MetricType::Counter) {
      EXPECT_TRUE(family.name.ends_with("_total")) << family.name;
    }
  }
}

TEST(ProxyMetrics, HistogramIsCumulativeWithInfSumAndCount) {
  auto c = std::make_shared<PoolCounters>();
  const std::uint64_t observed_us[] = {50, 300, 300, 40'000, 20'000'000};  // the last: +Inf only
  for (auto us : observed_us) c->query_duration.observe_us(us);
  const auto s = sample("app", "alice", c);
  const auto f = collect(ProxyMetrics([s] { return std::vector{s}; }));
  const auto* m = test::find_metric(f, "pgdog_query_duration_seconds",
                                    {{"database", "app"}, {"user", "alice"}});
  ASSERT_NE(m, nullptr);
  const auto& h = m->histogram;
  ASSERT_EQ(h.bucket.size(), kDurationBuckets.size());
  for (std::size_t i = 0; i < kDurationBuckets.size(); ++i) {
    std::uint64_t expected = 0;
    for (auto us : observed_us) expected += static_cast<double>(us) / 1e6 <= kDurationBuckets[i];
    EXPECT_EQ(h.bucket[i].upper_bound, kDurationBuckets[i]);
    EXPECT_EQ(h.bucket[i].cumulative_count, expected) << "le=" << kDurationBuckets[i];
  }
  EXPECT_EQ(h.bucket.back().cumulative_count, 4U);  // 20 s is above every bound
  EXPECT_EQ(h.sample_count, 5U);
  EXPECT_DOUBLE_EQ(h.sample_sum, 20.04065);

  const auto text = serialize(f, Format::prometheus_text);
  const std::string prefix =
      "pgdog_query_duration_seconds_bucket{database=\"app\",user=\"alice\",le=";
  EXPECT_NE(text.find(prefix + "\"0.0001\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find(prefix + "\"0.0005\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find(prefix + "\"1\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find(prefix + "\"+Inf\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgdog_query_duration_seconds_count{database=\"app\",user=\"alice\"} 5\n"),
            std::string::npos);
  EXPECT_NE(
      text.find("pgdog_query_duration_seconds_sum{database=\"app\",user=\"alice\"} 20.04065\n"),
      std::string::npos);
}

TEST(ProxyMetrics, SamplesWithoutCountersHaveGaugesOnly) {
  auto s = sample("admin", "admin");
  s.clients_active = 1;
  const auto f = collect(ProxyMetrics([s] { return std::vector{s}; }));
  const Labels k{{"database", "admin"}, {"user", "admin"}};
  EXPECT_EQ(
      value_of(f, "pgdog_clients", {{"database", "admin"}, {"user", "admin"}, {"state", "active"}}),
      1.0);
  EXPECT_FALSE(value_of(f, "pgdog_queries_total", k));
  EXPECT_EQ(test::find_metric(f, "pgdog_query_duration_seconds", k), nullptr);
}

TEST(ProxyMetrics, SamplesOfOneDatabaseAndUserAreSummed) {
  auto c1 = std::make_shared<PoolCounters>();
  auto c2 = std::make_shared<PoolCounters>();
  PoolCounters::add(c1->queries, 2);
  PoolCounters::add(c2->queries, 3);
  auto a = sample("app", "alice", c1);
  auto b = sample("app", "alice", c2);
  a.clients_idle = 1;
  b.clients_idle = 2;
  a.max_wait_seconds = 0.5;
  b.max_wait_seconds = 0.1;
  const auto f = collect(ProxyMetrics([a, b] { return std::vector{a, b}; }));
  const Labels k{{"database", "app"}, {"user", "alice"}};
  EXPECT_EQ(value_of(f, "pgdog_queries_total", k), 5.0);
  EXPECT_EQ(value_of(f, "pgdog_clients_waiting", k), 0.0);
  EXPECT_EQ(value_of(f, "pgdog_client_max_wait_seconds", k), 0.5);
  EXPECT_EQ(test::find_family(f, "pgdog_queries_total")->metric.size(), 1U);
}

TEST(ProxyMetrics, EveryFamilyHasHelpAndTheContractNames) {
  const auto s = sample("app", "alice", std::make_shared<PoolCounters>());
  const auto f = collect(ProxyMetrics([s] { return std::vector{s}; }));
  std::set<std::string> names;
  for (const auto& family : f) {
    EXPECT_FALSE(family.help.empty()) << family.name;
    names.insert(family.name);
  }
  const std::set<std::string> expected{"pgdog_clients",
                                       "pgdog_servers",
                                       "pgdog_clients_waiting",
                                       "pgdog_client_max_wait_seconds",
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
  EXPECT_EQ(names, expected);
}

TEST(Registry, CollectsSourcesInOrder) {
  auto reg = std::make_shared<Registry>();
  auto mirror = std::make_shared<MirrorStats>("m");
  reg->add(std::make_shared<MirrorMetrics>([mirror] { return std::vector{mirror}; },
                                           [] { return std::optional<double>{}; }));
  const auto s = sample("app", "alice", std::make_shared<PoolCounters>());
  reg->add(std::make_shared<ProxyMetrics>([s] { return std::vector{s}; }));
  const auto f = reg->collect();
  ASSERT_FALSE(f.empty());
  EXPECT_EQ(f.front().name, "pgdog_mirror_requests_total");
  EXPECT_EQ(f.back().name, "pgdog_query_duration_seconds");
  EXPECT_EQ(reg->render(Format::openmetrics), serialize(f, Format::openmetrics));
}

}  // namespace
}  // namespace pgdog::stats

namespace pgdog::stats {
namespace {

TEST(ProxyMetrics, PinnedClientsAndPinsByReason) {
  auto c = std::make_shared<PoolCounters>();
  c->pinned = 2;
  c->pins[0] = 3;  // temp_table
  c->pins[2] = 1;  // listen
  const auto s = sample("app", "alice", c);
  const auto f = collect(ProxyMetrics([s] { return std::vector{s}; }));
  const auto* pinned = test::find_metric(f, "pgdog_pinned_clients", {{"database", "app"}, {"user", "alice"}});
  ASSERT_NE(pinned, nullptr);
  EXPECT_EQ(pinned->gauge.value, 2);
  for (std::size_t i = 0; i < kPinReasons.size(); ++i) {
    const auto* m = test::find_metric(
        f, "pgdog_pins_total",
        {{"database", "app"}, {"user", "alice"}, {"reason", std::string(kPinReasons[i])}});
    ASSERT_NE(m, nullptr) << kPinReasons[i];
    EXPECT_EQ(m->counter.value, i == 0 ? 3 : i == 2 ? 1 : 0) << kPinReasons[i];
  }
}

}  // namespace
}  // namespace pgdog::stats
