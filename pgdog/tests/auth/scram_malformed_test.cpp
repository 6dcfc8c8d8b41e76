#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "auth/auth.hpp"
#include "auth/crypto.hpp"

namespace pgdog::auth {
namespace {

constexpr std::string_view kPassword = "pw";
constexpr int kIterations = 2;                      // cheap; these tests are about parsing
constexpr std::string_view kSalt = "c2FsdHNhbHQ=";  // "saltsalt"
constexpr std::string_view kClientNonce = "clientnonce";
constexpr std::string_view kServerNonce = "servernonce";
constexpr std::string_view kNonce = "clientnonceservernonce";
constexpr std::string_view kServerFirst = "r=clientnonceservernonce,s=c2FsdHNhbHQ=,i=2";
// 32 zero bytes: valid base64 of the right length, never the right proof or signature.
constexpr std::string_view kZeros32 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

ScramSecret test_secret() {
  return make_scram_secret(kPassword, *detail::base64_decode(kSalt), kIterations);
}

// The proof a client would send for `without_proof`, computed here from the RFC 5802
// formulas so tests can build final messages the client class never sends.
std::string proof_for(std::string_view client_first_bare, std::string_view server_first,
                      std::string_view without_proof) {
  const auto salted = detail::pbkdf2_sha256(kPassword, *detail::base64_decode(kSalt), kIterations);
  const auto client_key = detail::hmac_sha256(salted, "Client Key");
  const auto stored_key = detail::sha256(client_key);
  const std::string auth_message = std::string(client_first_bare) + "," +
                                   std::string(server_first) + "," + std::string(without_proof);
  const auto signature = detail::hmac_sha256(stored_key, auth_message);
  std::array<std::uint8_t, 32> proof{};
  for (std::size_t i = 0; i < proof.size(); ++i) {
    proof[i] = static_cast<std::uint8_t>(client_key[i] ^ signature[i]);
  }
  return detail::base64_encode(proof);
}

struct Case {
  std::string message;
  Error error;
};

std::string with_nul(std::string s, std::size_t at) {
  s.insert(at, 1, '\0');
  return s;
}

TEST(ScramServerMalformed, ClientFirst) {
  const std::vector<Case> cases = {
      {"", Error::malformed_message},
      {"n", Error::malformed_message},
      {"n,", Error::malformed_message},
      {"n,,", Error::malformed_message},
      {"N,,n=,r=abc", Error::malformed_message},
      {"x,,n=,r=abc", Error::malformed_message},
      {",,n=,r=abc", Error::malformed_message},
      {"p=tls-server-end-point,,n=,r=abc", Error::unsupported_mechanism},
      {"p=tls-unique,,n=,r=abc", Error::unsupported_mechanism},
      {"n,a=admin,n=,r=abc", Error::malformed_message},
      {"n,a=,n=,r=abc", Error::malformed_message},
      {"n,x,n=,r=abc", Error::malformed_message},
      {"n,,r=abc", Error::malformed_message},
      {"n,,r=abc,n=", Error::malformed_message},
      {"n,,n=", Error::malformed_message},
      {"n,,n=,", Error::malformed_message},
      {"n,,n=,r=", Error::malformed_message},
      {"n,,n=,r", Error::malformed_message},
      {"n,,n=,r=abc,", Error::malformed_message},
      {"n,,n=,r=abc,,", Error::malformed_message},
      {"n,,n=,r=abc,x", Error::malformed_message},
      {"n,,n=,r=abc,=x", Error::malformed_message},
      {"n,,n=,r=abc,1=x", Error::malformed_message},
      {"n,,n=,r=ab c", Error::malformed_message},
      {"n,,n=,r=ab\x01", Error::malformed_message},
      {"n,,n=,r=ab\x7f", Error::malformed_message},
      {"n,,n=,r=ab\xc3\xa9", Error::malformed_message},
      {with_nul("n,,n=,r=abc", 10), Error::malformed_message},
      {with_nul("n,,n=,r=abc", 5), Error::malformed_message},
      {"n,,m=ext,n=,r=abc", Error::malformed_message},
      {"n,,n=,r=abc,m=ext", Error::malformed_message},
      {"n,,n=,r=abc,r=def", Error::malformed_message},
      {"n,,n=,r=abc,p=AAAA", Error::malformed_message},
      {"n,,n=,nonce=abc", Error::malformed_message},
      {"SCRAM-SHA-256", Error::malformed_message},
  };
  for (const auto& c : cases) {
    ScramServer server(test_secret(), std::string(kServerNonce));
    const auto result = server.client_first(c.message);
    ASSERT_FALSE(result) << c.message;
    EXPECT_EQ(result.error(), c.error) << c.message;
    EXPECT_EQ(server.client_final("c=biws,r=x,p=" + std::string(kZeros32)).error(),
              Error::wrong_state)
        << c.message;
  }
}

TEST(ScramServerMalformed, ClientFirstAcceptsWhatPostgresClientsSend) {
  for (const std::string_view ok : {
           "n,,n=,r=abc",
           "y,,n=,r=abc",
           "n,,n=user,r=abc",
           "n,,n=*,r=abc",
           "n,,n=us=2Cer,r=abc",
           "n,,n=\xc3\xa9,r=abc",
           "n,,n=,r=!\"#$%&'()*+-./:;<=>?@[\\]^_`{|}~",
           "n,,n=,r=abc,x=unknown-extension",
       }) {
    ScramServer server(test_secret(), std::string(kServerNonce));
    const auto result = server.client_first(ok);
    EXPECT_TRUE(result) << ok << ": " << result.error().message();
  }
}

TEST(ScramServerMalformed, ClientFinal) {
  const std::string n(kNonce);
  const std::string p(kZeros32);
  const std::vector<Case> cases = {
      {"", Error::malformed_message},
      {",", Error::malformed_message},
      {"c=biws", Error::malformed_message},
      {"c=biws,r=" + n, Error::malformed_message},
      {"c=biws,p=" + p, Error::malformed_message},
      {"r=" + n + ",p=" + p, Error::malformed_message},
      {"r=" + n + ",c=biws,p=" + p, Error::malformed_message},
      {"c=biws,p=" + p + ",r=" + n, Error::malformed_message},
      {"c=eSws,r=" + n + ",p=" + p, Error::malformed_message},
      {"c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=" + n + ",p=" + p, Error::malformed_message},
      {"c=,r=" + n + ",p=" + p, Error::malformed_message},
      {"c=biws=,r=" + n + ",p=" + p, Error::malformed_message},
      {"c=biwsbiws,r=" + n + ",p=" + p, Error::malformed_message},
      {"c=biws,r=" + n + ",p=", Error::malformed_message},
      {"c=biws,r=" + n + ",p=AAAA", Error::malformed_message},
      {"c=biws,r=" + n + ",p=" + p + "AAAA", Error::malformed_message},
      {"c=biws,r=" + n + ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
       Error::malformed_message},
      {"c=biws,r=" + n + ",p=!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
       Error::malformed_message},
      {"c=biws,r=" + n + ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",
       Error::malformed_message},
      {"c=biws,r=" + n + ",p=" + p + ",x=ext", Error::malformed_message},
      {"c=biws,r=" + n + ",p=" + p + ",", Error::malformed_message},
      {"c=biws,r=" + n + ",m=ext,p=" + p, Error::malformed_message},
      {"c=biws,r=" + n + ",r=" + n + ",p=" + p, Error::malformed_message},
      {"c=biws,r=" + n + ",p=" + p + ",p=" + p, Error::malformed_message},
      {with_nul("c=biws,r=" + n + ",p=" + p, 8), Error::malformed_message},
      {"c=biws,r=,p=" + p, Error::nonce_mismatch},
      {"c=biws,r=clientnonce,p=" + p, Error::nonce_mismatch},
      {"c=biws,r=" + n + "X,p=" + p, Error::nonce_mismatch},
      {"c=biws,r=" + n.substr(0, n.size() - 1) + ",p=" + p, Error::nonce_mismatch},
      {"c=biws,r=" + n + ",p=" + p, Error::wrong_password},
  };
  for (const auto& c : cases) {
    ScramServer server(test_secret(), std::string(kServerNonce));
    ASSERT_TRUE(server.client_first("n,,n=,r=clientnonce"));
    const auto result = server.client_final(c.message);
    ASSERT_FALSE(result) << c.message;
    EXPECT_EQ(result.error(), c.error) << c.message;
    EXPECT_EQ(server.client_final(c.message).error(), Error::wrong_state) << c.message;
  }
}

// Unknown extensions before the proof are part of the signed message and must be kept.
TEST(ScramServerMalformed, ClientFinalWithExtension) {
  ScramServer server(test_secret(), std::string(kServerNonce));
  ASSERT_TRUE(server.client_first("n,,n=,r=clientnonce"));
  const std::string without_proof = "c=biws,r=" + std::string(kNonce) + ",x=ext";
  const std::string message =
      without_proof + ",p=" + proof_for("n=,r=clientnonce", kServerFirst, without_proof);
  const auto result = server.client_final(message);
  EXPECT_TRUE(result) << result.error().message();
}

// "y,," (client could bind, thinks we cannot) must be echoed as "eSws", not "biws".
TEST(ScramServerMalformed, ClientFinalEchoesYHeader) {
  {
    ScramServer server(test_secret(), std::string(kServerNonce));
    ASSERT_TRUE(server.client_first("y,,n=,r=clientnonce"));
    const std::string without_proof = "c=eSws,r=" + std::string(kNonce);
    const std::string message =
        without_proof + ",p=" + proof_for("n=,r=clientnonce", kServerFirst, without_proof);
    const auto result = server.client_final(message);
    EXPECT_TRUE(result) << result.error().message();
  }
  {
    ScramServer server(test_secret(), std::string(kServerNonce));
    ASSERT_TRUE(server.client_first("y,,n=,r=clientnonce"));
    const std::string without_proof = "c=biws,r=" + std::string(kNonce);
    const std::string message =
        without_proof + ",p=" + proof_for("n=,r=clientnonce", kServerFirst, without_proof);
    EXPECT_EQ(server.client_final(message).error(), Error::malformed_message);
  }
}

TEST(ScramClientMalformed, ServerFirst) {
  const std::vector<Case> cases = {
      {"", Error::malformed_message},
      {",", Error::malformed_message},
      {"r=clientnonceS", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA==", Error::malformed_message},
      {"r=clientnonceS,i=4096", Error::malformed_message},
      {"s=c2FsdA==,r=clientnonceS,i=1", Error::malformed_message},
      {"r=clientnonceS,i=1,s=c2FsdA==", Error::malformed_message},
      {"m=ext,r=clientnonceS,s=c2FsdA==,i=1", Error::malformed_message},
      {"e=other-error", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA==,i=1,m=ext", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA==,i=1,s=c2FsdA==", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA==,i=1,", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA==,i=1,x", Error::malformed_message},
      {"r=,s=c2FsdA==,i=1", Error::malformed_message},
      {"r=clientnonce S,s=c2FsdA==,i=1", Error::malformed_message},
      {"r=clientnonce\x01,s=c2FsdA==,i=1", Error::malformed_message},
      {with_nul("r=clientnonceS,s=c2FsdA==,i=1", 14), Error::malformed_message},
      {"r=clientnonceS,s=,i=1", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA=,i=1", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA,i=1", Error::malformed_message},
      {"r=clientnonceS,s=!!!!,i=1", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA==,i=", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA==,i=abc", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA==,i=4096x", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA==,i= 4096", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA==,i=+4096", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA==,i=0x10", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA==,i=-", Error::malformed_message},
      {"r=clientnonceS,s=c2FsdA==,i=0", Error::iteration_count},
      {"r=clientnonceS,s=c2FsdA==,i=-1", Error::iteration_count},
      {"r=clientnonceS,s=c2FsdA==,i=-4096", Error::iteration_count},
      {"r=clientnonceS,s=c2FsdA==,i=1000001", Error::iteration_count},
      {"r=clientnonceS,s=c2FsdA==,i=2147483647", Error::iteration_count},
      {"r=clientnonceS,s=c2FsdA==,i=99999999999999999999", Error::iteration_count},
      {"r=clientnonceS,s=c2FsdA==,i=-99999999999999999999", Error::iteration_count},
      {"r=clientnonce,s=c2FsdA==,i=1", Error::nonce_mismatch},
      {"r=clientnonc,s=c2FsdA==,i=1", Error::nonce_mismatch},
      {"r=Sclientnonce,s=c2FsdA==,i=1", Error::nonce_mismatch},
      {"r=otherS,s=c2FsdA==,i=1", Error::nonce_mismatch},
  };
  for (const auto& c : cases) {
    ScramClient client(kPassword, std::string(kClientNonce));
    client.client_first();
    const auto result = client.server_first(c.message);
    ASSERT_FALSE(result) << c.message;
    EXPECT_EQ(result.error(), c.error) << c.message;
    EXPECT_EQ(client.server_final("v=" + std::string(kZeros32)).error(), Error::wrong_state)
        << c.message;
  }
}

TEST(ScramClientMalformed, ServerFirstAccepts) {
  for (const std::string_view ok : {
           "r=clientnonceS,s=c2FsdA==,i=1",
           "r=clientnonceS,s=c2FsdA==,i=0001",
           "r=clientnonceS,s=c2FsdA==,i=1,x=unknown-extension",
       }) {
    ScramClient client(kPassword, std::string(kClientNonce));
    client.client_first();
    const auto result = client.server_first(ok);
    EXPECT_TRUE(result) << ok << ": " << result.error().message();
  }
}

// The real server's final message, so tests can vary only what follows it.
std::string good_server_final(ScramClient& client) {
  ScramServer server(test_secret(), std::string(kServerNonce));
  const auto server_first = server.client_first(client.client_first());
  EXPECT_TRUE(server_first);
  const auto client_final = client.server_first(*server_first);
  EXPECT_TRUE(client_final);
  const auto server_final = server.client_final(*client_final);
  EXPECT_TRUE(server_final);
  return server_final ? *server_final : std::string();
}

TEST(ScramClientMalformed, ServerFinal) {
  std::string good;
  {
    ScramClient client(kPassword, std::string(kClientNonce));
    good = good_server_final(client);
  }
  const std::vector<Case> cases = {
      {"", Error::malformed_message},
      {"v", Error::malformed_message},
      {"v=", Error::malformed_message},
      {"v=AAAA", Error::malformed_message},
      {"v=" + std::string(kZeros32) + "AAAA", Error::malformed_message},
      {"v=!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", Error::malformed_message},
      {"x=" + good.substr(2), Error::malformed_message},
      {"m=ext," + good, Error::malformed_message},
      {good + ",m=ext", Error::malformed_message},
      {good + ",v=" + good.substr(2), Error::malformed_message},
      {good + ",", Error::malformed_message},
      {good + "\n", Error::malformed_message},
      {with_nul(good, 5), Error::malformed_message},
      {"v=" + std::string(kZeros32), Error::bad_server_signature},
      {"e=invalid-proof", Error::wrong_password},
      {"e=other-error", Error::bad_server_signature},
      {"e=", Error::bad_server_signature},
  };
  for (const auto& c : cases) {
    ScramClient client(kPassword, std::string(kClientNonce));
    ASSERT_EQ(good_server_final(client), good);
    const auto result = client.server_final(c.message);
    ASSERT_FALSE(result) << c.message;
    EXPECT_EQ(result.error(), c.error) << c.message;
    EXPECT_EQ(client.server_final(good).error(), Error::wrong_state) << c.message;
  }
  {
    ScramClient client(kPassword, std::string(kClientNonce));
    good_server_final(client);
    EXPECT_TRUE(client.server_final(good + ",x=unknown-extension"));
  }
}

// Every prefix and every single-byte change of valid messages: each is answered with a value
// (usually an error), never a crash. Run under ASan/UBSan to make "never a crash" meaningful.
TEST(ScramFuzzish, PrefixesAndByteFlips) {
  std::string client_first;
  std::string server_first;
  std::string client_final;
  std::string server_final;
  {
    ScramClient client(kPassword, std::string(kClientNonce));
    ScramServer server(test_secret(), std::string(kServerNonce));
    client_first = client.client_first();
    server_first = *server.client_first(client_first);
    client_final = *client.server_first(server_first);
    server_final = *server.client_final(client_final);
  }
  const auto variants = [](const std::string& message) {
    std::vector<std::string> out;
    for (std::size_t n = 0; n < message.size(); ++n)
      out.push_back(message.substr(0, n));
    for (std::size_t i = 0; i < message.size(); ++i) {
      for (const char c : {'\0', ',', '=', 'A', '\xff', '-'}) {
        if (message[i] == c) continue;
        std::string changed = message;
        changed[i] = c;
        out.push_back(changed);
      }
    }
    return out;
  };
  for (const auto& m : variants(client_first)) {
    ScramServer server(test_secret(), std::string(kServerNonce));
    (void)server.client_first(m);
  }
  std::size_t accepted = 0;
  for (const auto& m : variants(client_final)) {
    ScramServer server(test_secret(), std::string(kServerNonce));
    ASSERT_TRUE(server.client_first(client_first));
    if (server.client_final(m)) ++accepted;
  }
  EXPECT_EQ(accepted, 0u) << "no altered client-final may authenticate";
  for (const auto& m : variants(server_first)) {
    ScramClient client(kPassword, std::string(kClientNonce));
    client.client_first();
    (void)client.server_first(m);
  }
  accepted = 0;
  for (const auto& m : variants(server_final)) {
    ScramClient client(kPassword, std::string(kClientNonce));
    client.client_first();
    ASSERT_TRUE(client.server_first(server_first));
    if (client.server_final(m)) ++accepted;
  }
  EXPECT_EQ(accepted, 0u) << "no altered server-final may verify";
}

TEST(ScramFuzzish, RandomBytes) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> length(0, 64);
  std::uniform_int_distribution<int> byte(0, 255);
  std::string alphabet = "nyp,=rcsivema";
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  for (int round = 0; round < 2000; ++round) {
    std::string m(static_cast<std::size_t>(length(rng)), '\0');
    for (auto& c : m) {
      // Half the time draw from SCRAM's own characters so parsers get past the first checks.
      c = round % 2 == 0 ? static_cast<char>(byte(rng)) : alphabet[pick(rng)];
    }
    ScramServer server(test_secret(), std::string(kServerNonce));
    (void)server.client_first(m);
    ScramServer server2(test_secret(), std::string(kServerNonce));
    ASSERT_TRUE(server2.client_first("n,,n=,r=clientnonce"));
    EXPECT_FALSE(server2.client_final(m));
    ScramClient client(kPassword, std::string(kClientNonce));
    client.client_first();
    (void)client.server_first(m);
    (void)parse_scram_secret(m);
    (void)detail::base64_decode(m);
  }
}

}  // namespace
}  // namespace pgdog::auth
