#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "mirror/queue.hpp"
#include "stats/mirror_stats.hpp"

namespace pgdog::mirror {
namespace {

RequestPtr request(std::string frames) {
  auto r = std::make_shared<Request>();
  r->frames = std::move(frames);
  return r;
}

std::optional<Queue::Item> pop_now(asio::io_context& io, Queue& q) {
  std::optional<Queue::Item> item;
  bool finished = false;
  asio::co_spawn(io, q.pop(), [&](std::exception_ptr, std::optional<Queue::Item> i) {
    item = std::move(i);
    finished = true;
  });
  io.run_for(std::chrono::milliseconds(50));
  io.restart();
  return finished ? item : std::nullopt;
}

TEST(Queue, OneRequestInFlightPerChannelAndOrderKept) {
  asio::io_context io;
  Queue q(10);
  auto a = std::make_shared<Channel>();
  auto b = std::make_shared<Channel>();
  ASSERT_TRUE(q.try_push(a, request("a1")));
  ASSERT_TRUE(q.try_push(a, request("a2")));
  ASSERT_TRUE(q.try_push(b, request("b1")));
  auto first = pop_now(io, q);
  auto second = pop_now(io, q);
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->request->frames, "a1");
  EXPECT_EQ(second->request->frames, "b1");  // a2 waits for a1
  EXPECT_EQ(q.size(), 3U);
  q.done(*first);
  auto third = pop_now(io, q);
  ASSERT_TRUE(third);
  EXPECT_EQ(third->request->frames, "a2");
  q.done(*second);
  q.done(*third);
  EXPECT_EQ(q.size(), 0U);
}

TEST(Queue, CapacityCountsQueuedAndInFlight) {
  asio::io_context io;
  Queue q(2);
  auto c = std::make_shared<Channel>();
  EXPECT_TRUE(q.try_push(c, request("1")));
  EXPECT_TRUE(q.try_push(c, request("2")));
  EXPECT_FALSE(q.try_push(c, request("3")));
  auto item = pop_now(io, q);
  ASSERT_TRUE(item);
  EXPECT_FALSE(q.try_push(c, request("3")));  // in flight still counts
  q.done(*item);
  EXPECT_TRUE(q.try_push(c, request("3")));
}

TEST(Queue, ByteBudgetCountsQueuedAndInFlight) {
  asio::io_context io;
  Queue q(100, 10);
  auto a = std::make_shared<Channel>();
  ASSERT_TRUE(q.try_push(a, request("123456")));
  EXPECT_FALSE(q.try_push(a, request("12345"))) << "6 + 5 bytes is past the budget of 10";
  ASSERT_TRUE(q.try_push(a, request("1234")));
  EXPECT_EQ(q.bytes(), 10U);
  auto item = pop_now(io, q);
  ASSERT_TRUE(item);
  EXPECT_FALSE(q.try_push(a, request("1"))) << "in flight still counts";
  q.done(*item);
  EXPECT_EQ(q.bytes(), 4U);
  EXPECT_TRUE(q.try_push(a, request("123456")));
  EXPECT_FALSE(q.try_push(a, request(std::string(11, 'x')))) << "larger than the whole budget";
  q.set_capacity(100, 1000);
  EXPECT_TRUE(q.try_push(a, request(std::string(11, 'x'))));
  EXPECT_EQ(q.close(), 3U);
  EXPECT_EQ(q.size(), 0U);
  EXPECT_EQ(q.bytes(), 0U);
}

TEST(Queue, WaitingWorkerWakesOnPushAndCloseAbandonsQueued) {
  asio::io_context io;
  Queue q(10);
  auto c = std::make_shared<Channel>();
  std::optional<Queue::Item> got;
  bool finished = false;
  asio::co_spawn(io, q.pop(), [&](std::exception_ptr, std::optional<Queue::Item> i) {
    got = std::move(i);
    finished = true;
  });
  io.poll();
  EXPECT_FALSE(finished);
  ASSERT_TRUE(q.try_push(c, request("x")));
  io.run_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(finished);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->request->frames, "x");
  ASSERT_TRUE(q.try_push(c, request("y")));
  EXPECT_EQ(q.close(), 0U);             // y sits behind x, in flight: abandoned at done()
  EXPECT_EQ(q.done(*got), 1U);
  EXPECT_FALSE(q.try_push(c, request("z")));  // closed
  EXPECT_EQ(q.size(), 0U);
}

