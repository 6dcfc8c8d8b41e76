#include "mirror/tap.hpp"

#include <algorithm>
#include <deque>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "protocol/messages.hpp"
#include "protocol/sql.hpp"

namespace pgdog::mirror {

namespace {

Traits traits_of(std::string_view sql) {
  Traits t;
  for (auto statement : protocol::sql::split(sql)) {
    const auto kind = protocol::sql::classify(statement);
    t.dml = t.dml || kind == protocol::sql::Kind::dml;
    t.ddl = t.ddl || kind == protocol::sql::Kind::ddl;
  }
  return t;
}

void merge(Traits& into, Traits from) {
  into.dml = into.dml || from.dml;
  into.ddl = into.ddl || from.ddl;
}

bool is_request(char type) {
  return type == protocol::fe::kQuery || type == protocol::fe::kSync ||
         type == protocol::fe::kFunctionCall;
}

}  // namespace

// Transactions assembled for the session's mirrors: the frames kept, grouped by the
// ReadyForQuery each Query/Sync will produce, and what the primary answered.
class Tap::Work {
 public:
  explicit Work(Tap& tap) : tap_(tap) {}

  // The session's mirrors from now on; one it already feeds keeps its channel, and with it the
  // client's order.
  void set_targets(std::vector<std::shared_ptr<Mirror>> mirrors);
  void client_frame(const protocol::Frame& f);
  // False for a ReadyForQuery that answers none of the client's requests.
  bool server_frame(const protocol::Frame& f);
  void server_piece(char type, std::string_view bytes) {
    if (type == protocol::be::kDataRow) hash_.update(bytes);
  }
  bool wants_server_frame(char type) const {
    return type == 'C' || type == 'E' || type == 'Z' || type == 'G' ||
           (compare_tags_ && (type == 'I' || type == 's')) || (compare_rows_ && type == 'D');
  }
  bool wants_pieces() const { return compare_rows_; }
  std::size_t outstanding() const { return segments_.size(); }
  // Hands over what waited for it to be known whether the client keeps its server.
  void pins_known(bool keeps);
  ~Work() { pins_known(false); }

 private:
  struct Target {
    std::shared_ptr<Mirror> mirror;
    std::shared_ptr<Channel> channel;
  };
  struct Segment {
    std::size_t end = 0;  // offset in buffer_ just past the Query/Sync closing the segment
    Traits traits;
  };
  // A transaction whose Keep was unknown waits for pins_known() before it is handed over, and
  // those after it wait behind it, so the mirror keeps the client's order.
  struct HeldBack {
    std::shared_ptr<Request> request;
    std::vector<Target> targets;
    bool unknown;  // its own Keep was unknown (else it only waits behind one that was)
  };
  void keep(const protocol::Frame& f);
  bool ready(const protocol::Frame& f);
  void finish_transaction(std::size_t end);
  // Whether `frames` bind or describe the unnamed statement before they parse it (then
  // unnamed_use_ holds the Parse it was, to replay first: the mirror connection may not have
  // it); follows the session's unnamed statement through them.
  bool uses_earlier_unnamed(std::string_view frames);
  // The transaction's first `end` buffered bytes.
  std::shared_ptr<Request> make_request(std::size_t end);
  Traits classify(const protocol::Frame& f);
  Traits bound(const std::string& name);  // what a Bind of statement `name` does
  backend::StatementPtr session_statement(const std::string& name) const;

  Tap& tap_;
  std::vector<Target> targets_;
  bool classify_ = false;      // some mirror filters by level
  bool compare_tags_ = false;  // some mirror compares results: collect the primary's
  bool compare_rows_ = false;  // ... including a hash of the rows
  std::shared_ptr<const protocol::Params> snapshot_;
  std::shared_ptr<const backend::ClientStatements> statements_snapshot_;
  std::uint64_t statements_version_ = ~std::uint64_t{0};

