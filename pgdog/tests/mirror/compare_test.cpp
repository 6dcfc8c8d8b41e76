#include <gtest/gtest.h>

#include "mirror/compare.hpp"
#include "protocol/messages.hpp"

namespace pgdog::mirror {
namespace {

using stats::Divergence;

StatementResult ok(std::string tag, std::uint64_t rows = 0) {
  return StatementResult{'C', std::move(tag), rows};
}
StatementResult err(std::string code) { return StatementResult{'E', std::move(code), 0}; }

TEST(Compare, SameResultsNoDivergence) {
  StatementResults a{ok("BEGIN"), ok("UPDATE 1"), ok("COMMIT")};
  EXPECT_TRUE(compare(a, a, true).empty());
}

TEST(Compare, RowCountResultAndError) {
  auto d = compare({ok("UPDATE 1")}, {ok("UPDATE 0")}, false);
  ASSERT_EQ(d.size(), 1U);
  EXPECT_EQ(d[0].kind, Divergence::row_count);
  // Same tag, other rows: only visible when comparing rows.
  EXPECT_TRUE(compare({ok("SELECT 1", 7)}, {ok("SELECT 1", 8)}, false).empty());
  d = compare({ok("SELECT 1", 7)}, {ok("SELECT 1", 8)}, true);
  ASSERT_EQ(d.size(), 1U);
  EXPECT_EQ(d[0].kind, Divergence::result);
  // The mirror erred where the primary succeeded: one divergence, the rest is its consequence.
  d = compare({ok("BEGIN"), ok("INSERT 0 1"), ok("COMMIT")},
              {ok("BEGIN"), err("42P01"), ok("ROLLBACK")}, true);
  ASSERT_EQ(d.size(), 1U);
  EXPECT_EQ(d[0].kind, Divergence::error);
  EXPECT_EQ(d[0].statement, 1U);
  // The same error on both sides (a savepoint the client recovered from) is expected.
  EXPECT_TRUE(compare({err("23505"), ok("ROLLBACK")}, {err("23505"), ok("ROLLBACK")}, true).empty());
  // The mirror stopped early (an extended batch skipped after its error).
  d = compare({ok("INSERT 0 1"), ok("INSERT 0 1")}, {ok("INSERT 0 1")}, false);
  ASSERT_EQ(d.size(), 1U);
  EXPECT_EQ(d[0].kind, Divergence::error);
}

TEST(Compare, StatementTextsFollowExecution) {
  std::string frames;
  protocol::write_query(frames, "BEGIN; UPDATE t SET a = 1 WHERE id = 42");
  protocol::write_parse(frames, "s1", "SELECT * FROM t WHERE id = $1", {});
  protocol::write_bind(frames, "", "s1", std::string("\0\0\0\0\0\0", 6));
  protocol::Writer(frames).begin('E').cstring("").i32(0).finish();
  protocol::write_empty(frames, 'S');
  backend::StatementRegistry registry;
  backend::ClientStatements earlier{{"old", registry.intern("DELETE FROM t WHERE id = 7", {})}};
  protocol::write_bind(frames, "p", "old", std::string("\0\0\0\0\0\0", 6));
  protocol::Writer(frames).begin('E').cstring("p").i32(0).finish();
  protocol::write_query(frames, "");
  auto texts = statement_texts(frames, &earlier);
  ASSERT_EQ(texts.size(), 5U);
  EXPECT_EQ(texts[0], "BEGIN");
  EXPECT_EQ(texts[1], " UPDATE t SET a = 1 WHERE id = 42");
  EXPECT_EQ(texts[2], "SELECT * FROM t WHERE id = $1");
  EXPECT_EQ(texts[3], "DELETE FROM t WHERE id = 7");
  EXPECT_EQ(texts[4], "");
}

}  // namespace
}  // namespace pgdog::mirror
