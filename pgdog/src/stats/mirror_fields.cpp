#include "stats/mirror_fields.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace pgdog::stats {

namespace {

// SHOW MIRRORS' figure columns have the places 0..n-1, each once.
constexpr bool places_are_a_sequence() {
  std::size_t columns = 0;
  for (const auto& f : kMirrorFields)
    columns += f.cell != MirrorCell::none ? 1 : 0;
  for (std::size_t place = 0; place < columns; ++place) {
    std::size_t at_place = 0;
    for (const auto& f : kMirrorFields)
      at_place += f.cell != MirrorCell::none && f.place == place ? 1 : 0;
    if (at_place != 1) return false;
  }
  return true;
}
static_assert(places_are_a_sequence());

std::vector<const MirrorField*> columns_in_order() {
  std::vector<const MirrorField*> out;
  for (const auto& f : kMirrorFields) {
    if (f.cell != MirrorCell::none) out.push_back(&f);
  }
  std::sort(out.begin(), out.end(),
            [](const auto* a, const auto* b) { return a->place < b->place; });
  return out;
}

std::optional<std::string> cell(MirrorCell kind, double value) {
  switch (kind) {
    case MirrorCell::count:
      // Counts are integers well below 2^53: exact through the double.
      return std::to_string(static_cast<std::uint64_t>(value));
    case MirrorCell::seconds:
      return three_decimals(value);
    case MirrorCell::ratio:
      if (std::isnan(value)) return std::nullopt;
      return three_decimals(value);
    case MirrorCell::time:
      return iso_time_or_null(value);
    case MirrorCell::none:
      break;
  }
  return std::nullopt;
}

}  // namespace

std::vector<std::string> mirror_columns() {
  std::vector<std::string> out;
  for (const auto* f : columns_in_order())
    out.emplace_back(f->name);
  return out;
}

void append_mirror_cells(const MirrorStats::Snapshot& snapshot, Cells& row) {
  for (const auto* f : columns_in_order())
    row.push_back(cell(f->cell, f->value(snapshot)));
}

}  // namespace pgdog::stats
