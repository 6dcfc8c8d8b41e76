#include <gtest/gtest.h>

#include <atomic>
#include <sstream>

#include <boost/asio/io_context.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "mirror/tap.hpp"
#include "protocol/messages.hpp"

namespace pgdog::mirror {
namespace {

using protocol::Frame;

Frame frame_of(const std::string& bytes) { return *protocol::next_frame(bytes, 1 << 20); }

std::string query(std::string_view sql) {
  std::string out;
  protocol::write_query(out, sql);
  return out;
}
std::string rfq(char status) {
  std::string out;
  protocol::write_ready_for_query(out, status);
  return out;
}
std::string complete(std::string_view tag) {
  std::string out;
  protocol::write_command_complete(out, tag);
  return out;
}
std::string error() {
  std::string out;
  protocol::write_error(out, {.code = "23505", .message = "duplicate key"});
  return out;
}
std::string empty(char type) {
  std::string out;
  protocol::write_empty(out, type);
  return out;
}

// A tap feeding one or more mirrors that never run workers: the tests look at what was queued.
class TapTest : public ::testing::Test {
 protected:
  std::shared_ptr<Mirror> add_mirror(MirrorSettings s = {}) {
    auto stats = std::make_shared<stats::MirrorStats>(s.destination.empty() ? "m" : s.destination);
    auto m = std::make_shared<Mirror>(std::vector<Executor>{io_.get_executor()}, std::move(s), stats,
                                      [](const std::string&) { return nullptr; }, registry_);
    mirrors_.push_back(m);
    return m;
  }
  Tap& tap(std::size_t max_bytes = 1 << 20) {
    if (!tap_) {
      set_->publish(mirrors_);
      tap_ = std::make_unique<Tap>(TapRoute{set_, &open_version_}, alice_, params_, statements_,
                                   rewriter_.get(), &registry_, max_bytes);
    }
    return *tap_;
  }
  // What a reload does: the mirrors in force from now on.
  void publish(const std::vector<std::shared_ptr<Mirror>>& mirrors) { set_->publish(mirrors); }
  void client(const std::string& bytes) {
    for (std::string_view rest = bytes; !rest.empty();) {
      auto f = *protocol::next_frame(rest, 1 << 20);
      tap().client_frame(f);
      rest.remove_prefix(f.size());
    }
  }
  void server(const std::string& bytes) { tap().server_frame(frame_of(bytes)); }

  // Every request queued on `m`, in the order its workers would take them.
  std::vector<RequestPtr> drain(Mirror& m) {
    std::vector<RequestPtr> out;
    while (m.queue().size() > 0) {
      std::optional<Queue::Item> item;
      asio::co_spawn(io_, const_cast<Queue&>(m.queue()).pop(),
                     [&](std::exception_ptr, std::optional<Queue::Item> i) { item = std::move(i); });
      io_.run();
      io_.restart();
      if (!item) break;
      out.push_back(item->request);
      const_cast<Queue&>(m.queue()).done(*item);
    }
    return out;
  }

  asio::io_context io_;
  protocol::Params params_;
  backend::ClientStatements statements_;
  backend::StatementRegistry registry_;
  std::vector<std::shared_ptr<Mirror>> mirrors_;
  // Of the database "", the source of the mirrors add_mirror() makes.
  config::User alice_ = [] {
    config::User u;
    u.name = "alice";
    return u;
  }();
  std::shared_ptr<MirrorSet> set_ = std::make_shared<MirrorSet>();
  std::atomic<std::uint64_t> open_version_{0};
  // Transaction mode's: it keeps statements_ (set before tap() to have one).
  std::unique_ptr<backend::Rewriter> rewriter_;
  std::unique_ptr<Tap> tap_;
};

TEST_F(TapTest, AutocommitStatementIsOneRequest) {
  auto m = add_mirror();
  client(query("INSERT INTO t VALUES (1)"));
  server(complete("INSERT 0 1"));
  server(rfq('I'));
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 1U);
  EXPECT_EQ(requests[0]->frames, query("INSERT INTO t VALUES (1)"));
  EXPECT_EQ(requests[0]->syncs, 1U);
  EXPECT_EQ(requests[0]->user, "alice");
  EXPECT_EQ(m->stats().snapshot().handed, 1U);
}

TEST_F(TapTest, TransactionBlockIsOneRequest) {
  auto m = add_mirror();
  client(query("BEGIN"));
  server(complete("BEGIN"));
  server(rfq('T'));
  client(query("UPDATE t SET a = 1"));
  server(complete("UPDATE 1"));
  server(rfq('T'));
  client(query("COMMIT"));
  server(complete("COMMIT"));
  server(rfq('I'));
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 1U);
  EXPECT_EQ(requests[0]->frames, query("BEGIN") + query("UPDATE t SET a = 1") + query("COMMIT"));
  EXPECT_EQ(requests[0]->syncs, 3U);
}

