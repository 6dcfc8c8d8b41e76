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
#include "config/cutover_state.hpp"
#include "frontend/clients.hpp"
#include "http/server.hpp"
#include "mirror/mirror.hpp"
#include "mirror/mirror_set.hpp"
#include "net/tls.hpp"
#include "net/unix_socket.hpp"
#include "protocol/params.hpp"
#include "stats/cutover_log.hpp"
#include "stats/mirror_history.hpp"
#include "stats/proxy_metrics.hpp"
#include "stats/readiness.hpp"
#include "stats/registry.hpp"

namespace pgdog::frontend {

class ClientSession;

// A user that may log in to one database: its credentials and its pool.
struct UserEntry {
  config::User user;
  std::shared_ptr<backend::Pool> pool;
  auth::ScramSecret scram;  // derived once per (re)load: PBKDF2 is deliberately slow
};

// Everything the proxy runs: the configuration in force, pools, clients, listeners. Sessions
// look things up here at login, and their mirrors at each transaction; reload swaps the lookups
// atomically.
class App {
 public:
  // Throws (naming the key and the file) when the TLS files do not load. Clients are spread over
  // `loops`, one per worker thread (net::Workers); the first also runs the listeners, the
  // metrics endpoint and the App's own timers. The loops are stopped at shutdown.
  App(std::vector<asio::io_context*> loops, config::Config config);
  // One loop (tests).
  App(asio::io_context& io, config::Config config);
  ~App();

  // Binds the listeners (TCP, and the Unix socket when unix_socket_dir is set); throws if the
  // port cannot be bound or the socket cannot be created, naming the key and the path.
  void start();
  // The port the listener is bound to: the configured one, or the one the system chose for
  // port 0 (tests). 0 before start().
  std::uint16_t port() const;
  // The Unix socket clients may connect to; empty when there is none.
  std::string unix_socket_path() const;

  // In force: a reload leaves the restart-only keys as they were at startup.
  std::shared_ptr<const config::Config> config() const;
  // As the files said at the last (re)load; its restart-only keys are pending.
  std::shared_ptr<const config::Config> on_disk() const;
  std::shared_ptr<UserEntry> find_user(std::string_view user, std::string_view database) const;
  // The admin console's SCRAM secret, derived once per admin password.
  auth::ScramSecret admin_scram() const;
  bool has_database(std::string_view database) const;
  ClientRegistry& clients() { return clients_; }
  // Named prepared statements, interned across every client (transaction mode).
  backend::StatementRegistry& statement_registry() { return statements_; }
  // The session parameters clients sent at login, one copy per distinct set.
  protocol::SharedParams& startup_params() { return startup_params_; }
  // Null without tls_certificate. A reload replaces it for new clients; a connection's SSL holds
  // its own reference to the OpenSSL context it was made with.
  net::TlsContext client_tls() const;
  Executor io_executor() { return io_.get_executor(); }
  // One executor per worker loop: pools and mirrors keep a part on each.
  std::vector<Executor> loop_executors() const;

  // Validated configuration in; pools, users and passwords change without dropping clients.
  void apply(config::Config next);
  // Loads the files the current configuration came from and the TLS files they name, and
  // applies them; the error, if any, names the file (line) and key, and nothing changes.
  config::Result<void> reload();

  std::vector<std::shared_ptr<backend::Pool>> pools() const;
  // The mirrors in force, versioned: what every session's tap follows.
  std::shared_ptr<const mirror::MirrorSet> mirror_set() const { return mirror_set_; }
  std::vector<std::shared_ptr<mirror::Mirror>> mirrors() const;
  // Mirrors a reload removed: draining what was handed to them, then kept for their final
  // counts (until a reload adds them again).
  std::vector<std::shared_ptr<mirror::Mirror>> removed_mirrors() const;
  // Sessions with a transaction open since before a mirror to `cluster` was added.
  std::size_t spanning_sessions(const std::string& cluster) const;
  // One per destination cluster; they survive reloads so counters never go backwards.
  std::vector<std::shared_ptr<stats::MirrorStats>> mirror_stats() const;
  // The readiness verdict of every mirror cluster, under the configuration in force.
  std::vector<stats::Verdict> readiness() const;
  stats::ReadinessSettings readiness_settings(const std::string& cluster) const;
  void pause();
  void resume();

