#include "protocol/session_sql.hpp"

#include <algorithm>
#include <array>
#include <random>

#include <gtest/gtest.h>

namespace pgdog::protocol::sql {
namespace {

std::string names(const SessionEffects& e) {
  std::string out;
  for (const auto& s : e.settings) {
    if (!out.empty()) out += ",";
    out += s.name + (s.reset ? "=default" : "") + (s.local ? "(local)" : "");
  }
  return out;
}

std::string objects(const std::vector<SessionEffects::Object>& v) {
  std::string out;
  for (const auto& o : v) {
    if (!out.empty()) out += ",";
    out += std::string(to_string(o.kind)) + ":" + o.name;
  }
  return out;
}

// The prefilter is a fast substring search: it must find each of its words wherever a plain,
// case-folded search does (inside identifiers and other words too: RESET, UNLISTEN, pg_temp,
// pg_advisory_lock), and nothing else. Compared on generated texts built from the words, their
// prefixes, near misses and filler, in random case.
TEST(SessionSql, PrefilterFindsWhatASubstringSearchFinds) {
  static constexpr std::array<std::string_view, 10> kWords = {
      "advisory", "close",  "deallocate", "declare", "discard",
      "drop",     "listen", "prepare",    "set",     "temp"};
  static constexpr std::array<std::string_view, 16> kFiller = {
      " ",   "_",  ".",  ";",  "x",   "e",  "SELECT ", "aid = 1",
      "pg_", "re", "un", "de", "dis", "te", "clo",     "\xff"};
  const auto reference = [](std::string_view text) {
    std::string lower(text);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; });
    return std::any_of(kWords.begin(), kWords.end(),
                       [&](std::string_view w) { return lower.find(w) != std::string::npos; });
  };
  std::mt19937 rng(7);
  int found = 0;
  for (int n = 0; n < 20000; ++n) {
    std::string text;
    // Short texts; long ones (past 16 bytes the prefilter works in blocks) without whole words,
    // mostly negative; and long ones with words anywhere.
    const int kind = n % 3;
    const int parts = static_cast<int>(kind == 0 ? rng() % 6 : rng() % 40);
    for (int p = 0; p < parts; ++p) {
      std::string piece;
      switch (kind == 1 ? 1 + rng() % 3 : rng() % 4) {
        case 0:  // a whole word
          piece = kWords[rng() % kWords.size()];
          break;
        case 1: {  // a word cut short or with one letter changed: a near miss
          const auto w = kWords[rng() % kWords.size()];
          piece = w.substr(0, 1 + rng() % (w.size() - 1));
          if (rng() % 2 == 0) piece.back() = static_cast<char>('a' + rng() % 26);
          break;
        }
        default:
          piece = kFiller[rng() % kFiller.size()];
      }
      for (char& c : piece)
        if (c >= 'a' && c <= 'z' && rng() % 2 == 0) c = static_cast<char>(c - 32);
      text += piece;
    }
    ASSERT_EQ(may_have_effects(text), reference(text)) << '"' << text << '"';
    found += reference(text) ? 1 : 0;
  }
  EXPECT_GT(found, 2000);  // both answers were exercised
  EXPECT_LT(found, 18000);
}

