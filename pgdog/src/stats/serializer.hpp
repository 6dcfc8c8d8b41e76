#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace prometheus {
struct MetricFamily;
}

namespace pgdog::stats {

enum class Format { prometheus_text, openmetrics };

// Chooses the format from an Accept header: OpenMetrics only when asked for.
Format negotiate(std::string_view accept);
std::string_view content_type(Format f);

// Writes the families. Prometheus text 0.0.4, or OpenMetrics 1.0.0: counter families declared
// without "_total", samples with it, and a final "# EOF".
std::string serialize(const std::vector<prometheus::MetricFamily>& families, Format format);

}  // namespace pgdog::stats
