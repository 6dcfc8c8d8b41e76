// Writes the seed corpora: small real messages made with the proxy's own builders, plus a few
// broken ones. Run by hand when a decoder changes (see scripts/fuzz --help); the output is
// committed under pgdog/fuzz/corpus/<target>/.
//
// Usage: make_corpus OUTDIR

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "auth/auth.hpp"
#include "protocol/messages.hpp"

namespace {

using namespace pgdog::protocol;
namespace fs = std::filesystem;

using namespace std::literals;

fs::path g_root;

// fuzz_prepared's first byte: the statement cache limit.
std::string limit(int n) {
  return std::string(1, static_cast<char>(n));
}

void seed(const std::string& target, const std::string& name, const std::string& bytes) {
  const fs::path dir = g_root / target;
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

std::string str(std::string_view s) {
  return std::string(s);
}

std::string i32(std::int32_t v) {
  std::string out;
  Writer(out).i32(v);
  return out;
}

// --- frontend ------------------------------------------------------------------------------

std::string query(std::string_view sql) {
  std::string out;
  write_query(out, sql);
  return out;
}
std::string parse(std::string_view name, std::string_view sql,
                  std::vector<std::int32_t> oids = {}) {
  std::string types;
  Writer w(types);
  w.i16(static_cast<std::int16_t>(oids.size()));
  for (auto oid : oids)
    w.i32(oid);
  std::string out;
  write_parse(out, name, sql, types);
  return out;
}
// Text parameters (nullopt is NULL), all in text format, one text result column format.
std::string bind(std::string_view portal, std::string_view statement,
                 const std::vector<std::optional<std::string>>& params = {}) {
  std::string rest;
  Writer w(rest);
  w.i16(1).i16(0);  // one format code for every parameter: text
  w.i16(static_cast<std::int16_t>(params.size()));
  for (const auto& p : params) {
    if (p) {
      w.i32(static_cast<std::int32_t>(p->size())).bytes(*p);
    } else {
      w.i32(-1);
    }
  }
  w.i16(0);  // result formats: all text
  std::string out;
  write_bind(out, portal, statement, rest);
  return out;
}
std::string describe(char kind, std::string_view name) {
  std::string out;
  write_describe(out, fe::kDescribe, kind, name);
  return out;
}
std::string close(char kind, std::string_view name) {
  std::string out;
  write_describe(out, fe::kClose, kind, name);
  return out;
}
std::string execute(std::string_view portal = "", std::int32_t max_rows = 0) {
  std::string out;
  Writer(out).begin(fe::kExecute).cstring(portal).i32(max_rows).finish();
  return out;
}
std::string empty(char type) {
  std::string out;
  write_empty(out, type);
  return out;
}
std::string sync() {
  return empty(fe::kSync);
}
std::string copy_data(std::string_view data, char type = fe::kCopyData) {
  std::string out;
  Writer(out).begin(type).bytes(data).finish();
  return out;
}

constexpr std::string_view kRfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kRfcServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view kRfcClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kRfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

void frontend() {
  const std::string t = "fuzz_frontend";
  seed(t, "simple_query", query("SELECT 1"));
  seed(t, "two_queries_one_read", query("BEGIN") + query("UPDATE t SET x = x + 1 WHERE id = 7"));
  seed(t, "extended_batch",
       parse("s1", "SELECT * FROM t WHERE id = $1", {23}) + bind("", "s1", {std::string("42")}) +
           describe('P', "") + execute() + sync());
  seed(t, "unnamed_batch",
       parse("", "SELECT $1, $2") + bind("p1", "", {std::string("a"), std::nullopt}) +
           describe('S', "") + execute("p1", 10) + empty(fe::kFlush) + sync());
  seed(t, "close_and_sync", close('S', "s1") + close('P', "p1") + sync());
  seed(t, "password", [] {
    std::string out;
    write_password(out, "md5a3556571e93b0d20722ba62be61e8c2d");
    return out;
  }());
  seed(t, "sasl_initial_response", [] {
    std::string out;
    write_sasl_initial_response(out, "SCRAM-SHA-256", kRfcClientFirst);
    return out;
  }());
  seed(t, "sasl_response", [] {
    std::string out;
    write_sasl_response(out, kRfcClientFinal);
    return out;
  }());
  seed(t, "copy_from_stdin",
       query("COPY t FROM STDIN") + copy_data("1\tone\n") + copy_data("2\ttwo\n") +
           empty(fe::kCopyDone));
  seed(t, "copy_fail", copy_data("abc") + copy_data(std::string("bad\0", 4), fe::kCopyFail));
  seed(t, "deallocate", query("DEALLOCATE PREPARE s1") + query("DEALLOCATE ALL"));
  seed(t, "terminate", empty(fe::kTerminate));
  seed(t, "truncated", query("SELECT 1").substr(0, 7));
  seed(t, "length_3", str("Q") + i32(3));
  seed(t, "length_negative", str("Q") + i32(-1) + "SELECT 1");
  seed(t, "length_1gib", str("Q") + i32(1 << 30) + "SELECT 1");
}

// --- backend -------------------------------------------------------------------------------

std::string auth(std::int32_t code, std::string_view data = {}) {
  std::string out;
  write_auth(out, code, data);
  return out;
}
std::string error(std::string_view severity, std::string_view code, std::string_view message) {
  std::string out;
  write_error(
      out,
      {.severity = severity, .code = code, .message = message, .detail = "detail", .hint = "hint"});
  return out;
}
std::string ready(char status) {
  std::string out;
  write_ready_for_query(out, status);
  return out;
}
std::string complete(std::string_view tag) {
  std::string out;
  write_command_complete(out, tag);
  return out;
}
std::string rows(const std::vector<std::string>& columns,
                 const std::vector<std::vector<std::optional<std::string>>>& data) {
  std::string out;
  write_row_description(out, columns);
  for (const auto& r : data)
    write_data_row(out, r);
  return out;
}

std::string login_answer() {
  std::string out = auth(auth_code::kOk);
  write_parameter_status(out, "server_version", "15.5");
  write_parameter_status(out, "client_encoding", "UTF8");
  write_parameter_status(out, "TimeZone", "UTC");
  write_backend_key_data(out, 4242, 0x1234abcd);
  out += ready('I');
  return out;
}

void backend() {
  const std::string t = "fuzz_backend";
  seed(t, "login_ok", login_answer());
  seed(t, "auth_md5", auth(auth_code::kMd5, "\x01\x02\x03\x04"));
  seed(t, "auth_cleartext", auth(auth_code::kCleartext));
  seed(t, "auth_sasl", [] {
    std::string out;
    write_auth_sasl(out, "SCRAM-SHA-256");
    return out;
  }());
  seed(t, "auth_sasl_exchange",
       auth(auth_code::kSaslContinue, kRfcServerFirst) +
           auth(auth_code::kSaslFinal, kRfcServerFinal));
  seed(t, "query_answer",
       rows({"id", "name"},
            {{std::string("1"), std::string("one")}, {std::string("2"), std::nullopt}}) +
           complete("SELECT 2") + ready('I'));
  seed(t, "error_in_transaction",
       error("ERROR", "42P01", "relation \"t\" does not exist") + ready('E'));
  seed(t, "fatal", error("FATAL", "57P01", "terminating connection due to administrator command"));
  seed(t, "notice", [] {
    std::string out;
    write_notice(out, {.severity = "NOTICE", .code = "00000", .message = "hello"});
    return out;
  }());
  seed(t, "extended_answer",
       empty(be::kParseComplete) + empty(be::kBindComplete) + empty(be::kNoData) +
           complete("INSERT 0 1") + empty(be::kCloseComplete) + ready('T'));
  seed(t, "empty_query", empty(be::kEmptyQueryResponse) + ready('I'));
  seed(t, "error_localized_only", [] {
    std::string out;
    Writer(out)
        .begin(be::kErrorResponse)
        .u8('S')
        .cstring("ERREUR")
        .u8('C')
        .cstring("22012")
        .u8('M')
        .cstring("division par zéro")
        .u8(0)
        .finish();
    return out;
  }());
  seed(t, "truncated_row", rows({"x"}, {{std::string(40, 'x')}}).substr(0, 30));
  seed(t, "length_3", str("Z") + i32(3) + "I");
}

// --- startup -------------------------------------------------------------------------------

std::string startup(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string out;
  write_startup(out, params);
  return out;
}

void startup_seeds() {
  const std::string t = "fuzz_startup";
  seed(t, "startup",
       startup({{"user", "alice"},
                {"database", "app"},
                {"application_name", "psql"},
                {"client_encoding", "UTF8"}}));
  seed(t, "startup_options", startup({{"user", "bob"}, {"options", "-c search_path=x"}}));
  seed(t, "startup_no_params", startup({}));
  seed(t, "ssl_then_startup", [] {
    std::string out;
    write_ssl_request(out);
    return out + startup({{"user", "alice"}, {"database", "app"}});
  }());
  seed(t, "cancel", [] {
    std::string out;
    write_cancel_request(out, 4242, 0x1234abcd);
    return out;
  }());
  seed(t, "gssenc_then_ssl", [] {
    std::string out;
    Writer(out).begin_untyped().i32(kGssEncRequestCode).finish();
    write_ssl_request(out);
    return out;
  }());
  seed(t, "protocol_3_1", [] {
    std::string out;
    Writer(out).begin_untyped().i32(kProtocolV3 + 1).cstring("user").cstring("a").u8(0).finish();
    return out;
  }());
  seed(t, "protocol_2", [] {
    std::string out;
    Writer(out).begin_untyped().i32(2 << 16).cstring("user").u8(0).finish();
    return out;
  }());
  seed(t, "missing_terminator", startup({{"user", "alice"}}).substr(0, 18));
  seed(t, "length_too_large", i32(1 << 20) + i32(kProtocolV3));
}

// --- scanner -------------------------------------------------------------------------------

// The stream, then bytes that the target reads back to front for its parameters and chunk
// sizes (FuzzedDataProvider takes integers from the end).
std::string scanner_input(const std::string& stream, std::string_view params) {
  std::string pad;
  while ((stream.size() + pad.size()) * 3 / 4 < stream.size())
    pad.push_back('\x07');
  while ((stream.size() + pad.size()) * 3 / 4 > stream.size())
    pad.pop_back();
  return stream + pad + std::string(params);
}

void scanner() {
  const std::string t = "fuzz_scanner";
  const std::string answer = rows({"id", "payload"}, {{std::string("1"), std::string(300, 'a')},
                                                      {std::string("2"), std::string(20, 'b')}}) +
                             complete("SELECT 2") + ready('I');
  seed(t, "rows_small_chunks", scanner_input(answer, "\x00\x05\x01\xff"sv));
  seed(t, "rows_large_chunks", scanner_input(answer, "\xaa\x40\x40\x01"sv));
  seed(t, "login", scanner_input(login_answer(), "\x55\x10\x20\x00"sv));
  std::string copy_out;
  Writer(copy_out).begin(be::kCopyOutResponse).u8(0).i16(1).i16(0).finish();
  copy_out += copy_data(std::string(100, 'c'), be::kCopyData) + copy_data("d\n", be::kCopyData) +
              empty(be::kCopyDone) + complete("COPY 2") + ready('I');
  seed(t, "copy_out", scanner_input(copy_out, "\x0f\x08\x30\x02"sv));
  seed(t, "too_large_notice",
       scanner_input(error("ERROR", "XX000", std::string(600, 'm')) + ready('I'),
                     "\x00\x3f\x00\x00"sv));
}

// --- SCRAM ---------------------------------------------------------------------------------

void scram() {
  const std::string t = "fuzz_scram";
  const auto nul = std::string(1, '\0');
  seed(t, "server_rfc7677", "S" + str(kRfcClientFirst) + nul + str(kRfcClientFinal));
  seed(t, "server_postgres_style",
       "S" + str("n,,n=,r=rOprNGfwEbeRWgbNEkqO") + nul + str(kRfcClientFinal));
  seed(t, "server_y_flag", "Sy,,n=user,r=abc" + nul + "c=eSws,r=abc,p=AAAA");
  seed(t, "server_channel_binding", str("Sp=tls-server-end-point,,n=,r=abc"));
  seed(t, "server_extension", "S" + str(kRfcClientFirst) + ",x=ext" + nul + str(kRfcClientFinal));
  seed(t, "client_rfc7677", "C" + str(kRfcServerFirst) + nul + str(kRfcServerFinal));
  seed(t, "client_invalid_proof", "C" + str(kRfcServerFirst) + nul + "e=invalid-proof");
  seed(t, "client_other_error", "C" + str(kRfcServerFirst) + nul + "e=other-error");
  seed(t, "client_low_iterations",
       "Cr=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1" + nul + "v=AAAA");
  seed(t, "client_nonce_mismatch", "Cr=somethingelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  seed(t, "secret",
       "K" + pgdog::auth::format_scram_secret(pgdog::auth::make_scram_secret(
                 "pencil", std::vector<std::uint8_t>{1, 2, 3, 4, 5, 6, 7, 8}, 16)));
  seed(t, "secret_bad_key", str("KSCRAM-SHA-256$4096:AQIDBAUGBwg=$AAAA:BBBB"));
}

// --- config --------------------------------------------------------------------------------

void config() {
  const std::string t = "fuzz_config";
  const auto nul = std::string(1, '\0');
  const std::string full = R"([general]
host = "127.0.0.1"
port = 6432
workers = 2
default_pool_size = 10
min_pool_size = 1
pooler_mode = "transaction"
auth_type = "scram"
connect_timeout = 5000
checkout_timeout = 5000
idle_timeout = 60000
shutdown_timeout = 60000
openmetrics_port = 9090
openmetrics_host = "127.0.0.1"
mirror_queue = 128
mirror_exposure = 1.0
mirror_timeout = 10000
mirror_metrics_enabled = true
mirror_failure_threshold = 0.1

[admin]
name = "admin"
user = "admin"
password = "admin-secret"

[[databases]]
name = "app"
host = "127.0.0.1"
port = 5432
database_name = "app"
pool_size = 20

[[databases]]
name = "app_mirror"
host = "10.0.0.2"
port = 5433
database_name = "app"
user = "mirror"
password = "pw"
pooler_mode = "session"

[[mirroring]]
source_db = "app"
destination_db = "app_mirror"
queue_length = 256
exposure = 0.5
level = "dml"
timeout = 2000
)";
  const std::string users = R"([[users]]
name = "alice"
database = "app"
password = "secret"
pool_size = 5

[[users]]
name = "alice"
database = "app_mirror"
password = "SCRAM-SHA-256$4096:AQIDBAUGBwg=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
server_user = "app"
server_password = "pw"
pooler_mode = "session"
)";
  seed(t, "full", full + nul + users);
  seed(t, "empty", nul);
  seed(t, "minimal",
       "[[databases]]\nname = \"db\"\nhost = \"localhost\"\n" + nul +
           "[[users]]\nname = \"u\"\ndatabase = \"db\"\npassword = \"p\"\n");
  seed(t, "tls",
       "[general]\ntls_certificate = \"/c.pem\"\ntls_private_key = \"/k.pem\"\n"
       "tls_client_required = true\ntls_verify = \"verify_full\"\n"
       "tls_server_ca_certificate = \"/ca.pem\"\n" +
           nul);
  seed(t, "unknown_key", "[general]\nprot = 6432\n" + nul);
  seed(t, "wrong_type", "[general]\nport = \"6432\"\nworkers = 1.5\n" + nul);
  seed(t, "unknown_database", nul + "[[users]]\nname = \"u\"\ndatabase = \"nope\"\n");
  seed(t, "duplicate_database",
       "[[databases]]\nname = \"a\"\nhost = \"h\"\n[[databases]]\nname = \"a\"\nhost = \"h\"\n" +
           nul);
  seed(t, "syntax_error", "[general\nport = 1\n" + nul);
  seed(t, "inline_tables",
       "general = { port = 7000, workers = 4 }\n"
       "databases = [{ name = \"x\", host = \"y\" }]\n" +
           nul);
  seed(t, "out_of_range", "[general]\nport = 70000\nmirror_exposure = 2.5\n" + nul);
}

