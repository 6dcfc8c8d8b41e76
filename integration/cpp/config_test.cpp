// The CLI's configuration handling: configcheck (TLS files included), a bad config at startup,
// SIGHUP reload, SHOW CONFIG after a reload.
#include <algorithm>
#include <map>
#include <signal.h>
#include <thread>

#include "harness/harness.hpp"

namespace pgdog::it {
namespace {

class ConfigTest : public IntegrationTest {
 protected:
  CommandResult configcheck(const std::string& config, const std::string& users) {
    dir_.write("pgdog.toml", config);
    dir_.write("users.toml", users);
    return run_command(shell_quote(e().pgdog_bin) + " configcheck --config " +
                           shell_quote(dir_.path() + "/pgdog.toml") + " --users " +
                           shell_quote(dir_.path() + "/users.toml"),
                       30s);
  }

  TempDir dir_;
};

const std::string kValidConfig =
    "[general]\n"
    "host = \"127.0.0.1\"\n"
    "port = 6432\n"
    "\n"
    "[admin]\n"
    "password = \"x\"\n"
    "\n"
    "[[databases]]\n"
    "name = \"pgdog\"\n"
    "host = \"127.0.0.1\"\n";
const std::string kValidUsers =
    "[[users]]\n"
    "name = \"pgdog\"\n"
    "database = \"pgdog\"\n"
    "password = \"pgdog\"\n";

TEST_F(ConfigTest, ConfigcheckAcceptsAValidPair) {
  auto r = configcheck(kValidConfig, kValidUsers);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
}

TEST_F(ConfigTest, ConfigcheckRejectsAnUnknownKeyWithFileAndLine) {
  std::string config = kValidConfig;
  // Line 3 of pgdog.toml.
  config.insert(config.find("port"), "it_bogus_key = 1\n");
  auto r = configcheck(config, kValidUsers);
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  const std::string all = r.out + r.err;
  EXPECT_NE(all.find("pgdog.toml:3"), std::string::npos) << r.describe();
  EXPECT_NE(all.find("it_bogus_key"), std::string::npos) << r.describe();
}

TEST_F(ConfigTest, ConfigcheckRejectsAnUnknownKeyInUsers) {
  auto r = configcheck(kValidConfig, kValidUsers + "it_user_bogus = true\n");
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  const std::string all = r.out + r.err;
  EXPECT_NE(all.find("users.toml:5"), std::string::npos) << r.describe();
  EXPECT_NE(all.find("it_user_bogus"), std::string::npos) << r.describe();
}

TEST_F(ConfigTest, ConfigcheckRejectsAUserOfAnUnknownDatabase) {
  auto r =
      configcheck(kValidConfig, kValidUsers + "\n[[users]]\nname = \"x\"\ndatabase = \"nope\"\n");
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE((r.out + r.err).find("users.toml:"), std::string::npos) << r.describe();
}

TEST_F(ConfigTest, BadConfigExitsOneWithoutListening) {
  Pgdog pgdog(PgdogConfig().set("it_bogus_key", "1"), /*wait_ready=*/false);
  auto status = pgdog.wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << "pgdog kept running with a bad config";
  EXPECT_EQ(*status, 1);
  EXPECT_FALSE(port_open(pgdog.port()));
  EXPECT_NE(pgdog.log().find("it_bogus_key"), std::string::npos) << pgdog.log();
}

TEST_F(ConfigTest, ReloadAppliesAndABadFileIsRejected) {
  auto cfg = PgdogConfig().with_pool_size(3);
  Pgdog pgdog(cfg);
  ASSERT_TRUE(pgdog.started());
  auto admin = pgdog.admin();
  ASSERT_TRUE(admin.ok()) << admin.connect_error().message;
  auto pool_size = [&] {
    auto r = admin.exec("SHOW POOLS");
    const auto it = std::find(r.columns.begin(), r.columns.end(), "pool_size");
    if (!r.ok() || r.rows.empty() || it == r.columns.end()) return std::string("<none>");
    return r.at(0, static_cast<std::size_t>(it - r.columns.begin()));
  };
  EXPECT_EQ(pool_size(), "3");

  auto wait_for = [&](const std::string& want) {
    for (int i = 0; i < 100 && pool_size() != want; ++i)
      std::this_thread::sleep_for(50ms);
    return pool_size();
  };
  cfg.with_pool_size(7);
  pgdog.rewrite(cfg);
  pgdog.reload();
  EXPECT_EQ(wait_for("7"), "7");

  // A broken file changes nothing and pgdog keeps serving.
  cfg.set("it_bogus_key", "1");
  pgdog.rewrite(cfg);
  pgdog.reload();
  // Once the rejection is logged the reload was decided: nothing of the file applies.
  EXPECT_TRUE(
      wait_until([&] { return pgdog.log().find("it_bogus_key") != std::string::npos; }, 10s))
      << "the rejected reload was not logged:\n"
      << pgdog.log();
  EXPECT_EQ(pool_size(), "7");
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  EXPECT_EQ(c.exec("SELECT 1").at(0), "1");
}

TEST_F(ConfigTest, SigtermExitsZero) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  pgdog.signal(SIGTERM);
  auto status = pgdog.wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 0);
}

