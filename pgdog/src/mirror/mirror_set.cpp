#include "mirror/mirror_set.hpp"

namespace pgdog::mirror {

std::vector<std::shared_ptr<Mirror>> MirrorSet::Snapshot::fed_by(std::string_view source) const {
  std::vector<std::shared_ptr<Mirror>> out;
  for (const auto& e : entries) {
    if (e.mirror->settings().source == source) out.push_back(e.mirror);
  }
  return out;
}

std::shared_ptr<const MirrorSet::Snapshot> MirrorSet::snapshot() const {
  std::lock_guard g(mutex_);
  return current_;
}

void MirrorSet::publish(const std::vector<std::shared_ptr<Mirror>>& mirrors) {
  std::lock_guard g(mutex_);
  auto next = std::make_shared<Snapshot>();
  next->version = current_->version + 1;
  for (const auto& m : mirrors) {
    std::uint64_t since = next->version;
    for (const auto& e : current_->entries) {
      if (e.mirror == m) since = e.since;
    }
    next->entries.push_back(Entry{m, since});
  }
  current_ = std::move(next);
  // After the snapshot: a tap that sees the new version finds the new mirrors.
  version_.store(current_->version, std::memory_order_release);
}

}  // namespace pgdog::mirror
