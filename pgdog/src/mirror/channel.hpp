#pragma once

#include <atomic>
#include <deque>
#include <functional>

#include "backend/pool.hpp"
#include "mirror/request.hpp"

namespace pgdog::mirror {

// One client's requests to one mirror. The queue runs at most one of them at a time, which is
// what keeps each client's order on the mirror.
//
// A session-mode client's channel is pinned: its requests replay on one mirror server
// connection, kept between them, so session state (SET, PREPARE, temporary tables) carries
// over as it does on the primary. Only the worker running the channel's request touches the
// lease; when the client has left and its last request is done, the connection is reset with
// DISCARD ALL and goes back to the pool.
struct Channel {
  explicit Channel(bool pin = false) : pinned(pin) {}
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  ~Channel();

  std::deque<RequestPtr> pending;
  bool in_flight = false;
  bool listed = false;  // in the queue's ready list
  // The queue's, under its lock: where the channel is in its list of channels with requests
  // queued or in flight, and when the request in flight was handed over (for the lag).
  std::size_t live_slot = kNotLive;
  Clock::time_point in_flight_created{};
  static constexpr std::size_t kNotLive = static_cast<std::size_t>(-1);
  const bool pinned;
  std::string cluster;  // for the log
  backend::Lease lease;
  // Transaction mode: the channel keeps `lease` for a pinned client, and a worker with it.
  std::atomic<bool> keeps_worker{false};
  std::function<void()> on_close;  // run by the destructor
  // Set by a worker whose checkout failed while the mirror pool backs off (steady clock ticks):
  // until then the session's transactions fail as `connection` at submit, without being queued
  // and replayed only to fail the same way.
  std::atomic<Clock::rep> down_until{0};
};

// Resets a mirror connection that held a session's state (DISCARD ALL) and gives it back to its
// pool, in the background; a connection that cannot be reset is closed.
void reset_and_release(backend::Lease lease, std::string_view cluster);

}  // namespace pgdog::mirror
