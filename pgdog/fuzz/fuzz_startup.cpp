// The startup phase: the first bytes any client sends, before it has proved anything. Length
// first (peek_startup_length), then the packet (decode_startup), then what follows it.

#include <string>

#include "fuzz.hpp"
#include "protocol/messages.hpp"

namespace {

using namespace pgdog;

void check_packet(std::string_view packet) {
  auto p = protocol::decode_startup(packet);
  if (!p) {
    FUZZ_CHECK(p.error() != protocol::Error::need_more);
    return;
  }
  std::string out;
  switch (p->kind) {
    case protocol::StartupKind::startup:
      FUZZ_CHECK((p->protocol >> 16) == 3);
      for (const auto& [name, value] : p->params) {
        FUZZ_CHECK(!name.empty());
        FUZZ_CHECK(name.find('\0') == std::string::npos && value.find('\0') == std::string::npos);
        // param() finds the first of duplicate names.
        const std::string* found = p->param(name);
        FUZZ_CHECK(found != nullptr);
      }
      protocol::write_startup(out, p->params);
      // Our builder writes 3.0: compare with the version the client asked for.
      if (out.size() >= 8) protocol::write_u32(out.data() + 4, static_cast<std::uint32_t>(p->protocol));
      {
        // Negotiation leaves no protocol option behind, and answers only when needed.
        protocol::StartupPacket negotiated = *p;
        std::string v;
        protocol::negotiate_protocol_version(negotiated, v);
        for (const auto& [name, value] : negotiated.params) FUZZ_CHECK(!name.starts_with("_pq_."));
        FUZZ_CHECK(v.empty() == (negotiated.params.size() == p->params.size() &&
                                 p->protocol == protocol::kProtocolV3));
      }
      break;
    case protocol::StartupKind::ssl_request:
      FUZZ_CHECK(p->protocol == protocol::kSslRequestCode && p->params.empty());
      protocol::write_ssl_request(out);
      break;
    case protocol::StartupKind::gssenc_request:
      FUZZ_CHECK(p->protocol == protocol::kGssEncRequestCode && p->params.empty());
      protocol::Writer(out).begin_untyped().i32(protocol::kGssEncRequestCode).finish();
      break;
    case protocol::StartupKind::cancel_request:
      FUZZ_CHECK(p->protocol == protocol::kCancelRequestCode && p->params.empty());
      protocol::write_cancel_request(out, p->process_id, p->secret_key);
      break;
  }
  // Every accepted packet is exactly what our own builder writes for it.
  FUZZ_CHECK(out == packet);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto input = fuzz::as_view(data, size);

  // The whole input as one packet: its length field must match exactly.
  if (auto p = protocol::decode_startup(input)) {
    FUZZ_CHECK(input.size() >= 8 && protocol::read_u32(input.data()) == input.size());
  }

  // As the proxy reads: a length, then that many bytes, possibly several packets in a row
  // (SSLRequest, then the StartupMessage).
  std::string_view rest = input;
  for (int packets = 0; packets < 4; ++packets) {
    auto len = protocol::peek_startup_length(rest);
    if (!len) {
      if (rest.size() < 4) FUZZ_CHECK(len.error() == protocol::Error::need_more);
      return 0;
    }
    FUZZ_CHECK(*len >= 8 && *len <= protocol::kMaxStartupPacket);
    FUZZ_CHECK(*len == protocol::read_u32(rest.data()));
    if (*len > rest.size()) return 0;
    check_packet(rest.substr(0, *len));
    rest.remove_prefix(*len);
  }
  return 0;
}
