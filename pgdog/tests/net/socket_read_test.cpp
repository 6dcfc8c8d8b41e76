// net::async_read_socket: a read tries at once only while the reactor's mark says the socket
// may hold bytes; a short read clears the mark, and any byte that arrives later sets it again,
// so no byte is ever left waiting (the case a regression test hung on with a read that never
// tried). It ends like any read on end of file, on close and on cancellation.

#include "net/socket_read.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
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
  ReactorCache cache;
  int theirs = -1;
};

// One loop (kept alive while no operation is queued), one connected pair, one read's buffer
// and result.
class SocketRead : public ::testing::Test {
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
  // Runs the loop until the read has ended, and checks that it brought `data`.
  void expect_read(std::string_view data) {
    run_until_done();
    if (!result_) {
      ADD_FAILURE() << "the read did not end";
      return;
    }
    EXPECT_FALSE(result_->ec) << result_->ec.message();
    EXPECT_EQ(result_->data, data);
  }
  auto record() {
    return [this](error_code ec, std::size_t n) { result_ = Result{ec, buffer_.substr(0, n)}; };
  }
  // Starts the read from a handler of the loop, as the proxy does.
  void start_on_loop() {
    asio::post(io_, [this] { async_read_socket(pair_.ours, pair_.cache, into(), record()); });
  }

  // Starts a read from this thread, the loop not running, and says whether it called recv
  // before it returned (then the bytes are in the buffer already); the read's result comes
  // when the loop runs.
  bool read_tries_at_once() {
    return tries_at_once([this] { async_read_socket(pair_.ours, pair_.cache, into(), record()); });
  }
  // The same for a read that `start` starts.
  template <class Start>
  bool tries_at_once(Start start) {
    std::fill(buffer_.begin(), buffer_.end(), '\0');
    result_.reset();
    start();
    return buffer_.front() != '\0';
  }

  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  Pair pair_{io_};
  std::string buffer_ = std::string(64, '\0');
  std::optional<Result> result_;
};

TEST_F(SocketRead, AfterAShortReadTheNextWaitsForTheReactor) {
  pair_.peer_sends("request");
  turn();  // the loop sees the edge first (else it comes after the read and sets the mark)
  start_on_loop();
  expect_read("request");
  // Fewer bytes than the buffer holds: the socket was empty. The bytes sent now have not been
  // seen by the loop yet, and the read leaves them to the reactor (Asio's own would read them
  // at once).
  pair_.peer_sends("answer");
  EXPECT_FALSE(read_tries_at_once());
  expect_read("answer");
}

// The socket under a TLS stream reads by the same rule (TlsSocket): the engine's read after a
// short one leaves new bytes to the reactor instead of trying at once.
TEST_F(SocketRead, UnderTlsTheSocketReadsByTheSameRule) {
  TlsSocket tls(std::move(pair_.ours), pair_.cache);
  const auto read = [&] {
    tls.async_read_some(asio::buffer(buffer_.data(), buffer_.size()), record());
  };
  pair_.peer_sends("request");
  turn();
  asio::post(io_, read);
  expect_read("request");
  pair_.peer_sends("answer");
  EXPECT_FALSE(tries_at_once(read));
  expect_read("answer");
}

TEST_F(SocketRead, ReadsAtOnceWhatCameWhileNoReadWaited) {
  // A COPY that failed at once: the server's error came while the proxy was writing the rest of
  // the data, no read waited, and the server will send nothing more. A read that skipped its try
  // here would wait forever; this one reads what is there at once.
  pair_.peer_sends("copy-in;");
  start_on_loop();
  run_until_done();
  ASSERT_TRUE(result_.has_value());
  pair_.peer_sends("error;ready");
  turn();
  EXPECT_TRUE(read_tries_at_once());
  expect_read("error;ready");
}

TEST_F(SocketRead, AReadThatFillsItsBufferLeavesTheRestToTheNextAtOnce) {
  buffer_ = std::string(4, '\0');
  pair_.peer_sends("abcdefg");
  turn();  // the edge comes before the read, as in AfterAShortReadTheNextWaitsForTheReactor
  start_on_loop();
  expect_read("abcd");
  // A full buffer says nothing about what is left.
  EXPECT_TRUE(read_tries_at_once());
  expect_read("efg");
}

TEST_F(SocketRead, WaitsForBytesThatComeAfterItStarted) {
  start_on_loop();
  turn();
  EXPECT_FALSE(result_.has_value());
  pair_.peer_sends("answer");
  expect_read("answer");
}

