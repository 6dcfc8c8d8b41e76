#!/usr/bin/env python3
"""CUTOVER on the admin console, against the real primary and mirror clusters: under a TPC-B
load (no client error, the database served by the former mirror, both clusters equal once the
queue drained, writes after the cutover mirrored back, the way back), kept across RELOAD and a
restart, refused while the mirror is down, and followed by a second pgdog instance.

Usage: cutover_test.py [test ...]   (under integration/run; default: every test)
"""

import glob
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import psycopg  # noqa: E402

from hostile import (Pgdog, Threads, check, database_toml, env, free_port, log,  # noqa: E402
                     main, mirroring_toml, sql_direct, test, wait_until)

GENERAL = {
    "cutover_timeout": "15000",
    # The verdict is tested elsewhere; here a loaded CI machine must not make it flap on
    # latency, and a cluster that just became a mirror must be judged on a short window.
    "mirror_readiness_latency_factor": "1000.0",
    "mirror_readiness_window": "5000",
    "tls_verify": "\"disabled\"",
}


def reset_records():
    """No cluster record left behind for the other tests (pools of a mirrored database read it)."""
    e = env()
    for port in (e.primary_port, e.mirror_port):
        sql_direct(port, ["ALTER DATABASE pgdog RESET pgdog.cutover"])


def record(port):
    rows = sql_direct(port, ["SELECT c FROM pg_db_role_setting r, unnest(r.setconfig) c WHERE "
                             "r.setrole = 0 AND r.setdatabase = (SELECT oid FROM pg_database "
                             "WHERE datname = 'pgdog') AND c LIKE 'pgdog.cutover=%'"])
    return rows[0][0].split("=", 1)[1] if rows else None


def served_by(p):
    with p.connect() as c:
        return c.execute("SELECT inet_server_port()").fetchone()[0]


