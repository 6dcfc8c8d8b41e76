#!/usr/bin/python3
"""/metrics against real PostgreSQL, promtool, prometheus_client and a real Prometheus server.

Runs under integration/run, which exports PRIMARY_PORT, MIRROR_PORT, PGDOG_BIN (and PGLOCAL_DIR,
PGDOG_SOURCE_DIR). Starts pgdog mirroring database "pgdog" (primary) to "mirror" (the mirror
cluster's database pgdog), runs a workload with known counts and checks the metrics body holds
exactly those counts, before and after a mirror fault; then checks the bodies with promtool and
the Python OpenMetrics parser, has a real Prometheus scrape pgdog every second and queries it,
and runs 20 concurrent scrapers during a pgbench run. Every process it starts is stopped, also
on failure.
"""

import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

import psycopg
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

TIME_LIMIT = 240  # seconds; CTest's TIMEOUT is 300
PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
TABLE = "metrics_it"
CLUSTER = "mirror"

COMMITTED_AUTOCOMMIT = 30  # INSERTs outside a transaction block
COMMITTED_BLOCKS = 20  # BEGIN; INSERT; INSERT; COMMIT
ROLLED_BACK = 10  # BEGIN; INSERT; ROLLBACK: never mirrored
FAILED_ON_PRIMARY = 5  # duplicate key on the primary: never mirrored
FAILING_ON_MIRROR = 7  # the table is dropped on the mirror only: each fails as `query`
SCRAPERS = 20


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def env_int(name):
    value = os.environ.get(name)
    if not value:
        print(f"{name} is not set; run the suite with integration/run BUILD_DIR", file=sys.stderr)
        sys.exit(1)
    return int(value)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            last = e
        time.sleep(interval)
    raise Failure(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Processes:
    """Every process the test starts, stopped by its own pid whatever happens."""

    def __init__(self):
        self.procs = []

    def start(self, name, args, log_path, **kw):
        out = open(log_path, "ab")
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             **kw)
        out.close()
        self.procs.append((name, p, log_path))
        return p

    def stop_all(self):
        for name, p, _ in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for name, p, _ in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"{name} (pid {p.pid}) did not stop on SIGTERM; killing it")
                p.kill()
                p.wait(timeout=5)


def http_get(port, path="/metrics", accept=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Accept": accept} if accept else {}
        conn.request("GET", path, headers=headers)
        res = conn.getresponse()
        body = res.read()
        return res.status, dict(res.getheaders()), body
    finally:
        conn.close()


def samples_of(families):
    """{(sample name, sorted labels): value}"""
    out = {}
    for f in families:
        for s in f.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def text_samples(body):
    return samples_of(parse_text(body))


def openmetrics_samples(body):
    return samples_of(parse_openmetrics(body))


def mirror_values(samples):
    def get(name, **labels):
        key = (name, tuple(sorted(dict(cluster=CLUSTER, **labels).items())))
        check(key in samples, f"series {name}{labels} missing from the body")
        return samples[key]

    v = {s: get("pgdog_mirror_requests_total", status=s) for s in ("success", "failure", "dropped")}
    for e in ("connection", "timeout", "query"):
        v[e] = get("pgdog_mirror_failures_total", error_type=e)
    v["depth"] = get("pgdog_mirror_queue_depth")
    v["rate"] = get("pgdog_mirror_success_rate")
    v["last_success"] = get("pgdog_mirror_last_success_timestamp")
    v["last_failure"] = get("pgdog_mirror_last_failure_timestamp")
    v["lag"] = get("pgdog_mirror_lag_seconds")
    return v


def scrape_text(port):
    status, headers, body = http_get(port)
    check(status == 200, f"GET /metrics answered {status}")
    check(headers.get("Content-Type") == PROMETHEUS_TEXT,
          f"Content-Type {headers.get('Content-Type')!r}")
    return body.decode()


def wait_drained(port, handed):
    """Waits until every one of `handed` mirror requests has ended; returns the values."""

    def drained():
        v = mirror_values(text_samples(scrape_text(port)))
        if v["depth"] == 0 and v["success"] + v["failure"] + v["dropped"] >= handed:
            return v
        return None

    return wait_until(f"{handed} mirror requests to end", drained, timeout=30)


def sql(port, database, statements, user="pgdog", password="pgdog"):
    with psycopg.connect(host="127.0.0.1", port=port, dbname=database, user=user,
                         password=password, autocommit=True, connect_timeout=10) as conn:
        for s in statements:
            conn.execute(s)


def admin_show_mirrors(port):
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "admin", "-d", "admin", "-AtF", "|",
         "-c", "SHOW MIRRORS"],
        env=dict(os.environ, PGPASSWORD="admin", PGCONNECT_TIMEOUT="10"),
        capture_output=True, text=True, timeout=30)
    check(out.returncode == 0, f"SHOW MIRRORS failed: {out.stderr}")
    names = ["source", "cluster", "handed", "success", "failure", "dropped", "connection",
             "timeout", "query", "queue_depth"]
    for line in out.stdout.splitlines():
        fields = line.split("|")
        row = dict(zip(names, fields))
        if row.get("cluster") == CLUSTER:
            return {k: (int(v) if k not in ("source", "cluster") else v) for k, v in row.items()}
    raise Failure(f"SHOW MIRRORS has no row for {CLUSTER}: {out.stdout!r}")