TEST_F(TapTest, TransactionsWaitUntilItIsKnownWhetherTheClientKeepsItsServer) {
  auto m = add_mirror();
  auto run = [&](std::string_view sql, backend::FrameTap::Keep keep) {
    client(query(sql));
    server(complete("X"));
    tap().keeps_server(keep);
    server(rfq('I'));
  };
  using Keep = backend::FrameTap::Keep;
  run("CREATE TEMP TABLE t1 (a int)", Keep::unknown);
  run("INSERT INTO t1 VALUES (1)", Keep::yes);  // behind the unknown one: keeps the order
  EXPECT_EQ(m->queue().size(), 0U);
  EXPECT_EQ(m->stats().snapshot().handed, 2U);
  tap().pins_known(true);
  run("DROP TABLE t1", Keep::unknown);
  run("SELECT 1", Keep::no);
  tap().pins_known(false);
  run("INSERT INTO t VALUES (2)", Keep::no);
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 5U);
  EXPECT_EQ(requests[0]->frames, query("CREATE TEMP TABLE t1 (a int)"));
  EXPECT_TRUE(requests[0]->keep_server);  // told by pins_known()
  EXPECT_EQ(requests[1]->frames, query("INSERT INTO t1 VALUES (1)"));
  EXPECT_TRUE(requests[1]->keep_server);
  EXPECT_EQ(requests[2]->frames, query("DROP TABLE t1"));
  EXPECT_FALSE(requests[2]->keep_server);
  EXPECT_FALSE(requests[3]->keep_server);
  EXPECT_EQ(requests[4]->frames, query("INSERT INTO t VALUES (2)"));
}

TEST_F(TapTest, AHeldBackTransactionIsHandedOverWhenTheTapGoes) {
  auto m = add_mirror();
  client(query("SELECT pg_advisory_lock(1)"));
  server(complete("SELECT 1"));
  tap().keeps_server(backend::FrameTap::Keep::unknown);
  server(rfq('I'));
  EXPECT_EQ(m->queue().size(), 0U);
  tap_.reset();  // the client left before its server was read back
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 1U);
  EXPECT_FALSE(requests[0]->keep_server);
}

TEST_F(TapTest, RolledBackAndFailedTransactionsAreNotMirrored) {
  auto m = add_mirror();
  client(query("BEGIN"));
  server(rfq('T'));
  client(query("INSERT INTO t VALUES (1)"));
  server(rfq('T'));
  client(query("ROLLBACK"));
  server(complete("ROLLBACK"));
  server(rfq('I'));
  // An autocommit statement that failed.
  client(query("INSERT INTO t VALUES (1)"));
  server(error());
  server(rfq('I'));
  // A block that failed: COMMIT answers ROLLBACK.
  client(query("BEGIN; INSERT INTO t VALUES (1)"));
  server(error());
  server(rfq('E'));
  client(query("COMMIT"));
  server(complete("ROLLBACK"));
  server(rfq('I'));
  EXPECT_EQ(m->stats().snapshot().handed, 0U);
  EXPECT_TRUE(drain(*m).empty());
}

TEST_F(TapTest, SavepointRecoveryThatCommitsIsMirroredWithItsErrorCount) {
  auto m = add_mirror();
  client(query("BEGIN; SAVEPOINT a; INSERT INTO t VALUES (1)"));
  server(error());
  server(rfq('E'));
  client(query("ROLLBACK TO SAVEPOINT a; INSERT INTO t VALUES (2); COMMIT"));
  server(complete("ROLLBACK"));
  server(complete("INSERT 0 1"));
  server(complete("COMMIT"));
  server(rfq('I'));
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 1U);
  EXPECT_EQ(requests[0]->primary_errors, 1U);
  EXPECT_EQ(requests[0]->syncs, 2U);
}

