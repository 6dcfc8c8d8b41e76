#include <gtest/gtest.h>

#include <set>

#include "backend/prepared.hpp"
#include "protocol/messages.hpp"

namespace pgdog::backend {
namespace {

using protocol::Frame;

// A fake PostgreSQL that answers extended-protocol messages the way the real one does: named
// statements must exist (or not) as they would, a query containing "bad" fails to parse, and
// after an error everything up to Sync is ignored.
class FakeServer {
 public:
  std::set<std::string> statements;
  std::vector<std::string> received;  // message types as they arrived, for inspection
  bool unnamed = false;               // the session has an unnamed statement

  std::string answer(std::string_view bytes) {
    std::string out;
    while (!bytes.empty()) {
      auto f = *protocol::next_frame(bytes, 1 << 20);
      bytes.remove_prefix(f.size());
      received.push_back(std::string(1, f.type));
      if (ignoring_ && f.type != 'S') continue;
      switch (f.type) {
        case 'P': {
          auto p = *protocol::decode_parse(f.body);
          if (p.query.find("bad") != std::string_view::npos) {
            error(out, "42601", "syntax error");
          } else if (!p.name.empty() && statements.contains(std::string(p.name))) {
            error(out, "42P05", "prepared statement already exists");
          } else {
            if (!p.name.empty()) statements.insert(std::string(p.name));
            if (p.name.empty()) unnamed = true;
            protocol::write_empty(out, '1');
          }
          break;
        }
        case 'B': {
          auto b = *protocol::decode_bind(f.body);
          if (!b.statement.empty() && !statements.contains(std::string(b.statement))) {
            error(out, "26000", "prepared statement does not exist");
          } else if (b.statement.empty() && !unnamed) {
            error(out, "26000", "unnamed prepared statement does not exist");
          } else {
            protocol::write_empty(out, '2');
          }
          break;
        }
        case 'D': {
          auto d = *protocol::decode_describe(f.body);
          if (d.kind == 'S' && !d.name.empty() && !statements.contains(std::string(d.name))) {
            error(out, "26000", "prepared statement does not exist");
          } else if (d.kind == 'S' && d.name.empty() && !unnamed) {
            error(out, "26000", "unnamed prepared statement does not exist");
          } else {
            if (d.kind == 'S') protocol::Writer(out).begin('t').i16(0).finish();
            protocol::write_row_description(out, {"x"});
          }
          break;
        }
        case 'E':
          protocol::write_data_row(out, {std::string("1")});
          protocol::write_command_complete(out, "SELECT 1");
          break;
        case 'C': {
          auto c = *protocol::decode_describe(f.body);
          if (c.kind == 'S') statements.erase(std::string(c.name));
          protocol::write_empty(out, '3');
          break;
        }
        case 'S':
          ignoring_ = false;
          protocol::write_ready_for_query(out, 'I');
          break;
        case 'Q':
          unnamed = false;  // a simple Query drops the unnamed statement
          protocol::write_command_complete(out, "SELECT 1");
          protocol::write_ready_for_query(out, 'I');
          break;
        default:
          break;
      }
    }
    return out;
  }

 private:
  void error(std::string& out, std::string_view code, std::string_view message) {
    protocol::write_error(out, {.code = code, .message = message});
    ignoring_ = true;
  }
  bool ignoring_ = false;
};

std::string parse(std::string_view name, std::string_view sql) {
  std::string out;
  protocol::write_parse(out, name, sql, {});
  return out;
}
std::string bind(std::string_view statement) {
  std::string out;
  protocol::write_bind(out, "", statement, std::string("\0\0\0\0\0\0", 6));
  return out;
}
std::string describe(char kind, std::string_view name) {
  std::string out;
  protocol::write_describe(out, 'D', kind, name);
  return out;
}
std::string close_statement(std::string_view name) {
  std::string out;
  protocol::write_describe(out, 'C', 'S', name);
  return out;
}
std::string execute() {
  std::string out;
  protocol::Writer(out).begin('E').cstring("").i32(0).finish();
  return out;
}
std::string sync() {
  std::string out;
  protocol::write_empty(out, 'S');
  return out;
}
std::string query(std::string_view sql) {
  std::string out;
  protocol::write_query(out, sql);
  return out;
}

// Message types of a backend byte stream, e.g. "12DCZ".
std::string types(std::string_view bytes) {
  std::string out;
  while (!bytes.empty()) {
    auto f = *protocol::next_frame(bytes, 1 << 20);
    out.push_back(f.type);
    bytes.remove_prefix(f.size());
  }
  return out;
}

// One client session as the proxy runs it against a given server connection.
struct Session {
  explicit Session(StatementRegistry& r) : registry(r) {}
  StatementRegistry& registry;
  ClientStatements mine;
  Rewriter rewriter{registry, mine};
  ResponseTracker tracker;

