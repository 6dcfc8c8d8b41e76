#!/usr/bin/python3
"""libpq scenarios of the driver matrix through its own clients, psql and pgbench (Debian
postgresql-client-15), run by run_matrix.py. This program only starts psql and pgbench and
checks what they print; it uses no Python database library.

pgbench brings the protocol-level parts psql lacks: named prepared statements (-M prepared) with
more clients than servers, and pipeline mode (\\startpipeline).
"""

import hashlib
import os
import pty
import select
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scenario_common import (NUMERIC, SESSION_ONLY, UNICODE, Env, Skip, all_bytes,  # noqa: E402
                             expect, expect_eq, large_bytes, large_text, run_all)

ENV = None


def pg_env(env, **extra):
    e = dict(os.environ, PGHOST=env.host, PGPORT=str(env.port), PGUSER=env.user,
             PGPASSWORD=env.password, PGDATABASE=env.db, PGSSLMODE="disable",
             PGCONNECT_TIMEOUT="10", PGAPPNAME=f"matrix-{env.prefix}", PGCLIENTENCODING="UTF8")
    e.update(extra)
    return e


def psql(env, script=None, args=(), check=True, timeout=60, stop_on_error=True, **extra):
    """Runs psql with `script` on stdin; returns (rc, stdout, stderr)."""
    cmd = ["psql", "-X", "-A", "-t", "-F", "|", "-v", f"ON_ERROR_STOP={int(stop_on_error)}",
           *args]
    if script is not None:
        cmd += ["-f", "-"]
    r = subprocess.run(cmd, input=script.encode() if script is not None else None,
                       capture_output=True, timeout=timeout, env=pg_env(env, **extra))
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    if check and r.returncode != 0:
        raise AssertionError(f"psql failed (rc {r.returncode}): {' '.join(err.split())[:500]}")
    return r.returncode, out, err


def lines(out):
    return [x for x in out.split("\n") if x != ""]


def pgbench(env, script, args, timeout=90):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        r = subprocess.run(["pgbench", "-n", *args, "-f", path], capture_output=True, text=True,
                           timeout=timeout, env=pg_env(env))
    finally:
        os.unlink(path)
    print(r.stdout + r.stderr, flush=True)
    if r.returncode != 0:
        raise AssertionError(f"pgbench {' '.join(args)} failed (rc {r.returncode}): "
                             f"{' '.join(r.stderr.split())[-500:]}")
    return r.stdout


def crud(env):
    t = env.t("crud")
    _, out, _ = psql(env, f"""
BEGIN;
CREATE TABLE {t} (id int PRIMARY KEY, name text NOT NULL, qty int);
INSERT INTO {t} SELECT g, 'item ' || g, g * 10 FROM generate_series(1, 10) g;
COMMIT;
BEGIN;
UPDATE {t} SET qty = qty * 2 WHERE id <= 5;
DELETE FROM {t} WHERE id > 8;
COMMIT;
BEGIN;
ALTER TABLE {t} ADD COLUMN tag text;
UPDATE {t} SET tag = 'even' WHERE id % 2 = 0;
COMMIT;
\\pset null <NULL>
SELECT id, name, qty, tag FROM {t} ORDER BY id;
""")
    got = lines(out)
    tags = [x for x in got if "|" not in x]
    rows = [x for x in got if "|" in x]
    for tag in ("INSERT 0 10", "UPDATE 5", "DELETE 2", "ALTER TABLE", "UPDATE 4"):
        expect(tag in tags, f"command tag {tag!r} missing from {tags}")
    want = [f"{i}|item {i}|{i * 10 * (2 if i <= 5 else 1)}|{'even' if i % 2 == 0 else '<NULL>'}"
            for i in range(1, 9)]
    expect_eq(rows, want, "rows after create/insert/update/delete")


def rollback(env):
    t = env.t("items")
    _, out, _ = psql(env, f"""
\\set QUIET on
BEGIN;
INSERT INTO {t} (id, grp, val) SELECT g, 'rollback', g FROM generate_series(1000, 1004) g;
SELECT count(*) FROM {t} WHERE grp = 'rollback';
ROLLBACK;
SELECT count(*) FROM {t} WHERE grp = 'rollback';
INSERT INTO {t} (id, grp, val) VALUES (1010, 'rollback', 1);
BEGIN;
UPDATE {t} SET val = 99 WHERE id = 1010;
DELETE FROM {t} WHERE id = 1010;
ROLLBACK;
SELECT id, val FROM {t} WHERE grp = 'rollback';
""")
    expect_eq(lines(out), ["5", "0", "1010|1"], "counts and rows around ROLLBACK")


