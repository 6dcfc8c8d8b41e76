#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

#include <gtest/gtest.h>

#include "stats/helpers.hpp"
#include "stats/mirror_metrics.hpp"
#include "stats/serializer.hpp"

namespace pgdog::stats {
namespace {

using test::Labels;
using test::value_of;

constexpr const char* kStatuses[] = {"success", "failure", "dropped"};
constexpr const char* kErrorTypes[] = {"connection", "timeout", "query"};

std::vector<prometheus::MetricFamily> collect(const OpenMetric& m) {
  std::vector<prometheus::MetricFamily> out;
  m.collect(out);
  return out;
}

MirrorMetrics metrics_of(std::vector<std::shared_ptr<MirrorStats>> stats,
                         std::optional<double> threshold = std::nullopt) {
  return MirrorMetrics([stats] { return stats; }, [threshold] { return threshold; });
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

TEST(MirrorMetrics, EverySeriesIsPresentAtZeroFromTheStart) {
  auto stats = std::make_shared<MirrorStats>("mirror");
  const auto f = collect(metrics_of({stats}));
  for (const char* s : kStatuses) {
    EXPECT_EQ(value_of(f, "pgdog_mirror_requests_total", {{"cluster", "mirror"}, {"status", s}}),
              0.0)
        << s;
  }
  for (const char* e : kErrorTypes) {
    EXPECT_EQ(
        value_of(f, "pgdog_mirror_failures_total", {{"cluster", "mirror"}, {"error_type", e}}), 0.0)
        << e;
  }
  const Labels c{{"cluster", "mirror"}};
  EXPECT_EQ(value_of(f, "pgdog_mirror_queue_depth", c), 0.0);
  EXPECT_EQ(value_of(f, "pgdog_mirror_lag_seconds", c), 0.0);
  EXPECT_EQ(value_of(f, "pgdog_mirror_last_success_timestamp", c), 0.0);
  EXPECT_EQ(value_of(f, "pgdog_mirror_last_failure_timestamp", c), 0.0);
  auto rate = value_of(f, "pgdog_mirror_success_rate", c);
  ASSERT_TRUE(rate);
  EXPECT_TRUE(std::isnan(*rate));
  EXPECT_EQ(test::find_family(f, "pgdog_mirror_failure_threshold"), nullptr);

  const auto text = serialize(f, Format::prometheus_text);
  EXPECT_NE(text.find("pgdog_mirror_success_rate{cluster=\"mirror\"} NaN\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE pgdog_mirror_requests_total counter\n"), std::string::npos);
  const auto om = serialize(f, Format::openmetrics);
  EXPECT_NE(om.find("# TYPE pgdog_mirror_requests counter\n"), std::string::npos) << om;
  EXPECT_NE(om.find("# TYPE pgdog_mirror_failures counter\n"), std::string::npos) << om;
  EXPECT_NE(om.find("pgdog_mirror_requests_total{cluster=\"mirror\",status=\"success\"} 0\n"),
            std::string::npos)
      << om;
}

TEST(MirrorMetrics, ExactValuesAfterRecords) {
  auto stats = std::make_shared<MirrorStats>("mirror");
  stats->set_lag_source([] { return 1.5; });
  for (int i = 0; i < 12; ++i)
    stats->handed();
  for (int i = 0; i < 5; ++i)
    stats->record(MirrorOutcome::success);
  stats->record(MirrorOutcome::connection);
  stats->record(MirrorOutcome::timeout);
  stats->record(MirrorOutcome::timeout);
  stats->record(MirrorOutcome::query);
  stats->record(MirrorOutcome::dropped);
  const double before = now_seconds();

  const auto f = collect(metrics_of({stats}));
  auto req = [&](const char* s) {
    return value_of(f, "pgdog_mirror_requests_total", {{"cluster", "mirror"}, {"status", s}});
  };
  auto fail = [&](const char* e) {
    return value_of(f, "pgdog_mirror_failures_total", {{"cluster", "mirror"}, {"error_type", e}});
  };
  const Labels c{{"cluster", "mirror"}};
  EXPECT_EQ(req("success"), 5.0);
  EXPECT_EQ(req("failure"), 4.0);
  EXPECT_EQ(req("dropped"), 1.0);
  EXPECT_EQ(fail("connection"), 1.0);
  EXPECT_EQ(fail("timeout"), 2.0);
  EXPECT_EQ(fail("query"), 1.0);
  EXPECT_EQ(value_of(f, "pgdog_mirror_queue_depth", c), 2.0);  // 12 handed, 10 ended
  EXPECT_EQ(value_of(f, "pgdog_mirror_lag_seconds", c), 1.5);
  EXPECT_DOUBLE_EQ(*value_of(f, "pgdog_mirror_success_rate", c), 5.0 / 9.0);
  for (const char* name :
       {"pgdog_mirror_last_success_timestamp", "pgdog_mirror_last_failure_timestamp"}) {
    const double t = *value_of(f, name, c);
    EXPECT_GT(t, before - 60) << name;
    EXPECT_LE(t, before + 1) << name;
  }
}

TEST(MirrorMetrics, ThresholdFamilyOnlyWhenSet) {
  auto a = std::make_shared<MirrorStats>("a");
  auto b = std::make_shared<MirrorStats>("b");
  EXPECT_EQ(test::find_family(collect(metrics_of({a, b})), "pgdog_mirror_failure_threshold"),
            nullptr);
  const auto f = collect(metrics_of({a, b}, 0.25));
  EXPECT_EQ(value_of(f, "pgdog_mirror_failure_threshold", {{"cluster", "a"}}), 0.25);
  EXPECT_EQ(value_of(f, "pgdog_mirror_failure_threshold", {{"cluster", "b"}}), 0.25);
}

TEST(MirrorMetrics, ThresholdIsReadAtEveryCollect) {
  auto stats = std::make_shared<MirrorStats>("m");
  std::optional<double> threshold;
  MirrorMetrics m([stats] { return std::vector{stats}; }, [&threshold] { return threshold; });
  EXPECT_EQ(test::find_family(collect(m), "pgdog_mirror_failure_threshold"), nullptr);
  threshold = 0.1;
  EXPECT_EQ(value_of(collect(m), "pgdog_mirror_failure_threshold", {{"cluster", "m"}}), 0.1);
}

TEST(MirrorMetrics, OneSeriesPerClusterInEveryFamily) {
  auto a = std::make_shared<MirrorStats>("a");
  auto b = std::make_shared<MirrorStats>("b");
  a->handed();
  a->record(MirrorOutcome::success);
  b->handed();
  b->record(MirrorOutcome::query);
  const auto f = collect(metrics_of({a, b}));
  EXPECT_EQ(value_of(f, "pgdog_mirror_requests_total", {{"cluster", "a"}, {"status", "success"}}),
            1.0);
  EXPECT_EQ(value_of(f, "pgdog_mirror_requests_total", {{"cluster", "b"}, {"status", "success"}}),
            0.0);
  EXPECT_EQ(value_of(f, "pgdog_mirror_failures_total", {{"cluster", "b"}, {"error_type", "query"}}),
            1.0);
  for (const auto& family : f) {
    std::size_t per_cluster = 1;
    if (family.name == "pgdog_mirror_requests_total" ||
        family.name == "pgdog_mirror_failures_total" ||
        family.name == "pgdog_mirror_divergences_total") {
      per_cluster = 3;
    } else if (family.name == "pgdog_mirror_request_duration_seconds") {
      per_cluster = 2;  // primary and mirror
    }
    EXPECT_EQ(family.metric.size(), 2 * per_cluster) << family.name;
    EXPECT_FALSE(family.help.empty()) << family.name;
  }
  EXPECT_EQ(f.size(), 9U);
}

TEST(MirrorMetrics, NoClustersNoFamilies) {
  EXPECT_TRUE(collect(metrics_of({})).empty());
  EXPECT_TRUE(collect(metrics_of({}, 0.5)).empty());
}

// Workers record while the endpoint collects: in every collection the failure series add up to
// the failure status and the depth (derived from the same snapshot) is never negative.
TEST(MirrorMetrics, ConsistentInEveryCollectionUnderLoad) {
  auto stats = std::make_shared<MirrorStats>("mirror");
  const auto m = metrics_of({stats});
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&, t] {
      const MirrorOutcome outcomes[] = {MirrorOutcome::success, MirrorOutcome::connection,
                                        MirrorOutcome::timeout, MirrorOutcome::query,
                                        MirrorOutcome::dropped};
      for (int i = 0; !stop; ++i) {
        stats->handed();
        stats->record(outcomes[(i + t) % 5]);
      }
    });
  }
  int inconsistent = 0;
  int negative = 0;
  double last_total = 0;
  int backwards = 0;
  for (int i = 0; i < 2000; ++i) {
    const auto f = collect(m);
    auto req = [&](const char* s) {
      return *value_of(f, "pgdog_mirror_requests_total", {{"cluster", "mirror"}, {"status", s}});
    };
    double failures = 0;
    for (const char* e : kErrorTypes) {
      failures +=
          *value_of(f, "pgdog_mirror_failures_total", {{"cluster", "mirror"}, {"error_type", e}});
    }
    const double depth = *value_of(f, "pgdog_mirror_queue_depth", {{"cluster", "mirror"}});
    const double total = req("success") + req("failure") + req("dropped") + depth;
    if (failures != req("failure")) ++inconsistent;
    if (depth < 0) ++negative;
    // success + failure + dropped + depth is what was handed: it never goes back.
    if (total < last_total) ++backwards;
    last_total = total;
  }
  stop = true;
  for (auto& w : workers)
    w.join();
  EXPECT_EQ(inconsistent, 0);
  EXPECT_EQ(negative, 0);
  EXPECT_EQ(backwards, 0);
  const auto s = stats->snapshot();
  EXPECT_EQ(s.handed, s.success + s.failure() + s.dropped + s.queue_depth);
  EXPECT_EQ(s.queue_depth, 0U);
}

