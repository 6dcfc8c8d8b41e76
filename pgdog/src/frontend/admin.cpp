#include "frontend/admin.hpp"

#include <algorithm>
#include <cctype>
#include <map>

#include <spdlog/spdlog.h>

#include "frontend/cutover.hpp"
#include "protocol/messages.hpp"
#include "stats/admin_text.hpp"
#include "stats/mirror_fields.hpp"
#include "stats/pool_stats.hpp"

namespace pgdog::frontend {

namespace {

using Row = stats::Cells;
using stats::iso_time;

// "  show   pools ; " -> "SHOW POOLS"
std::string normalize(std::string_view sql) {
  std::string out;
  bool space = false;
  for (char c : sql) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (c == ';') continue;
    if (space) out.push_back(' ');
    space = false;
    out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return out;
}

std::string str(std::uint64_t v) {
  return std::to_string(v);
}

// Clients pinned now, and how often each reason pinned one ("temp_table=2 listen=1").
void append_pins(const stats::PoolCounters& c, Row& row) {
  row.push_back(std::to_string(std::max<std::int64_t>(0, c.pinned.load(std::memory_order_relaxed))));
  std::string pins;
  for (std::size_t i = 0; i < stats::kPinReasons.size(); ++i) {
    const auto n = c.pins[i].load(std::memory_order_relaxed);
    if (n == 0) continue;
    if (!pins.empty()) pins += ' ';
    pins += std::string(stats::kPinReasons[i]) + "=" + std::to_string(n);
  }
  row.push_back(std::move(pins));
}

AdminResult show_pools(App& app) {
  AdminResult r{
      {"database", "user", "cl_active", "cl_waiting", "cl_idle", "sv_active", "sv_idle", "sv_login",
       "maxwait", "maxwait_us", "pool_mode", "pool_size", "min_pool_size", "paused"},
      {},
      "SHOW"};
  for (auto& c : stats::counter_columns(stats::PoolCommand::pools))
    r.columns.push_back(std::move(c));
  r.columns.push_back("cl_pinned");
  r.columns.push_back("pins");
  // Client states per pool, counted in one pass over the clients.
  std::map<std::pair<std::string, std::string>, std::array<int, 3>> clients;
  for (const auto& c : app.clients().list()) {
    auto& counts = clients[{c->database(), c->user()}];
    switch (c->state.load(std::memory_order_relaxed)) {
      case ClientState::active:
        ++counts[0];
        break;
      case ClientState::waiting:
        ++counts[1];
        break;
      case ClientState::idle:
        ++counts[2];
        break;
      case ClientState::login:
        break;
    }
  }
  for (const auto& pool : app.pools()) {
    const auto st = pool->state();
    const auto counts = clients[{pool->database(), pool->user()}];
    Row row{pool->database(),
            pool->user(),
            std::to_string(counts[0]),
            std::to_string(counts[1]),
            std::to_string(counts[2]),
            std::to_string(st.active),
            std::to_string(st.idle),
            std::to_string(st.connecting),
            str(st.max_wait_us / 1'000'000),
            str(st.max_wait_us % 1'000'000),
            std::string(config::to_string(st.mode)),
            std::to_string(st.size),
            std::to_string(st.min_size),
            st.paused ? "yes" : "no"};
    const auto counters = pool->shared_counters();
    stats::append_counter_cells(stats::PoolCommand::pools, *counters, row);
    append_pins(*counters, row);
    r.rows.push_back(std::move(row));
  }
  return r;
}

AdminResult show_clients(App& app) {
  AdminResult r{{"id", "user", "database", "state", "addr", "connect_time", "application_name",
                 "transactions", "queries"},
                {},
                "SHOW"};
  auto clients = app.clients().list();
  std::sort(clients.begin(), clients.end(), [](auto& a, auto& b) { return a->id < b->id; });
  for (const auto& c : clients) {
    r.rows.push_back(Row{str(c->id), c->user(), c->database(),
                         std::string(to_string(c->state.load(std::memory_order_relaxed))),
                         c->address, iso_time(c->connected_at), c->application_name(),
                         str(c->transactions.load()), str(c->queries.load())});
  }
  return r;
}

AdminResult show_servers(App& app) {
  AdminResult r{{"id", "database", "user", "state", "addr", "port", "remote_pid", "connect_time",
                 "age_seconds"},
                {},
                "SHOW"};
  const auto now_sys = std::chrono::system_clock::now();
  const auto now = backend::Clock::now();
  for (const auto& pool : app.pools()) {
    for (const auto& s : pool->servers()) {
      const auto age = now - s.created_at;
      r.rows.push_back(Row{
          str(s.id), pool->database(), pool->user(), s.active ? "active" : "idle", s.host,
          std::to_string(s.port), std::to_string(s.remote_pid),
          iso_time(now_sys - std::chrono::duration_cast<std::chrono::system_clock::duration>(age)),
          str(static_cast<std::uint64_t>(
              std::chrono::duration_cast<std::chrono::seconds>(age).count()))});
    }
  }
  return r;
}

AdminResult show_stats(App& app) {
  AdminResult r{{"database", "user"}, {}, "SHOW"};
  for (auto& c : stats::counter_columns(stats::PoolCommand::stats))
    r.columns.push_back(std::move(c));
  r.columns.emplace_back("avg_query_time");
  for (const auto& pool : app.pools()) {
    const auto counters = pool->shared_counters();
    const auto& c = *counters;
    Row row{pool->database(), pool->user()};
    stats::append_counter_cells(stats::PoolCommand::stats, c, row);
    const auto queries = c.queries.load();
    row.emplace_back(str(queries ? c.query_time_us.load() / queries : 0));
    r.rows.push_back(std::move(row));
  }
  return r;
}

AdminResult show_config(App& app) {
  // As PgBouncer's `changeable`: whether a reload applies a change (else a restart does, and
  // the value the files hold meanwhile is `pending`).
  AdminResult r{{"key", "value", "pending", "changeable"}, {}, "SHOW"};
  for (auto& setting : config::settings(*app.config(), *app.on_disk())) {
    r.rows.push_back(Row{std::move(setting.key), std::move(setting.value),
                         std::move(setting.pending),
                         setting.apply == config::Apply::reload ? "yes" : "no"});
  }
  return r;
}

// A mirror removed by a reload keeps its row, with its final counts, as on /metrics and
// /mirrors: `draining` while what it was handed still replays, `removed` after.
std::string_view mirror_state(const mirror::Mirror& m) {
  if (!m.draining()) return "active";
  return m.drained() ? "removed" : "draining";
}

AdminResult show_mirrors(App& app) {
  AdminResult r{{"source", "cluster"}, {}, "SHOW"};
  for (auto& c : stats::mirror_columns())
    r.columns.push_back(std::move(c));
  for (const char* c : {"exposure", "level", "queue_length", "state"})
    r.columns.emplace_back(c);
  auto mirrors = app.mirrors();
  for (auto& m : app.removed_mirrors())
    mirrors.push_back(std::move(m));
  for (const auto& m : mirrors) {
    const auto settings = m->settings();
    Row row{settings.source, settings.destination};
    stats::append_mirror_cells(m->stats().snapshot(), row);
    row.emplace_back(stats::three_decimals(settings.exposure));
    row.emplace_back(std::string(config::to_string(settings.level)));
    row.emplace_back(std::to_string(settings.queue_length));
    row.emplace_back(std::string(mirror_state(*m)));
    r.rows.push_back(std::move(row));
  }
  return r;
}

AdminResult show_mirror_divergences(App& app) {
  AdminResult r{{"cluster", "kind", "fingerprint", "count", "last_seen"}, {}, "SHOW"};
  for (const auto& st : app.mirror_stats()) {
    for (const auto& d : st->recent_divergences()) {
      r.rows.push_back(Row{st->cluster(), std::string(stats::to_string(d.kind)), d.fingerprint,
                           str(d.count),
                           iso_time(std::chrono::system_clock::time_point(
                               std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                   std::chrono::duration<double>(d.last_seen))))});
    }
  }
  return r;
}

std::string held_ms(const stats::CutoverEvent& e) {
  return str(static_cast<std::uint64_t>(e.held_seconds * 1000.0 + 0.5));
}

AdminResult show_cutovers(App& app) {
  AdminResult r{{"at", "database", "from", "to", "generation", "origin", "held_ms", "result",
                 "step", "error"},
                {},
                "SHOW"};
  for (const auto& e : app.cutovers().events()) {
    r.rows.push_back(Row{iso_time(e.at), e.database, e.from, e.to, str(e.generation),
                         e.followed ? "followed" : "here", held_ms(e),
                         std::string(stats::to_string(e.result)), e.step, e.error});
  }
  return r;
}

// CUTOVER ...: one row on success; refused (nothing was done) is 55000, failed (nothing was
// swapped, the clients went on) is 58000, naming the step.
Task<std::optional<AdminResult>> cutover(App& app, std::string_view sql, std::string& error_code,
                                         std::string& error_message) {
  auto command = parse_cutover(sql, error_message);
  if (!command) {
    error_code = "42601";
    co_return std::nullopt;
  }
  const auto e = co_await run_cutover(app, std::move(*command));
  if (e.result != stats::CutoverResult::ok) {
    error_code = e.result == stats::CutoverResult::refused ? "55000" : "58000";
    error_message = "CUTOVER " + std::string(stats::to_string(e.result)) + " at step \"" +
                    e.step + "\": " + e.error + "; \"" + e.database + "\" is still served by " +
                    e.from;
    co_return std::nullopt;
  }
  co_return AdminResult{{"database", "from", "to", "generation", "held_ms"},
                        {Row{e.database, e.from, e.to, str(e.generation), held_ms(e)}},
                        "CUTOVER"};
}

}  // namespace

