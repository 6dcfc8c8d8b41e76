// Session mode through the proxy: the client keeps its server for as long as it is connected,
// the server's asynchronous messages reach it while it is idle, and the server is reset with
// DISCARD ALL before the next client gets it.

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "frontend/proxy.hpp"

namespace pgdog::test {
namespace {

using Strings = std::vector<std::string>;

class SessionMode : public ProxyTest {
 protected:
  void SetUp() override { start({.mode = config::PoolerMode::session, .pool_size = 1}); }
};

TEST_F(SessionMode, ServerIsKeptWhileTheClientIsConnected) {
  Client a(io, proxy->port());
  Client b(io, proxy->port());
  ASSERT_TRUE(a.login());
  ASSERT_TRUE(b.login());
  for (const char* sql : {"SELECT 1", "SELECT 2"}) {
    auto answer = a.query(sql);
    ASSERT_TRUE(answer) << sql;
    EXPECT_EQ(types(*answer), "TDCZ");
    EXPECT_EQ(answer->back().body, "I");
  }
  // Idle between transactions, and still holding it: the other client waits.
  b.send(wire::query("SELECT 'b'"));
  ASSERT_TRUE(held_with_one_waiting());
  ASSERT_TRUE(a.query("SELECT 3"));
  ASSERT_TRUE(held_with_one_waiting());
  EXPECT_TRUE(b.pending().empty());
  EXPECT_EQ(queries(server, 0), (Strings{"SELECT 1", "SELECT 2", "SELECT 3"}));
}

TEST_F(SessionMode, NotificationReachesAnIdleClient) {
  Client a(io, proxy->port());
  ASSERT_TRUE(a.login());
  ASSERT_TRUE(a.query("LISTEN jobs"));
  ASSERT_TRUE(wait([&] { return proxy->pool().active == 1; }));
  // The client sends nothing more; the server speaks on its own.
  const auto notification = wire::notification(4242, "jobs", "42");
  server.send(0, notification);
  auto frames = a.until('A');
  ASSERT_TRUE(frames);
  ASSERT_EQ(types(*frames), "A");
  EXPECT_EQ(frames->front().body, notification.substr(5));
  // And the session goes on.
  auto answer = a.query("SELECT 1");
  ASSERT_TRUE(answer);
  EXPECT_EQ(types(*answer), "TDCZ");
}

TEST_F(SessionMode, ServerIsResetWithDiscardAllWhenTheClientLeaves) {
  Client a(io, proxy->port());
  Client b(io, proxy->port());
  ASSERT_TRUE(a.login());
  ASSERT_TRUE(b.login());
  ASSERT_TRUE(a.query("SET search_path TO app"));
  b.send(wire::query("SELECT 'b'"));
  ASSERT_TRUE(held_with_one_waiting());

  a.send(wire::terminate());
  ASSERT_TRUE(a.wait_closed());
  auto answer = b.until('Z');
  ASSERT_TRUE(answer);
  EXPECT_EQ(types(*answer), "TDCZ");
  // Reset before the next client got it, on the same connection; Terminate is not forwarded.
  EXPECT_EQ(queries(server, 0), (Strings{"SET search_path TO app", "DISCARD ALL", "SELECT 'b'"}));
  EXPECT_EQ(types_received(server, 0), "QQQ");
  EXPECT_EQ(server.connections(), 1u);
  EXPECT_EQ(proxy->pool().active, 1);  // b keeps it now
}

}  // namespace
}  // namespace pgdog::test
