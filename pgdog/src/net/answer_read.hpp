#pragma once

// A read that waits for the socket to become readable before it reads, for the one case where
// the data cannot be there yet: the answer to a request just written.
//
// Asio 1.81 tries every socket read at once (a "speculative" recv) and only then waits; it stops
// trying only after end of file. Right after a request is written its answer is never there, so
// that recv fails with EAGAIN: about one wasted system call per transaction on the server side
// (measured: 3.48 recv per transaction against PgBouncer's 2.00 at 16 clients). This read
// queues itself on the socket's reactor without that try, and reads when the reactor reports the
// socket readable.
//
// Why no data is lost: Asio registers sockets edge-triggered, and an edge that arrives while no
// read is queued is consumed without a read. Bytes that came that way (say an asynchronous
// notice while the server sat in the pool) are read with the answer, because the answer's
// arrival is a new edge. So the read is correct only when
//   - the caller has just written a request that the peer answers with new bytes (or by
//     closing the connection) whatever it sent before, in the same handler, with no return to
//     the event loop in between (not so for CopyData and CopyDone after a COPY that failed at
//     once: the server sent its error already and answers them with nothing; see
//     backend::ClientBatch::draws_answer); and
//   - the socket's loop is the calling thread's and no other thread runs it (net::Workers: one
//     thread per io_context), so no edge is consumed between the write and the read.
// Where those do not hold (another thread, TLS, a socket not yet non-blocking) it is a plain
// async_read_some.
//
// It is built on Asio's detail layer (a reactor operation, the reactor's start_op and
// cancel_ops_by_key, the socket's implementation) as Boost 1.81 has it, the version the build
// requires; another Boost version needs this file checked against its reactor.

#include <cstddef>
#include <memory>
#include <span>
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
#include <boost/asio/io_context.hpp>

#include "net/asio.hpp"

namespace pgdog::net {

namespace answer_read_detail {

namespace ad = boost::asio::detail;

// A receive operation for the socket's reactor whose first attempt, the one the reactor makes
// while the read is being queued, reads nothing.
template <class Handler, class IoExecutor>
class Op : public ad::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(Op);

  Op(int fd, std::span<char> into, Handler& handler, const IoExecutor& io)
      : ad::reactor_op(error_code(), &Op::attempt, &Op::finish),
        fd_(fd),
        into_(into),
        handler_(std::move(handler)),
        work_(handler_, io) {}

  // True while the reactor is queueing the operation.
  bool queueing = false;

 private:
  static status attempt(ad::reactor_op* base) {
    auto* op = static_cast<Op*>(base);
    if (op->queueing) return not_done;
    const bool finished = ad::socket_ops::non_blocking_recv1(
        op->fd_, op->into_.data(), op->into_.size(), 0, true, op->ec_, op->bytes_transferred_);
    return finished ? done : not_done;
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
  std::span<char> into_;
  Handler handler_;
  ad::handler_work<Handler, IoExecutor> work_;
};

// Ends the queued read when the handler's cancellation slot is signalled, as Asio's own reads
// do (a mirror replay's watchdog ends a read that way).
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

}  // namespace answer_read_detail

// The socket's reactor, looked up once per socket and kept by its owner (finding a service
// takes the context's registry lock and compares type names: more than the read itself).
struct AnswerReadCache {
  boost::asio::detail::reactor* reactor = nullptr;
};

// Reads into `into` once `socket` is readable; `handler(error_code, std::size_t)` runs on the
// socket's executor. The conditions in the comment at the top of this file are the caller's.
// `cache` belongs to this socket.
template <class Socket, class Handler>
void async_read_answer(Socket& socket, AnswerReadCache& cache, std::span<char> into,
                       Handler&& handler) {
  namespace ad = boost::asio::detail;
  using IoExecutor = typename Socket::executor_type;
  using Op = answer_read_detail::Op<std::decay_t<Handler>, IoExecutor>;

  auto& impl = answer_read_detail::Access<Socket>::implementation(socket);
  const auto* loop = socket.get_executor().template target<asio::io_context::executor_type>();
  const bool non_blocking = (impl.state_ & (ad::socket_ops::user_set_non_blocking |
                                            ad::socket_ops::internal_non_blocking)) != 0;
  if (loop == nullptr || !loop->running_in_this_thread() || !non_blocking || into.empty()) {
    socket.async_read_some(asio::buffer(into.data(), into.size()), std::forward<Handler>(handler));
    return;
  }
  std::decay_t<Handler> h(std::forward<Handler>(handler));
  auto slot = asio::get_associated_cancellation_slot(h);
  if (cache.reactor == nullptr) {
    cache.reactor =
        &asio::use_service<ad::reactor>(static_cast<asio::execution_context&>(loop->context()));
  }
  auto& reactor = *cache.reactor;
  typename Op::ptr p = {std::addressof(h), Op::ptr::allocate(h), nullptr};
  p.p = new (p.v) Op(impl.socket_, into, h, socket.get_executor());
  Op* op = p.p;
  p.v = p.p = nullptr;
  if (slot.is_connected()) {
    op->cancellation_key_ = &slot.template emplace<answer_read_detail::Cancel>(
        reactor, impl.reactor_data_, impl.socket_);
  }
  op->queueing = true;
  reactor.start_op(ad::reactor::read_op, impl.socket_, impl.reactor_data_, op, false, true);
  // Only this thread runs the loop, so the operation is still alive here: it completes, even
  // when the reactor posts it at once (a socket being closed), only after this handler returns.
  op->queueing = false;
}

}  // namespace pgdog::net
