// Unix-domain sockets at both ends: clients (libpq and psql) reaching pgdog through its socket
// (login, admin console, no TLS there, SHOW CLIENTS naming the peer), pgdog reaching PostgreSQL
// through the cluster's own socket directory (pool, cancel, mirror), and the socket file's life:
// mode 0777, a live one kept, a stale one replaced, removed at shutdown, a startup error naming
// the key and the path. PostgreSQL itself tells which transport a session came in on:
// inet_server_addr() is NULL over a Unix socket.
#include <arpa/inet.h>
#include <filesystem>
#include <future>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness/harness.hpp"

namespace pgdog::it {
namespace {

namespace fs = std::filesystem;

class UnixSocketTest : public IntegrationTest {
 protected:
  static std::string primary_dir() { return e().pglocal_dir + "/primary"; }
  static std::string mirror_dir() { return e().pglocal_dir + "/mirror"; }
  // The default database "pgdog" on the primary, reached through its socket directory.
  static std::string primary_over_socket(const std::string& name = "pgdog",
                                         const std::string& extra = "") {
    return "\n[[databases]]\nname = " + toml_string(name) +
           "\nhost = " + toml_string(primary_dir()) +
           "\nport = " + std::to_string(e().primary_port) + "\ndatabase_name = \"pgdog\"\n" +
           extra + "\n";
  }
};

std::string socket_file(const std::string& dir, int port) {
  return dir + "/.s.PGSQL." + std::to_string(port);
}

bool is_socket(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

// What the server says about the transport of the session that runs the query.
std::string transport(Conn& c) {
  auto r = c.exec("SELECT CASE WHEN inet_server_addr() IS NULL THEN 'unix' ELSE 'tcp' END");
  return r.ok() ? r.at(0) : r.describe();
}

TEST_F(UnixSocketTest, LibpqAndPsqlLogInThroughPgdogsSocket) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  const std::string path = socket_file(pgdog.dir(), pgdog.port());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0777u);

  auto c = Conn::connect(pgdog.unix_conninfo());
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  EXPECT_EQ(c.exec("SELECT 40 + 2").at(0), "42");
  // The primary is reached over TCP here (the harness' database): only the client side changed.
  EXPECT_EQ(transport(c), "tcp");

  // auth_type applies on the socket as on TCP (scram by default).
  auto wrong = Conn::connect(pgdog.unix_conninfo("pgdog", std::string("wrong")));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.connect_error().sqlstate, "28P01") << wrong.connect_error().message;

  auto r = run_command("PGPASSWORD=pgdog psql -X -At -h " + shell_quote(pgdog.dir()) + " -p " +
                           std::to_string(pgdog.port()) + " -U pgdog -d pgdog -c 'SELECT 7 * 6'",
                       30s);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, "42\n") << r.describe();
}

// An SSLRequest written by hand over pgdog's socket (libpq never sends one on a Unix socket):
// the answer byte, or what went wrong.
std::string ssl_request_answer(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  path.copy(a.sun_path, sizeof a.sun_path - 1);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) ::close(fd);
    return "cannot connect";
  }
  const std::uint32_t words[2] = {htonl(8), htonl(80877103)};
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char answer = 0;
  const bool ok = ::write(fd, words, sizeof words) == static_cast<ssize_t>(sizeof words) &&
                  ::read(fd, &answer, 1) == 1;
  ::close(fd);
  return ok ? std::string(1, answer) : "no answer";
}

