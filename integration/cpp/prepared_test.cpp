// Named prepared statements through transaction pooling (prepared_statements = "extended", the
// default): pgbench -M prepared with more clients than servers, clients sharing a statement
// name, statements following a client to another server, Close / DEALLOCATE / DISCARD ALL, and
// the documented pass-through with prepared_statements = "disabled".
#include <arpa/inet.h>
#include <cstring>
#include <netinet/in.h>
#include <regex>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness/harness.hpp"

namespace pgdog::it {
namespace {

using Clock = std::chrono::steady_clock;

// pgbench's tables for this file live in their own database.
constexpr const char* kBenchDb = "pgdog_it_prepared_bench";

long long match_number(const std::string& text, const std::string& pattern) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex(pattern))) return -1;
  return std::stoll(m[1]);
}

class PreparedTest : public IntegrationTest {
 protected:
  static std::string pgbench(int port, const std::string& args) {
    return "PGPASSWORD=pgdog pgbench -h 127.0.0.1 -p " + std::to_string(port) + " -U pgdog " +
           args + " " + kBenchDb;
  }

  // Tables from `pgbench -i` straight on the primary, unless an earlier test made them.
  void ensure_bench_tables() {
    auto c = connect_primary(kBenchDb);
    if (c.ok() && c.exec("SELECT count(*) FROM pgbench_accounts").at(0) == "100000") return;
    ASSERT_EQ(recreate_database(kBenchDb), "");
    auto r = run_command(pgbench(e().primary_port, "-i -q -s 1"), 120s);
    ASSERT_EQ(r.exit_code, 0) << r.describe();
  }

  PgdogConfig bench_config(int pool_size) {
    return PgdogConfig().with_databases(
        database_toml(kBenchDb, e().primary_port, "", "pool_size = " + std::to_string(pool_size)))
        .with_users(user_toml("pgdog", kBenchDb, std::string("pgdog")));
  }

  // Runs pgbench -M prepared through pgdog; returns the transactions processed (-1 on failure,
  // with the test failed).
  long long run_prepared_bench(Pgdog& pgdog, const std::string& extra) {
    // -j equal to -c: pgbench's PQprepare blocks its thread (docs/configuration.md).
    auto r = run_command(
        pgbench(pgdog.port(), "-n -M prepared -c 16 -j 16 -T 4 " + extra), 90s);
    EXPECT_EQ(r.exit_code, 0) << r.describe() << pgdog.admin_snapshot();
    const long long processed =
        match_number(r.out, R"(number of transactions actually processed: (\d+))");
    const long long failed = match_number(r.out, R"(number of failed transactions: (\d+))");
    EXPECT_GT(processed, 0) << r.describe();
    EXPECT_EQ(failed, 0) << r.describe();
    EXPECT_NE(r.out.find("query mode: prepared"), std::string::npos) << r.describe();
    EXPECT_EQ(r.err.find("error"), std::string::npos) << r.describe();
    std::cout << "pgbench -M prepared " << extra << ": " << processed << " transactions\n";
    return processed;
  }
};

// --- pgbench ------------------------------------------------------------------------------

