// Queries through pgdog: results, errors, both protocols, COPY, large rows, notices,
// LISTEN/NOTIFY and client startup parameters.
#include <arpa/inet.h>
#include <cstdlib>
#include <cstring>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "harness/harness.hpp"

namespace pgdog::it {
namespace {

// Sets an environment variable for one libpq connect (PGTZ, PGDATESTYLE go into the startup
// packet) and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// A client whose TimeZone and DateStyle come from its startup packet.
Conn connect_with(const Pgdog& pgdog, const std::string& timezone, const std::string& datestyle,
                  const std::string& extra) {
  ScopedEnv tz("PGTZ", timezone);
  ScopedEnv ds("PGDATESTYLE", datestyle);
  return Conn::connect(pgdog.conninfo() + " " + extra);
}

// Runs SQL straight on the primary, failing the test on an error.
void on_primary(const std::string& sql) {
  auto c = connect_primary();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  auto r = c.exec(sql);
  ASSERT_TRUE(r.ok()) << sql << ": " << r.describe();
}

// Speaks the wire protocol by hand, for what libpq will not send: a broken message.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }

  void send(const std::string& bytes) {
    (void)::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  void startup(const std::string& user, const std::string& database) {
    std::string body =
        be32(196608) + "user" + '\0' + user + '\0' + "database" + '\0' + database + '\0' + '\0';
    send(be32(static_cast<std::uint32_t>(body.size() + 4)) + body);
  }
  // The next message (type, body); nullopt at EOF or after 5 s.
  std::optional<std::pair<char, std::string>> next() {
    std::string header = read_exact(5);
    if (header.size() < 5) return std::nullopt;
    std::uint32_t len = 0;
    std::memcpy(&len, header.data() + 1, 4);
    len = ntohl(len);
    std::string body = read_exact(len - 4);
    if (body.size() < len - 4) return std::nullopt;
    return std::make_pair(header[0], body);
  }
  // Reads until ReadyForQuery; false if it never came.
  bool until_ready() {
    while (auto m = next()) {
      if (m->first == 'Z') return true;
    }
    return false;
  }
  // True when the peer closed the connection (within 5 s).
  bool closed_by_peer() {
    while (auto m = next()) {
    }
    char c;
    return ::recv(fd_, &c, 1, MSG_DONTWAIT) == 0;
  }

  static std::string be32(std::uint32_t v) {
    v = htonl(v);
    return std::string(reinterpret_cast<const char*>(&v), 4);
  }
  // The SQLSTATE in an ErrorResponse body.
  static std::string sqlstate(const std::string& body) {
    for (std::size_t at = 0; at < body.size() && body[at] != '\0';) {
      const auto end = body.find('\0', at + 1);
      if (body[at] == 'C') return body.substr(at + 1, end - at - 1);
      at = end + 1;
    }
    return "";
  }

 private:
  std::string read_exact(std::size_t n) {
    std::string out;
    while (out.size() < n) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) break;
      char buf[4096];
      const ssize_t got = ::recv(fd_, buf, std::min(sizeof buf, n - out.size()), 0);
      if (got <= 0) break;
      out.append(buf, static_cast<std::size_t>(got));
    }
    return out;
  }

  int fd_ = -1;
  bool connected_ = false;
};

class ProxyTest : public IntegrationTest {};

TEST_F(ProxyTest, SimpleQueryReturnsRowsAndTypes) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;

  auto r =
      c.exec("SELECT 1 AS one, 'pgdog'::text AS name, NULL::int AS nothing, 2.5::numeric AS num");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.columns, (std::vector<std::string>{"one", "name", "nothing", "num"}));
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows[0][0], "1");
  EXPECT_EQ(r.rows[0][1], "pgdog");
  EXPECT_EQ(r.rows[0][2], std::nullopt);
  EXPECT_EQ(r.rows[0][3], "2.5");
  EXPECT_EQ(r.tag, "SELECT 1");

  r = c.exec("SELECT g, g * g FROM generate_series(1, 1000) AS g");
  ASSERT_TRUE(r.ok()) << r.describe();
  ASSERT_EQ(r.rows.size(), 1000u);
  EXPECT_EQ(r.at(999, 0), "1000");
  EXPECT_EQ(r.at(999, 1), "1000000");

  // The server really is the primary.
  r = c.exec("SELECT current_database(), current_user, inet_server_port()");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0, 0), "pgdog");
  EXPECT_EQ(r.at(0, 1), "pgdog");
  EXPECT_EQ(r.at(0, 2), std::to_string(e().primary_port));

  r = c.exec("");
  EXPECT_TRUE(r.ok()) << r.describe();
}

