#pragma once

// The two JSON primitives the hand-written documents (GET /mirrors, GET /mirrors/history) share,
// so both write numbers and strings the same way.

#include <string>
#include <string_view>

namespace pgdog::stats {

// printf's %.6g; NaN is null (JSON has no NaN), infinities are clamped to ±1e308.
std::string json_number(double v);
// A JSON string literal, quotes included, with control characters escaped.
std::string json_string(std::string_view s);

}  // namespace pgdog::stats
