#include <algorithm>
#include <array>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include <toml.hpp>

#include "config/config.hpp"
#include "config/cutover_state.hpp"
#include "config/files.hpp"
#include "config/keys.hpp"
#include "config/validate.hpp"

namespace pgdog::config {
namespace {

using detail::KeyLines;
using detail::kLogLevels;
using detail::kMinMessageSize;

constexpr std::array<PoolerMode, 2> choices(std::type_identity<PoolerMode>) {
  return {PoolerMode::transaction, PoolerMode::session};
}
constexpr std::array<AuthType, 3> choices(std::type_identity<AuthType>) {
  return {AuthType::scram, AuthType::md5, AuthType::trust};
}
constexpr std::array<TlsVerify, 4> choices(std::type_identity<TlsVerify>) {
  return {TlsVerify::disabled, TlsVerify::prefer, TlsVerify::verify_ca, TlsVerify::verify_full};
}
constexpr std::array<PreparedStatements, 2> choices(std::type_identity<PreparedStatements>) {
  return {PreparedStatements::disabled, PreparedStatements::extended};
}
constexpr std::array<PoolPinning, 2> choices(std::type_identity<PoolPinning>) {
  return {PoolPinning::automatic, PoolPinning::off};
}
constexpr std::array<MirrorLevel, 3> choices(std::type_identity<MirrorLevel>) {
  return {MirrorLevel::all, MirrorLevel::dml, MirrorLevel::ddl};
}
constexpr std::array<MirrorCompare, 3> choices(std::type_identity<MirrorCompare>) {
  return {MirrorCompare::off, MirrorCompare::tags, MirrorCompare::results};
}

constexpr std::int64_t int_max = std::numeric_limits<int>::max();
constexpr std::int64_t unbounded = std::numeric_limits<std::int64_t>::max();

std::size_t line_of(const toml::value& v) {
  return v.location().line();
}

std::string describe(const toml::value& v) {
  switch (v.type()) {
    case toml::value_t::empty:
      return "nothing";
    case toml::value_t::boolean:
      return "a boolean";
    case toml::value_t::integer:
      return "an integer";
    case toml::value_t::floating:
      return "a float";
    case toml::value_t::string:
      return "a string";
    case toml::value_t::offset_datetime:
    case toml::value_t::local_datetime:
    case toml::value_t::local_date:
    case toml::value_t::local_time:
      return "a date/time";
    case toml::value_t::array:
      return "an array";
    case toml::value_t::table:
      return "a table";
  }
  return "an unknown type";
}

std::string format_number(double x) {
  std::ostringstream out;
  out << x;
  return out.str();
}

std::string in_quotes(std::string_view s) {
  std::string out = "\"";
  out += s;
  out += '"';
  return out;
}

bool is_array_of_tables(const toml::value& v) {
  if (!v.is_array() || v.as_array().empty()) return false;
  for (const auto& item : v.as_array()) {
    if (!item.is_table()) return false;
  }
  return true;
}

// Overwrites a default only when the key was present and valid.
template <class T>
void set(T& out, std::optional<T> value) {
  if (value) out = std::move(*value);
}

// An optional setting is unset when the key is absent (or invalid: the error is recorded).
template <class T>
void set(std::optional<T>& out, std::optional<T> value) {
  out = std::move(value);
}

// The problems found in one file; only the earliest is reported, but decoding goes on past
// the first so that "earliest" does not depend on the hash order of toml11's tables.
class FileDecoder {
 public:
  explicit FileDecoder(KeyLines& lines) : lines_(lines) {}

  void fail(std::string key, std::size_t line, std::string message) {
    errors_.push_back(Error{lines_.file(), line, std::move(key), std::move(message)});
  }
  KeyLines& lines() { return lines_; }
  std::optional<Error> first_error() const { return detail::first_error(errors_); }

 private:
  KeyLines& lines_;
  std::vector<Error> errors_;
};

// Typed, range-checked reads from one TOML table. Each read marks its key as known and
// records its line; finish() then reports every key nobody asked for. A read returns nullopt
// when the key is absent or invalid (the problem is recorded in the FileDecoder).
class TableReader {
 public:
  // `path` names the table in errors ("general", "databases[0]"); empty for the file's root.
  TableReader(FileDecoder& file, const toml::value& table, std::string path)
      : file_(file), table_(table), path_(std::move(path)) {
    if (!path_.empty()) file_.lines().add(path_, line_of(table_));
  }

  // A non-empty string: names, hosts and paths, where "" is always a mistake.
  std::optional<std::string> text(std::string_view key) {
    auto s = string(key);
    if (s && s->empty()) {
      fail(key, "must not be empty");
      return std::nullopt;
    }
    return s;
  }

