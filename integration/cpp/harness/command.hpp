#pragma once

#include <chrono>
#include <string>

namespace pgdog::it {

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal or at the timeout
  bool timed_out = false;
  std::string out;
  std::string err;

  // For assertion messages: the command's output, both streams.
  std::string describe() const;
};

// Runs `sh -c command` in its own process group; at the timeout the whole group is killed, so a
// stuck pgbench or psql cannot outlive the test.
CommandResult run_command(const std::string& command,
                          std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Single-quotes s for sh.
std::string shell_quote(const std::string& s);

}  // namespace pgdog::it
