#pragma once

// The Asio vocabulary every I/O module shares.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <exception>

namespace pgdog {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Executor = asio::any_io_executor;

template <class T = void>
using Task = asio::awaitable<T>;

// Expected failures (EOF, reset, timeout, cancellation) come back as values, not exceptions.
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

// Completion handler for co_spawn: an exception that escapes a task is logged with what the
// task was, never lost.
inline auto log_errors(const char* what) {
  return [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("{} failed: {}", what, ex.what());
    }
  };
}

}  // namespace pgdog