  // A key every entry of the table must have; "" when missing (the error is recorded).
  std::string required(std::string_view key) {
    if (table_.as_table().count(std::string(key)) == 0) {
      file_.fail(path(key), line_of(table_), "missing required key");
      return {};
    }
    return text(key).value_or("");
  }

  // Any string, including "" (passwords).
  std::optional<std::string> string(std::string_view key) {
    const toml::value* v = take(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) return mismatch(key, *v, "a string");
    return v->as_string().str;
  }

  std::optional<bool> flag(std::string_view key) {
    const toml::value* v = take(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) return mismatch(key, *v, "a boolean");
    return v->as_boolean();
  }

  std::optional<int> count(std::string_view key, int min) {
    auto n = integer(key, min, int_max);
    if (!n) return std::nullopt;
    return static_cast<int>(*n);
  }

  std::optional<std::size_t> size(std::string_view key, std::int64_t min) {
    auto n = integer(key, min, unbounded);
    if (!n) return std::nullopt;
    return static_cast<std::size_t>(*n);
  }

  std::optional<std::uint16_t> port(std::string_view key) {
    auto n = integer(key, 1, 65535);
    if (!n) return std::nullopt;
    return static_cast<std::uint16_t>(*n);
  }

  std::optional<Millis> millis(std::string_view key) {
    const toml::value* v = take(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_integer()) return mismatch(key, *v, "an integer (milliseconds)");
    if (v->as_integer() <= 0) {
      fail(key, std::to_string(v->as_integer()) + " is out of range: must be greater than 0 ms");
      return std::nullopt;
    }
    return Millis{v->as_integer()};
  }

  // Any number; integers are accepted so that `exposure = 1` reads naturally.
  std::optional<double> number(std::string_view key) {
    const toml::value* v = take(key);
    if (v == nullptr) return std::nullopt;
    if (v->is_floating()) return v->as_floating();
    if (v->is_integer()) return static_cast<double>(v->as_integer());
    return mismatch(key, *v, "a number");
  }

  // A fraction 0..1.
  std::optional<double> ratio(std::string_view key) {
    auto x = number(key);
    // Written so that NaN fails too.
    if (x && !(*x >= 0.0 && *x <= 1.0)) {
      fail(key, format_number(*x) + " is out of range: must be between 0 and 1");
      return std::nullopt;
    }
    return x;
  }

  // A number at least `min` (a multiplier such as a latency factor).
  std::optional<double> factor(std::string_view key, double min) {
    auto x = number(key);
    if (x && !(*x >= min && *x < 1e9)) {
      fail(key, format_number(*x) + " is out of range: must be at least " + format_number(min));
      return std::nullopt;
    }
    return x;
  }

  template <class E>
  std::optional<E> choice(std::string_view key) {
    constexpr auto values = choices(std::type_identity<E>{});
    std::array<std::string_view, values.size()> names{};
    for (std::size_t i = 0; i < values.size(); ++i) {
      names[i] = to_string(values[i]);
    }
    auto index = pick(key, names);
    if (!index) return std::nullopt;
    return values[*index];
  }

  std::optional<std::string> word(std::string_view key, std::span<const std::string_view> names) {
    auto index = pick(key, names);
    if (!index) return std::nullopt;
    return std::string(names[*index]);
  }

  template <class F>
  void table(std::string_view key, const F& decode) {
    const toml::value* v = take(key);
    if (v == nullptr) return;
    if (!v->is_table()) {
      mismatch(key, *v, "a table");
      return;
    }
    TableReader reader(file_, *v, path(key));
    decode(reader);
    reader.finish();
  }

  template <class F>
  void tables(std::string_view key, const F& decode) {
    const toml::value* v = take(key);
    if (v == nullptr) return;
    if (!v->is_array()) {
      mismatch(key, *v, "an array of tables ([[" + std::string(key) + "]])");
      return;
    }
    const auto& items = v->as_array();
    for (std::size_t i = 0; i < items.size(); ++i) {
      std::string item_path = path(key) + "[" + std::to_string(i) + "]";
      if (!items[i].is_table()) {
        file_.fail(item_path, line_of(items[i]), "expected a table, got " + describe(items[i]));
        continue;
      }
      TableReader reader(file_, items[i], std::move(item_path));
      decode(reader);
      reader.finish();
    }
  }

  void finish() {
    for (const auto& [key, v] : table_.as_table()) {
      if (taken_.count(key) != 0) continue;
      bool root_table = path_.empty() && (v.is_table() || is_array_of_tables(v));
      file_.fail(path(key), line_of(v), root_table ? "unknown table" : "unknown key");
    }
  }