TEST_F(ProxyTest, ErrorsKeepSqlstateAndSessionStaysUsable) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;

  auto r = c.exec("SELECT * FROM it_no_such_table");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->sqlstate, "42P01");
  EXPECT_EQ(r.error->severity, "ERROR");
  EXPECT_NE(r.error->message.find("it_no_such_table"), std::string::npos) << r.error->message;

  r = c.exec("SELEKT 1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->sqlstate, "42601");

  r = c.exec("SELECT 1 / 0");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->sqlstate, "22012");

  r = c.exec("SELECT 2");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0), "2");

  // An error inside a transaction aborts it on the server the client keeps until ROLLBACK.
  ASSERT_TRUE(c.exec("BEGIN").ok());
  r = c.exec("SELECT 1 / 0");
  EXPECT_EQ(r.error ? r.error->sqlstate : "", "22012");
  r = c.exec("SELECT 1");
  EXPECT_EQ(r.error ? r.error->sqlstate : "", "25P02") << r.describe();
  r = c.exec("ROLLBACK");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.tag, "ROLLBACK");
  r = c.exec("SELECT 3");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0), "3");
  EXPECT_EQ(PQtransactionStatus(c.raw()), PQTRANS_IDLE);
}

TEST_F(ProxyTest, MultiStatementSimpleQuery) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;

  auto all = c.exec_all("SELECT 1 AS a; SELECT 'two' AS b, 3 AS c; SELECT NULL AS d");
  ASSERT_EQ(all.size(), 3u);
  for (const auto& r : all)
    ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(all[0].at(0), "1");
  EXPECT_EQ(all[1].columns, (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(all[1].at(0, 0), "two");
  EXPECT_EQ(all[1].at(0, 1), "3");
  EXPECT_EQ(all[2].rows.at(0).at(0), std::nullopt);

  // The server stops at the first error; the rest of the string is not run.
  all = c.exec_all("SELECT 1; SELECT 1 / 0; SELECT 3");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_TRUE(all[0].ok());
  ASSERT_FALSE(all[1].ok());
  EXPECT_EQ(all[1].error->sqlstate, "22012");

  // A whole transaction in one message.
  all = c.exec_all("BEGIN; SELECT 41 + 1; COMMIT");
  ASSERT_EQ(all.size(), 3u);
  for (const auto& r : all)
    EXPECT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(all[1].at(0), "42");
  EXPECT_EQ(PQtransactionStatus(c.raw()), PQTRANS_IDLE);

  auto r = c.exec("SELECT 'still here'");
  EXPECT_EQ(r.at(0), "still here");
}

TEST_F(ProxyTest, ExtendedProtocolUnnamedStatementsInTransactionMode) {
  // One server for two clients: their unnamed statements interleave on the same connection.
  Pgdog pgdog(PgdogConfig().with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto a = pgdog.connect();
  auto b = pgdog.connect();
  ASSERT_TRUE(a.ok()) << a.connect_error().message;
  ASSERT_TRUE(b.ok()) << b.connect_error().message;

  for (int i = 0; i < 100; ++i) {
    auto& c = i % 2 == 0 ? a : b;
    auto r = c.exec_params("SELECT $1::int + $2::int, $3::text, $4::text IS NULL",
                           {std::to_string(i), "1000", "row " + std::to_string(i), std::nullopt});
    ASSERT_TRUE(r.ok()) << "iteration " << i << ": " << r.describe();
    EXPECT_EQ(r.at(0, 0), std::to_string(i + 1000));
    EXPECT_EQ(r.at(0, 1), "row " + std::to_string(i));
    EXPECT_EQ(r.at(0, 2), "t");
  }

  auto r = a.exec_params("SELECT 1 / $1::int", {"0"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->sqlstate, "22012");
  r = a.exec_params("SELECT * FROM it_missing_relation WHERE x = $1", {"1"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->sqlstate, "42P01");
  r = a.exec_params("SELECT $1::text || '!'", {"fine"});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0), "fine!");

  // A transaction across several extended-protocol round trips keeps its server.
  ASSERT_TRUE(a.exec_params("BEGIN", {}).ok());
  auto pid1 = a.exec_params("SELECT pg_backend_pid()", {});
  auto other = b.exec_params("SELECT 1", {}, 2s);  // must wait: a holds the only server
  EXPECT_FALSE(other.ok()) << "b ran while a's transaction held the only server";
  auto pid2 = a.exec_params("SELECT pg_backend_pid()", {});
  EXPECT_EQ(pid1.at(0), pid2.at(0));
  ASSERT_TRUE(a.exec_params("COMMIT", {}).ok());
}

TEST_F(ProxyTest, NamedPreparedStatementsInSessionMode) {
  Pgdog pgdog(PgdogConfig().set_string("pooler_mode", "session").with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  {
    auto c = pgdog.connect();
    ASSERT_TRUE(c.ok()) << c.connect_error().message;
    auto r = c.prepare("it_double", "SELECT $1::int * 2");
    ASSERT_TRUE(r.ok()) << r.describe();
    r = c.prepare("it_concat", "SELECT $1::text || $2::text");
    ASSERT_TRUE(r.ok()) << r.describe();
    for (int i = 0; i < 50; ++i) {
      r = c.exec_prepared("it_double", {std::to_string(i)});
      ASSERT_TRUE(r.ok()) << r.describe();
      EXPECT_EQ(r.at(0), std::to_string(i * 2));
      r = c.exec_prepared("it_concat", {"a", std::to_string(i)});
      EXPECT_EQ(r.at(0), "a" + std::to_string(i));
    }
    r = c.prepare("it_double", "SELECT 1");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error->sqlstate, "42P05");  // duplicate_prepared_statement
    r = c.exec_prepared("it_unknown", {});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error->sqlstate, "26000");
    // Simple-protocol PREPARE/EXECUTE share the same namespace.
    r = c.exec("EXECUTE it_double(21)");
    EXPECT_EQ(r.at(0), "42") << r.describe();
  }
  // Same server (pool_size 1), new client: the previous session's statements are gone.
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  auto r = c.prepare("it_double", "SELECT $1::int * 3");
  ASSERT_TRUE(r.ok()) << "statement leaked from the previous session: " << r.describe();
  r = c.exec_prepared("it_double", {"5"});
  EXPECT_EQ(r.at(0), "15") << r.describe();
}

TEST_F(ProxyTest, PsqlQueriesAndErrors) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  const std::string psql = "PGPASSWORD=pgdog psql -X -h 127.0.0.1 -p " +
                           std::to_string(pgdog.port()) + " -U pgdog -d pgdog ";

  auto r = run_command(psql + "-At -c 'SELECT 40 + 2'", 30s);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, "42\n");

  r = run_command(psql + "-At -v ON_ERROR_STOP=1 -c 'SELECT 1' -c 'SELECT 2'", 30s);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, "1\n2\n");

  r = run_command(psql + "-v VERBOSITY=verbose -c 'SELECT * FROM it_psql_missing'", 30s);
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("42P01"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("it_psql_missing"), std::string::npos) << r.describe();

  // A script that goes on after an error: the session stays usable.
  r = run_command("printf 'SELECT 1/0;\\nSELECT 7;\\n' | " + psql + "-At -f -", 30s);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, "7\n");
  EXPECT_NE(r.err.find("division by zero"), std::string::npos) << r.describe();
}

