#include "backend/prepared.hpp"

#include "protocol/session_sql.hpp"

#include <atomic>
#include <cctype>
#include <cstring>

#include "protocol/messages.hpp"
#include "protocol/session_sql.hpp"
#include "protocol/sql.hpp"

namespace pgdog::backend {

namespace {

std::string empty_message(char type) {
  std::string out;
  protocol::write_empty(out, type);
  return out;
}

// ASCII only, `word` in upper case (SQL keywords): no locale lookups, since every simple query
// goes through here.
bool iequals_prefix(std::string_view s, std::string_view word) {
  if (s.size() < word.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    const char c = s[i];
    const char upper = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
    if (upper != word[i]) return false;
  }
  return true;
}

bool icontains(std::string_view s, std::string_view word) {
  // memchr finds the candidates for the first letter (both cases) with vector instructions;
  // most queries have few or none.
  const char cases[2] = {word.front(), static_cast<char>(word.front() - 'A' + 'a')};
  for (char first : cases) {
    for (std::size_t at = 0; at + word.size() <= s.size();) {
      const void* hit = std::memchr(s.data() + at, first, s.size() - word.size() + 1 - at);
      if (hit == nullptr) break;
      at = static_cast<std::size_t>(static_cast<const char*>(hit) - s.data());
      if (iequals_prefix(s.substr(at), word)) return true;
      ++at;
    }
  }
  return false;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (std::isspace(static_cast<unsigned char>(s.front())) || s.front() == ';'))
    s.remove_prefix(1);
  while (!s.empty() && (std::isspace(static_cast<unsigned char>(s.back())) || s.back() == ';'))
    s.remove_suffix(1);
  return s;
}

}  // namespace

StatementPtr StatementRegistry::intern(std::string_view query, std::string_view param_types) {
  std::string key;
  key.reserve(query.size() + 1 + param_types.size());
  key.append(query).push_back('\0');
  key.append(param_types);
  std::lock_guard g(mutex_);
  if (auto it = by_key_.find(key); it != by_key_.end()) {
    if (auto live = it->second.lock()) return live;
  }
  auto s = std::make_shared<Statement>();
  s->name = "__pgdog_" + std::to_string(next_id_++);
  s->query = std::string(query);
  s->param_types = std::string(param_types);
  protocol::write_parse(s->parse, s->name, s->query, s->param_types);
  s->affects_session = !protocol::sql::session_effects(s->query).empty();
  StatementPtr shared = std::move(s);
  by_key_[std::move(key)] = shared;
  // Sweep dead entries now and then so the index does not grow with abandoned statements.
  if (++inserts_since_sweep_ >= 1024) {
    inserts_since_sweep_ = 0;
    std::erase_if(by_key_, [](const auto& kv) { return kv.second.expired(); });
  }
  return shared;
}

StatementPtr StatementRegistry::find(std::string_view query, std::string_view param_types) const {
  std::string key;
  key.reserve(query.size() + 1 + param_types.size());
  key.append(query).push_back('\0');
  key.append(param_types);
  std::lock_guard g(mutex_);
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : it->second.lock();
}

void Statement::describe(std::string bytes) const {
  std::lock_guard g(mutex_);
  description_ = std::move(bytes);
}

std::optional<std::string> Statement::description() const {
  std::lock_guard g(mutex_);
  if (description_.empty()) return std::nullopt;
  return description_;
}

std::size_t StatementRegistry::size() const {
  std::lock_guard g(mutex_);
  return by_key_.size();
}

bool PreparedCache::touch(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) return false;
  order_.splice(order_.end(), order_, it->second);
  return true;
}

std::optional<std::string> PreparedCache::insert(const std::string& name) {
  if (auto it = index_.find(name); it != index_.end()) {
    order_.splice(order_.end(), order_, it->second);
    return std::nullopt;
  }
  std::optional<std::string> evicted;
  if (limit_ > 0 && index_.size() >= limit_) {
    evicted = std::move(order_.front());
    index_.erase(*evicted);
    order_.pop_front();
  }
  order_.push_back(name);
  index_.emplace(name, std::prev(order_.end()));
  ++inserts_;
  return evicted;
}