TEST_F(TapTest, PipelinedStatementsSplitExactly) {
  auto m = add_mirror();
  // The client sends three statements before reading any answer.
  client(query("INSERT INTO t VALUES (1)") + query("BEGIN") + query("INSERT INTO t VALUES (2)"));
  server(complete("INSERT 0 1"));
  server(rfq('I'));
  server(complete("BEGIN"));
  server(rfq('T'));
  server(complete("INSERT 0 1"));
  server(rfq('T'));
  client(query("COMMIT"));
  server(complete("COMMIT"));
  server(rfq('I'));
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 2U);
  EXPECT_EQ(requests[0]->frames, query("INSERT INTO t VALUES (1)"));
  EXPECT_EQ(requests[1]->frames,
            query("BEGIN") + query("INSERT INTO t VALUES (2)") + query("COMMIT"));
}

TEST_F(TapTest, ExtendedBatchAndCopy) {
  auto m = add_mirror();
  std::string batch;
  protocol::write_parse(batch, "", "INSERT INTO t VALUES ($1)", {});
  protocol::write_bind(batch, "", "", std::string("\0\0\0\1\0\0\0\1" "7\0\0", 11));
  batch += empty('E').substr(0, 1) + std::string("\0\0\0\x09\0\0\0\0\0", 9);
  batch += empty('S');
  client(batch);
  server(rfq('I'));
  // COPY FROM STDIN: the data follows the Query but belongs to it.
  client(query("COPY t FROM STDIN"));
  std::string in;
  protocol::write_empty(in, 'G');  // not a real CopyInResponse body, the tap only needs the type
  server(in);
  std::string data;
  protocol::Writer(data).begin('d').bytes("1\n").finish();
  client(data + data + empty('c'));
  server(complete("COPY 2"));
  server(rfq('I'));
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 2U);
  EXPECT_EQ(requests[0]->frames, batch);
  EXPECT_EQ(requests[1]->frames, query("COPY t FROM STDIN") + data + data + empty('c'));
}

TEST_F(TapTest, AnUnnamedStatementParsedEarlierIsReplayedFirst) {
  // Parse in one request, Bind in the next (drivers that describe first): the mirror may run
  // the second on a connection that never saw the first, so the Parse goes with it.
  auto m = add_mirror();
  std::string parse;
  protocol::write_parse(parse, "", "INSERT INTO t VALUES ($1)", {});
  std::string bind_execute;
  protocol::write_bind(bind_execute, "", "", std::string("\0\0\0\1\0\0\0\1" "7\0\0", 11));
  bind_execute += empty('E').substr(0, 1) + std::string("\0\0\0\x09\0\0\0\0\0", 9);
  bind_execute += empty('S');
  std::string describe;
  protocol::write_describe(describe, 'D', 'S', "");
  client(parse + describe + empty('S'));
  server(rfq('I'));
  client(bind_execute);
  server(complete("INSERT 0 1"));
  server(rfq('I'));
  // Parsed again in the same request: nothing added.
  client(parse + bind_execute);
  server(complete("INSERT 0 1"));
  server(rfq('I'));
  // A simple Query drops the unnamed statement: a Bind after it fails on the primary as on the
  // mirror, and nothing is added.
  client(query("SELECT 1"));
  server(complete("SELECT 1"));
  server(rfq('I'));
  client(bind_execute);
  server(complete("INSERT 0 1"));
  server(rfq('I'));
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 5U);
  EXPECT_EQ(requests[0]->frames, parse + describe + empty('S'));
  EXPECT_EQ(requests[1]->frames, parse + bind_execute);
  EXPECT_EQ(requests[1]->syncs, 1U);
  EXPECT_EQ(requests[2]->frames, parse + bind_execute);
  EXPECT_EQ(requests[4]->frames, bind_execute);
}

TEST_F(TapTest, LevelFilters) {
  MirrorSettings dml;
  dml.destination = "dml";
  dml.level = config::MirrorLevel::dml;
  MirrorSettings ddl;
  ddl.destination = "ddl";
  ddl.level = config::MirrorLevel::ddl;
  auto all = add_mirror();
  auto only_dml = add_mirror(dml);
  auto only_ddl = add_mirror(ddl);
  for (const char* sql : {"SELECT 1", "INSERT INTO t VALUES (1)", "CREATE TABLE x (a int)",
                          "SET search_path = public"}) {
    client(query(sql));
    server(rfq('I'));
  }
  // A prepared statement parsed in one transaction and executed in the next.
  std::string parse;
  protocol::write_parse(parse, "s1", "DELETE FROM t", {});
  client(parse + empty('S'));
  server(rfq('I'));
  std::string bind;
  protocol::write_bind(bind, "", "s1", std::string("\0\0\0\0\0\0", 6));
  client(bind + empty('S'));
  server(rfq('I'));
  EXPECT_EQ(all->stats().snapshot().handed, 6U);
  EXPECT_EQ(only_dml->stats().snapshot().handed, 3U);  // INSERT, Parse of DELETE, Bind of it
  EXPECT_EQ(only_ddl->stats().snapshot().handed, 1U);
}

