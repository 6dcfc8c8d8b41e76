#include "auth/client_handshake.hpp"

#include <array>
#include <cstring>

namespace pgdog::auth {

namespace {

using Kind = LoginFailure::Kind;
using Status = ClientHandshake::Status;
using Step = ClientHandshake::Step;

bool offers_scram(std::string_view mechanisms) {
  // NUL-terminated names, the list ended by an empty one.
  protocol::Reader r(mechanisms);
  for (auto m = r.cstring(); r.ok() && !m.empty(); m = r.cstring()) {
    if (m == kScramMechanism) return true;
  }
  return false;
}

}  // namespace

ClientHandshake::ClientHandshake(std::string user, std::string password)
    : ClientHandshake(std::move(user), std::move(password), {}) {}

ClientHandshake::ClientHandshake(std::string user, std::string password, std::string scram_nonce)
    : user_(std::move(user)),
      password_(std::move(password)),
      scram_nonce_(std::move(scram_nonce)) {}

Step ClientHandshake::feed(const protocol::Frame& frame) {
  if (state_ == State::finished) return fail(Kind::protocol, "message after the startup phase");
  switch (frame.type) {
    case protocol::be::kAuthentication:
      return authentication(frame.body);
    case protocol::be::kErrorResponse:
      return error_response(frame.body);
    case protocol::be::kParameterStatus:
      if (auto p = protocol::decode_parameter_status(frame.body)) params_.set(p->name, p->value);
      return {};
    case protocol::be::kBackendKeyData:
      if (auto k = protocol::decode_backend_key_data(frame.body)) key_ = *k;
      return {};
    case protocol::be::kReadyForQuery: {
      // Before AuthenticationOk this would be a login the server never asked us to prove.
      if (state_ != State::authenticated) return fail(Kind::protocol, "ReadyForQuery before login");
      const auto s = protocol::decode_ready_for_query(frame.body);
      transaction_status_ = s ? *s : 'I';
      state_ = State::finished;
      return {Status::done, {}};
    }
    case protocol::be::kNoticeResponse:
    case protocol::be::kNegotiateProtocolVersion:
      return {};
    default:
      return fail(Kind::protocol,
                  std::string("unexpected message '") + frame.type + "' during startup");
  }
}

Step ClientHandshake::authentication(std::string_view body) {
  const auto a = protocol::decode_authentication(body);
  if (!a) return fail(Kind::protocol, "bad Authentication message");
  Step step;
  switch (a->code) {
    case protocol::auth_code::kOk:
      // Mid-SCRAM, AuthenticationOk would skip the server's proof that it knows the password.
      if (state_ != State::authenticating && state_ != State::scram_verified) {
        return fail(Kind::auth_failed, "server skipped the end of SCRAM authentication", "28P01");
      }
      state_ = State::authenticated;
      return step;
    case protocol::auth_code::kCleartext:
      if (state_ != State::authenticating) break;
      protocol::write_password(step.out, password_);
      return step;
    case protocol::auth_code::kMd5: {
      if (state_ != State::authenticating) break;
      std::array<std::uint8_t, 4> salt{};
      std::memcpy(salt.data(), a->data.data(), salt.size());
      protocol::write_password(step.out, md5_response(user_, password_, salt));
      return step;
    }
    case protocol::auth_code::kSasl:
      if (state_ != State::authenticating) break;
      return sasl_start(a->data);
    case protocol::auth_code::kSaslContinue: {
      if (state_ != State::scram_first_sent) return fail(Kind::protocol, "unexpected SASL");
      auto final_message = scram_->server_first(a->data);
      if (!final_message) {
        return fail(Kind::auth_failed,
                    "SCRAM with server failed: " + final_message.error().message(), "28P01");
      }
      protocol::write_sasl_response(step.out, *final_message);
      state_ = State::scram_final_sent;
      return step;
    }
    case protocol::auth_code::kSaslFinal:
      if (state_ != State::scram_final_sent) return fail(Kind::protocol, "unexpected SASL");
      if (auto ok = scram_->server_final(a->data); !ok) {
        return fail(Kind::auth_failed, "server SCRAM signature invalid: " + ok.error().message(),
                    "28P01");
      }
      state_ = State::scram_verified;
      return step;
    default:
      return fail(Kind::unsupported,
                  "server requested unsupported authentication method " + std::to_string(a->code));
  }
  return fail(Kind::protocol, "authentication request out of order");
}

Step ClientHandshake::sasl_start(std::string_view mechanisms) {
  if (!offers_scram(mechanisms)) {
    return fail(Kind::unsupported, "server offers no SASL mechanism pgdog supports");
  }
  if (scram_nonce_.empty()) {
    scram_.emplace(password_);
  } else {
    scram_.emplace(password_, scram_nonce_);
  }
  Step step;
  protocol::write_sasl_initial_response(step.out, kScramMechanism, scram_->client_first());
  state_ = State::scram_first_sent;
  return step;
}

Step ClientHandshake::error_response(std::string_view body) {
  const auto e = protocol::decode_error(body);
  if (!e) return fail(Kind::protocol, "bad ErrorResponse");
  const bool rejected = e->code == "28P01" || e->code == "28000";
  Step step = fail(rejected ? Kind::auth_failed : Kind::server_error, std::string(e->message),
                   std::string(e->code));
  failure_.detail = std::string(e->detail);
  return step;
}

Step ClientHandshake::fail(Kind kind, std::string message, std::string sqlstate) {
  failure_ = {kind, std::move(sqlstate), std::move(message), {}};
  state_ = State::finished;
  return {Status::failed, {}};
}

}  // namespace pgdog::auth
