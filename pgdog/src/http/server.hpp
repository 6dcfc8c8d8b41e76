#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "net/asio.hpp"
#include "stats/registry.hpp"

namespace pgdog::http {

struct Response {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

struct Options {
  std::string host = "0.0.0.0";
  std::uint16_t port = 9090;  // 0 picks a free port (tests)
  std::size_t max_request_bytes = std::size_t{16} * 1024;
  std::chrono::milliseconds read_timeout{10'000};  // slow or idle scrapers are dropped
  std::size_t max_connections = 256;
};

// HTTP/1.1 on the proxy's io_context (Boost.Beast): GET /metrics from the registry, plus any
// routes added (the JSON and HTML status pages). 404 for unknown paths, 405 for other methods,
// keep-alive, bounded requests, timeouts. One coroutine per connection, each on its own strand.
// Thread-safe; connections keep the server's state alive, so it may be destroyed while the
// io_context still holds them.
class Server {
 public:
  // A route gets the request's Accept header and answers.
  using Route = std::function<Response(std::string_view accept)>;

  Server(Executor io, Options options, std::shared_ptr<stats::Registry> registry);
  ~Server();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Answers GET and HEAD on `path` (without the query string); replaces a route of that path,
  // /metrics included.
  void add_route(std::string path, Route route);
  // Binds and starts accepting; throws std::system_error when the address cannot be bound.
  void start();
  // Stops accepting and closes every connection, scrapes in progress included.
  void stop();
  // The bound port once started (the chosen one when options.port was 0).
  std::uint16_t port() const;
  std::size_t connections() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace pgdog::http
