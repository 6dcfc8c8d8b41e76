#pragma once

// Internal to auth/: thin wrappers over libcrypto and a strict base64. Failures inside
// OpenSSL (out of memory, a provider without the algorithm) throw std::runtime_error; they
// are not protocol errors a peer can cause.

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pgdog::auth::detail {

using Sha256 = std::array<std::uint8_t, 32>;
using Md5 = std::array<std::uint8_t, 16>;

Sha256 sha256(std::span<const std::uint8_t> data);
Md5 md5(std::string_view data);
Sha256 hmac_sha256(std::span<const std::uint8_t> key, std::string_view data);
Sha256 pbkdf2_sha256(std::string_view password, std::span<const std::uint8_t> salt, int iterations);

// Lower-case hex, as PostgreSQL prints md5 digests.
std::string to_hex(std::span<const std::uint8_t> data);

// RFC 4648 base64 with padding.
std::string base64_encode(std::span<const std::uint8_t> data);
// Accepts only canonical input: length a multiple of 4, padding only at the end, no
// whitespace, unused trailing bits zero. Anything else is nullopt.
std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text);

// Constant-time when the sizes match; different sizes are unequal (sizes are not secret here).
bool equal_constant_time(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);
bool equal_constant_time(std::string_view a, std::string_view b);

inline std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace pgdog::auth::detail
