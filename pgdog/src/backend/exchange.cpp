#include "backend/exchange.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <set>

#include "protocol/session_sql.hpp"

namespace pgdog::backend {

namespace fe = protocol::fe;
namespace be = protocol::be;

namespace {

bool is_frontend_type(char t) {
  switch (t) {
    case fe::kQuery:
    case fe::kParse:
    case fe::kBind:
    case fe::kDescribe:
    case fe::kExecute:
    case fe::kClose:
    case fe::kSync:
    case fe::kFlush:
    case fe::kCopyData:
    case fe::kCopyDone:
    case fe::kCopyFail:
    case fe::kFunctionCall:
      return true;
    default:
      return false;
  }
}

std::string unknown_type(char type) {
  const bool printable = std::isprint(static_cast<unsigned char>(type)) != 0;
  return std::string("invalid frontend message type '") +
         (printable ? std::string(1, type) : std::to_string(type)) + "'";
}

// Calls `fn` on each frame of `batch`, which holds whole frames only.
template <class Fn>
void each_frame(std::string_view batch, std::size_t max_size, Fn&& fn) {
  while (!batch.empty()) {
    auto f = *protocol::next_frame(batch, max_size);
    batch.remove_prefix(f.size());
    fn(f);
  }
}

std::string literal(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

// What the settle query asks a server to learn what it holds for the client, in sql::Pin
// order: a count (or a boolean) each, non-zero when some is held.
constexpr std::array<std::string_view, protocol::sql::kPinKinds> kPinProbes = {
    // Every object in the temporary schema (a table, view, sequence, function, type, statistics
    // object) depends on that schema.
    "(SELECT count(*) FROM pg_catalog.pg_depend WHERE refclassid = "
    "'pg_catalog.pg_namespace'::pg_catalog.regclass AND refobjid = pg_catalog.pg_my_temp_schema())",
    "(SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = "
    "pg_catalog.pg_backend_pid())",
    "(SELECT count(*) FROM pg_catalog.pg_listening_channels())",
    "(SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql)",
    "(SELECT count(*) FROM pg_catalog.pg_cursors WHERE is_holdable)",
    // The role the connection logged in as, against the one SET SESSION AUTHORIZATION chose.
    "(SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid() "
    "AND usename <> session_user)",
};

// Every setting the session changed, as name \x01 value pairs joined by \x02 (characters no
// setting name or value holds).
constexpr std::string_view kSessionSettings =
    "(SELECT pg_catalog.string_agg(name || pg_catalog.chr(1) || pg_catalog.current_setting(name), "
    "pg_catalog.chr(2)) FROM pg_catalog.pg_settings WHERE source = 'session')";

}  // namespace

// What few clients have: the settings they changed in the open transaction, and the state that
// pins them to their server.
struct Exchange::Session {
  struct Touched {
    std::string name;
    bool reset = false;  // the last change was a RESET (or SET ... TO DEFAULT)
  };
  std::vector<Touched> touched;
  bool reset_all = false;
  bool reset_startup = false;  // a RESET of a parameter in `startup`: its value is due back
  bool committed = true;       // how the transaction whose settings are settled ended
  std::vector<std::string> reading;  // the names settle_query() asked for, in order
  // Server-only state (bits of 1 << sql::Pin): what the server said it holds, what statements
  // since then may have created, whether to ask again at the transaction's end, and whether
  // the settle query now running asks.
  std::uint8_t held = 0;
  std::uint8_t suspect = 0;
  bool probe = false;
  bool probing = false;
  // A DO block or CALL ran: every setting the session changed is read back (discover), and
  // the settle query now running does (discovering).
  bool discover = false;
  bool discovering = false;

