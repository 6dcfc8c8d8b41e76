#include "auth/crypto.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "auth/auth.hpp"

namespace pgdog::auth {
namespace {

using detail::as_bytes;
using detail::base64_decode;
using detail::base64_encode;

std::string decode_to_string(std::string_view text) {
  const auto bytes = base64_decode(text);
  return bytes ? std::string(bytes->begin(), bytes->end()) : std::string("<invalid>");
}

// RFC 4648 section 10.
TEST(Base64, Rfc4648Vectors) {
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64_encode(as_bytes(plain)), encoded);
    EXPECT_EQ(decode_to_string(encoded), plain) << encoded;
  }
}

TEST(Base64, GsHeaders) {
  EXPECT_EQ(base64_encode(as_bytes("n,,")), "biws");
  EXPECT_EQ(base64_encode(as_bytes("y,,")), "eSws");
}

TEST(Base64, RoundTripsEveryByte) {
  std::vector<std::uint8_t> all(256);
  for (std::size_t i = 0; i < all.size(); ++i)
    all[i] = static_cast<std::uint8_t>(i);
  for (std::size_t n = 0; n <= all.size(); ++n) {
    const std::span<const std::uint8_t> part(all.data(), n);
    const auto decoded = base64_decode(base64_encode(part));
    ASSERT_TRUE(decoded) << n;
    EXPECT_TRUE(std::equal(decoded->begin(), decoded->end(), part.begin(), part.end())) << n;
  }
}

TEST(Base64, RejectsNonCanonicalInput) {
  for (const std::string_view bad : {
           "Zg",        // missing padding
           "Zg=",       // short padding
           "Zg===",     // too much padding
           "Z===",      // three '='
           "====",      // only padding
           "Zm9v====",  // a whole group of padding
           "Zg==Zg==",  // padding in the middle
           "Z=g=",      // data after '='
           "Zh==",      // non-zero bits under the padding
           "Zm9=",      // non-zero bits under the padding
           "Zm9v\n",    // whitespace
           " Zm9v",     // whitespace
           "Zm-v",      // base64url alphabet
           "Zm_v",      // base64url alphabet
           "Zm9\x80",   // high byte
       }) {
    EXPECT_FALSE(base64_decode(bad)) << bad;
  }
  EXPECT_FALSE(base64_decode(std::string_view("Zm9\0", 4)));
}

TEST(ConstantTime, Equal) {
  EXPECT_TRUE(detail::equal_constant_time("", ""));
  EXPECT_TRUE(detail::equal_constant_time("abc", "abc"));
  EXPECT_FALSE(detail::equal_constant_time("abc", "abd"));
  EXPECT_FALSE(detail::equal_constant_time("abc", "ab"));
}

// RFC 4231 test case 2.
TEST(Crypto, HmacSha256KnownAnswer) {
  const auto mac = detail::hmac_sha256(as_bytes("Jefe"), "what do ya want for nothing?");
  EXPECT_EQ(detail::to_hex(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Crypto, Sha256KnownAnswer) {
  EXPECT_EQ(detail::to_hex(detail::sha256(as_bytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(detail::to_hex(detail::sha256({})),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Crypto, RandomBytesFillsAndDiffers) {
  std::array<std::uint8_t, 32> a{};
  std::array<std::uint8_t, 32> b{};
  random_bytes(a);
  random_bytes(b);
  EXPECT_NE(a, b);
  random_bytes(std::span<std::uint8_t>());
}

TEST(ErrorCategory, NameAndMessages) {
  const boost::system::error_code ec = Error::wrong_password;
  EXPECT_STREQ(ec.category().name(), "pgdog.auth");
  EXPECT_EQ(&ec.category(), &category());
  EXPECT_EQ(ec.value(), static_cast<int>(Error::wrong_password));
  EXPECT_EQ(ec.message(), "password authentication failed");
  for (int v = static_cast<int>(Error::malformed_message);
       v <= static_cast<int>(Error::wrong_state); ++v) {
    const std::string message = category().message(v);
    EXPECT_FALSE(message.empty());
    EXPECT_NE(message, "unknown auth error") << v;
  }
  EXPECT_EQ(category().message(0), "unknown auth error");
  EXPECT_EQ(category().message(1000), "unknown auth error");
  EXPECT_TRUE(ec == Error::wrong_password);
  EXPECT_FALSE(ec == Error::wrong_state);
}

}  // namespace
}  // namespace pgdog::auth
