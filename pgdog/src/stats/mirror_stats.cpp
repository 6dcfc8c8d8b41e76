#include "stats/mirror_stats.hpp"

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

MirrorStats::MirrorStats(std::string cluster) : cluster_(std::move(cluster)) {}

void MirrorStats::set_lag_source(std::function<double()> source) {
  std::lock_guard g(window_mutex_);
  lag_source_ = std::move(source);
}

void MirrorStats::set_failure_threshold(std::optional<double> threshold) {
  std::lock_guard g(window_mutex_);
  threshold_ = threshold;
}

void MirrorStats::record(MirrorOutcome outcome) {
  const auto us = now_us();
  switch (outcome) {
    case MirrorOutcome::dropped:
      dropped_.fetch_add(1, std::memory_order_release);
      return;  // drops are not completions: they do not move the success rate
    case MirrorOutcome::success:
      success_.fetch_add(1, std::memory_order_release);
      last_success_us_.store(us, std::memory_order_relaxed);
      break;
    case MirrorOutcome::connection:
      connection_.fetch_add(1, std::memory_order_release);
      last_failure_us_.store(us, std::memory_order_relaxed);
      break;
    case MirrorOutcome::timeout:
      timeout_.fetch_add(1, std::memory_order_release);
      last_failure_us_.store(us, std::memory_order_relaxed);
      break;
    case MirrorOutcome::query:
      query_.fetch_add(1, std::memory_order_release);
      last_failure_us_.store(us, std::memory_order_relaxed);
      break;
  }
  const std::int64_t second = us / 1'000'000;
  std::lock_guard g(window_mutex_);
  window_add(second, outcome == MirrorOutcome::success);
  check_threshold(second);
}

void MirrorStats::window_add(std::int64_t second, bool success) {
  auto& b = window_[static_cast<std::size_t>(second % kWindowSeconds)];
  if (b.second != second) b = Bucket{second, 0, 0};
  (success ? b.success : b.failure) += 1;
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
    spdlog::warn("mirror {}: failure ratio {:.4f} over the last {} s is above "
                 "mirror_failure_threshold {:.4f} ({} failed, {} succeeded)",
                 cluster_, ratio, kWindowSeconds, *threshold_, f, s);
  } else if (above_threshold_ && ratio <= *threshold_) {
    above_threshold_ = false;
    spdlog::info("mirror {}: failure ratio {:.4f} over the last {} s is back within "
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
  std::function<double()> lag;
  {
    std::lock_guard g(window_mutex_);
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