  // Sends the client's bytes through the rewriter to `server` and returns what the client gets.
  std::string round_trip(const std::string& client, FakeServer& server, PreparedCache& cache) {
    std::string to_server;
    for (std::string_view rest = client; !rest.empty();) {
      auto f = *protocol::next_frame(rest, 1 << 20);
      rest.remove_prefix(f.size());
      rewriter.note_unnamed(f, cache);  // as Exchange does for every frame it sends
      if (!rewriter.rewrite(f, cache, to_server, tracker)) {
        to_server.append(f.raw);
        tracker.push_plain(f);
      }
    }
    std::string to_client;
    tracker.flush_head(to_client, 'I');
    const std::string answers = server.answer(to_server);
    for (std::string_view rest = answers; !rest.empty();) {
      auto f = *protocol::next_frame(rest, 1 << 20);
      rest.remove_prefix(f.size());
      bool forward = true;
      std::string before;
      std::string after;
      tracker.on_frame(f, cache, 'I', forward, before, after);
      to_client += before;
      if (forward) to_client.append(f.raw);
      to_client += after;
    }
    tracker.flush_head(to_client, 'I');
    EXPECT_TRUE(tracker.idle());
    return to_client;
  }
};

// What a direct connection to PostgreSQL would answer, for comparison.
std::string direct(const std::string& client, FakeServer& server) { return server.answer(client); }

TEST(Prepared, FirstUseIsPreparedUnderAGlobalName) {
  StatementRegistry registry;
  FakeServer server;
  PreparedCache cache;
  Session a{registry};
  const auto client = parse("s1", "select 1") + bind("s1") + execute() + sync();
  FakeServer reference;
  EXPECT_EQ(types(a.round_trip(client, server, cache)), types(direct(client, reference)));
  EXPECT_EQ(types(a.round_trip(client, server, cache)), "12DCZ");
  ASSERT_EQ(server.statements.size(), 1U);
  EXPECT_EQ(server.statements.begin()->rfind("__pgdog_", 0), 0U);
}

TEST(Prepared, AnotherClientReusesTheServerStatementWithASyntheticParseComplete) {
  StatementRegistry registry;
  FakeServer server;
  PreparedCache cache;
  Session a{registry};
  Session b{registry};
  a.round_trip(parse("s1", "select 1") + sync(), server, cache);
  server.received.clear();
  // Another client, another name, same SQL: nothing to prepare.
  EXPECT_EQ(types(b.round_trip(parse("other", "select 1") + bind("other") + execute() + sync(),
                               server, cache)),
            "12DCZ");
  EXPECT_EQ(server.received, (std::vector<std::string>{"B", "E", "S"}));
}

TEST(Prepared, BindOnAServerThatLacksTheStatementPreparesItFirst) {
  StatementRegistry registry;
  FakeServer first;
  PreparedCache first_cache;
  FakeServer second;
  PreparedCache second_cache;
  Session a{registry};
  a.round_trip(parse("s1", "select 1") + sync(), first, first_cache);
  // The next transaction runs on another server.
  EXPECT_EQ(types(a.round_trip(bind("s1") + execute() + sync(), second, second_cache)), "2DCZ");
  EXPECT_EQ(second.received, (std::vector<std::string>{"P", "B", "E", "S"}));
  EXPECT_EQ(types(a.round_trip(describe('S', "s1") + sync(), second, second_cache)), "tTZ");
}

TEST(Prepared, ABindIsRenamedWithItsPortalAndParametersAsTheClientSentThem) {
  StatementRegistry registry;
  FakeServer server;
  PreparedCache cache;
  Session a{registry};
  a.round_trip(parse("s1", "select $1") + sync(), server, cache);
  ASSERT_EQ(server.statements.size(), 1U);
  const std::string global = *server.statements.begin();
  // One text parameter and a binary result; then a parameter whose length runs past the end:
  // the proxy reads only the names, and the server, under the statement's real name, judges
  // the rest (under the client's name it would have said the statement does not exist).
  std::string good;
  protocol::Writer(good).i16(0).i16(1).i32(2).bytes("42").i16(1).i16(1);
  std::string past_the_end;
  protocol::Writer(past_the_end).i16(0).i16(1).i32(100).bytes("42").i16(0);
  for (const std::string& rest : {good, past_the_end}) {
    std::string client;
    protocol::Writer(client).begin('B').cstring("portal").cstring("s1").bytes(rest).finish();
    std::string expected;
    protocol::Writer(expected).begin('B').cstring("portal").cstring(global).bytes(rest).finish();
    std::string_view bytes = client;
    const auto f = *protocol::next_frame(bytes, 1 << 20);
    std::string out;
    ResponseTracker tracker;
    ASSERT_TRUE(a.rewriter.rewrite(f, cache, out, tracker));
    EXPECT_EQ(out, expected);
    ASSERT_EQ(tracker.expect().size(), 1U);
    EXPECT_EQ(tracker.expect().front().message, 'B');
    EXPECT_TRUE(tracker.passthrough());  // its answers go to the client as they come
  }
}

TEST(Prepared, SameNameDifferentSqlNeverCollide) {
  StatementRegistry registry;
  FakeServer server;
  PreparedCache cache;
  Session a{registry};
  Session b{registry};
  a.round_trip(parse("s", "select 1") + sync(), server, cache);
  b.round_trip(parse("s", "select 2") + sync(), server, cache);
  EXPECT_EQ(server.statements.size(), 2U);
  EXPECT_NE(a.mine.at("s")->name, b.mine.at("s")->name);
}

TEST(Prepared, ErrorInAnAddedParseReachesTheClientAndUndoesTheCache) {
  StatementRegistry registry;
  FakeServer first;
  PreparedCache first_cache;
  FakeServer second;
  PreparedCache second_cache;
  Session a{registry};
  a.round_trip(parse("s1", "select bad") + sync(), first, first_cache);  // fails on first
  EXPECT_TRUE(first_cache.size() == 0);
  // The client still has the name (PostgreSQL would not); binding it fails the same way.
  a.mine["s1"] = registry.intern("select bad", {});
  EXPECT_EQ(types(a.round_trip(bind("s1") + execute() + sync(), second, second_cache)), "EZ");
  EXPECT_EQ(second_cache.size(), 0U);
}

TEST(Prepared, SyntheticAnswersAfterAnErrorAreDroppedLikeTheServerWould) {
  StatementRegistry registry;
  FakeServer server;
  PreparedCache cache;
  Session a{registry};
  a.round_trip(parse("s1", "select 1") + sync(), server, cache);
  // Bind of an unknown statement fails; the Parse after it would be skipped by PostgreSQL.
  const auto client = bind("nope") + parse("s2", "select 1") + close_statement("s1") + sync();
  FakeServer reference;
  reference.statements.insert("s1");
  EXPECT_EQ(types(a.round_trip(client, server, cache)), types(direct(client, reference)));
}

TEST(Prepared, CloseAndDeallocateAreAnsweredInOrder) {
  StatementRegistry registry;
  FakeServer server;
  PreparedCache cache;
  Session a{registry};
  a.round_trip(parse("s1", "select 1") + parse("s2", "select 2") + sync(), server, cache);
  EXPECT_EQ(types(a.round_trip(bind("s1") + execute() + close_statement("s1") + sync(), server,
                               cache)),
            "2DC3Z");
  EXPECT_FALSE(a.mine.contains("s1"));
  // The statement stays on the server for other clients.
  EXPECT_EQ(server.statements.size(), 2U);
  EXPECT_EQ(types(a.round_trip(query("DEALLOCATE s2"), server, cache)), "CZ");
  EXPECT_FALSE(a.mine.contains("s2"));
  EXPECT_EQ(types(a.round_trip(query("deallocate all"), server, cache)), "CZ");
  // Not one of ours: the server answers.
  EXPECT_EQ(types(a.round_trip(query("DEALLOCATE unknown"), server, cache)), "CZ");
  EXPECT_EQ(server.received.back(), "Q");
}

TEST(Prepared, DeallocateThroughTheUnnamedStatementIsAnsweredByTheProxy) {
  // psycopg sends "DEALLOCATE name" as Parse(unnamed)/Bind/Describe portal/Execute/Sync. The
  // server never had the client's name, so the proxy answers all but the Sync.
  StatementRegistry registry;
  FakeServer server;
  PreparedCache cache;
  Session a{registry};
  a.round_trip(parse("s1", "select 1") + sync(), server, cache);
  server.received.clear();
  const auto dealloc = parse("", "DEALLOCATE s1") + bind("") + describe('P', "") + execute() + sync();
  EXPECT_EQ(types(a.round_trip(dealloc, server, cache)), "12nCZ");
  EXPECT_EQ(server.received, std::vector<std::string>{"S"});
  EXPECT_FALSE(a.mine.contains("s1"));
  // The next unnamed statement is the server's again.
  server.received.clear();
  EXPECT_EQ(types(a.round_trip(parse("", "select 2") + bind("") + execute() + sync(), server,
                               cache)),
            "12DCZ");
  EXPECT_EQ(server.received, (std::vector<std::string>{"P", "B", "E", "S"}));
  // Not one of ours: the server answers, as PostgreSQL would.
  server.received.clear();
  a.round_trip(parse("", "DEALLOCATE unknown") + bind("") + execute() + sync(), server, cache);
  EXPECT_EQ(server.received, (std::vector<std::string>{"P", "B", "E", "S"}));
}

TEST(Prepared, EvictionClosesTheLeastRecentlyUsedStatement) {
  StatementRegistry registry;
  FakeServer server;
  PreparedCache cache(1);
  Session a{registry};
  a.round_trip(parse("s1", "select 1") + sync(), server, cache);
  EXPECT_EQ(types(a.round_trip(parse("s2", "select 2") + bind("s2") + execute() + sync(), server,
                               cache)),
            "12DCZ");
  EXPECT_EQ(server.statements.size(), 1U);
  // s1 is needed again: s2 goes, s1 comes back, and the client sees only its own answers.
  EXPECT_EQ(types(a.round_trip(bind("s1") + execute() + sync(), server, cache)), "2DCZ");
  EXPECT_EQ(server.statements.size(), 1U);
  EXPECT_EQ(*server.statements.begin(), a.mine.at("s1")->name);
}

TEST(Prepared, UnnamedStatementsPassThroughUntouched) {
  StatementRegistry registry;
  FakeServer server;
  PreparedCache cache;
  Session a{registry};
  const auto client = parse("", "select 1") + bind("") + execute() + sync();
  std::string out;
  for (std::string_view rest = client; !rest.empty();) {
    auto f = *protocol::next_frame(rest, 1 << 20);
    rest.remove_prefix(f.size());
    EXPECT_FALSE(a.rewriter.needs_rewrite(f));
    EXPECT_FALSE(a.rewriter.rewrite(f, cache, out, a.tracker));
  }
  EXPECT_TRUE(out.empty());
}

TEST(Prepared, TheUnnamedStatementFollowsItsClientToAnotherServer) {
  using Types = std::vector<std::string>;
  StatementRegistry registry;
  FakeServer s1;
  FakeServer s2;
  PreparedCache c1;
  PreparedCache c2;
  Session a{registry};
  // psql's \gdesc: Parse and Sync on one server, then Describe and Sync, here on another.
  EXPECT_EQ(types(a.round_trip(parse("", "select 1") + sync(), s1, c1)), "1Z");
  EXPECT_EQ(types(a.round_trip(describe('S', "") + sync(), s2, c2)), "tTZ");
  EXPECT_EQ(s2.received, (Types{"P", "D", "S"}));
  // The first server still holds it: nothing is added there.
  s1.received.clear();
  EXPECT_EQ(types(a.round_trip(bind("") + execute() + sync(), s1, c1)), "2DCZ");
  EXPECT_EQ(s1.received, (Types{"B", "E", "S"}));
  // Another client's unnamed Parse replaces it on the second server.
  Session b{registry};
  EXPECT_EQ(types(b.round_trip(parse("", "select 2") + sync(), s2, c2)), "1Z");
  s2.received.clear();
  EXPECT_EQ(types(a.round_trip(bind("") + execute() + sync(), s2, c2)), "2DCZ");
  EXPECT_EQ(s2.received, (Types{"P", "B", "E", "S"}));
  // A simple Query drops the client's unnamed statement, as in PostgreSQL: nothing is sent
  // again, and the server says it does not exist.
  EXPECT_EQ(types(a.round_trip(query("select 3"), s1, c1)), "CZ");
  s1.received.clear();
  EXPECT_EQ(types(a.round_trip(bind("") + execute() + sync(), s1, c1)), "EZ");
  EXPECT_EQ(s1.received, (Types{"B", "E", "S"}));
}

TEST(Prepared, RegistryForgetsStatementsNobodyUses) {
  StatementRegistry registry;
  std::string first_name;
  {
    auto s = registry.intern("select 1", {});
    first_name = s->name;
    EXPECT_EQ(registry.intern("select 1", {})->name, first_name);
  }
  EXPECT_NE(registry.intern("select 1", {})->name, first_name);
}


TEST(Prepared, AStatementAServerDescribedIsPreparedWithoutAServer) {
  StatementRegistry registry;
  FakeServer server;
  PreparedCache cache;
  Session a{registry};
  Session b{registry};
  a.round_trip(parse("s1", "select 1") + describe('S', "s1") + sync(), server, cache);
  // Another client prepares and describes the same statement: the answers are what a direct
  // connection gives, byte for byte, and no server is involved.
  const auto client = parse("mine", "select 1") + describe('S', "mine") + sync();
  ASSERT_TRUE(b.rewriter.can_answer_alone(client, 1 << 20));
  std::string answers;
  b.rewriter.answer_alone(client, 1 << 20, answers);
  FakeServer reference;
  EXPECT_EQ(answers, direct(client, reference));
  // The statement is the client's: it runs on a server that never saw it.
  FakeServer other;
  PreparedCache other_cache;
  EXPECT_EQ(types(b.round_trip(bind("mine") + execute() + sync(), other, other_cache)), "2DCZ");
  EXPECT_EQ(other.received, (std::vector<std::string>{"P", "B", "E", "S"}));
}

TEST(Prepared, OnlyWhatAServerAcceptedAndDescribedIsAnsweredAlone) {
  StatementRegistry registry;
  FakeServer server;
  PreparedCache cache;
  Session a{registry};
  Session b{registry};
  a.round_trip(parse("s1", "select 1") + sync(), server, cache);
  a.round_trip(parse("s2", "select bad") + sync(), server, cache);
  // Accepted but never described: a Parse alone, yes; with a Describe, no.
  EXPECT_TRUE(b.rewriter.can_answer_alone(parse("x", "select 1") + sync(), 1 << 20));
  EXPECT_FALSE(
      b.rewriter.can_answer_alone(parse("x", "select 1") + describe('S', "x") + sync(), 1 << 20));
  // Refused by the server, never seen, unnamed, or followed by a request that needs a server.
  EXPECT_FALSE(b.rewriter.can_answer_alone(parse("y", "select bad") + sync(), 1 << 20));
  EXPECT_FALSE(b.rewriter.can_answer_alone(parse("z", "select 2") + sync(), 1 << 20));
  EXPECT_FALSE(b.rewriter.can_answer_alone(parse("", "select 1") + sync(), 1 << 20));
  EXPECT_FALSE(b.rewriter.can_answer_alone(
      parse("x", "select 1") + bind("x") + execute() + sync(), 1 << 20));
  EXPECT_FALSE(b.rewriter.can_answer_alone(sync(), 1 << 20));
}
}  // namespace
}  // namespace pgdog::backend

