#include <cctype>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "config/config.hpp"
#include "config/expect.hpp"

// Each input is written one TOML line per string literal so the expected line numbers can be
// counted at a glance.
namespace pgdog::config {
namespace {

using testing::is_error;

// Two databases "a" and "b" on lines 1-6, for tests that need something to refer to.
constexpr const char* two_databases =
    "[[databases]]\n"
    "name = \"a\"\n"
    "host = \"h\"\n"
    "[[databases]]\n"
    "name = \"b\"\n"
    "host = \"h\"\n";

// Like parse() with an optional users.toml, so single-file tests stay short.
Result<Config> parse_text(const std::string& config_text, std::string_view users_text = "") {
  return parse(config_text, users_text);
}

Result<Config> with_databases(const std::string& rest, std::string_view users = "") {
  return parse(two_databases + rest, users);
}

// Syntax

TEST(ConfigSyntax, BrokenTableHeader) {
  auto r = parse_text(
      "[general]\n"
      "port = 1\n"
      "[admin\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 3, "", "syntax error"));
}

TEST(ConfigSyntax, DuplicateKey) {
  auto r = parse_text(
      "[general]\n"
      "port = 1\n"
      "port = 2\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 3, "", "already exists"));
}

TEST(ConfigSyntax, MissingValue) {
  auto r = parse_text(
      "[general]\n"
      "\n"
      "host =\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 3, "", "syntax error"));
}

TEST(ConfigSyntax, UnterminatedString) {
  auto r = parse_text(
      "# comment\n"
      "[general]\n"
      "host = \"abc\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 3, "", "syntax error"));
}

TEST(ConfigSyntax, InUsersFileNamesUsersFile) {
  auto r = parse_text("", "[[users]]\nname = 'u\n");
  EXPECT_TRUE(is_error(r, "users.toml", 2, "", "syntax error"));
}

TEST(ConfigSyntax, MessageIsOneLine) {
  auto r = parse_text("[general\n");
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << r.error().message;
}

TEST(ConfigSyntax, UsesGivenFileName) {
  auto r = parse("x = \n", "", "/etc/pgdog/pgdog.toml", "/etc/pgdog/users.toml");
  EXPECT_TRUE(is_error(r, "/etc/pgdog/pgdog.toml", 1, "", "syntax error"));
}

// Unknown keys and tables

TEST(ConfigUnknown, GeneralKey) {
  auto r = parse_text(
      "[general]\n"
      "port = 6432\n"
      "prot = 6432\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 3, "general.prot", "unknown key"));
}

TEST(ConfigUnknown, AdminKey) {
  auto r = parse_text(
      "[admin]\n"
      "pasword = \"x\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "admin.pasword", "unknown key"));
}

TEST(ConfigUnknown, DatabaseKeyNamesTheEntry) {
  auto r = with_databases(
      "[[databases]]\n"
      "name = \"c\"\n"
      "hots = \"h\"\n"
      "host = \"h\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 9, "databases[2].hots", "unknown key"));
}

TEST(ConfigUnknown, MirroringKey) {
  auto r = with_databases(
      "[[mirroring]]\n"
      "source_db = \"a\"\n"
      "destination_db = \"b\"\n"
      "exposure_ratio = 0.5\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 10, "mirroring[0].exposure_ratio", "unknown key"));
}

TEST(ConfigUnknown, UserKey) {
  auto r = with_databases("",
                          "[[users]]\n"
                          "name = \"u\"\n"
                          "database = \"a\"\n"
                          "passwd = \"x\"\n");
  EXPECT_TRUE(is_error(r, "users.toml", 4, "users[0].passwd", "unknown key"));
}

TEST(ConfigUnknown, TopLevelTable) {
  auto r = parse_text(
      "[general]\n"
      "\n"
      "[plugins]\n"
      "name = \"x\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 3, "plugins", "unknown table"));
}

TEST(ConfigUnknown, TopLevelArrayOfTables) {
  auto r = parse_text(
      "[[sharded_tables]]\n"
      "name = \"x\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 1, "sharded_tables", "unknown table"));
}

TEST(ConfigUnknown, TopLevelKey) {
  auto r = parse_text("port = 6432\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 1, "port", "unknown key"));
}

TEST(ConfigUnknown, PgdogTableInUsersFile) {
  auto r = parse_text("", "[general]\nport = 1\n");
  EXPECT_TRUE(is_error(r, "users.toml", 1, "general", "unknown table"));
}

TEST(ConfigUnknown, UsersTableInPgdogFile) {
  auto r = parse_text("[[users]]\nname = \"u\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 1, "users", "unknown table"));
}

TEST(ConfigUnknown, NestedTable) {
  auto r = parse_text(
      "[general]\n"
      "port = 1\n"
      "[general.tls]\n"
      "certificate = \"x\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 3, "general.tls", "unknown key"));
}

TEST(ConfigUnknown, DottedKey) {
  auto r = parse_text(
      "[general]\n"
      "tls.certificate = \"x\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.tls", "unknown key"));
}

// Wrong types

TEST(ConfigType, PortString) {
  auto r = parse_text(
      "[general]\n"
      "port = \"x\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.port", "expected an integer"));
}

TEST(ConfigType, PortFloat) {
  auto r = parse_text("[general]\nport = 6432.0\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.port", "expected an integer, got a float"));
}

TEST(ConfigType, HostInteger) {
  auto r = parse_text("[general]\nhost = 127\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.host", "expected a string, got an integer"));
}

TEST(ConfigType, BooleanAsString) {
  auto r = parse_text("[general]\ntls_client_required = \"yes\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.tls_client_required", "expected a boolean"));
}

TEST(ConfigType, RatioAsString) {
  auto r = parse_text("[general]\nmirror_exposure = \"50%\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.mirror_exposure", "expected a number"));
}

TEST(ConfigType, DurationAsFloat) {
  auto r = parse_text("[general]\nconnect_timeout = 1.5\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.connect_timeout", "expected an integer"));
}

TEST(ConfigType, DurationAsString) {
  auto r = parse_text("[general]\nidle_timeout = \"60s\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.idle_timeout", "expected an integer"));
}

TEST(ConfigType, EnumAsInteger) {
  auto r = parse_text("[general]\npooler_mode = 1\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.pooler_mode", "expected a string"));
}

TEST(ConfigType, OpenmetricsPortAsString) {
  auto r = parse_text("[general]\nopenmetrics_port = \"9090\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.openmetrics_port", "expected an integer"));
}

TEST(ConfigType, GeneralNotATable) {
  auto r = parse_text("general = 5\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 1, "general", "expected a table"));
}

TEST(ConfigType, DatabasesAsSingleTable) {
  auto r = parse_text(
      "[databases]\n"
      "name = \"a\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 1, "databases", "expected an array of tables"));
}

TEST(ConfigType, DatabasesElementNotATable) {
  auto r = parse_text("databases = [1]\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 1, "databases[0]", "expected a table"));
}

TEST(ConfigType, DatabasePortString) {
  auto r = parse_text(
      "[[databases]]\n"
      "name = \"a\"\n"
      "host = \"h\"\n"
      "port = \"5432\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 4, "databases[0].port", "expected an integer"));
}

TEST(ConfigType, UserPoolSizeString) {
  auto r = with_databases("",
                          "[[users]]\n"
                          "name = \"u\"\n"
                          "database = \"a\"\n"
                          "pool_size = \"10\"\n");
  EXPECT_TRUE(is_error(r, "users.toml", 4, "users[0].pool_size", "expected an integer"));
}

TEST(ConfigType, UsersNotAnArray) {
  auto r = parse_text("", "users = \"alice\"\n");
  EXPECT_TRUE(is_error(r, "users.toml", 1, "users", "expected an array of tables"));
}

// Out-of-range values

TEST(ConfigRange, PortZero) {
  auto r = parse_text("[general]\nport = 0\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.port", "between 1 and 65535"));
}

TEST(ConfigRange, PortTooLarge) {
  auto r = parse_text("[general]\nport = 65536\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.port", "65536 is out of range"));
}

TEST(ConfigRange, PortNegative) {
  auto r = parse_text("[general]\nport = -1\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.port", "out of range"));
}

TEST(ConfigRange, OpenmetricsPort) {
  auto r = parse_text("[general]\nopenmetrics_port = 70000\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.openmetrics_port", "between 1 and 65535"));
}

TEST(ConfigRange, DatabasePort) {
  auto r = parse_text(
      "[[databases]]\n"
      "name = \"a\"\n"
      "host = \"h\"\n"
      "port = 0\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 4, "databases[0].port", "out of range"));
}

TEST(ConfigRange, Workers) {
  auto r = parse_text("[general]\nworkers = 0\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.workers", "must be between 1 and"));
}

TEST(ConfigRange, DefaultPoolSize) {
  auto r = parse_text("[general]\ndefault_pool_size = 0\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.default_pool_size", "out of range"));
}

TEST(ConfigRange, PoolSizeAboveInt) {
  auto r = parse_text("[general]\ndefault_pool_size = 3000000000\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.default_pool_size", "out of range"));
}

TEST(ConfigRange, NegativeMinPoolSize) {
  auto r = parse_text("[general]\nmin_pool_size = -1\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.min_pool_size", "out of range"));
}

TEST(ConfigRange, DatabasePoolSize) {
  auto r = parse_text(
      "[[databases]]\n"
      "name = \"a\"\n"
      "host = \"h\"\n"
      "pool_size = 0\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 4, "databases[0].pool_size", "out of range"));
}

TEST(ConfigRange, UserPoolSize) {
  auto r = with_databases("",
                          "[[users]]\n"
                          "name = \"u\"\n"
                          "database = \"a\"\n"
                          "pool_size = -3\n");
  EXPECT_TRUE(is_error(r, "users.toml", 4, "users[0].pool_size", "out of range"));
}

TEST(ConfigRange, GeneralMinPoolSizeAbovePoolSize) {
  auto r = parse_text(
      "[general]\n"
      "default_pool_size = 5\n"
      "min_pool_size = 6\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 3, "general.min_pool_size",
                       "min_pool_size 6 is larger than default_pool_size 5"));
}

TEST(ConfigRange, DatabaseMinPoolSizeAbovePoolSize) {
  auto r = parse_text(
      "[[databases]]\n"
      "name = \"a\"\n"
      "host = \"h\"\n"
      "pool_size = 4\n"
      "min_pool_size = 5\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 5, "databases[0].min_pool_size",
                       "min_pool_size 5 is larger than the pool size 4"));
}

TEST(ConfigRange, DatabaseMinPoolSizeAboveDefaultPoolSize) {
  auto r = parse_text(
      "[general]\n"
      "default_pool_size = 3\n"
      "[[databases]]\n"
      "name = \"a\"\n"
      "host = \"h\"\n"
      "min_pool_size = 4\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 6, "databases[0].min_pool_size", "pool size 3"));
}

TEST(ConfigRange, MirrorExposureAboveOne) {
  auto r = parse_text("[general]\nmirror_exposure = 1.5\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.mirror_exposure",
                       "1.5 is out of range: must be between 0 and 1"));
}

TEST(ConfigRange, MirrorExposureNegative) {
  auto r = parse_text("[general]\nmirror_exposure = -0.1\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.mirror_exposure", "between 0 and 1"));
}

