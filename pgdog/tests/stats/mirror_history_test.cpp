#include "stats/mirror_history.hpp"

#include <cmath>
#include <string>

#include <gtest/gtest.h>

namespace pgdog::stats {
namespace {

// The index of the bucket whose upper bound is `seconds`.
std::size_t bucket_of(double seconds) {
  for (std::size_t i = 0; i < kDurationBuckets.size(); ++i) {
    if (kDurationBuckets[i] == seconds) return i;
  }
  ADD_FAILURE() << "no bucket bound " << seconds;
  return 0;
}

TEST(MirrorHistory, FirstReadingCountsFromZero) {
  MirrorHistory h;
  MirrorCounters c;
  c.success = 9;
  c.failure = 1;
  c.dropped = 2;
  c.divergences = 3;
  c.queue_depth = 4;
  c.lag_seconds = 0.5;
  h.record(1000.0, c);
  ASSERT_EQ(h.size(), 1U);
  const auto r = h.readings().front();
  EXPECT_EQ(r.at, 1000.0);
  EXPECT_EQ(r.success, 9U);
  EXPECT_EQ(r.failure, 1U);
  EXPECT_EQ(r.dropped, 2U);
  EXPECT_EQ(r.divergences, 3U);
  EXPECT_DOUBLE_EQ(r.success_ratio(), 0.9);
  EXPECT_EQ(r.queue_depth, 4U);
  EXPECT_EQ(r.lag_seconds, 0.5);
}

// Each reading holds what ended since the one before; the gauges are taken as they are.
TEST(MirrorHistory, ReadingsAreChangesSinceThePreviousOne) {
  MirrorHistory h;
  MirrorCounters c;
  c.success = 10;
  h.record(1.0, c);
  c.success = 13;
  c.failure = 1;
  c.queue_depth = 7;
  h.record(2.0, c);
  h.record(3.0, c);
  const auto r = h.readings();
  ASSERT_EQ(r.size(), 3U);
  EXPECT_EQ(r[1].success, 3U);
  EXPECT_EQ(r[1].failure, 1U);
  EXPECT_DOUBLE_EQ(r[1].success_ratio(), 0.75);
  EXPECT_EQ(r[1].queue_depth, 7U);
  EXPECT_EQ(r[2].success, 0U);
  EXPECT_TRUE(std::isnan(r[2].success_ratio())) << "nothing ended in that second";
  EXPECT_EQ(r[2].queue_depth, 7U);
}

// The p99 of a reading is that of the durations observed since the previous one, not of
// everything so far.
TEST(MirrorHistory, P99CoversOnlyTheLatestSecond) {
  MirrorHistory h;
  MirrorCounters c;
  c.primary[bucket_of(0.001)] = 100;
  c.mirror[bucket_of(0.5)] = 100;
  h.record(1.0, c);
  c.mirror[bucket_of(0.002)] = 100;
  h.record(2.0, c);
  h.record(3.0, c);
  const auto r = h.readings();
  EXPECT_GT(r[0].mirror_p99, 0.25);
  EXPECT_LE(r[0].mirror_p99, 0.5);
  EXPECT_GT(r[0].primary_p99, 0.00075);
  EXPECT_LE(r[0].primary_p99, 0.001);
  EXPECT_GT(r[1].mirror_p99, 0.0015);
  EXPECT_LE(r[1].mirror_p99, 0.002);
  EXPECT_TRUE(std::isnan(r[1].primary_p99)) << "no primary duration in the second reading";
  EXPECT_TRUE(std::isnan(r[2].mirror_p99));
}

TEST(MirrorHistory, KeepsTheLatestCapacityReadingsOldestFirst) {
  MirrorHistory h;
  MirrorCounters c;
  const std::size_t total = MirrorHistory::kCapacity + 100;
  for (std::size_t i = 0; i < total; ++i) {
    c.success = i;
    h.record(static_cast<double>(i), c);
  }
  const auto r = h.readings();
  ASSERT_EQ(r.size(), MirrorHistory::kCapacity);
  EXPECT_EQ(r.front().at, 100.0);
  EXPECT_EQ(r.back().at, static_cast<double>(total - 1));
  for (std::size_t i = 1; i < r.size(); ++i)
    ASSERT_EQ(r[i].at, r[i - 1].at + 1) << "out of order at " << i;
}

TEST(MirrorHistory, CountersGoingBackwardsCountAsNoChange) {
  MirrorHistory h;
  MirrorCounters c;
  c.success = 5;
  h.record(1.0, c);
  c.success = 2;
  h.record(2.0, c);
  EXPECT_EQ(h.readings().back().success, 0U);
}

TEST(MirrorHistories, OneHistoryPerClusterByName) {
  MirrorHistories all;
  MirrorCounters c;
  c.success = 1;
  all.record(1.0, "zeta", c);
  all.record(1.0, "alpha", c);
  c.success = 4;
  all.record(2.0, "alpha", c);
  const auto snap = all.snapshot();
  ASSERT_EQ(snap.size(), 2U);
  EXPECT_EQ(snap[0].cluster, "alpha");
  ASSERT_EQ(snap[0].readings.size(), 2U);
  EXPECT_EQ(snap[0].readings[1].success, 3U);
  EXPECT_EQ(snap[1].cluster, "zeta");
  EXPECT_EQ(snap[1].readings.size(), 1U);
}

TEST(MirrorHistory, ReadsTheCountersOfMirrorStats) {
  MirrorStats s("m");
  for (int i = 0; i < 3; ++i)
    s.handed();
  s.record(MirrorOutcome::success);
  s.record(MirrorOutcome::query);
  s.observe_durations(1000, 2000);
  s.diverged(Divergence::row_count, "select $1");
  const auto c = read_counters(s);
  EXPECT_EQ(c.success, 1U);
  EXPECT_EQ(c.failure, 1U);
  EXPECT_EQ(c.queue_depth, 1U);
  EXPECT_EQ(c.divergences, 1U);
  EXPECT_EQ(c.primary[bucket_of(0.001)], 1U);
  EXPECT_EQ(c.mirror[bucket_of(0.002)], 1U);
}

TEST(MirrorHistory, Json) {
  MirrorHistory h;
  MirrorCounters c;
  c.success = 3;
  c.failure = 1;
  c.queue_depth = 2;
  h.record(1733312345.25, c);
  h.record(1733312346.25, c);
  const auto json = to_json({ClusterHistory{"m\"x", h.readings()}});
  EXPECT_EQ(json,
            "{\"interval_seconds\":1,\"capacity\":900,\"mirrors\":[{\"cluster\":\"m\\\"x\","
            "\"readings\":["
            "{\"at\":1733312345.250,\"success\":3,\"failure\":1,\"dropped\":0,"
            "\"success_ratio\":0.75,\"queue_depth\":2,\"lag_seconds\":0,"
            "\"primary_p99_seconds\":null,\"mirror_p99_seconds\":null,\"divergences\":0},"
            "{\"at\":1733312346.250,\"success\":0,\"failure\":0,\"dropped\":0,"
            "\"success_ratio\":null,\"queue_depth\":2,\"lag_seconds\":0,"
            "\"primary_p99_seconds\":null,\"mirror_p99_seconds\":null,\"divergences\":0}]}]}");
  EXPECT_EQ(to_json({}), "{\"interval_seconds\":1,\"capacity\":900,\"mirrors\":[]}");
}

}  // namespace
}  // namespace pgdog::stats
