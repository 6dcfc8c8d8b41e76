#include <prometheus/metric_family.h>

#include "stats/families.hpp"
#include "stats/mirror_metrics.hpp"

namespace pgdog::stats {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Snapshot = MirrorStats::Snapshot;

// One labelled series of a family, read from a snapshot.
struct Series {
  const char* label_value;
  double (*value)(const Snapshot&);
};

template <auto Member>
double field(const Snapshot& s) {
  return static_cast<double>(s.*Member);
}

constexpr Series kStatuses[] = {
    {"success", field<&Snapshot::success>},
    {"failure", [](const Snapshot& s) { return static_cast<double>(s.failure()); }},
    {"dropped", field<&Snapshot::dropped>},
};

constexpr Series kErrorTypes[] = {
    {"connection", field<&Snapshot::connection>},
    {"timeout", field<&Snapshot::timeout>},
    {"query", field<&Snapshot::query>},
};

// Gauges with one series per cluster.
struct GaugeDef {
  const char* name;
  const char* help;
  double (*value)(const Snapshot&);
};

constexpr GaugeDef kGauges[] = {
    {"pgdog_mirror_success_rate",
     "Mirror success / (success + failure) over the transactions completed in the last 60 s; "
     "NaN when none completed. Drops are not completions.",
     [](const Snapshot& s) { return s.success_rate(); }},
    {"pgdog_mirror_queue_depth",
     "Transactions handed to the mirror and not ended yet (queued or in flight).",
     field<&Snapshot::queue_depth>},
    {"pgdog_mirror_lag_seconds",
     "Age of the oldest transaction queued or in flight for the mirror; 0 when none.",
     field<&Snapshot::lag_seconds>},
    {"pgdog_mirror_last_success_timestamp",
     "Unix time in seconds of the last transaction the mirror replayed successfully; 0 when never.",
     field<&Snapshot::last_success>},
    {"pgdog_mirror_last_failure_timestamp",
     "Unix time in seconds of the last transaction that failed on the mirror; 0 when never.",
     field<&Snapshot::last_failure>},
};

ClientMetric series(const std::string& cluster, double value, MetricType type,
                    const char* label = nullptr, const char* label_value = nullptr) {
  ClientMetric m;
  m.label.push_back({"cluster", cluster});
  if (label != nullptr) m.label.push_back({label, label_value});
  if (type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return m;
}

}  // namespace

MirrorMetrics::MirrorMetrics(Source source, std::function<std::optional<double>()> threshold,
                             Readiness readiness)
    : source_(std::move(source)),
      threshold_(std::move(threshold)),
      readiness_(std::move(readiness)) {}

void MirrorMetrics::collect(std::vector<prometheus::MetricFamily>& out) const {
  const auto all = source_ ? source_() : std::vector<std::shared_ptr<MirrorStats>>{};
  if (all.empty()) return;
  const auto threshold = threshold_ ? threshold_() : std::nullopt;

  MetricFamily requests{"pgdog_mirror_requests_total",
                        "Transactions handed to the mirror that ended, by status: success, failure "
                        "(connection + timeout + query) or dropped (mirror queue full).",
                        MetricType::Counter,
                        {}};
  MetricFamily failures{
      "pgdog_mirror_failures_total",
      "Transactions that failed on the mirror, by error_type: connection (connect, "
      "auth, TLS, broken connection, FATAL), timeout (no answer within "
      "mirror_timeout), query (the mirror answered ERROR).",
      MetricType::Counter,
      {}};
  std::vector<MetricFamily> gauges;
  for (const auto& g : kGauges)
    gauges.push_back({g.name, g.help, MetricType::Gauge, {}});
  MetricFamily divergences{
      "pgdog_mirror_divergences_total",
      "Mirrored statements whose result differed from the primary's, by kind: row_count (the "
      "command tags differ, e.g. UPDATE 1 against UPDATE 0), result (same tags, other rows; "
      "with compare = results), error (an error on one side only).",
      MetricType::Counter,
      {}};
  MetricFamily durations{
      "pgdog_mirror_request_duration_seconds",
      "Time the same successfully mirrored transactions took, by side: primary (server time, "
      "without the client's think time between statements) and mirror (the replay).",
      MetricType::Histogram,
      {}};
  MetricFamily ready{"pgdog_mirror_ready",
                     "1 when every readiness criterion holds over the readiness window "
                     "(GET /mirrors says which fail and why), else 0.",
                     MetricType::Gauge,
                     {}};
  MetricFamily threshold_family{
      "pgdog_mirror_failure_threshold",
      "The configured mirror_failure_threshold: a warning is logged when the mirror's failure "
      "ratio over the last 60 s goes above it.",
      MetricType::Gauge,
      {}};

  for (const auto& stats : all) {
    if (!stats) continue;
    // One snapshot per cluster: every value below is from the same instant, so the identity
    // handed = success + failure + dropped + queue_depth holds in the body.
    const Snapshot s = stats->snapshot();
    const auto& cluster = stats->cluster();
    for (const auto& st : kStatuses) {
      requests.metric.push_back(
          series(cluster, st.value(s), MetricType::Counter, "status", st.label_value));
    }
    for (const auto& e : kErrorTypes) {
      failures.metric.push_back(
          series(cluster, e.value(s), MetricType::Counter, "error_type", e.label_value));
    }
    for (std::size_t i = 0; i < std::size(kGauges); ++i) {
      gauges[i].metric.push_back(series(cluster, kGauges[i].value(s), MetricType::Gauge));
    }
    for (int k = 0; k < kDivergenceKinds; ++k) {
      divergences.metric.push_back(series(cluster, static_cast<double>(s.divergences[k]),
                                          MetricType::Counter, "kind",
                                          to_string(static_cast<Divergence>(k))));
    }
    for (const auto& [side, h] : {std::pair<const char*, const Histogram*>{"primary", &stats->primary_duration()},
                                  {"mirror", &stats->mirror_duration()}}) {
      durations.metric.push_back(histogram_metric({{"cluster", cluster}, {"side", side}},
                                                  buckets_of(*h), h->count(), h->sum_us()));
    }
    if (readiness_) {
      const auto verdict = evaluate(*stats, readiness_(cluster));
      ready.metric.push_back(series(cluster, verdict.ready ? 1.0 : 0.0, MetricType::Gauge));
    }
    if (threshold) {
      threshold_family.metric.push_back(series(cluster, *threshold, MetricType::Gauge));
    }
  }

  out.push_back(std::move(requests));
  out.push_back(std::move(failures));
  for (auto& g : gauges)
    out.push_back(std::move(g));
  out.push_back(std::move(divergences));
  out.push_back(std::move(durations));
  if (readiness_) out.push_back(std::move(ready));
  if (threshold) out.push_back(std::move(threshold_family));
}

}  // namespace pgdog::stats
