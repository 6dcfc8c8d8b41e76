#!/usr/bin/python3
"""The status page's history charts, end to end: pgdog with a mirror, real traffic with a known
number of transactions that succeed and fail on the mirror, GET /mirrors/history, then the page
rendered by headless Chromium (its DOM after the script ran, and a screenshot).

Usage: status_page_test.py OUTPUT_DIR (the screenshot goes there). Runs under integration/run,
which exports PRIMARY_PORT, MIRROR_PORT and PGDOG_BIN. Ends with "N passed, N failed".
"""

import html.parser
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "operator"))
from optest import free_port, http_get, port_open, run, run_main, tail, wait_until  # noqa: E402

CLUSTER = "mirror"
MIRRORED = "status_page_it"  # on both clusters: inserts succeed on the mirror
PRIMARY_ONLY = "status_page_it_primary_only"  # dropped on the mirror: inserts fail there (query)
# Per batch: (transactions that succeed on the mirror, transactions that fail there). Each batch
# waits for its own reading, so the history has one reading with traffic per batch at least.
BATCHES = [(10, 0), (10, 1), (10, 2), (10, 3)]
CHARTS = ["success_ratio", "queue_depth", "lag_seconds", "primary_p99_seconds",
          "mirror_p99_seconds", "divergences"]
CHROMIUM = "/usr/bin/chromium"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def pgdog_config(port, metrics_port, primary_port, mirror_port):
    return f"""[general]
host = "127.0.0.1"
port = {port}
openmetrics_host = "127.0.0.1"
openmetrics_port = {metrics_port}
shutdown_timeout = 2000
# Two threads: the sampler and the HTTP server may then run on different ones.
workers = 2

[admin]
password = "admin"

[[databases]]
name = "pgdog"
host = "127.0.0.1"
port = {primary_port}

[[databases]]
name = "{CLUSTER}"
host = "127.0.0.1"
port = {mirror_port}
database_name = "pgdog"

[[mirroring]]
source_db = "pgdog"
destination_db = "{CLUSTER}"
queue_length = 10000
"""


USERS_TOML = '[[users]]\nname = "pgdog"\ndatabase = "pgdog"\npassword = "pgdog"\n'


def connect(psycopg, port):
    return psycopg.connect(host="127.0.0.1", port=port, dbname="pgdog", user="pgdog",
                           password="pgdog", autocommit=True, connect_timeout=10)


def create_tables(psycopg, primary_port, mirror_port):
    """Directly on the clusters: only the workload goes through pgdog."""
    for port in (primary_port, mirror_port):
        with connect(psycopg, port) as conn:
            for table in (MIRRORED, PRIMARY_ONLY):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"CREATE TABLE {MIRRORED} (id int PRIMARY KEY)")
            if port == primary_port:
                conn.execute(f"CREATE TABLE {PRIMARY_ONLY} (id int PRIMARY KEY)")


def history_of(metrics_port):
    """The mirror's readings from GET /mirrors/history, or None when it cannot be read."""
    status, body = http_get(f"http://127.0.0.1:{metrics_port}/mirrors/history")
    if status != 200:
        return None
    for m in json.loads(body)["mirrors"]:
        if m["cluster"] == CLUSTER:
            return m["readings"]
    return None


def ended(readings):
    return sum(r["success"] + r["failure"] for r in readings)


def with_traffic(readings):
    return [r for r in readings if r["success"] + r["failure"] > 0]


def send_batches(c, psycopg, port, metrics_port):
    """Sends BATCHES through pgdog, each after the previous one shows in the history."""
    next_id, sent = 1, 0
    with connect(psycopg, port) as conn:
        for i, (good, bad) in enumerate(BATCHES):
            for _ in range(good):
                conn.execute(f"INSERT INTO {MIRRORED} VALUES ({next_id})")
                next_id += 1
            for _ in range(bad):
                conn.execute(f"INSERT INTO {PRIMARY_ONLY} VALUES ({next_id})")
                next_id += 1
            sent += good + bad
            seen = {}

            def recorded(want=sent, batches=i + 1):
                seen["readings"] = history_of(metrics_port)
                r = seen["readings"]
                return r is not None and ended(r) == want and len(with_traffic(r)) >= batches

            if not c.check(wait_until(recorded, 15), f"batch {i + 1}: the history holds all "
                           f"{sent} mirrored transactions so far", str(seen.get("readings"))[-600:]):
                return None
    return history_of(metrics_port)


