#pragma once

// How the admin console writes figures: text cells, in PgBouncer's manner.

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace pgdog::stats {

// A row of the admin console: text cells, null for SQL NULL.
using Cells = std::vector<std::optional<std::string>>;

// "2024-05-01 12:34:56", UTC.
std::string iso_time(std::chrono::system_clock::time_point t);
// The same from Unix seconds; null when 0 or less (never happened).
std::optional<std::string> iso_time_or_null(double unix_seconds);
// Three decimals: "0.125".
std::string three_decimals(double v);

}  // namespace pgdog::stats