AdminSession::AdminSession(App& app, net::Stream& client, protocol::Buffer& in, ClientInfo& info)
    : app_(app), client_(client), in_(in), info_(info) {}

Task<std::optional<AdminResult>> AdminSession::execute(std::string_view sql,
                                                       std::string& error_code,
                                                       std::string& error_message) {
  const std::string cmd = normalize(sql);
  if (cmd == "SHOW POOLS") co_return show_pools(app_);
  if (cmd == "SHOW CLIENTS") co_return show_clients(app_);
  if (cmd == "SHOW SERVERS") co_return show_servers(app_);
  if (cmd == "SHOW STATS") co_return show_stats(app_);
  if (cmd == "SHOW CONFIG") co_return show_config(app_);
  if (cmd == "SHOW MIRRORS") co_return show_mirrors(app_);
  if (cmd == "SHOW MIRROR_DIVERGENCES") co_return show_mirror_divergences(app_);
  if (cmd == "SHOW VERSION")
    co_return AdminResult{{"version"}, {Row{"pgdog " PGDOG_VERSION}}, "SHOW"};
  if (cmd == "RELOAD") {
    auto r = app_.reload();
    if (!r) {
      error_code = "F0000";
      error_message =
          "reload rejected, the previous configuration stays in force: " + r.error().to_string();
      spdlog::error("{}", error_message);
      co_return std::nullopt;
    }
    co_return AdminResult{{}, {}, "RELOAD"};
  }
  if (cmd == "SHOW CUTOVERS") co_return show_cutovers(app_);
  if (cmd.starts_with("CUTOVER")) co_return co_await cutover(app_, sql, error_code, error_message);
  if (cmd == "PAUSE") {
    app_.pause();
    // Returns once every running transaction has finished; new ones wait for RESUME.
    asio::steady_timer t(co_await asio::this_coro::executor);
    while (true) {
      bool busy = false;
      for (const auto& p : app_.pools())
        busy = busy || p->state().active > 0;
      if (!busy) break;
      t.expires_after(std::chrono::milliseconds(10));
      co_await t.async_wait(use_nothrow);
    }
    co_return AdminResult{{}, {}, "PAUSE"};
  }
  if (cmd == "RESUME") {
    app_.resume();
    co_return AdminResult{{}, {}, "RESUME"};
  }
  if (cmd == "SHUTDOWN") {
    app_.shutdown(true);
    co_return AdminResult{{}, {}, "SHUTDOWN"};
  }
  error_code = "42601";
  error_message = "unsupported admin command: \"" + std::string(sql) +
                  "\"; try SHOW POOLS, SHOW CLIENTS, SHOW SERVERS, SHOW STATS, SHOW CONFIG, "
                  "SHOW MIRRORS, SHOW MIRROR_DIVERGENCES, SHOW CUTOVERS, SHOW VERSION, RELOAD, PAUSE, "
                  "RESUME, CUTOVER <database> [TO <mirror>] [FORCE] or SHUTDOWN";
  co_return std::nullopt;
}

