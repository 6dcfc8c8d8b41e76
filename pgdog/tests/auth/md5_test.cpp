#include <array>
#include <cstdint>

#include <gtest/gtest.h>

#include "auth/auth.hpp"

namespace pgdog::auth {
namespace {

// Expected values computed outside this code with coreutils:
//   printf '%s' 'passworduser' | md5sum                        -> 4d45974e...
//   h=4d45974e13472b5a0be3533de4666414
//   { printf '%s' "$h"; printf '\x01\x02\x03\x04'; } | md5sum  -> a3576f1a...
TEST(Md5, PasswordHashKnownAnswer) {
  EXPECT_EQ(md5_password_hash("user", "password"), "md54d45974e13472b5a0be3533de4666414");
}

TEST(Md5, ResponseKnownAnswer) {
  const std::array<std::uint8_t, 4> salt{0x01, 0x02, 0x03, 0x04};
  EXPECT_EQ(md5_response("user", "password", salt), "md5a3576f1ae039b8996bc4fc2720f9c71a");
}

// rolpassword of `CREATE ROLE bob PASSWORD 'secret'` on PostgreSQL 15.18 with
// password_encryption = md5; the response was computed as above with salt de ad be ef.
TEST(Md5, MatchesPostgresPgAuthid) {
  EXPECT_EQ(md5_password_hash("bob", "secret"), "md521f3163f8f86fa10bdefbfbd502a8f06");
  const std::array<std::uint8_t, 4> salt{0xde, 0xad, 0xbe, 0xef};
  EXPECT_EQ(md5_response("bob", "secret", salt), "md5f367206c41f91baa6279335f27350e9d");
}

// md5("") = d41d8cd98f00b204e9800998ecf8427e; the empty buffers must not trip OpenSSL.
TEST(Md5, EmptyUserAndPassword) {
  EXPECT_EQ(md5_password_hash("", ""), "md5d41d8cd98f00b204e9800998ecf8427e");
}

TEST(Md5, Verify) {
  const std::array<std::uint8_t, 4> salt{0x01, 0x02, 0x03, 0x04};
  EXPECT_TRUE(md5_verify("user", "password", salt, "md5a3576f1ae039b8996bc4fc2720f9c71a"));
  EXPECT_FALSE(md5_verify("user", "password", salt, "md5a3576f1ae039b8996bc4fc2720f9c71b"));
  EXPECT_FALSE(md5_verify("user", "wrong", salt, "md5a3576f1ae039b8996bc4fc2720f9c71a"));
  EXPECT_FALSE(md5_verify("user", "password", salt, "md5a3576f1ae039b8996bc4fc2720f9c71"));
  EXPECT_FALSE(md5_verify("user", "password", salt, ""));
  const std::array<std::uint8_t, 4> other{0x01, 0x02, 0x03, 0x05};
  EXPECT_FALSE(md5_verify("user", "password", other, "md5a3576f1ae039b8996bc4fc2720f9c71a"));
}

}  // namespace
}  // namespace pgdog::auth
