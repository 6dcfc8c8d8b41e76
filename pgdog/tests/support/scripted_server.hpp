#pragma once

// A scripted PostgreSQL server for component tests: it listens on 127.0.0.1, logs each client
// in (trust, md5 or SCRAM through auth::ServerHandshake), then answers every message with what
// the test's script says: frames, nothing, frames after a delay, a stall, a reset, a FATAL.
// It records what each connection received and counts connections and cancel requests.
//
// Everything runs on the io_context it is given; tests run that io_context in their own thread
// (support/run.hpp), so the server, the code under test and the assertions never race and a
// test waits for states, never for a thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "protocol/messages.hpp"

namespace pgdog::test {

// One message a client sent. Startup-phase packets (StartupMessage, SSLRequest, CancelRequest)
// have type 0 and, as body, everything after the length (the protocol code first).
struct Message {
  char type = 0;
  std::string body = {};
  std::size_t connection = 0;  // which connection it came on, 0 for the first accepted
};

// What the server does with one message.
struct Reply {
  enum class Then {
    read,   // read the next message
    stall,  // answer nothing more on this connection, keep it open
    reset,  // close with RST (SO_LINGER 0)
    close,  // close normally
  };
  std::string bytes = {};              // frames to send (none: answer nothing)
  std::chrono::milliseconds delay{0};  // wait this long before sending them
  Then then = Then::read;

  static Reply none() { return {}; }
  static Reply send(std::string bytes, std::chrono::milliseconds delay = {}) {
    return {std::move(bytes), delay, Then::read};
  }
  static Reply stall() { return {{}, {}, Then::stall}; }
  static Reply reset() { return {{}, {}, Then::reset}; }
  // ErrorResponse with severity FATAL, then close.
  static Reply fatal(std::string_view sqlstate, std::string_view message);
};

using Script = std::function<Reply(const Message&)>;

// Frames for scripts.
namespace pg {
std::string ready(char status = 'I');
std::string command_complete(std::string_view tag);
std::string error(std::string_view sqlstate, std::string_view message,
                  std::string_view severity = "ERROR");
std::string parameter_status(std::string_view name, std::string_view value);
std::string row_description(const std::vector<std::string>& columns);
std::string data_row(const std::vector<std::optional<std::string>>& values);
std::string auth_ok();
}  // namespace pg

// The default script: Query gets CommandComplete "SELECT 1" and ReadyForQuery, Sync gets
// ReadyForQuery, Terminate closes, anything else (Parse, Bind, ...) gets nothing.
Reply answer_ok(const Message& m);

class ScriptedServer {
 public:
  enum class Auth { trust, md5, scram };
  struct Options {
    Auth auth = Auth::trust;
    std::string password = {};  // for md5 and scram, whatever the user name
    // Instead of a login, the answer to the StartupMessage (stall, bytes, fatal, reset). A
    // Reply with Then::read goes on to the script without a login.
    std::optional<Reply> on_startup = {};
    // Sent after AuthenticationOk, before BackendKeyData and ReadyForQuery.
    std::vector<std::pair<std::string, std::string>> parameters = {
        {"server_version", "16.0"},
        {"server_encoding", "UTF8"},
        {"client_encoding", "UTF8"},
        {"DateStyle", "ISO, MDY"},
        {"TimeZone", "UTC"},
        {"integer_datetimes", "on"},
        {"standard_conforming_strings", "on"}};
    Script script = answer_ok;
  };

  explicit ScriptedServer(boost::asio::io_context& io);
  ScriptedServer(boost::asio::io_context& io, Options options);
  ~ScriptedServer();
  ScriptedServer(const ScriptedServer&) = delete;
  ScriptedServer& operator=(const ScriptedServer&) = delete;

  std::uint16_t port() const;
  // For messages from now on, on every connection.
  void set_script(Script script);
  // Stop listening: connects are refused until listen(). Open connections stay.
  void refuse();
  // Listen again, on the same port.
  void listen();
  // Resets (RST) every open connection, as a server restart would.
  void reset_all();
  // Sends `bytes` on connection `i` now, outside the script: an asynchronous message
  // (NotificationResponse), or the answer to a request the script left unanswered. Not while a
  // Reply is being written on that connection.
  void send(std::size_t i, std::string bytes);

  // Accepted connections, cancel requests not included.
  std::size_t connections() const;
  // Connections that completed a login (ReadyForQuery sent).
  std::size_t logins() const;
  // Connections still open on the server's side.
  std::size_t open_connections() const;
  // What connection `i` received, in order, its startup packet first.
  std::vector<Message> received(std::size_t i) const;
  // Whether the client closed connection `i` (EOF or Terminate).
  bool closed_by_client(std::size_t i) const;
  // The BackendKeyData connection `i` was given: process id 1000 + i, secret 7000 + i.
  static protocol::BackendKeyData key(std::size_t i);
  // CancelRequests received, in order.
  std::vector<protocol::BackendKeyData> cancels() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace pgdog::test
