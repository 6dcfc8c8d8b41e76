"""Shared helpers for the hostile-input, fault, load and security tests (integration/hostile).

Runs under integration/run, which exports PRIMARY_PORT, MIRROR_PORT, PGLOCAL_DIR, PGDOG_BIN and
PGDOG_SOURCE_DIR. Debian's /usr/bin/python3 with python3-psycopg; everything else is the standard
library.

- Pgdog: one pgdog process on free ports, configured from Python values, stopped by its own pid.
- Wire: a blocking raw-socket PostgreSQL client (startup, SCRAM / md5 / trust login, simple
  queries) that can also send any bytes at all, and reads the server's messages with deadlines.
- A tiny test runner: `script.py [test ...]` runs the named tests (default: all) and ends with
  "N passed, N failed"; the exit code says whether all passed.
"""

import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import psycopg

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from benchlib import pgwire  # noqa: E402  (the SCRAM client steps, shared with the benchmarks)

PROTOCOL_3 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102

HERE = os.path.dirname(os.path.abspath(__file__))


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def check_memory(cond, message):
    """A bound on pgdog's RSS. Under a sanitizer (scripts/sanitize sets PGDOG_SANITIZER) memory
    is the sanitizer's (shadow memory, quarantine): the bound is reported, not checked."""
    if os.environ.get("PGDOG_SANITIZER"):
        log(f"memory bound not checked under {os.environ['PGDOG_SANITIZER']}: "
            f"{'holds' if cond else 'would fail'}: {message}")
        return
    check(cond, message)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------ environment

class Env:
    def __init__(self):
        missing = [n for n in ("PRIMARY_PORT", "MIRROR_PORT", "PGLOCAL_DIR", "PGDOG_BIN",
                               "PGDOG_SOURCE_DIR") if not os.environ.get(n)]
        if missing:
            print(f"{', '.join(missing)} not set; run with integration/run BUILD_DIR",
                  file=sys.stderr)
            sys.exit(1)
        self.primary_port = int(os.environ["PRIMARY_PORT"])
        self.mirror_port = int(os.environ["MIRROR_PORT"])
        self.pglocal_dir = os.environ["PGLOCAL_DIR"]
        self.pgdog_bin = os.environ["PGDOG_BIN"]
        self.source_dir = os.environ["PGDOG_SOURCE_DIR"]

    @property
    def tls_dir(self):
        return os.path.join(self.pglocal_dir, "tls")


_env = None


