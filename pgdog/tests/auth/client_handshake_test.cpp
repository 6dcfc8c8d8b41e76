#include "auth/client_handshake.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "auth/crypto.hpp"
#include "auth/server_handshake.hpp"
#include "protocol/messages.hpp"

namespace pgdog::auth {
namespace {

using namespace std::string_literals;
using Status = ClientHandshake::Status;
using Kind = LoginFailure::Kind;

// RFC 7677 section 3 (see scram_test.cpp). PostgreSQL clients leave the user name out of the
// client-first-message, so the proof differs from the RFC's; a ScramServer checks it.
constexpr std::string_view kClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view kSalt = "W22ZaJ0SNY7soEsUEjb6gQ==";

const std::string kAuthOk = "R\0\0\0\x08\0\0\0\0"s;
const std::string kAuthSasl = "R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0"s;
const std::string kReadyIdle = "Z\0\0\0\x05I"s;

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::string auth_message(std::uint32_t code, std::string_view data) {
  return "R" + be32(static_cast<std::uint32_t>(data.size() + 8)) + be32(code) + std::string(data);
}

std::string error_response(std::string_view severity, std::string_view code,
                           std::string_view message, std::string_view detail = {}) {
  std::string out;
  protocol::write_error(out,
                        {.severity = severity, .code = code, .message = message, .detail = detail});
  return out;
}

ClientHandshake::Step feed(ClientHandshake& h, const std::string& bytes) {
  const auto frame = protocol::next_frame(bytes, 1 << 20);
  EXPECT_TRUE(frame && frame->size() == bytes.size()) << "not one frame";
  return h.feed(*frame);
}

// The body of the one frame in `bytes`.
std::string body(const std::string& bytes) {
  const auto frame = protocol::next_frame(bytes, 1 << 20);
  EXPECT_TRUE(frame && frame->size() == bytes.size()) << "not one frame";
  return frame ? std::string(frame->body) : std::string();
}

void expect_failed(const ClientHandshake& h, const ClientHandshake::Step& step, Kind kind,
                   std::string_view sqlstate, std::string_view message) {
  EXPECT_EQ(step.status, Status::failed);
  EXPECT_TRUE(step.out.empty());
  EXPECT_EQ(h.failure().kind, kind);
  EXPECT_EQ(h.failure().sqlstate, sqlstate);
  EXPECT_EQ(h.failure().message, message);
}

// Steps the client through the SCRAM exchange with a ScramServer that knows `server_password`;
// returns the client's step after SASLFinal.
ClientHandshake::Step scram_until_final(ClientHandshake& h, std::string_view server_password) {
  const auto initial = feed(h, kAuthSasl);
  EXPECT_EQ(initial.status, Status::read);
  EXPECT_EQ(initial.out, "p\0\0\0\x32SCRAM-SHA-256\0\0\0\0\x1cn,,n=,r=rOprNGfwEbeRWgbNEkqO"s);
  ScramServer server(make_scram_secret(server_password, *detail::base64_decode(kSalt), 4096),
                     std::string(kServerNonce));
  const auto server_first = server.client_first("n,,n=,r=rOprNGfwEbeRWgbNEkqO");
  EXPECT_TRUE(server_first);
  const auto response = feed(h, auth_message(11, *server_first));
  EXPECT_EQ(response.status, Status::read);
  const auto server_final = server.client_final(body(response.out));
  EXPECT_TRUE(server_final) << "the server rejects the proof: " << server_final.error().message();
  if (!server_final) return {Status::failed, {}};
  return feed(h, auth_message(12, *server_final));
}

TEST(ClientHandshake, TrustThenParametersKeyAndReady) {
  ClientHandshake h("bob", "secret");
  EXPECT_EQ(feed(h, kAuthOk).status, Status::read);
  std::string params;
  protocol::write_parameter_status(params, "server_version", "16.4");
  EXPECT_EQ(feed(h, params).status, Status::read);
  EXPECT_EQ(feed(h, "K\0\0\0\x0c\0\0\x04\xd2\0\0\0\x2a"s).status, Status::read);
  EXPECT_EQ(feed(h, "N\0\0\0\x05\0"s).status, Status::read);  // a notice is ignored
  const auto done = feed(h, "Z\0\0\0\x05T"s);
  EXPECT_EQ(done.status, Status::done);
  EXPECT_TRUE(done.out.empty());
  EXPECT_EQ(h.params().get("server_version"), "16.4");
  EXPECT_EQ(h.key().process_id, 1234);
  EXPECT_EQ(h.key().secret_key, 42);
  EXPECT_EQ(h.transaction_status(), 'T');
}

TEST(ClientHandshake, Cleartext) {
  ClientHandshake h("bob", "secret");
  const auto step = feed(h, "R\0\0\0\x08\0\0\0\x03"s);
  EXPECT_EQ(step.status, Status::read);
  EXPECT_EQ(step.out, "p\0\0\0\x0bsecret\0"s);
}

TEST(ClientHandshake, Md5) {
  ClientHandshake h("bob", "secret");
  const auto step = feed(h, "R\0\0\0\x0c\0\0\0\x05\xde\xad\xbe\xef"s);
  EXPECT_EQ(step.status, Status::read);
  // md5 of "secret" + "bob" with salt de ad be ef, computed with coreutils (md5_test.cpp).
  EXPECT_EQ(step.out, "p\0\0\0\x28md5f367206c41f91baa6279335f27350e9d\0"s);
  EXPECT_EQ(feed(h, kAuthOk).status, Status::read);
  EXPECT_EQ(feed(h, kReadyIdle).status, Status::done);
}

TEST(ClientHandshake, ScramRightPassword) {
  ClientHandshake h("bob", "pencil", std::string(kClientNonce));
  const auto after_final = scram_until_final(h, "pencil");
  EXPECT_EQ(after_final.status, Status::read);
  EXPECT_TRUE(after_final.out.empty());
  EXPECT_EQ(feed(h, kAuthOk).status, Status::read);
  EXPECT_EQ(feed(h, kReadyIdle).status, Status::done);
}

// A server that does not know the password cannot produce the signature: a client that
// checks none would log in to an impostor.
TEST(ClientHandshake, ScramBadServerSignature) {
  ClientHandshake h("bob", "pencil", std::string(kClientNonce));
  feed(h, kAuthSasl);
  ScramServer server(make_scram_secret("pencil", *detail::base64_decode(kSalt), 4096),
                     std::string(kServerNonce));
  const auto response =
      feed(h, auth_message(11, *server.client_first("n,,n=,r=" + std::string(kClientNonce))));
  ASSERT_EQ(response.status, Status::read);
  const auto wrong = "v=" + detail::base64_encode(std::vector<std::uint8_t>(32, 7));
  expect_failed(h, feed(h, auth_message(12, wrong)), Kind::auth_failed, "28P01",
                "server SCRAM signature invalid: server signature does not verify");
}

TEST(ClientHandshake, ScramAuthenticationOkWithoutTheServersProof) {
  for (int skip_after : {1, 2}) {
    ClientHandshake h("bob", "pencil", std::string(kClientNonce));
    feed(h, kAuthSasl);
    if (skip_after == 2) {
      feed(h, auth_message(11, "r=" + std::string(kClientNonce) + "xyz,s=" + std::string(kSalt) +
                                   ",i=4096"));
    }
    expect_failed(h, feed(h, kAuthOk), Kind::auth_failed, "28P01",
                  "server skipped the end of SCRAM authentication");
  }
}

TEST(ClientHandshake, ScramServerFirstWithAnotherNonce) {
  ClientHandshake h("bob", "pencil", std::string(kClientNonce));
  feed(h, kAuthSasl);
  expect_failed(h, feed(h, auth_message(11, "r=othernonce,s=" + std::string(kSalt) + ",i=4096")),
                Kind::auth_failed, "28P01", "SCRAM with server failed: SCRAM nonce mismatch");
}

TEST(ClientHandshake, SaslMechanismNotOffered) {
  ClientHandshake h("bob", "pencil");
  expect_failed(h, feed(h, auth_message(10, "SCRAM-SHA-256-PLUS\0\0"s)), Kind::unsupported, "08006",
                "server offers no SASL mechanism pgdog supports");
}

TEST(ClientHandshake, ScramOfferedAmongOthers) {
  ClientHandshake h("bob", "pencil");
  const auto step = feed(h, auth_message(10, "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"s));
  EXPECT_EQ(step.status, Status::read);
  EXPECT_TRUE(step.out.starts_with("p"));
}

TEST(ClientHandshake, UnsupportedMethod) {
  ClientHandshake h("bob", "pencil");
  expect_failed(h, feed(h, "R\0\0\0\x08\0\0\0\x07"s), Kind::unsupported, "08006",
                "server requested unsupported authentication method 7");
}

TEST(ClientHandshake, SaslMessagesOutOfOrder) {
  ClientHandshake a("bob", "pencil");
  expect_failed(a, feed(a, auth_message(11, "r=abc,s=c2FsdA==,i=1")), Kind::protocol, "08006",
                "unexpected SASL");
  ClientHandshake b("bob", "pencil");
  expect_failed(b, feed(b, auth_message(12, "v=abc")), Kind::protocol, "08006", "unexpected SASL");
}

TEST(ClientHandshake, ServerRejectsThePassword) {
  ClientHandshake h("bob", "pencil");
  feed(h, "R\0\0\0\x08\0\0\0\x03"s);
  expect_failed(h, feed(h, error_response("FATAL", "28P01", "password authentication failed")),
                Kind::auth_failed, "28P01", "password authentication failed");
}

TEST(ClientHandshake, ErrorResponseKeepsTheServersFields) {
  ClientHandshake h("bob", "pencil");
  feed(h, kAuthOk);
  expect_failed(
      h, feed(h, error_response("FATAL", "3D000", "database \"x\" does not exist", "it never did")),
      Kind::server_error, "3D000", "database \"x\" does not exist");
  EXPECT_EQ(h.failure().detail, "it never did");
}

TEST(ClientHandshake, MalformedMessages) {
  ClientHandshake a("bob", "pencil");
  expect_failed(a, feed(a, "R\0\0\0\x06\0\0"s), Kind::protocol, "08006",
                "bad Authentication message");
  ClientHandshake b("bob", "pencil");
  expect_failed(b, feed(b, "R\0\0\0\x0a\0\0\0\x05\x01\x02"s), Kind::protocol, "08006",
                "bad Authentication message");  // an md5 salt of 2 bytes
  ClientHandshake c("bob", "pencil");
  expect_failed(c, feed(c, "E\0\0\0\x06SX"s), Kind::protocol, "08006", "bad ErrorResponse");
}

TEST(ClientHandshake, UnexpectedMessage) {
  ClientHandshake h("bob", "pencil");
  feed(h, kAuthOk);
  expect_failed(h, feed(h, "D\0\0\0\x06\0\0"s), Kind::protocol, "08006",
                "unexpected message 'D' during startup");
}

TEST(ClientHandshake, ReadyForQueryBeforeAuthenticationOk) {
  ClientHandshake h("bob", "pencil");
  expect_failed(h, feed(h, kReadyIdle), Kind::protocol, "08006", "ReadyForQuery before login");
}

TEST(ClientHandshake, NothingAfterTheEnd) {
  ClientHandshake h("bob", "pencil");
  feed(h, kAuthOk);
  EXPECT_EQ(feed(h, kReadyIdle).status, Status::done);
  EXPECT_EQ(feed(h, kReadyIdle).status, Status::failed);
}

// Both sides of pgdog against each other, with random salts and nonces.
TEST(Handshakes, ClientAgainstServer) {
  const ScramSecret secret = make_scram_secret("pencil", {}, 4096);
  for (const Method method : {Method::trust, Method::md5, Method::scram}) {
    for (const std::string_view password : {"pencil", "crayon"}) {
      ServerHandshake server(method, "bob", "pencil", &secret);
      ClientHandshake client("bob", std::string(password));
      auto server_step = server.start();
      ClientHandshake::Step client_step;
      while (server_step.status == ServerHandshake::Status::reply) {
        client_step = feed(client, server_step.out);
        ASSERT_EQ(client_step.status, Status::read);
        server_step = server.feed(*protocol::next_frame(client_step.out, 1 << 20));
      }
      const bool right = method == Method::trust || password == "pencil";
      ASSERT_EQ(server_step.status,
                right ? ServerHandshake::Status::done : ServerHandshake::Status::failed);
      if (!right) {
        EXPECT_EQ(server_step.sqlstate, "28P01");
        continue;
      }
      // The server's last step is SASLFinal + AuthenticationOk for SCRAM: two frames.
      std::string_view rest = server_step.out;
      while (!rest.empty()) {
        const auto frame = protocol::next_frame(rest, 1 << 20);
        ASSERT_TRUE(frame);
        EXPECT_EQ(client.feed(*frame).status, Status::read);
        rest.remove_prefix(frame->size());
      }
      EXPECT_EQ(feed(client, kReadyIdle).status, Status::done) << static_cast<int>(method);
    }
  }
}

}  // namespace
}  // namespace pgdog::auth