TEST_F(SocketRead, AnEndThatCameWithTheLastBytesEndsTheNextRead) {
  // A client that sends a request and shuts its side down at once: one event brings both, and
  // the first read takes the bytes and stops short of the end. The next read must see the end.
  // (One read before, so that the socket is registered for the ends of stream already:
  // registering re-polls the socket, which would announce the end once more.)
  pair_.peer_sends("startup");
  start_on_loop();
  run_until_done();
  ASSERT_TRUE(result_.has_value());
  result_.reset();
  pair_.peer_sends("BEGIN");
  ASSERT_EQ(::shutdown(pair_.theirs, SHUT_WR), 0);
  turn();
  start_on_loop();
  expect_read("BEGIN");
  result_.reset();
  start_on_loop();
  run_until_done();
  ASSERT_TRUE(result_.has_value()) << "the end of stream was never read";
  EXPECT_EQ(result_->ec, asio::error::eof) << result_->ec.message();
}

TEST(SocketReadTcp, AResetThatCameWithTheLastBytesEndsTheNextRead) {
  // The same over TCP with a reset (a server killed while it answered): the bytes first, then
  // the reset, which no later event announces.
  asio::io_context io(1);
  auto work = asio::make_work_guard(io);
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket peer(io);
  peer.connect(acceptor.local_endpoint());
  Socket ours(io);
  {
    tcp::socket accepted = acceptor.accept();
    ours.assign(asio::generic::stream_protocol(AF_INET, SOCK_STREAM), accepted.release());
  }
  ours.non_blocking(true);
  ReactorCache cache;
  std::string buffer(64, '\0');
  std::optional<Result> result;
  auto read = [&] {
    result.reset();
    asio::post(io, [&] {
      async_read_socket(ours, cache, std::span<char>(buffer.data(), buffer.size()),
                        [&](error_code ec, std::size_t n) {
                          result = Result{ec, buffer.substr(0, n)};
                        });
    });
    for (int i = 0; i < 250 && !result; ++i) {
      io.restart();
      io.run_for(std::chrono::milliseconds(20));
    }
  };
  // One read first, so that the socket is registered for the ends of stream.
  asio::write(peer, asio::buffer(std::string_view("hello")));
  read();
  ASSERT_TRUE(result.has_value());
  asio::write(peer, asio::buffer(std::string_view("partial answer")));
  peer.set_option(asio::socket_base::linger(true, 0));
  peer.close();  // a reset
  io.restart();
  io.run_for(std::chrono::milliseconds(20));
  read();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->data, "partial answer");
  read();
  ASSERT_TRUE(result.has_value()) << "the reset was never read";
  EXPECT_TRUE(result->ec) << "no error after a reset";
}

TEST_F(SocketRead, EndOfFileEndsTheRead) {
  start_on_loop();
  turn();
  ASSERT_FALSE(result_.has_value());
  ::close(pair_.theirs);
  pair_.theirs = -1;
  run_until_done();
  ASSERT_TRUE(result_.has_value());
  EXPECT_EQ(result_->ec, asio::error::eof) << result_->ec.message();
}

TEST_F(SocketRead, CloseEndsTheRead) {
  start_on_loop();
  turn();
  ASSERT_FALSE(result_.has_value());
  pair_.ours.close();
  run_until_done();
  ASSERT_TRUE(result_.has_value());
  EXPECT_EQ(result_->ec, asio::error::operation_aborted) << result_->ec.message();
}

TEST_F(SocketRead, ACancellationSignalEndsTheRead) {
  asio::cancellation_signal stop;
  asio::post(io_, [&] {
    async_read_socket(pair_.ours, pair_.cache, into(),
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
  expect_read("after");
}

TEST_F(SocketRead, StartedOffTheLoopItReadsWhatIsThere) {
  // Started by a thread that is not running the socket's loop, after the loop saw the bytes.
  pair_.peer_sends("there;");
  turn();
  async_read_socket(pair_.ours, pair_.cache, into(), record());
  run_until_done();
  ASSERT_TRUE(result_.has_value());
  EXPECT_FALSE(result_->ec);
  EXPECT_EQ(result_->data, "there;");
}

TEST(SocketReadLifetime, ADestroyedLoopFreesAReadStillWaiting) {
  // The operation is destroyed with the loop without running its handler (LeakSanitizer checks
  // that its memory goes too).
  bool ran = false;
  {
    asio::io_context io(1);
    auto work = asio::make_work_guard(io);
    Pair pair(io);
    std::string buffer(8, '\0');
    asio::post(io, [&] {
      async_read_socket(
          pair.ours, pair.cache, std::span<char>(buffer.data(), buffer.size()),
          [&ran, keep = std::make_shared<int>(1)](error_code, std::size_t) { ran = true; });
    });
    io.run_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace pgdog::net
