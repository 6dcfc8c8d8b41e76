#include "stats/registry.hpp"

#include <prometheus/metric_family.h>

namespace pgdog::stats {

void Registry::add(std::shared_ptr<OpenMetric> source) {
  std::lock_guard g(mutex_);
  sources_.push_back(std::move(source));
}

std::vector<prometheus::MetricFamily> Registry::collect() const {
  std::vector<std::shared_ptr<OpenMetric>> sources;
  {
    // Sources collect outside the lock: a slow one must not hold up add().
    std::lock_guard g(mutex_);
    sources = sources_;
  }
  std::vector<prometheus::MetricFamily> out;
  for (const auto& s : sources)
    s->collect(out);
  return out;
}

std::string Registry::render(Format format) const {
  return serialize(collect(), format);
}

}  // namespace pgdog::stats
