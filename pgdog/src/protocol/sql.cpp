#include "protocol/sql.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace pgdog::protocol::sql {

namespace {

enum class Tok { word, quoted_ident, string, number, param, semicolon, punct, end };

struct Token {
  Tok type = Tok::end;
  std::string_view text;
};

bool ident_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool ident_char(char c) {
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

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

template <std::size_t N>
bool one_of(std::string_view w, const std::array<std::string_view, N>& set) {
  return std::any_of(set.begin(), set.end(), [&](std::string_view s) { return iequals(w, s); });
}

constexpr std::array<std::string_view, 13> kDdl = {
    "CREATE", "ALTER",   "DROP",    "TRUNCATE", "COMMENT", "GRANT",  "REVOKE",
    "SECURITY", "REINDEX", "CLUSTER", "REFRESH",  "IMPORT",  "REASSIGN"};
constexpr std::array<std::string_view, 4> kDml = {"INSERT", "UPDATE", "DELETE", "MERGE"};
constexpr std::array<std::string_view, 8> kTransaction = {
    "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"};
constexpr std::array<std::string_view, 10> kSession = {"SET",     "RESET",   "DISCARD", "LISTEN",
                                                        "UNLISTEN", "NOTIFY", "PREPARE", "EXECUTE",
                                                        "DEALLOCATE", "LOAD"};
constexpr std::array<std::string_view, 8> kRead = {"SELECT", "VALUES", "TABLE",  "SHOW",
                                                   "FETCH",  "MOVE",   "DECLARE", "CLOSE"};

Kind classify_tokens(Lexer& lx, Token first) {
  if (first.type != Tok::word) {
    // "(SELECT ...)" and the like.
    if (first.type == Tok::punct && first.text == "(") {
      Token t = lx.next();
      while (t.type == Tok::punct && t.text == "(") t = lx.next();
      return t.type == Tok::end ? Kind::other : classify_tokens(lx, t);
    }
    return first.type == Tok::end ? Kind::empty : Kind::other;
  }
  const auto w = first.text;
  if (one_of(w, kDml)) return Kind::dml;
  if (one_of(w, kDdl)) return Kind::ddl;
  if (iequals(w, "PREPARE")) {
    Token t = lx.next();
    return t.type == Tok::word && iequals(t.text, "TRANSACTION") ? Kind::transaction
                                                                  : Kind::session;
  }
  if (one_of(w, kTransaction)) return Kind::transaction;
  if (one_of(w, kSession)) return Kind::session;
  // Procedures and anonymous blocks run arbitrary code: count them as changing data.
  if (iequals(w, "CALL") || iequals(w, "DO")) return Kind::dml;
  if (iequals(w, "COPY")) {
    for (Token t = lx.next(); t.type != Tok::end && t.type != Tok::semicolon; t = lx.next()) {
      if (t.type == Tok::word && iequals(t.text, "FROM")) return Kind::dml;
      if (t.type == Tok::word && iequals(t.text, "TO")) return Kind::read;
    }
    return Kind::other;
  }
  if (iequals(w, "WITH") || iequals(w, "SELECT")) {
    // A data-modifying CTE, or SELECT ... INTO (which creates a table), writes.
    const bool select = iequals(w, "SELECT");
    int depth = 0;
    for (Token t = lx.next(); t.type != Tok::end && t.type != Tok::semicolon; t = lx.next()) {
      if (t.type == Tok::punct && t.text == "(") ++depth;
      if (t.type == Tok::punct && t.text == ")") --depth;
      if (t.type != Tok::word) continue;
      if (!select && one_of(t.text, kDml)) return Kind::dml;
      if (select && depth == 0 && iequals(t.text, "INTO")) return Kind::dml;
    }
    return Kind::read;
  }
  if (iequals(w, "EXPLAIN")) {
    // Only EXPLAIN ANALYZE executes the statement it explains.
    bool analyze = false;
    for (Token t = lx.next(); t.type != Tok::end && t.type != Tok::semicolon; t = lx.next()) {
      if (t.type != Tok::word) continue;
      if (iequals(t.text, "ANALYZE") || iequals(t.text, "ANALYSE")) {
        analyze = true;
        continue;
      }
      if (one_of(t.text, kDml) || iequals(t.text, "WITH") || iequals(t.text, "SELECT")) {
        if (!analyze) return Kind::read;
        return classify_tokens(lx, t) == Kind::dml || one_of(t.text, kDml) ? Kind::dml
                                                                           : Kind::read;
      }
    }
    return Kind::read;
  }
  if (one_of(w, kRead)) return Kind::read;
  return Kind::other;
}

}  // namespace

const char* to_string(Kind k) {
  switch (k) {
    case Kind::empty:
      return "empty";
    case Kind::ddl:
      return "ddl";
    case Kind::dml:
      return "dml";
    case Kind::read:
      return "read";
    case Kind::transaction:
      return "transaction";
    case Kind::session:
      return "session";
    case Kind::other:
      return "other";
  }
  return "other";
}

Kind classify(std::string_view statement) {
  Lexer lx(statement);
  return classify_tokens(lx, lx.next());
}

std::vector<std::string_view> split(std::string_view query) {
  std::vector<std::string_view> out;
  Lexer lx(query);
  std::size_t start = 0;
  bool any = false;
  while (true) {
    Token t = lx.next();
    if (t.type == Tok::end || t.type == Tok::semicolon) {
      const std::size_t end = t.type == Tok::end ? query.size() : lx.position() - 1;
      if (any) out.push_back(query.substr(start, end - start));
      if (t.type == Tok::end) break;
      start = lx.position();
      any = false;
      continue;
    }
    any = true;
  }
  return out;
}

bool contains(std::string_view query, Kind k) {
  for (auto stmt : split(query)) {
    if (classify(stmt) == k) return true;
  }
  return false;
}

std::string fingerprint(std::string_view statement, std::size_t max_length) {
  std::string out;
  bool glue = false;
  Lexer lx(statement);
  for (Token t = lx.next(); t.type != Tok::end; t = lx.next()) {
    if (out.size() >= max_length) break;
    std::string_view piece = t.text;
    std::string lowered;
    switch (t.type) {
      case Tok::string:
      case Tok::number:
        piece = "?";
        break;
      case Tok::word:
        lowered.resize(piece.size());
        std::transform(piece.begin(), piece.end(), lowered.begin(),
                       [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
        piece = lowered;
        break;
      default:
        break;
    }
    const bool tight = t.type == Tok::punct && (piece == "," || piece == ")" || piece == "." ||
                                                piece == "::");
    if (!out.empty() && !tight && !glue) out.push_back(' ');
    out.append(piece);
    // Nothing between these and what follows.
    glue = t.type == Tok::punct && (piece == "(" || piece == "." || piece == "::");
  }
  if (out.size() > max_length) out.resize(max_length);
  return out;
}

}  // namespace pgdog::protocol::sql
