#!/usr/bin/python3
"""Faults: a relay (relay.py) between pgdog and PostgreSQL stalls, resets or slows the primary's
or the mirror's traffic; the primary is restarted under load; 10,000 connect / disconnect
cycles; clients killed in the middle of a transaction.

Primary faults must give clients clean errors, in bounded time, and pgdog must recover by itself
when the relay passes again. Mirror faults must never reach clients, and each mirrored
transaction must be classified exactly as docs/mirroring.md says: stall -> timeout after
mirror_timeout, reset -> connection, slow below mirror_timeout -> success; the identity
handed = success + failure + dropped + queue_depth holds.

Usage: faults_test.py [test ...]   (under integration/run; default: every test; primary_restart
stops and starts the shared primary, so it runs last)
"""

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import psycopg  # noqa: E402

from hostile import (Failure, Pgdog, Threads, check, check_memory, connections_to,  # noqa: E402
                     database_toml, env, log, main, mirroring_toml, msg, open_connections, sql_direct, startup_packet, test,
                     wait_until)
from relay import Relay  # noqa: E402


def timed(fn):
    t0 = time.monotonic()
    try:
        return fn(), None, time.monotonic() - t0
    except psycopg.Error as e:
        return None, e, time.monotonic() - t0


def sqlstate(e):
    return getattr(e, "sqlstate", None) or "-"


def describe(e):
    return f"{type(e).__name__}[{sqlstate(e)}]: {str(e).strip()[:200]}"


# -------------------------------------------------------------------------------- primary faults

@test
def primary_stalled():
    """The primary stops answering: clients that were waiting for it get their answer only when it
    speaks again (pgdog has no query timeout), clients needing another server get a clean
    checkout error within checkout_timeout, and everything works again once the relay passes."""
    e = env()
    with Relay(e.primary_port) as relay:
        p = Pgdog(general={"connect_timeout": "1000", "checkout_timeout": "1500",
                           "tls_verify": "\"disabled\"",  # the relay reads the bytes
                           "default_pool_size": "2"},
                  databases=database_toml("pgdog", relay.port))
        with p:
            a, b, c = p.connect(), p.connect(), p.connect()
            for conn in (a, b, c):
                conn.execute("SELECT 1")
            # Both servers busy in transactions that stall.
            a.execute("BEGIN")
            b.execute("BEGIN")
            relay.stall()
            results = {}
            threads = Threads()
            held = {}
            for name, conn in (("a", a), ("b", b)):
                held[name] = relay.arm(f"'stalled {name}'".encode(), received=True)
                threads.start(lambda n=name, cn=conn: results.__setitem__(
                    n, timed(lambda: cn.execute(f"SELECT 'stalled {n}'").fetchone())))
            # Both queries went through pgdog and wait at the relay.
            for name in ("a", "b"):
                check(held[name].wait(10), f"client {name}'s query never reached the relay")
            # A third client needs a server: none is free and the stalled ones are busy.
            row, err, took = timed(lambda: c.execute("SELECT 1").fetchone())
            log(f"third client while stalled: {describe(err) if err else row} after {took:.2f} s")
            check(err is not None, "a query was answered while the primary is stalled")
            check(took < 1.5 + 1.0, f"the checkout error took {took:.1f} s (checkout_timeout 1.5)")
            check(sqlstate(err) == "08006", f"checkout error: {describe(err)}")
            check(not c.closed, "the client was disconnected for a checkout timeout")
            # A new login still works (the login needs no server: defaults are cached).
            with p.connect() as d:
                row, err, took = timed(lambda: d.execute("SELECT 1").fetchone())
                check(err is not None and sqlstate(err) == "08006",
                      f"new client while stalled: {row} {describe(err) if err else ''}")
            # Stalled for longer than checkout_timeout by now: pgdog did not answer them itself.
            check(not results, f"stalled queries answered while stalled: {results}")
            relay.pass_()
            threads.join(10)
            for name in ("a", "b"):
                row, err, took = results[name]
                log(f"stalled client {name}: {describe(err) if err else row} after {took:.1f} s")
                check(err is None and row == (f"stalled {name}",), f"client {name}: {row} {err}")
            a.execute("COMMIT")
            b.execute("COMMIT")
            # Recovered: the third client, and new clients, work at once.
            check(c.execute("SELECT 'back'").fetchone() == ("back",), "third client afterwards")
            for conn in (a, b, c):
                conn.close()
            p.assert_serving(None, "after the stall")

            # Stalled with the clients gone: they leave, the servers stay busy until the
            # primary speaks, then pgdog discards them and serves again by itself.
            gone = [p.wire().must_login() for _ in range(2)]
            relay.stall()
            held = []
            for i, w in enumerate(gone):
                held.append(relay.arm(f"'gone {i}'".encode(), received=True))
                w.send(msg(b"Q", f"SELECT pg_sleep(0.1), 'gone {i}'\0".encode()))
            # Both queries hold a server: they wait at the relay.
            for i, ev in enumerate(held):
                check(ev.wait(10), f"query {i} never reached the relay")
            for w in gone:
                w.close_abruptly()
            relay.pass_()
            t0 = time.monotonic()
            wait_until("pgdog to serve after the stalled clients left",
                       lambda: p.connect().execute("SELECT 1").fetchone() == (1,), 10, 0.2)
            log(f"served again {time.monotonic() - t0:.1f} s after the relay passed")
            p.assert_serving(None, "after the stall with clients gone")

        # The primary stalled before pgdog has any server: logins fail within connect_timeout.
        relay.stall()
        with Pgdog(general={"connect_timeout": "1000", "checkout_timeout": "3000"},
                   databases=database_toml("pgdog", relay.port)) as p2:
            t0 = time.monotonic()
            try:
                p2.connect().close()
                raise Failure("logged in although the primary is stalled")
            except psycopg.OperationalError as err:
                took = time.monotonic() - t0
                log(f"login with a stalled primary: {str(err).strip()[:200]} after {took:.1f} s")
                check(took < 3.5, f"login error after {took:.1f} s (connect_timeout 1 s)")
                check("timed out" in str(err) or "timeout" in str(err), str(err))
            relay.pass_()
            wait_until("a login once the relay passes",
                       lambda: p2.connect().execute("SELECT 1").fetchone() == (1,), 10, 0.3)
            p2.assert_serving(None, "stalled at connect")


