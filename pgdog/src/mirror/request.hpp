#pragma once

// What a mirror replays and what it compares: sans-io, shared by the tap that builds requests,
// the queue that holds them and the worker that replays them.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "backend/prepared.hpp"
#include "protocol/params.hpp"

namespace pgdog::mirror {

using Clock = std::chrono::steady_clock;

// What one statement of a transaction returned, to compare the mirror with the primary.
struct StatementResult {
  char type = 'C';              // 'C' CommandComplete, 'I' empty query, 's' suspended, 'E' error
  std::string tag;              // the CommandComplete tag, or the SQLSTATE of an error
  std::uint64_t rows_hash = 0;  // compare = results: hash of the rows it returned
  bool operator==(const StatementResult&) const = default;
};

// A transaction's results, the first few kept inline: a mirrored transaction is built, replayed
// and compared with no allocation for them (most transactions through a pooler are one to four
// statements), where a vector cost an allocation and a free on each side per transaction.
using StatementResults = boost::container::small_vector<StatementResult, 4>;

// Hashes rows as they stream past, in pieces (FNV-1a: same bytes, same hash, in any pieces).
class RowHash {
 public:
  void update(std::string_view bytes) {
    for (unsigned char c : bytes) value_ = (value_ ^ c) * 1099511628211ULL;
  }
  std::uint64_t value() const { return value_; }
  void reset() { value_ = kOffset; }

 private:
  static constexpr std::uint64_t kOffset = 1469598103934665603ULL;
  std::uint64_t value_ = kOffset;
};

// One client transaction as the client sent it, for replay on the mirror.
struct Request {
  std::string frames;                              // the client's frames, in order
  std::shared_ptr<const protocol::Params> params;  // its session parameters at the time
  // Its named prepared statements at the time (transaction mode): a Bind in this transaction
  // may use a statement prepared in an earlier one.
  std::shared_ptr<const backend::ClientStatements> statements;
  std::string user;
  std::size_t syncs = 0;             // Query / Sync / FunctionCall frames: ReadyForQuery expected
  std::uint32_t primary_errors = 0;  // ErrorResponses the primary sent (recovered savepoints)
  // The primary's result for each statement, in order (empty with compare = off).
  StatementResults results;
  std::uint64_t primary_us = 0;  // time the primary spent on it, without the client's think time
  // The client keeps its server after it (transaction mode, pinned): the mirror connection
  // that replays it stays with the client's channel for the next one.
  bool keep_server = false;
  Clock::time_point created = Clock::now();
};
using RequestPtr = std::shared_ptr<const Request>;

}  // namespace pgdog::mirror
