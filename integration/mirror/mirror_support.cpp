#include "mirror_support.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace pgdog::it::mirror {

namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

// ---------------------------------------------------------------- HTTP

HttpResponse http_get(int port, const std::string& path, Millis timeout) {
  HttpResponse out;
  const auto deadline = Clock::now() + timeout;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    out.error = "socket: " + std::string(std::strerror(errno));
    return out;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
    out.error = "connect: " + std::string(std::strerror(errno));
    return out;
  }
  pollfd p{fd, POLLOUT, 0};
  if (::poll(&p, 1, remaining_ms(deadline)) != 1) {
    out.error = "connect timed out";
    return out;
  }
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    out.error = "connect: " + std::string(std::strerror(err));
    return out;
  }
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" +
                              std::to_string(port) + "\r\nConnection: close\r\n\r\n";
  std::size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      out.error = "send: " + std::string(std::strerror(errno));
      return out;
    }
    p = pollfd{fd, POLLOUT, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) != 1) {
      out.error = "send timed out";
      return out;
    }
  }
  std::string raw;
  char buf[16384];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      raw.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) break;
    if (errno != EAGAIN && errno != EINTR) {
      out.error = "recv: " + std::string(std::strerror(errno));
      return out;
    }
    p = pollfd{fd, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) != 1) {
      out.error = "no complete answer within " + std::to_string(timeout.count()) + " ms";
      return out;
    }
  }
  const auto head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos || raw.rfind("HTTP/1.", 0) != 0) {
    out.error = "malformed answer: " + raw.substr(0, 200);
    return out;
  }
  const std::string head = raw.substr(0, head_end);
  out.status = std::atoi(head.c_str() + head.find(' ') + 1);
  std::istringstream lines(head);
  std::string line;
  bool chunked = false;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string name = lower(line.substr(0, colon));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (name == "content-type") out.content_type = value;
    if (name == "transfer-encoding" && lower(value).find("chunked") != std::string::npos) {
      chunked = true;
    }
  }
  std::string body = raw.substr(head_end + 4);
  if (chunked) {
    std::string plain;
    std::size_t at = 0;
    while (at < body.size()) {
      const auto eol = body.find("\r\n", at);
      if (eol == std::string::npos) break;
      const std::size_t size = std::strtoul(body.c_str() + at, nullptr, 16);
      if (size == 0) break;
      plain += body.substr(eol + 2, size);
      at = eol + 2 + size + 2;
    }
    body = std::move(plain);
  }
  out.body = std::move(body);
  return out;
}

// ---------------------------------------------------------------- /metrics

std::string sample_key(const std::string& name, const std::map<std::string, std::string>& labels) {
  std::string key = name;
  if (!labels.empty()) {
    key += "{";
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) key += ",";
      first = false;
      key += k + "=\"" + v + "\"";
    }
    key += "}";
  }
  return key;
}

Samples parse_prometheus_text(const std::string& body) {
  Samples out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::size_t at = 0;
    while (at < line.size() && line[at] != '{' && line[at] != ' ') ++at;
    const std::string name = line.substr(0, at);
    std::map<std::string, std::string> labels;
    if (at < line.size() && line[at] == '{') {
      ++at;
      while (at < line.size() && line[at] != '}') {
        const auto eq = line.find('=', at);
        if (eq == std::string::npos) break;
        std::string key = line.substr(at, eq - at);
        while (!key.empty() && (key.front() == ',' || key.front() == ' ')) key.erase(0, 1);
        at = eq + 2;  // past ="
        std::string value;
        while (at < line.size() && line[at] != '"') {
          if (line[at] == '\\' && at + 1 < line.size()) {
            ++at;
            value += line[at] == 'n' ? '\n' : line[at];
          } else {
            value += line[at];
          }
          ++at;
        }
        ++at;  // past the closing quote
        labels[key] = value;
        if (at < line.size() && line[at] == ',') ++at;
      }
      ++at;  // past }
    }
    while (at < line.size() && line[at] == ' ') ++at;
    const std::string value = line.substr(at, line.find(' ', at) - at);
    out[sample_key(name, labels)] = std::strtod(value.c_str(), nullptr);
  }
  return out;
}