@test
def primary_reset():
    """Connections to the primary reset (RST) in a transaction, mid-query and while idle in the
    pool: clean errors (08006), no partial transaction, and pgdog serves again at once."""
    e = env()
    sql_direct(e.primary_port, ["DROP TABLE IF EXISTS fault_reset",
                                "CREATE TABLE fault_reset (v text)"])
    with Relay(e.primary_port) as relay:
        p = Pgdog(general={"connect_timeout": "1000", "checkout_timeout": "2000",
                           "tls_verify": "\"disabled\"",  # the relay reads the bytes
                           "default_pool_size": "4"},
                  databases=database_toml("pgdog", relay.port))
        with p:
            # 1. In a transaction, between statements.
            a = p.wire().must_login()
            for q in ("BEGIN", "INSERT INTO fault_reset VALUES ('reset-in-transaction')"):
                _, err = a.query(q)
                check(err is None, f"{q}: {err}")
            check(relay.reset() >= 1, "nothing to reset")  # the RST is in pgdog's socket now
            t0 = time.monotonic()
            a.send(msg(b"Q", b"INSERT INTO fault_reset VALUES ('2')\0"))
            f = a.expect_rejected("08006", "statement after the reset", timeout=4)
            took = time.monotonic() - t0
            log(f"reset between statements, next statement: {f.get('S')} {f['C']} {f['M']} "
                f"after {took:.2f} s")
            check(took < 2, f"took {took:.1f} s")
            a.close()
            rows = sql_direct(e.primary_port, ["SELECT count(*) FROM fault_reset"])[0][0]
            check(rows == 0, f"{rows} rows of the reset transaction reached the primary")

            # 2. Mid-query: pg_sleep(5) reset after it reached the server.
            b = p.wire().must_login()
            seen = relay.arm(b"pg_sleep(5)")
            b.send(msg(b"Q", b"SELECT pg_sleep(5)\0"))
            check(seen.wait(5), "the query never reached the relay")
            wait_until("pg_sleep(5) to run on the primary", lambda: sql_direct(e.primary_port, [
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
                "query = 'SELECT pg_sleep(5)'"])[0][0] == 1, 10)
            t0 = time.monotonic()
            relay.reset()
            f = b.expect_rejected("08006", "query reset mid-way", timeout=4)
            took = time.monotonic() - t0
            log(f"query reset mid-way: {f.get('S')} {f['C']} {f['M']} after {took:.2f} s")
            check(took < 2, f"the reset query took {took:.1f} s to fail (pg_sleep 5 s)")
            b.close()

            # 3. While idle in the pool: sessions that were idle come back to dead servers.
            idle = [p.connect() for _ in range(4)]
            # Make four servers exist and sit idle.
            for conn in idle:
                conn.execute("BEGIN")
            for conn in idle:
                conn.execute("COMMIT")
            relay.reset()
            # Not a wait for the reset (done when reset() returns): the servers sit idle past
            # the 100 ms after which pgdog checks an idle server before handing it out.
            time.sleep(0.3)
            errors = []
            for conn in idle:
                row, err, took = timed(lambda cn=conn: cn.execute("SELECT 'after'").fetchone())
                if err:
                    errors.append(describe(err))
                    check(sqlstate(err).startswith("08"), f"unclean error: {describe(err)}")
                    check(took < 3, f"error after {took:.1f} s")
                else:
                    check(row == ("after",), str(row))
            log(f"idle sessions after the pooled servers were reset: {len(errors)} of 4 errors"
                f"{': ' + errors[0] if errors else ''}")
            for conn in idle:
                conn.close()
            p.assert_serving(None, "after resets")
            # Reset and refuse new connections for a moment: logins / queries fail cleanly,
            # then recover by themselves.
            relay.reset(refuse_new=True)
            with p.connect() as c:
                row, err, took = timed(lambda: c.execute("SELECT 1").fetchone())
                log(f"query while every connection is reset: "
                    f"{describe(err) if err else row} ({took:.2f} s)")
                check(err is not None and took < 3, f"{row} {err} {took}")
            relay.pass_()
            wait_until("pgdog to serve after the resets",
                       lambda: p.connect().execute("SELECT 1").fetchone() == (1,), 10, 0.2)
            p.assert_serving(None, "after resets")


