#include "auth/auth.hpp"

#include <algorithm>
#include <climits>
#include <stdexcept>

#include <openssl/rand.h>

#include "auth/crypto.hpp"

namespace pgdog::auth {

namespace {

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "pgdog.auth"; }

  std::string message(int value) const override {
    switch (static_cast<Error>(value)) {
      case Error::malformed_message:
        return "malformed SCRAM message";
      case Error::unsupported_mechanism:
        return "unsupported SASL mechanism or channel binding";
      case Error::nonce_mismatch:
        return "SCRAM nonce mismatch";
      case Error::wrong_password:
        return "password authentication failed";
      case Error::bad_server_signature:
        return "server signature does not verify";
      case Error::iteration_count:
        return "unreasonable SCRAM iteration count";
      case Error::wrong_state:
        return "authentication message out of order";
    }
    return "unknown auth error";
  }
};

std::string md5_hex(std::string_view data) {
  return detail::to_hex(detail::md5(data));
}

}  // namespace

const boost::system::error_category& category() {
  static const Category instance;
  return instance;
}

void random_bytes(std::span<std::uint8_t> out) {
  // RAND_bytes takes an int length; draw in chunks so any span size works.
  while (!out.empty()) {
    const std::size_t n = std::min<std::size_t>(out.size(), INT_MAX);
    if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
      throw std::runtime_error("auth: RAND_bytes failed");
    }
    out = out.subspan(n);
  }
}

std::string md5_password_hash(std::string_view user, std::string_view password) {
  std::string input(password);
  input.append(user);
  return "md5" + md5_hex(input);
}

std::string md5_response(std::string_view user, std::string_view password,
                         std::span<const std::uint8_t, 4> salt) {
  // The inner hash is hex without the "md5" prefix; the salt is appended as raw bytes.
  std::string inner(password);
  inner.append(user);
  std::string outer = md5_hex(inner);
  outer.append(reinterpret_cast<const char*>(salt.data()), salt.size());
  return "md5" + md5_hex(outer);
}

bool md5_verify(std::string_view user, std::string_view password,
                std::span<const std::uint8_t, 4> salt, std::string_view response) {
  return detail::equal_constant_time(md5_response(user, password, salt), response);
}

}  // namespace pgdog::auth