// ---------------------------------------------------------------- JSON

namespace {

const Json& null_json() {
  static const Json j{nullptr};
  return j;
}

class JsonParser {
 public:
  explicit JsonParser(const std::string& t) : t_(t) {}

  Json document() {
    Json j = value();
    space();
    if (at_ != t_.size()) fail("trailing characters");
    return j;
  }

 private:
  [[noreturn]] void fail(const std::string& why) {
    throw std::runtime_error("JSON: " + why + " at offset " + std::to_string(at_) + " in " +
                             t_.substr(0, 300));
  }
  void space() {
    while (at_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[at_]))) ++at_;
  }
  bool literal(const char* word) {
    const std::size_t n = std::strlen(word);
    if (t_.compare(at_, n, word) != 0) return false;
    at_ += n;
    return true;
  }
  Json value() {
    space();
    if (at_ >= t_.size()) fail("unexpected end");
    const char c = t_[at_];
    if (c == '{') return object();
    if (c == '[') return array();
    if (c == '"') return Json{string()};
    if (literal("true")) return Json{true};
    if (literal("false")) return Json{false};
    if (literal("null")) return Json{nullptr};
    const char* begin = t_.c_str() + at_;
    char* end = nullptr;
    const double d = std::strtod(begin, &end);
    if (end == begin) fail("unexpected character");
    at_ += static_cast<std::size_t>(end - begin);
    return Json{d};
  }
  Json object() {
    ++at_;
    Json::Object o;
    space();
    if (at_ < t_.size() && t_[at_] == '}') {
      ++at_;
      return Json{o};
    }
    while (true) {
      space();
      if (at_ >= t_.size() || t_[at_] != '"') fail("expected a key");
      std::string key = string();
      space();
      if (at_ >= t_.size() || t_[at_] != ':') fail("expected ':'");
      ++at_;
      o[key] = value();
      space();
      if (at_ < t_.size() && t_[at_] == ',') {
        ++at_;
        continue;
      }
      if (at_ < t_.size() && t_[at_] == '}') {
        ++at_;
        return Json{o};
      }
      fail("expected ',' or '}'");
    }
  }
  Json array() {
    ++at_;
    Json::Array a;
    space();
    if (at_ < t_.size() && t_[at_] == ']') {
      ++at_;
      return Json{a};
    }
    while (true) {
      a.push_back(value());
      space();
      if (at_ < t_.size() && t_[at_] == ',') {
        ++at_;
        continue;
      }
      if (at_ < t_.size() && t_[at_] == ']') {
        ++at_;
        return Json{a};
      }
      fail("expected ',' or ']'");
    }
  }
  std::string string() {
    ++at_;
    std::string s;
    while (at_ < t_.size() && t_[at_] != '"') {
      char c = t_[at_++];
      if (c == '\\') {
        if (at_ >= t_.size()) fail("bad escape");
        c = t_[at_++];
        switch (c) {
          case 'n': s += '\n'; break;
          case 't': s += '\t'; break;
          case 'r': s += '\r'; break;
          case 'b': s += '\b'; break;
          case 'f': s += '\f'; break;
          case 'u': {
            if (at_ + 4 > t_.size()) fail("bad \\u escape");
            const unsigned code = static_cast<unsigned>(std::stoul(t_.substr(at_, 4), nullptr, 16));
            at_ += 4;
            if (code < 0x80) {
              s += static_cast<char>(code);
            } else {
              s += '?';  // the tests only look at ASCII
            }
            break;
          }
          default: s += c;
        }
      } else {
        s += c;
      }
    }
    if (at_ >= t_.size()) fail("unterminated string");
    ++at_;
    return s;
  }

  const std::string& t_;
  std::size_t at_ = 0;
};

}  // namespace

