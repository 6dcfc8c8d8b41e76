// Client-facing authentication (scram, md5, trust) and server-facing authentication with
// server_user / database user (md5 and trust on the server).
#include "harness/harness.hpp"

namespace pgdog::it {
namespace {

class AuthTest : public IntegrationTest {
 protected:
  static PgdogConfig with_auth(const std::string& type) {
    return PgdogConfig().set_string("auth_type", type);
  }

  static void expect_login(const Pgdog& pgdog, const std::string& user,
                           const std::optional<std::string>& password,
                           const std::string& server_user) {
    auto c = pgdog.connect(user, password);
    ASSERT_TRUE(c.ok()) << user << ": " << c.connect_error().message;
    auto r = c.exec("SELECT current_user, session_user");
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.at(0, 0), server_user);
  }

  static void expect_rejected(const Pgdog& pgdog, const std::string& user,
                              const std::optional<std::string>& password,
                              const std::string& sqlstate) {
    auto c = pgdog.connect(user, password);
    ASSERT_FALSE(c.ok()) << user << " logged in with a wrong password";
    EXPECT_EQ(c.connect_error().sqlstate, sqlstate) << c.connect_error().message;
    EXPECT_EQ(c.connect_error().severity, "FATAL") << c.connect_error().message;
  }
};

TEST_F(AuthTest, ScramLoginSucceeds) {
  Pgdog pgdog(with_auth("scram"));
  ASSERT_TRUE(pgdog.started());
  expect_login(pgdog, "pgdog", "pgdog", "pgdog");
  // psql too (it verifies pgdog's SCRAM server signature like any libpq client).
  auto r = run_command("PGPASSWORD=pgdog psql -X -At -h 127.0.0.1 -p " +
                           std::to_string(pgdog.port()) + " -U pgdog -d pgdog -c 'SELECT 1'",
                       30s);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  r = run_command("PGPASSWORD=wrong psql -X -At -h 127.0.0.1 -p " + std::to_string(pgdog.port()) +
                      " -U pgdog -d pgdog -c 'SELECT 1'",
                  30s);
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("password authentication failed"), std::string::npos) << r.describe();
}

TEST_F(AuthTest, ScramWrongPasswordIs28P01) {
  Pgdog pgdog(with_auth("scram"));
  ASSERT_TRUE(pgdog.started());
  expect_rejected(pgdog, "pgdog", "not-the-password", "28P01");
  expect_rejected(pgdog, "pgdog", "pgdog ", "28P01");
  // The pool still works for the right password afterwards.
  expect_login(pgdog, "pgdog", "pgdog", "pgdog");
}

TEST_F(AuthTest, ScramUnknownUserIs28P01) {
  Pgdog pgdog(with_auth("scram"));
  ASSERT_TRUE(pgdog.started());
  expect_rejected(pgdog, "it_nobody", "whatever", "28P01");
}

TEST_F(AuthTest, Md5LoginSucceeds) {
  Pgdog pgdog(with_auth("md5"));
  ASSERT_TRUE(pgdog.started());
  expect_login(pgdog, "pgdog", "pgdog", "pgdog");
}

TEST_F(AuthTest, Md5WrongPasswordIs28P01) {
  Pgdog pgdog(with_auth("md5"));
  ASSERT_TRUE(pgdog.started());
  expect_rejected(pgdog, "pgdog", "not-the-password", "28P01");
  expect_rejected(pgdog, "it_nobody", "whatever", "28P01");
  expect_login(pgdog, "pgdog", "pgdog", "pgdog");
}

TEST_F(AuthTest, TrustAcceptsWithoutPassword) {
  Pgdog pgdog(with_auth("trust"));
  ASSERT_TRUE(pgdog.started());
  expect_login(pgdog, "pgdog", std::nullopt, "pgdog");
  // Any password is ignored under trust.
  expect_login(pgdog, "pgdog", "anything", "pgdog");
  // Trust does not make up users: one missing from users.toml is still refused.
  auto c = pgdog.connect("it_nobody", std::nullopt);
  EXPECT_FALSE(c.ok());
  EXPECT_FALSE(c.connect_error().sqlstate.empty()) << c.connect_error().message;
}

TEST_F(AuthTest, UnknownDatabaseIsRefused) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect("pgdog", "pgdog", "it_no_such_db");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.connect_error().sqlstate, "3D000") << c.connect_error().message;
}

TEST_F(AuthTest, ServerUserWithMd5OnTheServer) {
  // The client logs in as "app" with pgdog's password; pgdog logs in to PostgreSQL as
  // pgdog_md5, whose password the server stores as md5.
  Pgdog pgdog(PgdogConfig().with_users(
      user_toml("app", "pgdog", std::string("app_secret"),
                "server_user = \"pgdog_md5\"\nserver_password = \"pgdog_md5\"")));
  ASSERT_TRUE(pgdog.started());
  expect_login(pgdog, "app", "app_secret", "pgdog_md5");
  expect_rejected(pgdog, "app", "pgdog_md5", "28P01");
}

TEST_F(AuthTest, ServerUserWithTrustOnTheServer) {
  Pgdog pgdog(PgdogConfig().with_users(
      user_toml("app", "pgdog", std::string("app_secret"), "server_user = \"pgdog_trust\"")));
  ASSERT_TRUE(pgdog.started());
  expect_login(pgdog, "app", "app_secret", "pgdog_trust");
}

TEST_F(AuthTest, DatabaseUserOverridesTheClientName) {
  // [[databases]] user/password: every pool of that database logs in as pgdog_md5.
  Pgdog pgdog(PgdogConfig()
                  .with_databases(database_toml("pgdog", e().primary_port, "",
                                                "user = \"pgdog_md5\"\npassword = \"pgdog_md5\""))
                  .with_users(user_toml("app", "pgdog", std::string("app_secret"))));
  ASSERT_TRUE(pgdog.started());
  expect_login(pgdog, "app", "app_secret", "pgdog_md5");
}

TEST_F(AuthTest, WrongServerPasswordGivesAClearError) {
  Pgdog pgdog(PgdogConfig()
                  .set("connect_timeout", "2000")
                  .set("checkout_timeout", "2000")
                  .with_users(user_toml("app", "pgdog", std::string("app_secret"),
                                        "server_user = \"pgdog\"\nserver_password = \"wrong\"")));
  ASSERT_TRUE(pgdog.started());
  const auto start = std::chrono::steady_clock::now();
  auto c = pgdog.connect("app", "app_secret");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.connect_error().message.find("password authentication failed"), std::string::npos)
      << c.connect_error().message;
  EXPECT_LT(took, 5s);
}

}  // namespace
}  // namespace pgdog::it
