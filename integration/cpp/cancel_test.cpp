// Query cancellation: each client gets pgdog's own BackendKeyData; a CancelRequest with it
// reaches the server running that client's query, and only that one. Every cancel is sent once
// the primary's pg_stat_activity shows the query running (a cancel before would have nothing to
// cancel, and a test of "this cancel does nothing" would prove nothing); each query text is
// unique to its test so that the wait sees only it.
#include <arpa/inet.h>
#include <future>
#include <netinet/in.h>
#include <random>
#include <sys/socket.h>
#include <unistd.h>

#include "harness/harness.hpp"

namespace pgdog::it {
namespace {

using Clock = std::chrono::steady_clock;

long long ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

class CancelTest : public IntegrationTest {};

// libpq's PQcancel with the key pgdog handed out at login. Made before the query starts: only
// PQcancel itself is meant to run while another thread uses the connection.
class Canceller {
 public:
  explicit Canceller(Conn& c) : cancel_(PQgetCancel(c.raw())) {}
  ~Canceller() {
    if (cancel_) PQfreeCancel(cancel_);
  }
  Canceller(const Canceller&) = delete;
  Canceller& operator=(const Canceller&) = delete;
  std::string send() {
    if (cancel_ == nullptr) return "PQgetCancel failed";
    char err[256] = {0};
    return PQcancel(cancel_, err, sizeof err) ? "" : std::string("PQcancel failed: ") + err;
  }

 private:
  PGcancel* cancel_;
};

std::string pq_cancel(Conn& c) {
  return Canceller(c).send();
}

// A CancelRequest written by hand: 16 bytes to pgdog's port, then pgdog closes.
bool raw_cancel(int port, std::int32_t pid, std::int32_t key) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) ::close(fd);
    return false;
  }
  const std::uint32_t words[4] = {htonl(16), htonl(80877102), htonl(static_cast<std::uint32_t>(pid)),
                                  htonl(static_cast<std::uint32_t>(key))};
  const bool sent = ::write(fd, words, sizeof words) == static_cast<ssize_t>(sizeof words);
  // pgdog answers nothing and closes; wait for that so the request was surely processed.
  char b;
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)::read(fd, &b, 1);
  ::close(fd);
  return sent;
}

TEST_F(CancelTest, PqCancelStopsALongQueryAndTheConnectionStaysUsable) {
  Pgdog pgdog(PgdogConfig().with_pool_size(2));
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok()) << c.connect_error().message;
  // pgdog's key, not the server's: the pid is not a PostgreSQL backend pid through pgdog.
  const std::string server_pid = c.exec("SELECT pg_backend_pid()").at(0);

  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    Canceller cancel(c);
    const std::string query =
        "SELECT pg_sleep(30), 'pq cancel round " + std::to_string(round) + "'";
    auto running = std::async(std::launch::async, [&] { return c.exec(query, 10s); });
    ASSERT_TRUE(wait_running_on_primary(query)) << "the query never ran on the primary";
    ASSERT_EQ(running.wait_for(0s), std::future_status::timeout) << "pg_sleep(30) returned early";
    const auto sent = Clock::now();
    ASSERT_EQ(cancel.send(), "");
    auto r = running.get();
    const long long took = ms_since(sent);
    ASSERT_FALSE(r.ok()) << "pg_sleep(30) was not cancelled";
    EXPECT_EQ(r.error->sqlstate, "57014") << r.describe();
    EXPECT_LT(took, 2000) << "cancel took " << took << " ms";
    std::cout << "cancelled " << took << " ms after PQcancel\n";

    // The same connection goes on, inside and outside transactions.
    r = c.exec("SELECT 'usable'");
    EXPECT_EQ(r.at(0), "usable") << r.describe();
    ASSERT_TRUE(c.exec("BEGIN").ok());
    EXPECT_EQ(c.exec("SELECT 2").at(0), "2");
    ASSERT_TRUE(c.exec("COMMIT").ok());
  }
  EXPECT_NE(std::to_string(c.backend_pid()), server_pid)
      << "the client saw the server's backend pid, not pgdog's key";
}

TEST_F(CancelTest, CancelInsideATransactionAbortsIt) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.exec("BEGIN").ok());
  Canceller cancel(c);
  const std::string query = "SELECT pg_sleep(30), 'cancel inside a transaction'";
  auto running = std::async(std::launch::async, [&] { return c.exec(query, 10s); });
  ASSERT_TRUE(wait_running_on_primary(query)) << "the query never ran on the primary";
  ASSERT_EQ(cancel.send(), "");
  auto r = running.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->sqlstate, "57014") << r.describe();
  r = c.exec("SELECT 1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->sqlstate, "25P02") << r.describe();
  EXPECT_TRUE(c.exec("ROLLBACK").ok());
  EXPECT_EQ(c.exec("SELECT 3").at(0), "3");
}

