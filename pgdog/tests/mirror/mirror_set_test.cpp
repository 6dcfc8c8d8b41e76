#include "mirror/mirror_set.hpp"

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

namespace pgdog::mirror {
namespace {

class MirrorSetTest : public ::testing::Test {
 protected:
  std::shared_ptr<Mirror> mirror(std::string source, std::string destination) {
    MirrorSettings s;
    s.source = std::move(source);
    s.destination = std::move(destination);
    auto stats = std::make_shared<stats::MirrorStats>(s.destination);
    return std::make_shared<Mirror>(
        std::vector<Executor>{io_.get_executor()}, std::move(s), stats,
        [](const std::string&) { return nullptr; },
        registry_);
  }
  asio::io_context io_;
  backend::StatementRegistry registry_;
};

// Each publish is a new version; a mirror keeps the version that added it across publishes,
// and one published again after a removal is new again.
TEST_F(MirrorSetTest, VersionsAndWhenEachMirrorWasAdded) {
  MirrorSet set;
  EXPECT_EQ(set.version(), 0U);
  auto a = mirror("app", "new_a");
  auto b = mirror("app", "new_b");
  auto c = mirror("other", "new_c");
  set.publish({a, c});
  EXPECT_EQ(set.version(), 1U);
  set.publish({a, b, c});
  set.publish({a, b});
  auto snap = set.snapshot();
  EXPECT_EQ(snap->version, 3U);
  ASSERT_EQ(snap->entries.size(), 2U);
  EXPECT_EQ(snap->entries[0].since, 1U);
  EXPECT_EQ(snap->entries[1].since, 2U);
  EXPECT_EQ(snap->fed_by("app"), (std::vector<std::shared_ptr<Mirror>>{a, b}));
  EXPECT_TRUE(snap->fed_by("other").empty());
  set.publish({a, b, c});
  EXPECT_EQ(set.snapshot()->entries[2].since, 4U);
}

TEST(SpansChange, OnlyAnOpenTransactionBegunBeforeTheMirror) {
  EXPECT_FALSE(spans_change(0, 5)) << "no transaction open";
  EXPECT_TRUE(spans_change(4, 5));
  EXPECT_FALSE(spans_change(5, 5));
  EXPECT_FALSE(spans_change(6, 5));
}

}  // namespace
}  // namespace pgdog::mirror
