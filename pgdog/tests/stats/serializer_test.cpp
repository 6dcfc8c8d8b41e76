#include <limits>

#include <gtest/gtest.h>

#include "stats/helpers.hpp"
#include "stats/serializer.hpp"

namespace pgdog::stats {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using test::metric;

std::vector<MetricFamily> sample_families() {
  std::vector<MetricFamily> out;
  out.push_back(
      {"pgdog_test_requests_total",
       "Requests, by \"status\".\nSecond line \\ end",
       MetricType::Counter,
       {metric({{"cluster", "a\"b\\c\nd"}, {"status", "success"}}, 3, MetricType::Counter)}});
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  out.push_back(
      {"pgdog_test_rate",
       "A ratio.",
       MetricType::Gauge,
       {metric({{"k", "nan"}}, nan, MetricType::Gauge),
        metric({{"k", "pinf"}}, inf, MetricType::Gauge),
        metric({{"k", "minf"}}, -inf, MetricType::Gauge), metric({}, 0.5, MetricType::Gauge)}});
  ClientMetric h;
  h.label = {{"db", "x"}};
  h.histogram.bucket = {{1, 0.001}, {3, 0.5}, {4, 1.0}};
  h.histogram.sample_count = 5;
  h.histogram.sample_sum = 2.5;
  out.push_back({"pgdog_test_duration_seconds", "Durations.", MetricType::Histogram, {h}});
  return out;
}

TEST(Serializer, PrometheusText) {
  const std::string expected =
      "# HELP pgdog_test_requests_total Requests, by \"status\".\\nSecond line \\\\ end\n"
      "# TYPE pgdog_test_requests_total counter\n"
      "pgdog_test_requests_total{cluster=\"a\\\"b\\\\c\\nd\",status=\"success\"} 3\n"
      "# HELP pgdog_test_rate A ratio.\n"
      "# TYPE pgdog_test_rate gauge\n"
      "pgdog_test_rate{k=\"nan\"} NaN\n"
      "pgdog_test_rate{k=\"pinf\"} +Inf\n"
      "pgdog_test_rate{k=\"minf\"} -Inf\n"
      "pgdog_test_rate 0.5\n"
      "# HELP pgdog_test_duration_seconds Durations.\n"
      "# TYPE pgdog_test_duration_seconds histogram\n"
      "pgdog_test_duration_seconds_bucket{db=\"x\",le=\"0.001\"} 1\n"
      "pgdog_test_duration_seconds_bucket{db=\"x\",le=\"0.5\"} 3\n"
      "pgdog_test_duration_seconds_bucket{db=\"x\",le=\"1\"} 4\n"
      "pgdog_test_duration_seconds_bucket{db=\"x\",le=\"+Inf\"} 5\n"
      "pgdog_test_duration_seconds_sum{db=\"x\"} 2.5\n"
      "pgdog_test_duration_seconds_count{db=\"x\"} 5\n";
  EXPECT_EQ(serialize(sample_families(), Format::prometheus_text), expected);
}

TEST(Serializer, OpenMetrics) {
  // Counter family without _total, samples with it; HELP also escapes double quotes; bucket
  // bounds in canonical form; a final # EOF.
  const std::string expected =
      "# HELP pgdog_test_requests Requests, by \\\"status\\\".\\nSecond line \\\\ end\n"
      "# TYPE pgdog_test_requests counter\n"
      "pgdog_test_requests_total{cluster=\"a\\\"b\\\\c\\nd\",status=\"success\"} 3\n"
      "# HELP pgdog_test_rate A ratio.\n"
      "# TYPE pgdog_test_rate gauge\n"
      "pgdog_test_rate{k=\"nan\"} NaN\n"
      "pgdog_test_rate{k=\"pinf\"} +Inf\n"
      "pgdog_test_rate{k=\"minf\"} -Inf\n"
      "pgdog_test_rate 0.5\n"
      "# HELP pgdog_test_duration_seconds Durations.\n"
      "# TYPE pgdog_test_duration_seconds histogram\n"
      "pgdog_test_duration_seconds_bucket{db=\"x\",le=\"0.001\"} 1\n"
      "pgdog_test_duration_seconds_bucket{db=\"x\",le=\"0.5\"} 3\n"
      "pgdog_test_duration_seconds_bucket{db=\"x\",le=\"1.0\"} 4\n"
      "pgdog_test_duration_seconds_bucket{db=\"x\",le=\"+Inf\"} 5\n"
      "pgdog_test_duration_seconds_sum{db=\"x\"} 2.5\n"
      "pgdog_test_duration_seconds_count{db=\"x\"} 5\n"
      "# EOF\n";
  EXPECT_EQ(serialize(sample_families(), Format::openmetrics), expected);
}

TEST(Serializer, EmptyBodies) {
  EXPECT_EQ(serialize({}, Format::prometheus_text), "");
  EXPECT_EQ(serialize({}, Format::openmetrics), "# EOF\n");
}

TEST(Serializer, CounterWithoutTotalInItsNameGetsTheSuffixOnlyInOpenMetrics) {
  const std::vector<MetricFamily> f{
      {"pgdog_things", "Things.", MetricType::Counter, {metric({}, 7, MetricType::Counter)}}};
  EXPECT_EQ(serialize(f, Format::prometheus_text),
            "# HELP pgdog_things Things.\n# TYPE pgdog_things counter\npgdog_things 7\n");
  EXPECT_EQ(serialize(f, Format::openmetrics),
            "# HELP pgdog_things Things.\n# TYPE pgdog_things counter\npgdog_things_total 7\n"
            "# EOF\n");
}

TEST(Serializer, HistogramKeepsAnExplicitInfBucketAndWritesEmptyOnes) {
  ClientMetric h;
  h.histogram.bucket = {{0, 0.25}, {2, std::numeric_limits<double>::infinity()}};
  h.histogram.sample_count = 2;
  h.histogram.sample_sum = 0.75;
  const std::vector<MetricFamily> f{{"pgdog_h_seconds", "H.", MetricType::Histogram, {h}}};
  EXPECT_EQ(serialize(f, Format::prometheus_text),
            "# HELP pgdog_h_seconds H.\n# TYPE pgdog_h_seconds histogram\n"
            "pgdog_h_seconds_bucket{le=\"0.25\"} 0\n"
            "pgdog_h_seconds_bucket{le=\"+Inf\"} 2\n"
            "pgdog_h_seconds_sum 0.75\n"
            "pgdog_h_seconds_count 2\n");
}

TEST(Serializer, UntypedIsUnknownInOpenMetrics) {
  const std::vector<MetricFamily> f{
      {"pgdog_u", "U.", MetricType::Untyped, {metric({}, 1, MetricType::Untyped)}}};
  EXPECT_NE(serialize(f, Format::prometheus_text).find("# TYPE pgdog_u untyped\n"),
            std::string::npos);
  EXPECT_NE(serialize(f, Format::openmetrics).find("# TYPE pgdog_u unknown\n"), std::string::npos);
}

TEST(Serializer, NumbersRoundTrip) {
  const std::vector<MetricFamily> f{{"pgdog_n",
                                     "N.",
                                     MetricType::Gauge,
                                     {metric({{"i", "0"}}, 0, MetricType::Gauge),
                                      metric({{"i", "1"}}, 1234567890123.0, MetricType::Gauge),
                                      metric({{"i", "2"}}, 0.1, MetricType::Gauge),
                                      metric({{"i", "3"}}, 1.0 / 3.0, MetricType::Gauge),
                                      metric({{"i", "4"}}, 1e6, MetricType::Gauge),
                                      metric({{"i", "5"}}, 0.0001, MetricType::Gauge),
                                      metric({{"i", "6"}}, 1e-5, MetricType::Gauge),
                                      metric({{"i", "7"}}, 1e300, MetricType::Gauge),
                                      metric({{"i", "8"}}, -2.5, MetricType::Gauge),
                                      metric({{"i", "9"}}, 1795800531.356856, MetricType::Gauge),
                                      metric({{"i", "10"}}, 2.5e15, MetricType::Gauge)}}};
  const auto text = serialize(f, Format::prometheus_text);
  EXPECT_NE(text.find("pgdog_n{i=\"0\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgdog_n{i=\"1\"} 1234567890123\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgdog_n{i=\"2\"} 0.1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgdog_n{i=\"3\"} 0.3333333333333333\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgdog_n{i=\"4\"} 1000000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgdog_n{i=\"5\"} 0.0001\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgdog_n{i=\"6\"} 1e-05\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgdog_n{i=\"7\"} 1e+300\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgdog_n{i=\"8\"} -2.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgdog_n{i=\"9\"} 1795800531.356856\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgdog_n{i=\"10\"} 2.5e+15\n"), std::string::npos) << text;
}

TEST(Negotiate, OpenMetricsOnlyWhenAskedFor) {
  EXPECT_EQ(negotiate(""), Format::prometheus_text);
  EXPECT_EQ(negotiate("*/*"), Format::prometheus_text);
  EXPECT_EQ(negotiate("text/plain"), Format::prometheus_text);
  EXPECT_EQ(negotiate("text/plain;version=0.0.4"), Format::prometheus_text);
  EXPECT_EQ(negotiate("application/json, text/html"), Format::prometheus_text);
  EXPECT_EQ(negotiate("application/openmetrics-text"), Format::openmetrics);
  EXPECT_EQ(negotiate("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            Format::openmetrics);
  EXPECT_EQ(negotiate("Application/OpenMetrics-Text;Version=1.0.0"), Format::openmetrics);
  // What Prometheus 2.x sends.
  EXPECT_EQ(negotiate("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                      "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::openmetrics);
  EXPECT_EQ(negotiate("text/plain;q=0.5, application/openmetrics-text;q=0.7"), Format::openmetrics);
}

TEST(Negotiate, RefusedOrLookalikeTypesAreNotOpenMetrics) {
  EXPECT_EQ(negotiate("application/openmetrics-text;q=0"), Format::prometheus_text);
  EXPECT_EQ(negotiate("application/openmetrics-text; q=0.0, text/plain"), Format::prometheus_text);
  EXPECT_EQ(negotiate("application/openmetrics-textual"), Format::prometheus_text);
  EXPECT_EQ(negotiate("text/plain; note=application/openmetrics-text"), Format::prometheus_text);
}

TEST(Negotiate, ContentTypes) {
  EXPECT_EQ(content_type(Format::prometheus_text), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(content_type(Format::openmetrics),
            "application/openmetrics-text; version=1.0.0; charset=utf-8");
}

}  // namespace
}  // namespace pgdog::stats
