#include "frontend/app.hpp"

#include <algorithm>
#include <utility>

#include <boost/asio/strand.hpp>
#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "frontend/client_session.hpp"
#include "frontend/cutover.hpp"
#include "http/status_page.hpp"
#include "stats/mirror_metrics.hpp"

namespace pgdog::frontend {

namespace {

const std::string& first_of(const std::optional<std::string>& a,
                            const std::optional<std::string>& b, const std::string& fallback) {
  if (a) return *a;
  if (b) return *b;
  return fallback;
}

}  // namespace

App::App(asio::io_context& io, config::Config config)
    : App(std::vector<asio::io_context*>{&io}, std::move(config)) {}

App::App(std::vector<asio::io_context*> loops, config::Config config)
    : loops_(std::move(loops)),
      loop_sessions_(std::make_unique<std::atomic<int>[]>(loops_.size())),
      io_(*loops_.at(0)),
      acceptor_(io_),
      unix_listener_(io_.get_executor()) {
  // value() throws the error, which names the key and the file.
  server_tls_ = net::connect_context(config).value();
  client_tls_ = net::accept_context(config).value();
  on_disk_ = std::make_shared<const config::Config>(config);
  // load() applied it already and refused the start if it did not agree with pgdog.toml.
  if (auto state = config::read_cutover_state(config::cutover_state_path(config)))
    cutover_state_ = std::move(*state);
  apply(std::move(config));
  add_metrics();
}

App::~App() {
  if (http_) http_->stop();
}

void App::add_metrics() {
  // Both read the configuration in force at each scrape, so a reload applies at the next one.
  registry_->add(std::make_shared<stats::MirrorMetrics>(
      [this] {
        if (!config()->general.mirror_metrics_enabled) {
          return std::vector<std::shared_ptr<stats::MirrorStats>>{};
        }
        return mirror_stats();
      },
      [this] { return config()->general.mirror_failure_threshold; },
      [this](const std::string& cluster) { return readiness_settings(cluster); }));
  registry_->add(std::make_shared<stats::ProxyMetrics>([this] { return pool_samples(); }));
  registry_->add(std::make_shared<stats::CutoverMetrics>(cutover_log_));
  const auto& g = config()->general;
  if (g.openmetrics_port) {
    http::Options options;
    options.host = g.openmetrics_host;
    options.port = *g.openmetrics_port;
    http_ = std::make_unique<http::Server>(io_.get_executor(), options, registry_);
    http::add_readiness_routes(*http_, [this] { return readiness(); });
    http_->add_route("/cutovers", [this](std::string_view) {
      return http::Response{200, "application/json", stats::to_json(cutover_log_)};
    });
    http::add_history_route(*http_, history_);
  }
}

stats::ReadinessSettings App::readiness_settings(const std::string& cluster) const {
  auto cfg = config();
  const auto& g = cfg->general;
  stats::ReadinessSettings s;
  s.window = std::chrono::duration_cast<std::chrono::seconds>(g.mirror_readiness_window);
  s.max_lag_seconds = static_cast<double>(g.mirror_readiness_max_lag.count()) / 1000.0;
  s.latency_factor = g.mirror_readiness_latency_factor;
  s.failure_threshold = g.mirror_failure_threshold;
  // Several sources may feed one cluster: it has seen everything only if all send everything.
  {
    // A cluster that became a mirror by a cutover is judged only on what it did since.
    std::lock_guard lock(mutex_);
    if (auto it = cutover_at_.find(cluster); it != cutover_at_.end()) {
      const auto since = std::chrono::duration_cast<std::chrono::seconds>(
          std::chrono::steady_clock::now() - it->second);
      s.window = std::clamp(since, std::chrono::seconds(1), s.window);
    }
  }
  s.exposure = 1.0;
  s.configured = false;
  for (const auto& m : cfg->mirroring) {
    if (m.destination_db != cluster) continue;
    s.exposure = std::min(s.exposure, cfg->exposure(m));
    s.configured = true;
  }
  s.spanning_sessions = spanning_sessions(cluster);
  return s;
}

std::size_t App::spanning_sessions(const std::string& cluster) const {
  // The mirrors to the cluster that some open transaction may have missed: those added after
  // the first version (sessions' versions start there).
  std::vector<std::pair<std::string, std::uint64_t>> added;
  const auto snapshot = mirror_set_->snapshot();
  for (const auto& e : snapshot->entries) {
    const auto settings = e.mirror->settings();
    if (settings.destination == cluster && e.since > 1)
      added.emplace_back(settings.source, e.since);
  }
  if (added.empty()) return 0;
  std::size_t n = 0;
  for (const auto& c : clients_.list()) {
    const auto open = c->mirror_version.load(std::memory_order_relaxed);
    if (open == 0) continue;
    const auto database = c->database();
    for (const auto& [source, since] : added) {
      if (source == database && mirror::spans_change(open, since)) {
        ++n;
        break;
      }
    }
  }
  return n;
}

std::vector<stats::Verdict> App::readiness() const {
  std::vector<stats::Verdict> out;
  for (const auto& st : mirror_stats())
    out.push_back(stats::evaluate(*st, readiness_settings(st->cluster())));
  return out;
}

// One reading a second per mirror cluster for the status page's charts. The deadline moves a
// second at a time, so readings do not drift; after a stall it restarts from now instead of
// catching up with a burst.
Task<void> App::sample_history() {
  asio::steady_timer timer(io_);
  auto next = std::chrono::steady_clock::now();
  while (!shutting_down_) {
    record_history();
    next += std::chrono::seconds(1);
    next = std::max(next, std::chrono::steady_clock::now());
    timer.expires_at(next);
    auto [ec] = co_await timer.async_wait(use_nothrow);
    if (ec) co_return;
  }
}

void App::record_history() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const double at = std::chrono::duration<double>(now).count();
  for (const auto& st : mirror_stats())
    history_->record(at, st->cluster(), stats::read_counters(*st));
}

