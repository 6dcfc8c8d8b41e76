#pragma once

// Helpers shared by the metric sources (stats/ only: prometheus-cpp types).

#include <array>
#include <cstdint>
#include <vector>

#include <prometheus/client_metric.h>

#include "stats/pool_stats.hpp"

namespace pgdog::stats {

using Buckets = std::array<std::uint64_t, kDurationBuckets.size()>;

// A histogram sample from non-cumulative bucket counts: cumulative buckets with the standard
// bounds, +Inf as the count (never below the last bucket: counters are read one by one while
// others observe), the sum in seconds.
prometheus::ClientMetric histogram_metric(std::vector<prometheus::ClientMetric::Label> labels,
                                          const Buckets& buckets, std::uint64_t count,
                                          std::uint64_t sum_us);

Buckets buckets_of(const Histogram& h);

}  // namespace pgdog::stats
