#pragma once

// A socket read that tries at once only when the socket may hold bytes, and otherwise waits for
// the reactor to report it readable.
//
// Asio 1.81 tries every read at once (a "speculative" recv) and waits only when that fails. Most
// of a proxy's reads come when nothing can be there yet: the answer to a request just written,
// the client's next request right after its answer went out. Each such try fails with EAGAIN:
// measured, 1.48 wasted recv per transaction at 16 clients (3.48 recv against PgBouncer's 2.00).
//
// The reactor keeps a mark per socket, "try reads at once" (descriptor_state::try_speculative_):
// it sets the mark at every readiness edge epoll reports, whether or not a read is waiting, and
// clears it when a read reports the socket exhausted. Asio's own receive reports that only at end
// of file; this one also after a recv that returned fewer bytes than it asked for, because then
// no data was left (a stream socket's recv stops short only when its queue runs out; the sockets
// here use neither urgent data nor credential passing, the two exceptions). Any byte that
// arrives after that recv is a new edge (Asio registers sockets edge-triggered, and the kernel
// signals every arrival), which sets the mark again before any later read starts.
//
// Data is not all a socket can hold: a peer's end of stream (FIN) or reset that came with the
// last bytes is read only by the next recv, and it brought no edge of its own. So the socket is
// registered for EPOLLRDHUP as well (the first time it is read here), epoll then reports those
// states in every event from their arrival on, and a short read leaves the mark set when the
// events last reported for the socket (descriptor_state's task_result_) include them: the next
// read tries, and sees the end. An end whose event has not been fetched yet sets the mark when
// it is; the registration re-arms an end that came before it (EPOLL_CTL_MOD re-polls).
//
// So the mark is clear only while the socket holds nothing unread, and a read started then can
// skip the try: nothing is lost, whatever the connection did before. Asio's own reads on the
// same socket follow the same mark (they skip their try while it is clear) and leave it set.
// A read started off the socket's loop thread never clears the mark (the events are the loop
// thread's to write). A read that finds its bytes at once may see their edge reported after it,
// which sets the mark again: the next read then tries once in vain, as Asio's always would. In
// the proxy's steady state reads run when the reactor reports the socket, and the edge is not
// seen twice.
//
// It is built on Asio's detail layer (a reactor operation, the reactor's start_op and
// cancel_ops_by_key, the socket's implementation) as Boost 1.81 has it, the version the build
// requires (checked below); another Boost version needs this file checked against its reactor.
// Some of what it needs are private members (the events last reported, the registered events,
// the epoll descriptor): socket_read.cpp reaches them.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <sys/epoll.h>
#include <type_traits>
#include <utility>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/detail/bind_handler.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/version.hpp>

#include "net/asio.hpp"

namespace pgdog::net {

static_assert(BOOST_VERSION == 108100, "net/socket_read.hpp relies on Boost 1.81's epoll reactor");
static_assert(std::is_same_v<boost::asio::detail::reactor, boost::asio::detail::epoll_reactor>,
              "net/socket_read.hpp needs Asio's epoll reactor");

namespace socket_read_detail {

namespace ad = boost::asio::detail;
using State = ad::epoll_reactor::descriptor_state;

constexpr std::uint32_t kEnded = EPOLLRDHUP | EPOLLHUP | EPOLLERR;

// The events epoll last reported for the socket (socket_read.cpp).
unsigned int last_events(State& state);

// Adds EPOLLRDHUP to what the socket is registered for, as Asio changes it (under the
// descriptor's lock, the registered set kept for Asio's later changes). False if epoll refused
// or the socket is not pollable.
bool watch_ends(ad::epoll_reactor& reactor, State& state, int fd);

// A receive operation for the socket's reactor that reports the socket exhausted when it read
// less than it asked for.
template <class Handler, class IoExecutor>
class Op : public ad::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(Op);

  // `state` is the socket's, or null where the read must never clear the mark.
  Op(int fd, State* state, std::span<char> into, Handler& handler, const IoExecutor& io)
      : ad::reactor_op(error_code(), &Op::attempt, &Op::finish),
        fd_(fd),
        state_(state),
        into_(into),
        handler_(std::move(handler)),
        work_(handler_, io) {}

 private:
  static status attempt(ad::reactor_op* base) {
    auto* op = static_cast<Op*>(base);
    if (!ad::socket_ops::non_blocking_recv1(op->fd_, op->into_.data(), op->into_.size(), 0, true,
                                            op->ec_, op->bytes_transferred_)) {
      return not_done;
    }
    // Short, and no end of stream or reset reported: nothing is left, and the next read waits
    // for the reactor unless an edge comes first.
    if (op->bytes_transferred_ < op->into_.size() && op->state_ != nullptr &&
        (last_events(*op->state_) & kEnded) == 0) {
      return done_and_exhausted;
    }
    return done;
  }