std::vector<stats::PoolSample> App::pool_samples() const {
  std::vector<stats::PoolSample> out;
  std::map<std::pair<std::string, std::string>, std::size_t> index;
  for (const auto& pool : pools()) {
    const auto st = pool->state();
    stats::PoolSample s;
    s.database = pool->database();
    s.user = pool->user();
    s.servers_active = st.active;
    s.servers_idle = st.idle;
    s.servers_login = st.connecting;
    s.max_wait_seconds = static_cast<double>(st.max_wait_us) / 1e6;
    s.counters = pool->shared_counters();
    index.emplace(std::make_pair(s.database, s.user), out.size());
    out.push_back(std::move(s));
  }
  for (const auto& c : clients_.list()) {
    const auto state = c->state.load(std::memory_order_relaxed);
    if (state == ClientState::login) continue;  // not counted until logged in, like PgDog
    auto key = std::make_pair(c->database(), c->user());
    auto [it, added] = index.emplace(key, out.size());
    if (added) {
      // Clients without a pool (the admin console) still count.
      stats::PoolSample s;
      s.database = key.first;
      s.user = key.second;
      out.push_back(std::move(s));
    }
    auto& s = out[it->second];
    switch (state) {
      case ClientState::active:
        ++s.clients_active;
        break;
      case ClientState::idle:
        ++s.clients_idle;
        break;
      case ClientState::waiting:
        ++s.clients_waiting;
        break;
      case ClientState::login:
        break;
    }
  }
  return out;
}

