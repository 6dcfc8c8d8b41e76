#include "mirror/queue.hpp"

namespace pgdog::mirror {

bool Queue::try_push(const std::shared_ptr<Channel>& channel, RequestPtr request) {
  std::shared_ptr<Waiter> wake;
  {
    std::lock_guard g(mutex_);
    if (closed_ || size_ >= capacity_ ||
        request->frames.size() > byte_capacity_ - std::min(bytes_, byte_capacity_)) {
      return false;
    }
    ++size_;
    bytes_ += request->frames.size();
    if (!channel->in_flight && channel->pending.empty()) track_locked(*channel);
    channel->pending.push_back(std::move(request));
    if (!channel->in_flight && !channel->listed) {
      channel->listed = true;
      ready_.push_back(channel);
    }
    // A worker handed a request and not running yet takes this one with it (take_more).
    if (waking_ == 0) wake = hand_over_locked();
  }
  if (wake) resume(wake);
  return true;
}

std::shared_ptr<Queue::Waiter> Queue::hand_over_locked() {
  if (waiters_.empty()) return nullptr;
  auto item = take_locked();
  if (!item) return nullptr;
  auto waiter = std::move(waiters_.front());
  waiters_.pop_front();
  waiter->item = std::move(item);
  ++waking_;
  return waiter;
}

void Queue::resume(const std::shared_ptr<Waiter>& waiter) {
  // The waiter's timer belongs to its worker's executor: cancel it there.
  asio::post(waiter->timer.get_executor(), [waiter] { waiter->timer.cancel(); });
}

std::optional<Queue::Item> Queue::take_locked() {
  while (!ready_.empty()) {
    auto channel = std::move(ready_.front());
    ready_.pop_front();
    channel->listed = false;
    if (channel->in_flight || channel->pending.empty()) continue;
    return start_locked(std::move(channel));
  }
  return std::nullopt;
}

Queue::Item Queue::start_locked(std::shared_ptr<Channel> channel) {
  channel->in_flight = true;
  channel->listed = false;
  RequestPtr request = std::move(channel->pending.front());
  channel->pending.pop_front();
  channel->in_flight_created = request->created;
  return Item{std::move(channel), std::move(request)};
}

void Queue::take_more(const Fits& fits, std::size_t max, std::vector<Item>& taken) {
  const std::size_t limit = taken.size() + max;
  std::shared_ptr<Waiter> wake;
  std::unique_lock g(mutex_);
  for (auto it = ready_.begin(); it != ready_.end() && taken.size() < limit;) {
    auto& channel = **it;
    if (channel.in_flight || channel.pending.empty()) {
      channel.listed = false;  // stale, as take_locked() would find it
      it = ready_.erase(it);
      continue;
    }
    if (!fits(channel, *channel.pending.front())) {
      ++it;  // left for another worker, in its place
      continue;
    }
    taken.push_back(start_locked(std::move(*it)));
    it = ready_.erase(it);
  }
  // What this worker leaves goes to another.
  if (waking_ == 0) wake = hand_over_locked();
  g.unlock();
  if (wake) resume(wake);
}

std::shared_ptr<Queue::Waiter> Queue::make_waiter(Executor executor) {
  return std::make_shared<Waiter>(std::move(executor));
}

Task<std::optional<Queue::Item>> Queue::pop() {
  auto waiter = make_waiter(co_await asio::this_coro::executor);
  auto item = co_await pop(std::move(waiter));
  co_return item;
}

Task<std::optional<Queue::Item>> Queue::pop(std::shared_ptr<Waiter> waiter) {
  {
    std::lock_guard g(mutex_);
    if (auto item = take_locked()) co_return item;
    if (closed_) co_return std::nullopt;
    waiter->item.reset();
    waiter->timer.expires_at(Clock::time_point::max());
    waiters_.push_back(waiter);
  }
  co_await waiter->timer.async_wait(use_nothrow);
  std::lock_guard g(mutex_);
  if (waiter->item) {
    --waking_;
    co_return std::move(waiter->item);
  }
  // Cancelled (shutdown) before anything arrived.
  std::erase(waiters_, waiter);
  co_return std::nullopt;
}

std::size_t Queue::done(std::span<const Item> items) {
  std::shared_ptr<Waiter> wake;
  std::vector<std::shared_ptr<Waiter>> closing;  // a deque would allocate even empty
  std::size_t abandoned = 0;
  {
    std::lock_guard g(mutex_);
    bool listed = false;
    for (const auto& item : items) {
      auto& channel = *item.channel;
      forget_locked(item.request);
      if (close_when_empty_ && size_ == 0) closing = close_locked();
      channel.in_flight = false;
      if (closed_) {
        abandoned += channel.pending.size();
        for (const auto& r : channel.pending)
          forget_locked(r);
        channel.pending.clear();
      }
      if (channel.pending.empty()) {
        untrack_locked(channel);
      } else if (!channel.listed) {
        channel.listed = true;
        ready_.push_back(item.channel);
        listed = true;
      }
    }
    if (listed && waking_ == 0) wake = hand_over_locked();
  }
  if (wake) resume(wake);
  for (auto& w : closing)
    asio::post(w->timer.get_executor(), [w] { w->timer.cancel(); });
  return abandoned;
}

void Queue::forget_locked(const RequestPtr& r) {
  --size_;
  bytes_ -= r->frames.size();
}

void Queue::track_locked(Channel& channel) {
  channel.live_slot = live_.size();
  live_.push_back(&channel);
}

void Queue::untrack_locked(Channel& channel) {
  if (channel.live_slot == Channel::kNotLive) return;
  Channel* last = live_.back();
  live_[channel.live_slot] = last;
  last->live_slot = channel.live_slot;
  live_.pop_back();
  channel.live_slot = Channel::kNotLive;
}

void Queue::set_capacity(std::size_t capacity, std::size_t byte_capacity) {
  std::lock_guard g(mutex_);
  capacity_ = capacity;
  byte_capacity_ = byte_capacity;
}

std::vector<std::shared_ptr<Queue::Waiter>> Queue::close_locked() {
  closed_ = true;
  std::vector<std::shared_ptr<Waiter>> waiters(std::make_move_iterator(waiters_.begin()),
                                               std::make_move_iterator(waiters_.end()));
  waiters_.clear();
  return waiters;
}

void Queue::close_when_empty() {
  std::vector<std::shared_ptr<Waiter>> waiters;
  {
    std::lock_guard g(mutex_);
    close_when_empty_ = true;
    if (size_ == 0) waiters = close_locked();
  }
  for (auto& w : waiters)
    asio::post(w->timer.get_executor(), [w] { w->timer.cancel(); });
}

std::size_t Queue::close() {
  std::vector<std::shared_ptr<Waiter>> waiters;
  std::size_t abandoned = 0;
  {
    std::lock_guard g(mutex_);
    waiters = close_locked();
    for (auto& channel : ready_) {
      abandoned += channel->pending.size();
      for (const auto& r : channel->pending)
        forget_locked(r);
      channel->pending.clear();
      channel->listed = false;
      if (!channel->in_flight) untrack_locked(*channel);
    }
    ready_.clear();
  }
  for (auto& w : waiters)
    asio::post(w->timer.get_executor(), [w] { w->timer.cancel(); });
  return abandoned;
}

bool Queue::closed() const {
  std::lock_guard g(mutex_);
  return closed_;
}

std::size_t Queue::size() const {
  std::lock_guard g(mutex_);
  return size_;
}

std::size_t Queue::bytes() const {
  std::lock_guard g(mutex_);
  return bytes_;
}

double Queue::oldest_age() const {
  std::lock_guard g(mutex_);
  if (live_.empty()) return 0;
  // A channel's requests were made in the client's order: its oldest is the one in flight, or
  // else the first queued.
  auto oldest = Clock::time_point::max();
  for (const Channel* channel : live_) {
    oldest = std::min(oldest, channel->in_flight ? channel->in_flight_created
                                                 : channel->pending.front()->created);
  }
  return std::chrono::duration<double>(Clock::now() - oldest).count();
}

}  // namespace pgdog::mirror
