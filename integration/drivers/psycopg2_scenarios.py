#!/usr/bin/python3
"""psycopg2 (Debian python3-psycopg2) scenarios of the driver matrix, run by run_matrix.py.

psycopg2 speaks the simple protocol only (parameters are interpolated client-side): no
protocol-level prepared statements, no binary results. It has COPY (copy_expert), named
(server-side) cursors, execute_batch/execute_values, LISTEN/NOTIFY through poll(), cancel().
"""

import hashlib
import io
import os
import select
import sys
import threading
import time
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import psycopg2  # noqa: E402
import psycopg2.errors as errors  # noqa: E402
import psycopg2.extensions  # noqa: E402
import psycopg2.extras  # noqa: E402

from scenario_common import (NUMERIC, SESSION_ONLY, UNICODE, Env, Skip, all_bytes,  # noqa: E402
                             expect, expect_eq, large_bytes, large_text, run_all)


def connect(env, autocommit=True, **extra):
    conn = psycopg2.connect(env.conninfo(**extra))
    conn.autocommit = autocommit
    return conn


class Conn:
    """`with` closes the connection (psycopg2's own `with` only ends the transaction)."""

    def __init__(self, env, autocommit=True, **extra):
        self.conn = connect(env, autocommit, **extra)

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc):
        self.conn.close()


def q(conn, sql, params=None):
    cur = conn.cursor()
    cur.execute(sql, params)
    return cur


def scalar(conn, sql, params=None):
    row = q(conn, sql, params).fetchone()
    return row[0] if row else None


def crud(env):
    t = env.t("crud")
    with Conn(env, autocommit=False) as conn:
        q(conn, f"CREATE TABLE {t} (id int PRIMARY KEY, name text NOT NULL, qty int)")
        for i in range(1, 11):
            q(conn, f"INSERT INTO {t} (id, name, qty) VALUES (%s, %s, %s)",
              (i, f"item {i}", i * 10))
        conn.commit()
        expect_eq(q(conn, f"UPDATE {t} SET qty = qty * 2 WHERE id <= %s", (5,)).rowcount, 5,
                  "UPDATE row count")
        expect_eq(q(conn, f"DELETE FROM {t} WHERE id > %s", (8,)).rowcount, 2,
                  "DELETE row count")
        conn.commit()
        q(conn, f"ALTER TABLE {t} ADD COLUMN tag text")
        q(conn, f"UPDATE {t} SET tag = 'even' WHERE id % 2 = 0")
        conn.commit()
        rows = q(conn, f"SELECT id, name, qty, tag FROM {t} ORDER BY id").fetchall()
        conn.commit()
    want = [(i, f"item {i}", i * 10 * (2 if i <= 5 else 1), "even" if i % 2 == 0 else None)
            for i in range(1, 9)]
    expect_eq(rows, want, "rows after create/insert/update/delete")


def rollback(env):
    t = env.t("items")
    with Conn(env, autocommit=False) as conn:
        for i in range(1000, 1005):
            q(conn, f"INSERT INTO {t} (id, grp, val) VALUES (%s, 'rollback', %s)", (i, i))
        expect_eq(scalar(conn, f"SELECT count(*) FROM {t} WHERE grp = 'rollback'"), 5,
                  "rows visible inside the transaction")
        conn.rollback()
        expect_eq(scalar(conn, f"SELECT count(*) FROM {t} WHERE grp = 'rollback'"), 0,
                  "rows after ROLLBACK")
        conn.commit()
        q(conn, f"INSERT INTO {t} (id, grp, val) VALUES (1010, 'rollback', 1)")
        conn.commit()
        q(conn, f"UPDATE {t} SET val = 99 WHERE id = 1010")
        q(conn, f"DELETE FROM {t} WHERE id = 1010")
        conn.rollback()
        expect_eq(q(conn, f"SELECT id, val FROM {t} WHERE grp = 'rollback'").fetchall(),
                  [(1010, 1)], "rows after the rolled-back update and delete")
        conn.commit()


