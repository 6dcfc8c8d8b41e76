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

}  // namespace

// What few clients have: the parameters they sent at login, the settings they changed in the
// open transaction, and the state that pins them to their server.
struct Exchange::Session {
  struct Touched {
    std::string name;
    bool reset = false;  // the last change was a RESET (or SET ... TO DEFAULT)
  };
  protocol::Params startup;
  std::vector<Touched> touched;
  bool reset_all = false;
  bool reset_startup = false;  // a RESET of a parameter in `startup`: its value is due back
  bool committed = true;       // how the transaction whose settings are settled ended
  std::vector<std::string> reading;  // the names settle_query() asked for, in order
  std::array<std::set<std::string>, protocol::sql::kPinKinds> objects;
  int locks = 0;

  bool was_reset(std::string_view name) const {
    for (auto it = touched.rbegin(); it != touched.rend(); ++it) {
      if (protocol::iequals_ascii(it->name, name)) return it->reset;
    }
    return reset_all;
  }
};

Exchange::Exchange(config::PoolerMode mode, std::size_t max_message_size)
    : mode_(mode), max_message_size_(max_message_size) {}

Exchange::~Exchange() = default;

Exchange::Session& Exchange::session() {
  if (!session_) session_ = std::make_unique<Session>();
  return *session_;
}

void Exchange::set_startup(const protocol::Params& startup) {
  if (!startup.empty()) session().startup = startup;
}

bool Exchange::pinned() const {
  if (!session_) return false;
  if (session_->locks > 0) return true;
  return std::any_of(session_->objects.begin(), session_->objects.end(),
                     [](const auto& names) { return !names.empty(); });
}

void Exchange::note(const protocol::sql::SessionEffects& e) {
  auto& s = session();
  // In session mode the server keeps the client's settings itself: only a RESET that must
  // return to a value the client sent at login needs the proxy.
  const bool session_mode = mode_ == config::PoolerMode::session;
  for (const auto& setting : e.settings) {
    if (setting.local) continue;  // gone with the transaction
    const bool startup = setting.reset && s.startup.get(setting.name);
    if (session_mode && !startup) continue;
    s.touched.push_back({setting.name, setting.reset});
    s.reset_startup = s.reset_startup || startup;
  }
  if (e.reset_all && (!session_mode || !s.startup.empty())) {
    s.reset_all = true;
    s.reset_startup = s.reset_startup || !s.startup.empty();
  }
  if (mode_ != config::PoolerMode::transaction || !pinning_) return;
  using protocol::sql::Pin;
  using protocol::sql::SessionEffects;
  auto pin = [&](Pin kind) {
    dirty_ = true;
    new_pins_ |= SessionEffects::bit(kind);
  };
  for (const auto& o : e.created) {
    const bool was = !s.objects[static_cast<std::size_t>(o.kind)].empty();
    if (!was) pin(o.kind);
    s.objects[static_cast<std::size_t>(o.kind)].insert(o.name);
  }
  for (const auto& o : e.dropped) s.objects[static_cast<std::size_t>(o.kind)].erase(o.name);
  if (e.locks > 0 && s.locks == 0) pin(Pin::advisory_lock);
  s.locks = std::max(0, s.locks + e.locks);
  for (std::size_t k = 0; k < protocol::sql::kPinKinds; ++k) {
    if ((e.cleared & (1U << k)) != 0) s.objects[k].clear();
  }
  if ((e.cleared & SessionEffects::bit(Pin::advisory_lock)) != 0) s.locks = 0;
}

void Exchange::observe(const protocol::Frame& f) {
  std::string_view sql;
  if (f.type == fe::kQuery) {
    auto q = protocol::decode_query(f.body);
    if (!q) return;
    sql = *q;
  } else if (f.type == fe::kParse) {
    auto p = protocol::decode_parse(f.body);
    if (!p) return;
    sql = p->query;
  } else {
    return;
  }
  const auto effects = protocol::sql::session_effects(sql);
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
  if (!rewriter_) {
    each_frame(batch, max_message_size_, [&](const auto& f) {
      observe(f);
      if (tap_) tap_->client_frame(f);
    });
    return batch;
  }
  bool rewrite = false;
  each_frame(batch, max_message_size_,
             [&](const auto& f) { rewrite = rewrite || rewriter_->needs_rewrite(f); });
  if (!rewrite) {
    each_frame(batch, max_message_size_, [&](const auto& f) {
      observe(f);
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
  if (!rewriter_ || !rewriter_->can_answer_alone(batch, max_message_size_)) return std::nullopt;
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
  if (session_ && (!session_->touched.empty() || session_->reset_all)) {
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
    if (!block || (t.reset && s.startup.get(t.name))) add(t.name);
  }
  if (s.reset_all) {
    for (const auto& [name, value] : s.startup.items()) add(name);
    if (!block) {
      for (const auto& [name, value] : params_.items()) add(name);
      for (const auto& [name, value] : server.applied.items()) add(name);
    }
  }
  if (s.reading.empty()) return {};
  std::string sql = "SELECT ";
  for (std::size_t i = 0; i < s.reading.size(); ++i) {
    if (i > 0) sql += ", ";
    sql += "current_setting(" + literal(s.reading[i]) + ", true)";
  }
  return sql;
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
      if (const auto start = s.startup.get(name)) {
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
  if (!block) {
    s.touched.clear();
    s.reset_all = false;
  }
  s.reset_startup = false;
  settle_due_ = false;
  server.synced_hash = sync ? 0 : params_.hash();
  return sync;
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
  }
}

void Exchange::lose() {
  settle_due_ = false;
  tracker_.clear();
  pending_ = 0;
  unsynced_ = false;
  copy_in_ = false;
  in_transaction_ = false;
}

}  // namespace pgdog::backend