@test
def primary_slowed():
    """Every chunk to and from the primary delayed by 50 ms: slower, no errors."""
    e = env()
    with Relay(e.primary_port) as relay:
        p = Pgdog(general={"connect_timeout": "3000", "default_pool_size": "4"},
                  databases=database_toml("pgdog", relay.port))
        with p:
            relay.slow(0.05)
            lat = []
            errors = []

            def worker(i):
                with p.connect() as conn:
                    for j in range(8):
                        row, err, took = timed(lambda: conn.execute(
                            "SELECT %s::int", (i * 100 + j,)).fetchone())
                        if err or row != (i * 100 + j,):
                            errors.append(describe(err) if err else str(row))
                        lat.append(took)

            threads = Threads()
            for i in range(6):
                threads.start(worker, i)
            threads.join(60)
            lat.sort()
            log(f"48 queries through a 50 ms relay: min {lat[0]:.3f} s, median "
                f"{lat[len(lat) // 2]:.3f} s, max {lat[-1]:.3f} s, errors {len(errors)}")
            check(not errors, f"errors: {errors[:3]}")
            check(lat[0] >= 0.09, f"a query took {lat[0]:.3f} s through a 2 x 50 ms relay")
            relay.pass_()
            p.assert_serving(None, "after the slow primary")


# --------------------------------------------------------------------------------- mirror faults

class Workload:
    """Autocommit INSERTs from several clients at once; every one must succeed, fast."""

    def __init__(self, p, table):
        self.p = p
        self.table = table
        self.next_id = 0
        self.committed = 0
        self.lock = threading.Lock()

    def run(self, clients, per_client, extra_sql=None):
        errors, slowest = [], [0.0]

        def one(k):
            with self.p.connect(prepare_threshold=None) as conn:
                for _ in range(per_client):
                    with self.lock:
                        self.next_id += 1
                        i = self.next_id
                    sql = extra_sql or f"INSERT INTO {self.table} VALUES ({i})"
                    _, err, took = timed(lambda: conn.execute(sql))
                    slowest[0] = max(slowest[0], took)
                    if err:
                        errors.append(describe(err))
                    else:
                        with self.lock:
                            self.committed += 1

        threads = Threads()
        for k in range(clients):
            threads.start(one, k)
        threads.join(60)
        check(not errors, f"a mirror fault reached the clients: {errors[:3]}")
        return slowest[0]


