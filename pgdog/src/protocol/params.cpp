#include "protocol/params.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace pgdog::protocol {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

template <std::size_t N>
bool contains(const std::array<std::string_view, N>& set, std::string_view name) {
  return std::any_of(set.begin(), set.end(), [&](std::string_view s) { return iequals(s, name); });
}

constexpr std::array<std::string_view, 8> kNotParameters = {
    "user", "database", "replication", "options", "_pq_.", "client_encoding_fallback",
    "gssencmode", "sslmode"};

constexpr std::array<std::string_view, 9> kReadOnly = {
    "server_version",   "server_encoding", "integer_datetimes", "is_superuser",
    "session_authorization", "in_hot_standby", "scram_iterations", "server_version_num",
    "default_transaction_read_only"};

}  // namespace

const std::string* Params::get(std::string_view name) const {
  for (const auto& [k, v] : items_)
    if (iequals(k, name)) return &v;
  return nullptr;
}

void Params::set(std::string_view name, std::string_view value) {
  for (auto& [k, v] : items_) {
    if (iequals(k, name)) {
      if (v == value) return;
      v = value;
      rehash();
      return;
    }
  }
  auto at = std::lower_bound(items_.begin(), items_.end(), name,
                             [](const auto& item, std::string_view n) { return item.first < n; });
  items_.emplace(at, std::string(name), std::string(value));
  rehash();
}

bool Params::erase(std::string_view name) {
  auto it = std::find_if(items_.begin(), items_.end(),
                         [&](const auto& item) { return iequals(item.first, name); });
  if (it == items_.end()) return false;
  items_.erase(it);
  rehash();
  return true;
}

void Params::rehash() {
  // FNV-1a over name, NUL, value, NUL for every pair, in order.
  std::uint64_t h = 1469598103934665603ULL;
  auto mix = [&](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
    h = (h ^ 0U) * 1099511628211ULL;
  };
  for (const auto& [k, v] : items_) {
    mix(k);
    mix(v);
  }
  hash_ = items_.empty() ? 0 : h;
}

bool is_session_parameter(std::string_view name) {
  if (name.starts_with("_pq_.")) return false;
  return !contains(kNotParameters, name) && !is_read_only_parameter(name);
}

bool is_read_only_parameter(std::string_view name) { return contains(kReadOnly, name); }

std::optional<std::vector<std::pair<std::string, std::string>>> parse_options(
    std::string_view options) {
  // Split on unescaped whitespace; a backslash takes the next character literally.
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  for (std::size_t i = 0; i < options.size(); ++i) {
    const char c = options[i];
    if (c == '\\' && i + 1 < options.size()) {
      word.push_back(options[++i]);
      in_word = true;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
    } else {
      word.push_back(c);
      in_word = true;
    }
  }
  if (in_word) words.push_back(std::move(word));

  std::vector<std::pair<std::string, std::string>> out;
  auto setting = [&](std::string_view text) {
    const auto eq = text.find('=');
    if (eq == std::string_view::npos || eq == 0) return false;
    std::string name(text.substr(0, eq));
    // The command line spells names with '-' or '_' alike.
    for (char& ch : name) {
      if (ch == '-') ch = '_';
    }
    if (!is_session_parameter(name)) return false;
    out.emplace_back(std::move(name), std::string(text.substr(eq + 1)));
    return true;
  };
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string_view w = words[i];
    if (w == "-c" && i + 1 < words.size()) {
      if (!setting(words[++i])) return std::nullopt;
    } else if (w.starts_with("-c") && w.size() > 2) {
      if (!setting(w.substr(2))) return std::nullopt;
    } else if (w.starts_with("--") && w.size() > 2) {
      if (!setting(w.substr(2))) return std::nullopt;
    } else {
      return std::nullopt;
    }
  }
  return out;
}

void append_set(std::string& sql, std::string_view name, std::string_view value) {
  sql += "SET \"";
  for (char c : name) {
    if (c == '"') sql += '"';
    sql += c;
  }
  sql += "\" TO '";
  for (char c : value) {
    if (c == '\'') sql += '\'';
    sql += c;
  }
  sql += "';";
}

void append_reset(std::string& sql, std::string_view name) {
  sql += "RESET \"";
  for (char c : name) {
    if (c == '"') sql += '"';
    sql += c;
  }
  sql += "\";";
}

}  // namespace pgdog::protocol
