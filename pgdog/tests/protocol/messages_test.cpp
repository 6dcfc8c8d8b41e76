#include <gtest/gtest.h>

#include "protocol/messages.hpp"
#include "protocol/params.hpp"

namespace pgdog::protocol {
namespace {

Frame only_frame(const std::string& bytes) {
  auto f = next_frame(bytes, 1 << 20);
  EXPECT_TRUE(f);
  EXPECT_EQ(f->size(), bytes.size());
  return *f;
}

TEST(Startup, DecodesParams) {
  std::string out;
  write_startup(out, {{"user", "alice"}, {"database", "app"}, {"application_name", "psql"}});
  auto len = peek_startup_length(out);
  ASSERT_TRUE(len);
  EXPECT_EQ(*len, out.size());
  auto p = decode_startup(out);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->kind, StartupKind::startup);
  ASSERT_NE(p->param("user"), nullptr);
  EXPECT_EQ(*p->param("user"), "alice");
  EXPECT_EQ(*p->param("application_name"), "psql");
  EXPECT_EQ(p->param("nope"), nullptr);
}

TEST(Startup, SpecialRequests) {
  std::string ssl;
  write_ssl_request(ssl);
  EXPECT_EQ(ssl.size(), 8U);
  EXPECT_EQ(decode_startup(ssl)->kind, StartupKind::ssl_request);

  std::string cancel;
  write_cancel_request(cancel, 1234, -5678);
  auto c = decode_startup(cancel);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->kind, StartupKind::cancel_request);
  EXPECT_EQ(c->process_id, 1234);
  EXPECT_EQ(c->secret_key, -5678);

  std::string gss(8, '\0');
  write_u32(gss.data(), 8);
  write_u32(gss.data() + 4, kGssEncRequestCode);
  EXPECT_EQ(decode_startup(gss)->kind, StartupKind::gssenc_request);
}

TEST(Startup, NewerMinorVersionsAreNegotiatedDownTo30) {
  auto packet = [](std::int32_t version, std::vector<std::pair<std::string, std::string>> params) {
    std::string body;
    for (const auto& [k, v] : params) body += k + '\0' + v + '\0';
    body += '\0';
    std::string p(8, '\0');
    write_u32(p.data(), static_cast<std::uint32_t>(8 + body.size()));
    write_u32(p.data() + 4, static_cast<std::uint32_t>(version));
    return p + body;
  };
  auto plain = decode_startup(packet(kProtocolV3, {{"user", "a"}}));
  ASSERT_TRUE(plain);
  std::string out;
  negotiate_protocol_version(*plain, out);
  EXPECT_TRUE(out.empty()) << "3.0 without options needs no negotiation";

  auto newer = decode_startup(packet((3 << 16) | 2, {{"user", "a"}, {"_pq_.opt", "x"}}));
  ASSERT_TRUE(newer);
  negotiate_protocol_version(*newer, out);
  ASSERT_EQ(newer->params.size(), 1U);
  EXPECT_EQ(newer->params[0].first, "user");
  // 'v', length, newest minor 0, one option, its name.
  const std::string expected = std::string("v\0\0\0\x15\0\0\0\0\0\0\0\x01_pq_.opt\0", 22);
  EXPECT_EQ(out, expected);
}

TEST(Startup, Rejects) {
  std::string bad(8, '\0');
  write_u32(bad.data(), 8);
  write_u32(bad.data() + 4, 0x00020000);  // protocol 2.0
  EXPECT_EQ(decode_startup(bad).error(), Error::bad_startup_code);

  std::string tiny(4, '\0');
  write_u32(tiny.data(), 3);
  EXPECT_EQ(peek_startup_length(tiny).error(), Error::bad_length);
  write_u32(tiny.data(), 1 << 30);
  EXPECT_EQ(peek_startup_length(tiny).error(), Error::message_too_large);

  // Parameters without the terminating empty name.
  std::string p;
  Writer(p).begin_untyped().i32(kProtocolV3).cstring("user").cstring("x").finish();
  EXPECT_EQ(decode_startup(p).error(), Error::malformed);
  // Declared length disagrees with the packet.
  std::string s;
  write_ssl_request(s);
  s.push_back('x');
  EXPECT_EQ(decode_startup(s).error(), Error::bad_length);
}

TEST(Backend, ErrorFields) {
  std::string out;
  write_error(out, {.severity = "FATAL", .code = "28P01", .message = "password authentication failed"});
  auto f = only_frame(out);
  EXPECT_EQ(f.type, 'E');
  auto e = decode_error(f.body);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->severity, "FATAL");
  EXPECT_EQ(e->code, "28P01");
  EXPECT_EQ(e->message, "password authentication failed");
  EXPECT_TRUE(e->is_fatal());
  EXPECT_FALSE(decode_error(std::string_view("S\0ERROR", 7)));  // no terminator
}

TEST(Backend, SmallMessages) {
  std::string out;
  write_ready_for_query(out, 'T');
  EXPECT_EQ(*decode_ready_for_query(only_frame(out).body), 'T');
  EXPECT_FALSE(decode_ready_for_query("X"));
  out.clear();
  write_parameter_status(out, "TimeZone", "UTC");
  auto ps = decode_parameter_status(only_frame(out).body);
  ASSERT_TRUE(ps);
  EXPECT_EQ(ps->name, "TimeZone");
  EXPECT_EQ(ps->value, "UTC");
  out.clear();
  write_backend_key_data(out, 42, 7);
  auto k = decode_backend_key_data(only_frame(out).body);
  EXPECT_EQ(k->process_id, 42);
  EXPECT_EQ(k->secret_key, 7);
  out.clear();
  write_command_complete(out, "UPDATE 3");
  EXPECT_EQ(*decode_command_complete(only_frame(out).body), "UPDATE 3");
  out.clear();
  write_auth(out, auth_code::kMd5, std::string_view("\1\2\3\4", 4));
  auto a = decode_authentication(only_frame(out).body);
  EXPECT_EQ(a->code, auth_code::kMd5);
  EXPECT_EQ(a->data.size(), 4U);
  EXPECT_FALSE(decode_authentication(std::string_view("\0\0\0\5\1", 5)));
}

