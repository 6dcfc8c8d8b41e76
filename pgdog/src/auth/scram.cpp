// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: no channel binding, no authzid,
// the user name in the client-first-message ignored (the startup packet carries it).

#include <algorithm>
#include <atomic>
#include <charconv>
#include <climits>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "auth/auth.hpp"
#include "auth/crypto.hpp"

namespace pgdog::auth {

namespace {

using detail::Sha256;

constexpr std::size_t kNonceBytes = 18;  // PostgreSQL's SCRAM_RAW_NONCE_LEN
constexpr std::size_t kSaltBytes = 16;   // PostgreSQL's SCRAM_DEFAULT_SALT_LEN
constexpr std::string_view kSecretPrefix = "SCRAM-SHA-256$";

struct Attribute {
  char name;
  std::string_view value;
  std::size_t offset;  // of the name within the message
};

bool is_ascii_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Splits "a=x,b=y" into attributes: each part one ASCII letter, '=', a value without NUL.
// Values may be empty (callers decide); an empty message or empty part is malformed.
std::optional<std::vector<Attribute>> split_attributes(std::string_view message) {
  std::vector<Attribute> out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t end = std::min(message.find(',', pos), message.size());
    const std::string_view part = message.substr(pos, end - pos);
    if (part.size() < 2 || !is_ascii_letter(part[0]) || part[1] != '=') return std::nullopt;
    const std::string_view value = part.substr(2);
    if (value.find('\0') != std::string_view::npos) return std::nullopt;
    out.push_back({part[0], value, pos});
    if (end == message.size()) return out;
    pos = end + 1;
  }
}

// RFC 5802 says unknown extensions must be ignored; an attribute it defines in the wrong
// place, or the reserved mandatory-extension "m", is an error.
bool extensions_ok(std::span<const Attribute> extensions) {
  constexpr std::string_view kDefined = "amnrcsipve";
  for (const auto& a : extensions) {
    if (kDefined.find(a.name) != std::string_view::npos) return false;
  }
  return true;
}

// printable = %x21-2B / %x2D-7E
bool valid_nonce(std::string_view nonce) {
  if (nonce.empty()) return false;
  for (char c : nonce) {
    if (c < 0x21 || c > 0x7e || c == ',') return false;
  }
  return true;
}

std::string random_nonce() {
  std::array<std::uint8_t, kNonceBytes> raw{};
  random_bytes(raw);
  return detail::base64_encode(raw);
}

// Digits only (from_chars also takes a leading '-'; negatives fall below the range anyway).
Result<int> parse_iterations(std::string_view text, int max) {
  int value = 0;
  const char* last = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), last, value);
  if (ptr != last || ec == std::errc::invalid_argument) return Error::malformed_message;
  if (ec == std::errc::result_out_of_range || value < 1 || value > max) {
    return Error::iteration_count;
  }
  return value;
}

struct Keys {
  Sha256 client_key;
  Sha256 stored_key;
  Sha256 server_key;
};

Keys derive_keys(std::string_view password, std::span<const std::uint8_t> salt, int iterations) {
  const Sha256 salted = detail::pbkdf2_sha256(password, salt, iterations);
  Keys keys{};
  keys.client_key = detail::hmac_sha256(salted, "Client Key");
  keys.stored_key = detail::sha256(keys.client_key);
  keys.server_key = detail::hmac_sha256(salted, "Server Key");
  return keys;
}

