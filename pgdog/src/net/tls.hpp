#pragma once

#include <memory>

#include <boost/asio/ssl/context.hpp>

#include "config/config.hpp"
#include "net/asio.hpp"

namespace pgdog::net {

using TlsContext = std::shared_ptr<asio::ssl::context>;

// The context clients' TLS is accepted with (TLS 1.2 minimum), from tls_certificate and
// tls_private_key; null when they are unset. Reads the files now: an error names the key and
// the file that did not load ("pgdog.toml: general.tls_certificate: cannot load
// /etc/pgdog/server.crt: No such file or directory"), and a key that does not match its
// certificate. Each call reads the files again: a reload picks up certificates rotated in place.
config::Result<TlsContext> accept_context(const config::Config& config);

// The context for pgdog's own connections to PostgreSQL (tls_verify and
// tls_server_ca_certificate); null when tls_verify is disabled. The CA file, when set, is
// loaded even then, so that a wrong path is found before anything depends on it.
config::Result<TlsContext> connect_context(const config::Config& config);

// Both, for configcheck: the first error, if any.
config::Result<void> check_tls(const config::Config& config);

}  // namespace pgdog::net
