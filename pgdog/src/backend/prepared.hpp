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
#include <atomic>
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
  bool affects_session = false;  // it may SET, create server-only state, ... (sql::session_effects)

  // What servers said of it, so that a client preparing it again is answered without one:
  // whether a server accepted it, and its description (ParameterDescription, then
  // RowDescription or NoData) once a server described it. Shared across threads.
  void accepted() const { parsed_.store(true, std::memory_order_relaxed); }
  bool known() const { return parsed_.load(std::memory_order_relaxed); }
  void describe(std::string bytes) const;
  std::optional<std::string> description() const;

 private:
  mutable std::atomic<bool> parsed_{false};
  mutable std::mutex mutex_;
  mutable std::string description_;
};
using StatementPtr = std::shared_ptr<const Statement>;

// Interns statements by (query, parameter types). Thread-safe; entries die with their last
// user and are swept from the index lazily.
class StatementRegistry {
 public:
  StatementPtr intern(std::string_view query, std::string_view param_types);
  // The statement, if some client has it now; nothing is added.
  StatementPtr find(std::string_view query, std::string_view param_types) const;
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
  // Marks `name` the most recently used; false when the server lacks it.
  bool touch(const std::string& name);
  // Adds `name`; returns the name evicted to make room, if any.
  std::optional<std::string> insert(const std::string& name);
  void erase(const std::string& name);
  void clear();
  std::size_t size() const { return index_.size(); }
  void set_limit(std::size_t limit) { limit_ = limit; }
  // Names added so far (not counting those already there): tells whether a rewrite prepared
  // anything.
  std::uint64_t inserts() const { return inserts_; }

  // Whose unnamed statement the server holds: the serial of the client's unnamed Parse
  // (Rewriter), 0 for none known. A simple Query drops it, as does any Parse of another.
  std::uint64_t unnamed() const { return unnamed_; }
  void set_unnamed(std::uint64_t serial) { unnamed_ = serial; }

 private:
  std::size_t limit_;
  std::uint64_t unnamed_ = 0;
  std::uint64_t inserts_ = 0;
  std::list<std::string> order_;  // front: least recently used
  std::unordered_map<std::string, std::list<std::string>::iterator> index_;
};

// Hashes names as views, so that a name found in a message is looked up without a copy.
struct NameHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view name) const noexcept {
    return std::hash<std::string_view>{}(name);
  }
};

// A client's statements by the names it gave them.
using ClientStatements = std::unordered_map<std::string, StatementPtr, NameHash, std::equal_to<>>;

// What the proxy must do with the server's answers to the messages it sent, in order.
struct Expect {
  enum class Kind {
    forward,    // a client message: its answers go to the client
    swallow,    // a message the proxy added: its success answer is not the client's
    synthetic,  // a client message the proxy answered itself: send `bytes` in its place
    ready,      // a client Query answered by the proxy: CommandComplete + ReadyForQuery now
  };
  // What the rarer entries carry. Most entries are a client message forwarded as it is and
  // carry none: an entry stays small, and moves as a pointer when the tracker's queue grows.
  struct Detail {
    std::string bytes;      // synthetic answer
    std::string statement;  // global name a Parse put on the server (undone if skipped)
    std::string client;     // the client's name for that statement (a Parse that failed or
                            // was skipped never existed, as in PostgreSQL)
    StatementPtr learn;     // a Parse or Describe whose answer teaches the statement's Statement
  };
  Expect(Kind k, char m, char d) : kind(k), message(m), describe(d) {}
  Expect(Kind k, char m, char d, std::string bytes, std::string statement = {},
         std::string client = {}, StatementPtr learn = nullptr)
      : kind(k),
        message(m),
        describe(d),
        detail(std::make_unique<Detail>(
            Detail{std::move(bytes), std::move(statement), std::move(client), std::move(learn)})) {}

  Kind kind = Kind::forward;
  char message = 0;   // frontend message type
  char describe = 0;  // 'S' or 'P' for Describe
  std::unique_ptr<Detail> detail;
};

class ResponseTracker;