  // Called with `owner` to run the handler, without it to destroy the operation unrun.
  static void finish(void* owner, ad::operation* base, const error_code&, std::size_t) {
    auto* op = static_cast<Op*>(base);
    ptr p = {std::addressof(op->handler_), op, op};
    ad::handler_work<Handler, IoExecutor> work(std::move(op->work_));
    // The handler leaves the operation's memory before it runs, so it may start the next read
    // in that memory.
    ad::binder2<Handler, error_code, std::size_t> bound(op->handler_, op->ec_,
                                                        op->bytes_transferred_);
    p.h = std::addressof(bound.handler_);
    p.reset();
    if (owner != nullptr) {
      ad::fenced_block fence(ad::fenced_block::half);
      work.complete(bound, bound.handler_);
    }
  }

  int fd_;
  State* state_;
  std::span<char> into_;
  Handler handler_;
  ad::handler_work<Handler, IoExecutor> work_;
};

// Ends the queued read when the handler's cancellation slot is signalled, as Asio's own reads
// do (a timeout raced against a read with `||`, a mirror replay's watchdog).
class Cancel {
 public:
  Cancel(ad::reactor& reactor, ad::reactor::per_descriptor_data& data, int fd)
      : reactor_(&reactor), data_(&data), fd_(fd) {}
  void operator()(asio::cancellation_type_t type) {
    constexpr auto kinds = asio::cancellation_type::terminal | asio::cancellation_type::partial |
                           asio::cancellation_type::total;
    if ((type & kinds) != asio::cancellation_type::none) {
      reactor_->cancel_ops_by_key(fd_, *data_, ad::reactor::read_op, this);
    }
  }

 private:
  ad::reactor* reactor_;
  ad::reactor::per_descriptor_data* data_;
  int fd_;
};

// The socket's implementation is a protected member of asio::basic_socket; a pointer to it
// formed through a derived class reads it from any socket.
template <class Socket>
struct Access : Socket {
  static auto& implementation(Socket& socket) {
    return (socket.*(&Access::impl_)).get_implementation();
  }
};

}  // namespace socket_read_detail

// The socket's reactor, looked up once per socket and kept by its owner (finding a service
// takes the context's registry lock and compares type names: more than the read itself), and
// whether the socket is registered for the ends of stream (tried once: a socket epoll refused
// keeps Asio's rule, and no read asks again).
struct ReactorCache {
  enum class Ends : unsigned char { unknown, watched, refused };
  boost::asio::detail::epoll_reactor* reactor = nullptr;
  Ends ends = Ends::unknown;
};

// Reads into `into` what `socket` has, or waits until it has something; `handler(error_code,
// std::size_t)` runs as for the socket's async_read_some (on its executor unless the handler
// has one; its cancellation slot cancels the read). `cache` belongs to this socket.
template <class Socket, class Handler>
void async_read_socket(Socket& socket, ReactorCache& cache, std::span<char> into,
                       Handler&& handler) {
  namespace ad = boost::asio::detail;
  using IoExecutor = typename Socket::executor_type;
  using Op = socket_read_detail::Op<std::decay_t<Handler>, IoExecutor>;

  auto& impl = socket_read_detail::Access<Socket>::implementation(socket);
  const bool non_blocking = (impl.state_ & (ad::socket_ops::user_set_non_blocking |
                                            ad::socket_ops::internal_non_blocking)) != 0;
  if (!non_blocking || into.empty()) {
    // Asio's read makes the socket non-blocking (the next read here is then this one's), and
    // completes an empty read at once.
    socket.async_read_some(asio::buffer(into.data(), into.size()), std::forward<Handler>(handler));
    return;
  }
  std::decay_t<Handler> h(std::forward<Handler>(handler));
  auto slot = asio::get_associated_cancellation_slot(h);
  if (cache.reactor == nullptr) {
    cache.reactor = &asio::use_service<ad::epoll_reactor>(
        asio::query(socket.get_executor(), asio::execution::context));
  }
  auto& reactor = *cache.reactor;
  socket_read_detail::State* state = nullptr;
  const auto* loop = socket.get_executor().template target<asio::io_context::executor_type>();
  if (impl.reactor_data_ != nullptr && loop != nullptr && loop->running_in_this_thread()) {
    if (cache.ends == ReactorCache::Ends::unknown) {
      cache.ends = socket_read_detail::watch_ends(reactor, *impl.reactor_data_, impl.socket_)
                       ? ReactorCache::Ends::watched
                       : ReactorCache::Ends::refused;
    }
    if (cache.ends == ReactorCache::Ends::watched) state = impl.reactor_data_;
  }
  typename Op::ptr p = {std::addressof(h), Op::ptr::allocate(h), nullptr};
  p.p = new (p.v) Op(impl.socket_, state, into, h, socket.get_executor());
  Op* op = p.p;
  p.v = p.p = nullptr;
  if (slot.is_connected()) {
    op->cancellation_key_ = &slot.template emplace<socket_read_detail::Cancel>(
        reactor, impl.reactor_data_, impl.socket_);
  }
  reactor.start_op(ad::reactor::read_op, impl.socket_, impl.reactor_data_, op, false, true);
}

}  // namespace pgdog::net
