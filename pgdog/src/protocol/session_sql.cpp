#include "protocol/session_sql.hpp"

#include <algorithm>
#include <array>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "protocol/sql_lexer.hpp"

namespace pgdog::protocol::sql {

namespace {

using detail::iequals;
using detail::Lexer;
using detail::Tok;
using detail::Token;

// The tokens of one statement, read front to back.
class Words {
 public:
  bool at_end() const { return i_ >= t_.size(); }
  const Token& peek(std::size_t ahead = 0) const {
    static const Token end{};
    return i_ + ahead < t_.size() ? t_[i_ + ahead] : end;
  }
  bool is(std::string_view word, std::size_t ahead = 0) const {
    const Token& t = peek(ahead);
    return t.type == Tok::word && iequals(t.text, word);
  }
  bool punct(std::string_view p, std::size_t ahead = 0) const {
    const Token& t = peek(ahead);
    return t.type == Tok::punct && t.text == p;
  }
  Token take() { return i_ < t_.size() ? t_[i_++] : Token{}; }
  // Consumes `word` when it is next.
  bool skip(std::string_view word) {
    if (!is(word)) return false;
    ++i_;
    return true;
  }
  std::vector<Token>& tokens() { return t_; }

 private:
  std::vector<Token> t_;
  std::size_t i_ = 0;
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// An identifier as PostgreSQL folds it: lower case unless quoted.
std::string ident(const Token& t) {
  if (t.type == Tok::quoted_ident && t.text.size() >= 2 && t.text.front() == '"') {
    std::string out;
    for (std::size_t i = 1; i + 1 < t.text.size(); ++i) {
      out.push_back(t.text[i]);
      if (t.text[i] == '"') ++i;  // "" is one quote
    }
    return out;
  }
  return lower(t.text);
}

// a.b.c, without a pg_temp. qualifier (what DROP and CREATE of temporary objects name).
std::string qualified(Words& w, bool* temp_schema = nullptr) {
  std::string name = ident(w.take());
  while (w.punct(".") && (w.peek(1).type == Tok::word || w.peek(1).type == Tok::quoted_ident)) {
    w.take();
    name += "." + ident(w.take());
  }
  if (name.starts_with("pg_temp.")) {
    name.erase(0, 8);
    if (temp_schema != nullptr) *temp_schema = true;
  }
  return name;
}

std::string string_literal(const Token& t) {
  std::string out;
  if (t.type != Tok::string || t.text.size() < 2 || t.text.front() != '\'') return out;
  for (std::size_t i = 1; i + 1 < t.text.size(); ++i) {
    out.push_back(t.text[i]);
    if (t.text[i] == '\'') ++i;
  }
  return out;
}

void add_setting(SessionEffects& e, std::string name, bool reset, bool local) {
  e.settings.push_back({std::move(name), reset, local});
}

// SET [SESSION | LOCAL] ... after the SET.
void on_set(Words& w, SessionEffects& e) {
  bool local = false;
  if (w.skip("SESSION")) {
    if (w.skip("AUTHORIZATION")) {
      if (w.is("DEFAULT")) {
        e.dropped.push_back({Pin::authorization, "session"});
      } else {
        e.created.push_back({Pin::authorization, "session"});
      }
      add_setting(e, "role", true, false);  // a new session user has no role set
      return;
    }
    if (w.skip("CHARACTERISTICS")) {
      for (auto name : {"default_transaction_isolation", "default_transaction_read_only",
                        "default_transaction_deferrable"}) {
        add_setting(e, name, false, false);
      }
      return;
    }
  } else if (w.skip("LOCAL")) {
    local = true;
  }
  if (w.is("TRANSACTION") || w.is("CONSTRAINTS")) return;  // this transaction only
  if (w.is("TIME") && w.is("ZONE", 1)) {
    w.take();
    w.take();
    add_setting(e, "timezone", w.is("DEFAULT") || w.is("LOCAL"), local);
  } else if (w.skip("ROLE")) {
    add_setting(e, "role", w.is("NONE"), local);
  } else if (w.skip("SCHEMA")) {
    add_setting(e, "search_path", false, local);
  } else if (w.skip("NAMES")) {
    add_setting(e, "client_encoding", w.is("DEFAULT"), local);
  } else if (w.is("XML") && w.is("OPTION", 1)) {
    add_setting(e, "xmloption", false, local);
  } else if (w.peek().type == Tok::word || w.peek().type == Tok::quoted_ident) {
    std::string name = qualified(w);
    if (w.is("TO") || w.punct("=")) w.take();
    add_setting(e, std::move(name), w.is("DEFAULT"), local);
  }
}

void on_reset(Words& w, SessionEffects& e) {
  if (w.skip("ALL")) {
    e.reset_all = true;
  } else if (w.is("TIME") && w.is("ZONE", 1)) {
    add_setting(e, "timezone", true, false);
  } else if (w.skip("ROLE")) {
    add_setting(e, "role", true, false);
  } else if (w.is("SESSION") && w.is("AUTHORIZATION", 1)) {
    e.dropped.push_back({Pin::authorization, "session"});
    add_setting(e, "role", true, false);
  } else if (!w.is("TRANSACTION") &&
             (w.peek().type == Tok::word || w.peek().type == Tok::quoted_ident)) {
    add_setting(e, qualified(w), true, false);
  }
}

void on_discard(Words& w, SessionEffects& e) {
  if (w.skip("ALL")) {
    e.reset_all = true;
    e.cleared = 0xff;
  } else if (w.is("TEMP") || w.is("TEMPORARY")) {
    e.cleared |= SessionEffects::bit(Pin::temp_table);
  }
}

bool on_commit_drop(const Words& w) {
  for (std::size_t i = 0; w.peek(i).type != Tok::end; ++i) {
    if (w.is("ON", i) && w.is("COMMIT", i + 1) && w.is("DROP", i + 2)) return true;
  }
  return false;
}

// A name in the temporary schema anywhere in the statement.
bool mentions_pg_temp(Words& w) {
  for (const auto& t : w.tokens()) {
    if (t.type != Tok::word) continue;
    const std::string name = lower(t.text);
    if (name == "pg_temp" || name.starts_with("pg_temp_")) return true;
  }
  return false;
}

// CREATE [OR REPLACE] [GLOBAL | LOCAL] [TEMP | TEMPORARY] [UNLOGGED] [RECURSIVE] TABLE | VIEW |
// SEQUENCE [IF NOT EXISTS] name ...; any other object only if it is temporary.
void on_create(Words& w, SessionEffects& e) {
  if (w.is("OR") && w.is("REPLACE", 1)) {
    w.take();
    w.take();
  }
  bool temp = false;
  while (w.is("GLOBAL") || w.is("LOCAL") || w.is("TEMP") || w.is("TEMPORARY") ||
         w.is("UNLOGGED") || w.is("RECURSIVE")) {
    temp = temp || w.is("TEMP") || w.is("TEMPORARY");
    w.take();
  }
  if (!(w.skip("TABLE") || w.skip("VIEW") || w.skip("SEQUENCE"))) {
    // Other objects in the temporary schema (statistics, types, functions, ...).
    if (temp || mentions_pg_temp(w)) e.created.push_back({Pin::temp_table, {}});
    return;
  }
  if (w.is("IF") && w.is("NOT", 1) && w.is("EXISTS", 2)) {
    for (int i = 0; i < 3; ++i) w.take();
  }
  if (w.peek().type != Tok::word && w.peek().type != Tok::quoted_ident) return;
  std::string name = qualified(w, &temp);
  // Gone at the end of its transaction: nothing outlives it.
  if (temp && !on_commit_drop(w)) e.created.push_back({Pin::temp_table, std::move(name)});
}

// SELECT ... INTO [TEMP | TEMPORARY] [TABLE] name: a new table, temporary or not.
void on_select(Words& w, SessionEffects& e) {
  int depth = 0;
  while (!w.at_end()) {
    if (w.punct("(")) ++depth;
    if (w.punct(")")) --depth;
    if (depth == 0 && w.is("INTO")) {
      w.take();
      bool temp = false;
      while (w.is("TEMP") || w.is("TEMPORARY") || w.is("UNLOGGED") || w.is("TABLE")) {
        temp = temp || w.is("TEMP") || w.is("TEMPORARY");
        w.take();
      }
      std::string name = qualified(w, &temp);
      if (temp) e.created.push_back({Pin::temp_table, std::move(name)});
      return;
    }
    w.take();
  }
}

void on_drop(Words& w, SessionEffects& e) {
  if (!(w.skip("TABLE") || w.skip("VIEW") || w.skip("SEQUENCE"))) {
    // Any other object may be the last one in the temporary schema: it is read back.
    e.dropped.push_back({Pin::temp_table, {}});
    return;
  }
  if (w.is("IF") && w.is("EXISTS", 1)) {
    w.take();
    w.take();
  }
  while (w.peek().type == Tok::word || w.peek().type == Tok::quoted_ident) {
    e.dropped.push_back({Pin::temp_table, qualified(w)});
    if (!w.punct(",")) break;
    w.take();
  }
}

// Named-object statements: LISTEN/UNLISTEN, PREPARE/DEALLOCATE, DECLARE/CLOSE.
void on_named(std::string_view first, Words& w, SessionEffects& e) {
  if (iequals(first, "LISTEN")) {
    if (!w.at_end()) e.created.push_back({Pin::listen, ident(w.take())});
  } else if (iequals(first, "UNLISTEN")) {
    if (w.punct("*")) {
      e.cleared |= SessionEffects::bit(Pin::listen);
    } else if (!w.at_end()) {
      e.dropped.push_back({Pin::listen, ident(w.take())});
    }
  } else if (iequals(first, "PREPARE")) {
    if (!w.is("TRANSACTION") && !w.at_end()) e.created.push_back({Pin::prepare, ident(w.take())});
  } else if (iequals(first, "DEALLOCATE")) {
    w.skip("PREPARE");
    if (w.skip("ALL")) {
      e.cleared |= SessionEffects::bit(Pin::prepare);
    } else if (!w.at_end()) {
      e.dropped.push_back({Pin::prepare, ident(w.take())});
    }
  } else if (iequals(first, "DECLARE")) {
    std::string name = ident(w.take());
    for (; !w.at_end() && !w.is("FOR"); w.take()) {
      if (w.is("WITH") && w.is("HOLD", 1)) {
        e.created.push_back({Pin::cursor, std::move(name)});
        return;
      }
    }
  } else if (iequals(first, "CLOSE")) {
    if (w.skip("ALL")) {
      e.cleared |= SessionEffects::bit(Pin::cursor);
    } else if (!w.at_end()) {
      e.dropped.push_back({Pin::cursor, ident(w.take())});
    }
  }
}

// Function calls anywhere in a statement: advisory locks, set_config().
void on_calls(Words& w, SessionEffects& e) {
  const auto& t = w.tokens();
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i].type != Tok::word) continue;
    const auto f = t[i].text;
    if (iequals(f, "pg_advisory_lock") || iequals(f, "pg_advisory_lock_shared") ||
        iequals(f, "pg_try_advisory_lock") || iequals(f, "pg_try_advisory_lock_shared")) {
      ++e.locks;
      e.advisory = true;
    } else if (iequals(f, "pg_advisory_unlock") || iequals(f, "pg_advisory_unlock_shared")) {
      --e.locks;
      e.advisory = true;
    } else if (iequals(f, "pg_advisory_unlock_all")) {
      e.cleared |= SessionEffects::bit(Pin::advisory_lock);
      e.advisory = true;
    } else if (iequals(f, "set_config") && i + 2 < t.size() && t[i + 1].text == "(" &&
               t[i + 2].type == Tok::string) {
      add_setting(e, lower(string_literal(t[i + 2])), false, false);
    }
  }
}

