#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "stats/open_metric.hpp"
#include "stats/pool_stats.hpp"

namespace pgdog::stats {

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

}  // namespace pgdog::stats
