"""A minimal asyncio PostgreSQL client: startup, authentication (SCRAM-SHA-256, md5,
cleartext, trust) and simple queries. Enough to hold thousands of idle authenticated
connections from one process, which libpq processes cannot do cheaply.

Standard library only.
"""

import asyncio
import base64
import hashlib
import hmac
import os
import random
import struct
import time

PROTOCOL_3 = 196608


class PgError(Exception):
    """An ErrorResponse from the server, or a protocol violation."""


def _msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def _error_text(body: bytes) -> str:
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return "%s %s: %s" % (fields.get("S", "ERROR"), fields.get("C", "?"), fields.get("M", "?"))


# PBKDF2 is the expensive part of SCRAM (4096 rounds); servers that keep one salt per
# user (PostgreSQL, proxies that store a verifier) let every later login reuse it.
_salted = {}


def _salted_password(password: bytes, salt: bytes, iterations: int) -> bytes:
    key = (password, salt, iterations)
    v = _salted.get(key)
    if v is None:
        v = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
        if len(_salted) > 10000:
            _salted.clear()
        _salted[key] = v
    return v


def scram_client_first():
    """The SASLInitialResponse body for SCRAM-SHA-256 and the state scram_client_final needs."""
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = "n=,r=" + nonce
    first = ("n,," + first_bare).encode()
    body = b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first
    return body, {"nonce": nonce, "first_bare": first_bare}


