#!/usr/bin/python3
"""Driver compatibility matrix: real client drivers through pgdog, with a mirror configured.

Runs under integration/run (PRIMARY_PORT, MIRROR_PORT, PGDOG_BIN, PGLOCAL_DIR). For each pooler
mode (transaction, session) it writes pgdog.toml/users.toml into a temporary directory (TLS for
clients with a certificate made here by the openssl CLI, database "pgdog" on the primary,
"mirror" on the mirror cluster, a [[mirroring]] entry, the metrics endpoint, a pool smaller
than the concurrent clients of the prepared-statement scenario), starts pgdog, creates the same
fresh tables on both clusters directly, then runs each driver program (libpq: psql and pgbench;
psycopg 3; psycopg2; node-postgres; JDBC). After each driver it waits for the mirror queue to
drain and checks that the driver's tables hold the same rows on the mirror as on the primary and
that no mirror request failed or was dropped; after each mode, that pgdog_mirror_failures_total
is 0 for every error_type.

If pgdog dies under a driver, that is reported (with the signal) and a new pgdog serves the
next driver. Prints a table of scenario x driver/mode outcomes (pass, FAIL, skip) and the reason
of every failure and skip; exits 1 when anything failed.

Usage: run_matrix.py [--drivers libpq,psycopg,psycopg2,node,jdbc] [--modes transaction,session]
                     [--scenarios a,b] [--keep] [--direct]
--direct is the control run: the same programs against the primary itself, without pgdog, so a
scenario's own mistake is told from pgdog's.
"""

import argparse
import hashlib
import http.client
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"  # Debian's, with python3-psycopg and python3-psycopg2
JDBC_JAR = "/usr/share/java/postgresql.jar"  # Debian libpostgresql-jdbc-java
TIME_LIMIT = 570  # seconds; CTest's TIMEOUT is 600
MODES = ["transaction", "session"]
SCENARIOS = ["crud", "rollback", "error_recovery", "prepared_concurrency", "batch", "types",
             "large_values", "binary", "copy", "cursor", "listen_notify", "cancel", "tls"]
MIRROR_ROW = "mirror_in_sync"
POOL_SIZE = 3  # server connections per pool
CLIENTS = 8  # concurrent clients of prepared_concurrency: more than POOL_SIZE
TXNS = 25  # transactions per client in prepared_concurrency
CLUSTER = "mirror"
ERROR_TYPES = ("connection", "timeout", "query")
COUNTERS = [f"pgdog_mirror_failures_total:{e}" for e in ERROR_TYPES] + \
    [f"pgdog_mirror_requests_total:{s}" for s in ("success", "failure", "dropped")]

DRIVERS = {
    # name: (table prefix, command, time limit per mode in seconds)
    "libpq": ("drv_libpq", [PY, os.path.join(HERE, "libpq_scenarios.py")], 150),
    "psycopg": ("drv_pg3", [PY, os.path.join(HERE, "psycopg_scenarios.py")], 150),
    "psycopg2": ("drv_pg2", [PY, os.path.join(HERE, "psycopg2_scenarios.py")], 150),
    "node": ("drv_node", ["node", os.path.join(HERE, "node", "scenarios.js")], 150),
    # One JVM per mode runs every JDBC scenario (the source launcher compiles in memory).
    "jdbc": ("drv_jdbc", ["java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss1m",
                          "-cp", JDBC_JAR, os.path.join(HERE, "jdbc", "Scenarios.java")], 180),
}


class Failure(Exception):
    pass


def exit_reason(rc):
    if rc is not None and rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit code {rc}"


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def run(cmd, timeout=60, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if r.returncode != 0:
        raise Failure(f"{' '.join(cmd)} failed (rc {r.returncode}): {r.stderr.strip()[-800:]}")
    return r.stdout


# ------------------------------------------------------------------------------------------ TLS

def make_certificates(tmp):
    """A CA and a server certificate for pgdog (CN localhost, SAN DNS:localhost IP:127.0.0.1),
    and an unrelated CA that verify-full must reject."""
    d = os.path.join(tmp, "tls")
    os.makedirs(d)
    p = lambda name: os.path.join(d, name)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "bad-ca"):
        run(["openssl", "req", "-x509", *ec, "-keyout", p(f"{ca}.key"), "-out", p(f"{ca}.crt"),
             "-days", "3", "-subj", f"/CN=pgdog driver matrix {ca}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    run(["openssl", "req", *ec, "-keyout", p("server.key"), "-out", p("server.csr"),
         "-subj", "/CN=localhost"])
    with open(p("server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    run(["openssl", "x509", "-req", "-in", p("server.csr"), "-CA", p("ca.crt"), "-CAkey",
         p("ca.key"), "-CAcreateserial", "-out", p("server.crt"), "-days", "3",
         "-extfile", p("server.ext")])
    os.chmod(p("server.key"), 0o600)
    return {"ca": p("ca.crt"), "bad_ca": p("bad-ca.crt"), "cert": p("server.crt"),
            "key": p("server.key")}


