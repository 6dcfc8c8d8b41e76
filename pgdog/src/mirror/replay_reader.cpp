#include "mirror/replay_reader.hpp"

#include "protocol/messages.hpp"

namespace pgdog::mirror {

using stats::MirrorOutcome;

ReplayReader::ReplayReader(const Settings& settings, backend::PreparedCache& prepared,
                           protocol::Params& params, char status, backend::ResponseTracker* tracker)
    : settings_(settings),
      prepared_(prepared),
      params_(params),
      tracker_(tracker),
      status_(status),
      scanner_(settings.max_message_size) {
  // Every statement was answered by the rewriter: nothing comes from the server.
  if (settings_.ready == 0) outcome_ = MirrorOutcome::success;
}

std::size_t ReplayReader::feed(std::string_view unread) {
  if (outcome_) return 0;
  // Rows stream through the scanner (hashed when comparing results), so their size does not
  // matter: one larger than the buffer arrives in pieces.
  auto done = scanner_.scan(
      unread, [this](const protocol::Frame& f) { return on_frame(f); },
      [this](char type, std::string_view piece) {
        if (settings_.rows && type == protocol::be::kDataRow) hash_.update(piece);
      });
  if (!done) {
    fail("mirror sent an invalid message: " + done.error().message());
    return 0;
  }
  return *done;
}

bool ReplayReader::on_frame(const protocol::Frame& f) {
  if (!client_answer(f)) return true;
  switch (f.type) {
    case protocol::be::kReadyForQuery:
      return on_ready(f);
    case protocol::be::kErrorResponse:
      return on_error(f);
    case protocol::be::kCommandComplete:
      on_command_complete(f);
      break;
    case protocol::be::kEmptyQueryResponse:
    case protocol::be::kPortalSuspended:
      add_result(f.type, {});
      break;
    case protocol::be::kDataRow:
      if (settings_.rows) hash_.update(f.raw);
      break;
    case protocol::be::kParameterStatus:
      if (auto p = protocol::decode_parameter_status(f.body)) params_.set(p->name, p->value);
      break;
    default:
      break;
  }
  return true;
}

bool ReplayReader::client_answer(const protocol::Frame& f) {
  if (tracker_ == nullptr) return true;
  // The answers to messages the rewriter added (a Parse of a statement this server lacked, a
  // Close of one it evicted) are not the client's: no result, and the cache follows them.
  bool forward = true;
  synthetic_.clear();
  tracker_->on_frame(f, prepared_, status_, forward, synthetic_, synthetic_);
  return forward;
}

bool ReplayReader::on_ready(const protocol::Frame& f) {
  if (f.body.size() == 1) status_ = f.body[0];
  if (++ready_ < settings_.ready) return true;
  if (errors_ > settings_.primary_errors) {
    outcome_ = MirrorOutcome::query;
    reason_ = first_error_;
  } else {
    outcome_ = MirrorOutcome::success;
  }
  return false;
}

bool ReplayReader::on_error(const protocol::Frame& f) {
  hash_.reset();
  auto e = protocol::decode_error(f.body);
  if (!e) return true;
  if (e->is_fatal()) {
    fail("SQLSTATE " + std::string(e->code));
    return false;
  }
  ++errors_;
  if (first_error_.empty()) {
    first_error_ = "SQLSTATE " + std::string(e->code);
    first_error_message_ = std::string(e->message);
  }
  add_result('E', std::string(e->code));
  return true;
}

void ReplayReader::on_command_complete(const protocol::Frame& f) {
  // The server's statements are gone: its cache must say so, or the next request would Bind
  // to a statement the server no longer has.
  if (backend::drops_all_statements(f.body)) prepared_.clear();
  auto tag = protocol::decode_command_complete(f.body);
  add_result(protocol::be::kCommandComplete, tag ? std::string(*tag) : std::string());
}

void ReplayReader::add_result(char type, std::string tag) {
  if (settings_.tags) {
    const bool rows = settings_.rows && type != 'E';
    results_.push_back(StatementResult{type, std::move(tag), rows ? hash_.value() : 0});
  }
  hash_.reset();
}

void ReplayReader::fail(std::string reason) {
  outcome_ = MirrorOutcome::connection;
  reason_ = std::move(reason);
}

bool ReplayReader::reusable(bool nothing_unread) {
  const bool poisoned = tracker_ != nullptr && tracker_->take_poisoned();
  return nothing_unread && status_ == 'I' && !poisoned && outcome_ != MirrorOutcome::connection;
}

}  // namespace pgdog::mirror
