#include "backend/session_params.hpp"

namespace pgdog::backend {

Task<Result<void>> sync_parameters(ServerConnection& server, protocol::Params& desired) {
  std::string sql;
  std::vector<std::string> changed;
  for (const auto& [name, value] : desired.items()) {
    const std::string* current = server.params().get(name);
    if (current == nullptr || *current != value) {
      protocol::append_set(sql, name, value);
      changed.push_back(name);
    }
  }
  std::vector<std::string> reset;
  for (const auto& [name, value] : server.applied().items()) {
    if (desired.get(name) == nullptr) {
      protocol::append_reset(sql, name);
      reset.push_back(name);
    }
  }
  if (!sql.empty()) {
    auto r = co_await server.execute(sql);
    if (!r) co_return r.error();
    for (const auto& name : changed) {
      const std::string value = *desired.get(name);
      const std::string* reported = server.params().get(name);
      if (reported != nullptr && *reported != value) {
        desired.set(name, *reported);
      } else {
        server.params().set(name, value);
      }
      server.applied().set(name, *desired.get(name));
    }
    for (const auto& name : reset) {
      server.params().erase(name);
      server.applied().erase(name);
    }
  }
  server.synced_hash = desired.hash();
  co_return Result<void>{};
}

}  // namespace pgdog::backend