  std::string buffer_;
  std::deque<Segment> segments_;
  std::vector<HeldBack> held_back_;
  Traits open_traits_;  // frames after the last boundary
  // What each prepared statement does, and the session's statement it was learnt from (null
  // when learnt from a Parse the session does not keep, the unnamed one).
  struct Known {
    backend::StatementPtr statement;
    Traits traits;
  };
  std::unordered_map<std::string, Known> statements_;

  // The transaction being assembled.
  Traits traits_;
  std::size_t syncs_ = 0;
  std::uint32_t errors_ = 0;
  std::string last_tag_;
  bool explicit_ = false;  // the server reported 'T' or 'E' at some point
  bool copy_in_ = false;
  bool too_large_ = false;
  // The session's unnamed statement as the client parsed it (while a Query has not dropped
  // it), and the one a transaction used without parsing it.
  std::string unnamed_;
  bool unnamed_known_ = false;
  std::string unnamed_use_;
  bool uses_unnamed_ = false;
  StatementResults results_;
  RowHash hash_;
  Clock::time_point busy_since_{};
  std::uint64_t busy_us_ = 0;
};

void Tap::Work::set_targets(std::vector<std::shared_ptr<Mirror>> mirrors) {
  std::vector<Target> next;
  const bool classified = classify_;
  classify_ = compare_tags_ = compare_rows_ = false;
  for (auto& m : mirrors) {
    const auto settings = m->settings();
    classify_ = classify_ || settings.level != config::MirrorLevel::all;
    compare_tags_ = compare_tags_ || settings.compare != config::MirrorCompare::off;
    compare_rows_ = compare_rows_ || settings.compare == config::MirrorCompare::results;
    auto kept = std::find_if(targets_.begin(), targets_.end(),
                             [&](const Target& t) { return t.mirror == m; });
    auto channel =
        kept != targets_.end() ? std::move(kept->channel) : m->open_channel(tap_.session_mode_);
    next.push_back(Target{std::move(m), std::move(channel)});
  }
  targets_ = std::move(next);
  // Statements parsed while nothing classified are classified again when bound (classify()).
  if (classify_ && !classified) statements_.clear();
}

Traits Tap::Work::classify(const protocol::Frame& f) {
  // Classification costs a lexer pass; only level filters need it.
  if (!classify_) return {};
  switch (f.type) {
    case protocol::fe::kQuery:
      if (auto sql = protocol::decode_query(f.body)) return traits_of(*sql);
      break;
    case protocol::fe::kParse:
      if (auto p = protocol::decode_parse(f.body)) {
        std::string name(p->name);
        auto t = traits_of(p->query);
        statements_[name] = Known{session_statement(name), t};
        return t;
      }
      break;
    case protocol::fe::kBind:
      if (auto b = protocol::decode_bind_names(f.body)) return bound(std::string(b->statement));
      break;
    case protocol::fe::kCopyData:
    case protocol::fe::kCopyDone:
      return Traits{true, false};
    default:
      break;
  }
  return {};
}

backend::StatementPtr Tap::Work::session_statement(const std::string& name) const {
  const auto* known = tap_.statements();
  if (known == nullptr) return nullptr;
  auto it = known->find(name);
  return it != known->end() ? it->second : nullptr;
}

Traits Tap::Work::bound(const std::string& name) {
  // The session's statements say what the name means now: it may have been parsed before this
  // mirror was added, or prepared again in a batch the proxy answered without a server (which
  // the tap never sees). A statement parsed in an earlier transaction still says what this one
  // does.
  auto live = session_statement(name);
  auto it = statements_.find(name);
  if (it != statements_.end() && (!live || it->second.statement == live)) {
    return it->second.traits;
  }
  if (!live) return {};
  return (statements_[name] = Known{live, traits_of(live->query)}).traits;
}

void Tap::Work::client_frame(const protocol::Frame& f) {
  keep(f);
  if (is_request(f.type)) {
    // The primary is busy from the first request sent until the last answered: client think
    // time between requests does not count.
    if (segments_.empty()) busy_since_ = Clock::now();
    segments_.push_back(Segment{buffer_.size(), open_traits_});
    open_traits_ = {};
  } else if (f.type == protocol::fe::kCopyDone || f.type == protocol::fe::kCopyFail) {
    // COPY data comes after the Query that started it but belongs with it: the server
    // answers that Query only once the copy ends.
    if (copy_in_ && !segments_.empty()) {
      segments_.back().end = buffer_.size();
      merge(segments_.back().traits, open_traits_);
      open_traits_ = {};
    }
  }
}

void Tap::Work::keep(const protocol::Frame& f) {
  merge(open_traits_, classify(f));
  if (too_large_) return;
  if (buffer_.size() + f.raw.size() > tap_.max_bytes_) {
    // Nothing in the buffer will be mirrored now (see finish_transaction): give its memory
    // back at once rather than hold it until the transaction ends.
    too_large_ = true;
    std::string().swap(buffer_);
    for (auto& s : segments_)
      s.end = 0;
  } else {
    buffer_.append(f.raw);
  }
}

bool Tap::Work::server_frame(const protocol::Frame& f) {
  switch (f.type) {
    case protocol::be::kCopyInResponse:
      copy_in_ = true;
      break;
    case protocol::be::kDataRow:
      hash_.update(f.raw);
      break;
    case protocol::be::kCommandComplete:
      if (auto tag = protocol::decode_command_complete(f.body)) {
        last_tag_.assign(*tag);
        if (compare_tags_) results_.push_back(StatementResult{'C', last_tag_, hash_.value()});
      }
      hash_.reset();
      break;
    case protocol::be::kEmptyQueryResponse:
    case protocol::be::kPortalSuspended:
      if (compare_tags_) results_.push_back(StatementResult{f.type, {}, hash_.value()});
      hash_.reset();
      break;
    case protocol::be::kErrorResponse:
      ++errors_;
      if (compare_tags_) {
        auto e = protocol::decode_error(f.body);
        results_.push_back(StatementResult{'E', e ? std::string(e->code) : std::string(), 0});
      }
      hash_.reset();
      break;
    case protocol::be::kReadyForQuery:
      return ready(f);
    default:
      break;
  }
  return true;
}

bool Tap::Work::ready(const protocol::Frame& f) {
  copy_in_ = false;
  if (segments_.empty()) return false;  // not ours (the session's own housekeeping)
  const Segment segment = segments_.front();
  segments_.pop_front();
  merge(traits_, segment.traits);
  ++syncs_;
  if (segments_.empty()) {
    busy_us_ += static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - busy_since_).count());
  }
  const char status = f.body.size() == 1 ? f.body[0] : 'I';
  if (status == 'I') {
    finish_transaction(segment.end);
  } else {
    explicit_ = true;
  }
  return true;
}