@test
def mirror_faults():
    """Stall, reset and slow the mirror while clients write through pgdog: zero client errors,
    and exact outcome counts on /metrics after each phase."""
    e = env()
    for port in (e.primary_port, e.mirror_port):
        sql_direct(port, ["DROP TABLE IF EXISTS fault_mirror",
                          "CREATE TABLE fault_mirror (id int)"])
    with Relay(e.mirror_port) as relay:
        p = Pgdog(general={"connect_timeout": "5000", "checkout_timeout": "5000",
                           "tls_verify": "\"disabled\"",  # the relay reads the bytes
                           "mirror_timeout": "1000"},
                  databases=database_toml("pgdog", e.primary_port) +
                  database_toml("mirror", relay.port, "pgdog", "pool_size = 2"),
                  extra=mirroring_toml(extra="compare = \"off\""), metrics=True)
        with p:
            w = Workload(p, "fault_mirror")
            expect = {"success": 0, "connection": 0, "timeout": 0, "query": 0, "dropped": 0}

            def settle(phase):
                handed = p.handed()
                check(handed == w.committed,
                      f"{phase}: handed {handed}, clients committed {w.committed}")
                v = p.wait_mirror_drained(handed, timeout=40)
                p.check_identity(v, handed, phase)
                got = {k: v[k] for k in expect}
                log(f"{phase}: handed {handed}, {got}")
                check(got == expect, f"{phase}: expected {expect}, got {got}")
                return v

            # 0. Healthy: warms the mirror pool (2 connections).
            w.run(2, 5)
            expect["success"] += 10
            settle("healthy")

            # 1. Stalled both ways: each mirrored transaction times out after mirror_timeout,
            # the clients notice nothing.
            relay.stall()
            t0 = time.monotonic()
            slowest = w.run(3, 2)
            # A client that waited on the mirror would wait at least mirror_timeout (1 s).
            check(slowest < 0.9, f"a client waited {slowest:.2f} s while the mirror stalled")
            expect["timeout"] += 6
            settle("stalled")
            took = time.monotonic() - t0
            log(f"6 stalled transactions classified in {took:.1f} s (2 workers, 1 s timeout)")
            check(took >= 2.5, f"6 timeouts of 1 s on 2 workers ended in {took:.1f} s")
            # Stalled one way only (answers lost): the same.
            relay.pass_()
            wait_until("mirror serving again", lambda: _mirror_ok(p, w, expect), 20, 0.5)
            relay.stall(up=False, down=True)
            w.run(1, 2)
            expect["timeout"] += 2
            settle("answers stalled")
            relay.pass_()

            # Recovers by itself.
            wait_until("mirror serving again", lambda: _mirror_ok(p, w, expect), 20, 0.5)
            w.run(2, 3)
            expect["success"] += 6
            settle("after the stall")

            # 2. Reset mid-request: the replay of a slow statement is reset on the wire.
            seen = relay.arm(b"mirror-reset-marker")
            with p.connect() as conn:
                conn.execute("SELECT pg_sleep(0.05), 'mirror-reset-marker'")
                w.committed += 1
            check(seen.wait(5), "the mirrored statement never reached the relay")
            relay.reset()
            expect["connection"] += 1
            settle("reset mid-request")
            # Reset, and every new connection reset at once: each one fails as `connection`.
            relay.reset(refuse_new=True)
            slowest = w.run(2, 3)
            check(slowest < 0.9, f"a client waited {slowest:.2f} s while the mirror reset")
            expect["connection"] += 6
            settle("resetting")
            relay.pass_()
            wait_until("mirror serving again", lambda: _mirror_ok(p, w, expect), 20, 0.5)

            # 3. Slow (100 ms a chunk, well below the 1 s mirror_timeout): all succeed.
            w.run(2, 2)  # both mirror connections open before slowing
            expect["success"] += 4
            settle("warm")
            relay.slow(0.1)
            slowest = w.run(3, 3)
            check(slowest < 0.9, f"a client waited {slowest:.2f} s while the mirror was slow")
            expect["success"] += 9
            settle("slow")
            relay.pass_()
            check(relay.connections() <= 2, f"{relay.connections()} mirror connections for a "
                                             "pool of 2")
            p.assert_serving(None, "mirror faults")


