#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace pgdog::stats {

// Upper bounds, in seconds, of the duration histogram buckets (+Inf is implicit). About 1.5x
// apart, so a quantile estimated from them is within that factor: fine enough to compare the
// mirror's p99 with the primary's.
inline constexpr std::array<double, 26> kDurationBuckets = {
    0.0001, 0.00015, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002,
    0.003,  0.005,   0.0075, 0.01,   0.015,  0.02,    0.03,  0.05,   0.075,
    0.1,    0.15,    0.25,   0.5,    1.0,    2.5,     5.0,   10.0};

// A fixed-bucket histogram with atomic counters: observing is a few relaxed increments.
class Histogram {
 public:
  void observe_us(std::uint64_t us);
  std::uint64_t bucket(std::size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  std::uint64_t sum_us() const { return sum_us_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<std::uint64_t>, kDurationBuckets.size()> buckets_{};  // non-cumulative
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_us_{0};
};

// Totals for one user × database pool, reported by the sessions that use it.
struct PoolCounters {
  std::atomic<std::uint64_t> transactions{0};
  std::atomic<std::uint64_t> queries{0};
  std::atomic<std::uint64_t> errors{0};  // ErrorResponse sent to clients
  std::atomic<std::uint64_t> bytes_received{0};  // from clients
  std::atomic<std::uint64_t> bytes_sent{0};      // to clients
  std::atomic<std::uint64_t> transaction_time_us{0};
  std::atomic<std::uint64_t> query_time_us{0};
  std::atomic<std::uint64_t> wait_time_us{0};  // clients waiting for a server
  std::atomic<std::uint64_t> server_connects{0};
  std::atomic<std::uint64_t> server_connect_errors{0};
  Histogram query_duration;

  static void add(std::atomic<std::uint64_t>& c, std::uint64_t v = 1) {
    c.fetch_add(v, std::memory_order_relaxed);
  }
};

}  // namespace pgdog::stats
