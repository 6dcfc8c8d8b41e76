#include "net/unix_socket.hpp"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>

namespace pgdog::net {

namespace {

using local = asio::local::stream_protocol;
using GenericEndpoint = asio::generic::stream_protocol::endpoint;

std::string errno_text(int e) {
  return std::strerror(e);
}

// Whether a process accepts on the socket file at `path`: a plain connect, as a client would.
bool someone_listens(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

Task<error_code> connect_tcp(Socket& socket, const std::string& host, std::uint16_t port,
                             bool& resolved) {
  resolved = true;
  error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  if (!ec) {
    auto [cec] =
        co_await socket.async_connect(GenericEndpoint(tcp::endpoint(ip, port)), use_nothrow);
    co_return cec;
  }
  tcp::resolver resolver(socket.get_executor());
  auto [rec, endpoints] = co_await resolver.async_resolve(host, std::to_string(port), use_nothrow);
  if (rec) {
    resolved = false;
    co_return rec;
  }
  ec = asio::error::host_not_found;
  for (const auto& entry : endpoints) {
    error_code ignored;
    socket.close(ignored);
    std::tie(ec) = co_await socket.async_connect(GenericEndpoint(entry.endpoint()), use_nothrow);
    if (!ec) break;
  }
  co_return ec;
}

}  // namespace

std::string socket_path(std::string_view dir, std::uint16_t port) {
  while (dir.size() > 1 && dir.ends_with('/'))
    dir.remove_suffix(1);
  std::string path(dir);
  if (!path.ends_with('/')) path += '/';
  return path + ".s.PGSQL." + std::to_string(port);
}

bool is_socket_dir(std::string_view host) {
  return host.starts_with('/');
}

std::string describe_server(std::string_view host, std::uint16_t port) {
  if (is_socket_dir(host)) return socket_path(host, port);
  return std::string(host) + ":" + std::to_string(port);
}

Task<std::optional<std::string>> connect(Socket& socket, const std::string& host,
                                         std::uint16_t port) {
  const std::string server = describe_server(host, port);
  error_code ec;
  if (is_socket_dir(host)) {
    if (server.size() > kMaxSocketPath) {
      co_return "could not connect to server " + server + ": the path is longer than " +
          std::to_string(kMaxSocketPath) + " bytes";
    }
    std::tie(ec) =
        co_await socket.async_connect(GenericEndpoint(local::endpoint(server)), use_nothrow);
  } else {
    bool resolved = true;
    ec = co_await connect_tcp(socket, host, port, resolved);
    if (!resolved) co_return "could not resolve server host \"" + host + "\": " + ec.message();
  }
  if (ec) co_return "could not connect to server " + server + ": " + ec.message();
  co_return std::nullopt;
}

UnixListener::UnixListener(const Executor& executor) : acceptor_(executor) {}

UnixListener::~UnixListener() {
  close();
}

std::optional<std::string> UnixListener::clear_stale() {
  struct stat st {};
  if (::lstat(path_.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::nullopt;
    return errno_text(errno);
  }
  if (!S_ISSOCK(st.st_mode)) return "the file exists and is not a socket";
  if (someone_listens(path_))
    return "another process is listening on it (is pgdog already running?)";
  // Left behind by a process that died: nobody accepts on it any more.
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT) return errno_text(errno);
  return std::nullopt;
}

std::optional<std::string> UnixListener::open(std::string_view dir, std::uint16_t port) {
  path_ = socket_path(dir, port);
  auto failed = [this](const std::string& why) {
    error_code ignored;
    acceptor_.close(ignored);
    return std::optional<std::string>("cannot listen on " + path_ + ": " + why);
  };
  if (path_.size() > kMaxSocketPath) {
    return failed("the path is longer than " + std::to_string(kMaxSocketPath) + " bytes");
  }
  if (auto why = clear_stale()) return failed(*why);
  const GenericEndpoint endpoint{local::endpoint(path_)};
  error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (ec) return failed(ec.message());
  struct stat st {};
  // Anyone on the host may connect, as to PostgreSQL's own socket: the login decides who gets in.
  if (::chmod(path_.c_str(), 0777) != 0 || ::stat(path_.c_str(), &st) != 0) {
    const auto why = errno_text(errno);
    ::unlink(path_.c_str());
    return failed(why);
  }
  device_ = st.st_dev;
  inode_ = st.st_ino;
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    ::unlink(path_.c_str());
    return failed(ec.message());
  }
  return std::nullopt;
}

void UnixListener::close() {
  if (!acceptor_.is_open()) return;
  error_code ignored;
  acceptor_.close(ignored);
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0 && st.st_dev == device_ && st.st_ino == inode_) {
    ::unlink(path_.c_str());
  }
}

}  // namespace pgdog::net
