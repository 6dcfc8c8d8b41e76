#include "stats/mirror_stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <spdlog/spdlog.h>

namespace pgdog::stats {

namespace {

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

const char* to_string(MirrorOutcome o) {
  switch (o) {
    case MirrorOutcome::success:
      return "success";
    case MirrorOutcome::connection:
      return "connection";
    case MirrorOutcome::timeout:
      return "timeout";
    case MirrorOutcome::query:
      return "query";
    case MirrorOutcome::dropped:
      return "dropped";
  }
  return "unknown";
}

const char* to_string(Divergence d) {
  switch (d) {
    case Divergence::row_count:
      return "row_count";
    case Divergence::result:
      return "result";
    case Divergence::error:
      return "error";
  }
  return "unknown";
}

MirrorStats::MirrorStats(std::string cluster) : cluster_(std::move(cluster)) {
  points_.push_back(Point{now_us(), Window{}});
}

void MirrorStats::diverged(Divergence kind, const std::string& fingerprint) {
  divergences_[static_cast<std::size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
  const auto us = now_us();
  std::lock_guard g(window_mutex_);
  roll_locked(us);
  const double seen = static_cast<double>(us) / 1e6;
  auto it = std::find_if(divergent_.begin(), divergent_.end(), [&](const DivergentStatement& d) {
    return d.kind == kind && d.fingerprint == fingerprint;
  });
  DivergentStatement entry{fingerprint, kind, 0, seen};
  if (it != divergent_.end()) {
    entry.count = it->count;
    divergent_.erase(it);
  }
  ++entry.count;
  divergent_.insert(divergent_.begin(), std::move(entry));
  if (divergent_.size() > kMaxDivergent) divergent_.pop_back();
}

void MirrorStats::observe_durations(std::uint64_t primary_us, std::uint64_t mirror_us) {
  primary_duration_.observe_us(primary_us);
  mirror_duration_.observe_us(mirror_us);
}

std::vector<MirrorStats::DivergentStatement> MirrorStats::recent_divergences() const {
  std::lock_guard g(window_mutex_);
  return divergent_;
}

MirrorStats::Window MirrorStats::totals_now() const {
  Window w;
  w.success = success_.load(std::memory_order_acquire);
  w.failure = connection_.load(std::memory_order_acquire) +
              timeout_.load(std::memory_order_acquire) + query_.load(std::memory_order_acquire);
  w.dropped = dropped_.load(std::memory_order_acquire);
  w.handed = handed_.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < w.divergences.size(); ++i) {
    w.divergences[i] = divergences_[i].load(std::memory_order_relaxed);
  }
  for (std::size_t i = 0; i < kDurationBuckets.size(); ++i) {
    w.primary[i] = primary_duration_.bucket(i);
    w.mirror[i] = mirror_duration_.bucket(i);
  }
  // Observations above the last bound land in +Inf.
  std::uint64_t p = 0;
  std::uint64_t m = 0;
  for (std::size_t i = 0; i < kDurationBuckets.size(); ++i) {
    p += w.primary[i];
    m += w.mirror[i];
  }
  w.primary.back() = primary_duration_.count() - std::min(p, primary_duration_.count());
  w.mirror.back() = mirror_duration_.count() - std::min(m, mirror_duration_.count());
  return w;
}

void MirrorStats::roll_locked(std::int64_t now) const {
  if (now - points_.back().at_us < std::int64_t{kRollSeconds} * 1'000'000) return;
  points_.push_back(Point{now, totals_now()});
  // An hour of points is more than any window anyone asks for.
  constexpr std::size_t kMaxPoints = 3600 / kRollSeconds + 1;
  if (points_.size() > kMaxPoints) points_.erase(points_.begin());
}

MirrorStats::Window MirrorStats::window(std::chrono::seconds span) const {
  const auto now = now_us();
  Window current = totals_now();
  Point base;
  {
    std::lock_guard g(window_mutex_);
    roll_locked(now);
    const std::int64_t cutoff = now - span.count() * 1'000'000;
    // The newest point at least `span` old; the oldest one when pgdog is younger than that.
    base = points_.front();
    for (const auto& p : points_) {
      if (p.at_us <= cutoff) base = p;
    }
  }
  auto sub = [](std::uint64_t a, std::uint64_t b) { return a >= b ? a - b : 0; };
  Window w;
  w.seconds = static_cast<double>(now - base.at_us) / 1e6;
  w.handed = sub(current.handed, base.totals.handed);
  w.success = sub(current.success, base.totals.success);
  w.failure = sub(current.failure, base.totals.failure);
  w.dropped = sub(current.dropped, base.totals.dropped);
  for (std::size_t i = 0; i < w.divergences.size(); ++i) {
    w.divergences[i] = sub(current.divergences[i], base.totals.divergences[i]);
  }
  for (std::size_t i = 0; i < w.primary.size(); ++i) {
    w.primary[i] = sub(current.primary[i], base.totals.primary[i]);
    w.mirror[i] = sub(current.mirror[i], base.totals.mirror[i]);
  }
  return w;
}

void MirrorStats::set_lag_source(std::function<double()> source) {
  std::lock_guard g(window_mutex_);
  lag_source_ = std::move(source);
}

void MirrorStats::set_failure_threshold(std::optional<double> threshold) {
  std::lock_guard g(window_mutex_);
  threshold_ = threshold;
}

void MirrorStats::record(MirrorOutcome outcome, std::uint64_t count) {
  if (count == 0) return;
  const auto us = now_us();
  switch (outcome) {
    case MirrorOutcome::dropped:
      dropped_.fetch_add(count, std::memory_order_release);
      return;  // drops are not completions: they do not move the success rate
    case MirrorOutcome::success:
      success_.fetch_add(count, std::memory_order_release);
      last_success_us_.store(us, std::memory_order_relaxed);
      break;
    case MirrorOutcome::connection:
      connection_.fetch_add(count, std::memory_order_release);
      last_failure_us_.store(us, std::memory_order_relaxed);
      break;
    case MirrorOutcome::timeout:
      timeout_.fetch_add(count, std::memory_order_release);
      last_failure_us_.store(us, std::memory_order_relaxed);
      break;
    case MirrorOutcome::query:
      query_.fetch_add(count, std::memory_order_release);
      last_failure_us_.store(us, std::memory_order_relaxed);
      break;
  }
  const std::int64_t second = us / 1'000'000;
  std::lock_guard g(window_mutex_);
  roll_locked(us);
  window_add(second, outcome == MirrorOutcome::success, count);
  check_threshold(second);
}

void MirrorStats::window_add(std::int64_t second, bool success, std::uint64_t count) {
  auto& b = window_[static_cast<std::size_t>(second % kWindowSeconds)];
  if (b.second != second) b = Bucket{second, 0, 0};
  (success ? b.success : b.failure) += count;
}

void MirrorStats::window_totals(std::int64_t now_second, std::uint64_t& success,
                                std::uint64_t& failure) const {
  success = failure = 0;
  for (const auto& b : window_) {
    if (b.second > now_second - kWindowSeconds && b.second <= now_second) {
      success += b.success;
      failure += b.failure;
    }
  }
}

void MirrorStats::check_threshold(std::int64_t now_second) {
  if (!threshold_) return;
  std::uint64_t s = 0;
  std::uint64_t f = 0;
  window_totals(now_second, s, f);
  if (s + f == 0) return;
  const double ratio = static_cast<double>(f) / static_cast<double>(s + f);
  if (!above_threshold_ && ratio > *threshold_) {
    above_threshold_ = true;
    spdlog::warn(
        "mirror {}: failure ratio {:.4f} over the last {} s is above "
        "mirror_failure_threshold {:.4f} ({} failed, {} succeeded)",
        cluster_, ratio, kWindowSeconds, *threshold_, f, s);
  } else if (above_threshold_ && ratio <= *threshold_) {
    above_threshold_ = false;
    spdlog::info(
        "mirror {}: failure ratio {:.4f} over the last {} s is back within "
        "mirror_failure_threshold {:.4f}",
        cluster_, ratio, kWindowSeconds, *threshold_);
  }
}

MirrorStats::Snapshot MirrorStats::snapshot() const {
  Snapshot s;
  // Endings first (acquire, pairing with the release in record()), then handed: every request
  // seen ended was handed before, so the derived depth is never negative.
  s.success = success_.load(std::memory_order_acquire);
  s.connection = connection_.load(std::memory_order_acquire);
  s.timeout = timeout_.load(std::memory_order_acquire);
  s.query = query_.load(std::memory_order_acquire);
  s.dropped = dropped_.load(std::memory_order_acquire);
  s.handed = handed_.load(std::memory_order_relaxed);
  s.queue_depth = s.handed - s.success - s.failure() - s.dropped;
  s.last_success = static_cast<double>(last_success_us_.load(std::memory_order_relaxed)) / 1e6;
  s.last_failure = static_cast<double>(last_failure_us_.load(std::memory_order_relaxed)) / 1e6;
  for (std::size_t i = 0; i < s.divergences.size(); ++i) {
    s.divergences[i] = divergences_[i].load(std::memory_order_relaxed);
  }
  std::function<double()> lag;
  {
    std::lock_guard g(window_mutex_);
    roll_locked(now_us());
    window_totals(now_us() / 1'000'000, s.window_success, s.window_failure);
    lag = lag_source_;
  }
  if (lag) s.lag_seconds = lag();
  return s;
}

double MirrorStats::Snapshot::success_rate() const {
  const auto total = window_success + window_failure;
  if (total == 0) return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(window_success) / static_cast<double>(total);
}

}  // namespace pgdog::stats
