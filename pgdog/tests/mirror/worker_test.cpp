// The mirror worker against the scripted server on a loopback io_context: a real Mirror whose
// destination pool points at a ScriptedServer, fed by real Taps the way client sessions feed it.
// Each test counts the transactions it hands over and expects MirrorStats to account for exactly
// those: success, query, connection, timeout and dropped; then per-client order and the
// session-mode connection.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "mirror/mirror.hpp"
#include "mirror/tap.hpp"
#include "protocol/messages.hpp"
#include "support/run.hpp"
#include "support/scripted_server.hpp"
#include "support/wire.hpp"

namespace pgdog::mirror {
namespace {

using namespace std::chrono_literals;
using stats::MirrorStats;
using test::Message;
using test::Reply;
using test::ScriptedServer;

constexpr auto kSlow = 20ms;
constexpr auto kLate = 250ms;

// One Query the mirror database received.
struct Received {
  std::string sql;
  std::size_t connection = 0;
  Clock::time_point at;
};

// The mirror database behind the scripted server. It answers each statement as PostgreSQL
// would, unless the statement's text asks for a fault: "stall" (no answer, ever), "reset" (RST),
// "fatal" (FATAL, then close), "fatal_stay" (FATAL, the connection left open), "fail" (ERROR
// 23505), "slow" (the answer after kSlow), "late" (after kLate). The extended protocol as far
// as prepared statements go: each connection's statements; a Bind of one it lacks, or an
// Execute whose statement's text says "fail", is an error, and the messages up to the Sync
// are skipped.
class MirrorDatabase {
 public:
  Reply operator()(const Message& m) {
    if (m.type != protocol::fe::kQuery) return extended(m);
    const auto text = protocol::decode_query(m.body);
    const std::string sql = text ? std::string(*text) : std::string();
    log.push_back({sql, m.connection, Clock::now()});
    return answer(sql, status_.try_emplace(m.connection, 'I').first->second);
  }

  // Every Query received on `connection`, in order.
  std::vector<std::string> queries(std::size_t connection) const {
    std::vector<std::string> out;
    for (const auto& r : log)
      if (r.connection == connection) out.push_back(r.sql);
    return out;
  }

  std::vector<Received> log;     // every Query, in the order the server read them
  std::vector<Received> parses;  // every Parse (its statement's name), likewise

 private:
  struct Extended {
    std::map<std::string, std::string> statements;  // name -> SQL
    std::string bound;                              // the SQL of the portal bound last
    bool skipping = false;                          // after an error, until Sync
  };

  Reply extended(const Message& m) {
    auto& c = extended_[m.connection];
    if (m.type == protocol::fe::kSync) {
      c.skipping = false;
      return Reply::send(wire::ready(status_.try_emplace(m.connection, 'I').first->second));
    }
    if (c.skipping) return Reply::none();
    const auto error = [&](std::string_view code) {
      c.skipping = true;
      return Reply::send(wire::error(code));
    };
    switch (m.type) {
      case protocol::fe::kParse: {
        const auto p = protocol::decode_parse(m.body);
        if (!p) return error("08P01");
        parses.push_back({std::string(p->name), m.connection, Clock::now()});
        c.statements[std::string(p->name)] = p->query;
        return Reply::send(wire::parse_complete());
      }
      case protocol::fe::kBind: {
        const auto b = protocol::decode_bind(m.body);
        const auto it = b ? c.statements.find(std::string(b->statement)) : c.statements.end();
        if (it == c.statements.end()) return error("26000");
        c.bound = it->second;
        return Reply::send(wire::bind_complete());
      }
      case protocol::fe::kExecute:
        if (c.bound.find("fail") != std::string::npos) return error("23505");
        return Reply::send(wire::complete("INSERT 0 1"));
      default:
        return test::answer_ok(m);
    }
  }

