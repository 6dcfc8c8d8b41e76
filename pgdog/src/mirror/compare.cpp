#include "mirror/compare.hpp"

#include <unordered_map>

#include "protocol/messages.hpp"
#include "protocol/sql.hpp"

namespace pgdog::mirror {

std::vector<Divergent> compare(const StatementResults& primary, const StatementResults& mirror,
                               bool rows) {
  using stats::Divergence;
  std::vector<Divergent> out;
  const std::size_t n = std::max(primary.size(), mirror.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (i >= primary.size() || i >= mirror.size()) {
      // One side ran fewer statements than the other: it stopped on an error the other did
      // not have, or ran something else entirely.
      out.push_back(Divergent{i >= mirror.size() ? Divergence::error : Divergence::row_count, i});
      break;
    }
    const auto& p = primary[i];
    const auto& m = mirror[i];
    if (p.type == 'E' || m.type == 'E') {
      if (p.type == m.type && p.tag == m.tag) continue;  // the same error on both: expected
      out.push_back(Divergent{Divergence::error, i});
      break;
    }
    if (p.type != m.type || p.tag != m.tag) {
      out.push_back(Divergent{Divergence::row_count, i});
    } else if (rows && p.rows_hash != m.rows_hash) {
      out.push_back(Divergent{Divergence::result, i});
    }
  }
  return out;
}

std::vector<std::string> statement_texts(std::string_view frames,
                                         const backend::ClientStatements* statements) {
  std::vector<std::string> out;
  std::unordered_map<std::string, std::string> parsed;  // statement name -> SQL
  std::unordered_map<std::string, std::string> portals;  // portal -> statement name
  auto sql_of = [&](const std::string& name) -> std::string {
    if (auto it = parsed.find(name); it != parsed.end()) return it->second;
    if (statements != nullptr) {
      if (auto it = statements->find(name); it != statements->end()) return it->second->query;
    }
    return {};
  };
  while (!frames.empty()) {
    auto f = protocol::next_frame(frames, frames.size());
    if (!f) break;
    frames.remove_prefix(f->size());
    switch (f->type) {
      case protocol::fe::kQuery:
        if (auto sql = protocol::decode_query(f->body)) {
          auto parts = protocol::sql::split(*sql);
          if (parts.empty()) out.emplace_back();  // an empty query still answers once
          for (auto part : parts) out.emplace_back(part);
        }
        break;
      case protocol::fe::kParse:
        if (auto p = protocol::decode_parse(f->body)) parsed[std::string(p->name)] = p->query;
        break;
      case protocol::fe::kBind:
        if (auto b = protocol::decode_bind_names(f->body)) {
          portals[std::string(b->portal)] = std::string(b->statement);
        }
        break;
      case protocol::fe::kExecute:
        if (auto e = protocol::decode_execute(f->body)) {
          auto it = portals.find(std::string(e->portal));
          out.push_back(it == portals.end() ? std::string() : sql_of(it->second));
        }
        break;
      default:
        break;
    }
  }
  return out;
}

}  // namespace pgdog::mirror
