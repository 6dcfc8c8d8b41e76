#pragma once

#include <cstdint>

#include "backend/prepared.hpp"
#include "protocol/params.hpp"

namespace pgdog::backend {

// What the proxy knows of a server connection's session, apart from its socket: the part the
// exchange machine keeps in step with the server's answers. Sans-io, so tests build one freely.
struct ServerState {
  PreparedCache prepared;       // global statement names prepared on this server
  protocol::Params params;      // its session parameters as it reported them, plus ours
  protocol::Params applied;     // parameters SET by the proxy for some client
  std::uint64_t synced_hash = 0;  // hash of the client parameters it was last synced with
  char status = 'I';            // the last ReadyForQuery: 'I' idle, 'T' in a block, 'E' failed
  bool broken = false;          // no longer to be trusted: never reused
};

}  // namespace pgdog::backend
