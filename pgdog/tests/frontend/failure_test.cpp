// What the client session does when something goes wrong on either side: a server that resets
// mid-query, a client that leaves inside a transaction, a client that breaks the protocol. The
// client concerned is told and closed; a server connection that cannot be trusted any more is
// never handed to another client; nobody else notices.

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "frontend/proxy.hpp"

namespace pgdog::test {
namespace {

using Strings = std::vector<std::string>;

class Failures : public ProxyTest {
 protected:
  // Waits until only `clients_left` sessions remain; then the pool must hold nothing: the
  // server connection the ended session had is gone, not idle. Checked at that moment, before
  // the pool's own safety nets (maintenance every second, a liveness check at checkout) could
  // discard a connection the session wrongly gave back.
  bool discarded_when_session_ends(std::size_t clients_left) {
    if (!wait([&] { return proxy->app().clients().size() == clients_left; })) return false;
    const auto st = proxy->pool();
    return st.active == 0 && st.idle == 0;
  }
};

TEST_F(Failures, ServerResetMidQueryClosesTheClientAndIsNotReused) {
  start();
  Client a(io, proxy->port());
  ASSERT_TRUE(a.login());
  ASSERT_TRUE(a.query("SELECT 1"));
  a.send(wire::query("CRASH"));
  auto frames = a.until('E');
  ASSERT_TRUE(frames);
  EXPECT_EQ(types(*frames), "E");
  EXPECT_EQ(error_of(frames->back()), "FATAL/08006");
  ASSERT_TRUE(a.wait_closed());
  EXPECT_TRUE(a.pending().empty());
  ASSERT_TRUE(discarded_when_session_ends(0));

  Client b(io, proxy->port());
  ASSERT_TRUE(b.login());
  auto answer = b.query("SELECT 'b'");
  ASSERT_TRUE(answer);
  EXPECT_EQ(types(*answer), "TDCZ");
  EXPECT_EQ(server.connections(), 2u);
  EXPECT_EQ(queries(server, 0), (Strings{"SELECT 1", "CRASH"}));
  EXPECT_EQ(queries(server, 1), (Strings{"SELECT 'b'"}));
}

TEST_F(Failures, ClientLeavingInsideATransactionDiscardsTheServer) {
  start();
  Client a(io, proxy->port());
  ASSERT_TRUE(a.login());
  auto begin = a.query("BEGIN");
  ASSERT_TRUE(begin);
  EXPECT_EQ(begin->back().body, "T");
  a.close();
  // The proxy closes the server connection: its open transaction must not reach anyone else.
  ASSERT_TRUE(discarded_when_session_ends(0));
  ASSERT_TRUE(wait([&] { return server.closed_by_client(0); }));
  EXPECT_EQ(queries(server, 0), (Strings{"BEGIN"}));

  Client b(io, proxy->port());
  ASSERT_TRUE(b.login());
  auto answer = b.query("SELECT 'b'");
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->back().body, "I");
  EXPECT_EQ(queries(server, 1), (Strings{"SELECT 'b'"}));
}

TEST_F(Failures, UnknownMessageTypeGets08P01AndOthersGoOn) {
  start({.pool_size = 2});
  Client a(io, proxy->port());
  Client b(io, proxy->port());
  ASSERT_TRUE(a.login());
  ASSERT_TRUE(b.login());
  // b holds the login's connection inside a transaction; a uses a second one and gives it back.
  ASSERT_TRUE(b.query("BEGIN"));
  ASSERT_TRUE(a.query("SELECT 1"));
  ASSERT_TRUE(wait([&] { return proxy->pool().idle == 1; }));

  a.send(wire::empty('y'));
  auto frames = a.until('E');
  ASSERT_TRUE(frames);
  EXPECT_EQ(types(*frames), "E");
  EXPECT_EQ(error_of(frames->back()), "FATAL/08P01");
  ASSERT_TRUE(a.wait_closed());

  auto inside = b.query("SELECT 'b'");
  ASSERT_TRUE(inside);
  EXPECT_EQ(types(*inside), "TDCZ");
  EXPECT_EQ(inside->back().body, "T");
  ASSERT_TRUE(b.query("COMMIT"));
  ASSERT_TRUE(wait([&] {
    const auto st = proxy->pool();
    return st.active == 0 && st.idle == 2;
  }));
  EXPECT_EQ(queries(server, 0), (Strings{"BEGIN", "SELECT 'b'", "COMMIT"}));
  EXPECT_EQ(types_received(server, 1), "Q");  // the bad message never reached a server
}

TEST_F(Failures, ProtocolViolationInsideATransactionDiscardsTheServer) {
  start();
  Client a(io, proxy->port());
  ASSERT_TRUE(a.login());
  ASSERT_TRUE(a.query("BEGIN"));
  a.send(wire::empty('y'));
  auto frames = a.until('E');
  ASSERT_TRUE(frames);
  EXPECT_EQ(types(*frames), "E");
  EXPECT_EQ(error_of(frames->back()), "FATAL/08P01");
  ASSERT_TRUE(a.wait_closed());
  ASSERT_TRUE(discarded_when_session_ends(0));
  ASSERT_TRUE(wait([&] { return server.closed_by_client(0); }));

  Client b(io, proxy->port());
  ASSERT_TRUE(b.login());
  ASSERT_TRUE(b.query("SELECT 'b'"));
  EXPECT_EQ(queries(server, 1), (Strings{"SELECT 'b'"}));
}

}  // namespace
}  // namespace pgdog::test
