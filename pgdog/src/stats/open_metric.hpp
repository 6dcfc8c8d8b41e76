#pragma once

#include <vector>

namespace prometheus {
struct MetricFamily;
}

namespace pgdog::stats {

// A source of /metrics: anything that can describe itself as metric families. Only stats/
// includes prometheus-cpp; sources describe their families with its core types (MetricFamily,
// ClientMetric).
class OpenMetric {
 public:
  virtual ~OpenMetric() = default;
  virtual void collect(std::vector<prometheus::MetricFamily>& out) const = 0;
};

}  // namespace pgdog::stats
