#include <gtest/gtest.h>

#include "protocol/sql.hpp"

namespace pgdog::protocol::sql {
namespace {

TEST(Sql, ClassifiesStatements) {
  struct Case {
    const char* sql;
    Kind kind;
  };
  const Case cases[] = {
      {"INSERT INTO t VALUES (1)", Kind::dml},
      {"  update t set a = 1", Kind::dml},
      {"delete from t", Kind::dml},
      {"MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", Kind::dml},
      {"COPY t FROM STDIN", Kind::dml},
      {"COPY (select 1) TO STDOUT", Kind::read},
      {"SELECT * INTO new_t FROM t", Kind::dml},
      {"SELECT (SELECT 1 INTO x) FROM t", Kind::read},  // INTO only counts at top level
      {"WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", Kind::dml},
      {"WITH x AS (SELECT 1) SELECT * FROM x", Kind::read},
      {"select 1", Kind::read},
      {"(select 1)", Kind::read},
      {"VALUES (1)", Kind::read},
      {"create table t (a int)", Kind::ddl},
      {"ALTER TABLE t ADD COLUMN b int", Kind::ddl},
      {"drop index i", Kind::ddl},
      {"TRUNCATE t", Kind::ddl},
      {"BEGIN", Kind::transaction},
      {"commit", Kind::transaction},
      {"ROLLBACK TO SAVEPOINT a", Kind::transaction},
      {"PREPARE TRANSACTION 'x'", Kind::transaction},
      {"PREPARE s AS SELECT 1", Kind::session},
      {"SET search_path = public", Kind::session},
      {"EXPLAIN SELECT 1", Kind::read},
      {"EXPLAIN INSERT INTO t VALUES (1)", Kind::read},
      {"EXPLAIN ANALYZE INSERT INTO t VALUES (1)", Kind::dml},
      {"EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t", Kind::dml},
      {"DO $$ BEGIN END $$", Kind::dml},
      {"CALL p()", Kind::dml},
      {"VACUUM t", Kind::other},
      {"-- only a comment", Kind::empty},
      {"/* nested /* comment */ still */ INSERT INTO t VALUES (1)", Kind::dml},
      {"", Kind::empty},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(classify(c.sql), c.kind) << c.sql << " -> " << to_string(classify(c.sql));
  }
}

TEST(Sql, SplitRespectsQuotesAndComments) {
  auto parts = split(
      "insert into t values ('a;b'); -- c;d\n select $x$;$x$, \"we;ird\", E'\\';'; ; select 1");
  ASSERT_EQ(parts.size(), 3U);
  EXPECT_EQ(parts[0], "insert into t values ('a;b')");
  EXPECT_EQ(classify(parts[1]), Kind::read);
  EXPECT_EQ(parts[2], " select 1");
}

TEST(Sql, Contains) {
  EXPECT_TRUE(contains("BEGIN; INSERT INTO t VALUES (1); COMMIT", Kind::dml));
  EXPECT_FALSE(contains("BEGIN; SELECT 'insert'; COMMIT", Kind::dml));
  EXPECT_TRUE(contains("select 1; create table x (a int)", Kind::ddl));
}

TEST(Sql, FingerprintRemovesLiterals) {
  EXPECT_EQ(fingerprint("SELECT * FROM users WHERE email = 'alice@example.com' AND id = 42"),
            "select * from users where email = ? and id = ?");
  EXPECT_EQ(fingerprint("UPDATE t SET a = $1, b = E'x\\'y' WHERE id IN (1, 2.5e3)"),
            "update t set a = $1, b = ? where id in (?, ?)");
  EXPECT_EQ(fingerprint("insert into \"T\" values ($tag$secret;$tag$)"),
            "insert into \"T\" values (?)");
  EXPECT_EQ(fingerprint("select   1 -- comment\n  from t"), "select ? from t");
  // Operators of several characters stay whole, as PostgreSQL lexes them.
  EXPECT_EQ(fingerprint("select a from t where a <> 1 and b >= 2 and c != 3"),
            "select a from t where a <> ? and b >= ? and c != ?");
  EXPECT_EQ(fingerprint("select a::text, b ->> 'k' from t where a=-1"),
            "select a::text, b ->> ? from t where a = - ?");
  EXPECT_EQ(fingerprint("select 1<>/* c */2"), "select ? <> ?");
  EXPECT_LE(fingerprint(std::string(1000, 'a'), 64).size(), 64U);
}

// An unterminated string, identifier, dollar quote or comment runs to the end of the input: what
// follows it is inside it, so a ';' or a keyword there is never taken for structure, and nothing
// is read past the end (the sanitizer builds check that part).
TEST(Sql, UnterminatedInputRunsToTheEnd) {
  struct Case {
    const char* opener;
    // fingerprint of "select <opener>; delete from t"
    const char* select_fingerprint;
    // fingerprint of the opener alone, and how many statements split finds in it
    const char* alone_fingerprint;
    std::size_t alone_parts;
  };
  const Case cases[] = {
      {"'abc", "select ?", "?", 1},
      {"\"abc", "select \"abc; delete from t", "\"abc", 1},
      {"$$abc", "select ?", "?", 1},
      {"/* abc", "select", "", 0},
      {"-- abc", "select", "", 0},
      {"E'\\", "select ?", "?", 1},
      {"$a$ x", "select ?", "?", 1},
      {"U&'x", "select ?", "?", 1},
      {"x'", "select ?", "?", 1},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.opener);
    const std::string alone = c.opener;
    const auto alone_parts = split(alone);
    ASSERT_EQ(alone_parts.size(), c.alone_parts);
    if (c.alone_parts == 1) {
      EXPECT_EQ(alone_parts[0], alone);
      EXPECT_EQ(classify(alone), Kind::other);
    } else {
      EXPECT_EQ(classify(alone), Kind::empty);
    }
    EXPECT_EQ(fingerprint(alone), c.alone_fingerprint);

    const std::string query = "select " + alone + "; delete from t";
    const auto parts = split(query);
    ASSERT_EQ(parts.size(), 1U) << "the ';' inside the unterminated token split the query";
    EXPECT_EQ(parts[0], query);
    EXPECT_EQ(classify(query), Kind::read);
    EXPECT_FALSE(contains(query, Kind::dml)) << "the DELETE inside the token was seen";
    const std::string with = "with x as (select 1) select " + alone + "; delete from t";
    EXPECT_EQ(classify(with), Kind::read) << "the DELETE inside the token made the WITH a write";
    EXPECT_EQ(fingerprint(query), c.select_fingerprint);
  }
}

}  // namespace
}  // namespace pgdog::protocol::sql