void Tap::Work::finish_transaction(std::size_t end) {
  // A rolled-back transaction changed nothing. A transaction block that recovered from errors
  // with savepoints and then committed did change data: the mirror is told how many errors
  // the primary had, so the same ones there are not failures.
  const bool rolled_back = last_tag_ == "ROLLBACK";
  const bool committed = !rolled_back && (errors_ == 0 || (explicit_ && last_tag_ == "COMMIT"));
  if (too_large_) {
    unnamed_known_ = false;  // its frames were not kept
    uses_unnamed_ = false;
  } else {
    uses_unnamed_ = uses_earlier_unnamed(std::string_view(buffer_).substr(0, end));
  }
  if (committed) {
    std::shared_ptr<Request> shared;
    HeldBack* held = nullptr;
    for (auto& t : targets_) {
      if (!t.mirror->admit(*t.channel, traits_)) continue;
      if (too_large_) {
        // admit() counted it as handed, as it does every transaction that the level filter and
        // exposure send to this mirror: the mirror was meant to get it and will miss it. So it
        // must end in a status, dropped, for handed = success + failure + dropped + queue_depth
        // to hold, and so that the operator sees what the mirror lacks.
        t.mirror->finish(
            stats::MirrorOutcome::dropped,
            fmt::format("larger than {} bytes (user {})", tap_.max_bytes_, tap_.user_.name));
        continue;
      }
      if (!shared) shared = make_request(end);
      if (tap_.keep_ == Keep::unknown || !held_back_.empty()) {
        if (held == nullptr) {
          held = &held_back_.emplace_back(HeldBack{shared, {}, tap_.keep_ == Keep::unknown});
        }
        held->targets.push_back(t);
        continue;
      }
      t.mirror->enqueue(t.channel, shared);
    }
  }
  // Drop the finished transaction's bytes; pipelined frames after it move to the front.
  const std::size_t cut = std::min(end, buffer_.size());
  buffer_.erase(0, cut);
  for (auto& s : segments_)
    s.end = s.end >= cut ? s.end - cut : 0;
  if (buffer_.empty() && buffer_.capacity() > 64 * 1024) buffer_.shrink_to_fit();
  traits_ = {};
  syncs_ = 0;
  errors_ = 0;
  results_.clear();
  busy_us_ = 0;
  last_tag_.clear();
  explicit_ = false;
  // Frames pipelined behind an oversized transaction were not kept either: the transactions
  // they belong to are dropped too, until the pipeline is empty.
  if (segments_.empty()) too_large_ = false;
}

