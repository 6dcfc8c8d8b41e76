#pragma once

// The small JSON the HTTP endpoints write by hand (/mirrors, /cutovers): see readiness.cpp for
// why not Boost.JSON.

#include <string>
#include <string_view>

namespace pgdog::stats {

// `s` as a JSON string, quotes included; control characters as \uXXXX.
std::string json_string(std::string_view s);

}  // namespace pgdog::stats