// A statement whose only hint is "set" (an UPDATE's SET) is not lexed when it begins with no
// word an effect begins with: compared with lexing every query on generated statements built
// from the words that matter there (SET and RESET statements, set_config(), DO and CALL,
// comments before them, a ';' in a string or between statements, other hints).
TEST(SessionSql, TheShortcutForAnUpdatesSetAgreesWithLexing) {
  // What session_effects() was before the shortcut: every text with a hint lexed.
  const auto reference = [](std::string_view q) {
    return may_have_effects(q) ? session_effects_lexed(q) : SessionEffects{};
  };
  for (auto q : {"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1",
                 "SELECT * FROM t OFFSET 5", "/* c */ SET x = 1", "-- c\nRESET x",
                 "UPDATE t SET a = Set_Config('x', '1', false)", "call reset_things()",
                 "DO $$BEGIN UPDATE t SET a = 1; END$$", "(SET x = 1)", "SELECT 'a;b' OFFSET 1",
                 "UPDATE t SET a = 1; SET b = 2", "E'\\';' SET x = 1", "UPDATE t SET a = 1;\n",
                 "SET x = 1;", ";SET x = 1", "UPDATE t SET a = 1; -- x\n"}) {
    EXPECT_EQ(session_effects(q), reference(q)) << q;
  }
  EXPECT_TRUE(session_effects("UPDATE t SET a = 1").empty());
  EXPECT_EQ(names(session_effects("/* c */ SET x = 1")), "x");
  EXPECT_EQ(names(session_effects("UPDATE t SET a = set_config('x', '1', false)")), "x");
  EXPECT_TRUE(session_effects("call reset_things()").opaque);

  static constexpr std::array<std::string_view, 24> kPieces = {"SET ",
                                                               "set x = 1",
                                                               "RESET ",
                                                               "reset",
                                                               "DO ",
                                                               "CALL ",
                                                               "UPDATE ",
                                                               "t ",
                                                               " SET a = 1 ",
                                                               "set_config",
                                                               "('x', '1', false)",
                                                               "OFFSET ",
                                                               ";",
                                                               "-- c\n",
                                                               "/* ; */",
                                                               "'a;b'",
                                                               "$$ SET x $$",
                                                               "(",
                                                               ")",
                                                               "SELECT ",
                                                               "x",
                                                               "TEMP ",
                                                               "settings",
                                                               " "};
  std::mt19937 rng(11);
  int with_effects = 0;
  for (int n = 0; n < 20000; ++n) {
    std::string text;
    const int parts = static_cast<int>(1 + rng() % 8);
    for (int p = 0; p < parts; ++p) {
      std::string piece(kPieces[rng() % kPieces.size()]);
      for (char& c : piece)
        if (c >= 'a' && c <= 'z' && rng() % 3 == 0) c = static_cast<char>(c - 32);
      text += piece;
    }
    const auto expected = reference(text);
    ASSERT_EQ(session_effects(text), expected) << '"' << text << '"';
    // As the exchange calls it: with the hints of the Query message's body (its terminator).
    ASSERT_EQ(session_effects(text, hints_in(text + '\0')), expected) << '"' << text << '"';
    with_effects += expected.empty() ? 0 : 1;
  }
  EXPECT_GT(with_effects, 2000);  // both answers were exercised
  EXPECT_LT(with_effects, 18000);
}

TEST(SessionSql, CommonQueriesHaveNoEffects) {
  for (auto q : {"SELECT abalance FROM pgbench_accounts WHERE aid = 42",
                 "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1",
                 "INSERT INTO t VALUES (1, 'x')", "BEGIN", "COMMIT", "SELECT 'SET x = 1'",
                 "-- RESET ALL\nSELECT 1", "SELECT * FROM settings_table", ""}) {
    EXPECT_TRUE(session_effects(q).empty()) << q;
  }
}

TEST(SessionSql, SetForms) {
  EXPECT_EQ(names(session_effects("SET search_path TO a, b")), "search_path");
  EXPECT_EQ(names(session_effects("set Statement_Timeout = '5s'")), "statement_timeout");
  EXPECT_EQ(names(session_effects("SET SESSION work_mem TO '8MB'")), "work_mem");
  EXPECT_EQ(names(session_effects("SET LOCAL lock_timeout = 100")), "lock_timeout(local)");
  EXPECT_EQ(names(session_effects("SET datestyle TO DEFAULT")), "datestyle=default");
  EXPECT_EQ(names(session_effects("SET TIME ZONE 'UTC'")), "timezone");
  EXPECT_EQ(names(session_effects("SET TIME ZONE LOCAL")), "timezone=default");
  EXPECT_EQ(names(session_effects("SET ROLE alice")), "role");
  EXPECT_EQ(names(session_effects("SET ROLE NONE")), "role=default");
  EXPECT_EQ(objects(session_effects("SET SESSION AUTHORIZATION bob").created),
            "authorization:session");
  EXPECT_EQ(objects(session_effects("RESET SESSION AUTHORIZATION").dropped),
            "authorization:session");
  EXPECT_EQ(names(session_effects("SET SCHEMA 'app'")), "search_path");
  EXPECT_EQ(names(session_effects("SET NAMES 'UTF8'")), "client_encoding");
  EXPECT_EQ(names(session_effects("SET myapp.tenant = '7'")), "myapp.tenant");
  EXPECT_EQ(names(session_effects("SET \"MyApp\".x = 1")), "MyApp.x");
  EXPECT_EQ(names(session_effects("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")),
            "default_transaction_isolation,default_transaction_read_only,"
            "default_transaction_deferrable");
  // Transaction-scoped: nothing outlives the transaction.
  EXPECT_TRUE(session_effects("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").empty());
  EXPECT_TRUE(session_effects("SET CONSTRAINTS ALL DEFERRED").empty());
}

