#include "backend/session_params.hpp"

namespace pgdog::backend {

Task<Result<void>> sync_parameters(ServerConnection& server, protocol::Params& desired) {
  std::string sql;
  std::vector<std::string> changed;
  for (const auto& [name, value] : desired.items()) {
    const auto current = server.params().get(name);
    if (!current || *current != value) {
      protocol::append_set(sql, name, value);
      changed.emplace_back(name);
    }
  }
  std::vector<std::string> reset;
  for (const auto& [name, value] : server.applied().items()) {
    if (!desired.get(name)) {
      protocol::append_reset(sql, name);
      reset.emplace_back(name);
    }
  }
  if (!sql.empty()) {
    // What the server says of a parameter now comes only from a ParameterStatus answering
    // these SETs; most parameters are never reported, and an older value is another client's.
    for (const auto& name : changed) server.params().erase(name);
    auto r = co_await server.execute(sql);
    if (!r) co_return r.error();
    for (const auto& name : changed) {
      const std::string value(*desired.get(name));
      const auto reported = server.params().get(name);
      if (reported && *reported != value) {
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
  server.state().synced_hash = desired.hash();
  co_return Result<void>{};
}

}  // namespace pgdog::backend
