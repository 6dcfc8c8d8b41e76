// The CLI's configuration handling: configcheck, a bad config at startup, SIGHUP reload.
#include <algorithm>
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

}  // namespace
}  // namespace pgdog::it