TEST(MirrorMetrics, DivergencesDurationsAndReadiness) {
  auto a = std::make_shared<MirrorStats>("a");
  for (int i = 0; i < 10; ++i) {
    a->handed();
    a->record(MirrorOutcome::success);
    a->observe_durations(1'000, 1'200);
  }
  a->diverged(Divergence::row_count, "update t set a = ?");
  MirrorMetrics m([a] { return std::vector{a}; }, [] { return std::optional<double>{}; },
                  [](const std::string&) { return ReadinessSettings{}; });
  const auto f = collect(m);
  EXPECT_EQ(value_of(f, "pgdog_mirror_divergences_total", {{"cluster", "a"}, {"kind", "row_count"}}),
            1.0);
  EXPECT_EQ(value_of(f, "pgdog_mirror_divergences_total", {{"cluster", "a"}, {"kind", "result"}}),
            0.0);
  // The divergence alone makes the cluster not ready.
  EXPECT_EQ(value_of(f, "pgdog_mirror_ready", {{"cluster", "a"}}), 0.0);
  const auto* primary = test::find_metric(f, "pgdog_mirror_request_duration_seconds",
                                          {{"cluster", "a"}, {"side", "primary"}});
  ASSERT_NE(primary, nullptr);
  EXPECT_EQ(primary->histogram.sample_count, 10U);
  EXPECT_DOUBLE_EQ(primary->histogram.sample_sum, 0.01);
}

}  // namespace
}  // namespace pgdog::stats