def error_recovery(env):
    t = env.t("items")
    with Conn(env, autocommit=False) as conn:
        q(conn, f"INSERT INTO {t} (id, grp, val) VALUES (2000, 'error', 1)")
        try:
            q(conn, "SELECT 1 / 0")
            raise AssertionError("1/0 did not fail")
        except errors.DivisionByZero:
            pass
        try:
            q(conn, f"INSERT INTO {t} (id, grp, val) VALUES (2001, 'error', 1)")
            raise AssertionError("a statement in a failed transaction did not fail")
        except errors.InFailedSqlTransaction:
            pass
        expect_eq(conn.info.transaction_status, psycopg2.extensions.TRANSACTION_STATUS_INERROR,
                  "transaction status after the error")
        conn.rollback()
        expect_eq(scalar(conn, f"SELECT count(*) FROM {t} WHERE grp = 'error'"), 0,
                  "rows of the failed transaction")
        conn.commit()
        q(conn, f"INSERT INTO {t} (id, grp, val) VALUES (2002, 'error', 2)")
        q(conn, "SAVEPOINT sp")
        try:
            q(conn, f"INSERT INTO {t} (id, grp, val) VALUES (2002, 'error', 3)")
            raise AssertionError("duplicate key did not fail")
        except errors.UniqueViolation:
            pass
        q(conn, "ROLLBACK TO SAVEPOINT sp")
        q(conn, f"INSERT INTO {t} (id, grp, val) VALUES (2003, 'error', 3)")
        conn.commit()
        conn.autocommit = True
        try:
            q(conn, f"SELECT * FROM {env.prefix}_no_such_table")
            raise AssertionError("query of a missing table did not fail")
        except errors.UndefinedTable:
            pass
        expect_eq(q(conn, f"SELECT id, val FROM {t} WHERE grp = 'error' ORDER BY id").fetchall(),
                  [(2002, 2), (2003, 3)], "rows after savepoint recovery")