def promtool_check(body, tmp):
    if not os.access(PROMTOOL, os.X_OK):
        raise Failure(f"{PROMTOOL} not installed (Debian package prometheus)")
    path = os.path.join(tmp, "metrics.txt")
    with open(path, "w") as f:
        f.write(body)
    with open(path) as f:
        out = subprocess.run([PROMTOOL, "check", "metrics"], stdin=f, capture_output=True,
                             text=True, timeout=30)
    check(out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(),
          f"promtool check metrics: rc={out.returncode}\n{out.stdout}{out.stderr}")


def prometheus_query(port, query):
    q = urllib.parse.urlencode({"query": query})
    status, _, body = http_get(port, f"/api/v1/query?{q}")
    check(status == 200, f"Prometheus query {query} answered {status}: {body!r}")
    data = json.loads(body)
    check(data["status"] == "success", f"Prometheus query {query}: {data}")
    return data["data"]["result"]


def scraper(port, stop, results, index):
    """Scrapes until stopped, alternating formats; records every problem."""
    n = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        while not stop.is_set():
            openmetrics = (n + index) % 2 == 0
            try:
                headers = {"Accept": "application/openmetrics-text; version=1.0.0"} if openmetrics \
                    else {}
                conn.request("GET", "/metrics", headers=headers)
                res = conn.getresponse()
                body = res.read()
                length = res.getheader("Content-Length")
                if res.status != 200:
                    raise Failure(f"status {res.status}")
                if length is None or int(length) != len(body):
                    raise Failure(f"Content-Length {length} for {len(body)} bytes")
                text = body.decode()
                if openmetrics:
                    if not text.endswith("# EOF\n"):
                        raise Failure("OpenMetrics body does not end with # EOF")
                    v = mirror_values(openmetrics_samples(text))
                else:
                    if not text.endswith("\n") or "# EOF" in text:
                        raise Failure("Prometheus text body ends badly")
                    v = mirror_values(text_samples(text))
                if v["connection"] + v["timeout"] + v["query"] != v["failure"]:
                    raise Failure(f"failures by type do not add up: {v}")
                if v["depth"] < 0:
                    raise Failure(f"negative depth: {v}")
                n += 1
            except Exception as e:  # noqa: BLE001 - every problem is a test failure
                results[index] = (n, f"{type(e).__name__}: {e}")
                return
    finally:
        conn.close()
    results[index] = (n, None)


