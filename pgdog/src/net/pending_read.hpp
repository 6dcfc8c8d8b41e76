#pragma once

#include <span>
#include <utility>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>

#include "net/asio.hpp"
#include "net/stream.hpp"

namespace pgdog::net {

// Resumes one waiting coroutine from plain callbacks (the completions of PendingReads). Holds
// nothing but an empty handler while no one waits.
class Wakeup {
 public:
  // Suspends until the next wake(). The caller checks first whether what it waits for has
  // already happened: a wake() with no one waiting is not remembered.
  auto wait() {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [this](auto handler) {
          // Constructed and swapped in: Boost 1.81's move assignment of any_completion_handler
          // wraps the handler in itself, endlessly (fixed in 1.82).
          asio::any_completion_handler<void()>(std::move(handler)).swap(waiter_);
        },
        asio::use_awaitable);
  }
  // Called on the waiter's executor: the waiter resumes inline.
  void wake() {
    if (!waiter_) return;
    auto waiter = std::move(waiter_);
    asio::dispatch(std::move(waiter));
  }
  bool waiting() const { return static_cast<bool>(waiter_); }

 private:
  asio::any_completion_handler<void()> waiter_;
};

// A read that may stay outstanding while its owner does other work (a session reading the
// client and its server at once): started with a plain callback, collected later.
class PendingRead {
 public:
  bool idle() const { return state_ == State::idle; }
  bool reading() const { return state_ == State::reading; }
  bool ready() const { return state_ == State::ready; }

  // Reads into `into` (which must stay valid until the result is taken) unless a read is
  // already outstanding. The callback runs on `executor`, keeps `keep` alive until then, and
  // wakes `wakeup`.
  template <class Keep>
  void start(Stream& stream, std::span<char> into, const Executor& executor, Wakeup& wakeup,
             Keep keep) {
    if (state_ != State::idle) return;
    state_ = State::reading;
    stream.async_read_some(
        into, asio::bind_executor(executor, [this, &wakeup, keep = std::move(keep)](
                                                error_code ec, std::size_t n) {
          ec_ = ec;
          n_ = n;
          state_ = State::ready;
          wakeup.wake();
        }));
  }

  // The result of a finished read; the read is idle again.
  std::pair<error_code, std::size_t> take() {
    state_ = State::idle;
    return {ec_, n_};
  }

 private:
  enum class State : unsigned char { idle, reading, ready };
  State state_ = State::idle;
  error_code ec_;
  std::size_t n_ = 0;
};

}  // namespace pgdog::net