  std::map<std::size_t, Extended> extended_;
  static Reply answer(const std::string& sql, char& status) {
    const auto has = [&](std::string_view word) { return sql.find(word) != std::string::npos; };
    if (has("stall")) return Reply::stall();
    if (has("reset")) return Reply::reset();
    if (has("fatal_stay")) return {wire::error("57P01", "FATAL"), {}, Reply::Then::stall};
    if (has("fatal")) return Reply::fatal("57P01", "terminating connection");
    if (has("fail")) {
      if (status != 'I') status = 'E';
      return Reply::send(wire::error("23505") + wire::ready(status));
    }
    std::string tag = "INSERT 0 1";
    if (sql.starts_with("BEGIN")) {
      tag = "BEGIN";
      status = 'T';
    } else if (sql.starts_with("SAVEPOINT")) {
      tag = "SAVEPOINT";
    } else if (sql.starts_with("ROLLBACK TO")) {
      tag = "ROLLBACK";
      status = 'T';
    } else if (sql.starts_with("COMMIT")) {
      tag = status == 'E' ? "ROLLBACK" : "COMMIT";
      status = 'I';
    } else if (sql == "DISCARD ALL") {
      tag = "DISCARD ALL";
    }
    const auto delay = has("late") ? kLate : has("slow") ? kSlow : 0ms;
    return Reply::send(wire::complete(tag) + wire::ready(status), delay);
  }

  std::map<std::size_t, char> status_;  // each connection's transaction status
};

// One client session as the mirror sees it: a Tap shown the frames the session sends its
// primary and the primary's answers. Each transaction that commits is handed to the mirror.
class Client {
 public:
  Client(std::shared_ptr<Mirror> mirror, backend::StatementRegistry& registry, bool session_mode) {
    // The mirror's source_db is the default "", bob's database too.
    user_.name = "bob";
    set_->publish({std::move(mirror)});
    tap_ = std::make_unique<Tap>(TapRoute{set_}, user_, params_, statements_, nullptr, &registry,
                                 std::size_t{1} << 20, session_mode);
  }

  // The client sends `sql`; the primary answers `primary`.
  void send(std::string_view sql, const std::string& primary) {
    exchange(wire::query(sql), primary);
  }
  // A statement the primary ran in autocommit: one transaction.
  void autocommit(std::string_view sql) {
    send(sql, wire::complete("INSERT 0 1") + wire::ready('I'));
  }
  // The client's frames and the primary's answers, frame by frame, for the extended protocol.
  void exchange(const std::string& frames, const std::string& primary) {
    for (std::string_view rest = frames; !rest.empty();) {
      const auto f = *protocol::next_frame(rest, rest.size());
      tap_->client_frame(f);
      rest.remove_prefix(f.size());
    }
    for (std::string_view rest = primary; !rest.empty();) {
      const auto f = *protocol::next_frame(rest, rest.size());
      if (tap_->wants_server_frame(f.type)) tap_->server_frame(f);
      rest.remove_prefix(f.size());
    }
  }
  // Prepares `name` and executes it once, in one transaction.
  void prepare(std::string_view name, std::string_view sql) {
    exchange(wire::parse(name, sql) + wire::bind(name) + wire::execute() + wire::sync(),
             wire::parse_complete() + wire::bind_complete() + wire::complete("INSERT 0 1") +
                 wire::ready('I'));
  }
  // Prepares `name` in a transaction that rolls back: the client has it, and no mirror was
  // handed the Parse.
  void declare(std::string_view name, std::string_view sql) {
    send("BEGIN", wire::complete("BEGIN") + wire::ready('T'));
    exchange(wire::parse(name, sql) + wire::sync(), wire::parse_complete() + wire::ready('T'));
    send("ROLLBACK", wire::complete("ROLLBACK") + wire::ready('I'));
  }
  // Executes the statements `names` in one transaction, all before one Sync.
  void execute(const std::vector<std::string>& names) {
    std::string frames;
    std::string primary;
    for (const auto& name : names) {
      frames += wire::bind(name) + wire::execute();
      primary += wire::bind_complete() + wire::complete("INSERT 0 1");
    }
    exchange(frames + wire::sync(), primary + wire::ready('I'));
  }
  // BEGIN; `sql`; COMMIT: one transaction.
  void block(std::string_view sql) {
    send("BEGIN", wire::complete("BEGIN") + wire::ready('T'));
    send(sql, wire::complete("INSERT 0 1") + wire::ready('T'));
    send("COMMIT", wire::complete("COMMIT") + wire::ready('I'));
  }
  // A block in which `failing` failed on the primary and was rolled back to a savepoint, then
  // `sql` ran and the block committed: one transaction, with one error on the primary.
  void recovered_block(std::string_view failing, std::string_view sql) {
    send("BEGIN", wire::complete("BEGIN") + wire::ready('T'));
    send("SAVEPOINT s", wire::complete("SAVEPOINT") + wire::ready('T'));
    send(failing, wire::error("23505") + wire::ready('E'));
    send("ROLLBACK TO SAVEPOINT s", wire::complete("ROLLBACK") + wire::ready('T'));
    send(sql, wire::complete("INSERT 0 1") + wire::ready('T'));
    send("COMMIT", wire::complete("COMMIT") + wire::ready('I'));
  }
  // The session ends: its channel closes once its last request is done.
  void leave() { tap_.reset(); }