TEST_F(TapTest, ExposureSamplesWholeTransactions) {
  MirrorSettings half;
  half.exposure = 0.5;
  half.queue_length = 10'000;
  auto m = add_mirror(half);
  MirrorSettings none;
  none.exposure = 0.0;
  auto n = add_mirror(none);
  for (int i = 0; i < 2000; ++i) {
    client(query("BEGIN"));
    server(rfq('T'));
    client(query("INSERT INTO t VALUES (1)"));
    server(rfq('T'));
    client(query("COMMIT"));
    server(complete("COMMIT"));
    server(rfq('I'));
  }
  const auto handed = m->stats().snapshot().handed;
  // Binomial(2000, 0.5): mean 1000, sd 22.4; five sd either side fails once in ~1.7 million.
  EXPECT_GE(handed, 888U);
  EXPECT_LE(handed, 1112U);
  EXPECT_EQ(n->stats().snapshot().handed, 0U);
  for (const auto& r : drain(*m)) {
    ASSERT_EQ(r->syncs, 3U);  // never a partial transaction
    ASSERT_EQ(r->frames, query("BEGIN") + query("INSERT INTO t VALUES (1)") + query("COMMIT"));
  }
}

TEST_F(TapTest, FullQueueDropsAndTheIdentityHolds) {
  MirrorSettings tiny;
  tiny.queue_length = 3;
  auto m = add_mirror(tiny);
  for (int i = 0; i < 10; ++i) {
    client(query("INSERT INTO t VALUES (1)"));
    server(rfq('I'));
  }
  auto s = m->stats().snapshot();
  EXPECT_EQ(s.handed, 10U);
  EXPECT_EQ(s.dropped, 7U);
  EXPECT_EQ(s.queue_depth, 3U);
  EXPECT_EQ(s.handed, s.success + s.failure() + s.dropped + s.queue_depth);
}

TEST_F(TapTest, OversizedTransactionIsDroppedAndCounted) {
  auto m = add_mirror();
  tap(64);
  client(query(std::string(100, 'x')));
  server(rfq('I'));
  client(query("SELECT 1"));
  server(rfq('I'));
  auto s = m->stats().snapshot();
  EXPECT_EQ(s.handed, 2U);
  EXPECT_EQ(s.dropped, 1U);
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 1U);
  EXPECT_EQ(requests[0]->frames, query("SELECT 1"));
}

