#include "frontend/cutover.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <functional>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "frontend/app.hpp"
#include "stats/admin_text.hpp"

namespace pgdog::frontend {

namespace {

using Clock = std::chrono::steady_clock;
using backend::ServerConnection;

// ------------------------------------------------------------------------------- parsing

std::vector<std::string> words(std::string_view sql, std::string& error) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < sql.size()) {
    const char c = sql[i];
    if (std::isspace(static_cast<unsigned char>(c)) || c == ';') {
      ++i;
    } else if (c == '"') {
      std::string w;
      for (++i;; ++i) {
        if (i >= sql.size()) {
          error = "unterminated quoted name";
          return {};
        }
        if (sql[i] == '"' && i + 1 < sql.size() && sql[i + 1] == '"') {
          w += '"';
          ++i;
        } else if (sql[i] == '"') {
          ++i;
          break;
        } else {
          w += sql[i];
        }
      }
      out.push_back(std::move(w));
    } else {
      const auto start = i;
      while (i < sql.size() && !std::isspace(static_cast<unsigned char>(sql[i])) && sql[i] != ';')
        ++i;
      out.emplace_back(sql.substr(start, i - start));
    }
  }
  return out;
}

bool keyword(const std::string& word, std::string_view kw) {
  return std::equal(word.begin(), word.end(), kw.begin(), kw.end(),
                    [](char a, char b) { return std::toupper(static_cast<unsigned char>(a)) == b; });
}

// ------------------------------------------------------------------------------- the steps

struct Failure {
  std::string step;
  std::string error;
};

Task<void> pause_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(use_nothrow);
}

// Polls `done` every 5 ms until it holds (true) or the deadline passes (false).
Task<bool> wait_until(std::function<bool()> done, Clock::time_point deadline) {
  bool ok = done();
  while (!ok && Clock::now() < deadline) {
    co_await pause_for(std::chrono::milliseconds(5));
    ok = done();
  }
  co_return ok;
}

int active_servers(const std::vector<std::shared_ptr<backend::Pool>>& pools) {
  int n = 0;
  for (const auto& p : pools)
    n += p->state().active;
  return n;
}