TEST_F(UnixSocketTest, NoTlsOnTheSocketEvenWhenPgdogHasACertificate) {
  const std::string tls = e().pglocal_dir + "/tls/";
  Pgdog pgdog(PgdogConfig()
                  .set_string("tls_certificate", tls + "server.crt")
                  .set_string("tls_private_key", tls + "server.key")
                  .set("tls_client_required", "true"));
  ASSERT_TRUE(pgdog.started());
  EXPECT_EQ(ssl_request_answer(socket_file(pgdog.dir(), pgdog.port())), "N");
  // A login in the clear on the socket, which tls_client_required allows: it never leaves the
  // host (libpq itself never asks for TLS there, whatever sslmode says).
  auto plain = Conn::connect(pgdog.unix_conninfo() + " sslmode=prefer");
  ASSERT_TRUE(plain.ok()) << plain.connect_error().message;
  EXPECT_EQ(PQsslInUse(plain.raw()), 0);
  EXPECT_EQ(plain.exec("SELECT 1").at(0), "1");
  // Over TCP the same pgdog offers TLS and refuses a client without it.
  auto tcp_tls = Conn::connect(pgdog.conninfo() + " sslmode=require");
  ASSERT_TRUE(tcp_tls.ok()) << tcp_tls.connect_error().message;
  EXPECT_EQ(PQsslInUse(tcp_tls.raw()), 1);
  auto tcp_plain = pgdog.connect();
  ASSERT_FALSE(tcp_plain.ok());
  EXPECT_EQ(tcp_plain.connect_error().sqlstate, "28000") << tcp_plain.connect_error().message;
}

TEST_F(UnixSocketTest, AdminConsoleOnTheSocketShowsTheDirectoryAndThePeer) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = Conn::connect(pgdog.unix_conninfo());
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  auto admin = Conn::connect(pgdog.unix_conninfo("admin", std::string("admin_secret"), "admin"));
  ASSERT_TRUE(admin.ok()) << admin.connect_error().message;
  auto config = admin.exec("SHOW CONFIG");
  ASSERT_TRUE(config.ok()) << config.describe();
  std::string shown = "<missing>";
  for (std::size_t i = 0; i < config.rows.size(); ++i) {
    if (config.at(i, 0) == "unix_socket_dir") shown = config.at(i, 1);
  }
  EXPECT_EQ(shown, pgdog.dir());
  // Both of this process' connections came in on the socket: the kernel names this pid.
  const std::string peer = "unix(" + std::to_string(::getpid()) + ")";
  EXPECT_EQ(admin_rows(admin, "SHOW CLIENTS", "addr", peer), 2) << pgdog.admin_snapshot();
}

TEST_F(UnixSocketTest, PgdogReachesPostgresThroughItsSocketDirectory) {
  ASSERT_TRUE(recreate_database("unix_pool").empty());
  Pgdog pgdog(PgdogConfig().with_databases(primary_over_socket("pgdog", "pool_size = 2")));
  ASSERT_TRUE(pgdog.started());
  std::vector<Conn> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(Conn::connect(i % 2 ? pgdog.unix_conninfo() : pgdog.conninfo()));
    ASSERT_TRUE(clients.back().ok()) << clients.back().connect_error().message;
  }
  for (int round = 0; round < 3; ++round) {
    for (auto& c : clients) {
      EXPECT_EQ(transport(c), "unix");
      ASSERT_TRUE(c.exec("BEGIN").ok());
      EXPECT_EQ(c.exec("SELECT current_database()").at(0), "pgdog");
      ASSERT_TRUE(c.exec("COMMIT").ok());
    }
  }
  auto admin = pgdog.admin();
  ASSERT_TRUE(admin.ok());
  auto pools = admin.exec("SHOW SERVERS");
  ASSERT_TRUE(pools.ok()) << pools.describe();
  EXPECT_GE(pools.rows.size(), 1u);
  EXPECT_LE(pools.rows.size(), 2u) << "pool_size 2 over the socket: " << pgdog.admin_snapshot();
}

TEST_F(UnixSocketTest, ServerOverTheSocketIgnoresTlsVerify) {
  // verify_full would refuse a server without TLS; over a Unix socket there is none to ask for.
  Pgdog pgdog(PgdogConfig()
                  .set_string("tls_verify", "verify_full")
                  .set_string("tls_server_ca_certificate", e().pglocal_dir + "/tls/ca.crt")
                  .with_databases(primary_over_socket()));
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  EXPECT_EQ(transport(c), "unix");
}

