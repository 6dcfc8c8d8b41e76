#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>

#include <gtest/gtest.h>

#include "config/config.hpp"
#include "config/expect.hpp"

namespace pgdog::config {
namespace {

namespace fs = std::filesystem;
using testing::is_error;

// A private directory per test, so parallel runs (ctest -j) never share files.
class ConfigLoad : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("pgdog-config-" + std::to_string(::getpid()) + "-" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }

  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  std::string write(std::string_view name, std::string_view text) {
    fs::path path = dir_ / name;
    std::ofstream out(path, std::ios::binary);
    out << text;
    return path.string();
  }

  std::string path(std::string_view name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

TEST_F(ConfigLoad, ReadsBothFiles) {
  std::string config = write("pgdog.toml",
                             "[general]\nport = 7432\n"
                             "[[databases]]\nname = \"a\"\nhost = \"h\"\n");
  std::string users = write("users.toml", "[[users]]\nname = \"u\"\ndatabase = \"a\"\n");
  auto r = load(config, users);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->general.port, 7432);
  ASSERT_EQ(r->users.size(), 1u);
  EXPECT_EQ(r->config_path, config);
  EXPECT_EQ(r->users_path, users);
}

TEST_F(ConfigLoad, EmptyFilesAreValid) {
  auto r = load(write("pgdog.toml", ""), write("users.toml", ""));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->general.port, 6432);
}

TEST_F(ConfigLoad, MissingConfigFile) {
  std::string missing = path("nope.toml");
  auto r = load(missing, write("users.toml", ""));
  EXPECT_TRUE(is_error(r, missing, 0, "", "file not found"));
  EXPECT_EQ(r.error().to_string(), missing + ": file not found");
}

TEST_F(ConfigLoad, MissingUsersFile) {
  std::string missing = path("users.toml");
  auto r = load(write("pgdog.toml", ""), missing);
  EXPECT_TRUE(is_error(r, missing, 0, "", "file not found"));
}

TEST_F(ConfigLoad, DirectoryIsNotAFile) {
  auto r = load(dir_.string(), write("users.toml", ""));
  EXPECT_TRUE(is_error(r, dir_.string(), 0, "", "is a directory"));
}

TEST_F(ConfigLoad, ErrorsNameThePathGiven) {
  std::string config = write("pgdog.toml", "[general]\n\nprot = 1\n");
  auto r = load(config, write("users.toml", ""));
  EXPECT_TRUE(is_error(r, config, 3, "general.prot", "unknown key"));
}

TEST_F(ConfigLoad, CrlfLineEndingsCountLines) {
  std::string config = write("pgdog.toml", "[general]\r\nport = 1\r\nworkers = 0\r\n");
  auto r = load(config, write("users.toml", ""));
  EXPECT_TRUE(is_error(r, config, 3, "general.workers", "out of range"));
}

}  // namespace
}  // namespace pgdog::config
