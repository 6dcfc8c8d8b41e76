#include <gtest/gtest.h>

#include <vector>

#include "backend/exchange.hpp"
#include "support/wire.hpp"

namespace pgdog::backend {
namespace {

using Next = Exchange::Next;
using config::PoolerMode;

constexpr std::size_t kMax = 1 << 20;

// One client and the server it holds, driven the way the session drives them: client bytes
// through read_client() and prepare(), server bytes through read_server() until all are handled.
struct Conversation {
  explicit Conversation(PoolerMode mode = PoolerMode::transaction) : exchange(mode, kMax) {
    exchange.attached();
  }

  // What reaches the server for `bytes` (all whole frames).
  std::string client(std::string_view bytes) {
    const auto batch = exchange.read_client(bytes);
    EXPECT_EQ(batch.size, bytes.size());
    EXPECT_TRUE(batch.violation.empty()) << batch.violation;
    return std::string(exchange.prepare(bytes.substr(0, batch.size), server));
  }

  // What the client gets for `bytes` from the server; events summed over the passes.
  std::string answer(std::string_view bytes) {
    buffered += bytes;
    std::string out;
    while (true) {
      auto chunk = exchange.read_server(buffered, server);
      EXPECT_TRUE(chunk.lost.empty()) << chunk.lost;
      out.append(chunk.out);
      add(chunk.events);
      buffered.erase(0, chunk.done);
      if (chunk.done == 0 || buffered.empty()) break;
    }
    return out;
  }

  Next next() const { return exchange.next(&server, !buffered.empty()); }

  void add(const ServerEvents& e) {
    events.queries += e.queries;
    events.transactions += e.transactions;
    events.errors += e.errors;
    events.request_done = events.request_done || e.request_done;
    events.began = events.began || e.began;
    events.ended = events.ended || e.ended;
  }

