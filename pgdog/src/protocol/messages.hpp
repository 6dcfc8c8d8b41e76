#pragma once

// Decoders for the message bodies the proxy inspects and builders for the messages it writes.
// Decoders return views into the body; they validate every length before using it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/system/result.hpp>

#include "protocol/frame.hpp"

namespace pgdog::protocol {

template <class T>
using Result = boost::system::result<T>;

// Sequential reader over a message body with a sticky failure flag: after the first short read
// every accessor returns a zero value and ok() stays false.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}

  std::uint8_t u8();
  std::int16_t i16();
  std::int32_t i32();
  std::string_view cstring();  // up to the NUL, which is consumed
  std::string_view bytes(std::size_t n);
  std::string_view rest();

  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == data_.size(); }
  std::size_t position() const { return pos_; }

 private:
  bool need(std::size_t n);
  std::string_view data_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

// --- Startup phase (no type byte) ---------------------------------------------------------

constexpr std::int32_t kProtocolV3 = 196608;  // 3.0
constexpr std::int32_t kSslRequestCode = 80877103;
constexpr std::int32_t kGssEncRequestCode = 80877104;
constexpr std::int32_t kCancelRequestCode = 80877102;
constexpr std::size_t kMaxStartupPacket = 10'000;  // PostgreSQL's own limit

enum class StartupKind { startup, ssl_request, gssenc_request, cancel_request };

struct StartupPacket {
  StartupKind kind = StartupKind::startup;
  std::int32_t protocol = 0;
  std::vector<std::pair<std::string, std::string>> params;  // startup only
  std::int32_t process_id = 0;                              // cancel only
  std::int32_t secret_key = 0;                              // cancel only

  const std::string* param(std::string_view name) const;
};

// Length of the startup-phase packet at the front of `data` (the 4-byte length counts itself).
Result<std::size_t> peek_startup_length(std::string_view data);
// Decodes one whole startup-phase packet, length included. Any 3.x version is accepted.
Result<StartupPacket> decode_startup(std::string_view packet);

// PostgreSQL's answer to a startup packet asking for a newer 3.x minor version or carrying
// protocol options ("_pq_." parameters): NegotiateProtocolVersion, after which the session goes
// on in 3.0 without those options. Removes the options from `packet` and appends the message to
// `out`; appends nothing when the client asked for 3.0 without options.
void negotiate_protocol_version(StartupPacket& packet, std::string& out);

// --- Backend messages --------------------------------------------------------------------

namespace auth_code {
constexpr std::int32_t kOk = 0;
constexpr std::int32_t kCleartext = 3;
constexpr std::int32_t kMd5 = 5;
constexpr std::int32_t kSasl = 10;
constexpr std::int32_t kSaslContinue = 11;
constexpr std::int32_t kSaslFinal = 12;
}  // namespace auth_code

struct Authentication {
  std::int32_t code = 0;
  std::string_view data;  // md5 salt, SASL mechanism list or SASL data
};
Result<Authentication> decode_authentication(std::string_view body);

struct ParameterStatus {
  std::string_view name;
  std::string_view value;
};
Result<ParameterStatus> decode_parameter_status(std::string_view body);

struct BackendKeyData {
  std::int32_t process_id = 0;
  std::int32_t secret_key = 0;
};
Result<BackendKeyData> decode_backend_key_data(std::string_view body);

// 'I' idle, 'T' in a transaction block, 'E' in a failed transaction block.
Result<char> decode_ready_for_query(std::string_view body);

// ErrorResponse / NoticeResponse: the fields the proxy uses, by their one-letter codes.
struct ErrorFields {
  std::string_view severity;  // 'V' (not localized) when present, else 'S'
  std::string_view code;      // 'C', SQLSTATE
  std::string_view message;   // 'M'
  std::string_view detail;    // 'D'
  std::string_view hint;      // 'H'

  bool is_fatal() const { return severity == "FATAL" || severity == "PANIC"; }
};
Result<ErrorFields> decode_error(std::string_view body);

Result<std::string_view> decode_command_complete(std::string_view body);

// DataRow: each column's text, or nothing for NULL (views into `body`).
Result<std::vector<std::optional<std::string_view>>> decode_data_row(std::string_view body);

// --- Frontend messages -------------------------------------------------------------------

Result<std::string_view> decode_query(std::string_view body);

