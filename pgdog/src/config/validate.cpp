#include "config/validate.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>

namespace pgdog::config::detail {

std::size_t KeyLines::line(std::string_view key) const {
  // A rule may name a key the file left out (a default was used): point at its table instead.
  std::string path(key);
  for (;;) {
    if (auto it = lines_.find(path); it != lines_.end()) return it->second;
    auto dot = path.rfind('.');
    if (dot == std::string::npos) return 0;
    path.resize(dot);
  }
}

Error KeyLines::error(std::string key, std::string message) const {
  std::size_t at = line(key);
  return Error{file_, at, std::move(key), std::move(message)};
}

std::optional<Error> first_error(const std::vector<Error>& errors) {
  auto it = std::min_element(errors.begin(), errors.end(), [](const Error& a, const Error& b) {
    return std::tie(a.line, a.key) < std::tie(b.line, b.key);
  });
  if (it == errors.end()) return std::nullopt;
  return *it;
}

namespace {

std::string item(std::string_view table, std::size_t index, std::string_view key) {
  std::string out(table);
  out += '[';
  out += std::to_string(index);
  out += "].";
  out += key;
  return out;
}

std::string in_quotes(std::string_view s) {
  std::string out = "\"";
  out += s;
  out += '"';
  return out;
}

void check_general(const Config& config, const KeyLines& lines, std::vector<Error>& errors) {
  const General& g = config.general;
  if (g.min_pool_size > g.default_pool_size) {
    errors.push_back(lines.error("general.min_pool_size", "min_pool_size " +
                                                              std::to_string(g.min_pool_size) +
                                                              " is larger than default_pool_size " +
                                                              std::to_string(g.default_pool_size)));
  }
  if (g.tls_certificate && !g.tls_private_key) {
    errors.push_back(
        lines.error("general.tls_certificate", "tls_certificate is set without tls_private_key"));
  }
  if (g.tls_private_key && !g.tls_certificate) {
    errors.push_back(
        lines.error("general.tls_private_key", "tls_private_key is set without tls_certificate"));
  }
  if (g.tls_client_required && !g.tls_certificate) {
    errors.push_back(lines.error("general.tls_client_required",
                                 "tls_client_required needs tls_certificate and tls_private_key"));
  }
  if (g.unix_socket_dir && !g.unix_socket_dir->empty() && !g.unix_socket_dir->starts_with('/')) {
    errors.push_back(lines.error("general.unix_socket_dir",
                                 "unix_socket_dir must be an absolute path, or \"\" for none"));
  }
  // Both listeners default to 0.0.0.0, so the same port would fail to bind at startup.
  if (g.openmetrics_port && *g.openmetrics_port == g.port) {
    errors.push_back(lines.error(
        "general.openmetrics_port",
        "openmetrics_port must differ from general.port (" + std::to_string(g.port) + ")"));
  }
}

void check_databases(const Config& config, const KeyLines& lines, std::vector<Error>& errors) {
  std::unordered_map<std::string_view, std::size_t> first_index;
  for (std::size_t i = 0; i < config.databases.size(); ++i) {
    const Database& db = config.databases[i];
    auto [it, inserted] = first_index.emplace(db.name, i);
    if (!inserted) {
      errors.push_back(
          lines.error(item("databases", i, "name"),
                      "duplicate database " + in_quotes(db.name) + " (first defined on line " +
                          std::to_string(lines.line(item("databases", it->second, "name"))) + ")"));
    }
    // Clients reach the admin console by asking for this database name.
    if (db.name == config.admin.name) {
      errors.push_back(lines.error(
          item("databases", i, "name"),
          "database " + in_quotes(db.name) + " has the admin console's name (admin.name)"));
    }
    int pool = db.pool_size.value_or(config.general.default_pool_size);
    if (db.min_pool_size && *db.min_pool_size > pool) {
      errors.push_back(lines.error(item("databases", i, "min_pool_size"),
                                   "min_pool_size " + std::to_string(*db.min_pool_size) +
                                       " is larger than the pool size " + std::to_string(pool)));
    }
  }
}

void check_mirroring(const Config& config, const KeyLines& lines, std::vector<Error>& errors) {
  std::set<std::pair<std::string_view, std::string_view>> seen;
  for (std::size_t i = 0; i < config.mirroring.size(); ++i) {
    const Mirroring& m = config.mirroring[i];
    if (config.find_database(m.source_db) == nullptr) {
      errors.push_back(lines.error(
          item("mirroring", i, "source_db"),
          "unknown database " + in_quotes(m.source_db) + " (not a [[databases]] name)"));
    }
    if (config.find_database(m.destination_db) == nullptr) {
      errors.push_back(lines.error(
          item("mirroring", i, "destination_db"),
          "unknown database " + in_quotes(m.destination_db) + " (not a [[databases]] name)"));
    }
    if (m.source_db == m.destination_db) {
      errors.push_back(lines.error(item("mirroring", i, "destination_db"),
                                   "destination_db must differ from source_db"));
    } else if (!seen.emplace(m.source_db, m.destination_db).second) {
      errors.push_back(lines.error(item("mirroring", i, "destination_db"),
                                   "duplicate mirroring from " + in_quotes(m.source_db) + " to " +
                                       in_quotes(m.destination_db)));
    }
  }
}

void check_users(const Config& config, const KeyLines& lines, std::vector<Error>& errors) {
  std::map<std::pair<std::string_view, std::string_view>, std::size_t> first_index;
  for (std::size_t i = 0; i < config.users.size(); ++i) {
    const User& u = config.users[i];
    if (config.find_database(u.database) == nullptr) {
      errors.push_back(
          lines.error(item("users", i, "database"), "unknown database " + in_quotes(u.database) +
                                                        " (not a [[databases]] name in " +
                                                        config.config_path + ")"));
    }
    auto [it, inserted] = first_index.try_emplace({u.name, u.database}, i);
    if (!inserted) {
      errors.push_back(
          lines.error(item("users", i, "name"),
                      "duplicate user " + in_quotes(u.name) + " for database " +
                          in_quotes(u.database) + " (first defined on line " +
                          std::to_string(lines.line(item("users", it->second, "name"))) + ")"));
    }
  }
}

}  // namespace

std::optional<Error> validate(const Config& config, const KeyLines& config_lines,
                              const KeyLines& users_lines) {
  std::vector<Error> errors;
  check_general(config, config_lines, errors);
  check_databases(config, config_lines, errors);
  check_mirroring(config, config_lines, errors);
  if (auto error = first_error(errors)) return error;

  check_users(config, users_lines, errors);
  return first_error(errors);
}

}  // namespace pgdog::config::detail
