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

constexpr std::array<std::string_view, 13> kReported = {
    "server_version", "server_encoding", "client_encoding", "application_name",
    "default_transaction_read_only", "in_hot_standby", "is_superuser", "session_authorization",
    "DateStyle", "IntervalStyle", "TimeZone", "integer_datetimes", "standard_conforming_strings"};

}  // namespace

bool iequals_ascii(std::string_view a, std::string_view b) { return iequals(a, b); }

bool is_reported_parameter(std::string_view name) { return contains(kReported, name); }

Params::Item Params::Iterator::operator*() const {
  const std::string_view name(at_);
  const std::string_view value(at_ + name.size() + 1);
  return {name, value};
}

Params::Iterator& Params::Iterator::operator++() {
  const std::string_view value = (**this).second;
  at_ = value.data() + value.size() + 1;
  return *this;
}

std::size_t Params::size() const {
  std::size_t n = 0;
  for (auto it = items().begin(); it != items().end(); ++it) ++n;
  return n;
}

std::size_t Params::find(std::string_view name, std::size_t* insert_at) const {
  std::size_t at = 0;
  bool placed = false;
  for (const auto [k, v] : items()) {
    const auto offset = static_cast<std::size_t>(k.data() - pairs_.data());
    if (iequals(k, name)) return offset;
    if (!placed && !(k < name)) {
      at = offset;
      placed = true;
    }
  }
  if (insert_at != nullptr) *insert_at = placed ? at : pairs_.size();
  return pairs_.size();
}

std::size_t Params::pair_end(std::size_t at) const {
  const Item pair = *Iterator(pairs_.data() + at);
  return static_cast<std::size_t>(pair.second.data() - pairs_.data()) + pair.second.size() + 1;
}

std::optional<std::string_view> Params::get(std::string_view name) const {
  const std::size_t at = find(name, nullptr);
  if (at == pairs_.size()) return std::nullopt;
  return (*Iterator(pairs_.data() + at)).second;
}

void Params::set(std::string_view name, std::string_view value) {
  std::size_t insert_at = 0;
  const std::size_t at = find(name, &insert_at);
  // Built anew: `name` or `value` may point into pairs_ itself.
  std::string next;
  next.reserve(pairs_.size() + name.size() + value.size() + 2);
  if (at != pairs_.size()) {
    const Item old = *Iterator(pairs_.data() + at);
    if (old.second == value) return;
    next.append(pairs_, 0, at);
    next.append(old.first).push_back('\0');
    next.append(value).push_back('\0');
    next.append(pairs_, pair_end(at));
  } else {
    next.append(pairs_, 0, insert_at);
    next.append(name).push_back('\0');
    next.append(value).push_back('\0');
    next.append(pairs_, insert_at);
  }
  pairs_ = std::move(next);
  rehash();
}

bool Params::erase(std::string_view name) {
  const std::size_t at = find(name, nullptr);
  if (at == pairs_.size()) return false;
  pairs_.erase(at, pair_end(at) - at);
  rehash();
  return true;
}

void Params::rehash() {
  // FNV-1a over name, NUL, value, NUL for every pair, in order: exactly the stored bytes.
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : pairs_) h = (h ^ c) * 1099511628211ULL;
  hash_ = pairs_.empty() ? 0 : h;
}

std::shared_ptr<const Params> SharedParams::intern(Params params) {
  std::lock_guard g(mutex_);
  auto [first, last] = by_hash_.equal_range(params.hash());
  for (auto it = first; it != last; ++it) {
    if (auto known = it->second.lock(); known && *known == params) return known;
  }
  if (by_hash_.size() >= sweep_at_) {
    std::erase_if(by_hash_, [](const auto& entry) { return entry.second.expired(); });
    sweep_at_ = std::max<std::size_t>(64, 2 * by_hash_.size());
  }
  params.compact();
  auto shared = std::make_shared<const Params>(std::move(params));
  by_hash_.emplace(shared->hash(), shared);
  return shared;
}

std::size_t SharedParams::distinct() const {
  std::lock_guard g(mutex_);
  return by_hash_.size();
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
  // set_config() reads the value as the startup packet and postgresql.conf do: a list such as
  // search_path "a, b" is two names (SET x TO 'a, b' would make it one).
  auto literal = [&](std::string_view text) {
    sql += '\'';
    for (char c : text) {
      if (c == '\'') sql += '\'';
      sql += c;
    }
    sql += '\'';
  };
  sql += "SELECT set_config(";
  literal(name);
  sql += ", ";
  literal(value);
  sql += ", false);";
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
