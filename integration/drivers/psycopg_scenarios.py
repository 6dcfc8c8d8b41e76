#!/usr/bin/python3
"""psycopg 3 (Debian python3-psycopg) scenarios of the driver matrix, run by run_matrix.py.

Server-side prepared statements (prepare_threshold=0), pipeline mode, COPY (text and binary),
binary results, server-side cursors, LISTEN/NOTIFY, cancel and TLS, through pgdog.
"""

import datetime
import hashlib
import os
import select
import sys
import threading
import time
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import psycopg  # noqa: E402
from psycopg import errors  # noqa: E402

from scenario_common import (NUMERIC, SESSION_ONLY, UNICODE, Env, Skip, all_bytes,  # noqa: E402
                             expect, expect_eq, large_bytes, large_text, run_all)


def connect(env, autocommit=True, **kw):
    return psycopg.connect(env.conninfo(**kw.pop("conninfo", {})), autocommit=autocommit, **kw)


def scalar(conn, q, params=None, **kw):
    row = conn.execute(q, params, **kw).fetchone()
    return row[0] if row else None


def crud(env):
    t = env.t("crud")
    with connect(env, autocommit=False, prepare_threshold=0) as conn:
        with conn.transaction():
            conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, name text NOT NULL, qty int)")
            for i in range(1, 11):
                conn.execute(f"INSERT INTO {t} (id, name, qty) VALUES (%s, %s, %s)",
                             (i, f"item {i}", i * 10))
        with conn.transaction():
            cur = conn.execute(f"UPDATE {t} SET qty = qty * 2 WHERE id <= %s", (5,))
            expect_eq(cur.rowcount, 5, "UPDATE row count")
            cur = conn.execute(f"DELETE FROM {t} WHERE id > %s", (8,))
            expect_eq(cur.rowcount, 2, "DELETE row count")
        with conn.transaction():
            conn.execute(f"ALTER TABLE {t} ADD COLUMN tag text")
            conn.execute(f"UPDATE {t} SET tag = 'even' WHERE id % 2 = 0")
        rows = conn.execute(f"SELECT id, name, qty, tag FROM {t} ORDER BY id").fetchall()
        conn.commit()
    want = [(i, f"item {i}", i * 10 * (2 if i <= 5 else 1), "even" if i % 2 == 0 else None)
            for i in range(1, 9)]
    expect_eq(rows, want, "rows after create/insert/update/delete")


def rollback(env):
    t = env.t("items")
    with connect(env, autocommit=False) as conn:
        for i in range(1000, 1005):
            conn.execute(f"INSERT INTO {t} (id, grp, val) VALUES (%s, 'rollback', %s)", (i, i))
        expect_eq(scalar(conn, f"SELECT count(*) FROM {t} WHERE grp = 'rollback'"), 5,
                  "rows visible inside the transaction")
        conn.rollback()
        expect_eq(scalar(conn, f"SELECT count(*) FROM {t} WHERE grp = 'rollback'"), 0,
                  "rows after ROLLBACK")
        conn.commit()
        # A committed row, then a rolled-back update and delete of it.
        conn.execute(f"INSERT INTO {t} (id, grp, val) VALUES (1010, 'rollback', 1)")
        conn.commit()
        conn.execute(f"UPDATE {t} SET val = 99 WHERE id = 1010")
        conn.execute(f"DELETE FROM {t} WHERE id = 1010")
        conn.rollback()
        expect_eq(conn.execute(f"SELECT id, val FROM {t} WHERE grp = 'rollback'").fetchall(),
                  [(1010, 1)], "rows after the rolled-back update and delete")
        conn.commit()
        # `with conn.transaction()` leaving on an exception rolls back.
        try:
            with conn.transaction():
                conn.execute(f"INSERT INTO {t} (id, grp, val) VALUES (1011, 'rollback', 1)")
                raise RuntimeError("leave the block")
        except RuntimeError:
            pass
        expect_eq(scalar(conn, f"SELECT count(*) FROM {t} WHERE id = 1011"), 0,
                  "row of a transaction block left by an exception")
        conn.commit()