TEST(SessionSql, ResetForms) {
  EXPECT_EQ(names(session_effects("RESET datestyle")), "datestyle=default");
  EXPECT_EQ(names(session_effects("RESET TIME ZONE")), "timezone=default");
  EXPECT_EQ(names(session_effects("RESET ROLE")), "role=default");
  EXPECT_TRUE(session_effects("RESET ALL").reset_all);
  const auto d = session_effects("DISCARD ALL");
  EXPECT_TRUE(d.reset_all);
  EXPECT_EQ(d.cleared, 0xff);
  EXPECT_EQ(session_effects("DISCARD TEMP").cleared, SessionEffects::bit(Pin::temp_table));
}

TEST(SessionSql, SetConfigCallsCount) {
  EXPECT_EQ(names(session_effects("SELECT set_config('search_path', 'a', false)")),
            "search_path");
  EXPECT_TRUE(session_effects("SELECT set_config(name, 'a', false) FROM t").settings.empty());
}

TEST(SessionSql, StatementsInOneQueryAllCount) {
  const auto e = session_effects("SET a.x = 1; SELECT 1; RESET b.y; SET LOCAL c.z = 2");
  EXPECT_EQ(names(e), "a.x,b.y=default,c.z(local)");
}

TEST(SessionSql, TemporaryTables) {
  EXPECT_EQ(objects(session_effects("CREATE TEMP TABLE t (x int)").created), "temp_table:t");
  EXPECT_EQ(objects(session_effects("create temporary table if not exists \"T\"(x int)").created),
            "temp_table:T");
  EXPECT_EQ(objects(session_effects("CREATE GLOBAL TEMPORARY TABLE g AS SELECT 1").created),
            "temp_table:g");
  EXPECT_EQ(objects(session_effects("CREATE TABLE pg_temp.p (x int)").created), "temp_table:p");
  EXPECT_EQ(objects(session_effects("CREATE TEMP VIEW v AS SELECT 1").created), "temp_table:v");
  EXPECT_EQ(objects(session_effects("SELECT 1 AS x INTO TEMP s").created), "temp_table:s");
  EXPECT_TRUE(session_effects("CREATE TEMP TABLE d (x int) ON COMMIT DROP").created.empty());
  EXPECT_TRUE(session_effects("CREATE TABLE t (x int)").created.empty());
  EXPECT_TRUE(session_effects("SELECT 1 INTO new_table").created.empty());
  EXPECT_EQ(objects(session_effects("DROP TABLE IF EXISTS t, pg_temp.p").dropped),
            "temp_table:t,temp_table:p");
}

