#include <algorithm>

#include "protocol/messages.hpp"

namespace pgdog::protocol {

namespace {

void write_fields(std::string& out, char type, const ErrorSpec& e) {
  Writer w(out);
  w.begin(type);
  w.u8('S').cstring(e.severity);
  w.u8('V').cstring(e.severity);
  w.u8('C').cstring(e.code);
  w.u8('M').cstring(e.message);
  if (!e.detail.empty()) w.u8('D').cstring(e.detail);
  if (!e.hint.empty()) w.u8('H').cstring(e.hint);
  w.u8(0);
  w.finish();
}

}  // namespace

void write_error(std::string& out, const ErrorSpec& e) { write_fields(out, be::kErrorResponse, e); }

void write_notice(std::string& out, const ErrorSpec& e) {
  write_fields(out, be::kNoticeResponse, e);
}

void write_auth(std::string& out, std::int32_t code, std::string_view data) {
  Writer(out).begin(be::kAuthentication).i32(code).bytes(data).finish();
}

void write_auth_sasl(std::string& out, std::string_view mechanism) {
  Writer w(out);
  w.begin(be::kAuthentication).i32(auth_code::kSasl).cstring(mechanism).u8(0).finish();
}

void write_parameter_status(std::string& out, std::string_view name, std::string_view value) {
  Writer(out).begin(be::kParameterStatus).cstring(name).cstring(value).finish();
}

void write_backend_key_data(std::string& out, std::int32_t pid, std::int32_t secret) {
  Writer(out).begin(be::kBackendKeyData).i32(pid).i32(secret).finish();
}

void write_ready_for_query(std::string& out, char status) {
  Writer(out).begin(be::kReadyForQuery).u8(static_cast<std::uint8_t>(status)).finish();
}

void write_row_description(std::string& out, const std::vector<std::string>& columns) {
  Writer w(out);
  w.begin(be::kRowDescription).i16(static_cast<std::int16_t>(columns.size()));
  for (const auto& c : columns) {
    // Every admin column is text (OID 25), variable length, text format.
    w.cstring(c).i32(0).i16(0).i32(25).i16(-1).i32(-1).i16(0);
  }
  w.finish();
}

void write_data_row(std::string& out, const std::vector<std::optional<std::string>>& values) {
  Writer w(out);
  w.begin(be::kDataRow).i16(static_cast<std::int16_t>(values.size()));
  for (const auto& v : values) {
    if (v) {
      w.i32(static_cast<std::int32_t>(v->size())).bytes(*v);
    } else {
      w.i32(-1);
    }
  }
  w.finish();
}

void write_command_complete(std::string& out, std::string_view tag) {
  Writer(out).begin(be::kCommandComplete).cstring(tag).finish();
}

void write_empty_query_response(std::string& out) { write_empty(out, be::kEmptyQueryResponse); }

void write_empty(std::string& out, char type) { Writer(out).begin(type).finish(); }

void write_startup(std::string& out,
                   const std::vector<std::pair<std::string, std::string>>& params) {
  Writer w(out);
  w.begin_untyped().i32(kProtocolV3);
  for (const auto& [k, v] : params) w.cstring(k).cstring(v);
  w.u8(0).finish();
}

void write_ssl_request(std::string& out) {
  Writer(out).begin_untyped().i32(kSslRequestCode).finish();
}

void write_cancel_request(std::string& out, std::int32_t pid, std::int32_t secret) {
  Writer(out).begin_untyped().i32(kCancelRequestCode).i32(pid).i32(secret).finish();
}

void write_password(std::string& out, std::string_view password) {
  Writer(out).begin(fe::kPassword).cstring(password).finish();
}

void write_sasl_initial_response(std::string& out, std::string_view mechanism,
                                 std::string_view data) {
  Writer(out)
      .begin(fe::kPassword)
      .cstring(mechanism)
      .i32(static_cast<std::int32_t>(data.size()))
      .bytes(data)
      .finish();
}

void write_sasl_response(std::string& out, std::string_view data) {
  Writer(out).begin(fe::kPassword).bytes(data).finish();
}

void write_query(std::string& out, std::string_view sql) {
  Writer(out).begin(fe::kQuery).cstring(sql).finish();
}

void write_parse(std::string& out, std::string_view name, std::string_view query,
                 std::string_view param_types) {
  Writer w(out);
  w.begin(fe::kParse).cstring(name).cstring(query);
  if (param_types.empty()) {
    w.i16(0);
  } else {
    w.bytes(param_types);
  }
  w.finish();
}

void write_bind(std::string& out, std::string_view portal, std::string_view statement,
                std::string_view rest) {
  // One resize and three copies: the mirror and the statement rewrite write one per Bind.
  const std::size_t length = 4 + portal.size() + 1 + statement.size() + 1 + rest.size();
  const std::size_t at = out.size();
  out.resize(at + 1 + length);
  char* p = out.data() + at;
  *p++ = fe::kBind;
  write_u32(p, static_cast<std::uint32_t>(length));
  p += 4;
  p = std::copy(portal.begin(), portal.end(), p);
  *p++ = '\0';
  p = std::copy(statement.begin(), statement.end(), p);
  *p++ = '\0';
  std::copy(rest.begin(), rest.end(), p);
}

void write_describe(std::string& out, char type, char kind, std::string_view name) {
  Writer(out).begin(type).u8(static_cast<std::uint8_t>(kind)).cstring(name).finish();
}

void write_terminate(std::string& out) { write_empty(out, fe::kTerminate); }

}  // namespace pgdog::protocol
