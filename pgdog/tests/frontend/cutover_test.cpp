#include <string>

#include <gtest/gtest.h>

#include "frontend/cutover.hpp"

namespace pgdog::frontend {
namespace {

TEST(CutoverCommand, Forms) {
  std::string error;
  auto a = parse_cutover("CUTOVER prod", error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->database, "prod");
  EXPECT_FALSE(a->to);
  EXPECT_FALSE(a->force);

  auto b = parse_cutover("cutover Prod to \"Mirror One\" force;", error);
  ASSERT_TRUE(b) << error;
  EXPECT_EQ(b->database, "Prod");  // names keep their case
  EXPECT_EQ(b->to, std::optional<std::string>("Mirror One"));
  EXPECT_TRUE(b->force);

  auto c = parse_cutover("CUTOVER prod FORCE", error);
  ASSERT_TRUE(c) << error;
  EXPECT_TRUE(c->force);
  EXPECT_FALSE(c->to);
}

TEST(CutoverCommand, Errors) {
  std::string error;
  EXPECT_FALSE(parse_cutover("CUTOVER", error));
  EXPECT_NE(error.find("needs a database"), std::string::npos);
  error.clear();
  EXPECT_FALSE(parse_cutover("CUTOVER prod NOW", error));
  EXPECT_NE(error.find("unexpected \"NOW\""), std::string::npos);
  error.clear();
  EXPECT_FALSE(parse_cutover("CUTOVER \"prod", error));
  EXPECT_EQ(error, "unterminated quoted name");
}

TEST(CutoverRecord, RoundTrip) {
  CutoverRecord r{7, true, "prod", "prod_mirror"};
  EXPECT_EQ(to_string(r), "7 retired prod prod_mirror");
  auto back = parse_record(to_string(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->generation, 7u);
  EXPECT_TRUE(back->retired);
  EXPECT_EQ(back->peer, "prod_mirror");
  auto serving = parse_record("8 serving prod prod_mirror");
  ASSERT_TRUE(serving);
  EXPECT_FALSE(serving->retired);
}

TEST(CutoverRecord, AnythingElseIsNotARecord) {
  EXPECT_FALSE(parse_record(""));
  EXPECT_FALSE(parse_record("x retired a b"));
  EXPECT_FALSE(parse_record("1 paused a b"));
  EXPECT_FALSE(parse_record("1 retired a"));
  EXPECT_FALSE(parse_record("-1 retired a b"));
}

}  // namespace
}  // namespace pgdog::frontend
