#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <optional>

#include "backend/exchange.hpp"
#include "backend/pool.hpp"
#include "frontend/app.hpp"
#include "frontend/clients.hpp"
#include "frontend/login.hpp"
#include "mirror/tap.hpp"
#include "net/pending_read.hpp"
#include "net/stream.hpp"
#include "protocol/buffer.hpp"

namespace pgdog::frontend {

// One client connection after login: a loop around the exchange machine (backend/exchange.hpp),
// which says what to do next; the session does that I/O and nothing else. The server is
// attached when the client sends a request and released where the exchange says so, in one
// place.
class ClientSession : public Terminable, public std::enable_shared_from_this<ClientSession> {
 public:
  // `loop`: the worker loop the session runs on, where `socket` was accepted.
  ClientSession(App& app, net::Socket socket, asio::io_context& loop);
  ~ClientSession() override;

  Task<void> run();
  void terminate(bool graceful) override;
  void cancel_query() override;

 private:
  using Clock = std::chrono::steady_clock;
  // Reads outstanding on both sides at once (Exchange::Next::either), made on first use.
  struct Duplex {
    net::Wakeup wakeup;
    net::PendingRead client;
    net::PendingRead server;
  };

  void start(LoginResult login);
  // After login a client's requests are served by callbacks (the quick path, go_on()) while
  // nothing but a read has to be waited for, which is most requests; relay(), a coroutine,
  // takes over for any other step and hands back at the next read of the client. A client
  // between transactions waits in a read with a plain callback into idle_read_: no coroutine
  // frame, no heap buffer; an idle client costs its session object and little else.
  Task<void> relay(std::shared_ptr<ClientSession> self, std::optional<backend::ClientBatch> batch,
                   error_code ec);
  void read_client_quickly(std::shared_ptr<ClientSession> self);
  bool can_park() const;
  void on_client_read(std::shared_ptr<ClientSession> self, error_code ec, std::size_t n);
  bool quick() const;
  bool send_quickly(std::shared_ptr<ClientSession>& self, const backend::ClientBatch& batch);
  void send_now(std::shared_ptr<ClientSession> self, std::size_t size);
  // Waiting for a server without a coroutine (backend::PoolWaiter); the rare outcomes (a
  // failure, parameters to set first, a session closing meanwhile) go on in take_waited().
  void wait_for_server(std::shared_ptr<ClientSession> self, std::size_t size);
  static void served(std::shared_ptr<void> waiter, std::size_t size,
                     backend::Result<backend::Lease> lease);
  Task<void> take_waited(std::shared_ptr<ClientSession> self, std::size_t size,
                         backend::Result<backend::Lease> lease);
  void go_on(std::shared_ptr<ClientSession> self);
  bool answer_quickly(std::shared_ptr<ClientSession>& self);
  void read_server_quickly(std::shared_ptr<ClientSession> self);
  void spawn(Task<void> task);
  Task<void> lose(std::shared_ptr<ClientSession> self, std::string lost);
  Task<bool> read_client();
  Task<bool> read_server();
  Task<bool> read_either();
  backend::ClientBatch take_batch(std::size_t received);
  Task<bool> send_batch(backend::ClientBatch batch);
  void batch_sent(error_code ec);
  Task<bool> on_server();
  void delivered(std::size_t done, error_code ec);
  Task<bool> attach_or_fail(std::string_view batch);
  Task<void> fail_batch(std::string_view batch, const backend::Failure& failure);
  Task<bool> deliver(std::string_view out);
  bool deliver_now(std::string_view out, std::size_t& sent, error_code& ec);
  void count(const backend::ServerEvents& events);
  Task<std::optional<backend::Failure>> attach();
  // What a checkout brought: the server, set up for this client, or why there is none.
  Task<std::optional<backend::Failure>> take(backend::Result<backend::Lease> lease);
  void hold(backend::Lease lease);
  bool try_attach();
  Task<void> sync_parameters();
  Task<bool> settle();
  Task<void> reset_server();
  void note_pins();
  void release_server();
  Task<void> settle_reads();
  Task<void> finish();
  Task<void> report_lost(const std::string& lost);
  Task<void> fatal(std::string_view code, std::string_view message);
  std::size_t client_want() const;
  std::size_t server_want();
  Duplex& duplex();
  stats::PoolCounters& counters() { return user_->pool->counters(); }
  void set_state(ClientState s);

  // The loop the session runs on, for callers on other threads too (terminate, cancel_query).
  Executor executor() const { return loop_; }

  App& app_;
  asio::io_context::executor_type loop_;  // 8 bytes a client; an Executor would be 56
  // [[no_unique_address]]: the flags below sit in the stream's tail padding (8 bytes a client).
  [[no_unique_address]] net::Stream client_;
  bool closing_ = false;  // the client is going away
  bool terminate_after_transaction_ = false;
  bool counted_pinned_ = false;  // counted in the pool's pinned gauge
  std::shared_ptr<ClientInfo> info_;
  std::shared_ptr<UserEntry> user_;
  // Where a client's next query lands while it is idle (see read_client_quickly()): pgbench's
  // queries fit, simple or extended (about 60 and 115 bytes); longer ones continue on the heap,
  // at the cost of one more read.
  std::array<char, 160> idle_read_;
  protocol::Buffer in_{std::span<char>(idle_read_)};
  backend::Lease server_;
  backend::Exchange exchange_{config::PoolerMode::transaction, 0};
  std::optional<mirror::Tap> tap_;  // from login on; after user_, which it refers to
  std::unique_ptr<Duplex> duplex_;
  Clock::time_point request_started_{};
  Clock::time_point transaction_started_{};
};

}  // namespace pgdog::frontend
