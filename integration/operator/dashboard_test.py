#!/usr/bin/python3
"""docs/grafana/pgdog-mirror.json: every PromQL expression of the dashboard returns series from a
real Prometheus scraping a real pgdog that mirrors a workload.

Usage: dashboard_test.py static | live

static  The dashboard's structure (schemaVersion, datasource variable, unique ids, layout, the
        cluster variable, every metric family the migration needs), and every expression parses
        (promtool check rules on the expressions with the variables substituted).
live    Needs PGDOG_BIN, PRIMARY_PORT and MIRROR_PORT (integration/run exports them; the role
        pgdog/pgdog and database pgdog exist on both clusters). Starts pgdog with a [[mirroring]]
        entry and openmetrics_port on a free port, starts /usr/bin/prometheus (1 s scrapes,
        docs/prometheus/alerts.yml loaded) and runs a short workload through pgdog in which about
        mirrored statement in five fails on the mirror (a table that exists only on the
        primary). Then it resolves the dashboard's template variables the way Grafana does,
        evaluates every `expr` with /api/v1/query and fails listing each expression that returned
        an error or no series. It also checks that the alert rules evaluate without error against
        the real metrics (and that the failure-ratio alert is pending), and evaluates the
        ```promql blocks of docs/deployment.md.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from optest import (PromAPI, free_port, http_get, port_open, run, run_main, src, tail,
                    wait_until)

DASHBOARD = src("docs", "grafana", "pgdog-mirror.json")
ALERTS = src("docs", "prometheus", "alerts.yml")
DEPLOYMENT_MD = src("docs", "deployment.md")
PROMETHEUS = os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("PROMTOOL", "promtool")

# What Grafana substitutes for its built-in interval variables. $__rate_interval is what Grafana
# computes for a 15 s scrape interval (4 x 15 s); the live test scrapes every second for longer
# than that window needs (two samples).
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}

# Metric families the migration dashboard must show (the list).
REQUIRED_FAMILIES = [
    "pgdog_mirror_requests_total",
    "pgdog_mirror_failures_total",
    "pgdog_mirror_success_rate",
    "pgdog_mirror_failure_threshold",
    "pgdog_mirror_queue_depth",
    "pgdog_mirror_lag_seconds",
    "pgdog_mirror_last_success_timestamp",
    "pgdog_mirror_last_failure_timestamp",
    "pgdog_transactions_total",
    "pgdog_queries_total",
    "pgdog_query_duration_seconds_bucket",
    "pgdog_clients",
    "pgdog_servers",
    "pgdog_pinned_clients",
    "pgdog_pins_total",
    "up",
]

# ------------------------------------------------------------------ dashboard model


def all_panels(panels):
    """Every panel, including those nested in collapsed rows."""
    for p in panels:
        yield p
        yield from all_panels(p.get("panels") or [])


def targets(dashboard):
    """(panel title, refId, expr) of every query in the dashboard."""
    out = []
    for p in all_panels(dashboard.get("panels", [])):
        for t in p.get("targets") or []:
            out.append((p.get("title", "?"), t.get("refId", "?"), t.get("expr", "")))
    return out


def annotation_targets(dashboard):
    """(annotation name, "annotation", expr) of every Prometheus annotation (cutovers)."""
    return [(a.get("name", "?"), "annotation", a["expr"])
            for a in (dashboard.get("annotations") or {}).get("list") or [] if a.get("expr")]


def variables(dashboard):
    return (dashboard.get("templating") or {}).get("list") or []


def variable_query(v):
    q = v.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    return q or v.get("definition") or ""


VAR_RE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr, values):
    """Replaces $var, ${var}, ${var:fmt} and [[var]] like Grafana; unknown names stay."""

    def repl(m):
        name = m.group(1) or m.group(3) or m.group(4)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in values:
            return values[name]
        return m.group(0)

    return VAR_RE.sub(repl, expr)


def regex_escape(value):
    """A literal for a PromQL regex inside a double-quoted string (Grafana escapes the same)."""
    escaped = re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value)
    return escaped.replace("\\", "\\\\")


def format_multi(values):
    """Grafana's formatting of a multi-value / All variable for the Prometheus data source."""
    if len(values) == 1:
        return regex_escape(values[0])
    return "(" + "|".join(regex_escape(v) for v in values) + ")"


