#pragma once

#include <string>

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

namespace pgdog::backend {

enum class Error {
  connect_failed = 1,  // TCP connect or DNS failed
  connect_timeout,     // no ReadyForQuery within connect_timeout
  auth_failed,         // the server rejected our credentials
  unsupported_auth,    // an authentication method we do not speak
  tls_failed,          // TLS required but refused or the handshake failed
  server_error,        // the server answered ErrorResponse
  protocol_violation,  // the server sent something that does not parse
  connection_closed,   // EOF or reset from the server
  checkout_timeout,    // no server became free within checkout_timeout
  pool_shutdown,       // the pool was closed (reload removed it, or shutdown)
  checkout_cancelled,  // the caller stopped waiting (a timeout of its own around the checkout)
};

const boost::system::error_category& category();
inline boost::system::error_code make_error_code(Error e) {
  return {static_cast<int>(e), category()};
}

// An error with what a client should see: the server's own SQLSTATE and text when the server
// produced it, or ours (08006 and friends) when the connection did.
struct Failure {
  boost::system::error_code code;
  std::string sqlstate = "08006";
  std::string message;
  std::string detail;

  static Failure from(Error e, std::string message, std::string sqlstate = "08006");
  std::string to_string() const;
};

[[noreturn]] void throw_exception_from_error(const Failure& f, const boost::source_location& loc);

template <class T>
using Result = boost::system::result<T, Failure>;

}  // namespace pgdog::backend

template <>
struct boost::system::is_error_code_enum<pgdog::backend::Error> : std::true_type {};
