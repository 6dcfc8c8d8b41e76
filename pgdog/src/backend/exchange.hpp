#pragma once

// The conversation between one client and the server it holds, as bookkeeping: what the client
// asked, what the server still owes, the transaction state, when the server may go back to the
// pool, and the answers the proxy gives itself (prepared statements in transaction mode).
//
// Sans-io, in the spirit of Boost.MySQL's algorithms: client frames and server bytes in; bytes
// to send, decisions and events out. It reads no socket and no clock. The client session is a
// loop that asks next() what to do, does that I/O, and hands the bytes back.

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>
#include <string>
#include <string_view>

#include "backend/prepared.hpp"
#include "backend/server_state.hpp"
#include "config/config.hpp"
#include "protocol/frame.hpp"
#include "protocol/messages.hpp"
#include "protocol/params.hpp"
#include "protocol/scanner.hpp"
#include "protocol/session_sql.hpp"

namespace pgdog::backend {

// Sees the traffic as it passes, without changing it (the mirror tap).
class FrameTap {
 public:
  virtual ~FrameTap() = default;
  // A client frame on its way to the server (not the ones the proxy answers alone).
  virtual void client_frame(const protocol::Frame& f) = 0;
  virtual bool wants_server_frame(char type) const = 0;
  virtual void server_frame(const protocol::Frame& f) = 0;
  // Pieces of a row too large to arrive whole, when wants_pieces().
  virtual bool wants_pieces() const = 0;
  virtual void server_piece(char type, std::string_view bytes) = 0;
  // Transaction mode: whether the client keeps its server after the transaction a
  // ReadyForQuery ends, said before that ReadyForQuery reaches server_frame(); `unknown` when
  // its statements may have created or ended state only the server holds, until pins_known()
  // says. The mirror keeps its own connection alike, so the state is there for the next one.
  enum class Keep : std::uint8_t { no, yes, unknown };
  virtual void keeps_server(Keep keep) = 0;
  virtual void pins_known(bool keeps) = 0;
};

// Whole, valid client frames at the front of what the client sent.
struct ClientBatch {
  std::size_t size = 0;        // their bytes
  bool started = false;        // a request began: nothing was outstanding before it
  bool terminate = false;      // Terminate follows them
  std::string violation;       // a protocol violation follows them: 08P01, then close
};

// What one pass over the server's bytes finished, for the counters.
struct ServerEvents {
  std::uint32_t queries = 0;       // ReadyForQuery: requests answered
  std::uint32_t transactions = 0;  // ReadyForQuery 'I': transactions (or autocommit statements)
  std::uint32_t errors = 0;        // ErrorResponse
  bool request_done = false;       // nothing is outstanding any more
  bool began = false;              // an explicit transaction block began (at the request start)
  bool ended = false;              // an explicit transaction block ended
};

// The server's answers handled in one pass.
struct ServerChunk {
  std::size_t done = 0;  // bytes of the server's data handled: consume them
  std::string_view out;  // for the client: the server's bytes themselves, or assembled answers
  std::string lost;      // the server broke the protocol: tell the client, close
  ServerEvents events;
};

class Exchange {
 public:
  // What the session does next.
  enum class Next {
    client,   // wait for the client
    server,   // handle the server's answers (buffered first, else read)
    either,   // both may speak: a batch without Sync awaits answers, or session mode idles
    answer,   // answers the proxy gives itself are due: answer_now()
    settle,   // settings changed: read them (settle_query()), then settled()
    release,  // transaction mode: the server can go back to the pool
  };

  Exchange(config::PoolerMode mode, std::size_t max_message_size);
  // The rewriter and the tracker point at statements_: an exchange stays where it was made.
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  ~Exchange();
  // Set once the client's pool is known (before any traffic).
  void configure(config::PoolerMode mode, std::size_t max_message_size,
                 config::PoolPinning pinning = config::PoolPinning::automatic) {
    mode_ = mode;
    max_message_size_ = max_message_size;
    pinning_ = pinning == config::PoolPinning::automatic;
  }
  // The session parameters the client sent at login: RESET returns to these, as PostgreSQL's
  // does, not to the server's defaults. Shared: clients that sent the same ones may hold one
  // copy (protocol::SharedParams).
  void set_startup(std::shared_ptr<const protocol::Params> startup);

  // Transaction mode with prepared statements: the client's named statements are kept here
  // and prepared on whichever server it gets (see prepared.hpp).
  void rewrite_statements(StatementRegistry& registry);
  void set_tap(FrameTap* tap) { tap_ = tap; }

  config::PoolerMode mode() const { return mode_; }
  // The session parameters the client expects on any server it gets.
  protocol::Params& params() { return params_; }
  // Bytes wanted to complete the server frame at the front of `data` (0 when none is started).
  std::size_t wanted(std::string_view data) const { return scanner_.wanted(data); }
  const ClientStatements& statements() const { return statements_; }
  const Rewriter* rewriter() const { return rewriter_.get(); }