// The keys of the passwords this process logs in to servers with, by salt and iteration count.
// PostgreSQL keeps one salt per role until its password changes, so every connection after the
// first to a server skips PBKDF2 (4,096 rounds by default: about 2 ms of CPU here, on the
// worker's loop, per connection). Entries are found by a hash of password, salt and count, so the
// cache holds no password; a server that sends a new salt every time only makes it start over when
// full.
class KeyCache {
 public:
  Keys derive(std::string_view password, std::span<const std::uint8_t> salt, int iterations) {
    // Count and salt length first: no other (salt, password) pair reads the same.
    std::string id = std::to_string(iterations) + ':' + std::to_string(salt.size()) + ':';
    id.append(reinterpret_cast<const char*>(salt.data()), salt.size());
    id.append(password);
    const Sha256 key = detail::sha256(detail::as_bytes(id));
    {
      std::lock_guard g(mutex_);
      if (auto it = keys_.find(key); it != keys_.end()) {
        hits_.fetch_add(1, std::memory_order_relaxed);
        return it->second;
      }
    }
    const Keys keys = derive_keys(password, salt, iterations);  // not under the lock
    std::lock_guard g(mutex_);
    if (keys_.size() >= kMaxEntries) keys_.clear();
    keys_.emplace(key, keys);
    return keys;
  }
  std::uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }

 private:
  static constexpr std::size_t kMaxEntries = 1024;
  std::mutex mutex_;
  std::map<Sha256, Keys> keys_;
  std::atomic<std::uint64_t> hits_{0};
};

KeyCache& key_cache() {
  static KeyCache cache;
  return cache;
}

Sha256 xor_bytes(std::span<const std::uint8_t, 32> a, std::span<const std::uint8_t, 32> b) {
  Sha256 out{};
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::uint8_t>(a[i] ^ b[i]);
  }
  return out;
}

// saslname: ',' and '=' are escaped as =2C and =3D.
std::string sasl_name(std::string_view user) {
  std::string out;
  for (char c : user) {
    if (c == ',') {
      out += "=2C";
    } else if (c == '=') {
      out += "=3D";
    } else {
      out += c;
    }
  }
  return out;
}

std::string join_auth_message(std::string_view client_first_bare, std::string_view server_first,
                              std::string_view client_final_without_proof) {
  std::string out;
  out.reserve(client_first_bare.size() + server_first.size() + client_final_without_proof.size() +
              2);
  out.append(client_first_bare).append(",").append(server_first).append(",");
  out.append(client_final_without_proof);
  return out;
}

std::optional<std::vector<std::uint8_t>> decode_key(std::string_view text) {
  auto bytes = detail::base64_decode(text);
  if (!bytes || bytes->size() != 32) return std::nullopt;
  return bytes;
}

}  // namespace

ScramSecret mock_scram_secret(std::string_view user) {
  static const std::array<std::uint8_t, 32> key = [] {
    std::array<std::uint8_t, 32> k{};
    random_bytes(k);
    return k;
  }();
  const detail::Sha256 digest = detail::hmac_sha256(key, user);
  ScramSecret secret;
  secret.salt.assign(digest.begin(), digest.begin() + 16);
  // Random keys: whatever the client proves, it cannot match them.
  random_bytes(secret.stored_key);
  random_bytes(secret.server_key);
  return secret;
}

ScramSecret make_scram_secret(std::string_view password, std::span<const std::uint8_t> salt,
                              int iterations) {
  if (iterations < 1) throw std::invalid_argument("auth: SCRAM iterations must be >= 1");
  ScramSecret secret;
  secret.iterations = iterations;
  if (salt.empty()) {
    secret.salt.resize(kSaltBytes);
    random_bytes(secret.salt);
  } else {
    secret.salt.assign(salt.begin(), salt.end());
  }
  const Keys keys = derive_keys(password, secret.salt, iterations);
  secret.stored_key = keys.stored_key;
  secret.server_key = keys.server_key;
  return secret;
}

std::string format_scram_secret(const ScramSecret& secret) {
  std::string out(kSecretPrefix);
  out += std::to_string(secret.iterations);
  out += ':';
  out += detail::base64_encode(secret.salt);
  out += '$';
  out += detail::base64_encode(secret.stored_key);
  out += ':';
  out += detail::base64_encode(secret.server_key);
  return out;
}

