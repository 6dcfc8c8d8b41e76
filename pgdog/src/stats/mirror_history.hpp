#pragma once

// The recent past of every mirror cluster, one reading a second for the last 15 minutes, for
// the status page's charts and GET /mirrors/history. Sans-io: the caller supplies the time and
// the counters (the app's sampler, once a second); memory is fixed per cluster.

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "stats/mirror_stats.hpp"

namespace pgdog::stats {

using DurationBuckets = std::array<std::uint64_t, kDurationBuckets.size() + 1>;

// A mirror's counters as the sampler reads them: cumulative totals, and the gauges now.
struct MirrorCounters {
  std::uint64_t success = 0;
  std::uint64_t failure = 0;
  std::uint64_t dropped = 0;
  std::uint64_t divergences = 0;
  DurationBuckets primary{};  // count per bucket (non-cumulative across buckets), +Inf last
  DurationBuckets mirror{};
  std::uint64_t queue_depth = 0;
  double lag_seconds = 0;
};
MirrorCounters read_counters(const MirrorStats& stats);

// What happened to one mirror since the previous reading (about a second), and its gauges then.
struct Reading {
  static constexpr double kNone = std::numeric_limits<double>::quiet_NaN();

  double at = 0;  // Unix seconds
  std::uint64_t success = 0;
  std::uint64_t failure = 0;
  std::uint64_t dropped = 0;
  std::uint64_t divergences = 0;
  std::uint64_t queue_depth = 0;
  double lag_seconds = 0;
  // Of the transactions the mirror replayed successfully since the previous reading, in
  // seconds; NaN when there were none.
  double primary_p99 = kNone;
  double mirror_p99 = kNone;

  // success / (success + failure) of the requests that ended since the previous reading, so a
  // burst of failures shows when it happened; NaN when none ended.
  double success_ratio() const;
};

// One cluster's readings in a ring of kCapacity; not thread-safe on its own.
class MirrorHistory {
 public:
  static constexpr std::size_t kCapacity = 900;  // 15 minutes of one reading a second

  // Appends the reading at `at` (Unix seconds): the counters' change since the previous call
  // (since zero for the first), replacing the oldest reading once the ring is full.
  void record(double at, const MirrorCounters& now);
  // Oldest first.
  std::vector<Reading> readings() const;
  std::size_t size() const { return size_; }

 private:
  std::array<Reading, kCapacity> ring_{};
  std::size_t next_ = 0;
  std::size_t size_ = 0;
  MirrorCounters previous_{};
};

struct ClusterHistory {
  std::string cluster;
  std::vector<Reading> readings;  // oldest first
};

// Every mirror cluster's history, written by the sampler and read by the HTTP server, which may
// run on other threads (workers > 1).
class MirrorHistories {
 public:
  void record(double at, const std::string& cluster, const MirrorCounters& now);
  // By cluster name.
  std::vector<ClusterHistory> snapshot() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, MirrorHistory> clusters_;
};

// JSON for GET /mirrors/history:
// {"interval_seconds":1,"capacity":900,"mirrors":[{"cluster":..,"readings":[{..},..]}]}.
std::string to_json(const std::vector<ClusterHistory>& history);

}  // namespace pgdog::stats
