#pragma once

// Every figure of a mirror cluster's MirrorStats snapshot, once, with where it shows: its
// /metrics family and series, its SHOW MIRRORS column, its key in GET /mirrors' totals. The
// mirror families, the SHOW MIRRORS figure columns and the /mirrors totals are generated from
// kMirrorFields (stats/mirror_metrics.cpp, mirror_fields.cpp, readiness.cpp).

#include <cstdint>
#include <string_view>
#include <vector>

#include "stats/admin_text.hpp"
#include "stats/mirror_stats.hpp"

namespace pgdog::stats {

enum class MetricKind { counter, gauge };

// A /metrics family with one series per cluster (label `cluster`), or one per cluster and value
// of `label` when set.
struct MirrorFamily {
  std::string_view name;
  std::string_view help;
  MetricKind kind;
  std::string_view label;
};

inline constexpr MirrorFamily kMirrorRequests{
    "pgdog_mirror_requests_total",
    "Transactions handed to the mirror that ended, by status: success, failure (connection + "
    "timeout + query) or dropped (mirror queue full).",
    MetricKind::counter, "status"};
inline constexpr MirrorFamily kMirrorFailures{
    "pgdog_mirror_failures_total",
    "Transactions that failed on the mirror, by error_type: connection (connect, auth, TLS, "
    "broken connection, FATAL), timeout (no answer within mirror_timeout), query (the mirror "
    "answered ERROR).",
    MetricKind::counter, "error_type"};
inline constexpr MirrorFamily kMirrorSuccessRate{
    "pgdog_mirror_success_rate",
    "Mirror success / (success + failure) over the transactions completed in the last 60 s; NaN "
    "when none completed. Drops are not completions.",
    MetricKind::gauge, ""};
inline constexpr MirrorFamily kMirrorQueueDepth{
    "pgdog_mirror_queue_depth",
    "Transactions handed to the mirror and not ended yet (queued or in flight).", MetricKind::gauge,
    ""};
inline constexpr MirrorFamily kMirrorLag{
    "pgdog_mirror_lag_seconds",
    "Age of the oldest transaction queued or in flight for the mirror; 0 when none.",
    MetricKind::gauge, ""};
inline constexpr MirrorFamily kMirrorLastSuccess{
    "pgdog_mirror_last_success_timestamp",
    "Unix time in seconds of the last transaction the mirror replayed successfully; 0 when never.",
    MetricKind::gauge, ""};
inline constexpr MirrorFamily kMirrorLastFailure{
    "pgdog_mirror_last_failure_timestamp",
    "Unix time in seconds of the last transaction that failed on the mirror; 0 when never.",
    MetricKind::gauge, ""};
inline constexpr MirrorFamily kMirrorDivergences{
    "pgdog_mirror_divergences_total",
    "Mirrored statements whose result differed from the primary's, by kind: row_count (the "
    "command tags differ, e.g. UPDATE 1 against UPDATE 0), result (same tags, other rows; with "
    "compare = results), error (an error on one side only).",
    MetricKind::counter, "kind"};

// How SHOW MIRRORS writes a figure: an integer, seconds or a ratio with three decimals (a NaN
// ratio is NULL), a UTC time (NULL when never); `none`: not a column.
enum class MirrorCell { none, count, seconds, ratio, time };

struct MirrorField {
  std::string_view name;  // its SHOW MIRRORS column and /mirrors totals key
  double (*value)(const MirrorStats::Snapshot&) = nullptr;
  const MirrorFamily* family = nullptr;  // null: not in /metrics
  std::string_view series = {};          // its value of the family's label
  MirrorCell cell = MirrorCell::none;
  // Its place among SHOW MIRRORS' figure columns, which are not in /metrics' order.
  std::size_t place = 0;
  std::uint64_t (*windowed)(const MirrorStats::Window&) = nullptr;  // null: not in /mirrors totals
};

namespace mirror_field {

using Snapshot = MirrorStats::Snapshot;
using Window = MirrorStats::Window;

template <auto Member>
double of(const Snapshot& s) {
  return static_cast<double>(s.*Member);
}
template <auto Member>
std::uint64_t windowed(const Window& w) {
  return w.*Member;
}
template <Divergence Kind>
double divergences(const Snapshot& s) {
  return static_cast<double>(s.divergences[static_cast<std::size_t>(Kind)]);
}
inline double failure(const Snapshot& s) {
  return static_cast<double>(s.failure());
}
inline double success_rate(const Snapshot& s) {
  return s.success_rate();
}
inline double all_divergences(const Snapshot& s) {
  double total = 0;
  for (const auto d : s.divergences)
    total += static_cast<double>(d);
  return total;
}
inline std::uint64_t windowed_divergences(const Window& w) {
  return w.divergence_total();
}

using S = Snapshot;
using W = Window;

// In /metrics order: families come in the order of their first figure, series in figure order.
// clang-format off
inline constexpr MirrorField kAll[] = {
    {.name = "handed", .value = of<&S::handed>,
     .cell = MirrorCell::count, .place = 0, .windowed = windowed<&W::handed>},
    {.name = "success", .value = of<&S::success>, .family = &kMirrorRequests, .series = "success",
     .cell = MirrorCell::count, .place = 1, .windowed = windowed<&W::success>},
    {.name = "failure", .value = failure, .family = &kMirrorRequests, .series = "failure",
     .cell = MirrorCell::count, .place = 2, .windowed = windowed<&W::failure>},
    {.name = "dropped", .value = of<&S::dropped>, .family = &kMirrorRequests, .series = "dropped",
     .cell = MirrorCell::count, .place = 3, .windowed = windowed<&W::dropped>},
    {.name = "connection", .value = of<&S::connection>, .family = &kMirrorFailures,
     .series = "connection", .cell = MirrorCell::count, .place = 4},
    {.name = "timeout", .value = of<&S::timeout>, .family = &kMirrorFailures, .series = "timeout",
     .cell = MirrorCell::count, .place = 5},
    {.name = "query", .value = of<&S::query>, .family = &kMirrorFailures, .series = "query",
     .cell = MirrorCell::count, .place = 6},
    {.name = "success_rate_60s", .value = success_rate, .family = &kMirrorSuccessRate,
     .cell = MirrorCell::ratio, .place = 9},
    {.name = "queue_depth", .value = of<&S::queue_depth>, .family = &kMirrorQueueDepth,
     .cell = MirrorCell::count, .place = 7},
    {.name = "lag_seconds", .value = of<&S::lag_seconds>, .family = &kMirrorLag,
     .cell = MirrorCell::seconds, .place = 8},
    {.name = "last_success", .value = of<&S::last_success>, .family = &kMirrorLastSuccess,
     .cell = MirrorCell::time, .place = 10},
    {.name = "last_failure", .value = of<&S::last_failure>, .family = &kMirrorLastFailure,
     .cell = MirrorCell::time, .place = 11},
    {.name = "row_count", .value = divergences<Divergence::row_count>,
     .family = &kMirrorDivergences, .series = "row_count"},
    {.name = "result", .value = divergences<Divergence::result>,
     .family = &kMirrorDivergences, .series = "result"},
    {.name = "error", .value = divergences<Divergence::error>,
     .family = &kMirrorDivergences, .series = "error"},
    {.name = "divergences", .value = all_divergences, .windowed = windowed_divergences},
};
// clang-format on

}  // namespace mirror_field

inline constexpr const auto& kMirrorFields = mirror_field::kAll;

// SHOW MIRRORS' figure columns (handed ... last_failure) in order, and their cells for one
// snapshot.
std::vector<std::string> mirror_columns();
void append_mirror_cells(const MirrorStats::Snapshot& snapshot, Cells& row);

}  // namespace pgdog::stats
