#include "harness/env.hpp"

#include <cstdlib>
#include <vector>

namespace pgdog::it {

namespace {

std::optional<std::string> get(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

std::vector<std::string> missing_names() {
  std::vector<std::string> out;
  for (const char* n :
       {"PRIMARY_PORT", "MIRROR_PORT", "PGLOCAL_DIR", "PGDOG_BIN", "PGDOG_SOURCE_DIR"}) {
    if (!get(n)) out.emplace_back(n);
  }
  return out;
}

}  // namespace

const std::optional<Env>& env() {
  static const std::optional<Env> instance = []() -> std::optional<Env> {
    if (!missing_names().empty()) return std::nullopt;
    Env e;
    e.primary_port = std::atoi(get("PRIMARY_PORT")->c_str());
    e.mirror_port = std::atoi(get("MIRROR_PORT")->c_str());
    e.pglocal_dir = *get("PGLOCAL_DIR");
    e.pgdog_bin = *get("PGDOG_BIN");
    e.source_dir = *get("PGDOG_SOURCE_DIR");
    if (e.primary_port <= 0 || e.mirror_port <= 0) return std::nullopt;
    return e;
  }();
  return instance;
}

std::string missing_env() {
  std::string names;
  for (const auto& n : missing_names())
    names += (names.empty() ? "" : ", ") + n;
  if (names.empty()) names = "PRIMARY_PORT/MIRROR_PORT (not a port number)";
  return "integration environment not set (" + names +
         "); run the suite with integration/run BUILD_DIR";
}

}  // namespace pgdog::it
