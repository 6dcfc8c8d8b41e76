#pragma once

// Framing of the PostgreSQL v3 protocol: a type byte and a 4-byte big-endian length that counts
// itself. Frames are views into the caller's buffer; nothing here allocates.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include <boost/system/result.hpp>

#include "protocol/error.hpp"

namespace pgdog::protocol {

// Frontend (client -> server) message types.
namespace fe {
constexpr char kQuery = 'Q';
constexpr char kParse = 'P';
constexpr char kBind = 'B';
constexpr char kDescribe = 'D';
constexpr char kExecute = 'E';
constexpr char kClose = 'C';
constexpr char kSync = 'S';
constexpr char kFlush = 'H';
constexpr char kTerminate = 'X';
constexpr char kCopyData = 'd';
constexpr char kCopyDone = 'c';
constexpr char kCopyFail = 'f';
constexpr char kFunctionCall = 'F';
constexpr char kPassword = 'p';  // PasswordMessage, SASLInitialResponse, SASLResponse
}  // namespace fe

// Backend (server -> client) message types.
namespace be {
constexpr char kAuthentication = 'R';
constexpr char kBackendKeyData = 'K';
constexpr char kParameterStatus = 'S';
constexpr char kReadyForQuery = 'Z';
constexpr char kErrorResponse = 'E';
constexpr char kNoticeResponse = 'N';
constexpr char kNotificationResponse = 'A';
constexpr char kCommandComplete = 'C';
constexpr char kEmptyQueryResponse = 'I';
constexpr char kRowDescription = 'T';
constexpr char kDataRow = 'D';
constexpr char kParseComplete = '1';
constexpr char kBindComplete = '2';
constexpr char kCloseComplete = '3';
constexpr char kNoData = 'n';
constexpr char kParameterDescription = 't';
constexpr char kPortalSuspended = 's';
constexpr char kCopyInResponse = 'G';
constexpr char kCopyOutResponse = 'H';
constexpr char kCopyBothResponse = 'W';
constexpr char kCopyData = 'd';
constexpr char kCopyDone = 'c';
constexpr char kFunctionCallResponse = 'V';
constexpr char kNegotiateProtocolVersion = 'v';
}  // namespace be

constexpr std::size_t kHeaderSize = 5;  // type byte + length

inline std::uint32_t read_u32(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return __builtin_bswap32(v);
}
inline std::uint16_t read_u16(const char* p) {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return __builtin_bswap16(v);
}
inline void write_u32(char* p, std::uint32_t v) {
  v = __builtin_bswap32(v);
  std::memcpy(p, &v, 4);
}

struct Frame {
  char type = 0;
  std::string_view body;  // the bytes after the length field
  std::string_view raw;   // the whole frame, header included: what gets forwarded

  std::size_t size() const { return raw.size(); }
};

struct FrameHeader {
  char type = 0;
  std::size_t size = 0;  // whole frame, header included
};

// Reads the header at the front of `data`. need_more when fewer than 5 bytes; bad_length when
// the length field is below 4; message_too_large when the frame would exceed `max_size`.
// The length is validated here, before anyone allocates for the body.
boost::system::result<FrameHeader> peek_header(std::string_view data, std::size_t max_size);

// A whole frame at the front of `data`, or need_more / an error as for peek_header.
boost::system::result<Frame> next_frame(std::string_view data, std::size_t max_size);

}  // namespace pgdog::protocol
