"""What every Python-written driver program of the matrix shares.

A driver program runs the scenario list against pgdog and reports each outcome on stdout as one
line `@@RESULT {"scenario": ..., "status": "pass"|"fail"|"skip", "detail": ...}`, announcing each
scenario first with `@@BEGIN name` (so the runner can tell which scenario hung if it must kill
the program). Everything else a program prints goes to its log.

The runner passes the connection and the scenario parameters in the environment:
PGDOG_HOST, PGDOG_PORT, PGDOG_USER, PGDOG_PASSWORD, PGDOG_DB, MATRIX_MODE (transaction|session),
MATRIX_PREFIX (the driver's table prefix), MATRIX_CA (the CA that signed pgdog's certificate),
MATRIX_BAD_CA (a CA that did not), MATRIX_CLIENTS, MATRIX_TXNS.
"""

import hashlib
import json
import os
import random
import sys
import time
import traceback

# The same values for every driver (node/scenarios.js and jdbc/Scenarios.java build them alike).
UNICODE = "日本語 ✓ émoji 🐘"
NUMERIC = "12345678901234567890.123456789"
LARGE_SIZE = 2 * 1024 * 1024
SCENARIOS = ["crud", "rollback", "error_recovery", "prepared_concurrency", "batch", "types",
             "large_values", "binary", "copy", "cursor", "listen_notify", "cancel", "tls"]
SESSION_ONLY = "LISTEN keeps state on its server connection: session mode only " \
               "(docs/configuration.md, pooler_mode)"


class Expectation(Exception):
    """A result that differs from what the scenario expects."""


class Skip(Exception):
    """A scenario that does not apply to this driver or mode; the message says why."""


def expect(cond, message):
    if not cond:
        raise Expectation(message)


def expect_eq(got, want, what):
    if got != want:
        g, w = repr(got), repr(want)
        if len(g) > 200:
            g = g[:200] + f"... ({len(g)} chars)"
        if len(w) > 200:
            w = w[:200] + f"... ({len(w)} chars)"
        raise Expectation(f"{what}: got {g}, expected {w}")


class Env:
    def __init__(self):
        e = os.environ
        self.host = e.get("PGDOG_HOST", "127.0.0.1")
        self.port = int(e["PGDOG_PORT"])
        self.user = e.get("PGDOG_USER", "pgdog")
        self.password = e.get("PGDOG_PASSWORD", "pgdog")
        self.db = e.get("PGDOG_DB", "pgdog")
        self.mode = e["MATRIX_MODE"]
        self.prefix = e["MATRIX_PREFIX"]
        self.ca = e["MATRIX_CA"]
        self.bad_ca = e["MATRIX_BAD_CA"]
        self.clients = int(e.get("MATRIX_CLIENTS", "8"))
        self.txns = int(e.get("MATRIX_TXNS", "25"))
        self.only = [s for s in e.get("MATRIX_SCENARIOS", "").split(",") if s]

    def t(self, name):
        """The driver's own table `name` (items, blobs, hits, crud)."""
        return f"{self.prefix}_{name}"

    def conninfo(self, **extra):
        parts = {"host": self.host, "port": self.port, "user": self.user,
                 "password": self.password, "dbname": self.db, "connect_timeout": 10,
                 "application_name": f"matrix-{self.prefix}", "sslmode": "disable"}
        parts.update(extra)
        return " ".join(f"{k}={quote(v)}" for k, v in parts.items())


def quote(v):
    v = str(v)
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def large_text():
    """2 MiB of text: ASCII with a multi-byte character every 1 KiB (UTF-8 length > chars)."""
    unit = ("pgdog large value " * 60)[:1023] + "é"
    s = unit * (LARGE_SIZE // 1024)
    return s


def large_bytes():
    """2 MiB of bytes covering every byte value, deterministic."""
    return random.Random(1234).randbytes(LARGE_SIZE)


def md5_hex(b):
    return hashlib.md5(b).hexdigest()


def all_bytes():
    return bytes(range(256))


def report(scenario, status, detail=""):
    line = json.dumps({"scenario": scenario, "status": status, "detail": detail},
                      ensure_ascii=False)
    print("@@RESULT " + line, flush=True)


def run_all(env, scenarios):
    """Runs `scenarios` ({name: callable(env)}) in the canonical order; reports each outcome."""
    for name in SCENARIOS:
        if env.only and name not in env.only:
            continue
        fn = scenarios.get(name)
        print(f"@@BEGIN {name}", flush=True)
        started = time.monotonic()
        if fn is None:
            report(name, "fail", "scenario not implemented by this driver program")
            continue
        try:
            fn(env)
        except Skip as e:
            report(name, "skip", str(e))
        except Expectation as e:
            print(f"[{name}] expectation failed: {e}", flush=True)
            report(name, "fail", str(e))
        except Exception as e:  # noqa: BLE001 - a driver error is a scenario failure
            traceback.print_exc(file=sys.stdout)
            msg = f"{type(e).__name__}: {e}".strip()
            report(name, "fail", " ".join(msg.split())[:600])
        else:
            report(name, "pass", f"{time.monotonic() - started:.1f}s")
