#include "net/workers.hpp"

#include <algorithm>
#include <pthread.h>
#include <string>

namespace pgdog::net {

namespace {
thread_local int current_worker = 0;
}  // namespace

Workers::Workers(int count) {
  for (int i = 0; i < std::max(1, count); ++i)
    loops_.push_back(std::make_unique<Loop>());
}

Workers::~Workers() {
  stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  for (auto& l : loops_)
    l->guard.reset();
  for (auto& l : loops_)
    l->io.shutdown();
}

std::vector<asio::io_context*> Workers::contexts() {
  std::vector<asio::io_context*> out;
  for (auto& l : loops_)
    out.push_back(&l->io);
  return out;
}

void Workers::run() {
  for (int i = 1; i < size(); ++i) {
    threads_.emplace_back([this, i] {
      // Named for top -H and /proc/<pid>/task/*/comm (at most 15 characters).
      const std::string name = "pgdog-worker-" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
      set_current(i);
      loops_[static_cast<std::size_t>(i)]->io.run();
    });
  }
  set_current(0);
  loops_[0]->io.run();
  for (auto& t : threads_)
    t.join();
  threads_.clear();
}

void Workers::stop() {
  // io_context::stop is thread-safe and ends run() whatever work is outstanding; the guards go
  // in the destructor, on one thread.
  for (auto& l : loops_)
    l->io.stop();
}

int Workers::current() {
  return current_worker;
}

void Workers::set_current(int index) {
  current_worker = index;
}

}  // namespace pgdog::net