 private:
  const toml::value* take(std::string_view key) {
    const auto& entries = table_.as_table();
    auto it = entries.find(std::string(key));
    if (it == entries.end()) return nullptr;
    taken_.emplace(key);
    file_.lines().add(path(key), line_of(it->second));
    return &it->second;
  }

  std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max) {
    const toml::value* v = take(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_integer()) return mismatch(key, *v, "an integer");
    std::int64_t n = v->as_integer();
    if (n < min || n > max) {
      std::string bounds = max == unbounded
                               ? "at least " + std::to_string(min)
                               : "between " + std::to_string(min) + " and " + std::to_string(max);
      fail(key, std::to_string(n) + " is out of range: must be " + bounds);
      return std::nullopt;
    }
    return n;
  }

  std::optional<std::size_t> pick(std::string_view key, std::span<const std::string_view> names) {
    const toml::value* v = take(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) return mismatch(key, *v, "a string");
    const std::string& s = v->as_string().str;
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (names[i] == s) return i;
    }
    std::string allowed;
    for (auto name : names) {
      if (!allowed.empty()) allowed += ", ";
      allowed += name;
    }
    fail(key, "unknown value " + in_quotes(s) + ", expected one of: " + allowed);
    return std::nullopt;
  }

  // Returns nullopt so that typed reads can `return mismatch(...)`.
  std::nullopt_t mismatch(std::string_view key, const toml::value& v, const std::string& want) {
    fail(key, "expected " + want + ", got " + describe(v));
    return std::nullopt;
  }

  void fail(std::string_view key, std::string message) {
    file_.fail(path(key), file_.lines().line(path(key)), std::move(message));
  }

  std::string path(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }

  FileDecoder& file_;
  const toml::value& table_;
  std::string path_;
  std::unordered_set<std::string> taken_;
};

// The reads of one key, in the words of the key lists (config/keys.hpp).
class KeyReader {
 public:
  KeyReader(TableReader& table, std::string_view key) : table_(table), key_(key) {}

  std::optional<std::string> text() { return table_.text(key_); }
  std::optional<std::string> string() { return table_.string(key_); }
  std::optional<bool> flag() { return table_.flag(key_); }
  std::optional<int> count(int min) { return table_.count(key_, min); }
  std::optional<std::size_t> size(std::int64_t min) { return table_.size(key_, min); }
  std::optional<std::uint16_t> port() { return table_.port(key_); }
  std::optional<Millis> millis() { return table_.millis(key_); }
  std::optional<double> ratio() { return table_.ratio(key_); }
  std::optional<double> factor(double min) { return table_.factor(key_, min); }
  template <class E>
  std::optional<E> choice() {
    return table_.choice<E>(key_);
  }
  std::optional<std::string> word(std::span<const std::string_view> names) {
    return table_.word(key_, names);
  }

 private:
  TableReader& table_;
  std::string_view key_;
};

void read_general(TableReader& r, General& g) {
#define PGDOG_READ_KEY(key, read, apply) set(g.key, KeyReader(r, #key).read);
  PGDOG_GENERAL_KEYS(PGDOG_READ_KEY)
#undef PGDOG_READ_KEY
}

void read_admin(TableReader& r, Admin& a) {
#define PGDOG_READ_KEY(key, read, shown) set(a.key, KeyReader(r, #key).read);
  PGDOG_ADMIN_KEYS(PGDOG_READ_KEY)
#undef PGDOG_READ_KEY
}

Database read_database(TableReader& r) {
  Database db;
  db.name = r.required("name");
  db.host = r.required("host");
  set(db.port, r.port("port"));
  db.database_name = r.text("database_name");
  db.user = r.text("user");
  db.password = r.string("password");
  db.pool_size = r.count("pool_size", 1);
  db.min_pool_size = r.count("min_pool_size", 0);
  db.pooler_mode = r.choice<PoolerMode>("pooler_mode");
  return db;
}

Mirroring read_mirroring(TableReader& r) {
  Mirroring m;
  m.source_db = r.required("source_db");
  m.destination_db = r.required("destination_db");
  m.queue_length = r.size("queue_length", 1);
  m.queue_bytes = r.size("queue_bytes", 1024);
  m.exposure = r.ratio("exposure");
  set(m.level, r.choice<MirrorLevel>("level"));
  m.timeout = r.millis("timeout");
  m.compare = r.choice<MirrorCompare>("compare");
  return m;
}

User read_user(TableReader& r) {
  User u;
  u.name = r.required("name");
  u.database = r.required("database");
  u.password = r.string("password");
  u.pool_size = r.count("pool_size", 1);
  u.pooler_mode = r.choice<PoolerMode>("pooler_mode");
  u.server_user = r.text("server_user");
  u.server_password = r.string("server_password");
  return u;
}

