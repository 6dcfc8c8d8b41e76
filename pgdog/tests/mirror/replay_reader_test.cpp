#include "mirror/replay_reader.hpp"

#include <ostream>

#include <gtest/gtest.h>

#include "protocol/messages.hpp"

namespace pgdog::stats {
void PrintTo(MirrorOutcome o, std::ostream* os) {
  *os << to_string(o);
}
}  // namespace pgdog::stats

namespace pgdog::mirror {

void PrintTo(const StatementResult& r, std::ostream* os) {
  *os << r.type << " \"" << r.tag << "\" " << std::hex << r.rows_hash << std::dec;
}

namespace {

using stats::MirrorOutcome;

std::string complete(std::string_view tag) {
  std::string out;
  protocol::write_command_complete(out, tag);
  return out;
}
std::string rfq(char status) {
  std::string out;
  protocol::write_ready_for_query(out, status);
  return out;
}
std::string error(std::string_view code, std::string_view severity = "ERROR") {
  std::string out;
  protocol::write_error(out, {.severity = severity, .code = code, .message = "it went wrong"});
  return out;
}
std::string empty(char type) {
  std::string out;
  protocol::write_empty(out, type);
  return out;
}
std::string row(std::string value) {
  std::string out;
  protocol::write_data_row(out, {std::move(value)});
  return out;
}
std::string parameter(std::string_view name, std::string_view value) {
  std::string out;
  protocol::write_parameter_status(out, name, value);
  return out;
}
std::uint64_t hash_of(std::initializer_list<std::string_view> rows) {
  RowHash h;
  for (auto r : rows) h.update(r);
  return h.value();
}

// The server connection's state a reader keeps in step, and a reader over it.
struct Server {
  backend::PreparedCache prepared;
  protocol::Params params;
  backend::ResponseTracker tracker;

