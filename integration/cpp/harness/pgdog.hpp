#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <sys/types.h>

#include "harness/conn.hpp"

namespace pgdog::it {

// A fresh directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

// A TCP port on 127.0.0.1 that nobody listened on a moment ago.
int free_port();
// Whether something accepts TCP connections on 127.0.0.1:port.
bool port_open(int port);

std::string toml_string(const std::string& s);

// One [[databases]] entry for a server on 127.0.0.1:port. extra: more TOML lines ("pool_size = 1").
std::string database_toml(const std::string& name, int port, const std::string& database_name = "",
                          const std::string& extra = "");
// One [[users]] entry for users.toml.
std::string user_toml(const std::string& name, const std::string& database,
                      const std::optional<std::string>& password, const std::string& extra = "");

struct PgdogConfig {
  // [general] keys as TOML literals ({"pooler_mode", "\"session\""}); these replace the
  // defaults below key by key: host 127.0.0.1, a free port, shutdown_timeout 2000, and
  // unix_socket_dir its own directory. An empty literal leaves the key out of the file.
  std::map<std::string, std::string> general;
  std::optional<std::string> admin_password = "admin_secret";
  // [[databases]] entries; empty: one database "pgdog" on the primary.
  std::string databases;
  // Appended to pgdog.toml as is ([[mirroring]] and the like).
  std::string extra;
  // users.toml; empty: user pgdog/pgdog on database pgdog.
  std::string users;

  // Chainable setters: PgdogConfig().set_string("pooler_mode", "session").with_pool_size(1).
  PgdogConfig& set(const std::string& key, const std::string& toml_literal);
  PgdogConfig& set_string(const std::string& key, const std::string& text);
  PgdogConfig& with_databases(std::string toml);
  PgdogConfig& with_users(std::string toml);
  PgdogConfig& with_extra(std::string toml);
  // The default database "pgdog" on the primary, with this pool_size.
  PgdogConfig& with_pool_size(int size);
  PgdogConfig& without_admin_password();
};

// A pgdog process on its own port, configured from a PgdogConfig in a fresh directory, its
// stdout and stderr in pgdog.log there. Stopped in the destructor; when the running test has
// failed, the log is printed first.
class Pgdog {
 public:
  explicit Pgdog(PgdogConfig config = {}, bool wait_ready = true);
  ~Pgdog();
  Pgdog(const Pgdog&) = delete;
  Pgdog& operator=(const Pgdog&) = delete;

  // True once the port accepts connections (constructor with wait_ready).
  bool started() const { return started_; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_.path(); }
  std::string config_path() const;
  std::string users_path() const;

  // Rewrites pgdog.toml and users.toml (the port stays); follow with reload().
  void rewrite(PgdogConfig config);
  void reload();  // SIGHUP
  void signal(int sig);
  std::string log() const;
  // Exit status (or 128 + signal) once the process ended; nullopt if still running at the timeout.
  std::optional<int> wait_exit(Millis timeout);
  // SIGTERM, then SIGKILL when it has not exited after `grace`.
  void stop(Millis grace = 5s);

  std::string conninfo(const std::string& user = "pgdog",
                       const std::optional<std::string>& password = std::string("pgdog"),
                       const std::string& dbname = "pgdog") const;
  // The directory of its Unix socket (unix_socket_dir as configured here), and a conninfo
  // reaching it there.
  std::string socket_dir() const;
  std::string unix_conninfo(const std::string& user = "pgdog",
                            const std::optional<std::string>& password = std::string("pgdog"),
                            const std::string& dbname = "pgdog") const;
  std::string admin_conninfo(const std::optional<std::string>& password = std::nullopt) const;
  Conn connect(const std::string& user = "pgdog",
               const std::optional<std::string>& password = std::string("pgdog"),
               const std::string& dbname = "pgdog") const;
  Conn admin() const;
  // SHOW POOLS, SHOW CLIENTS and SHOW SERVERS as text, for failure messages.
  std::string admin_snapshot() const;

 private:
  void write_files();

  TempDir dir_;
  PgdogConfig config_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  bool started_ = false;
};

}  // namespace pgdog::it
