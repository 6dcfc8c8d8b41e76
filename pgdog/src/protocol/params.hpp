#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgdog::protocol {

// Session parameters as name/value pairs, with a content hash so that "is this server already
// set up for this client?" is one integer comparison per transaction.
class Params {
 public:
  const std::string* get(std::string_view name) const;
  void set(std::string_view name, std::string_view value);
  bool erase(std::string_view name);
  std::uint64_t hash() const { return hash_; }
  bool empty() const { return items_.empty(); }
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }
  // Gives back the vector's spare room (kept by every idle client after login).
  void compact() { items_.shrink_to_fit(); }

 private:
  void rehash();
  std::vector<std::pair<std::string, std::string>> items_;  // sorted by name
  std::uint64_t hash_ = 0;
};

// Parameters a client may carry in its startup packet and expect to hold on any pooled server;
// they are applied with SET. Everything else in a startup packet (user, database, replication,
// options, ...) is not a settable session parameter.
bool is_session_parameter(std::string_view name);

// Parameters the server reports but a client can never set (server_version, is_superuser, ...).
bool is_read_only_parameter(std::string_view name);

// Parses the startup "options" parameter: whitespace-separated "-c name=value" and
// "--name=value" settings, backslash escaping the next character (as PostgreSQL does).
// Nothing when it holds anything else (other command-line switches are not settings).
std::optional<std::vector<std::pair<std::string, std::string>>> parse_options(
    std::string_view options);

// "SET name TO 'value'" with the value quoted as a literal and the name as an identifier.
void append_set(std::string& sql, std::string_view name, std::string_view value);
void append_reset(std::string& sql, std::string_view name);

}  // namespace pgdog::protocol
