#pragma once

// One request's replay on a mirror server, in parts: getting a lease, preparing the request for
// that server, the exchange (write it, read the answers through a ReplayReader), all under the
// mirror's timeout. The outcome is left in end() for the mirror to record.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backend/pool.hpp"
#include "backend/prepared.hpp"
#include "config/config.hpp"
#include "mirror/channel.hpp"
#include "mirror/replay_reader.hpp"
#include "mirror/request.hpp"
#include "stats/mirror_stats.hpp"

namespace pgdog::mirror {

struct ReplayEnd {
  stats::MirrorOutcome outcome = stats::MirrorOutcome::success;
  std::string reason;                    // why it failed
  std::vector<StatementResult> results;  // the mirror's, to compare (compare != off)
  std::uint64_t mirror_us = 0;           // the exchange's time on the mirror server
};

class Replay {
 public:
  Replay(const Request& request, Channel& channel, std::shared_ptr<backend::Pool> pool,
         backend::StatementRegistry& registry, config::Millis timeout,
         config::MirrorCompare compare, std::string_view cluster);

  // Replays the request. `io` runs the cancel request sent when it times out.
  Task<void> run(Executor io);
  ReplayEnd& end() { return end_; }

 private:
  Task<void> exchange();
  Task<bool> lease();
  // The parts after lease() work on the leased server.
  Task<bool> prepare();
  Task<bool> sync_parameters();
  void rewrite();
  Task<bool> read(ReplayReader& reader);
  void conclude(ReplayReader& reader);
  Task<void> watchdog(Executor io);
  void time_out();
  void keep_lease();
  void fail(backend::ServerConnection* server, std::string why);

  const Request& request_;
  Channel& channel_;
  std::shared_ptr<backend::Pool> pool_;
  config::Millis timeout_;
  config::MirrorCompare compare_;
  std::string_view cluster_;
  // A pinned session replays verbatim: its statements live on its own mirror connection under
  // the client's names, as on the primary. Otherwise named statements are prepared on the
  // mirror server the way the primary path does it, and the server's answers are followed so
  // its statement cache stays exact.
  const bool track_;
  backend::ClientStatements overlay_;
  backend::Rewriter rewriter_;
  backend::ResponseTracker tracker_;
  std::string rewritten_;
  std::string_view to_send_;
  std::size_t ready_ = 0;  // ReadyForQuery messages the server will send
  backend::Lease lease_;
  ReplayEnd end_;
  bool sent_ = false;       // the request went to the mirror server
  bool timed_out_ = false;  // mirror_timeout passed first
};

}  // namespace pgdog::mirror
