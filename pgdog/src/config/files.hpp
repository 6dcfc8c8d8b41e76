#pragma once

// Internal to config/: reading the files pgdog is configured by (pgdog.toml, users.toml, the
// cutover state), with errors that name the file and the line.

#include <string>
#include <string_view>

#include <toml.hpp>

#include "config/config.hpp"

namespace pgdog::config::detail {

// The whole file; "file not found", "is a directory" or "cannot read file" otherwise.
Result<std::string> read_file(const std::string& path);
// TOML text to a document; a syntax error names `name` and the line.
Result<toml::value> parse_toml(std::string_view text, const std::string& name);

}  // namespace pgdog::config::detail
