#pragma once

// Waiting for a state instead of sleeping for one: a test polls what it waits for, with a
// deadline, so a loaded machine makes it slower, never vacuous.

#include <functional>
#include <string>

#include "harness/conn.hpp"

namespace pgdog::it {

// Calls `done` every `interval` until it returns true (then true) or `timeout` passed (false).
bool wait_until(const std::function<bool()>& done, Millis timeout, Millis interval = 20ms);

// How many backends of the primary run exactly `query` now (pg_stat_activity, state 'active'),
// asked over `monitor`, a direct connection to the primary; -1 when it cannot be asked.
int running_on_primary(Conn& monitor, const std::string& query);

// Waits until `count` backends of the primary run exactly `query`: the query has reached the
// server, so a cancel now has something to cancel.
bool wait_running_on_primary(const std::string& query, int count = 1, Millis timeout = 10s);

// How many rows of an admin console command (SHOW CLIENTS, ...) have `value` in `column`;
// -1 when the command fails or has no such column.
int admin_rows(Conn& admin, const std::string& command, const std::string& column,
               const std::string& value);

}  // namespace pgdog::it