Result<ScramSecret> parse_scram_secret(std::string_view text) {
  if (!text.starts_with(kSecretPrefix)) return Error::unsupported_mechanism;
  text.remove_prefix(kSecretPrefix.size());
  const std::size_t dollar = text.find('$');
  if (dollar == std::string_view::npos) return Error::malformed_message;
  const std::string_view params = text.substr(0, dollar);
  const std::string_view keys = text.substr(dollar + 1);
  const std::size_t params_colon = params.find(':');
  const std::size_t keys_colon = keys.find(':');
  if (params_colon == std::string_view::npos || keys_colon == std::string_view::npos) {
    return Error::malformed_message;
  }

  // A stored secret is our own configuration, so no upper bound on its cost.
  const auto iterations = parse_iterations(params.substr(0, params_colon), INT_MAX);
  if (!iterations) return Error::malformed_message;
  auto salt = detail::base64_decode(params.substr(params_colon + 1));
  const auto stored_key = decode_key(keys.substr(0, keys_colon));
  const auto server_key = decode_key(keys.substr(keys_colon + 1));
  if (!salt || salt->empty() || !stored_key || !server_key) return Error::malformed_message;

  ScramSecret secret;
  secret.iterations = *iterations;
  secret.salt = std::move(*salt);
  std::copy(stored_key->begin(), stored_key->end(), secret.stored_key.begin());
  std::copy(server_key->begin(), server_key->end(), secret.server_key.begin());
  return secret;
}

ScramServer::ScramServer(ScramSecret secret) : ScramServer(std::move(secret), random_nonce()) {}

ScramServer::ScramServer(ScramSecret secret, std::string server_nonce)
    : secret_(std::move(secret)), server_nonce_part_(std::move(server_nonce)) {}

Result<std::string> ScramServer::client_first(std::string_view message) {
  if (state_ != State::initial) return Error::wrong_state;
  state_ = State::done;  // every failure below ends the exchange

  if (message.starts_with("p=")) return Error::unsupported_mechanism;
  // "y" means the client could bind but believes we cannot; true, we never offer -PLUS.
  if (!message.starts_with("n,") && !message.starts_with("y,")) return Error::malformed_message;
  // Anything but an empty authzid, as in PostgreSQL.
  if (message.size() < 3 || message[2] != ',') return Error::malformed_message;

  const std::string_view bare = message.substr(3);
  const auto attrs = split_attributes(bare);
  // A leading "m=" (mandatory extension) fails the 'n' check.
  if (!attrs || attrs->size() < 2 || (*attrs)[0].name != 'n' || (*attrs)[1].name != 'r') {
    return Error::malformed_message;
  }
  const std::string_view client_nonce = (*attrs)[1].value;
  if (!valid_nonce(client_nonce) || !extensions_ok(std::span(*attrs).subspan(2))) {
    return Error::malformed_message;
  }

  gs2_header_ = message.substr(0, 3);
  client_first_bare_ = bare;
  nonce_ = std::string(client_nonce) + server_nonce_part_;
  server_first_ = "r=" + nonce_ + ",s=" + detail::base64_encode(secret_.salt) +
                  ",i=" + std::to_string(secret_.iterations);
  state_ = State::first_sent;
  return server_first_;
}

Result<std::string> ScramServer::client_final(std::string_view message) {
  if (state_ != State::first_sent) return Error::wrong_state;
  state_ = State::done;

  const auto attrs = split_attributes(message);
  if (!attrs || attrs->size() < 3) return Error::malformed_message;
  const Attribute& binding = attrs->front();
  const Attribute& nonce = (*attrs)[1];
  const Attribute& proof = attrs->back();
  if (binding.name != 'c' || nonce.name != 'r' || proof.name != 'p' ||
      !extensions_ok(std::span(*attrs).subspan(2, attrs->size() - 3))) {
    return Error::malformed_message;
  }
  // Without channel binding, c= is the gs2 header echoed in base64 ("biws" for "n,,").
  if (binding.value != detail::base64_encode(detail::as_bytes(gs2_header_))) {
    return Error::malformed_message;
  }
  if (nonce.value != nonce_) return Error::nonce_mismatch;
  const auto client_proof = decode_key(proof.value);
  if (!client_proof) return Error::malformed_message;

  // Everything before ",p=".
  const std::string_view without_proof = message.substr(0, proof.offset - 1);
  const std::string auth_message =
      join_auth_message(client_first_bare_, server_first_, without_proof);
  const Sha256 client_signature = detail::hmac_sha256(secret_.stored_key, auth_message);
  const Sha256 client_key =
      xor_bytes(std::span<const std::uint8_t, 32>(*client_proof), client_signature);
  if (!detail::equal_constant_time(detail::sha256(client_key), secret_.stored_key)) {
    return Error::wrong_password;
  }
  const Sha256 server_signature = detail::hmac_sha256(secret_.server_key, auth_message);
  return "v=" + detail::base64_encode(server_signature);
}

