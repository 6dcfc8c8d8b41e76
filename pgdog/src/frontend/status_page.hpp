#pragma once

#include <string_view>

namespace pgdog::frontend {

// GET / on the metrics port: one self-contained HTML page (no external assets) that shows each
// mirror's readiness verdict, the failing criteria and the key numbers, refreshing itself from
// GET /mirrors. For the moment before Grafana is set up, and for the demo.
std::string_view status_page();

}  // namespace pgdog::frontend