TEST_F(ProxyTest, CopyFromStdinThenCheckedOnPrimary) {
  on_primary(
      "DROP TABLE IF EXISTS it_copy_in; CREATE TABLE it_copy_in (id int PRIMARY KEY, name text, "
      "note text)");
  if (HasFatalFailure()) return;
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;

  constexpr int kRows = 20000;
  std::string data;
  for (int i = 1; i <= kRows; ++i) {
    data += std::to_string(i) + "\tname " + std::to_string(i) + "\t";
    data +=
        i % 7 == 0 ? "\\N" : "tab\\there, unicode \xc3\xa9\xe2\x82\xac " + std::to_string(i * 31);
    data += "\n";
  }
  // Chunks that do not line up with rows, as a client streaming a file sends them.
  std::vector<std::string> chunks;
  for (std::size_t at = 0; at < data.size(); at += 8191)
    chunks.push_back(data.substr(at, 8191));

  auto r = c.copy_in("COPY it_copy_in FROM STDIN", chunks);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.tag, "COPY " + std::to_string(kRows));

  auto p = connect_primary();
  ASSERT_TRUE(p.ok());
  std::string back;
  r = p.copy_out("COPY (SELECT * FROM it_copy_in ORDER BY id) TO STDOUT", back);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(back.size(), data.size());
  EXPECT_TRUE(back == data) << "rows on the primary differ from the rows sent";

  // A COPY that fails on bad data: an error with its SQLSTATE, nothing inserted, session usable.
  r = c.copy_in("COPY it_copy_in FROM STDIN", {"999999\tok\tok\n", "not-a-number\tx\ty\n"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->sqlstate, "22P02") << r.describe();
  r = c.exec("SELECT count(*) FROM it_copy_in");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0), std::to_string(kRows));
  EXPECT_EQ(PQtransactionStatus(c.raw()), PQTRANS_IDLE);
  on_primary("DROP TABLE it_copy_in");
}