// A mirror removed by a reload: what it holds still goes to its workers, then they get nothing.
TEST(Queue, CloseWhenEmptyLetsWhatIsQueuedRunFirst) {
  asio::io_context io;
  Queue q(10);
  auto a = std::make_shared<Channel>();
  auto b = std::make_shared<Channel>();
  ASSERT_TRUE(q.try_push(a, request("a1")));
  ASSERT_TRUE(q.try_push(a, request("a2")));
  auto first = pop_now(io, q);
  ASSERT_TRUE(first);
  q.close_when_empty();
  EXPECT_FALSE(q.closed());
  EXPECT_TRUE(q.try_push(b, request("b1"))) << "a push racing the removal still runs";
  std::vector<std::string> ran{first->request->frames};
  EXPECT_EQ(q.done(*first), 0U);
  while (auto item = pop_now(io, q)) {
    ran.push_back(item->request->frames);
    EXPECT_EQ(q.done(*item), 0U) << "nothing abandoned";
  }
  std::sort(ran.begin(), ran.end());
  EXPECT_EQ(ran, (std::vector<std::string>{"a1", "a2", "b1"}));
  EXPECT_TRUE(q.closed());
  EXPECT_EQ(q.size(), 0U);
  EXPECT_FALSE(q.try_push(a, request("late")));
}

TEST(Queue, CloseWhenEmptyWakesIdleWorkersWithNothing) {
  asio::io_context io;
  Queue q(10);
  bool finished = false;
  std::optional<Queue::Item> got;
  asio::co_spawn(io, q.pop(), [&](std::exception_ptr, std::optional<Queue::Item> i) {
    got = std::move(i);
    finished = true;
  });
  io.poll();
  EXPECT_FALSE(finished);
  q.close_when_empty();
  io.run_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(finished);
  EXPECT_FALSE(got);
}

TEST(Queue, OldestAgeTracksQueuedAndInFlight) {
  asio::io_context io;
  Queue q(10);
  auto c = std::make_shared<Channel>();
  auto old = std::make_shared<Request>();
  old->created = Clock::now() - std::chrono::seconds(5);
  ASSERT_TRUE(q.try_push(c, old));
  ASSERT_TRUE(q.try_push(c, request("new")));
  EXPECT_GE(q.oldest_age(), 4.9);
  auto item = pop_now(io, q);
  EXPECT_GE(q.oldest_age(), 4.9);  // in flight still counts
  q.done(*item);
  EXPECT_LT(q.oldest_age(), 1.0);
}

TEST(Queue, OldestAgeIsTheOldestOfEveryChannel) {
  asio::io_context io;
  Queue q(10);
  auto a = std::make_shared<Channel>();
  auto b = std::make_shared<Channel>();
  const auto aged = [](std::chrono::seconds age) {
    auto r = std::make_shared<Request>();
    r->created = Clock::now() - age;
    return r;
  };
  EXPECT_EQ(q.oldest_age(), 0.0);
  ASSERT_TRUE(q.try_push(a, aged(std::chrono::seconds(3))));
  ASSERT_TRUE(q.try_push(b, aged(std::chrono::seconds(9))));
  ASSERT_TRUE(q.try_push(b, aged(std::chrono::seconds(1))));
  EXPECT_GE(q.oldest_age(), 8.9);
  auto first = pop_now(io, q);   // a's
  auto second = pop_now(io, q);  // b's oldest, in flight
  ASSERT_TRUE(first && second);
  EXPECT_GE(q.oldest_age(), 8.9);
  q.done(*second);  // b's next is queued now
  EXPECT_GE(q.oldest_age(), 2.9);
  EXPECT_LT(q.oldest_age(), 8.0);
  q.done(*first);  // a has nothing left
  EXPECT_GE(q.oldest_age(), 0.9);
  EXPECT_LT(q.oldest_age(), 2.0);
  // Closing abandons b's queued one: nothing is left.
  EXPECT_EQ(q.close(), 1U);
  EXPECT_EQ(q.oldest_age(), 0.0);
}

