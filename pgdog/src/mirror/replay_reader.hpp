#pragma once

// Reads a mirror server's answers to one replayed request. Sans-io: the server's bytes in; when
// the request is finished, its outcome, the results to compare with the primary's, and the
// server connection's state kept in step, out. No Asio, no clock.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backend/prepared.hpp"
#include "mirror/request.hpp"
#include "protocol/frame.hpp"
#include "protocol/params.hpp"
#include "protocol/scanner.hpp"
#include "stats/mirror_stats.hpp"

namespace pgdog::mirror {

class ReplayReader {
 public:
  struct Settings {
    std::size_t ready = 0;             // ReadyForQuery messages that end the request
    std::uint32_t primary_errors = 0;  // errors the primary had too (recovered savepoints)
    bool tags = false;                 // collect each statement's result (compare = tags)
    bool rows = false;                 // ... with a hash of its rows (compare = results)
    std::size_t max_message_size = std::size_t{64} * 1024 * 1024;
  };

  // `prepared`, `params` and `status` are the server connection's: the answers change them.
  // `tracker`, when the request was rewritten for this server, follows the answers to the
  // messages the rewriter added; it is null for a request replayed verbatim.
  ReplayReader(const Settings& settings, backend::PreparedCache& prepared, protocol::Params& params,
               char status, backend::ResponseTracker* tracker = nullptr);

  // Scans `unread`, the server's bytes not read yet, from their start. Returns how many of them
  // are used up (the caller drops them); the request's last ReadyForQuery or a failure ends the
  // scan, and the bytes after it are left unread.
  std::size_t feed(std::string_view unread);

  // Set once the request is finished: success, query (more errors than the primary had) or
  // connection (a FATAL error, an invalid message).
  const std::optional<stats::MirrorOutcome>& outcome() const { return outcome_; }
  // Why it failed; the SQLSTATE only, never the message (PostgreSQL builds messages from data).
  const std::string& reason() const { return reason_; }
  // The first error's SQLSTATE and message, for debug logs; empty when there was none.
  const std::string& first_error() const { return first_error_; }
  const std::string& first_error_message() const { return first_error_message_; }
  // Each statement's result, in order (empty unless Settings::tags).
  StatementResults& results() { return results_; }
  // The server's transaction status after the last ReadyForQuery read.
  char status() const { return status_; }

  // Bytes to have room for before the next read, to complete the message at the front of
  // `unread` (0 when unknown).
  std::size_t wanted(std::string_view unread) const { return scanner_.wanted(unread); }

  // Whether the server may serve another request: it sent nothing after the last answer
  // (`nothing_unread`), it is idle, and its statement cache is exact.
  bool reusable(bool nothing_unread);

 private:
  bool on_frame(const protocol::Frame& f);
  bool client_answer(const protocol::Frame& f);
  bool on_ready(const protocol::Frame& f);
  bool on_error(const protocol::Frame& f);
  void on_command_complete(const protocol::Frame& f);
  void add_result(char type, std::string tag);
  void fail(std::string reason);

  Settings settings_;
  backend::PreparedCache& prepared_;
  protocol::Params& params_;
  backend::ResponseTracker* tracker_;
  char status_;
  protocol::StreamScanner scanner_;
  std::size_t ready_ = 0;
  std::uint32_t errors_ = 0;
  std::string first_error_;
  std::string first_error_message_;
  StatementResults results_;
  RowHash hash_;
  std::string synthetic_;  // the tracker's answers for the client, which a replay has none of
  std::optional<stats::MirrorOutcome> outcome_;
  std::string reason_;
};

}  // namespace pgdog::mirror
