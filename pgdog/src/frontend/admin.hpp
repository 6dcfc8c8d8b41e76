#pragma once

#include <optional>
#include <string>
#include <vector>

#include "frontend/app.hpp"
#include "frontend/clients.hpp"
#include "net/stream.hpp"
#include "protocol/buffer.hpp"

namespace pgdog::frontend {

// A result the admin console sends back: columns and text rows, like any query result.
struct AdminResult {
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::string tag;  // CommandComplete, e.g. "SHOW" or "RELOAD"
};

// The virtual "admin" database: simple-protocol commands answered with ordinary rows, in the
// manner of PgBouncer's console.
class AdminSession {
 public:
  AdminSession(App& app, net::Stream& client, protocol::Buffer& in, ClientInfo& info);
  Task<void> run();

 private:
  // ParameterStatus, BackendKeyData and ReadyForQuery; false when the client is gone.
  Task<bool> greet();
  // The answer to one Query message, ReadyForQuery included, appended to `out`.
  Task<void> answer_query(std::string_view body, std::string& out);
  Task<std::optional<AdminResult>> execute(std::string_view sql, std::string& error_code,
                                           std::string& error_message);

  App& app_;
  net::Stream& client_;
  protocol::Buffer& in_;
  ClientInfo& info_;
};

}  // namespace pgdog::frontend
