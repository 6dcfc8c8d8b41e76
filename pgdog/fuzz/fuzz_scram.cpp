// SCRAM-SHA-256, both sides, with fixed secrets and nonces (RFC 7677's example) so that a seed
// holding a real exchange reaches the proof checks and the fuzzer can mutate from there.
//
// Input: a mode byte, then two messages separated by a NUL (SCRAM forbids NUL in messages).
//   'S'  ScramServer: client-first-message, then client-final-message
//   'C'  ScramClient: server-first-message, then server-final-message
//   'K'  parse_scram_secret on the first message (a stored verifier from users.toml)
// Any other mode byte picks one of the three by its value.

#include <string>
#include <vector>

#include "auth/auth.hpp"
#include "fuzz.hpp"

namespace {

using namespace pgdog;

constexpr std::string_view kPassword = "pencil";
constexpr std::string_view kClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
// The RFC's salt, "W22ZaJ0SNY7soEsUEjb6gQ==".
constexpr std::uint8_t kSalt[] = {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
                                  0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81};
// PBKDF2 runs once per server-first-message; a fuzzed iteration count up to the client's limit
// (a million) would make single inputs take seconds, so counts above this are not run.
constexpr std::uint64_t kMaxFuzzIterations = 4096;

const auth::ScramSecret& secret() {
  static const auth::ScramSecret s = auth::make_scram_secret(kPassword, kSalt, 4096);
  return s;
}

bool is_wrong_state(const boost::system::error_code& ec) {
  return ec == auth::Error::wrong_state;
}

void fuzz_server(std::string_view first, std::string_view final_message) {
  auth::ScramServer server(secret(), std::string(kServerNonce));
  auto server_first = server.client_first(first);
  // Whatever happened, the first step cannot be taken twice.
  auto again = server.client_first(first);
  FUZZ_CHECK(!again && is_wrong_state(again.error()));
  if (!server_first) {
    FUZZ_CHECK(!is_wrong_state(server_first.error()));
    auto late = server.client_final(final_message);
    FUZZ_CHECK(!late && is_wrong_state(late.error()));
    return;
  }
  // r=<client nonce><our nonce>,s=<salt>,i=<iterations>
  FUZZ_CHECK(server_first->starts_with("r="));
  const auto nonce_end = server_first->find(",s=");
  FUZZ_CHECK(nonce_end != std::string::npos);
  FUZZ_CHECK(std::string_view(*server_first).substr(0, nonce_end).ends_with(kServerNonce));
  FUZZ_CHECK(server_first->ends_with(",i=4096"));

  auto server_final = server.client_final(final_message);
  if (server_final) {
    // Only a client that knows the password gets here: "v=" and a base64 SHA-256.
    FUZZ_CHECK(server_final->starts_with("v=") && server_final->size() == 2 + 44);
  } else {
    FUZZ_CHECK(!is_wrong_state(server_final.error()));
  }
  auto again_final = server.client_final(final_message);
  FUZZ_CHECK(!again_final && is_wrong_state(again_final.error()));
}

// The iteration count a server-first-message asks for, when it is plain digits.
std::uint64_t requested_iterations(std::string_view message) {
  std::size_t pos = 0;
  for (int i = 0; i < 2; ++i) {
    pos = message.find(',', pos);
    if (pos == std::string_view::npos) return 0;
    ++pos;
  }
  std::string_view i = message.substr(pos, message.find(',', pos) - pos);
  if (!i.starts_with("i=")) return 0;
  std::uint64_t value = 0;
  for (char c : i.substr(2)) {
    if (c < '0' || c > '9') return 0;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
    if (value > kMaxFuzzIterations) return value;
  }
  return value;
}

void fuzz_client(std::string_view server_first, std::string_view server_final) {
  if (requested_iterations(server_first) > kMaxFuzzIterations) return;
  auth::ScramClient client(kPassword, std::string(kClientNonce), "user");
  const std::string client_first = client.client_first();
  FUZZ_CHECK(client_first == "n,,n=user,r=" + std::string(kClientNonce));
  FUZZ_CHECK(client.client_first() == client_first);

  auto client_final = client.server_first(server_first);
  auto again = client.server_first(server_first);
  FUZZ_CHECK(!again && is_wrong_state(again.error()));
  if (!client_final) {
    FUZZ_CHECK(!is_wrong_state(client_final.error()));
    auto late = client.server_final(server_final);
    FUZZ_CHECK(!late && is_wrong_state(late.error()));
    return;
  }
  // c=biws,r=<the server's nonce, which extends ours>,p=<base64 proof>
  const std::string prefix = "c=biws,r=" + std::string(kClientNonce);
  FUZZ_CHECK(client_final->starts_with(prefix));
  const auto proof = client_final->rfind(",p=");
  FUZZ_CHECK(proof != std::string::npos && proof > prefix.size());
  FUZZ_CHECK(client_final->size() == proof + 3 + 44);

  auto done = client.server_final(server_final);
  if (!done) FUZZ_CHECK(!is_wrong_state(done.error()));
  auto again_final = client.server_final(server_final);
  FUZZ_CHECK(!again_final && is_wrong_state(again_final.error()));
}

void fuzz_secret(std::string_view text) {
  auto parsed = auth::parse_scram_secret(text);
  if (!parsed) return;
  FUZZ_CHECK(parsed->iterations >= 1 && !parsed->salt.empty());
  // The canonical text form parses back to the same secret.
  const std::string canonical = auth::format_scram_secret(*parsed);
  auto back = auth::parse_scram_secret(canonical);
  FUZZ_CHECK(back);
  FUZZ_CHECK(back->iterations == parsed->iterations && back->salt == parsed->salt &&
             back->stored_key == parsed->stored_key && back->server_key == parsed->server_key);
  FUZZ_CHECK(auth::format_scram_secret(*back) == canonical);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto input = fuzz::as_view(data, size);
  const auto [first, second] = fuzz::split_at_nul(input.substr(1));
  switch (input[0]) {
    case 'S':
      fuzz_server(first, second);
      break;
    case 'C':
      fuzz_client(first, second);
      break;
    case 'K':
      fuzz_secret(first);
      break;
    default:
      switch (static_cast<unsigned char>(input[0]) % 3) {
        case 0:
          fuzz_server(first, second);
          break;
        case 1:
          fuzz_client(first, second);
          break;
        default:
          fuzz_secret(first);
          break;
      }
  }
  return 0;
}
