// The configuration loader: pgdog.toml and users.toml as text (the input split at its first
// NUL). Either a configuration that satisfies every cross-key rule comes out, or an error that
// names its file and says what is wrong; never an exception, never half a configuration.

#include <algorithm>
#include <string>

#include "config/config.hpp"
#include "fuzz.hpp"

namespace {

using namespace pgdog;

void check_valid(const config::Config& c) {
  FUZZ_CHECK(c.config_path == "pgdog.toml" && c.users_path == "users.toml");
  FUZZ_CHECK(c.general.min_pool_size <= c.general.default_pool_size);
  FUZZ_CHECK(!c.general.openmetrics_port || *c.general.openmetrics_port != c.general.port);
  FUZZ_CHECK(!c.general.tls_certificate == !c.general.tls_private_key);
  for (const auto& db : c.databases) {
    FUZZ_CHECK(c.find_database(db.name) == &db);  // names are unique
    FUZZ_CHECK(db.name != c.admin.name);
  }
  for (const auto& m : c.mirroring) {
    FUZZ_CHECK(c.find_database(m.source_db) != nullptr);
    FUZZ_CHECK(c.find_database(m.destination_db) != nullptr);
    FUZZ_CHECK(m.source_db != m.destination_db);
    (void)c.queue_length(m);
    (void)c.exposure(m);
    (void)c.mirror_timeout(m);
  }
  for (const auto& u : c.users) {
    FUZZ_CHECK(c.find_database(u.database) != nullptr);
    FUZZ_CHECK(c.find_user(u.name, u.database) == &u);  // (name, database) pairs are unique
    (void)c.pool_size(u);
    (void)c.min_pool_size(u);
    (void)c.pooler_mode(u);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto [config_text, users_text] = fuzz::split_at_nul(fuzz::as_view(data, size));
  auto parsed = config::parse(config_text, users_text);
  if (parsed) {
    check_valid(*parsed);
    return 0;
  }
  const config::Error& e = parsed.error();
  FUZZ_CHECK(e.file == "pgdog.toml" || e.file == "users.toml");
  FUZZ_CHECK(!e.message.empty());
  const std::string text = e.to_string();
  FUZZ_CHECK(text.starts_with(e.file + ":"));
  FUZZ_CHECK(text.find(e.message) != std::string::npos);
  // The line, when given, is one of the file's, or the one after a last line without a newline
  // (toml11 appends one, and reports an unexpected end of file there).
  const std::string_view file_text = e.file == "pgdog.toml" ? config_text : users_text;
  const auto lines =
      static_cast<std::size_t>(std::count(file_text.begin(), file_text.end(), '\n')) + 1;
  if (e.line > lines + 1) std::fprintf(stderr, "%s (file has %zu lines)\n", text.c_str(), lines);
  FUZZ_CHECK(e.line <= lines + 1);
  return 0;
}
