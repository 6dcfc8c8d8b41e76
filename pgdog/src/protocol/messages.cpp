#include "protocol/messages.hpp"

namespace pgdog::protocol {

bool Reader::need(std::size_t n) {
  if (!ok_ || data_.size() - pos_ < n) {
    ok_ = false;
    return false;
  }
  return true;
}

std::uint8_t Reader::u8() {
  if (!need(1)) return 0;
  return static_cast<std::uint8_t>(data_[pos_++]);
}

std::int16_t Reader::i16() {
  if (!need(2)) return 0;
  auto v = static_cast<std::int16_t>(read_u16(data_.data() + pos_));
  pos_ += 2;
  return v;
}

std::int32_t Reader::i32() {
  if (!need(4)) return 0;
  auto v = static_cast<std::int32_t>(read_u32(data_.data() + pos_));
  pos_ += 4;
  return v;
}

std::string_view Reader::cstring() {
  if (!ok_) return {};
  auto nul = data_.find('\0', pos_);
  if (nul == std::string_view::npos) {
    ok_ = false;
    return {};
  }
  auto s = data_.substr(pos_, nul - pos_);
  pos_ = nul + 1;
  return s;
}

std::string_view Reader::bytes(std::size_t n) {
  if (!need(n)) return {};
  auto s = data_.substr(pos_, n);
  pos_ += n;
  return s;
}

std::string_view Reader::rest() {
  if (!ok_) return {};
  auto s = data_.substr(pos_);
  pos_ = data_.size();
  return s;
}

const std::string* StartupPacket::param(std::string_view name) const {
  for (const auto& [k, v] : params)
    if (k == name) return &v;
  return nullptr;
}

Result<std::size_t> peek_startup_length(std::string_view data) {
  if (data.size() < 4) return Error::need_more;
  const std::uint32_t len = read_u32(data.data());
  if (len < 8) return Error::bad_length;
  if (len > kMaxStartupPacket) return Error::message_too_large;
  return std::size_t{len};
}

Result<StartupPacket> decode_startup(std::string_view packet) {
  Reader r(packet);
  const auto len = static_cast<std::uint32_t>(r.i32());
  if (!r.ok() || len != packet.size()) return Error::bad_length;
  StartupPacket p;
  p.protocol = r.i32();
  switch (p.protocol) {
    case kSslRequestCode:
      p.kind = StartupKind::ssl_request;
      return r.at_end() ? Result<StartupPacket>(std::move(p)) : Error::malformed;
    case kGssEncRequestCode:
      p.kind = StartupKind::gssenc_request;
      return r.at_end() ? Result<StartupPacket>(std::move(p)) : Error::malformed;
    case kCancelRequestCode:
      p.kind = StartupKind::cancel_request;
      p.process_id = r.i32();
      p.secret_key = r.i32();
      if (!r.ok() || !r.at_end()) return Error::malformed;
      return p;
    default:
      break;
  }
  // Protocol 3, any minor version: the session negotiates down to 3.0
  // (write_negotiate_protocol_version); other major versions are refused.
  if ((p.protocol >> 16) != 3) return Error::bad_startup_code;
  p.kind = StartupKind::startup;
  while (true) {
    auto name = r.cstring();
    if (!r.ok()) return Error::malformed;
    if (name.empty()) break;
    auto value = r.cstring();
    if (!r.ok()) return Error::malformed;
    p.params.emplace_back(std::string(name), std::string(value));
  }
  if (!r.at_end()) return Error::malformed;
  return p;
}

void negotiate_protocol_version(StartupPacket& packet, std::string& out) {
  std::vector<std::string> options;
  std::erase_if(packet.params, [&](const auto& p) {
    if (!p.first.starts_with("_pq_.")) return false;
    options.push_back(p.first);
    return true;
  });
  if (packet.protocol == kProtocolV3 && options.empty()) return;
  Writer w(out);
  w.begin('v').i32(0).i32(static_cast<std::int32_t>(options.size()));  // newest minor: 0
  for (const auto& o : options) w.cstring(o);
  w.finish();
}

Result<Authentication> decode_authentication(std::string_view body) {
  Reader r(body);
  Authentication a;
  a.code = r.i32();
  a.data = r.rest();
  if (!r.ok()) return Error::malformed;
  if (a.code == auth_code::kMd5 && a.data.size() != 4) return Error::malformed;
  return a;
}

Result<ParameterStatus> decode_parameter_status(std::string_view body) {
  Reader r(body);
  ParameterStatus p{r.cstring(), r.cstring()};
  if (!r.ok() || !r.at_end()) return Error::malformed;
  return p;
}

Result<std::vector<std::optional<std::string_view>>> decode_data_row(std::string_view body) {
  Reader r(body);
  const std::int16_t count = r.i16();
  if (!r.ok() || count < 0) return Error::malformed;
  std::vector<std::optional<std::string_view>> values;
  values.reserve(static_cast<std::size_t>(count));
  for (std::int16_t i = 0; i < count; ++i) {
    const std::int32_t length = r.i32();
    if (!r.ok() || length < -1) return Error::malformed;
    if (length == -1) {
      values.emplace_back(std::nullopt);
    } else {
      values.emplace_back(r.bytes(static_cast<std::size_t>(length)));
    }
  }
  if (!r.ok() || !r.at_end()) return Error::malformed;
  return values;
}

Result<BackendKeyData> decode_backend_key_data(std::string_view body) {
  Reader r(body);
  BackendKeyData k;
  k.process_id = r.i32();
  k.secret_key = r.i32();
  if (!r.ok() || !r.at_end()) return Error::malformed;
  return k;
}

Result<char> decode_ready_for_query(std::string_view body) {
  if (body.size() != 1) return Error::malformed;
  const char s = body[0];
  if (s != 'I' && s != 'T' && s != 'E') return Error::malformed;
  return s;
}

Result<ErrorFields> decode_error(std::string_view body) {
  Reader r(body);
  ErrorFields f;
  std::string_view localized_severity;
  while (true) {
    const auto field = static_cast<char>(r.u8());
    if (!r.ok()) return Error::malformed;
    if (field == '\0') break;
    auto value = r.cstring();
    if (!r.ok()) return Error::malformed;
    switch (field) {
      case 'S':
        localized_severity = value;
        break;
      case 'V':
        f.severity = value;
        break;
      case 'C':
        f.code = value;
        break;
      case 'M':
        f.message = value;
        break;
      case 'D':
        f.detail = value;
        break;
      case 'H':
        f.hint = value;
        break;
      default:
        break;
    }
  }
  if (f.severity.empty()) f.severity = localized_severity;
  return f;
}

Result<std::string_view> decode_command_complete(std::string_view body) {
  Reader r(body);
  auto tag = r.cstring();
  if (!r.ok() || !r.at_end()) return Error::malformed;
  return tag;
}

Result<std::string_view> decode_query(std::string_view body) {
  Reader r(body);
  auto sql = r.cstring();
  if (!r.ok() || !r.at_end()) return Error::malformed;
  return sql;
}

Result<Parse> decode_parse(std::string_view body) {
  Reader r(body);
  Parse p;
  p.name = r.cstring();
  p.query = r.cstring();
  const auto start = r.position();
  const auto count = r.i16();
  if (!r.ok() || count < 0) return Error::malformed;
  r.bytes(static_cast<std::size_t>(count) * 4);
  if (!r.ok() || !r.at_end()) return Error::malformed;
  p.param_types = body.substr(start);
  return p;
}

Result<BindNames> decode_bind_names(std::string_view body) {
  // Two finds rather than a Reader: this runs for every Bind (a Reader costs half as much again).
  const auto portal_end = body.find('\0');
  if (portal_end == std::string_view::npos) return Error::malformed;
  const auto statement_end = body.find('\0', portal_end + 1);
  if (statement_end == std::string_view::npos) return Error::malformed;
  return BindNames{body.substr(0, portal_end),
                   body.substr(portal_end + 1, statement_end - portal_end - 1),
                   body.substr(statement_end + 1)};
}

Result<Bind> decode_bind(std::string_view body) {
  auto names = decode_bind_names(body);
  if (!names) return names.error();
  Bind b;
  b.portal = names->portal;
  b.statement = names->statement;
  b.rest = names->rest;
  Reader r(b.rest);
  const auto formats = r.i16();
  if (!r.ok() || formats < 0) return Error::malformed;
  r.bytes(static_cast<std::size_t>(formats) * 2);
  b.param_count = r.i16();
  if (!r.ok() || b.param_count < 0) return Error::malformed;
  for (int i = 0; i < b.param_count; ++i) {
    const auto len = r.i32();
    if (len < -1) return Error::malformed;
    if (len > 0) r.bytes(static_cast<std::size_t>(len));
    if (!r.ok()) return Error::malformed;
  }
  const auto result_formats = r.i16();
  if (!r.ok() || result_formats < 0) return Error::malformed;
  r.bytes(static_cast<std::size_t>(result_formats) * 2);
  if (!r.ok() || !r.at_end()) return Error::malformed;
  return b;
}

Result<Describe> decode_describe(std::string_view body) {
  Reader r(body);
  Describe d;
  d.kind = static_cast<char>(r.u8());
  d.name = r.cstring();
  if (!r.ok() || !r.at_end() || (d.kind != 'S' && d.kind != 'P')) return Error::malformed;
  return d;
}

Result<Execute> decode_execute(std::string_view body) {
  Reader r(body);
  Execute e;
  e.portal = r.cstring();
  e.max_rows = r.i32();
  if (!r.ok() || !r.at_end()) return Error::malformed;
  return e;
}

Result<SaslInitialResponse> decode_sasl_initial_response(std::string_view body) {
  Reader r(body);
  SaslInitialResponse s;
  s.mechanism = r.cstring();
  const auto len = r.i32();
  if (!r.ok() || len < -1) return Error::malformed;
  if (len > 0) s.data = r.bytes(static_cast<std::size_t>(len));
  if (!r.ok() || !r.at_end()) return Error::malformed;
  return s;
}

Result<std::string_view> decode_password(std::string_view body) {
  Reader r(body);
  auto password = r.cstring();
  if (!r.ok() || !r.at_end()) return Error::malformed;
  return password;
}

Writer& Writer::begin(char type) {
  start_ = out_.size();
  untyped_ = false;
  out_.push_back(type);
  out_.append(4, '\0');
  return *this;
}

Writer& Writer::begin_untyped() {
  start_ = out_.size();
  untyped_ = true;
  out_.append(4, '\0');
  return *this;
}

Writer& Writer::u8(std::uint8_t v) {
  out_.push_back(static_cast<char>(v));
  return *this;
}

Writer& Writer::i16(std::int16_t v) {
  const auto u = static_cast<std::uint16_t>(v);
  out_.push_back(static_cast<char>(u >> 8));
  out_.push_back(static_cast<char>(u & 0xff));
  return *this;
}

Writer& Writer::i32(std::int32_t v) {
  char buf[4];
  write_u32(buf, static_cast<std::uint32_t>(v));
  out_.append(buf, 4);
  return *this;
}

Writer& Writer::cstring(std::string_view v) {
  out_.append(v);
  out_.push_back('\0');
  return *this;
}

Writer& Writer::bytes(std::string_view v) {
  out_.append(v);
  return *this;
}

void Writer::finish() {
  // Typed messages: the length starts after the type byte.
  const std::size_t len_at = start_ + (untyped_ ? 0 : 1);
  write_u32(out_.data() + len_at, static_cast<std::uint32_t>(out_.size() - len_at));
}

}  // namespace pgdog::protocol
