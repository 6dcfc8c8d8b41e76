#include "stats/pool_stats.hpp"

namespace pgdog::stats {

void Histogram::observe_us(std::uint64_t us) {
  const double seconds = static_cast<double>(us) / 1e6;
  for (std::size_t i = 0; i < kDurationBuckets.size(); ++i) {
    if (seconds <= kDurationBuckets[i]) {
      buckets_[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(us, std::memory_order_relaxed);
}

}  // namespace pgdog::stats
