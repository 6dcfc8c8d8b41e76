// Backend (server -> client) messages: framing, then every decoder the proxy uses on server
// answers, on every frame body. A server is trusted less than it seems: a mirror or a
// misbehaving middlebox can send anything.

#include <string>

#include "frames.hpp"
#include "protocol/messages.hpp"

namespace {

using namespace pgdog;
using protocol::Frame;

bool same_frame(const Frame& f, const std::string& built) {
  return built.size() == f.size() && std::string_view(built).substr(1) == f.raw.substr(1);
}

bool no_nul(std::string_view s) {
  return s.find('\0') == std::string_view::npos;
}

void check_frame(const Frame& f) {
  const auto body = f.body;

  if (auto a = protocol::decode_authentication(body)) {
    FUZZ_CHECK(fuzz::within(a->data, body));
    FUZZ_CHECK(a->data.size() + 4 == body.size());
    if (a->code == protocol::auth_code::kMd5) FUZZ_CHECK(a->data.size() == 4);
    std::string out;
    protocol::write_auth(out, a->code, a->data);
    FUZZ_CHECK(same_frame(f, out));
  } else {
    FUZZ_CHECK(body.size() < 4 || (static_cast<std::int32_t>(protocol::read_u32(body.data())) ==
                                       protocol::auth_code::kMd5 &&
                                   body.size() != 8));
  }

  if (auto p = protocol::decode_parameter_status(body)) {
    FUZZ_CHECK(fuzz::within(p->name, body) && no_nul(p->name));
    FUZZ_CHECK(fuzz::within(p->value, body) && no_nul(p->value));
    std::string out;
    protocol::write_parameter_status(out, p->name, p->value);
    FUZZ_CHECK(same_frame(f, out));
  }

  if (auto k = protocol::decode_backend_key_data(body)) {
    FUZZ_CHECK(body.size() == 8);
    std::string out;
    protocol::write_backend_key_data(out, k->process_id, k->secret_key);
    FUZZ_CHECK(same_frame(f, out));
  } else {
    FUZZ_CHECK(body.size() != 8);
  }

  if (auto status = protocol::decode_ready_for_query(body)) {
    FUZZ_CHECK(*status == 'I' || *status == 'T' || *status == 'E');
    std::string out;
    protocol::write_ready_for_query(out, *status);
    FUZZ_CHECK(same_frame(f, out));
  }

  if (auto e = protocol::decode_error(body)) {
    for (auto field : {e->severity, e->code, e->message, e->detail, e->hint}) {
      FUZZ_CHECK(fuzz::within(field, body) && no_nul(field));
    }
    FUZZ_CHECK(e->is_fatal() == (e->severity == "FATAL" || e->severity == "PANIC"));
    // A well-formed error ends with the field list's terminating NUL.
    FUZZ_CHECK(!body.empty());
  }

  if (auto tag = protocol::decode_command_complete(body)) {
    FUZZ_CHECK(fuzz::within(*tag, body) && no_nul(*tag));
    std::string out;
    protocol::write_command_complete(out, *tag);
    FUZZ_CHECK(same_frame(f, out));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::for_each_frame(fuzz::as_view(data, size), check_frame);
  return 0;
}