bool Json::boolean() const {
  const bool* b = std::get_if<bool>(&v);
  return b != nullptr && *b;
}

double Json::number() const {
  const double* d = std::get_if<double>(&v);
  return d != nullptr ? *d : std::nan("");
}

std::string Json::string() const {
  const std::string* s = std::get_if<std::string>(&v);
  return s != nullptr ? *s : std::string();
}

const Json::Array& Json::array() const {
  static const Array empty;
  const Array* a = std::get_if<Array>(&v);
  return a != nullptr ? *a : empty;
}

const Json& Json::operator[](const std::string& key) const {
  const Object* o = std::get_if<Object>(&v);
  if (o == nullptr) return null_json();
  auto it = o->find(key);
  return it == o->end() ? null_json() : it->second;
}

Json parse_json(const std::string& text) {
  return JsonParser(text).document();
}

// ---------------------------------------------------------------- counters

std::string MirrorCounts::describe() const {
  std::ostringstream s;
  s << "handed " << handed << ", success " << success << ", failure " << failure << " (connection "
    << connection << ", timeout " << timeout << ", query " << query << "), dropped " << dropped
    << ", depth " << depth << ", lag " << lag << " s";
  return s.str();
}

// ---------------------------------------------------------------- configuration

PgdogConfig mirror_config(MirrorSetup& setup) {
  if (setup.metrics_port == 0) setup.metrics_port = free_port();
  const auto& e = *env();
  PgdogConfig c;
  c.set_string("openmetrics_host", "127.0.0.1")
      .set("openmetrics_port", std::to_string(setup.metrics_port))
      .with_databases(database_toml(setup.database, e.primary_port) +
                      database_toml(kCluster, e.mirror_port, setup.database))
      .with_users(user_toml("pgdog", setup.database, std::string("pgdog")))
      .with_extra("\n[[mirroring]]\nsource_db = " + toml_string(setup.database) +
                  "\ndestination_db = " + toml_string(kCluster) + "\n" + setup.mirroring_extra +
                  "\n" + setup.more_toml);
  return c;
}

// ---------------------------------------------------------------- clusters

Conn connect_mirror(const std::string& dbname) {
  return Conn::connect(conninfo(env()->mirror_port, kUser, std::string(kPassword), dbname));
}

namespace {

std::string recreate_at(int port, const std::string& name) {
  auto c = Conn::connect(conninfo(port, kUser, std::string(kPassword), kDatabase));
  if (!c.ok()) return "cannot connect to port " + std::to_string(port) + ": " +
                      c.connect_error().message;
  auto r = c.exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
  if (!r.ok()) return r.describe();
  r = c.exec("CREATE DATABASE " + name + " OWNER pgdog");
  if (!r.ok()) return r.describe();
  return "";
}

}  // namespace

std::string recreate_on_both(const std::string& dbname) {
  std::string e = recreate_at(env()->primary_port, dbname);
  if (!e.empty()) return "primary: " + e;
  e = recreate_at(env()->mirror_port, dbname);
  if (!e.empty()) return "mirror: " + e;
  return "";
}

void drop_on_both(const std::string& dbname) {
  for (int port : {env()->primary_port, env()->mirror_port}) {
    auto c = Conn::connect(conninfo(port, kUser, std::string(kPassword), kDatabase), 5s);
    if (c.ok()) c.exec("DROP DATABASE IF EXISTS " + dbname + " WITH (FORCE)");
  }
}

void exec_on(Conn& c, const std::vector<std::string>& statements) {
  if (!c.ok()) {
    ADD_FAILURE() << "no connection: " << c.connect_error().message;
    return;
  }
  for (const auto& s : statements) {
    auto r = c.exec(s);
    if (!r.ok()) ADD_FAILURE() << s << ": " << r.describe();
  }
}