TEST_F(PreparedTest, PgbenchTpcbMoreClientsThanServers) {
  ensure_bench_tables();
  if (HasFatalFailure()) return;
  auto p = connect_primary(kBenchDb);
  ASSERT_TRUE(p.ok()) << p.connect_error().message;
  const long long before = std::stoll(p.exec("SELECT count(*) FROM pgbench_history").at(0));

  Pgdog pgdog(bench_config(4));
  ASSERT_TRUE(pgdog.started());
  const long long processed = run_prepared_bench(pgdog, "");
  if (processed <= 0) return;

  // Every transaction committed exactly once, and the TPC-B invariant holds: each transaction
  // adds the same delta to one account, teller and branch and logs it in history.
  auto r = p.exec(
      "SELECT (SELECT count(*) FROM pgbench_history), "
      "(SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), "
      "(SELECT sum(bbalance) FROM pgbench_branches), "
      "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(std::stoll(r.at(0, 0)) - before, processed);
  EXPECT_EQ(r.at(0, 1), r.at(0, 4)) << "accounts disagree with history";
  EXPECT_EQ(r.at(0, 2), r.at(0, 4)) << "tellers disagree with history";
  EXPECT_EQ(r.at(0, 3), r.at(0, 4)) << "branches disagree with history";

  // pgdog never used more servers than the pool allows.
  auto servers = p.exec("SELECT count(*) FROM pg_stat_activity WHERE datname = '" +
                        std::string(kBenchDb) + "' AND application_name = 'pgdog'");
  EXPECT_LE(std::stoi(servers.at(0)), 4) << servers.describe();
}

TEST_F(PreparedTest, PgbenchSelectOnlyMoreClientsThanServers) {
  ensure_bench_tables();
  if (HasFatalFailure()) return;
  Pgdog pgdog(bench_config(4));
  ASSERT_TRUE(pgdog.started());
  run_prepared_bench(pgdog, "-S");
}

// --- libpq ----------------------------------------------------------------------------------

TEST_F(PreparedTest, SameNameDifferentSqlNeverCollide) {
  Pgdog pgdog(PgdogConfig().with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto a = pgdog.connect();
  auto b = pgdog.connect();
  ASSERT_TRUE(a.ok() && b.ok()) << a.connect_error().message << b.connect_error().message;
  auto r = a.prepare("stmt", "SELECT 'a:' || $1::text");
  ASSERT_TRUE(r.ok()) << r.describe();
  r = b.prepare("stmt", "SELECT $1::int * 2, 'b'");
  ASSERT_TRUE(r.ok()) << r.describe();

  std::string pid;
  for (int i = 0; i < 50; ++i) {
    const std::string v = std::to_string(i);
    auto ra = a.exec_prepared("stmt", {v});
    ASSERT_TRUE(ra.ok()) << "a, round " << i << ": " << ra.describe();
    EXPECT_EQ(ra.at(0), "a:" + v);
    EXPECT_EQ(ra.columns.size(), 1u);
    auto rb = b.exec_prepared("stmt", {v});
    ASSERT_TRUE(rb.ok()) << "b, round " << i << ": " << rb.describe();
    EXPECT_EQ(rb.at(0, 0), std::to_string(i * 2));
    EXPECT_EQ(rb.at(0, 1), "b");
  }
  // Both ran on the single server all along.
  auto pa = a.exec("SELECT pg_backend_pid()");
  auto pb = b.exec("SELECT pg_backend_pid()");
  EXPECT_EQ(pa.at(0), pb.at(0));
  // A third client reusing the name for a third statement, and a fourth with a's SQL.
  auto c = pgdog.connect();
  ASSERT_TRUE(c.prepare("stmt", "SELECT 'c'").ok());
  EXPECT_EQ(c.exec_prepared("stmt", {}).at(0), "c");
  auto d = pgdog.connect();
  ASSERT_TRUE(d.prepare("stmt", "SELECT 'a:' || $1::text").ok());
  EXPECT_EQ(d.exec_prepared("stmt", {"d"}).at(0), "a:d");
  EXPECT_EQ(a.exec_prepared("stmt", {"x"}).at(0), "a:x");
  EXPECT_EQ(b.exec_prepared("stmt", {"3"}).at(0, 0), "6");
}

// Holds whichever server `prepared_on` is not, so that the next checkout of the client whose
// statement lives on `prepared_on` lands on the other server of a pool of two. Returns the
// holder connection (in a transaction) or nullopt with the test failed.
std::optional<Conn> hold_server(const Pgdog& pgdog, const std::string& server_pid) {
  auto h1 = pgdog.connect();
  if (!h1.ok() || !h1.exec("BEGIN").ok()) {
    ADD_FAILURE() << "holder: " << h1.connect_error().message;
    return std::nullopt;
  }
  if (h1.exec("SELECT pg_backend_pid()::text").at(0) == server_pid) return h1;
  // h1 holds the other server: take the statement's server with a second holder, then free
  // the first so that only the other one is available.
  auto h2 = pgdog.connect();
  if (!h2.ok() || !h2.exec("BEGIN").ok()) {
    ADD_FAILURE() << "second holder: " << h2.connect_error().message;
    return std::nullopt;
  }
  const std::string p2 = h2.exec("SELECT pg_backend_pid()::text").at(0);
  if (p2 != server_pid) {
    ADD_FAILURE() << "with one server held, the other (" << p2 << ") is not the statement's ("
                  << server_pid << ")";
    return std::nullopt;
  }
  h1.exec("COMMIT");
  return h2;
}

TEST_F(PreparedTest, StatementFollowsTheClientToAnotherServer) {
  Pgdog pgdog(PgdogConfig().with_pool_size(2));
  ASSERT_TRUE(pgdog.started());
  auto a = pgdog.connect();
  ASSERT_TRUE(a.ok()) << a.connect_error().message;

  ASSERT_TRUE(a.exec("BEGIN").ok());
  auto r = a.prepare("follow_me", "SELECT pg_backend_pid()::text, $1::int + 1");
  ASSERT_TRUE(r.ok()) << r.describe();
  r = a.exec_prepared("follow_me", {"41"});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0, 1), "42");
  const std::string first_pid = r.at(0, 0);
  ASSERT_TRUE(a.exec("COMMIT").ok());

  auto holder = hold_server(pgdog, first_pid);
  ASSERT_TRUE(holder.has_value());

  // A later transaction, on the other server: the statement is prepared there first, by a
  // Describe as well as by a Bind.
  ASSERT_TRUE(a.exec("BEGIN").ok());
  PGresult* described = PQdescribePrepared(a.raw(), "follow_me");
  ASSERT_NE(described, nullptr);
  EXPECT_EQ(PQresultStatus(described), PGRES_COMMAND_OK) << PQresultErrorMessage(described);
  EXPECT_EQ(PQnparams(described), 1);
  EXPECT_EQ(PQnfields(described), 2);
  PQclear(described);
  r = a.exec_prepared("follow_me", {"99"});
  ASSERT_TRUE(r.ok()) << "statement unknown on the second server: " << r.describe()
                      << pgdog.admin_snapshot();
  EXPECT_EQ(r.at(0, 1), "100");
  EXPECT_NE(r.at(0, 0), first_pid) << "the test did not manage to change servers";
  // Outside a transaction too, and a second time (now cached on that server).
  ASSERT_TRUE(a.exec("COMMIT").ok());
  for (int i = 0; i < 3; ++i) {
    r = a.exec_prepared("follow_me", {std::to_string(i)});
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.at(0, 1), std::to_string(i + 1));
  }
  // Back on the first server it still works.
  holder->exec("COMMIT");
  r = a.exec_prepared("follow_me", {"0"});
  ASSERT_TRUE(r.ok()) << r.describe();
}

