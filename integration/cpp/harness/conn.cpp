#include "harness/conn.hpp"

#include <cerrno>
#include <poll.h>
#include <regex>
#include <sys/socket.h>

#include "harness/env.hpp"

namespace pgdog::it {

namespace {

std::string field(const PGresult* r, int code) {
  const char* v = PQresultErrorField(r, code);
  return v ? v : "";
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

Result convert(PGresult* r, PGconn* conn) {
  Result out;
  if (r == nullptr) {
    out.error = PgError{"CLIENT", "", trim(PQerrorMessage(conn))};
    return out;
  }
  switch (PQresultStatus(r)) {
    case PGRES_TUPLES_OK:
    case PGRES_SINGLE_TUPLE:
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_COPY_BOTH:
      break;
    default: {
      std::string message = field(r, PG_DIAG_MESSAGE_PRIMARY);
      if (message.empty()) message = trim(PQresultErrorMessage(r));
      std::string severity = field(r, PG_DIAG_SEVERITY_NONLOCALIZED);
      out.error =
          PgError{severity.empty() ? "CLIENT" : severity, field(r, PG_DIAG_SQLSTATE), message};
      return out;
    }
  }
  if (const char* tag = PQcmdStatus(r)) out.tag = tag;
  const int cols = PQnfields(r);
  for (int c = 0; c < cols; ++c) {
    const char* name = PQfname(r, c);  // COPY results have columns without names
    out.columns.emplace_back(name ? name : "");
  }
  const int rows = PQntuples(r);
  out.rows.reserve(static_cast<std::size_t>(rows));
  for (int i = 0; i < rows; ++i) {
    Row row;
    row.reserve(static_cast<std::size_t>(cols));
    for (int c = 0; c < cols; ++c) {
      if (PQgetisnull(r, i, c)) {
        row.emplace_back(std::nullopt);
      } else {
        row.emplace_back(
            std::string(PQgetvalue(r, i, c), static_cast<std::size_t>(PQgetlength(r, i, c))));
      }
    }
    out.rows.push_back(std::move(row));
  }
  return out;
}

void on_notice(void* arg, const PGresult* r) {
  auto* notices = static_cast<std::vector<Notice>*>(arg);
  notices->push_back(Notice{field(r, PG_DIAG_SEVERITY_NONLOCALIZED), field(r, PG_DIAG_SQLSTATE),
                            field(r, PG_DIAG_MESSAGE_PRIMARY)});
}

// libpq has no SQLSTATE accessor for a failed connection; with verbose errors it writes
// "FATAL:  28P01: password authentication failed ..." into the message, so parse that.
PgError parse_connect_error(const std::string& text) {
  static const std::regex re(R"((FATAL|ERROR|PANIC):  ([0-9A-Z]{5}): ([^\n]*))");
  std::smatch m;
  if (std::regex_search(text, m, re)) return PgError{m[1], m[2], m[3]};
  return PgError{"CLIENT", "", trim(text)};
}

std::vector<const char*> param_pointers(const std::vector<Value>& params) {
  std::vector<const char*> out;
  out.reserve(params.size());
  for (const auto& p : params)
    out.push_back(p ? p->c_str() : nullptr);
  return out;
}

}  // namespace

std::string Result::at(std::size_t row, std::size_t col) const {
  if (row >= rows.size() || col >= rows[row].size()) return "<missing>";
  const auto& v = rows[row][col];
  return v ? *v : "<NULL>";
}

std::string Result::describe() const {
  if (error) {
    return error->severity + " " + (error->sqlstate.empty() ? "-----" : error->sqlstate) + ": " +
           error->message;
  }
  std::string s = tag + " (" + std::to_string(rows.size()) + " rows)";
  for (std::size_t i = 0; i < rows.size() && i < 5; ++i) {
    s += "\n ";
    for (std::size_t c = 0; c < rows[i].size(); ++c) {
      std::string v = at(i, c);
      if (v.size() > 80) v = v.substr(0, 80) + "...(" + std::to_string(v.size()) + " bytes)";
      s += " | " + v;
    }
  }
  return s;
}

Conn Conn::connect(const std::string& conninfo, Millis timeout) {
  Conn c;
  const auto deadline = Clock::now() + timeout;
  c.conn_ = PQconnectStart(conninfo.c_str());
  if (c.conn_ == nullptr) {
    c.connect_error_ = PgError{"CLIENT", "", "PQconnectStart: out of memory"};
    return c;
  }
  PQsetErrorVerbosity(c.conn_, PQERRORS_VERBOSE);
  PQsetNoticeReceiver(c.conn_, on_notice, c.notices_.get());
  if (PQstatus(c.conn_) == CONNECTION_BAD) {
    c.connect_error_ = parse_connect_error(PQerrorMessage(c.conn_));
    return c;
  }
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
    if (st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING) {
      if (!c.wait_socket(st == PGRES_POLLING_WRITING, deadline)) {
        c.connect_error_ = c.timeout_error(timeout);
        c.connect_error_.message = "connect: " + c.connect_error_.message;
        PQfinish(c.conn_);
        c.conn_ = nullptr;
        c.timed_out_ = true;
        return c;
      }
    }
    st = PQconnectPoll(c.conn_);
  }
  if (st == PGRES_POLLING_FAILED) c.connect_error_ = parse_connect_error(PQerrorMessage(c.conn_));
  // Verbose text in errors after login would only clutter assertion messages.
  PQsetErrorVerbosity(c.conn_, PQERRORS_DEFAULT);
  return c;
}

Conn::Conn(Conn&& o) noexcept
    : conn_(o.conn_),
      timed_out_(o.timed_out_),
      connect_error_(std::move(o.connect_error_)),
      notices_(std::move(o.notices_)) {
  o.conn_ = nullptr;
}

Conn& Conn::operator=(Conn&& o) noexcept {
  if (this != &o) {
    close();
    conn_ = o.conn_;
    o.conn_ = nullptr;
    timed_out_ = o.timed_out_;
    connect_error_ = std::move(o.connect_error_);
    notices_ = std::move(o.notices_);
  }
  return *this;
}

Conn::~Conn() {
  close();
}

bool Conn::ok() const {
  return conn_ != nullptr && !timed_out_ && PQstatus(conn_) == CONNECTION_OK;
}

void Conn::close() {
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = nullptr;
}

void Conn::close_abruptly() {
  if (conn_ == nullptr) return;
  // After shutdown() libpq's Terminate goes nowhere: the peer sees only the connection drop.
  ::shutdown(PQsocket(conn_), SHUT_RDWR);
  close();
}

int Conn::socket() const {
  return conn_ ? PQsocket(conn_) : -1;
}

int Conn::backend_pid() const {
  return conn_ ? PQbackendPID(conn_) : 0;
}

std::string Conn::parameter(const std::string& name) const {
  if (conn_ == nullptr) return "";
  const char* v = PQparameterStatus(conn_, name.c_str());
  return v ? v : "";
}

std::vector<Notice> Conn::take_notices() {
  std::vector<Notice> out;
  if (notices_) out.swap(*notices_);
  return out;
}

PgError Conn::timeout_error(Millis timeout) {
  return PgError{
      "CLIENT", "TIMEOUT",
      "no answer within " + std::to_string(timeout.count()) + " ms (client-side timeout)"};
}

bool Conn::wait_socket(bool for_write, Clock::time_point deadline) {
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{PQsocket(conn_), static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return true;  // let libpq find out what is wrong
  }
}

bool Conn::wait_not_busy(Clock::time_point deadline) {
  while (PQisBusy(conn_)) {
    if (!wait_socket(false, deadline)) return false;
    if (!PQconsumeInput(conn_)) return true;  // PQgetResult reports the failure
  }
  return true;
}

std::vector<Result> Conn::collect(Clock::time_point deadline) {
  std::vector<Result> out;
  while (true) {
    if (!wait_not_busy(deadline)) {
      timed_out_ = true;
      Result r;
      r.error = PgError{"CLIENT", "TIMEOUT", "no answer before the deadline (client-side timeout)"};
      out.push_back(std::move(r));
      return out;
    }
    PGresult* r = PQgetResult(conn_);
    if (r == nullptr) break;
    const auto status = PQresultStatus(r);
    out.push_back(convert(r, conn_));
    PQclear(r);
    // COPY hands control back to the caller, which drives the data transfer.
    if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) break;
    if (PQstatus(conn_) == CONNECTION_BAD) break;
  }
  return out;
}

