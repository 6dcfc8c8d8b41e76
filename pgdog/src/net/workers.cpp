#include "net/workers.hpp"

#include <algorithm>

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
  for (auto& l : loops_) {
    l->guard.reset();
    l->io.stop();
  }
}

int Workers::current() { return current_worker; }

void Workers::set_current(int index) { current_worker = index; }

}  // namespace pgdog::net
