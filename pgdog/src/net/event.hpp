#pragma once

#include <chrono>

#include "net/asio.hpp"

namespace pgdog::net {

// A one-shot signal between coroutines on the same strand: wait() suspends until set().
class Event {
 public:
  explicit Event(Executor ex) : timer_(std::move(ex), std::chrono::steady_clock::time_point::max()) {}

  void set() {
    set_ = true;
    timer_.cancel();
  }
  bool is_set() const { return set_; }
  void reset() {
    set_ = false;
    timer_.expires_at(std::chrono::steady_clock::time_point::max());
  }
  Task<void> wait() {
    while (!set_) co_await timer_.async_wait(use_nothrow);
  }

 private:
  asio::steady_timer timer_;
  bool set_ = false;
};

}  // namespace pgdog::net
