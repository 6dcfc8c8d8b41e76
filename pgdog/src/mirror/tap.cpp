#include "mirror/tap.hpp"

#include <algorithm>

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

}  // namespace

Tap::Tap(TapRoute route, std::string user, const protocol::Params& params,
         const backend::ClientStatements& statements, const backend::Rewriter* rewriter,
         backend::StatementRegistry* registry, std::size_t max_transaction_bytes, bool session_mode)
    : route_(std::move(route)),
      session_mode_(session_mode),
      user_(std::move(user)),
      params_(params),
      statements_live_(rewriter != nullptr ? statements : own_),
      rewriter_(rewriter),
      registry_(registry),
      max_bytes_(max_transaction_bytes) {}

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
  std::vector<Target> next;
  classify_ = compare_tags_ = compare_rows_ = false;
  for (auto& m : snapshot.fed_by(route_.database)) {
    const auto settings = m->settings();
    classify_ = classify_ || settings.level != config::MirrorLevel::all;
    compare_tags_ = compare_tags_ || settings.compare != config::MirrorCompare::off;
    compare_rows_ = compare_rows_ || settings.compare == config::MirrorCompare::results;
    // A mirror this session already feeds keeps its channel, and with it the client's order.
    auto kept = std::find_if(targets_.begin(), targets_.end(),
                             [&](const Target& t) { return t.mirror == m; });
    auto channel =
        kept != targets_.end() ? std::move(kept->channel) : m->open_channel(session_mode_);
    next.push_back(Target{std::move(m), std::move(channel)});
  }
  targets_ = std::move(next);
  version_ = snapshot.version;
}

Traits Tap::classify(const protocol::Frame& f) {
  // Classification costs a lexer pass; only level filters need it.
  if (!classify_) return {};
  switch (f.type) {
    case protocol::fe::kQuery:
      if (auto sql = protocol::decode_query(f.body)) return traits_of(*sql);
      break;
    case protocol::fe::kParse:
      if (auto p = protocol::decode_parse(f.body)) {
        auto t = traits_of(p->query);
        statements_[std::string(p->name)] = t;
        return t;
      }
      break;
    case protocol::fe::kBind:
      // A statement parsed in an earlier transaction still says what this one does.
      if (auto b = protocol::decode_bind(f.body)) {
        auto it = statements_.find(std::string(b->statement));
        if (it != statements_.end()) return it->second;
      }
      break;
    case protocol::fe::kCopyData:
    case protocol::fe::kCopyDone:
      return Traits{true, false};
    default:
      break;
  }
  return {};
}

void Tap::track_statement(const protocol::Frame& f) {
  if (f.type == protocol::fe::kParse) {
    auto p = protocol::decode_parse(f.body);
    if (!p || p->name.empty()) return;
    own_[std::string(p->name)] = registry_->intern(p->query, p->param_types);
    ++own_version_;
  } else if (f.type == protocol::fe::kClose) {
    auto c = protocol::decode_describe(f.body);
    if (c && c->kind == 'S' && own_.erase(std::string(c->name)) > 0) ++own_version_;
  }
}

void Tap::client_frame(const protocol::Frame& f) {
  if (!open_) begin();
  if (rewriter_ == nullptr && registry_ != nullptr) track_statement(f);
  const bool keep = !targets_.empty();
  if (keep) buffer(f);
  switch (f.type) {
    case protocol::fe::kQuery:
    case protocol::fe::kSync:
    case protocol::fe::kFunctionCall:
      // The primary is busy from the first request sent until the last answered: client think
      // time between requests does not count.
      if (keep && segments_.empty()) busy_since_ = Clock::now();
      segments_.push_back(Segment{buffer_.size(), open_traits_});
      open_traits_ = {};
      loose_ = false;
      break;
    case protocol::fe::kCopyDone:
    case protocol::fe::kCopyFail:
      // COPY data comes after the Query that started it but belongs with it: the server
      // answers that Query only once the copy ends.
      if (copy_in_ && !segments_.empty()) {
        segments_.back().end = buffer_.size();
        merge(segments_.back().traits, open_traits_);
        open_traits_ = {};
      }
      break;
    case protocol::fe::kCopyData:
    case protocol::fe::kFlush:
      break;
    default:
      loose_ = true;
  }
}

void Tap::buffer(const protocol::Frame& f) {
  merge(open_traits_, classify(f));
  if (too_large_) return;
  if (buffer_.size() + f.raw.size() > max_bytes_) {
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

void Tap::server_piece(char type, std::string_view bytes) {
  if (type == protocol::be::kDataRow) hash_.update(bytes);
}

void Tap::server_frame(const protocol::Frame& f) {
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
    case protocol::be::kReadyForQuery: {
      copy_in_ = false;
      if (segments_.empty()) break;  // not ours (the session's own housekeeping)
      const Segment segment = segments_.front();
      segments_.pop_front();
      merge(traits_, segment.traits);
      ++syncs_;
      if (segments_.empty() && !targets_.empty()) {
        busy_us_ += static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - busy_since_)
                .count());
      }
      const char status = f.body.size() == 1 ? f.body[0] : 'I';
      if (status == 'I') {
        finish_transaction(segment.end);
        // Frames sent since the last Sync (a Parse, a Bind) begin the next transaction.
        if (segments_.empty() && !loose_) end();
      } else {
        explicit_ = true;
      }
      break;
    }
    default:
      break;
  }
}

void Tap::finish_transaction(std::size_t end) {
  // A rolled-back transaction changed nothing. A transaction block that recovered from errors
  // with savepoints and then committed did change data: the mirror is told how many errors
  // the primary had, so the same ones there are not failures.
  const bool rolled_back = last_tag_ == "ROLLBACK";
  const bool committed = !rolled_back && (errors_ == 0 || (explicit_ && last_tag_ == "COMMIT"));
  if (committed) {
    RequestPtr shared;
    for (auto& t : targets_) {
      if (!t.mirror->admit(*t.channel, traits_)) continue;
      if (too_large_) {
        // admit() counted it as handed, as it does every transaction that the level filter and
        // exposure send to this mirror: the mirror was meant to get it and will miss it. So it
        // must end in a status, dropped, for handed = success + failure + dropped + queue_depth
        // to hold, and so that the operator sees what the mirror lacks.
        t.mirror->finish(stats::MirrorOutcome::dropped,
                         fmt::format("larger than {} bytes (user {})", max_bytes_, user_));
        continue;
      }
      if (!shared) shared = make_request(end);
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

void Tap::end() {
  open_ = false;
  if (route_.open_version != nullptr) route_.open_version->store(0, std::memory_order_relaxed);
}

RequestPtr Tap::make_request(std::size_t end) {
  if (!snapshot_ || snapshot_->hash() != params_.hash()) {
    snapshot_ = std::make_shared<const protocol::Params>(params_);
  }
  const std::uint64_t version = rewriter_ != nullptr ? rewriter_->version() : own_version_;
  if (statements_version_ != version) {
    statements_snapshot_ =
        statements_live_.empty()
            ? nullptr
            : std::make_shared<const backend::ClientStatements>(statements_live_);
    statements_version_ = version;
  }
  auto request = std::make_shared<Request>();
  request->statements = statements_snapshot_;
  request->frames.assign(buffer_, 0, end);
  request->params = snapshot_;
  request->user = user_;
  request->syncs = syncs_;
  request->primary_errors = errors_;
  request->results = std::move(results_);
  request->primary_us = busy_us_;
  return request;
}

}  // namespace pgdog::mirror
