#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include "net/asio.hpp"
#include "net/socket_read.hpp"

namespace pgdog::net {

// A TCP or a Unix-domain socket: one type, so a session and a server connection have one code
// path for both (its reads and writes are the same system calls either way).
using Socket = asio::generic::stream_protocol::socket;

// "address:port" of the other end; "unix(<pid>)" on a Unix socket, as the kernel reports the peer.
std::string peer_address(Socket& socket);

// A connection to a client or a server: plain TCP, TLS after an upgrade, or a Unix socket.
class Stream {
 public:
  explicit Stream(Socket socket);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // A read with any completion token; with a plain callback it holds no coroutine frame,
  // which is how an idle client waits (see ClientSession::park). On a plain socket it tries at
  // once only when the socket may hold bytes (net/socket_read.hpp).
  template <class Token>
  auto async_read_some(std::span<char> buffer, Token&& token) {
    return asio::async_initiate<Token, void(error_code, std::size_t)>(
        [this](auto handler, std::span<char> into) {
          if (tls_) {
            tls_->async_read_some(asio::buffer(into.data(), into.size()), std::move(handler));
          } else {
            async_read_socket(socket_, reactor_, into, std::move(handler));
          }
        },
        token, buffer);
  }
  // Not a coroutine: it hands back the read's own awaitable, one frame fewer per read.
  Task<std::tuple<error_code, std::size_t>> read_some(std::span<char> buffer) {
    return async_read_some(buffer, use_nothrow);
  }
  Task<error_code> write(std::string_view data);
  // All of `data`, with any completion token (`void(error_code, std::size_t)`); with a plain
  // callback it holds no coroutine frame, over TLS too. `data` must outlive the write.
  template <class Token>
  auto async_write(std::string_view data, Token&& token) {
    auto b = asio::buffer(data.data(), data.size());
    if (tls_) return asio::async_write(*tls_, b, std::forward<Token>(token));
    return asio::async_write(socket_, b, std::forward<Token>(token));
  }
  // Writes what the socket takes right now without waiting (plain TCP only; 0 with TLS).
  // The fast path before write(): most answers fit, and then no coroutine is needed at all.
  std::size_t write_now_some(std::string_view data, error_code& ec);

  // Upgrades to TLS as the server side (clients that sent SSLRequest) or the client side
  // (connections to PostgreSQL). `host` is used for SNI and, when `verify_host`, for hostname
  // verification.
  Task<error_code> tls_accept(asio::ssl::context& context);
  Task<error_code> tls_connect(asio::ssl::context& context, const std::string& host,
                               bool verify_host);
  bool is_tls() const { return tls_ != nullptr; }
  // A Unix-domain socket: local to this host, never upgraded to TLS.
  bool is_local() const { return local_; }

  Socket& socket();
  Executor get_executor();
  void close();
  bool is_open();

  // Best-effort write without waiting (e.g. a Terminate message before closing).
  void write_now(std::string_view data);

 private:
  Socket socket_;
  std::unique_ptr<asio::ssl::stream<Socket>> tls_;
  ReactorCache reactor_;  // the plain socket's, for its reads
  bool local_ = false;
};

}  // namespace pgdog::net
