#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "stats/open_metric.hpp"
#include "stats/serializer.hpp"

namespace pgdog::stats {

// All sources of /metrics, collected in registration order.
class Registry {
 public:
  void add(std::shared_ptr<OpenMetric> source);
  std::vector<prometheus::MetricFamily> collect() const;
  std::string render(Format format) const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<OpenMetric>> sources_;
};

}  // namespace pgdog::stats