void on_statement(Words& w, SessionEffects& e) {
  on_calls(w, e);
  const Token first = w.take();
  if (first.type != Tok::word) return;
  const auto f = first.text;
  if (iequals(f, "SET")) {
    on_set(w, e);
  } else if (iequals(f, "RESET")) {
    on_reset(w, e);
  } else if (iequals(f, "DISCARD")) {
    on_discard(w, e);
  } else if (iequals(f, "CREATE")) {
    on_create(w, e);
  } else if (iequals(f, "SELECT")) {
    on_select(w, e);
  } else if (iequals(f, "DROP")) {
    on_drop(w, e);
  } else if (iequals(f, "DO") || iequals(f, "CALL")) {
    e.opaque = true;
  } else {
    on_named(f, w, e);
  }
}

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }

// Every effect needs one of these somewhere in the text. Sorted: hints that begin with the same
// two letters are next to each other.
constexpr std::array<std::string_view, 10> kHints = {"advisory", "close", "deallocate", "declare",
                                                     "discard",  "drop",  "listen",     "prepare",
                                                     "set",      "temp"};
// The distinct first two letters of the hints.
constexpr std::array<std::string_view, 9> kPairs = {"ad", "cl", "de", "di", "dr",
                                                    "li", "pr", "se", "te"};