def prepared_concurrency(env):
    if env.mode != "session":
        raise Skip("psycopg2 has no protocol-level prepared statements; SQL PREPARE is "
                   "session state, which transaction pooling does not keep "
                   "(docs/configuration.md: use session mode)")
    # Session mode: more clients than servers, so clients wait for a server, and each server
    # is reset (DISCARD ALL) between clients that PREPARE the same statement names.
    t = env.t("items")
    problems = []

    def client(c):
        try:
            base = 100000 + c * 1000
            with Conn(env, autocommit=False) as conn:
                q(conn, f"PREPARE ins (int, int, text) AS INSERT INTO {t} (id, grp, val, note) "
                        f"VALUES ($1, 'prep', $2, $3)")
                q(conn, f"PREPARE cnt (int, int) AS SELECT count(*) FROM {t} "
                        f"WHERE grp = 'prep' AND id BETWEEN $1 AND $2")
                conn.commit()
                for i in range(env.txns):
                    q(conn, "EXECUTE ins (%s, %s, %s)", (base + i, c, f"c{c}"))
                    n = scalar(conn, "EXECUTE cnt (%s, %s)", (base, base + 999))
                    conn.commit()
                    if n != i + 1:
                        raise AssertionError(f"client {c} txn {i}: count {n}, expected {i + 1}")
        except Exception as e:  # noqa: BLE001
            problems.append(f"client {c}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(c,)) for c in range(env.clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    expect(not problems, "; ".join(p.strip() for p in problems[:3]))
    with Conn(env) as conn:
        expect_eq(scalar(conn, f"SELECT count(*) FROM {t} WHERE grp = 'prep'"),
                  env.clients * env.txns, "prepared-statement rows")


def batch(env):
    t = env.t("items")
    with Conn(env, autocommit=False) as conn:
        cur = conn.cursor()
        psycopg2.extras.execute_batch(
            cur, f"INSERT INTO {t} (id, grp, val) VALUES (%s, 'batch', %s)",
            [(3000 + i, i) for i in range(40)], page_size=15)
        psycopg2.extras.execute_values(
            cur, f"INSERT INTO {t} (id, grp, val) VALUES %s",
            [(3100 + i, "batch", i) for i in range(40)], page_size=15)
        conn.commit()
        # A batch with a duplicate key fails whole.
        try:
            psycopg2.extras.execute_batch(
                cur, f"INSERT INTO {t} (id, grp, val) VALUES (%s, 'batch', %s)",
                [(3200, 1), (3201, 1), (3201, 2), (3202, 1)], page_size=10)
            raise AssertionError("the duplicate key in the batch did not fail")
        except errors.UniqueViolation:
            conn.rollback()
        # Several statements in one simple Query (one implicit transaction).
        conn.autocommit = True
        q(conn, f"INSERT INTO {t} (id, grp, val) VALUES (3300, 'batch', 1); "
                f"INSERT INTO {t} (id, grp, val) VALUES (3301, 'batch', 1); "
                f"UPDATE {t} SET val = val + 1 WHERE id IN (3300, 3301)")
        try:
            q(conn, f"INSERT INTO {t} (id, grp, val) VALUES (3302, 'batch', 1); "
                    f"INSERT INTO {t} (id, grp, val) VALUES (3300, 'batch', 1)")
            raise AssertionError("the duplicate key in the multi-statement query did not fail")
        except errors.UniqueViolation:
            pass
        expect_eq(scalar(conn, f"SELECT count(*) FROM {t} WHERE grp = 'batch'"), 82,
                  "rows after the batches")
        expect_eq(q(conn, f"SELECT id, val FROM {t} WHERE id >= 3200 AND id < 3400 "
                          f"ORDER BY id").fetchall(), [(3300, 2), (3301, 2)],
                  "rows of the multi-statement queries")


def types(env):
    t = env.t("blobs")
    rows = [
        (1, None, None, None, None),
        (2, UNICODE, all_bytes(), Decimal(NUMERIC), True),
        (3, "", b"", Decimal("0"), False),
        (4, "quote ' backslash \\ tab \t newline \n", b"\x00\x01\xff", Decimal("-1.5"), None),
    ]
    with Conn(env, autocommit=False) as conn:
        for r in rows:
            q(conn, f"INSERT INTO {t} (id, txt, bin, num, flag) VALUES (%s, %s, %s, %s, %s)",
              (r[0], r[1], psycopg2.Binary(r[2]) if r[2] is not None else None, r[3], r[4]))
        conn.commit()
        got = [(a, b, bytes(c) if c is not None else None, d, e) for a, b, c, d, e in
               q(conn, f"SELECT id, txt, bin, num, flag FROM {t} WHERE id <= 4 ORDER BY id")
               .fetchall()]
        expect_eq(got, rows, "round-tripped NULLs, unicode, bytea")
        expect_eq(q(conn, f"SELECT txt = %s, length(txt), octet_length(txt), octet_length(bin) "
                          f"FROM {t} WHERE id = 2", (UNICODE,)).fetchone(),
                  (True, 13, 25, 256), "server's view of the unicode and bytea values")
        expect_eq(scalar(conn, "SELECT %s::text IS NULL", (None,)), True, "NULL parameter")
        conn.commit()


def large_values(env):
    t = env.t("blobs")
    text, data = large_text(), large_bytes()
    with Conn(env, autocommit=False) as conn:
        q(conn, f"INSERT INTO {t} (id, txt, bin) VALUES (100, %s, %s)",
          (text, psycopg2.Binary(data)))
        conn.commit()
        got_text, got_data = q(conn, f"SELECT txt, bin FROM {t} WHERE id = 100").fetchone()
        expect(got_text == text, f"2 MiB text differs (got {len(got_text)} chars)")
        expect(bytes(got_data) == data, f"2 MiB bytea differs (got {len(got_data)} bytes)")
        expect_eq(q(conn, f"SELECT length(txt), octet_length(bin), md5(bin) FROM {t} "
                          f"WHERE id = 100").fetchone(),
                  (len(text), len(data), hashlib.md5(data).hexdigest()),
                  "server's length and md5 of the 2 MiB values")
        conn.commit()


def binary(env):
    raise Skip("psycopg2 has no binary result format (text protocol only)")


def copy(env):
    t = env.t("items")
    rows = [(4000 + i, "copy", i if i % 7 else None, UNICODE if i % 3 == 0 else f"r {i}")
            for i in range(500)]

    def line(r):
        return "\t".join("\\N" if v is None else str(v) for v in r) + "\n"

    with Conn(env, autocommit=True) as conn:
        cur = conn.cursor()
        cur.copy_expert(f"COPY {t} (id, grp, val, note) FROM STDIN",
                        io.StringIO("".join(line(r) for r in rows[:250])))
        conn.autocommit = False
        cur.copy_expert(f"COPY {t} (id, grp, val, note) FROM STDIN (FORMAT csv)",
                        io.StringIO("".join(",".join("" if v is None else f'"{v}"' for v in r)
                                            + "\n" for r in rows[250:])))
        conn.commit()
        out = io.StringIO()
        cur.copy_expert(f"COPY (SELECT id, grp, val, note FROM {t} WHERE grp = 'copy' "
                        f"ORDER BY id) TO STDOUT", out)
        conn.commit()
        expect_eq(out.getvalue(), "".join(line(r) for r in rows), "rows copied out")
        try:
            cur.copy_expert(f"COPY {t} (id, grp, val) FROM STDIN",
                            io.StringIO("4900\tcopy\t1\nnot-a-number\tcopy\t2\n"))
            raise AssertionError("COPY of bad data did not fail")
        except errors.InvalidTextRepresentation:
            conn.rollback()
        expect_eq(scalar(conn, f"SELECT count(*) FROM {t} WHERE grp = 'copy'"), 500,
                  "rows after the failed COPY")
        conn.commit()


def cursor(env):
    with Conn(env, autocommit=False) as conn:
        cur = conn.cursor(name="matrix_cur")
        cur.itersize = 37
        cur.execute("SELECT g, md5(g::text) FROM generate_series(1, 1000) g ORDER BY g")
        first = cur.fetchmany(10)
        rest = list(cur)
        cur.close()
        conn.commit()
    got = first + rest
    expect_eq(len(got), 1000, "rows fetched through the named cursor")
    expect_eq([r[0] for r in got], list(range(1, 1001)), "row order")
    if env.mode == "session":
        with Conn(env, autocommit=True) as conn:
            cur = conn.cursor(name="held", withhold=True)
            cur.itersize = 100
            cur.execute("SELECT g FROM generate_series(1, 300) g")
            expect_eq(sum(r[0] for r in cur), 45150, "WITH HOLD cursor sum")
            cur.close()


def listen_notify(env):
    if env.mode != "session":
        raise Skip(SESSION_ONLY)
    ch = f"{env.prefix}_chan"
    with Conn(env) as listener, Conn(env) as notifier:
        q(listener, f"LISTEN {ch}")
        pid = scalar(notifier, "SELECT pg_backend_pid()")
        q(notifier, f"NOTIFY {ch}, %s", (UNICODE,))
        q(notifier, "SELECT pg_notify(%s, %s)", (ch, "second"))
        deadline = time.monotonic() + 5
        got = []
        while len(got) < 2 and time.monotonic() < deadline:
            if select.select([listener], [], [], 0.2)[0]:
                listener.poll()
                while listener.notifies:
                    got.append(listener.notifies.pop(0))
        expect_eq([(n.channel, n.payload, n.pid) for n in got],
                  [(ch, UNICODE, pid), (ch, "second", pid)], "notifications received")


def wait_running(env, marker, timeout=5):
    deadline = time.monotonic() + timeout
    with Conn(env) as watcher:
        while time.monotonic() < deadline:
            if scalar(watcher, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                               "AND query LIKE %s AND pid <> pg_backend_pid()",
                      (f"%{marker}%",)):
                return True
            time.sleep(0.05)
    return False


def cancel(env):
    marker = f"cancel-{env.prefix}"
    with Conn(env) as conn:
        result = {}

        def run():
            started = time.monotonic()
            try:
                q(conn, f"SELECT pg_sleep(30) /* {marker} */")
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


def tls(env):
    t = env.t("items")
    big = "x" * 300_000
    with Conn(env, autocommit=False, host="localhost", sslmode="verify-full",
              sslrootcert=env.ca) as conn:
        expect(conn.info.ssl_in_use, "connection does not use TLS")
        for i in range(3):
            q(conn, f"INSERT INTO {t} (id, grp, val, note) VALUES (%s, 'tls', %s, %s)",
              (5000 + i, i, big if i == 2 else UNICODE))
        conn.commit()
        expect_eq(q(conn, f"SELECT id, length(note) FROM {t} WHERE grp = 'tls' ORDER BY id")
                  .fetchall(), [(5000, 13), (5001, 13), (5002, 300_000)],
                  "rows written over TLS")
        expect_eq(scalar(conn, f"SELECT note FROM {t} WHERE id = 5002"), big,
                  "300 kB value read over TLS")
        conn.commit()
    try:
        connect(env, host="localhost", sslmode="verify-full", sslrootcert=env.bad_ca).close()
        raise AssertionError("verify-full accepted a certificate not signed by the given CA")
    except psycopg2.OperationalError as e:
        expect("certificate verify failed" in str(e), f"unexpected error with a wrong CA: {e}")


if __name__ == "__main__":
    run_all(Env(), {k: v for k, v in globals().items() if callable(v)})