TEST_F(ProxyTest, CopyToStdoutMatchesPrimary) {
  on_primary(
      "DROP TABLE IF EXISTS it_copy_out; CREATE TABLE it_copy_out AS "
      "SELECT g AS id, md5(g::text) AS hash, CASE WHEN g % 5 = 0 THEN NULL ELSE 'v' || g END AS v "
      "FROM generate_series(1, 30000) AS g");
  if (HasFatalFailure()) return;
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  auto p = connect_primary();
  ASSERT_TRUE(p.ok());

  for (const std::string sql :
       {"COPY (SELECT * FROM it_copy_out ORDER BY id) TO STDOUT",
        "COPY (SELECT * FROM it_copy_out ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)",
        "COPY (SELECT * FROM it_copy_out ORDER BY id) TO STDOUT WITH (FORMAT binary)"}) {
    std::string via_pgdog;
    std::string direct;
    auto r = c.copy_out(sql, via_pgdog);
    ASSERT_TRUE(r.ok()) << sql << ": " << r.describe();
    EXPECT_EQ(r.tag, "COPY 30000");
    ASSERT_TRUE(p.copy_out(sql, direct).ok());
    EXPECT_EQ(via_pgdog.size(), direct.size()) << sql;
    EXPECT_TRUE(via_pgdog == direct) << sql << ": content differs";
  }
  auto r = c.exec("SELECT 'after copy'");
  EXPECT_EQ(r.at(0), "after copy");
  on_primary("DROP TABLE it_copy_out");
}