@test
def mirror_queue_memory():
    """While the mirror stalls, committed transactions wait in its queue (mirror_queue, 128 by
    default), each as the frames the client sent (up to max_message_size, 64 MiB). One client
    committing large statements makes pgdog hold all of them: memory is bounded only by
    queue_length x transaction size. This asserts a byte bound (128 MiB for 320 MB of queued
    statements); the counts must still add up once the mirror comes back."""
    e = env()
    with Relay(e.mirror_port) as relay:
        p = Pgdog(general={"mirror_timeout": "30000", "tls_verify": '"disabled"'},
                  databases=database_toml("pgdog", e.primary_port) +
                  database_toml("mirror", relay.port, "pgdog", "pool_size = 2"),
                  extra=mirroring_toml(extra='compare = "off"'), metrics=True)
        with p:
            with p.connect() as c:
                c.execute("SELECT 1")
            before = p.handed()
            p.wait_mirror_drained(before)
            relay.stall()
            rss0 = p.rss_kb()
            big = "x" * (8 * 1024 * 1024)
            n = 40
            with p.connect(prepare_threshold=None) as c:
                for _ in range(n):
                    # Simple protocol, a literal of 8 MiB: the primary answers at once.
                    c.execute(f"SELECT length('{big}')".encode(), prepare=False)
            # No wait needed: pgdog hands a transaction over (queued, or dropped when the queue
            # is full) before the client sees its commit, so every one is held or dropped now.
            handed = p.handed()
            check(handed == before + n, f"handed {handed}: {before} before, then the client "
                                        f"committed {n}")
            rss1 = p.rss_kb()
            v = p.mirror_values()
            grown = (rss1 - rss0) // 1024
            log(f"{n} committed 8 MiB statements with the mirror stalled: queue depth "
                f"{v['depth']}, pgdog RSS {rss0 // 1024} -> {rss1 // 1024} MiB (+{grown} MiB)")
            # Drain fast: the mirror resets every connection, the queue ends as failures.
            relay.reset(refuse_new=True)
            check(p.handed() == handed, f"handed {p.handed()} after the commits, {handed} at once")
            v = p.wait_mirror_drained(handed, timeout=120)
            p.check_identity(v, handed, "queue memory")
            log(f"drained: handed {handed}, {v}")
            check_memory(grown < 128, f"pgdog holds {grown} MiB for the stalled mirror's queue "
                               f"({n} x 8 MiB statements; no byte bound on mirror_queue)")


def _mirror_ok(p, w, expect):
    """One committed probe transaction; True once it was mirrored successfully (the probes that
    were not are added to expect)."""
    before = p.mirror_values()
    with p.connect() as conn:
        conn.execute("SELECT 'probe'")
    w.committed += 1
    v = p.wait_mirror_drained(p.handed(), timeout=15)
    for k in ("success", "connection", "timeout", "query", "dropped"):
        expect[k] += v[k] - before[k]
    return v["success"] > before["success"]


# ----------------------------------------------------------------------------- other faults