ScramClient::ScramClient(std::string_view password) : ScramClient(password, random_nonce()) {}

ScramClient::ScramClient(std::string_view password, std::string client_nonce, std::string_view user)
    : password_(password),
      client_nonce_(std::move(client_nonce)),
      client_first_bare_("n=" + sasl_name(user) + ",r=" + client_nonce_) {}

std::string ScramClient::client_first() {
  if (state_ == State::initial) state_ = State::first_sent;
  return "n,," + client_first_bare_;
}

Result<std::string> ScramClient::server_first(std::string_view message) {
  if (state_ != State::first_sent) return Error::wrong_state;
  state_ = State::done;  // every failure below ends the exchange

  const auto attrs = split_attributes(message);
  // A leading "m=" (mandatory extension) fails the 'r' check.
  if (!attrs || attrs->size() < 3 || (*attrs)[0].name != 'r' || (*attrs)[1].name != 's' ||
      (*attrs)[2].name != 'i' || !extensions_ok(std::span(*attrs).subspan(3))) {
    return Error::malformed_message;
  }
  const std::string_view nonce = (*attrs)[0].value;
  if (!valid_nonce(nonce)) return Error::malformed_message;
  // The server must extend our nonce with a part of its own.
  if (!nonce.starts_with(client_nonce_) || nonce.size() == client_nonce_.size()) {
    return Error::nonce_mismatch;
  }
  const auto salt = detail::base64_decode((*attrs)[1].value);
  if (!salt || salt->empty()) return Error::malformed_message;
  const auto iterations = parse_iterations((*attrs)[2].value, kMaxIterations);
  if (!iterations) return iterations.error();

  const Keys keys = key_cache().derive(password_, *salt, *iterations);
  std::string client_final = "c=biws,r=";
  client_final.append(nonce);
  const std::string auth_message = join_auth_message(client_first_bare_, message, client_final);
  const Sha256 client_signature = detail::hmac_sha256(keys.stored_key, auth_message);
  const Sha256 proof = xor_bytes(keys.client_key, client_signature);
  expected_server_signature_ = detail::hmac_sha256(keys.server_key, auth_message);

  client_final += ",p=";
  client_final += detail::base64_encode(proof);
  state_ = State::final_sent;
  return client_final;
}

std::uint64_t ScramClient::reused_keys() {
  return key_cache().hits();
}

Result<void> ScramClient::server_final(std::string_view message) {
  if (state_ != State::final_sent) return Error::wrong_state;
  state_ = State::done;

  const auto attrs = split_attributes(message);
  if (!attrs) return Error::malformed_message;
  const Attribute& first = attrs->front();
  if (first.name == 'e') {
    return first.value == "invalid-proof" ? Error::wrong_password : Error::bad_server_signature;
  }
  if (first.name != 'v' || !extensions_ok(std::span(*attrs).subspan(1))) {
    return Error::malformed_message;
  }
  const auto signature = decode_key(first.value);
  if (!signature) return Error::malformed_message;
  if (!detail::equal_constant_time(*signature, expected_server_signature_)) {
    return Error::bad_server_signature;
  }
  return {};
}

}  // namespace pgdog::auth
