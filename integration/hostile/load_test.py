#!/usr/bin/python3
"""Load: pgbench -C (a new connection per transaction) with 200 clients for 60 s through pgdog
with mirroring on: zero errors, every mirrored transaction accounted for.

The timing comparison "5,000 idle clients plus 64 busy ones" is idle_load.py: run by hand,
reported in docs/security.md; `idle_load.py --functional` (registered) checks only what does not
depend on timing.

Usage: load_test.py [test ...]   (under integration/run)
"""

import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hostile import (Pgdog, check, database_toml, env, log, main, mirroring_toml,  # noqa: E402
                     sql_direct, test)

DURATION = int(os.environ.get("PGDOG_HOSTILE_PGBENCH_SECONDS", "60"))
CLIENTS = 200


def pgbench(args, port, timeout):
    return subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "pgdog"] + args +
                          ["pgdog"], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PGPASSWORD="pgdog", PGCONNECT_TIMEOUT="10"),
                          start_new_session=True)


@test
def pgbench_connect_per_transaction():
    e = env()
    for port in (e.primary_port, e.mirror_port):
        r = pgbench(["-i", "-s", "1", "-q", "-n"], port, 120)
        check(r.returncode == 0, f"pgbench -i on {port}: {r.stderr[-800:]}")
    # checkout_timeout 30 s: 200 clients share 10 servers and, at scale 1, one pgbench_branches
    # row; on a small shared machine the longest waits for a server pass the default 5 s (3 of
    # 200 clients did once, at a load average of 14) and pgbench aborts those clients. This test
    # is about connection churn and mirroring, not pool saturation.
    p = Pgdog(general={"checkout_timeout": "30000"},
              databases=database_toml("pgdog", e.primary_port) +
              database_toml("mirror", e.mirror_port, "pgdog"),
              extra=mirroring_toml(), metrics=True)
    with p:
        fd0, rss0 = p.fd_count(), p.rss_kb()
        peak = {"rss": rss0, "fd": fd0, "depth": 0}
        stop = threading.Event()

        def sample():
            while not stop.wait(0.5):
                try:
                    peak["rss"] = max(peak["rss"], p.rss_kb())
                    peak["fd"] = max(peak["fd"], p.fd_count())
                    v = p.mirror_values()
                    peak["depth"] = max(peak["depth"], v["depth"])
                except Exception:  # noqa: BLE001 - sampling only
                    pass

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        t0 = time.monotonic()
        r = pgbench(["-C", "-c", str(CLIENTS), "-j", "4", "-T", str(DURATION), "-n"], p.port,
                    DURATION + 60)
        took = time.monotonic() - t0
        stop.set()
        t.join(5)
        out = r.stdout + r.stderr
        processed = re.search(r"number of transactions actually processed: (\d+)", out)
        failed = re.search(r"number of failed transactions: (\d+)", out)
        tps = re.search(r"tps = ([\d.]+)", out)
        log(f"pgbench -C -c {CLIENTS} -T {DURATION}: rc {r.returncode} in {took:.0f} s, "
            f"processed {processed and processed.group(1)}, failed {failed and failed.group(1)},"
            f" tps {tps and tps.group(1)}")
        errors = [l for l in r.stderr.splitlines() if "error" in l.lower() or "abort" in l.lower()]
        check(r.returncode == 0, f"pgbench exited {r.returncode}:\n{out[-1500:]}")
        check(processed and int(processed.group(1)) > 0, f"nothing processed:\n{out[-1500:]}")
        check(failed is None or int(failed.group(1)) == 0, f"failed transactions:\n{out[-1500:]}")
        check(not errors, "pgbench errors:\n" + "\n".join(errors[:10]))
        n = int(processed.group(1))

        handed = p.handed()
        v = p.wait_mirror_drained(handed, timeout=60)
        p.check_identity(v, handed, "pgbench -C")
        fd1, rss1 = p.fd_count(), p.rss_kb()
        log(f"mirror: handed {handed} (pgbench transactions {n}), {v}; peak queue depth "
            f"{peak['depth']}")
        log(f"pgdog: fds {fd0} -> peak {peak['fd']} -> {fd1}; RSS {rss0} kB -> peak "
            f"{peak['rss']} kB -> {rss1} kB")
        # Every pgbench transaction was committed on the primary, so handed to the mirror (plus
        # pgbench's own start-up queries).
        check(n <= handed <= n + 4 * CLIENTS, f"handed {handed} for {n} transactions")
        check(v["failure"] == 0, f"the healthy mirror failed transactions: {v}")
        history = [sql_direct(port, ["SELECT count(*) FROM pgbench_history"])[0][0]
                   for port in (e.primary_port, e.mirror_port)]
        log(f"pgbench_history rows: primary {history[0]}, mirror {history[1]}, dropped "
            f"{v['dropped']}")
        check(history[0] == n, f"primary history {history[0]} != {n} transactions")
        check(history[1] == history[0] - v["dropped"] or v["dropped"] > 0 and
              history[1] >= history[0] - v["dropped"],
              f"mirror history {history[1]}, primary {history[0]}, dropped {v['dropped']}")
        # Up to 10 primary and 10 mirror server connections may stay open.
        check(fd1 <= fd0 + 22, f"fds {fd0} -> {fd1} after the run")
        p.assert_serving(None, "after pgbench -C")


if __name__ == "__main__":
    sys.exit(main(time_limit=DURATION + 200))