@test
def connect_cycles():
    """10,000 connect / disconnect cycles of every kind leave pgdog's fds and RSS where they
    were."""
    sys.path.insert(0, os.path.join(env().source_dir, "scripts"))
    from benchlib import pgwire

    with Pgdog(general={"default_pool_size": "4"}) as p:
        startup = startup_packet({"user": "pgdog", "database": "pgdog"})

        async def cycles(n, concurrency=32):
            sem = asyncio.Semaphore(concurrency)
            errors = {}

            async def one(i):
                async with sem:
                    # ~48 % polite (Terminate), 20 % a query first, 20 % RST without
                    # Terminate, 10 % gone in the middle of the login, 2 % gone in BEGIN (its
                    # server is discarded and replaced: a new server login costs ~10 ms).
                    kind = 3 if i % 50 == 49 else \
                        {0: 0, 1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 6: 2, 7: 2, 8: 4, 9: 0}[i % 10]
                    try:
                        if kind == 4:
                            r, wr = await asyncio.open_connection("127.0.0.1", p.port)
                            wr.write(startup)
                            await wr.drain()
                            await r.readexactly(5)
                            wr.close()
                            return
                        c = await pgwire.connect("127.0.0.1", p.port, "pgdog", "pgdog", "pgdog")
                        if kind == 1:
                            await c.query("SELECT 1")
                        if kind == 2:
                            # Abrupt: RST without Terminate.
                            s = c.writer.get_extra_info("socket")
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                         struct.pack("ii", 1, 0))
                            c.writer.transport.abort()
                        elif kind == 3:
                            # In a transaction, then gone.
                            await c.query("BEGIN")
                            c.writer.transport.abort()
                        else:
                            c.close()
                    except Exception as ex:  # noqa: BLE001
                        k = f"{type(ex).__name__}: {ex}"[:120]
                        errors[k] = errors.get(k, 0) + 1

            await asyncio.gather(*(one(i) for i in range(n)))
            return errors

        errs = asyncio.run(cycles(500))
        check(not errs, f"warm-up errors: {errs}")
        # The baseline once pgdog has ended every warm-up session.
        wait_until("the warm-up sessions to end", lambda: open_connections(p.port) == 0, 10, 0.05)
        # Server connections come and go with the pool (up to its size, closed after
        # idle_timeout): they are not what this test is about, so they are counted apart.
        primary = env().primary_port

        def fds():
            return p.fd_count() - connections_to(primary)

        fd0, rss0 = fds(), p.rss_kb()
        t0 = time.monotonic()
        errs = asyncio.run(cycles(10000))
        took = time.monotonic() - t0
        check(not errs, f"errors during the cycles: {errs}")
        wait_until("the sessions to end", lambda: open_connections(p.port) == 0, 10, 0.05)
        wait_until("fds back to the baseline", lambda: fds() <= fd0 + 2, 10, 0.2)
        fd1, rss1 = fds(), p.rss_kb()
        log(f"10,000 cycles in {took:.1f} s: fds {fd0} -> {fd1}, RSS {rss0} kB -> {rss1} kB")
        check(abs(fd1 - fd0) <= 2, f"fds {fd0} -> {fd1}")
        check_memory(rss1 - rss0 < 8 * 1024, f"RSS grew by {rss1 - rss0} kB over 10,000 cycles")
        rows = p.show("CLIENTS")
        check(len(rows) <= 2, f"{len(rows)} clients still listed by SHOW CLIENTS")
        p.assert_serving(None, "connect cycles")


