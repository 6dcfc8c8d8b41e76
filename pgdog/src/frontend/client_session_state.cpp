// What a client leaves on its server beyond a transaction: settings read back after a
// transaction changed them, the server-only state that pins the client, and the reset before
// the server serves anyone else (the decisions are backend::Exchange's; this runs them).
#include <spdlog/spdlog.h>

#include "backend/session_params.hpp"
#include "frontend/client_session.hpp"

namespace pgdog::frontend {

using stats::PoolCounters;

Task<bool> ClientSession::settle() {
  auto& server = *server_;
  const std::string sql = exchange_.settle_query(server.state());
  backend::ServerConnection::Row row;
  if (!sql.empty()) {
    auto read = co_await server.execute(sql, &row);
    if (!read) {
      if (server.broken()) {
        co_await report_lost("server connection lost: " + read.error().to_string());
        co_return false;
      }
      spdlog::warn("client {}: could not read back its settings: {}", info_->address,
                   read.error().to_string());
      exchange_.settle_failed();
      note_pins();
      co_return true;
    }
  }
  const bool sync = exchange_.settled(row, server.state());
  note_pins();
  if (!sync) co_return true;
  // A RESET returned a parameter to the server's default: the client's own comes back, and the
  // client hears of it as it would from PostgreSQL.
  const protocol::Params before = server.params();
  co_await sync_parameters();
  std::string out;
  for (const auto& [name, value] : server.params().items()) {
    if (protocol::is_reported_parameter(name) && before.get(name) != value) {
      protocol::write_parameter_status(out, name, value);
    }
  }
  co_return co_await deliver(out);
}

Task<void> ClientSession::reset_server() {
  const bool reset = co_await server_->reset_session();
  if (!reset) server_->mark_broken();
  exchange_.cleaned();
}

void ClientSession::note_pins() {
  auto& c = counters();
  if (const auto bits = exchange_.take_pins(); bits != 0) {
    for (std::size_t k = 0; k < c.pins.size(); ++k) {
      if ((bits & (1U << k)) != 0) PoolCounters::add(c.pins[k]);
    }
  }
  const bool pinned = exchange_.pinned();
  if (pinned != counted_pinned_) {
    c.pinned.fetch_add(pinned ? 1 : -1, std::memory_order_relaxed);
    counted_pinned_ = pinned;
  }
}

Task<void> ClientSession::sync_parameters() {
  auto r = co_await backend::sync_parameters(*server_, exchange_.params());
  if (!r) {
    spdlog::warn("client {}: could not apply session parameters on server: {}", info_->address,
                 r.error().to_string());
    // Do not retry the same failing SET on every transaction.
    server_->state().synced_hash = exchange_.params().hash();
  }
}

}  // namespace pgdog::frontend
