#include "http/server.hpp"

#include <atomic>
#include <future>
#include <optional>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>
#include <prometheus/metric_family.h>

#include "http/status_page.hpp"

namespace pgdog::http {
namespace {

namespace bhttp = boost::beast::http;
using stats::Format;
using stats::OpenMetric;
using stats::Registry;
using namespace std::chrono_literals;

// A source with `series` gauge series, so that bodies can be made large.
class FakeSource final : public OpenMetric {
 public:
  explicit FakeSource(int series) : series_(series) {}
  void collect(std::vector<prometheus::MetricFamily>& out) const override {
    prometheus::MetricFamily f{"pgdog_fake", "A fake gauge.", prometheus::MetricType::Gauge, {}};
    for (int i = 0; i < series_; ++i) {
      prometheus::ClientMetric m;
      m.label = {{"i", std::to_string(i)}, {"pad", std::string(40, 'x')}};
      m.gauge.value = i;
      f.metric.push_back(std::move(m));
    }
    prometheus::MetricFamily c{
        "pgdog_fake_total", "A fake counter.", prometheus::MetricType::Counter, {}};
    c.metric.emplace_back();
    c.metric.back().counter.value = 42;
    out.push_back(std::move(f));
    out.push_back(std::move(c));
  }

 private:
  int series_;
};

// A blocking HTTP client over one TCP connection.
class Client {
 public:
  explicit Client(std::uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }

  void send(std::string_view raw) { asio::write(socket_, asio::buffer(raw)); }
  // False once the server has closed the connection.
  bool try_send(std::string_view raw) {
    error_code ec;
    asio::write(socket_, asio::buffer(raw), ec);
    return !ec;
  }

  std::optional<bhttp::response<bhttp::string_body>> read() {
    bhttp::response<bhttp::string_body> res;
    error_code ec;
    bhttp::read(socket_, buffer_, res, ec);
    if (ec) return std::nullopt;
    return res;
  }

  // The answer to a HEAD request: a header without a body.
  std::optional<bhttp::response<bhttp::string_body>> read_head() {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.skip(true);
    error_code ec;
    bhttp::read(socket_, buffer_, parser, ec);
    if (ec) return std::nullopt;
    return parser.release();
  }

  std::optional<bhttp::response<bhttp::string_body>> request(std::string_view raw) {
    send(raw);
    return read();
  }

  // True when the server closes the connection (EOF or reset) within `within`.
  bool closed_within(std::chrono::milliseconds within) {
    std::promise<bool> p;
    auto f = p.get_future();
    std::thread t([&] {
      std::array<char, 256> scratch{};
      error_code ec;
      while (!ec)
        socket_.read_some(asio::buffer(scratch), ec);
      p.set_value(true);
    });
    const bool closed = f.wait_for(within) == std::future_status::ready;
    // Unblocks the reader; the socket is closed only once it is done with it.
    error_code ec;
    if (!closed) socket_.shutdown(tcp::socket::shutdown_both, ec);
    t.join();
    socket_.close(ec);
    return closed;
  }

 private:
  asio::io_context io_;
  tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
};

std::string get(std::string_view target, std::string_view extra = {}) {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: localhost\r\n" + std::string(extra) +
         "\r\n";
}

class HttpServerTest : public ::testing::Test {
 protected:
  void start(Options options = {}, int series = 10) {
    registry_ = std::make_shared<Registry>();
    registry_->add(std::make_shared<FakeSource>(series));
    options.host = "127.0.0.1";
    options.port = 0;
    server_ = std::make_unique<Server>(io_.get_executor(), options, registry_);
    server_->start();
    for (int i = 0; i < 2; ++i)
      threads_.emplace_back([this] { io_.run(); });
  }

  void TearDown() override {
    if (server_) server_->stop();
    server_.reset();
    work_.reset();
    // Connections still open (tests that leave them) end when the io_context stops.
    io_.stop();
    for (auto& t : threads_)
      t.join();
  }

