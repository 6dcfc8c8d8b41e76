#include "stats/serializer.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include <prometheus/metric_family.h>

namespace pgdog::stats {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr std::string_view kOpenMetricsType = "application/openmetrics-text";

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// The q value of one media range's parameters; 1 when absent or unreadable.
double quality(std::string_view params) {
  while (!params.empty()) {
    const auto semi = params.find(';');
    const auto param = trim(params.substr(0, semi));
    params = semi == std::string_view::npos ? std::string_view{} : params.substr(semi + 1);
    const auto eq = param.find('=');
    if (eq == std::string_view::npos || !iequals(trim(param.substr(0, eq)), "q")) continue;
    const std::string value(trim(param.substr(eq + 1)));
    char* end = nullptr;
    const double q = std::strtod(value.c_str(), &end);
    return end == value.c_str() ? 1.0 : q;
  }
  return 1.0;
}

void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else if (v == std::trunc(v) && std::fabs(v) < 1e15) {
    // Counts as integers: "1000000", not "1e+06".
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, static_cast<std::int64_t>(v));
    out.append(buf, r.ptr);
  } else {
    // Shortest round-trip text; fixed notation in the range people read ("1795800531.35",
    // "0.0001"), exponents outside it ("1e-05").
    const double a = std::fabs(v);
    const auto fmt = a >= 1e-4 && a < 1e15 ? std::chars_format::fixed : std::chars_format::general;
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v, fmt);
    out.append(buf, r.ptr);
  }
}

void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Bucket bounds as client_golang writes them: OpenMetrics wants "1.0", not "1", so that the le
// label of one bucket is the same text whichever client wrote it.
void append_bound(std::string& out, double v, Format format) {
  const auto start = out.size();
  append_number(out, v);
  if (format != Format::openmetrics || !std::isfinite(v)) return;
  if (out.find_first_of(".e", start) == std::string::npos) out += ".0";
}

void append_escaped(std::string& out, std::string_view s, bool quote) {
  for (const char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '"':
        out += quote ? "\\\"" : "\"";
        break;
      default:
        out += c;
    }
  }
}

struct Writer {
  std::string& out;
  Format format;

  void labels(const std::vector<ClientMetric::Label>& ls, std::string_view extra_name = {},
              double extra_value = 0) {
    if (ls.empty() && extra_name.empty()) return;
    out += '{';
    bool first = true;
    for (const auto& l : ls) {
      if (!first) out += ',';
      first = false;
      out += l.name;
      out += "=\"";
      append_escaped(out, l.value, true);
      out += '"';
    }
    if (!extra_name.empty()) {
      if (!first) out += ',';
      out += extra_name;
      out += "=\"";
      append_bound(out, extra_value, format);
      out += '"';
    }
    out += '}';
  }

  void timestamp(const ClientMetric& m) {
    if (m.timestamp_ms == 0) return;
    out += ' ';
    if (format == Format::openmetrics) {
      // OpenMetrics timestamps are seconds.
      append_number(out, static_cast<double>(m.timestamp_ms) / 1000.0);
    } else {
      out += std::to_string(m.timestamp_ms);
    }
  }

  template <class V>
  void sample(std::string_view name, std::string_view suffix, const ClientMetric& m, V value,
              std::string_view extra_name = {}, double extra_value = 0) {
    out += name;
    out += suffix;
    labels(m.label, extra_name, extra_value);
    out += ' ';
    append_number(out, value);
    timestamp(m);
    out += '\n';
  }

  void family(const MetricFamily& f) {
    std::string_view name = f.name;
    std::string_view counter_suffix;
    if (f.type == MetricType::Counter) {
      // Prometheus text names the family as its samples; OpenMetrics names it without
      // "_total" and puts the suffix on the samples only.
      constexpr std::string_view total = "_total";
      const bool has_total = name.size() > total.size() && name.ends_with(total);
      if (format == Format::openmetrics) {
        if (has_total) name.remove_suffix(total.size());
        counter_suffix = total;
      }
    }
    out += "# HELP ";
    out += name;
    out += ' ';
    append_escaped(out, f.help, format == Format::openmetrics);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type_name(f.type);
    out += '\n';
    for (const auto& m : f.metric) {
      switch (f.type) {
        case MetricType::Counter:
          sample(name, counter_suffix, m, m.counter.value);
          break;
        case MetricType::Gauge:
          sample(name, {}, m, m.gauge.value);
          break;
        case MetricType::Untyped:
          sample(name, {}, m, m.untyped.value);
          break;
        case MetricType::Summary:
          for (const auto& q : m.summary.quantile) {
            sample(name, {}, m, q.value, "quantile", q.quantile);
          }
          sample(name, "_sum", m, m.summary.sample_sum);
          sample(name, "_count", m, m.summary.sample_count);
          break;
        case MetricType::Histogram:
          histogram(name, m);
          break;
      }
    }
  }

  void histogram(std::string_view name, const ClientMetric& m) {
    const auto& h = m.histogram;
    bool inf = false;
    for (const auto& b : h.bucket) {
      sample(name, "_bucket", m, b.cumulative_count, "le", b.upper_bound);
      inf = inf || std::isinf(b.upper_bound);
    }
    if (!inf) sample(name, "_bucket", m, h.sample_count, "le", HUGE_VAL);
    sample(name, "_sum", m, h.sample_sum);
    sample(name, "_count", m, h.sample_count);
  }

  std::string_view type_name(MetricType t) const {
    switch (t) {
      case MetricType::Counter:
        return "counter";
      case MetricType::Gauge:
        return "gauge";
      case MetricType::Summary:
        return "summary";
      case MetricType::Histogram:
        return "histogram";
      case MetricType::Untyped:
        break;
    }
    return format == Format::openmetrics ? "unknown" : "untyped";
  }
};

}  // namespace

Format negotiate(std::string_view accept) {
  while (!accept.empty()) {
    const auto comma = accept.find(',');
    const auto range = trim(accept.substr(0, comma));
    accept = comma == std::string_view::npos ? std::string_view{} : accept.substr(comma + 1);
    const auto semi = range.find(';');
    const auto type = trim(range.substr(0, semi));
    if (!iequals(type, kOpenMetricsType)) continue;
    const auto params =
        semi == std::string_view::npos ? std::string_view{} : range.substr(semi + 1);
    if (quality(params) > 0) return Format::openmetrics;
  }
  return Format::prometheus_text;
}

std::string_view content_type(Format f) {
  return f == Format::openmetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                  : "text/plain; version=0.0.4; charset=utf-8";
}

std::string serialize(const std::vector<prometheus::MetricFamily>& families, Format format) {
  std::string out;
  std::size_t samples = 0;
  for (const auto& f : families)
    samples += f.metric.size();
  out.reserve(256 + families.size() * 128 + samples * 96);
  Writer w{out, format};
  for (const auto& f : families)
    w.family(f);
  if (format == Format::openmetrics) out += "# EOF\n";
  return out;
}

}  // namespace pgdog::stats