TEST_F(UnixSocketTest, CancelGoesThroughBothSockets) {
  Pgdog pgdog(PgdogConfig().with_databases(primary_over_socket("pgdog", "pool_size = 2")));
  ASSERT_TRUE(pgdog.started());
  auto c = Conn::connect(pgdog.unix_conninfo());
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  ASSERT_EQ(transport(c), "unix");
  PGcancel* cancel = PQgetCancel(c.raw());
  ASSERT_NE(cancel, nullptr);
  const std::string query = "SELECT pg_sleep(30), 'cancel through both unix sockets'";
  auto running = std::async(std::launch::async, [&] { return c.exec(query, 15s); });
  ASSERT_TRUE(wait_running_on_primary(query)) << "the query never ran on the primary";
  char err[256] = {0};
  // libpq sends the CancelRequest to the socket the connection uses: pgdog's.
  const int sent = PQcancel(cancel, err, sizeof err);
  PQfreeCancel(cancel);
  ASSERT_EQ(sent, 1) << err;
  auto r = running.get();
  ASSERT_FALSE(r.ok()) << "pg_sleep(30) was not cancelled";
  EXPECT_EQ(r.error->sqlstate, "57014") << r.describe();
  EXPECT_EQ(c.exec("SELECT 'still usable'").at(0), "still usable");
}

TEST_F(UnixSocketTest, MirrorDestinationOverTheSocket) {
  const std::string table = "unix_mirror_" + std::to_string(::getpid());
  auto primary = connect_primary();
  auto mirror = Conn::connect(conninfo(e().mirror_port, kUser, std::string(kPassword), kDatabase));
  ASSERT_TRUE(primary.ok() && mirror.ok());
  for (Conn* c : {&primary, &mirror}) {
    ASSERT_TRUE(c->exec("DROP TABLE IF EXISTS " + table).ok());
    ASSERT_TRUE(c->exec("CREATE TABLE " + table + " (id int)").ok());
  }
  const std::string databases =
      primary_over_socket() +
      "\n[[databases]]\nname = \"pgdog_mirror\"\nhost = " + toml_string(mirror_dir()) +
      "\nport = " + std::to_string(e().mirror_port) + "\ndatabase_name = \"pgdog\"\n";
  Pgdog pgdog(PgdogConfig().with_databases(databases).with_extra(
      "\n[[mirroring]]\nsource_db = \"pgdog\"\ndestination_db = \"pgdog_mirror\"\n"));
  ASSERT_TRUE(pgdog.started());
  auto c = Conn::connect(pgdog.unix_conninfo());
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(c.exec("INSERT INTO " + table + " VALUES (" + std::to_string(i) + ")").ok());
  }
  const std::string sum = "SELECT count(*) || ':' || sum(id) FROM " + table;
  EXPECT_EQ(primary.exec(sum).at(0), "5:15");
  std::string seen;
  EXPECT_TRUE(wait_until([&] { return (seen = mirror.exec(sum).at(0)) == "5:15"; }, 10s))
      << "the mirror has " << seen << "\n"
      << pgdog.log();
  for (Conn* conn : {&primary, &mirror})
    conn->exec("DROP TABLE IF EXISTS " + table);
}

TEST_F(UnixSocketTest, SocketFileRemovedAtShutdownAndAStaleOneReplaced) {
  TempDir dir;
  const int port = free_port();
  const std::string path = socket_file(dir.path(), port);
  {
    Pgdog pgdog(
        PgdogConfig().set("port", std::to_string(port)).set_string("unix_socket_dir", dir.path()));
    ASSERT_TRUE(pgdog.started());
    ASSERT_TRUE(is_socket(path));
    pgdog.stop();
    EXPECT_FALSE(fs::exists(path)) << "SIGTERM left the socket file behind";
  }
  {
    Pgdog pgdog(
        PgdogConfig().set("port", std::to_string(port)).set_string("unix_socket_dir", dir.path()));
    ASSERT_TRUE(pgdog.started());
    ASSERT_TRUE(wait_until([&] { return is_socket(path); }, 5s));
    pgdog.signal(SIGKILL);
    ASSERT_TRUE(pgdog.wait_exit(5s));
    ASSERT_TRUE(is_socket(path)) << "a killed pgdog cannot remove its file";
  }
  Pgdog again(
      PgdogConfig().set("port", std::to_string(port)).set_string("unix_socket_dir", dir.path()));
  ASSERT_TRUE(again.started());
  auto c = Conn::connect(again.unix_conninfo());
  ASSERT_TRUE(c.ok()) << "the stale file was not replaced: " << c.connect_error().message;
  EXPECT_EQ(c.exec("SELECT 1").at(0), "1");
}

