#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "backend/pool.hpp"
#include "backend/prepared.hpp"
#include "frontend/app.hpp"
#include "frontend/clients.hpp"
#include "mirror/tap.hpp"
#include "net/event.hpp"
#include "net/stream.hpp"
#include "protocol/buffer.hpp"
#include "protocol/messages.hpp"
#include "protocol/params.hpp"
#include "protocol/scanner.hpp"

namespace pgdog::frontend {

// One client connection: startup, authentication, then frames relayed to a pooled server.
//
// Two coroutines share the session's strand while a server is attached: the reader (client
// to server) and the pump (server to client). The server goes back to the pool in transaction
// mode when the pump sees ReadyForQuery 'I' with nothing else outstanding.
class ClientSession : public Terminable, public std::enable_shared_from_this<ClientSession> {
 public:
  ClientSession(App& app, tcp::socket socket);
  ~ClientSession() override;

  Task<void> run();
  void terminate(bool graceful) override;
  void cancel_query() override;

 private:
  enum class Login { proceed, admin, close };

  Task<Login> login_phase();
  Task<Login> startup();
  Task<bool> read_startup_packet(protocol::StartupPacket& out);
  Task<bool> authenticate(const std::string& user, const std::optional<std::string>& password,
                          const auth::ScramSecret* scram, config::AuthType method);
  Task<bool> send_login_parameters(const protocol::StartupPacket& packet);
  // After login the client alternates between serve(), a coroutine that relays its requests,
  // and park(), a read with a plain callback into idle_read_ that holds no coroutine frame and
  // no heap buffer: an idle client costs its session object and little else.
  Task<void> serve(std::shared_ptr<ClientSession> self, error_code ec, std::size_t parked);
  void park();
  Task<bool> on_client_data(std::size_t received);
  std::string_view prepare_batch(std::string_view batch);
  void request_flush();
  Task<void> pump(std::shared_ptr<ClientSession> self);
  void start_pump();
  Task<void> relay_inline();
  // What the client gets for what the server sent so far.
  struct ServerChunk {
    std::size_t done = 0;   // server buffer bytes processed
    std::string_view out;   // bytes for the client (the buffer itself, or assembled_)
    bool release = false;   // transaction mode: the server can go back to the pool
  };
  bool scan_server(ServerChunk& chunk, std::string& lost);
  Task<bool> deliver(const ServerChunk& chunk);
  bool deliver_now(const ServerChunk& chunk, std::size_t& sent, error_code& ec);
  Task<bool> deliver_rest(const ServerChunk& chunk, std::size_t sent, error_code ec);
  bool try_attach();
  Task<void> report_lost(const std::string& lost);
  void release_server();
  Task<backend::Result<void>> attach();
  Task<void> sync_parameters();
  Task<void> stop_pump();
  Task<void> finish_server();
  Task<void> fail_batch(std::string_view frames, const backend::Failure& failure);
  Task<void> fatal(std::string_view code, std::string_view message);
  void handle_cancel(const protocol::StartupPacket& packet);
  bool can_release() const;
  void set_state(ClientState s);

  App& app_;
  Executor executor_;
  net::Stream client_;
  std::shared_ptr<ClientInfo> info_;
  std::shared_ptr<UserEntry> user_;
  std::shared_ptr<const config::Config> config_;
  std::size_t max_message_size_ = 0;

  // Where a client's next query lands while it is idle (see park()): pgbench's queries fit,
  // simple or extended (about 60 and 115 bytes); longer ones continue on the heap, at the cost
  // of one more read.
  std::array<char, 160> idle_read_;
  protocol::Buffer in_{std::span<char>(idle_read_)};
  backend::Lease server_;
  protocol::Params params_;  // what the client expects its session parameters to be
  backend::ClientStatements statements_;  // its named prepared statements
  std::unique_ptr<backend::Rewriter> rewriter_;  // transaction mode with prepared_statements
  backend::ResponseTracker tracker_;
  std::string out_;        // a rewritten batch
  std::string assembled_;  // answers changed on their way to the client
  protocol::StreamScanner scanner_{0};
  std::unique_ptr<mirror::Tap> tap_;  // null unless the database has mirrors
  std::unique_ptr<net::Event> pump_done_;  // made by the first pump (session mode, pipelining)
  std::chrono::steady_clock::time_point request_started_{};
  std::chrono::steady_clock::time_point transaction_started_{};

  // Protocol bookkeeping shared by the reader and the pump (same strand). The small fields sit
  // together: every connected client carries this object.
  config::PoolerMode mode_ = config::PoolerMode::transaction;
  int pending_ = 0;        // Query / Sync / FunctionCall forwarded, ReadyForQuery not yet seen
  bool unsynced_ = false;  // extended-protocol frames forwarded since the last Sync
  bool copy_in_ = false;   // the server is receiving COPY data
  bool writing_ = false;   // the reader is writing to the server
  bool closing_ = false;   // the client is going away
  bool pump_running_ = false;
  bool terminate_after_transaction_ = false;
  bool flush_requested_ = false;
  bool in_transaction_ = false;
};

}  // namespace pgdog::frontend
