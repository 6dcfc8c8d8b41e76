"""A test-only TCP relay between pgdog and a PostgreSQL server that passes, stalls, resets or
slows traffic on command. It runs an asyncio loop in a background thread of the test process;
the methods below are called from the test's thread.

    relay = Relay(target_port)       # listens on 127.0.0.1:relay.port, forwards to target_port
    relay.stall()                    # stop forwarding (both directions, or up / down only)
    relay.pass_()                    # forward again (held bytes go on), no delay, no resets
    relay.reset()                    # RST both sides of every open connection (SO_LINGER 0)
    relay.reset(refuse_new=True)     # ... and RST every new connection at once until pass_()
    relay.slow(0.05)                 # delay each chunk by 50 ms (both directions)
    relay.arm(b"pg_sleep")           # an Event, set once bytes containing the pattern were
                                     # forwarded towards the server
    relay.arm(b"x", received=True)   # ... set once they arrived from pgdog, even while stalled

reset() returns once the connections are closed: the RSTs are on their way (on loopback, in the
peer's socket) when it returns.

"up" is pgdog → server, "down" is server → pgdog. Standard library only.
"""

import asyncio
import socket
import struct
import threading


class Relay:
    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.delay = 0.0
        self.refuse_new = False
        self.accepted = 0
        self.resets = 0
        self.pairs = set()
        self.watch = []  # [pattern, threading.Event]: forwarded towards the server
        self.watch_received = []  # [pattern, threading.Event]: arrived from pgdog
        self.up_bytes = 0
        self.down_bytes = 0

        async def setup():
            self.open = {"up": asyncio.Event(), "down": asyncio.Event()}
            for e in self.open.values():
                e.set()
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0,
                                                     reuse_address=True, backlog=1024)
            return self.server.sockets[0].getsockname()[1]

        self.port = self._call(setup())

    # ------------------------------------------------------------------ control (test thread)

    def _call(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def pass_(self):
        async def go():
            self.delay = 0.0
            self.refuse_new = False
            for e in self.open.values():
                e.set()
        self._call(go())

    def stall(self, up=True, down=True):
        async def go():
            if up:
                self.open["up"].clear()
            if down:
                self.open["down"].clear()
        self._call(go())

    def slow(self, delay):
        async def go():
            self.delay = delay
        self._call(go())

    def reset(self, refuse_new=False):
        """RSTs every open connection (both sides); returns how many pairs were reset."""
        async def go():
            self.refuse_new = refuse_new
            n = 0
            for pair in list(self.pairs):
                for w in pair:
                    _rst(w)
                n += 1
            self.pairs.clear()
            self.resets += n
            # abort() closes the sockets in a callback of the next loop iteration: let it run.
            await asyncio.sleep(0)
            return n
        return self._call(go())

    def arm(self, pattern, received=False):
        ev = threading.Event()
        (self.watch_received if received else self.watch).append([pattern, ev])
        return ev

    def connections(self):
        async def go():
            return len(self.pairs)
        return self._call(go())

    def close(self):
        async def go():
            self.server.close()
            for pair in list(self.pairs):
                for w in pair:
                    _rst(w)
            self.pairs.clear()
        try:
            self._call(go())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ------------------------------------------------------------------ relay (loop thread)

    async def _handle(self, reader, writer):
        self.accepted += 1
        if self.refuse_new:
            _rst(writer)
            return
        try:
            sr, sw = await asyncio.open_connection(*self.target)
        except OSError:
            _rst(writer)
            return
        pair = (writer, sw)
        self.pairs.add(pair)
        try:
            await asyncio.gather(self._pump(reader, sw, "up", pair),
                                 self._pump(sr, writer, "down", pair))
        finally:
            self.pairs.discard(pair)

    async def _pump(self, src, dst, direction, pair):
        tail = b""
        received_tail = b""
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                if direction == "up":
                    window = received_tail + data
                    for pattern, ev in self.watch_received:
                        if pattern in window:
                            ev.set()
                    received_tail = window[-256:]
                await self.open[direction].wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                if pair not in self.pairs:
                    break  # reset meanwhile
                if direction == "up":
                    self.up_bytes += len(data)
                    window = tail + data
                    for pattern, ev in self.watch:
                        if pattern in window:
                            ev.set()
                    tail = window[-256:]
                else:
                    self.down_bytes += len(data)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side ended: end the other one too (PostgreSQL connections are not half-open).
            if pair in self.pairs:
                self.pairs.discard(pair)
                for w in pair:
                    try:
                        w.close()
                    except Exception:  # noqa: BLE001
                        pass


def _rst(writer):
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()
