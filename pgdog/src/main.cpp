#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include "config/config.hpp"
#include "frontend/app.hpp"
#include "net/tls.hpp"
#include "net/workers.hpp"

namespace {

struct Options {
  std::string command;  // "" (run), "configcheck"
  std::string config = "pgdog.toml";
  std::string users = "users.toml";
  bool version = false;
  bool help = false;
};

constexpr const char* kUsage =
    "usage: pgdog [--config FILE] [--users FILE]\n"
    "       pgdog configcheck [--config FILE] [--users FILE]\n"
    "       pgdog --version\n"
    "\n"
    "  --config FILE   pgdog.toml (default: ./pgdog.toml)\n"
    "  --users FILE    users.toml (default: ./users.toml)\n"
    "\n"
    "Signals: SIGHUP reloads the configuration, SIGTERM drains (finishes transactions up to\n"
    "shutdown_timeout), SIGINT exits at once.\n";

bool parse_args(int argc, char** argv, Options& o, std::string& error) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const std::string& name, std::string& out) {
      if (arg == name) {
        if (i + 1 >= argc) {
          error = name + " needs a value";
          return false;
        }
        out = argv[++i];
        return true;
      }
      out = arg.substr(name.size() + 1);
      return true;
    };
    if (arg == "--version" || arg == "-V") {
      o.version = true;
    } else if (arg == "--help" || arg == "-h") {
      o.help = true;
    } else if (arg == "--config" || arg.starts_with("--config=")) {
      if (!value("--config", o.config)) return false;
    } else if (arg == "--users" || arg.starts_with("--users=")) {
      if (!value("--users", o.users)) return false;
    } else if (arg == "configcheck" && o.command.empty()) {
      o.command = arg;
    } else {
      error = "unknown argument: " + arg;
      return false;
    }
  }
  return true;
}

// Both files, and the TLS files they name: a certificate that does not load would stop pgdog
// from starting, so configcheck must fail on it too.
pgdog::config::Result<pgdog::config::Config> load(const Options& o) {
  auto loaded = pgdog::config::load(o.config, o.users);
  if (!loaded) return loaded;
  if (auto tls = pgdog::net::check_tls(*loaded); !tls) return tls.error();
  return loaded;
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  std::string error;
  if (!parse_args(argc, argv, opts, error)) {
    std::cerr << "pgdog: " << error << "\n" << kUsage;
    return 2;
  }
  if (opts.help) {
    std::cout << kUsage;
    return 0;
  }
  if (opts.version) {
    std::cout << "pgdog " << PGDOG_VERSION << "\n";
    return 0;
  }

  auto loaded = load(opts);
  if (!loaded) {
    std::cerr << "pgdog: configuration error: " << loaded.error().to_string() << "\n";
    return 1;
  }
  if (opts.command == "configcheck") {
    std::cout << "pgdog: " << opts.config << " and " << opts.users << " are valid ("
              << loaded->databases.size() << " databases, " << loaded->users.size() << " users, "
              << loaded->mirroring.size() << " mirrors)\n";
    return 0;
  }

  spdlog::set_level(spdlog::level::from_str(loaded->general.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  const int workers = std::max(1, loaded->general.workers);

  pgdog::net::Workers loops(workers);
  auto& io = loops.context(0);
  // Before the listeners open: a signal sent as soon as the port accepts (a supervisor, a test)
  // is held for the handler below, never left to the default action.
  boost::asio::signal_set signals(io, SIGHUP, SIGTERM, SIGINT);
  std::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<pgdog::frontend::App> app;
  try {
    app = std::make_unique<pgdog::frontend::App>(loops.contexts(), std::move(*loaded));
    app->start();
  } catch (const std::exception& e) {
    spdlog::error("could not start: {}", e.what());
    return 1;
  }

  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP) {
          spdlog::info("SIGHUP: reloading configuration");
          if (auto r = app->reload(); !r) {
            spdlog::error("reload rejected, the previous configuration stays in force: {}",
                          r.error().to_string());
          }
        } else {
          app->shutdown(sig == SIGTERM);
        }
        signals.async_wait(on_signal);
      };
  signals.async_wait(on_signal);

  loops.run();
  spdlog::info("pgdog stopped");
  return 0;
}