void Tap::Work::pins_known(bool keeps) {
  // The first held-back transaction is the one whose Keep was unknown; it and those after it,
  // up to the next unknown one, go to their mirrors in the client's order.
  std::size_t done = 0;
  for (auto& held : held_back_) {
    if (held.unknown && done > 0) break;
    if (held.unknown) held.request->keep_server = keeps;
    for (auto& t : held.targets) t.mirror->enqueue(t.channel, held.request);
    ++done;
  }
  held_back_.erase(held_back_.begin(), held_back_.begin() + static_cast<std::ptrdiff_t>(done));
}

bool Tap::Work::uses_earlier_unnamed(std::string_view frames) {
  bool parsed = false;
  bool uses = false;
  while (auto f = protocol::next_frame(frames, frames.size() + 1)) {
    frames.remove_prefix(f->size());
    if (f->type == protocol::fe::kQuery) {
      unnamed_known_ = false;  // a simple Query drops it
      parsed = true;           // and a use after it fails on the primary too
    } else if (protocol::parses_unnamed(*f)) {
      unnamed_.assign(f->raw);
      unnamed_known_ = true;
      parsed = true;
    } else if (!parsed && !uses && unnamed_known_ && protocol::uses_unnamed(*f)) {
      uses = true;
      unnamed_use_.assign(unnamed_);
    }
  }
  return uses;
}

std::shared_ptr<Request> Tap::Work::make_request(std::size_t end) {
  if (!snapshot_ || snapshot_->hash() != tap_.params_.hash()) {
    snapshot_ = std::make_shared<const protocol::Params>(tap_.params_);
  }
  if (const auto version = tap_.statements_version(); statements_version_ != version) {
    const auto* live = tap_.statements();
    statements_snapshot_ = live == nullptr || live->empty()
                               ? nullptr
                               : std::make_shared<const backend::ClientStatements>(*live);
    statements_version_ = version;
  }
  auto request = std::make_shared<Request>();
  request->statements = statements_snapshot_;
  if (uses_unnamed_) {
    request->frames.reserve(unnamed_use_.size() + end);
    request->frames = unnamed_use_;
  }
  request->frames.append(buffer_, 0, end);
  request->params = snapshot_;
  request->user = tap_.user_.name;
  request->syncs = syncs_;
  request->primary_errors = errors_;
  request->results = std::move(results_);
  request->primary_us = busy_us_;
  request->keep_server = tap_.keep_ == Keep::yes;
  return request;
}

