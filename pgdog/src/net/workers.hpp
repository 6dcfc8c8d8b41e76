#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "net/asio.hpp"

namespace pgdog::net {

// One event loop per thread (`workers` in pgdog.toml): each worker runs its own io_context on
// its own thread and owns what it serves (client sessions, their server connections, its share
// of every pool and that share's counters), so the per-transaction path touches nothing another
// thread touches: no shared scheduler lock, no strand, no cache line that moves between cores.
// Worker 0 also runs what is not per-client: listeners, the admin tasks, timers of the App.
class Workers {
 public:
  explicit Workers(int count);
  ~Workers();
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  int size() const { return static_cast<int>(loops_.size()); }
  asio::io_context& context(int i) { return loops_[static_cast<std::size_t>(i)]->io; }
  std::vector<asio::io_context*> contexts();

  // Runs workers 1..n-1 on threads of their own and worker 0 on the calling thread; returns once
  // every one has stopped (stop()).
  void run();
  // Thread-safe.
  void stop();

  // The worker whose thread calls (0 on a thread that runs no worker's loop, tests included).
  static int current();
  // For loops run by something else (tests): marks the calling thread as worker `index`.
  static void set_current(int index);

 private:
  // An io_context whose shutdown (destroying what it still holds: coroutine frames, handlers)
  // the destructor can run for every loop before it destroys any: what one loop's frames hold
  // (a pool, a server socket) may belong to another loop, whose services must still exist when
  // it goes.
  struct Context : asio::io_context {
    // One thread runs it: what the loop posts to itself stays in that thread's queue, without
    // waking another. Asio's locks stay (the hint does not disable them): other loops post to it.
    Context() : asio::io_context(1) {}
    using asio::io_context::shutdown;
  };
  struct Loop {
    Context io;
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  };
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::thread> threads_;
};

}  // namespace pgdog::net
