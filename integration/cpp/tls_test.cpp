// TLS: clients to pgdog (certificates made with the openssl CLI at test time), TLS 1.2
// minimum, tls_client_required, certificates rotated by RELOAD, the max_client_conn refusal
// after SSLRequest, and pgdog to PostgreSQL with tls_verify = verify_full.
#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "harness/harness.hpp"

namespace pgdog::it {
namespace {

using Clock = std::chrono::steady_clock;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// A CA and a server certificate signed by it (CN localhost, SAN IP:127.0.0.1 and
// DNS:localhost), written with the openssl CLI into dir.
struct Pki {
  std::string ca_crt;
  std::string server_crt;
  std::string server_key;
  std::string error;  // empty when everything was made
};

Pki make_pki(const TempDir& dir, const std::string& prefix) {
  Pki p;
  const std::string d = dir.path() + "/" + prefix;
  // Explicit configs: nothing depends on the system openssl.cnf.
  dir.write(prefix + "ca.cnf",
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = pgdog-it-ca-" + prefix +
                "\n[v3_ca]\nbasicConstraints = critical,CA:TRUE\n"
                "keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n");
  dir.write(prefix + "server.cnf",
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = localhost\n[v3_server]\n"
            "subjectAltName = IP:127.0.0.1,DNS:localhost\nbasicConstraints = CA:FALSE\n"
            "keyUsage = critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage = serverAuth\n");
  const std::string q = shell_quote(d);
  const std::string cmd =
      "set -e; export OPENSSL_CONF=/dev/null; cd " + shell_quote(dir.path()) +
      "; openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 2 "
      "-config " + q + "ca.cnf -extensions v3_ca -keyout " + q + "ca.key -out " + q + "ca.crt"
      "; openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -config " + q +
      "server.cnf -keyout " + q + "server.key -out " + q + "server.csr"
      "; openssl x509 -req -days 2 -in " + q + "server.csr -CA " + q + "ca.crt -CAkey " + q +
      "ca.key -set_serial 0x$(openssl rand -hex 8) -extfile " + q +
      "server.cnf -extensions v3_server -out " + q + "server.crt"
      "; openssl verify -CAfile " + q + "ca.crt " + q + "server.crt";
  auto r = run_command(cmd, 30s);
  if (r.exit_code != 0) p.error = "openssl failed: " + r.describe();
  p.ca_crt = d + "ca.crt";
  p.server_crt = d + "server.crt";
  p.server_key = d + "server.key";
  return p;
}

PgdogConfig client_tls_config(const Pki& pki) {
  return PgdogConfig()
      .set_string("tls_certificate", pki.server_crt)
      .set_string("tls_private_key", pki.server_key);
}

// One database "pgdog" on the primary, reached by host name `host` (and `port`).
std::string database_on(const std::string& host, int port) {
  return "\n[[databases]]\nname = \"pgdog\"\nhost = " + toml_string(host) +
         "\nport = " + std::to_string(port) + "\n";
}

std::string quote_conninfo(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// Whether the connection to pgdog is TLS, and with which protocol.
std::string tls_protocol(Conn& c) {
  if (!c.ok() || PQsslInUse(c.raw()) != 1) return "<no TLS>";
  const char* p = PQsslAttribute(c.raw(), "protocol");
  return p ? p : "<unknown>";
}

// The TLS state of the PostgreSQL backend serving this query through pgdog.
std::string server_side_ssl(Conn& c) {
  auto r = c.exec("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  return r.ok() ? r.at(0) : r.describe();
}

class TlsTest : public IntegrationTest {
 protected:
  // One CA and server certificate for the whole suite, made at test time.
  static void SetUpTestSuite() {
    dir_ = std::make_unique<TempDir>();
    pki_ = make_pki(*dir_, "");
  }
  static void TearDownTestSuite() { dir_.reset(); }
  void SetUp() override {
    IntegrationTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_EQ(pki_.error, "");
  }
  static inline std::unique_ptr<TempDir> dir_;
  static inline Pki pki_;
};

// --- clients to pgdog ------------------------------------------------------------------------

TEST_F(TlsTest, ClientsConnectWithRequireAndVerifyFull) {
  Pgdog pgdog(client_tls_config(pki_));
  ASSERT_TRUE(pgdog.started());

  auto require = Conn::connect(pgdog.conninfo() + " sslmode=require");
  ASSERT_TRUE(require.ok()) << require.connect_error().message;
  const std::string proto = tls_protocol(require);
  EXPECT_TRUE(proto == "TLSv1.2" || proto == "TLSv1.3") << proto;
  EXPECT_EQ(require.exec("SELECT 'over tls'").at(0), "over tls");

  const std::string verify = " sslmode=verify-full sslrootcert=" + quote_conninfo(pki_.ca_crt);
  auto by_name =
      Conn::connect(pgdog.conninfo() + " host=localhost hostaddr=127.0.0.1" + verify);
  ASSERT_TRUE(by_name.ok()) << by_name.connect_error().message;
  EXPECT_NE(tls_protocol(by_name), "<no TLS>");
  auto r = by_name.exec_params("SELECT $1::int + 1", {"1"});
  EXPECT_EQ(r.at(0), "2") << r.describe();

  // The certificate's IP SAN matches too.
  auto by_ip = Conn::connect(pgdog.conninfo() + verify);
  ASSERT_TRUE(by_ip.ok()) << by_ip.connect_error().message;

  // pgdog really presents the configured certificate: another CA does not verify it.
  auto other = make_pki(*dir_, "other_");
  ASSERT_EQ(other.error, "");
  auto wrong = Conn::connect(pgdog.conninfo() + " sslmode=verify-full sslrootcert=" +
                             quote_conninfo(other.ca_crt));
  EXPECT_FALSE(wrong.ok());
  EXPECT_NE(lower(wrong.connect_error().message).find("certificate"), std::string::npos)
      << wrong.connect_error().message;

  // Plaintext clients are still welcome when TLS is not required.
  auto plain = pgdog.connect();
  ASSERT_TRUE(plain.ok()) << plain.connect_error().message;
  EXPECT_EQ(tls_protocol(plain), "<no TLS>");

  // psql, as the issue asks.
  auto psql = run_command(
      "psql -X -At -c 'SELECT 42' " +
          shell_quote("host=localhost hostaddr=127.0.0.1 port=" + std::to_string(pgdog.port()) +
                      " user=pgdog password=pgdog dbname=pgdog sslmode=verify-full sslrootcert=" +
                      pki_.ca_crt),
      30s);
  EXPECT_EQ(psql.exit_code, 0) << psql.describe();
  EXPECT_EQ(psql.out, "42\n") << psql.describe();
}

TEST_F(TlsTest, Tls11IsRefused) {
  Pgdog pgdog(client_tls_config(pki_));
  ASSERT_TRUE(pgdog.started());
  // SECLEVEL=0 so that the client side is willing to speak TLS 1.1: a refusal is pgdog's.
  const std::string s_client = "openssl s_client -starttls postgres -connect 127.0.0.1:" +
                               std::to_string(pgdog.port()) + " -cipher 'DEFAULT:@SECLEVEL=0' ";
  auto ok12 = run_command(s_client + "-tls1_2", 30s);
  EXPECT_EQ(ok12.exit_code, 0) << "control: TLS 1.2 must work\n" << ok12.describe();
  EXPECT_NE(ok12.out.find("TLSv1.2"), std::string::npos) << ok12.describe();

  auto old = run_command(s_client + "-tls1_1", 30s);
  EXPECT_NE(old.exit_code, 0) << "TLS 1.1 handshake succeeded\n" << old.describe();
  // No cipher was agreed: the server answered with a protocol version alert.
  EXPECT_NE(old.out.find("Cipher is (NONE)"), std::string::npos) << old.describe();
  EXPECT_NE(old.err.find("alert protocol version"), std::string::npos) << old.describe();

  // libpq asking for at most TLS 1.1 is refused as well, and pgdog keeps serving.
  auto c = Conn::connect(pgdog.conninfo() +
                         " sslmode=require ssl_min_protocol_version=TLSv1"
                         " ssl_max_protocol_version=TLSv1.1");
  EXPECT_FALSE(c.ok()) << "connected with " << tls_protocol(c);
  auto fine = Conn::connect(pgdog.conninfo() + " sslmode=require");
  ASSERT_TRUE(fine.ok()) << fine.connect_error().message;
  EXPECT_EQ(fine.exec("SELECT 1").at(0), "1");
}

TEST_F(TlsTest, TlsClientRequiredRejectsPlaintext) {
  Pgdog pgdog(client_tls_config(pki_).set("tls_client_required", "true"));
  ASSERT_TRUE(pgdog.started());
  auto plain = pgdog.connect();
  ASSERT_FALSE(plain.ok()) << "a plaintext client got in";
  EXPECT_EQ(plain.connect_error().sqlstate, "28000") << plain.connect_error().message;
  EXPECT_NE(lower(plain.connect_error().message).find("tls"), std::string::npos)
      << plain.connect_error().message;

  auto tls = Conn::connect(pgdog.conninfo() + " sslmode=require");
  ASSERT_TRUE(tls.ok()) << tls.connect_error().message;
  EXPECT_NE(tls_protocol(tls), "<no TLS>");
  EXPECT_EQ(tls.exec("SELECT 'ok'").at(0), "ok");
  // sslmode=prefer upgrades, so it gets in too.
  auto prefer = Conn::connect(pgdog.conninfo() + " sslmode=prefer");
  ASSERT_TRUE(prefer.ok()) << prefer.connect_error().message;
  EXPECT_NE(tls_protocol(prefer), "<no TLS>");
}

TEST_F(TlsTest, IdleTlsClientIsToldOnShutdown) {
  Pgdog pgdog(client_tls_config(pki_));
  ASSERT_TRUE(pgdog.started());
  auto plain = pgdog.connect();
  auto tls = Conn::connect(pgdog.conninfo() + " sslmode=require");
  ASSERT_TRUE(plain.ok() && tls.ok());
  ASSERT_TRUE(plain.exec("SELECT 1").ok());
  ASSERT_TRUE(tls.exec("SELECT 1").ok());
  pgdog.signal(SIGTERM);
  EXPECT_EQ(error_sent_to_idle(plain, 3s), "57P01") << "plaintext client";
  EXPECT_EQ(error_sent_to_idle(tls, 3s), "57P01") << "TLS client";
  auto status = pgdog.wait_exit(5s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 0);
}

// Certificates rotated in place (same paths, new files) and RELOAD: a new connection gets the
// new certificate, one made before keeps its session. A reload whose certificate does not load
// is refused naming the key and the file, and the previous certificate stays in use.
TEST_F(TlsTest, CertificateRotatedByReloadServesNewConnections) {
  auto next = make_pki(*dir_, "rotated_");
  ASSERT_EQ(next.error, "");
  TempDir live;
  auto copy = [&](const std::string& from, const std::string& to) {
    auto r =
        run_command("cp " + shell_quote(from) + " " + shell_quote(live.path() + "/" + to), 10s);
    ASSERT_EQ(r.exit_code, 0) << r.describe();
  };
  ASSERT_NO_FATAL_FAILURE(copy(pki_.server_crt, "server.crt"));
  ASSERT_NO_FATAL_FAILURE(copy(pki_.server_key, "server.key"));
  auto cfg = PgdogConfig()
                 .set_string("tls_certificate", live.path() + "/server.crt")
                 .set_string("tls_private_key", live.path() + "/server.key");
  Pgdog pgdog(cfg);
  ASSERT_TRUE(pgdog.started());
  auto verified_by = [&](const std::string& ca) {
    return Conn::connect(pgdog.conninfo() +
                         " sslmode=verify-full sslrootcert=" + quote_conninfo(ca));
  };
  auto before = verified_by(pki_.ca_crt);
  ASSERT_TRUE(before.ok()) << before.connect_error().message;
  EXPECT_FALSE(verified_by(next.ca_crt).ok()) << "the new CA verified the old certificate";

  ASSERT_NO_FATAL_FAILURE(copy(next.server_crt, "server.crt"));
  ASSERT_NO_FATAL_FAILURE(copy(next.server_key, "server.key"));
  auto admin = pgdog.admin();
  ASSERT_TRUE(admin.ok()) << admin.connect_error().message;
  auto r = admin.exec("RELOAD");
  ASSERT_TRUE(r.ok()) << r.describe();
  auto after = verified_by(next.ca_crt);
  ASSERT_TRUE(after.ok()) << after.connect_error().message;
  EXPECT_EQ(after.exec("SELECT 'new certificate'").at(0), "new certificate");
  auto stale = verified_by(pki_.ca_crt);
  EXPECT_FALSE(stale.ok()) << "pgdog still presents the old certificate to new connections";
  EXPECT_NE(lower(stale.connect_error().message).find("certificate"), std::string::npos)
      << stale.connect_error().message;
  EXPECT_EQ(before.exec("SELECT 'old session'").at(0), "old session");

  // Files that do not load: refused, named, and nothing changes.
  const std::string missing = live.path() + "/missing.crt";
  cfg.set_string("tls_certificate", missing).set("default_pool_size", "3");
  pgdog.rewrite(cfg);
  r = admin.exec("RELOAD");
  ASSERT_FALSE(r.ok()) << "a reload with a missing certificate was accepted";
  EXPECT_NE(r.error->message.find("general.tls_certificate"), std::string::npos) << r.describe();
  EXPECT_NE(r.error->message.find(missing), std::string::npos) << r.describe();
  auto still = verified_by(next.ca_crt);
  EXPECT_TRUE(still.ok()) << still.connect_error().message;
  auto config = admin.exec("SHOW CONFIG");
  for (std::size_t i = 0; i < config.rows.size(); ++i) {
    if (config.at(i, 0) == "default_pool_size") {
      EXPECT_EQ(config.at(i, 1), "10");
    }
    if (config.at(i, 0) == "tls_certificate") {
      EXPECT_EQ(config.at(i, 1), live.path() + "/server.crt");
    }
  }
}

// Over max_client_conn, psql with its default sslmode=prefer (SSLRequest first) reads pgdog's
// reason, with TLS configured or not: the refusal comes after the SSLRequest was answered.
TEST_F(TlsTest, PsqlWithSslmodePreferSeesTooManyClientConnections) {
  for (bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "with TLS" : "without TLS");
    auto cfg = tls ? client_tls_config(pki_) : PgdogConfig();
    Pgdog pgdog(cfg.set("max_client_conn", "1"));
    ASSERT_TRUE(pgdog.started());
    // The one slot, once the harness's probe of the port has left it.
    std::optional<Conn> holder;
    ASSERT_TRUE(wait_until([&] { return (holder = pgdog.connect())->ok(); }, 5s))
        << holder->connect_error().message;
    auto r = run_command("psql -X -At -c 'SELECT 1' " +
                             shell_quote("host=127.0.0.1 port=" + std::to_string(pgdog.port()) +
                                         " user=pgdog password=pgdog dbname=pgdog "
                                         "sslmode=prefer connect_timeout=10"),
                         30s);
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_NE(r.err.find("too many client connections (max_client_conn = 1)"), std::string::npos)
        << r.describe();
    EXPECT_EQ(r.err.find("SSL exchange"), std::string::npos) << r.describe();
    EXPECT_EQ(holder->exec("SELECT 'still in'").at(0), "still in");
  }
}

// --- pgdog to PostgreSQL ---------------------------------------------------------------------

PgdogConfig server_tls_config(const std::string& verify, const std::string& ca,
                              const std::string& host, int port) {
  return PgdogConfig()
      .set_string("tls_verify", verify)
      .set_string("tls_server_ca_certificate", ca)
      .set("connect_timeout", "3000")
      .with_databases(database_on(host, port));
}

std::string pglocal_ca() {
  return env()->pglocal_dir + "/tls/ca.crt";
}

TEST_F(TlsTest, ServerVerifyFullByHostName) {
  Pgdog pgdog(server_tls_config("verify_full", pglocal_ca(), "localhost", e().primary_port));
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  EXPECT_EQ(server_side_ssl(c), "true") << "pgdog's server connection is not TLS";
  // Seen from the primary as well, for the backend serving this client.
  const std::string pid = c.exec("SELECT pg_backend_pid()::text").at(0);
  auto p = connect_primary();
  auto r = p.exec(
      "SELECT s.ssl::text, s.version, a.application_name FROM pg_stat_ssl s JOIN "
      "pg_stat_activity a USING (pid) WHERE pid = " + pid);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0, 0), "true") << r.describe();
  EXPECT_TRUE(r.at(0, 1) == "TLSv1.2" || r.at(0, 1) == "TLSv1.3") << r.describe();
  EXPECT_EQ(r.at(0, 2), "pgdog") << r.describe();
}

TEST_F(TlsTest, ServerTlsDisabledIsPlaintext) {
  // Control for the check above: the same query says false without TLS.
  Pgdog pgdog(PgdogConfig().set_string("tls_verify", "disabled"));
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  EXPECT_EQ(server_side_ssl(c), "false");
}

TEST_F(TlsTest, ServerVerifyFullByIpSan) {
  Pgdog pgdog(server_tls_config("verify_full", pglocal_ca(), "127.0.0.1", e().primary_port));
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  EXPECT_EQ(server_side_ssl(c), "true");
}

TEST_F(TlsTest, ServerVerifyFullWithWrongCaFails) {
  // pki_ is a fresh CA that never signed the primary's certificate.
  Pgdog pgdog(server_tls_config("verify_full", pki_.ca_crt, "localhost", e().primary_port));
  ASSERT_TRUE(pgdog.started());
  const auto start = Clock::now();
  auto c = pgdog.connect();
  ASSERT_FALSE(c.ok()) << "connected through a server certificate signed by another CA";
  const std::string msg = lower(c.connect_error().message);
  EXPECT_TRUE(msg.find("certificate") != std::string::npos || msg.find("tls") != std::string::npos)
      << c.connect_error().message;
  EXPECT_NE(c.connect_error().sqlstate, "") << c.connect_error().message;
  EXPECT_LT(Clock::now() - start, 5s);
  // verify_ca with the same wrong CA fails too.
  Pgdog ca_only(server_tls_config("verify_ca", pki_.ca_crt, "127.0.0.1", e().primary_port));
  ASSERT_TRUE(ca_only.started());
  auto c2 = ca_only.connect();
  EXPECT_FALSE(c2.ok()) << "verify_ca accepted a certificate from another CA";
}

// Forwards TCP connections from listen_ip:<port> to 127.0.0.1:target, so that pgdog reaches
// the primary under an address its certificate does not name.
class Forwarder {
 public:
  Forwarder(const std::string& listen_ip, int target) : target_(target) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, listen_ip.c_str(), &a.sin_addr);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        ::listen(fd_, 16) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("cannot listen on " + listen_ip);
    }
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~Forwarder() {
    stop_ = true;
    acceptor_.join();
    ::close(fd_);
    std::lock_guard g(mutex_);
    for (auto& t : pumps_) t.join();
  }
  int port() const { return port_; }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<std::uint16_t>(target_));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(client);
        ::close(server);
        continue;
      }
      std::lock_guard g(mutex_);
      pumps_.emplace_back([this, client, server] { pump(client, server); });
    }
  }
  void pump(int a, int b) {
    char buf[16384];
    while (!stop_) {
      pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (::poll(p, 2, 50) <= 0) continue;
      bool done = false;
      for (int i = 0; i < 2 && !done; ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = ::read(p[i].fd, buf, sizeof buf);
        if (n <= 0) {
          done = true;
          break;
        }
        const int to = i == 0 ? b : a;
        for (ssize_t off = 0; off < n;) {
          const ssize_t w = ::write(to, buf + off, static_cast<std::size_t>(n - off));
          if (w <= 0) {
            done = true;
            break;
          }
          off += w;
        }
      }
      if (done) break;
    }
    ::close(a);
    ::close(b);
  }

  int fd_ = -1;
  int port_ = 0;
  int target_;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<std::thread> pumps_;
};

TEST_F(TlsTest, ServerVerifyFullWithNameNotInCertificateFails) {
  // 127.0.0.2 is neither localhost nor 127.0.0.1: the primary's certificate does not name it.
  Forwarder fwd("127.0.0.2", e().primary_port);
  {
    // Control: the forwarder works and the certificate chain is fine (verify_ca ignores names).
    Pgdog ca_only(server_tls_config("verify_ca", pglocal_ca(), "127.0.0.2", fwd.port()));
    ASSERT_TRUE(ca_only.started());
    auto c = ca_only.connect();
    ASSERT_TRUE(c.ok()) << "verify_ca through the forwarder: " << c.connect_error().message;
    EXPECT_EQ(server_side_ssl(c), "true");
  }
  Pgdog pgdog(server_tls_config("verify_full", pglocal_ca(), "127.0.0.2", fwd.port()));
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_FALSE(c.ok()) << "verify_full accepted a certificate that does not name 127.0.0.2";
  const std::string msg = lower(c.connect_error().message);
  EXPECT_TRUE(msg.find("certificate") != std::string::npos || msg.find("tls") != std::string::npos)
      << c.connect_error().message;
}

}  // namespace
}  // namespace pgdog::it