TEST_F(ProxyTest, LargeRowsRoundTrip) {
  on_primary("DROP TABLE IF EXISTS it_large; CREATE TABLE it_large (id int, body text)");
  if (HasFatalFailure()) return;
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;

  constexpr std::size_t kSize = 5 * 1024 * 1024;
  std::string body;
  body.reserve(kSize);
  for (std::size_t i = 0; body.size() < kSize; ++i)
    body += "line " + std::to_string(i) + ";";
  body.resize(kSize);

  // Server to client: a 5 MiB DataRow.
  auto r = c.exec("SELECT repeat('ab', 2621440) AS big, 7 AS after");
  ASSERT_TRUE(r.ok()) << r.describe();
  ASSERT_EQ(r.at(0, 0).size(), kSize);
  EXPECT_EQ(r.at(0, 1), "7");

  // Client to server: a 5 MiB Bind (extended) and a 5 MiB Query (simple).
  r = c.exec_params("INSERT INTO it_large VALUES (1, $1)", {body});
  ASSERT_TRUE(r.ok()) << r.describe();
  r = c.exec("INSERT INTO it_large VALUES (2, '" + body + "')");
  ASSERT_TRUE(r.ok()) << r.describe();

  r = c.exec("SELECT id, body FROM it_large ORDER BY id");
  ASSERT_TRUE(r.ok()) << r.describe();
  ASSERT_EQ(r.rows.size(), 2u);
  for (const auto& row : r.rows) {
    ASSERT_TRUE(row[1].has_value());
    EXPECT_EQ(row[1]->size(), kSize);
    EXPECT_TRUE(*row[1] == body) << "row " << row[0].value_or("?") << " differs";
  }
  r = c.exec_params("SELECT length(body), md5(body) = md5($1) FROM it_large WHERE id = $2",
                    {body, "1"});
  EXPECT_EQ(r.at(0, 0), std::to_string(kSize));
  EXPECT_EQ(r.at(0, 1), "t");
  on_primary("DROP TABLE it_large");
}

TEST_F(ProxyTest, NoticesReachTheClient) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  c.take_notices();

  auto r = c.exec("DO $$ BEGIN RAISE NOTICE 'it notice %', 42; RAISE WARNING 'it warning'; END $$");
  ASSERT_TRUE(r.ok()) << r.describe();
  auto notices = c.take_notices();
  ASSERT_EQ(notices.size(), 2u);
  EXPECT_EQ(notices[0].severity, "NOTICE");
  EXPECT_EQ(notices[0].message, "it notice 42");
  EXPECT_EQ(notices[0].sqlstate, "00000");
  EXPECT_EQ(notices[1].severity, "WARNING");
  EXPECT_EQ(notices[1].sqlstate, "01000");

  // Through the extended protocol too.
  r = c.exec_params("DROP TABLE IF EXISTS it_never_existed", {});
  ASSERT_TRUE(r.ok()) << r.describe();
  notices = c.take_notices();
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_NE(notices[0].message.find("it_never_existed"), std::string::npos);
}

TEST_F(ProxyTest, ListenNotifyInSessionMode) {
  Pgdog pgdog(PgdogConfig().set_string("pooler_mode", "session"));
  ASSERT_TRUE(pgdog.started());
  auto listener = pgdog.connect();
  auto sender = pgdog.connect();
  ASSERT_TRUE(listener.ok()) << listener.connect_error().message;
  ASSERT_TRUE(sender.ok()) << sender.connect_error().message;

  ASSERT_TRUE(listener.exec("LISTEN it_channel").ok());
  ASSERT_TRUE(sender.exec("NOTIFY it_channel, 'hello'").ok());
  // Delivered while the listener is idle: pgdog must forward it without a query to ride on.
  auto n = listener.wait_notification(5s);
  ASSERT_TRUE(n.has_value()) << "no notification within 5 s";
  EXPECT_EQ(n->channel, "it_channel");
  EXPECT_EQ(n->payload, "hello");

  ASSERT_TRUE(sender.exec("SELECT pg_notify('it_channel', 'second')").ok());
  n = listener.wait_notification(5s);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n->payload, "second");

  // From outside pgdog too.
  auto direct = connect_primary();
  ASSERT_TRUE(direct.exec("NOTIFY it_channel, 'direct'").ok());
  n = listener.wait_notification(5s);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n->payload, "direct");

  ASSERT_TRUE(listener.exec("UNLISTEN it_channel").ok());
  ASSERT_TRUE(sender.exec("NOTIFY it_channel, 'unheard'").ok());
  EXPECT_FALSE(listener.wait_notification(500ms).has_value());
}