 private:
  protocol::Params params_;
  backend::ClientStatements statements_;
  std::shared_ptr<MirrorSet> set_ = std::make_shared<MirrorSet>();
  config::User user_;
  std::unique_ptr<Tap> tap_;
};

// A MirrorStats snapshot's counts, to compare whole.
struct Counts {
  std::uint64_t handed = 0;
  std::uint64_t success = 0;
  std::uint64_t query = 0;
  std::uint64_t connection = 0;
  std::uint64_t timeout = 0;
  std::uint64_t dropped = 0;
  std::uint64_t depth = 0;
  bool operator==(const Counts&) const = default;
};

void PrintTo(const Counts& c, std::ostream* os) {
  *os << "{handed " << c.handed << ", success " << c.success << ", query " << c.query
      << ", connection " << c.connection << ", timeout " << c.timeout << ", dropped " << c.dropped
      << ", depth " << c.depth << "}";
}

class MirrorWorker : public ::testing::Test {
 protected:
  void start(MirrorSettings settings = {}, int pool_size = 4) {
    backend::PoolSettings p;
    p.address = {"127.0.0.1", server_.port(), "appdb", "bob", ""};
    p.size = pool_size;
    p.min_size = 0;
    p.connect_timeout = 10s;
    p.checkout_timeout = 60s;  // beyond every deadline: a test that waits for it fails
    pool_ = std::make_shared<backend::Pool>(io_.get_executor(), "bob", "appdb", p);
    settings.destination = "mirror_db";
    stats_ = std::make_shared<MirrorStats>("mirror_db");
    mirror_ = std::make_shared<Mirror>(
        std::vector<Executor>{io_.get_executor()}, std::move(settings), stats_,
        [pool = pool_](const std::string&) { return pool; }, registry_);
    mirror_->start();
  }

  Client& client(bool session_mode = false) {
    clients_.push_back(std::make_unique<Client>(mirror_, registry_, session_mode));
    return *clients_.back();
  }

  MirrorStats::Snapshot stats() const { return stats_->snapshot(); }
  static std::uint64_t ended(const MirrorStats::Snapshot& s) {
    return s.success + s.failure() + s.dropped;
  }
  // Waits until `n` requests ended (at least: the test then checks the exact counts).
  bool wait_ended(std::uint64_t n) {
    return test::run_until(io_, [&] { return ended(stats()) >= n; });
  }
  bool run_until(const std::function<bool()>& done) { return test::run_until(io_, done); }

  // The counts once `n` requests have ended and the queue (the real one, not the derived depth)
  // is empty.
  Counts settled(std::uint64_t n) {
    EXPECT_TRUE(wait_ended(n)) << "fewer than " << n << " requests ended";
    EXPECT_TRUE(run_until([&] { return mirror_->queue().size() == 0; }))
        << "the queue is not empty";
    return counts();
  }
  Counts counts() const {
    const auto s = stats();
    return {s.handed, s.success, s.query, s.connection, s.timeout, s.dropped, s.queue_depth};
  }