class ChartParser(html.parser.HTMLParser):
    """The charts of one mirror's section: metric, data-points, polylines' points, texts by class."""

    def __init__(self, cluster):
        super().__init__()
        self.cluster = cluster
        self.depth_in_mirror = 0
        self.charts = []
        self.text_class = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self.depth_in_mirror:
            if tag == "div":
                self.depth_in_mirror += 1
            elif tag == "svg" and "chart" in a.get("class", "").split():
                self.charts.append({"metric": a.get("data-metric"),
                                    "points": int(a.get("data-points", "-1")),
                                    "polylines": [], "texts": {}})
            elif tag == "polyline" and self.charts:
                self.charts[-1]["polylines"].append(a.get("points", ""))
            elif tag == "text" and self.charts:
                self.text_class = a.get("class")
        elif tag == "div" and a.get("data-cluster") == self.cluster:
            self.depth_in_mirror = 1

    def handle_endtag(self, tag):
        if tag == "text":
            self.text_class = None
        elif tag == "div" and self.depth_in_mirror:
            self.depth_in_mirror -= 1

    def handle_data(self, data):
        if self.text_class and self.charts:
            texts = self.charts[-1]["texts"]
            texts[self.text_class] = texts.get(self.text_class, "") + data


def chromium(profile, url, *args):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--no-proxy-server", f"--user-data-dir={profile}",
           "--window-size=1280,1100", "--virtual-time-budget=5000", *args, url]
    p = subprocess.run(cmd, env=dict(os.environ, HOME=profile), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    return p.returncode, p.stdout, p.stderr


def points_of(chart):
    return [pt for line in chart["polylines"] for pt in line.split()]


def percent(ratio):
    return f"{100 * ratio:.1f}%"


def check_charts(c, charts, before, after):
    by_metric = {ch["metric"]: ch for ch in charts}
    c.check([ch["metric"] for ch in charts] == CHARTS,
            f"the mirror has {len(CHARTS)} charts, one per reading", [ch["metric"] for ch in charts])
    for ch in charts:
        pts = points_of(ch)
        c.check(ch["points"] > 0 and len(pts) == ch["points"],
                f"{ch['metric']}: {ch['points']} points drawn in its polylines",
                f"polylines: {ch['polylines']}")
        c.check("current" in ch["texts"] and "ymin" in ch["texts"] and "ymax" in ch["texts"],
                f"{ch['metric']}: current value and axis labels shown", ch["texts"])
        xy = [tuple(float(v) for v in p.split(",")) for p in pts]
        c.check(all(0 <= x <= 260 and 0 <= y <= 84 for x, y in xy),
                f"{ch['metric']}: every point inside the chart", xy[:10])
    ratio = by_metric.get("success_ratio")
    queue = by_metric.get("queue_depth")
    p99 = by_metric.get("mirror_p99_seconds")
    if not (ratio and queue and p99):
        return
    traffic = with_traffic(before)
    c.check(ratio["points"] == len(traffic),
            f"success ratio: one point per reading with traffic ({len(traffic)})", ratio["points"])
    replayed = [r for r in before if r["mirror_p99_seconds"] is not None]
    c.check(p99["points"] == len(replayed),
            f"mirror p99: one point per reading with a replayed transaction ({len(replayed)})",
            p99["points"])
    c.check(len(before) <= queue["points"] <= len(after),
            f"queue depth: one point per reading ({len(before)}..{len(after)} while rendering)",
            queue["points"])
    good = sum(g for g, _ in BATCHES)
    total = sum(g + b for g, b in BATCHES)
    c.check(ratio["texts"].get("overall") == f"all: {percent(good / total)}",
            f"success ratio label says {percent(good / total)} ({good} of {total} succeeded)",
            ratio["texts"])
    lowest = min(r["success"] / (r["success"] + r["failure"]) for r in traffic)
    c.check(ratio["texts"].get("ymin") == percent(lowest) and ratio["texts"].get("ymax") == "100.0%",
            f"success ratio axis runs from the worst second ({percent(lowest)}) to 100.0%",
            ratio["texts"])
    c.check(queue["texts"].get("current") == "0", "queue depth now: 0 (everything replayed)",
            queue["texts"])
    divergences = by_metric.get("divergences", {"texts": {}})
    most = max(r["divergences"] for r in before)
    c.check(divergences["texts"].get("ymax") == str(max(most, 1)),
            f"divergences axis tops at the busiest second's {most} (at least 1)",
            divergences["texts"])


def check_png(c, path):
    try:
        with open(path, "rb") as f:
            head = f.read(24)
        size = os.path.getsize(path)
    except OSError as e:
        c.fail(f"screenshot {path} written", str(e))
        return
    width, height = struct.unpack(">II", head[16:24]) if len(head) == 24 else (0, 0)
    c.check(head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR" and width > 0 and height > 0
            and size > 1000, f"screenshot is a PNG of {width}x{height}, {size} bytes", head)


def page_checks(c, metrics_port, before, out_dir, tmp):
    url = f"http://127.0.0.1:{metrics_port}/"
    status, page = http_get(url)
    c.check(status == 200 and "http://" not in page and "https://" not in page
            and " src=" not in page, "GET / is self-contained (no external scripts or assets)")
    profile = os.path.join(tmp, "chromium")
    rc, dom, err = chromium(profile, url, "--dump-dom")
    after = history_of(metrics_port) or []
    if not c.check(rc == 0 and "</html>" in dom, "headless Chromium renders the page", err[-2000:]):
        return
    with open(os.path.join(out_dir, "status_page.html"), "w", encoding="utf-8") as f:
        f.write(dom)
    parser = ChartParser(CLUSTER)
    parser.feed(dom)
    check_charts(c, parser.charts, before, after)

    shot = os.path.join(out_dir, "status_page.png")
    if os.path.exists(shot):
        os.remove(shot)
    rc, _, err = chromium(profile, url, f"--screenshot={shot}")
    c.check(rc == 0, "headless Chromium takes a screenshot", err[-2000:])
    print(f"screenshot: {shot}", flush=True)
    check_png(c, shot)


def body(c, out_dir):
    env = {k: os.environ.get(k) for k in ("PGDOG_BIN", "PRIMARY_PORT", "MIRROR_PORT")}
    if not c.check(all(env.values()), "run through integration/run (clusters and PGDOG_BIN)", env):
        return
    if not c.check(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is installed (scripts/install-deps)"):
        return
    import psycopg  # python3-psycopg

    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="pgdog-status-page-it.")
    pgdog = None
    try:
        primary_port, mirror_port = int(env["PRIMARY_PORT"]), int(env["MIRROR_PORT"])
        port, metrics_port = free_port(), free_port()
        cfg, users = os.path.join(tmp, "pgdog.toml"), os.path.join(tmp, "users.toml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(pgdog_config(port, metrics_port, primary_port, mirror_port))
        with open(users, "w", encoding="utf-8") as f:
            f.write(USERS_TOML)
        create_tables(psycopg, primary_port, mirror_port)

        log = os.path.join(tmp, "pgdog.log")
        with open(log, "wb") as out:
            pgdog = subprocess.Popen([env["PGDOG_BIN"], "--config", cfg, "--users", users],
                                     stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        up = wait_until(lambda: pgdog.poll() is not None or
                        (port_open(port) and port_open(metrics_port)), 15)
        if not c.check(up and pgdog.poll() is None, "pgdog listens", tail(log)):
            return
        before = send_batches(c, psycopg, port, metrics_port)
        if before is None:
            return
        print(f"history: {len(before)} readings, {len(with_traffic(before))} with traffic",
              flush=True)
        page_checks(c, metrics_port, before, out_dir, tmp)
    finally:
        if pgdog is not None and pgdog.poll() is None:
            pgdog.terminate()
            try:
                pgdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pgdog.kill()
                pgdog.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if len(sys.argv) != 2:
        print("usage: status_page_test.py OUTPUT_DIR", file=sys.stderr)
        sys.exit(2)
    run_main("status page history", lambda c: body(c, os.path.abspath(sys.argv[1])))


if __name__ == "__main__":
    main()
