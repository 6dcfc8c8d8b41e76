#include "net/tls.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace pgdog::net {

namespace {

constexpr auto kOptions = asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                          asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                          asio::ssl::context::no_tlsv1_1;

config::Error error(const config::Config& c, const char* key, const std::string& message) {
  return config::Error{c.config_path, 0, std::string("general.") + key, message};
}

// OpenSSL's reasons for a missing file are vague ("system lib"): say it plainly first.
std::string unreadable(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return std::strerror(errno);
  std::fclose(f);
  return {};
}

// Loads `path` with `load`; the error names `key` and the file.
template <class Load>
std::optional<config::Error> load_file(const config::Config& c, const char* key,
                                       const std::string& path, const char* what, Load load) {
  if (auto why = unreadable(path); !why.empty()) {
    return error(c, key, "cannot read " + std::string(what) + " " + path + ": " + why);
  }
  error_code ec;
  load(path, ec);
  if (ec) {
    return error(c, key, "cannot load " + std::string(what) + " " + path + ": " + ec.message());
  }
  return std::nullopt;
}

}  // namespace

config::Result<TlsContext> accept_context(const config::Config& c) {
  const auto& g = c.general;
  if (!g.tls_certificate || !g.tls_private_key) return TlsContext{};
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  ctx->set_options(kOptions);
  auto e = load_file(
      c, "tls_certificate", *g.tls_certificate, "the certificate",
      [&](const std::string& p, error_code& ec) { ctx->use_certificate_chain_file(p, ec); });
  if (e) return *e;
  // OpenSSL checks the key against the certificate as it loads it ("key values mismatch").
  e = load_file(c, "tls_private_key", *g.tls_private_key, "the private key",
                [&](const std::string& p, error_code& ec) {
                  ctx->use_private_key_file(p, asio::ssl::context::pem, ec);
                });
  if (e) return *e;
  return ctx;
}

config::Result<TlsContext> connect_context(const config::Config& c) {
  const auto& g = c.general;
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  ctx->set_options(kOptions);
  if (g.tls_server_ca_certificate) {
    auto e = load_file(c, "tls_server_ca_certificate", *g.tls_server_ca_certificate,
                       "the CA certificate",
                       [&](const std::string& p, error_code& ec) { ctx->load_verify_file(p, ec); });
    if (e) return *e;
  }
  if (g.tls_verify == config::TlsVerify::disabled) return TlsContext{};
  const bool verify = g.tls_verify == config::TlsVerify::verify_ca ||
                      g.tls_verify == config::TlsVerify::verify_full;
  if (verify) {
    if (!g.tls_server_ca_certificate) ctx->set_default_verify_paths();
    ctx->set_verify_mode(asio::ssl::verify_peer);
  } else {
    ctx->set_verify_mode(asio::ssl::verify_none);
  }
  return ctx;
}

config::Result<void> check_tls(const config::Config& c) {
  if (auto a = accept_context(c); !a) return a.error();
  if (auto b = connect_context(c); !b) return b.error();
  return {};
}

}  // namespace pgdog::net
