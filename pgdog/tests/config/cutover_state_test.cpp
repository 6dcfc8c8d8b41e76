#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>

#include <gtest/gtest.h>

#include "config/config.hpp"
#include "config/cutover_state.hpp"

namespace pgdog::config {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kConfig =
    "[[databases]]\nname = \"prod\"\nhost = \"old\"\nport = 5432\n"
    "[[databases]]\nname = \"prod_mirror\"\nhost = \"new\"\nport = 5433\n"
    "database_name = \"prod\"\nuser = \"migrator\"\n"
    "[[mirroring]]\nsource_db = \"prod\"\ndestination_db = \"prod_mirror\"\n";
constexpr std::string_view kUsers = "[[users]]\nname = \"app\"\ndatabase = \"prod\"\n";

class CutoverStateFile : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("pgdog-cutover-" + std::to_string(::getpid()) + "-" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    write("pgdog.toml", kConfig);
    write("users.toml", kUsers);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  std::string write(std::string_view name, std::string_view text) {
    const auto path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  Result<Config> load_both() { return load((dir_ / "pgdog.toml").string(), (dir_ / "users.toml").string()); }
  std::string state_path() const { return (dir_ / "pgdog-cutover.toml").string(); }

  static CutoverEntry swapped() {
    CutoverEntry e;
    e.database = "prod";
    e.peer = "prod_mirror";
    e.swapped = true;
    e.generation = 3;
    e.configured = "old:5432/prod";
    e.serving = "new:5433/prod";
    e.at = "2026-12-04T12:00:00Z";
    return e;
  }

  fs::path dir_;
};

TEST_F(CutoverStateFile, NoFileLeavesTheConfigurationAsWritten) {
  auto c = load_both();
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->find_database("prod")->host, "old");
  EXPECT_EQ(cutover_state_path(*c), state_path());
}

TEST_F(CutoverStateFile, SwapsTheServersOfTheDatabaseAndItsMirror) {
  CutoverState s;
  s.put(swapped());
  ASSERT_TRUE(write_cutover_state(state_path(), s));
  auto c = load_both();
  ASSERT_TRUE(c) << c.error().to_string();
  const auto* prod = c->find_database("prod");
  const auto* mirror = c->find_database("prod_mirror");
  EXPECT_EQ(prod->host, "new");
  EXPECT_EQ(prod->port, 5433);
  EXPECT_EQ(prod->server_database(), "prod");
  EXPECT_EQ(prod->user, std::optional<std::string>("migrator"));
  EXPECT_EQ(mirror->host, "old");
  EXPECT_EQ(mirror->port, 5432);
  EXPECT_EQ(mirror->server_database(), "prod");
  EXPECT_FALSE(mirror->user);
  // Clients and mirroring keep their names.
  EXPECT_EQ(c->mirroring.at(0).source_db, "prod");
}

TEST_F(CutoverStateFile, RoundTripsAndKeepsThePreviousFile) {
  CutoverState s;
  s.put(swapped());
  ASSERT_TRUE(write_cutover_state(state_path(), s));
  auto back = swapped();
  back.swapped = false;
  back.generation = 4;
  s.put(back);
  ASSERT_EQ(s.entries.size(), 1u);
  ASSERT_TRUE(write_cutover_state(state_path(), s));
  auto read = read_cutover_state(state_path());
  ASSERT_TRUE(read) << read.error().to_string();
  ASSERT_EQ(read->entries.size(), 1u);
  EXPECT_FALSE(read->entries[0].swapped);
  EXPECT_EQ(read->entries[0].generation, 4u);
  EXPECT_EQ(read->entries[0].serving, "new:5433/prod");
  auto prev = read_cutover_state(state_path() + ".prev");
  ASSERT_TRUE(prev);
  EXPECT_TRUE(prev->entries.at(0).swapped);
  // Swapped back: pgdog.toml is in force as written.
  auto c = load_both();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->find_database("prod")->host, "old");
}

TEST_F(CutoverStateFile, ConfigurationEditedToMatchIsLeftAlone) {
  CutoverState s;
  s.put(swapped());
  ASSERT_TRUE(write_cutover_state(state_path(), s));
  write("pgdog.toml",
        "[[databases]]\nname = \"prod\"\nhost = \"new\"\nport = 5433\n"
        "[[databases]]\nname = \"prod_mirror\"\nhost = \"old\"\nport = 5432\n"
        "database_name = \"prod\"\n");
  auto c = load_both();
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->find_database("prod")->host, "new");
}

TEST_F(CutoverStateFile, ConfigurationThatDisagreesIsRefusedNamingTheStateFile) {
  CutoverState s;
  s.put(swapped());
  ASSERT_TRUE(write_cutover_state(state_path(), s));
  write("pgdog.toml",
        "[[databases]]\nname = \"prod\"\nhost = \"elsewhere\"\n"
        "[[databases]]\nname = \"prod_mirror\"\nhost = \"new\"\nport = 5433\n");
  auto c = load_both();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().file, state_path());
  EXPECT_EQ(c.error().key, "cutover[0]");
  EXPECT_NE(c.error().message.find("elsewhere:5432/prod"), std::string::npos)
      << c.error().message;
}

TEST_F(CutoverStateFile, MissingPeerIsRefused) {
  CutoverState s;
  auto e = swapped();
  e.peer = "gone";
  s.put(e);
  ASSERT_TRUE(write_cutover_state(state_path(), s));
  auto c = load_both();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().key, "cutover[0].peer");
}

TEST(CutoverStateParse, ErrorsNameTheLineAndKey) {
  auto r = parse_cutover_state("[[cutover]]\ndatabase = \"a\"\npeer = \"b\"\ngeneration = -1\n",
                               "state.toml");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().file, "state.toml");
  EXPECT_EQ(r.error().line, 4u);
  EXPECT_EQ(r.error().key, "cutover[0].generation");
  auto unknown = parse_cutover_state("[[cutover]]\ndatabase = \"a\"\npeer = \"b\"\nx = 1\n", "s");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().key, "cutover[0].x");
  auto missing = parse_cutover_state("[[cutover]]\ndatabase = \"a\"\n", "s");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().key, "cutover[0].peer");
  auto twice = parse_cutover_state(
      "[[cutover]]\ndatabase = \"a\"\npeer = \"b\"\n[[cutover]]\ndatabase = \"a\"\npeer = \"c\"\n",
      "s");
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().message, "listed twice");
}

TEST(CutoverStateParse, NamesWithQuotesRoundTrip) {
  CutoverState s;
  CutoverEntry e;
  e.database = "we\"ird\\name";
  e.peer = "p";
  s.put(e);
  auto r = parse_cutover_state(to_toml(s), "s");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->entries.at(0).database, e.database);
}

}  // namespace
}  // namespace pgdog::config
