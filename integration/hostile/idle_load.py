#!/usr/bin/python3
"""5,000 idle clients plus 64 busy ones: does the busy clients' throughput hold?

Interleaved rounds through one pgdog: pgbench with 64 clients alone (A), then the same with
5,000 idle authenticated clients connected (B), the idle clients closed again before the next
round. Prints each run's TPS, the B/A ratio, and pgdog's RSS and CPU with the idle clients.
The target (issue 8) is B within 10 % of A. This is a timing comparison: run it by hand on a quiet
machine and report it; it asserts nothing about timing.

    integration/run BUILD_DIR -R NOTHING   # or export the variables it exports, then:
    /usr/bin/python3 integration/hostile/idle_load.py [--idle 5000] [--busy 64] [--duration 20]
                                                      [--rounds 3] [--mode select|tpcb]
    /usr/bin/python3 integration/hostile/idle_load.py --functional
        # registered with CTest: short runs, asserts only functional outcomes (every idle client
        # logs in and still answers afterwards, zero pgbench errors, pgdog alive)

Idle clients are opened with scripts/benchlib/pgwire.py (asyncio SCRAM client) in a thread of
this process.
"""

import argparse
import asyncio
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hostile import Failure, Pgdog, check, env, log, open_connections  # noqa: E402


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


class IdleHolder:
    """Holds N authenticated idle connections in a background asyncio loop."""

    def __init__(self, port):
        sys.path.insert(0, os.path.join(env().source_dir, "scripts"))
        from benchlib import pgwire
        self.pgwire = pgwire
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.conns = []

    def _run(self, coro, timeout=300):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def open(self, n, limit=120):
        conns, errors = self._run(self.pgwire.open_many(
            "127.0.0.1", self.port, "pgdog", "pgdog", "pgdog", n, time.monotonic() + limit,
            concurrency=64))
        self.conns.extend(conns)
        return len(conns), errors

    def sample(self, k):
        return self._run(self.pgwire.sample_queries(self.conns, k, 30))

    def close(self):
        """Closes the idle clients and returns once pgdog has ended their sessions."""
        async def go():
            for c in self.conns:
                c.close()
            deadline = time.monotonic() + 30
            while open_connections(self.port) > 0:
                if time.monotonic() > deadline:
                    raise Failure(f"{open_connections(self.port)} idle clients still connected "
                                  "30 s after they closed")
                await asyncio.sleep(0.05)
        self._run(go())
        self.conns = []

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def pgbench(port, args, timeout):
    r = subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "pgdog"] + args +
                       ["pgdog"], capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, PGPASSWORD="pgdog", PGCONNECT_TIMEOUT="10"),
                       start_new_session=True)
    out = r.stdout + r.stderr
    tps = re.search(r"tps = ([\d.]+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return r.returncode, float(tps.group(1)) if tps else 0.0, \
        int(failed.group(1)) if failed else -1, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--busy", type=int, default=64)
    ap.add_argument("--duration", type=int, default=20, help="seconds per pgbench run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mode", choices=("select", "tpcb"), default="select")
    ap.add_argument("--workers", type=int, default=1, help="pgdog's [general] workers (default 1, as pgdog's)")
    ap.add_argument("--functional", action="store_true",
                    help="short runs; assert functional outcomes only (the CTest mode)")
    a = ap.parse_args()
    if a.functional:
        a.duration, a.rounds = 5, 1
    e = env()
    scale = "1" if a.functional else "10"
    r = subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(e.primary_port), "-U", "pgdog",
                        "-i", "-q", "-n", "-s", scale, "pgdog"], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, PGPASSWORD="pgdog"))
    check(r.returncode == 0, f"pgbench -i: {r.stderr[-500:]}")
    bench_args = ["-c", str(a.busy), "-j", "2", "-T", str(a.duration), "-n"]
    if a.mode == "select":
        bench_args.append("-S")
    started = time.monotonic()
    ok = False
    with Pgdog(general={"workers": str(a.workers)}) as p:
        holder = IdleHolder(p.port)
        try:
            results = {"A": [], "B": []}
            notes = []
            for rnd in range(a.rounds):
                rc, tps, failed, out = pgbench(p.port, bench_args, a.duration + 60)
                check(rc == 0 and failed in (0, -1), f"pgbench (no idle): rc {rc}\n{out[-800:]}")
                results["A"].append(tps)
                log(f"round {rnd + 1}: {a.busy} busy alone: {tps:.0f} tps")

                rss0, fd0 = p.rss_kb(), p.fd_count()
                t0 = time.monotonic()
                n, errors = holder.open(a.idle)
                opened = time.monotonic() - t0
                check(n == a.idle and not errors,
                      f"{n} of {a.idle} idle clients logged in; errors {errors}")
                time.sleep(1)  # a measurement: lets RSS settle, asserts nothing
                rss1, fd1 = p.rss_kb(), p.fd_count()
                c0 = cpu_seconds(p.pid)
                time.sleep(3)
                idle_cpu = (cpu_seconds(p.pid) - c0) / 3
                note = (f"{a.idle} idle clients opened in {opened:.1f} s; pgdog RSS {rss0} -> "
                        f"{rss1} kB ({(rss1 - rss0) * 1024 / a.idle:.0f} bytes per idle client), "
                        f"fds {fd0} -> {fd1}, CPU while they idle {idle_cpu * 100:.1f} %")
                notes.append(note)
                log(note)

                rc, tps, failed, out = pgbench(p.port, bench_args, a.duration + 60)
                check(rc == 0 and failed in (0, -1),
                      f"pgbench (with idle): rc {rc}\n{out[-800:]}")
                results["B"].append(tps)
                log(f"round {rnd + 1}: {a.busy} busy + {a.idle} idle: {tps:.0f} tps")
                answered, asked, errs = holder.sample(min(500, a.idle))
                check(answered == asked and not errs,
                      f"idle clients after the run: {answered}/{asked} answered; {errs}")
                holder.close()
                p.check_alive()
            mean_a = sum(results["A"]) / len(results["A"])
            mean_b = sum(results["B"]) / len(results["B"])
            ratio = mean_b / mean_a if mean_a else 0.0
            load = open("/proc/loadavg").read().split()[:3]
            log(f"busy alone: {['%.0f' % x for x in results['A']]} tps, mean {mean_a:.0f}; with "
                f"{a.idle} idle: {['%.0f' % x for x in results['B']]} tps, mean {mean_b:.0f}; "
                f"ratio {ratio:.3f} ({(ratio - 1) * 100:+.1f} %); target within 10 %; "
                f"load average {' '.join(load)} on {os.cpu_count()} CPUs")
            p.assert_serving(None, "idle load")
            ok = True
        except Failure as ex:
            log(f"FAILED: {ex}")
        finally:
            holder.stop()
    log(f"{'1 passed, 0 failed' if ok else '0 passed, 1 failed'} in "
        f"{time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
