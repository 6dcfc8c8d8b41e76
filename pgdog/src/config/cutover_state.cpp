#include "config/cutover_state.hpp"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

#include "config/files.hpp"

namespace pgdog::config {

namespace {

std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

Error entry_error(const std::string& name, const toml::value& v, std::size_t index,
                  std::string_view key, std::string message) {
  return Error{name, v.location().line(),
               "cutover[" + std::to_string(index) + "]" + (key.empty() ? "" : ".") +
                   std::string(key),
               std::move(message)};
}

Result<CutoverEntry> decode_entry(const toml::value& v, std::size_t index,
                                  const std::string& name) {
  if (!v.is_table()) return entry_error(name, v, index, "", "expected a table");
  CutoverEntry e;
  for (const auto& [key, value] : v.as_table()) {
    if (key == "swapped") {
      if (!value.is_boolean()) return entry_error(name, value, index, key, "expected a boolean");
      e.swapped = value.as_boolean();
    } else if (key == "generation") {
      if (!value.is_integer() || value.as_integer() < 0)
        return entry_error(name, value, index, key, "expected a non-negative integer");
      e.generation = static_cast<std::uint64_t>(value.as_integer());
    } else if (key == "database" || key == "peer" || key == "configured" || key == "serving" ||
               key == "at") {
      if (!value.is_string()) return entry_error(name, value, index, key, "expected a string");
      const std::string& s = value.as_string().str;
      if (key == "database") e.database = s;
      if (key == "peer") e.peer = s;
      if (key == "configured") e.configured = s;
      if (key == "serving") e.serving = s;
      if (key == "at") e.at = s;
    } else {
      return entry_error(name, value, index, key, "unknown key");
    }
  }
  if (e.database.empty()) return entry_error(name, v, index, "database", "missing");
  if (e.peer.empty()) return entry_error(name, v, index, "peer", "missing");
  return e;
}

Database* find_mutable(Config& config, std::string_view name) {
  for (auto& db : config.databases)
    if (db.name == name) return &db;
  return nullptr;
}

}  // namespace

const CutoverEntry* CutoverState::find(std::string_view database) const {
  for (const auto& e : entries)
    if (e.database == database) return &e;
  return nullptr;
}

void CutoverState::put(CutoverEntry entry) {
  for (auto& e : entries) {
    if (e.database == entry.database) {
      e = std::move(entry);
      return;
    }
  }
  entries.push_back(std::move(entry));
}

std::string endpoint(const Database& db) {
  return db.host + ":" + std::to_string(db.port) + "/" + db.server_database();
}

std::string cutover_state_path(const Config& config) {
  if (config.general.cutover_state) return *config.general.cutover_state;
  const auto dir = std::filesystem::path(config.config_path).parent_path();
  return (dir.empty() ? std::filesystem::path("pgdog-cutover.toml")
                      : dir / "pgdog-cutover.toml")
      .string();
}

Result<CutoverState> parse_cutover_state(std::string_view text, const std::string& name) {
  auto doc = detail::parse_toml(text, name);
  if (!doc) return doc.error();
  CutoverState state;
  if (!doc->is_table()) return state;
  for (const auto& [key, value] : doc->as_table()) {
    if (key != "cutover")
      return Error{name, value.location().line(), key, "unknown key (expected [[cutover]])"};
    if (!value.is_array())
      return Error{name, value.location().line(), key, "expected [[cutover]] tables"};
    std::size_t index = 0;
    for (const auto& item : value.as_array()) {
      auto entry = decode_entry(item, index++, name);
      if (!entry) return entry.error();
      if (state.find(entry->database))
        return entry_error(name, item, index - 1, "database", "listed twice");
      state.entries.push_back(std::move(*entry));
    }
  }
  return state;
}

Result<CutoverState> read_cutover_state(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return CutoverState{};
  auto text = detail::read_file(path);
  if (!text) return text.error();
  return parse_cutover_state(*text, path);
}

std::string to_toml(const CutoverState& state) {
  std::string out =
      "# Written by pgdog (CUTOVER on the admin console): the databases served by another\n"
      "# cluster than pgdog.toml gives them. pgdog applies this on top of pgdog.toml at every\n"
      "# start and reload. To make a cutover permanent, edit pgdog.toml to match and remove the\n"
      "# entry; see docs/cutover.md.\n";
  for (const auto& e : state.entries) {
    out += "\n[[cutover]]\n";
    out += "database = " + toml_string(e.database) + "\n";
    out += "peer = " + toml_string(e.peer) + "\n";
    out += std::string("swapped = ") + (e.swapped ? "true" : "false") + "\n";
    out += "generation = " + std::to_string(e.generation) + "\n";
    out += "configured = " + toml_string(e.configured) + "\n";
    out += "serving = " + toml_string(e.serving) + "\n";
    out += "at = " + toml_string(e.at) + "\n";
  }
  return out;
}

Result<void> write_cutover_state(const std::string& path, const CutoverState& state) {
  const std::string text = to_toml(state);
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Error{tmp, 0, "general.cutover_state", std::strerror(errno)};
  std::size_t done = 0;
  while (done < text.size()) {
    const auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return Error{tmp, 0, "general.cutover_state", why};
    }
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) {
    ::unlink(tmp.c_str());
    return Error{tmp, 0, "general.cutover_state", "fsync failed"};
  }
  std::error_code ec;
  if (std::filesystem::exists(path, ec))
    std::filesystem::copy_file(path, path + ".prev",
                               std::filesystem::copy_options::overwrite_existing, ec);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    return Error{path, 0, "general.cutover_state", why};
  }
  return {};
}

void swap_servers(Config& config, std::string_view a, std::string_view b) {
  Database* x = find_mutable(config, a);
  Database* y = find_mutable(config, b);
  if (x == nullptr || y == nullptr || x == y) return;
  // database_name defaults to the entry's name: spell it out before the names part.
  x->database_name = x->server_database();
  y->database_name = y->server_database();
  std::swap(x->host, y->host);
  std::swap(x->port, y->port);
  std::swap(x->database_name, y->database_name);
  std::swap(x->user, y->user);
  std::swap(x->password, y->password);
}

Result<void> apply_cutover_state(Config& config, const CutoverState& state,
                                 const std::string& path) {
  for (std::size_t i = 0; i < state.entries.size(); ++i) {
    const auto& e = state.entries[i];
    if (!e.swapped) continue;
    const std::string key = "cutover[" + std::to_string(i) + "]";
    const Database* db = config.find_database(e.database);
    const Database* peer = config.find_database(e.peer);
    if (db == nullptr)
      return Error{path, 0, key + ".database",
                   "database \"" + e.database + "\" was cut over but is not in " +
                       config.config_path + " any more"};
    if (peer == nullptr)
      return Error{path, 0, key + ".peer",
                   "database \"" + e.database + "\" is served by \"" + e.peer +
                       "\", which is not in " + config.config_path + " any more"};
    const std::string now = endpoint(*db);
    if (now == e.serving) continue;  // pgdog.toml was edited to match the cutover
    if (now != e.configured || endpoint(*peer) != e.serving)
      return Error{path, 0, key,
                   "database \"" + e.database + "\" was cut over from " + e.configured + " to " +
                       e.serving + ", but " + config.config_path + " now gives " + now +
                       " (and " + e.peer + " " + endpoint(*peer) +
                       "): make pgdog.toml and this file agree (docs/cutover.md)"};
    swap_servers(config, e.database, e.peer);
  }
  return {};
}

}  // namespace pgdog::config
