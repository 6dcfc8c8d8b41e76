#!/usr/bin/python3
"""Security defaults: SCRAM by default (md5 and trust only when configured), no secrets or SQL
text in the log at info level or on the HTTP endpoints, TLS 1.2 minimum, the admin console
refuses everyone without its password, /metrics on its own address, and SCRAM that does not
tell which users exist.

Usage: security_test.py [test ...]   (under integration/run; default: every test)
"""

import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import uuid
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import psycopg  # noqa: E402

from hostile import (SSL_REQUEST, Failure, Pgdog, check, code_packet, database_toml, env,  # noqa: E402
                     free_port, log, main, mirroring_toml, msg, port_open, sql_direct,
                     startup_packet, test, toml_str, user_toml, wait_until)

warnings.filterwarnings("ignore", category=DeprecationWarning)


def first_auth_request(p, user="pgdog", database="pgdog"):
    """The code of pgdog's first Authentication message (and its body)."""
    w = p.wire()
    w.send(startup_packet({"user": user, "database": database}))
    kind, body = w.read_msg()
    w.close()
    check(kind == b"R", f"expected an Authentication request, got {kind!r} {body[:80]!r}")
    return struct.unpack("!I", body[:4])[0], body[4:]


@test
def scram_by_default():
    """Without auth_type: SCRAM-SHA-256 only, no downgrade to a cleartext or md5 exchange."""
    with Pgdog() as p:
        code, body = first_auth_request(p)
        mechanisms = [m for m in body.split(b"\0") if m]
        log(f"default: Authentication code {code}, mechanisms {mechanisms}")
        check(code == 10 and mechanisms == [b"SCRAM-SHA-256"],
              f"default authentication is code {code} {mechanisms}, expected SASL SCRAM-SHA-256")
        # The same for an unknown user (no hint that it does not exist).
        code2, body2 = first_auth_request(p, user="nobody")
        check((code2, body2) == (code, body), f"unknown user: {code2} {body2}")
        with p.admin() as a:
            rows = a.execute("SHOW CONFIG").fetchall()
        conf = {r[0]: r[1] for r in rows}
        check(conf.get("auth_type") == "scram", f"SHOW CONFIG auth_type {conf.get('auth_type')}")
        # libpq completes SCRAM (and verifies the server's signature).
        with p.connect() as c:
            check(c.execute("SELECT 1").fetchone() == (1,), "login")


@test
def md5_and_trust_only_when_configured():
    users = user_toml("pgdog", "pgdog", "pgdog")
    with Pgdog(general={"auth_type": '"md5"'}, users=users) as p:
        code, salt = first_auth_request(p)
        check(code == 5 and len(salt) == 4, f"auth_type md5: code {code}")
        _, salt2 = first_auth_request(p)
        check(salt != salt2, "the md5 salt repeats between connections")
        with p.connect() as c:
            check(c.execute("SELECT 1").fetchone() == (1,), "md5 login")
        log("auth_type md5: AuthenticationMD5Password with a fresh salt per connection")
    with Pgdog(general={"auth_type": '"trust"'}, users=users) as p:
        code, _ = first_auth_request(p)
        check(code == 0, f"auth_type trust: code {code}")
        w = p.wire()
        check(w.login("pgdog", None) is None, "trust login")
        w.close()
        # trust never lets in a user that is not in users.toml.
        f = p.wire().login("nobody", None)
        check(f is not None and f.get("C") == "28000", f"trust with an unknown user: {f}")
        # ... and never applies to the admin console.
        code, _ = first_auth_request(p, user="admin", database="admin")
        check(code == 10, f"admin console under auth_type trust: code {code}, expected SASL")
        log("auth_type trust: AuthenticationOk at once for known users; 28000 for unknown; "
            "the admin console still asks for SCRAM")


