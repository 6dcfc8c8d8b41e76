#include "stats/families.hpp"

#include <algorithm>

namespace pgdog::stats {

prometheus::ClientMetric histogram_metric(std::vector<prometheus::ClientMetric::Label> labels,
                                          const Buckets& buckets, std::uint64_t count,
                                          std::uint64_t sum_us) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    cumulative += buckets[i];
    m.histogram.bucket.push_back({cumulative, kDurationBuckets[i]});
  }
  m.histogram.sample_count = std::max(count, cumulative);
  m.histogram.sample_sum = static_cast<double>(sum_us) / 1e6;
  return m;
}

Buckets buckets_of(const Histogram& h) {
  Buckets b{};
  for (std::size_t i = 0; i < b.size(); ++i)
    b[i] = h.bucket(i);
  return b;
}

}  // namespace pgdog::stats
