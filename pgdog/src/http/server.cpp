#include "http/server.hpp"

#include <limits>
#include <map>
#include <mutex>
#include <system_error>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace pgdog::http {

namespace beast = boost::beast;
namespace bhttp = beast::http;

namespace {

using BeastRequest = bhttp::request<bhttp::string_body>;
using BeastResponse = bhttp::response<bhttp::string_body>;

constexpr std::string_view kAllow = "GET, HEAD";

bool too_large(const error_code& ec) {
  return ec == bhttp::error::header_limit || ec == bhttp::error::body_limit ||
         ec == bhttp::error::buffer_overflow;
}

// A malformed request (as opposed to a peer that went away or timed out) gets a 400.
bool malformed(const error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
         ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message &&
         ec != bhttp::error::need_more;
}

BeastResponse plain(unsigned status, unsigned version, std::string body) {
  BeastResponse res{static_cast<bhttp::status>(status), version};
  res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(body);
  return res;
}

tcp::endpoint resolve(const Executor& io, const std::string& host, std::uint16_t port) {
  error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (!ec) return {address, port};
  tcp::resolver resolver(io);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    if (!ec) ec = asio::error::host_not_found;
    throw std::system_error(ec, "metrics endpoint: cannot resolve " + host);
  }
  return results.begin()->endpoint();
}

}  // namespace

struct Server::Impl : std::enable_shared_from_this<Impl> {
  struct Connection {
    explicit Connection(tcp::socket socket) : stream(std::move(socket)) {}
    beast::tcp_stream stream;
  };

  Impl(Executor executor, Options o, std::shared_ptr<stats::Registry> r)
      : io(std::move(executor)),
        options(std::move(o)),
        registry(std::move(r)),
        strand(asio::make_strand(io)),
        acceptor(strand) {}

  Task<void> accept_loop(std::shared_ptr<Impl> self);
  Task<void> serve(std::shared_ptr<Impl> self, std::shared_ptr<Connection> c, std::uint64_t id);
  Task<void> linger(Connection& c);
  BeastResponse respond(const BeastRequest& req);
  void close_all();

  const Executor io;
  const Options options;
  const std::shared_ptr<stats::Registry> registry;
  asio::strand<Executor> strand;  // the acceptor's
  tcp::acceptor acceptor;
  std::atomic<std::uint16_t> port{0};
  std::atomic<std::size_t> connections{0};
  std::atomic<bool> stopped{false};

  std::mutex mutex;
  std::map<std::string, Route, std::less<>> routes;
  std::map<std::uint64_t, std::weak_ptr<Connection>> live;
  std::uint64_t next_id = 0;
};

Server::Server(Executor io, Options options, std::shared_ptr<stats::Registry> registry)
    : impl_(std::make_shared<Impl>(std::move(io), std::move(options), std::move(registry))) {}

Server::~Server() {
  stop();
}

void Server::add_route(std::string path, Route route) {
  std::lock_guard g(impl_->mutex);
  impl_->routes.insert_or_assign(std::move(path), std::move(route));
}

void Server::start() {
  auto& s = *impl_;
  const auto endpoint = resolve(s.io, s.options.host, s.options.port);
  const std::string where = s.options.host + ":" + std::to_string(s.options.port);
  error_code ec;
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    error_code ignored;
    s.acceptor.close(ignored);
    throw std::system_error(ec, "metrics endpoint: cannot listen on " + where);
  }
  s.port = s.acceptor.local_endpoint(ec).port();
  asio::co_spawn(s.strand, s.accept_loop(impl_), log_errors("metrics endpoint"));
}

void Server::stop() {
  if (impl_->stopped.exchange(true)) return;
  asio::dispatch(impl_->strand, [self = impl_] {
    error_code ec;
    self->acceptor.close(ec);
  });
  impl_->close_all();
}

std::uint16_t Server::port() const {
  return impl_->port;
}

std::size_t Server::connections() const {
  return impl_->connections;
}

void Server::Impl::close_all() {
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard g(mutex);
    for (const auto& [id, weak] : live) {
      if (auto c = weak.lock()) open.push_back(std::move(c));
    }
  }
  for (auto& c : open) {
    asio::dispatch(c->stream.get_executor(), [c] {
      error_code ec;
      c->stream.socket().shutdown(tcp::socket::shutdown_both, ec);
      c->stream.close();
    });
  }
}

