#include <gtest/gtest.h>

#include "config/config.hpp"
#include "config/expect.hpp"

namespace pgdog::config {
namespace {

using testing::valid;

void expect_default_general(const General& g) {
  const General d;
  EXPECT_EQ(g.host, d.host);
  EXPECT_EQ(g.port, d.port);
  EXPECT_EQ(g.workers, d.workers);
  EXPECT_EQ(g.default_pool_size, d.default_pool_size);
  EXPECT_EQ(g.min_pool_size, d.min_pool_size);
  EXPECT_EQ(g.pooler_mode, d.pooler_mode);
  EXPECT_EQ(g.auth_type, d.auth_type);
  EXPECT_EQ(g.connect_timeout, d.connect_timeout);
  EXPECT_EQ(g.checkout_timeout, d.checkout_timeout);
  EXPECT_EQ(g.idle_timeout, d.idle_timeout);
  EXPECT_EQ(g.shutdown_timeout, d.shutdown_timeout);
  EXPECT_EQ(g.server_lifetime, d.server_lifetime);
  EXPECT_EQ(g.client_login_timeout, d.client_login_timeout);
  EXPECT_EQ(g.tls_certificate, d.tls_certificate);
  EXPECT_EQ(g.tls_private_key, d.tls_private_key);
  EXPECT_EQ(g.tls_client_required, d.tls_client_required);
  EXPECT_EQ(g.tls_verify, d.tls_verify);
  EXPECT_EQ(g.tls_server_ca_certificate, d.tls_server_ca_certificate);
  EXPECT_EQ(g.openmetrics_port, d.openmetrics_port);
  EXPECT_EQ(g.openmetrics_host, d.openmetrics_host);
  EXPECT_EQ(g.prepared_statements, d.prepared_statements);
  EXPECT_EQ(g.prepared_statements_limit, d.prepared_statements_limit);
  EXPECT_EQ(g.max_client_conn, d.max_client_conn);
  EXPECT_EQ(g.max_message_size, d.max_message_size);
  EXPECT_EQ(g.mirror_queue, d.mirror_queue);
  EXPECT_EQ(g.mirror_exposure, d.mirror_exposure);
  EXPECT_EQ(g.mirror_timeout, d.mirror_timeout);
  EXPECT_EQ(g.mirror_metrics_enabled, d.mirror_metrics_enabled);
  EXPECT_EQ(g.mirror_failure_threshold, d.mirror_failure_threshold);
  EXPECT_EQ(g.mirror_compare, d.mirror_compare);
  EXPECT_EQ(g.mirror_readiness_window, Millis{300000});
  EXPECT_EQ(g.mirror_readiness_latency_factor, 2.0);
  EXPECT_EQ(g.log_level, d.log_level);
}

TEST(ConfigParse, EmptyFilesGiveDefaults) {
  Config c = valid("", "");
  expect_default_general(c.general);
  EXPECT_EQ(c.admin.name, "admin");
  EXPECT_EQ(c.admin.user, "admin");
  EXPECT_FALSE(c.admin.password);
  EXPECT_TRUE(c.databases.empty());
  EXPECT_TRUE(c.mirroring.empty());
  EXPECT_TRUE(c.users.empty());
  EXPECT_EQ(c.config_path, "pgdog.toml");
  EXPECT_EQ(c.users_path, "users.toml");
}

TEST(ConfigParse, DocumentedDefaults) {
  // The values ARCHITECTURE.md promises, pinned so a changed default is a visible decision.
  const General g = valid("").general;
  EXPECT_EQ(g.host, "0.0.0.0");
  EXPECT_EQ(g.port, 6432);
  EXPECT_EQ(g.pooler_mode, PoolerMode::transaction);
  EXPECT_EQ(g.auth_type, AuthType::scram);
  EXPECT_EQ(g.tls_verify, TlsVerify::prefer);
  EXPECT_EQ(g.mirror_queue, 128u);
  EXPECT_EQ(g.mirror_exposure, 1.0);
  EXPECT_TRUE(g.mirror_metrics_enabled);
  EXPECT_FALSE(g.mirror_failure_threshold);
  EXPECT_FALSE(g.openmetrics_port);
}

TEST(ConfigParse, CommentsAndEmptyTablesGiveDefaults) {
  Config c =
      valid("# nothing configured yet\n\n[general]\n# port = 1\n\n[admin]\n", "# no users\n");
  expect_default_general(c.general);
  EXPECT_EQ(c.admin.name, "admin");
  EXPECT_TRUE(c.users.empty());
}

TEST(ConfigParse, NamesAreKeptAsPaths) {
  auto result = parse("", "", "/etc/pgdog/pgdog.toml", "/etc/pgdog/users.toml");
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->config_path, "/etc/pgdog/pgdog.toml");
  EXPECT_EQ(result->users_path, "/etc/pgdog/users.toml");
}

TEST(ConfigParse, EveryGeneralKeyOverrides) {
  const General g = valid(R"(
[general]
host = "127.0.0.1"
port = 7432
workers = 8
default_pool_size = 20
min_pool_size = 0
pooler_mode = "session"
auth_type = "md5"
connect_timeout = 1000
checkout_timeout = 2000
idle_timeout = 3000
shutdown_timeout = 4000
server_lifetime = 5000
client_login_timeout = 6000
tls_certificate = "/certs/server.crt"
tls_private_key = "/certs/server.key"
tls_client_required = true
tls_verify = "verify_full"
tls_server_ca_certificate = "/certs/ca.crt"
openmetrics_port = 9090
openmetrics_host = "127.0.0.2"
prepared_statements = "disabled"
prepared_statements_limit = 50
max_client_conn = 100
max_message_size = 1048576
mirror_queue = 64
mirror_exposure = 0.5
mirror_timeout = 250
mirror_metrics_enabled = false
mirror_failure_threshold = 0.05
mirror_compare = "results"
mirror_readiness_window = 60000
mirror_readiness_max_lag = 1000
mirror_readiness_latency_factor = 3
log_level = "debug"
)")
                        .general;
  EXPECT_EQ(g.host, "127.0.0.1");
  EXPECT_EQ(g.port, 7432);
  EXPECT_EQ(g.workers, 8);
  EXPECT_EQ(g.default_pool_size, 20);
  EXPECT_EQ(g.min_pool_size, 0);
  EXPECT_EQ(g.pooler_mode, PoolerMode::session);
  EXPECT_EQ(g.auth_type, AuthType::md5);
  EXPECT_EQ(g.connect_timeout, Millis{1000});
  EXPECT_EQ(g.checkout_timeout, Millis{2000});
  EXPECT_EQ(g.idle_timeout, Millis{3000});
  EXPECT_EQ(g.shutdown_timeout, Millis{4000});
  EXPECT_EQ(g.server_lifetime, Millis{5000});
  EXPECT_EQ(g.client_login_timeout, Millis{6000});
  EXPECT_EQ(g.tls_certificate, "/certs/server.crt");
  EXPECT_EQ(g.tls_private_key, "/certs/server.key");
  EXPECT_TRUE(g.tls_client_required);
  EXPECT_EQ(g.tls_verify, TlsVerify::verify_full);
  EXPECT_EQ(g.tls_server_ca_certificate, "/certs/ca.crt");
  EXPECT_EQ(g.openmetrics_port, 9090);
  EXPECT_EQ(g.openmetrics_host, "127.0.0.2");
  EXPECT_EQ(g.prepared_statements, PreparedStatements::disabled);
  EXPECT_EQ(g.prepared_statements_limit, 50u);
  EXPECT_EQ(g.max_client_conn, 100u);
  EXPECT_EQ(g.max_message_size, 1048576u);
  EXPECT_EQ(g.mirror_queue, 64u);
  EXPECT_EQ(g.mirror_exposure, 0.5);
  EXPECT_EQ(g.mirror_timeout, Millis{250});
  EXPECT_FALSE(g.mirror_metrics_enabled);
  EXPECT_EQ(g.mirror_failure_threshold, 0.05);
  EXPECT_EQ(g.mirror_compare, MirrorCompare::results);
  EXPECT_EQ(g.mirror_readiness_window, Millis{60000});
  EXPECT_EQ(g.mirror_readiness_max_lag, Millis{1000});
  EXPECT_EQ(g.mirror_readiness_latency_factor, 3.0);
  EXPECT_EQ(g.log_level, "debug");
}

TEST(ConfigParse, AdminOverrides) {
  const Admin a =
      valid("[admin]\nname = \"pgdog\"\nuser = \"root\"\npassword = \"secret\"\n").admin;
  EXPECT_EQ(a.name, "pgdog");
  EXPECT_EQ(a.user, "root");
  EXPECT_EQ(a.password, "secret");
}

TEST(ConfigParse, DatabaseDefaultsAndOverrides) {
  Config c = valid(R"(
[[databases]]
name = "minimal"
host = "10.0.0.1"

[[databases]]
name = "full"
host = "10.0.0.2"
port = 5433
database_name = "prod"
user = "app"
password = ""
pool_size = 30
min_pool_size = 5
pooler_mode = "session"
)");
  ASSERT_EQ(c.databases.size(), 2u);
  const Database& minimal = c.databases[0];
  EXPECT_EQ(minimal.name, "minimal");
  EXPECT_EQ(minimal.host, "10.0.0.1");
  EXPECT_EQ(minimal.port, 5432);
  EXPECT_FALSE(minimal.database_name);
  EXPECT_EQ(minimal.server_database(), "minimal");
  EXPECT_FALSE(minimal.user);
  EXPECT_FALSE(minimal.password);
  EXPECT_FALSE(minimal.pool_size);
  EXPECT_FALSE(minimal.min_pool_size);
  EXPECT_FALSE(minimal.pooler_mode);

  const Database& full = c.databases[1];
  EXPECT_EQ(full.port, 5433);
  EXPECT_EQ(full.server_database(), "prod");
  EXPECT_EQ(full.user, "app");
  EXPECT_EQ(full.password, "");  // an empty password is a value, not a mistake
  EXPECT_EQ(full.pool_size, 30);
  EXPECT_EQ(full.min_pool_size, 5);
  EXPECT_EQ(full.pooler_mode, PoolerMode::session);
}

TEST(ConfigParse, MirroringDefaultsAndOverrides) {
  Config c = valid(R"(
[[databases]]
name = "a"
host = "h"
[[databases]]
name = "b"
host = "h"
[[databases]]
name = "c"
host = "h"

[[mirroring]]
source_db = "a"
destination_db = "b"

[[mirroring]]
source_db = "a"
destination_db = "c"
queue_length = 16
exposure = 0.1
level = "ddl"
timeout = 500
compare = "off"
)");
  ASSERT_EQ(c.mirroring.size(), 2u);
  const Mirroring& plain = c.mirroring[0];
  EXPECT_EQ(plain.source_db, "a");
  EXPECT_EQ(plain.destination_db, "b");
  EXPECT_FALSE(plain.queue_length);
  EXPECT_FALSE(plain.exposure);
  EXPECT_EQ(plain.level, MirrorLevel::all);
  EXPECT_FALSE(plain.timeout);
  EXPECT_FALSE(plain.compare);

  const Mirroring& tuned = c.mirroring[1];
  EXPECT_EQ(tuned.queue_length, 16u);
  EXPECT_EQ(tuned.exposure, 0.1);
  EXPECT_EQ(tuned.level, MirrorLevel::ddl);
  EXPECT_EQ(tuned.timeout, Millis{500});
  EXPECT_EQ(tuned.compare, MirrorCompare::off);
}

TEST(ConfigParse, UserFields) {
  Config c = valid("[[databases]]\nname = \"app\"\nhost = \"h\"\n", R"(
[[users]]
name = "alice"
database = "app"

[[users]]
name = "bob"
database = "app"
password = "pw"
pool_size = 3
pooler_mode = "session"
server_user = "bob_server"
server_password = "server_pw"
)");
  ASSERT_EQ(c.users.size(), 2u);
  const User& alice = c.users[0];
  EXPECT_EQ(alice.name, "alice");
  EXPECT_EQ(alice.database, "app");
  EXPECT_FALSE(alice.password);
  EXPECT_FALSE(alice.pool_size);
  EXPECT_FALSE(alice.pooler_mode);
  EXPECT_FALSE(alice.server_user);
  EXPECT_FALSE(alice.server_password);

  const User& bob = c.users[1];
  EXPECT_EQ(bob.password, "pw");
  EXPECT_EQ(bob.pool_size, 3);
  EXPECT_EQ(bob.pooler_mode, PoolerMode::session);
  EXPECT_EQ(bob.server_user, "bob_server");
  EXPECT_EQ(bob.server_password, "server_pw");
}

TEST(ConfigParse, ExposureAcceptsIntegersZeroAndOne) {
  Config c = valid(R"(
[general]
mirror_exposure = 0
mirror_failure_threshold = 1
[[databases]]
name = "a"
host = "h"
[[databases]]
name = "b"
host = "h"
[[mirroring]]
source_db = "a"
destination_db = "b"
exposure = 1
)");
  EXPECT_EQ(c.general.mirror_exposure, 0.0);
  EXPECT_EQ(c.general.mirror_failure_threshold, 1.0);
  EXPECT_EQ(c.mirroring[0].exposure, 1.0);
}

TEST(ConfigParse, RatioBoundsAreInclusive) {
  Config c = valid("[general]\nmirror_exposure = 0.0\nmirror_failure_threshold = 1.0\n");
  EXPECT_EQ(c.general.mirror_exposure, 0.0);
  EXPECT_EQ(c.general.mirror_failure_threshold, 1.0);
}

TEST(ConfigParse, PortBoundsAreInclusive) {
  EXPECT_EQ(valid("[general]\nport = 1\n").general.port, 1);
  EXPECT_EQ(valid("[general]\nport = 65535\n").general.port, 65535);
}

TEST(ConfigParse, InlineTablesAndDottedKeysWork) {
  // Any TOML spelling of the same data is accepted, not only the [[table]] form.
  Config c = valid(
      "general.port = 7000\n"
      "databases = [{ name = \"a\", host = \"h\" }, { name = \"b\", host = \"h\" }]\n",
      "users = [{ name = \"u\", database = \"b\" }]\n");
  EXPECT_EQ(c.general.port, 7000);
  ASSERT_EQ(c.databases.size(), 2u);
  EXPECT_EQ(c.databases[1].name, "b");
  ASSERT_EQ(c.users.size(), 1u);
  EXPECT_EQ(c.users[0].database, "b");
}

TEST(ConfigParse, SameUserNameOnTwoDatabases) {
  Config c = valid(
      "[[databases]]\nname = \"a\"\nhost = \"h\"\n[[databases]]\nname = \"b\"\nhost = \"h\"\n",
      "[[users]]\nname = \"u\"\ndatabase = \"a\"\n[[users]]\nname = \"u\"\ndatabase = \"b\"\n");
  EXPECT_EQ(c.users.size(), 2u);
}

TEST(ConfigParse, MirrorBothDirectionsIsNotADuplicate) {
  Config c = valid(R"(
[[databases]]
name = "a"
host = "h"
[[databases]]
name = "b"
host = "h"
[[mirroring]]
source_db = "a"
destination_db = "b"
[[mirroring]]
source_db = "b"
destination_db = "a"
)");
  EXPECT_EQ(c.mirroring.size(), 2u);
}

TEST(ConfigParse, MinPoolSizeCheckedAgainstDatabasePoolSize) {
  // general.min_pool_size above a database's own pool_size is capped later, not an error.
  Config c = valid(R"(
[general]
min_pool_size = 5
[[databases]]
name = "small"
host = "h"
pool_size = 2
[[databases]]
name = "exact"
host = "h"
pool_size = 4
min_pool_size = 4
)");
  EXPECT_EQ(c.databases.size(), 2u);
}

TEST(ConfigParse, FullExample) {
  Config c = valid(R"(# pgdog in front of the old cluster, mirroring to the new one.
[general]
host = "0.0.0.0"
port = 6432
workers = 4
default_pool_size = 15
min_pool_size = 2
pooler_mode = "transaction"
auth_type = "scram"
openmetrics_port = 9930
mirror_queue = 256
mirror_exposure = 1.0
mirror_timeout = 5000
mirror_failure_threshold = 0.01

[admin]
password = "admin-secret"

[[databases]]
name = "prod"
host = "10.0.0.10"
database_name = "shop"

[[databases]]
name = "prod_v16"
host = "10.0.0.20"
database_name = "shop"
pool_size = 25

[[mirroring]]
source_db = "prod"
destination_db = "prod_v16"
exposure = 0.5
level = "dml"
)",
                   R"(
[[users]]
name = "shop"
database = "prod"
password = "shop-pw"

[[users]]
name = "shop"
database = "prod_v16"
password = "shop-pw"
pooler_mode = "session"
)");
  EXPECT_EQ(c.general.workers, 4);
  EXPECT_EQ(c.general.openmetrics_port, 9930);
  EXPECT_EQ(c.admin.password, "admin-secret");
  ASSERT_EQ(c.databases.size(), 2u);
  ASSERT_EQ(c.mirroring.size(), 1u);
  ASSERT_EQ(c.users.size(), 2u);

  const Mirroring& m = c.mirroring[0];
  EXPECT_EQ(c.queue_length(m), 256u);
  EXPECT_EQ(c.exposure(m), 0.5);
  EXPECT_EQ(c.mirror_timeout(m), Millis{5000});
  EXPECT_EQ(c.compare(m), MirrorCompare::tags);
  EXPECT_EQ(m.level, MirrorLevel::dml);

  const User* primary = c.find_user("shop", "prod");
  const User* mirror = c.find_user("shop", "prod_v16");
  ASSERT_NE(primary, nullptr);
  ASSERT_NE(mirror, nullptr);
  EXPECT_EQ(c.pool_size(*primary), 15);
  EXPECT_EQ(c.pool_size(*mirror), 25);
  EXPECT_EQ(c.min_pool_size(*primary), 2);
  EXPECT_EQ(c.pooler_mode(*primary), PoolerMode::transaction);
  EXPECT_EQ(c.pooler_mode(*mirror), PoolerMode::session);
  EXPECT_EQ(c.find_database("prod_v16")->server_database(), "shop");
}

}  // namespace
}  // namespace pgdog::config
