#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "auth/auth.hpp"
#include "auth/crypto.hpp"

namespace pgdog::auth {
namespace {

// RFC 7677 section 3. The proof has a '+' after "UhN" (checked with Python's hashlib too); a
// copy with '4' in its place circulates and fails, as it should.
constexpr std::string_view kRfcClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kRfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view kRfcSalt = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr std::string_view kRfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kRfcServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view kRfcClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kRfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

std::vector<std::uint8_t> b64(std::string_view text) {
  auto bytes = detail::base64_decode(text);
  EXPECT_TRUE(bytes) << text;
  return bytes ? *bytes : std::vector<std::uint8_t>{};
}

ScramSecret rfc_secret() {
  return make_scram_secret("pencil", b64(kRfcSalt), 4096);
}

TEST(Scram, Rfc7677ClientSide) {
  ScramClient client("pencil", std::string(kRfcClientNonce), "user");
  EXPECT_EQ(client.client_first(), kRfcClientFirst);
  const auto final_message = client.server_first(kRfcServerFirst);
  ASSERT_TRUE(final_message) << final_message.error().message();
  EXPECT_EQ(*final_message, kRfcClientFinal);
  const auto done = client.server_final(kRfcServerFinal);
  EXPECT_TRUE(done) << done.error().message();
}

// A server keeps a role's salt: the second login with the same password, salt and iteration
// count reuses the keys of the first (no PBKDF2) and sends the same proof; any other password,
// salt or count derives its own.
TEST(Scram, KeysAreReusedOnlyForTheSamePasswordSaltAndCount) {
  const auto login = [](std::string_view password, std::string_view server_first) {
    ScramClient client(password, std::string(kRfcClientNonce), "user");
    client.client_first();
    auto final_message = client.server_first(server_first);
    EXPECT_TRUE(final_message) << final_message.error().message();
    return final_message ? *final_message : std::string();
  };
  const std::uint64_t before = ScramClient::reused_keys();
  EXPECT_EQ(login("pencil", kRfcServerFirst), kRfcClientFinal);
  EXPECT_EQ(login("pencil", kRfcServerFirst), kRfcClientFinal);
  EXPECT_EQ(ScramClient::reused_keys(), before + 1);

  EXPECT_NE(login("pencil2", kRfcServerFirst), kRfcClientFinal);
  std::string fewer(kRfcServerFirst);
  fewer.replace(fewer.size() - 4, 4, "4095");
  EXPECT_NE(login("pencil", fewer), kRfcClientFinal);
  std::string other_salt(kRfcServerFirst);
  other_salt.replace(other_salt.find("s=W22") + 2, 3, "X22");
  EXPECT_NE(login("pencil", other_salt), kRfcClientFinal);
  EXPECT_EQ(ScramClient::reused_keys(), before + 1);
}

TEST(Scram, Rfc7677ServerSide) {
  ScramServer server(rfc_secret(), std::string(kRfcServerNonce));
  const auto first = server.client_first(kRfcClientFirst);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(*first, kRfcServerFirst);
  const auto final_message = server.client_final(kRfcClientFinal);
  ASSERT_TRUE(final_message) << final_message.error().message();
  EXPECT_EQ(*final_message, kRfcServerFinal);
}

TEST(Scram, ClientFirstIsPostgresStyle) {
  ScramClient client("pw");
  const std::string first = client.client_first();
  ASSERT_TRUE(first.starts_with("n,,n=,r="));
  const std::string nonce = first.substr(8);
  EXPECT_EQ(nonce.size(), 24u);
  const auto raw = detail::base64_decode(nonce);
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->size(), 18u);
  EXPECT_EQ(client.client_first(), first) << "idempotent";
  EXPECT_NE(ScramClient("pw").client_first(), first) << "nonces are random";
}

TEST(Scram, ClientEscapesUserName) {
  ScramClient client("pw", "abc", "a,b=c");
  EXPECT_EQ(client.client_first(), "n,,n=a=2Cb=3Dc,r=abc");
}

TEST(Scram, ServerNonceIsRandomAndPostgresStyle) {
  ScramServer a(rfc_secret());
  ScramServer b(rfc_secret());
  const auto first_a = a.client_first("n,,n=,r=abc");
  const auto first_b = b.client_first("n,,n=,r=abc");
  ASSERT_TRUE(first_a);
  ASSERT_TRUE(first_b);
  EXPECT_NE(*first_a, *first_b);
  const std::string_view prefix = "r=abc";
  ASSERT_TRUE(first_a->starts_with(prefix));
  const std::string server_part = first_a->substr(prefix.size(), first_a->find(',') - 5);
  EXPECT_EQ(server_part.size(), 24u);
  const auto raw = detail::base64_decode(server_part);
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->size(), 18u);
}

