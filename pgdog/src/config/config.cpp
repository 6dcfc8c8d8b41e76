#include "config/config.hpp"

#include <algorithm>
#include <stdexcept>
#include <type_traits>

#include <boost/throw_exception.hpp>

#include "config/keys.hpp"

namespace pgdog::config {

namespace {

// How SHOW CONFIG writes a value of each type.
std::string show(const std::string& v) {
  return v;
}
std::string show(bool v) {
  return v ? "true" : "false";
}
std::string show(Millis v) {
  return std::to_string(v.count());
}
std::string show(double v) {
  return std::to_string(v);
}
template <class N>
requires std::is_integral_v<N> std::string show(N v) {
  return std::to_string(v);
}
template <class E>
requires std::is_enum_v<E> std::string show(E v) {
  return std::string(to_string(v));
}
template <class T>
std::string show(const std::optional<T>& v) {
  return v ? show(*v) : std::string();
}

constexpr bool shown(detail::Visibility v) {
  return v == detail::Visibility::shown;
}

constexpr bool restart_only(Apply a) {
  return a == Apply::restart;
}

}  // namespace

std::string_view to_string(PoolerMode v) {
  switch (v) {
    case PoolerMode::transaction:
      return "transaction";
    case PoolerMode::session:
      return "session";
  }
  return "unknown";
}

std::string_view to_string(AuthType v) {
  switch (v) {
    case AuthType::scram:
      return "scram";
    case AuthType::md5:
      return "md5";
    case AuthType::trust:
      return "trust";
  }
  return "unknown";
}

std::string_view to_string(TlsVerify v) {
  switch (v) {
    case TlsVerify::disabled:
      return "disabled";
    case TlsVerify::prefer:
      return "prefer";
    case TlsVerify::verify_ca:
      return "verify_ca";
    case TlsVerify::verify_full:
      return "verify_full";
  }
  return "unknown";
}

std::string_view to_string(PreparedStatements v) {
  switch (v) {
    case PreparedStatements::disabled:
      return "disabled";
    case PreparedStatements::extended:
      return "extended";
  }
  return "unknown";
}

std::string_view to_string(PoolPinning v) {
  switch (v) {
    case PoolPinning::automatic:
      return "auto";
    case PoolPinning::off:
      return "off";
  }
  return "unknown";
}

std::string_view to_string(MirrorLevel v) {
  switch (v) {
    case MirrorLevel::all:
      return "all";
    case MirrorLevel::dml:
      return "dml";
    case MirrorLevel::ddl:
      return "ddl";
  }
  return "unknown";
}

std::string_view to_string(MirrorCompare v) {
  switch (v) {
    case MirrorCompare::off:
      return "off";
    case MirrorCompare::tags:
      return "tags";
    case MirrorCompare::results:
      return "results";
  }
  return "unknown";
}

const Database* Config::find_database(std::string_view name) const {
  auto it = std::find_if(databases.begin(), databases.end(),
                         [&](const Database& d) { return d.name == name; });
  return it == databases.end() ? nullptr : &*it;
}

const User* Config::find_user(std::string_view name, std::string_view database) const {
  auto it = std::find_if(users.begin(), users.end(),
                         [&](const User& u) { return u.name == name && u.database == database; });
  return it == users.end() ? nullptr : &*it;
}

int Config::pool_size(const User& user) const {
  if (user.pool_size) return *user.pool_size;
  const Database* db = find_database(user.database);
  if (db != nullptr && db->pool_size) return *db->pool_size;
  return general.default_pool_size;
}

int Config::min_pool_size(const User& user) const {
  const Database* db = find_database(user.database);
  int min = (db != nullptr && db->min_pool_size) ? *db->min_pool_size : general.min_pool_size;
  // A user may ask for a smaller pool than the database-wide minimum; the pool size wins.
  return std::min(min, pool_size(user));
}

PoolerMode Config::pooler_mode(const User& user) const {
  if (user.pooler_mode) return *user.pooler_mode;
  const Database* db = find_database(user.database);
  if (db != nullptr && db->pooler_mode) return *db->pooler_mode;
  return general.pooler_mode;
}

std::size_t Config::queue_length(const Mirroring& m) const {
  return m.queue_length.value_or(general.mirror_queue);
}

std::size_t Config::queue_bytes(const Mirroring& m) const {
  return m.queue_bytes.value_or(general.mirror_queue_bytes);
}

double Config::exposure(const Mirroring& m) const {
  return m.exposure.value_or(general.mirror_exposure);
}

Millis Config::mirror_timeout(const Mirroring& m) const {
  return m.timeout.value_or(general.mirror_timeout);
}

MirrorCompare Config::compare(const Mirroring& m) const {
  return m.compare.value_or(general.mirror_compare);
}

std::string Error::to_string() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line);
  if (!key.empty()) out += ": " + key;
  out += ": " + message;
  return out;
}

void throw_exception_from_error(const Error& error, const boost::source_location& loc) {
  boost::throw_exception(std::runtime_error(error.to_string()), loc);
}

std::vector<Setting> settings(const Config& config) {
  std::vector<Setting> out;
#define PGDOG_SHOW_KEY(key, read, apply) \
  out.push_back(Setting{#key, show(config.general.key), Apply::apply});
  PGDOG_GENERAL_KEYS(PGDOG_SHOW_KEY)
#undef PGDOG_SHOW_KEY
#define PGDOG_SHOW_KEY(key, read, visibility)                                     \
  if (shown(detail::Visibility::visibility)) {                                    \
    out.push_back(Setting{"admin." #key, show(config.admin.key), Apply::reload}); \
  }
  PGDOG_ADMIN_KEYS(PGDOG_SHOW_KEY)
#undef PGDOG_SHOW_KEY
  return out;
}

std::vector<std::string> pending_restart(const Config& running, const Config& loaded) {
  std::vector<std::string> out;
#define PGDOG_PENDING_KEY(key, read, apply)                                      \
  if (restart_only(Apply::apply) && running.general.key != loaded.general.key) { \
    out.emplace_back(#key);                                                      \
  }
  PGDOG_GENERAL_KEYS(PGDOG_PENDING_KEY)
#undef PGDOG_PENDING_KEY
  return out;
}

}  // namespace pgdog::config
