// Faults on the server side: nothing listening, a server that never answers, and the primary
// stopped and started again under load. Registered last: it stops the shared primary.
#include <algorithm>
#include <arpa/inet.h>
#include <array>
#include <atomic>
#include <fstream>
#include <mutex>
#include <netinet/in.h>
#include <regex>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "harness/harness.hpp"

namespace pgdog::it {
namespace {

using Clock = std::chrono::steady_clock;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

long long ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// A socket that completes TCP handshakes (the kernel does) but never reads or answers.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        ::listen(fd_, 64) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("cannot set up the silent server");
    }
    port_ = ntohs(a.sin_port);
  }
  ~SilentServer() { ::close(fd_); }
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class FaultsTest : public IntegrationTest {};

TEST_F(FaultsTest, PrimaryUnreachableGivesAnErrorNamingTheCause) {
  const int closed = free_port();
  Pgdog pgdog(PgdogConfig()
                  .set("connect_timeout", "2000")
                  .set("checkout_timeout", "3000")
                  .with_databases(database_toml("pgdog", closed)));
  ASSERT_TRUE(pgdog.started());
  for (int attempt = 0; attempt < 3; ++attempt) {
    const auto start = Clock::now();
    auto c = pgdog.connect();
    const auto took = ms_since(start);
    ASSERT_FALSE(c.ok()) << "logged in although the primary is down";
    EXPECT_NE(c.connect_error().sqlstate, "") << "no ErrorResponse: " << c.connect_error().message;
    EXPECT_NE(lower(c.connect_error().message).find("refused"), std::string::npos)
        << c.connect_error().message;
    EXPECT_LT(took, 3500) << "attempt " << attempt;
  }
}

TEST_F(FaultsTest, PrimaryNotAnsweringTimesOutWithinConnectTimeout) {
  SilentServer silent;
  Pgdog pgdog(PgdogConfig()
                  .set("connect_timeout", "1000")
                  .set("checkout_timeout", "5000")
                  .with_databases(database_toml("pgdog", silent.port())));
  ASSERT_TRUE(pgdog.started());
  const auto start = Clock::now();
  auto c = pgdog.connect();
  const auto took = ms_since(start);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.connect_error().sqlstate, "TIMEOUT") << "pgdog never answered the client";
  EXPECT_NE(c.connect_error().sqlstate, "") << c.connect_error().message;
  EXPECT_NE(lower(c.connect_error().message).find("timed out"), std::string::npos)
      << c.connect_error().message;
  EXPECT_GE(took, 900);
  EXPECT_LT(took, 6000);
}

// Stops and starts the primary with scripts/pg-local; the destructor makes sure it runs again
// whatever happened in the test.
class PrimaryControl {
 public:
  ~PrimaryControl() {
    if (stopped_) start();
  }
  CommandResult stop() {
    stopped_ = true;
    return pg_local("stop --dir " + shell_quote(env()->pglocal_dir) + " primary");
  }
  CommandResult start() {
    // --ssl keeps the cluster as integration/run made it.
    auto r = pg_local("start --dir " + shell_quote(env()->pglocal_dir) + " --name primary --ssl");
    if (r.exit_code == 0) stopped_ = false;
    return r;
  }
  // PRIMARY_PORT as pg-local recorded it last.
  static int recorded_port() {
    std::ifstream in(env()->pglocal_dir + "/ports.env");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("PRIMARY_PORT=", 0) == 0) return std::atoi(line.c_str() + 13);
    }
    return -1;
  }

 private:
  static CommandResult pg_local(const std::string& args) {
    return run_command(shell_quote(env()->source_dir + "/scripts/pg-local") + " " + args, 120s);
  }
  bool stopped_ = false;
};

struct Op {
  bool ok;
  long long ms;
  std::string error;
  std::string sqlstate;
};