  std::uint16_t port() const { return server_->port(); }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::vector<std::thread> threads_;
  std::shared_ptr<Registry> registry_;
  std::unique_ptr<Server> server_;
};

TEST_F(HttpServerTest, MetricsAsPrometheusTextByDefault) {
  start();
  Client c(port());
  auto res = c.request(get("/metrics"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200U);
  EXPECT_EQ((*res)[bhttp::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(res->body(), registry_->render(Format::prometheus_text));
  EXPECT_NE(res->body().find("# TYPE pgdog_fake_total counter\n"), std::string::npos);
  EXPECT_EQ(res->body().find("# EOF"), std::string::npos);
}

TEST_F(HttpServerTest, MetricsAsOpenMetricsWhenAccepted) {
  start();
  Client c(port());
  auto res = c.request(get("/metrics",
                           "Accept: application/openmetrics-text;version=1.0.0,text/plain;"
                           "version=0.0.4;q=0.5,*/*;q=0.1\r\n"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200U);
  EXPECT_EQ((*res)[bhttp::field::content_type],
            "application/openmetrics-text; version=1.0.0; charset=utf-8");
  EXPECT_EQ(res->body(), registry_->render(Format::openmetrics));
  EXPECT_TRUE(res->body().ends_with("# EOF\n"));
  EXPECT_NE(res->body().find("# TYPE pgdog_fake counter\n"), std::string::npos);
}

TEST_F(HttpServerTest, QueryStringIsIgnored) {
  start();
  Client c(port());
  auto res = c.request(get("/metrics?name[]=x"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200U);
}

TEST_F(HttpServerTest, UnknownPathIs404) {
  start();
  Client c(port());
  auto res = c.request(get("/nope"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 404U);
  // The connection stays usable.
  res = c.request(get("/metrics"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200U);
}

TEST_F(HttpServerTest, OtherMethodsAre405WithAllow) {
  start();
  Client c(port());
  auto res =
      c.request("POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 405U);
  EXPECT_EQ((*res)[bhttp::field::allow], "GET, HEAD");
  res = c.request("DELETE /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 405U);
}

TEST_F(HttpServerTest, HeadHasTheLengthButNoBody) {
  start();
  Client c(port());
  // Pipelined: if the HEAD answer carried a body, the GET answer would not parse.
  c.send("HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n" + get("/metrics"));
  auto head = c.read_head();
  auto body = c.read();
  ASSERT_TRUE(head && body);
  EXPECT_EQ(head->result_int(), 200U);
  EXPECT_EQ(body->result_int(), 200U);
  EXPECT_EQ((*head)[bhttp::field::content_length], std::to_string(body->body().size()));
}

TEST_F(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  start();
  Client c(port());
  for (int i = 0; i < 3; ++i) {
    auto res = c.request(get("/metrics"));
    ASSERT_TRUE(res) << i;
    EXPECT_EQ(res->result_int(), 200U);
    EXPECT_TRUE(res->keep_alive());
  }
  // Two requests in one write (pipelined) are both answered, in order.
  c.send(get("/metrics") + get("/nope"));
  auto first = c.read();
  auto second = c.read();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->result_int(), 200U);
  EXPECT_EQ(second->result_int(), 404U);
}

TEST_F(HttpServerTest, ConnectionCloseIsHonoured) {
  start();
  Client c(port());
  auto res = c.request(get("/metrics", "Connection: close\r\n"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200U);
  EXPECT_FALSE(res->keep_alive());
  EXPECT_TRUE(c.closed_within(2s));

  Client old(port());
  res = old.request("GET /metrics HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200U);
  EXPECT_TRUE(old.closed_within(2s));
}

TEST_F(HttpServerTest, OversizedHeaderIsRefused) {
  Options o;
  o.max_request_bytes = 1024;
  start(o);
  Client c(port());
  c.send(get("/metrics", "X-Big: " + std::string(4096, 'a') + "\r\n"));
  auto res = c.read();
  // 413, then the connection is closed.
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 413U);
  EXPECT_FALSE(res->keep_alive());
  EXPECT_TRUE(c.closed_within(3s));
}

TEST_F(HttpServerTest, OversizedBodyIsRefused) {
  Options o;
  o.max_request_bytes = 1024;
  start(o);
  Client c(port());
  c.send("GET /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n" +
         std::string(2000, 'b'));
  auto res = c.read();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 413U);
  EXPECT_TRUE(c.closed_within(3s));
}

TEST_F(HttpServerTest, MalformedRequestIs400) {
  start();
  Client c(port());
  auto res = c.request("GARBAGE\r\n\r\n");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 400U);
  EXPECT_TRUE(c.closed_within(3s));
}

TEST_F(HttpServerTest, IdleConnectionIsClosedAfterTheReadTimeout) {
  Options o;
  o.read_timeout = 300ms;
  start(o);
  Client idle(port());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(idle.closed_within(3s));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);

  // Idle between two requests of a keep-alive connection.
  Client kept(port());
  auto res = kept.request(get("/metrics"));
  ASSERT_TRUE(res);
  EXPECT_TRUE(kept.closed_within(3s));
}

TEST_F(HttpServerTest, TricklingRequestIsClosedAfterTheReadTimeout) {
  Options o;
  o.read_timeout = 300ms;
  start(o);
  Client slow(port());
  // The deadline is for the whole request, not per byte.
  const auto t0 = std::chrono::steady_clock::now();
  for (const char ch : std::string("GET /metrics HTTP/1.1\r\nHost: x\r\n")) {
    if (!slow.try_send(std::string(1, ch))) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);
  EXPECT_TRUE(slow.closed_within(3s));
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (server_->connections() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(server_->connections(), 0U);
}

TEST_F(HttpServerTest, ConcurrentScrapersAllGetCompleteBodies) {
  start({}, 3000);  // a body of a few hundred kilobytes
  const auto expected = registry_->render(Format::prometheus_text);
  const auto expected_om = registry_->render(Format::openmetrics);
  ASSERT_GT(expected.size(), 200'000U);
  constexpr int kClients = 20;
  std::atomic<int> complete{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      Client c(port());
      for (int round = 0; round < 3; ++round) {
        const bool om = (i + round) % 2 == 0;
        auto res = c.request(get("/metrics", om ? "Accept: application/openmetrics-text\r\n" : ""));
        if (!res || res->result_int() != 200) return;
        if (res->body() != (om ? expected_om : expected)) return;
      }
      ++complete;
    });
  }
  for (auto& t : clients)
    t.join();
  EXPECT_EQ(complete, kClients);
}

TEST_F(HttpServerTest, ConnectionsBeyondTheLimitAreClosed) {
  Options o;
  o.max_connections = 2;
  start(o);
  Client a(port());
  Client b(port());
  ASSERT_TRUE(a.request(get("/metrics")));
  ASSERT_TRUE(b.request(get("/metrics")));
  Client c(port());
  EXPECT_TRUE(c.closed_within(2s));
  // A slot freed is a slot available again.
  a.send(get("/metrics", "Connection: close\r\n"));
  ASSERT_TRUE(a.read());
  EXPECT_TRUE(a.closed_within(2s));
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (server_->connections() > 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  Client d(port());
  auto res = d.request(get("/metrics"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200U);
}

TEST_F(HttpServerTest, AddedRoutes) {
  start();
  server_->add_route("/status", [](std::string_view accept) {
    return Response{200, "application/json", "{\"accept\":\"" + std::string(accept) + "\"}"};
  });
  Client c(port());
  auto res = c.request(get("/status", "Accept: application/json\r\n"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200U);
  EXPECT_EQ((*res)[bhttp::field::content_type], "application/json");
  EXPECT_EQ(res->body(), "{\"accept\":\"application/json\"}");
  res = c.request("PUT /status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 405U);
}

// GET /mirrors/history answers what the sampler recorded, also while it records from another
// thread (the server runs on two).
TEST_F(HttpServerTest, HistoryRouteServesTheRecordedReadings) {
  start();
  auto history = std::make_shared<stats::MirrorHistories>();
  stats::MirrorCounters counters;
  counters.success = 3;
  history->record(100.0, "m", counters);
  add_history_route(*server_, history);
  Client c(port());
  auto res = c.request(get("/mirrors/history"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200U);
  EXPECT_EQ((*res)[bhttp::field::content_type], "application/json");
  EXPECT_EQ(res->body(), stats::to_json(history->snapshot()));
  EXPECT_NE(res->body().find("\"success\":3,"), std::string::npos) << res->body();

  std::atomic<bool> done{false};
  std::thread sampler([&] {
    for (double at = 101; !done; ++at) {
      ++counters.success;
      history->record(at, "m", counters);
    }
  });
  for (int i = 0; i < 20; ++i) {
    res = c.request(get("/mirrors/history"));
    ASSERT_TRUE(res);
    EXPECT_EQ(res->body().rfind("{\"interval_seconds\":1,\"capacity\":900,", 0), 0U);
    EXPECT_TRUE(res->body().ends_with("}]}]}")) << res->body().substr(0, 200);
  }
  done = true;
  sampler.join();
}

TEST_F(HttpServerTest, RouteThatThrowsIs500) {
  start();
  server_->add_route("/boom",
                     [](std::string_view) -> Response { throw std::runtime_error("boom"); });
  Client c(port());
  auto res = c.request(get("/boom"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 500U);
}

TEST_F(HttpServerTest, StopClosesOpenConnectionsAndTheListener) {
  start();
  Client c(port());
  ASSERT_TRUE(c.request(get("/metrics")));
  const auto p = port();
  server_->stop();
  EXPECT_TRUE(c.closed_within(2s));
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  bool refused = false;
  while (!refused && std::chrono::steady_clock::now() < deadline) {
    asio::io_context io;
    tcp::socket s(io);
    error_code ec;
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), p), ec);
    refused = static_cast<bool>(ec);
    if (!refused) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(refused);
}

TEST(HttpServer, BindFailureThrows) {
  asio::io_context io;
  tcp::acceptor taken(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  Options o;
  o.host = "127.0.0.1";
  o.port = taken.local_endpoint().port();
  Server server(io.get_executor(), o, std::make_shared<Registry>());
  EXPECT_THROW(server.start(), std::system_error);
}

}  // namespace
}  // namespace pgdog::http
