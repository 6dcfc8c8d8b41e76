#pragma once

// What SQL does to a session beyond its transaction, as far as a transaction pooler must know:
// settings it changes (SET, RESET, set_config()), and state that lives only on the server it
// ran on (temporary tables, session advisory locks, LISTEN, SQL PREPARE, WITH HOLD cursors)
// and the statements that end that state. Sans-io: text in, effects out.
//
// It reads statements, not minds: state created inside a function body is not seen. Every
// guess errs towards more: a statement that may take a lock counts as taking one.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgdog::protocol::sql {

// Session state that cannot be replayed on another server: a client that has some keeps its
// server ("pinned") until it is gone.
// `authorization`: SET SESSION AUTHORIZATION, which another server could only replay as a
// superuser.
enum class Pin : std::uint8_t { temp_table, advisory_lock, listen, prepare, cursor, authorization };
constexpr std::size_t kPinKinds = 6;
const char* to_string(Pin p);

struct SessionEffects {
  struct Setting {
    std::string name;    // lower case (quoted names as written)
    bool reset = false;  // RESET name, SET name TO DEFAULT: back to the session's default
    bool local = false;  // SET LOCAL: gone when the transaction ends
    bool operator==(const Setting&) const = default;
  };
  struct Object {
    Pin kind;
    std::string name;  // lower case unless quoted; without a pg_temp. qualifier
    bool operator==(const Object&) const = default;
  };
  std::vector<Setting> settings;
  bool reset_all = false;       // RESET ALL, DISCARD ALL
  std::vector<Object> created;  // CREATE TEMP TABLE t, LISTEN c, PREPARE p, DECLARE c ... WITH HOLD
  std::vector<Object> dropped;  // DROP TABLE t, UNLISTEN c, DEALLOCATE p, CLOSE c
  int locks = 0;                // session advisory locks taken (+) and released (-)
  bool advisory = false;        // a session advisory lock function is called (even if net 0)
  std::uint8_t cleared = 0;     // a bit per Pin: all of that kind gone (DISCARD ALL, UNLISTEN *, ...)
  // A DO block or CALL whose text mentions session state: what it does runs inside a function
  // body the words do not show, so the server is asked what it holds (every setting the
  // session changed, every kind of pinned state).
  bool opaque = false;

  bool operator==(const SessionEffects&) const = default;
  bool empty() const {
    return settings.empty() && !reset_all && created.empty() && dropped.empty() && !advisory &&
           cleared == 0 && !opaque;
  }
  // A bit per Pin: the kinds of server-only state these statements may create or end.
  std::uint8_t pin_kinds() const;
  static constexpr std::uint8_t bit(Pin p) {
    return static_cast<std::uint8_t>(1U << static_cast<unsigned>(p));
  }
};

// The words every session effect needs (SET, TEMP, DROP, LISTEN, DEALLOCATE, ...) that occur
// anywhere in a text, in any case: a bit each, 0 for none.
using Hints = std::uint16_t;
Hints hints_in(std::string_view query);

// The effects of a query string (every statement in it). Text that cannot have any (no hint
// anywhere in it, or one statement whose only hint is an UPDATE's SET) is not lexed: the common
// query costs a scan. A caller that has scanned it already hands on what it found (the hints of
// a text that holds the query, such as a Query message's body, do as well: more hints only ever
// mean lexing).
SessionEffects session_effects(std::string_view query);
SessionEffects session_effects(std::string_view query, Hints hints);
// The same without looking for hints first: every query lexed (a DO or CALL is then opaque even
// when its text mentions no session state). The tests hold session_effects() to it.
SessionEffects session_effects_lexed(std::string_view query);

// Whether `query` has any hint (session_effects() lexes only the queries that do).
bool may_have_effects(std::string_view query);

}  // namespace pgdog::protocol::sql
