#pragma once

// Sans-io authentication: md5 and SCRAM-SHA-256 (RFC 5802 / RFC 7677), both sides.
// Bytes in, bytes out; no sockets. The proxy, unit tests and fuzzers drive the same code.

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

namespace pgdog::auth {

enum class Error {
  malformed_message = 1,  // a SCRAM message (or a stored secret) does not parse
  unsupported_mechanism,  // not SCRAM-SHA-256, or channel binding requested
  nonce_mismatch,         // the final message's nonce is not the one we issued/sent
  wrong_password,         // client proof (server side) does not verify
  bad_server_signature,   // server signature (client side) does not verify
  iteration_count,        // the server asks for an unreasonable iteration count
  wrong_state,            // a message out of order
};

const boost::system::error_category& category();
inline boost::system::error_code make_error_code(Error e) {
  return {static_cast<int>(e), category()};
}

template <class T>
using Result = boost::system::result<T>;

// Random bytes from OpenSSL's CSPRNG. Throws std::runtime_error if the CSPRNG fails.
void random_bytes(std::span<std::uint8_t> out);

// --- md5 (PostgreSQL's "md5" method) -------------------------------------------------------
// "md5" + hex(md5(password + user)): what pg_authid stores.
std::string md5_password_hash(std::string_view user, std::string_view password);
// "md5" + hex(md5(hex(md5(password + user)) + salt)): what the client sends.
std::string md5_response(std::string_view user, std::string_view password,
                         std::span<const std::uint8_t, 4> salt);
// Compares a client's md5 response with the expected one in constant time.
bool md5_verify(std::string_view user, std::string_view password,
                std::span<const std::uint8_t, 4> salt, std::string_view response);

// --- SCRAM-SHA-256 ----------------------------------------------------------------------------
constexpr std::string_view kScramMechanism = "SCRAM-SHA-256";
constexpr int kDefaultIterations = 4096;

struct ScramSecret {
  int iterations = kDefaultIterations;
  std::vector<std::uint8_t> salt;
  std::array<std::uint8_t, 32> stored_key{};
  std::array<std::uint8_t, 32> server_key{};
};

// Derives the verifier from a plaintext password (PBKDF2-HMAC-SHA-256). A random 16-byte salt
// is drawn when `salt` is empty. The password is used as given: PostgreSQL's SASLprep is the
// identity for ASCII passwords but may normalise others. Throws std::invalid_argument when
// iterations < 1.
ScramSecret make_scram_secret(std::string_view password, std::span<const std::uint8_t> salt = {},
                              int iterations = kDefaultIterations);

// The secret a SCRAM exchange runs against for a user that does not exist, so that the
// exchange looks like a real one: the salt is the same on every attempt for a given name
// (derived from it with a per-process random key, as PostgreSQL's mock salt), the iteration
// count the default, and no PBKDF2 is run (no timing or CPU difference). No proof matches it.
ScramSecret mock_scram_secret(std::string_view user);

// pg_authid's text form: "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>".
std::string format_scram_secret(const ScramSecret& secret);
Result<ScramSecret> parse_scram_secret(std::string_view text);

// Verifies a client that logs in to us.
class ScramServer {
 public:
  explicit ScramServer(ScramSecret secret);
  // For tests: a fixed server nonce part instead of a random one.
  ScramServer(ScramSecret secret, std::string server_nonce);

  // client-first-message (the SASLInitialResponse data) -> server-first-message.
  Result<std::string> client_first(std::string_view message);
  // client-final-message (the SASLResponse data) -> server-final-message ("v=...").
  // Error::wrong_password when the proof does not verify.
  Result<std::string> client_final(std::string_view message);
  // Any error except wrong_state ends the exchange: later calls return wrong_state.

 private:
  enum class State { initial, first_sent, done };
  ScramSecret secret_;
  std::string server_nonce_part_;
  std::string gs2_header_;  // "n,," or "y,,"; the final message's c= must echo it
  std::string client_first_bare_;
  std::string server_first_;
  std::string nonce_;  // client nonce + server nonce
  State state_ = State::initial;
};

// Logs us in to a PostgreSQL server.
class ScramClient {
 public:
  explicit ScramClient(std::string_view password);
  // For tests: a fixed client nonce instead of a random one, and optionally a user name to put
  // in the client-first-message (RFC 7677's example uses "user").
  ScramClient(std::string_view password, std::string client_nonce, std::string_view user = {});

  // The client-first-message ("n,,n=,r=<nonce>"); PostgreSQL ignores the user name in it.
  // Returns the same message when called again.
  std::string client_first();
  // server-first-message -> client-final-message. Error::iteration_count outside
  // [1, kMaxIterations]; Error::nonce_mismatch unless the nonce extends ours.
  Result<std::string> server_first(std::string_view message);
  // server-final-message: verifies the server signature. A server error ("e=invalid-proof")
  // is Error::wrong_password; any other "e=" is Error::bad_server_signature.
  Result<void> server_final(std::string_view message);
  // Any error except wrong_state ends the exchange: later calls return wrong_state.

  // A hostile server could otherwise make us run PBKDF2 for minutes.
  static constexpr int kMaxIterations = 1'000'000;

  // Logins (of any ScramClient in this process) whose keys were known from an earlier login
  // with the same password, salt and iteration count, so PBKDF2 did not run again.
  static std::uint64_t reused_keys();

 private:
  enum class State { initial, first_sent, final_sent, done };
  std::string password_;
  std::string client_nonce_;
  std::string client_first_bare_;
  std::array<std::uint8_t, 32> expected_server_signature_{};
  State state_ = State::initial;
};

}  // namespace pgdog::auth

template <>
struct boost::system::is_error_code_enum<pgdog::auth::Error> : std::true_type {};