TEST_F(ProxyTest, StartupParametersReachTheClient) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = connect_with(pgdog, "Asia/Tokyo", "SQL, DMY",
                        "application_name=it_params client_encoding=LATIN1");
  ASSERT_TRUE(c.ok()) << c.connect_error().message;

  EXPECT_EQ(c.parameter("application_name"), "it_params");
  EXPECT_EQ(c.parameter("TimeZone"), "Asia/Tokyo");
  EXPECT_EQ(c.parameter("DateStyle"), "SQL, DMY");
  EXPECT_EQ(c.parameter("client_encoding"), "LATIN1");
  EXPECT_FALSE(c.parameter("server_version").empty());
  EXPECT_FALSE(c.parameter("standard_conforming_strings").empty());

  for (int i = 0; i < 3; ++i) {
    auto r = c.exec(
        "SELECT current_setting('application_name'), current_setting('TimeZone'), "
        "current_setting('DateStyle'), current_setting('client_encoding'), "
        "'2024-03-04'::date::text");
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.at(0, 0), "it_params");
    EXPECT_EQ(r.at(0, 1), "Asia/Tokyo");
    EXPECT_EQ(r.at(0, 2), "SQL, DMY");
    EXPECT_EQ(r.at(0, 3), "LATIN1");
    EXPECT_EQ(r.at(0, 4), "04/03/2024");
  }
}

TEST_F(ProxyTest, ClientParametersHoldOnASharedServer) {
  Pgdog pgdog(PgdogConfig().with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto a = connect_with(pgdog, "Asia/Tokyo", "ISO, DMY", "application_name=it_a");
  auto b = connect_with(pgdog, "America/Sao_Paulo", "ISO, MDY", "application_name=it_b");
  ASSERT_TRUE(a.ok()) << a.connect_error().message;
  ASSERT_TRUE(b.ok()) << b.connect_error().message;

  auto check = [&pgdog](Conn& c, const std::string& tz, const std::string& ds,
                        const std::string& app, int i) {
    auto r = c.exec(
        "SELECT current_setting('TimeZone'), current_setting('DateStyle'), "
        "current_setting('application_name'), pg_backend_pid()");
    EXPECT_TRUE(r.ok()) << r.describe() << pgdog.admin_snapshot();
    EXPECT_EQ(r.at(0, 0), tz) << "iteration " << i;
    EXPECT_EQ(r.at(0, 1), ds) << "iteration " << i;
    EXPECT_EQ(r.at(0, 2), app) << "iteration " << i;
    return r.at(0, 3);
  };

  std::string pid_a;
  std::string pid_b;
  for (int i = 0; i < 40; ++i) {
    pid_a = check(a, "Asia/Tokyo", "ISO, DMY", "it_a", i);
    pid_b = check(b, "America/Sao_Paulo", "ISO, MDY", "it_b", i);
    auto r = a.exec_params("SELECT current_setting('TimeZone')", {});
    EXPECT_EQ(r.at(0), "Asia/Tokyo")
        << "extended protocol, iteration " << i << ": " << r.describe();
    if (HasFailure()) break;
  }
  EXPECT_EQ(pid_a, pid_b) << "pool_size 1 should have given both clients the same server";

  // A SET made by one client follows that client and does not leak to the other.
  auto set = a.exec("SET TimeZone = 'Europe/Paris'");
  ASSERT_TRUE(set.ok()) << set.describe();
  EXPECT_EQ(a.parameter("TimeZone"), "Europe/Paris");
  for (int i = 0; i < 10; ++i) {
    check(b, "America/Sao_Paulo", "ISO, MDY", "it_b", i);
    check(a, "Europe/Paris", "ISO, DMY", "it_a", i);
  }
}

TEST_F(ProxyTest, OptionsStartupParameterIsHonouredOrRefused) {
  // `options` carries GUCs (PGOPTIONS, options='-c ...'); dropping it silently would run the
  // client with settings it did not ask for.
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = Conn::connect(pgdog.conninfo() +
                         " options='-c TimeZone=Asia/Kolkata -c statement_timeout=4321'");
  if (!c.ok()) {
    EXPECT_FALSE(c.connect_error().sqlstate.empty()) << c.connect_error().message;
    return;
  }
  for (int i = 0; i < 3; ++i) {
    auto r = c.exec("SELECT current_setting('TimeZone'), current_setting('statement_timeout')");
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.at(0, 0), "Asia/Kolkata") << "options were accepted but not applied";
    EXPECT_EQ(r.at(0, 1), "4321ms") << "options were accepted but not applied";
    if (HasFailure()) break;
  }
}