TEST(SessionSql, LocksListenPrepareCursors) {
  EXPECT_EQ(session_effects("SELECT pg_advisory_lock(1), pg_try_advisory_lock(2)").locks, 2);
  EXPECT_EQ(session_effects("SELECT pg_advisory_unlock(1)").locks, -1);
  EXPECT_EQ(session_effects("SELECT pg_advisory_xact_lock(1)").locks, 0);  // transaction scoped
  EXPECT_EQ(session_effects("SELECT pg_advisory_unlock_all()").cleared,
            SessionEffects::bit(Pin::advisory_lock));
  EXPECT_EQ(objects(session_effects("LISTEN Channel").created), "listen:channel");
  EXPECT_EQ(objects(session_effects("UNLISTEN channel").dropped), "listen:channel");
  EXPECT_EQ(session_effects("UNLISTEN *").cleared, SessionEffects::bit(Pin::listen));
  EXPECT_EQ(objects(session_effects("PREPARE q (int) AS SELECT $1").created), "prepare:q");
  EXPECT_TRUE(session_effects("PREPARE TRANSACTION 'gid'").created.empty());
  EXPECT_EQ(objects(session_effects("DEALLOCATE PREPARE q").dropped), "prepare:q");
  EXPECT_EQ(session_effects("DEALLOCATE ALL").cleared, SessionEffects::bit(Pin::prepare));
  EXPECT_EQ(objects(session_effects("DECLARE c CURSOR WITH HOLD FOR SELECT 1").created),
            "cursor:c");
  EXPECT_TRUE(session_effects("DECLARE c CURSOR FOR SELECT 1").created.empty());
  EXPECT_EQ(objects(session_effects("CLOSE c").dropped), "cursor:c");
  EXPECT_EQ(session_effects("CLOSE ALL").cleared, SessionEffects::bit(Pin::cursor));
}

TEST(SessionSql, KeywordsInsideStringsAndCommentsAreNotStatements) {
  EXPECT_TRUE(session_effects("SELECT 'CREATE TEMP TABLE x' /* LISTEN y */").empty());
  EXPECT_TRUE(session_effects("SELECT $$SET a = 1$$").empty());
}

}  // namespace
}  // namespace pgdog::protocol::sql

namespace pgdog::protocol::sql {
namespace {

TEST(SessionSql, AnyTemporaryObjectAndAnyDropAreAskedAbout) {
  EXPECT_EQ(session_effects("CREATE STATISTICS pg_temp.s ON a, b FROM t").pin_kinds(),
            SessionEffects::bit(Pin::temp_table));
  EXPECT_EQ(session_effects("CREATE FUNCTION pg_temp.f() RETURNS int AS 'select 1' LANGUAGE sql")
                .pin_kinds(),
            SessionEffects::bit(Pin::temp_table));
  EXPECT_EQ(session_effects("CREATE INDEX i ON t (x)").pin_kinds(), 0);
  EXPECT_EQ(session_effects("DROP STATISTICS pg_temp.s").pin_kinds(),
            SessionEffects::bit(Pin::temp_table));
  EXPECT_EQ(session_effects("SELECT pg_try_advisory_lock(1), pg_advisory_unlock(1)").pin_kinds(),
            SessionEffects::bit(Pin::advisory_lock));
}

TEST(SessionSql, SessionAuthorizationResetsTheRole) {
  for (const char* sql : {"SET SESSION AUTHORIZATION bob", "RESET SESSION AUTHORIZATION",
                          "SET SESSION AUTHORIZATION DEFAULT"}) {
    const auto e = session_effects(sql);
    ASSERT_EQ(e.settings.size(), 1U) << sql;
    EXPECT_EQ(e.settings[0].name, "role") << sql;
    EXPECT_TRUE(e.settings[0].reset) << sql;
  }
}

TEST(SessionSql, DoBlocksAndCallsThatMentionStateAreOpaque) {
  const auto e = session_effects("DO $$ BEGIN SET enable_seqscan = 0; END $$");
  EXPECT_TRUE(e.opaque);
  EXPECT_TRUE(e.settings.empty());  // the SET is in the body, which is a string
  EXPECT_EQ(e.pin_kinds(), (1U << kPinKinds) - 1);
  EXPECT_TRUE(session_effects("call set_things()").opaque);
  // Without a hint of session state the text is not lexed at all.
  EXPECT_TRUE(session_effects("DO $$ BEGIN PERFORM 1; END $$").empty());
  EXPECT_FALSE(session_effects("SELECT 'DO'").opaque);
}

}  // namespace
}  // namespace pgdog::protocol::sql
