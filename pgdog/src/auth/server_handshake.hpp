#pragma once

// pgdog authenticating one of its clients, as a sans-io machine: start() gives the first
// request, feed() takes each message the client answers with, until done or failed.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "auth/auth.hpp"
#include "protocol/frame.hpp"

namespace pgdog::auth {

enum class Method { trust, md5, scram };

class ServerHandshake {
 public:
  enum class Status {
    reply,   // send `out`, then feed the client's next message
    done,    // send `out` (ends with AuthenticationOk): the client is authenticated
    failed,  // send ErrorResponse FATAL with `sqlstate` and `message`, then close
  };
  struct Step {
    Status status = Status::reply;
    std::string out;
    std::string_view sqlstate;
    std::string message;
  };

  // `password` is the user's password, nullopt for an unknown user (or one without a password);
  // `secret` its SCRAM verifier (derived once per configuration), null likewise. Without both, a
  // SCRAM exchange runs against mock_scram_secret(user), so the answer never tells whether the
  // user exists. The secret is copied by start().
  ServerHandshake(Method method, std::string user, std::optional<std::string> password,
                  const ScramSecret* secret);

  // For tests: fixed values instead of random ones.
  struct Fixed {
    std::array<std::uint8_t, 4> md5_salt{};
    std::string scram_nonce;
  };
  ServerHandshake(Method method, std::string user, std::optional<std::string> password,
                  const ScramSecret* secret, Fixed fixed);

  // The first message: AuthenticationOk (trust: done at once), AuthenticationMD5Password or
  // AuthenticationSASL.
  Step start();
  // One message from the client; anything but a password-type message ('p') fails.
  Step feed(const protocol::Frame& frame);

 private:
  Step md5_response(std::string_view body);
  Step sasl_initial_response(std::string_view body);
  Step sasl_response(std::string_view body);
  Step fail(std::string_view sqlstate, std::string message);
  Step done(std::string out);

  enum class State { initial, md5_sent, sasl_sent, scram_first_sent, finished };
  Method method_;
  std::string user_;
  std::optional<std::string> password_;
  const ScramSecret* secret_;
  std::optional<Fixed> fixed_;
  std::array<std::uint8_t, 4> md5_salt_{};
  std::optional<ScramServer> scram_;
  State state_ = State::initial;
};

}  // namespace pgdog::auth
