#pragma once

// The proxy in-process for component tests of the client session: a frontend::App on the test's
// io_context, with one database (appdb, user bob, trust) served by a ScriptedServer, and raw
// protocol clients driven from the same io_context. One thread runs the server, the proxy, the
// clients and the assertions (support/run.hpp): tests wait for states, never for time.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "frontend/app.hpp"
#include "support/run.hpp"
#include "support/scripted_server.hpp"
#include "support/wire.hpp"

namespace pgdog::test {

// A small model of PostgreSQL behind the proxy, one transaction state per connection. Queries:
// "BEGIN" opens a block ('T'); "COMMIT" and "ROLLBACK" end it ('I'; COMMIT of a failed block
// answers ROLLBACK); "FAIL" is an ERROR, which fails an open block ('E'), where every query but
// COMMIT and ROLLBACK then fails with 25P02; "HOLD" gets no answer (the test answers with
// ScriptedServer::send); "CRASH" resets the connection; "COPY ..." starts COPY FROM STDIN
// (CopyData gets nothing, CopyDone "COPY <n>"); anything else one row. Parse, Bind and Execute
// are answered at once, Flush and Describe not at all, Sync with ReadyForQuery.
inline Script fake_postgres() {
  struct Session {
    char status = 'I';
    int rows = 0;  // CopyData received in the current COPY
  };
  auto sessions = std::make_shared<std::map<std::size_t, Session>>();
  auto query = [](Session& s, std::string_view sql) -> Reply {
    if (sql == "HOLD") return Reply::none();
    if (sql == "CRASH") return Reply::reset();
    if (sql.starts_with("COPY")) return Reply::send(wire::copy_in_response());
    if (sql == "COMMIT" || sql == "ROLLBACK") {
      const bool failed = s.status == 'E';
      s.status = 'I';
      return Reply::send(wire::complete(failed ? "ROLLBACK" : sql) + wire::ready('I'));
    }
    if (s.status == 'E') {
      return Reply::send(wire::error("25P02", "ERROR", "current transaction is aborted") +
                         wire::ready('E'));
    }
    if (sql == "BEGIN") {
      s.status = 'T';
      return Reply::send(wire::complete("BEGIN") + wire::ready('T'));
    }
    if (sql == "FAIL") {
      if (s.status == 'T') s.status = 'E';
      return Reply::send(wire::error("42P01") + wire::ready(s.status));
    }
    if (sql == "DISCARD ALL") return Reply::send(wire::complete("DISCARD ALL") + wire::ready('I'));
    return Reply::send(wire::select_answer("1", s.status));
  };
  return [sessions, query](const Message& m) -> Reply {
    auto& s = (*sessions)[m.connection];
    switch (m.type) {
      case 'Q':
        return query(s, std::string_view(m.body).substr(0, m.body.find('\0')));
      case 'P':
        return Reply::send(wire::parse_complete());
      case 'B':
        return Reply::send(wire::bind_complete());
      case 'E':
        return Reply::send(wire::data_row("1") + wire::complete("SELECT 1"));
      case 'S':
        return Reply::send(wire::ready(s.status));
      case 'd':
        ++s.rows;
        return Reply::none();
      case 'c':
        return Reply::send(wire::complete("COPY " + std::to_string(std::exchange(s.rows, 0))) +
                           wire::ready(s.status));
      case 'X':
        return {{}, {}, Reply::Then::close};
      default:
        return Reply::none();
    }
  };
}

// What connection `i` received after its startup packet: the message types ("QQS") and the SQL
// of its queries.
inline std::string types_received(const ScriptedServer& server, std::size_t i) {
  std::string out;
  for (const auto& m : server.received(i)) {
    if (m.type != 0) out.push_back(m.type);
  }
  return out;
}

inline std::vector<std::string> queries(const ScriptedServer& server, std::size_t i) {
  std::vector<std::string> out;
  for (const auto& m : server.received(i)) {
    if (m.type == 'Q') out.push_back(m.body.substr(0, m.body.find('\0')));
  }
  return out;
}

struct ProxyOptions {
  config::PoolerMode mode = config::PoolerMode::transaction;
  int pool_size = 1;
};

// pgdog.toml and users.toml as an operator would write them, through the config loader.
inline config::Config proxy_config(std::uint16_t server_port, const ProxyOptions& o) {
  // checkout_timeout is longer than any deadline: a client left waiting fails the test.
  std::string pgdog_toml = R"([general]
host = "127.0.0.1"
port = 6432
auth_type = "trust"
min_pool_size = 0
tls_verify = "disabled"
checkout_timeout = 60000
)";
  pgdog_toml += "pooler_mode = \"" + std::string(config::to_string(o.mode)) + "\"\n";
  pgdog_toml += "default_pool_size = " + std::to_string(o.pool_size) + "\n";
  pgdog_toml += "[[databases]]\nname = \"appdb\"\nhost = \"127.0.0.1\"\n";
  pgdog_toml += "port = " + std::to_string(server_port) + "\n";
  const std::string users_toml = R"([[users]]
name = "bob"
database = "appdb"
)";
  auto c = config::parse(pgdog_toml, users_toml).value();
  // A port of the system's choice, which the loader rightly refuses from an operator.
  c.general.port = 0;
  return c;
}

