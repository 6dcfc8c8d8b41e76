#pragma once

// pgdog logging in to a PostgreSQL server, as a sans-io machine: the caller sends the startup
// packet, then feeds every message the server sends until ReadyForQuery, and sends what each
// step asks for. Which message means what lives here; the socket loop in ServerConnection.

#include <optional>
#include <string>
#include <string_view>

#include "auth/auth.hpp"
#include "protocol/frame.hpp"
#include "protocol/messages.hpp"
#include "protocol/params.hpp"

namespace pgdog::auth {

// Why a login failed, with what a client of pgdog should be told.
struct LoginFailure {
  enum class Kind {
    server_error,  // the server sent ErrorResponse: sqlstate, message and detail are its own
    auth_failed,   // the server rejected us (28P01, 28000), SCRAM failed, or the server did not
                   // prove it knows the password
    unsupported,   // an authentication method or SASL mechanism pgdog does not speak
    protocol,      // a message that does not parse or does not belong in the startup phase
  };
  Kind kind = Kind::protocol;
  std::string sqlstate = "08006";
  std::string message;
  std::string detail;
};

class ClientHandshake {
 public:
  enum class Status {
    read,    // send `out` (may be empty), then feed the server's next message
    done,    // ReadyForQuery: logged in; params(), key() and transaction_status() are set
    failed,  // see failure(); close the connection
  };
  struct Step {
    Status status = Status::read;
    std::string out;
  };

  ClientHandshake(std::string user, std::string password);
  // For tests: a fixed SCRAM client nonce instead of a random one.
  ClientHandshake(std::string user, std::string password, std::string scram_nonce);

  // One message from the server. After done or failed every call fails (protocol).
  Step feed(const protocol::Frame& frame);

  const LoginFailure& failure() const { return failure_; }
  // What the server reported with ParameterStatus; the caller may move it out.
  protocol::Params& params() { return params_; }
  const protocol::BackendKeyData& key() const { return key_; }
  char transaction_status() const { return transaction_status_; }

 private:
  Step authentication(std::string_view body);
  Step sasl_start(std::string_view mechanisms);
  Step error_response(std::string_view body);
  Step fail(LoginFailure::Kind kind, std::string message, std::string sqlstate = "08006");

  enum class State {
    authenticating,    // until AuthenticationOk; a password or md5 answer may have been sent
    scram_first_sent,  // SASLInitialResponse sent, SASLContinue expected
    scram_final_sent,  // SASLResponse sent, SASLFinal expected
    scram_verified,    // the server proved it knows the password; AuthenticationOk expected
    authenticated,     // ParameterStatus, BackendKeyData, then ReadyForQuery
    finished,
  };
  std::string user_;
  std::string password_;
  std::string scram_nonce_;  // empty: a random one
  std::optional<ScramClient> scram_;
  State state_ = State::authenticating;
  LoginFailure failure_;
  protocol::Params params_;
  protocol::BackendKeyData key_;
  char transaction_status_ = 'I';
};

}  // namespace pgdog::auth
