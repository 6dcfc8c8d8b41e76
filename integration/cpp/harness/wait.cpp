#include "harness/wait.hpp"

#include <algorithm>
#include <thread>

namespace pgdog::it {

bool wait_until(const std::function<bool()>& done, Millis timeout, Millis interval) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
  return true;
}

int running_on_primary(Conn& monitor, const std::string& query) {
  auto r = monitor.exec_params(
      "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = $1", {query}, 5s);
  if (!r.ok() || r.rows.empty()) return -1;
  return std::stoi(r.at(0));
}

bool wait_running_on_primary(const std::string& query, int count, Millis timeout) {
  auto monitor = connect_primary();
  if (!monitor.ok()) return false;
  return wait_until([&] { return running_on_primary(monitor, query) == count; }, timeout);
}

int admin_rows(Conn& admin, const std::string& command, const std::string& column,
               const std::string& value) {
  auto r = admin.exec(command, 5s);
  if (!r.ok()) return -1;
  const auto it = std::find(r.columns.begin(), r.columns.end(), column);
  if (it == r.columns.end()) return -1;
  const auto c = static_cast<std::size_t>(it - r.columns.begin());
  int n = 0;
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    if (r.at(i, c) == value) ++n;
  }
  return n;
}

}  // namespace pgdog::it
