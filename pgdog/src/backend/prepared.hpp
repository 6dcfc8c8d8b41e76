#pragma once

#include <cstddef>
#include <string>
#include <unordered_set>

namespace pgdog::backend {

// The names of the statements the proxy prepared on one server connection.
class PreparedCache {
 public:
  bool contains(const std::string& name) const { return names_.contains(name); }
  void insert(const std::string& name) { names_.insert(name); }
  void erase(const std::string& name) { names_.erase(name); }
  void clear() { names_.clear(); }
  std::size_t size() const { return names_.size(); }

 private:
  std::unordered_set<std::string> names_;
};

}  // namespace pgdog::backend