def error_recovery(env):
    t = env.t("items")
    _, out, err = psql(env, f"""
\\set QUIET on
BEGIN;
INSERT INTO {t} (id, grp, val) VALUES (2000, 'error', 1);
SELECT 1 / 0;
INSERT INTO {t} (id, grp, val) VALUES (2001, 'error', 1);
ROLLBACK;
SELECT count(*) FROM {t} WHERE grp = 'error';
BEGIN;
INSERT INTO {t} (id, grp, val) VALUES (2002, 'error', 2);
SAVEPOINT sp;
INSERT INTO {t} (id, grp, val) VALUES (2002, 'error', 3);
ROLLBACK TO SAVEPOINT sp;
INSERT INTO {t} (id, grp, val) VALUES (2003, 'error', 3);
COMMIT;
SELECT * FROM {env.prefix}_no_such_table;
SELECT id, val FROM {t} WHERE grp = 'error' ORDER BY id;
""", stop_on_error=False)
    for msg in ("division by zero", "current transaction is aborted", "duplicate key value",
                f'relation "{env.prefix}_no_such_table" does not exist'):
        expect(msg in err, f"error {msg!r} missing from psql's stderr: {err[:400]}")
    expect_eq(err.count("ERROR:"), 4, f"number of errors in {err[:400]!r}")
    expect_eq(lines(out), ["0", "2002|2", "2003|3"], "rows after the errors")


def prepared_concurrency(env):
    t = env.t("hits")
    # -j equal to -c: pgbench -M prepared prepares with blocking calls (docs/configuration.md).
    out = pgbench(env, f"""\\set id random(1, 20)
BEGIN;
INSERT INTO {t} (client, id, hits) VALUES (:client_id, :id, 1)
  ON CONFLICT (client, id) DO UPDATE SET hits = {t}.hits + 1;
SELECT sum(hits) FROM {t} WHERE client = :client_id;
END;
""", ["-M", "prepared", "-c", str(env.clients), "-j", str(env.clients), "-t", str(env.txns)])
    total = env.clients * env.txns
    expect(f"number of transactions actually processed: {total}/{total}" in out,
           f"pgbench did not process {total} transactions: {out[-400:]}")
    expect("number of failed transactions: 0 " in out, f"pgbench failures: {out[-400:]}")
    _, o, _ = psql(env, f"SELECT count(DISTINCT client), sum(hits) FROM {t} WHERE client < 100;")
    expect_eq(lines(o), [f"{env.clients}|{total}"], "clients and hits in the table")


def batch(env):
    t = env.t("hits")
    clients, txns = 4, 20
    # Pipeline mode: the whole pipeline is one Sync, so one implicit transaction.
    out = pgbench(env, f"""\\set id random(1, 50)
\\startpipeline
INSERT INTO {t} (client, id, hits) VALUES (100 + :client_id, :id, 1)
  ON CONFLICT (client, id) DO UPDATE SET hits = {t}.hits + 1;
INSERT INTO {t} (client, id, hits) VALUES (100 + :client_id, 1000 + :id, 1)
  ON CONFLICT (client, id) DO UPDATE SET hits = {t}.hits + 1;
SELECT sum(hits) FROM {t} WHERE client = 100 + :client_id;
\\endpipeline
""", ["-M", "extended", "-c", str(clients), "-j", str(clients), "-t", str(txns)])
    expect(f"number of transactions actually processed: {clients * txns}/" in out,
           f"pgbench pipeline did not process every transaction: {out[-400:]}")
    items = env.t("items")
    # Several statements in one simple Query: one implicit transaction, all or nothing.
    psql(env, args=["-c", f"INSERT INTO {items} (id, grp, val) VALUES (3000, 'batch', 1); "
                          f"INSERT INTO {items} (id, grp, val) VALUES (3001, 'batch', 1); "
                          f"UPDATE {items} SET val = val + 1 WHERE grp = 'batch'"])
    rc, _, err = psql(env, args=["-c", f"INSERT INTO {items} (id, grp, val) VALUES "
                                       f"(3002, 'batch', 1); INSERT INTO {items} (id, grp, val) "
                                       f"VALUES (3000, 'batch', 1)"], check=False)
    expect(rc != 0 and "duplicate key" in err, f"duplicate in a multi-statement query: {err}")
    _, o, _ = psql(env, f"SELECT sum(hits) FROM {t} WHERE client >= 100;\n"
                        f"SELECT id, val FROM {items} WHERE grp = 'batch' ORDER BY id;")
    expect_eq(lines(o), [str(2 * clients * txns), "3000|2", "3001|2"],
              "hits of the pipelines and rows of the multi-statement queries")


