"""Processes for scripts/bench: /proc readings, a sampler thread, the proxies under test
(pgdog, PgBouncer) and a black-hole listener for a stalled mirror. Standard library only."""

import os
import signal
import socket
import subprocess
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick; small race, as usual)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, timeout=0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread, living or gone), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def rss_kb(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


class Sampler(threading.Thread):
    """Samples (wall time, CPU seconds, RSS kB) of one process every `interval` seconds."""

    def __init__(self, pid: int, interval=0.1):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples = []
        self._halt = threading.Event()

    def sample(self):
        try:
            self.samples.append((time.time(), cpu_seconds(self.pid), rss_kb(self.pid)))
        except (OSError, ValueError, IndexError):
            pass

    def run(self):
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join(5)
        self.sample()


def kill_group(p: subprocess.Popen, grace=3.0):
    """Ends a child we started in its own session (SIGTERM, then SIGKILL), by its id."""
    if p is None or p.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            p.send_signal(sig)
        try:
            p.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class Proxy:
    """One proxy instance under test, started once and kept for the whole run."""

    def __init__(self, name, kind, workdir, port, argv, log_path, as_user=None, metrics_port=None,
                 pool_size=None, primary_conns=0):
        self.name = name
        self.kind = kind  # "pgdog" | "pgbouncer"
        self.workdir = workdir
        self.port = port
        self.argv = argv
        self.log_path = log_path
        self.as_user = as_user
        self.metrics_port = metrics_port
        self.pool_size = pool_size
        self.primary_conns = primary_conns
        self.popen = None
        self.restarts = 0
        self.deaths = []  # what we saw each time it was found dead

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, timeout=20.0):
        log = open(self.log_path, "ab")
        kw = {}
        if self.as_user:
            kw = dict(user=self.as_user, group=self.as_user, extra_groups=[])
        try:
            self.popen = subprocess.Popen(self.argv, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, **kw)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError("%s exited with status %s before listening; log %s:\n%s" % (
                    self.name, self.popen.returncode, self.log_path, self.log_tail()))
            if port_open(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError("%s did not listen on port %d within %.0f s; log %s:\n%s" % (
            self.name, self.port, timeout, self.log_path, self.log_tail()))

    def stop(self):
        if not self.alive():
            return
        # pgdog: SIGINT exits fast. PgBouncer: SIGTERM is its immediate shutdown.
        sig = signal.SIGINT if self.kind == "pgdog" else signal.SIGTERM
        try:
            self.popen.send_signal(sig)
            self.popen.wait(8)
        except subprocess.TimeoutExpired:
            kill_group(self.popen, grace=1.0)
        except ProcessLookupError:
            pass

    def log_tail(self, n=15) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 16384))
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return "(no log)"


class BlackHole(threading.Thread):
    """A listener that accepts connections and never answers: a stalled mirror."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                c, _ = self.sock.accept()
                self.held.append(c)
            except socket.timeout:
                continue
            except OSError:
                break

    def stop(self):
        self._halt.set()
        self.join(2)
        for c in self.held:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()