// --- SQL -----------------------------------------------------------------------------------

void sql() {
  const std::string t = "fuzz_sql";
  // The first byte is the fingerprint length limit.
  const std::vector<std::pair<std::string, std::string>> queries = {
      {"select", "SELECT id, name FROM users WHERE id = 42 AND name = 'alice'"},
      {"insert", "INSERT INTO t (a, b) VALUES (1, 'x''y'), (2.5e-3, E'\\n\\'')"},
      {"cte_dml", "WITH moved AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM moved"},
      {"select_into", "SELECT * INTO new_table FROM (SELECT 1) s"},
      {"copy", "COPY t FROM STDIN; COPY (SELECT 1) TO STDOUT"},
      {"explain", "EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET x = 1; EXPLAIN SELECT 1"},
      {"transaction", "BEGIN; SAVEPOINT s; RELEASE s; PREPARE TRANSACTION 'x'; COMMIT"},
      {"comments", "/* outer /* nested */ still; comment */ -- line ; comment\nSELECT 1 /* ; */"},
      {"dollar", "DO $body$ BEGIN PERFORM 1; END $body$; SELECT $$a;b$$, $1, $tag$x$tag$"},
      {"quoted", "SELECT \"semi;colon\", U&\"d\\0061t\", U&'\\0441' FROM \"T\"\"x\""},
      {"session", "SET search_path = x; RESET ALL; DISCARD ALL; LISTEN c; NOTIFY c, 'p'"},
      {"ddl", "CREATE TABLE t (id int); ALTER TABLE t ADD c text; DROP TABLE t; TRUNCATE t"},
      {"parens", "((SELECT 1)) UNION (SELECT 2)"},
      {"deallocate", "DEALLOCATE PREPARE \"My Stmt\"; DEALLOCATE ALL"},
      {"unterminated", "SELECT 'abc; /* x"},
      {"empty", " ;; -- nothing\n;"},
      {"numbers", "SELECT 1.5, .5, 1e10, 0x1F, 1_000, b'101', x'ff', n'nat'"},
  };
  for (const auto& [name, q] : queries)
    seed(t, name, "\x40" + q);
  seed(t, "short_limit", "\x05SELECT a, b, c FROM long_table_name");
}