TEST_F(ConfigTest, SigtermLetsOpenTransactionsFinishThenExits) {
  Pgdog pgdog(PgdogConfig().set("shutdown_timeout", "10000"));
  ASSERT_TRUE(pgdog.started());
  auto busy = pgdog.connect();
  auto idle = pgdog.connect();
  ASSERT_TRUE(busy.ok() && idle.ok());
  ASSERT_TRUE(busy.exec("BEGIN").ok());
  ASSERT_TRUE(busy.exec("SELECT 1").ok());

  pgdog.signal(SIGTERM);
  // No new clients (the listener closes); the idle one is told to go.
  EXPECT_TRUE(wait_until([&] { return !port_open(pgdog.port()); }, 5s))
      << "pgdog still listens after SIGTERM";
  auto late = pgdog.connect();
  EXPECT_FALSE(late.ok()) << "a new client got in after SIGTERM";
  EXPECT_EQ(error_sent_to_idle(idle, 5s), "57P01") << "an idle client was kept after SIGTERM";
  auto r = idle.exec("SELECT 1", 5s);
  EXPECT_FALSE(r.ok()) << "an idle client was kept after SIGTERM";
  // The open transaction finishes normally.
  r = busy.exec("SELECT 2", 5s);
  EXPECT_EQ(r.at(0), "2") << r.describe();
  r = busy.exec("COMMIT", 5s);
  EXPECT_TRUE(r.ok()) << r.describe();
  auto status = pgdog.wait_exit(8s);
  ASSERT_TRUE(status.has_value()) << "pgdog still running after its last transaction ended";
  EXPECT_EQ(*status, 0);
}

TEST_F(ConfigTest, AdminReloadAppliesTheFiles) {
  auto cfg = PgdogConfig().with_pool_size(3);
  Pgdog pgdog(cfg);
  ASSERT_TRUE(pgdog.started());
  cfg.with_pool_size(5);
  pgdog.rewrite(cfg);
  auto admin = pgdog.admin();
  ASSERT_TRUE(admin.ok()) << admin.connect_error().message;
  auto r = admin.exec("RELOAD");
  ASSERT_TRUE(r.ok()) << r.describe();
  r = admin.exec("SHOW POOLS");
  const auto it = std::find(r.columns.begin(), r.columns.end(), "pool_size");
  ASSERT_NE(it, r.columns.end());
  EXPECT_EQ(r.at(0, static_cast<std::size_t>(it - r.columns.begin())), "5");

  cfg.set("it_bogus_key", "1");
  pgdog.rewrite(cfg);
  r = admin.exec("RELOAD");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error->message.find("it_bogus_key"), std::string::npos) << r.describe();
  EXPECT_TRUE(admin.exec("SHOW VERSION").ok());
}