TEST(ConfigRange, MirrorExposureIntegerTwo) {
  auto r = parse_text("[general]\nmirror_exposure = 2\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.mirror_exposure", "between 0 and 1"));
}

TEST(ConfigRange, MirrorExposureNan) {
  auto r = parse_text("[general]\nmirror_exposure = nan\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.mirror_exposure", "between 0 and 1"));
}

TEST(ConfigRange, MirroringExposure) {
  auto r = with_databases(
      "[[mirroring]]\n"
      "source_db = \"a\"\n"
      "destination_db = \"b\"\n"
      "exposure = 1.01\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 10, "mirroring[0].exposure", "between 0 and 1"));
}

TEST(ConfigRange, FailureThresholdAboveOne) {
  auto r = parse_text("[general]\nmirror_failure_threshold = 1.2\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.mirror_failure_threshold", "between 0 and 1"));
}

TEST(ConfigRange, FailureThresholdNegative) {
  auto r = parse_text("[general]\nmirror_failure_threshold = -1\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.mirror_failure_threshold", "between 0 and 1"));
}

TEST(ConfigRange, MirrorQueue) {
  auto r = parse_text("[general]\nmirror_queue = 0\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.mirror_queue", "must be at least 1"));
}

TEST(ConfigRange, MirroringQueueLength) {
  auto r = with_databases(
      "[[mirroring]]\n"
      "source_db = \"a\"\n"
      "destination_db = \"b\"\n"
      "queue_length = 0\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 10, "mirroring[0].queue_length", "must be at least 1"));
}

TEST(ConfigRange, MirroringTimeout) {
  auto r = with_databases(
      "[[mirroring]]\n"
      "source_db = \"a\"\n"
      "destination_db = \"b\"\n"
      "timeout = 0\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 10, "mirroring[0].timeout", "greater than 0"));
}

TEST(ConfigRange, PreparedStatementsLimit) {
  auto r = parse_text("[general]\nprepared_statements_limit = 0\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.prepared_statements_limit", "at least 1"));
}

TEST(ConfigRange, MaxClientConn) {
  auto r = parse_text("[general]\nmax_client_conn = -5\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.max_client_conn", "at least 1"));
}

