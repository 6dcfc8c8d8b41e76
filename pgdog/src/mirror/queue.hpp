#pragma once

#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "mirror/channel.hpp"
#include "mirror/request.hpp"
#include "net/asio.hpp"

namespace pgdog::mirror {

// The bounded queue of one mirror cluster, shared by every client session that mirrors to it
// and drained by its workers. try_push never waits: a full queue is a drop.
class Queue {
 public:
  explicit Queue(std::size_t capacity,
                 std::size_t byte_capacity = std::numeric_limits<std::size_t>::max())
      : capacity_(capacity), byte_capacity_(byte_capacity) {}

  // False when the queue already holds `capacity` requests (queued or in flight), or the
  // request's frames would take it past `byte_capacity` bytes, or it is closed.
  bool try_push(const std::shared_ptr<Channel>& channel, RequestPtr request);

  struct Item {
    std::shared_ptr<Channel> channel;
    RequestPtr request;
  };
  // A worker's place among the idle ones, made once and used by each of its pop()s.
  struct Waiter;
  static std::shared_ptr<Waiter> make_waiter(Executor executor);
  // The next request whose channel has nothing in flight; empty when the queue is closed.
  Task<std::optional<Item>> pop(std::shared_ptr<Waiter> waiter);
  Task<std::optional<Item>> pop();
  // More queued requests for a worker that holds one already, to replay after it on the same
  // connection: in queue order, each from a channel with nothing in flight (so never two of
  // one channel), those `fits` accepts, at most `max`. Never waits; each taken one is done()
  // like a popped one. A worker calls it after every pop(), with `max` 0 if it takes nothing
  // more: while one worker is woken and has not run yet, requests pushed meanwhile wait for it
  // (so that it takes them together), and it hands what it leaves to the next.
  // Appended to `taken`.
  using Fits = std::function<bool(const Channel&, const Request&)>;
  void take_more(const Fits& fits, std::size_t max, std::vector<Item>& taken);
  // The worker finished `items`: their channels may run their next requests. After close(),
  // the channels' remaining requests are abandoned instead; returns how many.
  std::size_t done(std::span<const Item> items);
  std::size_t done(const Item& item) { return done(std::span<const Item>(&item, 1)); }

  void set_capacity(std::size_t capacity,
                    std::size_t byte_capacity = std::numeric_limits<std::size_t>::max());
  // Wakes idle workers with nothing; returns the requests still queued (not in flight), which
  // the caller accounts for.
  std::size_t close();
  // Closes once every request queued or in flight now is done: workers keep taking them, then
  // get nothing. Pushes are still taken until then.
  void close_when_empty();
  bool closed() const;

  std::size_t size() const;
  std::size_t bytes() const;  // the frames of the requests queued or in flight
  // Seconds the oldest queued or in-flight request has waited since it was handed over.
  double oldest_age() const;

 private:
  std::optional<Item> take_locked();
  // The next request, to the first idle worker; null when there is no request or no worker.
  std::shared_ptr<Waiter> hand_over_locked();
  static void resume(const std::shared_ptr<Waiter>& waiter);
  // Closed: the waiters, to be woken with nothing.
  std::vector<std::shared_ptr<Waiter>> close_locked();

  mutable std::mutex mutex_;
  void forget_locked(const RequestPtr& r);
  // The channel was idle and is handed a request / has nothing queued or in flight any more.
  void track_locked(Channel& channel);
  void untrack_locked(Channel& channel);
  static Item start_locked(std::shared_ptr<Channel> channel);

  std::size_t capacity_;
  std::size_t byte_capacity_;
  std::size_t size_ = 0;
  std::size_t bytes_ = 0;
  bool closed_ = false;
  bool close_when_empty_ = false;
  std::size_t waking_ = 0;  // workers handed a request that have not resumed yet
  std::deque<std::shared_ptr<Channel>> ready_;
  std::deque<std::shared_ptr<Waiter>> waiters_;
  // The channels with requests queued or in flight, for oldest_age(): a scrape looks at each
  // one's oldest, so that the per-transaction path keeps no ordered structure (and allocates
  // nothing) for it.
  std::vector<Channel*> live_;
};

struct Queue::Waiter {
  explicit Waiter(Executor ex) : timer(std::move(ex), Clock::time_point::max()) {}
  asio::steady_timer timer;
  std::optional<Item> item;  // what it was handed; empty when woken for nothing
};

}  // namespace pgdog::mirror
