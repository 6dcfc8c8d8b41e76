#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <libpq-fe.h>

namespace pgdog::it {

using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

using Value = std::optional<std::string>;  // nullopt is SQL NULL
using Row = std::vector<Value>;
using Rows = std::vector<Row>;

struct PgError {
  std::string severity;  // ERROR, FATAL; "CLIENT" for failures libpq or the harness saw itself
  std::string sqlstate;  // empty when there was no ErrorResponse (e.g. connection refused)
  std::string message;
};

struct Result {
  std::vector<std::string> columns;
  Rows rows;
  std::string tag;  // CommandComplete tag, e.g. "INSERT 0 1"
  std::optional<PgError> error;

  bool ok() const { return !error.has_value(); }
  // Text of a cell; "<NULL>" for NULL, "<missing>" outside the result.
  std::string at(std::size_t row, std::size_t col = 0) const;
  // For assertion messages.
  std::string describe() const;
};

struct Notice {
  std::string severity;
  std::string sqlstate;
  std::string message;
};

struct Notification {
  std::string channel;
  std::string payload;
  int backend_pid = 0;
};

// A thin libpq wrapper. Every operation has a deadline, so a proxy that stops answering fails the
// test instead of hanging it; after a timeout the connection is unusable (ok() is false).
class Conn {
 public:
  static Conn connect(const std::string& conninfo, Millis timeout = 10s);

  Conn(Conn&&) noexcept;
  Conn& operator=(Conn&&) noexcept;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn();

  bool ok() const;
  // Why connect() failed, with the SQLSTATE of the server's ErrorResponse when there was one.
  const PgError& connect_error() const { return connect_error_; }

  // Simple query protocol: the last result (the first error, if any). exec_all returns one
  // Result per statement, as the server sent them.
  Result exec(const std::string& sql, Millis timeout = 30s);
  std::vector<Result> exec_all(const std::string& sql, Millis timeout = 30s);

  // Extended protocol: unnamed statement, text parameters.
  Result exec_params(const std::string& sql, const std::vector<Value>& params,
                     Millis timeout = 30s);
  // Extended protocol: named statements.
  Result prepare(const std::string& name, const std::string& sql, Millis timeout = 30s);
  Result exec_prepared(const std::string& name, const std::vector<Value>& params,
                       Millis timeout = 30s);

  // COPY ... FROM STDIN with the given chunks of data; the final Result is the COPY's.
  Result copy_in(const std::string& sql, const std::vector<std::string>& chunks,
                 Millis timeout = 60s);
  // COPY ... TO STDOUT; data receives everything the server sent.
  Result copy_out(const std::string& sql, std::string& data, Millis timeout = 60s);

  std::vector<Notice> take_notices();
  std::optional<Notification> wait_notification(Millis timeout);

  // PQparameterStatus; empty when the server never reported it.
  std::string parameter(const std::string& name) const;
  int backend_pid() const;
  int socket() const;
  PGconn* raw() { return conn_; }

  // Closes the connection the polite way (Terminate) ...
  void close();
  // ... or like a crashed client: the socket is shut down without a Terminate message.
  void close_abruptly();

 private:
  Conn() = default;
  using Clock = std::chrono::steady_clock;

  bool wait_socket(bool for_write, Clock::time_point deadline);
  // False at the deadline.
  bool wait_not_busy(Clock::time_point deadline);
  std::vector<Result> collect(Clock::time_point deadline);
  PgError timeout_error(Millis timeout);

  PGconn* conn_ = nullptr;
  bool timed_out_ = false;
  PgError connect_error_;
  // Stable address for libpq's notice receiver across moves.
  std::unique_ptr<std::vector<Notice>> notices_ = std::make_unique<std::vector<Notice>>();
};

// Conninfo strings; later keywords override earlier ones, so callers may append to them.
std::string conninfo(int port, const std::string& user, const std::optional<std::string>& password,
                     const std::string& dbname);
std::string primary_conninfo(const std::string& dbname = "pgdog");

// Connects straight to the primary as the pgdog superuser (not through the proxy).
Conn connect_primary(const std::string& dbname = "pgdog");

// Drops (with FORCE) and creates a database owned by pgdog on the primary; tests that need
// their own tables or need to count backends use one. Returns an error text or empty.
std::string recreate_database(const std::string& name);

// Reads what the server sends to an idle connection until it closes; returns the SQLSTATE of
// the first error it sent, or a description of what happened instead.
std::string error_sent_to_idle(Conn& c, Millis timeout);

}  // namespace pgdog::it
