#include "protocol/sql.hpp"

#include "protocol/sql_lexer.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace pgdog::protocol::sql {

namespace {

using detail::iequals;
using detail::Lexer;
using detail::Tok;
using detail::Token;

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
