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

// The socket under a TLS stream. Its reads go through async_read_socket as a plain socket's do,
// so the TLS engine reads the socket when it may hold bytes instead of trying at once after every
// short read (each try that finds nothing is a failed recvfrom); writes are the socket's.
class TlsSocket {
 public:
  using executor_type = Socket::executor_type;
  using lowest_layer_type = Socket::lowest_layer_type;

  // `reactor` is the cache of the Stream that owns this, which outlives it.
  TlsSocket(Socket socket, ReactorCache& reactor)
      : socket_(std::move(socket)), reactor_(&reactor) {}

  executor_type get_executor() { return socket_.get_executor(); }
  lowest_layer_type& lowest_layer() { return socket_.lowest_layer(); }
  const lowest_layer_type& lowest_layer() const { return socket_.lowest_layer(); }
  Socket& socket() { return socket_; }

  // The engine reads into one buffer at a time.
  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(error_code, std::size_t)>(
        [this](auto handler, const asio::mutable_buffer& into) {
          async_read_socket(socket_, *reactor_,
                            std::span<char>(static_cast<char*>(into.data()), into.size()),
                            std::move(handler));
        },
        token, asio::mutable_buffer(*asio::buffer_sequence_begin(buffers)));
  }
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return socket_.async_write_some(buffers, std::forward<Token>(token));
  }
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, error_code& ec) {
    return socket_.read_some(buffers, ec);
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers, error_code& ec) {
    return socket_.write_some(buffers, ec);
  }

 private:
  Socket socket_;
  ReactorCache* reactor_;
};

// A connection to a client or a server: plain TCP, TLS after an upgrade, or a Unix socket.
class Stream {
 public:
  explicit Stream(Socket socket);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // A read with any completion token; with a plain callback it holds no coroutine frame,
  // which is how an idle client waits (see ClientSession::park). It tries the socket at once
  // only when the socket may hold bytes (net/socket_read.hpp), under TLS too (TlsSocket).
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
  std::unique_ptr<asio::ssl::stream<TlsSocket>> tls_;
  ReactorCache reactor_;  // the socket's, for its reads (under TLS too)
  bool local_ = false;
};

}  // namespace pgdog::net
