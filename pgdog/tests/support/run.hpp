#pragma once

// Running a test's io_context in the test's own thread: one thread for the scripted server,
// the code under test and the assertions, so nothing races and every wait is for a state with
// a deadline. The deadlines are generous upper bounds for a loaded machine, never a timing the
// test relies on.

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>

#include <boost/asio/io_context.hpp>

#include "net/asio.hpp"

namespace pgdog::test {

constexpr std::chrono::milliseconds kDeadline{20'000};
constexpr std::chrono::milliseconds kSlice{5};

// Runs handlers until `done()` holds; false when the deadline passes first.
inline bool run_until(asio::io_context& io, const std::function<bool()>& done,
                      std::chrono::milliseconds limit = kDeadline) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    if (io.stopped()) io.restart();
    // In slices, so that a condition on the clock is seen soon after it holds. With nothing
    // to run at all, only another thread can change the state: poll gently.
    if (io.run_one_until(std::min(deadline, now + kSlice)) == 0 && io.stopped()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  return true;
}

// Runs handlers for `duration` (to let something that must not happen have its chance).
inline void run_for(asio::io_context& io, std::chrono::milliseconds duration) {
  const auto until = std::chrono::steady_clock::now() + duration;
  run_until(
      io, [&] { return std::chrono::steady_clock::now() >= until; }, duration * 2);
}

// Runs `task` on `io` to its end and returns what it returned. Throws (the test fails) when the
// deadline passes first or the task threw.
template <class T>
T run(asio::io_context& io, Task<T> task, std::chrono::milliseconds limit = kDeadline) {
  struct Outcome {
    bool done = false;
    std::exception_ptr error;
    std::optional<T> value;
  };
  auto out = std::make_shared<Outcome>();
  asio::co_spawn(io, std::move(task), [out](std::exception_ptr e, T value) {
    out->done = true;
    out->error = e;
    out->value.emplace(std::move(value));
  });
  if (!run_until(
          io, [&] { return out->done; }, limit)) {
    throw std::runtime_error("the task did not finish before the deadline");
  }
  if (out->error) std::rethrow_exception(out->error);
  return std::move(*out->value);
}

inline void run(asio::io_context& io, Task<void> task,
                std::chrono::milliseconds limit = kDeadline) {
  auto done = std::make_shared<bool>(false);
  auto error = std::make_shared<std::exception_ptr>();
  asio::co_spawn(io, std::move(task), [done, error](std::exception_ptr e) {
    *done = true;
    *error = e;
  });
  if (!run_until(
          io, [&] { return *done; }, limit)) {
    throw std::runtime_error("the task did not finish before the deadline");
  }
  if (*error) std::rethrow_exception(*error);
}

}  // namespace pgdog::test