long long scalar(Conn& c, const std::string& sql) {
  auto r = c.exec(sql);
  if (!r.ok() || r.rows.empty() || !r.rows[0][0]) {
    ADD_FAILURE() << sql << ": " << r.describe();
    return -1;
  }
  return std::stoll(*r.rows[0][0]);
}

std::vector<std::string> column(Conn& c, const std::string& sql) {
  auto r = c.exec(sql);
  std::vector<std::string> out;
  if (!r.ok()) {
    ADD_FAILURE() << sql << ": " << r.describe();
    return out;
  }
  for (std::size_t i = 0; i < r.rows.size(); ++i) out.push_back(r.at(i, 0));
  return out;
}

namespace {

CommandResult pg_local(const std::string& args) {
  return run_command(shell_quote(env()->source_dir + "/scripts/pg-local") + " " + args, 120s);
}

}  // namespace

MirrorControl::~MirrorControl() {
  if (!stopped_) return;
  auto r = start();
  if (r.exit_code != 0) ADD_FAILURE() << "could not start the mirror cluster again: " << r.describe();
}

CommandResult MirrorControl::stop() {
  stopped_ = true;
  return pg_local("stop --dir " + shell_quote(env()->pglocal_dir) + " mirror");
}

CommandResult MirrorControl::start() {
  // --ssl keeps the cluster as integration/run made it.
  auto r = pg_local("start --dir " + shell_quote(env()->pglocal_dir) + " --name mirror --ssl");
  if (r.exit_code == 0) {
    stopped_ = false;
    if (recorded_port() != env()->mirror_port) {
      ADD_FAILURE() << "the mirror came back on port " << recorded_port() << " instead of "
                    << env()->mirror_port << "; later tests cannot reach it";
    }
  }
  return r;
}

int MirrorControl::recorded_port() {
  std::ifstream in(env()->pglocal_dir + "/ports.env");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MIRROR_PORT=", 0) == 0) return std::atoi(line.c_str() + 12);
  }
  return -1;
}

// ---------------------------------------------------------------- MirrorWatch

MirrorWatch::MirrorWatch(const Pgdog& pgdog, int metrics_port, std::string cluster)
    : pgdog_(pgdog), metrics_port_(metrics_port), cluster_(std::move(cluster)) {}

void MirrorWatch::check(const MirrorCounts& c, const std::string& where) {
  // SHOW MIRRORS shows handed and queue_depth side by side: its columns must add up.
  if (c.handed >= 0) {
    EXPECT_EQ(c.handed, c.success + c.failure + c.dropped + c.depth)
        << where << ": handed != success + failure + dropped + queue_depth: " << c.describe();
  }
  EXPECT_EQ(c.failure, c.connection + c.timeout + c.query)
      << where << ": failure != connection + timeout + query: " << c.describe();
  EXPECT_GE(c.depth, 0) << where << ": " << c.describe();
}

MirrorCounts MirrorWatch::admin() {
  MirrorCounts c;
  if (!admin_ || !admin_->ok()) {
    admin_ = std::make_unique<Conn>(pgdog_.admin());
    if (!admin_->ok()) {
      ADD_FAILURE() << "admin console: " << admin_->connect_error().message;
      return c;
    }
  }
  auto r = admin_->exec("SHOW MIRRORS", 10s);
  if (!r.ok()) {
    ADD_FAILURE() << "SHOW MIRRORS: " << r.describe();
    return c;
  }
  auto col = [&](const std::string& name) -> int {
    for (std::size_t i = 0; i < r.columns.size(); ++i)
      if (r.columns[i] == name) return static_cast<int>(i);
    ADD_FAILURE() << "SHOW MIRRORS has no column " << name << ": " << r.describe();
    return -1;
  };
  const int cluster = col("cluster");
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    if (r.at(i, static_cast<std::size_t>(cluster)) != cluster_) continue;
    auto num = [&](const std::string& name) -> long long {
      const int k = col(name);
      return k < 0 ? -1 : std::stoll(r.at(i, static_cast<std::size_t>(k)));
    };
    c.handed = num("handed");
    c.success = num("success");
    c.failure = num("failure");
    c.dropped = num("dropped");
    c.connection = num("connection");
    c.timeout = num("timeout");
    c.query = num("query");
    c.depth = num("queue_depth");
    const int lag = col("lag_seconds");
    if (lag >= 0) c.lag = std::strtod(r.at(i, static_cast<std::size_t>(lag)).c_str(), nullptr);
    check(c, "SHOW MIRRORS");
    return c;
  }
  ADD_FAILURE() << "SHOW MIRRORS has no row for cluster " << cluster_ << ": " << r.describe();
  return c;
}

