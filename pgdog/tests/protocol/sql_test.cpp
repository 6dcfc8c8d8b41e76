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

TEST(Sql, UnterminatedInputDoesNotOverrun) {
  for (const char* s : {"'abc", "\"abc", "$$abc", "/* abc", "E'\\", "$a$ x", "U&'x", "x'"}) {
    (void)classify(s);
    (void)split(s);
    (void)fingerprint(s);
  }
  SUCCEED();
}

}  // namespace
}  // namespace pgdog::protocol::sql