def pgbench(args, port, log_path, timeout):
    with open(log_path, "a") as out:
        r = subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "pgdog"] + args +
                           ["pgdog"], env=dict(os.environ, PGPASSWORD="pgdog"),
                           stdout=subprocess.PIPE, stderr=out, text=True, timeout=timeout)
    check(r.returncode == 0, f"pgbench {' '.join(args)} failed (rc {r.returncode}), see {log_path}")
    return r.stdout


def main():
    primary = env_int("PRIMARY_PORT")
    mirror = env_int("MIRROR_PORT")
    pgdog_bin = os.environ.get("PGDOG_BIN")
    check(pgdog_bin and os.access(pgdog_bin, os.X_OK), f"PGDOG_BIN {pgdog_bin!r} not executable")

    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="pgdog-metrics-it-")
    procs = Processes()
    def out_of_time(*_):
        raise Failure(f"test did not finish within {TIME_LIMIT} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(TIME_LIMIT)
    ok = False
    try:
        run(primary, mirror, pgdog_bin, tmp, procs)
        ok = True
    except Failure as e:
        log(f"FAILED: {e}")
    except Exception:  # noqa: BLE001 - a driver error is a failure too, with its traceback
        log(f"FAILED with an exception:\n{traceback.format_exc()}")
    finally:
        signal.alarm(0)
        procs.stop_all()
        if not ok:
            for name, _, path in procs.procs:
                try:
                    with open(path, errors="replace") as f:
                        text = f.read()
                except OSError:
                    continue
                print(f"===== {name} log ({path}), last 60 lines =====")
                print("\n".join(text.splitlines()[-60:]))
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp} for inspection")
    log(f"{'passed' if ok else 'failed'} in {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


def write_config(path, port, metrics_port, primary, mirror, general_extra):
    with open(path, "w") as f:
        f.write(f"""[general]
host = "127.0.0.1"
port = {port}
openmetrics_host = "127.0.0.1"
openmetrics_port = {metrics_port}
shutdown_timeout = 5000
{general_extra}
[admin]
password = "admin"

[[databases]]
name = "pgdog"
host = "127.0.0.1"
port = {primary}

[[databases]]
name = "{CLUSTER}"
host = "127.0.0.1"
port = {mirror}
database_name = "pgdog"

[[mirroring]]
source_db = "pgdog"
destination_db = "{CLUSTER}"
queue_length = 100000
""")


def run(primary, mirror, pgdog_bin, tmp, procs):
    port = free_port()
    metrics_port = free_port()
    config_path = os.path.join(tmp, "pgdog.toml")
    write_config(config_path, port, metrics_port, primary, mirror, "")
    with open(os.path.join(tmp, "users.toml"), "w") as f:
        f.write('[[users]]\nname = "pgdog"\ndatabase = "pgdog"\npassword = "pgdog"\n')

    # The schema on both clusters directly: only the workload goes through pgdog.
    for p in (primary, mirror):
        sql(p, "pgdog", [f"DROP TABLE IF EXISTS {TABLE}",
                         f"CREATE TABLE {TABLE} (id int PRIMARY KEY, note text)"])

    pgdog_log = os.path.join(tmp, "pgdog.log")
    pgdog = procs.start("pgdog", [pgdog_bin, "--config", config_path,
                                  "--users", os.path.join(tmp, "users.toml")], pgdog_log)
    def listening():
        if pgdog.poll() is not None:
            raise Failure(f"pgdog exited at startup with status {pgdog.returncode}")
        return port_open(port) and port_open(metrics_port)

    wait_until("pgdog to listen", listening, timeout=15)
    log(f"pgdog on {port}, metrics on {metrics_port}")

    # Before any traffic: every series present, at 0.
    v = mirror_values(text_samples(scrape_text(metrics_port)))
    for k in ("success", "failure", "dropped", "connection", "timeout", "query", "depth",
              "last_success", "last_failure", "lag"):
        check(v[k] == 0, f"{k} is {v[k]} before any traffic")
    check(math.isnan(v["rate"]), f"success rate {v['rate']} before any traffic, expected NaN")

    # The known workload.
    with psycopg.connect(host="127.0.0.1", port=port, dbname="pgdog", user="pgdog",
                         password="pgdog", autocommit=True) as conn:
        next_id = 1
        for _ in range(COMMITTED_AUTOCOMMIT):
            conn.execute(f"INSERT INTO {TABLE} VALUES ({next_id}, 'autocommit')")
            next_id += 1
        for _ in range(COMMITTED_BLOCKS):
            with conn.transaction():
                conn.execute(f"INSERT INTO {TABLE} VALUES ({next_id}, 'block')")
                conn.execute(f"INSERT INTO {TABLE} VALUES ({next_id + 1}, 'block')")
            next_id += 2
        for i in range(ROLLED_BACK):
            with conn.transaction():
                conn.execute(f"INSERT INTO {TABLE} VALUES ({100000 + i}, 'rolled back')")
                raise psycopg.Rollback()
        for _ in range(FAILED_ON_PRIMARY):
            try:
                conn.execute(f"INSERT INTO {TABLE} VALUES (1, 'duplicate')")
                raise Failure("duplicate key accepted by the primary")
            except psycopg.errors.UniqueViolation:
                pass
    committed = COMMITTED_AUTOCOMMIT + COMMITTED_BLOCKS

    v = wait_drained(metrics_port, committed)
    log(f"after the workload: {v}")
    check(v["success"] == committed, f"success {v['success']}, expected {committed}")
    check(v["failure"] == 0 and v["dropped"] == 0 and v["depth"] == 0,
          f"failure/dropped/depth {v['failure']}/{v['dropped']}/{v['depth']}, expected 0/0/0")
    check(v["connection"] == v["timeout"] == v["query"] == 0, f"failures by type: {v}")
    check(v["rate"] == 1.0, f"success rate {v['rate']}, expected 1")
    check(v["last_success"] > time.time() - 120 and v["last_failure"] == 0, f"timestamps: {v}")
    with psycopg.connect(host="127.0.0.1", port=mirror, dbname="pgdog", user="pgdog",
                         password="pgdog", autocommit=True) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    check(rows == COMMITTED_AUTOCOMMIT + 2 * COMMITTED_BLOCKS,
          f"{rows} rows on the mirror, expected {COMMITTED_AUTOCOMMIT + 2 * COMMITTED_BLOCKS}")

    # A known failure count: the table disappears from the mirror only.
    sql(mirror, "pgdog", [f"DROP TABLE {TABLE}"])
    with psycopg.connect(host="127.0.0.1", port=port, dbname="pgdog", user="pgdog",
                         password="pgdog", autocommit=True) as conn:
        for i in range(FAILING_ON_MIRROR):
            conn.execute(f"INSERT INTO {TABLE} VALUES ({200000 + i}, 'fails on the mirror')")
    handed = committed + FAILING_ON_MIRROR
    v = wait_drained(metrics_port, handed)
    log(f"after the mirror fault: {v}")
    check(v["query"] == FAILING_ON_MIRROR,
          f'failures_total{{error_type="query"}} {v["query"]}, expected {FAILING_ON_MIRROR}')
    check(v["failure"] == FAILING_ON_MIRROR, f"failure {v['failure']}")
    check(v["connection"] == 0 and v["timeout"] == 0, f"failures by type: {v}")
    check(v["success"] == committed and v["dropped"] == 0 and v["depth"] == 0, f"{v}")
    check(v["success"] + v["failure"] + v["dropped"] + v["depth"] == handed, f"identity: {v}")
    check(0 < v["rate"] < 1, f"success rate {v['rate']}")
    check(v["last_failure"] >= v["last_success"] > 0, f"timestamps: {v}")

    show = admin_show_mirrors(port)
    log(f"SHOW MIRRORS: {show}")
    for k, metric in (("success", "success"), ("failure", "failure"), ("dropped", "dropped"),
                      ("connection", "connection"), ("timeout", "timeout"), ("query", "query"),
                      ("queue_depth", "depth")):
        check(show[k] == v[metric], f"SHOW MIRRORS {k}={show[k]} but /metrics says {v[metric]}")
    check(show["handed"] == handed, f"SHOW MIRRORS handed={show['handed']}, expected {handed}")

    # promtool on the Prometheus text body.
    text_body = scrape_text(metrics_port)
    promtool_check(text_body, tmp)
    log("promtool check metrics: ok")

    # The negotiated OpenMetrics body, through the Python parser.
    status, headers, body = http_get(metrics_port, accept="application/openmetrics-text")
    check(status == 200, f"OpenMetrics GET answered {status}")
    check(headers.get("Content-Type") == OPENMETRICS, f"Content-Type {headers.get('Content-Type')}")
    om = body.decode()
    check(om.endswith("# EOF\n"), "OpenMetrics body does not end with # EOF")
    check("# TYPE pgdog_mirror_requests counter\n" in om, "counter TYPE line keeps _total")
    families = {f.name: f for f in parse_openmetrics(om)}
    check(families["pgdog_mirror_requests"].type == "counter", "pgdog_mirror_requests type")
    check(families["pgdog_query_duration_seconds"].type == "histogram", "histogram type")
    vo = mirror_values(samples_of(families.values()))
    for k in ("success", "failure", "dropped", "query", "depth"):
        check(vo[k] == v[k], f"OpenMetrics {k}={vo[k]}, text {v[k]}")
    log("OpenMetrics parser: ok")

    # A real Prometheus, scraping every second.
    prom_port = free_port()
    prom_dir = os.path.join(tmp, "prometheus")
    os.makedirs(prom_dir)
    with open(os.path.join(prom_dir, "prometheus.yml"), "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: pgdog
    static_configs:
      - targets: ["127.0.0.1:{metrics_port}"]
""")
    check(os.access(PROMETHEUS, os.X_OK), f"{PROMETHEUS} not installed")
    prom = procs.start("prometheus", [
        PROMETHEUS, f"--config.file={os.path.join(prom_dir, 'prometheus.yml')}",
        f"--storage.tsdb.path={os.path.join(prom_dir, 'data')}",
        f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        os.path.join(tmp, "prometheus.log"), cwd=prom_dir)

    def target_up():
        if prom.poll() is not None:
            raise Failure(f"prometheus exited with {prom.returncode}")
        status, _, body = http_get(prom_port, "/api/v1/targets")
        if status != 200:
            return None
        targets = json.loads(body)["data"]["activeTargets"]
        if targets and targets[0]["lastError"]:
            log(f"Prometheus scrape error: {targets[0]['lastError']}")
        return targets and targets[0]["health"] == "up" and targets[0]

    target = wait_until("Prometheus to scrape pgdog", target_up, timeout=60, interval=0.25)
    log(f"Prometheus target up (lastError {target['lastError']!r})")

    def queried():
        r = prometheus_query(prom_port, 'pgdog_mirror_requests_total{status="success"}')
        return r or None

    result = wait_until("the PromQL query to return a sample", queried, timeout=30, interval=0.25)
    check(len(result) == 1, f"PromQL result: {result}")
    check(result[0]["metric"].get("cluster") == CLUSTER, f"PromQL labels: {result[0]['metric']}")
    check(float(result[0]["value"][1]) == committed,
          f"PromQL pgdog_mirror_requests_total{{status=\"success\"}} = {result[0]['value'][1]}, "
          f"expected {committed}")
    r = prometheus_query(prom_port, 'pgdog_mirror_failures_total{error_type="query"}')
    check(len(r) == 1 and float(r[0]["value"][1]) == FAILING_ON_MIRROR, f"PromQL failures: {r}")
    r = prometheus_query(prom_port, 'sum(pgdog_mirror_requests_total) + '
                                    'sum(pgdog_mirror_queue_depth)')
    check(len(r) == 1 and float(r[0]["value"][1]) == handed, f"PromQL identity: {r}")
    log(f"PromQL: success={result[0]['value'][1]}, query failures={FAILING_ON_MIRROR}")

    # 20 concurrent scrapers (Prometheus scraping too) during a pgbench run through pgdog.
    for p in (primary, mirror):
        pgbench(["-i", "-s", "1", "-q"], p, os.path.join(tmp, "pgbench-init.log"), timeout=120)
    before = mirror_values(text_samples(scrape_text(metrics_port)))
    stop = threading.Event()
    results = [None] * SCRAPERS
    threads = [threading.Thread(target=scraper, args=(metrics_port, stop, results, i), daemon=True)
               for i in range(SCRAPERS)]
    for t in threads:
        t.start()
    try:
        out = pgbench(["-n", "-c", "4", "-j", "2", "-T", "5"], port,
                      os.path.join(tmp, "pgbench.log"), timeout=60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    processed = next((int(line.split(":")[1].split("/")[0])
                      for line in out.splitlines()
                      if line.startswith("number of transactions actually processed")), None)
    tps = next((line for line in out.splitlines() if line.startswith("tps")), "")
    log(f"pgbench: {processed} transactions, {tps}")
    check(processed and processed > 0, f"pgbench output: {out}")
    bad = [(i, r) for i, r in enumerate(results) if r is None or r[1] is not None or r[0] == 0]
    scrapes = sum(r[0] for r in results if r)
    check(not bad, f"scrapers with problems: {bad}")
    log(f"{SCRAPERS} scrapers: {scrapes} complete bodies, no problem")

    after = wait_drained(metrics_port, handed + processed)
    delta = after["success"] - before["success"]
    log(f"after pgbench: {after}")
    # pgbench also runs a few autocommit SELECTs of its own (scale, partitions) at startup.
    check(processed <= delta <= processed + 10,
          f"mirror success grew by {delta} for {processed} pgbench transactions")
    check(after["failure"] == before["failure"] and after["dropped"] == 0,
          f"mirror failures during pgbench: before {before}, after {after}")
    check(pgdog.poll() is None, "pgdog died")

    # Configuration read at each scrape: a reload adds the threshold, then removes the mirror
    # families (the proxy families stay).
    write_config(config_path, port, metrics_port, primary, mirror,
                 "mirror_failure_threshold = 0.25\n")
    pgdog.send_signal(signal.SIGHUP)

    def threshold_exported():
        samples = text_samples(scrape_text(metrics_port))
        return samples.get(("pgdog_mirror_failure_threshold", (("cluster", CLUSTER),)))

    check(wait_until("the threshold family after a reload", threshold_exported, timeout=10) == 0.25,
          "pgdog_mirror_failure_threshold is not 0.25")
    write_config(config_path, port, metrics_port, primary, mirror,
                 "mirror_failure_threshold = 0.25\nmirror_metrics_enabled = false\n")
    pgdog.send_signal(signal.SIGHUP)
    def without_mirror_families():
        b = scrape_text(metrics_port)
        return b if "pgdog_mirror_" not in b else None

    body = wait_until("the mirror families to go after a reload", without_mirror_families,
                      timeout=10)
    check("pgdog_queries_total{" in body, "proxy families missing with mirror metrics disabled")
    promtool_check(body, tmp)
    log("reload: threshold exported, then mirror families removed")

    # Graceful shutdown stops the endpoint too.
    pgdog.send_signal(signal.SIGTERM)
    try:
        rc = pgdog.wait(timeout=15)
    except subprocess.TimeoutExpired:
        raise Failure("pgdog did not exit within 15 s of SIGTERM")
    check(rc == 0, f"pgdog exited with {rc} after SIGTERM")
    check(not port_open(metrics_port), "metrics port still open after pgdog exited")


if __name__ == "__main__":
    sys.exit(main())
