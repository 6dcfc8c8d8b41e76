#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "config/config.hpp"
#include "config/expect.hpp"

namespace pgdog::config {
namespace {

using testing::valid;

// Three levels of overrides: "plain" uses the [general] values, "tuned" sets its own.
constexpr const char* layered_config =
    "[general]\n"
    "default_pool_size = 10\n"
    "min_pool_size = 3\n"
    "pooler_mode = \"transaction\"\n"
    "mirror_queue = 100\n"
    "mirror_exposure = 0.25\n"
    "mirror_timeout = 700\n"
    "mirror_compare = \"results\"\n"
    "[[databases]]\n"
    "name = \"plain\"\n"
    "host = \"h\"\n"
    "[[databases]]\n"
    "name = \"tuned\"\n"
    "host = \"h\"\n"
    "pool_size = 6\n"
    "min_pool_size = 5\n"
    "pooler_mode = \"session\"\n"
    "[[mirroring]]\n"
    "source_db = \"plain\"\n"
    "destination_db = \"tuned\"\n"
    "[[mirroring]]\n"
    "source_db = \"tuned\"\n"
    "destination_db = \"plain\"\n"
    "queue_length = 7\n"
    "exposure = 0\n"
    "timeout = 30\n"
    "compare = \"off\"\n";

constexpr const char* layered_users =
    "[[users]]\n"
    "name = \"u\"\n"
    "database = \"plain\"\n"
    "[[users]]\n"
    "name = \"u\"\n"
    "database = \"tuned\"\n"
    "[[users]]\n"
    "name = \"small\"\n"
    "database = \"plain\"\n"
    "pool_size = 2\n"
    "[[users]]\n"
    "name = \"small\"\n"
    "database = \"tuned\"\n"
    "pool_size = 4\n"
    "pooler_mode = \"transaction\"\n"
    "[[users]]\n"
    "name = \"big\"\n"
    "database = \"tuned\"\n"
    "pool_size = 50\n";

class ConfigHelpers : public ::testing::Test {
 protected:
  const User& user(std::string_view name, std::string_view database) {
    const User* u = config_.find_user(name, database);
    if (u == nullptr) throw std::logic_error("test user missing");
    return *u;
  }

