#include "stats/mirror_history.hpp"

#include <cstdio>

#include "stats/json.hpp"
#include "stats/readiness.hpp"

namespace pgdog::stats {

namespace {

// Counters only grow; a smaller value (never expected) counts as no change, not a wrap.
std::uint64_t since(std::uint64_t now, std::uint64_t before) {
  return now >= before ? now - before : 0;
}

double p99_since(const DurationBuckets& now, const DurationBuckets& before) {
  DurationBuckets delta{};
  for (std::size_t i = 0; i < delta.size(); ++i)
    delta[i] = since(now[i], before[i]);
  return quantile(delta, 0.99);
}

// Timestamps need more digits than json_number's %.6g keeps.
std::string unix_seconds(double at) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", at);
  return buf;
}

std::string reading_json(const Reading& r) {
  return "{\"at\":" + unix_seconds(r.at) + ",\"success\":" + std::to_string(r.success) +
         ",\"failure\":" + std::to_string(r.failure) + ",\"dropped\":" + std::to_string(r.dropped) +
         ",\"success_ratio\":" + json_number(r.success_ratio()) +
         ",\"queue_depth\":" + std::to_string(r.queue_depth) +
         ",\"lag_seconds\":" + json_number(r.lag_seconds) +
         ",\"primary_p99_seconds\":" + json_number(r.primary_p99) +
         ",\"mirror_p99_seconds\":" + json_number(r.mirror_p99) +
         ",\"divergences\":" + std::to_string(r.divergences) + "}";
}

}  // namespace

MirrorCounters read_counters(const MirrorStats& stats) {
  const auto totals = stats.totals();
  const auto now = stats.snapshot();
  MirrorCounters c;
  c.success = totals.success;
  c.failure = totals.failure;
  c.dropped = totals.dropped;
  c.divergences = totals.divergence_total();
  c.primary = totals.primary;
  c.mirror = totals.mirror;
  c.queue_depth = now.queue_depth;
  c.lag_seconds = now.lag_seconds;
  return c;
}

double Reading::success_ratio() const {
  const auto ended = success + failure;
  if (ended == 0) return kNone;
  return static_cast<double>(success) / static_cast<double>(ended);
}

void MirrorHistory::record(double at, const MirrorCounters& now) {
  Reading r;
  r.at = at;
  r.success = since(now.success, previous_.success);
  r.failure = since(now.failure, previous_.failure);
  r.dropped = since(now.dropped, previous_.dropped);
  r.divergences = since(now.divergences, previous_.divergences);
  r.primary_p99 = p99_since(now.primary, previous_.primary);
  r.mirror_p99 = p99_since(now.mirror, previous_.mirror);
  r.queue_depth = now.queue_depth;
  r.lag_seconds = now.lag_seconds;
  previous_ = now;
  ring_[next_] = r;
  next_ = (next_ + 1) % kCapacity;
  if (size_ < kCapacity) ++size_;
}

std::vector<Reading> MirrorHistory::readings() const {
  std::vector<Reading> out;
  out.reserve(size_);
  const std::size_t oldest = (next_ + kCapacity - size_) % kCapacity;
  for (std::size_t i = 0; i < size_; ++i)
    out.push_back(ring_[(oldest + i) % kCapacity]);
  return out;
}

void MirrorHistories::record(double at, const std::string& cluster, const MirrorCounters& now) {
  std::lock_guard g(mutex_);
  clusters_[cluster].record(at, now);
}

std::vector<ClusterHistory> MirrorHistories::snapshot() const {
  std::lock_guard g(mutex_);
  std::vector<ClusterHistory> out;
  out.reserve(clusters_.size());
  for (const auto& [cluster, history] : clusters_)
    out.push_back(ClusterHistory{cluster, history.readings()});
  return out;
}

std::string to_json(const std::vector<ClusterHistory>& history) {
  std::string out =
      "{\"interval_seconds\":1,\"capacity\":" + std::to_string(MirrorHistory::kCapacity) +
      ",\"mirrors\":[";
  for (std::size_t i = 0; i < history.size(); ++i) {
    if (i > 0) out += ",";
    out += "{\"cluster\":" + json_string(history[i].cluster) + ",\"readings\":[";
    for (std::size_t j = 0; j < history[i].readings.size(); ++j) {
      if (j > 0) out += ",";
      out += reading_json(history[i].readings[j]);
    }
    out += "]}";
  }
  return out + "]}";
}

}  // namespace pgdog::stats