Samples MirrorWatch::metrics() {
  auto r = http_get(metrics_port_, "/metrics");
  if (r.status != 200) {
    ADD_FAILURE() << "GET /metrics: status " << r.status << " " << r.error;
    return {};
  }
  return parse_prometheus_text(r.body);
}

MirrorCounts MirrorWatch::counts(const Samples& s) {
  auto get = [&](const std::string& name, std::map<std::string, std::string> labels) {
    labels["cluster"] = cluster_;
    const auto key = sample_key(name, labels);
    auto it = s.find(key);
    if (it == s.end()) {
      ADD_FAILURE() << "/metrics has no " << key;
      return 0.0;
    }
    return it->second;
  };
  MirrorCounts c;
  auto ll = [](double d) { return static_cast<long long>(std::llround(d)); };
  c.success = ll(get("pgdog_mirror_requests_total", {{"status", "success"}}));
  c.failure = ll(get("pgdog_mirror_requests_total", {{"status", "failure"}}));
  c.dropped = ll(get("pgdog_mirror_requests_total", {{"status", "dropped"}}));
  c.connection = ll(get("pgdog_mirror_failures_total", {{"error_type", "connection"}}));
  c.timeout = ll(get("pgdog_mirror_failures_total", {{"error_type", "timeout"}}));
  c.query = ll(get("pgdog_mirror_failures_total", {{"error_type", "query"}}));
  c.depth = ll(get("pgdog_mirror_queue_depth", {}));
  c.lag = get("pgdog_mirror_lag_seconds", {});
  c.handed = -1;
  check(c, "/metrics");
  return c;
}

Divergences MirrorWatch::divergences(const Samples& s) {
  Divergences d;
  auto get = [&](const char* kind) -> long long {
    const auto key =
        sample_key("pgdog_mirror_divergences_total", {{"cluster", cluster_}, {"kind", kind}});
    auto it = s.find(key);
    if (it == s.end()) {
      ADD_FAILURE() << "/metrics has no " << key;
      return -1;
    }
    return static_cast<long long>(std::llround(it->second));
  };
  d.row_count = get("row_count");
  d.result = get("result");
  d.error = get("error");
  return d;
}

double MirrorWatch::ready(const Samples& s) {
  auto it = s.find(sample_key("pgdog_mirror_ready", {{"cluster", cluster_}}));
  return it == s.end() ? std::nan("") : it->second;
}

Json MirrorWatch::verdict() {
  auto r = http_get(metrics_port_, "/mirrors");
  if (r.status != 200) {
    ADD_FAILURE() << "GET /mirrors: status " << r.status << " " << r.error;
    return Json{nullptr};
  }
  Json doc;
  try {
    doc = parse_json(r.body);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
    return Json{nullptr};
  }
  for (const auto& m : doc["mirrors"].array()) {
    if (m["cluster"].string() == cluster_) return m;
  }
  ADD_FAILURE() << "/mirrors has no entry for " << cluster_ << ": " << r.body;
  return Json{nullptr};
}