# ---------------------------------------------------------------------------------------- pgdog

def write_config(tmp, mode, port, metrics_port, primary, mirror, certs):
    server_tls = ""
    ca = os.path.join(os.environ.get("PGLOCAL_DIR", ""), "tls", "ca.crt")
    if os.path.exists(ca):  # integration/run starts the clusters with --ssl
        server_tls = f'tls_verify = "verify_full"\ntls_server_ca_certificate = "{ca}"\n'
    cfg = os.path.join(tmp, f"pgdog-{mode}.toml")
    users = os.path.join(tmp, f"users-{mode}.toml")
    with open(cfg, "w") as f:
        f.write(f"""[general]
host = "127.0.0.1"
port = {port}
workers = 2
default_pool_size = {POOL_SIZE}
min_pool_size = 1
pooler_mode = "{mode}"
auth_type = "scram"
checkout_timeout = 20_000
tls_certificate = "{certs['cert']}"
tls_private_key = "{certs['key']}"
{server_tls}openmetrics_port = {metrics_port}
openmetrics_host = "127.0.0.1"
log_level = "info"

[admin]
password = "admin"

[[databases]]
name = "pgdog"
host = "127.0.0.1"
port = {primary}
pool_size = {POOL_SIZE}

[[databases]]
name = "mirror"
host = "127.0.0.1"
port = {mirror}
database_name = "pgdog"
pool_size = {POOL_SIZE}

[[mirroring]]
source_db = "pgdog"
destination_db = "mirror"
queue_length = 10_000
# Room for every byte the scenarios send (the large-value ones queue about 150 KB a
# transaction): this run checks the drivers' counts, not overflow, which the fault tests do.
queue_bytes = 1_073_741_824
""")
    with open(users, "w") as f:
        f.write("""[[users]]
name = "pgdog"
database = "pgdog"
password = "pgdog"

[[users]]
name = "pgdog"
database = "mirror"
password = "pgdog"
""")
    return cfg, users