TEST(Scram, RoundTripWithRandomNonces) {
  const ScramSecret secret = make_scram_secret("correct horse battery staple");
  EXPECT_EQ(secret.salt.size(), 16u);
  EXPECT_EQ(secret.iterations, kDefaultIterations);
  ScramServer server(secret);
  ScramClient client("correct horse battery staple");
  const auto server_first = server.client_first(client.client_first());
  ASSERT_TRUE(server_first) << server_first.error().message();
  const auto client_final = client.server_first(*server_first);
  ASSERT_TRUE(client_final) << client_final.error().message();
  const auto server_final = server.client_final(*client_final);
  ASSERT_TRUE(server_final) << server_final.error().message();
  const auto done = client.server_final(*server_final);
  EXPECT_TRUE(done) << done.error().message();
}

TEST(Scram, EmptyPasswordRoundTrip) {
  ScramServer server(make_scram_secret("", {}, 16));
  ScramClient client("");
  const auto server_first = server.client_first(client.client_first());
  ASSERT_TRUE(server_first);
  const auto client_final = client.server_first(*server_first);
  ASSERT_TRUE(client_final);
  const auto server_final = server.client_final(*client_final);
  ASSERT_TRUE(server_final);
  EXPECT_TRUE(client.server_final(*server_final));
}

TEST(Scram, WrongPassword) {
  ScramServer server(make_scram_secret("right", {}, 64));
  ScramClient client("wrong");
  const auto server_first = server.client_first(client.client_first());
  ASSERT_TRUE(server_first);
  const auto client_final = client.server_first(*server_first);
  ASSERT_TRUE(client_final);
  const auto server_final = server.client_final(*client_final);
  ASSERT_FALSE(server_final);
  EXPECT_EQ(server_final.error(), Error::wrong_password);
  EXPECT_EQ(server.client_final(*client_final).error(), Error::wrong_state);
}

TEST(Scram, TamperedServerSignature) {
  ScramServer server(make_scram_secret("pw", {}, 64));
  ScramClient client("pw");
  const auto server_first = server.client_first(client.client_first());
  ASSERT_TRUE(server_first);
  const auto client_final = client.server_first(*server_first);
  ASSERT_TRUE(client_final);
  auto server_final = server.client_final(*client_final);
  ASSERT_TRUE(server_final);
  std::string tampered = *server_final;
  tampered[2] = tampered[2] == 'A' ? 'B' : 'A';  // still valid base64, one bit-group off
  const auto done = client.server_final(tampered);
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error(), Error::bad_server_signature);
}

// A server holding a different secret for the same password (an impostor) cannot sign.
TEST(Scram, ImpostorServerIsRejected) {
  ScramSecret impostor = make_scram_secret("pw", {}, 64);
  impostor.server_key[0] ^= 1;
  ScramServer server(impostor);
  ScramClient client("pw");
  const auto client_final = client.server_first(*server.client_first(client.client_first()));
  ASSERT_TRUE(client_final);
  const auto server_final = server.client_final(*client_final);
  ASSERT_TRUE(server_final);
  EXPECT_EQ(client.server_final(*server_final).error(), Error::bad_server_signature);
}

TEST(Scram, ServerStateMisuse) {
  {
    ScramServer server(rfc_secret(), std::string(kRfcServerNonce));
    EXPECT_EQ(server.client_final(kRfcClientFinal).error(), Error::wrong_state);
    // Misuse does not end the exchange; the right call still works.
    ASSERT_TRUE(server.client_first(kRfcClientFirst));
    EXPECT_EQ(server.client_first(kRfcClientFirst).error(), Error::wrong_state);
    ASSERT_TRUE(server.client_final(kRfcClientFinal));
    EXPECT_EQ(server.client_final(kRfcClientFinal).error(), Error::wrong_state);
    EXPECT_EQ(server.client_first(kRfcClientFirst).error(), Error::wrong_state);
  }
  {
    ScramServer server(rfc_secret(), std::string(kRfcServerNonce));
    EXPECT_EQ(server.client_first("garbage").error(), Error::malformed_message);
    EXPECT_EQ(server.client_first(kRfcClientFirst).error(), Error::wrong_state);
    EXPECT_EQ(server.client_final(kRfcClientFinal).error(), Error::wrong_state);
  }
}

TEST(Scram, ClientStateMisuse) {
  {
    ScramClient client("pencil", std::string(kRfcClientNonce), "user");
    EXPECT_EQ(client.server_first(kRfcServerFirst).error(), Error::wrong_state);
    EXPECT_EQ(client.server_final(kRfcServerFinal).error(), Error::wrong_state);
    client.client_first();
    EXPECT_EQ(client.server_final(kRfcServerFinal).error(), Error::wrong_state);
    ASSERT_TRUE(client.server_first(kRfcServerFirst));
    EXPECT_EQ(client.server_first(kRfcServerFirst).error(), Error::wrong_state);
    EXPECT_EQ(client.client_first(), kRfcClientFirst);
    ASSERT_TRUE(client.server_final(kRfcServerFinal));
    EXPECT_EQ(client.server_final(kRfcServerFinal).error(), Error::wrong_state);
    EXPECT_EQ(client.server_first(kRfcServerFirst).error(), Error::wrong_state);
  }
  {
    ScramClient client("pencil", std::string(kRfcClientNonce), "user");
    client.client_first();
    EXPECT_EQ(client.server_first("garbage").error(), Error::malformed_message);
    EXPECT_EQ(client.server_first(kRfcServerFirst).error(), Error::wrong_state);
  }
}