def types(env):
    t = env.t("blobs")
    _, out, _ = psql(env, f"""
\\set QUIET on
\\pset null <NULL>
BEGIN;
INSERT INTO {t} (id, txt, bin, num, flag) VALUES
  (1, NULL, NULL, NULL, NULL),
  (2, '{UNICODE}', '\\x{all_bytes().hex()}', {NUMERIC}, true),
  (3, '', '', 0, false),
  (4, E'quote \\' backslash \\\\ tab \\t', '\\x0001ff', -1.5, NULL);
COMMIT;
SELECT id, txt, bin, num, flag FROM {t} WHERE id <= 4 ORDER BY id;
SELECT txt = '{UNICODE}', length(txt), octet_length(txt), octet_length(bin) FROM {t} WHERE id = 2;
""")
    want = ["1|<NULL>|<NULL>|<NULL>|<NULL>",
            f"2|{UNICODE}|\\x{all_bytes().hex()}|{NUMERIC}|t",
            "3||\\x|0|f",
            "4|quote ' backslash \\ tab \t|\\x0001ff|-1.5|<NULL>",
            "t|13|25|256"]
    expect_eq(lines(out), want, "round-tripped NULLs, unicode, bytea")


def large_values(env):
    t = env.t("blobs")
    text, data = large_text(), large_bytes()
    # One session: the mirror replays each client's transactions in order, not across clients.
    _, out, _ = psql(env, f"\\set QUIET on\n"
                          f"INSERT INTO {t} (id, txt, bin) "
                          f"VALUES (100, '{text}', '\\x{data.hex()}');\n"
                          f"SELECT txt FROM {t} WHERE id = 100;\n"
                          f"SELECT bin FROM {t} WHERE id = 100;\n"
                          f"SELECT length(txt), octet_length(bin), md5(bin) FROM {t} "
                          f"WHERE id = 100;\n")
    got = out.split("\n")
    expect(len(got) >= 3, f"psql printed {len(got)} lines")
    expect(got[0] == text, f"2 MiB text differs (got {len(got[0])} chars)")
    expect(got[1] == "\\x" + data.hex(), f"2 MiB bytea differs (got {len(got[1])} chars)")
    expect_eq(got[2], f"{len(text)}|{len(data)}|{hashlib.md5(data).hexdigest()}",
              "server's length and md5 of the 2 MiB values")


def binary(env):
    raise Skip("psql prints text results only (libpq's binary result format is not exposed)")


def copy(env):
    t = env.t("items")
    rows = [(4000 + i, "copy", i if i % 7 else None, UNICODE if i % 3 == 0 else f"r {i}")
            for i in range(500)]

    def line(r):
        return "\t".join("\\N" if v is None else str(v) for v in r)

    data1 = "\n".join(line(r) for r in rows[:250])
    data2 = "\n".join(line(r) for r in rows[250:])
    # COPY FROM STDIN as a server command (data inline in the script), then psql's \copy
    # inside a transaction.
    psql(env, f"COPY {t} (id, grp, val, note) FROM STDIN;\n{data1}\n\\.\n"
              f"BEGIN;\n\\copy {t} (id, grp, val, note) FROM STDIN\n{data2}\n\\.\nCOMMIT;\n")
    _, out, _ = psql(env, args=["-c", f"\\copy (SELECT id, grp, val, note FROM {t} "
                                      f"WHERE grp = 'copy' ORDER BY id) TO STDOUT"])
    expect_eq(out.rstrip("\n").split("\n"), [line(r) for r in rows], "rows copied out")
    rc, _, err = psql(env, f"COPY {t} (id, grp, val) FROM STDIN;\n4900\tcopy\t1\n"
                           f"not-a-number\tcopy\t2\n\\.\n", check=False)
    expect(rc != 0 and "invalid input syntax for type integer" in err,
           f"COPY of bad data: rc {rc}, {err[:300]}")
    _, out, _ = psql(env, args=["-c", f"SELECT count(*) FROM {t} WHERE grp = 'copy'"])
    expect_eq(lines(out), ["500"], "rows after the failed COPY")


def cursor(env):
    # FETCH_COUNT makes psql read through a cursor (DECLARE + FETCH FORWARD in a transaction).
    _, out, _ = psql(env, "\\set FETCH_COUNT 37\n"
                          "SELECT g, md5(g::text) FROM generate_series(1, 1000) g ORDER BY g;\n")
    got = lines(out)
    expect_eq(len(got), 1000, "rows fetched with FETCH_COUNT")
    expect_eq(got[999], f"1000|{hashlib.md5(b'1000').hexdigest()}", "last row")
    _, out, _ = psql(env, """\\set QUIET on
BEGIN;
DECLARE c CURSOR FOR SELECT g FROM generate_series(1, 100) g;
FETCH 10 FROM c;
MOVE 80 IN c;
FETCH ALL FROM c;
CLOSE c;
COMMIT;
""")
    expect_eq(lines(out), [str(i) for i in list(range(1, 11)) + list(range(91, 101))],
              "rows of FETCH and MOVE")


