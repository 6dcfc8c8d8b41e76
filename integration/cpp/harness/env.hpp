#pragma once

#include <optional>
#include <string>

namespace pgdog::it {

// What integration/run exports: the throwaway clusters made by scripts/pg-local and the binary
// under test.
struct Env {
  int primary_port = 0;
  int mirror_port = 0;
  std::string pglocal_dir;  // holds tls/ca.crt, tls/server.crt, tls/server.key and ports.env
  std::string pgdog_bin;
  std::string source_dir;
};

// nullopt when a variable is missing; missing() then names which ones.
const std::optional<Env>& env();
std::string missing_env();

// Credentials pg-local creates on both clusters.
inline constexpr const char* kUser = "pgdog";
inline constexpr const char* kPassword = "pgdog";
inline constexpr const char* kDatabase = "pgdog";

}  // namespace pgdog::it