void PreparedCache::erase(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) return;
  order_.erase(it->second);
  index_.erase(it);
}

void PreparedCache::clear() {
  order_.clear();
  index_.clear();
}

bool Rewriter::needs_rewrite(const protocol::Frame& f, bool may_deallocate) const {
  const auto body = f.body;
  if (unnamed_deallocate_ || deallocate_portal_) {
    switch (f.type) {
      case protocol::fe::kParse:
      case protocol::fe::kBind:
      case protocol::fe::kDescribe:
      case protocol::fe::kExecute:
      case protocol::fe::kClose:
      case protocol::fe::kQuery:
        return true;
      default:
        break;
    }
  }
  switch (f.type) {
    case protocol::fe::kParse:
      // An unnamed Parse only when it may be a DEALLOCATE of the client's statements.
      return !body.empty() && (body[0] != '\0' || icontains(body, "DEALLOCATE"));
    case protocol::fe::kBind: {
      const auto nul = body.find('\0');
      return nul != std::string_view::npos && nul + 1 < body.size() && body[nul + 1] != '\0';
    }
    case protocol::fe::kDescribe:
    case protocol::fe::kClose:
      return body.size() >= 2 && body[0] == 'S' && body[1] != '\0';
    case protocol::fe::kQuery:
      // Anywhere in the body, not just in front: deallocate() finds the statement after
      // comments and empty statements ("-- x\n; DEALLOCATE s"), and a batch we wrongly call
      // plain would send the client's name to a server that only knows the global one.
      return may_deallocate && icontains(body, "DEALLOCATE");
    default:
      return false;
  }
}