// Whether a CommandComplete (its body) says every prepared statement of the session is gone.
inline bool drops_all_statements(std::string_view command_complete) {
  return command_complete.starts_with("DISCARD ALL") ||
         command_complete.starts_with("DEALLOCATE ALL");
}

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

  // Whether `f` is a frame rewrite() would change (named statements, DEALLOCATE, and the
  // messages that use a DEALLOCATE the proxy answered through the unnamed statement).
  // `may_deallocate` false: the caller knows a Query's text has no DEALLOCATE.
  bool needs_rewrite(const protocol::Frame& f, bool may_deallocate = true) const;

  // A Query that only deallocates ("DEALLOCATE [PREPARE] name | ALL"): handled here, never
  // sent. Returns the CommandComplete tag, or nothing if the query is anything else.
  std::optional<std::string> deallocate(std::string_view sql);

  // Whether the frame last rewritten was answered by the proxy alone, with no effect on any
  // server (DEALLOCATE through the unnamed statement): there is nothing in it to mirror.
  bool answered_alone() const { return answered_alone_; }

  // A batch of Parse (of statements a server accepted before), Describe of statements whose
  // description is known, Close, Sync and Flush needs no server: a client that only prepares
  // never waits for the pool. can_answer_alone() says whether `batch` is one; answer_alone()
  // appends the answers PostgreSQL would give (the client is idle: no server is attached).
  bool can_answer_alone(std::string_view batch, std::size_t max_size) const;
  void answer_alone(std::string_view batch, std::size_t max_size, std::string& out);

  // Bumped whenever the client's statements change (so snapshots are taken only then).
  std::uint64_t version() const { return version_; }

  // Transaction mode: a client that parsed the unnamed statement in one request and binds or
  // describes it in a later one (psql's \gdesc, drivers that describe first) may get another
  // server by then. note_unnamed() sees every frame sent to `cache`'s server: it keeps the
  // client's last unnamed Parse and which server holds it; rewrite() sends that Parse again
  // before a Bind or Describe of the unnamed statement on a server that does not.
  void note_unnamed(const protocol::Frame& f, PreparedCache& cache);
  bool needs_unnamed(const protocol::Frame& f, bool server_has_it) const;
  std::uint64_t unnamed_serial() const { return unnamed_serial_; }

 private:
  void ensure_prepared(const StatementPtr& s, PreparedCache& cache, std::string& out,
                       ResponseTracker& tracker);
  // The statement the client calls `name`, or null; it stays alive while the client's
  // statements are left as they are.
  const StatementPtr* find(std::string_view name) const;

  bool rewrite_unnamed(const protocol::Frame& f, ResponseTracker& tracker);
  // A named Parse: prepared under the global name unless this server has it already.
  bool rewrite_parse(const protocol::Frame& f, PreparedCache& cache, std::string& out,
                     ResponseTracker& tracker);

  StatementRegistry& registry_;
  ClientStatements& mine_;
  const ClientStatements* base_;
  std::uint64_t version_ = 0;
  // An optional string that takes one pointer while empty, which it nearly always is: every
  // client session holds a Rewriter.
  class RareString {
   public:
    explicit operator bool() const { return value_ != nullptr; }
    const std::string& operator*() const { return *value_; }
    bool operator==(std::string_view other) const { return value_ && *value_ == other; }
    void reset() { value_.reset(); }
    // Keeps the string's memory: a client that parses the unnamed statement for every query
    // allocates once.
    void assign(std::string_view v) {
      if (value_) {
        value_->assign(v);
      } else {
        value_ = std::make_unique<std::string>(v);
      }
    }
    RareString& operator=(std::optional<std::string> v) {
      value_ = v ? std::make_unique<std::string>(std::move(*v)) : nullptr;
      return *this;
    }

   private:
    std::unique_ptr<std::string> value_;
  };
  // "DEALLOCATE name" sent as an unnamed Parse, Bind, Describe, Execute (psycopg does this):
  // the proxy answers each of those messages itself, since the server never had the client's
  // name. The tag Execute reports, and the portal Bind made of that statement.
  RareString unnamed_deallocate_;
  RareString deallocate_portal_;
  RareString unnamed_parse_;  // the client's last unnamed Parse, as it sent it ...
  std::uint64_t unnamed_serial_ = 0;
  bool unnamed_known_ = false;  // ... while it is the session's unnamed statement
  bool answered_alone_ = false;
};

// A FIFO on a vector: unlike std::deque it allocates nothing until used, which matters when
// every client session holds one.
template <class T>
class Fifo {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  const T& front() const { return items_[head_]; }
  auto begin() const { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  auto end() const { return items_.end(); }
  void push_back(T&& v) { items_.push_back(std::move(v)); }
  template <class... Args>
  void emplace_back(Args&&... args) {
    items_.emplace_back(std::forward<Args>(args)...);
  }
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
  // The pending expectations, oldest first (for inspection).
  const Fifo<Expect>& expect() const { return expect_; }

  void push(Expect&& e);
  // A client message forwarded unchanged (no entry for messages the server never answers).
  void push_plain(const protocol::Frame& f);
  // A client message forwarded rewritten, whose answers are the client's as they come (a Bind
  // under the global name): an entry without strings to build or move.
  void push_forward(char message) { expect_.emplace_back(Expect::Kind::forward, message, '\0'); }
  // The oldest pending entry is one the proxy answers itself: due now, whatever the server does.
  bool head_answerable() const {
    return !expect_.empty() && (expect_.front().kind == Expect::Kind::synthetic ||
                                expect_.front().kind == Expect::Kind::ready);
  }
  // The client's statements, so that a Parse that failed drops its name too.
  void set_statements(ClientStatements* mine) { mine_ = mine; }
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
  void undo_parse(const Expect& e, PreparedCache& cache);
  static void learn(Expect& e, const protocol::Frame& f);

  Fifo<Expect> expect_;
  std::size_t special_ = 0;  // entries that are not plain forwards
  bool poisoned_ = false;
  ClientStatements* mine_ = nullptr;
};

}  // namespace pgdog::backend