def env():
    global _env
    if _env is None:
        _env = Env()
    return _env


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(what, predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, http.client.HTTPException, ValueError, KeyError, psycopg.Error) as e:
            last = e
        time.sleep(interval)
    raise Failure(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


# TCP states in /proc/net/tcp: a connection pgdog has not closed yet is ESTABLISHED, or
# CLOSE_WAIT once the client closed its end.
_TCP_OPEN_STATES = {"01", "03", "08"}  # ESTABLISHED, SYN_RECV, CLOSE_WAIT


def open_connections(port):
    """Connections to 127.0.0.1:port whose accepting end is still open: pgdog closes its end of
    a client's connection only after the session ended (and left SHOW CLIENTS), so 0 means every
    session is over. Read from /proc/net/tcp: no connection of its own."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, state = fields[1], fields[3]
            if int(local.split(":")[1], 16) == port and state in _TCP_OPEN_STATES:
                n += 1
    return n


def connections_to(port):
    """Established connections whose far end is 127.0.0.1:port (a proxy's server connections to
    a cluster), from /proc/net/tcp."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) == port and fields[3] == "01":
                n += 1
    return n


def unread_bytes(port, peer_port):
    """Bytes the accepting end of the connection 127.0.0.1:peer_port -> 127.0.0.1:port has
    received and not read yet (its receive queue in /proc/net/tcp); None when not found."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.split(":")[1], 16) == port and
                    int(remote.split(":")[1], 16) == peer_port):
                return int(fields[4].split(":")[1], 16)
    return None


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def sql_direct(port, statements, dbname="pgdog"):
    """Runs statements straight on a cluster (not through pgdog) as the pgdog superuser; a
    statement may be a (sql, parameters) pair."""
    with psycopg.connect(host="127.0.0.1", port=port, dbname=dbname, user="pgdog",
                         password="pgdog", autocommit=True, connect_timeout=10) as c:
        out = None
        for s in statements:
            cur = c.execute(*s) if isinstance(s, tuple) else c.execute(s)
            out = cur.fetchall() if cur.description else None
        return out


def toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def database_toml(name, port, database_name=None, extra=""):
    s = f'\n[[databases]]\nname = {toml_str(name)}\nhost = "127.0.0.1"\nport = {port}\n'
    if database_name:
        s += f"database_name = {toml_str(database_name)}\n"
    if extra:
        s += extra + "\n"
    return s


def user_toml(name, database, password=None, extra=""):
    s = f"\n[[users]]\nname = {toml_str(name)}\ndatabase = {toml_str(database)}\n"
    if password is not None:
        s += f"password = {toml_str(password)}\n"
    if extra:
        s += extra + "\n"
    return s


MIRROR_CLUSTER = "mirror"


def mirroring_toml(source="pgdog", destination=MIRROR_CLUSTER, extra=""):
    return (f"\n[[mirroring]]\nsource_db = {toml_str(source)}\n"
            f"destination_db = {toml_str(destination)}\n{extra}\n")


# ------------------------------------------------------------------------------------------ pgdog

class Pgdog:
    """One pgdog process. general: [general] keys as TOML literals (strings already quoted).
    databases: [[databases]] TOML (default: "pgdog" on the primary); extra: appended (mirroring);
    users: users.toml (default: pgdog/pgdog on pgdog). metrics: serve /metrics on a free port."""

    def __init__(self, general=None, admin_password="admin_secret", databases=None, extra="",
                 users=None, metrics=False, start=True):
        e = env()
        self.dir = tempfile.mkdtemp(prefix="pgdog-hostile-")
        self.host = "127.0.0.1"
        g = {"host": toml_str("127.0.0.1"), "port": None, "shutdown_timeout": "2000"}
        g.update(general or {})
        if g["port"] is None:
            g["port"] = str(free_port())
        self.port = int(g["port"])
        self.host = g["host"].strip('"')
        self.metrics_port = None
        if metrics:
            g.setdefault("openmetrics_host", toml_str("127.0.0.1"))
            self.metrics_host = g["openmetrics_host"].strip('"')
            if "openmetrics_port" not in g:
                g["openmetrics_port"] = str(free_port(self.metrics_host))
            self.metrics_port = int(g["openmetrics_port"])
        self.admin_password = admin_password
        text = "[general]\n" + "".join(f"{k} = {v}\n" for k, v in g.items())
        text += "\n[admin]\n"
        if admin_password is not None:
            text += f"password = {toml_str(admin_password)}\n"
        text += databases if databases is not None else database_toml("pgdog", e.primary_port)
        text += extra + "\n"
        self.config_path = os.path.join(self.dir, "pgdog.toml")
        self.users_path = os.path.join(self.dir, "users.toml")
        self.log_path = os.path.join(self.dir, "pgdog.log")
        with open(self.config_path, "w") as f:
            f.write(text)
        with open(self.users_path, "w") as f:
            f.write(users if users is not None else user_toml("pgdog", "pgdog", "pgdog"))
        self.proc = None
        if start:
            self.start()

    def start(self):
        out = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [env().pgdog_bin, "--config", self.config_path, "--users", self.users_path],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        finally:
            out.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"pgdog exited with status {self.proc.returncode} at startup:\n"
                              f"{self.log_tail()}")
            if port_open(self.port, self.host) and (
                    self.metrics_port is None or port_open(self.metrics_port, self.metrics_host)):
                return
            time.sleep(0.03)
        raise Failure(f"pgdog did not listen within 15 s:\n{self.log_tail()}")

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        check(self.alive(), f"pgdog died (status {self.proc.returncode}):\n{self.log_tail(40)}")

    def rss_kb(self):
        return rss_kb(self.pid)

    def fd_count(self):
        return fd_count(self.pid)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=30):
        return "\n".join(self.log().splitlines()[-n:])

    def stop(self):
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(8)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def cleanup(self, keep=False):
        self.stop()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        failed = exc_type is not None
        self.stop()
        if failed:
            print(f"===== pgdog log ({self.log_path}), last 60 lines =====\n"
                  f"{self.log_tail(60)}\n===== end of pgdog log =====", flush=True)
        self.cleanup(keep=failed)
        return False

    # ------------------------------------------------------------------ clients

    def connect(self, user="pgdog", password="pgdog", dbname="pgdog", **kw):
        kw.setdefault("connect_timeout", 10)
        kw.setdefault("autocommit", True)
        return psycopg.connect(host=self.host, port=self.port, user=user, password=password,
                               dbname=dbname, **kw)

    def admin(self, password=None):
        return self.connect(user="admin", password=password or self.admin_password,
                            dbname="admin")

    def show(self, what):
        """SHOW <what> on the admin console as a list of dicts."""
        with self.admin() as a:
            cur = a.execute(f"SHOW {what}")
            names = [d.name for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def wire(self, timeout=10):
        return Wire(self.port, self.host, timeout=timeout)

    def assert_serving(self, bystander=None, what=""):
        """pgdog is alive, the bystander session still answers, and a new login works."""
        self.check_alive()
        if bystander is not None:
            n = int(time.monotonic() * 1000) % 100000
            try:
                row = bystander.execute(f"SELECT {n}").fetchone()
            except psycopg.Error as e:
                raise Failure(f"{what}: the concurrently connected session broke: {e!r}")
            check(row == (n,), f"{what}: the other session got {row!r}")
        try:
            with self.connect() as c:
                row = c.execute("SELECT 'fresh'").fetchone()
        except psycopg.Error as e:
            raise Failure(f"{what}: a new login failed afterwards: {e!r}\n{self.log_tail()}")
        check(row == ("fresh",), f"{what}: a new session got {row!r}")

    # ------------------------------------------------------------------ metrics

    def http_get(self, path="/metrics", accept=None, host=None):
        conn = http.client.HTTPConnection(host or self.metrics_host, self.metrics_port, timeout=10)
        try:
            conn.request("GET", path, headers={"Accept": accept} if accept else {})
            res = conn.getresponse()
            return res.status, res.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def mirror_values(self, cluster=MIRROR_CLUSTER):
        """The pgdog_mirror_* series of one cluster from GET /metrics, as a dict."""
        status, body = self.http_get()
        check(status == 200, f"GET /metrics answered {status}")
        v = {}
        pat = re.compile(r'^(pgdog_mirror_[a-z_]+)\{([^}]*)\} (\S+)$')
        for line in body.splitlines():
            m = pat.match(line)
            if not m:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if labels.get("cluster") != cluster:
                continue
            name = m.group(1)
            value = float(m.group(3))
            if name == "pgdog_mirror_requests_total":
                v[labels["status"]] = value
            elif name == "pgdog_mirror_failures_total":
                v[labels["error_type"]] = value
            elif name == "pgdog_mirror_queue_depth":
                v["depth"] = value
        for k in ("success", "failure", "dropped", "connection", "timeout", "query", "depth"):
            check(k in v, f"/metrics has no {k} series for cluster {cluster}:\n{body[:2000]}")
        return {k: int(x) for k, x in v.items()}

    def handed(self, cluster=MIRROR_CLUSTER):
        for row in self.show("MIRRORS"):
            if row.get("cluster") == cluster:
                return int(row["handed"])
        raise Failure(f"SHOW MIRRORS has no row for {cluster}")

    def check_identity(self, v, handed=None, what=""):
        check(v["failure"] == v["connection"] + v["timeout"] + v["query"],
              f"{what}: failure {v['failure']} != connection + timeout + query {v}")
        if handed is not None:
            total = v["success"] + v["failure"] + v["dropped"] + v["depth"]
            check(total == handed,
                  f"{what}: identity broken: handed {handed} != success + failure + dropped + "
                  f"queue_depth = {total} ({v})")

    def wait_mirror_drained(self, handed, timeout=30, cluster=MIRROR_CLUSTER):
        def drained():
            v = self.mirror_values(cluster)
            if v["depth"] == 0 and v["success"] + v["failure"] + v["dropped"] >= handed:
                return v
            return None
        return wait_until(f"{handed} mirror requests to end", drained, timeout, interval=0.1)


# ------------------------------------------------------------------------------------------- wire

def msg(kind, body=b""):
    return kind + struct.pack("!I", len(body) + 4) + body


def startup_packet(params, version=PROTOCOL_3):
    body = struct.pack("!I", version)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def code_packet(code):
    return struct.pack("!II", 8, code)


def error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


class Closed(Exception):
    pass


class Wire:
    """A blocking raw PostgreSQL client with deadlines on every read."""

    def __init__(self, port, host="127.0.0.1", timeout=10, sock=None):
        self.sock = sock or socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.params = {}
        self.errors = []

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def close_abruptly(self):
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("read deadline")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError as e:
                raise Closed("reset") from e
            if not chunk:
                raise Closed("eof")
            self.buf += chunk

    def read_byte(self, timeout=10):
        deadline = time.monotonic() + timeout
        self._fill(1, deadline)
        b, self.buf = self.buf[:1], self.buf[1:]
        return b

    def read_msg(self, timeout=10):
        """(type, body); raises Closed at EOF / reset and socket.timeout at the deadline."""
        deadline = time.monotonic() + timeout
        self._fill(5, deadline)
        (n,) = struct.unpack("!I", self.buf[1:5])
        if n < 4 or n > 256 * 1024 * 1024:
            raise Failure(f"server sent a bad length {n}")
        self._fill(n + 1, deadline)
        kind, body = self.buf[:1], self.buf[5:n + 1]
        self.buf = self.buf[n + 1:]
        return kind, body

    def expect_error(self, timeout=10):
        """Reads until an ErrorResponse; returns its fields (None when the connection closed
        without one). Other messages are skipped."""
        try:
            while True:
                kind, body = self.read_msg(timeout)
                if kind == b"E":
                    return error_fields(body)
        except Closed:
            return None

    def closed_within(self, timeout=5):
        """True when the peer closes the connection (EOF or reset) within timeout; messages
        still arriving are skipped."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.read_msg(left)
        except Closed:
            return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def expect_rejected(self, sqlstates, what, timeout=10):
        """An ErrorResponse with one of sqlstates, then the connection closed."""
        if isinstance(sqlstates, str):
            sqlstates = (sqlstates,)
        try:
            fields = self.expect_error(timeout)
        except socket.timeout:
            raise Failure(f"{what}: no answer within {timeout} s (expected {sqlstates})")
        check(fields is not None, f"{what}: connection closed without an ErrorResponse "
                                  f"(expected {sqlstates})")
        check(fields.get("C") in sqlstates,
              f"{what}: got SQLSTATE {fields.get('C')} {fields.get('M')!r}, expected {sqlstates}")
        check(self.closed_within(5), f"{what}: connection still open after the error")
        return fields

    # ------------------------------------------------------------------ login

    def login(self, user="pgdog", password="pgdog", database="pgdog", extra_params=None,
              timeout=10):
        """Startup and authentication (SCRAM-SHA-256, md5, cleartext, trust) up to
        ReadyForQuery. Returns None when logged in, else the ErrorResponse fields."""
        params = {"user": user, "database": database}
        params.update(extra_params or {})
        self.send(startup_packet(params))
        return self.finish_login(user, password, timeout)

    def finish_login(self, user, password, timeout=10):
        pw = (password or "").encode()
        scram = None
        self.auth_codes = []
        while True:
            try:
                kind, body = self.read_msg(timeout)
            except Closed:
                return {"C": "CLOSED", "M": "connection closed during login"}
            if kind == b"R":
                (code,) = struct.unpack("!I", body[:4])
                self.auth_codes.append(code)
                if code == 0:
                    continue
                if code == 3:
                    self.send(msg(b"p", pw + b"\0"))
                elif code == 5:
                    inner = hashlib.md5(pw + user.encode()).hexdigest().encode()
                    outer = b"md5" + hashlib.md5(inner + body[4:8]).hexdigest().encode()
                    self.send(msg(b"p", outer + b"\0"))
                elif code == 10:
                    self.sasl_mechanisms = [m for m in body[4:].split(b"\0") if m]
                    initial, scram = pgwire.scram_client_first()
                    self.send(msg(b"p", initial))
                elif code == 11:
                    self.send(msg(b"p", pgwire.scram_client_final(pw, scram, body[4:].decode())))
                elif code == 12:
                    pass
                else:
                    raise Failure(f"unsupported authentication request {code}")
            elif kind == b"E":
                return error_fields(body)
            elif kind == b"S":
                k, v, _ = body.split(b"\0", 2)
                self.params[k.decode()] = v.decode()
            elif kind == b"Z":
                return None

    def must_login(self, *args, **kw):
        err = self.login(*args, **kw)
        check(err is None, f"login failed: {err}")
        return self

    def query(self, sql, timeout=30):
        """Simple query: (rows of the last result, error fields or None)."""
        self.send(msg(b"Q", sql.encode() + b"\0"))
        rows, err = [], None
        while True:
            kind, body = self.read_msg(timeout)
            if kind == b"T":
                rows = []
            elif kind == b"D":
                (ncol,) = struct.unpack("!H", body[:2])
                off, row = 2, []
                for _ in range(ncol):
                    (ln,) = struct.unpack("!i", body[off:off + 4])
                    off += 4
                    row.append(None if ln < 0 else body[off:off + ln].decode())
                    off += max(ln, 0)
                rows.append(row)
            elif kind == b"E":
                err = error_fields(body)
            elif kind == b"Z":
                return rows, err


# ------------------------------------------------------------------------------------ test runner

TESTS = {}


def test(fn):
    TESTS[fn.__name__] = fn
    return fn


def main(time_limit=280):
    """Runs the tests named on the command line (default: all of them, in definition order)."""
    names = sys.argv[1:] or list(TESTS)
    unknown = [n for n in names if n not in TESTS]
    if unknown:
        print(f"unknown tests: {unknown}; known: {list(TESTS)}", file=sys.stderr)
        return 2

    def on_alarm(signum, frame):
        raise Failure(f"time limit of {time_limit} s reached")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(time_limit)
    passed, failed = 0, 0
    started = time.monotonic()
    for name in names:
        t0 = time.monotonic()
        log(f"=== {name}")
        try:
            TESTS[name]()
            passed += 1
            log(f"--- PASS {name} ({time.monotonic() - t0:.1f} s)")
        except Failure as e:
            failed += 1
            log(f"--- FAIL {name} ({time.monotonic() - t0:.1f} s): {e}")
        except Exception:  # noqa: BLE001 - a crash of the test is a failure with its traceback
            failed += 1
            log(f"--- FAIL {name} ({time.monotonic() - t0:.1f} s) with an exception:\n"
                f"{traceback.format_exc()}")
    signal.alarm(0)
    log(f"{passed} passed, {failed} failed in {time.monotonic() - started:.1f} s")
    return 0 if failed == 0 else 1


class Threads:
    """Background workers that record exceptions; joined with a deadline."""

    def __init__(self):
        self.threads = []
        self.errors = []

    def start(self, fn, *args):
        def run():
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001
                self.errors.append(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)
        return t

    def join(self, timeout=60):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self.threads if t.is_alive()]
        check(not alive, f"{len(alive)} worker threads still running after {timeout} s")
        check(not self.errors, "worker errors:\n" + "\n".join(self.errors[:5]))