Tap::Tap(TapRoute route, const config::User& user, const protocol::Params& params,
         const backend::ClientStatements& statements, const backend::Rewriter* rewriter,
         backend::StatementRegistry* registry, std::size_t max_transaction_bytes, bool session_mode)
    : route_(std::move(route)),
      user_(user),
      params_(params),
      rewritten_(statements),
      rewriter_(rewriter),
      registry_(registry),
      max_bytes_(max_transaction_bytes),
      session_mode_(session_mode) {}

Tap::~Tap() = default;

void Tap::begin() {
  open_ = true;
  if (route_.mirrors && route_.mirrors->version() != version_) {
    refresh(*route_.mirrors->snapshot());
  }
  if (route_.open_version != nullptr) {
    route_.open_version->store(version_, std::memory_order_relaxed);
  }
}

void Tap::refresh(const MirrorSet::Snapshot& snapshot) {
  // Only at a boundary: nothing is outstanding, so nothing assembled is lost.
  auto mirrors = snapshot.fed_by(user_.database);
  if (mirrors.empty()) {
    work_.reset();
  } else {
    if (!work_) work_ = std::make_unique<Work>(*this);
    work_->set_targets(std::move(mirrors));
  }
  version_ = snapshot.version;
}

void Tap::end() {
  open_ = false;
  if (route_.open_version != nullptr) route_.open_version->store(0, std::memory_order_relaxed);
}

std::size_t Tap::outstanding() const {
  return work_ ? work_->outstanding() : requests_;
}

const backend::ClientStatements* Tap::statements() const {
  return rewriter_ != nullptr ? &rewritten_ : own_.get();
}

std::uint64_t Tap::statements_version() const {
  return rewriter_ != nullptr ? rewriter_->version() : own_version_;
}

void Tap::track_statement(const protocol::Frame& f) {
  if (f.type == protocol::fe::kParse) {
    auto p = protocol::decode_parse(f.body);
    if (!p || p->name.empty()) return;
    if (!own_) own_ = std::make_unique<backend::ClientStatements>();
    (*own_)[std::string(p->name)] = registry_->intern(p->query, p->param_types);
    ++own_version_;
  } else if (f.type == protocol::fe::kClose && own_) {
    auto c = protocol::decode_describe(f.body);
    if (c && c->kind == 'S' && own_->erase(std::string(c->name)) > 0) ++own_version_;
  }
}

void Tap::client_frame(const protocol::Frame& f) {
  if (!open_) begin();
  if (rewriter_ == nullptr && registry_ != nullptr) track_statement(f);
  if (work_) {
    work_->client_frame(f);
  } else if (is_request(f.type)) {
    ++requests_;
  }
  switch (f.type) {
    case protocol::fe::kQuery:
    case protocol::fe::kSync:
    case protocol::fe::kFunctionCall:
      loose_ = false;
      break;
    case protocol::fe::kCopyData:
    case protocol::fe::kCopyDone:
    case protocol::fe::kCopyFail:
    case protocol::fe::kFlush:
      break;
    default:
      loose_ = true;
  }
}

void Tap::server_frame(const protocol::Frame& f) {
  const bool ours = work_ ? work_->server_frame(f) : requests_ > 0;
  if (f.type != protocol::be::kReadyForQuery || !ours) return;
  if (!work_) --requests_;
  // Frames sent since the last Sync (a Parse, a Bind) begin the next transaction.
  const char status = f.body.size() == 1 ? f.body[0] : 'I';
  if (status == 'I' && outstanding() == 0 && !loose_) end();
}

void Tap::pins_known(bool keeps) {
  if (work_) work_->pins_known(keeps);
}

void Tap::server_piece(char type, std::string_view bytes) {
  if (work_) work_->server_piece(type, bytes);
}

bool Tap::wants_server_frame(char type) const {
  // Without mirrors only where transactions end matters.
  return work_ ? work_->wants_server_frame(type) : type == protocol::be::kReadyForQuery;
}

bool Tap::wants_pieces() const {
  return work_ && work_->wants_pieces();
}

}  // namespace pgdog::mirror
