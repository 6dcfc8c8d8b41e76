#pragma once

// The metric sources behind GET /metrics. Only stats/ includes prometheus-cpp: sources
// describe their families with its core types (MetricFamily, ClientMetric), and the serializer
// writes them as Prometheus text 0.0.4 or OpenMetrics 1.0.0.

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stats/mirror_stats.hpp"
#include "stats/pool_stats.hpp"
#include "stats/readiness.hpp"

namespace prometheus {
struct MetricFamily;
}

namespace pgdog::stats {

// Anything that can describe itself as metric families.
class OpenMetric {
 public:
  virtual ~OpenMetric() = default;
  virtual void collect(std::vector<prometheus::MetricFamily>& out) const = 0;
};

// One user × database pool as the proxy families report it.
struct PoolSample {
  std::string database;
  std::string user;
  int clients_active = 0;
  int clients_idle = 0;
  int clients_waiting = 0;
  int servers_active = 0;
  int servers_idle = 0;
  int servers_login = 0;  // being connected
  double max_wait_seconds = 0;
  std::shared_ptr<const PoolCounters> counters;  // kept alive by the pool
};

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

// The proxy families: clients and servers by state, waiting clients, transactions, queries,
// errors, bytes, and the query-duration histogram, labelled by database and user.
class ProxyMetrics final : public OpenMetric {
 public:
  using Source = std::function<std::vector<PoolSample>()>;
  explicit ProxyMetrics(Source source);
  void collect(std::vector<prometheus::MetricFamily>& out) const override;

 private:
  Source source_;
};

enum class Format { prometheus_text, openmetrics };

// Chooses the format from an Accept header: OpenMetrics only when asked for.
Format negotiate(std::string_view accept);
std::string_view content_type(Format f);

// Writes the families. Prometheus text 0.0.4, or OpenMetrics 1.0.0: counter families declared
// without "_total", samples with it, and a final "# EOF".
std::string serialize(const std::vector<prometheus::MetricFamily>& families, Format format);

// All sources, collected in registration order.
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