# ------------------------------------------------------------------ static checks


def static_checks(c, dashboard):
    c.section("dashboard structure")
    c.check(isinstance(dashboard.get("schemaVersion"), int) and dashboard["schemaVersion"] >= 38,
            f"schemaVersion >= 38 (is {dashboard.get('schemaVersion')})")
    c.check(dashboard.get("uid") and dashboard.get("title"), "uid and title are set")

    vars_by_name = {v.get("name"): v for v in variables(dashboard)}
    ds = vars_by_name.get("datasource")
    c.check(ds and ds.get("type") == "datasource" and ds.get("query") == "prometheus",
            "a `datasource` variable of type datasource (Prometheus)")
    cl = vars_by_name.get("cluster")
    c.check(cl and cl.get("type") == "query" and re.search(r"label_values\(.*pgdog_mirror_\w+.*,\s*cluster\)",
                                                            variable_query(cl)),
            "a `cluster` query variable: label_values(pgdog_mirror_..., cluster)")
    for v in variables(dashboard):
        if v.get("type") == "query":
            c.check((v.get("datasource") or {}).get("uid") == "${datasource}",
                    f"variable {v.get('name')} queries the ${{datasource}} data source")

    ids = [p.get("id") for p in all_panels(dashboard.get("panels", []))]
    c.check(len(ids) == len(set(ids)) and None not in ids, "panel ids are unique", str(ids))

    problems = []
    for p in all_panels(dashboard.get("panels", [])):
        title = p.get("title", "?")
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")) or g["x"] + g["w"] > 24:
            problems.append(f"{title}: gridPos {g} outside the 24 columns")
        if p.get("type") == "row":
            continue
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            problems.append(f"{title}: panel datasource is not ${{datasource}}")
        ts = p.get("targets") or []
        if not ts:
            problems.append(f"{title}: no targets")
        refs = [t.get("refId") for t in ts]
        if len(refs) != len(set(refs)):
            problems.append(f"{title}: duplicate refId {refs}")
        for t in ts:
            if not (t.get("expr") or "").strip():
                problems.append(f"{title}/{t.get('refId')}: empty expr")
            if (t.get("datasource") or {}).get("uid") != "${datasource}":
                problems.append(f"{title}/{t.get('refId')}: target datasource is not ${{datasource}}")
            if "pgdog_mirror_" in t.get("expr", "") and "$cluster" not in t.get("expr", ""):
                problems.append(f"{title}/{t.get('refId')}: mirror query ignores $cluster")
    c.check(not problems, "panels: layout, datasource, targets, $cluster filters", "\n".join(problems))

    exprs = " ".join(e for _, _, e in targets(dashboard))
    missing = [f for f in REQUIRED_FAMILIES if not re.search(r"\b" + re.escape(f) + r"\b", exprs)]
    c.check(not missing, "every required metric family is on the dashboard", ", ".join(missing))
    for q in ("0.5", "0.95", "0.99"):
        c.check(f"histogram_quantile({q}," in exprs, f"latency p{q[2:].ljust(2, '0')} panel")
    c.check("time() - max by (cluster) (pgdog_mirror_last_success_timestamp" in exprs
            and "time() - max by (cluster) (pgdog_mirror_last_failure_timestamp" in exprs,
            "time since last success / failure")

    c.section("every expression parses (promtool check rules)")
    promtool = shutil.which(PROMTOOL)
    if not c.check(promtool, f"{PROMTOOL} is installed"):
        return
    dummy = {v.get("name"): "x" for v in variables(dashboard)}
    rules = []
    for i, (title, ref, expr) in enumerate(targets(dashboard) + annotation_targets(dashboard)):
        rules.append({"record": f"dashboard:expr_{i}", "expr": substitute(expr, dummy)})
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "exprs.yml")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)  # JSON is YAML
        rc, out = run([promtool, "check", "rules", path])
    c.check(rc == 0, f"{len(rules)} expressions parse", out)