TEST_F(CancelTest, WrongKeyCancelsNothing) {
  Pgdog pgdog;
  ASSERT_TRUE(pgdog.started());
  auto c = pgdog.connect();
  ASSERT_TRUE(c.ok());
  std::mt19937 rng(std::random_device{}());
  const int server_pid = std::stoi(c.exec("SELECT pg_backend_pid()").at(0));
  const std::string query = "SELECT pg_sleep(2), 'completed'";
  auto running = std::async(std::launch::async, [&] { return c.exec(query, 10s); });
  ASSERT_TRUE(wait_running_on_primary(query)) << "the query never ran on the primary";
  const int pid = c.backend_pid();
  // Random pid and key; the client's pid with a wrong key; and the server's real backend pid
  // (a key pgdog never gave out).
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(raw_cancel(pgdog.port(), static_cast<std::int32_t>(rng()),
                           static_cast<std::int32_t>(rng())));
  }
  EXPECT_TRUE(raw_cancel(pgdog.port(), pid, static_cast<std::int32_t>(rng())));
  EXPECT_TRUE(raw_cancel(pgdog.port(), server_pid, static_cast<std::int32_t>(rng())));
  // The wrong cancels went out while the query ran; it must now end on its own, not 57014.
  EXPECT_EQ(running.wait_for(0s), std::future_status::timeout)
      << "inconclusive: the query ended before the wrong cancels were all sent";
  auto r = running.get();
  ASSERT_TRUE(r.ok()) << "a cancel with a wrong key cancelled the query: " << r.describe();
  EXPECT_EQ(r.at(0, 1), "completed");
  // pgdog still serves.
  EXPECT_EQ(pgdog.connect().exec("SELECT 1").at(0), "1");
}

TEST_F(CancelTest, CancellingOneClientLeavesTheOtherAlone) {
  Pgdog pgdog(PgdogConfig().with_pool_size(4));
  ASSERT_TRUE(pgdog.started());
  auto a = pgdog.connect();
  auto b = pgdog.connect();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_NE(a.backend_pid(), b.backend_pid()) << "two clients got the same key";
  Canceller cancel_a(a);
  Canceller cancel_b(b);
  const std::string query_a = "SELECT pg_sleep(3), 'a'";
  const std::string query_b = "SELECT pg_sleep(3), 'b'";
  const auto start = Clock::now();
  auto ra = std::async(std::launch::async, [&] { return a.exec(query_a, 10s); });
  auto rb = std::async(std::launch::async, [&] { return b.exec(query_b, 10s); });
  ASSERT_TRUE(wait_running_on_primary(query_a)) << "a's query never ran on the primary";
  ASSERT_TRUE(wait_running_on_primary(query_b)) << "b's query never ran on the primary";
  ASSERT_EQ(cancel_a.send(), "");
  auto result_a = ra.get();
  const long long a_ms = ms_since(start);
  EXPECT_EQ(rb.wait_for(0s), std::future_status::timeout)
      << "inconclusive: b's query ended before a's was cancelled";
  auto result_b = rb.get();
  const long long b_ms = ms_since(start);
  ASSERT_FALSE(result_a.ok()) << "a was not cancelled";
  EXPECT_EQ(result_a.error->sqlstate, "57014") << result_a.describe();
  EXPECT_LT(a_ms, 2500);
  ASSERT_TRUE(result_b.ok()) << "b was cancelled with a: " << result_b.describe();
  EXPECT_EQ(result_b.at(0, 1), "b");
  EXPECT_GE(b_ms, 2900);
  // And the other way round, with the clients now possibly on each other's former servers.
  const std::string query_b2 = "SELECT pg_sleep(30), 'b2'";
  const std::string query_a2 = "SELECT pg_sleep(2), 'a2'";
  auto rb2 = std::async(std::launch::async, [&] { return b.exec(query_b2, 10s); });
  auto ra2 = std::async(std::launch::async, [&] { return a.exec(query_a2, 10s); });
  ASSERT_TRUE(wait_running_on_primary(query_b2)) << "b's query never ran on the primary";
  ASSERT_TRUE(wait_running_on_primary(query_a2)) << "a's query never ran on the primary";
  ASSERT_EQ(cancel_b.send(), "");
  auto r = rb2.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->sqlstate, "57014") << r.describe();
  EXPECT_EQ(ra2.wait_for(0s), std::future_status::timeout)
      << "inconclusive: a's query ended before b's was cancelled";
  r = ra2.get();
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.at(0, 1), "a2");
}

TEST_F(CancelTest, CancelOfAnIdleClientDoesNotHitWhoeverHasItsOldServer) {
  // pool_size 1: after a's query, the only server goes to b. a's key must not cancel b.
  Pgdog pgdog(PgdogConfig().with_pool_size(1));
  ASSERT_TRUE(pgdog.started());
  auto a = pgdog.connect();
  auto b = pgdog.connect();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a.exec("SELECT 1").ok());
  const std::string query = "SELECT pg_sleep(1.5), 'b, on the old server of a'";
  auto rb = std::async(std::launch::async, [&] { return b.exec(query, 10s); });
  ASSERT_TRUE(wait_running_on_primary(query)) << "b's query never ran on the primary";
  ASSERT_EQ(pq_cancel(a), "");
  EXPECT_EQ(rb.wait_for(0s), std::future_status::timeout)
      << "inconclusive: b's query ended before a's cancel was sent";
  auto r = rb.get();
  ASSERT_TRUE(r.ok()) << "cancelling idle client a cancelled b's query: " << r.describe();
  EXPECT_EQ(r.at(0, 1), "b, on the old server of a");
}

}  // namespace
}  // namespace pgdog::it
