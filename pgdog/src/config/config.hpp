#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/assert/source_location.hpp>
#include <boost/system/result.hpp>

namespace pgdog::config {

using Millis = std::chrono::milliseconds;

enum class PoolerMode { transaction, session };
enum class AuthType { scram, md5, trust };
enum class TlsVerify { disabled, prefer, verify_ca, verify_full };
enum class PreparedStatements { disabled, extended };
// Transaction mode: whether a client with state only its server has keeps that server.
enum class PoolPinning { automatic, off };
enum class MirrorLevel { all, dml, ddl };
enum class MirrorCompare { off, tags, results };

std::string_view to_string(PoolerMode v);
std::string_view to_string(AuthType v);
std::string_view to_string(TlsVerify v);
std::string_view to_string(PreparedStatements v);
std::string_view to_string(PoolPinning v);
std::string_view to_string(MirrorLevel v);
std::string_view to_string(MirrorCompare v);

// Where PostgreSQL puts its socket on Debian and most distributions, and so where libpq looks
// when a connection names no host: `psql -p 6432` reaches pgdog there.
inline constexpr std::string_view kDefaultUnixSocketDir = "/var/run/postgresql";

// unix_socket_dir when the file leaves it out: `candidate` if it is a directory this process may
// create a file in, else "".
std::string default_unix_socket_dir(std::string_view candidate = kDefaultUnixSocketDir);

// Defaults follow the Rust PgDog where the key exists there; durations are milliseconds in TOML.
struct General {
  std::string host = "0.0.0.0";
  std::uint16_t port = 6432;
  // The directory of the Unix socket `.s.PGSQL.<port>` clients may use besides TCP; "" turns it
  // off. Unset in the file, load() puts kDefaultUnixSocketDir here when this process may create
  // files in it, else "" (parse() leaves it unset, which is off: it never looks at the host).
  std::optional<std::string> unix_socket_dir;
  // One thread, like PgBouncer: on a few shared cores it costs the least CPU per transaction
  // (docs/benchmarks.md).
  int workers = 1;
  int default_pool_size = 10;
  int min_pool_size = 1;
  PoolerMode pooler_mode = PoolerMode::transaction;
  AuthType auth_type = AuthType::scram;
  Millis connect_timeout{5'000};
  Millis checkout_timeout{5'000};
  Millis idle_timeout{60'000};
  Millis shutdown_timeout{60'000};
  Millis server_lifetime{86'400'000};
  Millis client_login_timeout{60'000};
  std::optional<std::string> tls_certificate;
  std::optional<std::string> tls_private_key;
  bool tls_client_required = false;
  TlsVerify tls_verify = TlsVerify::prefer;
  std::optional<std::string> tls_server_ca_certificate;
  std::optional<std::uint16_t> openmetrics_port;
  std::string openmetrics_host = "0.0.0.0";
  PreparedStatements prepared_statements = PreparedStatements::extended;
  std::size_t prepared_statements_limit = 1'000;  // per server connection
  PoolPinning pool_pinning = PoolPinning::automatic;
  std::size_t max_client_conn = 10'000;
  std::size_t max_message_size = std::size_t{64} * 1024 * 1024;  // bytes; larger frames get 08P01
  std::size_t mirror_queue = 128;
  // Byte budgets of mirroring: a transaction larger than this is not kept for the mirrors
  // (dropped, counted); each mirror's queue holds at most this many bytes of transactions.
  std::size_t mirror_max_transaction_bytes = std::size_t{16} * 1024 * 1024;
  std::size_t mirror_queue_bytes = std::size_t{64} * 1024 * 1024;
  double mirror_exposure = 1.0;
  Millis mirror_timeout{10'000};
  bool mirror_metrics_enabled = true;
  std::optional<double> mirror_failure_threshold;
  MirrorCompare mirror_compare = MirrorCompare::tags;
  // The readiness verdict: over this window, no drops or divergences, lag below the bound, and
  // the mirror's p99 within this factor of the primary's (see docs/migration-readiness.md).
  Millis mirror_readiness_window{300'000};
  Millis mirror_readiness_max_lag{5'000};
  double mirror_readiness_latency_factor = 2.0;
  // CUTOVER (admin console): every step (waiting for running transactions, for the mirror queue
  // to drain, recording the cutover on both clusters) must end within this, or nothing is
  // swapped and the held clients go on with the primary they had.
  Millis cutover_timeout{5'000};
  // Where CUTOVER records which databases are served by their mirror's cluster (applied on top
  // of pgdog.toml at every start and reload); unset: pgdog-cutover.toml next to pgdog.toml.
  std::optional<std::string> cutover_state;
  std::string log_level = "info";  // trace|debug|info|warn|error
};

struct Admin {
  std::string name = "admin";
  std::string user = "admin";
  std::optional<std::string> password;  // unset: the admin console refuses everyone
};

struct Database {
  std::string name;
  std::string host;
  std::uint16_t port = 5432;
  std::optional<std::string> database_name;  // defaults to name
  std::optional<std::string> user;           // server-side user for every pool of this database
  std::optional<std::string> password;
  std::optional<int> pool_size;
  std::optional<int> min_pool_size;
  std::optional<PoolerMode> pooler_mode;

  const std::string& server_database() const { return database_name ? *database_name : name; }
};

struct Mirroring {
  std::string source_db;
  std::string destination_db;
  std::optional<std::size_t> queue_length;
  std::optional<std::size_t> queue_bytes;
  std::optional<double> exposure;
  MirrorLevel level = MirrorLevel::all;
  std::optional<Millis> timeout;
  std::optional<MirrorCompare> compare;
};

struct User {
  std::string name;
  std::string database;
  std::optional<std::string> password;
  std::optional<int> pool_size;
  std::optional<PoolerMode> pooler_mode;
  std::optional<std::string> server_user;
  std::optional<std::string> server_password;
};

struct Config {
  General general;
  Admin admin;
  std::vector<Database> databases;
  std::vector<Mirroring> mirroring;
  std::vector<User> users;
  std::string config_path;
  std::string users_path;

  const Database* find_database(std::string_view name) const;
  const User* find_user(std::string_view name, std::string_view database) const;

  // Effective values after the database / user / mirroring overrides.
  int pool_size(const User& user) const;
  int min_pool_size(const User& user) const;
  PoolerMode pooler_mode(const User& user) const;
  std::size_t queue_length(const Mirroring& m) const;
  std::size_t queue_bytes(const Mirroring& m) const;
  double exposure(const Mirroring& m) const;
  Millis mirror_timeout(const Mirroring& m) const;
  MirrorCompare compare(const Mirroring& m) const;
};

// When a change to a key takes effect: at a reload (SIGHUP or RELOAD), or only at the next
// start (a reload still reads and validates it).
enum class Apply { reload, restart };

// One [general] or [admin] key and its value, as SHOW CONFIG shows it.
struct Setting {
  std::string key;  // "port", "admin.user"
  std::string value;
  Apply apply = Apply::reload;
  // A restart-only key the files set to another value than the one in force: what the next
  // start applies.
  std::optional<std::string> pending;
};

// Every [general] key (every key the parser accepts there), then admin.name and admin.user;
// never a password. Unset optional keys have an empty value.
std::vector<Setting> settings(const Config& config);
// The same for the configuration in force, with the pending value of each restart-only key
// that `on_disk` (the files as last loaded) sets otherwise.
std::vector<Setting> settings(const Config& in_force, const Config& on_disk);

// The restart-only keys whose values differ between the configuration in force and one just
// loaded: what a reload leaves pending until the next start.
std::vector<std::string> pending_restart(const Config& running, const Config& loaded);

// What a reload puts in force: `loaded`, except the restart-only keys, which keep the values
// of `running`.
Config reloaded(const Config& running, Config loaded);

// Where a configuration problem is: the file, the 1-based line (0 when unknown), the key path
// ("general.port", "databases[1].name") and what is wrong.
struct Error {
  std::string file;
  std::size_t line = 0;
  std::string key;
  std::string message;

  // "pgdog.toml:12: general.port: expected an integer"; the line and the key are left out when
  // unknown (0 / empty), e.g. "users.toml: file not found".
  std::string to_string() const;
};

// Lets Result<T>::value() throw on an error: boost::system::result finds it by ADL. Throws
// std::runtime_error carrying to_string().
[[noreturn]] void throw_exception_from_error(const Error& error, const boost::source_location& loc);

template <class T>
using Result = boost::system::result<T, Error>;

// Parses both files and validates the whole configuration. Nothing is applied on failure.
Result<Config> load(const std::string& config_path, const std::string& users_path);

// The same from strings (unit tests, fuzzing); the names are used in errors.
Result<Config> parse(std::string_view config_text, std::string_view users_text,
                     const std::string& config_name = "pgdog.toml",
                     const std::string& users_name = "users.toml");

}  // namespace pgdog::config