namespace {

Result not_connected(PGconn* conn) {
  Result r;
  r.error = PgError{"CLIENT", "", conn ? trim(PQerrorMessage(conn)) : "not connected"};
  if (r.error->message.empty()) r.error->message = "connection unusable";
  return r;
}

Result first_error_or_last(std::vector<Result> results) {
  for (auto& r : results) {
    if (!r.ok()) return std::move(r);
  }
  if (results.empty()) {
    Result r;
    r.error = PgError{"CLIENT", "", "no result"};
    return r;
  }
  return std::move(results.back());
}

}  // namespace

std::vector<Result> Conn::exec_all(const std::string& sql, Millis timeout) {
  if (!ok()) return {not_connected(conn_)};
  if (!PQsendQuery(conn_, sql.c_str())) return {not_connected(conn_)};
  auto results = collect(Clock::now() + timeout);
  for (auto& r : results) {
    if (r.error && r.error->sqlstate == "TIMEOUT") r.error = timeout_error(timeout);
  }
  return results;
}

Result Conn::exec(const std::string& sql, Millis timeout) {
  return first_error_or_last(exec_all(sql, timeout));
}

Result Conn::exec_params(const std::string& sql, const std::vector<Value>& params, Millis timeout) {
  if (!ok()) return not_connected(conn_);
  auto ptrs = param_pointers(params);
  if (!PQsendQueryParams(conn_, sql.c_str(), static_cast<int>(params.size()), nullptr, ptrs.data(),
                         nullptr, nullptr, 0)) {
    return not_connected(conn_);
  }
  return first_error_or_last(collect(Clock::now() + timeout));
}