TEST(Scram, SecretFormatRoundTrip) {
  const ScramSecret secret = rfc_secret();
  const std::string text = format_scram_secret(secret);
  EXPECT_TRUE(text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")) << text;
  const auto parsed = parse_scram_secret(text);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed->iterations, secret.iterations);
  EXPECT_EQ(parsed->salt, secret.salt);
  EXPECT_EQ(parsed->stored_key, secret.stored_key);
  EXPECT_EQ(parsed->server_key, secret.server_key);
}

// rolpassword of `CREATE ROLE alice PASSWORD 'pencil'` on PostgreSQL 15.18 with
// password_encryption = 'scram-sha-256' (initdb + psql, SELECT rolpassword FROM pg_authid).
constexpr std::string_view kPostgresVerifier =
    "SCRAM-SHA-256$4096:uSAvy/HUKHC5l7tvzDQANg==$5OKgu2r/1F97fPSWtwoImrPuiRMPTSWZDVVQpgXEDE8="
    ":DgscraGlGollaJAsiYLIzHntjmeePe4MqiN+M3Ruf8s=";

TEST(Scram, MatchesPostgres15Verifier) {
  const auto parsed = parse_scram_secret(kPostgresVerifier);
  ASSERT_TRUE(parsed) << parsed.error().message();
  const ScramSecret ours = make_scram_secret("pencil", parsed->salt, parsed->iterations);
  EXPECT_EQ(format_scram_secret(ours), kPostgresVerifier);

  ScramServer server(*parsed);
  ScramClient client("pencil");
  const auto client_final = client.server_first(*server.client_first(client.client_first()));
  ASSERT_TRUE(client_final);
  const auto server_final = server.client_final(*client_final);
  ASSERT_TRUE(server_final);
  EXPECT_TRUE(client.server_final(*server_final));
}

TEST(Scram, MalformedSecrets) {
  const std::string key = "5OKgu2r/1F97fPSWtwoImrPuiRMPTSWZDVVQpgXEDE8=";
  const std::vector<std::pair<std::string, Error>> cases = {
      {"", Error::unsupported_mechanism},
      {"md521f3163f8f86fa10bdefbfbd502a8f06", Error::unsupported_mechanism},
      {"SCRAM-SHA-1$4096:c2FsdA==$" + key + ":" + key, Error::unsupported_mechanism},
      {"SCRAM-SHA-256$", Error::malformed_message},
      {"SCRAM-SHA-256$4096:c2FsdA==", Error::malformed_message},
      {"SCRAM-SHA-256$4096:c2FsdA==$" + key, Error::malformed_message},
      {"SCRAM-SHA-256$4096c2FsdA==$" + key + ":" + key, Error::malformed_message},
      {"SCRAM-SHA-256$0:c2FsdA==$" + key + ":" + key, Error::malformed_message},
      {"SCRAM-SHA-256$-1:c2FsdA==$" + key + ":" + key, Error::malformed_message},
      {"SCRAM-SHA-256$x:c2FsdA==$" + key + ":" + key, Error::malformed_message},
      {"SCRAM-SHA-256$:c2FsdA==$" + key + ":" + key, Error::malformed_message},
      {"SCRAM-SHA-256$4096:$" + key + ":" + key, Error::malformed_message},
      {"SCRAM-SHA-256$4096:c2FsdA=$" + key + ":" + key, Error::malformed_message},
      {"SCRAM-SHA-256$4096:c2FsdA==$c2FsdA==:" + key, Error::malformed_message},
      {"SCRAM-SHA-256$4096:c2FsdA==$" + key + ":", Error::malformed_message},
      {"SCRAM-SHA-256$4096:c2FsdA==$" + key + ":" + key + "$", Error::malformed_message},
      {"SCRAM-SHA-256$4096:c2FsdA==$" + key + ":" + key + ":" + key, Error::malformed_message},
  };
  for (const auto& [text, error] : cases) {
    const auto parsed = parse_scram_secret(text);
    ASSERT_FALSE(parsed) << text;
    EXPECT_EQ(parsed.error(), error) << text;
  }
  EXPECT_TRUE(parse_scram_secret("SCRAM-SHA-256$1:c2FsdA==$" + key + ":" + key));
}

TEST(Scram, MakeSecretRejectsZeroIterations) {
  EXPECT_THROW(make_scram_secret("pw", {}, 0), std::invalid_argument);
}

}  // namespace
}  // namespace pgdog::auth

namespace pgdog::auth {
namespace {

TEST(Scram, MockSecretHasTheSameSaltForANameAndMatchesNoProof) {
  const auto a1 = mock_scram_secret("nobody");
  const auto a2 = mock_scram_secret("nobody");
  const auto b = mock_scram_secret("somebody");
  EXPECT_EQ(a1.salt, a2.salt);
  EXPECT_EQ(a1.salt.size(), 16U);
  EXPECT_NE(a1.salt, b.salt);
  EXPECT_EQ(a1.iterations, kDefaultIterations);
  EXPECT_NE(a1.stored_key, a2.stored_key);
}

}  // namespace
}  // namespace pgdog::auth
