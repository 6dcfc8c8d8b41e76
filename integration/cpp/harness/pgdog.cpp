#include "harness/pgdog.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <gtest/gtest.h>

#include "harness/env.hpp"

extern char** environ;

namespace pgdog::it {

namespace {

using Clock = std::chrono::steady_clock;

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

}  // namespace

TempDir::TempDir() {
  std::string tmpl = "/tmp/pgdog-it-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content) const {
  const std::string file = path_ + "/" + name;
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + file);
  return file;
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto a = loopback(0);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot bind a free port");
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool port_open(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  auto a = loopback(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string database_toml(const std::string& name, int port, const std::string& database_name,
                          const std::string& extra) {
  std::string s = "\n[[databases]]\nname = " + toml_string(name) +
                  "\nhost = \"127.0.0.1\"\nport = " + std::to_string(port) + "\n";
  if (!database_name.empty()) s += "database_name = " + toml_string(database_name) + "\n";
  if (!extra.empty()) s += extra + "\n";
  return s;
}

std::string user_toml(const std::string& name, const std::string& database,
                      const std::optional<std::string>& password, const std::string& extra) {
  std::string s =
      "\n[[users]]\nname = " + toml_string(name) + "\ndatabase = " + toml_string(database) + "\n";
  if (password) s += "password = " + toml_string(*password) + "\n";
  if (!extra.empty()) s += extra + "\n";
  return s;
}

PgdogConfig& PgdogConfig::set(const std::string& key, const std::string& toml_literal) {
  general[key] = toml_literal;
  return *this;
}

PgdogConfig& PgdogConfig::set_string(const std::string& key, const std::string& text) {
  return set(key, toml_string(text));
}

PgdogConfig& PgdogConfig::with_databases(std::string toml) {
  databases = std::move(toml);
  return *this;
}

PgdogConfig& PgdogConfig::with_users(std::string toml) {
  users = std::move(toml);
  return *this;
}

PgdogConfig& PgdogConfig::with_extra(std::string toml) {
  extra = std::move(toml);
  return *this;
}

PgdogConfig& PgdogConfig::with_pool_size(int size) {
  return with_databases(
      database_toml("pgdog", env()->primary_port, "", "pool_size = " + std::to_string(size)));
}

PgdogConfig& PgdogConfig::without_admin_password() {
  admin_password.reset();
  return *this;
}

Pgdog::Pgdog(PgdogConfig config, bool wait_ready) : config_(std::move(config)) {
  const auto& e = env();
  if (!e) throw std::runtime_error(missing_env());
  if (auto it = config_.general.find("port"); it != config_.general.end()) {
    port_ = std::atoi(it->second.c_str());
  } else {
    port_ = free_port();
  }
  write_files();

  const std::string log_file = dir_.path() + "/pgdog.log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_file.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::string bin = e->pgdog_bin;
  std::string a1 = "--config";
  std::string a2 = config_path();
  std::string a3 = "--users";
  std::string a4 = users_path();
  char* argv[] = {bin.data(), a1.data(), a2.data(), a3.data(), a4.data(), nullptr};
  const int rc = ::posix_spawn(&pid_, bin.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    ADD_FAILURE() << "cannot start " << bin << ": " << std::strerror(rc);
    return;
  }
  if (!wait_ready) return;

  const auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    if (port_open(port_)) {
      started_ = true;
      return;
    }
    if (wait_exit(0ms)) {
      ADD_FAILURE() << "pgdog exited with status " << *exit_status_ << " before listening";
      return;
    }
    std::this_thread::sleep_for(20ms);
  }
  ADD_FAILURE() << "pgdog did not accept connections on port " << port_ << " within 10 s";
}

Pgdog::~Pgdog() {
  stop();
  if (::testing::Test::HasFailure()) {
    std::cerr << "\n===== pgdog log (" << dir_.path() << "/pgdog.log, port " << port_ << ") =====\n"
              << log() << "===== end of pgdog log =====\n";
  }
}

void Pgdog::write_files() {
  std::map<std::string, std::string> general = {
      {"host", "\"127.0.0.1\""},
      {"port", std::to_string(port_)},
      // Tests end with clients still connected; a drain of the default 60 s would only wait.
      {"shutdown_timeout", "2000"},
      // Its own socket directory: every test's pgdog listens on a Unix socket too, and none
      // writes to the host's /var/run/postgresql.
      {"unix_socket_dir", toml_string(dir_.path())},
  };
  for (const auto& [k, v] : config_.general)
    general[k] = v;
  // An empty literal leaves the key out of the file (the built-in default applies).
  std::erase_if(general, [](const auto& kv) { return kv.second.empty(); });
  std::ostringstream cfg;
  cfg << "[general]\n";
  for (const auto& [k, v] : general)
    cfg << k << " = " << v << "\n";
  cfg << "\n[admin]\n";
  if (config_.admin_password) cfg << "password = " << toml_string(*config_.admin_password) << "\n";
  cfg << (config_.databases.empty() ? database_toml("pgdog", env()->primary_port)
                                    : config_.databases);
  cfg << config_.extra << "\n";
  dir_.write("pgdog.toml", cfg.str());
  dir_.write("users.toml", config_.users.empty() ? user_toml("pgdog", "pgdog", std::string("pgdog"))
                                                 : config_.users);
}

std::string Pgdog::config_path() const {
  return dir_.path() + "/pgdog.toml";
}
std::string Pgdog::users_path() const {
  return dir_.path() + "/users.toml";
}

void Pgdog::rewrite(PgdogConfig config) {
  config_ = std::move(config);
  write_files();
}

void Pgdog::reload() {
  signal(SIGHUP);
}

void Pgdog::signal(int sig) {
  if (pid_ > 0 && !exit_status_) ::kill(pid_, sig);
}

std::string Pgdog::log() const {
  std::ifstream in(dir_.path() + "/pgdog.log", std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::optional<int> Pgdog::wait_exit(Millis timeout) {
  if (exit_status_ || pid_ <= 0) return exit_status_;
  const auto deadline = Clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_status_;
    }
    if (r < 0 && errno != EINTR) return std::nullopt;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
}

void Pgdog::stop(Millis grace) {
  if (pid_ <= 0 || exit_status_) return;
  ::kill(pid_, SIGTERM);
  if (wait_exit(grace)) return;
  ADD_FAILURE() << "pgdog did not exit within " << grace.count() << " ms of SIGTERM";
  ::kill(pid_, SIGKILL);
  wait_exit(5s);
}

std::string Pgdog::conninfo(const std::string& user, const std::optional<std::string>& password,
                            const std::string& dbname) const {
  return it::conninfo(port_, user, password, dbname);
}

std::string Pgdog::socket_dir() const {
  auto it = config_.general.find("unix_socket_dir");
  if (it == config_.general.end()) return dir_.path();
  const std::string& literal = it->second;
  return literal.size() >= 2 ? literal.substr(1, literal.size() - 2) : std::string();
}

std::string Pgdog::unix_conninfo(const std::string& user, const std::optional<std::string>& password,
                                 const std::string& dbname) const {
  return conninfo(user, password, dbname) + " host=" + socket_dir();
}

std::string Pgdog::admin_conninfo(const std::optional<std::string>& password) const {
  return it::conninfo(port_, "admin", password ? password : config_.admin_password, "admin");
}

Conn Pgdog::connect(const std::string& user, const std::optional<std::string>& password,
                    const std::string& dbname) const {
  return Conn::connect(conninfo(user, password, dbname));
}

Conn Pgdog::admin() const {
  return Conn::connect(admin_conninfo());
}

std::string Pgdog::admin_snapshot() const {
  auto a = Conn::connect(admin_conninfo(), 5s);
  if (!a.ok()) return "admin console unavailable: " + a.connect_error().message;
  std::string out;
  for (const char* cmd : {"SHOW POOLS", "SHOW CLIENTS", "SHOW SERVERS"}) {
    auto r = a.exec(cmd, 5s);
    out += std::string("\n") + cmd + ":";
    if (!r.ok()) {
      out += " " + r.describe();
      continue;
    }
    out += "\n  ";
    for (const auto& c : r.columns)
      out += c + " | ";
    for (std::size_t i = 0; i < r.rows.size(); ++i) {
      out += "\n  ";
      for (std::size_t c = 0; c < r.columns.size(); ++c)
        out += r.at(i, c) + " | ";
    }
  }
  return out;
}

}  // namespace pgdog::it