namespace pgdog::backend {
namespace {

TEST(Prepared, DeallocateIsFoundWhereverItIs) {
  auto query_frame = [](std::string_view sql, std::string& storage) {
    storage.clear();
    protocol::write_query(storage, sql);
    return *protocol::next_frame(storage, 1 << 20);
  };
  std::string buf;
  StatementRegistry registry;
  ClientStatements mine;
  const Rewriter rewriter{registry, mine};
  EXPECT_TRUE(rewriter.needs_rewrite(query_frame("DEALLOCATE s1", buf)));
  EXPECT_TRUE(rewriter.needs_rewrite(query_frame("-- x\n; deallocate s1", buf)));
  EXPECT_TRUE(rewriter.needs_rewrite(query_frame("/* d */ DeAlLoCaTe ALL", buf)));
  EXPECT_FALSE(rewriter.needs_rewrite(query_frame("SELECT abalance FROM pgbench_accounts", buf)));
  EXPECT_FALSE(rewriter.needs_rewrite(query_frame("select 'deallocat'", buf)));
  EXPECT_FALSE(rewriter.needs_rewrite(query_frame("", buf)));
}

}  // namespace
}  // namespace pgdog::backend

namespace pgdog::backend {
namespace {

TEST(Prepared, MirrorDeallocatesAStatementOfItsClientsSnapshot) {
  // A mirror worker replays against the statements the client had when it committed; its
  // DEALLOCATE of one of those is answered like the primary path answered it, not sent.
  StatementRegistry registry;
  ClientStatements snapshot;
  snapshot["s1"] = registry.intern("select 1", {});
  ClientStatements overlay;
  Rewriter rewriter{registry, overlay, &snapshot};
  EXPECT_EQ(rewriter.deallocate("DEALLOCATE s1"), "DEALLOCATE");
  EXPECT_EQ(rewriter.deallocate("DEALLOCATE other"), std::nullopt);
}

}  // namespace
}  // namespace pgdog::backend