Task<void> Server::Impl::accept_loop(std::shared_ptr<Impl> self) {
  while (acceptor.is_open()) {
    // Each connection on its own strand: stop() closes it from another thread.
    auto [ec, socket] =
        co_await acceptor.async_accept(Executor(asio::make_strand(io)), use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      // Out of file descriptors and the like: back off instead of spinning.
      spdlog::warn("metrics endpoint: accept failed: {}", ec.message());
      asio::steady_timer t(strand, std::chrono::milliseconds(50));
      co_await t.async_wait(use_nothrow);
      continue;
    }
    if (stopped) co_return;
    if (connections >= options.max_connections) {
      spdlog::debug("metrics endpoint: {} connections open, refusing one more", connections.load());
      error_code ignored;
      socket.close(ignored);
      continue;
    }
    ++connections;
    auto c = std::make_shared<Connection>(std::move(socket));
    std::uint64_t id = 0;
    {
      std::lock_guard g(mutex);
      id = next_id++;
      live.emplace(id, c);
    }
    const auto executor = c->stream.get_executor();
    asio::co_spawn(executor, serve(self, std::move(c), id),
                   log_errors("metrics endpoint connection"));
  }
}

Task<void> Server::Impl::serve(std::shared_ptr<Impl> self, std::shared_ptr<Connection> c,
                               std::uint64_t id) {
  struct Release {
    Impl& impl;
    std::uint64_t id;
    ~Release() {
      std::lock_guard g(impl.mutex);
      impl.live.erase(id);
      --impl.connections;
    }
  } release{*self, id};

  // The buffer bound is the request bound: a request that does not fit is refused.
  beast::flat_buffer buffer(options.max_request_bytes);
  while (!stopped) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
        options.max_request_bytes, std::numeric_limits<std::uint32_t>::max())));
    parser.body_limit(options.max_request_bytes);
    // The deadline covers the whole request: an idle or trickling scraper is dropped.
    c->stream.expires_after(options.read_timeout);
    auto [ec, n] = co_await bhttp::async_read(c->stream, buffer, parser, use_nothrow);
    if (ec) {
      const bool refuse = too_large(ec);
      if (refuse || malformed(ec)) {
        auto res = refuse ? plain(413, 11, "request too large\n") : plain(400, 11, "bad request\n");
        res.keep_alive(false);
        res.prepare_payload();
        c->stream.expires_after(options.read_timeout);
        auto [wec, wn] = co_await bhttp::async_write(c->stream, res, use_nothrow);
        if (!wec) co_await linger(*c);
      }
      break;
    }
    const BeastRequest& req = parser.get();
    BeastResponse res = respond(req);
    const bool keep = res.keep_alive() && !stopped;
    res.keep_alive(keep);
    c->stream.expires_after(options.read_timeout);
    auto [wec, wn] = co_await bhttp::async_write(c->stream, res, use_nothrow);
    if (wec || !keep) break;
  }
  error_code ec;
  c->stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  c->stream.close();
}

// After refusing a request we have not read whole, read what the client still sends for a
// moment before closing: closing with unread data resets the connection, and the client might
// lose the answer.
Task<void> Server::Impl::linger(Connection& c) {
  error_code ec;
  c.stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  c.stream.expires_after(
      std::min<std::chrono::milliseconds>(options.read_timeout, std::chrono::milliseconds(1000)));
  std::array<char, 4096> scratch{};
  std::size_t drained = 0;
  while (drained < 16 * options.max_request_bytes) {
    auto [rec, n] = co_await c.stream.async_read_some(asio::buffer(scratch), use_nothrow);
    if (rec) break;
    drained += n;
  }
}

BeastResponse Server::Impl::respond(const BeastRequest& req) {
  std::string_view path = req.target();
  if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);

  Route route;
  {
    std::lock_guard g(mutex);
    if (auto it = routes.find(path); it != routes.end()) route = it->second;
  }
  const bool metrics = !route && path == "/metrics";
  const auto version = req.version();

  BeastResponse res;
  if (!route && !metrics) {
    res = plain(404, version, "not found\n");
  } else if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) {
    res = plain(405, version, "method not allowed\n");
    res.set(bhttp::field::allow, kAllow);
  } else {
    const std::string_view accept = req[bhttp::field::accept];
    try {
      Response answer;
      if (route) {
        answer = route(accept);
      } else {
        const auto format = stats::negotiate(accept);
        answer.content_type = stats::content_type(format);
        answer.body = registry ? registry->render(format) : stats::Registry{}.render(format);
      }
      res = BeastResponse{static_cast<bhttp::status>(answer.status), version};
      res.set(bhttp::field::content_type, answer.content_type);
      if (metrics) res.set(bhttp::field::vary, "Accept");
      res.body() = std::move(answer.body);
    } catch (const std::exception& e) {
      spdlog::error("metrics endpoint: {} failed: {}", path, e.what());
      res = plain(500, version, "internal error\n");
    }
  }
  res.set(bhttp::field::server, "pgdog/" PGDOG_VERSION);
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  if (req.method() == bhttp::verb::head) {
    // The length of the body a GET would get, without the body.
    const auto length = res.body().size();
    res.body().clear();
    res.content_length(length);
  }
  return res;
}

}  // namespace pgdog::http
