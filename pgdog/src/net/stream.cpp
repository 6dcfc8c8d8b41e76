#include "net/stream.hpp"

#include <cstring>
#include <sys/socket.h>

#include <boost/asio/read.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/write.hpp>
#include <openssl/ssl.h>

namespace pgdog::net {

namespace {

bool unix_domain(const Socket& s) {
  error_code ec;
  const auto endpoint = s.local_endpoint(ec);
  return !ec && endpoint.protocol().family() == AF_UNIX;
}

}  // namespace

std::string peer_address(Socket& socket) {
  error_code ec;
  const auto endpoint = socket.remote_endpoint(ec);
  if (ec) return "unknown";
  if (endpoint.protocol().family() == AF_UNIX) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
      return "unix";
    return "unix(" + std::to_string(cred.pid) + ")";
  }
  tcp::endpoint ip;
  if (endpoint.size() > ip.capacity()) return "unknown";
  std::memcpy(ip.data(), endpoint.data(), endpoint.size());
  ip.resize(endpoint.size());
  return ip.address().to_string() + ":" + std::to_string(ip.port());
}

Stream::Stream(Socket socket) : socket_(std::move(socket)), local_(unix_domain(socket_)) {
  error_code ec;
  if (!local_) socket_.set_option(tcp::no_delay(true), ec);
  // Once, here: each call is an ioctl. Synchronous writes then return would_block instead of
  // blocking the thread.
  socket_.non_blocking(true, ec);
}

Stream::~Stream() = default;

Socket& Stream::socket() {
  return tls_ ? tls_->next_layer().socket() : socket_;
}

Executor Stream::get_executor() {
  return socket().get_executor();
}

bool Stream::is_open() {
  return socket().is_open();
}

void Stream::close() {
  error_code ec;
  auto& s = socket();
  s.shutdown(Socket::shutdown_both, ec);
  s.close(ec);
}

Task<error_code> Stream::write(std::string_view data) {
  auto b = asio::buffer(data.data(), data.size());
  if (tls_) {
    auto [ec, n] = co_await asio::async_write(*tls_, b, use_nothrow);
    co_return ec;
  }
  // Most writes fit in the socket buffer: a direct non-blocking send avoids a trip through the
  // scheduler; only the remainder, if any, waits for the socket to drain.
  error_code ec;
  std::size_t n = socket_.write_some(b, ec);
  if (!ec && n == data.size()) co_return error_code{};
  if (ec && ec != asio::error::would_block) co_return ec;
  if (ec) n = 0;
  auto [ec2, m] = co_await asio::async_write(socket_, asio::buffer(data.substr(n)), use_nothrow);
  co_return ec2;
}

std::size_t Stream::write_now_some(std::string_view data, error_code& ec) {
  ec = {};
  if (tls_ || data.empty()) return 0;
  const std::size_t n = socket_.write_some(asio::buffer(data.data(), data.size()), ec);
  if (ec == asio::error::would_block) ec = {};
  return ec ? 0 : n;
}

void Stream::write_now(std::string_view data) {
  error_code ec;
  if (tls_) {
    // Best effort through the TLS engine; the socket never blocks (non-blocking mode).
    if (tls_->next_layer().socket().is_open())
      tls_->write_some(asio::buffer(data.data(), data.size()), ec);
    return;
  }
  if (!socket_.is_open()) return;
  socket_.write_some(asio::buffer(data.data(), data.size()), ec);
}

Task<error_code> Stream::tls_accept(asio::ssl::context& context) {
  tls_ = std::make_unique<asio::ssl::stream<TlsSocket>>(TlsSocket(std::move(socket_), reactor_),
                                                        context);
  auto [ec] = co_await tls_->async_handshake(asio::ssl::stream_base::server, use_nothrow);
  co_return ec;
}

Task<error_code> Stream::tls_connect(asio::ssl::context& context, const std::string& host,
                                     bool verify_host) {
  tls_ = std::make_unique<asio::ssl::stream<TlsSocket>>(TlsSocket(std::move(socket_), reactor_),
                                                        context);
  // SNI only makes sense for names, not IP literals.
  error_code addr_ec;
  asio::ip::make_address(host, addr_ec);
  if (addr_ec) {
    // SSL_set_tlsext_host_name is a macro with a C cast; this is what it expands to.
    SSL_ctrl(tls_->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(host.c_str()));
  }
  if (verify_host) tls_->set_verify_callback(asio::ssl::host_name_verification(host));
  auto [ec] = co_await tls_->async_handshake(asio::ssl::stream_base::client, use_nothrow);
  co_return ec;
}

}  // namespace pgdog::net
