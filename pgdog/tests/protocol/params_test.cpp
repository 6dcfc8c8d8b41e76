#include "protocol/params.hpp"

#include <memory>
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

Params startup(std::string_view application_name) {
  Params p;
  p.set("application_name", application_name);
  p.set("DateStyle", "ISO, MDY");
  return p;
}

TEST(SharedParams, ClientsThatSentTheSameHoldOneCopy) {
  SharedParams shared;
  auto a = shared.intern(startup("billing-worker"));
  auto b = shared.intern(startup("billing-worker"));
  auto c = shared.intern(startup("reports"));
  EXPECT_EQ(a.get(), b.get());
  EXPECT_NE(a.get(), c.get());
  EXPECT_EQ(c->get("application_name").value_or("?"), "reports");
  EXPECT_EQ(*a, startup("billing-worker"));
  EXPECT_EQ(shared.distinct(), 2u);
}

TEST(SharedParams, ASetNoOneHoldsIsFreedAndSweptAway) {
  SharedParams shared;
  std::weak_ptr<const Params> first = shared.intern(startup("gone"));
  EXPECT_TRUE(first.expired());  // the table does not keep it alive
  // Interning it again makes a new copy, not the dead one.
  auto again = shared.intern(startup("gone"));
  EXPECT_EQ(again->get("application_name").value_or("?"), "gone");
  // Every client with its own application_name: the table stays about as large as what is held.
  std::vector<std::shared_ptr<const Params>> held;
  for (int i = 0; i < 1000; ++i) {
    auto p = shared.intern(startup("client-" + std::to_string(i)));
    if (i % 10 == 0) held.push_back(std::move(p));
  }
  EXPECT_LE(shared.distinct(), 2 * (held.size() + 1) + 64);
  for (std::size_t i = 0; i < held.size(); ++i) {
    EXPECT_EQ(held[i]->get("application_name").value_or("?"),
              "client-" + std::to_string(10 * i));
  }
}

}  // namespace
}  // namespace pgdog::protocol
