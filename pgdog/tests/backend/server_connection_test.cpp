// ServerConnection against the scripted server on a loopback io_context: login with each method,
// the ways a login fails, the connect timeout, and execute().

#include "backend/server_connection.hpp"

#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "support/run.hpp"
#include "support/scripted_server.hpp"

namespace pgdog::backend {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
using test::Message;
using test::Reply;
using test::ScriptedServer;
namespace pg = test::pg;
using Auth = ScriptedServer::Auth;

ServerAddress address_of(const ScriptedServer& server, std::string password = {}) {
  return {"127.0.0.1", server.port(), "appdb", "bob", std::move(password)};
}

Result<ServerPtr> connect(asio::io_context& io, const ServerAddress& address,
                          config::Millis timeout = 10s) {
  return test::run(io, ServerConnection::connect(io.get_executor(), address, timeout, 1 << 20));
}

void expect_failure(const Result<ServerPtr>& r, Error code, std::string_view sqlstate,
                    std::string_view message) {
  ASSERT_FALSE(r) << "connected";
  EXPECT_EQ(r.error().code, make_error_code(code)) << r.error().to_string();
  EXPECT_EQ(r.error().sqlstate, sqlstate);
  EXPECT_EQ(r.error().message, message);
}

TEST(ServerConnection, LoginTrust) {
  asio::io_context io;
  ScriptedServer server(io);
  auto r = connect(io, address_of(server));
  ASSERT_TRUE(r) << r.error().to_string();
  ServerConnection& conn = **r;
  EXPECT_EQ(conn.params().get("server_version"), "16.0");
  EXPECT_EQ(conn.params().get("TimeZone"), "UTC");
  EXPECT_EQ(conn.key().process_id, ScriptedServer::key(0).process_id);
  EXPECT_EQ(conn.key().secret_key, ScriptedServer::key(0).secret_key);
  EXPECT_EQ(conn.cancel_key()->port, server.port());
  EXPECT_EQ(conn.status(), 'I');
  EXPECT_FALSE(conn.broken());
  EXPECT_EQ(server.logins(), 1u);
  const auto received = server.received(0);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].type, 0);
  EXPECT_EQ(received[0].body, "\0\x03\0\0user\0bob\0database\0appdb\0application_name\0pgdog\0\0"s);
}

TEST(ServerConnection, LoginMd5) {
  asio::io_context io;
  ScriptedServer server(io, {.auth = Auth::md5, .password = "secret"});
  auto r = connect(io, address_of(server, "secret"));
  ASSERT_TRUE(r) << r.error().to_string();
  const auto received = server.received(0);
  ASSERT_EQ(received.size(), 2u);
  EXPECT_EQ(received[1].type, 'p');
  EXPECT_TRUE(received[1].body.starts_with("md5")) << received[1].body;
}

TEST(ServerConnection, LoginScram) {
  asio::io_context io;
  ScriptedServer server(io, {.auth = Auth::scram, .password = "secret"});
  auto r = connect(io, address_of(server, "secret"));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ((*r)->params().get("server_version"), "16.0");
  const auto received = server.received(0);
  ASSERT_EQ(received.size(), 3u);  // startup, SASLInitialResponse, SASLResponse
  EXPECT_TRUE(received[1].body.starts_with("SCRAM-SHA-256\0"s));
}

TEST(ServerConnection, WrongPasswordIs28P01) {
  for (const Auth auth : {Auth::md5, Auth::scram}) {
    asio::io_context io;
    ScriptedServer server(io, {.auth = auth, .password = "secret"});
    expect_failure(connect(io, address_of(server, "guess")), Error::auth_failed, "28P01",
                   "password authentication failed for user \"bob\"");
    EXPECT_EQ(server.logins(), 0u);
  }
}

TEST(ServerConnection, ErrorResponseDuringStartup) {
  asio::io_context io;
  ScriptedServer server(
      io, {.on_startup = Reply{
               pg::auth_ok() + pg::error("3D000", "database \"appdb\" does not exist", "FATAL"),
               {},
               Reply::Then::close}});
  expect_failure(connect(io, address_of(server)), Error::server_error, "3D000",
                 "database \"appdb\" does not exist");
}

TEST(ServerConnection, FatalBeforeAuthentication) {
  asio::io_context io;
  ScriptedServer server(io, {.on_startup = Reply::fatal("53300", "sorry, too many clients")});
  expect_failure(connect(io, address_of(server)), Error::server_error, "53300",
                 "sorry, too many clients");
}

TEST(ServerConnection, UnexpectedMessageDuringStartup) {
  asio::io_context io;
  ScriptedServer server(io, {.on_startup = Reply::send(pg::auth_ok() + pg::data_row({"1"}))});
  expect_failure(connect(io, address_of(server)), Error::protocol_violation, "08006",
                 "unexpected message 'D' during startup");
}

TEST(ServerConnection, UnsupportedAuthenticationMethod) {
  asio::io_context io;
  // AuthenticationGSS.
  ScriptedServer server(io, {.on_startup = Reply::send("R\0\0\0\x08\0\0\0\x07"s)});
  expect_failure(connect(io, address_of(server)), Error::unsupported_auth, "08006",
                 "server requested unsupported authentication method 7");
}

