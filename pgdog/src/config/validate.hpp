#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "config/config.hpp"

// Internal to config/: the rules that involve more than one key, checked once both files are
// decoded. Kept free of toml11 so they read as plain C++ over Config.
namespace pgdog::config::detail {

// The line of every key and table header of one file, recorded while decoding, so the
// cross-key rules can still point at the offending line.
class KeyLines {
 public:
  explicit KeyLines(std::string file) : file_(std::move(file)) {}

  void add(std::string key, std::size_t line) { lines_.insert_or_assign(std::move(key), line); }

  // 0 when neither the key nor its enclosing table was seen.
  std::size_t line(std::string_view key) const;
  Error error(std::string key, std::string message) const;
  const std::string& file() const { return file_; }

 private:
  std::string file_;
  std::unordered_map<std::string, std::size_t> lines_;
};

// The error closest to the top of its file (ties broken by key), so a file with several
// problems always reports the same one, the one a reader meets first.
std::optional<Error> first_error(const std::vector<Error>& errors);

// Rules across keys and tables: pool bounds, TLS pairs, names and references. Problems in
// pgdog.toml are reported before problems in users.toml.
std::optional<Error> validate(const Config& config, const KeyLines& config_lines,
                              const KeyLines& users_lines);

}  // namespace pgdog::config::detail
