#include <gtest/gtest.h>

#include <cmath>

#include "stats/readiness.hpp"

namespace pgdog::stats {
namespace {

const Criterion& criterion(const Verdict& v, std::string_view name) {
  for (const auto& c : v.criteria) {
    if (c.name == name) return c;
  }
  static const Criterion missing{"missing", false, 0, 0, {}};
  ADD_FAILURE() << "no criterion " << name;
  return missing;
}

TEST(Readiness, NotReadyWithoutTraffic) {
  MirrorStats s("m");
  auto v = evaluate(s, {});
  EXPECT_FALSE(v.ready);
  EXPECT_FALSE(criterion(v, "traffic_mirrored").ok);
  EXPECT_FALSE(criterion(v, "latency_p99").ok);
  EXPECT_TRUE(criterion(v, "no_drops").ok);
}

TEST(Readiness, ReadyWhenEverythingHolds) {
  MirrorStats s("m");
  for (int i = 0; i < 100; ++i) {
    s.handed();
    s.record(MirrorOutcome::success);
    s.observe_durations(1000, 1500);
  }
  auto v = evaluate(s, {});
  EXPECT_TRUE(v.ready) << to_json({v});
  EXPECT_EQ(criterion(v, "traffic_mirrored").value, 100);
}

// A mirror added at runtime that some session's open transaction will not reach, and a
// cluster no mirror feeds any more: neither is ready, however healthy its figures.
TEST(Readiness, SpanningSessionsAndRemovedMirrorsAreNotReady) {
  MirrorStats s("m");
  for (int i = 0; i < 100; ++i) {
    s.handed();
    s.record(MirrorOutcome::success);
    s.observe_durations(1000, 1000);
  }
  ASSERT_TRUE(evaluate(s, {}).ready);
  ReadinessSettings spanning;
  spanning.spanning_sessions = 2;
  auto v = evaluate(s, spanning);
  EXPECT_FALSE(v.ready);
  EXPECT_FALSE(criterion(v, "every_session").ok);
  EXPECT_EQ(criterion(v, "every_session").value, 2);
  EXPECT_NE(criterion(v, "every_session").reason.find("2 sessions"), std::string::npos);
  EXPECT_NE(to_json({v}).find("\"name\":\"every_session\",\"ok\":false,\"value\":2"),
            std::string::npos)
      << to_json({v});
  ReadinessSettings removed;
  removed.configured = false;
  v = evaluate(s, removed);
  EXPECT_FALSE(v.ready);
  EXPECT_FALSE(criterion(v, "configured").ok);
  EXPECT_TRUE(criterion(v, "every_session").ok);
}

TEST(Readiness, EachFailureFlipsTheVerdict) {
  auto healthy = [](MirrorStats& s) {
    for (int i = 0; i < 100; ++i) {
      s.handed();
      s.record(MirrorOutcome::success);
      s.observe_durations(1000, 1000);
    }
  };
  {
    MirrorStats s("m");
    healthy(s);
    s.handed();
    s.record(MirrorOutcome::dropped);
    EXPECT_FALSE(evaluate(s, {}).ready);
    EXPECT_FALSE(criterion(evaluate(s, {}), "no_drops").ok);
  }
  {
    MirrorStats s("m");
    healthy(s);
    s.diverged(Divergence::row_count, "update t set a = ?");
    EXPECT_FALSE(criterion(evaluate(s, {}), "no_divergences").ok);
  }
  {
    MirrorStats s("m");
    healthy(s);
    s.handed();
    s.record(MirrorOutcome::query);
    ReadinessSettings strict;
    EXPECT_FALSE(criterion(evaluate(s, strict), "success_ratio").ok);
    ReadinessSettings lenient;
    lenient.failure_threshold = 0.05;  // 1 failure in 101 is within 5 %
    EXPECT_TRUE(evaluate(s, lenient).ready);
  }
  {
    MirrorStats s("m");
    for (int i = 0; i < 100; ++i) {
      s.handed();
      s.record(MirrorOutcome::success);
      s.observe_durations(1000, 50'000);  // the mirror is 50 times slower
    }
    EXPECT_FALSE(criterion(evaluate(s, {}), "latency_p99").ok);
  }
  {
    MirrorStats s("m");
    healthy(s);
    ReadinessSettings sampled;
    sampled.exposure = 0.5;
    EXPECT_FALSE(criterion(evaluate(s, sampled), "traffic_mirrored").ok);
  }
  {
    MirrorStats s("m");
    healthy(s);
    s.set_lag_source([] { return 30.0; });
    EXPECT_FALSE(criterion(evaluate(s, {}), "lag").ok);
  }
}

TEST(Readiness, QuantileInterpolatesLikePrometheus) {
  std::array<std::uint64_t, kDurationBuckets.size() + 1> b{};
  EXPECT_TRUE(std::isnan(quantile(b, 0.99)));
  b[6] = 100;  // all in (0.00075, 0.001]
  EXPECT_NEAR(quantile(b, 0.5), 0.000875, 1e-9);
  b.back() = 1000;  // most above the last bound
  EXPECT_EQ(quantile(b, 0.99), kDurationBuckets.back());
}

TEST(Readiness, JsonEscapesAndLists) {
  MirrorStats s("we\"ird");
  auto json = to_json({evaluate(s, {})});
  EXPECT_NE(json.find("\"cluster\":\"we\\\"ird\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"name\":\"latency_p99\""), std::string::npos);
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.back(), '}');
}

TEST(MirrorStatsWindow, RecentDivergencesNewestFirstWithCounts) {
  MirrorStats s("m");
  s.diverged(Divergence::row_count, "a");
  s.diverged(Divergence::result, "b");
  s.diverged(Divergence::row_count, "a");
  auto d = s.recent_divergences();
  ASSERT_EQ(d.size(), 2U);
  EXPECT_EQ(d[0].fingerprint, "a");
  EXPECT_EQ(d[0].count, 2U);
  EXPECT_EQ(d[1].fingerprint, "b");
  EXPECT_EQ(s.snapshot().divergences[0], 2U);
  EXPECT_EQ(s.window(std::chrono::seconds(300)).divergence_total(), 3U);
}

}  // namespace
}  // namespace pgdog::stats