  // Declared before the io_context: coroutine frames destroyed with it may still refer to them.
  backend::StatementRegistry registry_;
  MirrorDatabase database_;
  asio::io_context io_;
  ScriptedServer server_{
      io_, ScriptedServer::Options{.script = [this](const Message& m) { return database_(m); }}};
  std::shared_ptr<backend::Pool> pool_;
  std::shared_ptr<MirrorStats> stats_;
  std::shared_ptr<Mirror> mirror_;
  std::vector<std::unique_ptr<Client>> clients_;
};

TEST_F(MirrorWorker, AnsweredTransactionsAreSuccesses) {
  start();
  auto& c = client();
  constexpr int kTransactions = 20;
  std::size_t statements = 0;
  for (int i = 0; i < kTransactions; ++i) {
    if (i % 4 == 3) {
      c.block("INSERT " + std::to_string(i));
      statements += 3;
    } else {
      c.autocommit("INSERT " + std::to_string(i));
      statements += 1;
    }
  }
  EXPECT_EQ(settled(kTransactions), (Counts{.handed = kTransactions, .success = kTransactions}));
  // Replayed, not just counted: the mirror ran every statement the client sent.
  EXPECT_EQ(database_.log.size(), statements);
  EXPECT_EQ(server_.connections(), 1u);  // one client, one request at a time, one connection
}

TEST_F(MirrorWorker, MirrorErrorsAreQueryFailures) {
  start();
  auto& c = client();
  // 7 answered, 3 failing on the mirror only.
  for (int i = 0; i < 10; ++i) {
    c.autocommit(i % 3 == 1 ? "INSERT fail " + std::to_string(i) : "INSERT " + std::to_string(i));
  }
  // The primary recovered from an error with a savepoint; the mirror has the same error: that is
  // what the primary did, a success.
  c.recovered_block("INSERT fail dup", "INSERT 11");
  // The same, with one more error on the mirror than on the primary: a query failure.
  c.recovered_block("INSERT fail dup", "INSERT fail mirror only");
  EXPECT_EQ(settled(12), (Counts{.handed = 12, .success = 8, .query = 4}));
  // An ERROR leaves the connection usable: it serves every request.
  EXPECT_EQ(server_.connections(), 1u);
}

// The mirror refuses connections: each transaction is a connection failure, counted once,
// whether a worker failed it at checkout or admit() did at once while the pool backs off.
TEST_F(MirrorWorker, RefusedConnectionsAreConnectionFailures) {
  server_.refuse();
  start();
  auto& c = client();
  std::uint64_t handed = 0;
  c.autocommit("INSERT 0");
  ++handed;
  ASSERT_TRUE(wait_ended(handed));
  EXPECT_EQ(counts(), (Counts{.handed = 1, .connection = 1}));

  // A transaction handed before the backoff ends fails in admit(), before any handler runs. The
  // backoff starts at 100 ms and doubles: on a loaded machine an attempt may miss the window,
  // then a worker tries the server again and the next window is longer.
  bool seen_fast_path = false;
  for (int attempt = 0; attempt < 6 && !seen_fast_path; ++attempt) {
    const auto retry_at = pool_->retry_at();
    ASSERT_GT(retry_at, Clock::time_point{}) << "the pool is not backing off";
    c.autocommit("INSERT " + std::to_string(handed));
    ++handed;
    if (Clock::now() < retry_at) {
      seen_fast_path = true;
      EXPECT_EQ(counts(), (Counts{.handed = handed, .connection = handed}));
      EXPECT_EQ(mirror_->queue().size(), 0u);
    }
    ASSERT_TRUE(wait_ended(handed));
  }
  EXPECT_TRUE(seen_fast_path);
  // A burst, some through either path.
  for (int i = 0; i < 10; ++i) {
    c.autocommit("INSERT " + std::to_string(handed));
    ++handed;
  }
  EXPECT_EQ(settled(handed), (Counts{.handed = handed, .connection = handed}));
  EXPECT_EQ(server_.connections(), 0u);
}

class MirrorWorkerBroken : public MirrorWorker,
                           public ::testing::WithParamInterface<const char*> {};

// The connection fails mid-request (RST, FATAL then close, FATAL with the socket left open): a
// connection failure at once, not a timeout; the connection is dropped and the next request
// gets a new one.
TEST_P(MirrorWorkerBroken, IsAConnectionFailure) {
  MirrorSettings settings;
  settings.timeout = 60s;  // beyond the deadline: waiting for it fails the test
  start(settings);
  auto& c = client();
  c.autocommit(std::string("INSERT ") + GetParam());
  EXPECT_EQ(settled(1), (Counts{.handed = 1, .connection = 1}));
  c.autocommit("INSERT after");
  EXPECT_EQ(settled(2), (Counts{.handed = 2, .success = 1, .connection = 1}));
  EXPECT_EQ(server_.connections(), 2u);
  EXPECT_EQ(database_.queries(1), std::vector<std::string>{"INSERT after"});
}

INSTANTIATE_TEST_SUITE_P(MirrorWorker, MirrorWorkerBroken,
                         ::testing::Values("reset", "fatal", "fatal_stay"));

TEST_F(MirrorWorker, StalledMirrorTimesOutIsCancelledAndNotReused) {
  MirrorSettings settings;
  settings.timeout = 200ms;
  start(settings);
  auto& c = client();
  const auto handed_at = Clock::now();
  c.autocommit("INSERT stall");
  EXPECT_EQ(settled(1), (Counts{.handed = 1, .timeout = 1}));
  EXPECT_GE(Clock::now() - handed_at, 200ms);

  // The statement may still run on the mirror: it is cancelled there, again and again while
  // the mirror does not answer (a cancel that came before the query started did nothing).
  ASSERT_TRUE(run_until([&] { return server_.cancels().size() == 4; }));
  for (const auto& cancel : server_.cancels()) {
    EXPECT_EQ(cancel.process_id, ScriptedServer::key(0).process_id);
    EXPECT_EQ(cancel.secret_key, ScriptedServer::key(0).secret_key);
  }

  // The stalled connection is never used again: the next request opens another.
  c.autocommit("INSERT after");
  EXPECT_EQ(settled(2), (Counts{.handed = 2, .success = 1, .timeout = 1}));
  EXPECT_EQ(server_.connections(), 2u);
  EXPECT_EQ(database_.queries(0), std::vector<std::string>{"INSERT stall"});
  EXPECT_EQ(database_.queries(1), std::vector<std::string>{"INSERT after"});
  ASSERT_TRUE(run_until([&] { return server_.closed_by_client(0); }));
}

TEST_F(MirrorWorker, TimedOutQueryThatStopsOnTheFirstCancelIsCancelledOnce) {
  MirrorSettings settings;
  settings.timeout = 200ms;
  start(settings);
  auto& c = client();
  c.autocommit("INSERT stall");
  ASSERT_TRUE(run_until([&] { return server_.cancels().size() == 1; }));
  // As PostgreSQL answers a cancelled statement.
  server_.send(0, wire::error("57014", "ERROR", "canceling statement due to user request") +
                      wire::ready('I'));
  EXPECT_EQ(settled(1), (Counts{.handed = 1, .timeout = 1}));  // still not confirmed in time
  c.autocommit("INSERT after");
  EXPECT_EQ(settled(2), (Counts{.handed = 2, .success = 1, .timeout = 1}));
  EXPECT_EQ(server_.cancels().size(), 1u);  // the answer ended the cancelling
  EXPECT_EQ(server_.connections(), 2u);     // and the connection was not reused
}

// A worker's watchdog serves its replays one after another and moves on only when it fires: the
// one armed for the first replay's deadline fires while the second runs, and must not time the
// second out before the second's own deadline.
TEST_F(MirrorWorker, EachReplayHasTheWholeTimeoutFromItsOwnStart) {
  MirrorSettings settings;
  settings.timeout = 400ms;
  settings.workers = 1;
  start(settings);
  auto& c = client();
  c.autocommit("INSERT first");
  EXPECT_EQ(settled(1), (Counts{.handed = 1, .success = 1}));
  const auto first_at = database_.log.at(0).at;
  // Half the timeout later, a replay answered kLate (250 ms) after it starts: past the first
  // replay's deadline, within its own.
  io_.run_for(200ms);
  io_.restart();
  c.autocommit("INSERT late");
  EXPECT_EQ(settled(2), (Counts{.handed = 2, .success = 2}));
  EXPECT_GT(database_.log.at(1).at + kLate, first_at + settings.timeout);
  EXPECT_TRUE(server_.cancels().empty());
}

class MirrorWorkerQueue : public MirrorWorker, public ::testing::WithParamInterface<int> {};

// A full queue drops what it cannot hold. One client: its first request stalls the mirror (in
// flight), the next `queue_length - 1` wait behind it, the rest are dropped.
TEST_P(MirrorWorkerQueue, FullQueueDropsTheRest) {
  const std::uint64_t length = static_cast<std::uint64_t>(GetParam());
  constexpr std::uint64_t kHanded = 10;
  MirrorSettings settings;
  settings.queue_length = length;
  settings.timeout = 200ms;
  start(settings);
  auto& c = client();
  c.autocommit("INSERT stall");
  ASSERT_TRUE(run_until([&] { return database_.log.size() == 1; }));  // in flight
  // No handler runs from here to the snapshot: the stalled request cannot time out meanwhile.
  for (std::uint64_t i = 1; i < kHanded; ++i)
    c.autocommit("INSERT " + std::to_string(i));
  const auto now = counts();
  EXPECT_EQ(now, (Counts{.handed = kHanded, .dropped = kHanded - length, .depth = length}));
  EXPECT_EQ(mirror_->queue().size(), length);
  EXPECT_EQ(now.success + now.query + now.connection + now.timeout + now.dropped + now.depth,
            kHanded);

  // The stalled one times out; those that waited behind it run on a new connection.
  EXPECT_EQ(
      settled(kHanded),
      (Counts{
          .handed = kHanded, .success = length - 1, .timeout = 1, .dropped = kHanded - length}));
  EXPECT_EQ(database_.log.size(), length);
}

INSTANTIATE_TEST_SUITE_P(MirrorWorker, MirrorWorkerQueue, ::testing::Values(1, 3));

// Each client's requests reach the mirror in the order it sent them, one at a time: the next
// only after the mirror answered the previous one (which it does kSlow after reading it).
TEST_F(MirrorWorker, EachClientsRequestsReachTheMirrorInOrder) {
  start();
  auto& a = client();
  auto& b = client();
  constexpr int kEach = 5;
  const auto hand = [&](int i) {
    a.autocommit("INSERT a" + std::to_string(i) + " slow");
    b.autocommit("INSERT b" + std::to_string(i) + " slow");
  };
  hand(0);
  // Both in flight, their answers kSlow away: the rest arrive while each client's channel is
  // busy, and must wait for it.
  ASSERT_TRUE(run_until([&] { return database_.log.size() == 2; }));
  for (int i = 1; i < kEach; ++i)
    hand(i);
  EXPECT_EQ(settled(2 * kEach), (Counts{.handed = 2 * kEach, .success = 2 * kEach}));
  for (const char* name : {"a", "b"}) {
    std::vector<Received> seen;
    for (const auto& r : database_.log)
      if (r.sql.starts_with(std::string("INSERT ") + name)) seen.push_back(r);
    ASSERT_EQ(seen.size(), static_cast<std::size_t>(kEach));
    for (int i = 0; i < kEach; ++i) {
      EXPECT_EQ(seen[i].sql, "INSERT " + std::string(name) + std::to_string(i) + " slow");
    }
    for (int i = 1; i < kEach; ++i) {
      EXPECT_GE(seen[i].at - seen[i - 1].at, kSlow) << name << i << " overlapped the previous one";
    }
  }
}

// A session-mode client keeps one mirror connection for its whole session: nobody else's
// requests run there. When it leaves, the connection is reset with DISCARD ALL and goes back to
// the pool.
TEST_F(MirrorWorker, SessionKeepsItsConnectionAndDiscardsItWhenItCloses) {
  start({}, 2);
  auto& session = client(/*session_mode=*/true);
  auto& other = client();
  session.autocommit("INSERT s0");
  ASSERT_TRUE(wait_ended(1));
  EXPECT_EQ(pool_->state().active, 1) << "the session's connection went back to the pool";
  other.autocommit("INSERT o0");
  ASSERT_TRUE(wait_ended(2));
  session.block("INSERT s1");
  ASSERT_TRUE(wait_ended(3));
  other.autocommit("INSERT o1");
  EXPECT_EQ(settled(4), (Counts{.handed = 4, .success = 4}));
  EXPECT_EQ(database_.queries(0),
            (std::vector<std::string>{"INSERT s0", "BEGIN", "INSERT s1", "COMMIT"}));
  EXPECT_EQ(database_.queries(1), (std::vector<std::string>{"INSERT o0", "INSERT o1"}));
  EXPECT_EQ(pool_->state().active, 1);

  session.leave();
  ASSERT_TRUE(run_until([&] { return pool_->state().idle == 2; }));
  EXPECT_EQ(database_.queries(0),
            (std::vector<std::string>{"INSERT s0", "BEGIN", "INSERT s1", "COMMIT", "DISCARD ALL"}));
  EXPECT_EQ(database_.queries(1), (std::vector<std::string>{"INSERT o0", "INSERT o1"}));
  EXPECT_EQ(server_.open_connections(), 2u);
  EXPECT_EQ(stats().handed, 4u);  // the reset is not a mirrored transaction
}

// Requests of several clients queued while the mirror's only worker was busy replay as one
// pipeline: one connection, written at once, the answers cut by counting ReadyForQuery. Each
// request keeps the outcome of its own answers; those left unanswered when the connection is
// lost or the timeout passes are connection failures or timeouts, never successes. A replay one
// request at a time would count the requests after the fault as successes on a new connection:
// the counts below tell a pipeline from it.
class MirrorPipeline : public MirrorWorker {
 protected:
  void start(MirrorSettings settings = {}) {
    settings.workers = 1;
    MirrorWorker::start(settings);
  }
  // One autocommit request from each of `sqls`' clients, in order, all queued before the
  // worker runs: they form one pipeline.
  void hand(const std::vector<std::string>& sqls) {
    for (const auto& sql : sqls)
      client().autocommit(sql);
  }
};

TEST_F(MirrorPipeline, AnErrorFailsOnlyItsOwnTransaction) {
  start();
  client().autocommit("INSERT a0");
  client().block("INSERT b0 fail");  // BEGIN, the failing INSERT, COMMIT answered ROLLBACK
  client().recovered_block("INSERT fail dup", "INSERT c0");
  client().autocommit("INSERT d0");
  EXPECT_EQ(settled(4), (Counts{.handed = 4, .success = 3, .query = 1}));
  EXPECT_EQ(server_.connections(), 1u);
  EXPECT_EQ(database_.queries(0),
            (std::vector<std::string>{"INSERT a0", "BEGIN", "INSERT b0 fail", "COMMIT", "BEGIN",
                                      "SAVEPOINT s", "INSERT fail dup", "ROLLBACK TO SAVEPOINT s",
                                      "INSERT c0", "COMMIT", "INSERT d0"}));
}

class MirrorPipelineBroken : public MirrorPipeline,
                             public ::testing::WithParamInterface<const char*> {};

// The connection is lost at the second request: the first was answered (success), the second
// and the third, written on that connection, were not (connection failures).
TEST_P(MirrorPipelineBroken, RequestsNotAnsweredAreConnectionFailures) {
  MirrorSettings settings;
  settings.timeout = 60s;  // beyond the deadline: waiting for it fails the test
  start(settings);
  hand({"INSERT a0", std::string("INSERT b0 ") + GetParam(), "INSERT c0"});
  EXPECT_EQ(settled(3), (Counts{.handed = 3, .success = 1, .connection = 2}));
  EXPECT_EQ(server_.connections(), 1u);
  hand({"INSERT after"});
  EXPECT_EQ(settled(4), (Counts{.handed = 4, .success = 2, .connection = 2}));
  EXPECT_EQ(database_.queries(1), std::vector<std::string>{"INSERT after"});
}

INSTANTIATE_TEST_SUITE_P(MirrorPipeline, MirrorPipelineBroken,
                         ::testing::Values("reset", "fatal", "fatal_stay"));

// The mirror stalls at the second request: the first was answered in time (success), the
// second and third time out; the stalled query is cancelled and the connection not reused.
TEST_F(MirrorPipeline, RequestsNotAnsweredInTimeAreTimeouts) {
  MirrorSettings settings;
  settings.timeout = 200ms;
  start(settings);
  hand({"INSERT a0", "INSERT b0 stall", "INSERT c0"});
  EXPECT_EQ(settled(3), (Counts{.handed = 3, .success = 1, .timeout = 2}));
  ASSERT_TRUE(run_until([&] { return server_.cancels().size() == 4; }));
  for (const auto& cancel : server_.cancels())
    EXPECT_EQ(cancel.process_id, ScriptedServer::key(0).process_id);
  hand({"INSERT after"});
  EXPECT_EQ(settled(4), (Counts{.handed = 4, .success = 2, .timeout = 2}));
  EXPECT_EQ(server_.connections(), 2u);
  EXPECT_EQ(database_.queries(1), std::vector<std::string>{"INSERT after"});
}

// A request that leaves the mirror connection inside a transaction (here the mirror answered
// BEGIN where the primary was idle) ends the pipeline: the requests after it would run inside
// that transaction, so the connection is closed and they are connection failures.
TEST_F(MirrorPipeline, ConnectionLeftInATransactionEndsThePipeline) {
  start();
  client().send("BEGIN left open", wire::complete("BEGIN") + wire::ready('I'));
  hand({"INSERT b0", "INSERT c0"});
  EXPECT_EQ(settled(3), (Counts{.handed = 3, .success = 1, .connection = 2}));
  ASSERT_TRUE(run_until([&] { return server_.closed_by_client(0); }));
  hand({"INSERT after"});
  EXPECT_EQ(settled(4), (Counts{.handed = 4, .success = 2, .connection = 2}));
  EXPECT_EQ(server_.connections(), 2u);
}

// A client's requests never share a pipeline: the second waits for the first's answers, and
// they reach the mirror in the client's order.
TEST_F(MirrorPipeline, KeepsEachClientsOrder) {
  start();
  auto& a = client();
  auto& b = client();
  for (int i = 0; i < 3; ++i) {
    a.autocommit("INSERT a" + std::to_string(i));
    b.autocommit("INSERT b" + std::to_string(i));
  }
  EXPECT_EQ(settled(6), (Counts{.handed = 6, .success = 6}));
  EXPECT_EQ(database_.queries(0),
            (std::vector<std::string>{"INSERT a0", "INSERT b0", "INSERT a1", "INSERT b1",
                                      "INSERT a2", "INSERT b2"}));
}

// A session-mode client's requests replay on its own connection, never in a pipeline: the
// requests queued around one pipeline without it.
TEST_F(MirrorPipeline, LeavesOutSessionsThatKeepTheirConnection) {
  MirrorSettings settings;
  settings.workers = 1;
  MirrorWorker::start(settings, 2);
  auto& a = client();
  auto& session = client(/*session_mode=*/true);
  auto& b = client();
  a.autocommit("INSERT a0");
  session.autocommit("INSERT s0");
  b.autocommit("INSERT b0");
  EXPECT_EQ(settled(3), (Counts{.handed = 3, .success = 3}));
  EXPECT_EQ(database_.queries(0), (std::vector<std::string>{"INSERT a0", "INSERT b0"}));
  EXPECT_EQ(database_.queries(1), std::vector<std::string>{"INSERT s0"});
}

// Transactions that use named prepared statements join pipelines too: each is rewritten for the
// mirror connection in turn, and one that prepares a statement there goes last in its write, so
// that the transactions after it are rewritten once its answers say whether the statement
// exists. Here the first write ends with a's transaction (it prepares "INSERT x" on the mirror);
// b's, rewritten after it, finds that statement prepared; then a pair again in one write, where
// a's connection reset leaves b's unanswered (a connection failure: one at a time, b's would
// have been a success on a new connection).
TEST_F(MirrorPipeline, CarriesTransactionsThatUseNamedStatements) {
  start();
  auto& a = client();
  auto& b = client();
  a.prepare("s", "INSERT x");
  b.prepare("t", "INSERT x");
  EXPECT_EQ(settled(2), (Counts{.handed = 2, .success = 2}));
  ASSERT_EQ(database_.parses.size(), 1u);
  EXPECT_EQ(database_.parses[0].connection, 0u);
  a.autocommit("INSERT a reset");
  b.execute({"t"});
  EXPECT_EQ(settled(4), (Counts{.handed = 4, .success = 2, .connection = 2}));
  EXPECT_EQ(server_.connections(), 1u);
}

// An error before the Parse the rewriter put in makes the server skip it: the statement does not
// exist there. The transaction after it, of another client, is rewritten only then, and
// prepares it again: a success, where written behind the first it would have failed on a
// missing statement.
TEST_F(MirrorPipeline, RewritesTheNextTransactionOnceAParseIsAnswered) {
  start();
  auto& a = client();
  auto& b = client();
  // "bad" is prepared on the mirror too (its execution fails there only: a query failure);
  // "s" and "t", one statement, only on the primary.
  a.prepare("bad", "INSERT fail");
  a.declare("s", "INSERT y");
  b.declare("t", "INSERT y");
  EXPECT_EQ(settled(1), (Counts{.handed = 1, .query = 1}));
  ASSERT_EQ(database_.parses.size(), 1u);
  a.execute({"bad", "s"});  // the error skips the Parse put in for "s"
  b.execute({"t"});
  EXPECT_EQ(settled(3), (Counts{.handed = 3, .success = 1, .query = 2}));
  EXPECT_EQ(database_.parses.size(), 2u) << "b's transaction prepared the statement";
  EXPECT_EQ(server_.connections(), 1u);
}

}  // namespace
}  // namespace pgdog::mirror