// Every count compared with what the test handed and recorded, not with the other counts.
TEST(MirrorStats, CountsWhatWasHandedAndRecorded) {
  stats::MirrorStats s("m");
  for (int i = 0; i < 10; ++i) s.handed();
  s.record(stats::MirrorOutcome::success);
  s.record(stats::MirrorOutcome::success);
  s.record(stats::MirrorOutcome::connection);
  s.record(stats::MirrorOutcome::timeout);
  s.record(stats::MirrorOutcome::query);
  s.record(stats::MirrorOutcome::dropped);
  auto snap = s.snapshot();
  EXPECT_EQ(snap.handed, 10U);
  EXPECT_EQ(snap.success, 2U);
  EXPECT_EQ(snap.connection, 1U);
  EXPECT_EQ(snap.timeout, 1U);
  EXPECT_EQ(snap.query, 1U);
  EXPECT_EQ(snap.failure(), 3U);
  EXPECT_EQ(snap.dropped, 1U);
  EXPECT_EQ(snap.queue_depth, 10U - 6U);  // handed, minus the six recorded endings
  EXPECT_GT(snap.last_success, 1.7e9);
  EXPECT_GT(snap.last_failure, 1.7e9);
  EXPECT_DOUBLE_EQ(snap.success_rate(), 2.0 / 5.0);  // drops are not completions
}

TEST(MirrorStats, SuccessRateIsNanWithoutCompletions) {
  stats::MirrorStats s("m");
  s.handed();
  s.record(stats::MirrorOutcome::dropped);
  EXPECT_TRUE(std::isnan(s.snapshot().success_rate()));
  EXPECT_EQ(s.snapshot().last_success, 0.0);
}

// A reader taking snapshots while a writer hands and ends requests. The depth is derived
// (handed minus ended), so the snapshot's own identity proves nothing; each snapshot is checked
// against what the writer had finished before it was taken, and against the one before it.
TEST(MirrorStats, SnapshotsFollowTheWriterUnderConcurrentUpdates) {
  constexpr std::uint64_t kRequests = 200'000;
  stats::MirrorStats s("m");
  std::atomic<std::uint64_t> finished{0};  // requests handed and ended, published after both
  std::thread writer([&] {
    for (std::uint64_t i = 0; i < kRequests; ++i) {
      s.handed();
      s.record(i % 3 == 0 ? stats::MirrorOutcome::dropped : stats::MirrorOutcome::success);
      finished.store(i + 1, std::memory_order_release);
    }
  });
  std::uint64_t snapshots = 0;
  std::uint64_t behind = 0;  // snapshots that missed something finished before them
  std::uint64_t backwards = 0;
  std::uint64_t worst = 0;
  stats::MirrorStats::Snapshot last;
  while (true) {
    const std::uint64_t before = finished.load(std::memory_order_acquire);
    const auto snap = s.snapshot();
    ++snapshots;
    const std::uint64_t ended = snap.success + snap.dropped;
    if (snap.handed < before || ended < before) ++behind;
    if (snap.handed < last.handed || snap.success < last.success || snap.dropped < last.dropped)
      ++backwards;
    worst = std::max(worst, snap.queue_depth);
    last = snap;
    if (before == kRequests) break;
  }
  writer.join();
  EXPECT_GT(snapshots, 1U);
  EXPECT_EQ(behind, 0U) << "a snapshot missed requests finished before it";
  EXPECT_EQ(backwards, 0U) << "a counter went backwards between snapshots";
  EXPECT_LE(worst, kRequests) << "the depth went negative (wrapped around)";
  const auto end = s.snapshot();
  EXPECT_EQ(end.handed, kRequests);
  EXPECT_EQ(end.dropped, (kRequests + 2) / 3);  // i % 3 == 0
  EXPECT_EQ(end.success, kRequests - (kRequests + 2) / 3);
  EXPECT_EQ(end.failure(), 0U);
  EXPECT_EQ(end.queue_depth, 0U);
}

TEST(MirrorStats, ThresholdCrossingLogsOncePerCrossing) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto logger = std::make_shared<spdlog::logger>("test", sink);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  stats::MirrorStats s("m");
  s.set_failure_threshold(0.2);
  for (int i = 0; i < 10; ++i) s.record(stats::MirrorOutcome::success);
  for (int i = 0; i < 5; ++i) s.record(stats::MirrorOutcome::connection);  // 1/3 > 0.2
  for (int i = 0; i < 20; ++i) s.record(stats::MirrorOutcome::success);    // 5/35 < 0.2
  spdlog::set_default_logger(previous);
  const auto text = out.str();
  auto count = [&](std::string_view needle) {
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("is above mirror_failure_threshold"), 1U) << text;
  EXPECT_EQ(count("is back within mirror_failure_threshold"), 1U) << text;
}

}  // namespace
}  // namespace pgdog::mirror