# ------------------------------------------------------------------ live environment


def pgdog_config(port, metrics_port, primary_port, mirror_port):
    return f"""# written by integration/operator/dashboard_test.py
[general]
host = "127.0.0.1"
port = {port}
openmetrics_host = "127.0.0.1"
openmetrics_port = {metrics_port}
mirror_failure_threshold = 0.05
shutdown_timeout = 2000
workers = 2

[admin]
password = "admin"

[[databases]]
name = "pgdog"
host = "127.0.0.1"
port = {primary_port}

[[databases]]
name = "pgdog_mirror"
host = "127.0.0.1"
port = {mirror_port}
database_name = "pgdog"

[[mirroring]]
source_db = "pgdog"
destination_db = "pgdog_mirror"
"""


USERS_TOML = """[[users]]
name = "pgdog"
database = "pgdog"
password = "pgdog"
"""


def prometheus_config(metrics_port):
    return f"""# written by integration/operator/dashboard_test.py
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {ALERTS}
scrape_configs:
  - job_name: pgdog
    static_configs:
      - targets: ["127.0.0.1:{metrics_port}"]
"""


class Processes:
    """Processes this test started; stopped by pid, SIGTERM then SIGKILL."""

    def __init__(self):
        self.procs = []

    def start(self, name, cmd, log_path, cwd=None):
        log = open(log_path, "ab")  # noqa: SIM115 - closed in stop_all
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=cwd)
        self.procs.append((name, p, log))
        return p

    def stop_all(self):
        for name, p, log in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    print(f"  {name} (pid {p.pid}) ignored SIGTERM for 10 s; killing it")
                    p.kill()
                    p.wait(timeout=5)
            log.close()


class Workload:
    """Mirrored traffic through pgdog: transactions, selects, an error on the primary, and
    inserts into a table that exists only on the primary, so they fail on the mirror (query)."""

    def __init__(self, psycopg, port, primary_port, mirror_port):
        self.psycopg = psycopg
        self.port = port
        self.primary_port = primary_port
        self.mirror_port = mirror_port
        tag = f"{os.getpid()}_{int(time.time())}"
        self.table = f"opkit_dash_{tag}"
        self.primary_only = f"opkit_primary_only_{tag}"
        self.counts = {"transactions": 0, "selects": 0, "mirror_failures": 0}
        self.error = None
        self.stop = threading.Event()
        self.thread = None

    def connect(self, port):
        return self.psycopg.connect(host="127.0.0.1", port=port, user="pgdog", password="pgdog",
                                    dbname="pgdog", autocommit=True, connect_timeout=5)

    def setup(self):
        with self.connect(self.primary_port) as direct:
            direct.execute(f"CREATE TABLE {self.primary_only} (n int)")
        with self.connect(self.port) as conn:
            conn.execute(f"CREATE TABLE {self.table} (id bigserial PRIMARY KEY, v text NOT NULL)")

    def _run(self, seconds):
        try:
            with self.connect(self.port) as conn, self.connect(self.port) as idle:
                idle.execute("SELECT 1")
                try:
                    conn.execute("SELECT 1 / 0")  # an error on the primary: counted, not mirrored
                except self.psycopg.errors.DivisionByZero:
                    pass
                end = time.monotonic() + seconds
                i = 0
                while time.monotonic() < end and not self.stop.is_set() and i < 2000:
                    with conn.transaction():
                        conn.execute(f"INSERT INTO {self.table} (v) VALUES (%s)", (f"row {i}",))
                        conn.execute(f"UPDATE {self.table} SET v = v || '.' WHERE id = "
                                     f"(SELECT max(id) FROM {self.table})")
                    self.counts["transactions"] += 1
                    conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()
                    self.counts["selects"] += 1
                    if i % 2 == 0:
                        conn.execute(f"INSERT INTO {self.primary_only} VALUES (%s)", (i,))
                        self.counts["mirror_failures"] += 1
                    i += 1
                    time.sleep(0.1)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            self.error = e

    def start(self, seconds):
        self.thread = threading.Thread(target=self._run, args=(seconds,), daemon=True)
        self.thread.start()

    def join(self):
        if self.thread:
            self.thread.join(timeout=120)

    def cleanup(self):
        for port in (self.primary_port, self.mirror_port):
            try:
                with self.connect(port) as direct:
                    direct.execute(f"DROP TABLE IF EXISTS {self.table}")
                    direct.execute(f"DROP TABLE IF EXISTS {self.primary_only}")
            except Exception as e:  # noqa: BLE001 - best effort
                print(f"  (cleanup on port {port}: {e})")