@test
def killed_mid_transaction():
    """A client killed in a transaction never leaves its server in a transaction for the next
    client (pool_size 1, so the next client gets that very server or a fresh one)."""
    e = env()
    sql_direct(e.primary_port, ["DROP TABLE IF EXISTS fault_killed",
                                "CREATE TABLE fault_killed (v text)"])
    with Pgdog(general={"checkout_timeout": "5000"},
               databases=database_toml("pgdog", e.primary_port, None, "pool_size = 1")) as p:
        def next_client_clean(what, marker):
            t0 = time.monotonic()
            with p.connect() as c:
                n = c.execute("SELECT count(*) FROM fault_killed WHERE v = %s",
                              (marker,)).fetchone()[0]
                fresh = c.execute("SELECT now() = statement_timestamp()").fetchone()[0]
                tx = c.execute("SELECT txid_current_if_assigned()").fetchone()[0]
            took = time.monotonic() - t0
            log(f"{what}: next client sees {n} rows, outside a transaction: {fresh}, "
                f"served after {took:.2f} s")
            check(n == 0, f"{what}: the killed client's row is visible")
            check(fresh is True and tx is None, f"{what}: the next client is inside a transaction")
            return took

        # 1. psql in BEGIN; INSERT, SIGKILLed.
        env_ = dict(os.environ, PGPASSWORD="pgdog", PGCONNECT_TIMEOUT="10")
        psql = subprocess.Popen(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(p.port), "-U",
                                 "pgdog", "-d", "pgdog", "-v", "ON_ERROR_STOP=1"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env_, text=True)
        try:
            psql.stdin.write("BEGIN;\nINSERT INTO fault_killed VALUES ('psql-killed');\n"
                             "\\echo inserted\n")
            psql.stdin.flush()
            line = psql.stdout.readline()
            check("inserted" in line, f"psql said {line!r}")
        finally:
            psql.send_signal(signal.SIGKILL)
            psql.wait(5)
        next_client_clean("psql SIGKILLed in BEGIN; INSERT", "psql-killed")

        # 2. An extended-protocol batch without Sync (Parse/Bind/Execute of an INSERT inside
        # BEGIN), then the socket is reset.
        w = p.wire().must_login()
        _, err = w.query("BEGIN")
        check(err is None, str(err))
        ins = b"INSERT INTO fault_killed VALUES ('unsynced')\0"
        w.send(msg(b"P", b"\0" + ins + b"\0\0") + msg(b"B", b"\0\0\0\0\0\0\0\0") +
               msg(b"E", b"\0\0\0\0\0") + msg(b"H"))
        kinds = []
        while b"C" not in kinds:
            kinds.append(w.read_msg()[0])
        w.close_abruptly()
        next_client_clean("reset after an unsynced INSERT batch", "unsynced")

        # 3. Killed while a statement runs in its transaction: the next client waits for the
        # server at most until the statement ends (within checkout_timeout), and gets it clean.
        w = p.wire().must_login()
        sleeping = "BEGIN; INSERT INTO fault_killed VALUES ('sleeping'); SELECT pg_sleep(2)"
        w.send(msg(b"Q", sleeping.encode() + b"\0"))
        wait_until("the statement to run on the primary", lambda: sql_direct(e.primary_port, [
            ("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = %s",
             (sleeping,))])[0][0] == 1, 10)
        w.close_abruptly()
        took = next_client_clean("reset during pg_sleep(2) in a transaction", "sleeping")
        check(took < 5, f"the next client waited {took:.1f} s")

        p.assert_serving(None, "killed clients")
        leftovers = sql_direct(e.primary_port, [
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'pgdog' AND "
            "state LIKE 'idle in transaction%'"])[0][0]
        check(leftovers == 0, f"{leftovers} backends idle in transaction on the primary")