TEST(ConfigRange, MaxMessageSizeTooSmall) {
  auto r = parse_text("[general]\nmax_message_size = 64\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.max_message_size", "at least 8192"));
}

TEST(ConfigRange, EmptyHost) {
  auto r = parse_text("[general]\nhost = \"\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.host", "must not be empty"));
}

TEST(ConfigRange, EmptyDatabaseName) {
  auto r = parse_text(
      "[[databases]]\n"
      "name = \"\"\n"
      "host = \"h\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "databases[0].name", "must not be empty"));
}

class ConfigTimeout : public ::testing::TestWithParam<const char*> {};

TEST_P(ConfigTimeout, ZeroIsAnError) {
  std::string key = GetParam();
  auto r = parse_text("[general]\n" + key + " = 0\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general." + key, "must be greater than 0"));
}

TEST_P(ConfigTimeout, NegativeIsAnError) {
  std::string key = GetParam();
  auto r = parse_text("[general]\n\n" + key + " = -100\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 3, "general." + key, "-100 is out of range"));
}

TEST_P(ConfigTimeout, OneMillisecondIsFine) {
  std::string key = GetParam();
  EXPECT_TRUE(parse_text("[general]\n" + key + " = 1\n").has_value());
}

INSTANTIATE_TEST_SUITE_P(General, ConfigTimeout,
                         ::testing::Values("connect_timeout", "checkout_timeout", "idle_timeout",
                                           "shutdown_timeout", "server_lifetime",
                                           "client_login_timeout", "mirror_timeout"));

// Enums: a bad string is an error that lists the allowed values.

struct EnumCase {
  const char* key;
  const char* allowed;
};

class ConfigEnum : public ::testing::TestWithParam<EnumCase> {};

TEST_P(ConfigEnum, BadValueListsAllowed) {
  const EnumCase& c = GetParam();
  auto r = parse_text(std::string("[general]\n") + c.key + " = \"bogus\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, std::string("general.") + c.key,
                       std::string("unknown value \"bogus\", expected one of: ") + c.allowed));
}