def status_page_dom(p):
    """GET / on the metrics port as headless Chromium renders it once its script ran."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "status"))
    from status_page_test import chromium
    with tempfile.TemporaryDirectory() as profile:
        rc, dom, err = chromium(profile, f"http://{p.metrics_host}:{p.metrics_port}/", "--dump-dom")
    check(rc == 0 and "</html>" in dom, f"headless Chromium: {err[-1000:]}")
    return dom


def pgdog(general=None, mirror_port=None, **kw):
    e = env()
    g = dict(GENERAL)
    g.update(general or {})
    return Pgdog(general=g, metrics=True,
                 databases=database_toml("pgdog", e.primary_port) +
                 database_toml("mirror", mirror_port or e.mirror_port, "pgdog"),
                 extra=mirroring_toml(extra="queue_length = 512"), **kw)


def wait_ready(p, what):
    def ready():
        status, body = p.http_get("/mirrors")
        return status == 200 and re.search(r'"cluster":"mirror","ready":true', body)
    # Traffic proves the mirror keeps up: one write a poll.
    with p.connect() as c:
        def poke():
            c.execute("SELECT 1")
            return ready()
        wait_until(f"the mirror to be ready ({what})", poke, 60, 0.2)


def cutover(p, command="CUTOVER pgdog"):
    with p.admin() as a:
        cur = a.execute(command)
        names = [d.name for d in cur.description]
        return dict(zip(names, cur.fetchone()))


def balances(port):
    return sql_direct(port, ["SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                             "(SELECT sum(bbalance) FROM pgbench_branches), "
                             "(SELECT count(*) FROM pgbench_history)"])[0]


def pgbench_init():
    e = env()
    for port in (e.primary_port, e.mirror_port):
        r = subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p", str(port),
                            "-U", "pgdog", "pgdog"], env=dict(os.environ, PGPASSWORD="pgdog"),
                           capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, f"pgbench -i on {port}: {r.stderr}")


def run_pgbench(p, seconds, logdir):
    return subprocess.Popen(
        ["pgbench", "-n", "-c", "8", "-j", "2", "-T", str(seconds), "-h", "127.0.0.1", "-p",
         str(p.port), "-U", "pgdog", "-l", "--log-prefix", os.path.join(logdir, "tx"), "pgdog"],
        env=dict(os.environ, PGPASSWORD="pgdog"), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


def longest_wait_ms(logdir):
    worst = 0
    for path in glob.glob(os.path.join(logdir, "tx*")):
        with open(path) as f:
            for line in f:
                worst = max(worst, int(line.split()[2]))
    return worst / 1000.0


@test
def tpcb_cutover_and_back():
    """TPC-B through pgdog, CUTOVER in the middle: no client error, served by the former mirror
    afterwards, both clusters equal to what pgbench committed, writes after the cutover reach
    the old primary; kept across RELOAD and a restart; a second CUTOVER goes back."""
    e = env()
    reset_records()
    pgbench_init()
    p = pgdog()
    logdir = tempfile.mkdtemp(prefix="pgdog-cutover-")
    try:
        with p:
            wait_ready(p, "before the load")
            bench = run_pgbench(p, 12, logdir)
            wait_until("pgbench to commit", lambda: p.handed() >= 200, 30, 0.1)
            wait_ready(p, "under load")
            t0 = time.monotonic()
            row = cutover(p)
            log(f"CUTOVER answered after {time.monotonic() - t0:.2f} s: {row}")
            out, _ = bench.communicate(timeout=120)
            check(bench.returncode == 0, f"pgbench failed:\n{out}")
            done = re.search(r"number of transactions actually processed: (\d+)", out)
            failed = re.search(r"number of failed transactions: (\d+)", out)
            check(done and failed, f"pgbench output:\n{out}")
            committed = int(done.group(1))
            check(int(failed.group(1)) == 0, f"client transactions failed:\n{out}")
            log(f"pgbench committed {committed}; longest client wait "
                f"{longest_wait_ms(logdir):.1f} ms; pgdog held clients {row['held_ms']} ms")
            check(served_by(p) == e.mirror_port, "not served by the former mirror")
            check(record(e.primary_port) == f"{row['generation']} retired pgdog mirror",
                  f"old primary record {record(e.primary_port)!r}")
            # Every transaction pgbench committed is on both clusters, once the queue drained.
            handed = p.handed()
            p.wait_mirror_drained(handed, timeout=60)
            a, b = balances(e.primary_port), balances(e.mirror_port)
            log(f"balances/history: old primary {a}, new primary {b}")
            check(a == b, f"the clusters differ: old primary {a}, new primary {b}")
            check(b[2] == committed, f"history has {b[2]} rows, pgbench committed {committed}")
            # Written after the cutover: served by the new primary, mirrored to the old one.
            with p.connect() as c:
                c.execute("DROP TABLE IF EXISTS cutover_after")
                c.execute("CREATE TABLE cutover_after (v int)")
                c.execute("INSERT INTO cutover_after VALUES (42)")
            wait_until("the write to reach the old primary", lambda: sql_direct(
                e.primary_port, ["SELECT to_regclass('cutover_after') IS NOT NULL AND "
                                 "(SELECT count(*) FROM cutover_after) = 1"])[0][0], 30, 0.1)
            events = p.show("CUTOVERS")
            check(len(events) == 1 and events[0]["result"] == "ok", f"SHOW CUTOVERS: {events}")
            status, body = p.http_get()
            check('pgdog_cutovers_total{database="pgdog",result="ok"} 1' in body,
                  "pgdog_cutovers_total")
            check(re.search(r'pgdog_database_primary\{database="pgdog",cluster="mirror",', body),
                  "pgdog_database_primary does not name the mirror")
            # The status page shows the direction and the history, read-only.
            dom = status_page_dom(p)
            check(re.search(r"pgdog &rarr; <b>mirror</b>|pgdog \u2192 <b>mirror</b>", dom),
                  "the status page does not show pgdog served by mirror")
            rows = re.findall(r'<td class="result-(\w+)">', dom)
            check(rows == ["ok"], f"the status page's cutover history: {rows}")
            check("<button" not in dom and "<form" not in dom, "the status page is not read-only")
            # Kept across RELOAD and a restart.
            with p.admin() as a:
                a.execute("RELOAD")
            check(served_by(p) == e.mirror_port, "RELOAD undid the cutover")
            check(os.path.exists(os.path.join(p.dir, "pgdog-cutover.toml")), "no state file")
            p.stop()
            p.start()
            check(served_by(p) == e.mirror_port, "a restart undid the cutover")
            # The way back, once the old primary is judged ready as a mirror.
            wait_ready(p, "the old primary as a mirror")
            back = cutover(p)
            check(int(back["generation"]) == int(row["generation"]) + 1, f"generation {back}")
            check(served_by(p) == e.primary_port, "the second CUTOVER did not go back")
            check(record(e.mirror_port) == f"{back['generation']} retired pgdog mirror",
                  f"new primary record {record(e.mirror_port)!r}")
    finally:
        reset_records()


@test
def refused_when_mirror_down():
    """The mirror's port is closed: CUTOVER is refused by the verdict and FORCE fails at a step;
    either way nothing changes and a client running meanwhile sees no error."""
    e = env()
    reset_records()
    closed = free_port()  # nothing listens there
    p = pgdog(general={"connect_timeout": "500"}, mirror_port=closed)
    with p:
        with p.connect() as c:
            for _ in range(5):
                c.execute("SELECT 1")
        errors = []
        quit_ = threading.Event()

        def client():
            with p.connect() as c:
                while not quit_.is_set():
                    try:
                        c.execute("SELECT 1")
                    except psycopg.Error as err:
                        errors.append(err)
        threads = Threads()
        threads.start(client)
        try:
            for command, state in (("CUTOVER pgdog", "55000"), ("CUTOVER pgdog FORCE", "58000")):
                try:
                    cutover(p, command)
                    check(False, f"{command} succeeded with the mirror down")
                except psycopg.Error as err:
                    log(f"{command}: {err.sqlstate} {str(err).strip()}")
                    check(err.sqlstate == state, f"{command}: SQLSTATE {err.sqlstate}")
        finally:
            quit_.set()
            threads.join(30)
        check(not errors, f"a client saw errors: {errors[:3]}")
        check(served_by(p) == e.primary_port, "the database moved")
        check(not os.path.exists(os.path.join(p.dir, "pgdog-cutover.toml")), "state written")
        check(record(e.primary_port) is None, "a record was left on the primary")
        results = [r["result"] for r in p.show("CUTOVERS")]
        check(results == ["refused", "failed"], f"SHOW CUTOVERS: {results}")


@test
def two_instances():
    """Two pgdog instances in front of the same clusters, load through both, CUTOVER on one: no
    transaction through either that starts after the swap is served by the old primary, and
    both serve from the new primary afterwards."""
    e = env()
    reset_records()
    sql_direct(e.primary_port, ["DROP TABLE IF EXISTS cutover_two",
                                "CREATE TABLE cutover_two (v int)"])
    sql_direct(e.mirror_port, ["DROP TABLE IF EXISTS cutover_two",
                               "CREATE TABLE cutover_two (v int)"])
    p1, p2 = pgdog(), pgdog()
    seen = []  # (start, end, instance, port or None, error)
    lock = threading.Lock()
    quit_ = threading.Event()

    def worker(p, name):
        conn = None
        while not quit_.is_set():
            t0 = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = p.connect()
                port = conn.execute("INSERT INTO cutover_two VALUES (1) "
                                    "RETURNING current_setting('port')").fetchone()[0]
                with lock:
                    seen.append((t0, time.monotonic(), name, int(port), None))
            except psycopg.Error as err:
                with lock:
                    seen.append((t0, time.monotonic(), name, None, str(err).strip()[:120]))
                if conn is not None and conn.closed:
                    conn = None
            time.sleep(0.005)
        if conn is not None:
            conn.close()

    try:
        with p1, p2:
            wait_ready(p1, "instance 1")
            threads = Threads()
            for k in range(3):
                threads.start(worker, p1, "one")
                threads.start(worker, p2, "two")
            try:
                wait_until("both instances to commit", lambda: len({s[2] for s in seen}) == 2,
                           20, 0.05)
                wait_ready(p1, "instance 1 under load")
                row = cutover(p1)
                swapped = time.monotonic()
                log(f"CUTOVER on instance one: {row}")
                wait_until("instance two to serve from the new primary", lambda: any(
                    s[2] == "two" and s[0] > swapped and s[3] == e.mirror_port for s in seen),
                    30, 0.05)
                t_follow = time.monotonic()
                time.sleep(1)  # the load goes on for a second after instance two followed
            finally:
                quit_.set()
                threads.join(30)
            after = [s for s in seen if s[0] > swapped]
            wrong = [s for s in after if s[3] == e.primary_port]
            errors = [s for s in after if s[4]]
            for name in ("one", "two"):
                n = len([s for s in after if s[2] == name and s[3] == e.mirror_port])
                log(f"instance {name}: {n} transactions after the swap on the new primary")
                check(n > 0, f"instance {name} served nothing after the swap")
            ended = [s for s in seen if s[4] and s[0] <= swapped]
            log(f"instance two followed {t_follow - swapped:.2f} s after the swap; transactions "
                f"failed: {len(ended)} started before the swap (their sessions on the old primary "
                f"were ended), {len(errors)} after: {[s[4] for s in ended + errors][:3]}")
            check(not wrong, f"{len(wrong)} transactions after the swap went to the old primary: "
                  f"{wrong[:3]}")
            check(served_by(p2) == e.mirror_port, "instance two does not serve from the new one")
            followed = [r for r in p2.show("CUTOVERS") if r["origin"] == "followed"]
            check(followed and followed[-1]["result"] == "ok", f"instance two: {followed}")
    finally:
        reset_records()


if __name__ == "__main__":
    sys.exit(main(time_limit=280))