Task<bool> AdminSession::greet() {
  std::string out;
  for (const auto& [k, v] : std::initializer_list<std::pair<const char*, const char*>>{
           {"server_version", "15.0 (pgdog " PGDOG_VERSION ")"},
           {"server_encoding", "UTF8"},
           {"client_encoding", "UTF8"},
           {"DateStyle", "ISO, MDY"},
           {"integer_datetimes", "on"},
           {"standard_conforming_strings", "on"},
           {"application_name", ""}}) {
    protocol::write_parameter_status(out, k, v);
  }
  protocol::write_backend_key_data(out, info_.process_id, info_.secret_key);
  protocol::write_ready_for_query(out, 'I');
  co_return !co_await client_.write(out);
}

Task<void> AdminSession::answer_query(std::string_view body, std::string& out) {
  auto sql = protocol::decode_query(body);
  std::string code;
  std::string message;
  std::optional<AdminResult> result;
  if (!sql) {
    code = "08P01";
    message = "malformed Query message";
  } else if (normalize(*sql).empty()) {
    protocol::write_empty_query_response(out);
  } else {
    result = co_await execute(*sql, code, message);
  }
  if (result) {
    if (!result->columns.empty()) {
      protocol::write_row_description(out, result->columns);
      for (const auto& row : result->rows)
        protocol::write_data_row(out, row);
    }
    protocol::write_command_complete(out, result->tag);
  } else if (!code.empty()) {
    protocol::write_error(out, {.code = code, .message = message});
  }
  protocol::write_ready_for_query(out, 'I');
}

