// Prepared statements through the transaction pooler: the Rewriter turns client frames into
// what a server needs (global names, Parse injected, Close evicting), and the ResponseTracker
// keeps the server's answers in step. Two client sessions share one server's statement cache;
// the second resolves names through the first's statements as a mirror replay does.
//
// Input: one byte for the cache limit, then records of a selector byte and one frame:
//   selector bit 0: 0 = a client frame, 1 = a server frame
//   selector bit 1: which session
//   selector bit 2: flush the tracker's synthetic answers afterwards, as the proxy does
//                   before reading the server
//   selector bit 3: the proxy checks whether the connection must be discarded

#include <string>

#include "backend/prepared.hpp"
#include "frames.hpp"
#include "protocol/messages.hpp"

namespace {

using namespace pgdog;
using backend::Expect;

// Everything the proxy writes must be whole frames.
void check_frames(std::string_view bytes) {
  while (!bytes.empty()) {
    auto f = protocol::next_frame(bytes, fuzz::kMaxFrame);
    FUZZ_CHECK(f);
    bytes.remove_prefix(f->size());
  }
}

void check_tracker(backend::ResponseTracker& t) {
  std::size_t special = 0;
  for (const Expect& e : t.expect()) {
    if (e.kind != Expect::Kind::forward) ++special;
    if (e.kind == Expect::Kind::synthetic || e.kind == Expect::Kind::ready) {
      FUZZ_CHECK(e.detail != nullptr);  // the answer they stand for
      check_frames(e.detail->bytes);
    }
  }
  FUZZ_CHECK(t.idle() == t.expect().empty());
  FUZZ_CHECK(t.passthrough() == (special == 0));
  // The proxy answers the head itself, without waiting for the server, when head_answerable().
  if (t.head_answerable()) {
    const auto kind = t.expect().begin()->kind;
    FUZZ_CHECK(kind == Expect::Kind::synthetic || kind == Expect::Kind::ready);
  }
}

struct Session {
  Session(backend::StatementRegistry& registry, const backend::ClientStatements* base)
      : rewriter(registry, mine, base) {}
  backend::ClientStatements mine;
  backend::Rewriter rewriter;
  backend::ResponseTracker tracker;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t limit = data[0] % 5;  // 0: unbounded; 1..4 make evictions common
  std::string_view rest = fuzz::as_view(data + 1, size - 1);

  backend::StatementRegistry registry;
  backend::PreparedCache cache(limit);
  Session first(registry, nullptr);
  Session second(registry, &first.mine);
  char status = 'I';

  while (rest.size() > 1) {
    const auto selector = static_cast<std::uint8_t>(rest[0]);
    rest.remove_prefix(1);
    auto f = protocol::next_frame(rest, fuzz::kMaxFrame);
    if (!f) break;
    rest.remove_prefix(f->size());
    Session& s = (selector & 2) != 0 ? second : first;

    if ((selector & 1) == 0) {
      std::string out;
      const bool needs = s.rewriter.needs_rewrite(*f);
      const bool rewritten = s.rewriter.rewrite(*f, cache, out, s.tracker);
      // The proxy forwards a batch untouched when no frame in it needs rewriting.
      if (!needs) FUZZ_CHECK(!rewritten);
      if (!rewritten) {
        FUZZ_CHECK(out.empty());
        s.tracker.push_plain(*f);
      }
      check_frames(out);
    } else {
      if (f->type == protocol::be::kReadyForQuery) {
        if (auto st = protocol::decode_ready_for_query(f->body)) status = *st;
      }
      const bool was_idle = s.tracker.idle();
      bool forward = false;
      std::string before;
      std::string after;
      s.tracker.on_frame(*f, cache, status, forward, before, after);
      check_frames(before);
      check_frames(after);
      if (was_idle) FUZZ_CHECK(forward && before.empty() && after.empty());
      // Only the answers to a Parse or Close the proxy added itself are kept from the client.
      if (!forward) {
        FUZZ_CHECK(f->type == protocol::be::kParseComplete ||
                   f->type == protocol::be::kCloseComplete);
      }
    }
    if ((selector & 4) != 0) {
      std::string out;
      s.tracker.flush_head(out, status);
      check_frames(out);
    }
    if ((selector & 8) != 0 && s.tracker.take_poisoned()) cache.clear();
    if (limit > 0) FUZZ_CHECK(cache.size() <= limit);
    check_tracker(first.tracker);
    check_tracker(second.tracker);
  }
  return 0;
}