TEST_F(PreparedTest, UnnamedStatementFollowsTheClientToAnotherServer) {
  // psql's \gdesc: the unnamed statement parsed in one request (Parse, Sync), described in a
  // later one, by then on another server.
  Pgdog pgdog(PgdogConfig().with_pool_size(2));
  ASSERT_TRUE(pgdog.started());
  auto a = pgdog.connect();
  ASSERT_TRUE(a.ok()) << a.connect_error().message;
  // With one server held, the client's next requests go to the other one: `parsed_on`.
  auto first = pgdog.connect();
  ASSERT_TRUE(first.exec("BEGIN").ok());
  const std::string held = first.exec("SELECT pg_backend_pid()::text").at(0);
  const std::string parsed_on = a.exec("SELECT pg_backend_pid()::text").at(0);
  ASSERT_NE(held, parsed_on);
  PGresult* prepared = PQprepare(a.raw(), "", "SELECT pg_backend_pid()::text, $1::int + 1", 0,
                                 nullptr);
  ASSERT_EQ(PQresultStatus(prepared), PGRES_COMMAND_OK) << PQresultErrorMessage(prepared);
  PQclear(prepared);
  // Now only the other server is free.
  auto second = hold_server(pgdog, parsed_on);
  ASSERT_TRUE(second.has_value());
  first.exec("COMMIT");
  PGresult* described = PQdescribePrepared(a.raw(), "");
  ASSERT_NE(described, nullptr);
  EXPECT_EQ(PQresultStatus(described), PGRES_COMMAND_OK) << PQresultErrorMessage(described);
  EXPECT_EQ(PQnparams(described), 1);
  EXPECT_EQ(PQnfields(described), 2);
  PQclear(described);
  const char* value = "41";
  PGresult* executed = PQexecPrepared(a.raw(), "", 1, &value, nullptr, nullptr, 0);
  ASSERT_EQ(PQresultStatus(executed), PGRES_TUPLES_OK) << PQresultErrorMessage(executed);
  EXPECT_STREQ(PQgetvalue(executed, 0, 1), "42");
  EXPECT_EQ(PQgetvalue(executed, 0, 0), held) << "the test did not manage to change servers";
  PQclear(executed);
  second->exec("COMMIT");
}