constexpr std::size_t kBlock = 16;
constexpr bool pairs_match_hints() {
  for (const auto hint : kHints) {
    bool found = false;
    for (const auto pair : kPairs)
      found = found || hint.starts_with(pair);
    if (!found) return false;
  }
  for (const auto pair : kPairs) {
    bool found = false;
    for (const auto hint : kHints)
      found = found || hint.starts_with(pair);
    if (!found) return false;
  }
  return true;
}
static_assert(pairs_match_hints(), "kPairs must be exactly the hints' first two letters");
// For each byte: 1 + its letter's index in the alphabet (either case), or 0.
constexpr auto kLetter = [] {
  std::array<std::uint8_t, 256> letter{};
  for (int c = 0; c < 26; ++c) {
    letter[static_cast<std::size_t>('a' + c)] = letter[static_cast<std::size_t>('A' + c)] =
        static_cast<std::uint8_t>(c + 1);
  }
  return letter;
}();
// For each pair of letters: 1 + the first hint that begins with them, or 0.
constexpr auto kLead = [] {
  std::array<std::uint8_t, 27 * 27> lead{};
  for (std::size_t k = kHints.size(); k-- > 0;) {
    const auto a = static_cast<std::size_t>(kHints[k][0] - 'a' + 1);
    const auto b = static_cast<std::size_t>(kHints[k][1] - 'a' + 1);
    lead[a * 27 + b] = static_cast<std::uint8_t>(k + 1);
  }
  return lead;
}();