// configcheck loads the TLS files, as the start would: a file that does not load fails the
// check naming the key and the file (the systemd unit's ExecStartPre relies on it).
TEST_F(ConfigTest, ConfigcheckLoadsTheTlsFilesAndNamesTheKey) {
  const std::string missing = dir_.path() + "/it-missing.crt";
  auto r = configcheck(kValidConfig, kValidUsers);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  std::string config = kValidConfig;
  config.insert(config.find("\n[admin]"),
                "tls_certificate = " + toml_string(missing) +
                    "\ntls_private_key = " + toml_string(dir_.path() + "/it-missing.key") + "\n");
  r = configcheck(config, kValidUsers);
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  std::string all = r.out + r.err;
  EXPECT_NE(all.find("general.tls_certificate"), std::string::npos) << r.describe();
  EXPECT_NE(all.find(missing + ": No such file or directory"), std::string::npos) << r.describe();

  // A file that is there but holds no certificate.
  const std::string garbage = dir_.write("it-garbage.crt", "not a certificate\n");
  config = kValidConfig;
  config.insert(config.find("\n[admin]"), "tls_certificate = " + toml_string(garbage) +
                                              "\ntls_private_key = " + toml_string(garbage) + "\n");
  r = configcheck(config, kValidUsers);
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  all = r.out + r.err;
  EXPECT_NE(all.find("general.tls_certificate: cannot load the certificate " + garbage),
            std::string::npos)
      << r.describe();

  // The CA file pgdog verifies servers with.
  const std::string missing_ca = dir_.path() + "/it-missing-ca.crt";
  config = kValidConfig;
  config.insert(config.find("\n[admin]"),
                "tls_verify = \"verify_full\"\n"
                "tls_server_ca_certificate = " +
                    toml_string(missing_ca) + "\n");
  r = configcheck(config, kValidUsers);
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  all = r.out + r.err;
  EXPECT_NE(all.find("general.tls_server_ca_certificate"), std::string::npos) << r.describe();
  EXPECT_NE(all.find(missing_ca), std::string::npos) << r.describe();
}

// The same error stops the start, naming the key and the file, before anything listens.
TEST_F(ConfigTest, StartWithAMissingCertificateNamesTheKeyAndFile) {
  const std::string missing = dir_.path() + "/it-missing.crt";
  Pgdog pgdog(PgdogConfig()
                  .set_string("tls_certificate", missing)
                  .set_string("tls_private_key", dir_.path() + "/it-missing.key"),
              /*wait_ready=*/false);
  auto status = pgdog.wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << "pgdog kept running without its certificate";
  EXPECT_EQ(*status, 1);
  EXPECT_FALSE(port_open(pgdog.port()));
  const auto log = pgdog.log();
  EXPECT_NE(log.find("general.tls_certificate"), std::string::npos) << log;
  EXPECT_NE(log.find(missing + ": No such file or directory"), std::string::npos) << log;
}

// After a reload that changes port (restart-only), SHOW CONFIG shows the port pgdog listens on,
// with the one the files ask for as pending; a reloadable key shows its new value at once.
TEST_F(ConfigTest, ShowConfigAfterAReloadShowsThePortInForceAndThePendingOne) {
  auto cfg = PgdogConfig().with_pool_size(3);
  Pgdog pgdog(cfg);
  ASSERT_TRUE(pgdog.started());
  const int other = free_port();
  cfg.set("port", std::to_string(other)).set("default_pool_size", "7");
  pgdog.rewrite(cfg);
  auto admin = pgdog.admin();
  ASSERT_TRUE(admin.ok()) << admin.connect_error().message;
  auto r = admin.exec("RELOAD");
  ASSERT_TRUE(r.ok()) << r.describe();

  r = admin.exec("SHOW CONFIG");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.columns, (std::vector<std::string>{"key", "value", "pending", "changeable"}));
  std::map<std::string, Row> rows;
  for (const auto& row : r.rows)
    rows[row[0].value_or("")] = row;
  ASSERT_TRUE(rows.count("port")) << r.describe();
  EXPECT_EQ(rows["port"], (Row{"port", std::to_string(pgdog.port()), std::to_string(other), "no"}));
  EXPECT_EQ(rows["default_pool_size"], (Row{"default_pool_size", "7", std::nullopt, "yes"}));
  EXPECT_EQ(rows["host"], (Row{"host", "127.0.0.1", std::nullopt, "no"}));
  for (const auto& [key, row] : rows) {
    if (key == "port") continue;
    EXPECT_FALSE(row[2].has_value()) << key << " pending: " << row[2].value_or("");
  }
  // What SHOW CONFIG says is what pgdog does.
  EXPECT_TRUE(port_open(pgdog.port()));
  EXPECT_FALSE(port_open(other));
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  EXPECT_NE(pgdog.log().find("reload: only a restart applies the new port"), std::string::npos)
      << pgdog.log();
}

}  // namespace
}  // namespace pgdog::it
