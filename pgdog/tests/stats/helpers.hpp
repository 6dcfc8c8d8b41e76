#pragma once

#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/metric_family.h>

namespace pgdog::stats::test {

using Labels = std::map<std::string, std::string>;

inline const prometheus::MetricFamily* find_family(
    const std::vector<prometheus::MetricFamily>& families, std::string_view name) {
  for (const auto& f : families) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

inline const prometheus::ClientMetric* find_metric(
    const std::vector<prometheus::MetricFamily>& families, std::string_view name,
    const Labels& labels) {
  const auto* f = find_family(families, name);
  if (f == nullptr) return nullptr;
  for (const auto& m : f->metric) {
    Labels have;
    for (const auto& l : m.label)
      have[l.name] = l.value;
    if (have == labels) return &m;
  }
  return nullptr;
}

// The value of a counter or gauge series; nullopt when the series is absent.
inline std::optional<double> value_of(const std::vector<prometheus::MetricFamily>& families,
                                      std::string_view name, const Labels& labels) {
  const auto* f = find_family(families, name);
  const auto* m = find_metric(families, name, labels);
  if (f == nullptr || m == nullptr) return std::nullopt;
  return f->type == prometheus::MetricType::Counter ? m->counter.value : m->gauge.value;
}

inline prometheus::ClientMetric metric(std::vector<prometheus::ClientMetric::Label> labels,
                                       double value, prometheus::MetricType type) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (type == prometheus::MetricType::Counter) m.counter.value = value;
  if (type == prometheus::MetricType::Gauge) m.gauge.value = value;
  if (type == prometheus::MetricType::Untyped) m.untyped.value = value;
  return m;
}

}  // namespace pgdog::stats::test