  Config config_ = valid(layered_config, layered_users);
};

TEST_F(ConfigHelpers, FindDatabase) {
  ASSERT_NE(config_.find_database("tuned"), nullptr);
  EXPECT_EQ(config_.find_database("tuned")->pool_size, 6);
  EXPECT_EQ(config_.find_database("missing"), nullptr);
  EXPECT_EQ(config_.find_database(""), nullptr);
}

TEST_F(ConfigHelpers, FindUserNeedsNameAndDatabase) {
  ASSERT_NE(config_.find_user("small", "tuned"), nullptr);
  EXPECT_EQ(config_.find_user("small", "tuned")->pool_size, 4);
  EXPECT_EQ(config_.find_user("small", "plain")->pool_size, 2);
  EXPECT_EQ(config_.find_user("big", "plain"), nullptr);
  EXPECT_EQ(config_.find_user("nobody", "plain"), nullptr);
}

TEST_F(ConfigHelpers, PoolSizeUserThenDatabaseThenGeneral) {
  EXPECT_EQ(config_.pool_size(user("u", "plain")), 10);
  EXPECT_EQ(config_.pool_size(user("u", "tuned")), 6);
  EXPECT_EQ(config_.pool_size(user("small", "tuned")), 4);
  EXPECT_EQ(config_.pool_size(user("big", "tuned")), 50);
}

TEST_F(ConfigHelpers, MinPoolSizeDatabaseThenGeneralCappedAtPoolSize) {
  EXPECT_EQ(config_.min_pool_size(user("u", "plain")), 3);
  EXPECT_EQ(config_.min_pool_size(user("u", "tuned")), 5);
  EXPECT_EQ(config_.min_pool_size(user("big", "tuned")), 5);
  EXPECT_EQ(config_.min_pool_size(user("small", "plain")), 2);  // general 3, pool 2
  EXPECT_EQ(config_.min_pool_size(user("small", "tuned")), 4);  // database 5, pool 4
}

TEST_F(ConfigHelpers, PoolerModeUserThenDatabaseThenGeneral) {
  EXPECT_EQ(config_.pooler_mode(user("u", "plain")), PoolerMode::transaction);
  EXPECT_EQ(config_.pooler_mode(user("u", "tuned")), PoolerMode::session);
  EXPECT_EQ(config_.pooler_mode(user("small", "tuned")), PoolerMode::transaction);
}

TEST_F(ConfigHelpers, MirroringFallsBackToGeneral) {
  const Mirroring& m = config_.mirroring[0];
  EXPECT_EQ(config_.queue_length(m), 100u);
  EXPECT_EQ(config_.exposure(m), 0.25);
  EXPECT_EQ(config_.mirror_timeout(m), Millis{700});
  EXPECT_EQ(config_.compare(m), MirrorCompare::results);
}

TEST_F(ConfigHelpers, MirroringOverridesGeneral) {
  const Mirroring& m = config_.mirroring[1];
  EXPECT_EQ(config_.queue_length(m), 7u);
  EXPECT_EQ(config_.exposure(m), 0.0);
  EXPECT_EQ(config_.mirror_timeout(m), Millis{30});
  EXPECT_EQ(config_.compare(m), MirrorCompare::off);
}

TEST(ConfigHelpersDetached, UserOfUnknownDatabaseUsesGeneral) {
  // Helpers stay safe on a hand-built Config that never went through validation.
  Config c;
  User u;
  u.database = "nowhere";
  EXPECT_EQ(c.pool_size(u), c.general.default_pool_size);
  EXPECT_EQ(c.min_pool_size(u), c.general.min_pool_size);
  EXPECT_EQ(c.pooler_mode(u), c.general.pooler_mode);
}

TEST(ConfigEnums, ToString) {
  EXPECT_EQ(to_string(PoolerMode::transaction), "transaction");
  EXPECT_EQ(to_string(PoolerMode::session), "session");
  EXPECT_EQ(to_string(AuthType::scram), "scram");
  EXPECT_EQ(to_string(AuthType::md5), "md5");
  EXPECT_EQ(to_string(AuthType::trust), "trust");
  EXPECT_EQ(to_string(TlsVerify::disabled), "disabled");
  EXPECT_EQ(to_string(TlsVerify::prefer), "prefer");
  EXPECT_EQ(to_string(TlsVerify::verify_ca), "verify_ca");
  EXPECT_EQ(to_string(TlsVerify::verify_full), "verify_full");
  EXPECT_EQ(to_string(PreparedStatements::disabled), "disabled");
  EXPECT_EQ(to_string(PreparedStatements::extended), "extended");
  EXPECT_EQ(to_string(MirrorLevel::all), "all");
  EXPECT_EQ(to_string(MirrorLevel::dml), "dml");
  EXPECT_EQ(to_string(MirrorLevel::ddl), "ddl");
  EXPECT_EQ(to_string(MirrorCompare::off), "off");
  EXPECT_EQ(to_string(MirrorCompare::tags), "tags");
  EXPECT_EQ(to_string(MirrorCompare::results), "results");
}

// Whatever to_string prints, the parser reads back: SHOW CONFIG output is valid TOML input.
TEST(ConfigEnums, RoundTripThroughParse) {
  for (auto v :
       {TlsVerify::disabled, TlsVerify::prefer, TlsVerify::verify_ca, TlsVerify::verify_full}) {
    EXPECT_EQ(
        valid("[general]\ntls_verify = \"" + std::string(to_string(v)) + "\"\n").general.tls_verify,
        v);
  }
  for (auto v : {AuthType::scram, AuthType::md5, AuthType::trust}) {
    EXPECT_EQ(
        valid("[general]\nauth_type = \"" + std::string(to_string(v)) + "\"\n").general.auth_type,
        v);
  }
  for (auto v : {PreparedStatements::disabled, PreparedStatements::extended}) {
    EXPECT_EQ(valid("[general]\nprepared_statements = \"" + std::string(to_string(v)) + "\"\n")
                  .general.prepared_statements,
              v);
  }
  for (auto v : {MirrorCompare::off, MirrorCompare::tags, MirrorCompare::results}) {
    EXPECT_EQ(valid("[general]\nmirror_compare = \"" + std::string(to_string(v)) + "\"\n")
                  .general.mirror_compare,
              v);
  }
  for (auto v : {PoolerMode::transaction, PoolerMode::session}) {
    EXPECT_EQ(valid("[general]\npooler_mode = \"" + std::string(to_string(v)) + "\"\n")
                  .general.pooler_mode,
              v);
  }
  for (auto v : {MirrorLevel::all, MirrorLevel::dml, MirrorLevel::ddl}) {
    Config c = valid(
        "[[databases]]\nname = \"a\"\nhost = \"h\"\n[[databases]]\nname = \"b\"\nhost = \"h\"\n"
        "[[mirroring]]\nsource_db = \"a\"\ndestination_db = \"b\"\nlevel = \"" +
        std::string(to_string(v)) + "\"\n");
    ASSERT_EQ(c.mirroring.size(), 1u);
    EXPECT_EQ(c.mirroring[0].level, v);
  }
}

TEST(ConfigError, ToStringFull) {
  Error e{"pgdog.toml", 12, "general.port", "expected an integer"};
  EXPECT_EQ(e.to_string(), "pgdog.toml:12: general.port: expected an integer");
}

TEST(ConfigError, ToStringWithoutKey) {
  Error e{"pgdog.toml", 3, "", "syntax error: bad"};
  EXPECT_EQ(e.to_string(), "pgdog.toml:3: syntax error: bad");
}

TEST(ConfigError, ToStringWithoutLine) {
  Error e{"users.toml", 0, "", "file not found"};
  EXPECT_EQ(e.to_string(), "users.toml: file not found");
}

TEST(ConfigError, ParsedErrorFormatsAsDocumented) {
  auto r = parse("[general]\nport = \"x\"\n", "");
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().to_string(), "pgdog.toml:2: general.port: expected an integer, got a string");
}

TEST(ConfigError, ValueThrowsWithTheMessage) {
  auto r = parse("[general]\nport = 0\n", "");
  try {
    (void)r.value();
    FAIL() << "value() did not throw";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("pgdog.toml:2: general.port:"), std::string::npos)
        << e.what();
  }
}

TEST(ConfigError, ValueReturnsTheConfig) {
  auto r = parse("[general]\nport = 7000\n", "");
  EXPECT_EQ(r.value().general.port, 7000);
}

}  // namespace
}  // namespace pgdog::config