void App::start() {
  auto cfg = config();
  const auto& g = cfg->general;
  tcp::endpoint endpoint(asio::ip::make_address(g.host), g.port);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  // Between bind (which fixes the port naming the socket) and listen: once TCP accepts, the
  // Unix socket does too.
  listen_unix(*cfg);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  spdlog::info("pgdog listening on {}:{}", g.host, g.port);
  if (unix_listener_.is_open()) spdlog::info("pgdog listening on {}", unix_listener_.path());
  if (http_) {
    http_->start();  // a port that cannot be bound is a startup error
    spdlog::info("metrics on http://{}:{}/metrics", g.openmetrics_host, http_->port());
    // Only the status page shows the history: without the endpoint nobody would read it.
    asio::co_spawn(io_, sample_history(), log_errors("mirror history sampler"));
  }
  asio::co_spawn(io_, accept_loop(), log_errors("listener"));
  if (unix_listener_.is_open()) {
    asio::co_spawn(io_, accept_unix_loop(), log_errors("unix socket listener"));
  }
  for (const auto& pool : pools())
    pool->start();
  for (const auto& m : mirrors())
    m->start();
  std::lock_guard lock(mutex_);
  started_ = true;
}

std::uint16_t App::port() const {
  error_code ec;
  const auto endpoint = acceptor_.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

void App::listen_unix(const config::Config& c) {
  const auto dir = c.general.unix_socket_dir.value_or("");
  if (dir.empty()) return;
  // The TCP port names the socket, as with PostgreSQL; port 0 (tests) means the one bound.
  if (auto failed = unix_listener_.open(dir, port())) {
    throw std::runtime_error(c.config_path + ": general.unix_socket_dir: " + *failed);
  }
}

std::string App::unix_socket_path() const {
  return unix_listener_.is_open() ? unix_listener_.path() : std::string();
}

std::vector<Executor> App::loop_executors() const {
  std::vector<Executor> out;
  for (auto* loop : loops_)
    out.emplace_back(loop->get_executor());
  return out;
}

std::size_t App::next_loop() const {
  std::size_t best = 0;
  for (std::size_t i = 1; i < loops_.size(); ++i) {
    if (loop_sessions_[i].load() < loop_sessions_[best].load()) best = i;
  }
  return best;
}

void App::run_session(std::size_t loop, std::shared_ptr<ClientSession> session) {
  loop_sessions_[loop].fetch_add(1);
  asio::co_spawn(loops_[loop]->get_executor(), session->run(),
                 [this, loop, session](std::exception_ptr e) {
                   loop_sessions_[loop].fetch_sub(1);
                   log_errors("client session")(e);
                 });
}

void App::stop_loops() {
  for (auto* loop : loops_)
    loop->stop();
}

// Accepts on loop 0 straight into a socket of the loop that will serve the client (an accept
// hand-off: no file descriptor moves between loops afterwards).
Task<void> App::accept_loop() {
  while (acceptor_.is_open()) {
    const std::size_t loop = next_loop();
    auto [ec, socket] = co_await acceptor_.async_accept(*loops_[loop], use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
      // Out of file descriptors and the like: back off instead of spinning.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer t(io_, std::chrono::milliseconds(50));
      co_await t.async_wait(use_nothrow);
      continue;
    }
    run_session(loop, std::make_shared<ClientSession>(*this, net::Socket(std::move(socket)),
                                                      *loops_[loop]));
  }
}

Task<void> App::accept_unix_loop() {
  auto& acceptor = unix_listener_.acceptor();
  while (acceptor.is_open()) {
    const std::size_t loop = next_loop();
    auto [ec, socket] = co_await acceptor.async_accept(*loops_[loop], use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      spdlog::warn("accept on {} failed: {}", unix_listener_.path(), ec.message());
      asio::steady_timer t(io_, std::chrono::milliseconds(50));
      co_await t.async_wait(use_nothrow);
      continue;
    }
    run_session(loop, std::make_shared<ClientSession>(*this, std::move(socket), *loops_[loop]));
  }
}

std::shared_ptr<const config::Config> App::config() const {
  std::lock_guard g(mutex_);
  return config_;
}

std::shared_ptr<const config::Config> App::on_disk() const {
  std::lock_guard g(mutex_);
  return on_disk_;
}

net::TlsContext App::client_tls() const {
  std::lock_guard g(mutex_);
  return client_tls_;
}

std::shared_ptr<UserEntry> App::find_user(std::string_view user, std::string_view database) const {
  std::lock_guard g(mutex_);
  auto it = users_.find(std::pair<std::string, std::string>(user, database));
  return it == users_.end() ? nullptr : it->second;
}

auth::ScramSecret App::admin_scram() const {
  std::lock_guard g(mutex_);
  return admin_scram_;
}

bool App::has_database(std::string_view database) const {
  std::lock_guard g(mutex_);
  return config_->find_database(database) != nullptr;
}

backend::PoolSettings App::pool_settings(const config::Config& c, const config::User& u,
                                         const config::Database& database) const {
  const auto* db = &database;
  backend::PoolSettings s;
  s.address.host = db->host;
  s.address.port = db->port;
  s.address.database = db->server_database();
  s.address.user = first_of(u.server_user, db->user, u.name);
  static const std::string empty;
  s.address.password = first_of(u.server_password, db->password, u.password ? *u.password : empty);
  s.address.tls_verify = c.general.tls_verify;
  s.address.tls_context = server_tls_.get();
  s.size = c.pool_size(u);
  s.min_size = c.min_pool_size(u);
  s.mode = c.pooler_mode(u);
  s.connect_timeout = c.general.connect_timeout;
  s.checkout_timeout = c.general.checkout_timeout;
  s.idle_timeout = c.general.idle_timeout;
  s.server_lifetime = c.general.server_lifetime;
  s.max_message_size = c.general.max_message_size;
  s.prepared_statements_limit = c.general.prepared_statements_limit;
  const bool has_mirrors = std::any_of(c.mirroring.begin(), c.mirroring.end(),
                                       [&](const auto& m) { return m.source_db == u.database; });
  if (has_mirrors) {
    // A cutover made by another pgdog instance must be noticed before this one serves again.
    s.vet = [app = const_cast<App*>(this), database = u.database](backend::ServerConnection& sc) {
      return vet_server(*app, database, sc);
    };
  }
  return s;
}

void App::apply(config::Config next) {
  auto cfg = std::make_shared<const config::Config>(std::move(next));
  std::vector<std::shared_ptr<backend::Pool>> removed;
  std::vector<std::shared_ptr<backend::Pool>> added;
  std::vector<std::shared_ptr<mirror::Mirror>> start_mirrors;
  std::vector<std::shared_ptr<mirror::Mirror>> removed_mirrors;
  {
    std::lock_guard g(mutex_);
    if (cfg->admin.password != admin_scram_password_) {
      admin_scram_password_ = cfg->admin.password;
      admin_scram_ =
          cfg->admin.password ? auth::make_scram_secret(*cfg->admin.password) : auth::ScramSecret{};
    }
    apply_users_locked(*cfg, added, removed);
    // Fallback mirror pools are rebuilt from the new configuration on first use.
    for (auto& [key, pool] : mirror_pools_)
      removed.push_back(pool);
    mirror_pools_.clear();
    const auto previous = std::exchange(config_, cfg);
    if (!started_) added.clear();  // start() starts them
    apply_mirrors_locked(*cfg, start_mirrors, removed_mirrors);
    publish_serving_locked(*cfg);
    for (const auto& m : removed_mirrors)
      removed_configs_[m->settings().destination] = previous;
  }
  for (auto& p : removed)
    p->shutdown();
  for (auto& p : added)
    p->start();
  for (auto& m : removed_mirrors) {
    const auto settings = m->settings();
    spdlog::info("mirror {}: removed (source {}); the {} transactions handed to it still replay",
                 settings.destination, settings.source, m->queue().size());
    m->drain();
  }
  for (auto& m : start_mirrors) {
    const auto settings = m->settings();
    spdlog::info("mirror {}: added (source {}); every session mirrors its next transactions",
                 settings.destination, settings.source);
    m->start();
  }
}

void App::apply_users_locked(const config::Config& c,
                             std::vector<std::shared_ptr<backend::Pool>>& added,
                             std::vector<std::shared_ptr<backend::Pool>>& removed) {
  std::map<std::pair<std::string, std::string>, std::shared_ptr<UserEntry>, std::less<>> users;
  for (const auto& u : c.users) {
    auto key = std::make_pair(u.name, u.database);
    auto settings = pool_settings(c, u, *c.find_database(u.database));
    auto entry = std::make_shared<UserEntry>();
    entry->user = u;
    auto old = users_.find(key);
    if (old != users_.end()) {
      entry->pool = old->second->pool;
      entry->pool->update(settings);
      // PBKDF2 is slow on purpose: derive again only when the password changed.
      entry->scram =
          old->second->user.password == u.password ? old->second->scram : auth::ScramSecret{};
    } else {
      entry->pool =
          std::make_shared<backend::Pool>(loop_executors(), u.name, u.database, settings);
      added.push_back(entry->pool);
    }
    if (u.password && entry->scram.salt.empty())
      entry->scram = auth::make_scram_secret(*u.password);
    users.emplace(std::move(key), std::move(entry));
  }
  for (const auto& [key, entry] : users_) {
    if (!users.contains(key)) removed.push_back(entry->pool);
  }
  users_ = std::move(users);
}

std::shared_ptr<mirror::Mirror> App::make_mirror(const config::Config& c,
                                                 const config::Mirroring& m) {
  mirror::MirrorSettings s;
  s.source = m.source_db;
  s.destination = m.destination_db;
  s.queue_length = c.queue_length(m);
  s.queue_bytes = c.queue_bytes(m);
  s.exposure = c.exposure(m);
  s.level = m.level;
  s.timeout = c.mirror_timeout(m);
  s.compare = c.compare(m);
  const auto* dest = c.find_database(m.destination_db);
  s.workers = dest->pool_size ? *dest->pool_size : c.general.default_pool_size;
  auto& stats = mirror_stats_[m.destination_db];
  if (!stats) stats = std::make_shared<stats::MirrorStats>(m.destination_db);
  stats->set_failure_threshold(c.general.mirror_failure_threshold);
  const auto key = std::make_pair(m.source_db, m.destination_db);
  if (auto it = mirrors_.find(key); it != mirrors_.end()) {
    it->second->update(std::move(s));
    return it->second;
  }
  const std::string destination = m.destination_db;
  return std::make_shared<mirror::Mirror>(
      loop_executors(), std::move(s), stats,
      [this, destination](const std::string& user) { return mirror_pool(user, destination); },
      statements_);
}

void App::apply_mirrors_locked(const config::Config& c,
                               std::vector<std::shared_ptr<mirror::Mirror>>& start,
                               std::vector<std::shared_ptr<mirror::Mirror>>& removed) {
  std::map<std::pair<std::string, std::string>, std::shared_ptr<mirror::Mirror>> next;
  std::vector<std::shared_ptr<mirror::Mirror>> in_force;
  for (const auto& m : c.mirroring) {
    auto key = std::make_pair(m.source_db, m.destination_db);
    auto mirror = make_mirror(c, m);
    if (started_ && !mirrors_.contains(key)) start.push_back(mirror);
    removed_.erase(key);  // added again: the removed one only drains what it had
    in_force.push_back(mirror);
    next.emplace(std::move(key), std::move(mirror));
  }
  for (const auto& [key, m] : mirrors_) {
    if (next.contains(key)) continue;
    removed.push_back(m);
    removed_[key] = m;
  }
  mirrors_ = std::move(next);
  // Every reload: sessions also take changed levels and compare modes at their next transaction.
  mirror_set_->publish(in_force);
}

std::shared_ptr<backend::Pool> App::mirror_pool(const std::string& user,
                                                const std::string& destination) {
  std::lock_guard g(mutex_);
  auto key = std::make_pair(user, destination);
  if (auto it = users_.find(key); it != users_.end()) return it->second->pool;
  if (auto it = mirror_pools_.find(key); it != mirror_pools_.end()) return it->second;
  // A mirror a reload removed together with its [[databases]] entry still replays what it was
  // handed, under the configuration it was removed from; the pool keeps nothing open after.
  const config::Config* c = config_.get();
  const bool removed = c->find_database(destination) == nullptr;
  if (removed) {
    auto it = removed_configs_.find(destination);
    if (it == removed_configs_.end()) return nullptr;
    c = it->second.get();
  }
  // users.toml has no entry for this user on the mirror: log in there with the credentials the
  // user has on its source database.
  const config::User* source_user = nullptr;
  for (const auto& u : c->users) {
    if (u.name == user) {
      source_user = &u;
      break;
    }
  }
  const auto* db = c->find_database(destination);
  if (source_user == nullptr || db == nullptr) return nullptr;
  auto settings = pool_settings(*c, *source_user, *db);
  if (removed) settings.min_size = 0;
  auto pool = std::make_shared<backend::Pool>(loop_executors(), user, destination, settings);
  pool->start();
  mirror_pools_.emplace(key, pool);
  return pool;
}

std::vector<std::shared_ptr<mirror::Mirror>> App::mirrors() const {
  std::lock_guard g(mutex_);
  std::vector<std::shared_ptr<mirror::Mirror>> out;
  for (const auto& [key, m] : mirrors_)
    out.push_back(m);
  return out;
}

std::vector<std::shared_ptr<mirror::Mirror>> App::removed_mirrors() const {
  std::lock_guard g(mutex_);
  std::vector<std::shared_ptr<mirror::Mirror>> out;
  for (const auto& [key, m] : removed_)
    out.push_back(m);
  return out;
}

std::vector<std::shared_ptr<stats::MirrorStats>> App::mirror_stats() const {
  std::lock_guard g(mutex_);
  std::vector<std::shared_ptr<stats::MirrorStats>> out;
  for (const auto& [name, st] : mirror_stats_)
    out.push_back(st);
  return out;
}

config::Result<void> App::reload() {
  auto current = config();
  auto next = config::load(current->config_path, current->users_path);
  if (!next) return next.error();
  // Read again even when the paths did not change: certificates are rotated in place.
  auto tls = net::accept_context(*next);
  if (!tls) return tls.error();
  const auto pending = config::pending_restart(*current, *next);
  auto disk = std::make_shared<const config::Config>(*next);
  {
    std::lock_guard g(mutex_);
    client_tls_ = std::move(*tls);
    on_disk_ = std::move(disk);
    // load() applied it to `next` already.
    if (auto state = config::read_cutover_state(config::cutover_state_path(*next)))
      cutover_state_ = std::move(*state);
  }
  apply(config::reloaded(*current, std::move(*next)));
  if (!pending.empty()) {
    spdlog::warn("reload: only a restart applies the new {} (SHOW CONFIG shows what is pending)",
                 fmt::join(pending, ", "));
  }
  const auto& g = config()->general;
  if (g.tls_certificate) {
    spdlog::info("reload: new client connections use the TLS certificate {} and key {}",
                 *g.tls_certificate, *g.tls_private_key);
  }
  spdlog::info("configuration reloaded from {} and {}", current->config_path, current->users_path);
  return {};
}

std::vector<std::shared_ptr<backend::Pool>> App::pools() const {
  std::lock_guard g(mutex_);
  std::vector<std::shared_ptr<backend::Pool>> out;
  for (const auto& [key, entry] : users_)
    out.push_back(entry->pool);
  for (const auto& [key, pool] : mirror_pools_)
    out.push_back(pool);
  return out;
}

void App::pause() {
  for (auto& p : pools())
    p->pause();
}

void App::resume() {
  for (auto& p : pools())
    p->resume();
}

config::CutoverState App::cutover_state() const {
  std::lock_guard g(mutex_);
  return cutover_state_;
}

std::uint64_t App::cutover_generation(std::string_view database) const {
  std::lock_guard g(mutex_);
  const auto* e = cutover_state_.find(database);
  return e ? e->generation : 0;
}

std::vector<std::shared_ptr<backend::Pool>> App::pools_of(std::string_view database) const {
  std::vector<std::shared_ptr<backend::Pool>> out;
  for (auto& p : pools())
    if (p->database() == database) out.push_back(std::move(p));
  return out;
}

std::shared_ptr<mirror::Mirror> App::mirror_of(std::string_view source,
                                               std::string_view destination) const {
  std::lock_guard g(mutex_);
  for (const auto& [key, m] : mirrors_)
    if (key.first == source && key.second == destination) return m;
  return nullptr;
}

std::optional<backend::ServerAddress> App::server_address(const std::string& user,
                                                         const std::string& database) const {
  auto c = config();
  const auto* db = c->find_database(database);
  const config::User* u = c->find_user(user, database);
  for (const auto& candidate : c->users) {
    if (u != nullptr) break;
    if (candidate.name == user) u = &candidate;
  }
  if (db == nullptr || u == nullptr) return std::nullopt;
  return pool_settings(*c, *u, *db).address;
}

config::Result<void> App::save_cutover_state(const config::CutoverState& state) {
  auto r = config::write_cutover_state(config::cutover_state_path(*config()), state);
  if (!r) return r;
  std::lock_guard g(mutex_);
  cutover_state_ = state;
  return {};
}

void App::apply_cutover(const std::string& database, const std::string& peer) {
  auto next = *config();
  config::swap_servers(next, database, peer);
  {
    std::lock_guard g(mutex_);
    auto disk = *on_disk_;
    config::swap_servers(disk, database, peer);
    on_disk_ = std::make_shared<const config::Config>(std::move(disk));
    cutover_at_[peer] = std::chrono::steady_clock::now();
  }
  apply(std::move(next));
}

bool App::begin_cutover() {
  return !cutover_running_.exchange(true);
}

void App::end_cutover() {
  cutover_running_ = false;
}

void App::publish_serving_locked(const config::Config& c) {
  for (const auto& m : c.mirroring) {
    const auto* db = c.find_database(m.source_db);
    if (db == nullptr) continue;
    const auto* e = cutover_state_.find(m.source_db);
    const bool swapped = e != nullptr && e->swapped;
    cutover_log_.set_serving(m.source_db,
                             stats::Serving{swapped ? e->peer : m.source_db, config::endpoint(*db)});
  }
}

void App::shutdown(bool graceful) {
  const bool again = shutting_down_.exchange(true);
  if (again) {
    // A second request (SIGINT after SIGTERM) does not wait any longer.
    if (!graceful) stop_loops();
    return;
  }
  asio::post(io_, [this, graceful] {
    error_code ec;
    acceptor_.close(ec);
    unix_listener_.close();
    spdlog::info("shutting down ({})", graceful ? "waiting for transactions to finish" : "now");
    for (const auto& c : clients_.list()) {
      if (auto s = c->session()) s->terminate(graceful);
    }
    const auto timeout = graceful ? config()->general.shutdown_timeout : config::Millis{0};
    asio::co_spawn(io_, drain(timeout), [this](std::exception_ptr) { stop_loops(); });
  });
}

Task<void> App::drain(config::Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  asio::steady_timer t(io_);
  while (clients_.size() > 0 && std::chrono::steady_clock::now() < deadline) {
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(use_nothrow);
  }
  if (clients_.size() > 0) {
    spdlog::warn("shutdown_timeout reached with {} clients still connected", clients_.size());
  }
  // Committed transactions still queued for the mirrors get the rest of the time to replay.
  auto queued = [this] {
    std::size_t n = 0;
    for (const auto& m : mirrors())
      n += m->queue().size();
    for (const auto& m : removed_mirrors())
      n += m->queue().size();
    return n;
  };
  while (queued() > 0 && std::chrono::steady_clock::now() < deadline) {
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(use_nothrow);
  }
  for (auto& m : mirrors())
    m->stop();
  for (auto& m : removed_mirrors())
    m->stop();
  for (auto& p : pools())
    p->shutdown();
  if (http_) http_->stop();
}

}  // namespace pgdog::frontend
