#include <gtest/gtest.h>

#include "stats/cutover_log.hpp"
#include "stats/helpers.hpp"

namespace pgdog::stats {
namespace {

using test::value_of;

std::vector<prometheus::MetricFamily> collect(const CutoverLog& log) {
  std::vector<prometheus::MetricFamily> out;
  CutoverMetrics(log).collect(out);
  return out;
}

CutoverEvent event(CutoverResult result, double held) {
  CutoverEvent e;
  e.database = "prod";
  e.from = "a:5432/prod";
  e.to = "b:5432/prod";
  e.generation = 1;
  e.result = result;
  e.held_seconds = held;
  return e;
}

TEST(CutoverLog, CountersStartAtZeroForEveryDatabaseWithMirrors) {
  CutoverLog log;
  log.set_serving("prod", {"prod", "a:5432/prod"});
  const auto f = collect(log);
  for (const char* r : {"ok", "failed", "refused"})
    EXPECT_EQ(value_of(f, "pgdog_cutovers_total", {{"database", "prod"}, {"result", r}}), 0.0);
  EXPECT_EQ(value_of(f, "pgdog_database_primary",
                     {{"database", "prod"}, {"cluster", "prod"}, {"server", "a:5432/prod"}}),
            1.0);
  EXPECT_FALSE(value_of(f, "pgdog_cutover_last_pause_seconds", {{"database", "prod"}}));
}

TEST(CutoverLog, CountsByResultAndKeepsTheLastPause) {
  CutoverLog log;
  log.add(event(CutoverResult::ok, 0.25));
  log.add(event(CutoverResult::refused, 0));  // held nobody: the last pause stays
  log.add(event(CutoverResult::ok, 0.5));
  log.set_serving("prod", {"prod_new", "b:5432/prod"});
  const auto f = collect(log);
  EXPECT_EQ(value_of(f, "pgdog_cutovers_total", {{"database", "prod"}, {"result", "ok"}}), 2.0);
  EXPECT_EQ(value_of(f, "pgdog_cutovers_total", {{"database", "prod"}, {"result", "refused"}}),
            1.0);
  EXPECT_EQ(value_of(f, "pgdog_cutover_last_pause_seconds", {{"database", "prod"}}), 0.5);
  EXPECT_EQ(value_of(f, "pgdog_database_primary",
                     {{"database", "prod"}, {"cluster", "prod_new"}, {"server", "b:5432/prod"}}),
            1.0);
  EXPECT_EQ(log.events().size(), 3u);
}

TEST(CutoverLog, KeepsTheLastHundredEvents) {
  CutoverLog log;
  for (int i = 0; i < 130; ++i) {
    auto e = event(CutoverResult::ok, 0.1);
    e.generation = static_cast<std::uint64_t>(i);
    log.add(e);
  }
  const auto events = log.events();
  ASSERT_EQ(events.size(), CutoverLog::kKept);
  EXPECT_EQ(events.front().generation, 30u);
  EXPECT_EQ(events.back().generation, 129u);
  // The counters are since the start, not of what is kept.
  EXPECT_EQ(value_of(collect(log), "pgdog_cutovers_total",
                     {{"database", "prod"}, {"result", "ok"}}),
            130.0);
}

TEST(CutoverLog, Json) {
  CutoverLog log;
  log.set_serving("prod", {"prod_new", "b:5432/prod"});
  auto e = event(CutoverResult::failed, 0.125);
  e.step = "mirror queue";
  e.error = "3 \"still\" queued";
  log.add(e);
  const auto json = to_json(log);
  EXPECT_NE(json.find("\"serving\":[{\"database\":\"prod\",\"cluster\":\"prod_new\","
                      "\"server\":\"b:5432/prod\"}]"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"held_seconds\":0.125,\"result\":\"failed\",\"step\":\"mirror queue\","
                      "\"error\":\"3 \\\"still\\\" queued\""),
            std::string::npos)
      << json;
}

}  // namespace
}  // namespace pgdog::stats
