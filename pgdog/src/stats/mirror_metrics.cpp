#include "stats/mirror_metrics.hpp"

#include <algorithm>

#include <prometheus/metric_family.h>

#include "stats/families.hpp"
#include "stats/mirror_fields.hpp"

namespace pgdog::stats {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// The families of snapshot figures in /metrics order: the order of their first figure.
const std::vector<const MirrorFamily*>& figure_families() {
  static const auto families = [] {
    std::vector<const MirrorFamily*> out;
    for (const auto& f : kMirrorFields) {
      if (f.family != nullptr && std::find(out.begin(), out.end(), f.family) == out.end()) {
        out.push_back(f.family);
      }
    }
    return out;
  }();
  return families;
}

MetricFamily empty_family(const MirrorFamily& f) {
  return {std::string(f.name),
          std::string(f.help),
          f.kind == MetricKind::counter ? MetricType::Counter : MetricType::Gauge,
          {}};
}

ClientMetric gauge(const std::string& cluster, double value) {
  ClientMetric m;
  m.label.push_back({"cluster", cluster});
  m.gauge.value = value;
  return m;
}

// One series per figure of `snapshot` into its family (figure_families() order).
void add_figures(std::vector<MetricFamily>& families, const std::string& cluster,
                 const MirrorStats::Snapshot& snapshot) {
  const auto& order = figure_families();
  for (const auto& f : kMirrorFields) {
    if (f.family == nullptr) continue;
    const auto at = std::find(order.begin(), order.end(), f.family) - order.begin();
    ClientMetric m;
    m.label.push_back({"cluster", cluster});
    if (!f.family->label.empty())
      m.label.push_back({std::string(f.family->label), std::string(f.series)});
    const double value = f.value(snapshot);
    if (f.family->kind == MetricKind::counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
    families[static_cast<std::size_t>(at)].metric.push_back(std::move(m));
  }
}

MetricFamily durations_family() {
  return {"pgdog_mirror_request_duration_seconds",
          "Time the same successfully mirrored transactions took, by side: primary (server time, "
          "without the client's think time between statements) and mirror (the replay).",
          MetricType::Histogram,
          {}};
}

void add_durations(MetricFamily& family, const MirrorStats& stats) {
  for (const auto& [side, h] :
       {std::pair<const char*, const Histogram*>{"primary", &stats.primary_duration()},
        {"mirror", &stats.mirror_duration()}}) {
    family.metric.push_back(histogram_metric({{"cluster", stats.cluster()}, {"side", side}},
                                             buckets_of(*h), h->count(), h->sum_us()));
  }
}

MetricFamily ready_family() {
  return {"pgdog_mirror_ready",
          "1 when every readiness criterion holds over the readiness window (GET /mirrors says "
          "which fail and why), else 0.",
          MetricType::Gauge,
          {}};
}

MetricFamily threshold_family() {
  return {"pgdog_mirror_failure_threshold",
          "The configured mirror_failure_threshold: a warning is logged when the mirror's failure "
          "ratio over the last 60 s goes above it.",
          MetricType::Gauge,
          {}};
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

  std::vector<MetricFamily> figures;
  for (const auto* f : figure_families())
    figures.push_back(empty_family(*f));
  MetricFamily durations = durations_family();
  MetricFamily ready = ready_family();
  MetricFamily threshold_series = threshold_family();
  for (const auto& stats : all) {
    if (!stats) continue;
    // One snapshot per cluster: every figure is from the same instant, so the identity
    // handed = success + failure + dropped + queue_depth holds in the body.
    add_figures(figures, stats->cluster(), stats->snapshot());
    add_durations(durations, *stats);
    if (readiness_) {
      const auto verdict = evaluate(*stats, readiness_(stats->cluster()));
      ready.metric.push_back(gauge(stats->cluster(), verdict.ready ? 1.0 : 0.0));
    }
    if (threshold) threshold_series.metric.push_back(gauge(stats->cluster(), *threshold));
  }

  for (auto& f : figures)
    out.push_back(std::move(f));
  out.push_back(std::move(durations));
  if (readiness_) out.push_back(std::move(ready));
  if (threshold) out.push_back(std::move(threshold_series));
}

}  // namespace pgdog::stats