// What spdlog writes while it lives.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>(
        "test", std::make_shared<spdlog::sinks::ostream_sink_st>(out_)));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST_F(TapTest, OversizedTransactionGoesThroughTheLevelFilterAndExposure) {
  MirrorSettings dml;
  dml.destination = "only_dml";
  dml.level = config::MirrorLevel::dml;
  MirrorSettings none;
  none.destination = "unexposed";
  none.exposure = 0.0;
  MirrorSettings all;
  all.destination = "everything";
  auto only_dml = add_mirror(dml);
  auto unexposed = add_mirror(none);
  auto everything = add_mirror(all);
  CapturedLog log;
  tap(64);
  const std::string padding(100, 'x');
  client(query("SELECT '" + padding + "'"));
  server(rfq('I'));
  client(query("INSERT INTO t VALUES ('" + padding + "')"));
  server(rfq('I'));

  // The level filter does not take the SELECT, exposure 0 takes neither: never handed.
  auto s = only_dml->stats().snapshot();
  EXPECT_EQ(s.handed, 1U);
  EXPECT_EQ(s.dropped, 1U);
  s = unexposed->stats().snapshot();
  EXPECT_EQ(s.handed, 0U);
  EXPECT_EQ(s.dropped, 0U);
  s = everything->stats().snapshot();
  EXPECT_EQ(s.handed, 2U);
  EXPECT_EQ(s.dropped, 2U);
  EXPECT_EQ(s.queue_depth, 0U);
  const auto text = log.text();
  EXPECT_NE(text.find("mirror only_dml: transaction dropped: larger than 64 bytes (user alice)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("mirror everything: transaction dropped: larger than 64 bytes"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("unexposed"), std::string::npos) << text;
}

TEST_F(TapTest, ParamsAreSnapshottedWhenTheyChange) {
  auto m = add_mirror();
  params_.set("TimeZone", "UTC");
  client(query("SELECT 1"));
  server(rfq('I'));
  params_.set("TimeZone", "Europe/Paris");
  client(query("SELECT 2"));
  server(rfq('I'));
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 2U);
  EXPECT_EQ(*requests[0]->params->get("TimeZone"), "UTC");
  EXPECT_EQ(*requests[1]->params->get("TimeZone"), "Europe/Paris");
}

TEST_F(TapTest, CollectsThePrimaryResultsAndServerTimeWhenComparing) {
  MirrorSettings results;
  results.compare = config::MirrorCompare::results;
  auto m = add_mirror(results);
  client(query("BEGIN"));
  server(complete("BEGIN"));
  server(rfq('T'));
  client(query("SELECT * FROM t"));
  std::string row;
  protocol::write_data_row(row, {std::string("x")});
  server(row);
  // A row too large to arrive whole is hashed from its pieces: same bytes, same hash.
  tap().server_piece('D', std::string_view(row).substr(0, 4));
  tap().server_piece('D', std::string_view(row).substr(4));
  server(complete("SELECT 2"));
  server(rfq('T'));
  client(query("COMMIT"));
  server(complete("COMMIT"));
  server(rfq('I'));
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 1U);
  const auto& r = requests[0]->results;
  ASSERT_EQ(r.size(), 3U);
  EXPECT_EQ(r[1].tag, "SELECT 2");
  RowHash twice;
  twice.update(row);
  twice.update(row);
  EXPECT_EQ(r[1].rows_hash, twice.value());
  EXPECT_NE(r[0].rows_hash, r[1].rows_hash);
}

TEST_F(TapTest, NoResultsCollectedWithCompareOff) {
  MirrorSettings off;
  off.compare = config::MirrorCompare::off;
  auto m = add_mirror(off);
  EXPECT_FALSE(tap().wants_server_frame('D'));
  client(query("SELECT 1"));
  server(complete("SELECT 1"));
  server(rfq('I'));
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 1U);
  EXPECT_TRUE(requests[0]->results.empty());
}

// A mirror published while a transaction is open does not get it (it never saw its start),
// and the session says so through its open version until the transaction ends; the next
// transaction goes to both.
TEST_F(TapTest, MirrorAddedMidTransactionTakesTheNextOne) {
  auto a = add_mirror();
  tap();
  EXPECT_EQ(open_version_.load(), 0U);
  client(query("BEGIN"));
  server(complete("BEGIN"));
  server(rfq('T'));
  EXPECT_EQ(open_version_.load(), 1U);
  MirrorSettings later;
  later.destination = "later";
  auto b = add_mirror(later);
  publish({a, b});
  const auto since = set_->snapshot()->entries[1].since;
  EXPECT_EQ(since, 2U);
  EXPECT_TRUE(spans_change(open_version_.load(), since));
  client(query("INSERT INTO t VALUES (1)"));
  server(complete("INSERT 0 1"));
  server(rfq('T'));
  client(query("COMMIT"));
  server(complete("COMMIT"));
  server(rfq('I'));
  EXPECT_EQ(open_version_.load(), 0U) << "the transaction ended";
  EXPECT_EQ(drain(*a).size(), 1U);
  EXPECT_EQ(b->stats().snapshot().handed, 0U);

  client(query("INSERT INTO t VALUES (2)"));
  EXPECT_EQ(open_version_.load(), 2U);
  EXPECT_FALSE(spans_change(open_version_.load(), since));
  server(complete("INSERT 0 1"));
  server(rfq('I'));
  for (auto* m : {a.get(), b.get()}) {
    auto requests = drain(*m);
    ASSERT_EQ(requests.size(), 1U) << m->stats().cluster();
    EXPECT_EQ(requests[0]->frames, query("INSERT INTO t VALUES (2)"));
    EXPECT_EQ(m->stats().snapshot().handed, m == a.get() ? 2U : 1U);
  }
}