Task<void> AdminSession::run() {
  if (!co_await greet()) co_return;
  info_.state.store(ClientState::idle, std::memory_order_relaxed);

  std::string out;
  bool skip_to_sync = false;
  while (true) {
    auto f = protocol::next_frame(in_.readable(), 1 << 20);
    if (!f) {
      if (f.error() != protocol::Error::need_more) {
        out.clear();
        protocol::write_error(out,
                              {.severity = "FATAL", .code = "08P01", .message = "invalid message"});
        co_await client_.write(out);
        co_return;
      }
      auto [ec, n] = co_await client_.read_some(in_.prepare(4096));
      if (ec) co_return;
      in_.commit(n);
      continue;
    }
    const char type = f->type;
    std::string body(f->body);
    in_.consume(f->size());
    out.clear();
    if (type == protocol::fe::kTerminate) co_return;
    if (type == protocol::fe::kSync) {
      skip_to_sync = false;
      protocol::write_ready_for_query(out, 'I');
    } else if (type != protocol::fe::kQuery) {
      if (!skip_to_sync) {
        protocol::write_error(
            out, {.code = "0A000",
                  .message = "the admin console only supports the simple query protocol"});
      }
      skip_to_sync = true;
    } else {
      co_await answer_query(body, out);
    }
    if (!out.empty() && co_await client_.write(out)) co_return;
  }
}

}  // namespace pgdog::frontend
