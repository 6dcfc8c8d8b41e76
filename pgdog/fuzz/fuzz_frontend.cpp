// Frontend (client -> server) messages: framing, then every decoder on every frame body, since
// a hostile client chooses the type byte too. A body that decodes must re-encode, through the
// proxy's own builders, to exactly the bytes it came from.

#include <string>

#include "frames.hpp"
#include "protocol/messages.hpp"
#include "protocol/sql.hpp"

namespace {

using namespace pgdog;
using protocol::Frame;

// The frame as the builder for `type` would write it, compared from the length on.
bool same_frame(const Frame& f, const std::string& built) {
  return built.size() == f.size() && std::string_view(built).substr(1) == f.raw.substr(1);
}

bool no_nul(std::string_view s) {
  return s.find('\0') == std::string_view::npos;
}

void check_frame(const Frame& f) {
  const auto body = f.body;

  if (auto q = protocol::decode_query(body)) {
    FUZZ_CHECK(fuzz::within(*q, body) && no_nul(*q));
    std::string out;
    protocol::write_query(out, *q);
    FUZZ_CHECK(same_frame(f, out));
    // The proxy classifies every simple query it forwards.
    (void)protocol::sql::classify(*q);
  }

  if (auto p = protocol::decode_parse(body)) {
    FUZZ_CHECK(fuzz::within(p->name, body) && no_nul(p->name));
    FUZZ_CHECK(fuzz::within(p->query, body) && no_nul(p->query));
    FUZZ_CHECK(fuzz::within(p->param_types, body));
    FUZZ_CHECK(p->param_types.size() >= 2);
    const auto count = static_cast<std::int16_t>(protocol::read_u16(p->param_types.data()));
    FUZZ_CHECK(count >= 0 && p->param_types.size() == 2 + 4 * static_cast<std::size_t>(count));
    std::string out;
    protocol::write_parse(out, p->name, p->query, p->param_types);
    FUZZ_CHECK(same_frame(f, out));
  }

  if (auto n = protocol::decode_bind_names(body)) {
    FUZZ_CHECK(fuzz::within(n->portal, body) && no_nul(n->portal));
    FUZZ_CHECK(fuzz::within(n->statement, body) && no_nul(n->statement));
    FUZZ_CHECK(fuzz::within(n->rest, body));
    std::string out;
    protocol::write_bind(out, n->portal, n->statement, n->rest);
    FUZZ_CHECK(same_frame(f, out));
  }
  if (auto b = protocol::decode_bind(body)) {
    // What the full decode accepts, the names alone read the same way.
    auto n = protocol::decode_bind_names(body);
    FUZZ_CHECK(n && n->portal == b->portal && n->statement == b->statement && n->rest == b->rest);
    FUZZ_CHECK(fuzz::within(b->portal, body) && no_nul(b->portal));
    FUZZ_CHECK(fuzz::within(b->statement, body) && no_nul(b->statement));
    FUZZ_CHECK(fuzz::within(b->rest, body));
    FUZZ_CHECK(b->param_count >= 0);
    // Each parameter takes at least its 4-byte length.
    FUZZ_CHECK(b->rest.size() >= 6 + 4 * static_cast<std::size_t>(b->param_count));
    std::string out;
    protocol::write_bind(out, b->portal, b->statement, b->rest);
    FUZZ_CHECK(same_frame(f, out));
  }

  if (auto d = protocol::decode_describe(body)) {
    FUZZ_CHECK(d->kind == 'S' || d->kind == 'P');
    FUZZ_CHECK(fuzz::within(d->name, body) && no_nul(d->name));
    std::string out;
    protocol::write_describe(out, f.type, d->kind, d->name);
    FUZZ_CHECK(out == f.raw);
  }

  if (auto e = protocol::decode_execute(body)) {
    FUZZ_CHECK(fuzz::within(e->portal, body) && no_nul(e->portal));
    std::string out;
    protocol::Writer(out).begin(f.type).cstring(e->portal).i32(e->max_rows).finish();
    FUZZ_CHECK(out == f.raw);
  }

  if (auto s = protocol::decode_sasl_initial_response(body)) {
    FUZZ_CHECK(fuzz::within(s->mechanism, body) && no_nul(s->mechanism));
    FUZZ_CHECK(fuzz::within(s->data, body));
    const std::size_t len_at = s->mechanism.size() + 1;
    FUZZ_CHECK(body.size() >= len_at + 4);
    const auto len = static_cast<std::int32_t>(protocol::read_u32(body.data() + len_at));
    FUZZ_CHECK(len >= -1);
    FUZZ_CHECK(s->data.size() == (len > 0 ? static_cast<std::size_t>(len) : 0));
    FUZZ_CHECK(body.size() == len_at + 4 + s->data.size());
    if (len != -1) {
      std::string out;
      protocol::write_sasl_initial_response(out, s->mechanism, s->data);
      FUZZ_CHECK(same_frame(f, out));
    }
  }

  if (auto pw = protocol::decode_password(body)) {
    FUZZ_CHECK(fuzz::within(*pw, body) && no_nul(*pw));
    std::string out;
    protocol::write_password(out, *pw);
    FUZZ_CHECK(same_frame(f, out));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::for_each_frame(fuzz::as_view(data, size), check_frame);
  return 0;
}