// A session that had no mirror keeps nothing, then mirrors whole transactions once one is
// published.
TEST_F(TapTest, SessionWithoutMirrorsTakesOneAtItsNextTransaction) {
  tap();
  client(query("INSERT INTO t VALUES (1)"));
  EXPECT_FALSE(tap().wants_server_frame('C')) << "nothing to collect without mirrors";
  EXPECT_TRUE(tap().wants_server_frame('Z'));
  server(rfq('I'));
  auto m = add_mirror();
  publish({m});
  client(query("BEGIN"));
  EXPECT_TRUE(tap().wants_server_frame('C'));
  server(complete("BEGIN"));
  server(rfq('T'));
  client(query("INSERT INTO t VALUES (2)"));
  server(complete("INSERT 0 1"));
  server(rfq('T'));
  client(query("COMMIT"));
  server(complete("COMMIT"));
  server(rfq('I'));
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 1U);
  EXPECT_EQ(requests[0]->frames,
            query("BEGIN") + query("INSERT INTO t VALUES (2)") + query("COMMIT"));
  EXPECT_EQ(m->stats().snapshot().handed, 1U);
}

// Frames sent after the last Sync (a Parse and a Bind pipelined behind a query) belong to the
// next transaction, which has begun: a mirror published before its Sync does not get it.
TEST_F(TapTest, FramesSentBeforeTheBoundaryBeginTheNextTransaction) {
  auto a = add_mirror();
  tap();
  std::string parse;
  protocol::write_parse(parse, "", "INSERT INTO t VALUES ($1)", {});
  std::string bind;
  protocol::write_bind(bind, "", "", std::string("\0\0\0\1\0\0\0\1" "2\0\0", 11));
  const std::string execute_sync =
      empty('E').substr(0, 1) + std::string("\0\0\0\x09\0\0\0\0\0", 9) + empty('S');
  client(query("INSERT INTO t VALUES (1)") + parse + bind);
  server(complete("INSERT 0 1"));
  server(rfq('I'));
  EXPECT_EQ(open_version_.load(), 1U) << "the Parse and Bind began a transaction";
  MirrorSettings later;
  later.destination = "later";
  auto b = add_mirror(later);
  publish({a, b});
  client(execute_sync);
  server(complete("INSERT 0 1"));
  server(rfq('I'));
  EXPECT_EQ(open_version_.load(), 0U);
  auto requests = drain(*a);
  ASSERT_EQ(requests.size(), 2U);
  EXPECT_EQ(requests[1]->frames, parse + bind + execute_sync);
  EXPECT_EQ(b->stats().snapshot().handed, 0U);
}

// A ReadyForQuery the client did not ask for (the session's own exchange with the server) ends
// nothing, whether the session has mirrors or not: the Flush began the transaction.
TEST_F(TapTest, AReadyForQueryNobodyAskedForEndsNothing) {
  auto m = add_mirror();
  tap();
  client(empty('H'));
  server(rfq('I'));
  EXPECT_EQ(open_version_.load(), 1U);
  client(query("INSERT INTO t VALUES (1)"));
  server(complete("INSERT 0 1"));
  server(rfq('I'));
  EXPECT_EQ(open_version_.load(), 0U);
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 1U);
  EXPECT_EQ(requests[0]->frames, empty('H') + query("INSERT INTO t VALUES (1)"));
}

TEST_F(TapTest, AReadyForQueryNobodyAskedForEndsNothingWithoutMirrors) {
  tap();
  client(empty('H'));
  server(rfq('I'));
  EXPECT_EQ(open_version_.load(), 1U);
  client(query("INSERT INTO t VALUES (1)"));
  server(rfq('I'));
  EXPECT_EQ(open_version_.load(), 0U);
}

// A dml-only mirror added after the client prepared a statement still classifies a later Bind
// of it, from the session's statements.
TEST_F(TapTest, LevelFilterAddedLaterKnowsStatementsParsedBefore) {
  tap();
  std::string parse;
  protocol::write_parse(parse, "s1", "DELETE FROM t", {});
  client(parse + empty('S'));
  server(rfq('I'));
  MirrorSettings dml;
  dml.level = config::MirrorLevel::dml;
  auto m = add_mirror(dml);
  publish({m});
  std::string bind;
  protocol::write_bind(bind, "", "s1", std::string("\0\0\0\0\0\0", 6));
  client(bind + empty('S'));
  server(rfq('I'));
  client(query("SELECT 1"));
  server(rfq('I'));
  EXPECT_EQ(m->stats().snapshot().handed, 1U) << "the DELETE, not the SELECT";
  auto requests = drain(*m);
  ASSERT_EQ(requests.size(), 1U);
  ASSERT_TRUE(requests[0]->statements);
  EXPECT_EQ(requests[0]->statements->at("s1")->query, "DELETE FROM t");
}