def wait_running(env, marker, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, out, _ = psql(env, args=["-c", "SELECT count(*) FROM pg_stat_activity WHERE "
                                          "state = 'active' AND pid <> pg_backend_pid() AND "
                                          f"query LIKE '%{marker}%'"])
        if lines(out) and lines(out)[0] != "0":
            return True
        time.sleep(0.1)
    return False


def listen_notify(env):
    if env.mode != "session":
        raise Skip(SESSION_ONLY)
    ch = f"{env.prefix}_chan"
    marker = f"listen-{env.prefix}"
    # psql prints notifications after each command: LISTEN, then wait while the notifier runs.
    listener = subprocess.Popen(
        ["psql", "-X", "-A", "-t", "-c", f"LISTEN {ch}", "-c", f"SELECT pg_sleep(3) /* {marker} */",
         "-c", "SELECT 'after'"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=pg_env(env))
    try:
        expect(wait_running(env, marker), "the listener's pg_sleep never showed up")
        _, out, _ = psql(env, f"\\set QUIET on\nNOTIFY {ch}, '{UNICODE}';\n"
                              f"SELECT pg_backend_pid();\n")
        pid = lines(out)[0]
        out, err = listener.communicate(timeout=20)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    out = out.decode(errors="replace")
    want = (f'Asynchronous notification "{ch}" with payload "{UNICODE}" received from server '
            f"process with PID {pid}.")
    expect(want in out, f"notification missing: {out!r} {err.decode(errors='replace')!r}")
    expect("after" in out, f"listener did not finish: {out!r}")


def cancel(env):
    # Interactive psql on a pseudo-terminal, as a person uses it: Ctrl-C (SIGINT) makes psql
    # send a CancelRequest and keep its connection (a script or -c would exit instead).
    marker = f"cancel-{env.prefix}"
    prompt = b"@@psql-prompt@@"
    master, slave = pty.openpty()
    p = subprocess.Popen(["psql", "-X", "-A", "-t", "-n", "-P", "pager=off",
                          "-v", f"PROMPT1={prompt.decode()}"],
                         stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                         env=pg_env(env, TERM="dumb", PAGER=""))
    os.close(slave)
    seen = b""

    def read_until(token, timeout):
        nonlocal seen
        buf = b""
        deadline = time.monotonic() + timeout
        while token not in buf and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                buf += data
        seen += buf
        return buf

    try:
        expect(prompt in read_until(prompt, 15), f"psql did not start: {seen!r}")
        os.write(master, f"SELECT pg_sleep(30) /* {marker} */;\n".encode())
        running = wait_running(env, marker)
        started = time.monotonic()
        p.send_signal(signal.SIGINT)  # what Ctrl-C on the terminal delivers
        out = read_until(prompt, 35)
        elapsed = time.monotonic() - started
        expect(running, "the query never showed up as active in pg_stat_activity")
        expect(b"canceling statement due to user request" in out, f"psql printed {out!r}")
        expect(elapsed < 10, f"cancel took {elapsed:.1f} s")
        os.write(master, b"SELECT 'us' || 'able';\n")
        out = read_until(prompt, 10)
        expect(b"\nusable\r\n" in out.replace(b"\r\r", b"\r"),
               f"query after the cancel on the same connection: {out!r}")
        os.write(master, b"\\q\n")
        p.wait(timeout=10)
        expect_eq(p.returncode, 0, "psql exit code")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


def tls(env):
    t = env.t("items")
    big = "x" * 300_000
    extra = dict(PGHOST="localhost", PGSSLMODE="verify-full", PGSSLROOTCERT=env.ca)
    _, out, _ = psql(env, f"""\\set QUIET on
\\conninfo
BEGIN;
INSERT INTO {t} (id, grp, val, note) VALUES (5000, 'tls', 0, '{UNICODE}'),
  (5001, 'tls', 1, '{UNICODE}'), (5002, 'tls', 2, '{big}');
COMMIT;
SELECT id, length(note) FROM {t} WHERE grp = 'tls' ORDER BY id;
SELECT note FROM {t} WHERE id = 5002;
""", **extra)
    got = lines(out)
    expect(got and "SSL connection (protocol: TLSv1." in got[0] or
           any("SSL connection" in x for x in got[:3]), f"\\conninfo: {got[:2]}")
    expect_eq([x for x in got if x.startswith("500")], ["5000|13", "5001|13", "5002|300000"],
              "rows written over TLS")
    expect(big in got, "300 kB value read over TLS differs")
    rc, _, err = psql(env, args=["-c", "SELECT 1"], check=False,
                      **dict(extra, PGSSLROOTCERT=env.bad_ca))
    expect(rc != 0 and "certificate verify failed" in err, f"wrong CA: rc {rc}, {err!r}")


if __name__ == "__main__":
    run_all(Env(), {k: v for k, v in globals().items() if callable(v)})
