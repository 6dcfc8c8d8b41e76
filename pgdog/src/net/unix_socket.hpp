#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>

#include <boost/asio/basic_socket_acceptor.hpp>

#include "net/asio.hpp"
#include "net/stream.hpp"

namespace pgdog::net {

// sun_path holds 107 bytes and the terminating NUL.
inline constexpr std::size_t kMaxSocketPath = 107;

// Where PostgreSQL, libpq and PgBouncer put a server's socket: `.s.PGSQL.<port>` in a directory.
std::string socket_path(std::string_view dir, std::uint16_t port);
// A host that names a socket directory rather than a machine (libpq's rule: it starts with '/').
bool is_socket_dir(std::string_view host);
// "host:port", or the socket's path when host is a directory: what log lines and errors name.
std::string describe_server(std::string_view host, std::uint16_t port);

// Connects `socket` to host:port, over the Unix socket when host is a directory, else TCP (an IP
// literal directly, a name through the resolver). nullopt once connected, else why not, naming
// the server.
Task<std::optional<std::string>> connect(Socket& socket, const std::string& host,
                                         std::uint16_t port);

// A listening Unix-domain socket, mode 0777 as PostgreSQL's. A file left by a process that died
// is replaced; one that a live process still accepts on is not. The file goes when it closes.
class UnixListener {
 public:
  using Acceptor = asio::basic_socket_acceptor<asio::generic::stream_protocol>;

  explicit UnixListener(const Executor& executor);
  ~UnixListener();
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  // Listens on socket_path(dir, port); nullopt, or why not, naming the path.
  std::optional<std::string> open(std::string_view dir, std::uint16_t port);
  // Stops accepting and removes the file, unless another process has put its own there since.
  void close();

  Acceptor& acceptor() { return acceptor_; }
  const std::string& path() const { return path_; }
  bool is_open() const { return acceptor_.is_open(); }

 private:
  std::optional<std::string> clear_stale();

  Acceptor acceptor_;
  std::string path_;
  dev_t device_ = 0;
  ino_t inode_ = 0;
};

}  // namespace pgdog::net
