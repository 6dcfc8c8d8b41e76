#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "stats/pool_stats.hpp"

namespace pgdog::stats {

enum class MirrorOutcome { success, connection, timeout, query, dropped };
const char* to_string(MirrorOutcome o);

// How a mirrored statement's result differed from the primary's.
enum class Divergence { row_count, result, error };
inline constexpr int kDivergenceKinds = 3;
const char* to_string(Divergence d);

// The health of one mirror cluster: what was handed to it and how each request ended.
//
// Every request handed to the mirror ends in exactly one outcome, and the queue depth is
// derived (handed minus ended), so "handed = success + failure + dropped + queue_depth" holds
// in every snapshot by construction, not by careful timing. The client path only does relaxed
// atomic increments.
class MirrorStats {
 public:
  static constexpr int kWindowSeconds = 60;

  explicit MirrorStats(std::string cluster);
  const std::string& cluster() const { return cluster_; }

  // Called by a client session when it gives a transaction to the mirror, before queueing.
  void handed() { handed_.fetch_add(1, std::memory_order_relaxed); }
  // Called when requests end (a worker finished them, or the queue was full): `count` of them,
  // alike.
  void record(MirrorOutcome outcome, std::uint64_t count = 1);

  // A mirrored statement whose result differed from the primary's; `fingerprint` is the
  // statement with its literals replaced (no data).
  void diverged(Divergence kind, const std::string& fingerprint);
  // The same transaction's time on the primary (server time, without the client's think time)
  // and on the mirror, for requests the mirror replayed successfully.
  void observe_durations(std::uint64_t primary_us, std::uint64_t mirror_us);

  // How long the oldest request still queued or in flight has waited; supplied by the queue.
  void set_lag_source(std::function<double()> source);

  // Failure ratio above which a warning is logged (once per crossing); unset disables it.
  void set_failure_threshold(std::optional<double> threshold);

  struct Snapshot {
    std::uint64_t handed = 0;
    std::uint64_t success = 0;
    std::uint64_t connection = 0;
    std::uint64_t timeout = 0;
    std::uint64_t query = 0;
    std::uint64_t dropped = 0;
    std::uint64_t queue_depth = 0;
    double last_success = 0;  // Unix seconds, 0 when never
    double last_failure = 0;
    double lag_seconds = 0;
    std::uint64_t window_success = 0;  // completed in the last kWindowSeconds
    std::uint64_t window_failure = 0;
    std::array<std::uint64_t, kDivergenceKinds> divergences{};

    std::uint64_t failure() const { return connection + timeout + query; }
    // success / (success + failure) over the window; NaN when nothing completed in it.
    double success_rate() const;
  };
  Snapshot snapshot() const;

  const Histogram& primary_duration() const { return primary_duration_; }
  const Histogram& mirror_duration() const { return mirror_duration_; }

  // Totals over roughly the last `span` (from snapshots taken every kRollSeconds; `seconds`
  // says how much time the figures really cover, less than `span` after a recent start).
  struct Window {
    double seconds = 0;
    std::uint64_t handed = 0;
    std::uint64_t success = 0;
    std::uint64_t failure = 0;
    std::uint64_t dropped = 0;
    std::array<std::uint64_t, kDivergenceKinds> divergences{};
    std::array<std::uint64_t, kDurationBuckets.size() + 1> primary{};  // non-cumulative, +Inf last
    std::array<std::uint64_t, kDurationBuckets.size() + 1> mirror{};
    std::uint64_t divergence_total() const {
      return divergences[0] + divergences[1] + divergences[2];
    }
  };
  static constexpr int kRollSeconds = 10;
  Window window(std::chrono::seconds span) const;
  // Everything since the start (`seconds` is 0): what the status page's sampler reads.
  Window totals() const { return totals_now(); }

  struct DivergentStatement {
    std::string fingerprint;
    Divergence kind = Divergence::row_count;
    std::uint64_t count = 0;
    double last_seen = 0;  // Unix seconds
  };
  // The most recent divergent statements, newest first (at most kMaxDivergent).
  static constexpr std::size_t kMaxDivergent = 100;
  std::vector<DivergentStatement> recent_divergences() const;

 private:
  struct Point {
    std::int64_t at_us = 0;
    Window totals;  // cumulative at that time
  };
  Window totals_now() const;
  void roll_locked(std::int64_t now_us) const;

  struct Bucket {
    std::int64_t second = -1;
    std::uint64_t success = 0;
    std::uint64_t failure = 0;
  };
  void window_add(std::int64_t second, bool success, std::uint64_t count);
  void window_totals(std::int64_t now_second, std::uint64_t& success, std::uint64_t& failure) const;
  void check_threshold(std::int64_t now_second);

  const std::string cluster_;
  std::atomic<std::uint64_t> handed_{0};
  std::atomic<std::uint64_t> success_{0};
  std::atomic<std::uint64_t> connection_{0};
  std::atomic<std::uint64_t> timeout_{0};
  std::atomic<std::uint64_t> query_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::int64_t> last_success_us_{0};
  std::atomic<std::int64_t> last_failure_us_{0};

  // Only workers touch the window (after a request ends), never the client path.
  mutable std::mutex window_mutex_;
  std::array<Bucket, kWindowSeconds> window_{};
  std::optional<double> threshold_;
  bool above_threshold_ = false;
  std::function<double()> lag_source_;

  std::array<std::atomic<std::uint64_t>, kDivergenceKinds> divergences_{};
  Histogram primary_duration_;
  Histogram mirror_duration_;
  // Cumulative totals every kRollSeconds, for windowed figures (readiness). Taken lazily by
  // whoever reads or records; guarded by window_mutex_.
  mutable std::vector<Point> points_;
  mutable std::vector<DivergentStatement> divergent_;  // guarded by window_mutex_
};

}  // namespace pgdog::stats