// The proxy, listening on a port of the system's choice.
class Proxy {
 public:
  Proxy(asio::io_context& io, const ScriptedServer& server, const ProxyOptions& options = {})
      : io_(io), app_(io, proxy_config(server.port(), options)) {
    app_.start();
  }
  // The test's clients are gone by now: their sessions end on their own, and whatever is left
  // (a session stuck because the test failed) is closed.
  ~Proxy() {
    run_until(
        io_, [&] { return app_.clients().size() == 0; }, std::chrono::seconds(5));
    app_.shutdown(false);
    run_until(
        io_, [&] { return io_.stopped(); }, std::chrono::seconds(5));
  }
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  std::uint16_t port() const { return app_.port(); }
  frontend::App& app() { return app_; }
  backend::PoolState pool() const { return app_.find_user("bob", "appdb")->pool->state(); }
  // The row SHOW POOLS and /metrics show for appdb: its clients by state as well.
  stats::PoolSample sample() const {
    for (auto& s : app_.pool_samples()) {
      if (s.database == "appdb") return s;
    }
    return {};
  }

 private:
  asio::io_context& io_;
  frontend::App app_;
};

struct Frame {
  char type = 0;
  std::string body;
};

inline std::string types(const std::vector<Frame>& frames) {
  std::string out;
  for (const auto& f : frames)
    out.push_back(f.type);
  return out;
}

// The SQLSTATE and severity of an ErrorResponse, "severity/code".
inline std::string error_of(const Frame& f) {
  if (f.type != 'E') return std::string("not an error: ") + f.type;
  auto e = protocol::decode_error(f.body);
  if (!e) return "undecodable error";
  return std::string(e->severity) + "/" + std::string(e->code);
}

// A client speaking the protocol byte by byte: reads whatever the proxy sends as it arrives.
class Client {
 public:
  Client(asio::io_context& io, std::uint16_t port) : io_(io), state_(std::make_shared<State>(io)) {
    state_->socket.connect({asio::ip::make_address("127.0.0.1"), port});
    read_more(state_);
  }
  ~Client() {
    if (state_) close();
  }
  Client(Client&&) noexcept = default;
  Client& operator=(Client&&) = delete;

  // StartupMessage, then everything up to ReadyForQuery, with AuthenticationOk and no error.
  bool login() {
    send(wire::startup("bob", "appdb"));
    auto frames = until('Z');
    if (!frames) return false;
    const auto t = types(*frames);
    return t.starts_with('R') && t.find('E') == std::string::npos;
  }

  // Written in one write.
  void send(std::string_view bytes) {
    auto done = std::make_shared<bool>(false);
    auto data = std::make_shared<std::string>(bytes);
    asio::async_write(state_->socket, asio::buffer(*data),
                      [done, data](error_code, std::size_t) { *done = true; });
    run_until(io_, [&] { return *done; });
  }

  // Waits for a frame of `type`; the frames up to it, it included, are taken. Nothing when the
  // connection ends or the deadline passes first.
  std::optional<std::vector<Frame>> until(char type) {
    std::optional<std::size_t> end;
    const bool seen = run_until(io_, [&] {
      const auto frames = pending();
      for (std::size_t i = 0; i < frames.size(); ++i) {
        if (frames[i].type == type) {
          end = i + 1;
          return true;
        }
      }
      return state_->eof;
    });
    if (!seen || !end) return std::nullopt;
    auto frames = pending();
    frames.resize(*end);
    std::size_t bytes = 0;
    for (const auto& f : frames)
      bytes += 5 + f.body.size();
    state_->in.erase(0, bytes);
    return frames;
  }

  // A simple query and its answer, up to ReadyForQuery.
  std::optional<std::vector<Frame>> query(std::string_view sql) {
    send(wire::query(sql));
    return until('Z');
  }

  // The whole frames received and not taken yet.
  std::vector<Frame> pending() const {
    std::vector<Frame> out;
    std::string_view in = state_->in;
    while (auto f = protocol::next_frame(in, 1 << 30)) {
      out.push_back({f->type, std::string(f->body)});
      in.remove_prefix(f->size());
    }
    return out;
  }

  // Waits until the proxy has closed the connection.
  bool wait_closed() {
    return run_until(io_, [&] { return state_->eof; });
  }

  void close() {
    error_code ec;
    state_->socket.close(ec);
  }

 private:
  struct State {
    explicit State(asio::io_context& io) : socket(io) {}
    tcp::socket socket;
    std::string in;
    std::array<char, 4096> chunk{};
    bool eof = false;
  };

  static void read_more(std::shared_ptr<State> s) {
    auto& socket = s->socket;
    auto buffer = asio::buffer(s->chunk);
    socket.async_read_some(buffer, [s = std::move(s)](error_code ec, std::size_t n) {
      if (ec) {
        s->eof = true;
        return;
      }
      s->in.append(s->chunk.data(), n);
      read_more(s);
    });
  }

  asio::io_context& io_;
  std::shared_ptr<State> state_;
};

// A proxy in front of fake_postgres(); start() it with the options the test needs.
class ProxyTest : public ::testing::Test {
 protected:
  void start(const ProxyOptions& options = {}) {
    proxy = std::make_unique<Proxy>(io, server, options);
  }
  bool wait(const std::function<bool()>& done) { return run_until(io, done); }
  // The pool's one server is held for a client, and one other client waits for it.
  bool held_with_one_waiting() {
    return wait([&] {
      const auto st = proxy->pool();
      const auto row = proxy->sample();
      return st.active == 1 && st.idle == 0 && st.waiting == 1 && row.clients_active == 1 &&
             row.clients_waiting == 1;
    });
  }
  // The pool's one server is back, idle, and nobody waits or holds one.
  bool released() {
    return wait([&] {
      const auto st = proxy->pool();
      const auto row = proxy->sample();
      return st.active == 0 && st.idle == 1 && st.waiting == 0 && row.clients_active == 0 &&
             row.clients_waiting == 0;
    });
  }

  asio::io_context io;
  ScriptedServer server{io, {.script = fake_postgres()}};
  std::unique_ptr<Proxy> proxy;
};

}  // namespace pgdog::test