struct Parse {
  std::string_view name;
  std::string_view query;
  std::string_view param_types;  // int16 count followed by that many int32 OIDs, raw
};
Result<Parse> decode_parse(std::string_view body);

struct Bind {
  std::string_view portal;
  std::string_view statement;
  std::string_view rest;  // everything after the statement name, validated
  std::int16_t param_count = 0;
};
Result<Bind> decode_bind(std::string_view body);

// Only the two names at the front of a Bind; `rest` is whatever follows them, unchecked (the
// server checks it). For the paths that look up or rename a Bind's statement: they run for every
// Bind, and the full decode walks every parameter.
struct BindNames {
  std::string_view portal;
  std::string_view statement;
  std::string_view rest;
};
Result<BindNames> decode_bind_names(std::string_view body);

struct Describe {  // also Close: the same layout
  char kind = 0;   // 'S' statement or 'P' portal
  std::string_view name;
};
Result<Describe> decode_describe(std::string_view body);

// A Parse of the unnamed statement.
inline bool parses_unnamed(const Frame& f) {
  return f.type == fe::kParse && !f.body.empty() && f.body[0] == '\0';
}
// A Bind or Describe of the unnamed statement (a Bind's statement follows its portal's name).
inline bool uses_unnamed(const Frame& f) {
  if (f.type == fe::kBind) {
    const auto nul = f.body.find('\0');
    return nul != std::string_view::npos && nul + 1 < f.body.size() && f.body[nul + 1] == '\0';
  }
  return f.type == fe::kDescribe && f.body.size() >= 2 && f.body[0] == 'S' && f.body[1] == '\0';
}

struct Execute {
  std::string_view portal;
  std::int32_t max_rows = 0;
};
Result<Execute> decode_execute(std::string_view body);

struct SaslInitialResponse {
  std::string_view mechanism;
  std::string_view data;
};
Result<SaslInitialResponse> decode_sasl_initial_response(std::string_view body);
Result<std::string_view> decode_password(std::string_view body);

// --- Builders ----------------------------------------------------------------------------

// Appends one message to `out`: begin() writes the type and a length placeholder that finish()
// fills in.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  Writer& begin(char type);
  Writer& begin_untyped();  // startup-phase packets
  Writer& u8(std::uint8_t v);
  Writer& i16(std::int16_t v);
  Writer& i32(std::int32_t v);
  Writer& cstring(std::string_view v);
  Writer& bytes(std::string_view v);
  void finish();

 private:
  std::string& out_;
  std::size_t start_ = 0;
  bool untyped_ = false;
};

struct ErrorSpec {
  std::string_view severity = "ERROR";
  std::string_view code;
  std::string_view message;
  std::string_view detail = {};
  std::string_view hint = {};
};
void write_error(std::string& out, const ErrorSpec& e);
void write_notice(std::string& out, const ErrorSpec& e);
void write_auth(std::string& out, std::int32_t code, std::string_view data = {});
void write_auth_sasl(std::string& out, std::string_view mechanism);
void write_parameter_status(std::string& out, std::string_view name, std::string_view value);
void write_backend_key_data(std::string& out, std::int32_t pid, std::int32_t secret);
void write_ready_for_query(std::string& out, char status);
void write_row_description(std::string& out, const std::vector<std::string>& columns);
void write_data_row(std::string& out, const std::vector<std::optional<std::string>>& values);
void write_command_complete(std::string& out, std::string_view tag);
void write_empty_query_response(std::string& out);
void write_empty(std::string& out, char type);  // ParseComplete, BindComplete, Sync, ...

void write_startup(std::string& out,
                   const std::vector<std::pair<std::string, std::string>>& params);
void write_ssl_request(std::string& out);
void write_cancel_request(std::string& out, std::int32_t pid, std::int32_t secret);
void write_password(std::string& out, std::string_view password);
void write_sasl_initial_response(std::string& out, std::string_view mechanism,
                                 std::string_view data);
void write_sasl_response(std::string& out, std::string_view data);
void write_query(std::string& out, std::string_view sql);
void write_parse(std::string& out, std::string_view name, std::string_view query,
                 std::string_view param_types);
void write_bind(std::string& out, std::string_view portal, std::string_view statement,
                std::string_view rest);
void write_describe(std::string& out, char type, char kind, std::string_view name);
void write_terminate(std::string& out);

}  // namespace pgdog::protocol