TEST_F(ProxyTest, SslRequestIsAnsweredNoWithoutTlsConfigured) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto prefer = Conn::connect(pgdog.conninfo() + " sslmode=prefer");
  ASSERT_TRUE(prefer.ok()) << prefer.connect_error().message;
  EXPECT_EQ(PQsslInUse(prefer.raw()), 0);
  EXPECT_EQ(prefer.exec("SELECT 1").at(0), "1");
  auto require = Conn::connect(pgdog.conninfo() + " sslmode=require");
  EXPECT_FALSE(require.ok());
}

TEST_F(ProxyTest, CancelRequestCancelsTheRunningQuery) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  PGcancel* cancel = PQgetCancel(c.raw());
  ASSERT_NE(cancel, nullptr);
  std::string cancel_error;
  std::thread canceller([&] {
    // Cancel only once the query runs on the server; earlier there is nothing to cancel.
    auto p = connect_primary();
    for (int i = 0; i < 200; ++i) {
      auto r = p.exec(
          "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT "
          "pg_sleep(20)'");
      if (r.at(0) == "1") break;
      std::this_thread::sleep_for(50ms);
    }
    char err[256] = {0};
    if (!PQcancel(cancel, err, sizeof err)) cancel_error = err;
  });
  const auto start = std::chrono::steady_clock::now();
  auto r = c.exec("SELECT pg_sleep(20)", 30s);
  const auto took = std::chrono::steady_clock::now() - start;
  canceller.join();
  PQfreeCancel(cancel);
  EXPECT_EQ(cancel_error, "");
  ASSERT_FALSE(r.ok()) << "the query was not cancelled";
  EXPECT_EQ(r.error->sqlstate, "57014") << r.describe();
  EXPECT_LT(took, 10s);
  EXPECT_EQ(c.exec("SELECT 'after cancel'").at(0), "after cancel");
}

TEST_F(ProxyTest, ProtocolViolationGets08P01AndOnlyThatClientIsClosed) {
  // Trust, so the raw client needs no password exchange; pool_size 1, so a bystander shares
  // the server with the offenders.
  Pgdog pgdog(PgdogConfig().set_string("auth_type", "trust").with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto bystander = pgdog.connect();
  ASSERT_TRUE(bystander.ok()) << bystander.connect_error().message;
  ASSERT_TRUE(bystander.exec("SELECT 1").ok());

  struct Case {
    const char* what;
    std::string bytes;
  };
  const std::vector<Case> cases = {
      {"unknown message type", std::string("!") + RawClient::be32(4)},
      {"length below 4", std::string("Q") + RawClient::be32(2)},
      {"length above max_message_size", std::string("Q") + RawClient::be32(0x7ffffff0)},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    RawClient raw(pgdog.port());
    ASSERT_TRUE(raw.connected());
    raw.startup("pgdog", "pgdog");
    ASSERT_TRUE(raw.until_ready()) << "no ReadyForQuery after startup";
    // One real query first, so the offender holds the server when it misbehaves.
    std::string q = "SELECT 1";
    q.push_back('\0');
    raw.send("Q" + RawClient::be32(static_cast<std::uint32_t>(q.size() + 4)) + q);
    ASSERT_TRUE(raw.until_ready());
    raw.send(c.bytes);
    std::optional<std::pair<char, std::string>> error;
    while (auto m = raw.next()) {
      if (m->first == 'E') {
        error = m;
        break;
      }
    }
    ASSERT_TRUE(error.has_value()) << "no ErrorResponse";
    EXPECT_EQ(RawClient::sqlstate(error->second), "08P01");
    EXPECT_TRUE(raw.closed_by_peer());

    auto r = bystander.exec("SELECT 'unaffected'", 10s);
    EXPECT_EQ(r.at(0), "unaffected") << r.describe();
  }
}

}  // namespace
}  // namespace pgdog::it
