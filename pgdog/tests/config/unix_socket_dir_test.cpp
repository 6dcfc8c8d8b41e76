// unix_socket_dir: "" is off, a relative path is an error naming the key, and when the file
// leaves it out load() (never parse()) looks at the host for the default directory.

#include <fstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "config/config.hpp"

namespace pgdog::config {
namespace {

const char* kUsers = "[[users]]\nname = \"u\"\ndatabase = \"db\"\npassword = \"p\"\n";
const char* kDatabase = "\n[[databases]]\nname = \"db\"\nhost = \"/var/run/postgresql\"\n";

Result<Config> parse_general(const std::string& general) {
  return parse("[general]\n" + general + kDatabase, kUsers);
}

TEST(UnixSocketDir, EmptyIsOffAndAnAbsolutePathIsKept) {
  auto off = parse_general("unix_socket_dir = \"\"\n");
  ASSERT_TRUE(off) << off.error().to_string();
  EXPECT_EQ(off->general.unix_socket_dir, "");
  auto set = parse_general("unix_socket_dir = \"/run/pgdog\"\n");
  ASSERT_TRUE(set) << set.error().to_string();
  EXPECT_EQ(set->general.unix_socket_dir, "/run/pgdog");
  // A directory as a server host is accepted as is (libpq's rule).
  EXPECT_EQ(set->databases.at(0).host, "/var/run/postgresql");
}

TEST(UnixSocketDir, ParseNeverLooksAtTheHost) {
  auto c = parse_general("port = 6432\n");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->general.unix_socket_dir, std::nullopt);
}

TEST(UnixSocketDir, ARelativePathIsAnErrorNamingTheKey) {
  auto c = parse_general("port = 6432\nunix_socket_dir = \"run\"\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().to_string(),
            "pgdog.toml:3: general.unix_socket_dir: unix_socket_dir must be an absolute path, or "
            "\"\" for none");
}

TEST(UnixSocketDir, LoadFillsInTheDefaultOnlyWhenLeftOut) {
  std::string dir = "/tmp/pgdog-config-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  const std::string users = dir + "/users.toml";
  const std::string pgdog = dir + "/pgdog.toml";
  std::ofstream(users) << kUsers;
  std::ofstream(pgdog) << "[general]\nport = 6432\n" << kDatabase;
  auto left_out = load(pgdog, users);
  ASSERT_TRUE(left_out) << left_out.error().to_string();
  struct stat st {};
  const bool usable = ::stat("/var/run/postgresql", &st) == 0 && S_ISDIR(st.st_mode) &&
                      ::access("/var/run/postgresql", W_OK | X_OK) == 0;
  EXPECT_EQ(left_out->general.unix_socket_dir, usable ? "/var/run/postgresql" : "");

  std::ofstream(pgdog, std::ios::trunc) << "[general]\nunix_socket_dir = \"\"\n" << kDatabase;
  auto off = load(pgdog, users);
  ASSERT_TRUE(off) << off.error().to_string();
  EXPECT_EQ(off->general.unix_socket_dir, "");
  ::unlink(users.c_str());
  ::unlink(pgdog.c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace pgdog::config
