#pragma once

// A small SQL lexer: enough to split a query string into statements, find each statement's
// kind, and replace literals with placeholders. It understands comments (-- and nested /* */),
// quoted identifiers, standard and escape strings, and dollar quoting, so that a ';' or a
// keyword inside any of them is never mistaken for structure.

#include <string>
#include <string_view>
#include <vector>

namespace pgdog::protocol::sql {

enum class Kind {
  empty,        // only whitespace and comments
  ddl,          // CREATE, ALTER, DROP, TRUNCATE, COMMENT, GRANT, REVOKE, ...
  dml,          // INSERT, UPDATE, DELETE, MERGE, COPY ... FROM, SELECT ... INTO, WITH ... <dml>
  read,         // SELECT, VALUES, TABLE, SHOW, EXPLAIN (without ANALYZE of a DML), COPY ... TO
  transaction,  // BEGIN, START, COMMIT, END, ROLLBACK, SAVEPOINT, RELEASE, PREPARE TRANSACTION
  session,      // SET, RESET, DISCARD, LISTEN, NOTIFY, UNLISTEN, PREPARE, EXECUTE, DEALLOCATE, ...
  other,        // anything else (CALL, DO, VACUUM, ANALYZE, LOCK, ...)
};

const char* to_string(Kind k);

// The kind of one statement (the text up to, not including, its terminating ';').
Kind classify(std::string_view statement);

// Splits a simple-protocol query string into its statements (without the ';'), skipping empty
// ones.
std::vector<std::string_view> split(std::string_view query);

// Whether any statement of `query` has kind `k`.
bool contains(std::string_view query, Kind k);

// A normalized fingerprint: literals (strings, numbers, dollar-quoted bodies) replaced by '?',
// whitespace and comments collapsed to one space, keywords lower-cased, identifiers kept.
// Says what ran without what it ran on: no data, no secrets.
std::string fingerprint(std::string_view statement, std::size_t max_length = 256);

}  // namespace pgdog::protocol::sql