def error_recovery(env):
    t = env.t("items")
    with connect(env, autocommit=False) as conn:
        conn.execute(f"INSERT INTO {t} (id, grp, val) VALUES (2000, 'error', 1)")
        try:
            conn.execute("SELECT 1 / 0")
            raise AssertionError("1/0 did not fail")
        except errors.DivisionByZero:
            pass
        try:
            conn.execute(f"INSERT INTO {t} (id, grp, val) VALUES (2001, 'error', 1)")
            raise AssertionError("a statement in a failed transaction did not fail")
        except errors.InFailedSqlTransaction:
            pass
        expect_eq(conn.info.transaction_status, psycopg.pq.TransactionStatus.INERROR,
                  "transaction status after the error")
        conn.rollback()
        expect_eq(scalar(conn, f"SELECT count(*) FROM {t} WHERE grp = 'error'"), 0,
                  "rows of the failed transaction")
        conn.commit()
        # Recovery inside the transaction with a savepoint; the transaction commits.
        conn.execute(f"INSERT INTO {t} (id, grp, val) VALUES (2002, 'error', 2)")
        conn.execute("SAVEPOINT sp")
        try:
            conn.execute(f"INSERT INTO {t} (id, grp, val) VALUES (2002, 'error', 3)")
            raise AssertionError("duplicate key did not fail")
        except errors.UniqueViolation:
            pass
        conn.execute("ROLLBACK TO SAVEPOINT sp")
        conn.execute(f"INSERT INTO {t} (id, grp, val) VALUES (2003, 'error', 3)")
        conn.commit()
        # Autocommit: a failing statement, then the connection is still usable.
        conn.autocommit = True
        try:
            conn.execute(f"SELECT * FROM {env.prefix}_no_such_table")
            raise AssertionError("query of a missing table did not fail")
        except errors.UndefinedTable:
            pass
        expect_eq(conn.execute(f"SELECT id, val FROM {t} WHERE grp = 'error' ORDER BY id")
                  .fetchall(), [(2002, 2), (2003, 3)], "rows after savepoint recovery")


