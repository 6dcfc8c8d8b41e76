#pragma once

// CUTOVER <database> [TO <mirror>] [FORCE] on the admin console: the database's mirror becomes
// its primary and the old primary its mirror, with clients held (never failed) meanwhile. The
// steps, each bounded by cutover_timeout:
//
//   readiness     the mirror's readiness verdict says ready (FORCE skips this step only)
//   transactions  new transactions of the database are held; the running ones finish
//   mirror queue  everything handed to the mirror has replayed
//   record        pgdog-cutover.toml is written, then the cutover is recorded on both
//                 clusters (ALTER DATABASE ... SET pgdog.cutover), and every other session of
//                 pgdog's users on the old primary is ended, so that another pgdog instance
//                 cannot go on writing there: its next connection reads the record and follows
//   swap          the two [[databases]] entries exchange their servers; held clients go on
//
// Past cutover_timeout or on any failure nothing is swapped (what was written is put back), the
// held clients go on with the primary they had, and the error names the step.
//
// The record on each cluster is "<generation> <serving|retired> <database> <peer>". A pool of a
// database that has mirrors reads it on each new server connection; a retired record with a
// generation above this instance's makes it follow: the same steps from "transactions" on,
// without writing anything on the clusters.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "backend/server_connection.hpp"
#include "stats/cutover_log.hpp"

namespace pgdog::frontend {

class App;

struct CutoverCommand {
  std::string database;
  std::optional<std::string> to;
  bool force = false;
};

// "CUTOVER db", "CUTOVER db TO mirror", either followed by FORCE; names as written (double
// quotes allowed). nullopt and `error` set when it does not parse.
std::optional<CutoverCommand> parse_cutover(std::string_view sql, std::string& error);

struct CutoverRecord {
  std::uint64_t generation = 0;
  bool retired = false;  // this cluster no longer serves `database`
  std::string database;
  std::string peer;  // the [[databases]] entry serving it now (retired), or its mirror
};
std::string to_string(const CutoverRecord& r);
std::optional<CutoverRecord> parse_record(std::string_view text);

// Reads the record on a connection that has just logged in (the value is read at login).
inline constexpr std::string_view kReadRecordSql =
    "SELECT current_setting('pgdog.cutover', true)";

// Runs the command; the event says what happened (also added to app.cutovers()).
Task<stats::CutoverEvent> run_cutover(App& app, CutoverCommand command);

// For the pools of databases that have mirrors: false when `server`'s cluster was retired by a
// cutover this instance has not made or followed yet (the follow is then started).
Task<bool> vet_server(App& app, std::string database, backend::ServerConnection& server);

}  // namespace pgdog::frontend
