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

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

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
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    const std::uint32_t n = (std::uint32_t{data[i]} << 16) | (std::uint32_t{data[i + 1]} << 8) |
                            std::uint32_t{data[i + 2]};
    out.push_back(kAlphabet[(n >> 18) & 0x3f]);
    out.push_back(kAlphabet[(n >> 12) & 0x3f]);
    out.push_back(kAlphabet[(n >> 6) & 0x3f]);
    out.push_back(kAlphabet[n & 0x3f]);
  }
  const std::size_t rest = data.size() - i;
  if (rest == 1) {
    const std::uint32_t n = std::uint32_t{data[i]} << 16;
    out.push_back(kAlphabet[(n >> 18) & 0x3f]);
    out.push_back(kAlphabet[(n >> 12) & 0x3f]);
    out.append("==");
  } else if (rest == 2) {
    const std::uint32_t n = (std::uint32_t{data[i]} << 16) | (std::uint32_t{data[i + 1]} << 8);
    out.push_back(kAlphabet[(n >> 18) & 0x3f]);
    out.push_back(kAlphabet[(n >> 12) & 0x3f]);
    out.push_back(kAlphabet[(n >> 6) & 0x3f]);
    out.push_back('=');
  }
  return out;
}

std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::vector<std::uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last_group = i + 4 == text.size();
    std::array<int, 4> v{};
    int padding = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      const char c = text[i + j];
      if (c == '=') {
        // At most two '=', only at the very end.
        if (!last_group || j < 2) return std::nullopt;
        ++padding;
        continue;
      }
      if (padding > 0) return std::nullopt;
      v[j] = base64_value(c);
      if (v[j] < 0) return std::nullopt;
    }
    // Non-zero bits under the padding would let two strings decode to the same bytes.
    if (padding == 1 && (v[2] & 0x03) != 0) return std::nullopt;
    if (padding == 2 && (v[1] & 0x0f) != 0) return std::nullopt;
    const auto n = static_cast<std::uint32_t>((v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3]);
    out.push_back(static_cast<std::uint8_t>(n >> 16));
    if (padding < 2) out.push_back(static_cast<std::uint8_t>((n >> 8) & 0xff));
    if (padding < 1) out.push_back(static_cast<std::uint8_t>(n & 0xff));
  }
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
