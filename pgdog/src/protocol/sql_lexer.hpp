#pragma once

// The SQL lexer behind sql.hpp and session_sql.hpp: tokens of a query string, with comments,
// quoted identifiers, strings of every kind and dollar quoting understood, so that a ';' or a
// keyword inside any of them is never mistaken for structure. Internal to protocol/.

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <string_view>

namespace pgdog::protocol::sql::detail {

enum class Tok { word, quoted_ident, string, number, param, semicolon, punct, end };

struct Token {
  Tok type = Tok::end;
  std::string_view text;
};

inline bool ident_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
inline bool ident_char(char c) {
  return ident_start(c) || std::isdigit(static_cast<unsigned char>(c)) || c == '$';
}

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}

  Token next() {
    skip_space_and_comments();
    if (pos_ >= s_.size()) return {Tok::end, {}};
    const std::size_t start = pos_;
    const char c = s_[pos_];
    if (c == ';') {
      ++pos_;
      return {Tok::semicolon, s_.substr(start, 1)};
    }
    if ((c == 'E' || c == 'e') && peek(1) == '\'') {
      ++pos_;
      skip_string(true);
      return {Tok::string, s_.substr(start, pos_ - start)};
    }
    if ((c == 'B' || c == 'b' || c == 'X' || c == 'x' || c == 'N' || c == 'n') && peek(1) == '\'') {
      ++pos_;
      skip_string(false);
      return {Tok::string, s_.substr(start, pos_ - start)};
    }
    if ((c == 'U' || c == 'u') && peek(1) == '&' && (peek(2) == '\'' || peek(2) == '"')) {
      pos_ += 2;
      if (s_[pos_] == '\'') {
        skip_string(false);
        return {Tok::string, s_.substr(start, pos_ - start)};
      }
      skip_quoted_ident();
      return {Tok::quoted_ident, s_.substr(start, pos_ - start)};
    }
    if (ident_start(c)) {
      while (pos_ < s_.size() && ident_char(s_[pos_])) ++pos_;
      return {Tok::word, s_.substr(start, pos_ - start)};
    }
    if (c == '"') {
      skip_quoted_ident();
      return {Tok::quoted_ident, s_.substr(start, pos_ - start)};
    }
    if (c == '\'') {
      skip_string(false);
      return {Tok::string, s_.substr(start, pos_ - start)};
    }
    if (c == '$') {
      if (std::isdigit(static_cast<unsigned char>(peek(1)))) {
        ++pos_;
        while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
        return {Tok::param, s_.substr(start, pos_ - start)};
      }
      if (try_dollar_string()) return {Tok::string, s_.substr(start, pos_ - start)};
      ++pos_;
      return {Tok::punct, s_.substr(start, 1)};
    }
    if (std::isdigit(static_cast<unsigned char>(c)) ||
        (c == '.' && std::isdigit(static_cast<unsigned char>(peek(1))))) {
      while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) ||
                                  s_[pos_] == '.' || s_[pos_] == '_' ||
                                  ((s_[pos_] == '+' || s_[pos_] == '-') &&
                                   (s_[pos_ - 1] == 'e' || s_[pos_ - 1] == 'E')))) {
        ++pos_;
      }
      return {Tok::number, s_.substr(start, pos_ - start)};
    }
    if (c == ':' && peek(1) == ':') {
      pos_ += 2;
      return {Tok::punct, s_.substr(start, 2)};
    }
    if (operator_char(c)) return {Tok::punct, s_.substr(start, operator_length())};
    ++pos_;
    return {Tok::punct, s_.substr(start, 1)};
  }

  std::size_t position() const { return pos_; }

 private:
  static bool operator_char(char c) {
    return c != '\0' && std::string_view("+-*/<>=~!@#%^&|`?").find(c) != std::string_view::npos;
  }

  // PostgreSQL's rule for operators: the longest run of operator characters, stopping before
  // a comment, and not ending in + or - unless it holds one of ~ ! @ # % ^ & | ` ? (so "a=-1"
  // is "=" then "-1"). Consumes the operator.
  std::size_t operator_length() {
    const std::size_t start = pos_;
    std::size_t end = pos_;
    while (end < s_.size() && operator_char(s_[end])) {
      if (end > start && ((s_[end] == '-' && s_[end - 1] == '-') ||
                          (s_[end] == '*' && s_[end - 1] == '/'))) {
        --end;
        break;
      }
      ++end;
    }
    const std::string_view op = s_.substr(start, end - start);
    if (op.size() > 1 && op.find_first_of("~!@#%^&|`?") == std::string_view::npos) {
      while (end - start > 1 && (s_[end - 1] == '+' || s_[end - 1] == '-')) --end;
    }
    pos_ = end;
    return end - start;
  }

  char peek(std::size_t ahead) const {
    return pos_ + ahead < s_.size() ? s_[pos_ + ahead] : '\0';
  }

  void skip_space_and_comments() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++pos_;
      } else if (c == '-' && peek(1) == '-') {
        while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
      } else if (c == '/' && peek(1) == '*') {
        // Block comments nest in PostgreSQL.
        int depth = 0;
        do {
          if (s_[pos_] == '/' && peek(1) == '*') {
            ++depth;
            pos_ += 2;
          } else if (s_[pos_] == '*' && peek(1) == '/') {
            --depth;
            pos_ += 2;
          } else {
            ++pos_;
          }
        } while (depth > 0 && pos_ < s_.size());
      } else {
        return;
      }
    }
  }

  void skip_string(bool backslash_escapes) {
    ++pos_;  // opening quote
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (backslash_escapes && c == '\\') {
        pos_ += 2;
        continue;
      }
      ++pos_;
      if (c == '\'') {
        if (pos_ < s_.size() && s_[pos_] == '\'') {
          ++pos_;
          continue;
        }
        return;
      }
    }
    pos_ = s_.size();
  }

  void skip_quoted_ident() {
    ++pos_;
    while (pos_ < s_.size()) {
      const char c = s_[pos_++];
      if (c == '"') {
        if (pos_ < s_.size() && s_[pos_] == '"') {
          ++pos_;
          continue;
        }
        return;
      }
    }
  }

  bool try_dollar_string() {
    // $tag$ ... $tag$ where tag is empty or an identifier without '$'.
    std::size_t i = pos_ + 1;
    while (i < s_.size() && s_[i] != '$') {
      if (!(ident_start(s_[i]) || (i > pos_ + 1 && std::isdigit(static_cast<unsigned char>(s_[i])))))
        return false;
      ++i;
    }
    if (i >= s_.size()) return false;
    const std::string_view tag = s_.substr(pos_, i - pos_ + 1);
    const auto close = s_.find(tag, i + 1);
    pos_ = close == std::string_view::npos ? s_.size() : close + tag.size();
    return true;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

inline bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace pgdog::protocol::sql::detail