def resolve_variables(c, api, dashboard):
    """The values Grafana would give each query variable with "All" selected."""
    values = {}
    for v in variables(dashboard):
        name = v.get("name")
        if v.get("type") == "datasource":
            values[name] = "prometheus"
            continue
        if v.get("type") != "query":
            continue
        query = substitute(variable_query(v), values)
        m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", query)
        m1 = re.fullmatch(r"\s*label_values\(\s*(\w+)\s*\)\s*", query)
        found = []
        if m:
            r = api.series(m.group(1))
            if r.get("status") == "success":
                found = sorted({s[m.group(2)] for s in r["data"] if m.group(2) in s})
            else:
                c.fail(f"variable {name}: {query}", r.get("error", r))
                continue
        elif m1:
            r = api.label_values(m1.group(1))
            found = sorted(r.get("data") or [])
        else:
            c.fail(f"variable {name}: unsupported query {query!r}")
            continue
        if v.get("regex"):
            found = [x for x in found if re.search(v["regex"], x)]
        if c.check(found, f"variable ${name} = {found} ({query})"):
            values[name] = format_multi(found)
    return values


def evaluate(c, api, title, expr, values):
    q = substitute(expr, values)
    leftover = re.findall(r"\$\{?\w+", q)
    if leftover:
        c.fail(f"{title}: unresolved variables {leftover}", q)
        return
    r = api.query(q)
    if r.get("status") != "success":
        c.fail(f"{title}: query error", f"{q}\n{r.get('errorType', '')}: {r.get('error', r)}")
        return
    data = r["data"]
    result = data["result"]
    if data["resultType"] in ("scalar", "string"):
        c.ok(f"{title}: {data['resultType']} {result[1]}")
        return
    if not result:
        c.fail(f"{title}: no series", q)
        return
    shown = []
    for s in result[:4]:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s["metric"].items()))
        value = s["value"][1] if "value" in s else f"{len(s.get('values', []))} samples"
        shown.append(f"{{{labels}}} {value}")
    more = f" (+{len(result) - 4})" if len(result) > 4 else ""
    c.ok(f"{title}: {'; '.join(shown)}{more}")


