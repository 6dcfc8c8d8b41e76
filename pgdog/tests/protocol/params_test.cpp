#include "protocol/params.hpp"

#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace pgdog::protocol {
namespace {

std::vector<std::pair<std::string, std::string>> listed(const Params& p) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, value] : p.items()) out.emplace_back(name, value);
  return out;
}

TEST(Params, SetKeepsPairsSortedByNameAndReplacesCaseInsensitively) {
  Params p;
  EXPECT_TRUE(p.empty());
  EXPECT_EQ(p.hash(), 0u);
  p.set("TimeZone", "UTC");
  p.set("application_name", "app");
  p.set("DateStyle", "ISO, MDY");
  p.set("timezone", "Europe/Paris");  // the same parameter: the first spelling stays
  const std::vector<std::pair<std::string, std::string>> want = {
      {"DateStyle", "ISO, MDY"}, {"TimeZone", "Europe/Paris"}, {"application_name", "app"}};
  EXPECT_EQ(listed(p), want);
  EXPECT_EQ(p.size(), 3u);
  EXPECT_EQ(p.get("TIMEZONE").value_or("?"), "Europe/Paris");
  EXPECT_FALSE(p.get("search_path").has_value());
}

TEST(Params, EmptyValuesAndErase) {
  Params p;
  p.set("b", "");
  p.set("a", "1");
  p.set("c", "3");
  EXPECT_EQ(p.get("b").value_or("?"), "");
  EXPECT_TRUE(p.erase("B"));
  EXPECT_FALSE(p.erase("b"));
  const std::vector<std::pair<std::string, std::string>> want = {{"a", "1"}, {"c", "3"}};
  EXPECT_EQ(listed(p), want);
  EXPECT_TRUE(p.erase("a"));
  EXPECT_TRUE(p.erase("c"));
  EXPECT_TRUE(p.empty());
  EXPECT_EQ(p.hash(), 0u);
}

TEST(Params, HashFollowsContentNotHistory) {
  Params a;
  a.set("x", "1");
  a.set("y", "2");
  Params b;
  b.set("y", "0");
  b.set("x", "1");
  EXPECT_NE(a.hash(), b.hash());
  b.set("Y", "2");
  EXPECT_EQ(a.hash(), b.hash());
  const auto before = a.hash();
  a.set("x", "1");  // no change, same hash
  EXPECT_EQ(a.hash(), before);
  // Name and value boundaries count: ("ab", "c") is not ("a", "bc").
  Params c;
  c.set("ab", "c");
  Params d;
  d.set("a", "bc");
  EXPECT_NE(c.hash(), d.hash());
}

TEST(Params, SetFromItsOwnValue) {
  Params p;
  p.set("a", "first value, long enough to live on the heap");
  p.set("b", "x");
  // The value points into p itself, which set() rebuilds.
  p.set("b", *p.get("a"));
  p.set("c", *p.get("b"));
  EXPECT_EQ(p.get("b").value_or("?"), "first value, long enough to live on the heap");
  EXPECT_EQ(p.get("c").value_or("?"), "first value, long enough to live on the heap");
  p.compact();
  EXPECT_EQ(p.size(), 3u);
}

}  // namespace
}  // namespace pgdog::protocol