@test
def primary_restart():
    """The primary stopped and started again (same port) under a write load with mirroring:
    errors while it is down are clean and prompt, every worker recovers by itself, and only
    transactions the clients saw commit were handed to the mirror."""
    e = env()
    for port in (e.primary_port, e.mirror_port):
        sql_direct(port, ["DROP TABLE IF EXISTS fault_restart",
                          "CREATE TABLE fault_restart (id int PRIMARY KEY)"])
    pg_local = os.path.join(e.source_dir, "scripts", "pg-local")

    def recorded_port():
        with open(os.path.join(e.pglocal_dir, "ports.env")) as f:
            for line in f:
                if line.startswith("PRIMARY_PORT="):
                    return int(line.strip().split("=", 1)[1])
        return -1

    check(recorded_port() == e.primary_port, "ports.env disagrees with PRIMARY_PORT")
    p = Pgdog(general={"connect_timeout": "2000", "checkout_timeout": "3000"},
              databases=database_toml("pgdog", e.primary_port) +
              database_toml("mirror", e.mirror_port, "pgdog"),
              # A queue that holds the whole run: what is tested is that the mirror gets exactly
              # what the clients saw commit, not overflow (a cold mirror on a loaded machine once
              # let 128 queue up in the first 0.3 s, and 8 were dropped, as counted).
              extra=mirroring_toml(extra="compare = \"off\"\nqueue_length = 20000"),
              metrics=True)
    stopped = False
    with p:
        phase = [0]
        quit_ = threading.Event()
        lock = threading.Lock()
        stats = {"ok": [0, 0, 0], "err": [0, 0, 0], "slowest_err": 0.0, "kinds": {}}
        last_ok = {}
        ids = iter(range(1, 10 ** 9))

        def worker(k):
            conn = None
            while not quit_.is_set():
                with lock:
                    i = next(ids)
                t0 = time.monotonic()
                try:
                    if conn is None or conn.closed:
                        # No automatic server-side prepare: its Parse + Sync would be one more
                        # mirrored batch than the commits counted here.
                        conn = p.connect(connect_timeout=10, prepare_threshold=None)
                    conn.execute("INSERT INTO fault_restart VALUES (%s)", (i,))
                    with lock:
                        stats["ok"][phase[0]] += 1
                    last_ok[k] = True
                    time.sleep(0.005)
                except psycopg.Error as err:
                    took = time.monotonic() - t0
                    with lock:
                        stats["err"][phase[0]] += 1
                        stats["slowest_err"] = max(stats["slowest_err"], took)
                        key = f"{sqlstate(err)} {str(err).strip().splitlines()[0][:90]}"
                        stats["kinds"][key] = stats["kinds"].get(key, 0) + 1
                    last_ok[k] = False
                    if conn is not None and conn.closed:
                        conn = None
                    time.sleep(0.1)
            if conn is not None:
                conn.close()

        threads = Threads()
        try:
            for k in range(6):
                threads.start(worker, k)
            wait_until("every worker to commit", lambda: len(last_ok) == 6 and all(
                last_ok.values()) and stats["ok"][0] >= 60, 20, 0.05)
            phase[0] = 1
            r = subprocess.run([pg_local, "stop", "--dir", e.pglocal_dir, "primary"],
                               capture_output=True, text=True, timeout=120)
            stopped = True
            check(r.returncode == 0, f"pg-local stop: {r.stderr}")
            wait_until("every worker to notice the primary is down",
                       lambda: not any(last_ok.values()), 20, 0.05)
            phase[0] = 2
            r = subprocess.run([pg_local, "start", "--dir", e.pglocal_dir, "--name", "primary",
                                "--ssl"], capture_output=True, text=True, timeout=120)
            check(r.returncode == 0, f"pg-local start: {r.stderr}")
            stopped = False
            check(recorded_port() == e.primary_port,
                  f"the primary came back on {recorded_port()}, not {e.primary_port}")
            t0 = time.monotonic()
            wait_until("every worker to succeed again",
                       lambda: len(last_ok) == 6 and all(last_ok.values()), 20, 0.1)
            log(f"every worker recovered {time.monotonic() - t0:.1f} s after the restart")
            time.sleep(1)  # the load goes on for a second after the recovery
        finally:
            quit_.set()
            try:
                threads.join(30)
            finally:
                if stopped:
                    subprocess.run([pg_local, "start", "--dir", e.pglocal_dir, "--name",
                                    "primary", "--ssl"], capture_output=True, timeout=120)
        log(f"before / during / after: ok {stats['ok']}, errors {stats['err']}, slowest error "
            f"{stats['slowest_err']:.2f} s; errors: {stats['kinds']}")
        check(stats["err"][0] == 0, "errors before the stop")
        check(stats["err"][1] + stats["err"][2] > 0, "nobody noticed the primary was down")
        check(stats["slowest_err"] < 2 + 3 + 1.5,
              f"an error took {stats['slowest_err']:.1f} s (connect 2 s + checkout 3 s)")
        committed = sum(stats["ok"])
        handed = p.handed()
        v = p.wait_mirror_drained(handed, timeout=30)
        p.check_identity(v, handed, "restart")
        primary_rows = sql_direct(e.primary_port, ["SELECT count(*) FROM fault_restart"])[0][0]
        mirror_rows = sql_direct(e.mirror_port, ["SELECT count(*) FROM fault_restart"])[0][0]
        log(f"clients saw {committed} commits; primary has {primary_rows} rows; handed {handed};"
            f" mirror {v}; mirror has {mirror_rows} rows")
        check(handed == committed, f"handed {handed} != commits the clients saw {committed}")
        check(primary_rows == committed, f"primary rows {primary_rows} != commits {committed}")
        check(v["success"] == handed and mirror_rows == primary_rows,
              f"mirror: {v}, rows {mirror_rows} vs {primary_rows}")
        p.assert_serving(None, "after the restart")


if __name__ == "__main__":
    sys.exit(main(time_limit=280))