  // Cutover (frontend/cutover.hpp).
  stats::CutoverLog& cutovers() { return cutover_log_; }
  // As pgdog-cutover.toml says, read at start and at each reload.
  config::CutoverState cutover_state() const;
  std::uint64_t cutover_generation(std::string_view database) const;
  // The pools serving clients of `database`.
  std::vector<std::shared_ptr<backend::Pool>> pools_of(std::string_view database) const;
  // The mirror from `source` to `destination` in force, or null.
  std::shared_ptr<mirror::Mirror> mirror_of(std::string_view source,
                                            std::string_view destination) const;
  // Where `user` logs in on `database`'s server, as its pool (or the mirror's) would.
  std::optional<backend::ServerAddress> server_address(const std::string& user,
                                                       const std::string& database) const;
  // Writes pgdog-cutover.toml; nothing changes in memory.
  config::Result<void> save_cutover_state(const config::CutoverState& state);
  // After save_cutover_state: `database` and `peer` exchange their servers in the configuration
  // in force (pools move as their connections come back), and the readiness window of `peer`
  // starts again.
  void apply_cutover(const std::string& database, const std::string& peer);
  // Only one cutover (made or followed) runs at a time; false when one is running.
  bool begin_cutover();
  void end_cutover();

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
  Task<void> sample_history();
  void record_history();
  Task<void> accept_loop();
  Task<void> accept_unix_loop();
  // The loop the next client goes to: the one serving the fewest.
  std::size_t next_loop() const;
  void run_session(std::size_t loop, std::shared_ptr<ClientSession> session);
  void stop_loops();
  void listen_unix(const config::Config& c);
  Task<void> drain(config::Millis timeout);
  backend::PoolSettings pool_settings(const config::Config& c, const config::User& u,
                                      const config::Database& db) const;
  void apply_users_locked(const config::Config& c,
                          std::vector<std::shared_ptr<backend::Pool>>& added,
                          std::vector<std::shared_ptr<backend::Pool>>& removed);
  void apply_mirrors_locked(const config::Config& c,
                            std::vector<std::shared_ptr<mirror::Mirror>>& start,
                            std::vector<std::shared_ptr<mirror::Mirror>>& stop);
  std::shared_ptr<mirror::Mirror> make_mirror(const config::Config& c, const config::Mirroring& m);
  std::shared_ptr<backend::Pool> mirror_pool(const std::string& user,
                                             const std::string& destination);

  std::vector<asio::io_context*> loops_;
  // Sessions running on each loop.
  std::unique_ptr<std::atomic<int>[]> loop_sessions_;
  asio::io_context& io_;  // loops_[0]
  tcp::acceptor acceptor_;
  net::UnixListener unix_listener_;
  ClientRegistry clients_;
  backend::StatementRegistry statements_;
  protocol::SharedParams startup_params_;
  net::TlsContext server_tls_;  // fixed at startup (tls_verify and its CA are restart-only)

  mutable std::mutex mutex_;
  auth::ScramSecret admin_scram_;
  std::optional<std::string> admin_scram_password_;
  std::shared_ptr<const config::Config> config_;
  std::shared_ptr<const config::Config> on_disk_;
  net::TlsContext client_tls_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<UserEntry>, std::less<>> users_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<mirror::Mirror>> mirrors_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<mirror::Mirror>> removed_;
  // The configuration each removed mirror's destination was last configured in (mirror_pool).
  std::map<std::string, std::shared_ptr<const config::Config>> removed_configs_;
  const std::shared_ptr<mirror::MirrorSet> mirror_set_ = std::make_shared<mirror::MirrorSet>();
  std::map<std::string, std::shared_ptr<stats::MirrorStats>> mirror_stats_;
  // Pools for mirror destinations where users.toml has no entry for that user and database.
  std::map<std::pair<std::string, std::string>, std::shared_ptr<backend::Pool>> mirror_pools_;
  std::shared_ptr<stats::Registry> registry_ = std::make_shared<stats::Registry>();
  std::unique_ptr<http::Server> http_;
  config::CutoverState cutover_state_;  // guarded by mutex_
  // When each mirror cluster last became a mirror by a cutover: its readiness starts then.
  std::map<std::string, std::chrono::steady_clock::time_point> cutover_at_;  // mutex_
  stats::CutoverLog cutover_log_;
  std::atomic<bool> cutover_running_{false};
  void publish_serving_locked(const config::Config& c);
  // Read by GET /mirrors/history on the HTTP server's threads; guarded inside.
  const std::shared_ptr<stats::MirrorHistories> history_ =
      std::make_shared<stats::MirrorHistories>();
  bool started_ = false;
  std::atomic<bool> shutting_down_{false};
};

}  // namespace pgdog::frontend
