#include "stats/pool_stats.hpp"

#include <algorithm>
#include <array>

namespace pgdog::stats {

namespace {

// The bounds in whole microseconds, so that observing is an integer binary search.
constexpr auto kBoundsUs = [] {
  std::array<std::uint64_t, kDurationBuckets.size()> us{};
  for (std::size_t i = 0; i < us.size(); ++i) {
    us[i] = static_cast<std::uint64_t>(kDurationBuckets[i] * 1e6 + 0.5);
  }
  return us;
}();

// Each command's counter columns have the places 0..n-1, each once.
constexpr bool places_are_a_sequence(PoolCommand command) {
  std::size_t columns = 0;
  for (const auto& c : kPoolCounters)
    columns += c.command == command ? 1 : 0;
  for (std::size_t place = 0; place < columns; ++place) {
    std::size_t at_place = 0;
    for (const auto& c : kPoolCounters)
      at_place += c.command == command && c.place == place ? 1 : 0;
    if (at_place != 1) return false;
  }
  return true;
}
static_assert(places_are_a_sequence(PoolCommand::stats) &&
              places_are_a_sequence(PoolCommand::pools));

// The counters `command` shows, in its column order.
std::vector<const PoolCounterDef*> shown_by(PoolCommand command) {
  std::vector<const PoolCounterDef*> out;
  for (const auto& c : kPoolCounters) {
    if (c.command == command) out.push_back(&c);
  }
  std::sort(out.begin(), out.end(),
            [](const auto* a, const auto* b) { return a->place < b->place; });
  return out;
}

}  // namespace

void Histogram::observe_us(std::uint64_t us) {
  const auto it = std::lower_bound(kBoundsUs.begin(), kBoundsUs.end(), us);
  if (it != kBoundsUs.end()) {
    buckets_[static_cast<std::size_t>(it - kBoundsUs.begin())].fetch_add(1,
                                                                         std::memory_order_relaxed);
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(us, std::memory_order_relaxed);
}

void Histogram::merge(const Histogram& other) {
  for (std::size_t i = 0; i < buckets_.size(); ++i)
    buckets_[i].fetch_add(other.bucket(i), std::memory_order_relaxed);
  count_.fetch_add(other.count(), std::memory_order_relaxed);
  sum_us_.fetch_add(other.sum_us(), std::memory_order_relaxed);
}

void PoolCounters::merge(const PoolCounters& other) {
#define PGDOG_POOL_COUNTER_MERGE(member, ...) \
  add(member, other.member.load(std::memory_order_relaxed));
  PGDOG_POOL_COUNTERS(PGDOG_POOL_COUNTER_MERGE)
#undef PGDOG_POOL_COUNTER_MERGE
  query_duration.merge(other.query_duration);
  pinned.fetch_add(other.pinned.load(std::memory_order_relaxed), std::memory_order_relaxed);
  for (std::size_t i = 0; i < pins.size(); ++i)
    add(pins[i], other.pins[i].load(std::memory_order_relaxed));
}

std::vector<std::string> counter_columns(PoolCommand command) {
  std::vector<std::string> out;
  for (const auto* c : shown_by(command))
    out.emplace_back(c->column);
  return out;
}

void append_counter_cells(PoolCommand command, const PoolCounters& counters, Cells& row) {
  // Raw totals, microseconds included, as PgBouncer shows them.
  for (const auto* c : shown_by(command)) {
    row.emplace_back(std::to_string((counters.*(c->member)).load(std::memory_order_relaxed)));
  }
}

}  // namespace pgdog::stats
