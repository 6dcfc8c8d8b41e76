#include "auth/server_handshake.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "auth/crypto.hpp"
#include "protocol/messages.hpp"

namespace pgdog::auth {
namespace {

using namespace std::string_literals;
using Status = ServerHandshake::Status;

// RFC 7677 section 3 (see scram_test.cpp).
constexpr std::string_view kRfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view kRfcSalt = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr std::string_view kRfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kRfcServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view kRfcClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kRfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

// AuthenticationOk: 'R', length 8, code 0.
const std::string kAuthOk = "R\0\0\0\x08\0\0\0\0"s;
// AuthenticationSASL offering SCRAM-SHA-256 only: code 10, the name, an empty name.
const std::string kAuthSasl = "R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0"s;
// md5 of "secret" + "bob" with salt de ad be ef, computed with coreutils (see md5_test.cpp).
const std::string kBobMd5 = "p\0\0\0\x28md5f367206c41f91baa6279335f27350e9d\0"s;

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// A PasswordMessage-type frame ('p') around `body`.
std::string password_frame(std::string_view body) {
  return "p" + be32(static_cast<std::uint32_t>(body.size() + 4)) + std::string(body);
}

std::string sasl_initial(std::string_view mechanism, std::string_view data) {
  std::string body(mechanism);
  body.push_back('\0');
  body += be32(static_cast<std::uint32_t>(data.size())) + std::string(data);
  return password_frame(body);
}

std::string auth_message(std::uint32_t code, std::string_view data) {
  return "R" + be32(static_cast<std::uint32_t>(data.size() + 8)) + be32(code) + std::string(data);
}

ServerHandshake::Step feed(ServerHandshake& h, const std::string& bytes) {
  const auto frame = protocol::next_frame(bytes, 1 << 20);
  EXPECT_TRUE(frame && frame->size() == bytes.size()) << "not one frame";
  return h.feed(*frame);
}

ScramSecret rfc_secret(std::string_view password = "pencil") {
  return make_scram_secret(password, *detail::base64_decode(kRfcSalt), 4096);
}

ServerHandshake::Fixed fixed() {
  return {{0xde, 0xad, 0xbe, 0xef}, std::string(kRfcServerNonce)};
}

void expect_failed(const ServerHandshake::Step& step, std::string_view sqlstate,
                   std::string_view message) {
  EXPECT_EQ(step.status, Status::failed);
  EXPECT_EQ(step.sqlstate, sqlstate);
  EXPECT_EQ(step.message, message);
  EXPECT_TRUE(step.out.empty());
}

TEST(ServerHandshake, TrustIsDoneAtOnce) {
  ServerHandshake h(Method::trust, "bob", std::nullopt, nullptr);
  const auto step = h.start();
  EXPECT_EQ(step.status, Status::done);
  EXPECT_EQ(step.out, kAuthOk);
}

TEST(ServerHandshake, Md5RightPassword) {
  ServerHandshake h(Method::md5, "bob", "secret", nullptr, fixed());
  const auto first = h.start();
  EXPECT_EQ(first.status, Status::reply);
  EXPECT_EQ(first.out, "R\0\0\0\x0c\0\0\0\x05\xde\xad\xbe\xef"s);
  const auto step = feed(h, kBobMd5);
  EXPECT_EQ(step.status, Status::done);
  EXPECT_EQ(step.out, kAuthOk);
}

TEST(ServerHandshake, Md5WrongPassword) {
  ServerHandshake h(Method::md5, "bob", "not secret", nullptr, fixed());
  h.start();
  expect_failed(feed(h, kBobMd5), "28P01", "password authentication failed for user \"bob\"");
}

TEST(ServerHandshake, Md5UnknownUserFailsLikeAWrongPassword) {
  ServerHandshake h(Method::md5, "bob", std::nullopt, nullptr, fixed());
  EXPECT_EQ(h.start().out, "R\0\0\0\x0c\0\0\0\x05\xde\xad\xbe\xef"s);
  expect_failed(feed(h, kBobMd5), "28P01", "password authentication failed for user \"bob\"");
}

TEST(ServerHandshake, Md5MalformedPasswordMessage) {
  ServerHandshake h(Method::md5, "bob", "secret", nullptr, fixed());
  h.start();
  // No terminating NUL.
  expect_failed(feed(h, "p\0\0\0\x07md5"s), "28P01",
                "password authentication failed for user \"bob\"");
}

TEST(ServerHandshake, ScramRightPassword) {
  const ScramSecret secret = rfc_secret();
  ServerHandshake h(Method::scram, "user", "pencil", &secret, fixed());
  const auto first = h.start();
  EXPECT_EQ(first.status, Status::reply);
  EXPECT_EQ(first.out, kAuthSasl);

  const auto cont = feed(h, sasl_initial("SCRAM-SHA-256", kRfcClientFirst));
  EXPECT_EQ(cont.status, Status::reply);
  EXPECT_EQ(cont.out, auth_message(11, kRfcServerFirst));

  const auto done = feed(h, password_frame(kRfcClientFinal));
  EXPECT_EQ(done.status, Status::done);
  EXPECT_EQ(done.out, auth_message(12, kRfcServerFinal) + kAuthOk);
}

TEST(ServerHandshake, ScramWrongPassword) {
  const ScramSecret secret = rfc_secret("not pencil");
  ServerHandshake h(Method::scram, "user", "not pencil", &secret, fixed());
  h.start();
  EXPECT_EQ(feed(h, sasl_initial("SCRAM-SHA-256", kRfcClientFirst)).status, Status::reply);
  expect_failed(feed(h, password_frame(kRfcClientFinal)), "28P01",
                "password authentication failed for user \"user\"");
}

// The exchange looks like a real one (same messages, a stable salt per name) and ends like a
// wrong password, whether the user is unknown or has no password.
TEST(ServerHandshake, ScramUnknownUserRunsAgainstAMockSecret) {
  const ScramSecret secret = rfc_secret();
  std::vector<std::string> server_firsts;
  for (const auto& [password, s] :
       std::vector<std::pair<std::optional<std::string>, const ScramSecret*>>{
           {std::nullopt, nullptr}, {std::nullopt, &secret}, {"pencil", nullptr}}) {
    ServerHandshake h(Method::scram, "user", password, s, fixed());
    EXPECT_EQ(h.start().out, kAuthSasl);
    const auto cont = feed(h, sasl_initial("SCRAM-SHA-256", kRfcClientFirst));
    ASSERT_EQ(cont.status, Status::reply);
    server_firsts.push_back(cont.out);
    expect_failed(feed(h, password_frame(kRfcClientFinal)), "28P01",
                  "password authentication failed for user \"user\"");
  }
  EXPECT_NE(server_firsts[0], auth_message(11, kRfcServerFirst));  // not the real salt
  EXPECT_EQ(server_firsts[0], server_firsts[1]);
  EXPECT_EQ(server_firsts[0], server_firsts[2]);
  EXPECT_EQ(server_firsts[0].size(), auth_message(11, kRfcServerFirst).size());
}

TEST(ServerHandshake, ScramMalformedClientFirst) {
  const ScramSecret secret = rfc_secret();
  ServerHandshake h(Method::scram, "user", "pencil", &secret, fixed());
  h.start();
  expect_failed(feed(h, sasl_initial("SCRAM-SHA-256", "x,,n=,r=abc")), "08P01",
                "malformed SCRAM client-first-message");
}

TEST(ServerHandshake, ScramMalformedSaslInitialResponse) {
  const ScramSecret secret = rfc_secret();
  ServerHandshake h(Method::scram, "user", "pencil", &secret, fixed());
  h.start();
  // The data length says 100 bytes; 3 follow.
  expect_failed(feed(h, password_frame("SCRAM-SHA-256\0\0\0\0\x64n,,"s)), "08P01",
                "malformed SASLInitialResponse");
}

TEST(ServerHandshake, ScramWrongMechanism) {
  const ScramSecret secret = rfc_secret();
  ServerHandshake h(Method::scram, "user", "pencil", &secret, fixed());
  h.start();
  expect_failed(feed(h, sasl_initial("SCRAM-SHA-256-PLUS", kRfcClientFirst)), "28000",
                "unsupported SASL mechanism \"SCRAM-SHA-256-PLUS\"");
}

TEST(ServerHandshake, ScramMalformedClientFinal) {
  for (const std::string_view final_message : {
           "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",  // no proof
           "c=biws,r=someoneelsesnonce,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
       }) {
    const ScramSecret secret = rfc_secret();
    ServerHandshake h(Method::scram, "user", "pencil", &secret, fixed());
    h.start();
    feed(h, sasl_initial("SCRAM-SHA-256", kRfcClientFirst));
    expect_failed(feed(h, password_frame(final_message)), "08P01",
                  "malformed SCRAM client-final-message");
  }
}

TEST(ServerHandshake, AnythingButAPasswordMessageFails) {
  const ScramSecret secret = rfc_secret();
  ServerHandshake h(Method::scram, "user", "pencil", &secret, fixed());
  h.start();
  expect_failed(feed(h, "Q\0\0\0\x0dSELECT 1\0"s), "08P01",
                "expected a password message during authentication");
}

TEST(ServerHandshake, NothingAfterTheEnd) {
  ServerHandshake h(Method::md5, "bob", "secret", nullptr, fixed());
  h.start();
  EXPECT_EQ(feed(h, kBobMd5).status, Status::done);
  EXPECT_EQ(feed(h, kBobMd5).status, Status::failed);
}

TEST(ServerHandshake, RandomSaltAndNonceDifferEachTime) {
  ServerHandshake a(Method::md5, "bob", "secret", nullptr);
  ServerHandshake b(Method::md5, "bob", "secret", nullptr);
  EXPECT_NE(a.start().out, b.start().out);
  const ScramSecret secret = rfc_secret();
  ServerHandshake c(Method::scram, "user", "pencil", &secret);
  ServerHandshake d(Method::scram, "user", "pencil", &secret);
  c.start();
  d.start();
  EXPECT_NE(feed(c, sasl_initial("SCRAM-SHA-256", kRfcClientFirst)).out,
            feed(d, sasl_initial("SCRAM-SHA-256", kRfcClientFirst)).out);
}

}  // namespace
}  // namespace pgdog::auth
