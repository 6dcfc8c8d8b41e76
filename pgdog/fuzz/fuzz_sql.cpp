// The SQL lexer behind statement classification (mirror levels, transaction tracking),
// statement splitting, fingerprints (what logs and metrics may show of a query) and the
// session-effects scan.

#include <string>

#include "fuzz.hpp"
#include "protocol/session_sql.hpp"
#include "protocol/sql.hpp"

namespace {

using namespace pgdog;
using protocol::sql::Kind;

bool known(Kind k) {
  switch (k) {
    case Kind::empty:
    case Kind::ddl:
    case Kind::dml:
    case Kind::read:
    case Kind::transaction:
    case Kind::session:
    case Kind::other:
      return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks the fingerprint's length limit; the rest is the query.
  const std::size_t max_length = static_cast<std::uint8_t>(data[0]);
  const auto query = fuzz::as_view(data + 1, size - 1);

  const Kind whole = protocol::sql::classify(query);
  FUZZ_CHECK(known(whole));
  FUZZ_CHECK(protocol::sql::to_string(whole) != nullptr);

  const auto parts = protocol::sql::split(query);
  const char* previous_end = query.data();
  bool any[7] = {};
  for (std::string_view part : parts) {
    // Parts are pieces of the query, in order, without overlap, and never empty statements.
    FUZZ_CHECK(!part.empty());
    FUZZ_CHECK(fuzz::within(part, query));
    FUZZ_CHECK(part.data() >= previous_end);
    previous_end = part.data() + part.size();
    const Kind k = protocol::sql::classify(part);
    FUZZ_CHECK(known(k) && k != Kind::empty);
    any[static_cast<int>(k)] = true;
    // A statement on its own splits to itself.
    const auto again = protocol::sql::split(part);
    FUZZ_CHECK(again.size() == 1 && again[0] == part);
  }
  // The first statement decides the kind of the whole string.
  if (parts.empty()) {
    FUZZ_CHECK(whole == Kind::empty || whole == Kind::other);
  }
  // contains() splits again; one kind per input keeps the target fast.
  const int k = static_cast<int>(max_length % 7);
  FUZZ_CHECK(protocol::sql::contains(query, static_cast<Kind>(k)) == any[k]);

  const std::string full = protocol::sql::fingerprint(query, std::string::npos);
  const std::string limited = protocol::sql::fingerprint(query, max_length);
  FUZZ_CHECK(limited.size() <= max_length);
  FUZZ_CHECK(full.starts_with(limited));
  FUZZ_CHECK(limited.size() == std::min(full.size(), max_length));
  // Leading whitespace and comments are dropped.
  FUZZ_CHECK(full.empty() || full.front() != ' ');

  // The session-effects scan skips lexing only where lexing would find nothing.
  const auto effects = protocol::sql::session_effects(query);
  if (protocol::sql::may_have_effects(query)) {
    FUZZ_CHECK(effects == protocol::sql::session_effects_lexed(query));
  } else {
    FUZZ_CHECK(effects.empty());
  }
  // Handed the hints of a Query message's body (the text and its terminator), as the exchange
  // does: the same effects.
  const std::string body = std::string(query) + '\0';
  FUZZ_CHECK(protocol::sql::session_effects(query, protocol::sql::hints_in(body)) == effects);
  return 0;
}
