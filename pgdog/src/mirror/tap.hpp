#pragma once

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/exchange.hpp"
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
class Tap : public backend::FrameTap {
 public:
  struct Target {
    std::shared_ptr<Mirror> mirror;
    std::shared_ptr<Channel> channel;
  };

  // `params` and `statements` are the session's live state; each is snapshotted when it
  // changes (`rewriter` tells when statements changed; null when the session does not rewrite).
  // Without a rewriter (session mode) the tap keeps the client's statements itself, interned in
  // `registry`, so a mirror worker can still prepare them wherever it replays, including a
  // mirror added later.
  Tap(TapRoute route, std::string user, const protocol::Params& params,
      const backend::ClientStatements& statements, const backend::Rewriter* rewriter,
      backend::StatementRegistry* registry, std::size_t max_transaction_bytes,
      bool session_mode = false);

  void client_frame(const protocol::Frame& frame) override;
  void server_frame(const protocol::Frame& frame) override;
  // Pieces of a row too large to arrive whole (compare = results hashes them too).
  void server_piece(char type, std::string_view bytes) override;

  bool wants_server_frame(char type) const override {
    // Without mirrors only the transaction boundaries matter.
    if (targets_.empty()) return type == 'Z';
    return type == 'C' || type == 'E' || type == 'Z' || type == 'G' ||
           (compare_tags_ && (type == 'I' || type == 's')) || (compare_rows_ && type == 'D');
  }
  bool wants_pieces() const override { return compare_rows_; }

 private:
  struct Segment {
    std::size_t end = 0;  // offset in buffer_ just past the Query/Sync closing the segment
    Traits traits;
  };
  // The first frame of a transaction: take the mirrors in force if the set moved.
  void begin();
  void refresh(const MirrorSet::Snapshot& snapshot);
  // The transaction ended with nothing sent after it.
  void end();
  void buffer(const protocol::Frame& frame);
  void finish_transaction(std::size_t end);
  RequestPtr make_request(std::size_t end);  // the transaction's first `end` buffered bytes
  void track_statement(const protocol::Frame& frame);
  Traits classify(const protocol::Frame& frame);

  TapRoute route_;
  std::uint64_t version_ = 0;  // of the set the targets come from
  bool session_mode_;
  bool open_ = false;   // a transaction has begun and not ended
  bool loose_ = false;  // frames were sent after the last Query or Sync
  std::vector<Target> targets_;
  std::string user_;
  const protocol::Params& params_;
  std::shared_ptr<const protocol::Params> snapshot_;
  const backend::ClientStatements& statements_live_;
  const backend::Rewriter* rewriter_;
  std::shared_ptr<const backend::ClientStatements> statements_snapshot_;
  std::uint64_t statements_version_ = ~std::uint64_t{0};
  backend::StatementRegistry* registry_;
  backend::ClientStatements own_;  // when there is no rewriter
  std::uint64_t own_version_ = 0;
  std::size_t max_bytes_;
  bool classify_ = false;      // some mirror filters by level
  bool compare_tags_ = false;  // some mirror compares results: collect the primary's
  bool compare_rows_ = false;  // ... including a hash of the rows

  std::string buffer_;
  std::deque<Segment> segments_;
  Traits open_traits_;                                  // frames after the last boundary
  std::unordered_map<std::string, Traits> statements_;  // prepared statement -> traits

  // The transaction being assembled.
  Traits traits_;
  std::size_t syncs_ = 0;
  std::uint32_t errors_ = 0;
  std::string last_tag_;
  bool explicit_ = false;  // the server reported 'T' or 'E' at some point
  bool copy_in_ = false;
  bool too_large_ = false;
  std::vector<StatementResult> results_;
  RowHash hash_;
  Clock::time_point busy_since_{};
  std::uint64_t busy_us_ = 0;
};

}  // namespace pgdog::mirror