  ReplayReader reader(ReplayReader::Settings s, bool track = false) {
    return ReplayReader(s, prepared, params, 'I', track ? &tracker : nullptr);
  }
};

// Feeds `bytes` as reads of at most `chunk` bytes, the way a connection's buffer does: what the
// reader leaves unread stays in front of the next read. Returns what is left unread at the end.
std::string play(ReplayReader& reader, std::string_view bytes, std::size_t chunk) {
  std::string unread;
  for (std::size_t at = 0; at < bytes.size() && !reader.outcome(); at += chunk) {
    unread.append(bytes.substr(at, chunk));
    unread.erase(0, reader.feed(unread));
  }
  return unread;
}

ReplayReader::Settings expecting(std::size_t ready, bool tags = true, bool rows = false) {
  ReplayReader::Settings s;
  s.ready = ready;
  s.tags = tags;
  s.rows = rows;
  return s;
}

TEST(ReplayReader, SimpleProtocolTransactionSucceeds) {
  Server server;
  auto reader = server.reader(expecting(3));
  EXPECT_EQ(reader.feed(complete("BEGIN") + rfq('T')), complete("BEGIN").size() + 6);
  EXPECT_FALSE(reader.outcome());
  EXPECT_EQ(reader.status(), 'T');
  reader.feed(parameter("TimeZone", "UTC") + complete("INSERT 0 1") + rfq('T'));
  EXPECT_FALSE(reader.outcome());
  reader.feed(complete("COMMIT") + rfq('I'));
  ASSERT_TRUE(reader.outcome());
  EXPECT_EQ(*reader.outcome(), MirrorOutcome::success);
  EXPECT_EQ(reader.status(), 'I');
  EXPECT_EQ(server.params.get("TimeZone"), "UTC");
  const StatementResults want{{'C', "BEGIN", 0}, {'C', "INSERT 0 1", 0}, {'C', "COMMIT", 0}};
  EXPECT_EQ(reader.results(), want);
  EXPECT_TRUE(reader.reusable(true));
  EXPECT_FALSE(reader.reusable(false));  // the server said more than it was asked
}

TEST(ReplayReader, ExtendedProtocolBatchSucceeds) {
  Server server;
  auto reader = server.reader(expecting(1, true, true));
  std::string description;
  protocol::write_row_description(description, {"a"});
  const std::string answers = empty('1') + empty('2') + description + row("x") + row("y") +
                              complete("SELECT 2") + empty('I') + rfq('I');
  EXPECT_EQ(reader.feed(answers), answers.size());
  ASSERT_TRUE(reader.outcome());
  EXPECT_EQ(*reader.outcome(), MirrorOutcome::success);
  const StatementResults want{{'C', "SELECT 2", hash_of({row("x"), row("y")})},
                              {'I', "", hash_of({})}};
  EXPECT_EQ(reader.results(), want);
}

TEST(ReplayReader, NothingToReadWhenTheRewriterAnsweredEverything) {
  Server server;
  auto reader = server.reader(expecting(0));
  ASSERT_TRUE(reader.outcome());
  EXPECT_EQ(*reader.outcome(), MirrorOutcome::success);
  EXPECT_EQ(reader.feed(rfq('I')), 0U);
}

TEST(ReplayReader, ErrorResponseIsAQueryFailure) {
  Server server;
  auto reader = server.reader(expecting(1));
  reader.feed(error("23505") + rfq('I'));
  ASSERT_TRUE(reader.outcome());
  EXPECT_EQ(*reader.outcome(), MirrorOutcome::query);
  EXPECT_EQ(reader.reason(), "SQLSTATE 23505");
  EXPECT_EQ(reader.first_error_message(), "it went wrong");
  const StatementResults want{{'E', "23505", 0}};
  EXPECT_EQ(reader.results(), want);
  EXPECT_TRUE(reader.reusable(true));  // an error is the query's, not the connection's
}

TEST(ReplayReader, TheErrorsThePrimaryRecoveredFromAreNotFailures) {
  // BEGIN; SAVEPOINT a; INSERT (fails) | ROLLBACK TO a; INSERT; COMMIT
  const std::string answers = complete("BEGIN") + complete("SAVEPOINT") + error("23505") +
                              rfq('E') + complete("ROLLBACK") + complete("INSERT 0 1") +
                              complete("COMMIT") + rfq('I');
  for (std::uint32_t primary_errors : {0U, 1U}) {
    Server server;
    auto settings = expecting(2);
    settings.primary_errors = primary_errors;
    auto reader = server.reader(settings);
    reader.feed(answers);
    ASSERT_TRUE(reader.outcome());
    EXPECT_EQ(*reader.outcome(),
              primary_errors == 1 ? MirrorOutcome::success : MirrorOutcome::query);
    EXPECT_EQ(reader.results().size(), 6U);
  }
}

TEST(ReplayReader, FatalIsAConnectionFailure) {
  Server server;
  auto reader = server.reader(expecting(2));
  const std::string before = complete("INSERT 0 1") + rfq('I');
  const std::string fatal = error("57P01", "FATAL");
  EXPECT_EQ(reader.feed(before + fatal + rfq('I')), before.size() + fatal.size());
  ASSERT_TRUE(reader.outcome());
  EXPECT_EQ(*reader.outcome(), MirrorOutcome::connection);
  EXPECT_EQ(reader.reason(), "SQLSTATE 57P01");
  EXPECT_FALSE(reader.reusable(true));
}

TEST(ReplayReader, AnInvalidMessageIsAConnectionFailure) {
  Server server;
  auto reader = server.reader(expecting(1));
  // A length shorter than the length field itself.
  reader.feed(complete("SELECT 1") + std::string("Z\0\0\0\x02", 5));
  ASSERT_TRUE(reader.outcome());
  EXPECT_EQ(*reader.outcome(), MirrorOutcome::connection);
  EXPECT_TRUE(reader.reason().starts_with("mirror sent an invalid message")) << reader.reason();
  EXPECT_FALSE(reader.reusable(true));

  // A message other than a row, larger than the limit.
  Server other;
  auto settings = expecting(1);
  settings.max_message_size = 16;
  auto small = other.reader(settings);
  small.feed(complete(std::string(40, 'x')) + rfq('I'));
  ASSERT_TRUE(small.outcome());
  EXPECT_EQ(*small.outcome(), MirrorOutcome::connection);
}

TEST(ReplayReader, RowHashesOnlyWhenComparingResults) {
  const std::string answers = row("a") + complete("SELECT 1") + row("b") + row("c") +
                              complete("SELECT 2") + error("42P01") + rfq('I');
  Server server;
  auto rows = server.reader(expecting(1, true, true));
  rows.feed(answers);
  const StatementResults want{{'C', "SELECT 1", hash_of({row("a")})},
                              {'C', "SELECT 2", hash_of({row("b"), row("c")})},
                              {'E', "42P01", 0}};
  EXPECT_EQ(rows.results(), want);

  auto tags = server.reader(expecting(1, true, false));
  tags.feed(answers);
  const StatementResults tags_only{{'C', "SELECT 1", 0}, {'C', "SELECT 2", 0}, {'E', "42P01", 0}};
  EXPECT_EQ(tags.results(), tags_only);

  auto off = server.reader(expecting(1, false, false));
  off.feed(answers);
  EXPECT_TRUE(off.results().empty());
  EXPECT_EQ(*off.outcome(), MirrorOutcome::query);
}

TEST(ReplayReader, SplitAtEveryByteGivesTheSameResults) {
  // One row larger than the largest message allowed: it can only arrive in pieces.
  const std::string big = row(std::string(300, 'r'));
  const std::string answers = complete("BEGIN") + rfq('T') + row("small") + big +
                              parameter("DateStyle", "ISO") + complete("SELECT 2") +
                              error("23505") + rfq('E') + complete("ROLLBACK") + rfq('I');
  auto settings = expecting(3, true, true);
  settings.max_message_size = 64;
  const StatementResults want{{'C', "BEGIN", hash_of({})},
                              {'C', "SELECT 2", hash_of({row("small"), big})},
                              {'E', "23505", 0},
                              {'C', "ROLLBACK", hash_of({})}};
  for (std::size_t chunk = 1; chunk <= answers.size(); ++chunk) {
    Server server;
    auto reader = server.reader(settings);
    EXPECT_TRUE(play(reader, answers, chunk).empty()) << "reads of " << chunk;
    ASSERT_TRUE(reader.outcome()) << "reads of " << chunk;
    EXPECT_EQ(*reader.outcome(), MirrorOutcome::query) << "reads of " << chunk;
    EXPECT_EQ(reader.results(), want) << "reads of " << chunk;
    EXPECT_EQ(server.params.get("DateStyle"), "ISO");
  }
  // Two reads, cut at every byte.
  for (std::size_t cut = 1; cut < answers.size(); ++cut) {
    Server server;
    auto reader = server.reader(settings);
    std::string unread = answers.substr(0, cut);
    unread.erase(0, reader.feed(unread));
    unread += answers.substr(cut);
    unread.erase(0, reader.feed(unread));
    EXPECT_TRUE(unread.empty()) << "cut at " << cut;
    ASSERT_TRUE(reader.outcome()) << "cut at " << cut;
    EXPECT_EQ(reader.results(), want) << "cut at " << cut;
  }
}

TEST(ReplayReader, StopsAtTheLastReadyForQueryOfTwoInOneRead) {
  Server server;
  auto reader = server.reader(expecting(1));
  std::string notice;
  protocol::write_notice(notice, {.severity = "NOTICE", .code = "00000", .message = "late"});
  const std::string answer = complete("SELECT 1") + rfq('I');
  EXPECT_EQ(reader.feed(answer + notice), answer.size());  // the notice is left unread
  ASSERT_TRUE(reader.outcome());
  EXPECT_EQ(*reader.outcome(), MirrorOutcome::success);
  EXPECT_EQ(reader.results().size(), 1U);
}

TEST(ReplayReader, DiscardAllAndDeallocateAllClearThePreparedCache) {
  for (const char* tag : {"DISCARD ALL", "DEALLOCATE ALL"}) {
    Server server;
    server.prepared.insert("__pgdog_1");
    server.prepared.insert("__pgdog_2");
    auto reader = server.reader(expecting(2));
    reader.feed(complete("DEALLOCATE") + rfq('I'));
    EXPECT_EQ(server.prepared.size(), 2U) << tag;  // one statement, maybe not ours
    reader.feed(complete(tag) + rfq('I'));
    EXPECT_EQ(server.prepared.size(), 0U) << tag;
  }
}

// A Bind of a statement the mirror server lacks: the rewriter prepares it there first, and the
// server's ParseComplete for that Parse is the proxy's, not the client's.
TEST(ReplayReader, ASwallowedParseCompleteIsNotTheClients) {
  backend::StatementRegistry registry;
  backend::ClientStatements client{
      {"s1", registry.intern("INSERT INTO t VALUES (1)", std::string(2, '\0'))}};
  backend::ClientStatements overlay;
  backend::Rewriter rewriter(registry, overlay, &client);
  Server server;
  std::string frames;
  protocol::write_bind(frames, "", "s1", std::string("\0\0\0\0\0\0", 6));
  frames += std::string("E\0\0\0\x09\0\0\0\0\0", 10) + empty('S');
  std::string sent;
  for (std::string_view rest = frames; !rest.empty();) {
    auto f = *protocol::next_frame(rest, 1 << 20);
    rest.remove_prefix(f.size());
    if (!rewriter.rewrite(f, server.prepared, sent, server.tracker)) {
      sent.append(f.raw);
      server.tracker.push_plain(f);
    }
  }
  const std::string global = client.at("s1")->name;
  ASSERT_TRUE(sent.starts_with(client.at("s1")->parse));  // the Parse the rewriter added

  auto reader = server.reader(expecting(1), true);
  const std::string answers = empty('1') + empty('2') + complete("INSERT 0 1") + rfq('I');
  EXPECT_EQ(reader.feed(answers), answers.size());
  ASSERT_TRUE(reader.outcome());
  EXPECT_EQ(*reader.outcome(), MirrorOutcome::success);
  const StatementResults want{{'C', "INSERT 0 1", 0}};
  EXPECT_EQ(reader.results(), want);
  EXPECT_TRUE(server.tracker.idle());  // every answer matched its message
  EXPECT_TRUE(server.prepared.contains(global));
  EXPECT_TRUE(reader.reusable(true));
}

// The same, but the statement cannot be prepared on the mirror: the server skips to Sync and
// the cache must forget the statement it never got.
TEST(ReplayReader, AParseThatFailedLeavesTheCache) {
  backend::StatementRegistry registry;
  backend::ClientStatements client{
      {"s1", registry.intern("INSERT INTO missing VALUES (1)", std::string(2, '\0'))}};
  backend::ClientStatements overlay;
  backend::Rewriter rewriter(registry, overlay, &client);
  Server server;
  std::string frames;
  protocol::write_bind(frames, "", "s1", std::string("\0\0\0\0\0\0", 6));
  frames += empty('S');
  std::string sent;
  for (std::string_view rest = frames; !rest.empty();) {
    auto f = *protocol::next_frame(rest, 1 << 20);
    rest.remove_prefix(f.size());
    if (!rewriter.rewrite(f, server.prepared, sent, server.tracker)) {
      sent.append(f.raw);
      server.tracker.push_plain(f);
    }
  }
  const std::string global = client.at("s1")->name;
  ASSERT_TRUE(server.prepared.contains(global));
  auto reader = server.reader(expecting(1), true);
  reader.feed(error("42P01") + rfq('I'));
  ASSERT_TRUE(reader.outcome());
  EXPECT_EQ(*reader.outcome(), MirrorOutcome::query);
  EXPECT_FALSE(server.prepared.contains(global));
  EXPECT_TRUE(server.tracker.idle());
}

}  // namespace
}  // namespace pgdog::mirror