def prepared_concurrency(env):
    t = env.t("items")
    problems = []
    counts = {}

    def client(c):
        try:
            base = 100000 + c * 1000
            with connect(env, autocommit=False, prepare_threshold=0) as conn:
                for i in range(env.txns):
                    with conn.transaction():
                        conn.execute(f"INSERT INTO {t} (id, grp, val, note) "
                                     f"VALUES (%s, 'prep', %s, %s)", (base + i, c, f"c{c}"),
                                     prepare=True)
                        n = scalar(conn, f"SELECT count(*) FROM {t} WHERE grp = 'prep' AND "
                                         f"id BETWEEN %s AND %s", (base, base + 999),
                                   prepare=True)
                        if n != i + 1:
                            raise AssertionError(f"client {c} txn {i}: count {n}, "
                                                 f"expected {i + 1}")
                counts[c] = scalar(conn, f"SELECT sum(val) FROM {t} WHERE val = %s AND "
                                         f"grp = 'prep'", (c,), prepare=True)
                conn.commit()
                # A cache smaller than the statements in use: psycopg sends DEALLOCATE for the
                # evicted ones and prepares them again later under new names.
                conn.prepared_max = 2
                for i in range(12):
                    with conn.transaction():
                        k = i % 4
                        got = scalar(conn, f"SELECT %s::int + {k} /* evict {k} */", (i,),
                                     prepare=True)
                        if got != i + k:
                            raise AssertionError(f"client {c}: statement {k} gave {got}")

        except Exception as e:  # noqa: BLE001
            problems.append(f"client {c}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(c,)) for c in range(env.clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    expect(not problems, "; ".join(problems[:3]))
    for c in range(env.clients):
        expect_eq(counts.get(c), c * env.txns, f"sum for client {c}")
    with connect(env) as conn:
        expect_eq(scalar(conn, f"SELECT count(*) FROM {t} WHERE grp = 'prep'"),
                  env.clients * env.txns, "prepared-statement rows")


def batch(env):
    """Pipeline mode: several Syncs in one round trip, an error inside one of them."""
    t = env.t("items")
    ins = f"INSERT INTO {t} (id, grp, val) VALUES (%s, 'batch', %s)"
    with connect(env, prepare_threshold=0) as conn:
        cur = conn.cursor()
        with conn.pipeline() as p:
            cur.execute(ins, (3000, 0))
            cur.executemany(ins, [(3000 + i, i) for i in range(1, 21)])
            p.sync()
            cur.execute(ins, (3021, 21))
            counted = conn.execute(f"SELECT count(*) FROM {t} WHERE grp = 'batch'")
            expect_eq(counted.fetchone()[0], 22, "rows counted inside the pipeline")
        # An error in the second segment: the first stays, the second is rolled back whole.
        try:
            with conn.pipeline() as p:
                cur.execute(ins, (3100, 1))
                p.sync()
                cur.execute(ins, (3101, 1))
                cur.execute(ins, (3101, 2))  # duplicate key
                cur.execute(ins, (3102, 1))
            raise AssertionError("the duplicate key in the pipeline did not fail")
        except errors.UniqueViolation:
            pass
        ids = [r[0] for r in conn.execute(f"SELECT id FROM {t} WHERE id BETWEEN 3100 AND 3199 "
                                          f"ORDER BY id").fetchall()]
        expect_eq(ids, [3100], "rows after the failed pipeline segment")
        # A pipeline inside an explicit transaction.
        with conn.transaction():
            with conn.pipeline():
                for i in range(3200, 3250):
                    cur.execute(ins, (i, i))
        expect_eq(scalar(conn, f"SELECT count(*) FROM {t} WHERE grp = 'batch'"), 73,
                  "rows after all pipelines")


def types(env):
    t = env.t("blobs")
    rows = [
        (1, None, None, None, None),
        (2, UNICODE, all_bytes(), Decimal(NUMERIC), True),
        (3, "", b"", Decimal("0"), False),
        (4, "quote ' backslash \\ tab \t newline \n", b"\x00\x01\xff", Decimal("-1.5"), None),
    ]
    with connect(env) as conn:
        with conn.transaction():
            for r in rows:
                conn.execute(f"INSERT INTO {t} (id, txt, bin, num, flag) VALUES "
                             f"(%s, %s, %s, %s, %s)", r)
        got = conn.execute(f"SELECT id, txt, bin, num, flag FROM {t} WHERE id <= 4 ORDER BY id"
                           ).fetchall()
        expect_eq(got, rows, "round-tripped NULLs, unicode, bytea")
        expect_eq(conn.execute(f"SELECT txt = %s, length(txt), octet_length(txt), "
                               f"octet_length(bin) FROM {t} WHERE id = 2", (UNICODE,)).fetchone(),
                  (True, 13, 25, 256), "server's view of the unicode and bytea values")
        expect_eq(scalar(conn, "SELECT %s::text IS NULL", (None,)), True, "NULL parameter")


def large_values(env):
    t = env.t("blobs")
    text, data = large_text(), large_bytes()
    with connect(env) as conn:
        with conn.transaction():
            conn.execute(f"INSERT INTO {t} (id, txt, bin) VALUES (100, %s, %s)", (text, data))
        conn.execute(f"INSERT INTO {t} (id, txt, bin) VALUES (101, %s, %b)", (text[::-1], data),
                     prepare=True)
        got_text, got_data = conn.execute(f"SELECT txt, bin FROM {t} WHERE id = 100").fetchone()
        expect(got_text == text, f"2 MiB text differs (got {len(got_text)} chars)")
        expect(got_data == data, f"2 MiB bytea differs (got {len(got_data)} bytes)")
        expect_eq(conn.execute(f"SELECT length(txt), octet_length(bin), md5(bin) FROM {t} "
                               f"WHERE id = 101").fetchone(),
                  (len(text), len(data), hashlib.md5(data).hexdigest()),
                  "server's length and md5 of the 2 MiB values")
        # Large result through the binary format too.
        cur = conn.cursor(binary=True)
        cur.execute(f"SELECT bin, txt FROM {t} WHERE id = 101")
        b, s = cur.fetchone()
        expect(b == data and s == text[::-1], "2 MiB values differ in binary format")


def binary(env):
    t = env.t("blobs")
    rows = [(200 + i, f"{UNICODE} {i}", bytes([i]) * (i + 1), Decimal(i) / 4, i % 2 == 0)
            for i in range(10)] + [(210, None, None, None, None)]
    with connect(env) as conn:
        cur = conn.cursor(binary=True)
        with conn.transaction():
            cur.executemany(f"INSERT INTO {t} (id, txt, bin, num, flag) VALUES "
                            f"(%b, %b, %b, %b, %b)", rows)
        cur.execute(f"SELECT id, txt, bin, num, flag FROM {t} WHERE id >= 200 AND id < 300 "
                    f"ORDER BY id")
        expect_eq(cur.fetchall(), rows, "rows read in binary format")
        expect_eq(cur.pgresult.fformat(0), 1, "result column format (1 = binary)")
        cur.execute("SELECT %b::int8, %b::float8, %b::timestamptz",
                    (2 ** 40, 1.5, datetime.datetime(
                        2024, 2, 29, 12, 0, tzinfo=datetime.timezone.utc)))
        r = cur.fetchone()
        expect_eq((r[0], r[1], r[2].timestamp()), (2 ** 40, 1.5, 1709208000.0),
                  "binary int8/float8/timestamptz")


def copy(env):
    t = env.t("items")
    rows = [(4000 + i, "copy", i if i % 7 else None, UNICODE if i % 3 == 0 else f"r\t{i}\n")
            for i in range(500)]
    with connect(env) as conn:
        cur = conn.cursor()
        with cur.copy(f"COPY {t} (id, grp, val, note) FROM STDIN") as cp:
            for r in rows[:250]:
                cp.write_row(r)
        with conn.transaction():
            with cur.copy(f"COPY {t} (id, grp, val, note) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int4", "text", "int4", "text"])
                for r in rows[250:]:
                    cp.write_row(r)
        out = []
        with cur.copy(f"COPY (SELECT id, grp, val, note FROM {t} WHERE grp = 'copy' "
                      f"ORDER BY id) TO STDOUT") as cp:
            cp.set_types(["int4", "text", "int4", "text"])
            for r in cp.rows():
                out.append(tuple(r))
        expect_eq(out, rows, "rows copied in and out")
        # A COPY that fails (bad data) is rolled back and the connection stays usable.
        try:
            with cur.copy(f"COPY {t} (id, grp, val) FROM STDIN") as cp:
                cp.write(b"4900\tcopy\t1\nnot-a-number\tcopy\t2\n")
            raise AssertionError("COPY of bad data did not fail")
        except errors.InvalidTextRepresentation:
            pass
        expect_eq(scalar(conn, f"SELECT count(*) FROM {t} WHERE grp = 'copy'"), 500,
                  "rows after the failed COPY")