TEST_F(PreparedTest, DeallocateNameIsHonoured) {
  Pgdog pgdog(PgdogConfig().set("checkout_timeout", "2000").with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto a = pgdog.connect();
  auto other = pgdog.connect();
  ASSERT_TRUE(a.ok() && other.ok());
  ASSERT_TRUE(a.prepare("gone", "SELECT 1").ok());
  ASSERT_TRUE(a.prepare("kept", "SELECT 2").ok());
  ASSERT_EQ(a.exec_prepared("gone", {}).at(0), "1");

  auto r = a.exec("DEALLOCATE gone");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.tag, "DEALLOCATE");

  // The proxy answered DEALLOCATE itself: the single server must be free for others.
  r = other.exec("SELECT 'other client'", 5s);
  EXPECT_TRUE(r.ok()) << "another client could not get the only server after DEALLOCATE: "
                      << r.describe() << pgdog.admin_snapshot();

  r = a.exec_prepared("gone", {});
  ASSERT_FALSE(r.ok()) << "executing a deallocated statement worked";
  EXPECT_EQ(r.error->sqlstate, "26000") << r.describe();
  EXPECT_EQ(a.exec_prepared("kept", {}).at(0), "2");
  // The name is free again, for different SQL.
  ASSERT_TRUE(a.prepare("gone", "SELECT 3").ok());
  EXPECT_EQ(a.exec_prepared("gone", {}).at(0), "3");
  // DEALLOCATE of a name the client never prepared is the server's error.
  r = a.exec("DEALLOCATE never_prepared");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->sqlstate, "26000") << r.describe();
  EXPECT_TRUE(a.exec("SELECT 1").ok());
}

TEST_F(PreparedTest, DeallocateAllIsHonoured) {
  Pgdog pgdog(PgdogConfig().with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto a = pgdog.connect();
  auto b = pgdog.connect();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a.prepare("s1", "SELECT 1").ok());
  ASSERT_TRUE(a.prepare("s2", "SELECT 2").ok());
  ASSERT_TRUE(b.prepare("s1", "SELECT 1").ok());  // the same statement, another client
  auto r = a.exec("DEALLOCATE ALL");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.tag, "DEALLOCATE ALL");
  for (const char* name : {"s1", "s2"}) {
    r = a.exec_prepared(name, {});
    ASSERT_FALSE(r.ok()) << name << " survived DEALLOCATE ALL";
    EXPECT_EQ(r.error->sqlstate, "26000") << r.describe();
  }
  // Another client's statements are untouched.
  r = b.exec_prepared("s1", {});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0), "1");
  ASSERT_TRUE(a.prepare("s1", "SELECT 'again'").ok());
  EXPECT_EQ(a.exec_prepared("s1", {}).at(0), "again");
}

TEST_F(PreparedTest, DiscardAllForgetsStatements) {
  Pgdog pgdog(PgdogConfig().with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto a = pgdog.connect();
  auto b = pgdog.connect();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a.prepare("d", "SELECT 'd'").ok());
  ASSERT_TRUE(b.prepare("bs", "SELECT 'b'").ok());
  ASSERT_EQ(a.exec_prepared("d", {}).at(0), "d");
  auto r = a.exec("DISCARD ALL");
  ASSERT_TRUE(r.ok()) << r.describe();
  r = a.exec_prepared("d", {});
  ASSERT_FALSE(r.ok()) << "statement survived DISCARD ALL";
  EXPECT_EQ(r.error->sqlstate, "26000") << r.describe();
  ASSERT_TRUE(a.prepare("d", "SELECT 'new d'").ok());
  EXPECT_EQ(a.exec_prepared("d", {}).at(0), "new d");
  // The server lost b's statement with DISCARD ALL, but b's name still works: it is prepared
  // again on the server.
  r = b.exec_prepared("bs", {});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0), "b");
}

