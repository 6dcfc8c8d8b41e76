// net::async_read_answer: it waits for the socket to become readable instead of trying a read
// at once, reads everything there when it does (bytes that came earlier included), and ends
// like any read on end of file, on close, and off its loop's thread (where it is a plain read).

#include "net/answer_read.hpp"

#include <optional>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include "net/stream.hpp"

namespace pgdog::net {
namespace {

struct Result {
  error_code ec;
  std::string data;
};

// A connected pair: `ours` is the proxy's end, a non-blocking Socket on `io`; `theirs` a plain
// descriptor the test writes into as the peer.
struct Pair {
  explicit Pair(asio::io_context& io) : ours(io) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) throw std::runtime_error("socketpair");
    ours.assign(asio::generic::stream_protocol(AF_UNIX, SOCK_STREAM), fds[0]);
    ours.non_blocking(true);
    theirs = fds[1];
  }
  ~Pair() {
    if (theirs >= 0) ::close(theirs);
  }
  void peer_sends(std::string_view s) const {
    ASSERT_EQ(::send(theirs, s.data(), s.size(), 0), static_cast<ssize_t>(s.size()));
  }
  Socket ours;
  AnswerReadCache cache;
  int theirs = -1;
};

// Runs the loop for a while: its reactor waits on the sockets (and so consumes the edges of
// bytes nobody reads) and its handlers run.
void turn(asio::io_context& io) {
  io.restart();
  io.run_for(std::chrono::milliseconds(20));
}

// Runs the loop until `result` is set (at most five seconds).
void run_until(asio::io_context& io, const std::optional<Result>& result) {
  for (int i = 0; i < 250 && !result; ++i)
    turn(io);
}

// Starts the read from a handler of the loop, as the proxy does.
void start_on_loop(asio::io_context& io, Socket& socket, AnswerReadCache& cache,
                   std::string& buffer, std::optional<Result>& result) {
  asio::post(io, [&] {
    async_read_answer(socket, cache, std::span<char>(buffer.data(), buffer.size()),
                      [&](error_code ec, std::size_t n) {
                        result = Result{ec, buffer.substr(0, n)};
                      });
  });
}

TEST(AnswerRead, ReadsWhenTheAnswerArrivesTogetherWithWhatCameBefore) {
  asio::io_context io(1);
  auto work = asio::make_work_guard(io);
  Pair pair(io);
  // Bytes that came while nothing read the socket (an asynchronous notice while the server sat
  // in the pool): the loop has seen their edge already.
  pair.peer_sends("early;");
  turn(io);
  std::string buffer(64, '\0');
  std::optional<Result> result;
  start_on_loop(io, pair.ours, pair.cache, buffer, result);
  turn(io);
  // A read that tried at once would have finished here with "early;".
  EXPECT_FALSE(result.has_value()) << "read before the socket was reported readable";
  pair.peer_sends("answer");
  run_until(io, result);
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(result->ec) << result->ec.message();
  EXPECT_EQ(result->data, "early;answer");
}

TEST(AnswerRead, EndOfFileAndCloseEndTheRead) {
  asio::io_context io(1);
  auto work = asio::make_work_guard(io);
  {
    Pair pair(io);
    std::string buffer(64, '\0');
    std::optional<Result> result;
    start_on_loop(io, pair.ours, pair.cache, buffer, result);
    turn(io);
    ASSERT_FALSE(result.has_value());
    ::close(pair.theirs);
    pair.theirs = -1;
    run_until(io, result);
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(result->ec, asio::error::eof) << result->ec.message();
  }
  {
    Pair pair(io);
    std::string buffer(64, '\0');
    std::optional<Result> result;
    start_on_loop(io, pair.ours, pair.cache, buffer, result);
    turn(io);
    ASSERT_FALSE(result.has_value());
    pair.ours.close();
    run_until(io, result);
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(result->ec, asio::error::operation_aborted) << result->ec.message();
  }
}

TEST(AnswerRead, ACancellationSignalEndsTheRead) {
  asio::io_context io(1);
  auto work = asio::make_work_guard(io);
  Pair pair(io);
  asio::cancellation_signal stop;
  std::string buffer(64, '\0');
  std::optional<Result> result;
  asio::post(io, [&] {
    async_read_answer(pair.ours, pair.cache, std::span<char>(buffer.data(), buffer.size()),
                      asio::bind_cancellation_slot(stop.slot(), [&](error_code ec, std::size_t n) {
                        result = Result{ec, buffer.substr(0, n)};
                      }));
  });
  turn(io);
  ASSERT_FALSE(result.has_value());
  stop.emit(asio::cancellation_type::terminal);
  run_until(io, result);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->ec, asio::error::operation_aborted) << result->ec.message();
  // The socket is still usable: the next read gets what the peer sends.
  result.reset();
  start_on_loop(io, pair.ours, pair.cache, buffer, result);
  turn(io);
  pair.peer_sends("after");
  run_until(io, result);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->data, "after");
}

TEST(AnswerRead, OffTheLoopItIsAPlainRead) {
  // Started by a thread that is not running the socket's loop: nothing guarantees that the loop
  // has not consumed the edge already, so it reads what is there.
  asio::io_context io(1);
  auto work = asio::make_work_guard(io);
  Pair pair(io);
  pair.peer_sends("there;");
  turn(io);
  std::string buffer(64, '\0');
  std::optional<Result> result;
  async_read_answer(pair.ours, pair.cache, std::span<char>(buffer.data(), buffer.size()),
                    [&](error_code ec, std::size_t n) {
                      result = Result{ec, buffer.substr(0, n)};
                    });
  run_until(io, result);
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(result->ec);
  EXPECT_EQ(result->data, "there;");
}

TEST(AnswerRead, ADestroyedLoopFreesAReadStillWaiting) {
  // The operation is destroyed with the loop without running its handler (LeakSanitizer checks
  // that its memory goes too).
  bool ran = false;
  {
    asio::io_context io(1);
    auto work = asio::make_work_guard(io);
    Pair pair(io);
    std::string buffer(8, '\0');
    asio::post(io, [&] {
      async_read_answer(
          pair.ours, pair.cache, std::span<char>(buffer.data(), buffer.size()),
          [&ran, keep = std::make_shared<int>(1)](error_code, std::size_t) { ran = true; });
    });
    turn(io);
  }
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace pgdog::net
