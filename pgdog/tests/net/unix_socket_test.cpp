// The Unix-socket rules: where a socket file is, which hosts are directories, the default
// directory, and the listener's file (mode, a live one kept, a stale one replaced, removed when
// closed); net::connect reaching it.

#include "net/unix_socket.hpp"

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "config/config.hpp"

namespace pgdog::net {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/pgdog-unix-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

bool is_socket(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

// A socket file whose process is gone: bound, then closed without removing the file.
void leave_stale_socket(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  path.copy(a.sun_path, sizeof a.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << path;
  ::close(fd);
}

std::optional<std::string> connect_now(const std::string& host, std::uint16_t port) {
  asio::io_context io;
  std::optional<std::string> result = "not run";
  asio::co_spawn(
      io,
      [&]() -> Task<void> {
        Socket socket(io);
        result = co_await connect(socket, host, port);
      },
      asio::detached);
  io.run();
  return result;
}

TEST(UnixSocketPath, IsTheDirectoryAndThePortAsPostgresNamesIt) {
  EXPECT_EQ(socket_path("/var/run/postgresql", 5432), "/var/run/postgresql/.s.PGSQL.5432");
  EXPECT_EQ(socket_path("/tmp/", 6432), "/tmp/.s.PGSQL.6432");
  EXPECT_EQ(socket_path("/tmp//", 1), "/tmp/.s.PGSQL.1");
  EXPECT_EQ(socket_path("/", 6432), "/.s.PGSQL.6432");
}

TEST(UnixSocketPath, AHostStartingWithASlashIsADirectory) {
  EXPECT_TRUE(is_socket_dir("/var/run/postgresql"));
  EXPECT_TRUE(is_socket_dir("/"));
  EXPECT_FALSE(is_socket_dir("localhost"));
  EXPECT_FALSE(is_socket_dir("127.0.0.1"));
  EXPECT_FALSE(is_socket_dir("::1"));
  EXPECT_FALSE(is_socket_dir(""));
  EXPECT_FALSE(is_socket_dir("tmp/pg"));
  EXPECT_EQ(describe_server("/tmp", 5432), "/tmp/.s.PGSQL.5432");
  EXPECT_EQ(describe_server("db.example", 5432), "db.example:5432");
}

TEST(UnixSocketPath, DefaultDirectoryOnlyWhenItIsAWritableDirectory) {
  TempDir dir;
  EXPECT_EQ(config::default_unix_socket_dir(dir.path()), dir.path());
  EXPECT_EQ(config::default_unix_socket_dir(dir.path() + "/missing"), "");
  const std::string file = dir.path() + "/file";
  std::ofstream(file) << "x";
  EXPECT_EQ(config::default_unix_socket_dir(file), "");
  if (::geteuid() != 0) {  // root may write anywhere
    ::chmod(dir.path().c_str(), 0555);
    EXPECT_EQ(config::default_unix_socket_dir(dir.path()), "");
    ::chmod(dir.path().c_str(), 0700);
  }
  EXPECT_EQ(config::kDefaultUnixSocketDir, "/var/run/postgresql");
}

TEST(UnixListener, CreatesTheSocketWithMode0777AndRemovesItWhenClosed) {
  asio::io_context io;
  TempDir dir;
  const std::string path = dir.path() + "/.s.PGSQL.6432";
  {
    UnixListener listener(io.get_executor());
    ASSERT_EQ(listener.open(dir.path(), 6432), std::nullopt);
    EXPECT_EQ(listener.path(), path);
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0777u);
    listener.close();
    EXPECT_FALSE(fs::exists(path));
  }
  {
    UnixListener listener(io.get_executor());
    ASSERT_EQ(listener.open(dir.path(), 6432), std::nullopt);
  }
  EXPECT_FALSE(fs::exists(path)) << "the destructor closes too";
}

TEST(UnixListener, NeverTakesTheSocketOfALiveListener) {
  asio::io_context io;
  TempDir dir;
  UnixListener first(io.get_executor());
  ASSERT_EQ(first.open(dir.path(), 7000), std::nullopt);
  UnixListener second(io.get_executor());
  const auto failed = second.open(dir.path(), 7000);
  ASSERT_TRUE(failed);
  EXPECT_EQ(*failed, "cannot listen on " + dir.path() +
                         "/.s.PGSQL.7000: another process is listening on it (is pgdog already "
                         "running?)");
  second.close();
  EXPECT_TRUE(is_socket(first.path())) << "the failed listener must not remove the live file";
  EXPECT_EQ(connect_now(dir.path(), 7000), std::nullopt) << "the first still accepts";
}

TEST(UnixListener, ReplacesAStaleSocketFile) {
  asio::io_context io;
  TempDir dir;
  const std::string path = socket_path(dir.path(), 7001);
  leave_stale_socket(path);
  ASSERT_TRUE(is_socket(path));
  ASSERT_TRUE(connect_now(dir.path(), 7001)) << "nobody accepts on a stale file";
  UnixListener listener(io.get_executor());
  ASSERT_EQ(listener.open(dir.path(), 7001), std::nullopt);
  EXPECT_EQ(connect_now(dir.path(), 7001), std::nullopt);
}

TEST(UnixListener, FailsNamingThePathAndTheReason) {
  asio::io_context io;
  TempDir dir;
  UnixListener listener(io.get_executor());
  auto failed = listener.open(dir.path() + "/missing", 6432);
  ASSERT_TRUE(failed);
  EXPECT_EQ(*failed,
            "cannot listen on " + dir.path() + "/missing/.s.PGSQL.6432: No such file or directory");

  std::ofstream(socket_path(dir.path(), 6433)) << "not a socket";
  failed = listener.open(dir.path(), 6433);
  ASSERT_TRUE(failed);
  EXPECT_EQ(*failed, "cannot listen on " + dir.path() +
                         "/.s.PGSQL.6433: the file exists and is not a socket");
  EXPECT_TRUE(fs::is_regular_file(socket_path(dir.path(), 6433))) << "someone's file is kept";

  const std::string long_dir = "/" + std::string(kMaxSocketPath, 'd');
  failed = listener.open(long_dir, 6432);
  ASSERT_TRUE(failed);
  EXPECT_NE(failed->find("the path is longer than 107 bytes"), std::string::npos) << *failed;
}

TEST(UnixConnect, NamesTheSocketWhenNothingListens) {
  TempDir dir;
  EXPECT_EQ(connect_now(dir.path(), 5432), "could not connect to server " + dir.path() +
                                               "/.s.PGSQL.5432: No such file or directory");
}

}  // namespace
}  // namespace pgdog::net
