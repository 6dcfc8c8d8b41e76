#pragma once

#include <memory>
#include <vector>

#include "backend/exchange.hpp"
#include "config/config.hpp"
#include "mirror/mirror.hpp"
#include "mirror/mirror_set.hpp"
#include "protocol/frame.hpp"
#include "protocol/params.hpp"

namespace pgdog::mirror {

// Watches one client session's traffic and cuts it into transactions for its mirrors.
//
// The session shows the tap every frame it forwards to the primary (client_frame) and the
// primary's CommandComplete, ErrorResponse, ReadyForQuery and CopyInResponse (server_frame).
// Frames are grouped by the ReadyForQuery each Query/Sync will produce, so pipelined traffic
// splits exactly; a group that ends with the server idle ('I') closes a transaction, which is
// handed to the mirrors if it committed.
//
// Which mirrors: those of the session's database in the route's MirrorSet, taken again at the
// first frame of a transaction whenever the set's version moved (a reload added or removed
// one). A transaction goes to the mirrors in force when it began, never to one added while it
// was open; the route's open_version says which version that was while it is open.
//
// Every session has a tap, so that a mirror added later reaches it. Without mirrors it only
// counts requests to see where transactions end, and keeps nothing else: what assembling
// transactions takes (Work) exists only while the session has mirrors.
class Tap : public backend::FrameTap {
 public:
  // `user` is the session's (its name, and its database, the source_db of its mirrors) and
  // outlives the tap. `params` and `statements` are the session's live state; each is
  // snapshotted when it changes (`rewriter` tells when statements changed; null when the
  // session does not rewrite). Without a rewriter (session mode) the tap keeps the client's
  // statements itself, interned in `registry`, so a mirror worker can still prepare them
  // wherever it replays, including a mirror added later.
  Tap(TapRoute route, const config::User& user, const protocol::Params& params,
      const backend::ClientStatements& statements, const backend::Rewriter* rewriter,
      backend::StatementRegistry* registry, std::size_t max_transaction_bytes,
      bool session_mode = false);
  ~Tap() override;

  void client_frame(const protocol::Frame& frame) override;
  void server_frame(const protocol::Frame& frame) override;
  // Pieces of a row too large to arrive whole (compare = results hashes them too).
  void server_piece(char type, std::string_view bytes) override;
  bool wants_server_frame(char type) const override;
  bool wants_pieces() const override;
  void keeps_server(Keep keep) override { keep_ = keep; }
  void pins_known(bool keeps) override;

 private:
  class Work;

  // The first frame of a transaction: take the mirrors in force if the set moved.
  void begin();
  void refresh(const MirrorSet::Snapshot& snapshot);
  // Requests sent and not answered yet.
  std::size_t outstanding() const;
  // The transaction ended with nothing sent after it.
  void end();
  void track_statement(const protocol::Frame& frame);
  // The client's named statements (the rewriter's, or the tap's own); null when none yet.
  const backend::ClientStatements* statements() const;
  std::uint64_t statements_version() const;

  TapRoute route_;
  std::uint64_t version_ = 0;  // of the set the mirrors come from
  const config::User& user_;
  const protocol::Params& params_;
  const backend::ClientStatements& rewritten_;  // the rewriter's, when there is one
  const backend::Rewriter* rewriter_;
  backend::StatementRegistry* registry_;
  std::unique_ptr<backend::ClientStatements> own_;  // when there is no rewriter
  std::uint64_t own_version_ = 0;
  std::size_t max_bytes_;
  std::uint32_t requests_ = 0;  // outstanding, while there is no Work
  bool session_mode_;
  bool open_ = false;           // a transaction has begun and not ended
  bool loose_ = false;          // frames were sent after the last Query or Sync
  Keep keep_ = Keep::no;        // whether the client keeps its server after this transaction
  std::unique_ptr<Work> work_;  // while the session has mirrors
};

}  // namespace pgdog::mirror
