#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "mirror/mirror.hpp"

namespace pgdog::mirror {

// The mirrors in force, under a version that moves on at every publish (startup and each
// reload). Every client session's tap compares its version with this one at its next
// transaction boundary and takes the current mirrors then, so a mirror added at runtime reaches
// sessions that were already connected, from their next transaction on, and a removed one stops
// being fed. Reading the version is one atomic load; the snapshot is taken only when it moved.
class MirrorSet {
 public:
  struct Entry {
    std::shared_ptr<Mirror> mirror;
    std::uint64_t since = 0;  // the version that added it: transactions begun before miss it
  };
  struct Snapshot {
    std::uint64_t version = 0;
    std::vector<Entry> entries;
    // The mirrors whose source_db is `source`.
    std::vector<std::shared_ptr<Mirror>> fed_by(std::string_view source) const;
  };

  // 0 before the first publish.
  std::uint64_t version() const { return version_.load(std::memory_order_acquire); }
  std::shared_ptr<const Snapshot> snapshot() const;
  // The mirrors in force from now on. One already in the last snapshot (the same object) keeps
  // its `since`; a new one gets the new version.
  void publish(const std::vector<std::shared_ptr<Mirror>>& mirrors);

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const Snapshot> current_ = std::make_shared<const Snapshot>();
  std::atomic<std::uint64_t> version_{0};
};

// Where a session's tap finds its mirrors, and where it tells which version of them its open
// transaction began under, so that the transactions a runtime change cannot reach are counted.
struct TapRoute {
  std::shared_ptr<const MirrorSet> mirrors;
  // Written by the tap only: the version its open transaction began under, 0 between
  // transactions. Null when nobody reads it.
  std::atomic<std::uint64_t>* open_version = nullptr;
};

// Whether a transaction begun under `open_version` (0: none open) misses a mirror added at
// version `since`: it is open across the change, and will end without reaching that mirror.
constexpr bool spans_change(std::uint64_t open_version, std::uint64_t since) {
  return open_version != 0 && open_version < since;
}

}  // namespace pgdog::mirror
