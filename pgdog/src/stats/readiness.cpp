#include "stats/readiness.hpp"

#include <cmath>
#include <cstdio>
#include <limits>

#include "stats/json.hpp"
#include "stats/mirror_fields.hpp"

namespace pgdog::stats {

namespace {

// The windowed figures of kMirrorFields: "\"handed\":12,\"success\":10,...".
std::string totals(const MirrorStats::Window& w) {
  std::string out;
  for (const auto& f : kMirrorFields) {
    if (f.windowed == nullptr) continue;
    if (!out.empty()) out += ",";
    out += json_string(f.name) + ":" + std::to_string(f.windowed(w));
  }
  return out;
}

std::string fmt(const char* format, double a, double b = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, format, a, b);
  return buf;
}

}  // namespace

double quantile(const std::array<std::uint64_t, kDurationBuckets.size() + 1>& buckets, double q) {
  std::uint64_t total = 0;
  for (auto c : buckets)
    total += c;
  if (total == 0) return std::numeric_limits<double>::quiet_NaN();
  const double rank = q * static_cast<double>(total);
  std::uint64_t below = 0;
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    const std::uint64_t here = buckets[i];
    if (static_cast<double>(below + here) >= rank && here > 0) {
      // Past the last bound there is no upper edge: report the last bound, as Prometheus does.
      if (i == kDurationBuckets.size()) return kDurationBuckets.back();
      const double lower = i == 0 ? 0.0 : kDurationBuckets[i - 1];
      const double upper = kDurationBuckets[i];
      const double fraction = (rank - static_cast<double>(below)) / static_cast<double>(here);
      return lower + (upper - lower) * fraction;
    }
    below += here;
  }
  return kDurationBuckets.back();
}

namespace {

// The figures the criteria read: totals over the window, the lag now, and "over the last N s".
struct Figures {
  const MirrorStats::Window& w;
  const MirrorStats::Snapshot& now;
  const ReadinessSettings& s;
  std::string over;
};

Criterion traffic_mirrored(const Figures& f) {
  Criterion c{"traffic_mirrored", false, static_cast<double>(f.w.handed), 1, {}};
  if (f.s.exposure < 1.0) {
    c.value = f.s.exposure;
    c.reason =
        fmt("exposure is %.2f: only part of the traffic is mirrored, so the mirror "
            "has not seen every write (set exposure = 1.0)",
            f.s.exposure);
  } else if (f.w.handed == 0) {
    c.reason = "no transactions were mirrored " + f.over + ": nothing proves the mirror keeps up";
  } else {
    c.ok = true;
    c.reason = fmt("%.0f transactions mirrored ", static_cast<double>(f.w.handed)) + f.over;
  }
  return c;
}

Criterion success_ratio(const Figures& f) {
  const double completed = static_cast<double>(f.w.success + f.w.failure);
  const double ratio = completed > 0 ? static_cast<double>(f.w.success) / completed : 1.0;
  const double need = 1.0 - f.s.failure_threshold.value_or(0.0);
  Criterion c{"success_ratio", ratio >= need, ratio, need, {}};
  c.reason = c.ok ? fmt("%.0f of %.0f mirrored transactions succeeded",
                        static_cast<double>(f.w.success), completed)
                  : fmt("%.0f mirrored transactions failed ", static_cast<double>(f.w.failure)) +
                        f.over + fmt("; success ratio %.4f is below %.4f", ratio, need);
  return c;
}

Criterion no_drops(const Figures& f) {
  Criterion c{"no_drops", f.w.dropped == 0, static_cast<double>(f.w.dropped), 0, {}};
  c.reason = c.ok ? "nothing dropped " + f.over
                  : fmt("%.0f transactions dropped ", static_cast<double>(f.w.dropped)) + f.over +
                        ": the mirror missed writes (queue full); raise queue_length or the "
                        "destination pool_size";
  return c;
}

Criterion no_divergences(const Figures& f) {
  const auto total = f.w.divergence_total();
  Criterion c{"no_divergences", total == 0, static_cast<double>(total), 0, {}};
  c.reason = c.ok ? "no divergent results " + f.over
                  : fmt("%.0f statements returned something else on the mirror ",
                        static_cast<double>(total)) +
                        f.over + " (see SHOW MIRROR_DIVERGENCES)";
  return c;
}

Criterion lag(const Figures& f) {
  const double lag = f.now.lag_seconds;
  const double limit = f.s.max_lag_seconds;
  Criterion c{"lag", lag <= limit, lag, limit, {}};
  c.reason = c.ok ? fmt("oldest queued transaction waited %.3f s (limit %.3f s)", lag, limit)
                  : fmt("the mirror is %.3f s behind (limit %.3f s)", lag, limit);
  return c;
}

Criterion latency_p99(const Figures& f) {
  const double p99_primary = quantile(f.w.primary, 0.99);
  const double p99_mirror = quantile(f.w.mirror, 0.99);
  Criterion c{"latency_p99", false, p99_mirror, p99_primary * f.s.latency_factor, {}};
  if (std::isnan(p99_primary) || std::isnan(p99_mirror)) {
    c.reason = "no successfully mirrored transaction " + f.over + " to compare latencies";
  } else {
    c.ok = p99_mirror <= p99_primary * f.s.latency_factor;
    c.reason = fmt("mirror p99 %.6f s against primary p99 %.6f s", p99_mirror, p99_primary) +
               fmt(" (allowed factor %.2f)", f.s.latency_factor, 0);
  }
  return c;
}

Criterion every_session(const Figures& f) {
  const auto n = static_cast<double>(f.s.spanning_sessions);
  Criterion c{"every_session", f.s.spanning_sessions == 0, n, 0, {}};
  c.reason = c.ok ? "every session's transactions reach the mirror"
                  : fmt("%.0f sessions have a transaction open since before the mirror was added "
                        "at runtime: it will not be mirrored (their next ones will)",
                        n);
  return c;
}

Criterion configured(const Figures& f) {
  Criterion c{"configured", f.s.configured, f.s.configured ? 1.0 : 0.0, 1, {}};
  c.reason = c.ok ? "a [[mirroring]] entry feeds this cluster"
                  : "no [[mirroring]] entry feeds this cluster any more (removed by a reload): "
                    "its counts are final";
  return c;
}

}  // namespace

