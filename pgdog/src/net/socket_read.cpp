// What net/socket_read.hpp needs of Asio's private members, in one translation unit (an explicit
// instantiation may appear once in a program).

#include "net/socket_read.hpp"

namespace pgdog::net::socket_read_detail {

namespace {

// Pointers to private members: an explicit instantiation may name them (access is not checked
// there), and Tag's friend get() returns the one Expose was instantiated with.
template <class Tag, typename Tag::type Member>
struct Expose {
  friend typename Tag::type get(Tag) { return Member; }
};
struct LastEvents {
  using type = unsigned int ad::scheduler_operation::*;
  friend type get(LastEvents);
};
struct Registered {
  using type = std::uint32_t State::*;
  friend type get(Registered);
};
struct StateLock {
  using type = ad::conditionally_enabled_mutex State::*;
  friend type get(StateLock);
};
struct EpollFd {
  using type = int ad::epoll_reactor::*;
  friend type get(EpollFd);
};

template struct Expose<LastEvents, &ad::scheduler_operation::task_result_>;
template struct Expose<Registered, &State::registered_events_>;
template struct Expose<StateLock, &State::mutex_>;
template struct Expose<EpollFd, &ad::epoll_reactor::epoll_fd_>;

}  // namespace

unsigned int last_events(State& state) {
  // descriptor_state derives privately from scheduler_operation, which keeps them (set by the
  // reactor for each event it fetches); the cast notation may name a private base.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
  auto* base = (ad::scheduler_operation*)(&state);
#pragma GCC diagnostic pop
  return base->*get(LastEvents{});
}

bool watch_ends(ad::epoll_reactor& reactor, State& state, int fd) {
  ad::conditionally_enabled_mutex::scoped_lock lock(state.*get(StateLock{}));
  auto& registered = state.*get(Registered{});
  if ((registered & EPOLLRDHUP) != 0) return true;
  if (registered == 0) return false;  // not pollable: Asio's reads do the rest
  epoll_event ev{};
  ev.events = registered | EPOLLRDHUP;
  ev.data.ptr = &state;
  if (::epoll_ctl(reactor.*get(EpollFd{}), EPOLL_CTL_MOD, fd, &ev) != 0) return false;
  registered = ev.events;
  return true;
}

}  // namespace pgdog::net::socket_read_detail