class Pgdog:
    def __init__(self, binary, tmp, mode, primary, mirror, certs):
        self.mode = mode
        self.port = free_port()
        self.metrics_port = free_port()
        self.cfg, self.users = write_config(tmp, mode, self.port, self.metrics_port, primary,
                                            mirror, certs)
        self.log_path = os.path.join(tmp, f"pgdog-{mode}.log")
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen([binary, "--config", self.cfg, "--users", self.users],
                                     stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=tmp)
        out.close()
        deadline = time.monotonic() + 15
        while not (port_open(self.port) and port_open(self.metrics_port)):
            if self.proc.poll() is not None:
                raise Failure(f"pgdog exited with {self.proc.returncode}; log:\n"
                              f"{self.log_tail(0, 40)}")
            if time.monotonic() > deadline:
                raise Failure(f"pgdog did not listen on {self.port}/{self.metrics_port} in 15 s")
            time.sleep(0.05)

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_tail(self, start, lines, only_problems=False):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        rows = text.splitlines()
        if only_problems:
            rows = [r for r in rows if re.search(r"\b(warn|warning|error|critical|fatal)\b", r,
                                                 re.I)]
        return "\n".join(rows[-lines:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def metrics(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            res = conn.getresponse()
            body = res.read().decode()
            if res.status != 200:
                raise Failure(f"GET /metrics answered {res.status}")
        finally:
            conn.close()
        values = {"pgdog_clients": 0.0}
        for line in body.splitlines():
            m = re.match(r"^pgdog_clients\{[^}]*\} (\S+)$", line)
            if m:
                values["pgdog_clients"] += float(m.group(1))
                continue
            m = re.match(r"^(pgdog_mirror_[a-z_]+)\{([^}]*)\} (\S+)$", line)
            if not m:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if labels.get("cluster") != CLUSTER:
                continue
            key = m.group(1)
            for k in ("status", "error_type", "kind"):
                if k in labels:
                    key += ":" + labels[k]
            values[key] = float(m.group(3))
        return values

    def wait_drained(self, timeout=90):
        """Waits until every client session has ended (pgdog_clients 0: a session hands its
        last transaction to the mirror before it ends) and the mirror queue is empty; returns
        the metric values."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.metrics()
            if last["pgdog_clients"] == 0 and last.get("pgdog_mirror_queue_depth", 1) == 0:
                return last
            time.sleep(0.05)
        raise Failure(f"mirror queue not drained after {timeout} s: "
                      f"depth {last.get('pgdog_mirror_queue_depth') if last else '?'}, "
                      f"clients {last['pgdog_clients'] if last else '?'}")


# --------------------------------------------------------------------------------------- schema

def direct(port):
    return psycopg.connect(host="127.0.0.1", port=port, user="pgdog", password="pgdog",
                           dbname="pgdog", autocommit=True, connect_timeout=10)


def prepare_schema(primary, mirror, prefixes):
    """The same fresh tables on both clusters, created directly (not through pgdog)."""
    for port in dict.fromkeys((primary, mirror)):
        with direct(port) as conn:
            old = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename LIKE 'drv\\_%'").fetchall()]
            for t in old:
                conn.execute(f'DROP TABLE IF EXISTS "{t}" CASCADE')
            for p in prefixes:
                conn.execute(f"CREATE TABLE {p}_items (id int PRIMARY KEY, grp text NOT NULL, "
                             f"val int, note text)")
                conn.execute(f"CREATE TABLE {p}_blobs (id int PRIMARY KEY, txt text, bin bytea, "
                             f"num numeric, flag boolean)")
                conn.execute(f"CREATE TABLE {p}_hits (client int, id int, hits int NOT NULL, "
                             f"PRIMARY KEY (client, id))")


def table_digests(port, prefix):
    """{table: (row count, md5 over the md5 of each row's text, in order)}"""
    out = {}
    with direct(port) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE %s "
            "ORDER BY 1", (prefix.replace("_", "\\_") + "\\_%",)).fetchall()]
        for t in tables:
            out[t] = conn.execute(
                f'SELECT count(*), md5(coalesce(string_agg(h, \',\' ORDER BY h), \'\')) '
                f'FROM (SELECT md5(r::text) AS h FROM "{t}" r) s').fetchone()
    return out


# -------------------------------------------------------------------------------------- drivers

def ensure_node_modules(log_dir):
    """`npm ci` from the committed package-lock.json, unless node_modules already matches it."""
    node_dir = os.path.join(HERE, "node")
    with open(os.path.join(node_dir, "package-lock.json"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    stamp = os.path.join(node_dir, "node_modules", ".matrix-lock-sha256")
    try:
        with open(stamp) as f:
            if f.read().strip() == digest:
                return
    except OSError:
        pass
    log("npm ci (integration/drivers/node)")
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=node_dir, capture_output=True, text=True, timeout=300)
    with open(os.path.join(log_dir, "npm-ci.log"), "w") as f:
        f.write(r.stdout + r.stderr)
    if r.returncode != 0:
        raise Failure(f"npm ci failed (rc {r.returncode}): {r.stderr.strip()[-600:]}")
    with open(stamp, "w") as f:
        f.write(digest + "\n")


def missing_requirement(name):
    """What the driver program needs and the machine lacks (scripts/install-deps installs it)."""
    need = {"libpq": ["psql", "pgbench"], "psycopg": [], "psycopg2": [], "node": ["node"],
            "jdbc": ["java"]}[name]
    for tool in need:
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    if name == "jdbc" and not os.path.exists(JDBC_JAR):
        return f"{JDBC_JAR} missing (Debian package libpostgresql-jdbc-java)"
    module = {"psycopg": "psycopg", "psycopg2": "psycopg2"}.get(name)
    if module:
        r = subprocess.run([PY, "-c", f"import {module}"], capture_output=True, text=True)
        if r.returncode != 0:
            return f"{PY} cannot import {module} (Debian package python3-{module})"
    return None


def run_driver(name, mode, port, certs, tmp, scenarios):
    """Runs one driver program against `port`; returns ({scenario: (status, detail)}, log
    path). Mode "direct" (the control run against PostgreSQL itself) behaves as session."""
    prefix, cmd, limit = DRIVERS[name]
    env = dict(os.environ,
               PGDOG_HOST="127.0.0.1", PGDOG_PORT=str(port), PGDOG_USER="pgdog",
               PGDOG_PASSWORD="pgdog", PGDOG_DB="pgdog",
               MATRIX_MODE="session" if mode == "direct" else mode,
               MATRIX_PREFIX=prefix, MATRIX_CA=certs["ca"], MATRIX_BAD_CA=certs["bad_ca"],
               MATRIX_CLIENTS=str(CLIENTS), MATRIX_TXNS=str(TXNS),
               MATRIX_SCENARIOS=",".join(scenarios), PYTHONDONTWRITEBYTECODE="1",
               PGCLIENTENCODING="UTF8", LC_ALL="C.UTF-8")
    for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSSLMODE",
              "PGSERVICE", "PGOPTIONS"):
        env.pop(k, None)
    log_path = os.path.join(tmp, f"{name}-{mode}.log")
    missing = missing_requirement(name)
    if missing:
        with open(log_path, "w") as f:
            f.write(missing + "\n")
        return {s: ("fail", f"not run: {missing}") for s in scenarios}, log_path
    results = {}
    current = None
    with open(log_path, "w") as logf:
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=tmp,
                                    start_new_session=True)
        except OSError as e:
            return {s: ("fail", f"cannot start {cmd[0]}: {e}") for s in scenarios}, log_path
        deadline = time.monotonic() + limit
        timed_out = False
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        buf = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if not sel.select(timeout=min(remaining, 1.0)):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace")
                logf.write(line + "\n")
                logf.flush()
                if line.startswith("@@BEGIN "):
                    current = line[8:].strip()
                elif line.startswith("@@RESULT "):
                    try:
                        r = json.loads(line[9:])
                        results[r["scenario"]] = (r["status"], r.get("detail", ""))
                    except (ValueError, KeyError) as e:
                        logf.write(f"(runner: bad result line: {e})\n")
        if timed_out:
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait(timeout=5)
        sel.close()
        proc.stdout.close()
        if buf:
            logf.write(buf.decode(errors="replace") + "\n")
    for s in scenarios:
        if s in results:
            continue
        if timed_out and s == current:
            results[s] = ("fail", f"{name} did not finish within {limit} s (killed during {s})")
        elif timed_out:
            results[s] = ("fail", f"not run: {name} was killed during {current}")
        elif s == current:
            results[s] = ("fail", f"{name} exited with rc {rc} during this scenario")
        else:
            results[s] = ("fail", f"not run: {name} exited with rc {rc}"
                                  f"{' during ' + current if current else ''}")
    if rc not in (0, None) and not timed_out and all(v[0] != "fail" for v in results.values()):
        results[scenarios[-1]] = ("fail", f"{name} exited with rc {rc}")
    return results, log_path


def check_mirror(pgdog, primary, mirror, prefix, before, expect_traffic=True):
    """Waits for the mirror queue to drain, then compares the driver's tables and the
    failure/drop counters since `before`. Returns (status, detail, metric values)."""
    after = pgdog.wait_drained()
    problems = []
    for e in ERROR_TYPES:
        k = f"pgdog_mirror_failures_total:{e}"
        d = after.get(k, 0) - before.get(k, 0)
        if d:
            problems.append(f"{int(d)} mirror failure(s) of type {e}")
    d = after.get("pgdog_mirror_requests_total:dropped", 0) - \
        before.get("pgdog_mirror_requests_total:dropped", 0)
    if d:
        problems.append(f"{int(d)} mirror request(s) dropped")
    ok = after.get("pgdog_mirror_requests_total:success", 0) - \
        before.get("pgdog_mirror_requests_total:success", 0)
    if ok <= 0 and expect_traffic:
        problems.append("no mirror request succeeded during this driver's run")
    p, m = table_digests(primary, prefix), table_digests(mirror, prefix)
    for t in sorted(set(p) | set(m)):
        if t not in m:
            problems.append(f"{t} missing on the mirror")
        elif t not in p:
            problems.append(f"{t} missing on the primary")
        elif p[t] != m[t]:
            problems.append(f"{t} differs: primary {p[t][0]} rows, mirror {m[t][0]} rows")
    detail = f"{int(ok)} mirrored transactions, {len(p)} tables identical"
    return ("fail" if problems else "pass"), ("; ".join(problems) or detail), after


# ---------------------------------------------------------------------------------------- table

def print_matrix(results, drivers, modes, mode_checks, scenarios):
    cols = [(d, m) for d in drivers for m in modes]
    short = {"transaction": "txn", "session": "session", "direct": "direct"}
    heads = [f"{d}/{short[m]}" for d, m in cols]
    rows = [s for s in SCENARIOS if s in scenarios] + ([] if modes == ["direct"] else [MIRROR_ROW])
    w0 = max(len(r) for r in rows) + 2
    widths = [max(len(h), 4) + 2 for h in heads]
    cell = {"pass": "pass", "fail": "FAIL", "skip": "skip"}
    print()
    print("Driver compatibility matrix " + ("(control run: PostgreSQL directly, no pgdog)"
                                           if modes == ["direct"] else
                                           "(through pgdog, mirror configured)"))
    print("scenario".ljust(w0) + "".join(h.ljust(w) for h, w in zip(heads, widths)))
    print("-" * (w0 + sum(widths)))
    for s in rows:
        line = s.ljust(w0)
        for (d, m), w in zip(cols, widths):
            st = results.get((d, m, s), ("-", ""))[0]
            line += cell.get(st, st).ljust(w)
        print(line.rstrip())
    print("-" * (w0 + sum(widths)))
    for m, (st, detail) in mode_checks.items():
        print(f"{m} mode, pgdog_mirror_failures_total (all drivers): "
              f"{cell.get(st, st)} ({detail})")
    skips = {}
    for (d, m, s), (st, detail) in results.items():
        if st == "skip":
            skips.setdefault((s, detail), []).append(f"{d}/{short[m]}")
    if skips:
        print("\nSkipped:")
        for (s, detail), where in sorted(skips.items(), key=lambda kv: SCENARIOS.index(kv[0][0])):
            print(f"  {s} ({', '.join(where)}): {detail}")
    fails = [(k, v) for k, v in results.items() if v[0] == "fail"]
    if fails:
        print("\nFailures:")
        for (d, m, s), (_, detail) in fails:
            print(f"  FAIL {d} {m} {s}: {' '.join(str(detail).split())}")


# ----------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drivers", default=",".join(DRIVERS))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--direct", action="store_true",
                    help="control run: the drivers against the primary itself, without pgdog "
                         "(tells a scenario's own mistakes from pgdog's)")
    args = ap.parse_args()
    drivers = [d for d in args.drivers.split(",") if d]
    modes = [m for m in args.modes.split(",") if m]
    scenarios = [s for s in args.scenarios.split(",") if s]
    for d in drivers:
        if d not in DRIVERS:
            ap.error(f"unknown driver {d}")
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m}")
    for s in scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s}")

    missing = [v for v in ("PRIMARY_PORT", "MIRROR_PORT", "PGDOG_BIN") if not os.environ.get(v)]
    if missing:
        print(f"{', '.join(missing)} not set; run with integration/run BUILD_DIR", file=sys.stderr)
        return 2
    primary, mirror = int(os.environ["PRIMARY_PORT"]), int(os.environ["MIRROR_PORT"])
    pgdog_bin = os.environ["PGDOG_BIN"]

    def out_of_time(*_):
        raise Failure(f"the matrix did not finish within {TIME_LIMIT} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(TIME_LIMIT)
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="pgdog-drivers-")
    results = {}
    mode_checks = {}
    fatal = None
    pgdog = None
    excerpts = []
    try:
        certs = make_certificates(tmp)
        if "node" in drivers:
            try:
                ensure_node_modules(tmp)
            except Exception as e:  # noqa: BLE001
                for m in modes:
                    for s in scenarios + [MIRROR_ROW]:
                        results[("node", m, s)] = ("fail", f"node-postgres not installed: {e}")
                drivers_run = [d for d in drivers if d != "node"]
            else:
                drivers_run = drivers
        else:
            drivers_run = drivers
        if args.direct:
            modes = ["direct"]
            ca = os.path.join(os.environ.get("PGLOCAL_DIR", ""), "tls", "ca.crt")
            direct_certs = dict(certs, ca=ca)
            prepare_schema(primary, primary, [DRIVERS[d][0] for d in drivers])
            for d in drivers_run:
                t0 = time.monotonic()
                res, log_path = run_driver(d, "direct", primary, direct_certs, tmp, scenarios)
                for s, v in res.items():
                    results[(d, "direct", s)] = v
                log(f"{d:9} direct      {time.monotonic() - t0:5.1f}s")
        for mode in ([] if args.direct else modes):
            log(f"== {mode} mode: starting pgdog, preparing the schema on both clusters")
            pgdog = Pgdog(pgdog_bin, tmp, mode, primary, mirror, certs)
            prepare_schema(primary, mirror, [DRIVERS[d][0] for d in drivers])
            base = pgdog.wait_drained()
            first = base  # counters of this pgdog process when the mode's drivers started
            totals = dict.fromkeys(COUNTERS, 0.0)  # over every pgdog process of the mode
            crashes = []
            for d in drivers_run:
                t0 = time.monotonic()
                log_start = pgdog.log_size()
                res, log_path = run_driver(d, mode, pgdog.port, certs, tmp, scenarios)
                if pgdog.proc.poll() is not None:
                    # pgdog died under this driver: say so, keep its log, start a new one for
                    # the next driver (the dead process's counters are lost with it).
                    why = f"pgdog exited ({exit_reason(pgdog.proc.returncode)}) during {d}'s run"
                    crashes.append(why)
                    log(why)
                    res[MIRROR_ROW] = ("fail", f"not checked: {why}")
                    excerpts.append((f"{d} {mode}: pgdog log up to its exit",
                                     pgdog.log_tail(log_start, 30)))
                    pgdog = Pgdog(pgdog_bin, tmp, mode, primary, mirror, certs)
                    base = first = pgdog.wait_drained()
                else:
                    try:
                        st, detail, base = check_mirror(
                            pgdog, primary, mirror, DRIVERS[d][0], base,
                            expect_traffic=any(v[0] == "pass" for v in res.values()))
                    except Failure as e:
                        st, detail = "fail", str(e)
                        base = pgdog.metrics()
                    res[MIRROR_ROW] = (st, detail)
                for s, v in res.items():
                    results[(d, mode, s)] = v
                n_fail = sum(1 for v in res.values() if v[0] == "fail")
                log(f"{d:9} {mode:11} {time.monotonic() - t0:5.1f}s  "
                    f"{sum(1 for v in res.values() if v[0] == 'pass')} pass, {n_fail} fail, "
                    f"{sum(1 for v in res.values() if v[0] == 'skip')} skip")
                if n_fail:
                    with open(log_path, errors="replace") as f:
                        tail = "\n".join(f.read().splitlines()[-40:])
                    excerpts.append((f"{d} {mode}: driver log ({log_path}), last 40 lines",
                                     tail))
                    excerpts.append((f"{d} {mode}: pgdog log during the run, warnings/errors",
                                     pgdog.log_tail(log_start, 40, only_problems=True)))
            v = pgdog.wait_drained()
            for k in COUNTERS:
                totals[k] += v.get(k, 0) - first.get(k, 0)
            per = {e: int(totals[f"pgdog_mirror_failures_total:{e}"]) for e in ERROR_TYPES}
            dropped = int(totals["pgdog_mirror_requests_total:dropped"])
            ok = all(n == 0 for n in per.values()) and dropped == 0 and not crashes
            mode_checks[mode] = (
                "pass" if ok else "fail",
                ", ".join(f"{e}={n}" for e, n in per.items()) + f", dropped={dropped}, "
                f"success={int(totals['pgdog_mirror_requests_total:success'])}" +
                "".join(f"; {c}" for c in crashes))
            div = {k.split(":", 1)[1]: int(n) for k, n in v.items()
                   if k.startswith("pgdog_mirror_divergences_total:") and n}
            if div:
                log(f"note: pgdog_mirror_divergences_total in {mode} mode: {div}")
            pgdog.stop()
            pgdog = None
    except Failure as e:
        fatal = str(e)
    except Exception:  # noqa: BLE001
        fatal = traceback.format_exc()
    finally:
        signal.alarm(0)
        if pgdog is not None:
            excerpts.append((f"pgdog log ({pgdog.log_path}), last 40 lines",
                             pgdog.log_tail(0, 40)))
            pgdog.stop()

    print_matrix(results, drivers, modes, mode_checks, scenarios)
    for title, text in excerpts:
        print(f"\n===== {title} =====\n{text}")
    if fatal:
        print(f"\nFATAL: {fatal}")
    counts = {"pass": 0, "fail": 0, "skip": 0}
    for st, _ in list(results.values()) + list(mode_checks.values()):
        counts[st] = counts.get(st, 0) + 1
    failed = counts["fail"] + (1 if fatal else 0)
    print(f"\nmatrix: {time.monotonic() - started:.0f} s; logs in {tmp}"
          f"{'' if failed or args.keep else ' (removed)'}")
    print(f"{counts['pass']} passed, {failed} failed, {counts['skip']} skipped")
    if not failed and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
