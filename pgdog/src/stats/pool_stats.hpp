#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stats/admin_text.hpp"

namespace pgdog::stats {

// Upper bounds, in seconds, of the duration histogram buckets (+Inf is implicit). About 1.5x
// apart, so a quantile estimated from them is within that factor: fine enough to compare the
// mirror's p99 with the primary's.
inline constexpr std::array<double, 26> kDurationBuckets = {
    0.0001, 0.00015, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002,
    0.003,  0.005,   0.0075, 0.01,   0.015,  0.02,    0.03,  0.05,   0.075,
    0.1,    0.15,    0.25,   0.5,    1.0,    2.5,     5.0,   10.0};

// A fixed-bucket histogram with atomic counters: observing is a few relaxed increments.
class Histogram {
 public:
  void observe_us(std::uint64_t us);
  std::uint64_t bucket(std::size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  std::uint64_t sum_us() const { return sum_us_.load(std::memory_order_relaxed); }
  // Adds another histogram's observations (the shards of a pool, when read).
  void merge(const Histogram& other);

 private:
  std::array<std::atomic<std::uint64_t>, kDurationBuckets.size()> buckets_{};  // non-cumulative
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_us_{0};
};

// Every counter of a user × database pool, once; everything that shows pool counters is
// generated from this list. Each entry: the PoolCounters member; its unit (`micros` counters are
// seconds in Prometheus and microseconds in the admin console, as PgBouncer shows them); the
// admin command whose rows show it (stats, pools or none), its column there and the column's
// place among that command's counter columns (SHOW STATS keeps PgBouncer's column order, which
// is not the families' order); its Prometheus family (a counter labelled database and user) and
// the family's help.
// clang-format off
#define PGDOG_POOL_COUNTERS(X)                                                                \
  X(transactions, count, stats, "total_xact_count", 0, "pgdog_transactions_total",            \
    "Transactions completed by clients (PgDog total_xact_count).")                            \
  X(queries, count, stats, "total_query_count", 1, "pgdog_queries_total",                     \
    "Queries completed by clients (PgDog total_query_count).")                                \
  X(errors, count, stats, "total_errors", 7, "pgdog_errors_total",                            \
    "ErrorResponse messages sent to clients.")                                                \
  X(server_connects, count, none, "", 0, "pgdog_server_connects_total",                       \
    "Server connections opened.")                                                             \
  X(server_connect_errors, count, pools, "errors", 0, "pgdog_server_connect_errors_total",    \
    "Server connections that failed to open.")                                                \
  X(bytes_received, count, stats, "total_received", 2, "pgdog_bytes_received_total",          \
    "Bytes received from clients.")                                                           \
  X(bytes_sent, count, stats, "total_sent", 3, "pgdog_bytes_sent_total",                      \
    "Bytes sent to clients.")                                                                 \
  X(transaction_time_us, micros, stats, "total_xact_time", 4,                                 \
    "pgdog_transaction_time_seconds_total",                                                   \
    "Time spent in multi-statement transactions, from first query to commit or rollback.")    \
  X(query_time_us, micros, stats, "total_query_time", 5, "pgdog_query_time_seconds_total",    \
    "Time spent running queries, as the clients saw it.")                                     \
  X(wait_time_us, micros, stats, "total_wait_time", 6, "pgdog_wait_time_seconds_total",       \
    "Time clients spent waiting for a server connection.")
// clang-format on

// Why a transaction-mode client keeps its server (protocol::sql::Pin, in the same order).
inline constexpr std::array<std::string_view, 6> kPinReasons = {
    "temp_table", "advisory_lock", "listen", "prepare", "cursor", "authorization"};

// Totals for one user × database pool, reported by the sessions that use it.
struct PoolCounters {
#define PGDOG_POOL_COUNTER_MEMBER(member, ...) std::atomic<std::uint64_t> member{0};
  PGDOG_POOL_COUNTERS(PGDOG_POOL_COUNTER_MEMBER)
#undef PGDOG_POOL_COUNTER_MEMBER
  Histogram query_duration;
  // Transaction mode: clients pinned to their server now, and how often each reason pinned one.
  std::atomic<std::int64_t> pinned{0};
  std::array<std::atomic<std::uint64_t>, kPinReasons.size()> pins{};

  static void add(std::atomic<std::uint64_t>& c, std::uint64_t v = 1) {
    c.fetch_add(v, std::memory_order_relaxed);
  }
  // Adds another's totals: a pool's workers each count into their own, added up when read.
  void merge(const PoolCounters& other);
};

enum class PoolUnit { count, micros };
// The admin command whose rows show a pool counter.
enum class PoolCommand { none, stats, pools };

// One entry of PGDOG_POOL_COUNTERS.
struct PoolCounterDef {
  std::atomic<std::uint64_t> PoolCounters::*member;
  std::string_view family;
  std::string_view help;
  PoolUnit unit;
  PoolCommand command;
  std::string_view column;
  std::size_t place;
};

inline constexpr PoolCounterDef kPoolCounters[] = {
#define PGDOG_POOL_COUNTER_DEF(member, unit, command, column, place, family, help) \
  {&PoolCounters::member, family, help, PoolUnit::unit, PoolCommand::command, column, place},
    PGDOG_POOL_COUNTERS(PGDOG_POOL_COUNTER_DEF)
#undef PGDOG_POOL_COUNTER_DEF
};

// The columns `command` fills from pool counters, in order, and their cells for one pool. SHOW
// STATS: total_xact_count ... total_errors; SHOW POOLS: errors.
std::vector<std::string> counter_columns(PoolCommand command);
void append_counter_cells(PoolCommand command, const PoolCounters& counters, Cells& row);

}  // namespace pgdog::stats