std::vector<DivergentStatement> MirrorWatch::show_divergences() {
  std::vector<DivergentStatement> out;
  auto a = pgdog_.admin();
  auto r = a.exec("SHOW MIRROR_DIVERGENCES", 10s);
  if (!r.ok()) {
    ADD_FAILURE() << "SHOW MIRROR_DIVERGENCES: " << r.describe();
    return out;
  }
  const std::vector<std::string> want = {"cluster", "kind", "fingerprint", "count", "last_seen"};
  EXPECT_EQ(r.columns, want);
  if (r.columns != want) return out;
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    DivergentStatement d{r.at(i, 0), r.at(i, 1), r.at(i, 2), r.at(i, 4), std::stoll(r.at(i, 3))};
    if (d.cluster == cluster_) out.push_back(std::move(d));
  }
  return out;
}

Json MirrorWatch::wait_verdict(bool ready, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  Json v = verdict();
  while (v["ready"].boolean() != ready && Clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
    v = verdict();
  }
  return v;
}

BackgroundScraper::BackgroundScraper(const Pgdog& pgdog, int metrics_port)
    : thread_([this, &pgdog, metrics_port] {
        MirrorWatch watch(pgdog, metrics_port);
        auto never_back = [](long long before, long long now, const char* what) {
          EXPECT_GE(now, before) << what << " went backwards";
        };
        MirrorCounts before = watch.admin();
        while (!stop_) {
          const auto m = watch.counts(watch.metrics());
          const auto after = watch.admin();
          // /metrics is read between two SHOW MIRRORS: it is at least as far along as the
          // first, and what it shows as handed (ended + queued) was handed by the second.
          never_back(before.success, m.success, "success (/metrics after SHOW MIRRORS)");
          never_back(before.failure, m.failure, "failure (/metrics after SHOW MIRRORS)");
          never_back(before.dropped, m.dropped, "dropped (/metrics after SHOW MIRRORS)");
          never_back(m.success, after.success, "success (SHOW MIRRORS after /metrics)");
          never_back(m.failure, after.failure, "failure (SHOW MIRRORS after /metrics)");
          never_back(m.dropped, after.dropped, "dropped (SHOW MIRRORS after /metrics)");
          const long long m_handed = m.success + m.failure + m.dropped + m.depth;
          EXPECT_GE(m_handed, before.handed)
              << "/metrics shows fewer handed than SHOW MIRRORS before it: " << m.describe()
              << "\nbefore: " << before.describe();
          EXPECT_LE(m_handed, after.handed)
              << "/metrics shows more handed than SHOW MIRRORS after it: " << m.describe()
              << "\nafter: " << after.describe();
          never_back(before.handed, after.handed, "handed");
          before = after;
          ++scrapes_;
          std::this_thread::sleep_for(20ms);
        }
      }) {}

BackgroundScraper::~BackgroundScraper() {
  finish();
}

int BackgroundScraper::finish() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  return scrapes_;
}

std::string describe_verdict(const Json& verdict) {
  std::string s = "ready=" + std::string(verdict["ready"].boolean() ? "true" : "false");
  for (const auto& c : verdict["criteria"].array()) {
    s += "\n  " + c["name"].string() + (c["ok"].boolean() ? " ok" : " FAIL") + " value " +
         std::to_string(c["value"].number()) + " limit " + std::to_string(c["limit"].number()) +
         ": " + c["reason"].string();
  }
  return s;
}

MirrorCounts MirrorWatch::wait_empty(long long at_least, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    const MirrorCounts c = admin();
    if (c.handed >= at_least && c.depth == 0) return c;
    if (Clock::now() >= deadline) {
      ADD_FAILURE() << "not drained within " << timeout.count() << " ms (waiting for " << at_least
                    << " handed and an empty queue): " << c.describe();
      return c;
    }
    std::this_thread::sleep_for(20ms);
  }
}

