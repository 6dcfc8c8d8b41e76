#include "frontend/app.hpp"

#include <boost/asio/strand.hpp>
#include <spdlog/spdlog.h>

#include "frontend/client_session.hpp"
#include "http/status_page.hpp"
#include "stats/mirror_metrics.hpp"

namespace pgdog::frontend {

namespace {

const std::string& first_of(const std::optional<std::string>& a, const std::optional<std::string>& b,
                            const std::string& fallback) {
  if (a) return *a;
  if (b) return *b;
  return fallback;
}

}  // namespace

App::App(asio::io_context& io, config::Config config) : io_(io), acceptor_(io) {
  threads_ = config.general.workers;
  build_tls(config);
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
  const auto& g = config()->general;
  if (g.openmetrics_port) {
    http::Options options;
    options.host = g.openmetrics_host;
    options.port = *g.openmetrics_port;
    http_ = std::make_unique<http::Server>(io_.get_executor(), options, registry_);
    http::add_readiness_routes(*http_, [this] { return readiness(); });
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
  s.exposure = 1.0;
  for (const auto& m : cfg->mirroring) {
    if (m.destination_db == cluster) s.exposure = std::min(s.exposure, cfg->exposure(m));
  }
  return s;
}

std::vector<stats::Verdict> App::readiness() const {
  std::vector<stats::Verdict> out;
  for (const auto& st : mirror_stats()) out.push_back(stats::evaluate(*st, readiness_settings(st->cluster())));
  return out;
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

void App::build_tls(const config::Config& c) {
  const auto& g = c.general;
  if (g.tls_certificate && g.tls_private_key) {
    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1);
    ctx->use_certificate_chain_file(*g.tls_certificate);
    ctx->use_private_key_file(*g.tls_private_key, asio::ssl::context::pem);
    client_tls_ = std::move(ctx);
  }
  if (g.tls_verify != config::TlsVerify::disabled) {
    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1);
    const bool verify =
        g.tls_verify == config::TlsVerify::verify_ca || g.tls_verify == config::TlsVerify::verify_full;
    if (verify) {
      if (g.tls_server_ca_certificate) {
        ctx->load_verify_file(*g.tls_server_ca_certificate);
      } else {
        ctx->set_default_verify_paths();
      }
      ctx->set_verify_mode(asio::ssl::verify_peer);
    } else {
      ctx->set_verify_mode(asio::ssl::verify_none);
    }
    server_tls_ = std::move(ctx);
  }
}

void App::start() {
  auto cfg = config();
  const auto& g = cfg->general;
  tcp::endpoint endpoint(asio::ip::make_address(g.host), g.port);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  spdlog::info("pgdog listening on {}:{}", g.host, g.port);
  if (http_) {
    http_->start();  // a port that cannot be bound is a startup error
    spdlog::info("metrics on http://{}:{}/metrics", g.openmetrics_host, http_->port());
  }
  asio::co_spawn(io_, accept_loop(), log_errors("listener"));
  for (const auto& pool : pools()) pool->start();
  for (const auto& m : mirrors()) m->start();
  std::lock_guard lock(mutex_);
  started_ = true;
}

std::uint16_t App::port() const {
  error_code ec;
  const auto endpoint = acceptor_.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

Executor App::session_executor() {
  if (threads_ > 1) return asio::make_strand(io_);
  return io_.get_executor();
}

Task<void> App::accept_loop() {
  while (acceptor_.is_open()) {
    auto [ec, socket] = co_await acceptor_.async_accept(use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
      // Out of file descriptors and the like: back off instead of spinning.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer t(io_, std::chrono::milliseconds(50));
      co_await t.async_wait(use_nothrow);
      continue;
    }
    auto session = std::make_shared<ClientSession>(*this, std::move(socket));
    asio::co_spawn(session_executor(), session->run(), log_errors("client session"));
  }
}

std::shared_ptr<const config::Config> App::config() const {
  std::lock_guard g(mutex_);
  return config_;
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
  return s;
}

void App::apply(config::Config next) {
  auto cfg = std::make_shared<const config::Config>(std::move(next));
  std::map<std::pair<std::string, std::string>, std::shared_ptr<UserEntry>, std::less<>> users;
  std::vector<std::shared_ptr<backend::Pool>> removed;
  std::vector<std::shared_ptr<backend::Pool>> added;
  std::vector<std::shared_ptr<mirror::Mirror>> start_mirrors;
  std::vector<std::shared_ptr<mirror::Mirror>> stop_mirrors;
  {
    std::lock_guard g(mutex_);
    if (cfg->admin.password != admin_scram_password_) {
      admin_scram_password_ = cfg->admin.password;
      admin_scram_ = cfg->admin.password ? auth::make_scram_secret(*cfg->admin.password)
                                         : auth::ScramSecret{};
    }
    for (const auto& u : cfg->users) {
      auto key = std::make_pair(u.name, u.database);
      auto settings = pool_settings(*cfg, u, *cfg->find_database(u.database));
      auto entry = std::make_shared<UserEntry>();
      entry->user = u;
      auto old = users_.find(key);
      if (old != users_.end()) {
        entry->pool = old->second->pool;
        entry->pool->update(settings);
        // PBKDF2 is slow on purpose: derive again only when the password changed.
        entry->scram = old->second->user.password == u.password ? old->second->scram
                                                                : auth::ScramSecret{};
      } else {
        entry->pool =
            std::make_shared<backend::Pool>(io_.get_executor(), u.name, u.database, settings);
        added.push_back(entry->pool);
      }
      if (u.password && entry->scram.salt.empty()) {
        entry->scram = auth::make_scram_secret(*u.password);
      }
      users.emplace(std::move(key), std::move(entry));
    }
    for (const auto& [key, entry] : users_) {
      if (!users.contains(key)) removed.push_back(entry->pool);
    }
    // Fallback mirror pools are rebuilt from the new configuration on first use.
    for (auto& [key, pool] : mirror_pools_) removed.push_back(pool);
    mirror_pools_.clear();
    users_ = std::move(users);
    config_ = cfg;
    if (!started_) added.clear();  // start() starts them
    apply_mirrors_locked(*cfg, start_mirrors, stop_mirrors);
  }
  for (auto& p : removed) p->shutdown();
  for (auto& p : added) p->start();
  for (auto& m : stop_mirrors) m->stop();
  for (auto& m : start_mirrors) m->start();
}

void App::apply_mirrors_locked(const config::Config& c,
                               std::vector<std::shared_ptr<mirror::Mirror>>& start,
                               std::vector<std::shared_ptr<mirror::Mirror>>& stop) {
  std::map<std::pair<std::string, std::string>, std::shared_ptr<mirror::Mirror>> next;
  for (const auto& m : c.mirroring) {
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
    auto key = std::make_pair(m.source_db, m.destination_db);
    auto& stats = mirror_stats_[m.destination_db];
    if (!stats) stats = std::make_shared<stats::MirrorStats>(m.destination_db);
    stats->set_failure_threshold(c.general.mirror_failure_threshold);
    if (auto it = mirrors_.find(key); it != mirrors_.end()) {
      it->second->update(std::move(s));
      next.emplace(key, it->second);
      continue;
    }
    const std::string destination = m.destination_db;
    auto mirror = std::make_shared<mirror::Mirror>(
        io_.get_executor(), threads_, std::move(s), stats,
        [this, destination](const std::string& user) { return mirror_pool(user, destination); },
        statements_);
    next.emplace(key, mirror);
    if (started_) start.push_back(mirror);
  }
  for (const auto& [key, m] : mirrors_) {
    if (!next.contains(key)) stop.push_back(m);
  }
  mirrors_ = std::move(next);
}

std::shared_ptr<backend::Pool> App::mirror_pool(const std::string& user,
                                                const std::string& destination) {
  std::lock_guard g(mutex_);
  auto key = std::make_pair(user, destination);
  if (auto it = users_.find(key); it != users_.end()) return it->second->pool;
  if (auto it = mirror_pools_.find(key); it != mirror_pools_.end()) return it->second;
  // users.toml has no entry for this user on the mirror: log in there with the credentials the
  // user has on its source database.
  const config::User* source_user = nullptr;
  for (const auto& u : config_->users) {
    if (u.name == user) {
      source_user = &u;
      break;
    }
  }
  const auto* db = config_->find_database(destination);
  if (source_user == nullptr || db == nullptr) return nullptr;
  auto settings = pool_settings(*config_, *source_user, *db);
  auto pool = std::make_shared<backend::Pool>(io_.get_executor(), user, destination, settings);
  pool->start();
  mirror_pools_.emplace(key, pool);
  return pool;
}

std::vector<std::shared_ptr<mirror::Mirror>> App::mirrors_for(std::string_view database) const {
  std::lock_guard g(mutex_);
  std::vector<std::shared_ptr<mirror::Mirror>> out;
  for (const auto& [key, m] : mirrors_) {
    if (key.first == database) out.push_back(m);
  }
  return out;
}

std::vector<std::shared_ptr<mirror::Mirror>> App::mirrors() const {
  std::lock_guard g(mutex_);
  std::vector<std::shared_ptr<mirror::Mirror>> out;
  for (const auto& [key, m] : mirrors_) out.push_back(m);
  return out;
}

std::vector<std::shared_ptr<stats::MirrorStats>> App::mirror_stats() const {
  std::lock_guard g(mutex_);
  std::vector<std::shared_ptr<stats::MirrorStats>> out;
  for (const auto& [name, st] : mirror_stats_) out.push_back(st);
  return out;
}

config::Result<void> App::reload() {
  auto current = config();
  auto next = config::load(current->config_path, current->users_path);
  if (!next) return next.error();
  const auto& a = current->general;
  const auto& b = next->general;
  if (a.host != b.host || a.port != b.port || a.workers != b.workers) {
    spdlog::warn("reload: host, port and workers take effect only after a restart");
  }
  if (a.openmetrics_host != b.openmetrics_host || a.openmetrics_port != b.openmetrics_port) {
    spdlog::warn("reload: openmetrics_host and openmetrics_port take effect only after a restart");
  }
  apply(std::move(*next));
  spdlog::info("configuration reloaded from {} and {}", current->config_path,
               current->users_path);
  return {};
}

std::vector<std::shared_ptr<backend::Pool>> App::pools() const {
  std::lock_guard g(mutex_);
  std::vector<std::shared_ptr<backend::Pool>> out;
  for (const auto& [key, entry] : users_) out.push_back(entry->pool);
  for (const auto& [key, pool] : mirror_pools_) out.push_back(pool);
  return out;
}

void App::pause() {
  for (auto& p : pools()) p->pause();
}

void App::resume() {
  for (auto& p : pools()) p->resume();
}

void App::shutdown(bool graceful) {
  const bool again = shutting_down_.exchange(true);
  if (again) {
    // A second request (SIGINT after SIGTERM) does not wait any longer.
    if (!graceful) io_.stop();
    return;
  }
  asio::post(io_, [this, graceful] {
    error_code ec;
    acceptor_.close(ec);
    spdlog::info("shutting down ({})", graceful ? "waiting for transactions to finish" : "now");
    for (const auto& c : clients_.list()) {
      if (auto s = c->session()) s->terminate(graceful);
    }
    const auto timeout = graceful ? config()->general.shutdown_timeout : config::Millis{0};
    asio::co_spawn(io_, drain(timeout), [this](std::exception_ptr) { io_.stop(); });
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
    for (const auto& m : mirrors()) n += m->queue().size();
    return n;
  };
  while (queued() > 0 && std::chrono::steady_clock::now() < deadline) {
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(use_nothrow);
  }
  for (auto& m : mirrors()) m->stop();
  for (auto& p : pools()) p->shutdown();
  if (http_) http_->stop();
}

}  // namespace pgdog::frontend