  Exchange exchange;
  ServerState server;
  std::string buffered;  // server bytes not handled yet
  ServerEvents events;
};

TEST(Exchange, SimpleQueryReleasesAtReadyForQueryIdle) {
  Conversation c;
  const auto q = wire::query("SELECT 1");
  const auto batch = c.exchange.read_client(q);
  EXPECT_TRUE(batch.started);
  EXPECT_EQ(c.exchange.prepare(q, c.server), q);  // forwarded as it is
  EXPECT_EQ(c.next(), Next::server);
  const auto answer = wire::select_answer();
  EXPECT_EQ(c.answer(answer), answer);
  EXPECT_EQ(c.events.queries, 1u);
  EXPECT_EQ(c.events.transactions, 1u);
  EXPECT_TRUE(c.events.request_done);
  EXPECT_EQ(c.next(), Next::release);
  EXPECT_TRUE(c.exchange.clean(c.server));
  EXPECT_FALSE(c.exchange.busy());
}

TEST(Exchange, NoServerMeansTheClientSpeaks) {
  Exchange e(PoolerMode::transaction, kMax);
  EXPECT_EQ(e.next(nullptr, false), Next::client);
}

TEST(Exchange, ClientFramesSplitAtEveryByteAreAcceptedOnlyWhole) {
  const auto bytes = wire::query("SELECT 1") + wire::parse("", "SELECT 2") + wire::sync();
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    Exchange e(PoolerMode::transaction, kMax);
    const auto first = e.read_client(std::string_view(bytes).substr(0, cut));
    EXPECT_LE(first.size, cut);
    const auto rest = e.read_client(std::string_view(bytes).substr(first.size));
    EXPECT_EQ(first.size + rest.size, bytes.size()) << "cut at " << cut;
    EXPECT_TRUE(first.violation.empty() && rest.violation.empty());
  }
}

TEST(Exchange, ServerAnswerSplitAtEveryByteGivesTheSameBytesAndOneRelease) {
  const auto answer = wire::select_answer("abc");
  for (std::size_t cut = 0; cut <= answer.size(); ++cut) {
    Conversation c;
    c.client(wire::query("SELECT 'abc'"));
    std::string out = c.answer(std::string_view(answer).substr(0, cut));
    if (cut < answer.size()) {
      EXPECT_EQ(c.next(), Next::server) << "cut at " << cut;
    }
    out += c.answer(std::string_view(answer).substr(cut));
    EXPECT_EQ(out, answer) << "cut at " << cut;
    EXPECT_EQ(c.events.queries, 1u);
    EXPECT_EQ(c.next(), Next::release);
  }
}

TEST(Exchange, PipelinedQueriesReleaseOnlyAfterTheLastAnswer) {
  Conversation c;
  c.client(wire::query("SELECT 1") + wire::query("SELECT 2"));
  c.answer(wire::select_answer());
  EXPECT_EQ(c.next(), Next::server);  // one ReadyForQuery still owed
  c.answer(wire::select_answer());
  EXPECT_EQ(c.next(), Next::release);
  EXPECT_EQ(c.events.queries, 2u);
  EXPECT_EQ(c.events.transactions, 2u);
}

TEST(Exchange, TwoAnswersInOneReadAreOneChunkUpToTheRelease) {
  Conversation c;
  c.client(wire::query("SELECT 1") + wire::query("SELECT 2"));
  const auto both = wire::select_answer() + wire::select_answer();
  auto chunk = c.exchange.read_server(both, c.server);
  EXPECT_EQ(chunk.done, both.size());
  EXPECT_EQ(chunk.out, both);
  EXPECT_EQ(chunk.events.queries, 2u);
}

TEST(Exchange, BytesAfterAReleasableReadyForQueryAreHandledBeforeTheRelease) {
  Conversation c;
  c.client(wire::query("SELECT 1"));
  const auto answer = wire::select_answer();
  const auto data = answer + wire::notice("late");
  auto chunk = c.exchange.read_server(data, c.server);
  EXPECT_EQ(chunk.done, answer.size());  // stops right after the ReadyForQuery
  EXPECT_EQ(c.exchange.next(&c.server, true), Next::server);
}

TEST(Exchange, ExtendedProtocolBatchWithSync) {
  Conversation c;
  c.client(wire::parse("", "SELECT 1") + wire::bind("") + wire::describe('P', "") +
           wire::execute() + wire::sync());
  EXPECT_EQ(c.next(), Next::server);
  c.answer(wire::parse_complete() + wire::bind_complete() + wire::row_description() +
           wire::data_row("1") + wire::complete("SELECT 1") + wire::ready());
  EXPECT_EQ(c.next(), Next::release);
}

TEST(Exchange, BatchWithoutSyncLetsBothSidesSpeakAndHoldsTheServer) {
  Conversation c;
  c.client(wire::parse("", "SELECT 1") + wire::bind("") + wire::execute() + wire::flush());
  EXPECT_EQ(c.next(), Next::either);
  c.answer(wire::parse_complete() + wire::bind_complete() + wire::data_row("1") +
           wire::complete("SELECT 1"));
  EXPECT_EQ(c.next(), Next::either);  // answered, but not synced: the server stays
  c.client(wire::sync());
  EXPECT_EQ(c.next(), Next::server);
  c.answer(wire::ready());
  EXPECT_EQ(c.next(), Next::release);
}

TEST(Exchange, TransactionBlockKeepsTheServerUntilItEnds) {
  Conversation c;
  c.client(wire::query("BEGIN"));
  c.answer(wire::complete("BEGIN") + wire::ready('T'));
  EXPECT_TRUE(c.events.began);
  EXPECT_EQ(c.events.transactions, 0u);
  EXPECT_EQ(c.next(), Next::client);
  EXPECT_TRUE(c.exchange.busy());
  c.client(wire::query("INSERT"));
  c.answer(wire::complete("INSERT 0 1") + wire::ready('T'));
  EXPECT_EQ(c.next(), Next::client);
  c.client(wire::query("COMMIT"));
  c.answer(wire::complete("COMMIT") + wire::ready('I'));
  EXPECT_TRUE(c.events.ended);
  EXPECT_EQ(c.events.transactions, 1u);
  EXPECT_EQ(c.next(), Next::release);
}

TEST(Exchange, FailedTransactionHoldsTheServerUntilRollback) {
  Conversation c;
  c.client(wire::query("BEGIN; SELECT x"));
  c.answer(wire::complete("BEGIN") + wire::error("42703") + wire::ready('E'));
  EXPECT_EQ(c.events.errors, 1u);
  EXPECT_EQ(c.next(), Next::client);
  EXPECT_FALSE(c.exchange.clean(c.server));
  c.client(wire::query("ROLLBACK"));
  c.answer(wire::complete("ROLLBACK") + wire::ready('I'));
  EXPECT_EQ(c.next(), Next::release);
}

TEST(Exchange, ErrorMidBatchStillReleasesAtSync) {
  Conversation c;
  c.client(wire::parse("", "SELECT x") + wire::bind("") + wire::execute() + wire::sync());
  c.answer(wire::error("42703") + wire::ready());
  EXPECT_EQ(c.events.errors, 1u);
  EXPECT_EQ(c.next(), Next::release);
}

TEST(Exchange, FatalErrorBreaksTheServer) {
  Conversation c;
  c.client(wire::query("SELECT 1"));
  c.answer(wire::error("57P01", "FATAL"));
  EXPECT_TRUE(c.server.broken);
  EXPECT_EQ(c.next(), Next::server);  // the end of the connection comes next
  EXPECT_FALSE(c.exchange.clean(c.server));
}

TEST(Exchange, CopyInWaitsForTheClientThenTheServer) {
  Conversation c;
  c.client(wire::query("COPY t FROM STDIN"));
  c.answer(wire::copy_in_response());
  EXPECT_EQ(c.next(), Next::client);  // the server waits for the data
  c.client(wire::copy_data("1\n"));
  EXPECT_EQ(c.next(), Next::client);
  c.client(wire::copy_data("2\n") + wire::copy_done());
  EXPECT_EQ(c.next(), Next::server);
  c.answer(wire::complete("COPY 2") + wire::ready());
  EXPECT_EQ(c.next(), Next::release);
}

TEST(Exchange, CopyOutStreamsRowsLargerThanTheBufferLimit) {
  Exchange e(PoolerMode::transaction, 64);  // whole frames above 64 bytes are refused...
  e.attached();
  ServerState server;
  const auto q = wire::query("COPY t TO STDOUT");
  e.read_client(q);
  e.prepare(q, server);
  const std::string big(1000, 'x');  // ...but COPY data streams through in pieces
  const auto answer = wire::copy_out_response() + wire::copy_data(big) + wire::copy_done() +
                      wire::complete("COPY 1") + wire::ready();
  // Fed 50 bytes at a time, the way reads bring them; unhandled bytes wait for more.
  std::string buffered;
  std::string out;
  for (std::size_t at = 0; at < answer.size(); at += 50) {
    buffered += answer.substr(at, 50);
    while (true) {
      auto chunk = e.read_server(buffered, server);
      ASSERT_TRUE(chunk.lost.empty()) << chunk.lost;
      out.append(chunk.out);
      buffered.erase(0, chunk.done);
      if (chunk.done == 0 || buffered.empty()) break;
    }
  }
  EXPECT_TRUE(buffered.empty());
  EXPECT_EQ(out, answer);
  EXPECT_EQ(e.next(&server, false), Next::release);
}

TEST(Exchange, SessionModeNeverReleasesAndListensToBothSides) {
  Conversation c(PoolerMode::session);
  c.client(wire::query("SELECT 1"));
  EXPECT_EQ(c.next(), Next::server);
  c.answer(wire::select_answer());
  EXPECT_EQ(c.next(), Next::either);  // NOTIFY may come while the client is idle
  EXPECT_TRUE(c.exchange.clean(c.server));
}

TEST(Exchange, ReadyForQueryInEachStateSetsTheServerStatus) {
  for (char status : {'I', 'T', 'E'}) {
    Conversation c;
    c.client(wire::query("x"));
    c.answer(wire::complete("x") + wire::ready(status));
    EXPECT_EQ(c.server.status, status);
    EXPECT_EQ(c.next(), status == 'I' ? Next::release : Next::client);
  }
}

TEST(Exchange, ParameterStatusFollowsTheClientAndTheServer) {
  Conversation c;
  c.client(wire::query("SET TimeZone = 'UTC'"));
  c.answer(wire::parameter_status("TimeZone", "UTC") + wire::complete("SET") + wire::ready());
  EXPECT_EQ(c.exchange.params().get("TimeZone"), "UTC");
  EXPECT_EQ(c.server.params.get("TimeZone"), "UTC");
  EXPECT_EQ(c.server.synced_hash, c.exchange.params().hash());
}

TEST(Exchange, ProtocolViolationsFollowTheValidFrames) {
  Exchange e(PoolerMode::transaction, kMax);
  const auto q = wire::query("SELECT 1");
  auto batch = e.read_client(q + "?" + std::string("\0\0\0\4", 4));
  EXPECT_EQ(batch.size, q.size());
  EXPECT_NE(batch.violation.find("invalid frontend message type '?'"), std::string::npos);

  Exchange t(PoolerMode::transaction, kMax);
  batch = t.read_client(q + wire::terminate());
  EXPECT_EQ(batch.size, q.size());
  EXPECT_TRUE(batch.terminate);

  Exchange l(PoolerMode::transaction, kMax);
  std::string bad = "Q";
  bad += std::string("\0\0\0\2", 4);  // a length below the header's own four bytes
  batch = l.read_client(bad);
  EXPECT_EQ(batch.size, 0u);
  EXPECT_NE(batch.violation.find("invalid message"), std::string::npos);
}

TEST(Exchange, InvalidServerMessageIsALostServer) {
  Conversation c;
  c.client(wire::query("SELECT 1"));
  std::string bad = "Z";
  bad += std::string("\0\0\0\1", 4);
  auto chunk = c.exchange.read_server(bad, c.server);
  EXPECT_FALSE(chunk.lost.empty());
  EXPECT_TRUE(c.server.broken);
}

TEST(Exchange, FailedCheckoutAnswersLikePostgreSQL) {
  Exchange e(PoolerMode::transaction, kMax);
  const auto batch = wire::parse("", "SELECT 1") + wire::bind("") + wire::execute() +
                     wire::sync() + wire::query("SELECT 2");
  e.read_client(batch);
  EXPECT_TRUE(e.busy());
  const auto out = e.fail(batch, {.code = "08006", .message = "no server"});
  EXPECT_EQ(wire::types(out), "EZEZ");  // one error per batch up to Sync, one per Query
  EXPECT_FALSE(e.busy());
}

// Records what the tap sees.
struct RecordingTap : FrameTap {
  std::string client_types;
  std::string server_types;
  void client_frame(const protocol::Frame& f) override { client_types.push_back(f.type); }
  bool wants_server_frame(char type) const override {
    return wanted.find(type) != std::string::npos;
  }
  void server_frame(const protocol::Frame& f) override { server_types.push_back(f.type); }
  std::string wanted = "CZ";
  bool wants_pieces() const override { return false; }
  void server_piece(char, std::string_view) override {}
  void keeps_server(Keep keep) override { kept.push_back(keep); }
  void pins_known(bool keeps) override { known.push_back(keeps); }
  std::vector<Keep> kept;
  std::vector<bool> known;
};

TEST(Exchange, TapSeesWhatGoesAndTheAnswersItWants) {
  Conversation c;
  RecordingTap tap;
  c.exchange.set_tap(&tap);
  c.client(wire::query("SELECT 1"));
  c.answer(wire::select_answer());
  EXPECT_EQ(tap.client_types, "Q");
  EXPECT_EQ(tap.server_types, "CZ");
}

TEST(Exchange, RowsReachATapThatWantsThemAndTheClientUnchanged) {
  // Rows skip the exchange's bookkeeping, except for a tap comparing results.
  StatementRegistry registry;
  for (const bool rewriting : {false, true}) {
    Conversation c;
    if (rewriting) c.exchange.rewrite_statements(registry);
    RecordingTap tap;
    tap.wanted = "DCZ";
    c.exchange.set_tap(&tap);
    c.client(wire::query("SELECT 1"));
    const auto answer = wire::select_answer();
    EXPECT_EQ(c.answer(answer), answer) << rewriting;
    EXPECT_EQ(tap.server_types, "DCZ") << rewriting;
  }
}

// --- Prepared statements in transaction mode: the rewriter inside the exchange ---

struct Rewriting : Conversation {
  explicit Rewriting(StatementRegistry& registry) { exchange.rewrite_statements(registry); }
};

TEST(Exchange, NamedStatementIsPreparedUnderItsGlobalName) {
  StatementRegistry registry;
  Rewriting c(registry);
  const auto sent = c.client(wire::parse("s1", "SELECT 1") + wire::bind("s1") + wire::execute() +
                             wire::sync());
  EXPECT_EQ(wire::types(sent), "PBES");
  EXPECT_EQ(sent.find("s1"), std::string::npos);  // the client's name never reaches the server
  EXPECT_NE(sent.find("__pgdog_"), std::string::npos);
  const auto out = c.answer(wire::parse_complete() + wire::bind_complete() + wire::data_row("1") +
                            wire::complete("SELECT 1") + wire::ready());
  EXPECT_EQ(wire::types(out), "12DCZ");
  EXPECT_EQ(c.next(), Next::release);
  EXPECT_EQ(c.server.prepared.size(), 1u);
}

TEST(Exchange, StatementTheServerHasIsAnsweredByTheProxy) {
  StatementRegistry registry;
  Rewriting first(registry);
  first.client(wire::parse("s1", "SELECT 1") + wire::sync());
  first.answer(wire::parse_complete() + wire::ready());
  ASSERT_EQ(first.next(), Next::release);

  // Another client prepares the same statement on the same server: nothing to send for it.
  Rewriting second(registry);
  second.server.prepared = first.server.prepared;
  const auto sent = second.client(wire::parse("mine", "SELECT 1") + wire::flush());
  EXPECT_EQ(wire::types(sent), "H");
  EXPECT_EQ(second.next(), Next::answer);  // ParseComplete is owed now, whatever the server does
  EXPECT_EQ(wire::types(second.exchange.answer_now(second.server)), "1");
  EXPECT_EQ(second.next(), Next::either);
}

TEST(Exchange, DeallocateIsAnsweredWithoutTheServer) {
  StatementRegistry registry;
  Rewriting c(registry);
  c.client(wire::parse("s1", "SELECT 1") + wire::sync());
  c.answer(wire::parse_complete() + wire::ready());
  const auto sent = c.client(wire::query("DEALLOCATE s1"));
  EXPECT_TRUE(sent.empty());
  EXPECT_EQ(c.next(), Next::answer);
  EXPECT_EQ(wire::types(c.exchange.answer_now(c.server)), "CZ");
  EXPECT_EQ(c.next(), Next::release);
  EXPECT_TRUE(c.exchange.statements().empty());
}

TEST(Exchange, DiscardAllForgetsEveryStatement) {
  StatementRegistry registry;
  Rewriting c(registry);
  c.client(wire::parse("s1", "SELECT 1") + wire::sync());
  c.answer(wire::parse_complete() + wire::ready());
  ASSERT_EQ(c.server.prepared.size(), 1u);
  c.client(wire::query("DISCARD ALL"));
  c.answer(wire::complete("DISCARD ALL") + wire::ready());
  EXPECT_EQ(c.server.prepared.size(), 0u);
  EXPECT_TRUE(c.exchange.statements().empty());
}

TEST(Exchange, FailedParseIsForgottenAndTheServerStaysUsable) {
  StatementRegistry registry;
  Rewriting c(registry);
  c.client(wire::parse("s1", "SELEC 1") + wire::bind("s1") + wire::execute() + wire::sync());
  const auto out = c.answer(wire::error("42601") + wire::ready());
  EXPECT_EQ(wire::types(out), "EZ");
  EXPECT_TRUE(c.exchange.statements().empty());  // as in PostgreSQL, the name never existed
  EXPECT_EQ(c.server.prepared.size(), 0u);
  EXPECT_EQ(c.next(), Next::release);
}

}  // namespace
}  // namespace pgdog::backend

