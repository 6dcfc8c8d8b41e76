#pragma once

#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "http/server.hpp"
#include "stats/mirror_history.hpp"
#include "stats/readiness.hpp"

namespace pgdog::http {

// GET / on the metrics port: one self-contained HTML page (no external assets) that shows each
// mirror's readiness verdict, the failing criteria and the key numbers, and charts of its last
// 15 minutes, refreshing itself from GET /mirrors and GET /mirrors/history. For the moment
// before Grafana is set up, and for the demo.
std::string_view status_page();

// Adds GET /mirrors (every mirror's readiness verdict as JSON, evaluated at each request) and
// GET / (the status page that reads it) to `server`.
void add_readiness_routes(Server& server, std::function<std::vector<stats::Verdict>()> verdicts);

// Adds GET /mirrors/history: every mirror's readings of the last 15 minutes as JSON
// (stats::to_json), which the status page draws as charts.
void add_history_route(Server& server, std::shared_ptr<const stats::MirrorHistories> history);

}  // namespace pgdog::http