  bool was_reset(std::string_view name) const {
    for (auto it = touched.rbegin(); it != touched.rend(); ++it) {
      if (protocol::iequals_ascii(it->name, name)) return it->reset;
    }
    return reset_all;
  }
};

Exchange::Exchange(config::PoolerMode mode, std::size_t max_message_size)
    : max_message_size_(max_message_size), mode_(mode) {}

Exchange::~Exchange() = default;

Exchange::Session& Exchange::session() {
  if (!session_) session_ = std::make_unique<Session>();
  return *session_;
}

void Exchange::set_startup(std::shared_ptr<const protocol::Params> startup) {
  startup_ = std::move(startup);
}

const protocol::Params& Exchange::startup() const {
  static const protocol::Params none;
  return startup_ ? *startup_ : none;
}

bool Exchange::pinned() const { return session_ && session_->held != 0; }

void Exchange::note(const protocol::sql::SessionEffects& e) {
  auto& s = session();
  // In session mode the server keeps the client's settings itself: only a RESET that must
  // return to a value the client sent at login needs the proxy.
  const bool session_mode = mode_ == config::PoolerMode::session;
  for (const auto& setting : e.settings) {
    if (setting.local) continue;  // gone with the transaction
    const bool back_to_startup = setting.reset && startup().get(setting.name);
    if (session_mode && !back_to_startup) continue;
    s.touched.push_back({setting.name, setting.reset});
    s.reset_startup = s.reset_startup || back_to_startup;
  }
  if (e.reset_all && (!session_mode || !startup().empty())) {
    s.reset_all = true;
    s.reset_startup = s.reset_startup || !startup().empty();
  }
  if (e.opaque && !session_mode) s.discover = true;
  if (mode_ != config::PoolerMode::transaction || !pinning_) return;
  // Whether state was created or ended is read back from the server when the transaction
  // ends (a lock may not be granted, a DROP may fail, a transaction may roll back).
  if (e.pin_kinds() == 0) return;
  s.probe = true;
  for (const auto& o : e.created) s.suspect |= protocol::sql::SessionEffects::bit(o.kind);
  if (e.locks > 0) s.suspect |= protocol::sql::SessionEffects::bit(protocol::sql::Pin::advisory_lock);
}

void Exchange::observe(const protocol::Frame& f) {
  std::string_view sql;
  std::optional<protocol::sql::Hints> hints;  // known when prepare() scanned the query
  if (f.type == fe::kQuery) {
    if (f.body.data() == scanned_.data() && f.body.size() == scanned_.size()) {
      if (scanned_hints_ == 0) return;  // no word of a session effect in it
      hints = scanned_hints_;
    }
    auto q = protocol::decode_query(f.body);
    if (!q) return;
    sql = *q;
  } else if (f.type == fe::kParse) {
    auto p = protocol::decode_parse(f.body);
    if (!p) return;
    sql = p->query;
  } else if (f.type == fe::kBind) {
    // A statement prepared once may run many times: what it does is noted at each run.
    auto b = protocol::decode_bind_names(f.body);
    if (!b || b->statement.empty() || !rewriter_) return;
    auto it = statements_.find(b->statement);
    if (it == statements_.end() || !it->second->affects_session) return;
    sql = it->second->query;
  } else {
    return;
  }
  const auto effects =
      hints ? protocol::sql::session_effects(sql, *hints) : protocol::sql::session_effects(sql);
  if (!effects.empty()) note(effects);
}

void Exchange::rewrite_statements(StatementRegistry& registry) {
  rewriter_ = std::make_unique<Rewriter>(registry, statements_);
  tracker_.set_statements(&statements_);
}

ClientBatch Exchange::read_client(std::string_view data) {
  ClientBatch batch;
  while (true) {
    auto f = protocol::next_frame(data.substr(batch.size), max_message_size_);
    if (!f) {
      if (f.error() != protocol::Error::need_more) {
        batch.violation = "invalid message: " + f.error().message();
      }
      return batch;
    }
    if (f->type == fe::kTerminate) {
      batch.terminate = true;
      return batch;
    }
    if (!is_frontend_type(f->type)) {
      batch.violation = unknown_type(f->type);
      return batch;
    }
    switch (f->type) {
      case fe::kQuery:
      case fe::kSync:
      case fe::kFunctionCall:
        batch.started = batch.started || pending_ == 0;
        ++pending_;
        unsynced_ = false;
        break;
      case fe::kCopyData:
        break;
      case fe::kCopyDone:
      case fe::kCopyFail:
        copy_in_ = false;  // the client has sent its part: the server answers next
        break;
      default:
        unsynced_ = true;
    }
    batch.size += f->size();
  }
}

std::string_view Exchange::prepare(std::string_view batch, ServerState& server) {
  scanned_ = {};
  if (!rewriter_) {
    each_frame(batch, max_message_size_, [&](const auto& f) {
      observe(f);
      if (tap_) tap_->client_frame(f);
    });
    return batch;
  }
  bool rewrite = false;
  // Whether the server will hold the client's unnamed statement when each frame reaches it.
  bool has_unnamed = server.prepared.unnamed() == rewriter_->unnamed_serial();
  each_frame(batch, max_message_size_, [&](const auto& f) {
    bool may_deallocate = true;
    if (f.type == fe::kQuery) {
      has_unnamed = false;
      // DEALLOCATE is one of the words every session effect needs: one scan serves the
      // rewriter and observe().
      scanned_ = f.body;
      scanned_hints_ = protocol::sql::hints_in(f.body);
      may_deallocate = scanned_hints_ != 0;
    }
    if (protocol::parses_unnamed(f)) has_unnamed = true;
    rewrite = rewrite || rewriter_->needs_rewrite(f, may_deallocate) ||
              rewriter_->needs_unnamed(f, has_unnamed);
  });
  if (!rewrite) {
    each_frame(batch, max_message_size_, [&](const auto& f) {
      observe(f);
      rewriter_->note_unnamed(f, server.prepared);
      tracker_.push_plain(f);
      if (tap_) tap_->client_frame(f);
    });
    return batch;
  }
  rewritten_.clear();
  each_frame(batch, max_message_size_, [&](const auto& f) { prepare_frame(f, server); });
  return rewritten_;
}

void Exchange::prepare_frame(const protocol::Frame& f, ServerState& server) {
  observe(f);
  rewriter_->note_unnamed(f, server.prepared);
  bool answered_here = false;
  if (!rewriter_->rewrite(f, server.prepared, rewritten_, tracker_)) {
    rewritten_.append(f.raw);
    tracker_.push_plain(f);
  } else if (rewriter_->answered_alone()) {
    answered_here = true;  // a DEALLOCATE through the unnamed statement: nothing to mirror
  } else if (f.type == fe::kQuery) {
    // DEALLOCATE of one of the client's statements: the proxy answers it, so no ReadyForQuery
    // will come from the server for it.
    answered_here = true;
    --pending_;
  }
  if (tap_ && !answered_here) tap_->client_frame(f);
}

std::optional<std::string_view> Exchange::answer_alone(std::string_view batch) {
  if (!answers_alone(batch)) return std::nullopt;
  rewritten_.clear();
  rewriter_->answer_alone(batch, max_message_size_, rewritten_);
  pending_ = 0;
  unsynced_ = false;
  return std::string_view(rewritten_);
}

std::string Exchange::fail(std::string_view batch, const protocol::ErrorSpec& error) {
  // As PostgreSQL answers a batch whose first message fails: one error, then nothing but
  // ReadyForQuery at each Sync; each simple Query fails on its own.
  std::string out;
  bool errored = false;
  each_frame(batch, max_message_size_, [&](const auto& f) {
    switch (f.type) {
      case fe::kQuery:
      case fe::kFunctionCall:
        protocol::write_error(out, error);
        protocol::write_ready_for_query(out, 'I');
        errored = false;
        break;
      case fe::kSync:
        protocol::write_ready_for_query(out, 'I');
        errored = false;
        break;
      case fe::kCopyData:
      case fe::kCopyDone:
      case fe::kCopyFail:
        break;
      default:
        if (!errored) protocol::write_error(out, error);
        errored = true;
    }
  });
  pending_ = 0;
  unsynced_ = false;
  return out;
}

void Exchange::attached() { scanner_ = protocol::StreamScanner(max_message_size_); }

ServerChunk Exchange::read_server(std::string_view data, ServerState& server) {
  ServerChunk chunk;
  // When answers must change (synthetic ones added, the proxy's own swallowed), the chunk is
  // assembled; otherwise the server's bytes go to the client as they are.
  assembled_.clear();
  std::size_t copied = 0;
  if (rewriter_) tracker_.flush_head(assembled_, server.status);
  bool assembling = !assembled_.empty();

  auto on_frame = [&](const protocol::Frame& f) {
    // A row concerns neither the answers' bookkeeping (no message ends with one) nor the
    // session; only a tap that compares rows wants it. Skipped, it is copied with the bytes
    // around it.
    if (f.type == be::kDataRow && (!rewriter_ || tracker_.passthrough()) &&
        !(tap_ && tap_->wants_server_frame(f.type))) {
      return true;
    }
    if (rewriter_) {
      bool forward = true;
      std::string before;
      std::string after;
      tracker_.on_frame(f, server.prepared, server.status, forward, before, after);
      if (!forward || !before.empty() || !after.empty() || assembling) {
        const auto at = static_cast<std::size_t>(f.raw.data() - data.data());
        assembled_.append(data.substr(copied, at - copied));
        assembled_ += before;
        if (forward) assembled_.append(f.raw);
        assembled_ += after;
        copied = at + f.raw.size();
        assembling = true;
      }
    }
    if (tap_ && f.type == be::kReadyForQuery) {
      using Keep = FrameTap::Keep;
      tap_->keeps_server(session_ && session_->probe ? Keep::unknown
                         : pinned()                  ? Keep::yes
                                                     : Keep::no);
    }
    if (tap_ && tap_->wants_server_frame(f.type)) tap_->server_frame(f);
    return on_server_frame(f, server, chunk.events);
  };
  auto done = tap_ && tap_->wants_pieces()
                  ? scanner_.scan(data, on_frame,
                                  [&](char type, std::string_view piece) {
                                    tap_->server_piece(type, piece);
                                  })
                  : scanner_.scan(data, on_frame);
  if (!done) {
    server.broken = true;
    chunk.lost = "server sent an invalid message: " + done.error().message();
    return chunk;
  }
  const auto bytes = data.substr(0, *done);
  if (assembling) assembled_.append(bytes.substr(copied));
  chunk.done = *done;
  chunk.out = assembling ? std::string_view(assembled_) : bytes;
  return chunk;
}

bool Exchange::on_server_frame(const protocol::Frame& f, ServerState& server,
                               ServerEvents& events) {
  switch (f.type) {
    case be::kReadyForQuery:
      on_ready(f, server, events);
      // Stop right after it when the server could go back to the pool now.
      return !releasable(server);
    case be::kErrorResponse:
      ++events.errors;
      if (errors_ < UINT16_MAX) ++errors_;
      if (auto e = protocol::decode_error(f.body); e && e->is_fatal()) server.broken = true;
      return true;
    case be::kCommandComplete:
      last_tag_ = f.body.starts_with("COMMIT") ? 'C' : f.body.starts_with("ROLLBACK") ? 'R' : 0;
      // The server's statements are gone; the client's names with them.
      if (drops_all_statements(f.body)) {
        server.prepared.clear();
        statements_.clear();
      }
      return true;
    case be::kParameterStatus:
      if (auto p = protocol::decode_parameter_status(f.body)) {
        server.params.set(p->name, p->value);
        if (protocol::is_session_parameter(p->name)) params_.set(p->name, p->value);
        server.synced_hash = params_.hash();
      }
      return true;
    case be::kCopyInResponse:
      copy_in_ = true;
      return true;
    default:
      return true;
  }
}

void Exchange::on_ready(const protocol::Frame& f, ServerState& server, ServerEvents& events) {
  const char status = f.body.size() == 1 ? f.body[0] : 'I';
  server.status = status;
  if (pending_ > 0) --pending_;
  copy_in_ = false;
  ++events.queries;
  events.request_done = events.request_done || pending_ == 0;
  if (session_ && (!session_->touched.empty() || session_->reset_all || session_->probe ||
                   session_->discover)) {
    // Read back at the transaction's end (what it left), or at once when a RESET must return
    // to the client's own value for the rest of the transaction.
    if (status == 'I') {
      session_->committed = committed(in_transaction_);
      settle_due_ = true;
    } else if (status == 'T' && session_->reset_startup) {
      settle_due_ = true;
    }
  }
  if (status == 'I') {
    last_tag_ = 0;
    errors_ = 0;
  }
  if (status == 'I') {
    ++events.transactions;
    events.ended = events.ended || in_transaction_;
    in_transaction_ = false;
  } else if (!in_transaction_) {
    in_transaction_ = true;
    events.began = true;
  }
}

std::string_view Exchange::answer_now(const ServerState& server) {
  assembled_.clear();
  tracker_.flush_head(assembled_, server.status);
  return assembled_;
}

bool Exchange::releasable(const ServerState& server) const {
  return mode_ == config::PoolerMode::transaction && clean(server) && !settle_due_ && !pinned();
}

bool Exchange::committed(bool explicit_block) const {
  // A block that recovered from errors with savepoints and then committed did change things.
  return last_tag_ != 'R' && (errors_ == 0 || (explicit_block && last_tag_ == 'C'));
}

std::string Exchange::settle_query(const ServerState& server) {
  auto& s = session();
  s.reading.clear();
  auto add = [&](std::string_view name) {
    if (name.find('\\') != std::string_view::npos) return;  // not a name anyone reads back
    for (const auto& n : s.reading) {
      if (protocol::iequals_ascii(n, name)) return;
    }
    s.reading.emplace_back(name);
  };
  const bool block = server.status != 'I';
  for (const auto& t : s.touched) {
    if (!block || (t.reset && startup().get(t.name))) add(t.name);
  }
  if (s.reset_all) {
    for (const auto& [name, value] : startup().items()) add(name);
    if (!block) {
      for (const auto& [name, value] : params_.items()) add(name);
      for (const auto& [name, value] : server.applied.items()) add(name);
    }
  }
  s.probing = s.probe && !block;
  s.discovering = s.discover && !block;
  if (s.reading.empty() && !s.probing && !s.discovering) return {};
  std::string sql = "SELECT ";
  for (std::size_t i = 0; i < s.reading.size(); ++i) {
    if (i > 0) sql += ", ";
    sql += "current_setting(" + literal(s.reading[i]) + ", true)";
  }
  if (s.probing) {
    for (const auto probe : kPinProbes) {
      if (sql.size() > 7) sql += ", ";
      sql += probe;
    }
  }
  if (s.discovering) {
    if (sql.size() > 7) sql += ", ";
    sql += kSessionSettings;
  }
  return sql;
}

void Exchange::settle_pins(const std::vector<std::optional<std::string>>& row) {
  auto& s = session();
  if (!s.probing) return;
  std::uint8_t held = 0;
  for (std::size_t k = 0; k < kPinProbes.size(); ++k) {
    const std::size_t i = s.reading.size() + k;
    if (i < row.size() && row[i] && *row[i] != "0") held |= static_cast<std::uint8_t>(1U << k);
  }
  hold(held);
}

void Exchange::hold(std::uint8_t held) {
  auto& s = session();
  new_pins_ |= static_cast<std::uint8_t>(held & ~s.held);
  dirty_ = dirty_ || held != 0;
  s.held = held;
  s.probe = false;
  s.probing = false;
  s.suspect = 0;
  if (tap_) tap_->pins_known(held != 0);
}

bool Exchange::settled(const std::vector<std::optional<std::string>>& row, ServerState& server) {
  auto& s = session();
  const bool block = server.status != 'I';
  const bool effective = block || s.committed;
  bool sync = false;
  for (std::size_t i = 0; i < s.reading.size(); ++i) {
    const std::string& name = s.reading[i];
    const std::optional<std::string> value = i < row.size() ? row[i] : std::nullopt;
    if (value) {
      server.params.set(name, *value);
    } else {
      server.params.erase(name);
    }
    if (s.was_reset(name) && effective) {
      // At the server's default now; the client's default is what it sent at login, if anything.
      server.applied.erase(name);
      if (const auto start = startup().get(name)) {
        params_.set(name, *start);
        sync = sync || !value || *value != *start;
      } else {
        params_.erase(name);
      }
    } else if (value) {
      if (effective || params_.get(name)) params_.set(name, *value);
      server.applied.set(name, *value);
    } else {
      params_.erase(name);
      server.applied.erase(name);
    }
  }
  if (s.discovering) {
    const std::size_t at = s.reading.size() + (s.probing ? kPinProbes.size() : 0);
    if (at < row.size() && row[at]) adopt_session_settings(*row[at], effective, server);
  }
  if (!block) {
    s.touched.clear();
    s.reset_all = false;
    s.discover = false;
    s.discovering = false;
  }
  s.reset_startup = false;
  settle_pins(row);
  settle_due_ = false;
  server.synced_hash = sync ? 0 : params_.hash();
  return sync;
}

void Exchange::adopt_session_settings(std::string_view list, bool effective, ServerState& server) {
  // What a DO block or CALL set is the client's as if it had been a SET (the names read back
  // one by one are already done).
  const auto& reading = session().reading;
  while (!list.empty()) {
    const auto end = list.find('\x02');
    const auto pair = list.substr(0, end);
    list = end == std::string_view::npos ? std::string_view() : list.substr(end + 1);
    const auto cut = pair.find('\x01');
    if (cut == std::string_view::npos) continue;
    const auto name = pair.substr(0, cut);
    const auto value = pair.substr(cut + 1);
    const bool read = std::any_of(reading.begin(), reading.end(), [&](const std::string& n) {
      return protocol::iequals_ascii(n, name);
    });
    if (read || protocol::is_read_only_parameter(name)) continue;
    server.params.set(name, value);
    server.applied.set(name, value);
    if (effective || params_.get(name)) params_.set(name, value);
  }
}

bool Exchange::clean(const ServerState& server) const {
  return pending_ == 0 && !unsynced_ && !copy_in_ && tracker_.idle() && server.status == 'I' &&
         !server.broken;
}

Exchange::Next Exchange::next(const ServerState* server, bool buffered) const {
  if (server == nullptr) return Next::client;
  if (tracker_.head_answerable()) return Next::answer;
  if (buffered) return Next::server;
  if (settle_due_ && pending_ == 0 && !unsynced_ && !copy_in_ && server->status != 'E' &&
      !server->broken) {
    return Next::settle;
  }
  if (releasable(*server)) return Next::release;
  // The server waits for COPY data: nothing comes from it before the client's CopyDone.
  if (copy_in_) return Next::client;
  if (pending_ > 0 && !unsynced_) return Next::server;
  // A batch without Sync may be answered piecemeal while the client sends more; session mode
  // relays asynchronous messages (NOTIFY) while the client is idle.
  if (unsynced_ || mode_ == config::PoolerMode::session) return Next::either;
  return Next::client;  // inside a transaction block: the client speaks next
}

void Exchange::detach(ServerState& server) {
  if (tracker_.take_poisoned()) server.broken = true;
  tracker_.clear();
}

void Exchange::settle_failed() {
  settle_due_ = false;
  if (session_) {
    session_->touched.clear();
    session_->reset_all = false;
    session_->reset_startup = false;
    session_->discover = false;
    // Unknown: what the statements may have created counts as held.
    if (session_->probing) hold(static_cast<std::uint8_t>(session_->held | session_->suspect));
  }
}

void Exchange::lose() {
  if (tap_ && session_ && session_->probe) tap_->pins_known(false);  // the server is gone
  settle_due_ = false;
  tracker_.clear();
  pending_ = 0;
  unsynced_ = false;
  copy_in_ = false;
  in_transaction_ = false;
}

}  // namespace pgdog::backend
