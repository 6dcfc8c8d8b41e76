#include "stats/pool_stats.hpp"

#include <algorithm>

namespace pgdog::stats {

namespace {

// The bounds in whole microseconds, so that observing is an integer binary search.
constexpr auto kBoundsUs = [] {
  std::array<std::uint64_t, kDurationBuckets.size()> us{};
  for (std::size_t i = 0; i < us.size(); ++i) {
    us[i] = static_cast<std::uint64_t>(kDurationBuckets[i] * 1e6 + 0.5);
  }
  return us;
}();

}  // namespace

void Histogram::observe_us(std::uint64_t us) {
  const auto it = std::lower_bound(kBoundsUs.begin(), kBoundsUs.end(), us);
  if (it != kBoundsUs.end()) {
    buckets_[static_cast<std::size_t>(it - kBoundsUs.begin())].fetch_add(
        1, std::memory_order_relaxed);
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(us, std::memory_order_relaxed);
}

}  // namespace pgdog::stats