Result Conn::prepare(const std::string& name, const std::string& sql, Millis timeout) {
  if (!ok()) return not_connected(conn_);
  if (!PQsendPrepare(conn_, name.c_str(), sql.c_str(), 0, nullptr)) return not_connected(conn_);
  return first_error_or_last(collect(Clock::now() + timeout));
}

Result Conn::exec_prepared(const std::string& name, const std::vector<Value>& params,
                           Millis timeout) {
  if (!ok()) return not_connected(conn_);
  auto ptrs = param_pointers(params);
  if (!PQsendQueryPrepared(conn_, name.c_str(), static_cast<int>(params.size()), ptrs.data(),
                           nullptr, nullptr, 0)) {
    return not_connected(conn_);
  }
  return first_error_or_last(collect(Clock::now() + timeout));
}

Result Conn::copy_in(const std::string& sql, const std::vector<std::string>& chunks,
                     Millis timeout) {
  if (!ok()) return not_connected(conn_);
  const auto deadline = Clock::now() + timeout;
  if (!PQsendQuery(conn_, sql.c_str())) return not_connected(conn_);
  auto start = collect(deadline);
  if (start.empty() || !start.back().ok()) return first_error_or_last(std::move(start));
  for (const auto& chunk : chunks) {
    // Blocking connection: PQputCopyData waits for room in the socket buffer.
    if (PQputCopyData(conn_, chunk.data(), static_cast<int>(chunk.size())) != 1) {
      return not_connected(conn_);
    }
  }
  if (PQputCopyEnd(conn_, nullptr) != 1) return not_connected(conn_);
  return first_error_or_last(collect(deadline));
}

Result Conn::copy_out(const std::string& sql, std::string& data, Millis timeout) {
  if (!ok()) return not_connected(conn_);
  const auto deadline = Clock::now() + timeout;
  if (!PQsendQuery(conn_, sql.c_str())) return not_connected(conn_);
  auto start = collect(deadline);
  if (start.empty() || !start.back().ok()) return first_error_or_last(std::move(start));
  while (true) {
    char* buf = nullptr;
    const int n = PQgetCopyData(conn_, &buf, 1);
    if (n > 0) {
      data.append(buf, static_cast<std::size_t>(n));
      PQfreemem(buf);
    } else if (n == 0) {
      if (!wait_socket(false, deadline)) {
        timed_out_ = true;
        Result r;
        r.error = timeout_error(timeout);
        return r;
      }
      if (!PQconsumeInput(conn_)) return not_connected(conn_);
    } else {
      break;  // -1: done, the COPY's result follows; -2: error, reported by PQgetResult
    }
  }
  return first_error_or_last(collect(deadline));
}

std::optional<Notification> Conn::wait_notification(Millis timeout) {
  if (!ok()) return std::nullopt;
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (!PQconsumeInput(conn_)) return std::nullopt;
    if (PGnotify* n = PQnotifies(conn_)) {
      Notification out{n->relname, n->extra, n->be_pid};
      PQfreemem(n);
      return out;
    }
    if (!wait_socket(false, deadline)) return std::nullopt;
  }
}

std::string conninfo(int port, const std::string& user, const std::optional<std::string>& password,
                     const std::string& dbname) {
  std::string s = "host=127.0.0.1 port=" + std::to_string(port) + " user=" + user +
                  " dbname=" + dbname + " connect_timeout=10 sslmode=disable gssencmode=disable";
  if (password) s += " password='" + *password + "'";
  return s;
}

std::string primary_conninfo(const std::string& dbname) {
  const int port = env() ? env()->primary_port : 0;
  return conninfo(port, kUser, std::string(kPassword), dbname);
}

Conn connect_primary(const std::string& dbname) {
  return Conn::connect(primary_conninfo(dbname));
}

std::string recreate_database(const std::string& name) {
  auto c = connect_primary();
  if (!c.ok()) return "cannot connect to the primary: " + c.connect_error().message;
  auto r = c.exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
  if (!r.ok()) return r.describe();
  r = c.exec("CREATE DATABASE " + name + " OWNER pgdog");
  if (!r.ok()) return r.describe();
  return "";
}

std::string error_sent_to_idle(Conn& c, Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string why = "nothing within the timeout";
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{c.socket(), POLLIN, 0};
    ::poll(&p, 1, 100);
    const int alive = PQconsumeInput(c.raw());
    PQisBusy(c.raw());  // parses what arrived; an error in idle state becomes a notice
    for (const auto& n : c.take_notices()) {
      if (!n.sqlstate.empty()) return n.sqlstate;
    }
    if (!alive) {
      // The error and the end of the stream may arrive in one read (a busy machine, TLS):
      // libpq then reports the end, with the server's message in front of its own.
      const std::string message = PQerrorMessage(c.raw());
      if (message.find("terminating connection due to administrator command") !=
          std::string::npos) {
        return "57P01";
      }
      why = "closed without an ErrorResponse: " + message;
      break;
    }
  }
  return why;
}

}  // namespace pgdog::it