std::optional<Error> decode_config(const toml::value& doc, Config& config, KeyLines& lines) {
  FileDecoder file(lines);
  TableReader root(file, doc, "");
  root.table("general", [&](TableReader& r) { read_general(r, config.general); });
  root.table("admin", [&](TableReader& r) { read_admin(r, config.admin); });
  root.tables("databases", [&](TableReader& r) { config.databases.push_back(read_database(r)); });
  root.tables("mirroring", [&](TableReader& r) { config.mirroring.push_back(read_mirroring(r)); });
  root.finish();
  return file.first_error();
}

std::optional<Error> decode_users(const toml::value& doc, Config& config, KeyLines& lines) {
  FileDecoder file(lines);
  TableReader root(file, doc, "");
  root.tables("users", [&](TableReader& r) { config.users.push_back(read_user(r)); });
  root.finish();
  return file.first_error();
}

// toml11 formats a multi-line report ("[error] toml::parse_key: ...", then a source excerpt);
// keep only the summary, since the file and line are reported apart.
std::string syntax_message(std::string_view what) {
  std::string_view summary = what.substr(0, what.find('\n'));
  if (summary.starts_with("[error] ")) summary.remove_prefix(8);
  if (summary.starts_with("toml::")) {
    if (auto colon = summary.find(": "); colon != std::string_view::npos) {
      summary.remove_prefix(colon + 2);
    }
  }
  if (summary.ends_with('.')) summary.remove_suffix(1);
  return "syntax error: " + std::string(summary);
}

// Offset of the first byte that is not strict UTF-8 (no overlongs, surrogates or code points
// above U+10FFFF), or npos.
std::size_t invalid_utf8_at(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (s.size() - i < len) return i;
    for (std::size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

}  // namespace

namespace detail {

Result<toml::value> parse_toml(std::string_view text, const std::string& name) {
  // TOML files are UTF-8. toml11 3.7 checks that itself, but reading past its buffer when it
  // reports invalid UTF-8 inside a string (found by fuzz_config), so it never sees such bytes.
  if (const auto bad = invalid_utf8_at(text); bad != std::string_view::npos) {
    const auto before = text.substr(0, bad);
    const auto line = static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n')) + 1;
    return {boost::system::in_place_error, Error{name, line, "", "syntax error: invalid UTF-8"}};
  }
  std::istringstream in{std::string(text)};
  try {
    return toml::parse(in, name);
  } catch (const toml::syntax_error& e) {
    return {boost::system::in_place_error,
            Error{name, e.location().line(), "", syntax_message(e.what())}};
  } catch (const std::exception& e) {
    return {boost::system::in_place_error, Error{name, 0, "", e.what()}};
  }
}

Result<std::string> read_file(const std::string& path) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) return Error{path, 0, "", "file not found"};
  if (std::filesystem::is_directory(status)) return Error{path, 0, "", "is a directory"};
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) return Error{path, 0, "", "cannot open file"};
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) return Error{path, 0, "", "cannot read file"};
  return {boost::system::in_place_value, std::move(text)};
}

}  // namespace detail

using detail::parse_toml;
using detail::read_file;

Result<Config> load(const std::string& config_path, const std::string& users_path) {
  auto config_text = read_file(config_path);
  if (!config_text) return config_text.error();
  auto users_text = read_file(users_path);
  if (!users_text) return users_text.error();
  auto config = parse(*config_text, *users_text, config_path, users_path);
  if (!config) return config;
  if (!config->general.unix_socket_dir) {
    config->general.unix_socket_dir = default_unix_socket_dir();
  }
  const std::string state_path = cutover_state_path(*config);
  auto state = read_cutover_state(state_path);
  if (!state) return state.error();
  if (auto applied = apply_cutover_state(*config, *state, state_path); !applied)
    return applied.error();
  return config;
}

Result<Config> parse(std::string_view config_text, std::string_view users_text,
                     const std::string& config_name, const std::string& users_name) {
  Config config;
  config.config_path = config_name;
  config.users_path = users_name;
  KeyLines config_lines(config_name);
  KeyLines users_lines(users_name);

  auto config_doc = parse_toml(config_text, config_name);
  if (!config_doc) return config_doc.error();
  if (auto error = decode_config(*config_doc, config, config_lines)) return *error;

  auto users_doc = parse_toml(users_text, users_name);
  if (!users_doc) return users_doc.error();
  if (auto error = decode_users(*users_doc, config, users_lines)) return *error;

  if (auto error = detail::validate(config, config_lines, users_lines)) return *error;
  return config;
}

}  // namespace pgdog::config
