#include "stats/cutover_log.hpp"

#include <cstdio>
#include <ctime>

#include <prometheus/metric_family.h>

#include "stats/admin_text.hpp"
#include "stats/json.hpp"

namespace pgdog::stats {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

std::string_view to_string(CutoverResult r) {
  switch (r) {
    case CutoverResult::ok:
      return "ok";
    case CutoverResult::failed:
      return "failed";
    case CutoverResult::refused:
      return "refused";
  }
  return "unknown";
}

void CutoverLog::add(CutoverEvent event) {
  std::lock_guard g(mutex_);
  ++counts_[{event.database, event.result}];
  if (event.held_seconds > 0) last_pause_[event.database] = event.held_seconds;
  events_.push_back(std::move(event));
  if (events_.size() > kKept) events_.erase(events_.begin());
}

std::vector<CutoverEvent> CutoverLog::events() const {
  std::lock_guard g(mutex_);
  return events_;
}

void CutoverLog::set_serving(const std::string& database, Serving serving) {
  std::lock_guard g(mutex_);
  serving_[database] = std::move(serving);
  // Counters exist from the start, so that the first cutover is an increase (Grafana marks it).
  for (auto r : {CutoverResult::ok, CutoverResult::failed, CutoverResult::refused})
    counts_.try_emplace({database, r}, 0);
}

std::map<std::string, Serving> CutoverLog::serving() const {
  std::lock_guard g(mutex_);
  return serving_;
}

std::map<std::pair<std::string, CutoverResult>, std::uint64_t> CutoverLog::counts() const {
  std::lock_guard g(mutex_);
  return counts_;
}

std::map<std::string, double> CutoverLog::last_pause() const {
  std::lock_guard g(mutex_);
  return last_pause_;
}

void CutoverMetrics::collect(std::vector<MetricFamily>& out) const {
  MetricFamily total{"pgdog_cutovers_total",
                     "CUTOVER commands by database and result: ok (swapped), failed (a step "
                     "failed or timed out; nothing swapped), refused (not ready, nothing done).",
                     MetricType::Counter,
                     {}};
  for (const auto& [key, n] : log_.counts()) {
    ClientMetric m;
    m.label = {{"database", key.first}, {"result", std::string(to_string(key.second))}};
    m.counter.value = static_cast<double>(n);
    total.metric.push_back(std::move(m));
  }
  MetricFamily pause{"pgdog_cutover_last_pause_seconds",
                     "How long the last cutover of the database held its new transactions.",
                     MetricType::Gauge,
                     {}};
  for (const auto& [database, seconds] : log_.last_pause()) {
    ClientMetric m;
    m.label = {{"database", database}};
    m.gauge.value = seconds;
    pause.metric.push_back(std::move(m));
  }
  MetricFamily primary{"pgdog_database_primary",
                       "1 for the cluster serving the database now: the [[databases]] entry it "
                       "comes from (the database itself, or its mirror after a cutover) and its "
                       "address.",
                       MetricType::Gauge,
                       {}};
  for (const auto& [database, s] : log_.serving()) {
    ClientMetric m;
    m.label = {{"database", database}, {"cluster", s.cluster}, {"server", s.server}};
    m.gauge.value = 1;
    primary.metric.push_back(std::move(m));
  }
  out.push_back(std::move(total));
  out.push_back(std::move(pause));
  out.push_back(std::move(primary));
}

std::string to_json(const CutoverLog& log) {
  std::string out = "{\"serving\":[";
  bool first = true;
  for (const auto& [database, s] : log.serving()) {
    if (!first) out += ",";
    first = false;
    out += "{\"database\":" + json_string(database) + ",\"cluster\":" + json_string(s.cluster) +
           ",\"server\":" + json_string(s.server) + "}";
  }
  out += "],\"events\":[";
  first = true;
  for (const auto& e : log.events()) {
    if (!first) out += ",";
    first = false;
    char held[32];
    std::snprintf(held, sizeof held, "%.3f", e.held_seconds);
    out += "{\"at\":" + json_string(iso_time(e.at)) + ",\"database\":" + json_string(e.database) +
           ",\"from\":" + json_string(e.from) + ",\"to\":" + json_string(e.to) +
           ",\"generation\":" + std::to_string(e.generation) +
           ",\"followed\":" + (e.followed ? "true" : "false") + ",\"held_seconds\":" + held +
           ",\"result\":" + json_string(to_string(e.result)) + ",\"step\":" + json_string(e.step) +
           ",\"error\":" + json_string(e.error) + "}";
  }
  return out + "]}";
}

}  // namespace pgdog::stats