def cursor(env):
    with connect(env, autocommit=False) as conn:
        with conn.cursor(name="matrix_cur") as cur:
            cur.itersize = 37
            cur.execute("SELECT g, md5(g::text) FROM generate_series(1, 1000) g ORDER BY g")
            first = cur.fetchmany(10)
            rest = list(cur)
        conn.commit()
    got = first + rest
    expect_eq(len(got), 1000, "rows fetched through the server-side cursor")
    expect_eq(got[999][0], 1000, "last row")
    expect_eq([r[0] for r in got], list(range(1, 1001)), "row order")
    if env.mode == "session":
        # WITH HOLD outlives its transaction: it needs the same server afterwards.
        with connect(env, autocommit=True) as conn:
            with conn.cursor(name="held", withhold=True) as cur:
                cur.itersize = 100
                cur.execute("SELECT g FROM generate_series(1, 300) g")
                expect_eq(sum(r[0] for r in cur), 45150, "WITH HOLD cursor sum")


def listen_notify(env):
    if env.mode != "session":
        raise Skip(SESSION_ONLY)
    got = []
    with connect(env) as listener, connect(env) as notifier:
        listener.add_notify_handler(got.append)
        listener.execute(f"LISTEN {env.prefix}_chan")
        pid = scalar(notifier, "SELECT pg_backend_pid()")
        notifier.execute(f"NOTIFY {env.prefix}_chan, '{UNICODE}'")
        notifier.execute("SELECT pg_notify(%s, %s)", (f"{env.prefix}_chan", "second"))
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            select.select([listener.fileno()], [], [], 0.2)
            listener.execute("SELECT 1")  # reads what arrived, calling the handler
        expect_eq([(n.channel, n.payload, n.pid) for n in got],
                  [(f"{env.prefix}_chan", UNICODE, pid), (f"{env.prefix}_chan", "second", pid)],
                  "notifications received")
        listener.execute(f"UNLISTEN {env.prefix}_chan")


def wait_running(env, marker, timeout=5):
    """Waits until the marked query runs on a server (seen from another connection)."""
    deadline = time.monotonic() + timeout
    with connect(env) as watcher:
        while time.monotonic() < deadline:
            n = scalar(watcher, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                "AND query LIKE %s AND pid <> pg_backend_pid()",
                       (f"%{marker}%",))
            if n:
                return True
            time.sleep(0.05)
    return False