TEST_F(UnixSocketTest, ALiveListenersSocketIsNeverTaken) {
  TempDir dir;
  const int port = free_port();
  Pgdog first(
      PgdogConfig().set("port", std::to_string(port)).set_string("unix_socket_dir", dir.path()));
  ASSERT_TRUE(first.started());
  // Another address, the same port: the TCP bind succeeds, the socket name is the same.
  Pgdog second(PgdogConfig()
                   .set("port", std::to_string(port))
                   .set_string("host", "127.0.0.2")
                   .set_string("unix_socket_dir", dir.path()),
               false);
  const auto status = second.wait_exit(10s);
  ASSERT_TRUE(status) << "the second pgdog kept running";
  EXPECT_EQ(*status, 1);
  EXPECT_NE(second.log().find("general.unix_socket_dir: cannot listen on " +
                              socket_file(dir.path(), port) + ": another process is listening"),
            std::string::npos)
      << second.log();
  auto c = Conn::connect(first.unix_conninfo());
  ASSERT_TRUE(c.ok()) << "the first pgdog lost its socket: " << c.connect_error().message;
  EXPECT_EQ(c.exec("SELECT 1").at(0), "1");
}

TEST_F(UnixSocketTest, ADirectoryThatCannotHoldTheSocketFailsNamingTheKey) {
  TempDir dir;
  const std::string missing = dir.path() + "/no/such/dir";
  Pgdog pgdog(PgdogConfig().set_string("unix_socket_dir", missing), false);
  const auto status = pgdog.wait_exit(10s);
  ASSERT_TRUE(status) << "pgdog started with an unusable unix_socket_dir";
  EXPECT_EQ(*status, 1);
  const std::string expected =
      pgdog.config_path() + ": general.unix_socket_dir: cannot listen on " + missing +
      "/.s.PGSQL." + std::to_string(pgdog.port()) + ": No such file or directory";
  EXPECT_NE(pgdog.log().find(expected), std::string::npos) << pgdog.log();

  Pgdog relative(PgdogConfig().set_string("unix_socket_dir", "run/pgdog"), false);
  ASSERT_TRUE(relative.wait_exit(10s));
  EXPECT_NE(
      relative.log().find("general.unix_socket_dir: unix_socket_dir must be an absolute path"),
      std::string::npos)
      << relative.log();
}

TEST_F(UnixSocketTest, EmptyTurnsItOffAndLeftOutUsesTheDefaultDirectory) {
  Pgdog off(PgdogConfig().set_string("unix_socket_dir", ""));
  ASSERT_TRUE(off.started());
  EXPECT_FALSE(fs::exists(socket_file(off.dir(), off.port())));
  EXPECT_FALSE(fs::exists(socket_file("/var/run/postgresql", off.port())));

  const std::string fallback = "/var/run/postgresql";
  struct stat st {};
  const bool usable = ::stat(fallback.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
                      ::access(fallback.c_str(), W_OK | X_OK) == 0;
  Pgdog defaulted(PgdogConfig().set("unix_socket_dir", ""));
  ASSERT_TRUE(defaulted.started());
  const std::string path = socket_file(fallback, defaulted.port());
  EXPECT_EQ(is_socket(path), usable) << path;
  if (usable) {
    auto c = Conn::connect(defaulted.conninfo() + " host=" + fallback);
    ASSERT_TRUE(c.ok()) << c.connect_error().message;
    defaulted.stop();
    EXPECT_FALSE(fs::exists(path));
  }
}

}  // namespace
}  // namespace pgdog::it