TEST_P(ConfigEnum, MatchIsCaseSensitive) {
  // The allowed values are lowercase; "Session" is rejected like any other unknown word.
  const EnumCase& c = GetParam();
  std::string first(c.allowed, std::string_view(c.allowed).find(','));
  for (auto& ch : first)
    ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  auto r = parse_text(std::string("[general]\n") + c.key + " = \"" + first + "\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, std::string("general.") + c.key, "unknown value"));
}

INSTANTIATE_TEST_SUITE_P(
    General, ConfigEnum,
    ::testing::Values(EnumCase{"pooler_mode", "transaction, session"},
                      EnumCase{"auth_type", "scram, md5, trust"},
                      EnumCase{"tls_verify", "disabled, prefer, verify_ca, verify_full"},
                      EnumCase{"prepared_statements", "disabled, extended"},
                      EnumCase{"mirror_compare", "off, tags, results"},
                      EnumCase{"log_level", "trace, debug, info, warn, error"}));

TEST(ConfigEnumTables, MirroringLevel) {
  auto r = with_databases(
      "[[mirroring]]\n"
      "source_db = \"a\"\n"
      "destination_db = \"b\"\n"
      "level = \"dql\"\n");
  EXPECT_TRUE(
      is_error(r, "pgdog.toml", 10, "mirroring[0].level", "expected one of: all, dml, ddl"));
}

TEST(ConfigEnumTables, MirroringCompare) {
  auto r = with_databases(
      "[[mirroring]]\n"
      "source_db = \"a\"\n"
      "destination_db = \"b\"\n"
      "compare = \"rows\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 10, "mirroring[0].compare", "off, tags, results"));
}

TEST(ConfigEnumTables, DatabasePoolerMode) {
  auto r = parse_text(
      "[[databases]]\n"
      "name = \"a\"\n"
      "host = \"h\"\n"
      "pooler_mode = \"statement\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 4, "databases[0].pooler_mode", "transaction, session"));
}

TEST(ConfigEnumTables, UserPoolerMode) {
  auto r = with_databases("",
                          "[[users]]\n"
                          "name = \"u\"\n"
                          "database = \"a\"\n"
                          "pooler_mode = \"statement\"\n");
  EXPECT_TRUE(is_error(r, "users.toml", 4, "users[0].pooler_mode", "transaction, session"));
}

// Missing required keys point at the table header.

TEST(ConfigRequired, DatabaseName) {
  auto r = with_databases(
      "\n"
      "[[databases]]\n"
      "host = \"h\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 8, "databases[2].name", "missing required key"));
}

TEST(ConfigRequired, DatabaseHost) {
  auto r = parse_text(
      "[[databases]]\n"
      "name = \"a\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 1, "databases[0].host", "missing required key"));
}

TEST(ConfigRequired, DatabaseInInlineTable) {
  auto r = parse_text(
      "databases = [\n"
      "  { name = \"a\", host = \"h\" },\n"
      "  { name = \"b\" },\n"
      "]\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 3, "databases[1].host", "missing required key"));
}

TEST(ConfigRequired, UserName) {
  auto r = with_databases("",
                          "[[users]]\n"
                          "name = \"u\"\n"
                          "database = \"a\"\n"
                          "[[users]]\n"
                          "database = \"a\"\n");
  EXPECT_TRUE(is_error(r, "users.toml", 4, "users[1].name", "missing required key"));
}

TEST(ConfigRequired, UserDatabase) {
  auto r = with_databases("",
                          "[[users]]\n"
                          "name = \"u\"\n");
  EXPECT_TRUE(is_error(r, "users.toml", 1, "users[0].database", "missing required key"));
}

TEST(ConfigRequired, MirroringSource) {
  auto r = with_databases(
      "[[mirroring]]\n"
      "destination_db = \"b\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 7, "mirroring[0].source_db", "missing required key"));
}

TEST(ConfigRequired, MirroringDestination) {
  auto r = with_databases(
      "[[mirroring]]\n"
      "source_db = \"a\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 7, "mirroring[0].destination_db", "missing required key"));
}

// Rules across keys and tables

TEST(ConfigRules, DuplicateDatabaseName) {
  auto r = with_databases(
      "[[databases]]\n"
      "name = \"a\"\n"
      "host = \"other\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 8, "databases[2].name",
                       "duplicate database \"a\" (first defined on line 2)"));
}

TEST(ConfigRules, DatabaseNamedLikeAdminConsole) {
  auto r = parse_text(
      "[[databases]]\n"
      "name = \"admin\"\n"
      "host = \"h\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "databases[0].name", "admin.name"));
}

TEST(ConfigRules, DatabaseNamedAdminIsFineWhenConsoleRenamed) {
  auto r = parse_text(
      "[admin]\n"
      "name = \"pgdog\"\n"
      "[[databases]]\n"
      "name = \"admin\"\n"
      "host = \"h\"\n");
  EXPECT_TRUE(r.has_value());
}

TEST(ConfigRules, UserOnUnknownDatabase) {
  auto r = with_databases("",
                          "[[users]]\n"
                          "name = \"u\"\n"
                          "database = \"c\"\n");
  EXPECT_TRUE(is_error(r, "users.toml", 3, "users[0].database", "unknown database \"c\""));
}

TEST(ConfigRules, UserWithoutAnyDatabase) {
  auto r = parse_text("", "[[users]]\nname = \"u\"\ndatabase = \"a\"\n");
  EXPECT_TRUE(is_error(r, "users.toml", 3, "users[0].database", "unknown database \"a\""));
}

TEST(ConfigRules, DuplicateUser) {
  auto r = with_databases("",
                          "[[users]]\n"
                          "name = \"u\"\n"
                          "database = \"a\"\n"
                          "[[users]]\n"
                          "name = \"u\"\n"
                          "database = \"a\"\n");
  EXPECT_TRUE(is_error(r, "users.toml", 5, "users[1].name",
                       "duplicate user \"u\" for database \"a\" (first defined on line 2)"));
}

TEST(ConfigRules, MirroringUnknownSource) {
  auto r = with_databases(
      "[[mirroring]]\n"
      "source_db = \"x\"\n"
      "destination_db = \"b\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 8, "mirroring[0].source_db", "unknown database \"x\""));
}

TEST(ConfigRules, MirroringUnknownDestination) {
  auto r = with_databases(
      "[[mirroring]]\n"
      "source_db = \"a\"\n"
      "destination_db = \"y\"\n");
  EXPECT_TRUE(
      is_error(r, "pgdog.toml", 9, "mirroring[0].destination_db", "unknown database \"y\""));
}

TEST(ConfigRules, MirroringToItself) {
  auto r = with_databases(
      "[[mirroring]]\n"
      "source_db = \"a\"\n"
      "destination_db = \"a\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 9, "mirroring[0].destination_db",
                       "destination_db must differ from source_db"));
}

TEST(ConfigRules, DuplicateMirroring) {
  auto r = with_databases(
      "[[mirroring]]\n"
      "source_db = \"a\"\n"
      "destination_db = \"b\"\n"
      "[[mirroring]]\n"
      "source_db = \"a\"\n"
      "destination_db = \"b\"\n"
      "exposure = 0.5\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 12, "mirroring[1].destination_db",
                       "duplicate mirroring from \"a\" to \"b\""));
}

TEST(ConfigRules, CertificateWithoutKey) {
  auto r = parse_text(
      "[general]\n"
      "tls_certificate = \"/c.pem\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.tls_certificate", "without tls_private_key"));
}

TEST(ConfigRules, KeyWithoutCertificate) {
  auto r = parse_text(
      "[general]\n"
      "port = 6432\n"
      "tls_private_key = \"/k.pem\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 3, "general.tls_private_key", "without tls_certificate"));
}

TEST(ConfigRules, ClientRequiredWithoutCertificate) {
  auto r = parse_text(
      "[general]\n"
      "tls_client_required = true\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.tls_client_required", "needs tls_certificate"));
}

TEST(ConfigRules, ClientNotRequiredWithoutCertificateIsFine) {
  EXPECT_TRUE(parse_text("[general]\ntls_client_required = false\n").has_value());
}

TEST(ConfigRules, OpenmetricsOnProxyPort) {
  auto r = parse_text(
      "[general]\n"
      "openmetrics_port = 6432\n");
  EXPECT_TRUE(
      is_error(r, "pgdog.toml", 2, "general.openmetrics_port", "must differ from general.port"));
}

// Which error is reported when there are several

TEST(ConfigErrorOrder, EarliestLineWins) {
  // toml11 keeps tables in hash order; the report must not depend on it.
  auto r = parse_text(
      "[general]\n"
      "zzz = 1\n"
      "port = \"x\"\n"
      "aaa = 1\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.zzz", "unknown key"));
}

TEST(ConfigErrorOrder, EarliestLineAcrossTables) {
  auto r = parse_text(
      "[admin]\n"
      "bad = 1\n"
      "[general]\n"
      "port = 0\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "admin.bad", "unknown key"));
}

TEST(ConfigErrorOrder, PgdogFileBeforeUsersFile) {
  auto r = parse_text("[general]\n\n\nport = 0\n", "[[users]]\nbad = 1\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 4, "general.port", "out of range"));
}

TEST(ConfigErrorOrder, KeyErrorsBeforeCrossRules) {
  // The duplicate name comes first in the file, but a rule over half-decoded data could
  // mislead; the plain key error is reported.
  auto r = with_databases(
      "[[databases]]\n"
      "name = \"a\"\n"
      "host = \"h\"\n"
      "port = \"x\"\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 10, "databases[2].port", "expected an integer"));
}

TEST(ConfigErrorOrder, ErrorHasNoValue) {
  // Nothing half-applied: an error result carries no Config at all.
  auto r = parse_text("[general]\nport = 7000\nworkers = 0\n");
  EXPECT_TRUE(r.has_error());
  EXPECT_FALSE(r.has_value());
}

TEST(ConfigErrors, ReadinessLatencyFactorBelowOne) {
  auto r = parse_text("[general]\nmirror_readiness_latency_factor = 0.5\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.mirror_readiness_latency_factor",
                       "must be at least 1"));
  r = parse_text("[general]\nmirror_readiness_window = 0\n");
  EXPECT_TRUE(is_error(r, "pgdog.toml", 2, "general.mirror_readiness_window", "out of range"));
}

}  // namespace
}  // namespace pgdog::config