void MirrorWatch::expect_all_ended(const MirrorCounts& c, long long handed) {
  EXPECT_EQ(c.success + c.failure + c.dropped, handed)
      << "SHOW MIRRORS: success + failure + dropped != " << handed << " handed: " << c.describe();
  // Nothing moves any more: /metrics must say the same, from its own families.
  const auto m = counts(metrics());
  EXPECT_EQ(m.success + m.failure + m.dropped, handed)
      << "/metrics: success + failure + dropped != " << handed << " handed: " << m.describe();
  EXPECT_EQ(m.depth, 0) << "/metrics: " << m.describe();
  EXPECT_EQ(m.success, c.success) << "/metrics: " << m.describe() << "\nadmin: " << c.describe();
  EXPECT_EQ(m.failure, c.failure) << "/metrics: " << m.describe() << "\nadmin: " << c.describe();
  EXPECT_EQ(m.dropped, c.dropped) << "/metrics: " << m.describe() << "\nadmin: " << c.describe();
  EXPECT_EQ(m.connection, c.connection);
  EXPECT_EQ(m.timeout, c.timeout);
  EXPECT_EQ(m.query, c.query);
}

MirrorCounts MirrorWatch::wait_drained(long long expected, Millis timeout) {
  const MirrorCounts c = wait_empty(expected, timeout);
  EXPECT_EQ(c.handed, expected) << "the test committed " << expected
                                << " transactions to mirror; pgdog handed: " << c.describe();
  expect_all_ended(c, expected);
  return c;
}

MirrorCounts MirrorWatch::wait_settled(long long committed, Millis timeout) {
  const MirrorCounts c = wait_empty(0, timeout);
  EXPECT_LE(c.handed, committed) << "more handed than the " << committed
                                 << " transactions the test committed: " << c.describe();
  expect_all_ended(c, c.handed);
  return c;
}

bool MirrorWatch::wait_metrics(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (http_get(metrics_port_, "/metrics", 2s).status == 200) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// ---------------------------------------------------------------- tools

CommandResult pgbench(int port, const std::string& args, const std::string& dbname,
                      Millis timeout) {
  return run_command("PGPASSWORD=pgdog PGSSLMODE=disable pgbench -h 127.0.0.1 -p " +
                         std::to_string(port) + " -U pgdog " + args + " " + dbname,
                     timeout);
}

namespace {

long long after(const std::string& text, const std::string& prefix) {
  const auto at = text.find(prefix);
  if (at == std::string::npos) return -1;
  return std::atoll(text.c_str() + at + prefix.size());
}

}  // namespace

long long pgbench_processed(const std::string& out) {
  return after(out, "number of transactions actually processed: ");
}

long long pgbench_failed(const std::string& out) {
  return after(out, "number of failed transactions: ");
}

long long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

int count_lines(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (line.find(needle) != std::string::npos) ++n;
  }
  return n;
}

// ---------------------------------------------------------------- pgbench tables

std::string BenchState::describe() const {
  return "sum(abalance) " + abalance + ", sum(bbalance) " + bbalance + ", sum(tbalance) " +
         tbalance + ", history rows " + history + ", sum(delta) " + history_delta +
         ", accounts md5 " + accounts_md5 + ", tellers md5 " + tellers_md5;
}

BenchState bench_state(Conn& c) {
  auto r = c.exec(
      "SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
      "(SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(tbalance) FROM pgbench_tellers), "
      "(SELECT count(*) FROM pgbench_history), "
      "(SELECT coalesce(sum(delta), 0) FROM pgbench_history), "
      "(SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts), "
      "(SELECT md5(string_agg(tid || ':' || tbalance, ',' ORDER BY tid)) FROM pgbench_tellers)",
      60s);
  EXPECT_TRUE(r.ok()) << r.describe();
  return BenchState{r.at(0, 0), r.at(0, 1), r.at(0, 2), r.at(0, 3),
                    r.at(0, 4), r.at(0, 5), r.at(0, 6)};
}

}  // namespace pgdog::it::mirror
