#pragma once

// Which databases a CUTOVER left served by another cluster than pgdog.toml gives them, kept in
// a small state file next to the configuration (general.cutover_state) so that the swap
// survives RELOAD, SIGHUP and a restart. pgdog.toml itself is never rewritten: load() applies
// the state on top of it, and refuses (naming the state file) when pgdog.toml no longer has
// what the cutover was made from.
//
// A cutover swaps the server side of two [[databases]] entries, the database clients use and its
// mirror: host, port, database_name, user and password. Clients keep asking for the same name;
// the mirroring entry stays as written, so what was the primary becomes the mirror.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace pgdog::config {

struct CutoverEntry {
  std::string database;  // what clients ask for
  std::string peer;      // the [[databases]] entry it was swapped with (its mirror)
  bool swapped = false;  // false after a cutover back: pgdog.toml is in force as written
  // Counts every cutover of `database`, by any pgdog instance (see the cluster record in
  // docs/cutover.md): an instance that sees a higher one follows it.
  std::uint64_t generation = 0;
  // "host:port/database" of `database` in pgdog.toml, and of the cluster serving it now.
  std::string configured;
  std::string serving;
  std::string at;  // when, ISO 8601 UTC
};

struct CutoverState {
  std::vector<CutoverEntry> entries;

  const CutoverEntry* find(std::string_view database) const;
  // Adds or replaces the entry of entry.database.
  void put(CutoverEntry entry);
};

// "host:port/database" of an entry's server side.
std::string endpoint(const Database& db);

// general.cutover_state, or pgdog-cutover.toml in the directory of pgdog.toml.
std::string cutover_state_path(const Config& config);

// A missing file is an empty state; anything else wrong names the file, the line and the key.
Result<CutoverState> read_cutover_state(const std::string& path);
// Written to a temporary file, flushed and renamed over `path`; the file it replaces is kept
// as `path`.prev. Nothing is changed on failure.
Result<void> write_cutover_state(const std::string& path, const CutoverState& state);
std::string to_toml(const CutoverState& state);
Result<CutoverState> parse_cutover_state(std::string_view text, const std::string& name);

// Swaps the server side (host, port, database_name, user, password) of two entries.
void swap_servers(Config& config, std::string_view a, std::string_view b);

// Applies every swapped entry to `config` (as pgdog.toml gives it). An entry whose database or
// peer is missing, or whose database pgdog.toml now points at neither the cluster it was cut
// over from nor the one it was cut over to, is an error naming `path`: pgdog will not guess
// which cluster is the primary. An entry pgdog.toml already agrees with (edited by hand after
// the cutover) is left as it is.
Result<void> apply_cutover_state(Config& config, const CutoverState& state,
                                 const std::string& path);

}  // namespace pgdog::config