def scram_client_final(password: bytes, scram: dict, server_first: str) -> bytes:
    """The client-final-message for the server's first message; records in `scram` the server
    signature the SASLFinal must carry."""
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    r, s, i = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
    if not r.startswith(scram["nonce"]):
        raise PgError("server nonce does not extend ours")
    salted = _salted_password(password, s, i)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    final_wo_proof = "c=biws,r=" + r
    auth_msg = ",".join((scram["first_bare"], server_first, final_wo_proof)).encode()
    sig = hmac.new(stored_key, auth_msg, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    scram["server_sig"] = hmac.new(server_key, auth_msg, hashlib.sha256).digest()
    return (final_wo_proof + ",p=" + base64.b64encode(proof).decode()).encode()


async def _read(reader):
    hdr = await reader.readexactly(5)
    (n,) = struct.unpack("!I", hdr[1:5])
    if n < 4 or n > 64 * 1024 * 1024:
        raise PgError("bad message length %d" % n)
    body = await reader.readexactly(n - 4) if n > 4 else b""
    return hdr[0:1], body


class Conn:
    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.params = {}

    @property
    def closed(self) -> bool:
        return self.writer.is_closing() or self.reader.at_eof()

    async def query(self, sql: str):
        """Simple-protocol query; returns the rows of the last result as lists of str."""
        self.writer.write(_msg(b"Q", sql.encode() + b"\0"))
        await self.writer.drain()
        rows, err = [], None
        while True:
            kind, body = await _read(self.reader)
            if kind == b"T":
                rows = []
            elif kind == b"D":
                (ncol,) = struct.unpack("!H", body[:2])
                off, row = 2, []
                for _ in range(ncol):
                    (ln,) = struct.unpack("!i", body[off:off + 4])
                    off += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(body[off:off + ln].decode())
                        off += ln
                rows.append(row)
            elif kind == b"E":
                err = _error_text(body)
            elif kind == b"Z":
                if err:
                    raise PgError(err)
                return rows

    def close(self):
        try:
            self.writer.write(_msg(b"X", b""))
        except Exception:
            pass
        try:
            self.writer.close()
        except Exception:
            pass


async def connect(host, port, user, password, database, application_name="pgdog-bench"):
    """Opens and authenticates one connection; returns a Conn after ReadyForQuery."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        params = b""
        for k, v in (("user", user), ("database", database), ("application_name", application_name)):
            params += k.encode() + b"\0" + v.encode() + b"\0"
        body = struct.pack("!I", PROTOCOL_3) + params + b"\0"
        writer.write(struct.pack("!I", len(body) + 4) + body)
        pw = (password or "").encode()
        conn = Conn(reader, writer)
        scram = None
        while True:
            kind, body = await _read(reader)
            if kind == b"R":
                (code,) = struct.unpack("!I", body[:4])
                if code == 0:
                    pass
                elif code == 3:
                    writer.write(_msg(b"p", pw + b"\0"))
                elif code == 5:
                    inner = hashlib.md5(pw + user.encode()).hexdigest().encode()
                    outer = b"md5" + hashlib.md5(inner + body[4:8]).hexdigest().encode()
                    writer.write(_msg(b"p", outer + b"\0"))
                elif code == 10:
                    mechs = [m for m in body[4:].split(b"\0") if m]
                    if b"SCRAM-SHA-256" not in mechs:
                        raise PgError("no supported SASL mechanism in %r" % mechs)
                    initial, scram = scram_client_first()
                    writer.write(_msg(b"p", initial))
                elif code == 11:
                    if scram is None:
                        raise PgError("SASLContinue before SASL")
                    writer.write(_msg(b"p", scram_client_final(pw, scram, body[4:].decode())))
                elif code == 12:
                    attrs = dict(kv.split("=", 1) for kv in body[4:].decode().split(",") if "=" in kv)
                    if scram is None or base64.b64decode(attrs.get("v", "")) != scram.get("server_sig"):
                        raise PgError("bad SCRAM server signature")
                else:
                    raise PgError("unsupported authentication request %d" % code)
                await writer.drain()
            elif kind == b"E":
                raise PgError(_error_text(body))
            elif kind == b"S":
                k, v, _ = body.split(b"\0", 2)
                conn.params[k.decode()] = v.decode()
            elif kind == b"Z":
                return conn
            # 'K' (BackendKeyData), 'N' (notices) and the rest: ignored
    except BaseException:
        writer.close()
        raise


async def open_many(host, port, user, password, database, n, deadline, concurrency=64,
                    conns=None, errors=None):
    """Opens up to n connections (appended to conns) before the monotonic deadline.
    Returns (conns, errors) where errors maps a message to its count."""
    conns = [] if conns is None else conns
    errors = {} if errors is None else errors
    sem = asyncio.Semaphore(concurrency)
    remaining = [n]

    async def one():
        async with sem:
            left = deadline - time.monotonic()
            if left <= 0:
                errors["not attempted: time limit"] = errors.get("not attempted: time limit", 0) + 1
                return
            try:
                c = await asyncio.wait_for(connect(host, port, user, password, database),
                                           min(left, 30.0))
                conns.append(c)
            except Exception as e:  # noqa: BLE001 - every failure is counted, none is fatal
                msg = type(e).__name__ + (": " + str(e) if str(e) else "")
                msg = msg[:160]
                errors[msg] = errors.get(msg, 0) + 1
            remaining[0] -= 1

    tasks = [asyncio.ensure_future(one()) for _ in range(n)]
    await asyncio.gather(*tasks, return_exceptions=True)
    return conns, errors


async def sample_queries(conns, k, timeout):
    """Runs SELECT 1 on k randomly chosen connections at once; returns (answered, errors)."""
    sample = random.sample(conns, min(k, len(conns)))
    errors = {}

    async def one(c):
        try:
            rows = await asyncio.wait_for(c.query("SELECT 1"), timeout)
            if rows == [["1"]]:
                return True
            errors["unexpected answer"] = errors.get("unexpected answer", 0) + 1
        except Exception as e:  # noqa: BLE001
            msg = (type(e).__name__ + (": " + str(e) if str(e) else ""))[:160]
            errors[msg] = errors.get(msg, 0) + 1
        return False

    results = await asyncio.gather(*(one(c) for c in sample))
    return sum(1 for r in results if r), len(sample), errors