def live_checks(c, dashboard):
    env = {k: os.environ.get(k) for k in ("PGDOG_BIN", "PRIMARY_PORT", "MIRROR_PORT")}
    missing = [k for k, v in env.items() if not v]
    if missing:
        c.fail("environment", f"{', '.join(missing)} not set: run through integration/run BUILD_DIR "
                              "(it starts the clusters and exports them)")
        return
    pgdog_bin = env["PGDOG_BIN"]
    primary_port, mirror_port = int(env["PRIMARY_PORT"]), int(env["MIRROR_PORT"])
    if not c.check(os.access(pgdog_bin, os.X_OK), f"PGDOG_BIN {pgdog_bin} is executable"):
        return
    if not c.check(os.access(PROMETHEUS, os.X_OK), f"{PROMETHEUS} is installed (Debian package prometheus)"):
        return
    try:
        import psycopg  # python3-psycopg
    except ImportError:
        c.fail("python3-psycopg is installed (scripts/install-deps installs it)")
        return

    tmp = tempfile.mkdtemp(prefix="pgdog-dashboard-test.")
    procs = Processes()
    workload = None
    keep = False
    try:
        port, metrics_port, prom_port = free_port(), free_port(), free_port()
        while len({port, metrics_port, prom_port}) < 3:
            metrics_port, prom_port = free_port(), free_port()
        cfg, users = os.path.join(tmp, "pgdog.toml"), os.path.join(tmp, "users.toml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(pgdog_config(port, metrics_port, primary_port, mirror_port))
        with open(users, "w", encoding="utf-8") as f:
            f.write(USERS_TOML)

        c.section("pgdog with mirroring")
        rc, out = run([pgdog_bin, "configcheck", "--config", cfg, "--users", users])
        if not c.check(rc == 0, "pgdog configcheck accepts the test configuration", out):
            return
        pgdog_log = os.path.join(tmp, "pgdog.log")
        pgdog = procs.start("pgdog", [pgdog_bin, "--config", cfg, "--users", users], pgdog_log)
        if not c.check(wait_until(lambda: port_open(port) or pgdog.poll() is not None, 10)
                       and pgdog.poll() is None, f"pgdog listens on 127.0.0.1:{port}",
                       tail(pgdog_log)):
            return
        metrics_up = wait_until(lambda: port_open(metrics_port), 5)
        status, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        if not c.check(metrics_up and status == 200 and "pgdog_mirror_requests_total" in body,
                       f"GET /metrics on 127.0.0.1:{metrics_port} serves the mirror families",
                       f"status {status}: {body[:300]}\n(is /metrics wired into pgdog yet? "
                       f"openmetrics_port = {metrics_port})\n--- pgdog log ---\n{tail(pgdog_log)}"):
            keep = True
            return

        c.section("prometheus and workload")
        prom_dir = os.path.join(tmp, "prometheus")
        os.makedirs(prom_dir)
        prom_cfg = os.path.join(prom_dir, "prometheus.yml")
        with open(prom_cfg, "w", encoding="utf-8") as f:
            f.write(prometheus_config(metrics_port))
        prom_log = os.path.join(tmp, "prometheus.log")
        prom = procs.start("prometheus", [
            PROMETHEUS, f"--config.file={prom_cfg}", f"--storage.tsdb.path={prom_dir}/data",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn",
            "--storage.tsdb.retention.time=1h"], prom_log)
        api = PromAPI(f"http://127.0.0.1:{prom_port}")
        ready = wait_until(lambda: http_get(f"{api.base}/-/ready", timeout=1)[0] == 200
                           or prom.poll() is not None, 30, 0.2)
        if not c.check(ready and prom.poll() is None, f"prometheus ready on 127.0.0.1:{prom_port}",
                       tail(prom_log)):
            return

        workload = Workload(psycopg, port, primary_port, mirror_port)
        workload.setup()
        workload.start(seconds=20)
        workload.join()
        c.check(workload.error is None and workload.counts["transactions"] > 20,
                f"workload through pgdog: {workload.counts}", repr(workload.error))

        # Wait until the end of the workload is scraped and enough samples exist for rate().
        def scraped():
            r = api.query('count_over_time(up{job="pgdog"}[1m]) >= 20 and up{job="pgdog"} == 1')
            return r.get("status") == "success" and len(r["data"]["result"]) == 1
        c.check(wait_until(scraped, 30, 0.5), "prometheus scraped pgdog (up == 1, >= 20 scrapes)",
                json.dumps(api.query('up{job="pgdog"}'))[:500] + "\n" + tail(prom_log))
        # The rules evaluated over the finished workload: every rule has a verdict, and the
        # failure-ratio alert the workload must raise is there (checked again below).
        def evaluated():
            rules = api.get("/api/v1/rules")
            health = [rule.get("health") for g in (rules.get("data") or {}).get("groups", [])
                      for rule in g.get("rules", [])]
            alerts = api.get("/api/v1/alerts")
            raised = any(a["labels"].get("alertname") == "PgdogMirrorFailureRatioAboveThreshold"
                         for a in (alerts.get("data") or {}).get("alerts", []))
            return health and "unknown" not in health and raised
        c.check(wait_until(evaluated, 30, 0.5), "the alert rules evaluated the workload",
                tail(prom_log))

        r = api.query('sum(pgdog_mirror_requests_total{status="success"})')
        ok = r.get("status") == "success" and r["data"]["result"] and float(r["data"]["result"][0]["value"][1]) > 0
        c.check(ok, "the workload reached the mirror (success > 0)", json.dumps(r)[:300])
        r = api.query('sum(pgdog_mirror_failures_total{error_type="query"})')
        ok = r.get("status") == "success" and r["data"]["result"] and float(r["data"]["result"][0]["value"][1]) > 0
        c.check(ok, "inserts into the primary-only table failed on the mirror (query > 0)",
                json.dumps(r)[:300])

        c.section("template variables")
        values = resolve_variables(c, api, dashboard)

        c.section("every dashboard expression returns series")
        for title, ref, expr in targets(dashboard):
            evaluate(c, api, f"{title} [{ref}]", expr, values)

        c.section("alert rules against the real metrics")
        rules = api.get("/api/v1/rules")
        bad = []
        names = []
        for g in (rules.get("data") or {}).get("groups", []):
            for rule in g.get("rules", []):
                names.append(rule.get("name"))
                if rule.get("health") != "ok":
                    bad.append(f"{rule.get('name')}: health {rule.get('health')} {rule.get('lastError', '')}")
        c.check(rules.get("status") == "success" and len(names) >= 6 and not bad,
                f"{len(names)} alert rules loaded and evaluated without error", "\n".join(bad) or json.dumps(rules)[:500])
        alerts = api.get("/api/v1/alerts")
        active = {(a["labels"].get("alertname"), a["labels"].get("cluster"), a.get("state"))
                  for a in (alerts.get("data") or {}).get("alerts", [])}
        c.check(any(n == "PgdogMirrorFailureRatioAboveThreshold" and cl == "pgdog_mirror"
                    for n, cl, _ in active),
                "PgdogMirrorFailureRatioAboveThreshold is pending for cluster pgdog_mirror "
                "(~1 mirrored transaction in 5 fails, threshold 5%)", str(active))
        for name in ("PgdogMirrorFailureRatioHigh", "PgdogDown", "PgdogAbsent", "PgdogMirrorDropping"):
            c.check(not any(n == name for n, _, _ in active), f"{name} is not active", str(active))

        if os.path.exists(DEPLOYMENT_MD):
            c.section("docs/deployment.md PromQL examples")
            with open(DEPLOYMENT_MD, encoding="utf-8") as f:
                blocks = re.findall(r"```promql\n(.*?)```", f.read(), re.S)
            c.check(blocks, f"{len(blocks)} ```promql blocks in docs/deployment.md")
            for i, block in enumerate(blocks, 1):
                evaluate(c, api, f"deployment.md promql block {i}", block.strip(), values)
    finally:
        procs.stop_all()
        if workload:
            workload.cleanup()
        if c.failed or keep:
            print(f"\n(logs and configuration kept in {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "live"
    if mode not in ("static", "live"):
        print(__doc__)
        sys.exit(2)

    def body(c):
        with open(DASHBOARD, encoding="utf-8") as f:
            dashboard = json.load(f)
        if mode == "static":
            static_checks(c, dashboard)
        else:
            live_checks(c, dashboard)

    run_main(f"operator.dashboard_{mode}", body)


if __name__ == "__main__":
    main()