std::optional<std::string> Rewriter::deallocate(std::string_view sql) {
  auto statements = protocol::sql::split(sql);
  if (statements.size() != 1) return std::nullopt;
  std::string_view s = trim(statements[0]);
  if (!iequals_prefix(s, "DEALLOCATE")) return std::nullopt;
  s = trim(s.substr(10));
  if (iequals_prefix(s, "PREPARE") &&
      (s.size() == 7 || std::isspace(static_cast<unsigned char>(s[7])))) {
    s = trim(s.substr(7));
  }
  if (s.empty()) return std::nullopt;
  if (s.size() == 3 && iequals_prefix(s, "ALL")) {
    // The server must run it too (SQL PREPAREd statements live there); its CommandComplete
    // tells the exchange that the server's statements are gone.
    mine_.clear();
    ++version_;
    return std::nullopt;
  }
  std::string name;
  if (s.front() == '"') {
    // A quoted identifier keeps its case; "" inside is one quote.
    for (std::size_t i = 1; i < s.size(); ++i) {
      if (s[i] == '"') {
        if (i + 1 < s.size() && s[i + 1] == '"') {
          name.push_back('"');
          ++i;
          continue;
        }
        if (i + 1 != s.size()) return std::nullopt;
        break;
      }
      name.push_back(s[i]);
    }
  } else {
    for (char c : s) {
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$')) return std::nullopt;
      name.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  // A mirror replays against the statements its client had (`base_`): one of those is the
  // client's too, although it cannot be erased from there.
  const bool known = mine_.erase(name) > 0 || (base_ != nullptr && base_->contains(name));
  if (!known) return std::nullopt;  // not ours: let the server answer
  ++version_;
  return std::string("DEALLOCATE");
}

const StatementPtr* Rewriter::find(std::string_view name) const {
  if (auto it = mine_.find(name); it != mine_.end()) return &it->second;
  if (base_ != nullptr) {
    if (auto it = base_->find(name); it != base_->end()) return &it->second;
  }
  return nullptr;
}

void Rewriter::ensure_prepared(const StatementPtr& s, PreparedCache& cache, std::string& out,
                               ResponseTracker& tracker) {
  if (cache.touch(s->name)) return;
  if (auto evicted = cache.insert(s->name)) {
    protocol::write_describe(out, protocol::fe::kClose, 'S', *evicted);
    tracker.push(Expect{Expect::Kind::swallow, protocol::fe::kClose, 0, {}, *evicted});
  }
  out += s->parse;
  tracker.push(Expect{Expect::Kind::swallow, protocol::fe::kParse, 0, {}, s->name, {}, s});
}

bool Rewriter::rewrite_unnamed(const protocol::Frame& f, ResponseTracker& tracker) {
  auto synthetic = [&](char message, std::string bytes) {
    tracker.push(Expect{Expect::Kind::synthetic, message, 0, std::move(bytes)});
    answered_alone_ = true;
    return true;
  };
  switch (f.type) {
    case protocol::fe::kParse: {
      // A new unnamed statement replaces the previous one, whatever it was.
      unnamed_deallocate_.reset();
      auto p = protocol::decode_parse(f.body);
      if (!p || !p->name.empty() || p->param_types.size() > 2) return false;
      unnamed_deallocate_ = deallocate(p->query);
      if (!unnamed_deallocate_) return false;
      return synthetic(protocol::fe::kParse, empty_message(protocol::be::kParseComplete));
    }
    case protocol::fe::kBind: {
      auto b = protocol::decode_bind_names(f.body);
      if (!b) return false;
      if (deallocate_portal_ == b->portal) deallocate_portal_.reset();
      if (!b->statement.empty() || !unnamed_deallocate_) return false;
      deallocate_portal_ = std::string(b->portal);
      return synthetic(protocol::fe::kBind, empty_message(protocol::be::kBindComplete));
    }
    case protocol::fe::kDescribe: {
      auto d = protocol::decode_describe(f.body);
      if (!d) return false;
      std::string bytes;
      if (d->kind == 'S' && d->name.empty() && unnamed_deallocate_) {
        bytes.append("t\0\0\0\x06\0\0", 7);  // ParameterDescription: no parameters
      } else if (d->kind != 'P' || deallocate_portal_ != d->name) {
        return false;
      }
      protocol::write_empty(bytes, protocol::be::kNoData);
      tracker.push(Expect{Expect::Kind::synthetic, protocol::fe::kDescribe, d->kind, std::move(bytes)});
      answered_alone_ = true;
      return true;
    }
    case protocol::fe::kExecute: {
      auto e = protocol::decode_execute(f.body);
      if (!e || deallocate_portal_ != e->portal) return false;
      std::string bytes;
      protocol::write_command_complete(bytes, *unnamed_deallocate_);
      return synthetic(protocol::fe::kExecute, std::move(bytes));
    }
    case protocol::fe::kClose: {
      auto c = protocol::decode_describe(f.body);
      if (!c) return false;
      if (c->kind == 'S' && c->name.empty() && unnamed_deallocate_) {
        unnamed_deallocate_.reset();
      } else if (c->kind == 'P' && deallocate_portal_ == c->name) {
        deallocate_portal_.reset();
      } else {
        return false;
      }
      return synthetic(protocol::fe::kClose, empty_message(protocol::be::kCloseComplete));
    }
    case protocol::fe::kQuery:
      // A simple query replaces the unnamed statement and portal.
      unnamed_deallocate_.reset();
      deallocate_portal_.reset();
      return false;
    default:
      return false;
  }
}

namespace {

// Calls `fn(frame)` for each frame of `batch` until it returns false; false if one did.
template <class Fn>
bool all_frames(std::string_view batch, std::size_t max_size, Fn&& fn) {
  while (!batch.empty()) {
    auto f = protocol::next_frame(batch, max_size);
    if (!f) return false;
    batch.remove_prefix(f->size());
    if (!fn(*f)) return false;
  }
  return true;
}

}  // namespace

bool Rewriter::can_answer_alone(std::string_view batch, std::size_t max_size) const {
  if (unnamed_deallocate_ || deallocate_portal_ || batch.empty()) return false;
  switch (batch.front()) {  // most batches begin with a Query, a Bind or an Execute: not these
    case protocol::fe::kParse:
    case protocol::fe::kDescribe:
    case protocol::fe::kClose:
    case protocol::fe::kSync:
    case protocol::fe::kFlush:
      break;
    default:
      return false;
  }
  ClientStatements parsed;  // in this batch
  bool any = false;
  const bool ok = all_frames(batch, max_size, [&](const protocol::Frame& f) {
    switch (f.type) {
      case protocol::fe::kParse: {
        auto p = protocol::decode_parse(f.body);
        if (!p || p->name.empty()) return false;
        auto s = registry_.find(p->query, p->param_types);
        if (!s || !s->known()) return false;
        parsed[std::string(p->name)] = std::move(s);
        return any = true;
      }
      case protocol::fe::kDescribe: {
        auto d = protocol::decode_describe(f.body);
        if (!d || d->kind != 'S' || d->name.empty()) return false;
        auto it = parsed.find(d->name);
        const StatementPtr* s = it != parsed.end() ? &it->second : find(d->name);
        return s != nullptr && (*s)->description().has_value();
      }
      case protocol::fe::kClose:
      case protocol::fe::kSync:
      case protocol::fe::kFlush:
        return true;
      default:
        return false;
    }
  });
  return ok && any;
}

void Rewriter::answer_alone(std::string_view batch, std::size_t max_size, std::string& out) {
  all_frames(batch, max_size, [&](const protocol::Frame& f) {
    switch (f.type) {
      case protocol::fe::kParse: {
        auto p = protocol::decode_parse(f.body);
        mine_[std::string(p->name)] = registry_.intern(p->query, p->param_types);
        ++version_;
        protocol::write_empty(out, protocol::be::kParseComplete);
        break;
      }
      case protocol::fe::kDescribe:
        out += *(*find(protocol::decode_describe(f.body)->name))->description();
        break;
      case protocol::fe::kClose:
        if (auto c = protocol::decode_describe(f.body); c && c->kind == 'S') {
          if (mine_.erase(std::string(c->name)) > 0) ++version_;
        }
        protocol::write_empty(out, protocol::be::kCloseComplete);
        break;
      case protocol::fe::kSync:
        protocol::write_ready_for_query(out, 'I');
        break;
      default:
        break;
    }
    return true;
  });
}

bool Rewriter::rewrite_parse(const protocol::Frame& f, PreparedCache& cache, std::string& out,
                             ResponseTracker& tracker) {
  auto p = protocol::decode_parse(f.body);
  if (!p || p->name.empty()) return false;
  auto s = registry_.intern(p->query, p->param_types);
  mine_[std::string(p->name)] = s;
  ++version_;
  if (cache.touch(s->name)) {
    tracker.push(Expect{Expect::Kind::synthetic, protocol::fe::kParse, 0,
                        empty_message(protocol::be::kParseComplete), {}});
    return true;
  }
  if (auto evicted = cache.insert(s->name)) {
    protocol::write_describe(out, protocol::fe::kClose, 'S', *evicted);
    tracker.push(Expect{Expect::Kind::swallow, protocol::fe::kClose, 0, {}, *evicted});
  }
  out += s->parse;
  tracker.push(
      Expect{Expect::Kind::forward, protocol::fe::kParse, 0, {}, s->name, std::string(p->name), s});
  return true;
}

namespace {

std::atomic<std::uint64_t> g_unnamed_serial{0};

}  // namespace

void Rewriter::note_unnamed(const protocol::Frame& f, PreparedCache& cache) {
  if (f.type == protocol::fe::kQuery) {
    // A simple Query drops the session's unnamed statement, the client's and the server's.
    unnamed_known_ = false;
    cache.set_unnamed(0);
  } else if (f.type == protocol::fe::kClose && f.body.size() >= 2 && f.body[0] == 'S' &&
             f.body[1] == '\0') {
    unnamed_known_ = false;
  } else if (protocol::parses_unnamed(f)) {
    if (icontains(f.body, "DEALLOCATE")) {
      unnamed_known_ = false;  // answered by the proxy (rewrite_unnamed), never sent as is
      return;
    }
    unnamed_parse_.assign(f.raw);
    unnamed_known_ = true;
    unnamed_serial_ = g_unnamed_serial.fetch_add(1, std::memory_order_relaxed) + 1;
    cache.set_unnamed(unnamed_serial_);
  }
}

bool Rewriter::needs_unnamed(const protocol::Frame& f, bool server_has_it) const {
  return unnamed_known_ && !server_has_it && protocol::uses_unnamed(f);
}

bool Rewriter::rewrite(const protocol::Frame& f, PreparedCache& cache, std::string& out,
                       ResponseTracker& tracker) {
  answered_alone_ = false;
  if (needs_unnamed(f, cache.unnamed() == unnamed_serial_)) {
    // Its answer (ParseComplete) is not the client's; an error is, as the Bind's would be.
    out += *unnamed_parse_;
    tracker.push(Expect{Expect::Kind::swallow, protocol::fe::kParse, 0, {}, {}});
    cache.set_unnamed(unnamed_serial_);
    out.append(f.raw);
    tracker.push_plain(f);
    return true;
  }
  // Only an unnamed Parse that may be a DEALLOCATE, or the messages after one, go this way.
  if (unnamed_deallocate_ || deallocate_portal_ ||
      (protocol::parses_unnamed(f) &&
       icontains(f.body, "DEALLOCATE"))) {
    if (rewrite_unnamed(f, tracker)) return true;
  }
  switch (f.type) {
    case protocol::fe::kParse:
      return rewrite_parse(f, cache, out, tracker);
    case protocol::fe::kBind: {
      auto b = protocol::decode_bind_names(f.body);
      if (!b || b->statement.empty()) return false;
      const StatementPtr* s = find(b->statement);
      if (s == nullptr) return false;  // the server will say it does not exist
      ensure_prepared(*s, cache, out, tracker);
      protocol::write_bind(out, b->portal, (*s)->name, b->rest);
      tracker.push_forward(protocol::fe::kBind);
      return true;
    }
    case protocol::fe::kDescribe: {
      if (f.body.empty() || f.body[0] != 'S') return false;  // a portal: most Describes
      auto d = protocol::decode_describe(f.body);
      if (!d || d->name.empty()) return false;
      const StatementPtr* s = find(d->name);
      if (s == nullptr) return false;
      ensure_prepared(*s, cache, out, tracker);
      protocol::write_describe(out, protocol::fe::kDescribe, 'S', (*s)->name);
      tracker.push(Expect{Expect::Kind::forward, protocol::fe::kDescribe, 'S', {}, {}, {}, *s});
      return true;
    }
    case protocol::fe::kClose: {
      auto c = protocol::decode_describe(f.body);
      if (!c || c->kind != 'S' || c->name.empty()) return false;
      // The global statement stays on servers for other clients; only the name goes.
      if (mine_.erase(std::string(c->name)) > 0) ++version_;
      tracker.push(Expect{Expect::Kind::synthetic, protocol::fe::kClose, 0,
                              empty_message(protocol::be::kCloseComplete), {}});
      return true;
    }
    case protocol::fe::kQuery: {
      auto sql = protocol::decode_query(f.body);
      if (!sql) return false;
      auto tag = deallocate(*sql);
      if (!tag) return false;
      std::string bytes;
      protocol::write_command_complete(bytes, *tag);
      tracker.push(Expect{Expect::Kind::ready, protocol::fe::kQuery, 0, std::move(bytes), {}});
      return true;
    }
    default:
      return false;
  }
}

void ResponseTracker::push_plain(const protocol::Frame& f) {
  switch (f.type) {
    case protocol::fe::kFlush:
    case protocol::fe::kCopyData:
    case protocol::fe::kCopyDone:
    case protocol::fe::kCopyFail:
      return;  // no answer of their own
    case protocol::fe::kDescribe:
      expect_.emplace_back(Expect::Kind::forward, f.type, f.body.empty() ? 'S' : f.body[0]);
      return;
    default:
      expect_.emplace_back(Expect::Kind::forward, f.type, '\0');
  }
}

void ResponseTracker::push(Expect&& e) {
  if (e.kind != Expect::Kind::forward) ++special_;
  expect_.push_back(std::move(e));
}

void ResponseTracker::pop_front() {
  if (expect_.front().kind != Expect::Kind::forward) --special_;
  expect_.pop_front();
}

bool ResponseTracker::ends(const Expect& e, char type) const {
  switch (e.message) {
    case protocol::fe::kQuery:
    case protocol::fe::kSync:
    case protocol::fe::kFunctionCall:
      return type == protocol::be::kReadyForQuery;
    case protocol::fe::kParse:
      return type == protocol::be::kParseComplete;
    case protocol::fe::kBind:
      return type == protocol::be::kBindComplete;
    case protocol::fe::kClose:
      return type == protocol::be::kCloseComplete;
    case protocol::fe::kDescribe:
      return type == protocol::be::kRowDescription || type == protocol::be::kNoData;
    case protocol::fe::kExecute:
      return type == protocol::be::kCommandComplete || type == protocol::be::kEmptyQueryResponse ||
             type == protocol::be::kPortalSuspended;
    default:
      return false;
  }
}

void ResponseTracker::flush_head(std::string& out, char status) {
  while (!expect_.empty()) {
    auto& head = expect_.front();
    if (head.kind == Expect::Kind::synthetic) {
      out += head.detail->bytes;
    } else if (head.kind == Expect::Kind::ready) {
      out += head.detail->bytes;
      protocol::write_ready_for_query(out, status);
    } else {
      return;
    }
    pop_front();
  }
}

void ResponseTracker::undo_parse(const Expect& e, PreparedCache& cache) {
  if (e.message != protocol::fe::kParse || !e.detail || e.detail->statement.empty()) return;
  const auto& d = *e.detail;
  cache.erase(d.statement);
  // The client's name goes too, unless a later Parse already reused it.
  if (mine_ != nullptr && !d.client.empty()) {
    auto it = mine_->find(d.client);
    if (it != mine_->end() && it->second->name == d.statement) mine_->erase(it);
  }
}

void ResponseTracker::skip_to_sync(PreparedCache& cache) {
  // After an error the server ignores everything up to Sync: nothing it skipped happened.
  while (!expect_.empty() && expect_.front().message != protocol::fe::kSync) {
    auto& e = expect_.front();
    undo_parse(e, cache);
    if (e.kind == Expect::Kind::swallow && e.message == protocol::fe::kClose) {
      // The evicted statement is still on the server but no longer in the cache: preparing
      // it again would fail, so the connection must not be reused.
      poisoned_ = true;
    }
    pop_front();
  }
}

void ResponseTracker::learn(Expect& e, const protocol::Frame& f) {
  // A server accepted the statement, or described it: the next client that prepares it is
  // answered from this. (The Describe's ParameterDescription waits in `bytes` for the rest.)
  auto& d = *e.detail;
  if (e.message == protocol::fe::kParse && f.type == protocol::be::kParseComplete) {
    d.learn->accepted();
  } else if (e.message == protocol::fe::kDescribe) {
    if (f.type == protocol::be::kParameterDescription) {
      d.bytes.assign(f.raw);
    } else if ((f.type == protocol::be::kRowDescription || f.type == protocol::be::kNoData) &&
               !d.bytes.empty()) {
      d.learn->describe(d.bytes + std::string(f.raw));
    }
  }
}

void ResponseTracker::on_frame(const protocol::Frame& f, PreparedCache& cache, char status,
                               bool& forward, std::string& before, std::string& after) {
  forward = true;
  if (special_ > 0) flush_head(before, status);
  if (expect_.empty()) return;
  const char type = f.type;
  // Asynchronous messages belong to no request.
  if (type == protocol::be::kNoticeResponse || type == protocol::be::kNotificationResponse ||
      type == protocol::be::kParameterStatus) {
    return;
  }
  auto& head = expect_.front();
  const bool extended = head.message != protocol::fe::kQuery &&
                        head.message != protocol::fe::kFunctionCall &&
                        head.message != protocol::fe::kSync;
  if (type == protocol::be::kErrorResponse && extended) {
    // The client sees the error even when it came from a message the proxy added: its own
    // Bind or Describe could not run because of it.
    undo_parse(head, cache);
    pop_front();
    skip_to_sync(cache);
    return;
  }
  if (head.detail && head.detail->learn) learn(head, f);
  if (ends(head, type)) {
    if (head.kind == Expect::Kind::swallow) forward = false;
    pop_front();
    if (special_ > 0) flush_head(after, status);
  }
}

}  // namespace pgdog::backend