Verdict evaluate(const MirrorStats& stats, const ReadinessSettings& s) {
  Verdict v;
  v.cluster = stats.cluster();
  const auto w = stats.window(s.window);
  const auto now = stats.snapshot();
  v.window_seconds = w.seconds;
  v.totals = w;
  const Figures f{w, now, s, fmt("over the last %.0f s", w.seconds)};
  for (auto* criterion : {traffic_mirrored, success_ratio, no_drops, no_divergences, lag,
                          latency_p99, every_session, configured}) {
    v.criteria.push_back(criterion(f));
  }
  v.ready = true;
  for (const auto& c : v.criteria)
    v.ready = v.ready && c.ok;
  return v;
}

// Written by hand rather than with Boost.JSON: /mirrors is read by scripts and dashboards, and
// Boost.JSON 1.81 writes doubles in its own exponent form ("3E2" for 300), where this document
// has always had printf's %.6g ("300") and null for NaN.
std::string to_json(const std::vector<Verdict>& verdicts) {
  std::string out = "{\"mirrors\":[";
  for (std::size_t i = 0; i < verdicts.size(); ++i) {
    const auto& v = verdicts[i];
    if (i > 0) out += ",";
    out += "{\"cluster\":" + json_string(v.cluster) + ",\"ready\":" + (v.ready ? "true" : "false") +
           ",\"window_seconds\":" + json_number(v.window_seconds) + ",\"totals\":{" +
           totals(v.totals) + "},\"criteria\":[";
    for (std::size_t j = 0; j < v.criteria.size(); ++j) {
      const auto& c = v.criteria[j];
      if (j > 0) out += ",";
      out += "{\"name\":" + json_string(c.name) + ",\"ok\":" + (c.ok ? "true" : "false") +
             ",\"value\":" + json_number(c.value) + ",\"limit\":" + json_number(c.limit) +
             ",\"reason\":" + json_string(c.reason) + "}";
    }
    out += "]}";
  }
  return out + "]}";
}

}  // namespace pgdog::stats
