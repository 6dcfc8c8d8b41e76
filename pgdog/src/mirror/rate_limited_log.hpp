#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace pgdog::mirror {

// At most one warning per interval, then a count of the ones held back: a dead mirror that
// fails every request must not flood the log, but none of its failures goes unmentioned.
class RateLimitedLog {
 public:
  explicit RateLimitedLog(std::chrono::milliseconds interval = std::chrono::seconds(1))
      : interval_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(interval).count()) {}

  template <class... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto next = next_ns_.load(std::memory_order_relaxed);
    if (now < next || !next_ns_.compare_exchange_strong(next, now + interval_ns_)) {
      suppressed_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const auto held_back = suppressed_.exchange(0, std::memory_order_relaxed);
    std::string line = fmt::format(format, std::forward<Args>(args)...);
    if (held_back > 0) {
      spdlog::warn("{} ({} similar messages suppressed)", line, held_back);
    } else {
      spdlog::warn("{}", line);
    }
  }

  // Reports the warnings held back since the last line once the interval has passed, so the
  // count of a burst that ended is not kept until the next warning (which may never come).
  // Called periodically, and with `now` one last time when nothing more will be logged.
  void flush(std::string_view context, bool now = false) {
    if (suppressed_.load(std::memory_order_relaxed) == 0) return;
    if (!now) {
      const auto ns = std::chrono::steady_clock::now().time_since_epoch().count();
      auto next = next_ns_.load(std::memory_order_relaxed);
      if (ns < next || !next_ns_.compare_exchange_strong(next, ns + interval_ns_)) return;
    }
    if (const auto held_back = suppressed_.exchange(0, std::memory_order_relaxed); held_back > 0) {
      spdlog::warn("{}: {} similar messages suppressed", context, held_back);
    }
  }

 private:
  const std::int64_t interval_ns_;
  std::atomic<std::int64_t> next_ns_{0};
  std::atomic<std::uint64_t> suppressed_{0};
};

// A completion handler for co_spawn that logs an exception escaping a mirror's task, naming the
// mirror's cluster.
inline auto log_task_errors(std::string_view cluster, std::string_view what) {
  return [context = fmt::format("mirror {}: {}", cluster, what)](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("{} failed: {}", context, ex.what());
    }
  };
}

}  // namespace pgdog::mirror
