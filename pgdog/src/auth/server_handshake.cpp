#include "auth/server_handshake.hpp"

#include "protocol/messages.hpp"

namespace pgdog::auth {

namespace {

using Status = ServerHandshake::Status;
using Step = ServerHandshake::Step;

}  // namespace

ServerHandshake::ServerHandshake(Method method, std::string user,
                                 std::optional<std::string> password, const ScramSecret* secret)
    : method_(method), user_(std::move(user)), password_(std::move(password)), secret_(secret) {}

ServerHandshake::ServerHandshake(Method method, std::string user,
                                 std::optional<std::string> password, const ScramSecret* secret,
                                 Fixed fixed)
    : ServerHandshake(method, std::move(user), std::move(password), secret) {
  fixed_ = std::move(fixed);
}

Step ServerHandshake::start() {
  if (state_ != State::initial) return fail("08P01", "authentication already started");
  Step step;
  switch (method_) {
    case Method::trust:
      return done({});
    case Method::md5:
      if (fixed_) {
        md5_salt_ = fixed_->md5_salt;
      } else {
        random_bytes(md5_salt_);
      }
      protocol::write_auth(
          step.out, protocol::auth_code::kMd5,
          std::string_view(reinterpret_cast<const char*>(md5_salt_.data()), md5_salt_.size()));
      state_ = State::md5_sent;
      return step;
    case Method::scram: {
      const bool known = secret_ != nullptr && password_.has_value();
      ScramSecret secret = known ? *secret_ : mock_scram_secret(user_);
      if (fixed_) {
        scram_.emplace(std::move(secret), fixed_->scram_nonce);
      } else {
        scram_.emplace(std::move(secret));
      }
      protocol::write_auth_sasl(step.out, kScramMechanism);
      state_ = State::sasl_sent;
      return step;
    }
  }
  return fail("08P01", "unknown authentication method");
}

Step ServerHandshake::feed(const protocol::Frame& frame) {
  if (frame.type != protocol::fe::kPassword) {
    return fail("08P01", "expected a password message during authentication");
  }
  switch (state_) {
    case State::md5_sent:
      return md5_response(frame.body);
    case State::sasl_sent:
      return sasl_initial_response(frame.body);
    case State::scram_first_sent:
      return sasl_response(frame.body);
    case State::initial:
    case State::finished:
      break;
  }
  return fail("08P01", "unexpected message during authentication");
}

Step ServerHandshake::md5_response(std::string_view body) {
  const auto response = protocol::decode_password(body);
  // An unknown user goes through the same steps: the salt was random either way.
  if (!response || !password_ || !md5_verify(user_, *password_, md5_salt_, *response)) {
    return fail("28P01", "password authentication failed for user \"" + user_ + "\"");
  }
  return done({});
}

Step ServerHandshake::sasl_initial_response(std::string_view body) {
  const auto initial = protocol::decode_sasl_initial_response(body);
  if (!initial) return fail("08P01", "malformed SASLInitialResponse");
  if (initial->mechanism != kScramMechanism) {
    return fail("28000", "unsupported SASL mechanism \"" + std::string(initial->mechanism) + "\"");
  }
  const auto first = scram_->client_first(initial->data);
  if (!first) return fail("08P01", "malformed SCRAM client-first-message");
  Step step;
  protocol::write_auth(step.out, protocol::auth_code::kSaslContinue, *first);
  state_ = State::scram_first_sent;
  return step;
}

Step ServerHandshake::sasl_response(std::string_view body) {
  const auto final_message = scram_->client_final(body);
  if (!final_message) {
    if (final_message.error() == Error::wrong_password) {
      return fail("28P01", "password authentication failed for user \"" + user_ + "\"");
    }
    return fail("08P01", "malformed SCRAM client-final-message");
  }
  std::string out;
  protocol::write_auth(out, protocol::auth_code::kSaslFinal, *final_message);
  return done(std::move(out));
}

Step ServerHandshake::fail(std::string_view sqlstate, std::string message) {
  state_ = State::finished;
  return {Status::failed, {}, sqlstate, std::move(message)};
}

Step ServerHandshake::done(std::string out) {
  protocol::write_auth(out, protocol::auth_code::kOk);
  state_ = State::finished;
  return {Status::done, std::move(out), {}, {}};
}

}  // namespace pgdog::auth
