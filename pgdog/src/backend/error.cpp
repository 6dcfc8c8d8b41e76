#include "backend/error.hpp"

#include <stdexcept>

namespace pgdog::backend {

namespace {

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "pgdog.backend"; }
  std::string message(int ev) const override {
    switch (static_cast<Error>(ev)) {
      case Error::connect_failed:
        return "could not connect to server";
      case Error::connect_timeout:
        return "timed out connecting to server";
      case Error::auth_failed:
        return "server authentication failed";
      case Error::unsupported_auth:
        return "unsupported server authentication method";
      case Error::tls_failed:
        return "TLS negotiation with server failed";
      case Error::server_error:
        return "server returned an error";
      case Error::protocol_violation:
        return "server protocol violation";
      case Error::connection_closed:
        return "server closed the connection";
      case Error::checkout_timeout:
        return "timed out waiting for a server connection";
      case Error::pool_shutdown:
        return "connection pool is shut down";
      case Error::checkout_cancelled:
        return "waiting for a server connection was cancelled";
    }
    return "unknown backend error";
  }
};

}  // namespace

const boost::system::error_category& category() {
  static const Category instance;
  return instance;
}

Failure Failure::from(Error e, std::string message, std::string sqlstate) {
  Failure f;
  f.code = e;
  f.sqlstate = std::move(sqlstate);
  f.message = std::move(message);
  return f;
}

std::string Failure::to_string() const {
  std::string s = message.empty() ? code.message() : message;
  if (!detail.empty()) s += " (" + detail + ")";
  return s;
}

void throw_exception_from_error(const Failure& f, const boost::source_location&) {
  throw std::runtime_error(f.to_string());
}

}  // namespace pgdog::backend
