#include "auth/crypto.hpp"

#include <climits>
#include <stdexcept>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace pgdog::auth::detail {

namespace {

// OpenSSL takes int lengths; anything that large is a bug, not input to truncate.
int checked_int(std::size_t n) {
  if (n > static_cast<std::size_t>(INT_MAX)) throw std::length_error("auth: input too large");
  return static_cast<int>(n);
}

void check(int ok, const char* what) {
  if (ok != 1) throw std::runtime_error(std::string("auth: OpenSSL ") + what + " failed");
}

// Some OpenSSL entry points treat a null pointer differently from an empty buffer.
const unsigned char* non_null(const void* p) {
  static const unsigned char empty = 0;
  return p != nullptr ? static_cast<const unsigned char*>(p) : &empty;
}

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

Sha256 sha256(std::span<const std::uint8_t> data) {
  Sha256 out{};
  unsigned int len = 0;
  check(EVP_Digest(non_null(data.data()), data.size(), out.data(), &len, EVP_sha256(), nullptr),
        "SHA-256");
  return out;
}

Md5 md5(std::string_view data) {
  Md5 out{};
  unsigned int len = 0;
  check(EVP_Digest(non_null(data.data()), data.size(), out.data(), &len, EVP_md5(), nullptr),
        "MD5");
  return out;
}

Sha256 hmac_sha256(std::span<const std::uint8_t> key, std::string_view data) {
  Sha256 out{};
  unsigned int len = 0;
  const unsigned char* result = HMAC(EVP_sha256(), non_null(key.data()), checked_int(key.size()),
                                     non_null(data.data()), data.size(), out.data(), &len);
  check(result != nullptr && len == out.size() ? 1 : 0, "HMAC-SHA-256");
  return out;
}

Sha256 pbkdf2_sha256(std::string_view password, std::span<const std::uint8_t> salt,
                     int iterations) {
  Sha256 out{};
  check(PKCS5_PBKDF2_HMAC(reinterpret_cast<const char*>(non_null(password.data())),
                          checked_int(password.size()), non_null(salt.data()),
                          checked_int(salt.size()), iterations, EVP_sha256(),
                          static_cast<int>(out.size()), out.data()),
        "PBKDF2");
  return out;
}

std::string to_hex(std::span<const std::uint8_t> data) {
  static constexpr std::string_view kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (std::uint8_t b : data) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0x0f]);
  }
  return out;
}

std::string base64_encode(std::span<const std::uint8_t> data) {
  // EVP_EncodeBlock writes a NUL after the text, hence the room for one more byte.
  std::string out((data.size() + 2) / 3 * 4 + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), non_null(data.data()),
                                checked_int(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text) {
  // EVP_DecodeBlock skips whitespace, accepts '=' anywhere and counts the padding as zero
  // bytes: the canonical form is checked here first, and the padding taken off after.
  if (text.size() % 4 != 0) return std::nullopt;
  const std::size_t padding = text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
  const std::string_view digits = text.substr(0, text.size() - padding);
  if (digits.find_first_not_of(kAlphabet) != std::string_view::npos) return std::nullopt;
  // Non-zero bits under the padding would let two strings decode to the same bytes.
  const std::size_t unused_bits = padding == 1 ? 0x03 : 0x0f;
  if (padding > 0 && (kAlphabet.find(digits.back()) & unused_bits) != 0) return std::nullopt;
  std::vector<std::uint8_t> out(text.size() / 4 * 3);
  const int n = EVP_DecodeBlock(out.data(), non_null(text.data()), checked_int(text.size()));
  if (n < 0 || static_cast<std::size_t>(n) != out.size()) return std::nullopt;
  out.resize(out.size() - padding);
  return out;
}

bool equal_constant_time(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool equal_constant_time(std::string_view a, std::string_view b) {
  return equal_constant_time(as_bytes(a), as_bytes(b));
}

}  // namespace pgdog::auth::detail
