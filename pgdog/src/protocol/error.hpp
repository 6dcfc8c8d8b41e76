#pragma once

#include <boost/system/error_code.hpp>

namespace pgdog::protocol {

enum class Error {
  need_more = 1,      // not an error for callers that can read more bytes
  bad_length,         // length field below the minimum for the message
  message_too_large,  // length above max_message_size
  bad_startup_code,   // unknown protocol version / request code
  malformed,          // a body that does not parse
};

const boost::system::error_category& category();
inline boost::system::error_code make_error_code(Error e) {
  return {static_cast<int>(e), category()};
}

}  // namespace pgdog::protocol

template <>
struct boost::system::is_error_code_enum<pgdog::protocol::Error> : std::true_type {};
