// SHOW CONFIG's rows come from the key lists (config/keys.hpp) that the parser reads too: every
// [general] key is shown, with the value the file gave it, and restart-only keys are flagged.
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "config/config.hpp"
#include "config/expect.hpp"

namespace pgdog::config {
namespace {

using testing::valid;

std::vector<std::string> keys_of(const std::vector<Setting>& settings) {
  std::vector<std::string> out;
  for (const auto& s : settings)
    out.push_back(s.key);
  return out;
}

std::map<std::string, std::string> values_of(const std::vector<Setting>& settings) {
  std::map<std::string, std::string> out;
  for (const auto& s : settings)
    out[s.key] = s.value;
  return out;
}

TEST(Settings, EveryGeneralKeyInShowConfigOrder) {
  // SHOW CONFIG's rows before the key lists, plus the three mirror_readiness_* keys it lacked.
  const std::vector<std::string> contract = {"host",
                                             "port",
                                             "unix_socket_dir",
                                             "workers",
                                             "default_pool_size",
                                             "min_pool_size",
                                             "pooler_mode",
                                             "auth_type",
                                             "connect_timeout",
                                             "checkout_timeout",
                                             "idle_timeout",
                                             "shutdown_timeout",
                                             "server_lifetime",
                                             "client_login_timeout",
                                             "tls_certificate",
                                             "tls_private_key",
                                             "tls_client_required",
                                             "tls_verify",
                                             "tls_server_ca_certificate",
                                             "openmetrics_port",
                                             "openmetrics_host",
                                             "prepared_statements",
                                             "prepared_statements_limit",
                                             "pool_pinning",
                                             "max_client_conn",
                                             "max_message_size",
                                             "mirror_queue",
                                             "mirror_queue_bytes",
                                             "mirror_max_transaction_bytes",
                                             "mirror_exposure",
                                             "mirror_timeout",
                                             "mirror_metrics_enabled",
                                             "mirror_failure_threshold",
                                             "mirror_compare",
                                             "mirror_readiness_window",
                                             "mirror_readiness_max_lag",
                                             "mirror_readiness_latency_factor",
                                             "cutover_timeout",
                                             "cutover_state",
                                             "log_level",
                                             "admin.name",
                                             "admin.user"};
  EXPECT_EQ(keys_of(settings(Config{})), contract);
}

// A file that sets every [general] key away from its default: each row must show what the file
// says, so a key the parser reads but SHOW CONFIG forgets (or shows from another member) fails.
constexpr const char* kEveryKey = R"toml(
[general]
host = "127.0.0.2"
port = 7000
unix_socket_dir = "/run/pgdog"
workers = 3
default_pool_size = 11
min_pool_size = 2
pooler_mode = "session"
auth_type = "md5"
connect_timeout = 1001
checkout_timeout = 1002
idle_timeout = 1003
shutdown_timeout = 1004
server_lifetime = 1005
client_login_timeout = 1006
tls_certificate = "/tls/server.crt"
tls_private_key = "/tls/server.key"
tls_client_required = true
tls_verify = "verify_full"
tls_server_ca_certificate = "/tls/ca.crt"
openmetrics_port = 9931
openmetrics_host = "127.0.0.3"
prepared_statements = "disabled"
prepared_statements_limit = 12
pool_pinning = "off"
max_client_conn = 13
max_message_size = 9000
mirror_queue = 14
mirror_queue_bytes = 2048
mirror_max_transaction_bytes = 4096
mirror_exposure = 0.5
mirror_timeout = 1007
mirror_metrics_enabled = false
mirror_failure_threshold = 0.25
mirror_compare = "results"
mirror_readiness_window = 1008
mirror_readiness_max_lag = 1009
mirror_readiness_latency_factor = 3.5
cutover_timeout = 1010
cutover_state = "/var/lib/pgdog/state.toml"
log_level = "debug"

[admin]
name = "console"
user = "operator"
password = "not-shown"
)toml";

TEST(Settings, ShowWhatTheFileSays) {
  const auto c = valid(kEveryKey);
  const std::map<std::string, std::string> expected = {
      {"host", "127.0.0.2"},
      {"port", "7000"},
      {"unix_socket_dir", "/run/pgdog"},
      {"workers", "3"},
      {"default_pool_size", "11"},
      {"min_pool_size", "2"},
      {"pooler_mode", "session"},
      {"auth_type", "md5"},
      {"connect_timeout", "1001"},
      {"checkout_timeout", "1002"},
      {"idle_timeout", "1003"},
      {"shutdown_timeout", "1004"},
      {"server_lifetime", "1005"},
      {"client_login_timeout", "1006"},
      {"tls_certificate", "/tls/server.crt"},
      {"tls_private_key", "/tls/server.key"},
      {"tls_client_required", "true"},
      {"tls_verify", "verify_full"},
      {"tls_server_ca_certificate", "/tls/ca.crt"},
      {"openmetrics_port", "9931"},
      {"openmetrics_host", "127.0.0.3"},
      {"prepared_statements", "disabled"},
      {"prepared_statements_limit", "12"},
      {"pool_pinning", "off"},
      {"max_client_conn", "13"},
      {"max_message_size", "9000"},
      {"mirror_queue", "14"},
      {"mirror_queue_bytes", "2048"},
      {"mirror_max_transaction_bytes", "4096"},
      {"mirror_exposure", "0.500000"},
      {"mirror_timeout", "1007"},
      {"mirror_metrics_enabled", "false"},
      {"mirror_failure_threshold", "0.250000"},
      {"mirror_compare", "results"},
      {"mirror_readiness_window", "1008"},
      {"mirror_readiness_max_lag", "1009"},
      {"mirror_readiness_latency_factor", "3.500000"},
      {"cutover_timeout", "1010"},
      {"cutover_state", "/var/lib/pgdog/state.toml"},
      {"log_level", "debug"},
      {"admin.name", "console"},
      {"admin.user", "operator"}};
  EXPECT_EQ(values_of(settings(c)), expected);
}

TEST(Settings, UnsetOptionalKeysAreEmptyAndPasswordsNeverShown) {
  const auto shown = values_of(settings(valid("[admin]\npassword = \"secret\"\n")));
  EXPECT_EQ(shown.at("tls_certificate"), "");
  EXPECT_EQ(shown.at("openmetrics_port"), "");
  EXPECT_EQ(shown.at("mirror_failure_threshold"), "");
  for (const auto& [key, value] : shown) {
    EXPECT_EQ(key.find("password"), std::string::npos) << key;
    EXPECT_NE(value, "secret") << key;
  }
}

TEST(Settings, RestartOnlyKeys) {
  // What App builds once at startup: the listeners, the worker threads, the TLS context for
  // servers and the log level (frontend/app.cpp, main.cpp). The clients' certificate and key
  // are read again at each reload.
  const std::set<std::string> restart = {"host",
                                         "port",
                                         "unix_socket_dir",
                                         "workers",
                                         "tls_verify",
                                         "tls_server_ca_certificate",
                                         "openmetrics_port",
                                         "openmetrics_host",
                                         "log_level"};
  std::set<std::string> flagged;
  for (const auto& s : settings(Config{})) {
    if (s.apply == Apply::restart) flagged.insert(s.key);
  }
  EXPECT_EQ(flagged, restart);
}

TEST(Settings, PendingRestartListsOnlyChangedRestartOnlyKeys) {
  const auto running = valid("[general]\nport = 7000\ndefault_pool_size = 5\n");
  const auto same = valid("[general]\nport = 7000\ndefault_pool_size = 6\n");
  EXPECT_TRUE(pending_restart(running, same).empty());
  const auto moved = valid(
      "[general]\nport = 7001\ndefault_pool_size = 6\nopenmetrics_port = 9000\n"
      "log_level = \"warn\"\n");
  EXPECT_EQ(pending_restart(running, moved),
            (std::vector<std::string>{"port", "openmetrics_port", "log_level"}));
}

// SHOW CONFIG after a reload: the value in force, and for a restart-only key the files changed,
// the value the next start applies; a reloadable key changes at once and has nothing pending.
TEST(Settings, PendingValuesBesideTheValuesInForce) {
  const auto running = valid("[general]\nport = 7000\nhost = \"127.0.0.1\"\n");
  const auto disk = valid(
      "[general]\nport = 7001\nhost = \"127.0.0.1\"\ndefault_pool_size = 4\n"
      "tls_certificate = \"/tls/new.crt\"\ntls_private_key = \"/tls/new.key\"\n");
  const auto in_force = reloaded(running, disk);
  EXPECT_EQ(in_force.general.port, 7000);
  EXPECT_EQ(in_force.general.default_pool_size, 4);
  EXPECT_EQ(in_force.general.tls_certificate, "/tls/new.crt");
  std::map<std::string, Setting> shown;
  for (auto& s : settings(in_force, disk)) shown[s.key] = s;
  EXPECT_EQ(shown.at("port").value, "7000");
  EXPECT_EQ(shown.at("port").pending, "7001");
  EXPECT_EQ(shown.at("host").pending, std::nullopt) << "unchanged";
  EXPECT_EQ(shown.at("default_pool_size").value, "4");
  EXPECT_EQ(shown.at("default_pool_size").pending, std::nullopt);
  EXPECT_EQ(shown.at("tls_certificate").value, "/tls/new.crt");
  EXPECT_EQ(shown.at("tls_certificate").pending, std::nullopt);
  std::vector<std::string> pending;
  for (const auto& s : settings(in_force, disk)) {
    if (s.pending) pending.push_back(s.key);
  }
  EXPECT_EQ(pending, pending_restart(in_force, disk));
}

}  // namespace
}  // namespace pgdog::config
