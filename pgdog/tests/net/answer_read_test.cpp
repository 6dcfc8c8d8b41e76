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

// One loop (kept alive while no operation is queued), one connected pair, one read's buffer
// and result.
class AnswerRead : public ::testing::Test {
 protected:
  // Runs the loop for a while: its reactor waits on the sockets (and so consumes the edges of
  // bytes nobody reads) and its handlers run.
  void turn() {
    io_.restart();
    io_.run_for(std::chrono::milliseconds(20));
  }
  // Runs the loop until the read has ended (at most five seconds).
  void run_until_done() {
    for (int i = 0; i < 250 && !result_; ++i)
      turn();
  }
  auto into() { return std::span<char>(buffer_.data(), buffer_.size()); }
  auto record() {
    return [this](error_code ec, std::size_t n) { result_ = Result{ec, buffer_.substr(0, n)}; };
  }
  // Starts the read from a handler of the loop, as the proxy does.
  void start_on_loop() {
    asio::post(io_, [this] { async_read_answer(pair_.ours, pair_.cache, into(), record()); });
  }

  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  Pair pair_{io_};
  std::string buffer_ = std::string(64, '\0');
  std::optional<Result> result_;
};

TEST_F(AnswerRead, ReadsWhenTheAnswerArrivesTogetherWithWhatCameBefore) {
  // Bytes that came while nothing read the socket (an asynchronous notice while the server sat
  // in the pool): the loop has seen their edge already.
  pair_.peer_sends("early;");
  turn();
  start_on_loop();
  turn();
  // A read that tried at once would have finished here with "early;".
  EXPECT_FALSE(result_.has_value()) << "read before the socket was reported readable";
  pair_.peer_sends("answer");
  run_until_done();
  ASSERT_TRUE(result_.has_value());
  EXPECT_FALSE(result_->ec) << result_->ec.message();
  EXPECT_EQ(result_->data, "early;answer");
}

TEST_F(AnswerRead, EndOfFileEndsTheRead) {
  start_on_loop();
  turn();
  ASSERT_FALSE(result_.has_value());
  ::close(pair_.theirs);
  pair_.theirs = -1;
  run_until_done();
  ASSERT_TRUE(result_.has_value());
  EXPECT_EQ(result_->ec, asio::error::eof) << result_->ec.message();
}

TEST_F(AnswerRead, CloseEndsTheRead) {
  start_on_loop();
  turn();
  ASSERT_FALSE(result_.has_value());
  pair_.ours.close();
  run_until_done();
  ASSERT_TRUE(result_.has_value());
  EXPECT_EQ(result_->ec, asio::error::operation_aborted) << result_->ec.message();
}

TEST_F(AnswerRead, ACancellationSignalEndsTheRead) {
  asio::cancellation_signal stop;
  asio::post(io_, [&] {
    async_read_answer(pair_.ours, pair_.cache, into(),
                      asio::bind_cancellation_slot(stop.slot(), record()));
  });
  turn();
  ASSERT_FALSE(result_.has_value());
  stop.emit(asio::cancellation_type::terminal);
  run_until_done();
  ASSERT_TRUE(result_.has_value());
  EXPECT_EQ(result_->ec, asio::error::operation_aborted) << result_->ec.message();
  // The socket is still usable: the next read gets what the peer sends.
  result_.reset();
  start_on_loop();
  turn();
  pair_.peer_sends("after");
  run_until_done();
  ASSERT_TRUE(result_.has_value());
  EXPECT_EQ(result_->data, "after");
}

TEST_F(AnswerRead, OffTheLoopItIsAPlainRead) {
  // Started by a thread that is not running the socket's loop: nothing guarantees that the loop
  // has not consumed the edge already, so it reads what is there.
  pair_.peer_sends("there;");
  turn();
  async_read_answer(pair_.ours, pair_.cache, into(), record());
  run_until_done();
  ASSERT_TRUE(result_.has_value());
  EXPECT_FALSE(result_->ec);
  EXPECT_EQ(result_->data, "there;");
}

TEST(AnswerReadLifetime, ADestroyedLoopFreesAReadStillWaiting) {
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
    io.run_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace pgdog::net