TEST(ServerConnection, ConnectTimeoutAgainstAServerThatStalls) {
  asio::io_context io;
  ScriptedServer server(io, {.on_startup = Reply::stall()});
  const auto start = std::chrono::steady_clock::now();
  auto r = connect(io, address_of(server), 300ms);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(Error::connect_timeout)) << r.error().to_string();
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 10s);
  EXPECT_EQ(server.connections(), 1u);
  // The half-made connection is closed, not leaked.
  EXPECT_TRUE(test::run_until(io, [&] { return server.open_connections() == 0; }));
}

TEST(ServerConnection, ConnectRefused) {
  asio::io_context io;
  ScriptedServer server(io);
  server.refuse();
  auto r = connect(io, address_of(server));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(Error::connect_failed)) << r.error().to_string();
}

TEST(ServerConnection, ExecuteReadsToReadyForQuery) {
  asio::io_context io;
  ScriptedServer server(io);
  server.set_script([](const Message& m) {
    if (m.type != 'Q') return test::answer_ok(m);
    return Reply::send(pg::parameter_status("TimeZone", "Europe/Paris") +
                       pg::command_complete("SET") + pg::ready('T'));
  });
  auto conn = connect(io, address_of(server));
  ASSERT_TRUE(conn) << conn.error().to_string();
  auto r = test::run(io, (*conn)->execute("SET TimeZone = 'Europe/Paris'"));
  EXPECT_TRUE(r) << r.error().to_string();
  EXPECT_EQ((*conn)->params().get("TimeZone"), "Europe/Paris");
  EXPECT_EQ((*conn)->status(), 'T');
  EXPECT_TRUE((*conn)->buffer().empty());
  const auto received = server.received(0);
  ASSERT_EQ(received.size(), 2u);
  EXPECT_EQ(received[1].type, 'Q');
  EXPECT_EQ(received[1].body, "SET TimeZone = 'Europe/Paris'\0"s);
}

TEST(ServerConnection, ExecuteWithAnError) {
  asio::io_context io;
  ScriptedServer server(io);
  server.set_script([](const Message& m) {
    if (m.type == 'Q' && m.body.starts_with("SELECT * FROM missing")) {
      return Reply::send(pg::error("42P01", "relation \"missing\" does not exist") +
                         pg::ready('I'));
    }
    return test::answer_ok(m);
  });
  auto conn = connect(io, address_of(server));
  ASSERT_TRUE(conn) << conn.error().to_string();
  auto r = test::run(io, (*conn)->execute("SELECT * FROM missing"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(Error::server_error));
  EXPECT_EQ(r.error().sqlstate, "42P01");
  EXPECT_EQ(r.error().message, "relation \"missing\" does not exist");
  // An ERROR leaves the connection usable.
  EXPECT_FALSE((*conn)->broken());
  EXPECT_TRUE(test::run(io, (*conn)->execute("SELECT 1")));
}

TEST(ServerConnection, ExecuteWithAFatalBreaksTheConnection) {
  asio::io_context io;
  ScriptedServer server(io);
  server.set_script([](const Message& m) {
    if (m.type != 'Q') return test::answer_ok(m);
    return Reply::fatal("57P01", "terminating connection due to administrator command");
  });
  auto conn = connect(io, address_of(server));
  ASSERT_TRUE(conn) << conn.error().to_string();
  auto r = test::run(io, (*conn)->execute("SELECT 1"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sqlstate, "57P01");
  EXPECT_EQ(r.error().message, "terminating connection due to administrator command");
  EXPECT_TRUE((*conn)->broken());
}

TEST(ServerConnection, ExecuteAgainstAReset) {
  asio::io_context io;
  ScriptedServer server(io);
  server.set_script(
      [](const Message& m) { return m.type == 'Q' ? Reply::reset() : test::answer_ok(m); });
  auto conn = connect(io, address_of(server));
  ASSERT_TRUE(conn) << conn.error().to_string();
  auto r = test::run(io, (*conn)->execute("SELECT 1"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(Error::connection_closed)) << r.error().to_string();
  EXPECT_TRUE((*conn)->broken());
}

TEST(ServerConnection, SlowAnswerIsWaitedFor) {
  asio::io_context io;
  ScriptedServer server(io);
  server.set_script([](const Message& m) {
    if (m.type != 'Q') return test::answer_ok(m);
    return Reply::send(pg::command_complete("SELECT 1") + pg::ready('I'), 200ms);
  });
  auto conn = connect(io, address_of(server));
  ASSERT_TRUE(conn) << conn.error().to_string();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(test::run(io, (*conn)->execute("SELECT 1")));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 200ms);
}

TEST(ServerConnection, CancelReachesTheServer) {
  asio::io_context io;
  ScriptedServer server(io);
  auto conn = connect(io, address_of(server));
  ASSERT_TRUE(conn) << conn.error().to_string();
  const auto key = (*conn)->key();
  test::run(io, ServerConnection::cancel(io.get_executor(), "127.0.0.1", server.port(), key));
  const auto cancels = server.cancels();
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].process_id, ScriptedServer::key(0).process_id);
  EXPECT_EQ(cancels[0].secret_key, ScriptedServer::key(0).secret_key);
  EXPECT_EQ(server.connections(), 1u);  // a cancel request is not a connection
}

}  // namespace
}  // namespace pgdog::backend
