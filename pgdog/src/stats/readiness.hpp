#pragma once

// The cutover readiness verdict for one mirror: every criterion, its value, its limit and why
// it passes or fails, computed from MirrorStats over a window. The same verdict feeds
// pgdog_mirror_ready, GET /mirrors and the status page.

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "stats/mirror_stats.hpp"

namespace pgdog::stats {

struct ReadinessSettings {
  std::chrono::seconds window{300};
  double max_lag_seconds = 5.0;
  double latency_factor = 2.0;
  std::optional<double> failure_threshold;  // unset: any failure fails the check
  double exposure = 1.0;                    // of the mirror's configuration
  // Client sessions with a transaction open since before the mirror was added at runtime: it
  // will not reach the mirror.
  std::size_t spanning_sessions = 0;
  bool configured = true;  // false once a reload removed every [[mirroring]] entry to it
};

struct Criterion {
  std::string name;  // stable identifier, e.g. "success_ratio"
  bool ok = false;
  double value = 0;    // the measured value
  double limit = 0;    // what it is compared with
  std::string reason;  // one sentence a human can act on
};

struct Verdict {
  std::string cluster;
  bool ready = false;
  double window_seconds = 0;  // what the figures cover (less than asked after a recent start)
  std::vector<Criterion> criteria;
  MirrorStats::Window totals;
};

// The q-quantile (0..1) of a histogram with kDurationBuckets bounds plus +Inf, interpolated
// within a bucket as Prometheus's histogram_quantile does; NaN when empty.
double quantile(const std::array<std::uint64_t, kDurationBuckets.size() + 1>& buckets, double q);

Verdict evaluate(const MirrorStats& stats, const ReadinessSettings& settings);

// JSON for GET /mirrors: {"mirrors":[{cluster, ready, window_seconds, criteria:[...]}]}.
std::string to_json(const std::vector<Verdict>& verdicts);

}  // namespace pgdog::stats
