#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stats/mirror_stats.hpp"
#include "stats/open_metric.hpp"
#include "stats/readiness.hpp"

namespace pgdog::stats {

// The mirror families for every mirror cluster (label `cluster`, the destination_db): requests
// by status, failures by type, success rate, queue depth, lag, last success / failure, and the
// configured failure threshold when set. The success rate is success / (success + failure) over
// the requests completed in the last 60 s, NaN when none did; drops are not completions. Each
// cluster's values come from one snapshot, so handed = success + failure + dropped + depth holds
// in every body.
class MirrorMetrics final : public OpenMetric {
 public:
  using Source = std::function<std::vector<std::shared_ptr<MirrorStats>>()>;
  // The readiness settings of a cluster (its exposure, the window and bounds); without a
  // source no pgdog_mirror_ready family is exported.
  using Readiness = std::function<ReadinessSettings(const std::string& cluster)>;
  MirrorMetrics(Source source, std::function<std::optional<double>()> threshold,
                Readiness readiness = {});
  void collect(std::vector<prometheus::MetricFamily>& out) const override;

 private:
  Source source_;
  std::function<std::optional<double>()> threshold_;
  Readiness readiness_;
};

}  // namespace pgdog::stats
