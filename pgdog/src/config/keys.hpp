#pragma once

// Internal to config/: the [general] and [admin] keys, once. parse.cpp reads each table from
// these lists (an unknown key is an error, so a key is accepted only if it is listed) and
// SHOW CONFIG shows them from the same lists (config.cpp), so the two cannot disagree.
//
// Each [general] entry: the member of General (named as the key); how it is read, a call on
// parse.cpp's KeyReader, which says its type and range; and when a change takes effect: `reload`
// (SIGHUP or RELOAD applies it) or `restart` (a reload reads and validates it, but what uses it
// was built at startup: the listeners, the worker threads, the TLS context for servers, the log
// level). The clients' TLS certificate and key are read again at every reload.
// Each [admin] entry: the member of Admin, how it is read, and whether SHOW CONFIG shows it.

#include <array>
#include <cstdint>
#include <string_view>

namespace pgdog::config::detail {

inline constexpr std::array<std::string_view, 5> kLogLevels = {"trace", "debug", "info", "warn",
                                                               "error"};

// Smaller than PostgreSQL's own 8 kB buffers would reject ordinary traffic, which is surely a
// unit mistake rather than intent.
inline constexpr std::int64_t kMinMessageSize = 8192;

enum class Visibility { shown, hidden };

// clang-format off
#define PGDOG_GENERAL_KEYS(X)                                               \
  X(host,                            text(),                       restart) \
  X(port,                            port(),                       restart) \
  X(unix_socket_dir,                 string(),                     restart) \
  X(workers,                         count(1),                     restart) \
  X(default_pool_size,               count(1),                     reload)  \
  X(min_pool_size,                   count(0),                     reload)  \
  X(pooler_mode,                     choice<PoolerMode>(),         reload)  \
  X(auth_type,                       choice<AuthType>(),           reload)  \
  X(connect_timeout,                 millis(),                     reload)  \
  X(checkout_timeout,                millis(),                     reload)  \
  X(idle_timeout,                    millis(),                     reload)  \
  X(shutdown_timeout,                millis(),                     reload)  \
  X(server_lifetime,                 millis(),                     reload)  \
  X(client_login_timeout,            millis(),                     reload)  \
  X(tls_certificate,                 text(),                       reload)  \
  X(tls_private_key,                 text(),                       reload)  \
  X(tls_client_required,             flag(),                       reload)  \
  X(tls_verify,                      choice<TlsVerify>(),          restart) \
  X(tls_server_ca_certificate,       text(),                       restart) \
  X(openmetrics_port,                port(),                       restart) \
  X(openmetrics_host,                text(),                       restart) \
  X(prepared_statements,             choice<PreparedStatements>(), reload)  \
  X(prepared_statements_limit,       size(1),                      reload)  \
  X(pool_pinning,                    choice<PoolPinning>(),        reload)  \
  X(max_client_conn,                 size(1),                      reload)  \
  X(max_message_size,                size(kMinMessageSize),        reload)  \
  X(mirror_queue,                    size(1),                      reload)  \
  X(mirror_queue_bytes,              size(1024),                   reload)  \
  X(mirror_max_transaction_bytes,    size(1024),                   reload)  \
  X(mirror_exposure,                 ratio(),                      reload)  \
  X(mirror_timeout,                  millis(),                     reload)  \
  X(mirror_metrics_enabled,          flag(),                       reload)  \
  X(mirror_failure_threshold,        ratio(),                      reload)  \
  X(mirror_compare,                  choice<MirrorCompare>(),      reload)  \
  X(mirror_readiness_window,         millis(),                     reload)  \
  X(mirror_readiness_max_lag,        millis(),                     reload)  \
  X(mirror_readiness_latency_factor, factor(1.0),                  reload)  \
  X(cutover_timeout,                 millis(),                     reload)  \
  X(cutover_state,                   text(),                       reload)  \
  X(log_level,                       word(kLogLevels),             restart)

#define PGDOG_ADMIN_KEYS(X)     \
  X(name,     text(),   shown)  \
  X(user,     text(),   shown)  \
  X(password, string(), hidden)
// clang-format on

}  // namespace pgdog::config::detail