@test
def scram_does_not_reveal_users():
    """A SCRAM exchange for a user that does not exist must look like one for a user that does:
    the same salt on every attempt (PostgreSQL derives a mock salt from the name), the same
    error, and no large difference in the work pgdog does."""
    with Pgdog() as p:
        def server_first(user):
            w = p.wire()
            w.send(startup_packet({"user": user, "database": "pgdog"}) +
                   msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", 13) + b"n,,n=,r=abcde"))
            w.read_msg()
            kind, body = w.read_msg()
            w.close()
            check(kind == b"R", f"{kind} {body}")
            return dict(kv.split("=", 1) for kv in body[4:].decode().split(","))

        def cpu_per_attempt(user, n=200):
            from_stat = lambda: sum(int(x) for x in open(f"/proc/{p.pid}/stat").read()
                                    .rsplit(")", 1)[1].split()[11:13]) / os.sysconf("SC_CLK_TCK")
            c0 = from_stat()
            for _ in range(n):
                w = p.wire()
                w.send(startup_packet({"user": user, "database": "pgdog"}) +
                       msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", 13) + b"n,,n=,r=abcde"))
                w.read_msg()
                w.read_msg()
                w.close()
            return (from_stat() - c0) / n * 1000

        known = [server_first("pgdog")["s"] for _ in range(3)]
        unknown = [server_first("nobody")["s"] for _ in range(3)]
        iters = {server_first("pgdog")["i"], server_first("nobody")["i"]}
        cpu_known, cpu_unknown = cpu_per_attempt("pgdog"), cpu_per_attempt("nobody")
        log(f"salts for an existing user: {known}; for a missing user: {unknown}; "
            f"iterations {iters}")
        log(f"pgdog CPU per SCRAM start: existing user {cpu_known:.2f} ms, missing user "
            f"{cpu_unknown:.2f} ms")
        problems = []
        if len(set(known)) != 1:
            problems.append("the salt of an existing user changes between attempts")
        if len(set(unknown)) != 1:
            problems.append("a missing user gets a new random salt on every attempt, an "
                            "existing user always the same one: two attempts tell whether a "
                            "user exists")
        if len(iters) != 1:
            problems.append(f"iteration counts differ: {iters}")
        if cpu_unknown > 3 * max(cpu_known, 0.05):
            problems.append(f"a missing user costs pgdog {cpu_unknown:.2f} ms of CPU per attempt "
                            f"(PBKDF2 of a throwaway secret), an existing one {cpu_known:.2f} ms:"
                            " a timing oracle and cheap CPU exhaustion before authentication")
        check(not problems, "; ".join(problems))


@test
def no_secrets_in_logs_or_metrics():
    """Passwords and SQL text (literals) never appear in pgdog's log at the default level (info)
    nor on /metrics, /mirrors or the status page, whatever happens: a login, a query, a query
    failing on the primary, a transaction failing on the mirror only, a wrong password."""
    e = env()
    tag = uuid.uuid4().hex[:12]
    password = f"Pw-{tag}-secret"
    wrong = f"Wrong-{tag}-password"
    lit_ok, lit_fail, lit_mirror = f"lit-ok-{tag}", f"lit-fail-{tag}", f"lit-mirror-{tag}"
    for port, coltype in ((e.primary_port, "text"), (e.mirror_port, "int")):
        sql_direct(port, ["DROP TABLE IF EXISTS sec_log", f"CREATE TABLE sec_log (v {coltype})"])
    # The client's password is not the server's: pgdog logs in to PostgreSQL as pgdog/pgdog.
    users = user_toml("pgdog", "pgdog", password,
                      'server_user = "pgdog"\nserver_password = "pgdog"')
    p = Pgdog(databases=database_toml("pgdog", e.primary_port) +
              database_toml("mirror", e.mirror_port, "pgdog"),
              extra=mirroring_toml(), users=users, metrics=True,
              admin_password=f"Admin-{tag}-pw")
    with p:
        with p.connect(password=password) as c:
            check(c.execute(f"SELECT '{lit_ok}'").fetchone() == (lit_ok,), "query")
            try:
                c.execute(f"SELECT '{lit_fail}'::int")
                raise Failure("the failing query succeeded")
            except psycopg.errors.InvalidTextRepresentation:
                pass
            # Succeeds on the primary (text), fails on the mirror (int): a mirror `query`
            # failure whose server message quotes the literal.
            c.execute("INSERT INTO sec_log VALUES (%s)", (lit_mirror,))
            c.execute(f"INSERT INTO sec_log VALUES ('{lit_mirror}')")
        try:
            p.connect(password=wrong).close()
            raise Failure("a wrong password logged in")
        except psycopg.OperationalError:
            pass
        try:
            p.admin(password=wrong).close()
            raise Failure("a wrong admin password logged in")
        except psycopg.OperationalError:
            pass
        with p.admin() as a:
            for cmd in ("SHOW CLIENTS", "SHOW SERVERS", "SHOW POOLS", "SHOW STATS",
                        "SHOW MIRRORS", "SHOW MIRROR_DIVERGENCES"):
                a.execute(cmd).fetchall()
            config_rows = a.execute("SHOW CONFIG").fetchall()
        v = p.wait_mirror_drained(p.handed())
        check(v["query"] >= 2, f"the mirror-only failures were not counted: {v}")
        # A failure is counted before it is logged: wait for its line (the one that could quote
        # the literal) before reading the log.
        wait_until("the mirror failure to be logged",
                   lambda: "transaction failed (query)" in p.log(), 10)
        secrets = {"password": password, "wrong password": wrong, "admin password":
                   f"Admin-{tag}-pw", "literal (ok)": lit_ok, "literal (failed)": lit_fail,
                   "literal (mirror failure)": lit_mirror}
        leaks = []
        text = p.log()
        for what, s in secrets.items():
            for line in text.splitlines():
                if s in line:
                    leaks.append(f"log: {what}: {line.strip()[:220]}")
        for path in ("/metrics", "/mirrors", "/"):
            status, body = p.http_get(path)
            for what, s in secrets.items():
                if s in body:
                    leaks.append(f"{path}: {what}")
        for row in config_rows:
            for what, s in secrets.items():
                if any(s in str(x) for x in row):
                    leaks.append(f"SHOW CONFIG: {what} in {row}")
        log(f"log lines: {len(text.splitlines())}; leaks: {len(leaks)}")
        for l in leaks:
            log(f"  LEAK {l}")
        check(not leaks, f"{len(leaks)} secrets / SQL literals leaked: " + " | ".join(leaks))


@test
def tls_minimum_version():
    """With TLS configured: TLS 1.0 / 1.1 clients are refused (checked against a control server
    that does accept them, so the refusal is pgdog's), 1.2 and 1.3 work, libpq verify-full
    works, and plaintext bytes pipelined after SSLRequest are refused."""
    e = env()
    tls = e.tls_dir
    p = Pgdog(general={"tls_certificate": toml_str(os.path.join(tls, "server.crt")),
                       "tls_private_key": toml_str(os.path.join(tls, "server.key"))})
    with p:
        def handshake(maximum, minimum=ssl.TLSVersion.TLSv1, port=None, starttls=True):
            s = socket.create_connection(("127.0.0.1", port or p.port), timeout=10)
            if starttls:
                s.sendall(code_packet(SSL_REQUEST))
                check(s.recv(1) == b"S", "SSLRequest not answered S")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.minimum_version = minimum
            ctx.maximum_version = maximum
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            try:
                with ctx.wrap_socket(s) as t:
                    return t.version()
            except (ssl.SSLError, OSError) as ex:
                return f"refused: {ex}"

        # Control: this client can speak TLS 1.1 to a server that allows it.
        control = _Tls11Server(os.path.join(tls, "server.crt"), os.path.join(tls, "server.key"))
        try:
            ctl = handshake(ssl.TLSVersion.TLSv1_1, port=control.port, starttls=False)
        finally:
            control.stop()
        log(f"control server, TLS <= 1.1 client: {ctl}")
        check(ctl == "TLSv1.1", f"the TLS 1.1 client cannot even reach a TLS 1.1 server ({ctl});"
                                " the check below would prove nothing")
        results = {
            "TLS 1.0": handshake(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1),
            "TLS 1.1": handshake(ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1),
            "TLS 1.2": handshake(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2),
            "TLS 1.3": handshake(ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3),
        }
        for k, v in results.items():
            log(f"pgdog, {k} client: {v}")
        check(results["TLS 1.0"].startswith("refused"), f"TLS 1.0 accepted: {results}")
        check(results["TLS 1.1"].startswith("refused"), f"TLS 1.1 accepted: {results}")
        check(results["TLS 1.2"] == "TLSv1.2", f"TLS 1.2: {results['TLS 1.2']}")
        check(results["TLS 1.3"] == "TLSv1.3", f"TLS 1.3: {results['TLS 1.3']}")

        # The same with openssl s_client -starttls postgres.
        def s_client(flag):
            r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{p.port}",
                                "-starttls", "postgres", flag, "-cipher", "DEFAULT:@SECLEVEL=0"],
                               input="", capture_output=True, text=True, timeout=20)
            m = re.search(r"Protocol\s*:\s*(\S+)", r.stdout)
            return r.returncode, (m.group(1) if m else None), r.stdout + r.stderr
        rc, proto, out = s_client("-tls1_1")
        log(f"openssl s_client -tls1_1: rc {rc}, protocol {proto}")
        # (s_client prints the version it offered even when the handshake failed.)
        check(rc != 0 and "Cipher is (NONE)" in out,
              f"openssl -tls1_1 negotiated {proto}:\n{out[-800:]}")
        rc, proto, out = s_client("-tls1_2")
        check(rc == 0 and proto == "TLSv1.2", f"openssl -tls1_2: rc {rc} {proto}\n{out[-800:]}")

        # libpq with verify-full against the throwaway CA.
        with psycopg.connect(host="127.0.0.1", port=p.port, user="pgdog", password="pgdog",
                             dbname="pgdog", sslmode="verify-full",
                             sslrootcert=os.path.join(tls, "ca.crt"), connect_timeout=10) as c:
            check(c.execute("SELECT 1").fetchone() == (1,), "TLS query")
            check(c.pgconn.ssl_in_use, "libpq says TLS is not in use")
        # Plaintext pipelined behind the SSLRequest (CVE-2021-23214 style buffer stuffing).
        w = p.wire()
        w.send(code_packet(SSL_REQUEST) + msg(b"Q", b"SELECT 'injected'\0"))
        f = w.expect_error(5)
        log(f"bytes pipelined after SSLRequest: {f and (f.get('C'), f.get('M'))}")
        check(f is not None and f.get("C") == "08P01",
              f"bytes after SSLRequest: {f} (expected 08P01 before any TLS)")
        # A second SSLRequest inside TLS.
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        s.sendall(code_packet(SSL_REQUEST))
        check(s.recv(1) == b"S", "no S")
        ctx = ssl.create_default_context(cafile=os.path.join(tls, "ca.crt"))
        ctx.check_hostname = False
        t = ctx.wrap_socket(s)
        t.sendall(code_packet(SSL_REQUEST))
        data = t.recv(4096)
        check(data[:1] == b"E" and b"08P01" in data, f"second SSLRequest inside TLS: {data!r}")
        t.close()
        p.assert_serving(None, "TLS")

    # tls_client_required: plaintext refused with 28000, TLS accepted.
    p = Pgdog(general={"tls_certificate": toml_str(os.path.join(tls, "server.crt")),
                       "tls_private_key": toml_str(os.path.join(tls, "server.key")),
                       "tls_client_required": "true"})
    with p:
        f = p.wire().login()
        check(f is not None and f.get("C") == "28000", f"plaintext with TLS required: {f}")
        with psycopg.connect(host="127.0.0.1", port=p.port, user="pgdog", password="pgdog",
                             dbname="pgdog", sslmode="require", connect_timeout=10) as c:
            check(c.execute("SELECT 1").fetchone() == (1,), "TLS required: TLS login")
        log(f"tls_client_required: plaintext -> {f['C']} {f['M']}")