// --- prepared ------------------------------------------------------------------------------

// Records for fuzz_prepared: a selector byte, then one frame.
std::string client(const std::string& frames, int session = 0, bool flush = false) {
  std::string out;
  for (std::string_view rest = frames; !rest.empty();) {
    auto f = *next_frame(rest, 1 << 20);
    out.push_back(static_cast<char>((session << 1) | (flush ? 4 : 0)));
    out.append(f.raw);
    rest.remove_prefix(f.size());
  }
  return out;
}
std::string server(const std::string& frames, int session = 0) {
  std::string out;
  for (std::string_view rest = frames; !rest.empty();) {
    auto f = *next_frame(rest, 1 << 20);
    out.push_back(static_cast<char>(1 | (session << 1) | 8));
    out.append(f.raw);
    rest.remove_prefix(f.size());
  }
  return out;
}

void prepared() {
  const std::string t = "fuzz_prepared";
  const std::string batch = parse("s1", "SELECT $1", {23}) + bind("", "s1", {std::string("1")}) +
                            describe('S', "s1") + execute() + sync();
  std::string params_answer;
  Writer(params_answer).begin(be::kParameterDescription).i16(1).i32(23).finish();
  const std::string answer = empty(be::kParseComplete) + empty(be::kBindComplete) + params_answer +
                             rows({"x"}, {}) +
                             [] {
                               std::string out;
                               write_data_row(out, {std::string("1")});
                               return out;
                             }() +
                             complete("SELECT 1") + ready('I');
  // Two clients, the same statement: the second gets a synthetic ParseComplete.
  seed(t, "two_clients",
       limit(0) + client(batch) + server(answer) + client(batch, 1, true) +
           server(answer.substr(5), 1));
  // Reuse by name without Parse: the statement is prepared behind the client's back.
  seed(t, "bind_after_eviction",
       limit(1) + client(parse("a", "SELECT 1") + parse("b", "SELECT 2") + sync()) +
           server(empty(be::kParseComplete) + empty(be::kCloseComplete) +
                  empty(be::kParseComplete) + ready('I')) +
           client(bind("", "a") + execute() + sync()) +
           server(empty(be::kCloseComplete) + empty(be::kParseComplete) + empty(be::kBindComplete) +
                  complete("SELECT 1") + ready('I')));
  // A Parse that fails: everything up to Sync is skipped and the cache undone.
  seed(t, "parse_error",
       limit(2) + client(parse("bad", "SELEC 1") + bind("", "bad") + execute() + sync()) +
           server(error("ERROR", "42601", "syntax error") + ready('I')));
  seed(t, "close_and_deallocate",
       limit(0) + client(parse("s1", "SELECT 1") + sync()) +
           server(empty(be::kParseComplete) + ready('I')) +
           client(close('S', "s1") + sync(), 0, true) + server(ready('I')) +
           client(parse("s2", "SELECT 2") + sync()) +
           server(empty(be::kParseComplete) + ready('I')) +
           client(query("DEALLOCATE s2"), 0, true) + client(query("DEALLOCATE ALL"), 0, true));
  // The mirror session resolves s1 through the first session's statements.
  seed(t, "mirror_base",
       limit(3) + client(parse("s1", "SELECT 1") + sync()) +
           server(empty(be::kParseComplete) + ready('I')) +
           client(bind("", "s1") + describe('S', "s1") + execute() + sync(), 1) +
           server(empty(be::kBindComplete) + params_answer + empty(be::kNoData) +
                      complete("SELECT 1") + ready('I'),
                  1));
  seed(t, "simple_and_notices", limit(0) + client(query("SELECT 1")) + server([] {
                                  std::string out;
                                  write_notice(
                                      out, {.severity = "NOTICE", .code = "00000", .message = "n"});
                                  write_parameter_status(out, "TimeZone", "UTC");
                                  return out + complete("SELECT 1") + ready('T');
                                }()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_corpus OUTDIR\n";
    return 2;
  }
  g_root = argv[1];
  frontend();
  backend();
  startup_seeds();
  scanner();
  scram();
  config();
  sql();
  prepared();
  return 0;
}
