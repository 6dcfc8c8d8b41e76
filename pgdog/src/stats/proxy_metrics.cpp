#include "stats/proxy_metrics.hpp"

#include <algorithm>
#include <map>

#include <prometheus/metric_family.h>

#include "stats/families.hpp"

namespace pgdog::stats {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Prometheus wants base units: microsecond counters become seconds.
double divisor(PoolUnit unit) {
  return unit == PoolUnit::micros ? 1e6 : 1;
}

constexpr std::size_t kBuckets = kDurationBuckets.size();

// One database × user, summed over the samples that share it (there is one per pool; summing
// keeps the body valid if two ever did).
struct Row {
  int clients_active = 0;
  int clients_idle = 0;
  int clients_waiting = 0;
  int servers_active = 0;
  int servers_idle = 0;
  int servers_login = 0;
  double max_wait_seconds = 0;
  bool has_counters = false;
  std::array<double, std::size(kPoolCounters)> counters{};
  std::array<std::uint64_t, kBuckets> buckets{};  // non-cumulative
  double pinned = 0;
  std::array<double, kPinReasons.size()> pins{};
  std::uint64_t count = 0;
  std::uint64_t sum_us = 0;
};

using Key = std::pair<std::string, std::string>;

void add(Row& r, const PoolSample& s) {
  r.clients_active += s.clients_active;
  r.clients_idle += s.clients_idle;
  r.clients_waiting += s.clients_waiting;
  r.servers_active += s.servers_active;
  r.servers_idle += s.servers_idle;
  r.servers_login += s.servers_login;
  r.max_wait_seconds = std::max(r.max_wait_seconds, s.max_wait_seconds);
  if (!s.counters) return;
  const auto& c = *s.counters;
  r.has_counters = true;
  for (std::size_t i = 0; i < std::size(kPoolCounters); ++i) {
    const auto& def = kPoolCounters[i];
    const auto v = (c.*def.member).load(std::memory_order_relaxed);
    r.counters[i] += static_cast<double>(v) / divisor(def.unit);
  }
  r.pinned += static_cast<double>(std::max<std::int64_t>(0, c.pinned.load(std::memory_order_relaxed)));
  for (std::size_t i = 0; i < kPinReasons.size(); ++i)
    r.pins[i] += static_cast<double>(c.pins[i].load(std::memory_order_relaxed));
  for (std::size_t i = 0; i < kBuckets; ++i)
    r.buckets[i] += c.query_duration.bucket(i);
  r.count += c.query_duration.count();
  r.sum_us += c.query_duration.sum_us();
}

std::vector<ClientMetric::Label> labels(const Key& k) {
  return {{"database", k.first}, {"user", k.second}};
}

ClientMetric gauge(const Key& k, double value, const char* state = nullptr) {
  ClientMetric m;
  m.label = labels(k);
  if (state != nullptr) m.label.push_back({"state", state});
  m.gauge.value = value;
  return m;
}

ClientMetric histogram(const Key& k, const Row& r) {
  return histogram_metric(labels(k), r.buckets, r.count, r.sum_us);
}

}  // namespace

ProxyMetrics::ProxyMetrics(Source source) : source_(std::move(source)) {}

void ProxyMetrics::collect(std::vector<prometheus::MetricFamily>& out) const {
  std::map<Key, Row> rows;
  if (source_) {
    for (const auto& s : source_())
      add(rows[Key(s.database, s.user)], s);
  }

  MetricFamily clients{"pgdog_clients",
                       "Clients connected, by state: active (running a transaction on a server), "
                       "idle, waiting (for a server connection).",
                       MetricType::Gauge,
                       {}};
  MetricFamily waiting{
      "pgdog_clients_waiting", "Clients waiting for a server connection.", MetricType::Gauge, {}};
  MetricFamily max_wait{"pgdog_client_max_wait_seconds",
                        "How long the client waiting the longest for a server has waited.",
                        MetricType::Gauge,
                        {}};
  MetricFamily servers{"pgdog_servers",
                       "Server connections, by state: active (in use by a client), idle, login "
                       "(being connected).",
                       MetricType::Gauge,
                       {}};
  std::vector<MetricFamily> counters;
  for (const auto& c : kPoolCounters)
    counters.push_back({std::string(c.family), std::string(c.help), MetricType::Counter, {}});
  MetricFamily pinned{"pgdog_pinned_clients",
                      "Transaction-mode clients keeping their server for state only it holds "
                      "(temporary tables, session advisory locks, LISTEN, PREPARE, WITH HOLD "
                      "cursors, SET SESSION AUTHORIZATION).",
                      MetricType::Gauge,
                      {}};
  MetricFamily pins{"pgdog_pins_total",
                    "Times a transaction-mode client was pinned to its server, by the reason.",
                    MetricType::Counter,
                    {}};
  MetricFamily duration{"pgdog_query_duration_seconds",
                        "Query duration as the clients saw it, from the request to ReadyForQuery.",
                        MetricType::Histogram,
                        {}};

  for (const auto& [key, r] : rows) {
    clients.metric.push_back(gauge(key, r.clients_active, "active"));
    clients.metric.push_back(gauge(key, r.clients_idle, "idle"));
    clients.metric.push_back(gauge(key, r.clients_waiting, "waiting"));
    waiting.metric.push_back(gauge(key, r.clients_waiting));
    max_wait.metric.push_back(gauge(key, r.max_wait_seconds));
    servers.metric.push_back(gauge(key, r.servers_active, "active"));
    servers.metric.push_back(gauge(key, r.servers_idle, "idle"));
    servers.metric.push_back(gauge(key, r.servers_login, "login"));
    if (!r.has_counters) continue;
    for (std::size_t i = 0; i < counters.size(); ++i) {
      ClientMetric m;
      m.label = labels(key);
      m.counter.value = r.counters[i];
      counters[i].metric.push_back(std::move(m));
    }
    duration.metric.push_back(histogram(key, r));
    pinned.metric.push_back(gauge(key, r.pinned));
    for (std::size_t i = 0; i < kPinReasons.size(); ++i) {
      ClientMetric m;
      m.label = labels(key);
      m.label.push_back({"reason", std::string(kPinReasons[i])});
      m.counter.value = r.pins[i];
      pins.metric.push_back(std::move(m));
    }
  }

  out.push_back(std::move(clients));
  out.push_back(std::move(waiting));
  out.push_back(std::move(max_wait));
  out.push_back(std::move(servers));
  for (auto& c : counters)
    out.push_back(std::move(c));
  out.push_back(std::move(pinned));
  out.push_back(std::move(pins));
  out.push_back(std::move(duration));
}

}  // namespace pgdog::stats