std::string literal(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

std::string identifier(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// The record this cluster carries now (read from the catalog: current_setting would give the
// value as of the session's login), or nullopt; `error` set when it cannot be read.
Task<std::optional<std::string>> read_record(ServerConnection& s, std::string& error) {
  ServerConnection::Row row;
  auto r = co_await s.execute(
      "SELECT substr(c, length('pgdog.cutover=') + 1) FROM pg_db_role_setting r, "
      "unnest(r.setconfig) c WHERE r.setrole = 0 AND r.setdatabase = (SELECT oid FROM "
      "pg_database WHERE datname = current_database()) AND c LIKE 'pgdog.cutover=%'",
      &row);
  if (!r) {
    error = r.error().to_string();
    co_return std::nullopt;
  }
  if (row.empty() || !row[0]) co_return std::nullopt;
  co_return *row[0];
}

Task<bool> write_record(ServerConnection& s, const std::optional<std::string>& value,
                        std::string& error) {
  const std::string sql = "ALTER DATABASE " + identifier(s.address().database) +
                          (value ? " SET pgdog.cutover = " + literal(*value)
                                 : std::string(" RESET pgdog.cutover"));
  auto r = co_await s.execute(sql);
  if (!r) error = r.error().to_string();
  co_return static_cast<bool>(r);
}

// Ends the sessions of pgdog's server users on the old primary, but this one: another pgdog
// instance's next connection there reads the record and follows.
Task<bool> end_other_sessions(ServerConnection& s, const std::vector<std::string>& users,
                              std::string& error) {
  std::string list;
  for (const auto& u : users)
    list += (list.empty() ? "" : ", ") + literal(u);
  ServerConnection::Row row;
  auto r = co_await s.execute(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
      "current_database() AND pid <> pg_backend_pid() AND usename IN (" +
          list + ")",
      &row);
  if (!r) error = r.error().to_string();
  else if (!row.empty() && row[0] && *row[0] != "0")
    spdlog::info("cutover: ended {} sessions on the old primary", *row[0]);
  co_return static_cast<bool>(r);
}

Task<backend::Result<std::unique_ptr<ServerConnection>>> connect_to(const backend::ServerAddress& address,
                                                           const config::Config& c) {
  auto ex = co_await asio::this_coro::executor;
  co_return co_await ServerConnection::connect(ex, address, c.general.connect_timeout,
                                               c.general.max_message_size);
}

std::uint64_t generation_of(const std::optional<std::string>& record) {
  if (!record) return 0;
  auto r = parse_record(*record);
  return r ? r->generation : 0;
}

// The state after the swap of `database` with `peer`: a swap, or the swap undone.
std::optional<config::CutoverEntry> next_entry(const config::CutoverState& state,
                                               const config::Config& c,
                                               const std::string& database,
                                               const std::string& peer, std::uint64_t generation,
                                               std::string& error) {
  const auto* e = state.find(database);
  config::CutoverEntry n;
  n.database = database;
  n.peer = peer;
  n.generation = generation;
  n.at = stats::iso_time(std::chrono::system_clock::now());
  if (e != nullptr && e->swapped && e->peer != peer) {
    error = "database \"" + database + "\" is served by \"" + e->peer +
            "\" since an earlier cutover: cut over to \"" + e->peer + "\" first (the way back)";
    return std::nullopt;
  }
  if (e != nullptr && e->swapped) {
    n.swapped = false;
    n.configured = e->configured;
    n.serving = e->configured;
  } else {
    n.swapped = true;
    n.configured = config::endpoint(*c.find_database(database));
    n.serving = config::endpoint(*c.find_database(peer));
  }
  return n;
}

// What both kinds of cutover share once the target is known: hold, drain, (record), swap.
class Procedure {
 public:
  Procedure(App& app, std::string database, std::string peer, stats::CutoverEvent& event)
      : app_(app),
        config_(app.config()),
        database_(std::move(database)),
        peer_(std::move(peer)),
        event_(event),
        deadline_(Clock::now() + config_->general.cutover_timeout),
        pools_(app.pools_of(database_)) {}

  // Holds new transactions and waits for the running ones.
  Task<std::optional<Failure>> hold() {
    held_at_ = Clock::now();
    for (auto& p : pools_)
      p->pause();
    const bool quiet =
        co_await wait_until([this] { return active_servers(pools_) == 0; }, deadline_);
    if (quiet) co_return std::nullopt;
    co_return Failure{"transactions",
                      std::to_string(active_servers(pools_)) + " server connections of \"" +
                          database_ + "\" still in use after cutover_timeout (" +
                          std::to_string(config_->general.cutover_timeout.count()) +
                          " ms): running transactions, or session-mode and pinned clients, "
                          "which keep theirs"};
  }

  Task<std::optional<Failure>> drain() {
    auto mirror = app_.mirror_of(database_, peer_);
    if (!mirror) co_return std::nullopt;
    const bool empty =
        co_await wait_until([&] { return mirror->queue().size() == 0; }, deadline_);
    if (empty) co_return std::nullopt;
    co_return Failure{"mirror queue", std::to_string(mirror->queue().size()) +
                                          " transactions still queued or replaying on \"" +
                                          peer_ + "\" after cutover_timeout"};
  }

  // Writes the state file, then applies the swap.
  std::optional<Failure> swap(std::uint64_t generation) {
    std::string error;
    auto state = app_.cutover_state();
    auto entry = next_entry(state, *config_, database_, peer_, generation, error);
    if (!entry) return Failure{"swap", error};
    state.put(*entry);
    if (auto saved = app_.save_cutover_state(state); !saved)
      return Failure{"swap", "cannot write the cutover state: " + saved.error().to_string()};
    app_.apply_cutover(database_, peer_);
    return std::nullopt;
  }

  void release() {
    if (released_) return;
    released_ = true;
    for (auto& p : pools_)
      p->resume();
    if (held_at_ != Clock::time_point{})
      event_.held_seconds = std::chrono::duration<double>(Clock::now() - held_at_).count();
  }

  bool out_of_time() const { return Clock::now() >= deadline_; }
  const std::vector<std::shared_ptr<backend::Pool>>& pools() const { return pools_; }
  const config::Config& config() const { return *config_; }

 private:
  App& app_;
  std::shared_ptr<const config::Config> config_;
  std::string database_;
  std::string peer_;
  stats::CutoverEvent& event_;
  Clock::time_point deadline_;
  std::vector<std::shared_ptr<backend::Pool>> pools_;
  Clock::time_point held_at_{};
  bool released_ = false;
};

// The mirror CUTOVER goes to: the one named, or the only one.
std::optional<std::string> choose_peer(const config::Config& c, const CutoverCommand& cmd,
                                       std::string& error) {
  if (c.find_database(cmd.database) == nullptr) {
    error = "no database \"" + cmd.database + "\" in the configuration";
    return std::nullopt;
  }
  std::vector<std::string> mirrors;
  for (const auto& m : c.mirroring)
    if (m.source_db == cmd.database) mirrors.push_back(m.destination_db);
  if (cmd.to) {
    if (std::find(mirrors.begin(), mirrors.end(), *cmd.to) != mirrors.end()) return *cmd.to;
    error = "\"" + *cmd.to + "\" is not a mirror of \"" + cmd.database + "\"";
    return std::nullopt;
  }
  if (mirrors.size() == 1) return mirrors.front();
  error = mirrors.empty() ? "database \"" + cmd.database + "\" has no mirror to cut over to"
                          : "database \"" + cmd.database + "\" has " +
                                std::to_string(mirrors.size()) +
                                " mirrors: say which, CUTOVER " + cmd.database + " TO <mirror>";
  return std::nullopt;
}

std::optional<std::string> not_ready(App& app, const std::string& peer) {
  for (const auto& v : app.readiness()) {
    if (v.cluster != peer) continue;
    if (v.ready) return std::nullopt;
    std::string why;
    for (const auto& c : v.criteria)
      if (!c.ok) why += (why.empty() ? "" : "; ") + c.reason;
    return "mirror \"" + peer + "\" is not ready: " + why + " (FORCE skips this check)";
  }
  return "mirror \"" + peer + "\" has no readiness verdict yet";
}

// The server users of the database's pools: whose sessions on the old primary are ended.
std::vector<std::string> server_users(const std::vector<std::shared_ptr<backend::Pool>>& pools) {
  std::vector<std::string> users;
  for (const auto& p : pools) {
    auto u = p->settings().address.user;
    if (std::find(users.begin(), users.end(), u) == users.end()) users.push_back(std::move(u));
  }
  return users;
}

// Records the cutover on both clusters and ends the other sessions on the old primary; on
// failure, puts back what it wrote. The generation is above every one either cluster knows.
class Recording {
 public:
  Recording(App& app, const Procedure& proc, std::string database, std::string peer)
      : app_(app), proc_(proc), database_(std::move(database)), peer_(std::move(peer)) {}

  Task<std::optional<Failure>> connect() {
    const auto& pools = proc_.pools();
    if (pools.empty()) co_return Failure{"record", "no pool serves \"" + database_ + "\""};
    const std::string user = pools.front()->user();
    old_address_ = pools.front()->settings().address;
    auto new_address = app_.server_address(user, peer_);
    if (!new_address) co_return Failure{"record", "no credentials for " + user + " on " + peer_};
    auto a = co_await connect_to(old_address_, proc_.config());
    if (!a) co_return Failure{"record", "old primary: " + a.error().to_string()};
    auto b = co_await connect_to(*new_address, proc_.config());
    if (!b) co_return Failure{"record", "new primary: " + b.error().to_string()};
    old_ = std::move(*a);
    new_ = std::move(*b);
    std::string error;
    old_record_ = co_await read_record(*old_, error);
    if (error.empty()) new_record_ = co_await read_record(*new_, error);
    if (!error.empty()) co_return Failure{"record", "cannot read the cluster record: " + error};
    co_return std::nullopt;
  }

  std::uint64_t next_generation() const {
    return std::max({app_.cutover_generation(database_), generation_of(old_record_),
                     generation_of(new_record_)}) +
           1;
  }

  Task<std::optional<Failure>> write(std::uint64_t generation) {
    std::string error;
    const auto retired = to_string(CutoverRecord{generation, true, database_, peer_});
    const auto serving = to_string(CutoverRecord{generation, false, database_, peer_});
    const bool a = co_await write_record(*old_, retired, error);
    if (!a) co_return Failure{"record", "old primary: " + error};
    const bool b = co_await write_record(*new_, serving, error);
    if (!b) {
      co_await undo_old();
      co_return Failure{"record", "new primary: " + error};
    }
    const bool ended = co_await end_other_sessions(*old_, server_users(proc_.pools()), error);
    if (!ended) {
      co_await undo();
      co_return Failure{"record", "ending other sessions on the old primary: " + error};
    }
    co_return std::nullopt;
  }

  Task<void> undo() {
    std::string ignored;
    co_await write_record(*new_, new_record_, ignored);
    co_await undo_old();
  }

 private:
  Task<void> undo_old() {
    std::string ignored;
    co_await write_record(*old_, old_record_, ignored);
  }

  App& app_;
  const Procedure& proc_;
  std::string database_;
  std::string peer_;
  backend::ServerAddress old_address_;
  std::unique_ptr<ServerConnection> old_;
  std::unique_ptr<ServerConnection> new_;
  std::optional<std::string> old_record_;
  std::optional<std::string> new_record_;
};

stats::CutoverEvent begin_event(App& app, const std::string& database, const std::string& peer) {
  stats::CutoverEvent e;
  e.at = std::chrono::system_clock::now();
  e.database = database;
  auto c = app.config();
  if (const auto* db = c->find_database(database)) e.from = config::endpoint(*db);
  if (const auto* p = c->find_database(peer)) e.to = config::endpoint(*p);
  return e;
}

void fail(stats::CutoverEvent& e, stats::CutoverResult result, Failure f) {
  e.result = result;
  e.step = std::move(f.step);
  e.error = std::move(f.error);
}

void finish(App& app, const stats::CutoverEvent& e) {
  if (e.result == stats::CutoverResult::ok) {
    spdlog::info("cutover of {}{}: now served by {} (was {}), generation {}, clients held {:.3f} s",
                 e.database, e.followed ? " (made by another pgdog instance)" : "", e.to, e.from,
                 e.generation, e.held_seconds);
  } else {
    spdlog::error("cutover of {} {} at step \"{}\": {}; {} still serves it", e.database,
                  stats::to_string(e.result), e.step, e.error, e.from);
  }
  app.cutovers().add(e);
}

// The steps after the readiness check; `event` gets the outcome.
Task<void> cut_over(App& app, Procedure& proc, const std::string& database,
                    const std::string& peer, stats::CutoverEvent& event) {
  auto failure = co_await proc.hold();
  if (!failure) failure = co_await proc.drain();
  Recording recording(app, proc, database, peer);
  if (!failure) failure = co_await recording.connect();
  if (!failure) {
    event.generation = recording.next_generation();
    failure = co_await recording.write(event.generation);
    if (!failure && proc.out_of_time()) {
      co_await recording.undo();
      failure = Failure{"record", "cutover_timeout passed while recording"};
    }
  }
  if (!failure) {
    failure = proc.swap(event.generation);
    if (failure) co_await recording.undo();
  }
  proc.release();
  if (failure) fail(event, stats::CutoverResult::failed, std::move(*failure));
}

Task<void> follow(App& app, std::string database, CutoverRecord record) {
  const auto deadline = Clock::now() + app.config()->general.cutover_timeout;
  const bool mine = co_await wait_until([&] { return app.begin_cutover(); }, deadline);
  auto pools = app.pools_of(database);
  if (!mine) {
    for (auto& p : pools)
      p->fail(backend::Failure::from(
          backend::Error::server_error,
          "database \"" + database + "\" was cut over by another pgdog instance and another "
          "cutover is still running here; try again",
          "57P03"));
    co_return;
  }
  if (app.cutover_generation(database) >= record.generation) {
    for (auto& p : pools)
      p->resume();  // followed already, by another connection's vetting
    app.end_cutover();
    co_return;
  }
  auto event = begin_event(app, database, record.peer);
  event.followed = true;
  event.generation = record.generation;
  if (app.config()->find_database(record.peer) == nullptr) {
    fail(event, stats::CutoverResult::failed,
         {"swap", "the cluster now serving it, \"" + record.peer +
                      "\", is not in this instance's configuration"});
  } else {
    Procedure proc(app, database, record.peer, event);
    auto failure = co_await proc.hold();
    if (!failure) failure = co_await proc.drain();
    if (!failure) failure = proc.swap(record.generation);
    proc.release();
    if (failure) fail(event, stats::CutoverResult::failed, std::move(*failure));
  }
  if (event.result != stats::CutoverResult::ok) {
    for (auto& p : pools)
      p->fail(backend::Failure::from(backend::Error::server_error,
                                     "database \"" + database +
                                         "\" was cut over by another pgdog instance and this "
                                         "one could not follow: " + event.error,
                                     "57P03"));
  }
  finish(app, event);
  app.end_cutover();
}

}  // namespace

std::optional<CutoverCommand> parse_cutover(std::string_view sql, std::string& error) {
  auto w = words(sql, error);
  if (!error.empty()) return std::nullopt;
  if (w.empty() || !keyword(w[0], "CUTOVER")) {
    error = "not a CUTOVER command";
    return std::nullopt;
  }
  CutoverCommand cmd;
  std::size_t i = 1;
  if (i >= w.size()) {
    error = "CUTOVER needs a database: CUTOVER <database> [TO <mirror>] [FORCE]";
    return std::nullopt;
  }
  cmd.database = w[i++];
  if (i + 1 < w.size() && keyword(w[i], "TO")) {
    cmd.to = w[i + 1];
    i += 2;
  }
  if (i < w.size() && keyword(w[i], "FORCE")) {
    cmd.force = true;
    ++i;
  }
  if (i != w.size()) {
    error = "unexpected \"" + w[i] + "\": CUTOVER <database> [TO <mirror>] [FORCE]";
    return std::nullopt;
  }
  return cmd;
}

std::string to_string(const CutoverRecord& r) {
  return std::to_string(r.generation) + (r.retired ? " retired " : " serving ") + r.database +
         " " + r.peer;
}

std::optional<CutoverRecord> parse_record(std::string_view text) {
  std::string error;
  auto w = words(text, error);
  if (!error.empty() || w.size() != 4) return std::nullopt;
  CutoverRecord r;
  const auto& g = w[0];
  const auto [end, ec] = std::from_chars(g.data(), g.data() + g.size(), r.generation);
  if (ec != std::errc() || end != g.data() + g.size()) return std::nullopt;
  if (w[1] == "retired") {
    r.retired = true;
  } else if (w[1] != "serving") {
    return std::nullopt;
  }
  r.database = w[2];
  r.peer = w[3];
  return r;
}

Task<stats::CutoverEvent> run_cutover(App& app, CutoverCommand command) {
  std::string error;
  auto peer = choose_peer(*app.config(), command, error);
  auto event = begin_event(app, command.database, peer.value_or(""));
  if (!peer) {
    fail(event, stats::CutoverResult::refused, {"target", error});
  } else if (auto why = command.force ? std::nullopt : not_ready(app, *peer)) {
    fail(event, stats::CutoverResult::refused, {"readiness", *why});
  } else if (!app.begin_cutover()) {
    fail(event, stats::CutoverResult::refused, {"start", "another cutover is running"});
  } else {
    Procedure proc(app, command.database, *peer, event);
    co_await cut_over(app, proc, command.database, *peer, event);
    app.end_cutover();
  }
  finish(app, event);
  co_return event;
}

Task<bool> vet_server(App& app, std::string database, ServerConnection& server) {
  ServerConnection::Row row;
  auto r = co_await server.execute(kReadRecordSql, &row);
  if (!r || row.empty() || !row[0]) co_return true;
  auto record = parse_record(*row[0]);
  if (!record || !record->retired || record->database != database) co_return true;
  if (record->generation <= app.cutover_generation(database)) co_return true;
  spdlog::warn("database {}: {} was retired by a cutover made by another pgdog instance "
               "(generation {}); following it to {}",
               database, server.address().to_string(), record->generation, record->peer);
  // Held before this connection is refused, so that no checkout meanwhile fails or gets a
  // server of the retired cluster; follow() resumes or fails them.
  for (auto& p : app.pools_of(database))
    p->pause();
  asio::co_spawn(app.io_executor(), follow(app, database, *record), asio::detached);
  co_return false;
}

}  // namespace pgdog::frontend
