// When the client session gives its server back in transaction mode, seen from outside: which
// server connection each query reaches (the scripted server records it) and what the pool says
// (Pool::state(), what SHOW POOLS shows). With pool_size 1 a second client can only be served
// once the first has released the server, so "waiting == 1" and the order of queries on the one
// connection show exactly when that happened.

#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "frontend/proxy.hpp"

namespace pgdog::test {
namespace {

using Strings = std::vector<std::string>;

using Release = ProxyTest;

TEST_F(Release, SimpleQueryReleasesAtReadyForQueryIdle) {
  start();
  Client a(io, proxy->port());
  Client b(io, proxy->port());
  ASSERT_TRUE(a.login());
  ASSERT_TRUE(b.login());
  for (const auto& [client, sql] : {std::pair{&a, "SELECT 'a1'"}, std::pair{&b, "SELECT 'b1'"},
                                    std::pair{&a, "SELECT 'a2'"}, std::pair{&b, "SELECT 'b2'"}}) {
    auto answer = client->query(sql);
    ASSERT_TRUE(answer) << sql;
    EXPECT_EQ(types(*answer), "TDCZ") << sql;
    ASSERT_TRUE(released()) << "server kept after " << sql;
  }
  // At the same time: one is served, then the other.
  a.send(wire::query("SELECT 'a3'"));
  b.send(wire::query("SELECT 'b3'"));
  ASSERT_TRUE(a.until('Z'));
  ASSERT_TRUE(b.until('Z'));
  ASSERT_TRUE(released());
  // Both clients took turns on the one connection the login opened.
  EXPECT_EQ(server.connections(), 1u);
  auto seen = queries(server, 0);
  ASSERT_EQ(seen.size(), 6u);
  // The last two in whichever order the proxy read them.
  if (seen[4] > seen[5]) std::swap(seen[4], seen[5]);
  EXPECT_EQ(seen, (Strings{"SELECT 'a1'", "SELECT 'b1'", "SELECT 'a2'", "SELECT 'b2'",
                           "SELECT 'a3'", "SELECT 'b3'"}));
}

TEST_F(Release, TransactionBlockKeepsTheServerUntilCommit) {
  start();
  Client a(io, proxy->port());
  Client b(io, proxy->port());
  ASSERT_TRUE(a.login());
  ASSERT_TRUE(b.login());

  auto begin = a.query("BEGIN");
  ASSERT_TRUE(begin);
  EXPECT_EQ(types(*begin), "CZ");
  b.send(wire::query("SELECT 'b'"));
  ASSERT_TRUE(held_with_one_waiting());
  auto inside = a.query("SELECT 'in the block'");
  ASSERT_TRUE(inside);
  EXPECT_EQ(inside->back().body, "T");
  ASSERT_TRUE(held_with_one_waiting());
  EXPECT_TRUE(b.pending().empty());

  auto commit = a.query("COMMIT");
  ASSERT_TRUE(commit);
  EXPECT_EQ(commit->back().body, "I");
  auto answer = b.until('Z');
  ASSERT_TRUE(answer);
  EXPECT_EQ(types(*answer), "TDCZ");
  ASSERT_TRUE(released());
  EXPECT_EQ(server.connections(), 1u);
  EXPECT_EQ(queries(server, 0),
            (Strings{"BEGIN", "SELECT 'in the block'", "COMMIT", "SELECT 'b'"}));
}

TEST_F(Release, FailedTransactionKeepsTheServerUntilRollback) {
  start();
  Client a(io, proxy->port());
  Client b(io, proxy->port());
  ASSERT_TRUE(a.login());
  ASSERT_TRUE(b.login());

  ASSERT_TRUE(a.query("BEGIN"));
  auto failed = a.query("FAIL");
  ASSERT_TRUE(failed);
  EXPECT_EQ(types(*failed), "EZ");
  EXPECT_EQ(failed->back().body, "E");
  b.send(wire::query("SELECT 'b'"));
  ASSERT_TRUE(held_with_one_waiting());
  auto aborted = a.query("SELECT 'still failed'");
  ASSERT_TRUE(aborted);
  EXPECT_EQ(error_of(aborted->front()), "ERROR/25P02");
  EXPECT_EQ(aborted->back().body, "E");
  ASSERT_TRUE(held_with_one_waiting());
  EXPECT_TRUE(b.pending().empty());

  auto rollback = a.query("ROLLBACK");
  ASSERT_TRUE(rollback);
  EXPECT_EQ(rollback->back().body, "I");
  ASSERT_TRUE(b.until('Z'));
  ASSERT_TRUE(released());
  EXPECT_EQ(server.connections(), 1u);
  EXPECT_EQ(queries(server, 0),
            (Strings{"BEGIN", "FAIL", "SELECT 'still failed'", "ROLLBACK", "SELECT 'b'"}));
}

TEST_F(Release, PipelinedQueriesReleaseAfterTheLastAnswer) {
  start();
  Client a(io, proxy->port());
  Client b(io, proxy->port());
  ASSERT_TRUE(a.login());
  ASSERT_TRUE(b.login());

  // Three queries in one write; the server answers the first two and holds the third.
  a.send(wire::query("SELECT 1") + wire::query("SELECT 2") + wire::query("HOLD"));
  ASSERT_TRUE(a.until('Z'));
  ASSERT_TRUE(a.until('Z'));
  ASSERT_TRUE(wait([&] { return queries(server, 0).size() == 3; }));
  b.send(wire::query("SELECT 'b'"));
  ASSERT_TRUE(held_with_one_waiting());
  EXPECT_TRUE(a.pending().empty());
  EXPECT_TRUE(b.pending().empty());

  server.send(0, wire::select_answer("3"));
  auto third = a.until('Z');
  ASSERT_TRUE(third);
  EXPECT_EQ(types(*third), "TDCZ");
  EXPECT_EQ((*third)[1].body, wire::data_row("3").substr(5));
  ASSERT_TRUE(b.until('Z'));
  ASSERT_TRUE(released());
  EXPECT_EQ(queries(server, 0), (Strings{"SELECT 1", "SELECT 2", "HOLD", "SELECT 'b'"}));
}

TEST_F(Release, ExtendedBatchWithoutSyncIsAnsweredAndKeepsTheServerUntilSync) {
  start();
  Client a(io, proxy->port());
  Client b(io, proxy->port());
  ASSERT_TRUE(a.login());
  ASSERT_TRUE(b.login());

  a.send(wire::parse("", "SELECT 1") + wire::bind("") + wire::execute() + wire::flush());
  // The answers reach the client before any Sync.
  auto answers = a.until('C');
  ASSERT_TRUE(answers);
  EXPECT_EQ(types(*answers), "12DC");
  b.send(wire::query("SELECT 'b'"));
  ASSERT_TRUE(held_with_one_waiting());
  EXPECT_TRUE(b.pending().empty());

  a.send(wire::sync());
  auto ready = a.until('Z');
  ASSERT_TRUE(ready);
  EXPECT_EQ(types(*ready), "Z");
  ASSERT_TRUE(b.until('Z'));
  ASSERT_TRUE(released());
  EXPECT_EQ(server.connections(), 1u);
  EXPECT_EQ(types_received(server, 0), "PBEHSQ");
}

TEST_F(Release, CopyInKeepsTheServerUntilTheFinalReadyForQuery) {
  start();
  Client a(io, proxy->port());
  Client b(io, proxy->port());
  ASSERT_TRUE(a.login());
  ASSERT_TRUE(b.login());

  a.send(wire::query("COPY t FROM STDIN"));
  auto copy_in = a.until('G');
  ASSERT_TRUE(copy_in);
  EXPECT_EQ(types(*copy_in), "G");
  b.send(wire::query("SELECT 'b'"));
  ASSERT_TRUE(held_with_one_waiting());

  a.send(wire::copy_data("1\n"));
  a.send(wire::copy_data("2\n"));
  ASSERT_TRUE(wait([&] { return types_received(server, 0) == "Qdd"; }));
  ASSERT_TRUE(held_with_one_waiting());
  EXPECT_TRUE(b.pending().empty());

  a.send(wire::copy_done());
  auto done = a.until('Z');
  ASSERT_TRUE(done);
  ASSERT_EQ(types(*done), "CZ");
  EXPECT_EQ(done->front().body, std::string("COPY 2") + '\0');
  ASSERT_TRUE(b.until('Z'));
  ASSERT_TRUE(released());
  EXPECT_EQ(types_received(server, 0), "QddcQ");
}

}  // namespace
}  // namespace pgdog::test