// In transaction mode the proxy answers a Parse of a statement a server already knows without
// a server, and the tap never sees it: a Bind is classified by what the session's statement is
// now, not by an earlier Parse of the same name.
TEST_F(TapTest, StatementPreparedAgainWithoutAServerIsClassifiedByItsNewText) {
  MirrorSettings dml;
  dml.level = config::MirrorLevel::dml;
  auto m = add_mirror(dml);
  rewriter_ = std::make_unique<backend::Rewriter>(registry_, statements_);
  tap();
  std::string parse;
  protocol::write_parse(parse, "s1", "DELETE FROM t", {});
  statements_["s1"] = registry_.intern("DELETE FROM t", "");  // as the rewriter does
  client(parse + empty('S'));
  server(rfq('I'));
  ASSERT_EQ(m->stats().snapshot().handed, 1U);
  // Closed and prepared as a SELECT in a batch answered without a server.
  statements_["s1"] = registry_.intern("SELECT 1", "");
  std::string bind;
  protocol::write_bind(bind, "", "s1", std::string("\0\0\0\0\0\0", 6));
  client(bind + empty('S'));
  server(rfq('I'));
  EXPECT_EQ(m->stats().snapshot().handed, 1U) << "a SELECT is not dml";
  statements_["s1"] = registry_.intern("UPDATE t SET a = 1", "");
  client(bind + empty('S'));
  server(rfq('I'));
  EXPECT_EQ(m->stats().snapshot().handed, 2U) << "an UPDATE is";
}

// What a statement does is learnt again after a time without level filters: the client may
// have prepared the name anew meanwhile.
TEST_F(TapTest, StatementRedefinedWhileNothingClassifiedIsClassifiedAgain) {
  MirrorSettings dml;
  dml.level = config::MirrorLevel::dml;
  auto filtered = add_mirror(dml);
  tap();
  std::string parse;
  protocol::write_parse(parse, "s1", "DELETE FROM t", {});
  client(parse + empty('S'));
  server(rfq('I'));
  MirrorSettings all;
  all.destination = "all";
  auto everything = add_mirror(all);
  publish({everything});
  std::string close;
  protocol::write_describe(close, 'C', 'S', "s1");
  std::string reparse;
  protocol::write_parse(reparse, "s1", "SELECT 1", {});
  client(close + reparse + empty('S'));
  server(rfq('I'));
  publish({everything, filtered});
  std::string bind;
  protocol::write_bind(bind, "", "s1", std::string("\0\0\0\0\0\0", 6));
  client(bind + empty('S'));
  server(rfq('I'));
  // The first transaction (its Parse is a DELETE), not the Bind: s1 is a SELECT now.
  EXPECT_EQ(filtered->stats().snapshot().handed, 1U);
  EXPECT_EQ(everything->stats().snapshot().handed, 2U);
}

// A mirror a reload removed gets nothing more, not even from a session that still holds it
// until its next transaction, and nothing is counted as dropped; what it had queued still
// replays.
TEST_F(TapTest, RemovedMirrorIsHandedNothingAndDropsNothing) {
  auto a = add_mirror();
  client(query("INSERT INTO t VALUES (1)"));
  server(complete("INSERT 0 1"));
  server(rfq('I'));
  client(query("BEGIN"));
  server(complete("BEGIN"));
  server(rfq('T'));
  publish({});
  a->drain();
  client(query("COMMIT"));
  server(complete("COMMIT"));
  server(rfq('I'));
  client(query("INSERT INTO t VALUES (2)"));
  server(complete("INSERT 0 1"));
  server(rfq('I'));
  auto s = a->stats().snapshot();
  EXPECT_EQ(s.handed, 1U);
  EXPECT_EQ(s.dropped, 0U);
  auto requests = drain(*a);
  ASSERT_EQ(requests.size(), 1U) << "the queued one still replays";
  EXPECT_EQ(requests[0]->frames, query("INSERT INTO t VALUES (1)"));
  EXPECT_TRUE(a->drained());
}

}  // namespace
}  // namespace pgdog::mirror