def cancel(env):
    marker = f"cancel-{env.prefix}"
    with connect(env) as conn:
        result = {}

        def run():
            started = time.monotonic()
            try:
                conn.execute(f"SELECT pg_sleep(30) /* {marker} */")
                result["error"] = "pg_sleep(30) was not cancelled"
            except errors.QueryCanceled as e:
                result["ok"] = str(e)
            except Exception as e:  # noqa: BLE001
                result["error"] = f"{type(e).__name__}: {e}"
            result["elapsed"] = time.monotonic() - started

        th = threading.Thread(target=run)
        th.start()
        running = wait_running(env, marker)
        conn.cancel()
        th.join(timeout=35)
        expect(running, "the query never showed up as active in pg_stat_activity")
        expect("error" not in result, result.get("error", ""))
        expect(result.get("elapsed", 99) < 10, f"cancel took {result.get('elapsed')} s")
        expect_eq(scalar(conn, "SELECT 'usable'"), "usable", "query after the cancel")
        # In a transaction: the block fails, ROLLBACK brings the connection back.
        conn.autocommit = False
        conn.execute("SELECT 1")
        th = threading.Thread(target=run)
        result.clear()
        th.start()
        wait_running(env, marker)
        conn.cancel()
        th.join(timeout=35)
        expect("ok" in result, f"cancel in a transaction: {result}")
        conn.rollback()
        expect_eq(scalar(conn, "SELECT 'again'"), "again", "query after ROLLBACK")
        conn.commit()


def tls(env):
    t = env.t("items")
    big = "x" * 300_000
    with psycopg.connect(env.conninfo(host="localhost", sslmode="verify-full",
                                      sslrootcert=env.ca), autocommit=True) as conn:
        expect(conn.pgconn.ssl_in_use, "connection does not use TLS")
        with conn.transaction():
            for i in range(3):
                conn.execute(f"INSERT INTO {t} (id, grp, val, note) VALUES (%s, 'tls', %s, %s)",
                             (5000 + i, i, big if i == 2 else UNICODE))
        expect_eq(conn.execute(f"SELECT id, length(note) FROM {t} WHERE grp = 'tls' "
                               f"ORDER BY id").fetchall(),
                  [(5000, 13), (5001, 13), (5002, 300_000)], "rows written over TLS")
        expect_eq(scalar(conn, f"SELECT note FROM {t} WHERE id = 5002"), big,
                  "300 kB value read over TLS")
        # Back to back, two clients: a transaction whose large parameter reaches pgdog in
        # several TLS records, then at once the next one, as an application loop does.
        problems = []

        def loop(k):
            try:
                with psycopg.connect(env.conninfo(host="localhost", sslmode="verify-full",
                                                  sslrootcert=env.ca)) as c:
                    started = time.monotonic()
                    for i in range(200):
                        n = scalar(c, "SELECT length(%s::text)", (big,))
                        c.commit()
                        m = scalar(c, f"SELECT {i}")
                        c.commit()
                        if (n, m) != (300_000, i):
                            raise AssertionError(f"transaction {i}: got {(n, m)}")
                        if time.monotonic() - started > 8:
                            break
            except Exception as e:  # noqa: BLE001
                problems.append(f"client {k}: {type(e).__name__}: {' '.join(str(e).split())}")

        threads = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(2)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 30
        for k, th in enumerate(threads):
            th.join(timeout=max(0.1, deadline - time.monotonic()))
            if th.is_alive():
                problems.append(f"client {k} stuck: no answer within 30 s")
        expect(not problems, "back-to-back transactions over TLS: " + "; ".join(problems))
        # A cancel of a TLS client's query (libpq sends the CancelRequest in the clear).
        marker = f"tls-cancel-{env.prefix}"
        outcome = {}

        def run():
            try:
                conn.execute(f"SELECT pg_sleep(30) /* {marker} */")
            except errors.QueryCanceled:
                outcome["ok"] = True
            except Exception as e:  # noqa: BLE001
                outcome["error"] = repr(e)

        started = time.monotonic()
        th = threading.Thread(target=run)
        th.start()
        wait_running(env, marker)
        conn.cancel()
        th.join(timeout=35)
        expect(outcome.get("ok") and time.monotonic() - started < 10,
               f"cancel over TLS: {outcome} after {time.monotonic() - started:.1f} s")
        expect_eq(scalar(conn, "SELECT 'usable'"), "usable", "query after the cancel over TLS")
    try:
        psycopg.connect(env.conninfo(host="localhost", sslmode="verify-full",
                                     sslrootcert=env.bad_ca)).close()
        raise AssertionError("verify-full accepted a certificate not signed by the given CA")
    except psycopg.OperationalError as e:
        expect("certificate verify failed" in str(e), f"unexpected error with a wrong CA: {e}")


if __name__ == "__main__":
    run_all(Env(), {k: v for k, v in globals().items() if callable(v)})