  // Client side: counts what the frames at the front of `data` will make the server owe.
  ClientBatch read_client(std::string_view data);
  // What to send to the server for a batch read_client() accepted: `batch` itself, or bytes
  // rewritten for this server's statement cache. Shows the tap what goes.
  std::string_view prepare(std::string_view batch, ServerState& server);
  // A batch that needs no server (Parse of statements a server accepted, Describe of known
  // statements, Sync): its answers, and nothing is outstanding afterwards. Nothing when the
  // batch needs a server.
  std::optional<std::string_view> answer_alone(std::string_view batch);
  // Whether answer_alone() would answer `batch` (it changes nothing).
  bool answers_alone(std::string_view batch) const {
    return rewriter_ && rewriter_->can_answer_alone(batch, max_message_size_);
  }
  // No server could be had for `batch`: the answers PostgreSQL would give, each request failed
  // with `error`. Nothing is outstanding afterwards.
  std::string fail(std::string_view batch, const protocol::ErrorSpec& error);

  // A server was attached: its bytes are scanned from a frame boundary.
  void attached();
  // Server side: the answers in `data` (the server's unread bytes), up to the ReadyForQuery
  // after which the server could be released.
  ServerChunk read_server(std::string_view data, ServerState& server);
  // Answers the proxy owes with nothing from the server ahead of them.
  std::string_view answer_now(const ServerState& server);

  // `buffered`: the server's bytes not handled yet (they are handled before anything else).
  Next next(const ServerState* server, bool buffered) const;
  // Whether the server can go back to the pool as it is (also in session mode, at the end).
  bool clean(const ServerState& server) const;
  // The server goes back to the pool (or away): marked broken when its statement cache can no
  // longer be trusted; nothing is expected from it any more.
  void detach(ServerState& server);
  // A request outstanding or a transaction open: a graceful stop waits for it.
  bool busy() const { return pending_ > 0 || in_transaction_; }

  // Transaction mode: the client has state only its server holds (a temporary table, a session
  // advisory lock, LISTEN, SQL PREPARE, a WITH HOLD cursor, SET SESSION AUTHORIZATION) and
  // keeps that server until the state is gone. Its server is reset before it serves anyone else.
  bool pinned() const;
  // Whether the client ever held such state on the server it has (then it needs a reset).
  bool dirty() const { return dirty_; }
  // The reasons (bits of 1 << sql::Pin) that pinned the client since the last call.
  std::uint8_t take_pins() { return std::exchange(new_pins_, 0); }
  // The server was reset (DISCARD ALL): nothing of the client's is left on it.
  void cleaned() { dirty_ = false; }

  // Settings: after a request that changed some (SET, RESET, set_config()), next() says
  // `settle`: the session runs settle_query() on the server, hands its row to settled(), and
  // when that says so, applies params() to the server (sync_parameters). What the client
  // expects then follows what its server holds, whatever the transaction did, and RESET of a
  // parameter the client sent at login returns to the client's value.
  std::string settle_query(const ServerState& server);
  bool settled(const std::vector<std::optional<std::string>>& row, ServerState& server);
  // The settings could not be read (the query failed): what the client expects stays as it was.
  void settle_failed();
  // The server was lost: nothing is outstanding any more.
  void lose();

 private:
  // The settings a DO block or CALL may have changed, read back from pg_settings.
  void adopt_session_settings(std::string_view list, bool effective, ServerState& server);
  void on_ready(const protocol::Frame& f, ServerState& server, ServerEvents& events);
  bool on_server_frame(const protocol::Frame& f, ServerState& server, ServerEvents& events);
  bool releasable(const ServerState& server) const;
  void prepare_frame(const protocol::Frame& f, ServerState& server);
  void observe(const protocol::Frame& f);
  bool committed(bool explicit_block) const;
  void note(const protocol::sql::SessionEffects& e);
  void settle_pins(const std::vector<std::optional<std::string>>& row);
  void hold(std::uint8_t held);
  struct Session;  // state few clients have: made on first use
  Session& session();
  const protocol::Params& startup() const;
  std::unique_ptr<Session> session_;
  std::shared_ptr<const protocol::Params> startup_;

  std::size_t max_message_size_;
  protocol::Params params_;
  ClientStatements statements_;
  std::unique_ptr<Rewriter> rewriter_;
  ResponseTracker tracker_;
  protocol::StreamScanner scanner_{0};
  FrameTap* tap_ = nullptr;
  std::string rewritten_;  // a batch rewritten for the server
  // Within prepare(): the last Query it scanned for the words of session effects, whose hints
  // (scanned_hints_) observe() then uses rather than scanning again.
  std::string_view scanned_;
  std::string assembled_;  // answers changed on their way to the client
  // Packed (mode_ beside pending_, the flags in one byte): every idle client holds an Exchange.
  int pending_ = 0;        // Query / Sync / FunctionCall sent, ReadyForQuery not yet seen
  config::PoolerMode mode_;
  bool unsynced_ : 1 = false;  // extended-protocol messages sent since the last Sync
  bool copy_in_ : 1 = false;   // the server is receiving COPY data
  bool in_transaction_ : 1 = false;
  bool pinning_ : 1 = true;
  bool dirty_ : 1 = false;  // session state was created on the server held
  bool settle_due_ : 1 = false;
  char last_tag_ = 0;       // the transaction's last CommandComplete: 'C' COMMIT, 'R' ROLLBACK
  std::uint8_t new_pins_ = 0;
  std::uint16_t errors_ = 0;  // ErrorResponses in the transaction
  protocol::sql::Hints scanned_hints_ = 0;  // in the padding after errors_
};

}  // namespace pgdog::backend