TEST_F(FaultsTest, PrimaryStoppedMidRunThenServedAgain) {
  ASSERT_EQ(PrimaryControl::recorded_port(), e().primary_port)
      << "ports.env disagrees with PRIMARY_PORT";
  Pgdog pgdog(PgdogConfig()
                  .set("connect_timeout", "2000")
                  .set("checkout_timeout", "3000")
                  .with_pool_size(4));
  ASSERT_TRUE(pgdog.started());
  PrimaryControl primary;

  // Phase of the run each operation belongs to: 0 before the stop, 1 while stopped, 2 after.
  std::atomic<int> phase{0};
  std::atomic<bool> quit{false};
  std::mutex mutex;
  std::vector<std::vector<Op>> ops(3);
  std::array<std::atomic<bool>, 4> last_ok{};
  // Per worker and phase: operations that succeeded and that failed.
  std::array<std::array<std::atomic<int>, 3>, 4> oks{};
  std::array<std::array<std::atomic<int>, 3>, 4> errors{};
  auto record = [&](int w, Op op) {
    const auto wi = static_cast<std::size_t>(w);
    const auto p = static_cast<std::size_t>(phase.load());
    last_ok[wi] = op.ok;
    ++(op.ok ? oks : errors)[wi][p];
    std::lock_guard g(mutex);
    ops[p].push_back(std::move(op));
  };
  // Whether every worker has recorded at least n operations of a kind in a phase.
  auto every_worker = [&](const std::array<std::array<std::atomic<int>, 3>, 4>& kind, int p,
                          int n) {
    return std::all_of(kind.begin(), kind.end(),
                       [&](const auto& w) { return w[static_cast<std::size_t>(p)] >= n; });
  };
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&, w] {
      std::optional<Conn> c;
      int i = 0;
      while (!quit) {
        const auto start = Clock::now();
        if (!c || !c->ok()) {
          c.emplace(Conn::connect(pgdog.conninfo(), 15s));
          if (!c->ok()) {
            record(w, {false, ms_since(start), "connect: " + c->connect_error().message,
                       c->connect_error().sqlstate});
            std::this_thread::sleep_for(100ms);
            continue;
          }
        }
        const std::string v = std::to_string(w * 1000000 + ++i);
        auto r = c->exec("SELECT " + v, 15s);
        const bool ok = r.ok() && r.at(0) == v;
        record(w, {ok, ms_since(start), ok ? "" : r.describe(), r.error ? r.error->sqlstate : ""});
        std::this_thread::sleep_for(ok ? 5ms : 100ms);
      }
    });
  }
  auto join = [&] {
    quit = true;
    for (auto& t : workers) {
      if (t.joinable()) t.join();
    }
  };

  // The run is under way: every worker has been served a few times.
  if (!wait_until([&] { return every_worker(oks, 0, 5); }, 15s)) {
    join();
    FAIL() << "the workers were not served before the stop";
  }
  phase = 1;
  auto stopped = primary.stop();
  if (stopped.exit_code != 0) {
    join();
    FAIL() << "could not stop the primary: " << stopped.describe();
  }
  // Down until every worker has run into the outage a few times (or was left hanging: then the
  // checks below fail on its operation).
  EXPECT_TRUE(wait_until([&] { return every_worker(errors, 1, 3); }, 20s))
      << "not every worker noticed the primary was down";
  phase = 2;
  auto started = primary.start();
  if (started.exit_code != 0) {
    join();
    FAIL() << "could not start the primary again: " << started.describe();
  }
  if (PrimaryControl::recorded_port() != e().primary_port) {
    join();
    FAIL() << "the primary came back on port " << PrimaryControl::recorded_port() << " instead of "
           << e().primary_port << " (the old port was taken); later tests cannot reach it";
  }

  // pgdog serves again without a restart: a new client and every worker succeed.
  const auto back = Clock::now();
  bool served = false;
  std::string last;
  while (ms_since(back) < 30000) {
    auto c = pgdog.connect();
    auto r = c.exec("SELECT 'back'", 10s);
    if (r.ok() && r.at(0) == "back") {
      served = true;
      break;
    }
    last = c.ok() ? r.describe() : c.connect_error().message;
    std::this_thread::sleep_for(200ms);
  }
  // Every worker recovers: a few successes since the restart, the last operation among them.
  const bool recovered = wait_until(
      [&] {
        return every_worker(oks, 2, 3) && std::all_of(last_ok.begin(), last_ok.end(),
                                                       [](const auto& ok) { return ok.load(); });
      },
      30s);
  join();
  EXPECT_TRUE(recovered) << "not every worker was served again after the restart";
  EXPECT_TRUE(served) << "pgdog did not serve within 30 s of the primary's restart; last error: "
                      << last;

  auto summary = [&](int p) {
    int good = 0;
    int bad = 0;
    long long slowest = 0;
    for (const auto& op : ops[static_cast<std::size_t>(p)]) {
      (op.ok ? good : bad)++;
      slowest = std::max(slowest, op.ms);
    }
    return std::to_string(good) + " ok, " + std::to_string(bad) + " failed, slowest " +
           std::to_string(slowest) + " ms";
  };
  std::cout << "before stop: " << summary(0) << "\nwhile stopped: " << summary(1)
            << "\nafter restart: " << summary(2) << "\n";

  for (const auto& op : ops[0])
    EXPECT_TRUE(op.ok) << "before the stop: " << op.error;
  EXPECT_FALSE(ops[0].empty());
  // While the primary is down, clients get errors, quickly, never a hang.
  int failed = 0;
  for (const auto& op : ops[1]) {
    EXPECT_LT(op.ms, 10000) << "an operation took " << op.ms << " ms: " << op.error;
    EXPECT_NE(op.sqlstate, "TIMEOUT") << op.error;
    if (!op.ok) ++failed;
  }
  EXPECT_GT(failed, 0) << "no client noticed the primary was down";
  // After the restart every worker recovered: the last operation of each succeeded.
  for (std::size_t w = 0; w < last_ok.size(); ++w) {
    EXPECT_TRUE(last_ok[w].load())
        << "worker " << w << " still failing; after restart: " << summary(2);
  }
  for (const auto& op : ops[2]) {
    EXPECT_NE(op.sqlstate, "TIMEOUT") << op.error;
  }
}

}  // namespace
}  // namespace pgdog::it
