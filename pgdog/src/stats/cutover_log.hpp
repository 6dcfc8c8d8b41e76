#pragma once

// What the cutovers did, for SHOW CUTOVERS, /metrics and the status page: one event per CUTOVER
// (made here, or followed from another pgdog instance), and which cluster serves each database
// now.

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "stats/open_metric.hpp"

namespace pgdog::stats {

enum class CutoverResult { ok, failed, refused };
std::string_view to_string(CutoverResult r);

struct CutoverEvent {
  std::chrono::system_clock::time_point at;  // when it was asked for (or noticed)
  std::string database;
  std::string from;  // "host:port/database" serving the database before
  std::string to;    // and the one meant to serve it after
  std::uint64_t generation = 0;
  bool followed = false;  // made by another pgdog instance, followed here
  double held_seconds = 0;  // how long new transactions of the database were held
  CutoverResult result = CutoverResult::ok;
  std::string step;   // the step that failed ("readiness", "transactions", ...), else ""
  std::string error;  // why, else ""
};

// Which cluster serves a database now: the [[databases]] entry of pgdog.toml it comes from, and
// its address.
struct Serving {
  std::string cluster;
  std::string server;
};

// Thread-safe; keeps the last kKept events.
class CutoverLog {
 public:
  static constexpr std::size_t kKept = 100;

  void add(CutoverEvent event);
  std::vector<CutoverEvent> events() const;  // oldest first
  void set_serving(const std::string& database, Serving serving);
  std::map<std::string, Serving> serving() const;
  // Per database and result, since the start; never decreases.
  std::map<std::pair<std::string, CutoverResult>, std::uint64_t> counts() const;
  // The held_seconds of the last cutover that got as far as holding clients, per database.
  std::map<std::string, double> last_pause() const;

 private:
  mutable std::mutex mutex_;
  std::vector<CutoverEvent> events_;
  std::map<std::string, Serving> serving_;
  std::map<std::pair<std::string, CutoverResult>, std::uint64_t> counts_;
  std::map<std::string, double> last_pause_;
};

// pgdog_cutovers_total{database,result}, pgdog_cutover_last_pause_seconds{database},
// pgdog_database_primary{database,cluster,server} (1 for the cluster serving it).
class CutoverMetrics final : public OpenMetric {
 public:
  explicit CutoverMetrics(const CutoverLog& log) : log_(log) {}
  void collect(std::vector<prometheus::MetricFamily>& out) const override;

 private:
  const CutoverLog& log_;
};

// JSON for GET /cutovers: {"serving":[{database,cluster,server}],"events":[...]} (newest last).
std::string to_json(const CutoverLog& log);

}  // namespace pgdog::stats
