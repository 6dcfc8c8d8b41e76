#pragma once

#include "backend/server_connection.hpp"
#include "protocol/params.hpp"

namespace pgdog::backend {

// Makes a pooled server's session parameters match what a client expects (SET what differs,
// RESET what an earlier client set and this one did not). Values the server normalizes
// ("iso" -> "ISO, MDY") are written back into `desired`, so the next comparison is a hash
// match. Used by client sessions and mirror workers alike.
Task<Result<void>> sync_parameters(ServerConnection& server, protocol::Params& desired);

}  // namespace pgdog::backend
