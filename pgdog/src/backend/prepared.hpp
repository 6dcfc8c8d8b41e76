#pragma once

// Named prepared statements through a transaction pooler.
//
// A client's named statement lives on whichever server the client happened to use, but in
// transaction mode its next transaction may run on another server. So the proxy keeps each
// client's statements itself and gives every distinct statement (same SQL, same parameter
// types) one global name. Before a client's Bind or Describe reaches a server, the statement is
// prepared there under its global name if that server lacks it. The server's answers are kept
// in step: ParseComplete for a Parse the proxy added is swallowed, and a client's Parse that
// the server did not need is answered by the proxy, in order.
//
// Everything here is sans-io: frames in, frames and bookkeeping out.

#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "protocol/frame.hpp"

namespace pgdog::backend {

// One distinct statement, shared by every client that prepared the same SQL.
struct Statement {
  std::string name;         // global name on servers: "__pgdog_<n>"
  std::string query;
  std::string param_types;  // raw: int16 count then int32 OIDs
  std::string parse;        // a ready Parse frame under the global name
};
using StatementPtr = std::shared_ptr<const Statement>;

// Interns statements by (query, parameter types). Thread-safe; entries die with their last
// user and are swept from the index lazily.
class StatementRegistry {
 public:
  StatementPtr intern(std::string_view query, std::string_view param_types);
  std::size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::weak_ptr<const Statement>> by_key_;
  std::uint64_t next_id_ = 1;
  std::size_t inserts_since_sweep_ = 0;
};

// The global names prepared on one server connection, least recently used first. Bounded:
// inserting past the limit evicts, and the caller closes the evicted statement on the server.
class PreparedCache {
 public:
  explicit PreparedCache(std::size_t limit = 1'000) : limit_(limit) {}
  bool contains(const std::string& name) const { return index_.contains(name); }
  void touch(const std::string& name);
  // Adds `name`; returns the name evicted to make room, if any.
  std::optional<std::string> insert(const std::string& name);
  void erase(const std::string& name);
  void clear();
  std::size_t size() const { return index_.size(); }
  void set_limit(std::size_t limit) { limit_ = limit; }

 private:
  std::size_t limit_;
  std::list<std::string> order_;  // front: least recently used
  std::unordered_map<std::string, std::list<std::string>::iterator> index_;
};

// A client's statements by the names it gave them.
using ClientStatements = std::unordered_map<std::string, StatementPtr>;

// What the proxy must do with the server's answers to the messages it sent, in order.
struct Expect {
  enum class Kind {
    forward,    // a client message: its answers go to the client
    swallow,    // a message the proxy added: its success answer is not the client's
    synthetic,  // a client message the proxy answered itself: send `bytes` in its place
    ready,      // a client Query answered by the proxy: CommandComplete + ReadyForQuery now
  };
  Kind kind = Kind::forward;
  char message = 0;        // frontend message type
  char describe = 0;       // 'S' or 'P' for Describe
  std::string bytes;       // synthetic answer
  std::string statement;   // global name a Parse put on the server (undone if skipped)
};

class ResponseTracker;

// Rewrites client frames for one server.
class Rewriter {
 public:
  // `base`, when given, is consulted for names `mine` does not have: a mirror worker replays
  // a transaction against the statements its client had when it committed, without copying
  // them.
  Rewriter(StatementRegistry& registry, ClientStatements& mine,
           const ClientStatements* base = nullptr)
      : registry_(registry), mine_(mine), base_(base) {}

  // Appends what to send for client frame `f` to `out`, and records the matching
  // expectations. Returns false when the frame needs no rewriting: the caller forwards it as is
  // and records a plain expectation with ResponseTracker::push_plain.
  bool rewrite(const protocol::Frame& f, PreparedCache& cache, std::string& out,
               ResponseTracker& tracker);

  // Whether `f` is a frame rewrite() would change (named statements, DEALLOCATE).
  static bool needs_rewrite(const protocol::Frame& f);

  // A Query that only deallocates ("DEALLOCATE [PREPARE] name | ALL"): handled here, never
  // sent. Returns the CommandComplete tag, or nothing if the query is anything else.
  std::optional<std::string> deallocate(std::string_view sql);

  // Bumped whenever the client's statements change (so snapshots are taken only then).
  std::uint64_t version() const { return version_; }

 private:
  void ensure_prepared(const StatementPtr& s, PreparedCache& cache, std::string& out,
                       ResponseTracker& tracker);
  StatementPtr find(const std::string& name) const;

  StatementRegistry& registry_;
  ClientStatements& mine_;
  const ClientStatements* base_;
  std::uint64_t version_ = 0;
};

// A FIFO on a vector: unlike std::deque it allocates nothing until used, which matters when
// every client session holds one.
template <class T>
class Fifo {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  void push_back(T v) { items_.push_back(std::move(v)); }
  void pop_front() {
    if (++head_ == items_.size()) clear();
  }
  void clear() {
    items_.clear();
    head_ = 0;
  }

 private:
  std::vector<T> items_;
  std::size_t head_ = 0;
};

// Walks the server's answers against the expectations.
class ResponseTracker {
 public:
  bool idle() const { return expect_.empty(); }
  // Nothing to rewrite pending: answers can be forwarded byte for byte.
  bool passthrough() const { return special_ == 0; }

  void push(Expect e);
  // A client message forwarded unchanged (no entry for messages the server never answers).
  void push_plain(const protocol::Frame& f);
  // Every pending entry is one the proxy answers itself: no server answer will come to
  // trigger them.
  bool only_synthetic() const { return !expect_.empty() && special_ == expect_.size(); }
  // The server's statements may differ from the cache: do not reuse the connection.
  bool take_poisoned() { return std::exchange(poisoned_, false); }
  void clear() {
    expect_.clear();
    special_ = 0;
  }

  // For each complete server frame: `forward` says whether the frame goes to the client;
  // `before` receives synthetic answers due before it, `after` those due right after it.
  // `cache` is corrected when a Parse the server skipped (after an error) did not happen.
  void on_frame(const protocol::Frame& f, PreparedCache& cache, char status, bool& forward,
                std::string& before, std::string& after);

  // Synthetic answers at the head that no longer wait for anything.
  void flush_head(std::string& out, char status);

 private:
  void pop_front();
  bool ends(const Expect& e, char type) const;
  void skip_to_sync(PreparedCache& cache);

  Fifo<Expect> expect_;
  std::size_t special_ = 0;  // entries that are not plain forwards
  bool poisoned_ = false;
};

}  // namespace pgdog::backend