// Which hint begins at `i` (which has a byte after it): 1 + its index in kHints, or 0.
std::size_t hint_at(std::string_view query, std::size_t i) {
  const std::size_t a = kLetter[static_cast<unsigned char>(query[i])];
  if (a == 0) return 0;
  const std::size_t b = kLetter[static_cast<unsigned char>(query[i + 1])];
  std::size_t k = kLead[a * 27 + b];
  if (k-- == 0) return 0;
  const char first = kHints[k][0];
  const char second = kHints[k][1];
  for (; k < kHints.size() && kHints[k][0] == first && kHints[k][1] == second; ++k) {
    const auto hint = kHints[k];
    if (query.size() - i < hint.size()) continue;
    std::size_t j = 2;
    while (j < hint.size() && ascii_lower(query[i + j]) == hint[j])
      ++j;
    if (j == hint.size()) return k + 1;
  }
  return 0;
}

constexpr Hints kSetHint = 1U << 8;
static_assert(kHints[8] == "set");
static_assert(kHints.size() <= 16, "a hint is a bit of Hints");

}  // namespace

// Runs on every simple query, so it looks further only where two letters begin a hint: sixteen
// positions at a time where SSE2 is there (every x86-64; the last bytes padded with zeros), one
// at a time otherwise. (A lookup per letter sent most letters of a plain SELECT into the
// comparisons, about 1,100 instructions for pgbench's query; a lookup per pair about 960; the
// blocks about 190.)
Hints hints_in(std::string_view query) {
  Hints found_hints = 0;
  const auto note = [&](std::size_t at) {
    if (const std::size_t k = hint_at(query, at)) found_hints |= static_cast<Hints>(1U << (k - 1));
  };
#if defined(__SSE2__)
  // Positions i .. i+15 where a pair of kPairs begins, as a bit mask; `at` has 17 bytes.
  const auto candidates = [](const char* at) {
    // ORing 0x20 turns 'A'-'Z' into 'a'-'z' and no other byte into a lower-case letter.
    const __m128i fold = _mm_set1_epi8(0x20);
    const __m128i one = _mm_or_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(at)), fold);
    const __m128i two =
        _mm_or_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(at + 1)), fold);
    __m128i found = _mm_setzero_si128();
    const auto pair = [&](char a, char b) {
      found = _mm_or_si128(found, _mm_and_si128(_mm_cmpeq_epi8(one, _mm_set1_epi8(a)),
                                                _mm_cmpeq_epi8(two, _mm_set1_epi8(b))));
    };
    static_assert(kPairs.size() == 9);
    pair(kPairs[0][0], kPairs[0][1]);
    pair(kPairs[1][0], kPairs[1][1]);
    pair(kPairs[2][0], kPairs[2][1]);
    pair(kPairs[3][0], kPairs[3][1]);
    pair(kPairs[4][0], kPairs[4][1]);
    pair(kPairs[5][0], kPairs[5][1]);
    pair(kPairs[6][0], kPairs[6][1]);
    pair(kPairs[7][0], kPairs[7][1]);
    pair(kPairs[8][0], kPairs[8][1]);
    return static_cast<unsigned>(_mm_movemask_epi8(found));
  };
  const auto block = [&](std::size_t i, unsigned mask) {
    for (; mask != 0; mask &= mask - 1) {
      const std::size_t at = i + static_cast<std::size_t>(__builtin_ctz(mask));
      if (at + 1 < query.size()) note(at);
    }
  };
  std::size_t i = 0;
  for (; i + kBlock + 1 <= query.size(); i += kBlock)
    block(i, candidates(query.data() + i));
  // The last bytes, padded with zeros (which begin no pair).
  if (i + 1 < query.size()) {
    std::array<char, 2 * kBlock> tail{};
    std::copy(query.begin() + static_cast<std::ptrdiff_t>(i), query.end(), tail.begin());
    block(i, candidates(tail.data()));
  }