TEST(Frontend, ParseBindDescribeExecute) {
  std::string out;
  std::string types;
  Writer(types).i16(1).i32(23);
  write_parse(out, "s1", "select $1", types);
  auto p = decode_parse(only_frame(out).body);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->name, "s1");
  EXPECT_EQ(p->query, "select $1");
  EXPECT_EQ(p->param_types, types);

  std::string rest;
  Writer(rest).i16(0).i16(1).i32(2).bytes("42").i16(0);
  out.clear();
  write_bind(out, "", "s1", rest);
  auto b = decode_bind(only_frame(out).body);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->statement, "s1");
  EXPECT_EQ(b->param_count, 1);
  EXPECT_EQ(b->rest, rest);

  // A parameter length pointing past the end.
  std::string bad_rest;
  Writer(bad_rest).i16(0).i16(1).i32(100).bytes("42").i16(0);
  out.clear();
  write_bind(out, "", "s1", bad_rest);
  EXPECT_FALSE(decode_bind(only_frame(out).body));
  // The names alone do not look past them: the server judges the rest.
  auto names = decode_bind_names(only_frame(out).body);
  ASSERT_TRUE(names);
  EXPECT_EQ(names->portal, "");
  EXPECT_EQ(names->statement, "s1");
  EXPECT_EQ(names->rest, bad_rest);
  out.clear();
  write_bind(out, "p1", "__pgdog_7", rest);
  names = decode_bind_names(only_frame(out).body);
  ASSERT_TRUE(names);
  EXPECT_EQ(names->portal, "p1");
  EXPECT_EQ(names->statement, "__pgdog_7");
  EXPECT_EQ(names->rest, rest);
  // A statement name without its terminator.
  EXPECT_FALSE(decode_bind_names(std::string_view("p1\0s1", 5)));
  EXPECT_FALSE(decode_bind_names(""));

  out.clear();
  write_describe(out, fe::kDescribe, 'S', "s1");
  auto d = decode_describe(only_frame(out).body);
  EXPECT_EQ(d->kind, 'S');
  EXPECT_EQ(d->name, "s1");
  EXPECT_FALSE(decode_describe(std::string_view("Xs1\0", 4)));

  std::string exec;
  Writer(exec).begin(fe::kExecute).cstring("").i32(0).finish();
  auto e = decode_execute(only_frame(exec).body);
  EXPECT_EQ(e->portal, "");
  EXPECT_EQ(e->max_rows, 0);
}

TEST(Frontend, Sasl) {
  std::string out;
  write_sasl_initial_response(out, "SCRAM-SHA-256", "n,,n=,r=abc");
  auto s = decode_sasl_initial_response(only_frame(out).body);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->mechanism, "SCRAM-SHA-256");
  EXPECT_EQ(s->data, "n,,n=,r=abc");
  // Declared data length larger than what follows.
  std::string bad;
  Writer(bad).begin(fe::kPassword).cstring("SCRAM-SHA-256").i32(50).bytes("n,,").finish();
  EXPECT_FALSE(decode_sasl_initial_response(only_frame(bad).body));
}

TEST(Admin, RowsRoundTrip) {
  std::string out;
  write_row_description(out, {"a", "b"});
  write_data_row(out, {std::string("1"), std::nullopt});
  auto f1 = next_frame(out, 1 << 20);
  ASSERT_TRUE(f1);
  EXPECT_EQ(f1->type, 'T');
  auto f2 = next_frame(std::string_view(out).substr(f1->size()), 1 << 20);
  ASSERT_TRUE(f2);
  EXPECT_EQ(f2->type, 'D');
  Reader r(f2->body);
  EXPECT_EQ(r.i16(), 2);
  EXPECT_EQ(r.i32(), 1);
  EXPECT_EQ(r.bytes(1), "1");
  EXPECT_EQ(r.i32(), -1);
  EXPECT_TRUE(r.at_end());
}

}  // namespace
}  // namespace pgdog::protocol

namespace pgdog::protocol {
namespace {

TEST(Options, ParsesSettingsLikePostgres) {
  auto o = parse_options("-c TimeZone=Asia/Kolkata  -cstatement_timeout=4321 --search-path=a\\ b");
  ASSERT_TRUE(o);
  ASSERT_EQ(o->size(), 3U);
  EXPECT_EQ((*o)[0], (std::pair<std::string, std::string>{"TimeZone", "Asia/Kolkata"}));
  EXPECT_EQ((*o)[1], (std::pair<std::string, std::string>{"statement_timeout", "4321"}));
  EXPECT_EQ((*o)[2], (std::pair<std::string, std::string>{"search_path", "a b"}));
  EXPECT_TRUE(parse_options("")->empty());
  EXPECT_FALSE(parse_options("-d 5"));              // not a setting
  EXPECT_FALSE(parse_options("-c novalue"));
  EXPECT_FALSE(parse_options("-c user=postgres"));  // not a session parameter
}

}  // namespace
}  // namespace pgdog::protocol