TEST_F(PreparedTest, CacheLimitEvictsAndReprepares) {
  // Two statements per server connection at most: the least recently used is closed on the
  // server and prepared again when needed.
  Pgdog pgdog(PgdogConfig().set("prepared_statements_limit", "2").with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto a = pgdog.connect();
  ASSERT_TRUE(a.ok());
  for (int i = 0; i < 5; ++i) {
    auto r = a.prepare("s" + std::to_string(i), "SELECT " + std::to_string(i) + " + $1::int");
    ASSERT_TRUE(r.ok()) << r.describe();
  }
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 5; ++i) {
      auto r = a.exec_prepared("s" + std::to_string(i), {std::to_string(round * 100)});
      ASSERT_TRUE(r.ok()) << "s" << i << ", round " << round << ": " << r.describe();
      EXPECT_EQ(r.at(0), std::to_string(i + round * 100));
    }
  }
  auto r = a.exec("SELECT count(*) FROM pg_prepared_statements");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_LE(std::stoi(r.at(0)), 2) << "the server holds more statements than the limit";
}

TEST_F(PreparedTest, FailedPrepareLeavesNoStatementLikePostgres) {
  // What PostgreSQL itself answers, straight on the primary ...
  auto direct = connect_primary();
  ASSERT_TRUE(direct.ok());
  auto r = direct.prepare("broken", "SELEC 1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->sqlstate, "42601");
  r = direct.exec_prepared("broken", {});
  ASSERT_FALSE(r.ok());
  const std::string postgres_says = r.error->sqlstate;
  EXPECT_EQ(postgres_says, "26000");

  // ... and through pgdog.
  Pgdog pgdog(PgdogConfig().with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto a = pgdog.connect();
  ASSERT_TRUE(a.ok());
  r = a.prepare("broken", "SELEC 1");
  ASSERT_FALSE(r.ok()) << "a syntax error was accepted";
  EXPECT_EQ(r.error->sqlstate, "42601") << r.describe();
  r = a.exec_prepared("broken", {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->sqlstate, postgres_says)
      << "executing a statement whose Parse failed: " << r.describe();
  // The name is usable afterwards.
  r = a.prepare("broken", "SELECT 'fixed'");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(a.exec_prepared("broken", {}).at(0), "fixed");
}

// --- Close on the wire (libpq 15 has no PQsendClosePrepared) ---------------------------------

// A bare protocol client logging in with trust (no password exchange).
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }

  bool startup(const std::string& user, const std::string& db) {
    std::string body;
    put32(body, 196608);
    body += "user";
    body.push_back('\0');
    body += user;
    body.push_back('\0');
    body += "database";
    body.push_back('\0');
    body += db;
    body.push_back('\0');
    body.push_back('\0');
    std::string msg;
    put32(msg, static_cast<std::int32_t>(body.size() + 4));
    msg += body;
    if (!send(msg)) return false;
    auto m = read_until_ready();
    return m.find('E') == std::string::npos && !m.empty();
  }

  void parse(const std::string& name, const std::string& sql) {
    std::string b = name + '\0' + sql + '\0';
    put16(b, 0);
    queue('P', b);
  }
  void bind_execute(const std::string& name) {
    std::string b;
    b.push_back('\0');  // unnamed portal
    b += name + '\0';
    put16(b, 0);
    put16(b, 0);
    put16(b, 0);
    queue('B', b);
    std::string e;
    e.push_back('\0');
    put32(e, 0);
    queue('E', e);
  }
  void close_statement(const std::string& name) { queue('C', "S" + name + '\0'); }
  // Sends what was queued plus Sync; returns the types of the answers up to ReadyForQuery.
  std::string sync() {
    queue('S', "");
    if (!send(pending_)) return "<send failed>";
    pending_.clear();
    return read_until_ready();
  }
  const std::string& last_sqlstate() const { return sqlstate_; }
  const std::string& last_data() const { return data_; }

 private:
  static void put32(std::string& s, std::int32_t v) {
    const std::uint32_t n = htonl(static_cast<std::uint32_t>(v));
    s.append(reinterpret_cast<const char*>(&n), 4);
  }
  static void put16(std::string& s, std::int16_t v) {
    const std::uint16_t n = htons(static_cast<std::uint16_t>(v));
    s.append(reinterpret_cast<const char*>(&n), 2);
  }
  void queue(char type, const std::string& body) {
    pending_.push_back(type);
    put32(pending_, static_cast<std::int32_t>(body.size() + 4));
    pending_ += body;
  }
  bool send(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::write(fd_, data.data() + off, data.size() - off);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  bool read_exact(char* out, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
      const ssize_t r = ::read(fd_, out + got, n - got);
      if (r <= 0) return false;
      got += static_cast<std::size_t>(r);
    }
    return true;
  }
  std::string read_until_ready() {
    std::string types;
    sqlstate_.clear();
    data_.clear();
    while (true) {
      char header[5];
      if (!read_exact(header, 5)) return types + "<eof>";
      std::uint32_t len = 0;
      std::memcpy(&len, header + 1, 4);
      len = ntohl(len);
      std::string body(len - 4, '\0');
      if (len > 4 && !read_exact(body.data(), body.size())) return types + "<eof>";
      types.push_back(header[0]);
      if (header[0] == 'E') {
        for (std::size_t i = 0; i < body.size() && body[i] != '\0';) {
          const char code = body[i];
          const auto end = body.find('\0', i + 1);
          if (code == 'C') sqlstate_ = body.substr(i + 1, end - i - 1);
          i = end + 1;
        }
      } else if (header[0] == 'D' && body.size() > 6) {
        data_ = body.substr(6);  // first column of a one-column row
      } else if (header[0] == 'Z') {
        return types;
      }
    }
  }

  int fd_ = -1;
  std::string pending_;
  std::string sqlstate_;
  std::string data_;
};

TEST_F(PreparedTest, CloseMessageIsHonoured) {
  Pgdog pgdog(PgdogConfig().set_string("auth_type", "trust").with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  RawClient c(pgdog.port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.startup("pgdog", "pgdog"));

  c.parse("closing", "SELECT 'one'");
  EXPECT_EQ(c.sync(), "1Z");
  c.bind_execute("closing");
  EXPECT_EQ(c.sync(), "2DCZ");
  EXPECT_EQ(c.last_data(), "one");

  c.close_statement("closing");
  EXPECT_EQ(c.sync(), "3Z") << "Close must be answered with CloseComplete";
  c.bind_execute("closing");
  EXPECT_EQ(c.sync(), "EZ") << "a closed statement still ran";
  EXPECT_EQ(c.last_sqlstate(), "26000");

  // The name can be reused for other SQL, in one batch with Close again.
  c.parse("closing", "SELECT 'two'");
  c.bind_execute("closing");
  c.close_statement("closing");
  EXPECT_EQ(c.sync(), "12DC3Z");
  EXPECT_EQ(c.last_data(), "two");
  c.bind_execute("closing");
  EXPECT_EQ(c.sync(), "EZ");
  EXPECT_EQ(c.last_sqlstate(), "26000");
  // Closing a name that does not exist is not an error (as in PostgreSQL).
  c.close_statement("never_there");
  EXPECT_EQ(c.sync(), "3Z");
}

// --- prepared_statements = "disabled" --------------------------------------------------------

TEST_F(PreparedTest, DisabledPassesNamedStatementsThrough) {
  Pgdog pgdog(PgdogConfig().set_string("prepared_statements", "disabled").with_pool_size(2));
  ASSERT_TRUE(pgdog.started());
  auto a = pgdog.connect();
  ASSERT_TRUE(a.ok()) << a.connect_error().message;
  ASSERT_TRUE(a.prepare("passthrough", "SELECT pg_backend_pid()::text").ok());
  auto r = a.exec_prepared("passthrough", {});
  ASSERT_TRUE(r.ok()) << "on the same server the statement works: " << r.describe();
  const std::string pid = r.at(0);
  // Passed through under the client's own name: the server knows it as "passthrough".
  r = a.exec(
      "SELECT pg_backend_pid()::text, "
      "(SELECT count(*) FROM pg_prepared_statements WHERE name = 'passthrough')");
  ASSERT_TRUE(r.ok()) << r.describe();
  if (r.at(0, 0) == pid) {
    EXPECT_EQ(r.at(0, 1), "1") << r.describe();
  }

  auto holder = hold_server(pgdog, pid);
  ASSERT_TRUE(holder.has_value());
  // On the other server the name does not exist: the documented behaviour.
  r = a.exec_prepared("passthrough", {});
  ASSERT_FALSE(r.ok()) << "with prepared_statements = disabled the statement crossed servers: "
                       << r.describe();
  EXPECT_EQ(r.error->sqlstate, "26000") << r.describe();
  // The client's session goes on.
  r = a.exec("SELECT 'still here'");
  EXPECT_EQ(r.at(0), "still here") << r.describe();
}

}  // namespace
}  // namespace pgdog::it