#else
  for (std::size_t i = 0; i + 1 < query.size(); ++i)
    note(i);
#endif
  return found_hints;
}

namespace {

// A query whose only hint is "set" (an UPDATE's SET, OFFSET, a column named settings, ...):
// whether it is one statement that begins with no word an effect could begin with. The effects
// that need "set" are SET and RESET statements and set_config() calls, and DO and CALL are
// opaque whatever their hint; any other statement with only this hint has none, and lexing it
// whole would be for nothing (a third of the instructions of a pgbench TPC-B transaction went to
// lexing its three UPDATEs). Any ';' but those that end the text (a second statement, or one
// inside a string) or any set_config: no shortcut.
bool only_set_in_another_statement(std::string_view query) {
  const auto last = query.find_last_not_of("; \t\r\n\f\v");
  if (query.find(';') < last) return false;
  constexpr std::string_view set_config = "set_config";
  for (auto at = query.find('_'); at != std::string_view::npos; at = query.find('_', at + 1)) {
    if (at >= 3 && iequals(query.substr(at - 3, set_config.size()), set_config)) return false;
  }
  const Token first = Lexer(query).next();
  if (first.type != Tok::word) return true;  // only calls would count: none here
  for (const std::string_view word : {"SET", "RESET", "DO", "CALL"}) {
    if (iequals(first.text, word)) return false;
  }
  return true;
}

}  // namespace

bool may_have_effects(std::string_view query) {
  return hints_in(query) != 0;
}

std::uint8_t SessionEffects::pin_kinds() const {
  std::uint8_t kinds = cleared;
  if (opaque) kinds = static_cast<std::uint8_t>((1U << kPinKinds) - 1);
  for (const auto& o : created) kinds |= bit(o.kind);
  for (const auto& o : dropped) kinds |= bit(o.kind);
  if (advisory) kinds |= bit(Pin::advisory_lock);
  return kinds;
}

const char* to_string(Pin p) {
  switch (p) {
    case Pin::temp_table:
      return "temp_table";
    case Pin::advisory_lock:
      return "advisory_lock";
    case Pin::listen:
      return "listen";
    case Pin::prepare:
      return "prepare";
    case Pin::cursor:
      return "cursor";
    case Pin::authorization:
      return "authorization";
  }
  return "unknown";
}

SessionEffects session_effects(std::string_view query) {
  return session_effects(query, hints_in(query));
}

SessionEffects session_effects(std::string_view query, Hints hints) {
  if (hints == 0) return {};
  if (hints == kSetHint && only_set_in_another_statement(query)) return {};
  return session_effects_lexed(query);
}

SessionEffects session_effects_lexed(std::string_view query) {
  SessionEffects e;
  Lexer lx(query);
  Words words;
  for (Token t = lx.next();; t = lx.next()) {
    if (t.type == Tok::end || t.type == Tok::semicolon) {
      if (!words.tokens().empty()) on_statement(words, e);
      words = Words{};
      if (t.type == Tok::end) break;
      continue;
    }
    words.tokens().push_back(t);
  }
  return e;
}

}  // namespace pgdog::protocol::sql