class _Tls11Server:
    """A TLS server that accepts TLS 1.0-1.1 (SECLEVEL 0): the control for the client above."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1
        self.ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        self.ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            c, _ = self.sock.accept()
            with self.ctx.wrap_socket(c, server_side=True) as t:
                t.recv(1)
        except (OSError, ssl.SSLError):
            pass

    def stop(self):
        self.sock.close()
        self.thread.join(5)


@test
def admin_console_without_password():
    """No [admin] password: the admin console refuses everyone, whatever they send, under every
    auth_type; a configured password works and nothing else does."""
    for auth in ("scram", "md5", "trust"):
        with Pgdog(admin_password=None, general={"auth_type": f'"{auth}"'}) as p:
            code, _ = first_auth_request(p, user="admin", database="admin")
            check(code != 0, f"{auth}: the admin console did not ask for a password")
            for user, pw in (("admin", ""), ("admin", "admin"), ("admin", "admin_secret"),
                             ("pgdog", "pgdog"), ("admin", None)):
                f = p.wire().login(user, pw, database="admin")
                check(f is not None and f.get("C") in ("28P01", "28000"),
                      f"{auth}: admin {user}/{pw!r} got {f}")
            log(f"auth_type {auth}, no admin password: admin console asks with code {code}, "
                f"refuses every password with {f['C']}")
            p.assert_serving(None, "admin without password")


@test
def metrics_on_separate_address():
    """openmetrics_host 127.0.0.2 while the proxy listens on 127.0.0.1: /metrics answers only on
    127.0.0.2, the proxy only on 127.0.0.1; without openmetrics_port there is no endpoint."""
    mport = free_port("127.0.0.2")
    with Pgdog(general={"openmetrics_host": '"127.0.0.2"', "openmetrics_port": str(mport)},
               metrics=True) as p:
        status, body = p.http_get("/metrics", host="127.0.0.2")
        check(status == 200 and "pgdog_" in body, f"/metrics on 127.0.0.2: {status}")
        check(not port_open(mport, "127.0.0.1"), "/metrics also answers on 127.0.0.1")
        check(not port_open(p.port, "127.0.0.2"), "the proxy also listens on 127.0.0.2")
        with p.connect() as c:
            check(c.execute("SELECT 1").fetchone() == (1,), "proxy on 127.0.0.1")
        log(f"/metrics on 127.0.0.2:{mport} only; proxy on 127.0.0.1:{p.port} only")
    # Default: no openmetrics_port, no HTTP listener at all.
    with Pgdog() as p:
        out = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True).stdout
        mine = [l for l in out.splitlines() if f"pid={p.pid}," in l]
        log(f"default config listens on: {[l.split()[3] for l in mine]}")
        check(len(mine) == 1 and mine[0].split()[3].endswith(f":{p.port}"),
              f"pgdog listens on more than its port by default: {mine}")


if __name__ == "__main__":
    sys.exit(main(time_limit=280))