namespace pgdog::backend {
namespace {

// --- Session state in transaction mode: settings read back, pins ---

TEST(ExchangeSession, SetOutsideATransactionIsReadBackBeforeTheRelease) {
  Conversation c;
  c.client(wire::query("SET search_path TO a, b"));
  c.answer(wire::complete("SET") + wire::ready());
  ASSERT_EQ(c.next(), Next::settle);  // not released before the setting is known
  EXPECT_EQ(c.exchange.settle_query(c.server),
            "SELECT current_setting('search_path', true)");
  EXPECT_FALSE(c.exchange.settled({std::string("a, b")}, c.server));  // nothing to re-apply
  EXPECT_EQ(c.exchange.params().get("search_path"), "a, b");
  EXPECT_EQ(c.server.applied.get("search_path"), "a, b");  // the next client resets it
  EXPECT_EQ(c.server.synced_hash, c.exchange.params().hash());
  EXPECT_EQ(c.next(), Next::release);
}

TEST(ExchangeSession, TheRewritingExchangeNotesASetInABatchOfPlainQueries) {
  // With statements rewritten (transaction mode as it runs), one scan of a Query decides both
  // whether it may DEALLOCATE and whether it may have an effect: the plain queries around the
  // SET must not hide it, in either order.
  for (const bool set_first : {true, false}) {
    StatementRegistry registry;
    Rewriting c(registry);
    const auto plain = wire::query("SELECT abalance FROM pgbench_accounts WHERE aid = 1");
    const auto set = wire::query("SET search_path TO a, b");
    c.client(set_first ? set + plain : plain + set);
    c.answer(wire::complete("X") + wire::ready() + wire::complete("X") + wire::ready());
    ASSERT_EQ(c.next(), Next::settle) << set_first;
    EXPECT_EQ(c.exchange.settle_query(c.server), "SELECT current_setting('search_path', true)");
  }
  StatementRegistry registry;
  Rewriting c(registry);
  c.client(wire::query("SELECT 1"));
  c.answer(wire::complete("SELECT 1") + wire::ready());
  EXPECT_EQ(c.next(), Next::release);
}

TEST(ExchangeSession, SetInARolledBackBlockLeavesWhatTheServerSays) {
  Conversation c;
  c.client(wire::query("BEGIN"));
  c.answer(wire::complete("BEGIN") + wire::ready('T'));
  c.client(wire::query("SET work_mem = '64MB'"));
  c.answer(wire::complete("SET") + wire::ready('T'));
  EXPECT_EQ(c.next(), Next::client);  // read back at the end of the block, not inside it
  c.client(wire::query("ROLLBACK"));
  c.answer(wire::complete("ROLLBACK") + wire::ready('I'));
  ASSERT_EQ(c.next(), Next::settle);
  c.exchange.settle_query(c.server);
  c.exchange.settled({std::string("4MB")}, c.server);
  // Not a setting the client asked for: the rolled-back SET leaves nothing to carry over.
  EXPECT_FALSE(c.exchange.params().get("work_mem"));
  EXPECT_EQ(c.next(), Next::release);
}

TEST(ExchangeSession, SetLocalIsNotReadBack) {
  Conversation c;
  c.client(wire::query("BEGIN; SET LOCAL lock_timeout = 10; COMMIT"));
  c.answer(wire::complete("BEGIN") + wire::complete("SET") + wire::complete("COMMIT") +
           wire::ready());
  EXPECT_EQ(c.next(), Next::release);
}

TEST(ExchangeSession, ResetOfAStartupParameterReturnsToTheClientsValue) {
  Conversation c(PoolerMode::session);  // in both modes
  protocol::Params startup;
  startup.set("DateStyle", "Postgres, MDY");
  c.exchange.set_startup(std::make_shared<const protocol::Params>(startup));
  c.exchange.params() = startup;
  c.client(wire::query("RESET datestyle"));
  c.answer(wire::parameter_status("DateStyle", "ISO, MDY") + wire::complete("RESET") +
           wire::ready());
  ASSERT_EQ(c.next(), Next::settle);
  c.exchange.settle_query(c.server);
  // The server went back to its own default: the client's must be applied again.
  EXPECT_TRUE(c.exchange.settled({std::string("ISO, MDY")}, c.server));
  EXPECT_EQ(c.exchange.params().get("DateStyle"), "Postgres, MDY");
  EXPECT_NE(c.server.synced_hash, c.exchange.params().hash());
}

TEST(ExchangeSession, ResetInsideABlockIsSettledAtOnce) {
  Conversation c;
  protocol::Params startup;
  startup.set("TimeZone", "Europe/Paris");
  c.exchange.set_startup(std::make_shared<const protocol::Params>(startup));
  c.client(wire::query("BEGIN"));
  c.answer(wire::complete("BEGIN") + wire::ready('T'));
  c.client(wire::query("RESET TimeZone"));
  c.answer(wire::complete("RESET") + wire::ready('T'));
  // The statements after it in the block must see the client's value already.
  ASSERT_EQ(c.next(), Next::settle);
  EXPECT_EQ(c.exchange.settle_query(c.server), "SELECT current_setting('timezone', true)");
  EXPECT_TRUE(c.exchange.settled({std::string("UTC")}, c.server));
  EXPECT_EQ(c.next(), Next::client);
}

// What the server answers the settle query's pin columns with: which kinds it holds.
std::vector<std::optional<std::string>> holding(std::initializer_list<protocol::sql::Pin> kinds) {
  std::vector<std::optional<std::string>> row(protocol::sql::kPinKinds, std::string("0"));
  for (auto k : kinds) row[static_cast<std::size_t>(k)] = std::string("1");
  return row;
}

using protocol::sql::Pin;
using protocol::sql::SessionEffects;

TEST(ExchangeSession, TemporaryTablePinsUntilDropped) {
  Conversation c;
  c.client(wire::query("CREATE TEMP TABLE t (x int)"));
  c.answer(wire::complete("CREATE TABLE") + wire::ready());
  // Whether it exists is asked of the server (the CREATE may have failed).
  ASSERT_EQ(c.next(), Next::settle);
  EXPECT_NE(c.exchange.settle_query(c.server).find("pg_my_temp_schema()"), std::string::npos);
  c.exchange.settled(holding({Pin::temp_table}), c.server);
  EXPECT_TRUE(c.exchange.pinned());
  EXPECT_EQ(c.exchange.take_pins(), SessionEffects::bit(Pin::temp_table));
  EXPECT_EQ(c.next(), Next::client);  // the server stays with the client
  c.client(wire::query("SELECT * FROM t"));
  c.answer(wire::complete("SELECT 0") + wire::ready());
  EXPECT_EQ(c.next(), Next::client);  // nothing to ask: still pinned
  c.client(wire::query("DROP TABLE t"));
  c.answer(wire::complete("DROP TABLE") + wire::ready());
  ASSERT_EQ(c.next(), Next::settle);
  c.exchange.settle_query(c.server);
  c.exchange.settled(holding({}), c.server);
  EXPECT_FALSE(c.exchange.pinned());
  EXPECT_EQ(c.exchange.take_pins(), 0);
  EXPECT_TRUE(c.exchange.dirty());  // reset before anyone else gets it
  EXPECT_EQ(c.next(), Next::release);
}

TEST(ExchangeSession, WhatTheServerHoldsDecides) {
  const std::pair<const char*, Pin> cases[] = {
      {"SELECT pg_advisory_lock(1)", Pin::advisory_lock},
      {"LISTEN jobs", Pin::listen},
      {"PREPARE q AS SELECT 1", Pin::prepare},
      {"DECLARE c CURSOR WITH HOLD FOR SELECT 1", Pin::cursor},
      {"SET SESSION AUTHORIZATION bob", Pin::authorization}};
  for (const auto& [sql, kind] : cases) {
    Conversation c;
    c.client(wire::query(sql));
    c.answer(wire::complete("X") + wire::ready());
    ASSERT_EQ(c.next(), Next::settle) << sql;
    // Settings read back come first (SET SESSION AUTHORIZATION resets `role`).
    const std::string query = c.exchange.settle_query(c.server);
    auto row = holding({kind});
    for (auto at = query.find("current_setting("); at != std::string::npos;
         at = query.find("current_setting(", at + 1)) {
      row.insert(row.begin(), std::string("none"));
    }
    c.exchange.settled(row, c.server);
    EXPECT_TRUE(c.exchange.pinned()) << sql;
    EXPECT_EQ(c.exchange.take_pins(), SessionEffects::bit(kind)) << sql;
    EXPECT_EQ(c.next(), Next::client) << sql;
  }
  // A lock that was not granted (or a statement that failed) leaves nothing: no pin.
  Conversation c;
  c.client(wire::query("SELECT pg_try_advisory_lock(1)"));
  c.answer(wire::complete("SELECT 1") + wire::ready());
  ASSERT_EQ(c.next(), Next::settle);
  c.exchange.settle_query(c.server);
  c.exchange.settled(holding({}), c.server);
  EXPECT_FALSE(c.exchange.pinned());
  EXPECT_EQ(c.next(), Next::release);
}

TEST(ExchangeSession, WhatADoBlockSetIsReadBackAsTheClients) {
  Conversation c;
  c.client(wire::query("DO $$ BEGIN SET work_mem = '9MB'; END $$"));
  c.answer(wire::complete("DO") + wire::ready());
  ASSERT_EQ(c.next(), Next::settle);
  const std::string query = c.exchange.settle_query(c.server);
  EXPECT_NE(query.find("pg_settings WHERE source = 'session'"), std::string::npos) << query;
  auto row = holding({});
  row.push_back(std::string("work_mem\x01") + "9MB\x02" + "enable_seqscan\x01off");
  c.exchange.settled(row, c.server);
  EXPECT_EQ(c.exchange.params().get("work_mem"), "9MB");
  EXPECT_EQ(c.exchange.params().get("enable_seqscan"), "off");
  EXPECT_EQ(c.server.applied.get("work_mem"), "9MB");  // reset before another client gets it
  EXPECT_FALSE(c.exchange.pinned());
  EXPECT_EQ(c.next(), Next::release);
  // Once settled, the next transaction asks nothing.
  c.client(wire::query("SELECT 1"));
  c.answer(wire::complete("SELECT 1") + wire::ready());
  EXPECT_EQ(c.next(), Next::release);
}

TEST(ExchangeSession, PinsAreAskedAtTheEndOfTheTransaction) {
  Conversation c;
  c.client(wire::query("BEGIN"));
  c.answer(wire::complete("BEGIN") + wire::ready('T'));
  c.client(wire::query("SELECT pg_advisory_lock(1)"));
  c.answer(wire::complete("SELECT 1") + wire::ready('T'));
  EXPECT_EQ(c.next(), Next::client);
  c.client(wire::query("COMMIT"));
  c.answer(wire::complete("COMMIT") + wire::ready());
  ASSERT_EQ(c.next(), Next::settle);
  c.exchange.settle_query(c.server);
  c.exchange.settled(holding({Pin::advisory_lock}), c.server);
  EXPECT_TRUE(c.exchange.pinned());
}

TEST(ExchangeSession, UnansweredPinQuestionCountsWhatMayHaveBeenCreated) {
  Conversation c;
  c.client(wire::query("LISTEN jobs; SELECT pg_advisory_unlock(2)"));
  c.answer(wire::complete("LISTEN") + wire::complete("SELECT 1") + wire::ready());
  ASSERT_EQ(c.next(), Next::settle);
  c.exchange.settle_query(c.server);
  c.exchange.settle_failed();
  EXPECT_TRUE(c.exchange.pinned());
  EXPECT_EQ(c.exchange.take_pins(), SessionEffects::bit(Pin::listen));
}

TEST(ExchangeSession, APreparedStatementIsNotedEachTimeItRuns) {
  StatementRegistry registry;
  Rewriting c(registry);
  c.client(wire::parse("lock", "SELECT pg_advisory_lock($1)") + wire::sync());
  c.answer(wire::parse_complete() + wire::ready());
  if (c.next() == Next::settle) {
    c.exchange.settle_query(c.server);
    c.exchange.settled(holding({}), c.server);
  }
  ASSERT_FALSE(c.exchange.pinned());
  c.client(wire::bind("lock") + wire::execute() + wire::sync());
  c.answer(wire::bind_complete() + wire::complete("SELECT 1") + wire::ready());
  ASSERT_EQ(c.next(), Next::settle);
  c.exchange.settle_query(c.server);
  c.exchange.settled(holding({Pin::advisory_lock}), c.server);
  EXPECT_TRUE(c.exchange.pinned());
}

TEST(ExchangeSession, PinningOffBehavesAsBefore) {
  Conversation c;
  c.exchange.configure(PoolerMode::transaction, kMax, config::PoolPinning::off);
  c.client(wire::query("CREATE TEMP TABLE t (x int)"));
  c.answer(wire::complete("CREATE TABLE") + wire::ready());
  EXPECT_FALSE(c.exchange.pinned());
  EXPECT_EQ(c.next(), Next::release);
}

TEST(ExchangeSession, SessionModeNeverPins) {
  Conversation c(PoolerMode::session);
  c.client(wire::query("CREATE TEMP TABLE t (x int)"));
  c.answer(wire::complete("CREATE TABLE") + wire::ready());
  EXPECT_FALSE(c.exchange.pinned());
  EXPECT_FALSE(c.exchange.dirty());
}

}  // namespace
}  // namespace pgdog::backend

namespace pgdog::backend {
namespace {

TEST(ExchangeSession, TheTapHearsWhenTheClientKeepsItsServer) {
  Conversation c;
  RecordingTap tap;
  c.exchange.set_tap(&tap);
  auto run = [&](const std::string& sql, std::initializer_list<protocol::sql::Pin> held) {
    c.client(wire::query(sql));
    c.answer(wire::complete("X") + wire::ready());
    if (c.next() == Next::settle) {
      c.exchange.settle_query(c.server);
      c.exchange.settled(holding(held), c.server);
    }
  };
  run("SELECT 1", {});
  run("CREATE TEMP TABLE t (x int)", {protocol::sql::Pin::temp_table});  // may have made one
  run("INSERT INTO t VALUES (1)", {});                                   // pinned
  run("DROP TABLE t", {});                                               // may still have it
  run("SELECT 2", {});                                                   // gone
  using Keep = FrameTap::Keep;
  EXPECT_EQ(tap.kept, (std::vector<Keep>{Keep::no, Keep::unknown, Keep::yes, Keep::unknown,
                                         Keep::no}));
  EXPECT_EQ(tap.known, (std::vector<bool>{true, false}));  // after the CREATE, after the DROP
}

}  // namespace
}  // namespace pgdog::backend
