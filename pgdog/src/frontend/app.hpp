#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

#include "auth/auth.hpp"
#include "backend/pool.hpp"
#include "backend/prepared.hpp"
#include "config/config.hpp"
#include "frontend/clients.hpp"
#include "http/server.hpp"
#include "mirror/mirror.hpp"
#include "stats/proxy_metrics.hpp"
#include "stats/readiness.hpp"
#include "stats/registry.hpp"

namespace pgdog::frontend {

// A user that may log in to one database: its credentials and its pool.
struct UserEntry {
  config::User user;
  std::shared_ptr<backend::Pool> pool;
  auth::ScramSecret scram;  // derived once per (re)load: PBKDF2 is deliberately slow
};

// Everything the proxy runs: the configuration in force, pools, clients, listeners. Sessions
// look things up here at login; reload swaps the lookups atomically.
class App {
 public:
  App(asio::io_context& io, config::Config config);
  ~App();

  // Binds the listener; throws if the port cannot be bound.
  void start();
  // The port the listener is bound to: the configured one, or the one the system chose for
  // port 0 (tests). 0 before start().
  std::uint16_t port() const;

  std::shared_ptr<const config::Config> config() const;
  std::shared_ptr<UserEntry> find_user(std::string_view user, std::string_view database) const;
  // The admin console's SCRAM secret, derived once per admin password.
  auth::ScramSecret admin_scram() const;
  bool has_database(std::string_view database) const;
  ClientRegistry& clients() { return clients_; }
  // Named prepared statements, interned across every client (transaction mode).
  backend::StatementRegistry& statement_registry() { return statements_; }
  asio::ssl::context* client_tls() { return client_tls_.get(); }
  // Sessions run here: a strand when several threads run the io_context.
  Executor session_executor();
  Executor io_executor() { return io_.get_executor(); }

  // Validated configuration in; pools, users and passwords change without dropping clients.
  void apply(config::Config next);
  // Loads the files the current configuration came from and applies them; the error, if any,
  // names the file, line and key, and nothing changes.
  config::Result<void> reload();

  std::vector<std::shared_ptr<backend::Pool>> pools() const;
  // The mirrors fed by traffic to `database`.
  std::vector<std::shared_ptr<mirror::Mirror>> mirrors_for(std::string_view database) const;
  std::vector<std::shared_ptr<mirror::Mirror>> mirrors() const;
  // One per destination cluster; they survive reloads so counters never go backwards.
  std::vector<std::shared_ptr<stats::MirrorStats>> mirror_stats() const;
  // The readiness verdict of every mirror cluster, under the configuration in force.
  std::vector<stats::Verdict> readiness() const;
  stats::ReadinessSettings readiness_settings(const std::string& cluster) const;
  void pause();
  void resume();

  // The /metrics sources (mirror and proxy families); more can be added.
  std::shared_ptr<stats::Registry> registry() const { return registry_; }
  // The metrics endpoint, null when openmetrics_port is unset; routes may be added before or
  // after start().
  http::Server* http() const { return http_.get(); }
  // One sample per pool, with the connected clients of its database and user by state.
  std::vector<stats::PoolSample> pool_samples() const;

  // Graceful: stop accepting, close idle clients with 57P01, let running transactions finish up
  // to shutdown_timeout, then stop the io_context. Not graceful: close everything now.
  // Thread-safe.
  void shutdown(bool graceful);
  bool shutting_down() const { return shutting_down_; }

 private:
  void add_metrics();
  Task<void> accept_loop();
  Task<void> drain(config::Millis timeout);
  backend::PoolSettings pool_settings(const config::Config& c, const config::User& u,
                                      const config::Database& db) const;
  void apply_mirrors_locked(const config::Config& c, std::vector<std::shared_ptr<mirror::Mirror>>& start,
                            std::vector<std::shared_ptr<mirror::Mirror>>& stop);
  std::shared_ptr<backend::Pool> mirror_pool(const std::string& user,
                                             const std::string& destination);
  void build_tls(const config::Config& c);

  asio::io_context& io_;
  tcp::acceptor acceptor_;
  ClientRegistry clients_;
  backend::StatementRegistry statements_;
  std::unique_ptr<asio::ssl::context> client_tls_;
  std::unique_ptr<asio::ssl::context> server_tls_;

  mutable std::mutex mutex_;
  auth::ScramSecret admin_scram_;
  std::optional<std::string> admin_scram_password_;
  std::shared_ptr<const config::Config> config_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<UserEntry>, std::less<>> users_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<mirror::Mirror>> mirrors_;
  std::map<std::string, std::shared_ptr<stats::MirrorStats>> mirror_stats_;
  // Pools for mirror destinations where users.toml has no entry for that user and database.
  std::map<std::pair<std::string, std::string>, std::shared_ptr<backend::Pool>> mirror_pools_;
  std::shared_ptr<stats::Registry> registry_ = std::make_shared<stats::Registry>();
  std::unique_ptr<http::Server> http_;
  bool started_ = false;
  std::atomic<bool> shutting_down_{false};
  int threads_ = 1;
};

}  // namespace pgdog::frontend
