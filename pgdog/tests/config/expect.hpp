#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "config/config.hpp"

namespace pgdog::config::testing {

// Checks every field of the reported error; the message only has to contain `message_part`,
// so tests pin the important words without copying whole sentences.
inline ::testing::AssertionResult is_error(const Result<Config>& result, std::string_view file,
                                           std::size_t line, std::string_view key,
                                           std::string_view message_part) {
  if (result.has_value()) return ::testing::AssertionFailure() << "parsed without error";
  const Error& e = result.error();
  if (e.file == file && e.line == line && e.key == key &&
      e.message.find(message_part) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "got \"" << e.to_string() << "\", want \"" << file << ":"
                                       << line << ": " << key << ": ..." << message_part << "...\"";
}

// Parses text that must be valid; a failure shows the error instead of crashing on value().
inline Config valid(std::string_view config_text, std::string_view users_text = "") {
  auto result = parse(config_text, users_text);
  if (result.has_error()) {
    ADD_FAILURE() << "unexpected error: " << result.error().to_string();
    return Config{};
  }
  return *result;
}

}  // namespace pgdog::config::testing
